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

/// Per-source and global token buckets. A source is an IPv4 address or an IPv6 /64
/// ([`source_key`]). The global bucket caps only the sources that already used their share:
/// a source that has spent less than half its own burst is admitted even when the global
/// bucket is empty, so a flood (whose sources have emptied their own buckets) cannot make
/// every customer's page answer 429; what it costs the node is bounded by the per-source
/// rate, by the sign-ins' own line ([`crate::schedule::Class::Web`]) and the connection cap.
/// The table of sources is bounded: when it is full, sources whose bucket has refilled are
/// forgotten (they are back to a full bucket anyway), and if none has, a new source shares
/// the global bucket only (and has no share that passes it).
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
        let source = source_key(source);
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
        let within_share = own
            .as_deref()
            .is_some_and(|o| o.level > r.source_burst / 2.0);
        if global.level < 1.0 && !within_share {
            return Err(Refused::Global);
        }
        if let Some(own) = own {
            own.level -= 1.0;
        }
        global.level = (global.level - 1.0).max(0.0);
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

/// The key a source address is limited by: an IPv4 address as it is (also when it
/// arrives IPv4-mapped), an IPv6 address by its /64, the prefix one subscriber gets (one
/// host can use all of it, so its addresses are one source).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
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
    fn the_global_bucket_caps_the_sources_that_used_their_share() {
        let t0 = crate::clock::instant();
        let l = SourceLimiter::new(RATES, 100, t0);
        // Sources 1..=5 take the global burst.
        assert!((1..=5).all(|n| l.admit(ip(n), t0).is_ok()));
        // With two of its three left, source 1 is within its share (above half): admitted;
        // its third request would leave it below half: the empty global bucket caps it.
        assert_eq!(l.admit(ip(1), t0), Ok(()));
        assert_eq!(l.admit(ip(1), t0), Err(Refused::Global));
        // A source that has used nothing yet gets its share, then is capped too.
        assert_eq!(l.admit(ip(30), t0), Ok(()));
        assert_eq!(l.admit(ip(30), t0), Ok(()));
        assert_eq!(l.admit(ip(30), t0), Err(Refused::Global));
        // The global bucket refills (10/s): source 1 is admitted again.
        assert_eq!(l.admit(ip(1), t0 + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn a_flood_from_many_sources_leaves_a_newcomer_its_pages() {
        let t0 = crate::clock::instant();
        let rates = Rates {
            per_source: 2.0,
            source_burst: 30.0,
            global: 100.0,
            global_burst: 200.0,
        };
        let l = SourceLimiter::new(rates, 1000, t0);
        // 100 flooders, each at its full burst: the global bucket is empty.
        for n in 0..100u8 {
            for _ in 0..30 {
                let _ = l.admit(ip(n), t0);
            }
        }
        assert_eq!(l.admit(ip(1), t0), Err(Refused::Source));
        // A customer's first pages still load: 15 of its 30 are within its share.
        let customer = IpAddr::from([192, 0, 2, 1]);
        let pages = (0..20).filter(|_| l.admit(customer, t0).is_ok()).count();
        assert_eq!(pages, 15, "requests while its bucket is above half");
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64_and_ipv4_by_address() {
        let v6 = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(source_key(v6("2001:db8:1:2::1")), v6("2001:db8:1:2::"));
        assert_eq!(
            source_key(v6("2001:db8:1:2:ffff:eeee:dddd:cccc")),
            v6("2001:db8:1:2::")
        );
        assert_ne!(source_key(v6("2001:db8:1:3::1")), v6("2001:db8:1:2::"));
        assert_eq!(source_key(v6("::ffff:192.0.2.7")), v6("192.0.2.7"));
        assert_ne!(source_key(v6("192.0.2.7")), source_key(v6("192.0.2.8")));
        // One /64 with a fresh address per request is still one source.
        let t0 = crate::clock::instant();
        let rates = Rates {
            global: 1e9,
            global_burst: 1e9,
            ..RATES
        };
        let l = SourceLimiter::new(rates, 100, t0);
        let admitted = (1..=10u16)
            .filter(|n| l.admit(v6(&format!("2001:db8:1:2::{n:x}")), t0).is_ok())
            .count();
        assert_eq!(admitted, 3, "the /64's burst");
        assert_eq!(l.admit(v6("2001:db8:1:3::1"), t0), Ok(()), "the next /64");
        assert_eq!(l.tracked(), 2);
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
