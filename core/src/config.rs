//! otpd's configuration: the TOML of SPEC.md. Every key has a default except `service_id`;
//! unknown keys are errors; relative paths are relative to the file's own folder.
//! [`Config::load`] reports every problem it finds, not just the first.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::lifecycle::{TokenPolicy, MIN_VALIDITY_DAYS};
use crate::lockout::LockPolicy;
use crate::otp::{Algorithm, OtpParams};
use crate::password::HashParams;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub service_id: String,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub radius: RadiusSection,
    pub otp: OtpSection,
    pub password: PasswordSection,
    pub token: TokenSection,
    pub http: HttpSection,
    pub mail: MailSection,
    pub admin: AdminSection,
    pub log: LogSection,
    /// `[metrics]`: absent, no metrics listener.
    pub metrics: Option<MetricsSection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_id: String::new(),
            data_dir: "/var/lib/otpd".into(),
            key_file: "/etc/otpd/master.key".into(),
            radius: RadiusSection::default(),
            otp: OtpSection::default(),
            password: PasswordSection::default(),
            token: TokenSection::default(),
            http: HttpSection::default(),
            mail: MailSection::default(),
            admin: AdminSection::default(),
            log: LogSection::default(),
            metrics: None,
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
pub struct RadiusTlsClientSection {
    pub name: String,
    /// The certificate's subject common name or one of its DNS subject alternative names.
    pub certificate: String,
    /// An IP address or a CIDR network the client connects from.
    pub address: String,
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

#[derive(Debug, Clone, Deserialize)]
pub struct RadiusClientSection {
    pub name: String,
    /// An IP address or a CIDR network.
    pub address: String,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub require_message_authenticator: Option<bool>,
}

/// An IP address (a single host) or a CIDR network.
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(ipnet::IpNet::from)
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

