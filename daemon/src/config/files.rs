//! The checks that read or look at the files the values name, after [`Config::check`]: the
//! RADIUS shared secrets (kept, then checked by the client rules), the key, certificate and
//! API key files, the mail password file and template, PostgreSQL's password and CA files.

use zeroize::Zeroizing;

use super::{Config, StoreEngine};
use crate::radius::{check_clients, ClientFinding, RadiusClient};

impl Config {
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
        self.read_postgres_files(problems);
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

impl Config {
    /// With `store.engine = "postgres"`: reads the password file and looks at the CA file,
    /// then keeps the store's settings.
    fn read_postgres_files(&mut self, problems: &mut Vec<String>) {
        let Some(pg) = self
            .store
            .postgres
            .as_ref()
            .filter(|_| self.store.engine == StoreEngine::Postgres)
        else {
            return;
        };
        let password = match &pg.password_file {
            None => None,
            Some(p) => match read_first_line(p) {
                Ok(pw) => Some(pw),
                Err(e) => {
                    problems.push(format!(
                        "`store.postgres.password_file` {}: {e}",
                        p.display()
                    ));
                    None
                }
            },
        };
        if let Some(ca) = &pg.ca_file {
            if let Err(e) = std::fs::File::open(ca) {
                problems.push(format!("`store.postgres.ca_file` {}: {e}", ca.display()));
            }
        }
        self.postgres = Some(otpd_store_postgres::Settings {
            url: pg.url.clone(),
            password,
            sslmode: pg.sslmode_in_force(),
            ca_file: pg.ca_file.clone(),
            pool_size: pg.pool_size,
            statement_timeout: std::time::Duration::from_millis(pg.statement_timeout_ms),
        });
    }
}

/// The first line of a private file (mode 600), not empty.
fn read_first_line(p: &std::path::Path) -> Result<Zeroizing<String>, String> {
    otpd_core::seal::check_private(p)?;
    let text = Zeroizing::new(std::fs::read_to_string(p).map_err(|e| format!("cannot read: {e}"))?);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err("the first line is empty".into());
    }
    Ok(Zeroizing::new(line.to_string()))
}
