//! From [`Settings`] to a connected client: the parsed URL with otpd's own settings laid
//! over it, the TLS connector, and error messages that name the server but never carry a
//! password (a connection string may hold one).

use std::time::{Duration, Instant};

use otpd_core::store::StoreError;
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;
use zeroize::Zeroizing;

use crate::db::{Db, Fail};
use crate::{tls, Settings};

/// How long a connection attempt to one host may take when the URL does not say
/// (`connect_timeout`, in seconds). A login waits for it when no connection is idle.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How much longer than the server's `statement_timeout` a statement is waited for here
/// before the server is taken to hang: the server's own cancel and its answer's way back.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// A connection idle this long is probed by TCP keepalives (when the URL does not say), so
/// that one whose network died is found out before a login is lent it.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVES_RETRIES: u32 = 3;

/// One database, ready to be connected to as often as the pool needs.
pub struct Target {
    config: tokio_postgres::Config,
    /// How long a statement is waited for: `statement_timeout` and [`ANSWER_MARGIN`].
    pub per_statement: Duration,
    /// How long opening a connection may take, over every listed host.
    pub connect_within: Duration,
    tls: MakeRustlsConnect,
    location: String,
    /// Every password this target knows, scrubbed from whatever it reports.
    secrets: Vec<Zeroizing<String>>,
}

impl Target {
    pub fn new(settings: &Settings) -> Result<Target, StoreError> {
        let mut secrets = Vec::new();
        if let Some(p) = &settings.password {
            secrets.push(p.clone());
        }
        check_url(&settings.url).map_err(|e| StoreError::Io(scrub(&e, &secrets)))?;
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| StoreError::Io(scrub(&chain(&e), &secrets)))?;
        if let Some(p) = config.get_password() {
            secrets.push(Zeroizing::new(String::from_utf8_lossy(p).into_owned()));
        }
        if let Some(p) = &settings.password {
            config.password(p.as_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let per_statement = settings.statement_timeout + ANSWER_MARGIN;
        // Data the server's kernel does not acknowledge (a network that drops packets)
        // closes the connection after a statement's wait, keepalives included.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(per_statement);
        }
        if !settings.url.contains("keepalives_idle") {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        // tokio-postgres bounds only the TCP connect by `connect_timeout`; the handshake
        // (TLS, authentication) is bounded here, each host in turn.
        let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
        let connect_within = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT)
            .saturating_mul(hosts);
        if config.get_application_name().is_none() {
            config.application_name("otpd");
        }
        let timeout = format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        );
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {timeout}"),
            _ => timeout,
        };
        config.options(&options);
        config.ssl_mode(match settings.sslmode {
            crate::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            crate::SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(tls::client_config(
            settings.sslmode,
            settings.ca_file.as_deref(),
        )?);
        let location = location(&config);
        Ok(Target {
            config,
            per_statement,
            connect_within,
            tls,
            location,
            secrets,
        })
    }

    /// Opens one connection (the URL's hosts in order, as libpq tries them), giving up at
    /// `until` or after [`Target::connect_within`], whichever comes first.
    pub fn connect(&self, until: Instant) -> Result<Db, Fail> {
        let until = until.min(Instant::now() + self.connect_within);
        Db::connect(&self.config, self.tls.clone(), self.per_statement, until)
    }

    /// "host:port[,host:port] database", for `otpctl status` and messages.
    pub fn location(&self) -> String {
        self.location.clone()
    }

    /// A database error as the store reports it: where, doing what, and why, scrubbed.
    pub fn error(&self, doing: &str, e: &Fail) -> StoreError {
        let why = match e {
            Fail::Db(e) => chain(e),
            Fail::Deadline(waited) => format!(
                "no answer within {} ms (the server hangs or the network drops packets)",
                waited.as_millis()
            ),
            Fail::Local(e) => e.clone(),
        };
        StoreError::Io(scrub(
            &format!("PostgreSQL at {}: {doing}: {why}", self.location),
            &self.secrets,
        ))
    }
}

/// What the configuration check needs to know about a URL, read without connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFacts {
    /// The URL itself carries a password (better kept in `password_file`).
    pub has_password: bool,
    /// Every host is this machine (loopback or a Unix socket): no network in between.
    pub local_only: bool,
}

impl UrlFacts {
    /// The `sslmode` when the configuration names none: `verify-full` for a database
    /// across the network (a man in the middle could rewrite rows), libpq's `prefer` for
    /// one on this machine.
    pub fn default_sslmode(&self) -> crate::SslMode {
        if self.local_only {
            crate::SslMode::Prefer
        } else {
            crate::SslMode::VerifyFull
        }
    }
}

/// Parses `url` as the store will, without connecting: its problem in one sentence, or
/// what the configuration check warns about.
pub fn check_url(url: &str) -> Result<UrlFacts, String> {
    if url.contains("sslmode=") {
        return Err(format!(
            "`store.postgres.url` {}: give sslmode as `store.postgres.sslmode`, not in the URL",
            redact_url(url)
        ));
    }
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("`store.postgres.url` {}: {}", redact_url(url), chain(&e)))?;
    let local_only = config.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    Ok(UrlFacts {
        has_password: config.get_password().is_some(),
        local_only,
    })
}

