//! The async side's door to the core: runs each operation on the bounded blocking pool
//! (argon2 and sled never run on the reactor), then waits for the group commit before the
//! answer leaves. Every front door (admin socket, HTTP, RADIUS) goes through here, so
//! "durable before acknowledged" and the audit line are written once.

use std::sync::Arc;

use otpd_core::admin::{AdminReply, AdminRequest};
use otpd_core::service::{LoginClass, LoginOutcome, RejectReason, SetupDone};
use otpd_core::store::Gathering;
use otpd_core::user::UserView;
use otpd_core::{OpError, Service, UnixTime};
use tokio::sync::{watch, Notify};
use zeroize::Zeroizing;

use crate::clock::{self, Clock};
use crate::log::Logger;
use crate::schedule::{Bounds, Class, Full, Scheduler, Source, Worker};

/// The front doors' way into the core: owns the blocking pool's bound, the wall clock each
/// operation is handed as `now`, the durability wait and the audit lines.
pub struct Ops {
    svc: Arc<Service>,
    /// The wall time handed to the core (the system's, a settable one in tests).
    clock: Clock,
    /// Workers = cores: at most that many argon2 hashes at once; the rest wait in the
    /// line of their class (clean customers first, see `schedule.rs`).
    workers: Scheduler,
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
    /// Whether RADIUS logins run on the thread that received them instead of the blocking
    /// pool: when the store is local and one hash is short work. A hand-off to the pool and
    /// back costs two thread wake-ups (tens of microseconds, most of a cheap login's CPU);
    /// a long hash would hold the async workers (timers, other sockets) for its length.
    inline: bool,
}

impl Ops {
    pub fn new(svc: Arc<Service>, log: Arc<Logger>) -> Ops {
        let inline = svc.store().local() && svc.hash_params().quick();
        Ops {
            inline,
            svc,
            clock: Clock::system(),
            workers: Scheduler::new(cores(), Bounds::default()),
            log,
            mail_wake: Arc::new(Notify::new()),
            store_failed: watch::channel(None).0,
            store_down: std::sync::Mutex::new(None),
            store_is_down: std::sync::atomic::AtomicBool::new(false),
            refusal_delay: std::time::Duration::ZERO,
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
        Ok(self.run_on(worker, class, f).await)
    }

    /// Runs `f` on `worker`'s turn: a RADIUS login on the thread that holds it when that is
    /// short work (see [`Ops::inline`]), everything else on the blocking pool.
    async fn run_on<T, F>(&self, worker: Worker<'_>, class: Class, f: F) -> Result<T, OpError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, UnixTime) -> T + Send + 'static,
    {
        let _worker = worker;
        if class != Class::Plain && self.inline {
            return self.here(f);
        }
        let (svc, clock) = (self.svc.clone(), self.clock.clone());
        tokio::task::spawn_blocking(move || f(&svc, clock.now()))
            .await
            .map_err(|e| OpError::Store(format!("worker failed: {e}")))
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

    /// A sign-in of the OTP menu with the login password; durable before it returns.
    pub async fn login(&self, login_id: String, password: Zeroizing<String>) -> LoginOutcome {
        let (step, source) = (LoginStep::Password(password), Source::local());
        let queued = self.login_in(Class::Plain, &source, login_id, step).await;
        queued.unwrap_or(LoginOutcome::Reject(RejectReason::Store))
    }

    /// The OTP of the menu's sign-in.
    pub async fn login_otp(&self, login_id: String, otp: Zeroizing<String>) -> LoginOutcome {
        let (step, source) = (LoginStep::Otp(otp), Source::local());
        let queued = self.login_in(Class::Plain, &source, login_id, step).await;
        queued.unwrap_or(LoginOutcome::Reject(RejectReason::Store))
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
        let gathering = self.svc.store().gathering();
        let class = match &step {
            LoginStep::Challenge(..) => Class::Proven,
            LoginStep::Password(secret) | LoginStep::Otp(secret) => {
                if let Some(worker) = self.workers.try_admit() {
                    let outcome = self.login_on(worker, Class::Clean, login_id, step, gathering);
                    return Ok(outcome.await);
                }
                let record = self.login_class(login_id.clone(), secret.clone()).await;
                Class::of_login(record, spent)
            }
        };
        self.login_gathered(class, source, login_id, step, gathering)
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
        let gathering = self.svc.store().gathering();
        self.login_gathered(class, source, login_id, step, gathering)
            .await
    }

    /// [`Ops::login_in`] for a login that has said it is under way.
    async fn login_gathered(
        &self,
        class: Class,
        source: &Source,
        login_id: String,
        step: LoginStep,
        gathering: Gathering,
    ) -> Result<LoginOutcome, Full> {
        // Fail closed, at once: the gateway hears a Reject, not a timeout.
        if !self.store_available() {
            return Ok(LoginOutcome::Reject(RejectReason::Store));
        }
        let worker = self.workers.admit(class, source).await?;
        Ok(self
            .login_on(worker, class, login_id, step, gathering)
            .await)
    }

    /// A login step on `worker`'s turn; durable before it returns.
    async fn login_on(
        &self,
        worker: Worker<'_>,
        class: Class,
        login_id: String,
        step: LoginStep,
        gathering: Gathering,
    ) -> LoginOutcome {
        let id = login_id.clone();
        let outcome = self
            .run_on(worker, class, move |svc, now| match step {
                LoginStep::Password(pw) => svc.login(&login_id, &pw, now),
                LoginStep::Otp(otp) => svc.login_otp(&login_id, &otp, now),
                LoginStep::Challenge(otp, state) => {
                    let key = state.once_key();
                    svc.answer_challenge(&login_id, &otp, &key, state.expires_at(), now)
                }
            })
            .await;
        self.login_durable(&id, outcome, gathering).await
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
        let login = || ops.login("taro".into(), zeroize::Zeroizing::new("login-pw".into()));
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
