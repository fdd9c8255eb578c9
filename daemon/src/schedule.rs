//! Who gets the next hashing worker. There is one worker per core (argon2 and sled run on
//! them, never on the reactor); work that finds them all busy waits in the line of its
//! [`Class`], and a freed worker goes to the first line that is not empty (one in eight to
//! the request that waited longest, so no line starves on a saturated node). Within a line the
//! [`Source`]s take turns, so one source's backlog does not delay another's next request.
//! The back lines are bounded per source and per line: what does not fit is refused at once
//! (a RADIUS reject, audit reason `overloaded` or `client_rate_limited`) instead of waiting
//! for seconds behind a spray, while customers with a clean record get the workers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use otpd_core::service::LoginClass;
use tokio::sync::oneshot;

/// The lines, in the order a freed worker is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Admin requests, the HTTP pages (not the menu's sign-in) and the mailer: rare, and
    /// the HTTP endpoints have rate limits of their own. Unbounded.
    Plain,
    /// A RADIUS login one of whose credentials is already proven: the OTP at the end of its
    /// User-Password checks out, or it answers our challenge (the password was proven).
    /// A sprayer does not get here by guessing. Unbounded (`max_in_flight` bounds it).
    Proven,
    /// A RADIUS login of a known user with a clean record (no failure since its last
    /// success, not locked) from a source within its failure budget. Unbounded.
    Clean,
    /// A sign-in of the OTP menu (one or two hashes, from anywhere on the internet): below
    /// the RADIUS customers, in a bounded line of its own ([`Bounds::sign_ins`]), so a
    /// flood of web sign-ins is refused at once instead of delaying the bank's gateways.
    Web,
    /// A known user with a clean record from a source that spent its failure budget: the
    /// customers of a gateway under attack, and the attack's first try at each stored ID.
    Spent,
    /// An unknown ID, a locked user, or one with failures since its last success.
    Doubtful,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::Plain,
        Class::Proven,
        Class::Clean,
        Class::Web,
        Class::Spent,
        Class::Doubtful,
    ];

    /// The line of a RADIUS password login: the user's record and whether its source has
    /// failed more than its budget allows.
    pub fn of_login(record: LoginClass, source_spent: bool) -> Class {
        match (record, source_spent) {
            (LoginClass::Proven, _) => Class::Proven,
            (LoginClass::Clean, false) => Class::Clean,
            (LoginClass::Clean, true) => Class::Spent,
            (LoginClass::Failing | LoginClass::Locked | LoginClass::Unknown, _) => Class::Doubtful,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// How many may wait in this line from one source and in all (`None`: unbounded).
    fn bound(self, b: &Bounds) -> Option<(usize, usize)> {
        match self {
            Class::Plain | Class::Proven | Class::Clean => None,
            Class::Web => Some((b.sign_ins_per_source, b.sign_ins)),
            Class::Spent | Class::Doubtful => Some((b.per_source, b.per_class)),
        }
    }
}

/// Who sent a request, as far as otpd can tell: the RADIUS client (gateway), and the
/// `Calling-Station-Id` it passed on (the customer's address or number) when it sent one.
/// Failures are counted, and the lines take turns, per source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub client: String,
    pub station: Option<String>,
}