/// The error and its causes in one line (tokio-postgres keeps the server's message and the
/// socket's error in the cause, not in its own text).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.replace('\n', " ")
}

fn scrub(text: &str, secrets: &[Zeroizing<String>]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

fn location(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    match config.get_dbname().or(config.get_user()) {
        Some(db) => format!("{hosts} {db}"),
        None => hosts,
    }
}

/// The URL with any password in it replaced by `***` (in the user part of a
/// `postgresql://` URL, or a `password=` parameter in either form).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(rest_at) = out.find("://").map(|i| i + 3) {
        let rest = &out[rest_at..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out.replace_range(rest_at + colon + 1..rest_at + at, "***");
            }
        }
    }
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("password=") {
        let value = i + "password=".len();
        redacted.push_str(&rest[..value]);
        redacted.push_str("***");
        let end = rest[value..]
            .find(['&', ' '])
            .map_or(rest.len(), |e| value + e);
        rest = &rest[end..];
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_a_url() {
        for (url, shown) in [
            (
                "postgresql://otpd:s3cret@db1,db2/otpd?target_session_attrs=read-write",
                "postgresql://otpd:***@db1,db2/otpd?target_session_attrs=read-write",
            ),
            (
                "postgres://otpd@db/otpd?password=s3cret&connect_timeout=3",
                "postgres://otpd@db/otpd?password=***&connect_timeout=3",
            ),
            (
                "host=db user=otpd password=s3cret dbname=otpd",
                "host=db user=otpd password=*** dbname=otpd",
            ),
            ("postgresql://otpd@db/otpd", "postgresql://otpd@db/otpd"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    fn settings(url: &str) -> Settings {
        Settings {
            url: url.into(),
            password: Some(Zeroizing::new("from-file-pw".into())),
            sslmode: crate::SslMode::Disable,
            ca_file: None,
            pool_size: 2,
            statement_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn location_names_every_host_and_the_database() {
        let t = Target::new(&settings(
            "postgresql://otpd:pw@db1:5433,db2/bank?target_session_attrs=read-write",
        ))
        .expect("target");
        assert_eq!(t.location(), "db1:5433,db2:5432 bank");
    }

    #[test]
    fn errors_are_scrubbed_of_both_passwords() {
        let t =
            Target::new(&settings("postgresql://otpd:url-pw@127.0.0.1:1/otpd")).expect("target");
        let scrubbed = scrub("saw url-pw and from-file-pw", &t.secrets);
        assert_eq!(scrubbed, "saw *** and ***");
    }

    #[test]
    fn the_check_tells_a_local_database_and_a_password_in_the_url() {
        let f = check_url("postgresql://otpd:pw@127.0.0.1,localhost/otpd").expect("valid");
        assert_eq!(
            f,
            UrlFacts {
                has_password: true,
                local_only: true
            }
        );
        let f = check_url("postgresql://otpd@db1,127.0.0.1/otpd?target_session_attrs=read-write")
            .expect("valid");
        assert!(!f.has_password && !f.local_only, "{f:?}");
        assert!(check_url("postgresql://db/otpd?nonsense=1").is_err());
    }

    #[test]
    fn verify_full_is_the_default_off_this_machine() {
        use crate::SslMode;
        for (url, mode) in [
            ("postgresql://otpd@127.0.0.1/otpd", SslMode::Prefer),
            ("postgresql://otpd@localhost,[::1]/otpd", SslMode::Prefer),
            (
                "host=/run/postgresql user=otpd dbname=otpd",
                SslMode::Prefer,
            ),
            ("postgresql://otpd@db1/otpd", SslMode::VerifyFull),
            (
                "postgresql://otpd@127.0.0.1,10.0.0.5/otpd",
                SslMode::VerifyFull,
            ),
            ("postgresql://otpd@127.0.0.2/otpd", SslMode::Prefer),
        ] {
            let facts = check_url(url).expect("valid");
            assert_eq!(facts.default_sslmode(), mode, "{url}");
        }
    }

    #[test]
    fn verify_full_without_a_trusted_ca_connects_nowhere() {
        let mut s = settings("postgresql://otpd@db1/otpd");
        s.sslmode = crate::SslMode::VerifyFull;
        let Err(StoreError::Io(e)) = Target::new(&s) else {
            panic!("verify-full without ca_file is refused");
        };
        assert!(e.contains("needs `store.postgres.ca_file`"), "{e}");
    }

    #[test]
    fn sslmode_belongs_to_the_section() {
        let Err(StoreError::Io(e)) = Target::new(&settings("postgresql://db/otpd?sslmode=require"))
        else {
            panic!("sslmode in the URL is refused");
        };
        assert!(e.contains("store.postgres.sslmode"), "{e}");
    }

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let Err(StoreError::Io(e)) =
            Target::new(&settings("postgresql://otpd:pw9@db/otpd?bogus=1"))
        else {
            panic!("unknown URL option refused");
        };
        assert!(e.contains("bogus") || e.contains("invalid"), "{e}");
        assert!(!e.contains("pw9"), "{e}");
    }
}
