//! Outstanding challenges: the `State` values sent in Access-Challenges. Each is random,
//! bound to one user and one client, short-lived and usable once. Bounded by count; the
//! oldest is forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore;
use tokio::time::Instant;

pub(crate) const STATE_LEN: usize = 16;

/// Why a State was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateError {
    Unknown,
    Expired,
    OtherUserOrClient,
}

struct Entry {
    seq: u64,
    expires: Instant,
    user: String,
    client: Arc<str>,
}

/// Owns the outstanding challenge States: who and which client each was issued to, and
/// until when it is valid.
pub(crate) struct StateStore {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<[u8; STATE_LEN], Entry>,
    /// Issue order; an item whose seq no longer matches its entry is stale.
    order: VecDeque<(Instant, u64, [u8; STATE_LEN])>,
    next_seq: u64,
}

impl StateStore {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        StateStore {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Issues a fresh State for `user` through `client`.
    pub(crate) fn issue(&mut self, user: &str, client: &Arc<str>, now: Instant) -> [u8; STATE_LEN] {
        self.expire(now);
        let mut state = [0u8; STATE_LEN];
        loop {
            OsRng.fill_bytes(&mut state);
            if !self.entries.contains_key(&state) {
                break;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now + self.ttl;
        self.entries.insert(
            state,
            Entry {
                seq,
                expires,
                user: user.to_owned(),
                client: Arc::clone(client),
            },
        );
        self.order.push_back((expires, seq, state));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        state
    }

    /// Consumes the State if it was issued to this user through this client and is still
    /// valid. A State presented by another user or client is left for its owner.
    pub(crate) fn take(
        &mut self,
        state: &[u8],
        user: &str,
        client: &str,
        now: Instant,
    ) -> Result<(), StateError> {
        self.expire(now);
        let key: [u8; STATE_LEN] = state.try_into().map_err(|_| StateError::Unknown)?;
        let entry = self.entries.get(&key).ok_or(StateError::Unknown)?;
        if entry.expires <= now {
            self.entries.remove(&key);
            return Err(StateError::Expired);
        }
        if entry.user != user || &*entry.client != client {
            return Err(StateError::OtherUserOrClient);
        }
        self.entries.remove(&key);
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(exp, _, _)| *exp <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, seq, key)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
            }
        }
    }

    /// States still usable at `now` (expired ones are forgotten first).
    pub(crate) fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.entries.len()
    }
}
