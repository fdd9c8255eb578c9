//! The async side's door to the core: runs each operation on the bounded blocking pool
//! (argon2 and sled never run on the reactor), then waits for the group commit before the
//! answer leaves. Every front door (admin socket, HTTP, RADIUS) goes through here, so
//! "durable before acknowledged" and the audit line are written once.

use std::sync::Arc;

use otpd_core::admin::{AdminReply, AdminRequest};
use otpd_core::password::HashCost;
use otpd_core::service::{LoginClass, LoginOutcome, RejectReason, SetupDone};
use otpd_core::store::Gathering;
use otpd_core::user::UserView;
use otpd_core::{OpError, Service, UnixTime};
use tokio::sync::{watch, Notify};
use zeroize::Zeroizing;

use crate::clock::{self, Clock};
use crate::log::Logger;
use crate::schedule::{Bounds, Class, Full, Scheduler, Source, Threads, Worker};

/// The front doors' way into the core: owns the blocking pool's bound, the wall clock each
/// operation is handed as `now`, the durability wait and the audit lines.
pub struct Ops {
    svc: Arc<Service>,
    /// The wall time handed to the core (the system's, a settable one in tests).
    clock: Clock,
    /// Workers = cores: at most that many argon2 hashes at once; the rest wait in the
    /// line of their class (clean customers first, see `schedule.rs`).
    workers: Scheduler,
    /// The threads the admitted work runs on (one per worker; never joined at a stop).
    threads: Threads,
    pub log: Arc<Logger>,
    /// Wakes the mailer when an issuance queued a message.
    pub mail_wake: Arc<Notify>,
    /// Set by the first write that could not be made durable. sled refuses every later
    /// write once an I/O error happened, until the store is opened again, so otpd stops
    /// (exit status 1) and its service manager restarts it (`Restart=on-failure`).
    store_failed: watch::Sender<Option<String>>,
    /// Set while the store does not answer (a database server down or unreachable), with
    /// why and since when; logins are refused at once meanwhile (see [`Ops::watch_store`]).
    store_down: std::sync::Mutex<Option<(String, tokio::time::Instant)>>,
    store_is_down: std::sync::atomic::AtomicBool,
    /// A customer's refused renewal or sign-in is answered no sooner than this after it
    /// arrived (`radius.reject_delay_ms`): an unknown user costs no write, a known one a
    /// counted failure, and the difference must not show in the answer's timing.
    refusal_delay: std::time::Duration,
    /// Whether RADIUS logins may run on the thread that received them instead of a hashing
    /// thread: when the store is local and otpd's own hash is short work; a password login
    /// then runs here only if the user's stored hash is short work too (an imported bcrypt
    /// or sha512-crypt may cost a second). A hand-off and back costs two thread wake-ups
    /// (tens of microseconds, most of a cheap login's CPU); a long hash would hold the
    /// async workers (timers, other sockets, `/healthz`) for its length.
    inline: bool,
    /// Users whose stored hash was refused for its cost, each said once as an operator
    /// error (at most [`OVER_CAP_NAMED`] names are kept).
    over_cap_named: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Users the "stored hash over the caps" error is remembered for; past it, the audit lines
/// alone name further ones.
const OVER_CAP_NAMED: usize = 4096;

impl Ops {
    pub fn new(svc: Arc<Service>, log: Arc<Logger>) -> Ops {
        let inline = svc.store().local() && svc.hash_params().quick();
        Ops {
            inline,
            svc,
            clock: Clock::system(),
            workers: Scheduler::new(cores(), Bounds::default()),
            threads: Threads::new(cores()),
            log,
            mail_wake: Arc::new(Notify::new()),
            store_failed: watch::channel(None).0,
            store_down: std::sync::Mutex::new(None),
            store_is_down: std::sync::atomic::AtomicBool::new(false),
            refusal_delay: std::time::Duration::ZERO,
            over_cap_named: Default::default(),
        }
    }

    /// Bounds the back lines of RADIUS logins (`[radius] login_queue_per_source`).
    pub fn with_login_queue(mut self, bounds: Bounds) -> Ops {
        self.workers = Scheduler::new(cores(), bounds);
        self
    }

    /// Reads the wall time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Clock) -> Ops {
        self.clock = clock;
        self
    }

    /// The wall clock the core is told.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Sets the floor under a customer's refusal (see the field).
    pub fn with_refusal_delay(mut self, delay: std::time::Duration) -> Ops {
        self.refusal_delay = delay;
        self
    }

