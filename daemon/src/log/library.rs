//! The libraries' own lines: `log` records (sled, rustls, tokio-postgres, lettre) become
//! `tracing` events through `tracing-log`, and one layer writes every event through the
//! daemon's [`Logger`], at most [`PER_MINUTE`] lines a minute from one library module, with
//! a count of the rest.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use super::{Level, Logger, Record};

/// Lines one library module may write in a [`WINDOW`].
const PER_MINUTE: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

/// Makes `logger` the place of every library's lines, for the rest of the process. Once
/// per process: later calls (tests) leave the first in place.
pub fn install(logger: Arc<Logger>) {
    let max = match logger.level {
        Level::Error => log::LevelFilter::Error,
        Level::Warn => log::LevelFilter::Warn,
        Level::Info => log::LevelFilter::Info,
        Level::Debug => log::LevelFilter::Debug,
    };
    let layer = Libraries {
        logger,
        windows: Mutex::new(HashMap::new()),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = tracing_log::LogTracer::builder().with_max_level(max).init();
    }
}

struct Libraries {
    logger: Arc<Logger>,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl<S: Subscriber> Layer<S> for Libraries {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        level_of(metadata.level()) <= self.logger.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = level_of(meta.level());
        if level > self.logger.level {
            return;
        }
        let target = meta.target();
        let Some(note) = self.admit(target) else {
            return;
        };
        let mut text = Text::default();
        event.record(&mut text);
        if let Some(n) = note {
            let _ = write!(text.0, " ({n} similar lines suppressed in the last minute)");
        }
        self.logger.write(&Record {
            level,
            target,
            message: &text.0,
            audit: None,
        });
    }
}

impl Libraries {
    /// Whether `target` may write now: `Some(None)` yes, `Some(Some(n))` yes, and `n` lines
    /// were held back since its last window; `None` no.
    fn admit(&self, target: &str) -> Option<Option<u64>> {
        let mut windows = self.windows.lock().ok()?;
        let now = Instant::now();
        let w = windows.entry(target.to_string()).or_insert(Window {
            started: now,
            written: 0,
            suppressed: 0,
        });
        if now.duration_since(w.started) >= WINDOW {
            let held = std::mem::take(&mut w.suppressed);
            w.started = now;
            w.written = 1;
            return Some((held > 0).then_some(held));
        }
        if w.written < PER_MINUTE {
            w.written += 1;
            return Some(None);
        }
        w.suppressed += 1;
        None
    }
}

fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        _ => Level::Debug,
    }
}

/// The event's message, then its other fields as `name=value` (the `log.*` fields that
/// tracing-log adds are left out: the target is written on its own).
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if name == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{name}={value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noisy_library_is_held_to_its_lines_a_minute() {
        let l = Libraries {
            logger: Arc::new(Logger::stderr(Level::Error)),
            windows: Mutex::new(HashMap::new()),
        };
        let admitted = (0..25)
            .filter(|_| l.admit("sled::pagecache").is_some())
            .count();
        assert_eq!(admitted, PER_MINUTE as usize);
        // Another library has a window of its own.
        assert_eq!(l.admit("rustls::server"), Some(None));
    }
}
