//! Where users, setup links and the mail outbox live: a narrow [`Store`] trait and its sled
//! implementation. Writes become visible at once and durable at the next group commit:
//! a caller must not report success until [`Store::when_durable`] has called back.
//!
//! A user is kept in two parts. The record (password hash, e-mail, token, renewal lock) is
//! written whole and rarely; its [`Marks`] — the replay mark and the login lock, what every
//! login changes — are a few bytes of their own, changed by one conditional write each
//! ([`Store::spend_step`], [`Store::count_failure`], [`Store::clear_failures`]). On sled the
//! marks are a 30-byte value in their own tree; on PostgreSQL, columns beside the record.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sled::transaction::TransactionError;
use sled::Transactional;

use crate::lifecycle::Token;
use crate::lockout::{LockPolicy, LockState};
use crate::seal::Sealer;
use crate::user::UserRecord;
use crate::UnixTime;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Io(String),
    #[error("store holds a record it cannot read: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// A user as read, with what its engine needs to replace it only if nobody changed it
/// meanwhile ([`Store::swap_user`]) and the epoch a per-login write names.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    /// Counts whole-record writes (not per-login ones): a per-login write made against an
    /// older epoch is refused, so it can never land on a token that replaced the one read.
    pub epoch: u64,
    raw: Vec<u8>,
}

impl<T> Versioned<T> {
    /// For engines: `raw` is whatever the engine compares in [`Store::swap_user`].
    pub fn new(value: T, epoch: u64, raw: Vec<u8>) -> Self {
        Versioned { value, epoch, raw }
    }

    /// The engine's comparison bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

/// What a login changes, kept apart from the record: the replay mark and the login lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub epoch: u64,
    pub last_step: Option<u64>,
    pub lock: LockState,
}

impl Marks {
    /// The marks a whole record carries.
    pub fn of(user: &UserRecord, epoch: u64) -> Marks {
        Marks {
            epoch,
            last_step: user.token.last_step(),
            lock: user.lock.clone(),
        }
    }

    /// Puts these marks into the record they belong to.
    pub fn apply(&self, user: &mut UserRecord) {
        user.lock = self.lock.clone();
        match &mut user.token {
            Token::Active { last_step, .. } => *last_step = self.last_step.unwrap_or(*last_step),
            Token::Provisioned { last_step, .. } => *last_step = self.last_step,
            _ => {}
        }
    }
}

/// What [`Store::spend_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// The mark moved to the step: this code is used up.
    Spent,
    /// The mark is already at or past the step.
    Replayed,
    /// The user is locked.
    Locked,
    /// The record was rewritten since it was read (another token, perhaps): read again.
    Changed,
    /// No such user (any more).
    Missing,
}

/// One record of a backup: tree name, key, value.
pub type ExportRow = (String, Vec<u8>, Vec<u8>);

/// Told once the writes made before it are on disk (or that they could not be).
pub type DurableCallback = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Told about every group commit: how many waiters it answered and how long the flush took.
pub type CommitObserver = Box<dyn Fn(usize, Duration, bool) + Send + Sync>;

/// Where otpd's state lives: users (with their token, lock and replay mark), setup links,
/// the mail outbox, and the durability promise (a write is acknowledged only once it is on
/// disk). Whole-record writes are compare-and-swap, and what a login changes is one
/// conditional write, so concurrent logins race safely, on one node or on many sharing a
/// database. Engines: [`SledStore`] here, PostgreSQL in `otpd-store-postgres`; the core
/// sees only this trait.
pub trait Store: Send + Sync {
    /// The user (with its marks) and what [`Store::swap_user`] compares.
    fn get_user(&self, login_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError>;
    /// Replaces the user only if it is still `expected` (`None`: must not exist yet);
    /// `new = None` deletes. `Ok(false)`: someone changed it meanwhile, read again.
    fn swap_user(
        &self,
        login_id: &str,
        expected: Option<&Versioned<UserRecord>>,
        new: Option<&UserRecord>,
    ) -> Result<bool, StoreError>;
    /// Advances the replay mark to `step` and clears the login failure count, in one
    /// conditional write: only if the record is still at `epoch`, its mark is below `step`,
    /// and the user is not locked at `now`.
    fn spend_step(
        &self,
        login_id: &str,
        epoch: u64,
        step: u64,
        now: UnixTime,
    ) -> Result<Spend, StoreError>;
    /// Counts one login failure and locks as `policy` says, in one write; the lock after it
    /// (`None`: no such user).
    fn count_failure(
        &self,
        login_id: &str,
        now: UnixTime,
        policy: &LockPolicy,
    ) -> Result<Option<LockState>, StoreError>;
    /// Clears the login failure count and lock (a correct password after failures).
    fn clear_failures(&self, login_id: &str) -> Result<(), StoreError>;
    /// Marks `key` used until `expires_at`: true the first time, false while it stays used
    /// (challenge States, single use on every node).
    fn use_once(&self, key: &[u8], expires_at: UnixTime, now: UnixTime)
        -> Result<bool, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Up to `limit` users after `after`, in login-ID order: one page of a listing.
    fn users_after(&self, after: Option<&str>, limit: usize)
        -> Result<Vec<UserRecord>, StoreError>;
    fn user_count(&self) -> usize;
    /// Setup links: hash of the code → login ID.
    fn link_owner(&self, hash: &str) -> Result<Option<String>, StoreError>;
    fn set_link_owner(&self, hash: &str, login_id: Option<&str>) -> Result<(), StoreError>;
    /// The durable mail outbox: returns the new message's id.
    fn outbox_push(&self, message: &[u8]) -> Result<u64, StoreError>;
    fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Up to `limit` outbox messages that no other node holds (never leased, lease run out,
    /// or held by `node` itself), each leased to `node` until `now + lease_seconds`: while
    /// the lease runs, no other node is handed it.
    fn outbox_lease(
        &self,
        node: &str,
        now: UnixTime,
        lease_seconds: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn outbox_replace(&self, id: u64, message: &[u8]) -> Result<(), StoreError>;
    fn outbox_remove(&self, id: u64) -> Result<(), StoreError>;
    /// Calls `done` once every write made before this call is on disk.
    fn when_durable(&self, done: DurableCallback);
    /// Says that a login (or another writer) is under way and may soon ask for
    /// [`Store::when_durable`]: a group commit that is gathering waiters waits for it (at
    /// most its gap) and starts at once when every such writer has queued or gone. Drop the
    /// guard right after queueing, or when no wait will follow. Engines whose commits are
    /// not gathered ignore it.
    fn gathering(&self) -> Gathering {
        Gathering(None)
    }
    /// Blocks until every write made before this call is on disk.
    fn wait_durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.when_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Io("flusher stopped".into())))
    }
    /// Whether an answer that read `login_id` and wrote nothing must still wait for a
    /// flush: true while a write to that user is not yet on disk (it could be lost, and an
    /// answer must not rest on what a crash can undo).
    fn needs_flush(&self, login_id: &str) -> bool;
    /// Which engine, and where: ("sled", its folder) or ("postgres", its server).
    fn describe(&self) -> (String, String);
    /// Whether every call stays on this machine (an embedded store: memory, and at worst a
    /// read of a local file), so a caller may make it on the thread that holds the request
    /// instead of handing it to a pool. False for a store across a network.
    fn local(&self) -> bool {
        true
    }
    /// Whether the store answers now (a database server may be unreachable); quick, with
    /// a short timeout of its own. An embedded store is always there.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Reads users ahead of their logins, as many as the engine's cache holds, so that
    /// after a restart the first logins find their users in memory instead of each reading
    /// its part of the store from disk. Runs for a while (it reads the store): call it
    /// from a thread of its own. Engines without such a cache do nothing and say `None`.
    fn warm(&self) -> Result<Option<Warmed>, StoreError> {
        Ok(None)
    }
    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> u64;
    /// A copy of everything, for backups: each record is read whole, so every user comes
    /// back with its own state, lock and replay mark consistent.
    fn export(&self) -> Result<Vec<ExportRow>, StoreError> {
        self.export_after(None, usize::MAX)
    }
    /// Up to `limit` backup records after `after` (tree, key), in [`Store::export`]'s order:
    /// one page of a backup. A "users" row is the whole record as JSON, marks included, the
    /// same on every engine, so a backup from one restores into another.
    fn export_after(
        &self,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<ExportRow>, StoreError>;
    /// Writes backup rows into the store (for a restore into a stopped daemon's store).
    fn restore(&self, rows: &[ExportRow]) -> Result<(), StoreError>;
    /// Creates every one of `users`, or none of them, in one atomic commit (a crash leaves
    /// all or none): `Ok(Err(login_id))` names a user that exists already, and nothing was
    /// written. Durable at the next [`Store::when_durable`], like every write.
    fn create_users(&self, users: &[UserRecord]) -> Result<Result<(), String>, StoreError>;
    /// The key check value the store records ([`Sealer::check_value`]), if any.
    fn key_check(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records `value` as the key check value unless one is recorded already; the value
    /// recorded after the call (the first node's, when several start at once).
    fn record_key_check(&self, value: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// How [`open_key`] found the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOpened {
    /// The store's key check value matches it.
    Matched,
    /// The store recorded none yet; it does now.
    Recorded,
    /// There was no key file and the store was a new embedded one: a key was made.
    Created,
}

/// Why `key_file` does not fit the store: otpd does not start (and changes nothing).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key_file {key_file} does not match the {store}: its data was sealed under another key; start with the master.key it was made with (in a cluster: copy it from a node that serves); nothing was changed")]
    Mismatch { key_file: String, store: String },
    #[error("key_file {key_file} missing; copy the cluster's master.key (mode 0600) from a node that serves: otpd creates a key only for a new embedded store, never for PostgreSQL. For the first node of a new database, make one: (umask 077; openssl rand -hex 32 > {key_file})")]
    MissingShared { key_file: String },
    #[error("key_file {key_file} missing, but the {store} already holds {users} users sealed under a key: put back the master.key it was made with (otpd creates a key only for an empty store); nothing was changed")]
    MissingInUse {
        key_file: String,
        store: String,
        users: usize,
    },
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads `key_file` for `store`, the one way a key reaches otpd or its offline tools: the
/// key must match the key check value the store records, and is recorded when the store
/// has none yet (after one sealed secret of the store, if any, was opened with it: a store
/// made before the check recorded nothing). A missing key file is created only for an
/// embedded store that is empty and has never recorded a key.
pub fn open_key(key_file: &Path, store: &dyn Store) -> Result<(Sealer, KeyOpened), KeyError> {
    let (engine, location) = store.describe();
    let name = format!("{engine} store {location}");
    let key = key_file.display().to_string();
    let recorded = store.key_check()?;
    let mut opened = KeyOpened::Recorded;
    if !key_file.exists() {
        if !store.local() {
            return Err(KeyError::MissingShared { key_file: key });
        }
        let users = store.user_count();
        if users > 0 || recorded.is_some() {
            return Err(KeyError::MissingInUse {
                key_file: key,
                store: name,
                users,
            });
        }
        opened = KeyOpened::Created;
    }
    let sealer = Sealer::load_or_create(key_file)?;
    let value = sealer.check_value();
    let mismatch = || KeyError::Mismatch {
        key_file: key.clone(),
        store: name.clone(),
    };
    match recorded {
        Some(r) if r == value => return Ok((sealer, KeyOpened::Matched)),
        Some(_) => return Err(mismatch()),
        None => {}
    }
    if !opens_a_secret(store, &sealer)? {
        return Err(mismatch());
    }
    if store.record_key_check(&value)? != value {
        // Another node recorded its key meanwhile.
        return Err(mismatch());
    }
    store.wait_durable()?;
    Ok((sealer, opened))
}

/// Whether `sealer` opens the first sealed secret among the store's first users (true
/// when none of them holds one).
fn opens_a_secret(store: &dyn Store, sealer: &Sealer) -> Result<bool, StoreError> {
    for user in store.users_after(None, 1000)? {
        let secret = match &user.token {
            Token::Issued { secret, .. }
            | Token::Provisioned { secret, .. }
            | Token::Active { secret, .. } => secret,
            _ => continue,
        };
        return Ok(sealer.open(&user.login_id, secret).is_ok());
    }
    Ok(true)
}

/// Which writes are not on disk yet, per key: the group commit clears what its flush covered.
/// Writers mark a key before they write, under `gate`'s read side; the flusher takes the
/// write side only to read `seq`, so every write it counts has reached sled before it flushes.
#[derive(Default)]
struct Pending {
    gate: RwLock<()>,
    seq: AtomicU64,
    keys: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Pending {
    fn writing<T>(&self, key: &[u8], write: impl FnOnce() -> T) -> T {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_vec(), seq);
        write()
    }

    /// [`Pending::writing`] for a write of many keys at once.
    fn writing_all<T>(&self, keys: impl Iterator<Item = Vec<u8>>, write: impl FnOnce() -> T) -> T {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys.map(|k| (k, seq)));
        write()
    }

    /// The last write a flush starting now will cover.
    fn horizon(&self) -> u64 {
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        self.seq.load(Ordering::SeqCst)
    }

    fn flushed(&self, horizon: u64) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, seq| *seq > horizon);
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }
}

