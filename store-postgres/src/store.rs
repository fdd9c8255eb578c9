//! [`PgStore`]: the `Store` trait on PostgreSQL. Every per-login write is one conditional
//! statement (`UPDATE … WHERE … RETURNING`), so two nodes racing on one login cannot both
//! win; a read after a write that changed nothing only says which refusal it was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use otpd_core::lockout::{LockPolicy, LockState};
use otpd_core::store::{DurableCallback, ExportRow, Marks, Spend, Store, StoreError, Versioned};
use otpd_core::user::UserRecord;
use otpd_core::UnixTime;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::connect::Target;
use crate::db::{Db, Fail};
use crate::pool::{off_reactor, Pool};
use crate::schema::{self, Migration};
use crate::Settings;

/// The PostgreSQL engine: a pool of connections to the database several nodes share.
/// Nothing about a user is kept on the node; every answer is the database's.
pub struct PgStore {
    pool: Pool,
    /// Counts `use_once` calls: every `PURGE_EVERY`th also deletes the expired keys.
    once_calls: AtomicU64,
    /// The health check's own connection, outside the pool: the check neither waits behind
    /// calls that hold every pooled connection nor takes one from a login.
    probe: Mutex<Option<Db>>,
}

impl Drop for PgStore {
    /// Closing a client blocks on its connection (as the pool's do): done where blocking
    /// is allowed.
    fn drop(&mut self) {
        let probe = self
            .probe
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        off_reactor(move || drop(probe));
    }
}

/// How often `use_once` sweeps the keys that have expired.
const PURGE_EVERY: u64 = 256;

impl PgStore {
    /// Connects, creates or migrates otpd's tables, and refuses a schema newer than this
    /// otpd knows.
    pub fn open(settings: &Settings) -> Result<Arc<PgStore>, StoreError> {
        off_reactor(|| PgStore::open_here(settings))
    }

    fn open_here(settings: &Settings) -> Result<Arc<PgStore>, StoreError> {
        let target = Target::new(settings)?;
        let pool = Pool::new(target, settings.pool_size);
        {
            let mut conn = pool.get(Instant::now() + pool.target.per_statement)?;
            match schema::migrate(&mut conn) {
                Ok(_) => {}
                Err(Migration::Refused(e)) => return Err(e),
                Err(Migration::Db(e)) => {
                    return Err(pool.target.error("cannot create or migrate the schema", &e))
                }
            }
        }
        Ok(Arc::new(PgStore {
            pool,
            once_calls: AtomicU64::new(0),
            probe: Mutex::new(None),
        }))
    }

    /// Runs `f` on a pooled connection. When the connection turns out to have died (the
    /// server restarted or went away since it was last used), the idle ones are closed too,
    /// and a statement that is safe to repeat ([`Retry::Safe`]) is run once more on a new
    /// connection: the dead one never reached a server that could have run it, or a read
    /// lost its answer.
    ///
    /// The call's first statement is answered within the server's `statement_timeout` and
    /// a margin from the call's start (waiting for a connection and opening one included),
    /// each further one within as long again; one that is not has its connection closed,
    /// is never sent again, and the calls after it fail at once for as long (see
    /// [`Pool::stalled`]).
    fn on_conn<T>(
        &self,
        retry: Retry,
        mut f: impl FnMut(&mut Db) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>
    where
        T: Send,
    {
        off_reactor(|| {
            let until = Instant::now() + self.pool.target.per_statement;
            let mut conn = self.pool.get(until)?;
            let failed = match f(&mut conn) {
                Ok(v) => {
                    self.pool.answered();
                    return Ok(v);
                }
                Err(e) => e,
            };
            if conn.timed_out() {
                drop(conn);
                self.pool.stalled();
                return Err(failed);
            }
            if !conn.is_closed() {
                return Err(failed);
            }
            let reused = conn.reused();
            drop(conn);
            self.pool.discard_idle();
            if retry == Retry::Never || !reused {
                return Err(failed);
            }
            let mut fresh = self
                .pool
                .get(Instant::now() + self.pool.target.per_statement)?;
            let again = f(&mut fresh);
            if fresh.timed_out() {
                drop(fresh);
                self.pool.stalled();
            }
            again
        })
    }

    fn query(
        &self,
        doing: &str,
        retry: Retry,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.on_conn(retry, |c| {
            c.query(sql, params)
                .map_err(|e| self.pool.target.error(doing, &e))
        })
    }

    fn execute(
        &self,
        doing: &str,
        retry: Retry,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.on_conn(retry, |c| {
            c.execute(sql, params)
                .map_err(|e| self.pool.target.error(doing, &e))
        })
    }

    fn db_error(&self, doing: &str) -> impl Fn(Fail) -> StoreError + '_ {
        let doing = doing.to_string();
        move |e| self.pool.target.error(&doing, &e)
    }
}

