//! The password sprayer: an open loop of Access-Requests with a wrong password, sent at a
//! fixed rate whatever the server answers, for many user IDs (a mix of stored users and IDs
//! the store has never seen), all from one gateway. No retransmission: a request the
//! server does not answer within `timeout` counts as dropped.
//!
//! [`Schedule`] decides when request `k` leaves, whose ID it names and which socket and
//! identifier carry it; [`run`] sends and collects.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use crate::radius::{self, Request};
use crate::stats::{self, Latency};
use crate::users;

/// A wrong password with six digits after it, so the server sees the shape of a real login.
pub const WRONG_PASSWORD: &str = "Spray-Guess-2024000000";

/// Identifiers per socket (RADIUS's one octet).
const IDS: u64 = 256;

#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    pub secret: Vec<u8>,
    pub schedule: Schedule,
    pub duration: Duration,
    /// A request unanswered this long after it left is dropped.
    pub timeout: Duration,
    pub password: String,
    pub nas_identifier: String,
}

/// Who request `k` names and when it leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// Stored users `known_first .. known_first + known_count` are sprayed ...
    pub known_first: u64,
    pub known_count: u64,
    /// ... and IDs from `unknown_first` up, which the store does not hold.
    pub unknown_first: u64,
    /// Of every 100 requests, this many name an unknown ID.
    pub unknown_percent: u64,
}

/// The user a spray request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Known(u64),
    Unknown(u64),
}

impl Target {
    pub fn index(self) -> u64 {
        match self {
            Target::Known(i) | Target::Unknown(i) => i,
        }
    }
}

impl Schedule {
    /// When request `k` leaves, counted from the start of the run.
    pub fn send_at(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate.max(1e-3))
    }

    /// Requests that leave within `d`.
    pub fn requests_in(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.rate.max(0.0)).ceil() as u64
    }

    /// The ID request `k` names: unknown ones spread evenly among the known (so every
    /// second of the spray has the same mix), each ID named once while the range lasts.
    pub fn target(&self, k: u64) -> Target {
        let pct = if self.known_count == 0 {
            100
        } else {
            self.unknown_percent.min(100)
        };
        // Request k is unknown when it carries the running count of unknowns over a step.
        let unknowns_before = |n: u64| n * pct / 100;
        let unknown_seen = unknowns_before(k);
        if unknowns_before(k + 1) > unknown_seen {
            Target::Unknown(self.unknown_first + unknown_seen)
        } else {
            let known_seen = k - unknown_seen;
            Target::Known(self.known_first + known_seen % self.known_count.max(1))
        }
    }

    /// Sockets needed so that an identifier is reused only after `timeout` has passed.
    pub fn sockets_for(&self, timeout: Duration) -> usize {
        let in_flight = (self.rate.max(0.0) * timeout.as_secs_f64()).ceil() as u64 + 1;
        usize::try_from(in_flight.div_ceil(IDS).max(1)).unwrap_or(1)
    }

    /// The socket and identifier that carry request `k` over `sockets` sockets.
    pub fn slot(k: u64, sockets: usize) -> (usize, u8) {
        let s = sockets.max(1) as u64;
        ((k % s) as usize, ((k / s) % IDS) as u8)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub rate: f64,
    pub sent: u64,
    pub sent_known: u64,
    pub sent_unknown: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub challenges: u64,
    /// No answer at all.
    pub dropped: u64,
    /// Answered, but after the timeout, when a gateway would have given up (not counted in
    /// accepts, rejects or challenges).
    pub late: u64,
    pub invalid_replies: u64,
    pub elapsed_s: f64,
    /// Answered requests per second of the run.
    pub answered_rps: f64,
    pub latency: Latency,
}

struct Pending {
    request: Request,
    sent: Instant,
}

#[derive(Default)]
struct Counts {
    accepts: u64,
    rejects: u64,
    challenges: u64,
    invalid: u64,
    late: u64,
    latencies_us: Vec<u32>,
}

/// One socket's requests in flight, by identifier.
struct Lane {
    socket: UdpSocket,
    pending: Mutex<Vec<Option<Pending>>>,
}

/// Sends the spray for `duration` at the schedule's rate and reports what came back.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let sockets = opts.schedule.sockets_for(opts.timeout);
    let mut lanes = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let bind: SocketAddr = if opts.target.is_ipv6() {
            "[::1]:0".parse()?
        } else {
            "127.0.0.1:0".parse()?
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(opts.target).await?;
        lanes.push(Arc::new(Lane {
            socket,
            pending: Mutex::new((0..IDS).map(|_| None).collect()),
        }));
    }
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut receivers = tokio::task::JoinSet::new();
    for lane in &lanes {
        receivers.spawn(receive(
            lane.clone(),
            counts.clone(),
            opts.secret.clone(),
            opts.timeout,
        ));
    }
    let start = tokio::time::Instant::now();
    let total = opts.schedule.requests_in(opts.duration);
    let (mut sent, mut sent_known, mut dropped) = (0u64, 0u64, 0u64);
    for k in 0..total {
        tokio::time::sleep_until(start + opts.schedule.send_at(k)).await;
        let target = opts.schedule.target(k);
        let (lane, id) = Schedule::slot(k, sockets);
        let authenticator: [u8; 16] = rand::random();
        let request = radius::access_request(
            &opts.secret,
            id,
            authenticator,
            &users::login_id(target.index()),
            opts.password.as_bytes(),
            &opts.nas_identifier,
        )
        .map_err(|e| anyhow::anyhow!("cannot build a spray request: {e:?}"))?;
        let lane = &lanes[lane];
        if let Ok(mut p) = lane.pending.lock() {
            // An identifier comes round again only after the timeout: its holder is dropped.
            if p[usize::from(id)].take().is_some() {
                dropped += 1;
            }
            p[usize::from(id)] = Some(Pending {
                request: request.clone(),
                sent: Instant::now(),
            });
        }
        let _ = lane.socket.send(&request.bytes).await;
        sent += 1;
        if matches!(target, Target::Known(_)) {
            sent_known += 1;
        }
    }
    // The last requests get their full timeout too.
    tokio::time::sleep(opts.timeout).await;
    receivers.abort_all();
    let elapsed = start.elapsed().as_secs_f64();
    for lane in &lanes {
        if let Ok(p) = lane.pending.lock() {
            dropped += p.iter().filter(|s| s.is_some()).count() as u64;
        }
    }
    let mut c = std::mem::take(&mut *counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let answered = c.accepts + c.rejects + c.challenges;
    Ok(Report {
        target: opts.target.to_string(),
        rate: opts.schedule.rate,
        sent,
        sent_known,
        sent_unknown: sent - sent_known,
        accepts: c.accepts,
        rejects: c.rejects,
        challenges: c.challenges,
        dropped,
        late: c.late,
        invalid_replies: c.invalid,
        elapsed_s: elapsed,
        answered_rps: answered as f64 / elapsed.max(1e-9),
        latency: stats::summarize(&mut c.latencies_us),
    })
}

