//! Rate limit for drop lines: at most one line per (reason, client) per interval; the rest
//! are counted and reported as a number. Unknown sources share one key per reason, so a
//! flood of spoofed addresses cannot grow the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::events::{DropReason, RadiusEvent};

struct Window {
    started: Instant,
    suppressed: u64,
}

pub(crate) struct DropLimiter {
    interval: Duration,
    windows: HashMap<(DropReason, Option<Arc<str>>), Window>,
}

impl DropLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        DropLimiter {
            interval,
            windows: HashMap::new(),
        }
    }

    /// Counts a drop; returns the line to log, if this one is to be logged.
    pub(crate) fn note(
        &mut self,
        reason: DropReason,
        client: Option<&Arc<str>>,
        src: SocketAddr,
        now: Instant,
    ) -> Option<RadiusEvent> {
        let key = (reason, client.cloned());
        match self.windows.get_mut(&key) {
            Some(w) if now.duration_since(w.started) < self.interval => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let suppressed = std::mem::take(&mut w.suppressed);
                w.started = now;
                Some(dropped(reason, client, src, suppressed))
            }
            None => {
                self.windows.insert(
                    key,
                    Window {
                        started: now,
                        suppressed: 0,
                    },
                );
                Some(dropped(reason, client, src, 0))
            }
        }
    }

    /// Closes the windows that are over: returns a count line for each that suppressed
    /// drops and forgets them all, so the table only holds recent keys.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<RadiusEvent> {
        let mut lines = Vec::new();
        let interval = self.interval;
        self.windows.retain(|(reason, client), w| {
            if now.duration_since(w.started) < interval {
                return true;
            }
            if w.suppressed > 0 {
                lines.push(RadiusEvent::DropsSuppressed {
                    reason: *reason,
                    client: client.as_deref().map(str::to_owned),
                    count: w.suppressed,
                    interval,
                });
            }
            false
        });
        lines
    }
}

fn dropped(
    reason: DropReason,
    client: Option<&Arc<str>>,
    src: SocketAddr,
    suppressed: u64,
) -> RadiusEvent {
    RadiusEvent::Dropped {
        reason,
        client: client.map(|c| c.to_string()),
        src,
        suppressed,
    }
}