    /// Waits until the refusal delay has passed since `started`.
    pub async fn refusal_floor(&self, started: tokio::time::Instant) {
        tokio::time::sleep_until(started + self.refusal_delay).await;
    }

    /// Resolves with the error once a write could not be made durable.
    pub async fn store_failure(&self) -> String {
        let mut rx = self.store_failed.subscribe();
        let failed = rx.wait_for(Option::is_some).await;
        // The sender lives in `self`, so the channel cannot close while we wait.
        failed.ok().and_then(|f| f.clone()).unwrap_or_default()
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.svc
    }

    /// Whether the store answered its last check (readiness, and logins' fast refusal).
    pub fn store_available(&self) -> bool {
        !self
            .store_is_down
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the store every `every` whether it answers, until `stop` resolves. When it stops
    /// answering, one line says so and logins are refused at once (no login waits for a
    /// database that is not there); when it answers again, one line says so and logins
    /// are served again. An embedded store always answers.
    pub async fn watch_store(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let svc = self.svc.clone();
            let checked = tokio::task::spawn_blocking(move || svc.store().check())
                .await
                .unwrap_or_else(|e| Err(otpd_core::store::StoreError::Io(e.to_string())));
            self.note_store(checked.map_err(|e| e.to_string()));
            // While it is down, ask four times as often: logins are served again soon after
            // the store is back.
            let next = if self.store_available() {
                every
            } else {
                every / 4
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Records the outcome of a store check, saying so once per change.
    pub fn note_store(&self, checked: Result<(), String>) {
        let mut down = self.store_down.lock().unwrap_or_else(|e| e.into_inner());
        match (checked, down.as_ref()) {
            (Err(e), None) => {
                self.log.error(&format!(
                    "store unavailable: {e}; logins that need it are refused until it answers again"
                ));
                *down = Some((e, clock::instant()));
            }
            (Ok(()), Some((_, since))) => {
                self.log.info(&format!(
                    "store available again after {} ms; serving logins",
                    since.elapsed().as_millis()
                ));
                *down = None;
            }
            _ => {}
        }
        self.store_is_down
            .store(down.is_some(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `f` on the blocking pool with `now`, at most one per core at a time, ahead of
    /// RADIUS logins (the admin socket, HTTP and the mailer: [`Class::Plain`]).
    pub async fn run<T, F>(&self, f: F) -> Result<T, OpError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, UnixTime) -> T + Send + 'static,
    {
        self.run_in(Class::Plain, &Source::local(), f)
            .await
            .unwrap_or_else(|Full| Err(OpError::Store("no worker".into())))
    }

    /// Runs `f` once a worker is free for `source` in `class`'s line; `Err(Full)` at once
    /// when that line has no room for it.
    async fn run_in<T, F>(
        &self,
        class: Class,
        source: &Source,
        f: F,
    ) -> Result<Result<T, OpError>, Full>
    where
        T: Send + 'static,
        F: FnOnce(&Service, UnixTime) -> T + Send + 'static,
    {
        let worker = self.workers.admit(class, source).await?;
        Ok(self.run_on(worker, false, f).await)
    }

    /// Runs `f` on `worker`'s turn: on this thread when `here` (short work, see
    /// [`Ops::inline`]), otherwise on a hashing thread.
    async fn run_on<T, F>(&self, worker: Worker<'_>, here: bool, f: F) -> Result<T, OpError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, UnixTime) -> T + Send + 'static,
    {
        let _worker = worker;
        if here {
            return self.here(f);
        }
        // Read here: the worker is held, so the job starts at once, and the clock (tokio's
        // in tests) is the runtime's.
        let (svc, now) = (self.svc.clone(), self.clock.now());
        self.threads
            .run(move || f(&svc, now))
            .await
            .map_err(|_| OpError::Store("worker failed: panic".into()))
    }

    /// `f` on this thread; a panic in it becomes an error, as on the blocking pool.
    fn here<T>(&self, f: impl FnOnce(&Service, UnixTime) -> T) -> Result<T, OpError> {
        let run = std::panic::AssertUnwindSafe(|| f(&self.svc, self.clock.now()));
        std::panic::catch_unwind(run).map_err(|_| OpError::Store("worker failed: panic".into()))
    }

    /// How a login with `password` for `login_id` stands, read before any hash and
    /// without waiting for a worker (one store read, the OTP's HMAC): what decides a RADIUS
    /// login's line.
    pub async fn login_class(&self, login_id: String, password: Zeroizing<String>) -> LoginClass {
        if self.svc.store().local() {
            let class = self.here(|svc, now| svc.login_class(&login_id, &password, now));
            return class.unwrap_or(LoginClass::Unknown);
        }
        let (svc, clock) = (self.svc.clone(), self.clock.clone());
        tokio::task::spawn_blocking(move || svc.login_class(&login_id, &password, clock.now()))
            .await
            .unwrap_or(LoginClass::Unknown)
    }

    /// Resolves once every write made so far is on disk (group commit).
    pub async fn durable(&self) -> Result<(), OpError> {
        self.durable_after(None).await
    }

    /// [`Ops::durable`] for a writer that said it was under way: `gathering` ends once
    /// its wait is queued, so the group commit need not wait longer for it.
    async fn durable_after(&self, gathering: Option<Gathering>) -> Result<(), OpError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.svc.store().when_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        drop(gathering);
        let e = match rx.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "flusher stopped".to_string(),
        };
        self.store_failed.send_if_modified(|failed| {
            let first = failed.is_none();
            if first {
                *failed = Some(e.clone());
            }
            first
        });
        Err(OpError::Store(e))
    }

    /// Runs `f`, then makes its writes durable; a failed flush turns success into an error.
    pub async fn write<T, F>(&self, f: F) -> Result<T, OpError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, UnixTime) -> Result<T, OpError> + Send + 'static,
    {
        let result = self.run(f).await?;
        // Failures (counted attempts, lock state) must be durable too before we answer.
        self.durable().await?;
        result
    }

    /// One admin request, from the socket or the HTTP admin API, with its audit line.
    pub async fn admin(&self, req: AdminRequest, actor: &str) -> AdminReply {
        let name = req.name();
        let subject = req.subject().unwrap_or("-").to_string();
        let read_only = req.is_read_only();
        let issue = matches!(req, AdminRequest::TokenIssue { .. });
        // A backup copies every password hash and sealed secret: audited like a change.
        // A paged backup is audited once, at its first page.
        let audited = !read_only
            || matches!(
                req,
                AdminRequest::Backup | AdminRequest::BackupPage { after: None, .. }
            );
        let result = if read_only {
            self.run(move |svc, now| svc.execute(&req, now))
                .await
                .and_then(|r| r)
        } else {
            self.write(move |svc, now| svc.execute(&req, now)).await
        };
        if issue && result.is_ok() {
            self.mail_wake.notify_one();
        }
        if audited || result.is_err() {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.code().to_string(),
            };
            self.log.audit(&[
                ("admin", name),
                ("actor", actor),
                ("user", &subject),
                ("outcome", &outcome),
            ]);
        }
        result.map_err(Into::into)
    }

    /// A sign-in of the OTP menu with the login password from `source` (the client's
    /// address), durable before it returns: in [`Class::Web`]'s bounded line, below the
    /// RADIUS customers. `Err(Full)` at once when the sign-ins' line has no room for it
    /// (answer 503 with `Retry-After`): nothing was evaluated, no failure counted.
    pub async fn web_login(
        &self,
        login_id: String,
        password: Zeroizing<String>,
        source: std::net::IpAddr,
    ) -> Result<LoginOutcome, Full> {
        let step = LoginStep::Password(password);
        self.login_in(Class::Web, &Source::web(source), login_id, step)
            .await
    }

    /// The OTP of the menu's sign-in from `source`, as [`Ops::web_login`].
    pub async fn web_login_otp(
        &self,
        login_id: String,
        otp: Zeroizing<String>,
        source: std::net::IpAddr,
    ) -> Result<LoginOutcome, Full> {
        let step = LoginStep::Otp(otp);
        self.login_in(Class::Web, &Source::web(source), login_id, step)
            .await
    }

    /// A RADIUS login from `source` (`spent`: over its failure budget). With a worker free
    /// it is evaluated at once; otherwise it waits in the line its record and source put it
    /// in (one store read and the OTP's HMAC tell which, see [`Ops::login_class`]), and an
    /// answer to our challenge (the password proven) in [`Class::Proven`]'s.
    pub async fn radius_login(
        &self,
        source: &Source,
        spent: bool,
        login_id: String,
        step: LoginStep,
    ) -> Result<LoginOutcome, Full> {
        if !self.store_available() {
            return Ok(LoginOutcome::Reject(RejectReason::Store));
        }
        let stored = match self.peek(&login_id, &step) {
            Ok(stored) => stored,
            Err(why) => return Ok(self.over_caps(&login_id, &why)),
        };
        let gathering = self.svc.store().gathering();
        let class = match &step {
            LoginStep::Challenge(..) => Class::Proven,
            LoginStep::Password(secret) | LoginStep::Otp(secret) => {
                if let Some(worker) = self.workers.try_admit() {
                    let run = (Class::Clean, stored);
                    let outcome = self.login_on(worker, run, login_id, step, gathering);
                    return Ok(outcome.await);
                }
                let record = self.login_class(login_id.clone(), secret.clone()).await;
                Class::of_login(record, spent)
            }
        };
        self.login_gathered((class, stored), source, login_id, step, gathering)
            .await
    }

    /// A login step waiting in `class`'s line for `source`; durable before it returns.
    /// `Err(Full)`: that line had no room, nothing was evaluated.
    pub async fn login_in(
        &self,
        class: Class,
        source: &Source,
        login_id: String,
        step: LoginStep,
    ) -> Result<LoginOutcome, Full> {
        if !self.store_available() {
            return Ok(LoginOutcome::Reject(RejectReason::Store));
        }
        let stored = match self.peek(&login_id, &step) {
            Ok(stored) => stored,
            Err(why) => return Ok(self.over_caps(&login_id, &why)),
        };
        let gathering = self.svc.store().gathering();
        self.login_gathered((class, stored), source, login_id, step, gathering)
            .await
    }

    /// [`Ops::login_in`] for a login that has said it is under way.
    async fn login_gathered(
        &self,
        run: (Class, Stored),
        source: &Source,
        login_id: String,
        step: LoginStep,
        gathering: Gathering,
    ) -> Result<LoginOutcome, Full> {
        // Fail closed, at once: the gateway hears a Reject, not a timeout.
        if !self.store_available() {
            return Ok(LoginOutcome::Reject(RejectReason::Store));
        }
        let worker = self.workers.admit(run.0, source).await?;
        Ok(self.login_on(worker, run, login_id, step, gathering).await)
    }

    /// What is known of the hash a login step would verify, before any worker is taken:
    /// on a local store the user's stored hash is read here (one read, as
    /// [`Ops::login_class`] makes), and one over the caps is `Err(why)`: refused at once,
    /// without a worker. A remote store is read on the worker, before the hash.
    fn peek(&self, login_id: &str, step: &LoginStep) -> Result<Stored, String> {
        if !matches!(step, LoginStep::Password(_)) {
            return Ok(Stored::Within { quick: true });
        }
        if !self.svc.store().local() {
            return Ok(Stored::Unread);
        }
        let cost = stored_cost(&self.svc, login_id)?;
        Ok(Stored::Within {
            quick: cost.is_none_or(|c| c.quick()),
        })
    }

    /// A login step on `worker`'s turn; durable before it returns. It runs on this thread
    /// only when otpd's own hash and the one it verifies are both short work; a password
    /// login whose stored hash is over the caps is refused without it ([`Ops::over_caps`]).
    async fn login_on(
        &self,
        worker: Worker<'_>,
        (class, stored): (Class, Stored),
        login_id: String,
        step: LoginStep,
        gathering: Gathering,
    ) -> LoginOutcome {
        let id = login_id.clone();
        let here = self.inline
            && class != Class::Plain
            && matches!(stored, Stored::Within { quick: true });
        let checked = !matches!(stored, Stored::Unread);
        let outcome = self
            .run_on(worker, here, move |svc, now| -> Result<_, String> {
                Ok(match step {
                    LoginStep::Password(pw) => {
                        if !checked {
                            stored_cost(svc, &login_id)?;
                        }
                        svc.login(&login_id, &pw, now)
                    }
                    LoginStep::Otp(otp) => svc.sign_in_otp(&login_id, &otp, now),
                    LoginStep::Challenge(otp, state) => {
                        let key = state.once_key();
                        svc.answer_challenge(&login_id, &otp, &key, state.expires_at(), now)
                    }
                })
            })
            .await;
        let outcome = match outcome {
            Ok(Err(why)) => return self.over_caps(&id, &why),
            Ok(Ok(o)) => Ok(o),
            Err(e) => Err(e),
        };
        self.login_durable(&id, outcome, gathering).await
    }

    /// A password login whose stored hash costs more than `[password] max_…` allow: refused
    /// like a wrong password without running it, audited with its reason, and said once per
    /// user as an operator error (only a new password, or a higher cap, lets the user in).
    fn over_caps(&self, login_id: &str, why: &str) -> LoginOutcome {
        self.log.audit(&[
            ("login", "refused"),
            ("user", login_id),
            ("outcome", "bad_password"),
            ("reason", "hash_over_cap"),
        ]);
        let first = {
            let mut named = self
                .over_cap_named
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            named.len() < OVER_CAP_NAMED && named.insert(login_id.to_string())
        };
        if first {
            self.log.error(&format!(
                "user {login_id:?} cannot log in: the stored password hash is refused without being run: {why}; set a new password (otpctl user passwd)"
            ));
        }
        LoginOutcome::Reject(RejectReason::BadPassword)
    }

    /// Makes what the login wrote (and what it read that was not yet on disk) durable
    /// before its answer leaves.
    async fn login_durable(
        &self,
        login_id: &str,
        outcome: Result<LoginOutcome, OpError>,
        gathering: Gathering,
    ) -> LoginOutcome {
        let outcome = match outcome {
            Ok(o) => o,
            Err(_) => return LoginOutcome::Reject(RejectReason::Store),
        };
        // The accepted step (or the failure count) is on disk before the answer leaves, and
        // so is any write to this user the answer read. A login that read only what is on
        // disk and wrote nothing (an unknown user, a challenge, a locked user) needs no flush.
        if !self.svc.store().needs_flush(login_id) {
            return outcome;
        }
        match self.durable_after(Some(gathering)).await {
            Ok(()) => outcome,
            Err(e) => {
                self.log.error(&format!(
                    "login answered reject: the store could not write: {e}"
                ));
                LoginOutcome::Reject(RejectReason::Store)
            }
        }
    }

    /// 初期設定 through the link.
    pub async fn setup(
        &self,
        code: String,
        service_id: String,
        user_id: String,
        activation_password: zeroize::Zeroizing<String>,
    ) -> Result<SetupDone, OpError> {
        let typed = user_id.clone();
        let (owner, r) = match self
            .run(move |svc, now| {
                let owner = svc.link_owner(&code);
                (
                    owner,
                    svc.setup(&code, &service_id, &user_id, &activation_password, now),
                )
            })
            .await
        {
            Ok((owner, r)) => (owner, r),
            Err(e) => (None, Err(e)),
        };
        // Failed attempts count on the link: durable like any write.
        let r = match self.durable().await {
            Ok(()) => r,
            Err(e) => Err(e),
        };
        let outcome = r.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code());
        // The line names the link's owner; what the visitor typed only when it differs.
        let owner = owner.unwrap_or_else(|| "-".into());
        let mut fields = vec![("setup", "enroll"), ("user", owner.as_str())];
        if typed != owner {
            fields.push(("typed_user", typed.as_str()));
        }
        fields.push(("outcome", outcome));
        self.log.audit(&fields);
        r
    }

    /// 有効期限更新 by the customer.
    pub async fn renew(
        &self,
        service_id: String,
        user_id: String,
        otp: zeroize::Zeroizing<String>,
    ) -> Result<UserView, OpError> {
        let started = clock::instant();
        let user = user_id.clone();
        let r = self
            .write(move |svc, now| svc.renew_with_otp(&service_id, &user_id, &otp, now))
            .await;
        if matches!(r, Err(OpError::BadOtp | OpError::SetupRefused)) {
            self.refusal_floor(started).await;
        }
        let outcome = r.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code());
        self.log
            .audit(&[("renew", "customer"), ("user", &user), ("outcome", outcome)]);
        r
    }
}