impl Source {
    pub fn new(client: &str, station: Option<&str>) -> Source {
        Source {
            client: client.to_string(),
            station: station.filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// The daemon's own work (admin socket, HTTP, mailer).
    pub fn local() -> Source {
        Source::new("-", None)
    }

    /// A web sign-in from `ip`: IPv6 by its /64 (one subscriber's prefix), IPv4 by its
    /// address (see [`crate::limit::source_key`]).
    pub fn web(ip: std::net::IpAddr) -> Source {
        let station = match crate::limit::source_key(ip) {
            std::net::IpAddr::V6(v6) => format!("{v6}/64"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        };
        Source::new("web", Some(&station))
    }

    /// The client alone, without the station.
    pub fn client_only(&self) -> Source {
        Source::new(&self.client, None)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.station {
            Some(station) => write!(f, "{:?} (Calling-Station-Id {station:?})", self.client),
            None => write!(f, "{:?}", self.client),
        }
    }
}

/// How many may wait in the bounded lines: [`Class::Spent`] and [`Class::Doubtful`], and
/// the sign-ins' own [`Class::Web`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Waiting requests of one source in one line (`[radius] login_queue_per_source`).
    pub per_source: usize,
    /// Waiting requests in one line, all sources together.
    pub per_class: usize,
    /// Waiting web sign-ins of one source (an IPv4 address, an IPv6 /64).
    pub sign_ins_per_source: usize,
    /// Waiting web sign-ins in all: the sign-ins' budget. Full, a sign-in is refused at
    /// once (503) rather than queued behind a flood.
    pub sign_ins: usize,
}

/// Web sign-ins that may wait for a worker, in all and from one source: at ~30 ms a hash
/// (the production argon2id, at most two a sign-in) two workers clear 64 in about two
/// seconds, as long as a customer should wait for the page.
const SIGN_INS: usize = 64;
const SIGN_INS_PER_SOURCE: usize = 8;

impl Bounds {
    /// `per_source` a source, eight sources' worth a line; the sign-ins' own budget.
    pub fn per_source(per_source: usize) -> Bounds {
        let per_source = per_source.max(1);
        Bounds {
            per_source,
            per_class: per_source.saturating_mul(8),
            sign_ins_per_source: SIGN_INS_PER_SOURCE,
            sign_ins: SIGN_INS,
        }
    }
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds::per_source(32)
    }
}

/// The request's line was full: refused without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
}

/// One class's waiters: a queue per source, and the order in which the sources take turns.
#[derive(Default)]
struct Line {
    by_source: HashMap<Source, VecDeque<Waiter>>,
    turns: VecDeque<Source>,
    len: usize,
}

impl Line {
    fn waiting_from(&self, source: &Source) -> usize {
        self.by_source.get(source).map_or(0, VecDeque::len)
    }

    fn push(&mut self, source: &Source, waiter: Waiter) {
        let queue = self.by_source.entry(source.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(source.clone());
        }
        queue.push_back(waiter);
        self.len += 1;
    }

    /// The first waiter of the source whose turn it is; that source goes to the back.
    fn pop(&mut self) -> Option<Waiter> {
        while let Some(source) = self.turns.pop_front() {
            let Some(queue) = self.by_source.get_mut(&source) else {
                continue;
            };
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.by_source.remove(&source);
            } else {
                self.turns.push_back(source);
            }
            if let Some(w) = waiter {
                self.len -= 1;
                return Some(w);
            }
        }
        None
    }

    /// The id (arrival order) of the waiter whose turn it is.
    fn next_id(&self) -> Option<u64> {
        let source = self.turns.front()?;
        Some(self.by_source.get(source)?.front()?.id)
    }

    /// Takes waiter `id` out of the line; false if it is not there (it was granted).
    fn remove(&mut self, source: &Source, id: u64) -> bool {
        let Some(queue) = self.by_source.get_mut(source) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        queue.remove(at);
        self.len -= 1;
        if queue.is_empty() {
            self.by_source.remove(source);
            self.turns.retain(|s| s != source);
        }
        true
    }
}

struct State {
    idle: usize,
    next_id: u64,
    /// Workers handed out from the lines so far (every [`OLDEST_SHARE`]th goes by age).
    granted: u64,
    lines: [Line; 6],
}

/// One freed worker in this many goes to the longest-waiting request of any line, not to
/// the first line: while the front lines stay full (a saturated node), the back lines
/// still move, at this share of the workers. A customer's worst wait stays short, and a
/// request in a back line is answered while a gateway still waits for it.
const OLDEST_SHARE: u64 = 8;

