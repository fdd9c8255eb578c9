//! RFC 5080 §2.2.2 duplicate detection: a retransmission (same source address and port,
//! Identifier and Request Authenticator) is answered with the reply already sent, byte for
//! byte, and never evaluated again. A retransmission of a request still being worked on is
//! dropped. Bounded: completed replies by count, total size and age; requests in progress
//! by the in-flight limit the caller enforces.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// What makes two datagrams the same request (RFC 5080 §2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DedupKey {
    pub src: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

/// What the cache knows of a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Never seen (or forgotten): evaluate it.
    New,
    /// Being worked on right now.
    InProgress,
    /// Already answered: resend these bytes. `None`: it was decided to send nothing.
    Done(Option<Arc<[u8]>>),
}

struct Entry {
    seq: u64,
    expires: Instant,
    reply: Option<Arc<[u8]>>,
}

/// The duplicate cache: owns the replies already sent (until they expire) and the keys of
/// the requests being answered.
pub(crate) struct ReplyCache {
    ttl: Duration,
    capacity: usize,
    done: HashMap<DedupKey, Entry>,
    /// Insertion order of `done`; an item whose seq no longer matches its entry is stale.
    order: VecDeque<(Instant, u64, DedupKey)>,
    in_progress: HashSet<DedupKey>,
    next_seq: u64,
    bytes: usize,
    max_bytes: usize,
}

impl ReplyCache {
    /// `max_bytes` bounds the replies' total size, whatever their count.
    pub(crate) fn new(ttl: Duration, capacity: usize, max_bytes: usize) -> Self {
        ReplyCache {
            ttl,
            capacity: capacity.max(1),
            done: HashMap::new(),
            order: VecDeque::new(),
            in_progress: HashSet::new(),
            next_seq: 0,
            bytes: 0,
            max_bytes,
        }
    }

    pub(crate) fn seen(&mut self, key: &DedupKey, now: Instant) -> Seen {
        self.expire(now);
        if self.in_progress.contains(key) {
            return Seen::InProgress;
        }
        match self.done.get(key) {
            Some(entry) if entry.expires > now => Seen::Done(entry.reply.clone()),
            _ => Seen::New,
        }
    }

    /// Marks a request as being worked on.
    pub(crate) fn start(&mut self, key: DedupKey) {
        self.in_progress.insert(key);
    }

    /// Records the reply that was sent (or `None`: nothing will be sent).
    pub(crate) fn finish(&mut self, key: DedupKey, reply: Option<Arc<[u8]>>, now: Instant) {
        self.in_progress.remove(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now + self.ttl;
        self.bytes += reply.as_ref().map_or(0, |r| r.len());
        let entry = Entry {
            seq,
            expires,
            reply,
        };
        if let Some(old) = self.done.insert(key, entry) {
            self.bytes -= old.reply.map_or(0, |r| r.len());
        }
        self.order.push_back((expires, seq, key));
        while self.order.len() > self.capacity || self.bytes > self.max_bytes {
            self.pop_oldest();
        }
        self.expire(now);
    }

    /// Forgets a request that ended without a reply being decided (its task died):
    /// a retransmission will be evaluated.
    pub(crate) fn abandon(&mut self, key: &DedupKey) {
        self.in_progress.remove(key);
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(exp, _, _)| *exp <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, seq, key)) = self.order.pop_front() {
            if self.done.get(&key).is_some_and(|e| e.seq == seq) {
                if let Some(old) = self.done.remove(&key) {
                    self.bytes -= old.reply.map_or(0, |r| r.len());
                }
            }
        }
    }

    /// Replies kept and requests in progress at `now` (expired replies are forgotten first).
    pub(crate) fn len(&mut self, now: Instant) -> (usize, usize) {
        self.expire(now);
        (self.done.len(), self.in_progress.len())
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