/// What [`Ops::peek`] found out about the hash a login step verifies.
#[derive(Debug, Clone, Copy)]
enum Stored {
    /// Not read yet (a remote store): the worker reads it before the hash.
    Unread,
    /// Within the caps (or no stored hash runs); whether verifying it is short work.
    Within { quick: bool },
}

/// What verifying `login_id`'s stored password hash costs, read before it runs: `Ok(None)`
/// when no stored hash of a user would run (no such user, the store unreadable, or a kind
/// otpd cannot verify: the login itself answers those), `Err(why)` when it is over the caps.
fn stored_cost(svc: &Service, login_id: &str) -> Result<Option<HashCost>, String> {
    let Ok(Some(read)) = svc.store().get_user(login_id) else {
        return Ok(None);
    };
    let Some(cost) = HashCost::of(&read.value.password_hash) else {
        return Ok(None);
    };
    match svc.hash_caps().over(cost) {
        Some(why) => Err(why),
        None => Ok(Some(cost)),
    }
}

/// The hashing workers: one per core.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// What one login step carries: the `User-Password` (password, or password followed by
/// the OTP), or the OTP answering a challenge.
pub enum LoginStep {
    Password(Zeroizing<String>),
    /// The OTP of the menu's sign-in (an expired token's step is spent too).
    Otp(Zeroizing<String>),
    /// The OTP answering a RADIUS challenge, whose State is used up on every node.
    Challenge(Zeroizing<String>, crate::radius::StateTicket),
}

