//! Where a composed message goes: an SMTP relay (lettre, rustls for STARTTLS; the public
//! roots, or only `mail.ca_file`'s CA) or a folder holding one `.eml` file per message.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailSection, MailTransport};

/// How long one SMTP conversation may take before it counts as a failed attempt.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

impl Transport {
    pub fn from_config(m: &MailSection) -> anyhow::Result<Transport> {
        match m.transport {
            MailTransport::File => {
                create_private_dir(&m.dir)
                    .with_context(|| format!("mail.dir {}", m.dir.display()))?;
                Ok(Transport::File(m.dir.clone()))
            }
            MailTransport::Smtp => {
                let builder = if m.starttls {
                    let b = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&m.smtp_host)
                        .with_context(|| format!("mail.smtp_host {:?}", m.smtp_host))?;
                    match &m.ca_file {
                        None => b,
                        Some(ca) => {
                            let params = TlsParameters::builder(m.smtp_host.clone())
                                .certificate_store(CertificateStore::None)
                                .add_root_certificate(relay_ca(ca).map_err(anyhow::Error::msg)?)
                                .build_rustls()
                                .with_context(|| format!("mail.ca_file {}", ca.display()))?;
                            b.tls(Tls::Required(params))
                        }
                    }
                } else {
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&m.smtp_host)
                };
                let mut builder = builder.port(m.smtp_port).timeout(Some(SMTP_TIMEOUT));
                if let (Some(user), Some(file)) = (&m.username, &m.password_file) {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(file)
                            .with_context(|| format!("mail.password_file {}", file.display()))?,
                    );
                    let password = text.lines().next().unwrap_or("").to_string();
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Ok(Transport::Smtp(builder.build()))
            }
        }
    }

    /// Where messages go, for the start-up line.
    pub fn describe(&self, m: &MailSection) -> String {
        match self {
            Transport::Smtp(_) => format!(
                "smtp {}:{}{}",
                m.smtp_host,
                m.smtp_port,
                if m.starttls { " (STARTTLS)" } else { "" }
            ),
            Transport::File(dir) => format!("file {}", dir.display()),
        }
    }

    /// Delivers `msg`; Ok only once the relay accepted it (or the file is complete).
    /// `name` makes the file name unique per outbox entry.
    pub async fn send(&self, msg: &Message, name: &str) -> Result<(), String> {
        match self {
            Transport::Smtp(t) => t.send(msg.clone()).await.map(|_| ()).map_err(|e| {
                let kind = if e.is_permanent() {
                    "refused"
                } else if e.is_transient() {
                    "deferred"
                } else {
                    "failed"
                };
                format!("relay {kind}: {e}")
            }),
            Transport::File(dir) => write_eml(dir, name, &msg.formatted())
                .await
                .map_err(|e| format!("cannot write to {}: {e}", dir.display())),
        }
    }
}

/// `mail.ca_file`: the PEM certificates the relay's chain must lead to.
pub fn relay_ca(path: &std::path::Path) -> Result<Certificate, String> {
    let bad = |e: &dyn std::fmt::Display| format!("`mail.ca_file` {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad(&"no PEM certificate in it"));
    }
    Certificate::from_pem(&pem).map_err(|e| bad(&e))
}

/// The folder holds setup links: only otpd's user may read it.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

/// Writes under a temporary name and renames, so a reader never sees half a message.
async fn write_eml(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}.eml"));
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .await?;
    f.write_all(bytes).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, &path).await
}
