//! What the RADIUS layer counts and how full its tables are: the counters the engine bumps,
//! the tables it shares with the metrics scrape, and the handle `otpctl status` and the
//! scrape read them through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::dedup::ReplyCache;
use super::events::DropReason;
use super::lock;
use super::state::StateStore;

/// Counters since start, for `otpctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusStats {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub challenged: u64,
    pub status_server: u64,
    /// Retransmissions answered from the duplicate cache.
    pub resent_from_cache: u64,
    pub dropped: Vec<(DropReason, u64)>,
    /// Requests being evaluated or held back by the reject delay right now.
    pub in_flight: usize,
}

impl RadiusStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// How full the duplicate cache and the State table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSizes {
    /// Replies kept for retransmissions, and requests being answered.
    pub reply_cache: usize,
    /// Access-Challenge States waiting for their OTP.
    pub challenge_states: usize,
}

/// The numbers behind [`RadiusStats`]: owned by the engine, shared with stats handles (so
/// not generic over the handler).
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) challenged: AtomicU64,
    pub(crate) status_server: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) dropped: [AtomicU64; DropReason::ALL.len()],
    permits: Arc<Semaphore>,
    max_in_flight: u32,
}

impl Counters {
    /// All zero; `in_flight` is read off the engine's in-flight `permits`.
    pub(crate) fn new(permits: Arc<Semaphore>, max_in_flight: u32) -> Counters {
        Counters {
            received: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            challenged: AtomicU64::new(0),
            status_server: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            dropped: Default::default(),
            permits,
            max_in_flight,
        }
    }

    pub(crate) fn snapshot(&self) -> RadiusStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RadiusStats {
            received: get(&self.received),
            accepted: get(&self.accepted),
            rejected: get(&self.rejected),
            challenged: get(&self.challenged),
            status_server: get(&self.status_server),
            resent_from_cache: get(&self.resent),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (*r, get(&self.dropped[r.index()])))
                .collect(),
            in_flight: (self.max_in_flight as usize)
                .saturating_sub(self.permits.available_permits()),
        }
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The engine's bounded tables (the duplicate cache and the challenge States), shared with
/// the metrics scrape so that their sizes are read when asked (and expired entries dropped
/// first), not only when a request is answered.
#[derive(Clone)]
pub(crate) struct Tables {
    pub(crate) cache: Arc<Mutex<ReplyCache>>,
    pub(crate) states: Arc<Mutex<StateStore>>,
}

impl Tables {
    pub(crate) fn sizes(&self, now: Instant) -> TableSizes {
        let (done, in_progress) = lock(&self.cache).len(now);
        TableSizes {
            reply_cache: done + in_progress,
            challenge_states: lock(&self.states).len(now),
        }
    }
}

/// Reads the counters and table sizes of a running (or finished) server.
#[derive(Clone)]
pub struct RadiusStatsHandle {
    counters: Arc<Counters>,
    tables: Tables,
}

impl RadiusStatsHandle {
    pub(crate) fn new(counters: Arc<Counters>, tables: Tables) -> Self {
        RadiusStatsHandle { counters, tables }
    }

    pub fn snapshot(&self) -> RadiusStats {
        self.counters.snapshot()
    }

    /// The tables' sizes at `now`, entries expired by then not counted.
    pub fn table_sizes(&self, now: Instant) -> TableSizes {
        self.tables.sizes(now)
    }
}
