//! Rate limits that take the time as an argument (tests move it instead of waiting): token
//! buckets per source with a global one behind them, for the customer's HTTP endpoints;
//! and a line limiter that logs one line per key and interval and counts the rest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` at once, refilled at `rate` a second.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    /// Tokens left; one request (or failure) takes one.
    pub level: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            level: burst,
            at: now,
        }
    }

    /// Adds what `rate` refilled since the last call, up to `burst`.
    pub fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// How fast requests may come: per source address, and for all sources together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub per_source: f64,
    pub source_burst: f64,
    pub global: f64,
    pub global_burst: f64,
}

struct Buckets {
    sources: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

/// Per-source and global token buckets. The table of sources is bounded: when it is full,
/// sources whose bucket has refilled are forgotten (they are back to a full bucket anyway),
/// and if none has, a new source shares the global bucket only.
pub struct SourceLimiter {
    rates: Rates,
    capacity: usize,
    inner: Mutex<Buckets>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Source,
    Global,
}

impl SourceLimiter {
    pub fn new(rates: Rates, capacity: usize, now: Instant) -> SourceLimiter {
        SourceLimiter {
            rates,
            capacity: capacity.max(1),
            inner: Mutex::new(Buckets {
                sources: HashMap::new(),
                global: Bucket::full(rates.global_burst, now),
            }),
        }
    }

    /// Takes one request from `source`'s bucket and the global one, or says which is empty.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<(), Refused> {
        let r = self.rates;
        let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Buckets { sources, global } = &mut *b;
        if !sources.contains_key(&source) && sources.len() >= self.capacity {
            sources.retain(|_, s| {
                s.refill(now, r.per_source, r.source_burst);
                s.level < r.source_burst
            });
        }
        let room = sources.len() < self.capacity;
        let mut own = if room {
            Some(
                sources
                    .entry(source)
                    .or_insert_with(|| Bucket::full(r.source_burst, now)),
            )
        } else {
            sources.get_mut(&source)
        };
        if let Some(own) = own.as_deref_mut() {
            own.refill(now, r.per_source, r.source_burst);
            if own.level < 1.0 {
                return Err(Refused::Source);
            }
        }
        global.refill(now, r.global, r.global_burst);
        if global.level < 1.0 {
            return Err(Refused::Global);
        }
        if let Some(own) = own {
            own.level -= 1.0;
        }
        global.level -= 1.0;
        Ok(())
    }

    /// Sources currently tracked (tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sources
            .len()
    }
}

/// One log line per key per `interval`; the lines in between are counted, and the count is
/// reported with the next line logged (`suppressed=N`).
pub struct LineLimiter<K> {
    interval: Duration,
    windows: Mutex<HashMap<K, (Instant, u64)>>,
}

impl<K: Eq + Hash> LineLimiter<K> {
    pub fn new(interval: Duration) -> LineLimiter<K> {
        LineLimiter {
            interval,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when this event is to be logged, with the number of events of
    /// the same key that were not logged since the last line; `None` to stay quiet.
    pub fn note(&self, key: K, now: Instant) -> Option<u64> {
        let mut w = self.windows();
        match w.get_mut(&key) {
            Some((started, suppressed)) if now.duration_since(*started) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((started, suppressed)) => {
                *started = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                w.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// Closes the windows that are over at `now` and forgets them, so the table only holds
    /// recent keys: returns each closed key that suppressed lines, with its count.
    pub fn flush(&self, now: Instant) -> Vec<(K, u64)>
    where
        K: Clone,
    {
        let mut closed = Vec::new();
        self.windows().retain(|key, (started, suppressed)| {
            if now.duration_since(*started) < self.interval {
                return true;
            }
            if *suppressed > 0 {
                closed.push((key.clone(), *suppressed));
            }
            false
        });
        closed
    }

    /// The window length.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, u64)>> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: Rates = Rates {
        per_source: 2.0,
        source_burst: 3.0,
        global: 10.0,
        global_burst: 5.0,
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = crate::clock::instant();
        let l = SourceLimiter::new(RATES, 100, t0);
        for _ in 0..3 {
            assert_eq!(l.admit(ip(1), t0), Ok(()));
        }
        assert_eq!(l.admit(ip(1), t0), Err(Refused::Source));
        // Another source is not held back by the first one.
        assert_eq!(l.admit(ip(2), t0), Ok(()));
        // Half a second later at 2/s: one more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.admit(ip(1), t1), Ok(()));
        assert_eq!(l.admit(ip(1), t1), Err(Refused::Source));
    }

    #[test]
    fn the_global_bucket_caps_all_sources_together() {
        let t0 = crate::clock::instant();
        let l = SourceLimiter::new(RATES, 100, t0);
        let admitted = (1..=20).filter(|n| l.admit(ip(*n), t0).is_ok()).count();
        assert_eq!(admitted, 5, "global burst");
        assert_eq!(l.admit(ip(30), t0), Err(Refused::Global));
        assert_eq!(l.admit(ip(30), t0 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn the_source_table_stays_bounded() {
        let t0 = crate::clock::instant();
        let rates = Rates {
            global: 1e9,
            global_burst: 1e9,
            ..RATES
        };
        let l = SourceLimiter::new(rates, 4, t0);
        for n in 0..200u8 {
            assert!(l.admit(ip(n), t0).is_ok());
        }
        assert!(l.tracked() <= 4);
        // Once their buckets refilled, old sources are forgotten to make room.
        let later = t0 + Duration::from_secs(10);
        assert!(l.admit(ip(250), later).is_ok());
        assert!(l.tracked() <= 4);
    }

    #[test]
    fn lines_are_limited_per_key_with_a_count() {
        let t0 = crate::clock::instant();
        let l = LineLimiter::new(Duration::from_secs(10));
        assert_eq!(l.note("key", t0), Some(0));
        assert_eq!(l.note("key", t0 + Duration::from_secs(1)), None);
        assert_eq!(l.note("key", t0 + Duration::from_secs(2)), None);
        assert_eq!(l.note("other", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(l.note("key", t0 + Duration::from_secs(11)), Some(2));
    }

    #[test]
    fn flushing_closes_the_windows_that_are_over_and_counts_what_they_kept_quiet() {
        let t0 = crate::clock::instant();
        let every = Duration::from_secs(10);
        let l = LineLimiter::new(every);
        assert_eq!(l.note("loud", t0), Some(0));
        assert_eq!(l.note("loud", t0), None);
        assert_eq!(l.note("quiet", t0), Some(0));
        assert_eq!(l.note("late", t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(l.note("late", t0 + Duration::from_secs(6)), None);
        // At t0 + 10 s only the windows opened at t0 are over; the quiet one is forgotten
        // without a line.
        assert_eq!(l.flush(t0 + every), vec![("loud", 1)]);
        assert_eq!(l.note("loud", t0 + every), Some(0), "a fresh window");
        assert_eq!(l.flush(t0 + Duration::from_secs(15)), vec![("late", 1)]);
        assert!(l.flush(t0 + Duration::from_secs(100)).is_empty());
    }
}
