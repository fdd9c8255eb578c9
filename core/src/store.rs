//! Where users, setup links and the mail outbox live: a narrow [`Store`] trait and its sled
//! implementation. Writes become visible at once and durable at the next group commit:
//! a caller must not report success until [`Store::when_durable`] has called back.

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::user::UserRecord;

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

/// A value together with the bytes it was read from, for compare-and-swap.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    raw: Vec<u8>,
}

/// One record of a backup: tree name, key, value.
pub type ExportRow = (String, Vec<u8>, Vec<u8>);

/// Told once the writes made before it are on disk (or that they could not be).
pub type DurableCallback = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Told about every group commit: how many waiters it answered and how long the flush took.
pub type CommitObserver = Box<dyn Fn(usize, Duration, bool) + Send + Sync>;

/// Where otpd's state lives: users (with their token, lock and replay mark), setup links,
/// the mail outbox, and the durability promise (a write is acknowledged only once it is on
/// disk). Writes to a user are compare-and-swap, so concurrent logins race safely. One
/// engine today, [`SledStore`]; the core sees only this trait.
pub trait Store: Send + Sync {
    /// The user and the bytes it was read from (for [`Store::swap_user`]).
    fn get_user(&self, login_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError>;
    /// Replaces the user only if it is still `expected` (`None`: must not exist yet);
    /// `new = None` deletes. `Ok(false)`: someone changed it meanwhile, read again.
    fn swap_user(
        &self,
        login_id: &str,
        expected: Option<&Versioned<UserRecord>>,
        new: Option<&UserRecord>,
    ) -> Result<bool, StoreError>;
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
    fn outbox_replace(&self, id: u64, message: &[u8]) -> Result<(), StoreError>;
    fn outbox_remove(&self, id: u64) -> Result<(), StoreError>;
    /// Calls `done` once every write made before this call is on disk.
    fn when_durable(&self, done: DurableCallback);
    /// Blocks until every write made before this call is on disk.
    fn wait_durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.when_durable(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Io("flusher stopped".into())))
    }
    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> u64;
    /// A copy of everything, for backups: each record is read whole, so every user comes
    /// back with its own state, lock and replay mark consistent.
    fn export(&self) -> Result<Vec<ExportRow>, StoreError>;
    /// Up to `limit` backup records after `after` (tree, key), in [`Store::export`]'s order:
    /// one page of a backup.
    fn export_after(
        &self,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<ExportRow>, StoreError>;
    /// Writes backup rows into the store (for a restore into a stopped daemon's store).
    fn restore(&self, rows: &[ExportRow]) -> Result<(), StoreError>;
}

pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    links: sled::Tree,
    outbox: sled::Tree,
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

impl SledStore {
    pub fn open(dir: &Path) -> Result<Arc<SledStore>, StoreError> {
        // Password hashes and e-mail addresses live here: only otpd may enter, whatever the
        // umask of whoever started it.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir.join("store"))
            // Durability comes from our group commit, not from sled's timer.
            .flush_every_ms(None)
            // sled's default cache is 1 GiB; the working set of a login is one small record,
            // and 100k users fit in a fraction of this.
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|e| StoreError::Io(format!("cannot open store in {}: {e}", dir.display())))?;
        let users = db.open_tree("users")?;
        let links = db.open_tree("links")?;
        let outbox = db.open_tree("outbox")?;
        let (tx, rx) = mpsc::channel::<DurableCallback>();
        let flusher = db.clone();
        let observer = Arc::new(std::sync::OnceLock::new());
        let watching = observer.clone();
        let handle = std::thread::Builder::new()
            .name("otpd-group-commit".into())
            .spawn(move || group_commit(flusher, rx, watching))
            .map_err(|e| StoreError::Io(format!("cannot start flusher: {e}")))?;
        Ok(Arc::new(SledStore {
            db,
            users,
            links,
            outbox,
            flush_tx: Mutex::new(Some(tx)),
            observer,
            flusher: Mutex::new(Some(handle)),
        }))
    }

    /// Sets who hears about each group commit (metrics); only the first call counts.
    pub fn observe_commits(&self, observer: CommitObserver) {
        let _ = self.observer.set(observer);
    }
}

