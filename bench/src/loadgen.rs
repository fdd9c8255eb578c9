//! The load generator: `concurrency` clients, each with its own UDP socket and one request
//! in flight, send PAP Access-Requests (password followed by a valid TOTP code) for the
//! bench users and time the replies. A lost request is retransmitted unchanged after
//! `timeout` (RFC 5080: same identifier and authenticator) up to `retries` times.
//!
//! Which (user, time step) pairs are used is decided by one [`Scheduler`]: against a server
//! that refuses replays (otpd), no pair is ever sent twice and a user's steps only go up.
//!
//! With several targets (nodes of one database) the clients are dealt out over them, and a
//! client whose request times out sends its retransmission to the next target and stays
//! there, as a RADIUS proxy fails over between its home servers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otpd_core::otp::OtpParams;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use crate::radius::{self, Request};
use crate::stats::{self, Latency};
use crate::users;

#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    /// Further servers sharing the load (client `i` starts on target `i mod n`, `target`
    /// first) and taking over a client's requests when its server stops answering.
    pub more_targets: Vec<SocketAddr>,
    /// Keep every request's timing in the report ([`Report::samples`]).
    pub samples: bool,
    pub secret: Vec<u8>,
    /// Users `first_user .. first_user + users` are driven.
    pub first_user: u64,
    pub users: u64,
    pub concurrency: usize,
    /// Stop starting requests after this long ...
    pub duration: Option<Duration>,
    /// ... or after this many (whichever comes first).
    pub requests: Option<u64>,
    /// At most this many requests started a second over all clients (none: as fast as
    /// the replies come back).
    pub rate: Option<f64>,
    pub timeout: Duration,
    pub retries: u32,
    /// Period, digits and algorithm of the codes, and the steps the server accepts either
    /// side of now (`window`).
    pub otp: OtpParams,
    /// The server does not refuse a code twice (FreeRADIUS's rlm_totp): always send the
    /// current step's code, reusing users round-robin.
    pub replay_ok: bool,
    pub password: String,
    pub nas_identifier: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub concurrency: usize,
    pub users: u64,
    /// Requests started (first transmissions).
    pub sent: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub challenges: u64,
    /// Requests never answered, after every retransmission.
    pub lost: u64,
    pub retransmissions: u64,
    /// Replies that failed the Response Authenticator or Message-Authenticator check.
    pub invalid_replies: u64,
    /// Authentic replies without a Message-Authenticator, and with one not first.
    pub replies_without_ma: u64,
    pub replies_ma_not_first: u64,
    /// The run ended early: every user had used every step the server would accept.
    pub exhausted: bool,
    pub elapsed_s: f64,
    /// Answered requests (accepts + rejects + challenges) per second.
    pub throughput_rps: f64,
    pub accept_rps: f64,
    pub latency: Latency,
    /// Wall-clock seconds spent waiting for a step boundary (window 0 only).
    pub boundary_wait_s: f64,
    /// When the run started, in milliseconds since the Unix epoch (to place samples on
    /// another program's clock).
    #[serde(default)]
    pub started_unix_ms: f64,
    /// Answered requests per target, in the order given (`target` first).
    #[serde(default)]
    pub answered_per_target: Vec<u64>,
    /// Every request, when asked for ([`Options::samples`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

/// One request: when it started (ms after the run's start), how long until its answer (ms;
/// lost requests: until given up), how it ended, which target answered (or was last
/// tried), and the bench user it was for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample(pub f64, pub f64, pub Outcome, pub u8, pub u64);

impl Sample {
    pub fn start_ms(&self) -> f64 {
        self.0
    }
    pub fn latency_ms(&self) -> f64 {
        self.1
    }
    /// When it ended: answered, or given up on.
    pub fn end_ms(&self) -> f64 {
        self.0 + self.1
    }
    pub fn outcome(&self) -> Outcome {
        self.2
    }
    pub fn target(&self) -> usize {
        usize::from(self.3)
    }
    pub fn user(&self) -> u64 {
        self.4
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accept,
    Reject,
    Challenge,
    Lost,
}

impl Outcome {
    pub fn answered(self) -> bool {
        self != Outcome::Lost
    }
}

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Send {
        user: u64,
        step: u64,
    },
    /// Too close to a step boundary for a window-0 server: wait this long.
    Wait(Duration),
    /// Every user with a step left has a request in flight: try again shortly.
    Busy,
    Exhausted,
}