/// Whether a statement may be sent again when its connection died under it, so that its
/// outcome is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read, or a write whose second run leaves what the first left: an idempotent
    /// delete, an upsert to a fixed value, a lease its holder would be handed again.
    Safe,
    /// A conditional write that may have committed before the connection died: run again,
    /// a spent step or a used State would be refused (or worse, a failure counted twice,
    /// a mail queued twice, a cleared count clear one counted since). Its caller is told
    /// the store failed, and refuses.
    Never,
}

/// How long the store's health check waits for the database to answer (opening its
/// connection included).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a login changes, kept in columns apart from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hot {
    last_step: Option<i64>,
    failures: i32,
    locked_until: Option<i64>,
}

impl Hot {
    fn of(u: &UserRecord) -> Result<Hot, StoreError> {
        Ok(Hot {
            last_step: u.token.last_step().map(step_to_db).transpose()?,
            failures: i32::try_from(u.lock.failures).unwrap_or(i32::MAX),
            locked_until: u.lock.locked_until,
        })
    }

    /// The engine-private bytes of a `Versioned`: the columns as read, so a whole-record
    /// write can insist that no login changed them since.
    fn to_raw(self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(22);
        for v in [self.last_step, self.locked_until] {
            match v {
                Some(v) => {
                    raw.push(1);
                    raw.extend_from_slice(&v.to_be_bytes());
                }
                None => raw.push(0),
            }
        }
        raw.extend_from_slice(&self.failures.to_be_bytes());
        raw
    }

    fn from_raw(raw: &[u8]) -> Result<Hot, StoreError> {
        let bad = || StoreError::Corrupt("a user version not read from this store".into());
        let mut rest = raw;
        let mut opt = || -> Result<Option<i64>, StoreError> {
            let (&flag, tail) = rest.split_first().ok_or_else(bad)?;
            rest = tail;
            if flag == 0 {
                return Ok(None);
            }
            let (n, tail) = rest.split_at_checked(8).ok_or_else(bad)?;
            rest = tail;
            Ok(Some(i64::from_be_bytes(n.try_into().map_err(|_| bad())?)))
        };
        let last_step = opt()?;
        let locked_until = opt()?;
        let failures = i32::from_be_bytes(rest.try_into().map_err(|_| bad())?);
        Ok(Hot {
            last_step,
            failures,
            locked_until,
        })
    }

    /// The record as a reader sees it: the columns laid over the JSON.
    fn merge(self, mut u: UserRecord, epoch: u64) -> UserRecord {
        Marks {
            epoch,
            last_step: self.last_step.and_then(|s| u64::try_from(s).ok()),
            lock: LockState {
                failures: u32::try_from(self.failures).unwrap_or(0),
                locked_until: self.locked_until,
            },
        }
        .apply(&mut u);
        u
    }
}

fn step_to_db(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::Io(format!("step {step} is out of range")))
}

fn epoch_to_db(epoch: u64) -> Result<i64, StoreError> {
    i64::try_from(epoch).map_err(|_| StoreError::Io(format!("epoch {epoch} is out of range")))
}

