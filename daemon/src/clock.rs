//! The daemon's one reading of the clocks. The wall clock is a [`Clock`] value that [`Ops`]
//! holds and hands to the core as `now`; deadlines and delays are `tokio::time::Instant`s
//! from [`instant`], so tests move both with tokio's paused time instead of sleeping.
//!
//! [`Ops`]: crate::ops::Ops

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use otpd_core::UnixTime;

/// The wall clock the daemon tells the core and the mail outbox: the system's in
/// production; in tests one that starts at a chosen time and moves only with tokio's clock
/// (paused in tests, moved by `tokio::time::advance`) or [`Clock::set`].
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    /// Seconds at `origin`, plus tokio's time elapsed since then.
    Settable(Arc<Settable>),
}

#[derive(Debug)]
struct Settable {
    offset: AtomicI64,
    origin: tokio::time::Instant,
}

impl Settable {
    /// Whole seconds of tokio's time since the clock was made.
    fn elapsed(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_secs()).unwrap_or(i64::MAX)
    }
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock standing at `at`, moving on with tokio's clock: with tokio's time paused it
    /// stays at `at` until the test advances it.
    pub fn starting_at(at: UnixTime) -> Clock {
        Clock(Source::Settable(Arc::new(Settable {
            offset: AtomicI64::new(at),
            origin: tokio::time::Instant::now(),
        })))
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> UnixTime {
        match &self.0 {
            Source::System => now(),
            Source::Settable(s) => s.offset.load(Ordering::Relaxed).saturating_add(s.elapsed()),
        }
    }

    /// Milliseconds since the Unix epoch (challenge States expire to the millisecond).
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            Source::Settable(s) => {
                let ms = i64::try_from(s.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
                s.offset
                    .load(Ordering::Relaxed)
                    .saturating_mul(1000)
                    .saturating_add(ms)
            }
        }
    }

    /// The wall time, in milliseconds, of the monotonic instant `at` (earlier or later than
    /// now): what a deadline taken from [`instant`] is on this clock.
    pub fn ms_at(&self, at: tokio::time::Instant) -> i64 {
        let now = instant();
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if at >= now {
            self.now_ms().saturating_add(ms(at - now))
        } else {
            self.now_ms().saturating_sub(ms(now - at))
        }
    }

    /// Puts a settable clock at `at` (it moves on from there); the system clock ignores it.
    pub fn set(&self, at: UnixTime) {
        if let Source::Settable(s) = &self.0 {
            s.offset
                .store(at.saturating_sub(s.elapsed()), Ordering::Relaxed);
        }
    }
}

/// The system's wall clock now, in seconds since the Unix epoch.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The monotonic time of deadlines, delays and windows: tokio's clock, which tests pause
/// and advance.
pub fn instant() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_settable_clock_moves_only_with_tokio_time_and_set() {
        let clock = Clock::starting_at(1_800_000_000);
        assert_eq!(clock.now(), 1_800_000_000);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(clock.now(), 1_800_000_000, "whole seconds");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(clock.now(), 1_800_000_001);
        let copy = clock.clone();
        copy.set(1_900_000_000);
        assert_eq!(clock.now(), 1_900_000_000, "clones share one time");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(clock.now(), 1_900_000_060);
    }

    #[tokio::test(start_paused = true)]
    async fn milliseconds_follow_tokio_time_and_instants_map_onto_the_clock() {
        let clock = Clock::starting_at(1_800_000_000);
        assert_eq!(clock.now_ms(), 1_800_000_000_000);
        tokio::time::advance(Duration::from_millis(1_234)).await;
        assert_eq!(clock.now_ms(), 1_800_000_001_234);
        let now = instant();
        assert_eq!(clock.ms_at(now + Duration::from_secs(2)), 1_800_000_003_234);
        assert_eq!(
            clock.ms_at(now - Duration::from_millis(234)),
            1_800_000_001_000
        );
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = now();
        let read = Clock::system().now();
        assert!(read >= before && read <= now());
        Clock::system().set(0);
        assert!(Clock::system().now() >= before);
    }
}