/// Hands out (user, step) pairs. Users are visited in a fixed order that strides across the
/// whole range (so a large store is touched everywhere, not in one corner).
#[derive(Debug)]
pub struct Scheduler {
    first: u64,
    count: u64,
    stride: u64,
    cursor: u64,
    /// Per user (by offset): the last step sent, 0 = none yet.
    last: Vec<u64>,
    /// Per user (by offset): a request is in flight. A user's next step waits for it, so a
    /// retransmitted older step never arrives after a newer one was accepted (a replay).
    busy: Vec<bool>,
    period: u64,
    window: u64,
    replay_ok: bool,
    /// The oldest step of the window is used only while at least this much of the current
    /// step remains, so a request (and its retransmissions) still lands inside the window.
    margin: Duration,
}

impl Scheduler {
    pub fn new(
        first: u64,
        count: u64,
        otp: &OtpParams,
        replay_ok: bool,
        margin: Duration,
    ) -> Scheduler {
        let count = count.max(1);
        let stride = [7_919u64, 104_729, 1_000_003, 15_485_863]
            .into_iter()
            .find(|p| count % p != 0)
            .unwrap_or(1)
            % count;
        Scheduler {
            first,
            count,
            stride: if count == 1 { 0 } else { stride.max(1) },
            cursor: 0,
            last: if replay_ok {
                Vec::new()
            } else {
                vec![0; usize::try_from(count).unwrap_or(usize::MAX)]
            },
            busy: if replay_ok {
                Vec::new()
            } else {
                vec![false; usize::try_from(count).unwrap_or(usize::MAX)]
            },
            period: otp.period.max(1),
            window: otp.window,
            replay_ok,
            margin,
        }
    }

    fn offset(&self, k: u64) -> u64 {
        ((u128::from(k % self.count) * u128::from(self.stride)) % u128::from(self.count)) as u64
    }

    /// The next pair at wall-clock time `now` (since the Unix epoch).
    pub fn next(&mut self, now: Duration) -> Next {
        let step = now.as_secs() / self.period;
        let into = now.saturating_sub(Duration::from_secs(step * self.period));
        let remaining = Duration::from_secs(self.period).saturating_sub(into);
        if self.replay_ok {
            if self.window == 0 && remaining < self.margin {
                return Next::Wait(remaining + Duration::from_millis(2));
            }
            let off = self.offset(self.cursor);
            self.cursor = self.cursor.wrapping_add(1);
            return Next::Send {
                user: self.first + off,
                step,
            };
        }
        let oldest = if remaining > self.margin {
            step.saturating_sub(self.window)
        } else {
            step.saturating_sub(self.window.saturating_sub(1))
        };
        let newest = step + self.window;
        let mut saw_busy = false;
        for _ in 0..self.count {
            let off = self.offset(self.cursor);
            self.cursor = self.cursor.wrapping_add(1);
            let Some(i) = usize::try_from(off).ok().filter(|&i| i < self.last.len()) else {
                continue;
            };
            if self.busy[i] {
                saw_busy = true;
                continue;
            }
            let candidate = (self.last[i] + 1).max(oldest);
            if candidate <= newest {
                self.last[i] = candidate;
                self.busy[i] = true;
                return Next::Send {
                    user: self.first + off,
                    step: candidate,
                };
            }
        }
        if saw_busy {
            Next::Busy
        } else {
            Next::Exhausted
        }
    }

    /// The request for `user` is answered or given up on: its next step may go.
    pub fn done(&mut self, user: u64) {
        if let Some(b) = user
            .checked_sub(self.first)
            .and_then(|off| usize::try_from(off).ok())
            .and_then(|i| self.busy.get_mut(i))
        {
            *b = false;
        }
    }
}

#[derive(Default)]
struct Totals {
    sent: u64,
    accepts: u64,
    rejects: u64,
    challenges: u64,
    lost: u64,
    retransmissions: u64,
    invalid: u64,
    without_ma: u64,
    ma_not_first: u64,
    exhausted: bool,
    boundary_wait: Duration,
    latencies_us: Vec<u32>,
    answered_per_target: Vec<u64>,
    samples: Vec<Sample>,
}