fn limit_to_db(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn decode_user(json: &str) -> Result<UserRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_user(u: &UserRecord) -> Result<String, StoreError> {
    serde_json::to_string(u).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The columns every user read selects, in this order.
const USER_COLUMNS: &str = "record::text, epoch, last_step, failures, locked_until";

/// A user row of [`USER_COLUMNS`] starting at column `at`: the merged record, its epoch
/// and what a login changes.
fn user_from_row(row: &Row, at: usize) -> Result<(UserRecord, u64, Hot), StoreError> {
    let json: String = row.get(at);
    let epoch: i64 = row.get(at + 1);
    let hot = Hot {
        last_step: row.get(at + 2),
        failures: row.get(at + 3),
        locked_until: row.get(at + 4),
    };
    let epoch = u64::try_from(epoch).map_err(|_| StoreError::Corrupt("negative epoch".into()))?;
    Ok((hot.merge(decode_user(&json)?, epoch), epoch, hot))
}

/// Whether a lock read from the columns holds at `now` (as `LockState::is_locked`).
fn locked_at(locked_until: Option<i64>, now: UnixTime) -> bool {
    LockState {
        failures: 0,
        locked_until,
    }
    .is_locked(now)
}

fn outbox_id(key: &[u8]) -> Result<i64, StoreError> {
    <[u8; 8]>::try_from(key)
        .ok()
        .map(u64::from_be_bytes)
        .and_then(|id| i64::try_from(id).ok())
        .ok_or_else(|| StoreError::Corrupt("outbox key".into()))
}

fn utf8(key: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt(format!("{what} key")))
}

const TREES: [&str; 3] = ["users", "links", "outbox"];

/// Rows a restore writes with one statement.
const RESTORE_BATCH: usize = 1000;

/// Rows of one table for a restore, each key once (the last row given for it wins: one
/// statement may not change a row twice).
struct Batch<K, V> {
    rows: Vec<(K, V)>,
    at: std::collections::HashMap<K, usize>,
}

impl<K, V> Default for Batch<K, V> {
    fn default() -> Self {
        Batch {
            rows: Vec::new(),
            at: std::collections::HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Batch<K, V> {
    fn put(&mut self, key: K, value: V) {
        match self.at.get(&key) {
            Some(&i) => self.rows[i].1 = value,
            None => {
                self.at.insert(key.clone(), self.rows.len());
                self.rows.push((key, value));
            }
        }
    }
}

/// Below every login ID and link hash (none is empty): a page "after" it is the first.
/// Outbox ids start at 1, so the first outbox page is after 0.
const FIRST_KEY: &str = "";

impl Store for PgStore {
    fn get_user(&self, login_id: &str) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let rows = self.query(
            "read a user",
            Retry::Safe,
            &format!("SELECT {USER_COLUMNS} FROM users WHERE login_id = $1"),
            &[&login_id],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let (value, epoch, hot) = user_from_row(row, 0)?;
        Ok(Some(Versioned::new(value, epoch, hot.to_raw())))
    }

    fn swap_user(
        &self,
        login_id: &str,
        expected: Option<&Versioned<UserRecord>>,
        new: Option<&UserRecord>,
    ) -> Result<bool, StoreError> {
        let doing = "write a user";
        let json = new.map(encode_user).transpose()?;
        let new_hot = new.map(Hot::of).transpose()?;
        let changed = match (expected, json, new_hot) {
            (None, None, _) => {
                let rows = self.query(
                    doing,
                    Retry::Safe,
                    "SELECT 1 FROM users WHERE login_id = $1",
                    &[&login_id],
                )?;
                return Ok(rows.is_empty());
            }
            (None, Some(json), Some(h)) => self.execute(
                doing,
                Retry::Never,
                "INSERT INTO users (login_id, record, epoch, last_step, failures, locked_until)
                 VALUES ($1, $2::text::jsonb, 1, $3, $4, $5)
                 ON CONFLICT (login_id) DO NOTHING",
                &[&login_id, &json, &h.last_step, &h.failures, &h.locked_until],
            )?,
            (Some(old), json, h) => {
                let epoch = epoch_to_db(old.epoch)?;
                let seen = Hot::from_raw(old.raw())?;
                // The columns must still be as read: a step spent or a failure counted
                // since then is not overwritten by a record that did not see it.
                let unchanged = "login_id = $1 AND epoch = $2
                     AND last_step IS NOT DISTINCT FROM $3 AND failures = $4
                     AND locked_until IS NOT DISTINCT FROM $5";
                match (json, h) {
                    (Some(json), Some(h)) => self.execute(
                        doing,
                        Retry::Never,
                        &format!(
                            "UPDATE users SET record = $6::text::jsonb, epoch = epoch + 1,
                                 last_step = $7, failures = $8, locked_until = $9
                             WHERE {unchanged}"
                        ),
                        &[
                            &login_id,
                            &epoch,
                            &seen.last_step,
                            &seen.failures,
                            &seen.locked_until,
                            &json,
                            &h.last_step,
                            &h.failures,
                            &h.locked_until,
                        ],
                    )?,
                    _ => self.execute(
                        doing,
                        Retry::Never,
                        &format!("DELETE FROM users WHERE {unchanged}"),
                        &[
                            &login_id,
                            &epoch,
                            &seen.last_step,
                            &seen.failures,
                            &seen.locked_until,
                        ],
                    )?,
                }
            }
            (None, Some(_), None) => 0,
        };
        Ok(changed == 1)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.users_after(None, usize::MAX)
    }

    fn users_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self.query(
            "list users",
            Retry::Safe,
            &format!(
                "SELECT {USER_COLUMNS} FROM users WHERE login_id > $1
                 ORDER BY login_id LIMIT $2"
            ),
            &[&after.unwrap_or(FIRST_KEY), &limit_to_db(limit)],
        )?;
        rows.iter()
            .map(|r| user_from_row(r, 0).map(|(u, _, _)| u))
            .collect()
    }

    fn user_count(&self) -> usize {
        self.query(
            "count users",
            Retry::Safe,
            "SELECT count(*) FROM users",
            &[],
        )
        .ok()
        .and_then(|rows| rows.first().map(|r| r.get::<_, i64>(0)))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
    }

    fn link_owner(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let rows = self.query(
            "read a setup link",
            Retry::Safe,
            "SELECT login_id FROM links WHERE hash = $1",
            &[&hash],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn set_link_owner(&self, hash: &str, login_id: Option<&str>) -> Result<(), StoreError> {
        let doing = "write a setup link";
        match login_id {
            Some(id) => self.execute(
                doing,
                Retry::Safe,
                "INSERT INTO links (hash, login_id) VALUES ($1, $2)
                 ON CONFLICT (hash) DO UPDATE SET login_id = EXCLUDED.login_id",
                &[&hash, &id],
            )?,
            None => self.execute(
                doing,
                Retry::Safe,
                "DELETE FROM links WHERE hash = $1",
                &[&hash],
            )?,
        };
        Ok(())
    }

    fn outbox_push(&self, message: &[u8]) -> Result<u64, StoreError> {
        let rows = self.query(
            "queue a mail",
            Retry::Never,
            "INSERT INTO outbox (message) VALUES ($1) RETURNING id",
            &[&message],
        )?;
        let id: i64 = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Io("queue a mail: no id returned".into()))?;
        u64::try_from(id).map_err(|_| StoreError::Corrupt("negative outbox id".into()))
    }

    fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self.query(
            "read the outbox",
            Retry::Safe,
            "SELECT id, message FROM outbox ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((u64::try_from(r.get::<_, i64>(0)).ok()?, r.get(1))))
            .collect())
    }

    fn outbox_replace(&self, id: u64, message: &[u8]) -> Result<(), StoreError> {
        let id = i64::try_from(id).map_err(|_| StoreError::Io("outbox id out of range".into()))?;
        self.execute(
            "rewrite a mail",
            Retry::Never,
            "INSERT INTO outbox (id, message) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET message = EXCLUDED.message",
            &[&id, &message],
        )?;
        Ok(())
    }

    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(());
        };
        self.execute(
            "remove a mail",
            Retry::Safe,
            "DELETE FROM outbox WHERE id = $1",
            &[&id],
        )?;
        Ok(())
    }

    /// Every statement committed before it returned (autocommit, `synchronous_commit`).
    fn when_durable(&self, done: DurableCallback) {
        done(Ok(()));
    }

    fn size_on_disk(&self) -> u64 {
        self.query(
            "measure the tables",
            Retry::Safe,
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
             WHERE c.relkind = 'r' AND pg_table_is_visible(c.oid)
               AND c.relname IN ('users', 'links', 'outbox', 'once', 'schema_version')",
            &[],
        )
        .ok()
        .and_then(|rows| rows.first().map(|r| r.get::<_, i64>(0)))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
    }

    fn export_after(
        &self,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<ExportRow>, StoreError> {
        self.on_conn(Retry::Safe, |c| self.export_page(c, after, limit))
    }

    /// One transaction, a thousand rows a statement: a user that exists already (or is
    /// created meanwhile by another node) rolls all of it back.
    fn create_users(&self, users: &[UserRecord]) -> Result<Result<(), String>, StoreError> {
        let doing = "create the imported users";
        let mut rows = Vec::with_capacity(users.len());
        for u in users {
            rows.push((u.login_id.as_str(), encode_user(u)?, Hot::of(u)?));
        }
        self.on_conn(Retry::Never, |conn| {
            let mut tx = conn
                .transaction(None, false)
                .map_err(self.db_error(doing))?;
            for chunk in rows.chunks(RESTORE_BATCH) {
                let ids: Vec<&str> = chunk.iter().map(|(id, _, _)| *id).collect();
                let json: Vec<&str> = chunk.iter().map(|(_, j, _)| j.as_str()).collect();
                let steps: Vec<Option<i64>> = chunk.iter().map(|(_, _, h)| h.last_step).collect();
                let failures: Vec<i32> = chunk.iter().map(|(_, _, h)| h.failures).collect();
                let until: Vec<Option<i64>> =
                    chunk.iter().map(|(_, _, h)| h.locked_until).collect();
                let created = tx
                    .query(
                        "INSERT INTO users (login_id, record, epoch, last_step, failures, locked_until)
                         SELECT id, rec::jsonb, 1, step, fails, until
                         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::int8[])
                             AS t(id, rec, step, fails, until)
                         ON CONFLICT (login_id) DO NOTHING RETURNING login_id",
                        &[&ids, &json, &steps, &failures, &until],
                    )
                    .map_err(self.db_error(doing))?;
                if created.len() < ids.len() {
                    let made: std::collections::HashSet<String> =
                        created.iter().map(|r| r.get(0)).collect();
                    let taken = ids.iter().find(|id| !made.contains(**id)).copied();
                    // Dropped without a commit: rolled back.
                    return Ok(Err(taken.unwrap_or_default().to_string()));
                }
            }
            tx.commit().map_err(self.db_error(doing))?;
            Ok(Ok(()))
        })
    }

    fn key_check(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(
            "read the key check value",
            Retry::Safe,
            "SELECT value FROM meta WHERE name = 'key_check'",
            &[],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn record_key_check(&self, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let rows = self.query(
            "record the key check value",
            Retry::Safe,
            "WITH added AS (
                 INSERT INTO meta (name, value) VALUES ('key_check', $1)
                 ON CONFLICT (name) DO NOTHING RETURNING value)
             SELECT value FROM added
             UNION ALL SELECT value FROM meta WHERE name = 'key_check'",
            &[&value],
        )?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Io("record the key check value: nothing read back".into()))
    }

    /// All rows in one transaction: a restore that fails leaves the database as it was.
    fn restore(&self, rows: &[ExportRow]) -> Result<(), StoreError> {
        self.on_conn(Retry::Never, |c| self.restore_rows(c, rows))
    }

    fn spend_step(
        &self,
        login_id: &str,
        epoch: u64,
        step: u64,
        now: UnixTime,
    ) -> Result<Spend, StoreError> {
        let (epoch, step) = (epoch_to_db(epoch)?, step_to_db(step)?);
        let spent = self.execute(
            "spend a step",
            Retry::Never,
            "UPDATE users SET last_step = $3, failures = 0, locked_until = NULL
             WHERE login_id = $1 AND epoch = $2 AND (last_step IS NULL OR last_step < $3)
               AND NOT coalesce(locked_until = 0 OR $4 < locked_until, false)",
            &[&login_id, &epoch, &step, &now],
        )?;
        if spent == 1 {
            return Ok(Spend::Spent);
        }
        // Nothing changed: one read to say why.
        let rows = self.query(
            "read a refused step",
            Retry::Safe,
            "SELECT epoch, locked_until FROM users WHERE login_id = $1",
            &[&login_id],
        )?;
        Ok(match rows.first() {
            None => Spend::Missing,
            Some(r) if r.get::<_, i64>(0) != epoch => Spend::Changed,
            Some(r) if locked_at(r.get(1), now) => Spend::Locked,
            Some(_) => Spend::Replayed,
        })
    }

    fn count_failure(
        &self,
        login_id: &str,
        now: UnixTime,
        policy: &LockPolicy,
    ) -> Result<Option<LockState>, StoreError> {
        let max = i32::try_from(policy.max_failures).unwrap_or(i32::MAX);
        let lock = if policy.lockout_seconds == 0 {
            0
        } else {
            now.saturating_add(i64::try_from(policy.lockout_seconds).unwrap_or(i64::MAX))
        };
        // LockState::record_failure in one statement: a timed lock that ran out restarts
        // the count; a lock in force stays as it is; reaching the maximum locks.
        let rows = self.query(
            "count a failure",
            Retry::Never,
            "UPDATE users SET
                 failures = CASE
                     WHEN locked_until <> 0 AND $2 >= locked_until THEN 1
                     ELSE least(failures, 2147483646) + 1 END,
                 locked_until = CASE
                     WHEN locked_until = 0 OR $2 < locked_until THEN locked_until
                     WHEN $3 > 0 AND (CASE WHEN locked_until IS NOT NULL THEN 1
                                           ELSE least(failures, 2147483646) + 1 END) >= $3
                         THEN $4
                     ELSE NULL END
             WHERE login_id = $1
             RETURNING failures, locked_until",
            &[&login_id, &now, &max, &lock],
        )?;
        Ok(rows.first().map(|r| LockState {
            failures: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
            locked_until: r.get(1),
        }))
    }

    fn clear_failures(&self, login_id: &str) -> Result<(), StoreError> {
        self.execute(
            "clear failures",
            Retry::Never,
            "UPDATE users SET failures = 0, locked_until = NULL
             WHERE login_id = $1 AND (failures <> 0 OR locked_until IS NOT NULL)",
            &[&login_id],
        )?;
        Ok(())
    }

    fn use_once(
        &self,
        key: &[u8],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if self.once_calls.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            self.execute(
                "purge expired single-use keys",
                Retry::Safe,
                "DELETE FROM once WHERE expires_at < $1",
                &[&now],
            )?;
        }
        // A key stays used up to its expires_at; after it, the upsert takes it over in one
        // statement.
        let rows = self.query(
            "use a single-use key",
            Retry::Never,
            "INSERT INTO once (key, expires_at) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
                 WHERE once.expires_at < $3
             RETURNING 1",
            &[&key, &expires_at, &now],
        )?;
        Ok(!rows.is_empty())
    }

    fn outbox_lease(
        &self,
        node: &str,
        now: UnixTime,
        lease_seconds: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let until = now.saturating_add(i64::try_from(lease_seconds).unwrap_or(i64::MAX));
        // SKIP LOCKED: a message another node is taking right now is left to it.
        let rows = self.query(
            "lease mail",
            Retry::Safe,
            "UPDATE outbox SET leased_by = $1, lease_until = $2
             WHERE id IN (SELECT id FROM outbox
                          WHERE lease_until IS NULL OR lease_until <= $3
                             OR leased_by = $1
                          ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, message",
            &[&node, &until, &now, &limit_to_db(limit)],
        )?;
        let mut leased: Vec<(u64, Vec<u8>)> = rows
            .iter()
            .filter_map(|r| Some((u64::try_from(r.get::<_, i64>(0)).ok()?, r.get(1))))
            .collect();
        leased.sort_by_key(|(id, _)| *id);
        Ok(leased)
    }

    fn describe(&self) -> (String, String) {
        ("postgres".into(), self.pool.target.location())
    }

    /// Every call is a round trip to the server: the daemon makes them on its blocking pool.
    fn local(&self) -> bool {
        false
    }

    /// One round trip within [`CHECK_TIMEOUT`] on the check's own connection, opened
    /// within the same deadline when there is none. When the server does not answer, that
    /// connection is closed, and so are the idle ones of the pool: the server they were
    /// opened to is not answering. An answer ends the pool's fail-fast.
    fn check(&self) -> Result<(), StoreError> {
        off_reactor(|| {
            let doing = "check that the database answers";
            let mut probe = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
            let until = Instant::now() + CHECK_TIMEOUT;
            let mut db = match probe.take() {
                Some(db) if !db.is_closed() => db,
                _ => match self.pool.target.connect(until) {
                    Ok(db) => db,
                    Err(e) => {
                        if e.is_deadline() {
                            self.pool.stalled();
                        } else {
                            self.pool.discard_idle();
                        }
                        return Err(self.pool.target.error(doing, &e));
                    }
                },
            };
            db.deadline(until);
            match db.ping() {
                Ok(()) => {
                    *probe = Some(db);
                    self.pool.answered();
                    Ok(())
                }
                Err(e) => {
                    drop(db);
                    if e.is_deadline() {
                        self.pool.stalled();
                    } else {
                        self.pool.discard_idle();
                    }
                    Err(self.pool.target.error(doing, &e))
                }
            }
        })
    }

    fn needs_flush(&self, _login_id: &str) -> bool {
        false
    }
}

/// The bodies of the calls that hold one connection for several statements.
impl PgStore {
    fn export_page(
        &self,
        conn: &mut Db,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<ExportRow>, StoreError> {
        let first = match after {
            Some((name, _)) => TREES.iter().position(|n| *n == name).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown tree {name:?} in a backup cursor"))
            })?,
            None => 0,
        };
        // One snapshot for the page: a user and its link are read as of the same moment.
        let mut tx = conn
            .transaction(Some(tokio_postgres::IsolationLevel::RepeatableRead), true)
            .map_err(self.db_error("start a backup page"))?;
        let mut out = Vec::new();
        for (i, name) in TREES.iter().enumerate().skip(first) {
            let from = match after {
                Some((_, key)) if i == first => Some(key),
                _ => None,
            };
            let left = limit_to_db(limit - out.len());
            if left == 0 {
                break;
            }
            let doing = "read a backup page";
            match *name {
                "users" => {
                    let from = from.map(|k| utf8(k, "user")).transpose()?;
                    let rows = tx
                        .query(
                            &format!(
                                "SELECT login_id, {USER_COLUMNS} FROM users WHERE login_id > $1
                                 ORDER BY login_id LIMIT $2"
                            ),
                            &[&from.as_deref().unwrap_or(FIRST_KEY), &left],
                        )
                        .map_err(self.db_error(doing))?;
                    for r in &rows {
                        let id: String = r.get(0);
                        let (u, _, _) = user_from_row(r, 1)?;
                        out.push((
                            name.to_string(),
                            id.into_bytes(),
                            encode_user(&u)?.into_bytes(),
                        ));
                    }
                }
                "links" => {
                    let from = from.map(|k| utf8(k, "link")).transpose()?;
                    let rows = tx
                        .query(
                            "SELECT hash, login_id FROM links WHERE hash > $1
                             ORDER BY hash LIMIT $2",
                            &[&from.as_deref().unwrap_or(FIRST_KEY), &left],
                        )
                        .map_err(self.db_error(doing))?;
                    for r in &rows {
                        let (hash, id): (String, String) = (r.get(0), r.get(1));
                        out.push((name.to_string(), hash.into_bytes(), id.into_bytes()));
                    }
                }
                _ => {
                    let from = from.map(outbox_id).transpose()?;
                    let rows = tx
                        .query(
                            "SELECT id, message FROM outbox WHERE id > $1
                             ORDER BY id LIMIT $2",
                            &[&from.unwrap_or(0), &left],
                        )
                        .map_err(self.db_error(doing))?;
                    for r in &rows {
                        let id: i64 = r.get(0);
                        let id = u64::try_from(id)
                            .map_err(|_| StoreError::Corrupt("negative outbox id".into()))?;
                        out.push((name.to_string(), id.to_be_bytes().to_vec(), r.get(1)));
                    }
                }
            }
        }
        tx.commit().map_err(self.db_error("end a backup page"))?;
        Ok(out)
    }

    fn restore_rows(&self, conn: &mut Db, rows: &[ExportRow]) -> Result<(), StoreError> {
        let doing = "restore a backup";
        // Decoded and checked before anything is written; later rows of a key win.
        let mut users = Batch::default();
        let mut links = Batch::default();
        let mut outbox = Batch::default();
        for (name, k, v) in rows {
            match name.as_str() {
                "users" => {
                    let id = utf8(k, "user")?;
                    let u: UserRecord = serde_json::from_slice(v)
                        .map_err(|e| StoreError::Corrupt(format!("user {id:?}: {e}")))?;
                    let row = (encode_user(&u)?, Hot::of(&u)?);
                    users.put(id, row);
                }
                "links" => links.put(utf8(k, "link")?, utf8(v, "link owner")?),
                "outbox" => outbox.put(outbox_id(k)?, v.clone()),
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unknown tree {other:?} in backup"
                    )))
                }
            }
        }
        let mut tx = conn
            .transaction(None, false)
            .map_err(self.db_error(doing))?;
        // A thousand rows a statement: a million users restore in a thousand round trips.
        for chunk in users.rows.chunks(RESTORE_BATCH) {
            let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
            let json: Vec<&str> = chunk.iter().map(|(_, (j, _))| j.as_str()).collect();
            let steps: Vec<Option<i64>> = chunk.iter().map(|(_, (_, h))| h.last_step).collect();
            let failures: Vec<i32> = chunk.iter().map(|(_, (_, h))| h.failures).collect();
            let until: Vec<Option<i64>> = chunk.iter().map(|(_, (_, h))| h.locked_until).collect();
            tx.execute(
                "INSERT INTO users (login_id, record, epoch, last_step, failures, locked_until)
                 SELECT id, rec::jsonb, 1, step, fails, until
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::int8[])
                     AS t(id, rec, step, fails, until)
                 ON CONFLICT (login_id) DO UPDATE SET record = EXCLUDED.record,
                     epoch = users.epoch + 1, last_step = EXCLUDED.last_step,
                     failures = EXCLUDED.failures, locked_until = EXCLUDED.locked_until",
                &[&ids, &json, &steps, &failures, &until],
            )
            .map_err(self.db_error(doing))?;
        }
        for chunk in links.rows.chunks(RESTORE_BATCH) {
            let (hashes, owners): (Vec<&str>, Vec<&str>) =
                chunk.iter().map(|(h, o)| (h.as_str(), o.as_str())).unzip();
            tx.execute(
                "INSERT INTO links (hash, login_id)
                 SELECT * FROM unnest($1::text[], $2::text[])
                 ON CONFLICT (hash) DO UPDATE SET login_id = EXCLUDED.login_id",
                &[&hashes, &owners],
            )
            .map_err(self.db_error(doing))?;
        }
        for chunk in outbox.rows.chunks(RESTORE_BATCH) {
            let (ids, messages): (Vec<i64>, Vec<&[u8]>) =
                chunk.iter().map(|(id, m)| (*id, m.as_slice())).unzip();
            tx.execute(
                "INSERT INTO outbox (id, message)
                 SELECT * FROM unnest($1::int8[], $2::bytea[])
                 ON CONFLICT (id) DO UPDATE SET message = EXCLUDED.message,
                     leased_by = NULL, lease_until = NULL",
                &[&ids, &messages],
            )
            .map_err(self.db_error(doing))?;
        }
        // Ids for new outbox entries must not collide with restored ones.
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('outbox', 'id'), coalesce(max(id), 0) + 1, false)
             FROM outbox",
            &[],
        )
        .map_err(self.db_error(doing))?;
        tx.commit().map_err(self.db_error(doing))
    }
}