/// What [`Store::warm`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmed {
    pub users: usize,
    /// Bytes of the users' records and marks.
    pub bytes: u64,
    /// Every user fit; otherwise it stopped at the cache's budget.
    pub complete: bool,
}

/// Writers under way that a group commit may wait for ([`Store::gathering`]), and the
/// flusher to wake when the last of them has queued.
#[derive(Default)]
struct Gather {
    under_way: AtomicUsize,
    flusher: std::sync::OnceLock<std::thread::Thread>,
    /// When the last writer said it was under way, in ms since the store opened (what a
    /// warm-up yields to).
    last_arrival_ms: AtomicU64,
    /// Waiters queued for the next flush, and how many the flusher waits for (0: none).
    queued: AtomicUsize,
    target: AtomicUsize,
}

impl Gather {
    fn idle(&self) -> bool {
        self.under_way.load(Ordering::SeqCst) == 0
    }

    fn wake_flusher(&self) {
        if let Some(t) = self.flusher.get() {
            t.unpark();
        }
    }
}

/// One writer under way ([`Store::gathering`]); dropping it says it has queued its wait
/// for durability, or needs none.
#[must_use]
pub struct Gathering(Option<Arc<Gather>>);

impl Drop for Gathering {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            if g.under_way.fetch_sub(1, Ordering::SeqCst) == 1 {
                g.wake_flusher();
            }
        }
    }
}

/// Keys of writes that are not a user's: login IDs never start with NUL.
const LINKS_KEY: &[u8] = b"\0links";
const OUTBOX_KEY: &[u8] = b"\0outbox";
const ONCE_KEY: &[u8] = b"\0once";

pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    users: sled::Tree,
    marks: sled::Tree,
    links: sled::Tree,
    outbox: sled::Tree,
    once: sled::Tree,
    /// The users an import's commit has written so far (login ID → nothing), kept until
    /// its switch, so that a failure or a crash part way through removes them again.
    importing: sled::Tree,
    /// While an import's commit runs: its users stay hidden until the switch.
    import_running: std::sync::atomic::AtomicBool,
    import_lock: Mutex<()>,
    once_calls: AtomicU64,
    leases: Mutex<HashMap<u64, (String, UnixTime)>>,
    pending: Arc<Pending>,
    gather: Arc<Gather>,
    cache_bytes: u64,
    opened: Instant,
    migrated: usize,
    flush_tx: Mutex<Option<mpsc::Sender<DurableCallback>>>,
    observer: Arc<std::sync::OnceLock<CommitObserver>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for SledStore {
    /// Lets the flusher answer what is queued, then waits for it, so the store can be opened
    /// again in the same process at once.
    fn drop(&mut self) {
        if let Ok(mut tx) = self.flush_tx.lock() {
            tx.take();
        }
        if let Some(handle) = self.flusher.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

/// How long an open waits for the store's file lock. sled drops its last handle of a
/// closed store on whichever thread finishes its last deferred work, a moment after the
/// close returns; an otpd that is exiting holds it until it has gone. Another otpd still
/// running on the same store is refused once this has passed.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens `config`'s store, retrying while its file lock is held, for up to [`LOCK_WAIT`].
fn open_locked(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(e) if is_lock_held(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// Whether sled refused an open because another handle holds the store's file lock.
fn is_lock_held(e: &sled::Error) -> bool {
    // sled 0.34 says so only in the message (`ErrorKind::Other`).
    matches!(e, sled::Error::Io(e) if e.to_string().starts_with("could not acquire lock"))
}

/// sled's page cache. sled's resident memory under writes is several times this (sled issue
/// 1309). With records as JSON (about 600 bytes), 64 MiB saved only about 5 % of the CPU per
/// login at 100k users and cost 10-20 MiB of peak RSS. In the binary layout (about 250
/// bytes) 100k users' records fit in 48 MiB: `scripts/bench --only scaling` (BENCHMARKS.md,
/// 2026-12-02 evening) gave 100k ÷ 1k users 0.78× at 16 MiB and 0.95×, 0.81× at 48 MiB, peak
/// RSS 90 MiB at 100k either way and 214-221 MiB (was 192) at 1M.
const CACHE_BYTES: u64 = 48 * 1024 * 1024;
/// The share of the cache, in percent, that a warm-up ([`Store::warm`]) fills with users.
const WARM_SHARE: u64 = 60;
/// A warm-up reads this many users at a time, then checks that no login came meanwhile...
const WARM_CHUNK: usize = 512;
/// ...for this long.
const WARM_QUIET: Duration = Duration::from_millis(100);

/// Where the store says which layout its users are in (in sled's default tree), and the
/// layout of records and marks apart. A store without it may hold old-layout users.
const LAYOUT_KEY: &[u8] = b"otpd-layout";
/// 2: marks in their own tree, records as JSON (layout 1 of the record). 3: records in the
/// binary layout 2 too.
const LAYOUT_BINARY: [u8; 1] = [3];
/// The number of users, in sled's default tree, kept by the writes that add or remove one:
/// sled's own `len` reads every leaf (seconds at a million users).
const USER_COUNT_KEY: &[u8] = b"otpd-user-count";
/// Set, in sled's default tree, from an import's first write to its switch.
const IMPORT_KEY: &[u8] = b"otpd-import-running";
/// An import's commit writes this many users per transaction. One sled transaction pins
/// sled's memory reclamation and holds every other write back until it ends: a million
/// users in one peaked at 12.9 GiB (`scripts/bench-import`), so the switch is a flag
/// instead (see [`Store::create_users`]). At 10 000 a chunk the peak was 888 MiB, at
/// 1 000 778 MiB, in the same time (29-32 s).
const IMPORT_CHUNK: usize = 1_000;
/// The key check value ([`Store::key_check`]), in sled's default tree.
const KEY_CHECK_KEY: &[u8] = b"otpd-key-check";
/// How many users a move of layout handles between two progress reports.
pub const MIGRATION_REPORT_EVERY: usize = 100_000;

impl SledStore {
    /// Opens (or creates) the store in `dir`, moving a store written before the marks had a
    /// tree of their own into the new layout (see [`SledStore::migrated`]).
    pub fn open(dir: &Path) -> Result<Arc<SledStore>, StoreError> {
        SledStore::open_reporting(dir, &mut |_| {})
    }

    /// [`SledStore::open`], telling `progress` the count of users moved so far at every
    /// [`MIGRATION_REPORT_EVERY`] while a move of layout runs (a million users take seconds).
    pub fn open_reporting(
        dir: &Path,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Arc<SledStore>, StoreError> {
        SledStore::open_with_gaps(dir, progress, FLUSH_GAP, FLUSH_MIN_GAP)
    }

    /// [`SledStore::open_reporting`] with the group commit's longest wait for writers
    /// under way set to `gap` and a busy store's shortest one to `min_gap` (tests give long
    /// ones).
    fn open_with_gaps(
        dir: &Path,
        progress: &mut dyn FnMut(usize),
        gap: Duration,
        min_gap: Duration,
    ) -> Result<Arc<SledStore>, StoreError> {
        // Password hashes and e-mail addresses live here: only otpd may enter, whatever the
        // umask of whoever started it.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let config = sled::Config::new()
            .path(dir.join("store"))
            // Durability comes from our group commit, not from sled's timer.
            .flush_every_ms(None)
            .cache_capacity(CACHE_BYTES);
        let db = open_locked(&config).map_err(|e| {
            let why = if is_lock_held(&e) {
                format!(
                    "another process holds it (a running otpd, or otpctl working on it offline; waited {} s): {e}",
                    LOCK_WAIT.as_secs()
                )
            } else {
                e.to_string()
            };
            StoreError::Io(format!("cannot open store in {}: {why}", dir.display()))
        })?;
        let users = db.open_tree("users")?;
        let marks = db.open_tree("marks")?;
        let links = db.open_tree("links")?;
        let outbox = db.open_tree("outbox")?;
        let once = db.open_tree("once")?;
        let importing = db.open_tree("importing")?;
        let pending = Arc::new(Pending::default());
        let (tx, rx) = mpsc::channel::<DurableCallback>();
        let flusher = db.clone();
        let observer = Arc::new(std::sync::OnceLock::new());
        let watching = observer.clone();
        let flushing = pending.clone();
        let gather = Arc::new(Gather::default());
        let gathered = gather.clone();
        let durability = Durability::open(dir).map_err(|e| {
            StoreError::Io(format!("cannot sync the store in {}: {e}", dir.display()))
        })?;
        let handle = std::thread::Builder::new()
            .name("otpd-group-commit".into())
            .spawn(move || {
                group_commit(
                    flusher,
                    durability,
                    rx,
                    watching,
                    flushing,
                    gathered,
                    (gap, min_gap),
                )
            })
            .map_err(|e| StoreError::Io(format!("cannot start flusher: {e}")))?;
        let _ = gather.flusher.set(handle.thread().clone());
        let mut store = SledStore {
            db,
            dir: dir.to_path_buf(),
            users,
            marks,
            links,
            outbox,
            once,
            importing,
            import_running: std::sync::atomic::AtomicBool::new(false),
            import_lock: Mutex::new(()),
            once_calls: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
            pending,
            gather,
            cache_bytes: CACHE_BYTES,
            opened: Instant::now(),
            migrated: 0,
            flush_tx: Mutex::new(Some(tx)),
            observer,
            flusher: Mutex::new(Some(handle)),
        };
        store.migrated = store.migrate(progress)?;
        if store.db.get(IMPORT_KEY)?.is_some() {
            // An import's commit did not reach its switch: none of it stays.
            store.undo_import()?;
            store.wait_durable()?;
        }
        Ok(Arc::new(store))
    }

    /// How many users this open moved from an older layout (the whole record as JSON, marks
    /// inside; or the record as JSON beside its marks) to the binary record beside its
    /// marks. Nothing is lost: the marks are read from the record, or kept.
    pub fn migrated(&self) -> usize {
        self.migrated
    }

    /// Moves every user of an older layout, once: a record holding its own marks (before
    /// the marks had a tree of their own) is written anew, record and marks; a JSON record
    /// is re-encoded in the binary layout with its epoch, so its marks still match. The
    /// store then says it holds the newest layout only, and later opens do not read every
    /// user again (at a million users that read was 2 s of every start-up).
    fn migrate(&self, progress: &mut dyn FnMut(usize)) -> Result<usize, StoreError> {
        if self.db.get(LAYOUT_KEY)?.as_deref() == Some(LAYOUT_BINARY.as_slice()) {
            return Ok(0);
        }
        let (mut moved, mut count) = (0, 0u64);
        for kv in self.users.iter() {
            let (key, raw) = kv?;
            count += 1;
            match raw.first() {
                Some(&b'{') => {
                    let user = decode_record(&raw)?;
                    let epoch = self.db.generate_id()?;
                    self.write_user(&key, &user, epoch)?;
                }
                Some(&COLD_JSON) => {
                    let (epoch, user) = decode_cold(&raw)?;
                    self.users.insert(&key, encode_cold(&user, epoch)?)?;
                }
                _ => continue,
            }
            moved += 1;
            if moved % MIGRATION_REPORT_EVERY == 0 {
                progress(moved);
            }
        }
        self.db
            .insert(USER_COUNT_KEY, count.to_be_bytes().as_slice())?;
        self.db.insert(LAYOUT_KEY, LAYOUT_BINARY.as_slice())?;
        self.wait_durable()?;
        Ok(moved)
    }

    /// Writes a whole user, record and marks, at `epoch`, in one transaction.
    fn write_user(&self, key: &[u8], user: &UserRecord, epoch: u64) -> Result<(), StoreError> {
        let cold = encode_cold(user, epoch)?;
        let hot = encode_marks(&Marks::of(user, epoch));
        self.pending.writing(key, || {
            (&self.users, &self.marks)
                .transaction(|(users, marks)| {
                    users.insert(key, cold.as_slice())?;
                    marks.insert(key, hot.as_slice())?;
                    Ok(())
                })
                .map_err(transaction_error)
        })
    }

    /// Milliseconds since the store opened, at least 1 (0 stands for "never").
    fn since_open_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Sets who hears about each group commit (metrics); only the first call counts.
    pub fn observe_commits(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }

    /// Reads the record and its marks of one user as one version: the two are written in one
    /// transaction, and a read that fell between two writes sees different epochs and
    /// reads again.
    fn read_user(&self, key: &[u8]) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        if self.import_running.load(Ordering::SeqCst) && self.importing.contains_key(key)? {
            return Ok(None);
        }
        for _ in 0..1000 {
            let Some(cold) = self.users.get(key)? else {
                return Ok(None);
            };
            let hot = self.marks.get(key)?;
            let (epoch, mut user) = decode_cold(&cold)?;
            let marks = match &hot {
                Some(h) => decode_marks(h)?,
                None if epoch == 0 => Marks::of(&user, 0),
                None => continue,
            };
            if marks.epoch != epoch {
                continue;
            }
            marks.apply(&mut user);
            let mut raw = hot.map(|h| h.to_vec()).unwrap_or_default();
            raw.resize(MARKS_LEN, 0);
            raw.extend_from_slice(&cold);
            return Ok(Some(Versioned::new(user, epoch, raw)));
        }
        Err(StoreError::Corrupt(format!(
            "the record and the marks of {:?} disagree",
            String::from_utf8_lossy(key)
        )))
    }

    /// Changes one user's marks with compare-and-swap, retrying when another write came
    /// first. `change` returns what to answer and whether the marks changed.
    fn change_marks<T>(
        &self,
        login_id: &str,
        mut change: impl FnMut(&mut Marks) -> (T, bool),
    ) -> Result<Option<T>, StoreError> {
        let key = login_id.as_bytes();
        loop {
            let Some(raw) = self.marks.get(key)? else {
                return Ok(None);
            };
            let mut marks = decode_marks(&raw)?;
            let (answer, changed) = change(&mut marks);
            if !changed {
                return Ok(Some(answer));
            }
            let new = encode_marks(&marks);
            let swapped = self.pending.writing(key, || {
                self.marks
                    .compare_and_swap(key, Some(&raw), Some(new.as_slice()))
            })?;
            if swapped.is_ok() {
                return Ok(Some(answer));
            }
        }
    }

    fn decode_users(
        &self,
        rows: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in rows {
            let (key, _) = kv?;
            if let Some(v) = self.read_user(&key)? {
                out.push(v.value);
            }
        }
        Ok(out)
    }
}

/// Longest time a flush waits for writers still under way ([`Store::gathering`]), counted
/// from the start of the one before. Every flush costs a disk write and wakes sled's I/O
/// threads, so fewer, larger batches pay; but a batch that every writer under way has
/// joined gains nothing by waiting. Measured at 100k users, 64 logins in flight
/// (BENCHMARKS.md, 2026-12-02): CPU per login 150-161 µs with a fixed gap of 1 ms,
/// 126-134 µs at 4 ms; on a machine whose flush is quick the fixed 4 ms gap set the
/// throughput of a closed loop instead (64 logins every 4 ms: BENCHMARKS.md, 2026-12-03).
const FLUSH_GAP: Duration = Duration::from_millis(4);

/// Shortest time between the starts of two flushes of a busy store, one whose last flush
/// answered at least BUSY_BATCH waiters: the next flush waits that long, or until as many
/// waiters have queued again, whichever comes first. Each flush costs about 150 µs of CPU
/// (sled wakes all seven idle threads of its I/O pool for every write it hands them), so
/// under a full load larger batches leave more CPU for logins; a store with fewer logins
/// in flight never waits for it, and a fast one fills its batch before it. Measured at 1k
/// users (BENCHMARKS.md, 2026-12-03): 64 in flight 62 -> 60 µs per login and +4 % answers/s,
/// 32 and 16 in flight unchanged. A plain 1 ms after any batch of 8 (or 24) capped the
/// loops of 16 (or 24) in flight at their size per ms.
const FLUSH_MIN_GAP: Duration = Duration::from_millis(1);
const BUSY_BATCH: usize = 32;

/// What sled's flush leaves undone. sled 0.34 writes its log with `pwrite` and
/// `sync_file_range`, which neither empty the disk's write cache nor record the file's new
/// size, and writes blobs without any sync: after a power loss a flushed write may be gone.
/// This makes each flush durable: `fdatasync` of the log file, `fsync` of each new blob,
/// and of a folder whose entries changed. The handles stay open between flushes.
struct Durability {
    store: PathBuf,
    /// sled's log (`store/db`), written at every flush.
    log: std::fs::File,
    folder: std::fs::File,
    /// The names in the store's folder at the last sync.
    entries: std::collections::BTreeSet<std::ffi::OsString>,
    blobs: Option<(
        std::fs::File,
        std::collections::BTreeSet<std::ffi::OsString>,
    )>,
}

impl Durability {
    /// Opens the handles and makes what is on disk now durable, every file and folder of
    /// the store included (the open may have created them).
    fn open(data_dir: &Path) -> std::io::Result<Durability> {
        let store = data_dir.join("store");
        let mut d = Durability {
            log: std::fs::File::open(store.join("db"))?,
            folder: std::fs::File::open(&store)?,
            entries: Default::default(),
            blobs: None,
            store,
        };
        for name in list(&d.store)? {
            let path = d.store.join(&name);
            if path.is_file() {
                std::fs::File::open(&path)?.sync_all()?;
            }
            d.entries.insert(name);
        }
        let blobs = d.store.join("blobs");
        if blobs.is_dir() {
            let names = list(&blobs)?;
            for name in &names {
                std::fs::File::open(blobs.join(name))?.sync_all()?;
            }
            let folder = std::fs::File::open(&blobs)?;
            folder.sync_all()?;
            d.blobs = Some((folder, names));
        }
        d.folder.sync_all()?;
        // The folders above: an open may have created data_dir and the store in it.
        std::fs::File::open(data_dir)?.sync_all()?;
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(d)
    }

    /// Makes what sled's last flush wrote durable: new blobs first (the log points to
    /// them), then the log, then the store's folder if a file came or went.
    fn sync(&mut self) -> std::io::Result<()> {
        if let Some((folder, known)) = &mut self.blobs {
            let blobs = self.store.join("blobs");
            let names = list(&blobs)?;
            if names != *known {
                for name in names.difference(known) {
                    std::fs::File::open(blobs.join(name))?.sync_all()?;
                }
                folder.sync_all()?;
                *known = names;
            }
        }
        self.log.sync_data()?;
        let names = list(&self.store)?;
        if names != self.entries {
            for name in names.difference(&self.entries) {
                let path = self.store.join(name);
                if path.is_file() {
                    std::fs::File::open(&path)?.sync_all()?;
                }
            }
            self.folder.sync_all()?;
            self.entries = names;
        }
        Ok(())
    }
}

/// The names in `dir` (a few: sled's store holds `db`, `conf`, `snap.*` and `blobs`).
fn list(dir: &Path) -> std::io::Result<std::collections::BTreeSet<std::ffi::OsString>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// One thread owns every flush. Each round takes all waiters queued so far, flushes once
/// with the blocking `flush()` (never `flush_async`, which deadlocks under concurrency in
/// sled 0.34), syncs what it wrote ([`Durability`]), and answers them all: every waiter
/// wrote before it queued, so before the flush. A failed flush or sync fails the store:
/// every later waiter is told so too (after a failed `fsync` the kernel may have dropped
/// the pages, and a second `fsync` that succeeds proves nothing).
fn group_commit(
    db: sled::Db,
    mut durability: Durability,
    rx: mpsc::Receiver<DurableCallback>,
    observer: Arc<std::sync::OnceLock<CommitObserver>>,
    pending: Arc<Pending>,
    gather: Arc<Gather>,
    (gap, min_gap): (Duration, Duration),
) {
    // When the last flush started, and how many waiters it answered.
    let mut last: Option<(Instant, usize)> = None;
    let mut failed: Option<StoreError> = None;
    while let Ok(first) = rx.recv() {
        if let Some((start, size)) = last {
            // A busy store lets the next logins join: until as many as last time have
            // queued, or min_gap after the last start.
            if size >= BUSY_BATCH {
                gather.target.store(size, Ordering::SeqCst);
                park_until(start + min_gap, || {
                    gather.queued.load(Ordering::SeqCst) >= size
                });
                gather.target.store(0, Ordering::SeqCst);
            }
            // Then wait for the writers still under way to join this batch, but start at
            // most one flush per `gap` (FLUSH_GAP) while some are: a flush costs about the
            // same for one record as for a hundred. A store whose every writer has queued
            // flushes at once.
            park_until(start + gap, || gather.idle());
        }
        let start = Instant::now();
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        gather.queued.fetch_sub(batch.len(), Ordering::SeqCst);
        last = Some((start, batch.len()));
        let horizon = pending.horizon();
        let flush_start = Instant::now();
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => db.flush().map_err(StoreError::from).and_then(|_| {
                durability
                    .sync()
                    .map_err(|e| StoreError::Io(format!("cannot sync the store to disk: {e}")))
            }),
        };
        if let Err(e) = &result {
            failed.get_or_insert_with(|| e.clone());
        } else {
            pending.flushed(horizon);
        }
        if let Some(observe) = observer.get() {
            observe(batch.len(), flush_start.elapsed(), result.is_err());
        }
        for done in batch {
            done(result.clone());
        }
    }
}

/// Parks the flusher until `done` says so (the writers wake it) or `deadline` passes.
fn park_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        std::thread::park_timeout(wait);
    }
}

fn transaction_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn decode_record(raw: &[u8]) -> Result<UserRecord, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_record(u: &UserRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(u).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The layouts of a record: a version byte, the epoch (8 bytes, big-endian), the record:
/// as JSON after 1, in the binary layout of `cold.rs` after 2 (what is written). A value
/// that starts with `{` is the oldest layout: the JSON alone, epoch 0, marks inside.
const COLD_JSON: u8 = 1;
const COLD_BINARY: u8 = 2;

fn encode_cold(u: &UserRecord, epoch: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(256);
    out.push(COLD_BINARY);
    out.extend_from_slice(&epoch.to_be_bytes());
    crate::cold::encode(u, &mut out).map_err(StoreError::Corrupt)?;
    Ok(out)
}

fn decode_cold(raw: &[u8]) -> Result<(u64, UserRecord), StoreError> {
    match raw.split_first() {
        Some((&b'{', _)) => Ok((0, decode_record(raw)?)),
        Some((&COLD_BINARY, rest)) => match rest.split_first_chunk::<8>() {
            Some((epoch, record)) => Ok((
                u64::from_be_bytes(*epoch),
                crate::cold::decode(record).map_err(StoreError::Corrupt)?,
            )),
            None => Err(StoreError::Corrupt("a user record cut short".into())),
        },
        Some((&COLD_JSON, rest)) if rest.len() > 8 => {
            let (epoch, json) = rest.split_at(8);
            let epoch = u64::from_be_bytes(epoch.try_into().unwrap_or_default());
            Ok((epoch, decode_record(json)?))
        }
        _ => Err(StoreError::Corrupt(
            "a user record of unknown layout".into(),
        )),
    }
}

/// The layout of marks, 30 bytes: 1, epoch (8), last step + 1 (8; 0 = none), failures (4),
/// lock flag (1: 0 none, 1 locked), locked until (8, signed). All big-endian.
const MARKS_V1: u8 = 1;
const MARKS_LEN: usize = 30;

fn encode_marks(m: &Marks) -> [u8; MARKS_LEN] {
    let mut out = [0u8; MARKS_LEN];
    out[0] = MARKS_V1;
    out[1..9].copy_from_slice(&m.epoch.to_be_bytes());
    let step = m.last_step.map_or(0, |s| s.saturating_add(1));
    out[9..17].copy_from_slice(&step.to_be_bytes());
    out[17..21].copy_from_slice(&m.lock.failures.to_be_bytes());
    if let Some(until) = m.lock.locked_until {
        out[21] = 1;
        out[22..30].copy_from_slice(&until.to_be_bytes());
    }
    out
}

fn decode_marks(raw: &[u8]) -> Result<Marks, StoreError> {
    let raw: &[u8; MARKS_LEN] = raw
        .try_into()
        .ok()
        .filter(|r: &&[u8; MARKS_LEN]| r[0] == MARKS_V1)
        .ok_or_else(|| StoreError::Corrupt("a user's marks of unknown layout".into()))?;
    let u64_at = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().unwrap_or_default());
    let step = u64_at(9);
    Ok(Marks {
        epoch: u64_at(1),
        last_step: step.checked_sub(1),
        lock: LockState {
            failures: u32::from_be_bytes(raw[17..21].try_into().unwrap_or_default()),
            locked_until: (raw[21] == 1)
                .then(|| i64::from_be_bytes(raw[22..30].try_into().unwrap_or_default())),
        },
    })
}

impl Store for SledStore {
    fn get_user(&self, login_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.read_user(login_id.as_bytes())
    }

    fn swap_user(
        &self,
        login_id: &str,
        expected: Option<&Versioned<UserRecord>>,
        new: Option<&UserRecord>,
    ) -> Result<bool, StoreError> {
        let key = login_id.as_bytes();
        let epoch = self.db.generate_id()?;
        let new = match new {
            Some(u) => Some((encode_cold(u, epoch)?, encode_marks(&Marks::of(u, epoch)))),
            None => None,
        };
        let expected = expected.map(|v| v.raw.split_at(MARKS_LEN.min(v.raw.len())));
        self.pending.writing(key, || {
            (&self.users, &self.marks, &*self.db)
                .transaction(|(users, marks, meta)| {
                    let cold = users.get(key)?;
                    let current = match (&expected, &cold) {
                        (None, None) => true,
                        (Some((hot_was, cold_was)), Some(cold)) => {
                            let hot = marks.get(key)?;
                            let hot_now = hot.as_deref().unwrap_or(&[0u8; MARKS_LEN]);
                            cold.as_ref() == *cold_was && hot_now == *hot_was
                        }
                        _ => false,
                    };
                    if !current {
                        return Ok(false);
                    }
                    let change: i64 = match (&cold, &new) {
                        (None, Some(_)) => 1,
                        (Some(_), None) => -1,
                        _ => 0,
                    };
                    match &new {
                        Some((cold, hot)) => {
                            users.insert(key, cold.as_slice())?;
                            marks.insert(key, hot.as_slice())?;
                        }
                        None => {
                            users.remove(key)?;
                            marks.remove(key)?;
                        }
                    }
                    if change != 0 {
                        let was = meta.get(USER_COUNT_KEY)?.map_or(0, |v| decode_count(&v));
                        let now = was.saturating_add_signed(change);
                        meta.insert(USER_COUNT_KEY, now.to_be_bytes().as_slice())?;
                    }
                    Ok(true)
                })
                .map_err(transaction_error)
        })
    }

    fn spend_step(
        &self,
        login_id: &str,
        epoch: u64,
        step: u64,
        now: UnixTime,
    ) -> Result<Spend, StoreError> {
        let spent = self.change_marks(login_id, |m| {
            if m.epoch != epoch {
                (Spend::Changed, false)
            } else if m.lock.is_locked(now) {
                (Spend::Locked, false)
            } else if m.last_step.is_some_and(|l| l >= step) {
                (Spend::Replayed, false)
            } else {
                m.last_step = Some(step);
                m.lock.record_success();
                (Spend::Spent, true)
            }
        })?;
        Ok(spent.unwrap_or(Spend::Missing))
    }

    fn count_failure(
        &self,
        login_id: &str,
        now: UnixTime,
        policy: &LockPolicy,
    ) -> Result<Option<LockState>, StoreError> {
        self.change_marks(login_id, |m| {
            m.lock.record_failure(now, policy);
            (m.lock.clone(), true)
        })
    }

    fn clear_failures(&self, login_id: &str) -> Result<(), StoreError> {
        self.change_marks(login_id, |m| {
            let changed = m.lock != LockState::default();
            m.lock.record_success();
            ((), changed)
        })?;
        Ok(())
    }

    fn use_once(
        &self,
        key: &[u8],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // Now and then, forget what has expired: a State lives for seconds.
        if self.once_calls.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            for kv in self.once.iter() {
                let (k, v) = kv?;
                if decode_time(&v) < now {
                    self.pending.writing(ONCE_KEY, || self.once.remove(&k))?;
                }
            }
        }
        let until = expires_at.to_be_bytes();
        loop {
            let current = self.once.get(key)?;
            if current.as_deref().is_some_and(|v| decode_time(v) >= now) {
                return Ok(false);
            }
            let swapped = self.pending.writing(ONCE_KEY, || {
                self.once
                    .compare_and_swap(key, current.as_deref(), Some(&until[..]))
            })?;
            if swapped.is_ok() {
                return Ok(true);
            }
        }
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.decode_users(self.users.iter())
    }

    fn users_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let from = match after {
            Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.decode_users(self.users.range((from, Bound::Unbounded)).take(limit))
    }

    fn user_count(&self) -> usize {
        match self.db.get(USER_COUNT_KEY) {
            Ok(Some(v)) => usize::try_from(decode_count(&v)).unwrap_or(usize::MAX),
            _ => self.users.len(),
        }
    }

    fn link_owner(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .links
            .get(hash.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_link_owner(&self, hash: &str, login_id: Option<&str>) -> Result<(), StoreError> {
        self.pending.writing(LINKS_KEY, || match login_id {
            Some(id) => self.links.insert(hash.as_bytes(), id.as_bytes()),
            None => self.links.remove(hash.as_bytes()),
        })?;
        Ok(())
    }

    fn outbox_push(&self, message: &[u8]) -> Result<u64, StoreError> {
        let id = self.db.generate_id()?;
        self.pending
            .writing(OUTBOX_KEY, || self.outbox.insert(id.to_be_bytes(), message))?;
        Ok(id)
    }

    fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id = <[u8; 8]>::try_from(k.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("outbox key".into()))?;
                Ok((id, v.to_vec()))
            })
            .collect()
    }

    fn outbox_lease(
        &self,
        node: &str,
        now: UnixTime,
        lease_seconds: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // One node owns a sled store, so the leases can live in memory: a restart frees them.
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let until = now.saturating_add(i64::try_from(lease_seconds).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        for (id, message) in self.outbox()? {
            if out.len() >= limit {
                break;
            }
            if leases
                .get(&id)
                .is_some_and(|(holder, held)| holder != node && *held > now)
            {
                continue;
            }
            leases.insert(id, (node.to_string(), until));
            out.push((id, message));
        }
        Ok(out)
    }

    fn outbox_replace(&self, id: u64, message: &[u8]) -> Result<(), StoreError> {
        self.pending
            .writing(OUTBOX_KEY, || self.outbox.insert(id.to_be_bytes(), message))?;
        Ok(())
    }

    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.pending
            .writing(OUTBOX_KEY, || self.outbox.remove(id.to_be_bytes()))?;
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        Ok(())
    }

    fn when_durable(&self, done: DurableCallback) {
        // Counted before it is sent, so the flusher never takes more than it counted.
        let queued = self.gather.queued.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = match self.flush_tx.lock() {
            Ok(tx) => match tx.as_ref() {
                Some(tx) => tx.send(done).map_err(|e| e.0),
                None => Err(done),
            },
            Err(_) => Err(done),
        };
        match sent {
            Ok(()) if queued == self.gather.target.load(Ordering::SeqCst) => {
                self.gather.wake_flusher();
            }
            Ok(()) => {}
            Err(done) => {
                self.gather.queued.fetch_sub(1, Ordering::SeqCst);
                done(Err(StoreError::Io("the flusher thread has stopped".into())));
            }
        }
    }

    fn gathering(&self) -> Gathering {
        self.gather
            .last_arrival_ms
            .store(self.since_open_ms(), Ordering::Relaxed);
        self.gather.under_way.fetch_add(1, Ordering::SeqCst);
        Gathering(Some(self.gather.clone()))
    }

    fn needs_flush(&self, login_id: &str) -> bool {
        self.pending.contains(login_id.as_bytes())
    }

    fn describe(&self) -> (String, String) {
        ("sled".into(), self.dir.display().to_string())
    }

    /// Walks the users in key order, each record with its marks, until their bytes reach
    /// WARM_SHARE of the cache: the part left over keeps room for the pages that the
    /// logins, the outbox and the links bring in, and for the tree's inner nodes. It yields
    /// to logins: every WARM_CHUNK users it waits until none has come for WARM_QUIET (under
    /// load the logins fill the cache themselves, and the walk would only take their CPU).
    fn warm(&self) -> Result<Option<Warmed>, StoreError> {
        let budget = self.cache_bytes / 100 * WARM_SHARE;
        let mut warmed = Warmed {
            users: 0,
            bytes: 0,
            complete: true,
        };
        let quiet_ms = u64::try_from(WARM_QUIET.as_millis()).unwrap_or(u64::MAX);
        for kv in self.users.iter() {
            if warmed.bytes >= budget {
                warmed.complete = false;
                break;
            }
            if warmed.users % WARM_CHUNK == 0 {
                loop {
                    let last = self.gather.last_arrival_ms.load(Ordering::Relaxed);
                    let since = self.since_open_ms().saturating_sub(last);
                    // Both readings are whole ms: more than quiet_ms between them is at
                    // least quiet_ms of time.
                    if last == 0 || since > quiet_ms {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(quiet_ms + 1 - since));
                }
            }
            let (key, cold) = kv?;
            let hot = self.marks.get(&key)?.map_or(0, |m| m.len());
            warmed.users += 1;
            warmed.bytes += (2 * key.len() + cold.len() + hot) as u64;
        }
        Ok(Some(warmed))
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn export_after(
        &self,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let trees = [
            ("users", &self.users),
            ("links", &self.links),
            ("outbox", &self.outbox),
        ];
        let first = match after {
            Some((name, _)) => trees.iter().position(|(n, _)| *n == name).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown tree {name:?} in a backup cursor"))
            })?,
            None => 0,
        };
        let mut out = Vec::new();
        for (i, (name, tree)) in trees.iter().enumerate().skip(first) {
            let from = match after {
                Some((_, key)) if i == first => Bound::Excluded(key.to_vec()),
                _ => Bound::Unbounded,
            };
            for kv in tree.range((from, Bound::Unbounded)) {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (k, v) = kv?;
                let value = if *name == "users" {
                    match self.read_user(&k)? {
                        Some(user) => encode_record(&user.value)?,
                        None => continue,
                    }
                } else {
                    v.to_vec()
                };
                out.push((name.to_string(), k.to_vec(), value));
            }
        }
        Ok(out)
    }

    fn restore(&self, rows: &[ExportRow]) -> Result<(), StoreError> {
        for (name, k, v) in rows {
            match name.as_str() {
                "users" => {
                    let user = decode_record(v)?;
                    let epoch = self.db.generate_id()?;
                    self.write_user(k, &user, epoch)?;
                }
                "links" => {
                    self.links.insert(k.as_slice(), v.as_slice())?;
                }
                "outbox" => {
                    self.outbox.insert(k.as_slice(), v.as_slice())?;
                }
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unknown tree {other:?} in backup"
                    )))
                }
            }
        }
        // Ids for new outbox entries must not collide with restored ones.
        let _ = self.db.generate_id()?;
        // A restore runs with otpd stopped: the users are counted once, from the tree.
        let count = u64::try_from(self.users.len()).unwrap_or(u64::MAX);
        self.db
            .insert(USER_COUNT_KEY, count.to_be_bytes().as_slice())?;
        Ok(())
    }

    /// Written in transactions of [`IMPORT_CHUNK`] users, each one also noting its users
    /// in the `importing` tree, between two writes of a flag: set first, removed (with
    /// the new user count) by the switch. Until the switch the users read as absent; a
    /// user that exists already, or a failure, removes every one written, and an open
    /// that finds the flag set (a crash during the commit) does the same before serving.
    /// sled recovers a prefix of its log, so a switch on disk has every chunk before it.
    fn create_users(&self, users: &[UserRecord]) -> Result<Result<(), String>, StoreError> {
        let _one = self.import_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.import_running.store(true, Ordering::SeqCst);
        let written = self.import_chunks(users);
        let result = match written {
            Ok(Ok(())) => self.pending.writing(IMPORT_KEY, || {
                self.db
                    .transaction(|meta| {
                        let was = meta.get(USER_COUNT_KEY)?.map_or(0, |v| decode_count(&v));
                        let added = u64::try_from(users.len()).unwrap_or(u64::MAX);
                        let now = was.saturating_add(added);
                        meta.insert(USER_COUNT_KEY, now.to_be_bytes().as_slice())?;
                        meta.remove(IMPORT_KEY)?;
                        Ok(())
                    })
                    .map_err(transaction_error)
                    .map(Ok)
            }),
            Ok(Err(taken)) => self.undo_import().map(|()| Err(taken)),
            Err(e) => {
                // The store may refuse the undo too: the next open does it.
                let _ = self.undo_import();
                Err(e)
            }
        };
        self.import_running.store(false, Ordering::SeqCst);
        if result.as_ref().is_ok_and(Result::is_ok) {
            // Once switched, the notes of what the import wrote are not needed.
            self.importing.clear()?;
        }
        result
    }

    fn key_check(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(KEY_CHECK_KEY)?.map(|v| v.to_vec()))
    }

    fn record_key_check(&self, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let swapped = self.pending.writing(KEY_CHECK_KEY, || {
            self.db
                .compare_and_swap(KEY_CHECK_KEY, None as Option<&[u8]>, Some(value))
        })?;
        Ok(match swapped {
            Ok(()) => value.to_vec(),
            Err(e) => e.current.map(|v| v.to_vec()).unwrap_or_default(),
        })
    }
}

