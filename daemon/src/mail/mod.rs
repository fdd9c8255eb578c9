//! The mail sender: delivers the issuance e-mails queued in the store's outbox. A message
//! leaves the outbox only after the relay accepted it; a failed attempt is retried with
//! exponential backoff, and the outbox survives restarts. The link code inside a message
//! is a secret: no log line carries it.

mod template;
mod transport;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::Body;
use lettre::message::Mailbox;
use lettre::Message;
use otpd_core::service::MailJob;
use otpd_core::UnixTime;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::ops::Ops;
pub use template::{jst_date, jst_datetime, jst_datetime_en, parse_rfc3339, Fields, Template};
pub use transport::{relay_ca, Transport};

/// First retry after this many seconds, doubling per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: i64 = 10;
pub const BACKOFF_MAX: i64 = 600;

/// Seconds to wait after the `attempts`-th failed attempt.
pub fn backoff(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    (BACKOFF_FIRST << doublings).min(BACKOFF_MAX)
}

/// How long a node holds the messages it takes from the outbox: another node sharing the
/// store is handed them only once this has passed since the holder last took them. Longer
/// than a relay's timeout, so a slow delivery is not sent twice. Delivery is at least once:
/// a node that dies after the relay accepted a message but before removing it leaves it
/// to be sent again, by another node after the lease or by itself on restart.
pub const LEASE_SECONDS: u64 = 300;

/// How often an idle mailer looks at the outbox anyway: messages another node queued, or
/// left behind when it died, are found within this (an issuance on this node wakes it at once).
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// How long the mailer sleeps at `now` when the next retry is due at `next` (at least a
/// second, at most [`IDLE_LOOK`]).
fn until_next(next: Option<UnixTime>, now: UnixTime) -> Duration {
    match next {
        Some(at) => Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1)).min(IDLE_LOOK),
        None => IDLE_LOOK,
    }
}

/// This process's name as an outbox lease holder: host and process id.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "otpd" } else { host };
    format!("{host}:{}", std::process::id())
}

/// The outbox's sender: owns the transport, the template and the sender's address; its
/// wall time is the [`Ops`] clock's.
pub struct Mailer {
    transport: Transport,
    template: Template,
    from: Mailbox,
    public_url: String,
    service_id: String,
    describe: String,
    /// The lease holder's name ([`node_name`]).
    node: String,
}

impl Mailer {
    pub fn new(config: &Config) -> anyhow::Result<Mailer> {
        let m = &config.mail;
        let from: Mailbox = m
            .from
            .parse()
            .with_context(|| format!("mail.from {:?} is not a mailbox", m.from))?;
        let template = match &m.template {
            Some(p) => Template::load(p).map_err(anyhow::Error::msg)?,
            None => Template::builtin(),
        };
        let transport = Transport::from_config(m)?;
        let describe = transport.describe(m);
        Ok(Mailer {
            transport,
            template,
            from,
            public_url: config.http.public_url.trim_end_matches('/').to_string(),
            service_id: config.core.service_id.clone(),
            describe,
            node: node_name(),
        })
    }

    /// Holds outbox leases as `node` instead of this process's name (tests of two nodes in
    /// one process).
    pub fn with_node(mut self, node: &str) -> Mailer {
        self.node = node.to_string();
        self
    }

