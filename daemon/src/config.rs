//! otpd's configuration file, the TOML of SPEC.md. Every key has a default except
//! `service_id`; unknown keys are errors; relative paths are relative to the file's own
//! folder. The core's part (`service_id`, `data_dir`, `key_file`, `[otp]`, `[password]`,
//! `[token]`) is [`otpd_core::config::Config`]; the sockets, mail and log sections are the
//! daemon's and live here.
//!
//! Reading a file happens in three steps: the TOML is parsed once, the values are checked
//! without touching the disk ([`Config::check`]), then the files the values name are read
//! or looked at ([`Config::read_files`]). [`Config::load`] reports every problem it finds,
//! not just the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use otpd_core::config::{from_toml, resolve, OtpSection, PasswordSection, TokenSection};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::log::Level;
use crate::radius::{check_clients, parse_client_network, ClientFinding, RadiusClient};

/// The whole checked configuration: the core's part, and each section the daemon's
/// sockets, mailer and logger read. It derefs to the core's part, so the core's keys read
/// as `config.service_id` and `Service::new(&config, …)` takes it as is.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the core's decisions need: the service ID, data, key and policies.
    pub core: otpd_core::config::Config,
    pub radius: RadiusSection,
    pub http: HttpSection,
    pub mail: MailSection,
    pub admin: AdminSection,
    pub log: LogSection,
    /// `[metrics]`: absent, no metrics listener.
    pub metrics: Option<MetricsSection>,
    /// `[[radius.clients]]` with their shared secrets read (by [`Config::read_files`]).
    pub radius_clients: Vec<RadiusClient>,
}

impl std::ops::Deref for Config {
    type Target = otpd_core::config::Config;

    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

/// A configuration that passed every check, and the warnings worth showing at start.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// The file as written: every key of every section, the core's among them, read in one go.
#[derive(Deserialize)]
#[serde(default)]
struct File {
    service_id: String,
    data_dir: PathBuf,
    key_file: PathBuf,
    otp: OtpSection,
    password: PasswordSection,
    token: TokenSection,
    radius: RadiusSection,
    http: HttpSection,
    mail: MailSection,
    admin: AdminSection,
    log: LogSection,
    metrics: Option<MetricsSection>,
}

impl Default for File {
    fn default() -> Self {
        let core = otpd_core::config::Config::default();
        File {
            service_id: core.service_id,
            data_dir: core.data_dir,
            key_file: core.key_file,
            otp: core.otp,
            password: core.password,
            token: core.token,
            radius: RadiusSection::default(),
            http: HttpSection::default(),
            mail: MailSection::default(),
            admin: AdminSection::default(),
            log: LogSection::default(),
            metrics: None,
        }
    }
}

impl File {
    fn into_config(self) -> Config {
        Config {
            core: otpd_core::config::Config {
                service_id: self.service_id,
                data_dir: self.data_dir,
                key_file: self.key_file,
                otp: self.otp,
                password: self.password,
                token: self.token,
            },
            radius: self.radius,
            http: self.http,
            mail: self.mail,
            admin: self.admin,
            log: self.log,
            metrics: self.metrics,
            radius_clients: Vec::new(),
        }
    }
}

/// `[radius]`: the UDP listeners, the gateways (clients) allowed to ask, and how hard
/// their failures and refusals are held back.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RadiusSection {
    pub listen: Vec<String>,
    pub require_message_authenticator: bool,
    pub reject_delay_ms: u64,
    /// Failed logins a client may cause in a burst before its requests are refused
    /// (so one gateway's flood cannot lock out every other gateway's customers).
    pub client_failure_burst: u32,
    /// Failed logins per second a client's budget regains.
    pub client_failure_rate: u32,
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
enum SecretSource<'a> {
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
    fn secret_source(&self) -> Result<SecretSource<'_>, String> {
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
}

/// `[log]`: how much is written, and whether audit lines also go to syslog.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub level: Level,
    pub syslog: bool,
    pub syslog_socket: PathBuf,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: Level::Info,
            syslog: true,
            syslog_socket: "/dev/log".into(),
        }
    }
}