/// An `Ops` on a fresh store in `dir` with cheap hashing, for the daemon's unit tests.
#[cfg(test)]
pub mod tests_support {
    use std::path::Path;
    use std::sync::Arc;

    use crate::config::Config;
    use otpd_core::seal::Sealer;
    use otpd_core::store::SledStore;
    use otpd_core::Service;

    use super::Ops;
    use crate::clock::Clock;
    use crate::log::{Level, Logger};

    pub const CONFIG: &str = "service_id = \"EXAMPLE-BANK\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[token]\nsetup_max_attempts = 3\n";

    pub fn config(dir: &Path) -> Config {
        Config::parse(CONFIG, dir).expect("config").config
    }

    pub fn ops(dir: &Path) -> Arc<Ops> {
        ops_on(dir, SledStore::open(&dir.join("data")).expect("store"))
    }

    /// An `Ops` over an existing store: a second node on the same data.
    pub fn ops_on(dir: &Path, store: Arc<dyn otpd_core::store::Store>) -> Arc<Ops> {
        ops_with(dir, store, Clock::system())
    }

    /// An `Ops` on a fresh store in `dir` whose wall time is `clock`'s.
    pub fn ops_at(dir: &Path, clock: Clock) -> Arc<Ops> {
        ops_with(
            dir,
            SledStore::open(&dir.join("data")).expect("store"),
            clock,
        )
    }