/// Matches one socket's replies to its requests in flight.
async fn receive(lane: Arc<Lane>, counts: Arc<Mutex<Counts>>, secret: Vec<u8>, timeout: Duration) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok(n) = lane.socket.recv(&mut buf).await else {
            // ICMP port unreachable and the like: nobody listens (yet).
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(bytes) = buf.get(..n) else { continue };
        let Some(&id) = bytes.get(1) else { continue };
        let Ok(mut pending) = lane.pending.lock() else {
            return;
        };
        let slot = &mut pending[usize::from(id)];
        let Some(p) = slot.as_ref() else { continue };
        let checked = radius::check_reply(&secret, &p.request, bytes);
        let Ok(mut c) = counts.lock() else { return };
        match checked {
            Ok(_) if p.sent.elapsed() > timeout => {
                c.late += 1;
                *slot = None;
            }
            Ok(reply) => {
                let us = u32::try_from(p.sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                c.latencies_us.push(us);
                match reply.code {
                    radius::ACCESS_ACCEPT => c.accepts += 1,
                    radius::ACCESS_CHALLENGE => c.challenges += 1,
                    _ => c.rejects += 1,
                }
                *slot = None;
            }
            // A late answer to the identifier's previous holder.
            Err(radius::ReplyError::BadResponseAuthenticator) => {}
            Err(_) => c.invalid += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate: f64, unknown_percent: u64) -> Schedule {
        Schedule {
            rate,
            known_first: 100,
            known_count: 10,
            unknown_first: 5000,
            unknown_percent,
        }
    }

    #[test]
    fn requests_leave_at_the_rate() {
        let s = schedule(50.0, 50);
        assert_eq!(s.send_at(0), Duration::ZERO);
        assert_eq!(s.send_at(50), Duration::from_secs(1));
        assert_eq!(s.send_at(25), Duration::from_millis(500));
        assert_eq!(s.requests_in(Duration::from_secs(3)), 150);
        assert_eq!(schedule(1.5, 0).requests_in(Duration::from_secs(1)), 2);
    }

    #[test]
    fn the_mix_of_unknown_and_known_ids_holds_in_every_stretch() {
        let s = schedule(100.0, 30);
        let targets: Vec<Target> = (0..1000).map(|k| s.target(k)).collect();
        let unknown = |t: &[Target]| t.iter().filter(|t| matches!(t, Target::Unknown(_))).count();
        assert_eq!(unknown(&targets), 300);
        for chunk in targets.chunks(10) {
            assert_eq!(unknown(chunk), 3, "{chunk:?}");
        }
        // Unknown IDs are never repeated and lie outside the stored range.
        let mut ids: Vec<u64> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Unknown(i) => Some(*i),
                Target::Known(_) => None,
            })
            .collect();
        assert!(ids.iter().all(|&i| i >= 5000));
        ids.dedup();
        assert_eq!(ids.len(), 300);
        // Known IDs go round the sprayed range only.
        assert!(targets
            .iter()
            .all(|t| !matches!(t, Target::Known(i) if !(100..110).contains(i))));
    }

    #[test]
    fn all_known_all_unknown_and_no_known_range() {
        let s = schedule(10.0, 0);
        assert!((0..50).all(|k| matches!(s.target(k), Target::Known(_))));
        let s = schedule(10.0, 100);
        assert!((0..50).all(|k| matches!(s.target(k), Target::Unknown(_))));
        let s = Schedule {
            known_count: 0,
            ..schedule(10.0, 20)
        };
        assert!((0..50).all(|k| matches!(s.target(k), Target::Unknown(_))));
    }

    #[test]
    fn an_identifier_is_reused_only_after_the_timeout() {
        let s = schedule(600.0, 50);
        let timeout = Duration::from_secs(2);
        let sockets = s.sockets_for(timeout);
        assert_eq!(sockets, 5, "1201 in flight over 256 identifiers");
        let first = Schedule::slot(0, sockets);
        let again = (1..100_000u64)
            .find(|&k| Schedule::slot(k, sockets) == first)
            .expect("reused");
        assert!(s.send_at(again) >= timeout, "{:?}", s.send_at(again));
        assert_eq!(schedule(1.0, 0).sockets_for(timeout), 1);
    }
}
