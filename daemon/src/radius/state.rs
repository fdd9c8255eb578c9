//! Challenge `State`s: what an Access-Challenge carries and the answer brings back. A State
//! is signed, not remembered: it names its expiry and a random nonce, and a tag binds both
//! to the user and the client (HMAC-SHA-256 under a key derived from `key_file`, which every
//! node of a bank shares). So the answer may reach any node, which checks the tag and the
//! expiry by itself. Single use: this node refuses a State it has already taken, and the
//! handler marks the nonce used in the shared store (`Store::use_once`), which catches a
//! State taken on another node.
//!
//! Layout (41 bytes): version 1, expiry in Unix milliseconds (8, big-endian), nonce (16),
//! tag (the first 16 bytes of the HMAC over version, expiry, nonce, client and user).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
pub(crate) const STATE_LEN: usize = 1 + 8 + NONCE_LEN + TAG_LEN;

/// Why a State was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateError {
    /// Not a State otpd made for this user through this client.
    Unknown,
    Expired,
    /// Already answered on this node.
    Used,
}

/// The key that signs States. Never printed.
pub struct StateKey(Zeroizing<[u8; 32]>);

impl StateKey {
    /// The key every node sharing `key_file` derives alike.
    pub fn new(key: Zeroizing<[u8; 32]>) -> StateKey {
        StateKey(key)
    }

    /// A key of this process alone: the States it signs are valid on this node only.
    pub fn random() -> StateKey {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        StateKey(key)
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

/// A State that passed its checks: what the shared store marks used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTicket {
    pub nonce: [u8; NONCE_LEN],
    /// When the State stops being valid, in Unix milliseconds.
    pub expires_at_ms: i64,
}

impl StateTicket {
    /// The key under which the shared store remembers the State was used.
    pub fn once_key(&self) -> Vec<u8> {
        let mut key = b"radius-state:".to_vec();
        key.extend_from_slice(&self.nonce);
        key
    }

    /// The second after which nobody needs to remember it.
    pub fn expires_at(&self) -> i64 {
        self.expires_at_ms.div_euclid(1000) + 1
    }
}

/// Makes and checks States, and remembers the ones this node issued or took while they are
/// valid (bounded by count: the oldest is forgotten first, which only loosens the local
/// check; the store's mark stays).
pub(crate) struct StateStore {
    key: Arc<StateKey>,
    ttl: Duration,
    capacity: usize,
    /// Nonce → whether it was taken here, and the sequence number of its latest entry.
    seen: HashMap<[u8; NONCE_LEN], (bool, u64)>,
    /// Issue or take order, with the monotonic expiry of each; an item whose sequence
    /// number no longer matches its nonce's entry is stale.
    order: VecDeque<(Instant, u64, [u8; NONCE_LEN])>,
    next_seq: u64,
}

impl StateStore {
    pub(crate) fn new(key: Arc<StateKey>, ttl: Duration, capacity: usize) -> Self {
        StateStore {
            key,
            ttl,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Issues a fresh State for `user` through `client`; `now_ms` is the wall time of `now`.
    pub(crate) fn issue(&mut self, user: &str, client: &str, now: Instant, now_ms: i64) -> Vec<u8> {
        self.expire(now);
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = now_ms.saturating_add(ttl_ms);
        let mut state = Vec::with_capacity(STATE_LEN);
        state.push(VERSION);
        state.extend_from_slice(&expires.to_be_bytes());
        state.extend_from_slice(&nonce);
        let tag = self.tag(&state, user, client);
        state.extend_from_slice(&tag);
        self.remember(nonce, false, now + self.ttl);
        state
    }

    /// Checks the State for this user and client at wall time `now_ms`, and takes it: a
    /// second answer with it on this node is refused. A State presented by another user or
    /// client is left for its owner.
    pub(crate) fn take(
        &mut self,
        state: &[u8],
        user: &str,
        client: &str,
        now: Instant,
        now_ms: i64,
    ) -> Result<StateTicket, StateError> {
        self.expire(now);
        if state.len() != STATE_LEN || state[0] != VERSION {
            return Err(StateError::Unknown);
        }
        let (signed, tag) = state.split_at(STATE_LEN - TAG_LEN);
        if !bool::from(self.tag(signed, user, client).ct_eq(tag)) {
            return Err(StateError::Unknown);
        }
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&signed[1..9]);
        let expires_at_ms = i64::from_be_bytes(expires);
        if now_ms >= expires_at_ms {
            return Err(StateError::Expired);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&signed[9..]);
        if self.seen.get(&nonce).is_some_and(|(taken, _)| *taken) {
            return Err(StateError::Used);
        }
        let left = Duration::from_millis(u64::try_from(expires_at_ms - now_ms).unwrap_or(0));
        self.remember(nonce, true, now.checked_add(left).unwrap_or(now + self.ttl));
        Ok(StateTicket {
            nonce,
            expires_at_ms,
        })
    }

    fn tag(&self, signed: &[u8], user: &str, client: &str) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(signed);
        // Lengths first, so no (client, user) pair can be read as another.
        mac.update(
            &u16::try_from(client.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        mac.update(client.as_bytes());
        mac.update(user.as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        tag
    }

    /// Remembers `nonce` (issued, or taken) until `until`.
    fn remember(&mut self, nonce: [u8; NONCE_LEN], taken: bool, until: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.seen.insert(nonce, (taken, seq));
        self.order.push_back((until, seq, nonce));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(exp, _, _)| *exp <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, seq, nonce)) = self.order.pop_front() {
            if self.seen.get(&nonce).is_some_and(|(_, s)| *s == seq) {
                self.seen.remove(&nonce);
            }
        }
    }

    /// States this node issued that are still valid at `now` and not answered here.
    pub(crate) fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.seen.values().filter(|(taken, _)| !taken).count()
    }
}
