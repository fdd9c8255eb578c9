//! The checks of the values by themselves: pure, nothing is read here.

use std::net::SocketAddr;

use otpd_store_postgres::SslMode;

use super::{parse_network, Config, StoreEngine};

/// `localhost` or a loopback address: a relay on this machine.
fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Config {
    /// Pushes every problem and warning the values show by themselves; reads nothing.
    pub fn check(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        if let Some(server) = &self.log.syslog_server {
            if let Err(e) = crate::log::SyslogTarget::server(server) {
                problems.push(e);
            }
        }
        self.core.check(problems, warnings);
        self.check_radius(problems, warnings);
        self.check_http(problems, warnings);
        self.check_store(problems, warnings);
        let m = &self.mail;
        if !m.from.contains('@') {
            problems.push(format!("`mail.from` {:?} needs an e-mail address", m.from));
        }
        if m.username.is_some() != m.password_file.is_some() {
            problems.push("`mail.username` and `mail.password_file` go together".into());
        }
        if m.transport == super::MailTransport::Smtp {
            if m.ca_file.is_some() && !m.starttls {
                problems.push("`mail.ca_file` is for STARTTLS: set `mail.starttls = true`".into());
            }
            if !m.starttls && !is_local_host(&m.smtp_host) {
                warnings.push(format!(
                    "`mail.starttls = false` with the relay {}: setup links (and any relay password) would cross the network in clear; set starttls = true (and mail.ca_file for a private CA)",
                    m.smtp_host
                ));
            }
        }
        if let Some(a) = &self.http.admin_listen {
            match a.parse::<SocketAddr>() {
                Err(_) => problems.push(format!("`http.admin_listen`: {a:?} is not an IP:port")),
                Ok(_) if *a == self.http.listen => problems.push(format!(
                    "`http.admin_listen` {a} is `http.listen` too: give the admin API an address of its own"
                )),
                Ok(a) if !a.ip().is_loopback() && self.http.tls_cert_file.is_none() => {
                    warnings.push(format!(
                        "`http.admin_listen` {a} is beyond loopback without TLS: the admin API's bearer keys would cross the network in clear"
                    ))
                }
                Ok(_) => {}
            }
        }
        if let Some(m) = &self.metrics {
            match m.listen.parse::<SocketAddr>() {
                Err(_) => problems.push(format!(
                    "`metrics.listen`: {:?} is not an IP:port",
                    m.listen
                )),
                Ok(a) if !a.ip().is_loopback() => warnings.push(format!(
                    "`metrics.listen` {a} is beyond loopback: anyone who reaches it reads otpd's counts (users by state, gateways' names, failures); bind it to 127.0.0.1 or firewall it to the Prometheus server"
                )),
                Ok(_) => {}
            }
            if m.sample_seconds == 0 {
                problems.push(
                    "`metrics.sample_seconds` must be at least 1 (each reading reads every user)"
                        .into(),
                );
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
        if r.login_queue_per_source == 0 {
            problems.push("`radius.login_queue_per_source` must be at least 1".into());
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
        if t.max_connections == 0
            || t.max_in_flight_per_connection == 0
            || t.max_connections_per_source == 0
        {
            problems.push("`radius.tls.max_connections`, `max_connections_per_source` and `max_in_flight_per_connection` must be at least 1".into());
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

    fn check_store(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        let s = &self.store;
        let pg = match (s.engine, &s.postgres) {
            (StoreEngine::Sled, None) => return,
            (StoreEngine::Sled, Some(_)) => {
                warnings.push("[store.postgres] is not used: `store.engine` is \"sled\"; set engine = \"postgres\" to use it".into());
                return;
            }
            (StoreEngine::Postgres, None) => {
                problems.push(
                    "`store.engine = \"postgres\"` needs a [store.postgres] section with `url`"
                        .into(),
                );
                return;
            }
            (StoreEngine::Postgres, Some(pg)) => pg,
        };
        let mode = pg.sslmode_in_force();
        match otpd_store_postgres::check_url(&pg.url) {
            Err(e) => problems.push(e),
            Ok(facts) => {
                if facts.has_password {
                    warnings.push("`store.postgres.url` holds a password: whoever reads the configuration reads it; put it in `store.postgres.password_file` (mode 600)".into());
                }
                if !facts.local_only && mode != SslMode::VerifyFull {
                    warnings.push(format!(
                        "`store.postgres.sslmode = \"{}\"` with a database across the network: password hashes and sealed secrets would cross it {}; use verify-full with ca_file",
                        mode.as_str(),
                        match mode {
                            SslMode::Disable | SslMode::Prefer => "possibly in clear",
                            SslMode::VerifyCa => "to any server the CA certified, whatever its name",
                            _ => "to a server whose certificate nobody checks",
                        }
                    ));
                }
            }
        }
        if mode.needs_ca() && pg.ca_file.is_none() {
            problems.push(match pg.sslmode {
                Some(_) => format!(
                    "`store.postgres.sslmode = \"{}\"` needs `store.postgres.ca_file`",
                    mode.as_str()
                ),
                None => "`store.postgres.sslmode` is verify-full by default for a database that is not on loopback or a Unix socket, and that needs `store.postgres.ca_file` (the CA of the server's certificate); a weaker sslmode must be written out, and is warned about".into(),
            });
        }
        if pg.ca_file.is_some() && matches!(mode, SslMode::Disable | SslMode::Prefer) {
            warnings.push(format!(
                "`store.postgres.ca_file` is not used with sslmode \"{}\": the server's certificate is not checked; use verify-full",
                mode.as_str()
            ));
        }
        if pg.pool_size == 0 {
            problems.push("`store.postgres.pool_size` must be at least 1".into());
        }
        if pg.statement_timeout_ms == 0 {
            problems.push("`store.postgres.statement_timeout_ms` must be at least 1 (a statement that hangs would hold a login forever)".into());
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
        if h.max_connections_per_source == 0 {
            problems.push("`http.max_connections_per_source` must be at least 1".into());
        }
        if h.tls_cert_file.is_some() != h.tls_key_file.is_some() {
            problems.push("`http.tls_cert_file` and `http.tls_key_file` go together".into());
        }
    }
}