impl SledStore {
    /// An import's writes before its switch ([`Store::create_users`]).
    fn import_chunks(&self, users: &[UserRecord]) -> Result<Result<(), String>, StoreError> {
        self.pending
            .writing(IMPORT_KEY, || self.db.insert(IMPORT_KEY, [1u8].as_slice()))?;
        for chunk in users.chunks(IMPORT_CHUNK) {
            let mut rows = Vec::with_capacity(chunk.len());
            for u in chunk {
                let epoch = self.db.generate_id()?;
                let cold = encode_cold(u, epoch)?;
                let hot = encode_marks(&Marks::of(u, epoch));
                rows.push((u.login_id.as_bytes(), cold, hot));
            }
            let keys = rows.iter().map(|(k, _, _)| k.to_vec());
            let done = self.pending.writing_all(keys, || {
                (&self.users, &self.marks, &self.importing)
                    .transaction(|(users, marks, importing)| {
                        for (key, _, _) in &rows {
                            if users.get(key)?.is_some() {
                                return Ok(Err(String::from_utf8_lossy(key).into_owned()));
                            }
                        }
                        for (key, cold, hot) in &rows {
                            users.insert(*key, cold.as_slice())?;
                            marks.insert(*key, hot.as_slice())?;
                            importing.insert(*key, &[])?;
                        }
                        Ok(Ok(()))
                    })
                    .map_err(transaction_error)
            })?;
            if done.is_err() {
                return Ok(done);
            }
        }
        Ok(Ok(()))
    }

