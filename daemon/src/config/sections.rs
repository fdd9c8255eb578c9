//! The daemon's sections of the file, as written, with their defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::log::Level;
use crate::radius::parse_client_network;

/// `[radius]`: the UDP listeners, the gateways (clients) allowed to ask, and how hard
/// their failures and refusals are held back.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RadiusSection {
    pub listen: Vec<String>,
    pub require_message_authenticator: bool,
    pub reject_delay_ms: u64,
    /// Failed logins a source may cause in a burst before it is over budget. A source is
    /// the client, or the `Calling-Station-Id` behind it when the client sends one. Over
    /// budget, nothing is refused for that alone: its logins of clean users wait behind
    /// other sources' for a hashing worker, and its other logins (unknown IDs, users with
    /// failures) wait in the bounded back line; only what overflows that line is refused
    /// unevaluated (audit reason `client_rate_limited`). A customer's correct login is
    /// never refused for its gateway's budget.
    pub client_failure_burst: u32,
    /// Failed logins per second a source's budget regains.
    pub client_failure_rate: u32,
    /// Logins of one source that may wait for a hashing worker in each back line (users
    /// with failures or unknown IDs; clean users from a source over budget); a line holds
    /// eight times this over all sources. What does not fit is refused at once (audit
    /// reason `overloaded`, or `client_rate_limited` over budget). Logins whose OTP already
    /// checks out, and clean users' from sources within budget, are not bounded here
    /// (`max_in_flight` bounds them).
    pub login_queue_per_source: u32,
    pub clients: Vec<RadiusClientSection>,
    /// `[radius.tls]`: RADIUS over TLS (RFC 6614); absent, off.
    pub tls: Option<RadiusTlsSection>,
}

impl Default for RadiusSection {
    fn default() -> Self {
        RadiusSection {
            listen: vec!["127.0.0.1:1812".into()],
            require_message_authenticator: true,
            reject_delay_ms: 1000,
            client_failure_burst: 200,
            client_failure_rate: 20,
            login_queue_per_source: 32,
            clients: Vec::new(),
            tls: None,
        }
    }
}

/// RADIUS over TLS: its own listeners, certificates and clients (matched by certificate
/// name and address; the shared secret is `radsec`, as RFC 6614 fixes it).
#[derive(Debug, Clone, Deserialize)]
pub struct RadiusTlsSection {
    pub listen: Vec<String>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA that signs the clients' certificates; a client without one is refused.
    pub client_ca_file: PathBuf,
    #[serde(default = "default_tls_idle")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "default_tls_connections")]
    pub max_connections: usize,
    /// Connections one address may hold at once (handshakes included).
    #[serde(default = "default_tls_per_source")]
    pub max_connections_per_source: usize,
    /// Of `max_connections`, those kept for each client's own network.
    #[serde(default = "default_tls_reserved")]
    pub reserved_connections_per_client: usize,
    #[serde(default = "default_tls_in_flight")]
    pub max_in_flight_per_connection: usize,
    #[serde(default)]
    pub clients: Vec<RadiusTlsClientSection>,
}

fn default_tls_idle() -> u64 {
    300
}

fn default_tls_connections() -> usize {
    64
}

fn default_tls_per_source() -> usize {
    16
}

fn default_tls_reserved() -> usize {
    4
}

fn default_tls_in_flight() -> usize {
    32
}

/// `[[radius.tls.clients]]`: a gateway reaching otpd over TLS.
#[derive(Debug, Clone, Deserialize)]
pub struct RadiusTlsClientSection {
    pub name: String,
    /// The certificate's subject common name or one of its DNS subject alternative names.
    pub certificate: String,
    /// An IP address or a CIDR network the client connects from.
    pub address: String,
}

/// `[[radius.clients]]`: a gateway as written; its rules are in `radius::check_clients`.
#[derive(Debug, Clone, Deserialize)]
pub struct RadiusClientSection {
    pub name: String,
    /// An IP address or a CIDR network.
    pub address: String,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub require_message_authenticator: Option<bool>,
}

/// An IP address (a single host) or a CIDR network, as `radius::parse_client_network`
/// reads it, with the host bits cleared.
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    parse_client_network(s).ok().map(|n| n.trunc())
}