/// The hashing workers and the lines in front of them. Invariant: a worker is idle only
/// when every line is empty (a freed worker goes straight to the next waiter).
pub struct Scheduler {
    bounds: Bounds,
    state: Mutex<State>,
}

impl Scheduler {
    pub fn new(workers: usize, bounds: Bounds) -> Scheduler {
        Scheduler {
            bounds,
            state: Mutex::new(State {
                idle: workers.max(1),
                next_id: 0,
                granted: 0,
                lines: Default::default(),
            }),
        }
    }

    /// Waits for a worker in `class`'s line; `Err(Full)` at once when `source` already
    /// has `per_source` waiting there, or the line holds `per_class` (bounded lines only).
    /// Dropping the future gives up the place (or the worker, if it was just granted).
    pub async fn admit(&self, class: Class, source: &Source) -> Result<Worker<'_>, Full> {
        let waiting = {
            let mut s = self.lock();
            if s.idle > 0 {
                s.idle -= 1;
                return Ok(Worker { sched: self });
            }
            let line = &mut s.lines[class.index()];
            if let Some((per_source, all)) = class.bound(&self.bounds) {
                if line.len >= all || line.waiting_from(source) >= per_source {
                    return Err(Full);
                }
            }
            let id = s.next_id;
            s.next_id += 1;
            let (grant, rx) = oneshot::channel();
            s.lines[class.index()].push(source, Waiter { id, grant });
            Waiting {
                sched: self,
                class,
                source: source.clone(),
                id,
                rx,
                settled: false,
            }
        };
        waiting.granted().await
    }

    /// A worker if one is idle now (then nobody waits in any line), without queueing.
    pub fn try_admit(&self) -> Option<Worker<'_>> {
        let mut s = self.lock();
        if s.idle == 0 {
            return None;
        }
        s.idle -= 1;
        Some(Worker { sched: self })
    }

    /// Requests waiting in each line, in [`Class`] order.
    #[cfg(test)]
    fn waiting(&self) -> [usize; 6] {
        let s = self.lock();
        Class::ALL.map(|c| s.lines[c.index()].len)
    }

    /// Hands a freed worker to the first waiter (every [`OLDEST_SHARE`]th time: to the
    /// one that waited longest), or leaves it idle.
    fn release(&self) {
        let mut s = self.lock();
        s.granted = s.granted.wrapping_add(1);
        if s.granted % OLDEST_SHARE == 0 {
            while let Some(class) = Class::ALL
                .into_iter()
                .filter_map(|c| Some((s.lines[c.index()].next_id()?, c)))
                .min()
                .map(|(_, c)| c)
            {
                if let Some(w) = s.lines[class.index()].pop() {
                    if w.grant.send(()).is_ok() {
                        return;
                    }
                }
            }
        }
        for class in Class::ALL {
            while let Some(w) = s.lines[class.index()].pop() {
                // A waiter leaves its line (under this lock) before its receiver goes.
                if w.grant.send(()).is_ok() {
                    return;
                }
            }
        }
        // Nobody waited: this release handed nothing out.
        s.granted = s.granted.wrapping_sub(1);
        s.idle += 1;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent: a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A worker held: given back (to the next waiter) when dropped.
pub struct Worker<'a> {
    sched: &'a Scheduler,
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.sched.release();
    }
}

/// A place in a line. Dropped before its grant arrived it leaves the line; dropped after a
/// grant it never picked up, it hands that worker on.
struct Waiting<'a> {
    sched: &'a Scheduler,
    class: Class,
    source: Source,
    id: u64,
    rx: oneshot::Receiver<()>,
    settled: bool,
}

