//! otpd's PostgreSQL store engine: the core's `Store` trait on one database that several
//! otpd nodes share, so a code accepted on one node is refused on every other.
//!
//! Each per-login write (a spent step, a counted failure, a single-use challenge, an outbox
//! lease) is one conditional statement; nothing is cached on a node, and every statement
//! commits before it returns (autocommit, `synchronous_commit` on), so "durable before
//! acknowledged" needs no group commit here.
//!
//! The client is tokio-postgres, each connection driven by a current-thread runtime of its
//! own only while a call waits on it (`db.rs`): the `Store` trait is synchronous and runs on
//! the daemon's blocking pool, and a runtime of the connection's own keeps it from being
//! driven inside the daemon's. Every wait has a deadline on this side: a server that hangs
//! answers nothing, not even the error its `statement_timeout` would give. The
//! connections sit in a small pool of our own (`pool.rs`: a mutex, a condition variable and
//! `pool_size` clients), which is all the daemon's bounded pool of workers needs; the health
//! check has one more of its own.
//! TLS goes through
//! `tokio-postgres-rustls` on the rustls and ring the daemon already uses for RADIUS over
//! TLS and SMTP, so no second TLS library (and no OpenSSL) enters the build; it also gives
//! SCRAM channel binding.

mod connect;
mod db;
mod pool;
mod schema;
mod store;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use otpd_core::store::StoreError;
use zeroize::Zeroizing;

pub use connect::{check_url, redact_url, UrlFacts};
pub use schema::SCHEMA_VERSION;
pub use store::PgStore;

/// How otpd reaches its database: `[store.postgres]` of the configuration, files read.
#[derive(Clone)]
pub struct Settings {
    /// A libpq connection URL; it may list several hosts
    /// (`postgresql://otpd@db1,db2/otpd?target_session_attrs=read-write`).
    pub url: String,
    /// The password, from `password_file` (it wins over one written in the URL).
    pub password: Option<Zeroizing<String>>,
    pub sslmode: SslMode,
    /// The CA that signs the server's certificate (PEM), for `verify-ca` and `verify-full`.
    pub ca_file: Option<PathBuf>,
    /// Connections this node keeps open at most.
    pub pool_size: usize,
    /// A statement running longer is cancelled by the server (and the call fails).
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// libpq's `sslmode`, with libpq's meaning: `prefer` and `require` encrypt without checking
/// who answers (unless a `ca_file` is given to `require`), `verify-ca` checks the
/// certificate's chain, `verify-full` its chain and the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether this mode checks the server's certificate against `ca_file`.
    pub fn needs_ca(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// What `otpd --check-config` found at the database.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where: "host:port db".
    pub location: String,
    pub server_version: String,
    /// None: otpd has not created its tables there yet (the first start will).
    pub schema_version: Option<i32>,
    pub users: Option<i64>,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgreSQL {} at {}: ",
            self.server_version, self.location
        )?;
        match (self.schema_version, self.users) {
            (Some(v), Some(n)) => write!(f, "schema version {v}, {n} users"),
            (Some(v), None) => write!(f, "schema version {v}"),
            (None, _) => write!(
                f,
                "no otpd schema yet (the first start creates version {SCHEMA_VERSION})"
            ),
        }
    }
}

/// Connects once, without creating or changing anything, and says what is there; refuses
/// a schema newer than this otpd knows, as a start would.
pub fn probe(settings: &Settings) -> Result<Probe, StoreError> {
    pool::off_reactor(|| probe_here(settings))
}

fn probe_here(settings: &Settings) -> Result<Probe, StoreError> {
    let target = connect::Target::new(settings)?;
    let until = std::time::Instant::now() + target.connect_within + target.per_statement;
    let mut client = target
        .connect(until)
        .map_err(|e| target.error("cannot connect", &e))?;
    client.deadline(std::time::Instant::now() + target.per_statement);
    let found = schema::inspect(&mut client).map_err(|e| target.error("inspect", &e))?;
    if let Some(v) = found.schema_version {
        schema::refuse_newer(v)?;
    }
    Ok(Probe {
        location: target.location(),
        server_version: found.server_version,
        schema_version: found.schema_version,
        users: found.users,
    })
}