/// Where a client's shared secret is written.
pub(super) enum SecretSource<'a> {
    Inline(&'a str),
    File(&'a Path),
}

impl RadiusClientSection {
    pub fn network(&self) -> Result<ipnet::IpNet, String> {
        parse_network(&self.address).ok_or_else(|| {
            format!(
                "radius client {:?}: address {:?} is neither an IP nor a CIDR",
                self.name, self.address
            )
        })
    }

    /// `secret` or `secret_file`, exactly one of them; reads nothing.
    pub(super) fn secret_source(&self) -> Result<SecretSource<'_>, String> {
        match (&self.secret, &self.secret_file) {
            (Some(s), None) if !s.is_empty() => Ok(SecretSource::Inline(s)),
            (None, Some(p)) => Ok(SecretSource::File(p)),
            (Some(_), Some(_)) => Err(format!(
                "radius client {:?}: give secret or secret_file, not both",
                self.name
            )),
            _ => Err(format!(
                "radius client {:?}: needs a non-empty secret or a secret_file",
                self.name
            )),
        }
    }

    /// The shared secret, from `secret` or the first line of `secret_file`.
    pub fn secret(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let p = match self.secret_source()? {
            SecretSource::Inline(s) => return Ok(Zeroizing::new(s.as_bytes().to_vec())),
            SecretSource::File(p) => p,
        };
        otpd_core::seal::check_private(p).map_err(|e| {
            format!(
                "radius client {:?}: secret_file {}: {e}",
                self.name,
                p.display()
            )
        })?;
        let text = Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
            format!(
                "radius client {:?}: cannot read secret_file {}: {e}",
                self.name,
                p.display()
            )
        })?);
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(format!(
                "radius client {:?}: secret_file {} is empty",
                self.name,
                p.display()
            ));
        }
        Ok(Zeroizing::new(line.as_bytes().to_vec()))
    }
}

/// `[http]`: the customer's and the admin API's listener, its TLS, its API keys and the
/// customer endpoints' rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSection {
    pub listen: String,
    pub public_url: String,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub api_keys: Vec<ApiKeySection>,
    /// Requests a second one source may make to the customer's endpoints (setup, renewal),
    /// after a burst of `customer_burst`. Mobile carriers put many phones behind one
    /// address, so this is generous; `customer_rate_total` caps all sources together.
    pub customer_rate: f64,
    pub customer_burst: u32,
    pub customer_rate_total: f64,
    pub customer_burst_total: u32,
    /// Reverse proxies (IPs or CIDRs) whose `X-Forwarded-For` names the real source.
    pub trusted_proxies: Vec<String>,
    /// Connections one source (an IPv4 address, an IPv6 /64) may hold open of the 256;
    /// trusted proxies are not bounded by it.
    pub max_connections_per_source: usize,
    /// When set, `/healthz` and the admin API (`/api/v1/admin/`) are served here only, on
    /// a listener of their own (its own connection cap, the same TLS), and `listen` serves
    /// the customer's doors alone: the internet never reaches the admin API.
    pub admin_listen: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            tls_cert_file: None,
            tls_key_file: None,
            api_keys: Vec::new(),
            customer_rate: 2.0,
            customer_burst: 30,
            customer_rate_total: 100.0,
            customer_burst_total: 200,
            trusted_proxies: Vec::new(),
            max_connections_per_source: 128,
            admin_listen: None,
        }
    }
}

impl HttpSection {
    /// `trusted_proxies`, parsed (checked at load).
    pub fn trusted_proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p))
            .collect()
    }
}

/// `[[http.api_keys]]`: one caller of the admin API and the file holding its key.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeySection {
    pub name: String,
    pub key_file: PathBuf,
}

/// `mail.transport`: hand the e-mail to an SMTP relay, or write it to `mail.dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Smtp,
    File,
}

/// `[mail]`: how the issuance e-mail leaves (an SMTP relay or a folder) and what it says.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MailSection {
    pub transport: MailTransport,
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub starttls: bool,
    /// The CA (PEM) that signs the relay's certificate, trusted alone instead of the
    /// public roots: a bank's relay with a private CA (needs `starttls = true`).
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub dir: PathBuf,
    pub template: Option<PathBuf>,
}