impl Totals {
    fn absorb(&mut self, o: Totals) {
        self.sent += o.sent;
        self.accepts += o.accepts;
        self.rejects += o.rejects;
        self.challenges += o.challenges;
        self.lost += o.lost;
        self.retransmissions += o.retransmissions;
        self.invalid += o.invalid;
        self.without_ma += o.without_ma;
        self.ma_not_first += o.ma_not_first;
        self.exhausted |= o.exhausted;
        self.boundary_wait = self.boundary_wait.max(o.boundary_wait);
        self.latencies_us.extend(o.latencies_us);
        if self.answered_per_target.len() < o.answered_per_target.len() {
            self.answered_per_target
                .resize(o.answered_per_target.len(), 0);
        }
        for (mine, theirs) in self
            .answered_per_target
            .iter_mut()
            .zip(o.answered_per_target)
        {
            *mine += theirs;
        }
        self.samples.extend(o.samples);
    }
}

struct Shared {
    opts: Options,
    sched: Mutex<Scheduler>,
    started: AtomicU64,
    deadline: Option<Instant>,
    /// When the last paced request was due to start (with `rate`).
    pace: Mutex<Option<Instant>>,
}

impl Shared {
    /// With a rate: waits for this client's turn. False when the run's deadline came first.
    async fn paced(&self) -> bool {
        let Some(rate) = self.opts.rate.filter(|r| *r > 0.0) else {
            return true;
        };
        let now = Instant::now();
        let due = match self.pace.lock() {
            Ok(mut last) => {
                let due = last
                    .map(|l| l + Duration::from_secs_f64(1.0 / rate))
                    .map_or(now, |d| d.max(now));
                *last = Some(due);
                due
            }
            Err(_) => return false,
        };
        if self.deadline.is_some_and(|d| due >= d) {
            return false;
        }
        tokio::time::sleep_until(due.into()).await;
        true
    }
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the load and reports. Errors only when sockets cannot be made.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let margin = if opts.replay_ok {
        // Window 0: stop short of the boundary by more than a request's usual latency.
        Duration::from_millis(50)
    } else {
        (opts.timeout * (opts.retries + 1) + Duration::from_millis(500))
            .min(Duration::from_secs(opts.otp.period / 4))
    };
    let sched = Scheduler::new(
        opts.first_user,
        opts.users,
        &opts.otp,
        opts.replay_ok,
        margin,
    );
    let targets: Vec<SocketAddr> = std::iter::once(opts.target)
        .chain(opts.more_targets.iter().copied())
        .collect();
    anyhow::ensure!(targets.len() <= 256, "at most 256 targets");
    // Per client, one socket connected to each target (so a late answer from a target the
    // client left is never taken for the current one's), the client's own target first.
    let mut sockets = Vec::with_capacity(opts.concurrency);
    for i in 0..opts.concurrency.max(1) {
        let mut mine = Vec::with_capacity(targets.len());
        for k in 0..targets.len() {
            let target = targets[(i + k) % targets.len()];
            let bind: SocketAddr = if target.is_ipv6() {
                "[::1]:0".parse()?
            } else {
                "127.0.0.1:0".parse()?
            };
            let s = UdpSocket::bind(bind).await?;
            s.connect(target).await?;
            mine.push(((i + k) % targets.len(), s));
        }
        sockets.push(mine);
    }
    let started_unix_ms = wall_clock().as_secs_f64() * 1000.0;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: opts.duration.map(|d| start + d),
        opts: opts.clone(),
        sched: Mutex::new(sched),
        started: AtomicU64::new(0),
        pace: Mutex::new(None),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let shared = shared.clone();
        tasks.spawn(client(
            shared,
            socket,
            (i as u8).wrapping_mul(37),
            start,
            targets.len(),
        ));
    }
    let mut totals = Totals::default();
    while let Some(done) = tasks.join_next().await {
        totals.absorb(done?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let answered = totals.accepts + totals.rejects + totals.challenges;
    Ok(Report {
        target: targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        concurrency: opts.concurrency,
        users: opts.users,
        sent: totals.sent,
        accepts: totals.accepts,
        rejects: totals.rejects,
        challenges: totals.challenges,
        lost: totals.lost,
        retransmissions: totals.retransmissions,
        invalid_replies: totals.invalid,
        replies_without_ma: totals.without_ma,
        replies_ma_not_first: totals.ma_not_first,
        exhausted: totals.exhausted,
        elapsed_s: elapsed,
        throughput_rps: answered as f64 / elapsed.max(1e-9),
        accept_rps: totals.accepts as f64 / elapsed.max(1e-9),
        latency: stats::summarize(&mut totals.latencies_us),
        boundary_wait_s: totals.boundary_wait.as_secs_f64(),
        started_unix_ms,
        answered_per_target: totals.answered_per_target,
        samples: {
            let mut v = totals.samples;
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        },
    })
}

/// One client: one request in flight at a time, on its sockets to each target (its own
/// target first), moving to the next one when its current target does not answer.
async fn client(
    shared: Arc<Shared>,
    sockets: Vec<(usize, UdpSocket)>,
    first_id: u8,
    run_start: Instant,
    targets: usize,
) -> Totals {
    let opts = &shared.opts;
    let mut t = Totals {
        answered_per_target: vec![0; targets],
        ..Totals::default()
    };
    let mut current = 0usize;
    let mut id = first_id;
    let mut buf = vec![0u8; 4096];
    let mut password = String::with_capacity(opts.password.len() + opts.otp.digits);
    loop {
        if shared.deadline.is_some_and(|d| Instant::now() >= d) || !shared.paced().await {
            break;
        }
        if let Some(limit) = opts.requests {
            if shared.started.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
        }
        let next = match shared.sched.lock() {
            Ok(mut s) => s.next(wall_clock()),
            Err(_) => break,
        };
        let (user, step) = match next {
            Next::Send { user, step } => (user, step),
            Next::Wait(d) => {
                if opts.requests.is_some() {
                    // The slot claimed above was not used.
                    shared.started.fetch_sub(1, Ordering::Relaxed);
                }
                t.boundary_wait += d;
                tokio::time::sleep(d).await;
                continue;
            }
            Next::Busy => {
                if opts.requests.is_some() {
                    shared.started.fetch_sub(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Next::Exhausted => {
                t.exhausted = true;
                break;
            }
        };
        password.clear();
        password.push_str(&opts.password);
        password.push_str(&opts.otp.code_for_step(&users::secret(user), step));
        id = id.wrapping_add(1);
        let authenticator: [u8; 16] = rand::random();
        let req = match radius::access_request(
            &opts.secret,
            id,
            authenticator,
            &users::login_id(user),
            password.as_bytes(),
            &opts.nas_identifier,
        ) {
            Ok(r) => r,
            Err(_) => break,
        };
        t.sent += 1;
        let began = Instant::now();
        let outcome = match exchange(opts, &sockets, &mut current, &req, &mut buf, &mut t).await {
            Some(reply) => {
                let us = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
                t.latencies_us.push(us);
                if let Some(n) = t.answered_per_target.get_mut(sockets[current].0) {
                    *n += 1;
                }
                if !reply.message_authenticator {
                    t.without_ma += 1;
                } else if !reply.message_authenticator_first {
                    t.ma_not_first += 1;
                }
                match reply.code {
                    radius::ACCESS_ACCEPT => {
                        t.accepts += 1;
                        Outcome::Accept
                    }
                    radius::ACCESS_CHALLENGE => {
                        t.challenges += 1;
                        Outcome::Challenge
                    }
                    _ => {
                        t.rejects += 1;
                        Outcome::Reject
                    }
                }
            }
            None => {
                t.lost += 1;
                Outcome::Lost
            }
        };
        if opts.samples {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            t.samples.push(Sample(
                ms(began.duration_since(run_start)),
                ms(began.elapsed()),
                outcome,
                u8::try_from(sockets[current].0).unwrap_or(u8::MAX),
                user,
            ));
        }
        if let Ok(mut s) = shared.sched.lock() {
            s.done(user);
        }
    }
    t
}

/// Sends `req` and waits for its authentic reply, retransmitting on timeout: to the next
/// target when there are several (`current` follows, and stays there for the next request).
async fn exchange(
    opts: &Options,
    sockets: &[(usize, UdpSocket)],
    current: &mut usize,
    req: &Request,
    buf: &mut [u8],
    t: &mut Totals,
) -> Option<radius::Reply> {
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            t.retransmissions += 1;
            *current = (*current + 1) % sockets.len();
        }
        let socket = &sockets[*current].1;
        if socket.send(&req.bytes).await.is_err() {
            tokio::time::sleep(opts.timeout).await;
            continue;
        }
        let until = tokio::time::Instant::now() + opts.timeout;
        loop {
            let got = tokio::time::timeout_at(until, socket.recv(buf)).await;
            let n = match got {
                Err(_) => break,
                Ok(Ok(n)) => n,
                Ok(Err(_)) => {
                    // ICMP port unreachable and the like: nobody listens yet.
                    tokio::time::sleep_until(until).await;
                    break;
                }
            };
            let Some(bytes) = buf.get(..n) else { break };
            match radius::check_reply(&opts.secret, req, bytes) {
                Ok(reply) => return Some(reply),
                // A late answer to an earlier request of this client: keep waiting.
                Err(radius::ReplyError::NotOurs) => {}
                Err(_) => t.invalid += 1,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn otp(window: u64) -> OtpParams {
        OtpParams {
            window,
            ..OtpParams::default()
        }
    }

    #[test]
    fn never_the_same_user_and_step_twice() {
        let mut s = Scheduler::new(100, 10, &otp(1), false, Duration::from_secs(3));
        let now = Duration::from_secs(60 * 1000 + 10);
        let mut seen = std::collections::HashSet::new();
        let mut last = std::collections::HashMap::new();
        loop {
            match s.next(now) {
                Next::Send { user, step } => {
                    s.done(user);
                    assert!((100..110).contains(&user));
                    assert!((999..=1001).contains(&step), "{step}");
                    assert!(seen.insert((user, step)), "repeated {user} {step}");
                    if let Some(prev) = last.insert(user, step) {
                        assert!(step > prev, "steps go up");
                    }
                }
                Next::Exhausted => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 30, "three steps for each of ten users");
        // The next minute opens one more step for each user.
        let later = now + Duration::from_secs(60);
        let mut more = 0;
        while let Next::Send { user, step } = s.next(later) {
            s.done(user);
            assert_eq!(step, 1002);
            more += 1;
        }
        assert_eq!(more, 10);
    }

    #[test]
    fn a_user_in_flight_is_not_given_a_newer_step() {
        let mut s = Scheduler::new(0, 2, &otp(1), false, Duration::from_secs(3));
        let now = Duration::from_secs(60 * 1000 + 10);
        let Next::Send { user: a, .. } = s.next(now) else {
            panic!("first")
        };
        let Next::Send { user: b, .. } = s.next(now) else {
            panic!("second")
        };
        assert_ne!(a, b);
        assert_eq!(s.next(now), Next::Busy, "both in flight");
        s.done(a);
        assert!(matches!(s.next(now), Next::Send { user, step: 1000 } if user == a));
    }

    #[test]
    fn the_oldest_step_is_skipped_near_the_boundary() {
        let mut s = Scheduler::new(0, 1, &otp(1), false, Duration::from_secs(3));
        let now = Duration::from_secs(60 * 1000 + 58);
        assert_eq!(
            s.next(now),
            Next::Send {
                user: 0,
                step: 1000
            }
        );
    }

    #[test]
    fn users_are_spread_over_the_range() {
        let mut s = Scheduler::new(0, 1000, &otp(1), false, Duration::from_secs(3));
        let now = Duration::from_secs(60 * 1000 + 10);
        let firsts: Vec<u64> = (0..1000)
            .map(|_| match s.next(now) {
                Next::Send { user, .. } => user,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "a permutation");
        assert!(firsts[1].abs_diff(firsts[0]) > 1, "strided");
    }

    #[test]
    fn window_zero_waits_out_the_boundary() {
        let p = OtpParams {
            period: 30,
            window: 0,
            ..OtpParams::default()
        };
        let mut s = Scheduler::new(0, 5, &p, true, Duration::from_millis(50));
        let near = Duration::from_millis(30_000 * 100 + 29_980);
        assert!(matches!(s.next(near), Next::Wait(d) if d <= Duration::from_millis(25)));
        let fine = Duration::from_millis(30_000 * 100 + 100);
        for _ in 0..12 {
            assert!(matches!(s.next(fine), Next::Send { step: 100, .. }));
        }
    }
}
