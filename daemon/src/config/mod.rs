//! otpd's configuration file, the TOML of SPEC.md. Every key has a default except
//! `service_id`; unknown keys are errors; relative paths are relative to the file's own
//! folder. The core's part (`service_id`, `data_dir`, `key_file`, `[otp]`, `[password]`,
//! `[token]`) is [`otpd_core::config::Config`]; the sockets, mail, log and store sections
//! are the daemon's and live here.
//!
//! Reading a file happens in three steps: the TOML is parsed once, the values are checked
//! without touching the disk ([`Config::check`], `check.rs`), then the files the values
//! name are read or looked at ([`Config::read_files`], `files.rs`). The sections are in
//! `sections.rs`. [`Config::load`] reports every problem it finds, not just the first.

mod check;
mod files;
mod sections;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use otpd_core::config::{from_toml, resolve, OtpSection, PasswordSection, TokenSection};
use serde::Deserialize;

use crate::radius::RadiusClient;

pub use sections::{
    parse_network, AdminSection, ApiKeySection, HttpSection, LogSection, MailSection,
    MailTransport, MetricsSection, PostgresSection, RadiusClientSection, RadiusSection,
    RadiusTlsClientSection, RadiusTlsSection, StoreEngine, StoreSection,
};

/// The whole checked configuration: the core's part, and each section the daemon's
/// sockets, mailer and logger read; `Service::new(&config.core, …)` takes the core's part.
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
    /// `[store]`: the engine, and PostgreSQL's settings as written.
    pub store: StoreSection,
    /// With `store.engine = "postgres"`: the settings with the password file read (by
    /// [`Config::read_files`]).
    pub postgres: Option<otpd_store_postgres::Settings>,
    /// `[[radius.clients]]` with their shared secrets read (by [`Config::read_files`]).
    pub radius_clients: Vec<RadiusClient>,
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
    store: StoreSection,
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
            store: StoreSection::default(),
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
            store: self.store,
            postgres: None,
            radius_clients: Vec::new(),
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
}

impl File {
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| resolve(base, p);
        fix(&mut self.data_dir);
        fix(&mut self.key_file);
        fix(&mut self.admin.socket);
        fix(&mut self.mail.dir);
        fix(&mut self.log.syslog_socket);
        if let Some(pg) = &mut self.store.postgres {
            for p in [&mut pg.password_file, &mut pg.ca_file]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        if let Some(t) = &mut self.radius.tls {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
            fix(&mut t.client_ca_file);
        }
        for p in [
            &mut self.mail.template,
            &mut self.mail.password_file,
            &mut self.mail.ca_file,
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