impl Default for MailSection {
    fn default() -> Self {
        MailSection {
            transport: MailTransport::Smtp,
            from: "OTP Center <otp@example.invalid>".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            starttls: false,
            ca_file: None,
            username: None,
            password_file: None,
            dir: "/var/spool/otpd/mail".into(),
            template: None,
        }
    }
}

/// `[admin]`: where otpctl's Unix socket is.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AdminSection {
    pub socket: PathBuf,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            socket: "/run/otpd/admin.sock".into(),
        }
    }
}

/// The Prometheus listener: `GET /metrics` on its own address, never on the public HTTP one.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSection {
    pub listen: String,
    /// The gauges that read every user (users by state, locks, the outbox) are read again
    /// at most this often; scrapes in between show the last reading.
    #[serde(default = "default_sample_seconds")]
    pub sample_seconds: u64,
}

fn default_sample_seconds() -> u64 {
    15
}

/// `[log]`: how much is written, and whether audit lines also go to syslog.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub level: Level,
    /// `text` (stderr), `journal` (the journal's native socket), `json` (stderr).
    pub format: crate::log::Format,
    /// Where `format = "journal"` writes (extension: tests point it at a journal namespace).
    pub journal_socket: PathBuf,
    pub syslog: bool,
    pub syslog_socket: PathBuf,
    /// `udp://HOST:PORT` or `tcp://HOST:PORT`: audit lines to this collector (RFC 5424)
    /// instead of `syslog_socket` (extension).
    pub syslog_server: Option<String>,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: Level::Info,
            format: crate::log::Format::Text,
            journal_socket: "/run/systemd/journal/socket".into(),
            syslog: true,
            syslog_socket: "/dev/log".into(),
            syslog_server: None,
        }
    }
}

impl LogSection {
    /// What the logger is built from; an unusable `syslog_server` falls back to the local
    /// socket here, and `--check-config` refuses it (check.rs).
    pub fn settings(&self) -> crate::log::Settings {
        let syslog = self.syslog.then(|| {
            self.syslog_server
                .as_deref()
                .and_then(|s| crate::log::SyslogTarget::server(s).ok())
                .unwrap_or_else(|| crate::log::SyslogTarget::Local(self.syslog_socket.clone()))
        });
        crate::log::Settings {
            level: self.level,
            format: self.format,
            journal_socket: self.journal_socket.clone(),
            syslog,
        }
    }
}

/// `[store]`: which engine keeps users, links and the outbox.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoreSection {
    pub engine: StoreEngine,
    /// `[store.postgres]`: only with `engine = "postgres"`.
    pub postgres: Option<PostgresSection>,
}

/// `store.engine`: sled in `data_dir` (one node), or a PostgreSQL database several nodes share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    #[default]
    Sled,
    Postgres,
}

/// `[store.postgres]`: where the database is and how otpd talks to it.
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresSection {
    /// A libpq URL; several hosts with `target_session_attrs=read-write` find the primary.
    pub url: String,
    /// The role's password on its first line (mode 600); wins over one in `url`.
    pub password_file: Option<PathBuf>,
    /// As written; absent, [`PostgresSection::sslmode_in_force`] picks it from the hosts.
    #[serde(default)]
    pub sslmode: Option<otpd_store_postgres::SslMode>,
    /// The CA of the server's certificate (PEM), for `verify-ca` and `verify-full`.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

impl PostgresSection {
    /// `sslmode` as written, else `verify-full` for any host that is not loopback or a
    /// Unix socket (and libpq's `prefer` for those).
    pub fn sslmode_in_force(&self) -> otpd_store_postgres::SslMode {
        self.sslmode.unwrap_or_else(|| {
            otpd_store_postgres::check_url(&self.url)
                .map_or(otpd_store_postgres::SslMode::VerifyFull, |f| {
                    f.default_sslmode()
                })
        })
    }
}

fn default_pool_size() -> usize {
    8
}

fn default_statement_timeout_ms() -> u64 {
    2000
}