/// Shortest time between the starts of two flushes.
const FLUSH_GAP: Duration = Duration::from_millis(1);

/// One thread owns every flush. Each round takes all waiters queued so far, flushes once
/// with the blocking `flush()` (never `flush_async`, which deadlocks under concurrency in
/// sled 0.34), and answers them all: every waiter wrote before it queued, so before the flush.
fn group_commit(
    db: sled::Db,
    rx: mpsc::Receiver<DurableCallback>,
    observer: Arc<std::sync::OnceLock<CommitObserver>>,
) {
    let mut last_start: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // Under load, start at most one flush per FLUSH_GAP so that waiters gather into
        // batches: a flush costs about the same for one record as for a hundred (a write, a
        // sync and several thread hand-offs). An idle store flushes at once.
        if let Some(wait) = last_start.and_then(|t| FLUSH_GAP.checked_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        last_start = Some(Instant::now());
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let flush_start = Instant::now();
        let result = db.flush().map(|_| ()).map_err(StoreError::from);
        if let Some(observe) = observer.get() {
            observe(batch.len(), flush_start.elapsed(), result.is_err());
        }
        for done in batch {
            done(result.clone());
        }
    }
}

fn decode_user(raw: &[u8]) -> Result<UserRecord, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_user(u: &UserRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(u).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store for SledStore {
    fn get_user(&self, login_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        match self.users.get(login_id.as_bytes())? {
            Some(raw) => Ok(Some(Versioned {
                value: decode_user(&raw)?,
                raw: raw.to_vec(),
            })),
            None => Ok(None),
        }
    }

    fn swap_user(
        &self,
        login_id: &str,
        expected: Option<&Versioned<UserRecord>>,
        new: Option<&UserRecord>,
    ) -> Result<bool, StoreError> {
        let new_raw = new.map(encode_user).transpose()?;
        let swapped = self.users.compare_and_swap(
            login_id.as_bytes(),
            expected.map(|v| v.raw.as_slice()),
            new_raw,
        )?;
        Ok(swapped.is_ok())
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users
            .iter()
            .values()
            .map(|r| decode_user(&r?))
            .collect()
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
        self.users
            .range((from, Bound::Unbounded))
            .values()
            .take(limit)
            .map(|r| decode_user(&r?))
            .collect()
    }

    fn user_count(&self) -> usize {
        self.users.len()
    }

    fn link_owner(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .links
            .get(hash.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_link_owner(&self, hash: &str, login_id: Option<&str>) -> Result<(), StoreError> {
        match login_id {
            Some(id) => self.links.insert(hash.as_bytes(), id.as_bytes())?,
            None => self.links.remove(hash.as_bytes())?,
        };
        Ok(())
    }

    fn outbox_push(&self, message: &[u8]) -> Result<u64, StoreError> {
        let id = self.db.generate_id()?;
        self.outbox.insert(id.to_be_bytes(), message)?;
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

    fn outbox_replace(&self, id: u64, message: &[u8]) -> Result<(), StoreError> {
        self.outbox.insert(id.to_be_bytes(), message)?;
        Ok(())
    }

    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.outbox.remove(id.to_be_bytes())?;
        Ok(())
    }

    fn when_durable(&self, done: DurableCallback) {
        let sent = match self.flush_tx.lock() {
            Ok(tx) => match tx.as_ref() {
                Some(tx) => tx.send(done).map_err(|e| e.0),
                None => Err(done),
            },
            Err(_) => Err(done),
        };
        if let Err(done) = sent {
            done(Err(StoreError::Io("the flusher thread has stopped".into())));
        }
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn export(&self) -> Result<Vec<ExportRow>, StoreError> {
        self.export_after(None, usize::MAX)
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
                out.push((name.to_string(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    fn restore(&self, rows: &[ExportRow]) -> Result<(), StoreError> {
        for (name, k, v) in rows {
            let tree = match name.as_str() {
                "users" => &self.users,
                "links" => &self.links,
                "outbox" => &self.outbox,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unknown tree {other:?} in backup"
                    )))
                }
            };
            tree.insert(k.as_slice(), v.as_slice())?;
        }
        // Ids for new outbox entries must not collide with restored ones.
        let _ = self.db.generate_id()?;
        Ok(())
    }
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