impl<'a> Waiting<'a> {
    async fn granted(mut self) -> Result<Worker<'a>, Full> {
        let got = (&mut self.rx).await;
        self.settled = true;
        match got {
            Ok(()) => Ok(Worker { sched: self.sched }),
            // The sender went without a grant: no worker was given.
            Err(_) => Err(Full),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let removed = self.sched.lock().lines[self.class.index()].remove(&self.source, self.id);
        if !removed {
            // Granted while we were going: pass the worker on.
            self.sched.release();
        }
    }
}

/// The hashing workers' threads, one per worker: what [`Scheduler`] admits runs here.
/// They are detached: a stop never waits for a hash still running on one (tokio's blocking
/// pool is joined when the runtime drops, which held SIGTERM for as long as a hash ran).
pub struct Threads {
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The job panicked, or its thread is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

impl Threads {
    pub fn new(count: usize) -> Threads {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for n in 0..count.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otpd-hash-{n}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            // A thread that could not start leaves the others to share the work.
            drop(spawned);
        }
        Threads {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `f` on one of the threads; its result, or `Failed` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failed> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job);
        sent.map_err(|_| Failed)?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            _ => Err(Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    fn gw(station: Option<&str>) -> Source {
        Source::new("gw", station)
    }

    /// Starts a task that waits in `class` for `source`, reports `tag` once admitted, then
    /// holds its worker until `hold` has passed (tokio's paused clock).
    fn enter(
        sched: &Arc<Scheduler>,
        class: Class,
        source: Source,
        tag: &'static str,
        hold: Duration,
        done: &mpsc::UnboundedSender<&'static str>,
    ) -> tokio::task::JoinHandle<Result<(), Full>> {
        let (sched, done) = (sched.clone(), done.clone());
        tokio::spawn(async move {
            let _worker = sched.admit(class, &source).await?;
            let _ = done.send(tag);
            tokio::time::sleep(hold).await;
            Ok(())
        })
    }

    /// Lets every spawned task run as far as it can without time passing.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn order(rx: &mut mpsc::UnboundedReceiver<&'static str>, n: usize) -> Vec<&'static str> {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(rx.recv().await.expect("admitted"));
        }
        got
    }

    const HASH: Duration = Duration::from_millis(20);