    /// The e-mail for one job: to the mobile address, with the setup link.
    pub fn compose(&self, job: &MailJob) -> Result<Message, String> {
        let to: Mailbox = job
            .to
            .parse()
            .map_err(|e| format!("recipient is not a mailbox: {e}"))?;
        let (subject, body) = match &job.notice {
            Some(n) => template::notice_text(n, &self.service_id, &job.login_id),
            None => {
                let link = Zeroizing::new(format!("{}/enroll/{}", self.public_url, job.code));
                let app_link =
                    Zeroizing::new(format!("{}/app/#/setup/{}", self.public_url, job.code));
                self.template.render(&Fields {
                    link: &link,
                    app_link: &app_link,
                    service_id: &self.service_id,
                    login_id: &job.login_id,
                    link_expires_at: job.link_expires_at,
                })
            }
        };
        let body = Zeroizing::new(body);
        // Quoted-printable keeps the link readable in the raw message (a .eml of the file
        // transport, a relay's queue), which base64 would hide.
        let body =
            Body::new_with_encoding(body.to_string(), ContentTransferEncoding::QuotedPrintable)
                .map_err(|_| "the mail text cannot be encoded".to_string())?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .singlepart(
                lettre::message::SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(body),
            )
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// Sends what is due at start and whenever woken (an issuance, or the next retry's
    /// time), until `shutdown` resolves.
    pub async fn run(self, ops: Arc<Ops>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        ops.log
            .info(&format!("mail: sending through {}", self.describe));
        let mut unreadable = HashSet::new();
        // After a restart everything queued is tried at once: the relay may be back.
        let mut ignore_schedule = true;
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => return,
                next = self.pass(&ops, ignore_schedule, &mut unreadable) => next,
            };
            ignore_schedule = false;
            let wait = until_next(next, ops.clock().now());
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ops.mail_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One walk through the outbox. Returns when the next retry is due, if any.
    async fn pass(
        &self,
        ops: &Ops,
        ignore_schedule: bool,
        unreadable: &mut HashSet<u64>,
    ) -> Option<UnixTime> {
        let node = self.node.clone();
        let leased = ops
            .run(move |svc, now| svc.lease_mail(&node, now, LEASE_SECONDS))
            .await;
        let pending = match leased.and_then(|r| r) {
            Ok(p) => p,
            Err(e) => {
                ops.log.error(&format!(
                    "mail: cannot read the outbox: {e}; trying again soon"
                ));
                return Some(ops.clock().now() + BACKOFF_FIRST);
            }
        };
        let mut next: Option<UnixTime> = None;
        for (id, job) in pending {
            let mut job = match job {
                Ok(j) => j,
                Err(e) => {
                    if unreadable.insert(id) {
                        ops.log.error(&format!(
                            "mail: outbox entry {id} cannot be opened ({e}); it stays queued"
                        ));
                    }
                    continue;
                }
            };
            let now = ops.clock().now();
            let user = job.login_id.clone();
            if job.link_expires_at <= now {
                ops.log.warn(&format!(
                    "mail: dropping outbox entry {id} for user {user}: its setup link expired before it could be delivered"
                ));
                self.forget(ops, id).await;
                continue;
            }
            if !ignore_schedule && job.next_try_at > now {
                next = Some(next.map_or(job.next_try_at, |n| n.min(job.next_try_at)));
                continue;
            }
            let attempt = job.attempts + 1;
            let sent = match self.compose(&job) {
                Ok(msg) => self.transport.send(&msg, &format!("{now}-{id}")).await,
                Err(e) => {
                    ops.log.error(&format!(
                        "mail: outbox entry {id} for user {user} cannot be composed ({e}); dropped"
                    ));
                    self.forget(ops, id).await;
                    continue;
                }
            };
            match sent {
                Ok(()) => {
                    // Removed only now: a crash before this line means a second copy, never none.
                    self.forget(ops, id).await;
                    ops.log.audit(&[
                        ("mail", "sent"),
                        ("user", &user),
                        ("to", &job.to),
                        ("attempt", &attempt.to_string()),
                    ]);
                }
                Err(e) => {
                    job.attempts = attempt;
                    job.next_try_at = ops.clock().now() + backoff(attempt);
                    let retry_at = job.next_try_at;
                    let saved = ops
                        .run(move |svc, _| svc.mail_retry_later(id, &job))
                        .await
                        .and_then(|r| r);
                    let saved = match saved {
                        Ok(()) => ops.durable().await,
                        Err(e) => Err(e),
                    };
                    if let Err(se) = saved {
                        ops.log.error(&format!(
                            "mail: cannot record the failed attempt of outbox entry {id}: {se}"
                        ));
                    }
                    ops.log.warn(&format!(
                        "mail: delivery to user {user} failed (attempt {attempt}): {e}; next try in {} s",
                        backoff(attempt)
                    ));
                    next = Some(next.map_or(retry_at, |n| n.min(retry_at)));
                }
            }
        }
        next
    }

    async fn forget(&self, ops: &Ops, id: u64) {
        let r = ops
            .run(move |svc, _| svc.mail_sent(id))
            .await
            .and_then(|r| r);
        let r = match r {
            Ok(()) => ops.durable().await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            ops.log.error(&format!(
                "mail: cannot remove outbox entry {id}: {e}; it may be sent twice"
            ));
        }
    }
}

#[cfg(test)]
mod tests;