    fn ops_with(dir: &Path, store: Arc<dyn otpd_core::store::Store>, clock: Clock) -> Arc<Ops> {
        let svc = Service::new(
            &config(dir).core,
            store,
            Sealer::from_key(&[5u8; 32]),
            clock.now(),
        )
        .expect("service");
        Arc::new(Ops::new(Arc::new(svc), Arc::new(Logger::stderr(Level::Error))).with_clock(clock))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use otpd_core::OpError;

    use super::tests_support::ops_at;
    use crate::clock::Clock;

    const T0: i64 = 1_800_000_000;

    #[tokio::test(start_paused = true)]
    async fn the_core_is_handed_the_clock_s_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Clock::starting_at(T0);
        let ops = ops_at(dir.path(), clock.clone());
        let now = ops.run(|_, now| now).await.expect("run");
        assert_eq!(now, T0);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(ops.run(|_, now| now).await.expect("run"), T0 + 90);
        clock.set(T0 + 86_400);
        let now = ops.write(|_, now| Ok::<_, OpError>(now)).await;
        assert_eq!(now.expect("write"), T0 + 86_400);
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_core_decides_follows_the_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Clock::starting_at(T0);
        let ops = ops_at(dir.path(), clock.clone());
        let added = ops
            .write(|svc, now| svc.add_user("taro", "login-pw", now))
            .await;
        added.expect("add");
        let listed = ops.run(|svc, now| svc.list(now)).await.expect("run");
        let listed = listed.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].created_at, otpd_core::rfc3339(T0), "{listed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn logins_are_refused_at_once_while_the_store_does_not_answer() {
        use otpd_core::service::{LoginOutcome, RejectReason};
        let dir = tempfile::tempdir().expect("tempdir");
        let ops = ops_at(dir.path(), Clock::starting_at(T0));
        ops.write(|svc, now| svc.add_user("taro", "login-pw", now))
            .await
            .expect("add");
        let login = || async {
            let pw = zeroize::Zeroizing::new("login-pw".to_string());
            let local = std::net::Ipv6Addr::LOCALHOST.into();
            ops.web_login("taro".into(), pw, local).await.expect("room")
        };
        assert_eq!(login().await, LoginOutcome::Accept { with_otp: false });
        ops.note_store(Err("connection refused".into()));
        ops.note_store(Err("connection refused".into()));
        assert!(!ops.store_available());
        assert_eq!(login().await, LoginOutcome::Reject(RejectReason::Store));
        ops.note_store(Ok(()));
        assert!(ops.store_available());
        assert_eq!(login().await, LoginOutcome::Accept { with_otp: false });
    }
}