impl Config {
    /// Reads, parses and checks `path`. Errors: every problem found, one sentence each.
    pub fn load(path: &Path) -> Result<Loaded, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut loaded = Config::parse(&text, &base)?;
        let inline = loaded
            .config
            .radius
            .clients
            .iter()
            .any(|c| c.secret.is_some());
        if inline {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
            if mode & 0o004 != 0 {
                loaded.warnings.push(format!(
                    "{} holds inline RADIUS shared secrets and everyone may read it (mode {:o}): move them to secret_file (mode 600), or run: chmod 640 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ));
            }
        }
        Ok(loaded)
    }

    /// Parses TOML text whose relative paths are relative to `base`, checks it, then reads
    /// the files it names.
    pub fn parse(text: &str, base: &Path) -> Result<Loaded, Vec<String>> {
        let (mut file, mut problems) = from_toml::<File>(text)?;
        file.resolve_paths(base);
        let mut config = file.into_config();
        let mut warnings = Vec::new();
        config.check(&mut problems, &mut warnings);
        config.read_files(&mut problems, &mut warnings);
        if problems.is_empty() {
            Ok(Loaded { config, warnings })
        } else {
            Err(problems)
        }
    }

    /// Pushes every problem and warning the values show by themselves; reads nothing.
    pub fn check(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        self.core.check(problems, warnings);
        self.check_radius(problems, warnings);
        self.check_http(problems, warnings);
        let m = &self.mail;
        if !m.from.contains('@') {
            problems.push(format!("`mail.from` {:?} needs an e-mail address", m.from));
        }
        if m.username.is_some() != m.password_file.is_some() {
            problems.push("`mail.username` and `mail.password_file` go together".into());
        }
        if let Some(m) = &self.metrics {
            if m.listen.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "`metrics.listen`: {:?} is not an IP:port",
                    m.listen
                ));
            }
        }
    }

    fn check_radius(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        let r = &self.radius;
        if r.listen.is_empty() {
            problems.push("`radius.listen` needs at least one address".into());
        }
        for l in &r.listen {
            if l.parse::<SocketAddr>().is_err() {
                problems.push(format!("`radius.listen`: {l:?} is not an IP:port"));
            }
        }
        for c in &r.clients {
            if let Err(e) = c.network() {
                problems.push(e);
            }
            if let Err(e) = c.secret_source() {
                problems.push(e);
            }
        }
        if !r.require_message_authenticator {
            warnings.push("`radius.require_message_authenticator = false`: requests without Message-Authenticator are accepted, which BlastRADIUS (CVE-2024-3596) exploits; turn it on once every gateway sends one".into());
        }
        if r.reject_delay_ms == 0 {
            warnings.push("`radius.reject_delay_ms = 0`: refusals are answered at once, which lets a client guess passwords at full speed; 1000 is the default".into());
        }
        let Some(t) = &r.tls else {
            return;
        };
        if t.listen.is_empty() {
            problems.push("`radius.tls.listen` needs at least one address".into());
        }
        for l in &t.listen {
            if l.parse::<SocketAddr>().is_err() {
                problems.push(format!("`radius.tls.listen`: {l:?} is not an IP:port"));
            }
        }
        if t.clients.is_empty() {
            problems.push("`radius.tls` needs at least one [[radius.tls.clients]]".into());
        }
        if t.max_connections == 0 || t.max_in_flight_per_connection == 0 {
            problems.push("`radius.tls.max_connections` and `max_in_flight_per_connection` must be at least 1".into());
        }
        for c in &t.clients {
            if r.clients.iter().any(|u| u.name == c.name)
                || t.clients.iter().filter(|o| o.name == c.name).count() > 1
            {
                problems.push(format!("radius client name {:?} appears twice", c.name));
            }
            if c.certificate.is_empty() {
                problems.push(format!(
                    "radius TLS client {:?}: `certificate` is empty",
                    c.name
                ));
            }
            if parse_network(&c.address).is_none() {
                problems.push(format!(
                    "radius TLS client {:?}: address {:?} is neither an IP nor a CIDR",
                    c.name, c.address
                ));
            }
        }
    }

    fn check_http(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        let h = &self.http;
        match h.listen.parse::<SocketAddr>() {
            Err(_) => problems.push(format!("`http.listen`: {:?} is not an IP:port", h.listen)),
            Ok(a) if !a.ip().is_loopback() && h.tls_cert_file.is_none() => {
                warnings.push(format!(
                    "`http.listen` {a} is off loopback and serves plain HTTP: activation passwords and one-time passwords would cross the network in clear; set http.tls_cert_file/tls_key_file or listen on loopback behind a TLS proxy"
                ));
            }
            Ok(_) => {}
        }
        let url = h.public_url.trim_end_matches('/');
        match url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if !rest.is_empty() => {
                let host = rest.split(['/', ':']).next().unwrap_or("");
                if !(host == "localhost" || host.starts_with("127.") || host == "[") {
                    warnings.push(format!(
                        "`http.public_url` {url:?} is plain http off loopback: activation passwords would cross the network in clear; put TLS in front"
                    ));
                }
            }
            _ => problems.push(format!(
                "`http.public_url`: {:?} must start with http:// or https://",
                h.public_url
            )),
        }
        if !(h.customer_rate > 0.0 && h.customer_rate_total > 0.0)
            || h.customer_burst == 0
            || h.customer_burst_total == 0
        {
            problems.push("`http.customer_rate`, `customer_burst`, `customer_rate_total` and `customer_burst_total` must be above 0".into());
        }
        for p in &h.trusted_proxies {
            if parse_network(p).is_none() {
                problems.push(format!(
                    "`http.trusted_proxies`: {p:?} is neither an IP nor a CIDR"
                ));
            }
        }
        if h.tls_cert_file.is_some() != h.tls_key_file.is_some() {
            problems.push("`http.tls_cert_file` and `http.tls_key_file` go together".into());
        }
    }

    /// Reads or looks at every file the values name (shared secrets, key and certificate
    /// files, the mail template), keeps the RADIUS clients with their secrets, and pushes
    /// what is wrong with them, then what the RADIUS client rules say about the clients.
    pub fn read_files(&mut self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        let mut clients = Vec::with_capacity(self.radius.clients.len());
        for c in &self.radius.clients {
            let secret = match c.secret() {
                Ok(s) => s,
                Err(e) => {
                    // `check` has said so already when the source itself is wrong.
                    if c.secret_source().is_ok() {
                        problems.push(e);
                    }
                    Zeroizing::new(Vec::new())
                }
            };
            let Ok(network) = c.network() else { continue };
            clients.push(RadiusClient {
                name: c.name.clone(),
                network,
                secret,
                require_message_authenticator: c.require_message_authenticator,
            });
        }
        for (name, finding) in check_clients(&clients) {
            match finding {
                // An empty secret is the secret's own problem, said above or by `check`.
                ClientFinding::EmptySecret => {}
                f if f.is_warning() => warnings.push(f.sentence(&name)),
                f => problems.push(f.sentence(&name)),
            }
        }
        self.radius_clients = clients;

        let h = &self.http;
        if let Some(key) = &h.tls_key_file {
            if let Err(e) = otpd_core::seal::check_private(key) {
                problems.push(format!("`http.tls_key_file` {}: {e}", key.display()));
            }
        }
        for k in &h.api_keys {
            // A key file opens the whole admin API: as private as the sealing key.
            if let Err(e) = otpd_core::seal::check_private(&k.key_file) {
                problems.push(format!(
                    "api key {:?}: {}: {e}",
                    k.name,
                    k.key_file.display()
                ));
                continue;
            }
            match std::fs::read_to_string(&k.key_file) {
                Ok(s) if s.lines().next().is_some_and(|l| l.trim().len() >= 16) => {}
                Ok(_) => problems.push(format!(
                    "api key {:?}: {} must hold a key of at least 16 characters on its first line",
                    k.name,
                    k.key_file.display()
                )),
                Err(e) => problems.push(format!(
                    "api key {:?}: cannot read {}: {e}",
                    k.name,
                    k.key_file.display()
                )),
            }
        }
        if let Some(p) = &self.mail.password_file {
            if let Err(e) = otpd_core::seal::check_private(p) {
                problems.push(format!("`mail.password_file` {}: {e}", p.display()));
            }
        }
        if let Some(t) = &self.mail.template {
            if let Err(e) = std::fs::read_to_string(t) {
                problems.push(format!("`mail.template` {}: {e}", t.display()));
            }
        }
        if let Some(t) = &self.radius.tls {
            for (key, f) in [
                ("cert_file", &t.cert_file),
                ("key_file", &t.key_file),
                ("client_ca_file", &t.client_ca_file),
            ] {
                if let Err(e) = std::fs::metadata(f) {
                    problems.push(format!("`radius.tls.{key}` {}: {e}", f.display()));
                }
            }
            if t.key_file.exists() {
                if let Err(e) = otpd_core::seal::check_private(&t.key_file) {
                    problems.push(format!(
                        "`radius.tls.key_file` {}: {e}",
                        t.key_file.display()
                    ));
                }
            }
        }
    }
}