    #[tokio::test(start_paused = true)]
    async fn clean_logins_are_admitted_before_the_back_lines_whatever_the_arrival_order() {
        let sched = Arc::new(Scheduler::new(1, Bounds::default()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let busy = enter(&sched, Class::Doubtful, gw(None), "busy", HASH, &tx);
        settle().await;
        let mut tasks = vec![busy];
        for (class, tag) in [
            (Class::Doubtful, "doubtful"),
            (Class::Spent, "spent"),
            (Class::Web, "web"),
            (Class::Clean, "clean"),
            (Class::Proven, "proven"),
            (Class::Plain, "plain"),
        ] {
            tasks.push(enter(&sched, class, gw(None), tag, HASH, &tx));
            settle().await;
        }
        assert_eq!(sched.waiting(), [1, 1, 1, 1, 1, 1]);
        let got = order(&mut rx, 7).await;
        assert_eq!(
            got,
            ["busy", "plain", "proven", "clean", "web", "spent", "doubtful"]
        );
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(()));
        }
        assert_eq!(sched.waiting(), [0; 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_line_still_moves_while_the_front_lines_stay_full() {
        let sched = Arc::new(Scheduler::new(1, Bounds::default()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = vec![enter(&sched, Class::Proven, gw(None), "busy", HASH, &tx)];
        settle().await;
        tasks.push(enter(
            &sched,
            Class::Doubtful,
            gw(None),
            "doubtful",
            HASH,
            &tx,
        ));
        settle().await;
        for _ in 0..20 {
            tasks.push(enter(&sched, Class::Proven, gw(None), "proven", HASH, &tx));
        }
        settle().await;
        let got = order(&mut rx, 22).await;
        let at = got.iter().position(|t| *t == "doubtful").expect("admitted");
        // Strict priority would admit it last (21st); it waited longest, so the eighth
        // freed worker is its.
        assert_eq!(at, OLDEST_SHARE as usize, "admitted in {got:?}");
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_worker_is_taken_at_once_and_the_workers_bound_holds() {
        let sched = Arc::new(Scheduler::new(2, Bounds::default()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| enter(&sched, Class::Clean, gw(None), "x", HASH, &tx))
            .collect();
        settle().await;
        assert_eq!(order(&mut rx, 2).await.len(), 2, "two workers at once");
        assert_eq!(sched.waiting(), [0, 0, 2, 0, 0, 0], "the other two wait");
        assert_eq!(started.elapsed(), Duration::ZERO);
        order(&mut rx, 2).await;
        assert_eq!(
            started.elapsed(),
            HASH,
            "admitted when the first two finished"
        );
        for t in tasks {
            t.await.expect("task").expect("admitted");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_back_lines_are_bounded_per_source_and_per_line_the_clean_line_is_not() {
        let bounds = Bounds {
            per_source: 2,
            per_class: 3,
            ..Bounds::default()
        };
        let sched = Arc::new(Scheduler::new(1, bounds));
        let (tx, _rx) = mpsc::unbounded_channel();
        let _busy = enter(&sched, Class::Plain, Source::local(), "busy", HASH, &tx);
        settle().await;
        let a = || gw(Some("10.0.0.1"));
        let b = || gw(Some("10.0.0.2"));
        let c = || gw(Some("10.0.0.3"));
        let mut waiting = Vec::new();
        for _ in 0..2 {
            waiting.push(enter(&sched, Class::Doubtful, a(), "a", HASH, &tx));
        }
        settle().await;
        let over = sched.admit(Class::Doubtful, &a()).await;
        assert_eq!(over.err(), Some(Full), "a's third is refused at once");
        waiting.push(enter(&sched, Class::Doubtful, b(), "b", HASH, &tx));
        settle().await;
        let over = sched.admit(Class::Doubtful, &c()).await;
        assert_eq!(over.err(), Some(Full), "the line is full");
        // The Spent line has its own room; the Clean line has no bound.
        waiting.push(enter(&sched, Class::Spent, a(), "s", HASH, &tx));
        for _ in 0..50 {
            waiting.push(enter(&sched, Class::Clean, a(), "c", HASH, &tx));
        }
        settle().await;
        assert_eq!(sched.waiting(), [0, 0, 50, 0, 1, 3]);
        for t in waiting {
            assert_eq!(
                t.await.expect("task"),
                Ok(()),
                "everyone that waited is served"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sources_take_turns_within_a_line() {
        let sched = Arc::new(Scheduler::new(1, Bounds::per_source(8)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = vec![enter(
            &sched,
            Class::Plain,
            Source::local(),
            "busy",
            HASH,
            &tx,
        )];
        settle().await;
        // The sprayer's backlog arrived first; the customer's one request comes after it.
        for _ in 0..4 {
            tasks.push(enter(
                &sched,
                Class::Doubtful,
                gw(Some("attacker")),
                "spray",
                HASH,
                &tx,
            ));
        }
        settle().await;
        tasks.push(enter(
            &sched,
            Class::Doubtful,
            gw(Some("customer")),
            "customer",
            HASH,
            &tx,
        ));
        settle().await;
        let got = order(&mut rx, 6).await;
        assert_eq!(
            got,
            ["busy", "spray", "customer", "spray", "spray", "spray"]
        );
        for t in tasks {
            t.await.expect("task").expect("admitted");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_no_hole_and_takes_no_worker() {
        let sched = Arc::new(Scheduler::new(1, Bounds::per_source(1)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let busy = enter(&sched, Class::Plain, Source::local(), "busy", HASH, &tx);
        settle().await;
        let quitter = enter(&sched, Class::Doubtful, gw(None), "quitter", HASH, &tx);
        settle().await;
        assert_eq!(sched.waiting(), [0, 0, 0, 0, 0, 1]);
        quitter.abort();
        settle().await;
        assert_eq!(sched.waiting(), [0; 6], "its place is given up");
        // Its source may wait again (the per-source count went back down).
        let next = enter(&sched, Class::Doubtful, gw(None), "next", HASH, &tx);
        assert_eq!(order(&mut rx, 2).await, ["busy", "next"]);
        next.await.expect("task").expect("admitted");
        busy.await.expect("task").expect("admitted");
        // The one worker is back: taken at once, given back, taken again.
        let w = sched
            .admit(Class::Clean, &gw(None))
            .await
            .expect("idle worker");
        drop(w);
        assert!(sched.admit(Class::Clean, &gw(None)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_never_picked_up_is_handed_on() {
        let sched = Arc::new(Scheduler::new(1, Bounds::default()));
        let held = sched
            .admit(Class::Plain, &Source::local())
            .await
            .expect("idle");
        let source = gw(None);
        let mut first = Box::pin(sched.admit(Class::Clean, &source));
        // Polled once: it waits in the line.
        assert!(futures_poll_once(first.as_mut()).await.is_none());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let second = enter(&sched, Class::Clean, gw(None), "second", HASH, &tx);
        settle().await;
        drop(held); // granted to `first`, which never looks
        drop(first);
        assert_eq!(order(&mut rx, 1).await, ["second"]);
        second.await.expect("task").expect("admitted");
        assert_eq!(sched.waiting(), [0; 6]);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn web_sign_ins_wait_below_radius_customers_with_a_budget_of_their_own() {
        let bounds = Bounds {
            sign_ins_per_source: 2,
            sign_ins: 3,
            ..Bounds::default()
        };
        let sched = Arc::new(Scheduler::new(1, bounds));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = vec![enter(
            &sched,
            Class::Plain,
            Source::local(),
            "busy",
            HASH,
            &tx,
        )];
        settle().await;
        let flood = || Source::web("2001:db8:1:2::1".parse().expect("ip"));
        let same_64 = || Source::web("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let other = || Source::web("192.0.2.7".parse().expect("ip"));
        assert_eq!(flood(), same_64(), "one /64, one source");
        for _ in 0..2 {
            tasks.push(enter(&sched, Class::Web, flood(), "web", HASH, &tx));
        }
        settle().await;
        let over = sched.admit(Class::Web, &same_64()).await;
        assert_eq!(
            over.err(),
            Some(Full),
            "the /64's third sign-in is refused at once"
        );
        tasks.push(enter(&sched, Class::Web, other(), "web", HASH, &tx));
        settle().await;
        let over = sched
            .admit(Class::Web, &Source::web("192.0.2.8".parse().expect("ip")))
            .await;
        assert_eq!(over.err(), Some(Full), "the sign-ins' budget is spent");
        // A RADIUS customer arriving after the sign-ins is served before them.
        tasks.push(enter(&sched, Class::Clean, gw(None), "radius", HASH, &tx));
        settle().await;
        assert_eq!(sched.waiting(), [0, 0, 1, 3, 0, 0]);
        let got = order(&mut rx, 5).await;
        assert_eq!(got, ["busy", "radius", "web", "web", "web"]);
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(()));
        }
    }

    #[test]
    fn the_line_of_a_login_follows_its_record_and_its_source() {
        assert_eq!(Class::of_login(LoginClass::Proven, true), Class::Proven);
        assert_eq!(Class::of_login(LoginClass::Clean, false), Class::Clean);
        assert_eq!(Class::of_login(LoginClass::Clean, true), Class::Spent);
        for r in [LoginClass::Failing, LoginClass::Locked, LoginClass::Unknown] {
            assert_eq!(Class::of_login(r, false), Class::Doubtful);
            assert_eq!(Class::of_login(r, true), Class::Doubtful);
        }
    }
}