    /// The shared secret, from `secret` or the first line of `secret_file`.
    pub fn secret(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        match (&self.secret, &self.secret_file) {
            (Some(s), None) if !s.is_empty() => Ok(Zeroizing::new(s.as_bytes().to_vec())),
            (None, Some(p)) => {
                crate::seal::check_private(p).map_err(|e| {
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OtpSection {
    pub period: u64,
    pub digits: usize,
    pub algorithm: Algorithm,
    pub window: u64,
    pub max_failures: u32,
    pub lockout_seconds: u64,
    pub required: bool,
}

impl Default for OtpSection {
    fn default() -> Self {
        OtpSection {
            period: 60,
            digits: 6,
            algorithm: Algorithm::SHA1,
            window: 1,
            max_failures: 5,
            lockout_seconds: 1800,
            required: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PasswordSection {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

impl Default for PasswordSection {
    fn default() -> Self {
        let d = HashParams::default();
        PasswordSection {
            argon2_memory_kib: d.memory_kib,
            argon2_iterations: d.iterations,
            argon2_parallelism: d.parallelism,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TokenSection {
    pub validity_days: u32,
    pub renewal_window_days: u32,
    pub link_valid_hours: u32,
    pub setup_max_attempts: u32,
}

impl Default for TokenSection {
    fn default() -> Self {
        let d = TokenPolicy::default();
        TokenSection {
            validity_days: d.validity_days,
            renewal_window_days: d.renewal_window_days,
            link_valid_hours: d.link_valid_hours,
            setup_max_attempts: d.setup_max_attempts,
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSection {
    pub level: String,
    pub syslog: bool,
    pub syslog_socket: PathBuf,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            syslog: true,
            syslog_socket: "/dev/log".into(),
        }
    }
}

/// A configuration that passed every check, and the warnings worth showing at start.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
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

    /// Parses TOML text whose relative paths are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Loaded, Vec<String>> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let parsed: Result<Config, _> = serde_ignored::deserialize(de, |path| {
            // An optional table shows as `?` in the path: say `metrics.port`, not `metrics.?.port`.
            let path = path.to_string().replace(".?", "");
            unknown.push(format!("unknown key `{path}`"))
        });
        let mut config = match parsed {
            Ok(c) => c,
            Err(e) => {
                unknown.push(e.to_string().trim_end().to_string());
                return Err(unknown);
            }
        };
        config.resolve_paths(base);
        let mut problems = unknown;
        let warnings = config.check(&mut problems);
        if problems.is_empty() {
            Ok(Loaded { config, warnings })
        } else {
            Err(problems)
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
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

    /// Pushes every problem; returns the warnings.
    fn check(&self, problems: &mut Vec<String>) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.service_id.trim().is_empty() {
            problems.push(
                "`service_id` is required (the service ID customers type at initial setup)".into(),
            );
        } else if self.service_id.contains(':') || self.service_id.len() > 64 {
            problems.push("`service_id` must be at most 64 characters and contain no ':' (it is the otpauth issuer)".into());
        }
        if self.radius.listen.is_empty() {
            problems.push("`radius.listen` needs at least one address".into());
        }
        for l in &self.radius.listen {
            if l.parse::<SocketAddr>().is_err() {
                problems.push(format!("`radius.listen`: {l:?} is not an IP:port"));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut networks = std::collections::HashMap::new();
        for c in &self.radius.clients {
            if !names.insert(c.name.as_str()) {
                problems.push(format!("radius client name {:?} appears twice", c.name));
            }
            match c.network() {
                Err(e) => problems.push(e),
                Ok(net) => {
                    if let Some(other) = networks.insert(net, c.name.as_str()) {
                        problems.push(format!(
                            "radius clients {other:?} and {:?} have the same address {net}: a request could not tell which shared secret is meant",
                            c.name
                        ));
                    }
                }
            }
            if c.require_message_authenticator == Some(false) {
                warnings.push(format!(
                    "radius client {:?}: require_message_authenticator = false accepts requests without integrity protection (BlastRADIUS, CVE-2024-3596); turn it on once the gateway sends Message-Authenticator",
                    c.name
                ));
            }
            match c.secret() {
                Err(e) => problems.push(e),
                Ok(s) if s.len() < 16 => warnings.push(format!(
                    "radius client {:?}: the shared secret is shorter than 16 bytes; use a long random one",
                    c.name
                )),
                Ok(_) => {}
            }
        }
        if !self.radius.require_message_authenticator {
            warnings.push("`radius.require_message_authenticator = false`: requests without Message-Authenticator are accepted, which BlastRADIUS (CVE-2024-3596) exploits; turn it on once every gateway sends one".into());
        }
        if self.radius.reject_delay_ms == 0 {
            warnings.push("`radius.reject_delay_ms = 0`: refusals are answered at once, which lets a client guess passwords at full speed; 1000 is the default".into());
        }
        let o = &self.otp;
        if !(15..=300).contains(&o.period) {
            problems.push(format!(
                "`otp.period` = {}: must be between 15 and 300 seconds",
                o.period
            ));
        }
        if !(6..=8).contains(&o.digits) {
            problems.push(format!("`otp.digits` = {}: must be 6, 7 or 8", o.digits));
        }
        if o.window > 10 {
            problems.push(format!(
                "`otp.window` = {}: at most 10 steps either side",
                o.window
            ));
        }
        if o.max_failures == 0 || o.max_failures > 100 {
            problems.push(format!(
                "`otp.max_failures` = {}: must be 1..=100 (NIST SP 800-63B allows at most 100)",
                o.max_failures
            ));
        }
        let h = self.hash_params();
        if let Err(e) = argon2::Params::new(h.memory_kib, h.iterations, h.parallelism, None) {
            problems.push(format!("`password`: argon2 parameters refused: {e}"));
        } else if h.below_owasp_minimum() {
            warnings.push(format!(
                "argon2id at m={} KiB, t={} is below OWASP's minimum (m=19456, t=2); use it only for tests",
                h.memory_kib, h.iterations
            ));
        }
        let t = &self.token;
        if t.validity_days < MIN_VALIDITY_DAYS {
            problems.push(format!("`token.validity_days` = {}: tokens must be valid at least {MIN_VALIDITY_DAYS} days (4 years)", t.validity_days));
        }
        if t.renewal_window_days >= t.validity_days {
            problems.push(
                "`token.renewal_window_days` must be shorter than `token.validity_days`".into(),
            );
        }
        if t.link_valid_hours == 0 {
            problems.push("`token.link_valid_hours` must be at least 1".into());
        }
        if t.setup_max_attempts == 0 {
            problems.push("`token.setup_max_attempts` must be at least 1".into());
        }
        match self.http.listen.parse::<SocketAddr>() {
            Err(_) => problems.push(format!(
                "`http.listen`: {:?} is not an IP:port",
                self.http.listen
            )),
            Ok(a) if !a.ip().is_loopback() && self.http.tls_cert_file.is_none() => {
                warnings.push(format!(
                    "`http.listen` {a} is off loopback and serves plain HTTP: activation passwords and one-time passwords would cross the network in clear; set http.tls_cert_file/tls_key_file or listen on loopback behind a TLS proxy"
                ));
            }
            Ok(_) => {}
        }
        let url = self.http.public_url.trim_end_matches('/');
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
                self.http.public_url
            )),
        }
        let h = &self.http;
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
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            problems.push("`http.tls_cert_file` and `http.tls_key_file` go together".into());
        }
        if let Some(key) = &self.http.tls_key_file {
            if let Err(e) = crate::seal::check_private(key) {
                problems.push(format!("`http.tls_key_file` {}: {e}", key.display()));
            }
        }
        for k in &self.http.api_keys {
            // A key file opens the whole admin API: as private as the sealing key.
            if let Err(e) = crate::seal::check_private(&k.key_file) {
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
        if !self.mail.from.contains('@') {
            problems.push(format!(
                "`mail.from` {:?} needs an e-mail address",
                self.mail.from
            ));
        }
        if self.mail.username.is_some() != self.mail.password_file.is_some() {
            problems.push("`mail.username` and `mail.password_file` go together".into());
        }
        if let Some(p) = &self.mail.password_file {
            if let Err(e) = crate::seal::check_private(p) {
                problems.push(format!("`mail.password_file` {}: {e}", p.display()));
            }
        }
        if let Some(t) = &self.mail.template {
            if let Err(e) = std::fs::read_to_string(t) {
                problems.push(format!("`mail.template` {}: {e}", t.display()));
            }
        }
        if let Some(t) = &self.radius.tls {
            if t.listen.is_empty() {
                problems.push("`radius.tls.listen` needs at least one address".into());
            }
            for l in &t.listen {
                if l.parse::<SocketAddr>().is_err() {
                    problems.push(format!("`radius.tls.listen`: {l:?} is not an IP:port"));
                }
            }
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
                if let Err(e) = crate::seal::check_private(&t.key_file) {
                    problems.push(format!(
                        "`radius.tls.key_file` {}: {e}",
                        t.key_file.display()
                    ));
                }
            }
            if t.clients.is_empty() {
                problems.push("`radius.tls` needs at least one [[radius.tls.clients]]".into());
            }
            if t.max_connections == 0 || t.max_in_flight_per_connection == 0 {
                problems.push("`radius.tls.max_connections` and `max_in_flight_per_connection` must be at least 1".into());
            }
            for c in &t.clients {
                if self.radius.clients.iter().any(|u| u.name == c.name)
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
        if let Some(m) = &self.metrics {
            if m.listen.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "`metrics.listen`: {:?} is not an IP:port",
                    m.listen
                ));
            }
        }
        if !["error", "warn", "info", "debug"].contains(&self.log.level.as_str()) {
            problems.push(format!(
                "`log.level` {:?}: one of error, warn, info, debug",
                self.log.level
            ));
        }
        warnings
    }

    pub fn otp_params(&self) -> OtpParams {
        OtpParams {
            period: self.otp.period,
            digits: self.otp.digits,
            algorithm: self.otp.algorithm,
            window: self.otp.window,
        }
    }

    pub fn lock_policy(&self) -> LockPolicy {
        LockPolicy {
            max_failures: self.otp.max_failures,
            lockout_seconds: self.otp.lockout_seconds,
        }
    }

    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.password.argon2_memory_kib,
            iterations: self.password.argon2_iterations,
            parallelism: self.password.argon2_parallelism,
        }
    }

    pub fn token_policy(&self) -> TokenPolicy {
        TokenPolicy {
            validity_days: self.token.validity_days,
            renewal_window_days: self.token.renewal_window_days,
            link_valid_hours: self.token.link_valid_hours,
            setup_max_attempts: self.token.setup_max_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn validity_floor_is_1461_days() {
        assert!(parse("service_id=\"B\"\n[token]\nvalidity_days = 1460\n").is_err());
        assert!(parse("service_id=\"B\"\n[token]\nvalidity_days = 1461\n").is_ok());
    }

    /// NIST SP 800-63B §5.2.2: at most 100 consecutive failed attempts on one account.
    #[test]
    fn max_failures_is_1_to_100() {
        let with = |n: u32| parse(&format!("service_id=\"B\"\n[otp]\nmax_failures = {n}\n"));
        for bad in [0, 101, 1000, u32::MAX] {
            let e = with(bad).expect_err("refused");
            assert!(
                e.iter()
                    .any(|p| p.contains("otp.max_failures") && p.contains("NIST")),
                "{bad}: {e:?}"
            );
        }
        for good in [1, 5, 100] {
            assert_eq!(with(good).expect("valid").config.otp.max_failures, good);
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
                // them for shape (unknown keys, types) with a relaxed check of paths.
                let text = std::fs::read_to_string(&p).expect("readable");
                let mut unknown = Vec::new();
                let parsed: Result<Config, _> =
                    serde_ignored::deserialize(toml::Deserializer::new(&text), |path| {
                        unknown.push(path.to_string())
                    });
                assert!(parsed.is_ok(), "{}: {:?}", p.display(), parsed.err());
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