    /// Removes every user an import wrote before its switch, then its flag.
    fn undo_import(&self) -> Result<(), StoreError> {
        loop {
            let keys: Vec<sled::IVec> = self
                .importing
                .iter()
                .keys()
                .take(IMPORT_CHUNK)
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            self.pending
                .writing_all(keys.iter().map(|k| k.to_vec()), || {
                    (&self.users, &self.marks, &self.importing).transaction(
                        |(users, marks, importing)| {
                            for key in &keys {
                                users.remove(key)?;
                                marks.remove(key)?;
                                importing.remove(key)?;
                            }
                            Ok(())
                        },
                    )
                })
                .map_err(transaction_error)?;
        }
        self.pending
            .writing(IMPORT_KEY, || self.db.remove(IMPORT_KEY))?;
        Ok(())
    }
}

fn decode_count(raw: &[u8]) -> u64 {
    <[u8; 8]>::try_from(raw).map_or(0, u64::from_be_bytes)
}

fn decode_time(raw: &[u8]) -> UnixTime {
    <[u8; 8]>::try_from(raw)
        .map(i64::from_be_bytes)
        .unwrap_or(UnixTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Token;
    use crate::lockout::LockState;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            login_id: id.into(),
            password_hash: "$argon2id$x".into(),
            email: None,
            created_at: 1,
            token: Token::Unregistered,
            lock: LockState::default(),
            renew_lock: LockState::default(),
            session_generation: 0,
        }
    }

    #[test]
    fn compare_and_swap_refuses_a_stale_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s.swap_user("a", None, Some(&user("a"))).expect("create"));
        assert!(
            !s.swap_user("a", None, Some(&user("a")))
                .expect("second create"),
            "exists"
        );
        let v1 = s.get_user("a").expect("read").expect("present");
        let mut changed = user("a");
        changed.email = Some("x@y.jp".into());
        assert!(s.swap_user("a", Some(&v1), Some(&changed)).expect("swap"));
        assert!(
            !s.swap_user("a", Some(&v1), Some(&user("a")))
                .expect("stale"),
            "stale refused"
        );
        s.wait_durable().expect("flushed");
    }

    #[test]
    fn many_waiters_share_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let id = format!("u{t}-{i}");
                        assert!(s.swap_user(&id, None, Some(&user(&id))).expect("write"));
                        s.wait_durable().expect("durable");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("writer thread");
        }
        assert_eq!(s.user_count(), 400);
    }

    /// Queues a wait for durability; its answer arrives on the receiver.
    fn queue_durable(s: &SledStore) -> mpsc::Receiver<Result<(), StoreError>> {
        let (tx, rx) = mpsc::channel();
        s.when_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx
    }

    #[test]
    fn a_flush_waits_for_writers_under_way_and_goes_when_the_last_has_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gap = Duration::from_secs(600);
        let s = SledStore::open_with_gaps(dir.path(), &mut |_| {}, gap, gap).expect("open");
        let queue = queue_durable;
        let soon = Duration::from_secs(60);
        // An idle store flushes at once, and with nobody under way the next one too, long
        // before the gap.
        assert!(s.swap_user("a", None, Some(&user("a"))).expect("write"));
        queue(&s)
            .recv_timeout(soon)
            .expect("idle flush")
            .expect("ok");
        assert!(s.swap_user("b", None, Some(&user("b"))).expect("write"));
        queue(&s).recv_timeout(soon).expect("flush").expect("ok");
        // Two logins under way: the first to queue waits for the second.
        let (first, second) = (s.gathering(), s.gathering());
        assert!(s.swap_user("c", None, Some(&user("c"))).expect("write"));
        let waiting = queue(&s);
        drop(first);
        assert!(
            waiting.recv_timeout(Duration::from_millis(300)).is_err(),
            "a flush started while a login was still under way"
        );
        assert!(s.needs_flush("c"));
        // The second needs no write: its going lets the batch flush.
        drop(second);
        waiting.recv_timeout(soon).expect("flush").expect("ok");
        assert!(!s.needs_flush("c"));
    }

    #[test]
    fn a_busy_store_lets_as_many_waiters_as_last_time_join_the_next_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = Duration::from_secs(600);
        let s = SledStore::open_with_gaps(dir.path(), &mut |_| {}, long, long).expect("open");
        let queue = |s: &SledStore, id: &str| {
            assert!(s.swap_user(id, None, Some(&user(id))).expect("write"));
            queue_durable(s)
        };
        let soon = Duration::from_secs(60);
        // One flush, then a batch of BUSY_BATCH (gathered: they were all under way).
        queue(&s, "first")
            .recv_timeout(soon)
            .expect("flush")
            .expect("ok");
        let under_way: Vec<_> = (0..BUSY_BATCH).map(|_| s.gathering()).collect();
        let busy: Vec<_> = (0..BUSY_BATCH)
            .map(|i| queue(&s, &format!("b{i}")))
            .collect();
        drop(under_way);
        for rx in busy {
            rx.recv_timeout(soon).expect("flush").expect("ok");
        }
        // The next flush waits for as many, though nobody is under way.
        let next: Vec<_> = (0..BUSY_BATCH - 1)
            .map(|i| queue(&s, &format!("n{i}")))
            .collect();
        assert!(
            next[0].recv_timeout(Duration::from_millis(300)).is_err(),
            "a busy store flushed a smaller batch before its minimum gap"
        );
        let last = queue(&s, "last");
        for rx in next.iter().chain([&last]) {
            rx.recv_timeout(soon).expect("flush").expect("ok");
        }
    }

    #[test]
    fn an_open_waits_for_a_store_that_is_closing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SledStore::open(dir.path()).expect("open");
        // The holder lets go a moment after the second open has started: without the
        // wait, that open would be refused at once.
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let second = SledStore::open(dir.path());
        closer.join().expect("closer");
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[test]
    fn a_warm_up_reads_every_user_that_fits_and_stops_at_the_cache_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = SledStore::open(dir.path()).expect("open");
        for i in 0..300 {
            let id = format!("u{i:04}");
            assert!(s.swap_user(&id, None, Some(&user(&id))).expect("write"));
        }
        let all = s.warm().expect("warm").expect("sled warms");
        assert_eq!((all.users, all.complete), (300, true));
        let per_user = all.bytes / 300;
        assert!(per_user > 20, "{per_user} bytes a user");
        // A cache that holds about a hundred of them.
        Arc::get_mut(&mut s).expect("one owner").cache_bytes = per_user * 100 * 100 / WARM_SHARE;
        let some = s.warm().expect("warm").expect("sled warms");
        assert!(!some.complete);
        assert!((95..=105).contains(&some.users), "{some:?}");
        // It yields to logins: one just now holds it back until none came for WARM_QUIET.
        let started = Instant::now();
        drop(s.gathering());
        s.warm().expect("warm");
        assert!(started.elapsed() >= WARM_QUIET, "{:?}", started.elapsed());
    }

    fn active(id: &str, last_step: u64) -> UserRecord {
        let mut u = user(id);
        u.token = Token::Active {
            secret: crate::seal::Sealer::from_key(&[1u8; 32]).seal(id, b"12345678901234567890"),
            activated_at: 1,
            expires_at: i64::MAX,
            last_step,
        };
        u
    }

    #[test]
    fn a_store_of_the_old_layout_opens_with_its_marks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut old = active("taro", 29_000_000);
        old.lock.failures = 2;
        {
            // What otpd wrote before the marks had a tree of their own: the record as JSON.
            let db = sled::open(dir.path().join("store")).expect("sled");
            let users = db.open_tree("users").expect("tree");
            users
                .insert("taro", serde_json::to_vec(&old).expect("json"))
                .expect("insert");
            db.flush().expect("flush");
        }
        let s = SledStore::open(dir.path()).expect("open");
        assert_eq!(s.migrated(), 1);
        let read = s.get_user("taro").expect("read").expect("present");
        assert_eq!(read.value, old, "nothing lost");
        assert_eq!(
            s.spend_step("taro", read.epoch, 29_000_000, 0)
                .expect("spend"),
            Spend::Replayed,
            "the replay mark survived the move"
        );
        drop(s);
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.migrated(), 0, "moved once");
        // Once moved, the store says so and an open reads no user: a record of the old
        // layout put there behind otpd's back would stay as it is.
        s.users
            .insert("jiro", serde_json::to_vec(&old).expect("json"))
            .expect("insert");
        s.db.flush().expect("flush");
        drop(s);
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.migrated(), 0, "no user read at open");
        assert_eq!(
            s.get_user("taro").expect("read").expect("present").value,
            old
        );
    }

    #[test]
    fn a_store_of_json_records_opens_in_the_binary_layout_with_nothing_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut taro = active("taro", 29_000_000);
        taro.lock.failures = 2;
        taro.email = Some("taro@docomo.example.jp".into());
        let hanako = user("hanako");
        let epoch = 41u64;
        {
            // What otpd wrote until layout 3: marks in their tree, the record as version 1,
            // the epoch and the JSON, and the store saying layout 2.
            let db = sled::open(dir.path().join("store")).expect("sled");
            let (users, marks) = (
                db.open_tree("users").expect("tree"),
                db.open_tree("marks").expect("tree"),
            );
            for u in [&taro, &hanako] {
                let mut cold = vec![COLD_JSON];
                cold.extend_from_slice(&epoch.to_be_bytes());
                cold.extend_from_slice(&serde_json::to_vec(u).expect("json"));
                users.insert(&u.login_id, cold).expect("record");
                let hot = encode_marks(&Marks::of(u, epoch));
                marks.insert(&u.login_id, hot.as_slice()).expect("marks");
            }
            db.insert(LAYOUT_KEY, [2u8].as_slice()).expect("layout");
            db.flush().expect("flush");
        }
        let s = SledStore::open(dir.path()).expect("open");
        assert_eq!(s.migrated(), 2);
        assert_eq!(s.user_count(), 2, "counted by the move");
        for u in [&taro, &hanako] {
            let raw = s.users.get(&u.login_id).expect("get").expect("record");
            assert_eq!(raw[0], COLD_BINARY, "re-encoded");
            let read = s.get_user(&u.login_id).expect("read").expect("present");
            assert_eq!(&read.value, u, "nothing lost");
            assert_eq!(read.epoch, epoch, "the marks still match the record");
        }
        let read = s.get_user("taro").expect("read").expect("present");
        assert_eq!(
            s.spend_step("taro", read.epoch, 29_000_000, 0)
                .expect("spend"),
            Spend::Replayed,
            "the replay mark survived"
        );
        assert_eq!(
            s.spend_step("taro", read.epoch, 29_000_001, 0)
                .expect("spend"),
            Spend::Spent
        );
        drop(s);
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.migrated(), 0, "moved once");
        let read = s.get_user("taro").expect("read").expect("present");
        assert_eq!(read.value.token.last_step(), Some(29_000_001));
    }

    #[test]
    fn the_user_count_follows_creations_and_removals_without_reading_every_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert_eq!(s.user_count(), 0);
        for id in ["a", "b", "c"] {
            assert!(s.swap_user(id, None, Some(&user(id))).expect("create"));
        }
        assert!(
            !s.swap_user("a", None, Some(&user("a"))).expect("exists"),
            "no double count"
        );
        let b = s.get_user("b").expect("read").expect("present");
        let mut changed = user("b");
        changed.email = Some("b@example.jp".into());
        assert!(s.swap_user("b", Some(&b), Some(&changed)).expect("update"));
        let c = s.get_user("c").expect("read").expect("present");
        assert!(s.swap_user("c", Some(&c), None).expect("remove"));
        assert_eq!(s.user_count(), 2);
        // The count is the store's, not the tree's: a key put there behind otpd's back is
        // not counted (the count does not read the tree).
        s.users.insert("stray", b"x".as_slice()).expect("insert");
        assert_eq!(s.user_count(), 2);
        s.users.remove("stray").expect("remove");
        s.wait_durable().expect("durable");
        drop(s);
        let s = SledStore::open(dir.path()).expect("reopen");
        assert_eq!(s.user_count(), 2, "kept on disk");
        let rows = s.export().expect("export");
        drop(s);
        let other = tempfile::tempdir().expect("tempdir");
        let r = SledStore::open(other.path()).expect("open");
        r.restore(&rows).expect("restore");
        assert_eq!(r.user_count(), 2, "a restore counts what it wrote");
    }

    #[test]
    fn a_step_is_spent_once_by_racing_logins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s
            .swap_user("u", None, Some(&active("u", 10)))
            .expect("create"));
        for step in 11..41 {
            let epoch = s.get_user("u").expect("read").expect("present").epoch;
            let spent: usize = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..4)
                    .map(|_| scope.spawn(|| s.spend_step("u", epoch, step, 0).expect("spend")))
                    .collect();
                racers
                    .into_iter()
                    .map(|r| r.join().expect("racer"))
                    .filter(|r| *r == Spend::Spent)
                    .count()
            });
            assert_eq!(spent, 1, "step {step}");
        }
        let read = s.get_user("u").expect("read").expect("present");
        assert_eq!(read.value.token.last_step(), Some(40));
    }

    #[test]
    fn a_spend_against_a_replaced_record_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s
            .swap_user("u", None, Some(&active("u", 10)))
            .expect("create"));
        let old = s.get_user("u").expect("read").expect("present");
        assert!(s
            .swap_user("u", Some(&old), Some(&active("u", 5)))
            .expect("replace"));
        assert_eq!(
            s.spend_step("u", old.epoch, 11, 0).expect("spend"),
            Spend::Changed
        );
        assert_eq!(
            s.spend_step("nobody", 1, 11, 0).expect("spend"),
            Spend::Missing
        );
        // A per-login write makes a stale whole-record write fail, and the other way round.
        let read = s.get_user("u").expect("read").expect("present");
        assert_eq!(
            s.spend_step("u", read.epoch, 6, 0).expect("spend"),
            Spend::Spent
        );
        assert!(!s
            .swap_user("u", Some(&read), Some(&user("u")))
            .expect("stale"));
        let policy = LockPolicy {
            max_failures: 2,
            lockout_seconds: 0,
        };
        for _ in 0..2 {
            s.count_failure("u", 100, &policy).expect("count");
        }
        let read = s.get_user("u").expect("read").expect("present");
        assert!(read.value.lock.is_locked(100));
        assert_eq!(
            s.spend_step("u", read.epoch, 7, 100).expect("spend"),
            Spend::Locked
        );
        s.clear_failures("u").expect("clear");
        let read = s.get_user("u").expect("read").expect("present");
        assert_eq!(read.value.lock, LockState::default());
        assert_eq!(read.value.token.last_step(), Some(6));
    }

    #[test]
    fn failures_from_many_threads_add_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s.swap_user("u", None, Some(&user("u"))).expect("create"));
        let policy = LockPolicy {
            max_failures: 1000,
            lockout_seconds: 60,
        };
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        s.count_failure("u", 100, &policy).expect("count");
                    }
                });
            }
        });
        let read = s.get_user("u").expect("read").expect("present");
        assert_eq!(read.value.lock.failures, 200);
        assert_eq!(
            s.count_failure("nobody", 100, &policy).expect("count"),
            None
        );
    }

    #[test]
    fn a_read_never_mixes_two_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s
            .swap_user("u", None, Some(&active("u", 0)))
            .expect("create"));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Each whole-record write sets created_at and the replay mark to the same
                // number, so a read that mixed two versions would see them differ.
                for n in 1..300u64 {
                    loop {
                        let read = s.get_user("u").expect("read").expect("present");
                        let mut next = active("u", n);
                        next.created_at = n as i64;
                        if s.swap_user("u", Some(&read), Some(&next)).expect("swap") {
                            break;
                        }
                    }
                }
            });
            scope.spawn(|| {
                for _ in 0..3000 {
                    let u = s.get_user("u").expect("read").expect("present").value;
                    let step = u.token.last_step().expect("active");
                    assert!(step == u.created_at as u64 || step == 0 && u.created_at == 1);
                }
            });
        });
    }

    #[test]
    fn only_unflushed_users_need_a_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(!s.needs_flush("a"));
        assert!(s.swap_user("a", None, Some(&user("a"))).expect("create"));
        assert!(s.needs_flush("a"), "written, not yet on disk");
        assert!(!s.needs_flush("b"), "another user");
        s.wait_durable().expect("flushed");
        assert!(!s.needs_flush("a"), "on disk");
        s.count_failure(
            "a",
            1,
            &LockPolicy {
                max_failures: 5,
                lockout_seconds: 60,
            },
        )
        .expect("count");
        assert!(s.needs_flush("a"), "a per-login write counts too");
    }

    #[test]
    fn a_key_is_used_once_until_it_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        assert!(s.use_once(b"state-1", 160, 100).expect("first"));
        assert!(!s.use_once(b"state-1", 160, 100).expect("second"));
        assert!(!s.use_once(b"state-1", 160, 160).expect("at expiry"));
        assert!(s.use_once(b"state-2", 160, 100).expect("another"));
        assert!(s.use_once(b"state-1", 300, 161).expect("after expiry"));
    }

    #[test]
    fn a_leased_message_is_handed_out_once_until_its_lease_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(dir.path()).expect("open");
        let a = s.outbox_push(b"one").expect("push");
        let b = s.outbox_push(b"two").expect("push");
        let first = s.outbox_lease("n1", 100, 30, 1).expect("lease");
        assert_eq!(first, vec![(a, b"one".to_vec())]);
        let second = s.outbox_lease("n2", 100, 30, 10).expect("lease");
        assert_eq!(second, vec![(b, b"two".to_vec())], "not the one n1 holds");
        let own = s.outbox_lease("n1", 110, 30, 10).expect("lease");
        assert_eq!(
            own,
            vec![(a, b"one".to_vec())],
            "a holder is handed its own again"
        );
        assert!(
            s.outbox_lease("n2", 139, 30, 10).expect("lease").len() == 1,
            "its own only"
        );
        s.outbox_remove(b).expect("sent");
        let later = s.outbox_lease("n2", 141, 30, 10).expect("lease");
        assert_eq!(later, vec![(a, b"one".to_vec())], "n1's lease ran out");
    }

    #[test]
    fn a_backup_restores_with_its_marks() {
        let from = tempfile::tempdir().expect("tempdir");
        let to = tempfile::tempdir().expect("tempdir");
        let s = SledStore::open(from.path()).expect("open");
        assert!(s
            .swap_user("u", None, Some(&active("u", 10)))
            .expect("create"));
        let epoch = s.get_user("u").expect("read").expect("present").epoch;
        assert_eq!(
            s.spend_step("u", epoch, 12, 0).expect("spend"),
            Spend::Spent
        );
        s.set_link_owner("h", Some("u")).expect("link");
        let rows = s.export().expect("export");
        let user_row: UserRecord = serde_json::from_slice(&rows[0].2).expect("plain JSON");
        assert_eq!(user_row.token.last_step(), Some(12), "marks merged in");
        let t = SledStore::open(to.path()).expect("open");
        t.restore(&rows).expect("restore");
        let back = t.get_user("u").expect("read").expect("present");
        assert_eq!(
            back.value,
            s.get_user("u").expect("read").expect("present").value
        );
        assert_eq!(
            t.spend_step("u", back.epoch, 12, 0).expect("spend"),
            Spend::Replayed
        );
        assert_eq!(t.link_owner("h").expect("link").as_deref(), Some("u"));
    }

    #[test]
    fn an_import_that_did_not_reach_its_switch_is_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users: Vec<UserRecord> = (0..IMPORT_CHUNK + 5)
            .map(|i| user(&format!("imp{i:06}")))
            .collect();
        {
            let s = SledStore::open(dir.path()).expect("open");
            assert!(s
                .swap_user("kept", None, Some(&user("kept")))
                .expect("create"));
            // A commit that crashed after its chunks, before its switch.
            s.import_running.store(true, Ordering::SeqCst);
            s.import_chunks(&users)
                .expect("chunks")
                .expect("none taken");
            assert!(s.get_user("imp000000").expect("read").is_none(), "hidden");
            s.wait_durable().expect("durable");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        assert!(s.get_user("imp000000").expect("read").is_none());
        assert_eq!(
            s.users().expect("users").len(),
            1,
            "only the user made before"
        );
        assert_eq!(s.user_count(), 1);
        // A commit that reaches its switch stays, and a clash with one removes all of it.
        s.create_users(&users).expect("create").expect("none taken");
        assert_eq!(s.user_count(), users.len() + 1);
        let mut clash: Vec<UserRecord> = (0..IMPORT_CHUNK + 5)
            .map(|i| user(&format!("new{i:06}")))
            .collect();
        clash.push(user("kept"));
        assert_eq!(s.create_users(&clash).expect("create"), Err("kept".into()));
        assert!(s.get_user("new000000").expect("read").is_none());
        assert_eq!(s.users().expect("users").len(), users.len() + 1);
        assert!(s.importing.is_empty());
    }

    #[test]
    fn outbox_keeps_order_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open(dir.path()).expect("open");
            let a = s.outbox_push(b"first").expect("push");
            let b = s.outbox_push(b"second").expect("push");
            assert!(a < b);
            s.outbox_remove(a).expect("remove");
            s.wait_durable().expect("durable");
        }
        let s = SledStore::open(dir.path()).expect("reopen");
        let all = s.outbox().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, b"second");
    }
}
