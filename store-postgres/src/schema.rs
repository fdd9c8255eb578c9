//! otpd's tables, created and migrated by otpd itself: each version's statements run in
//! one transaction with the version recorded in `schema_version`, under an advisory lock
//! so nodes starting together migrate once. A node refuses a schema newer than it knows.
//!
//! A user row keeps the cold record (the UserRecord JSON) apart from what a login changes:
//! the replay mark `last_step` and the lock (`failures`, `locked_until`), so that each
//! login writes one small conditional statement; `epoch` counts whole-record writes.

use crate::db::{Db as Client, Fail};
use otpd_core::store::StoreError;

/// The newest schema this otpd knows.
pub const SCHEMA_VERSION: i32 = 2;

/// Version `i + 1`'s statements are `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    // 1: users, setup links, the mail outbox, single-use keys.
    r#"
    CREATE TABLE users (
        login_id     text COLLATE "C" PRIMARY KEY,
        record       jsonb  NOT NULL,
        epoch        bigint NOT NULL DEFAULT 0,
        last_step    bigint,
        failures     integer NOT NULL DEFAULT 0,
        locked_until bigint
    );
    CREATE TABLE links (
        hash     text COLLATE "C" PRIMARY KEY,
        login_id text NOT NULL
    );
    CREATE TABLE outbox (
        id          bigserial PRIMARY KEY,
        message     bytea NOT NULL,
        leased_by   text,
        lease_until bigint
    );
    CREATE TABLE once (
        key        bytea PRIMARY KEY,
        expires_at bigint NOT NULL
    );
    CREATE INDEX once_expires_at ON once (expires_at);
    "#,
    // 2: what the database says about itself: the key check value of `key_file`.
    r#"
    CREATE TABLE meta (
        name  text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL
    );
    "#,
];

/// Serialises migrations across nodes: "otpd" in ASCII.
const MIGRATION_LOCK: i64 = 0x6f74_7064;

/// What is at the database, read without changing anything.
pub struct Found {
    pub server_version: String,
    pub schema_version: Option<i32>,
    pub users: Option<i64>,
}

pub fn inspect(client: &mut Client) -> Result<Found, Fail> {
    let server_version: String = client.query_one("SHOW server_version", &[])?.get(0);
    let has = |client: &mut Client, table: &str| -> Result<bool, Fail> {
        Ok(client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
            .get(0))
    };
    let schema_version = if has(client, "schema_version")? {
        client
            .query_one("SELECT max(version) FROM schema_version", &[])?
            .get(0)
    } else {
        None
    };
    let users = if has(client, "users")? {
        Some(client.query_one("SELECT count(*) FROM users", &[])?.get(0))
    } else {
        None
    };
    Ok(Found {
        server_version,
        schema_version,
        users,
    })
}

pub fn refuse_newer(found: i32) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::Io(format!(
            "the database's otpd schema is version {found}, newer than this otpd knows ({SCHEMA_VERSION}): another node runs a newer otpd; upgrade this one"
        )));
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction; returns the version found.
pub fn migrate(client: &mut Client) -> Result<i32, Migration> {
    let mut tx = client.transaction(None, false)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .get(0);
    refuse_newer(found).map_err(Migration::Refused)?;
    for (version, statements) in (1..).zip(MIGRATIONS) {
        if version > found {
            tx.batch_execute(statements)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )?;
        }
    }
    tx.commit()?;
    Ok(found)
}

/// Why a migration did not happen.
pub enum Migration {
    Db(Fail),
    Refused(StoreError),
}

impl From<Fail> for Migration {
    fn from(e: Fail) -> Self {
        Migration::Db(e)
    }
}