impl File {
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| resolve(base, p);
        fix(&mut self.data_dir);
        fix(&mut self.key_file);
        fix(&mut self.admin.socket);
        fix(&mut self.mail.dir);
        fix(&mut self.log.syslog_socket);
        if let Some(t) = &mut self.radius.tls {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
            fix(&mut t.client_ca_file);
        }
        for p in [
            &mut self.mail.template,
            &mut self.mail.password_file,
            &mut self.http.tls_cert_file,
            &mut self.http.tls_key_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        for c in &mut self.radius.clients {
            if let Some(p) = &mut c.secret_file {
                fix(p);
            }
        }
        for k in &mut self.http.api_keys {
            fix(&mut k.key_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn parse(text: &str) -> Result<Loaded, Vec<String>> {
        Config::parse(text, Path::new("/etc/otpd"))
    }

    #[test]
    fn minimal_config_takes_the_defaults() {
        let l = parse("service_id = \"BANK\"\n").expect("valid");
        let c = &l.config;
        assert_eq!(c.otp.period, 60);
        assert_eq!(c.otp.digits, 6);
        assert_eq!(c.token.validity_days, 1461);
        assert_eq!(c.radius.reject_delay_ms, 1000);
        assert!(c.radius.require_message_authenticator);
        assert_eq!(c.admin.socket, PathBuf::from("/run/otpd/admin.sock"));
        assert_eq!(c.log.level, Level::Info);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn metrics_are_off_unless_a_listen_address_is_given() {
        assert!(parse("service_id = \"B\"\n")
            .expect("valid")
            .config
            .metrics
            .is_none());
        let on =
            parse("service_id = \"B\"\n[metrics]\nlisten = \"127.0.0.1:9812\"\n").expect("valid");
        assert_eq!(
            on.config.metrics.map(|m| m.listen).as_deref(),
            Some("127.0.0.1:9812")
        );
        let e = parse("service_id = \"B\"\n[metrics]\nlisten = \"localhost\"\nport = 1\n")
            .expect_err("refused");
        assert!(e.iter().any(|p| p.contains("`metrics.listen`")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("`metrics.port`")), "{e:?}");
    }

    #[test]
    fn every_unknown_key_is_listed() {
        let e = parse("service_id = \"B\"\ncolour = 1\n[otp]\nperiodd = 60\n[radius]\nlisten=[\"127.0.0.1:1\"]\nfoo = true\n")
            .expect_err("refused");
        assert!(e.iter().any(|p| p.contains("`colour`")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("`otp.periodd`")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("`radius.foo`")), "{e:?}");
    }

    #[test]
    fn every_problem_is_listed() {
        let e = parse(
            "[token]\nvalidity_days = 1000\n[otp]\ndigits = 4\n[http]\npublic_url = \"ftp://x\"\n[[radius.clients]]\nname = \"gw\"\naddress = \"not-an-ip\"\n",
        )
        .expect_err("refused");
        for needle in [
            "service_id",
            "validity_days",
            "otp.digits",
            "public_url",
            "not-an-ip",
            "secret",
        ] {
            assert!(
                e.iter().any(|p| p.contains(needle)),
                "missing {needle}: {e:?}"
            );
        }
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let l = parse("service_id=\"B\"\ndata_dir=\"data\"\nkey_file=\"/abs/key\"\n[admin]\nsocket=\"run/a.sock\"\n").expect("valid");
        assert_eq!(l.config.data_dir, PathBuf::from("/etc/otpd/data"));
        assert_eq!(l.config.key_file, PathBuf::from("/abs/key"));
        assert_eq!(l.config.admin.socket, PathBuf::from("/etc/otpd/run/a.sock"));
    }

    #[test]
    fn clients_and_warnings() {
        let l = parse(
            "service_id=\"B\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[[radius.clients]]\nname=\"gw\"\naddress=\"10.0.0.0/8\"\nsecret=\"short\"\n",
        )
        .expect("valid");
        assert!(
            l.warnings.iter().any(|w| w.contains("shorter than 16")),
            "{:?}",
            l.warnings
        );
        assert!(
            l.warnings.iter().any(|w| w.contains("OWASP")),
            "{:?}",
            l.warnings
        );
        let c = &l.config.radius.clients[0];
        assert!(c
            .network()
            .expect("cidr")
            .contains(&"10.1.2.3".parse::<IpAddr>().expect("ip")));
        let both = parse("service_id=\"B\"\n[[radius.clients]]\nname=\"gw\"\naddress=\"1.2.3.4\"\nsecret=\"x\"\nsecret_file=\"f\"\n");
        assert!(both
            .expect_err("refused")
            .iter()
            .any(|p| p.contains("not both")));
    }

    #[test]
    fn duplicate_clients_are_named_once_each() {
        let e = parse(
            "service_id=\"B\"\n[[radius.clients]]\nname=\"a\"\naddress=\"10.0.0.0/8\"\nsecret=\"a-long-shared-secret-0123\"\n[[radius.clients]]\nname=\"a\"\naddress=\"10.2.3.4/8\"\nsecret=\"a-long-shared-secret-0123\"\n",
        )
        .expect_err("refused");
        assert_eq!(
            e,
            [
                "radius client name \"a\" appears twice",
                "radius clients \"a\" and \"a\" have the same address 10.0.0.0/8: a request could not tell which shared secret is meant",
            ],
            "{e:?}"
        );
    }

    #[test]
    fn the_log_level_is_one_of_four() {
        for (text, level) in [
            ("error", Level::Error),
            ("warn", Level::Warn),
            ("info", Level::Info),
            ("debug", Level::Debug),
        ] {
            let l = parse(&format!("service_id=\"B\"\n[log]\nlevel = \"{text}\"\n"))
                .expect("valid");
            assert_eq!(l.config.log.level, level);
        }
        let e = parse("service_id=\"B\"\n[log]\nlevel = \"verbose\"\n").expect_err("refused");
        assert!(
            e.iter()
                .any(|p| p.contains("`log.level` \"verbose\": one of error, warn, info, debug")),
            "{e:?}"
        );
    }

    /// The client rules run once, at load: the short-secret warning is said once, and the
    /// RADIUS client table built from the loaded clients at start adds nothing to the log.
    #[tokio::test]
    async fn a_short_secret_is_warned_about_once_at_start() {
        use std::sync::{Arc, Mutex};

        use crate::radius::{
            AccessHandler, AccessRequest, Decision, RadiusEvent, RadiusLog, RadiusServer,
        };

        struct Refuse;
        impl AccessHandler for Refuse {
            async fn decide(&self, _req: AccessRequest) -> Decision {
                Decision::Reject {
                    reply_message: None,
                    reason: "test",
                }
            }
        }

        let l = parse(
            "service_id=\"B\"\n[radius]\nlisten = [\"127.0.0.1:0\"]\n[[radius.clients]]\nname=\"short\"\naddress=\"10.1.0.0/16\"\nsecret=\"tiny\"\n",
        )
        .expect("valid");
        let short = |w: &&String| w.contains("shorter than 16 bytes");
        assert_eq!(
            l.warnings.iter().filter(short).count(),
            1,
            "{:?}",
            l.warnings
        );
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let log: Arc<dyn RadiusLog> = Arc::new(move |e: &RadiusEvent| {
            seen.lock().expect("lines").push(e.to_string());
        });
        let cfg = crate::app::radius_config(&l.config).expect("radius settings");
        let server = RadiusServer::bind(cfg, Arc::new(Refuse), log)
            .await
            .expect("the client table accepts a short secret");
        drop(server);
        let lines = lines.lock().expect("lines");
        assert!(
            !lines.iter().any(|l| l.contains("shorter than")),
            "{lines:?}"
        );
    }

    #[test]
    fn shipped_example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
        let mut seen = 0;
        for entry in std::fs::read_dir(&root)
            .expect("packaging/ exists")
            .flatten()
        {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "toml") {
                // Production examples point at files that exist only on a real host; parse
                // them for shape (unknown keys, types) without looking at the files.
                let text = std::fs::read_to_string(&p).expect("readable");
                let parsed = from_toml::<File>(&text);
                assert!(parsed.is_ok(), "{}: {:?}", p.display(), parsed.err());
                let unknown = parsed.map(|(_, u)| u).unwrap_or_default();
                assert!(
                    unknown.is_empty(),
                    "{}: unknown keys {unknown:?}",
                    p.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 1, "no example config found under packaging/");
    }
}
