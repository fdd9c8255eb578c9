//! The outbox of issuance mail: jobs sealed at rest (they carry the link code), opened for
//! the mailer, removed once sent or rescheduled after a failure.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::Sealed;
use crate::{OpError, Service, UnixTime};

/// An issuance e-mail waiting in the outbox: the address, the link code and the mailer's
/// retry state. Sealed at rest: it carries the link code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    pub to: String,
    pub login_id: String,
    pub code: String,
    pub link_expires_at: UnixTime,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_try_at: UnixTime,
    /// When the issuance queued it (0 in messages queued by older versions).
    #[serde(default)]
    pub queued_at: UnixTime,
    /// Set for a notice to a registered address instead of a setup mail (`code` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
}

/// What a notice mail tells the registered address: a change it did not necessarily ask
/// for, so that a customer whose password alone was used learns of it. It never carries a
/// link code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A token was issued again: the earlier setup link or set-up phone no longer works.
    Reissued { by: String },
    /// The setup link now goes to another address (shown masked).
    AddressChanged { to: String, by: String },
    /// The token was cancelled (利用解除).
    Cancelled { by: String },
}

impl Notice {
    /// Who asked: `otp-menu` (the customer's menu) or `bank` (an administrator).
    pub fn by(&self) -> &str {
        match self {
            Notice::Reissued { by }
            | Notice::AddressChanged { by, .. }
            | Notice::Cancelled { by } => by,
        }
    }
}

/// An address as a notice shows it: the first character of the local part and the domain
/// (`t***@docomo.ne.jp`).
pub fn mask_email(addr: &str) -> String {
    match addr.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// An outbox entry: its id, and the job or why it cannot be opened.
pub type PendingMail = (u64, Result<MailJob, String>);

/// The outbox's purpose in the AAD: the NUL keeps it apart from every login ID (which
/// cannot hold one), whose secrets are sealed under the same prefix.
const OUTBOX_AAD: &str = "\u{0}outbox";
/// What versions before it sealed the outbox under: the same AAD as a user named `outbox`.
/// Still opened, so mail queued before an upgrade goes out; every rewrite (a retry, a
/// lease) seals it under [`OUTBOX_AAD`].
const LEGACY_OUTBOX_AAD: &str = "outbox";

impl Service {
    pub(super) fn queue_mail(&self, job: &MailJob) -> Result<u64, OpError> {
        Ok(self.store.outbox_push(&self.seal_mail(job)?)?)
    }

    /// Queues a notice to `to` about `login_id`'s token.
    pub(super) fn queue_notice(
        &self,
        to: &str,
        login_id: &str,
        notice: Notice,
        now: UnixTime,
    ) -> Result<u64, OpError> {
        self.queue_mail(&MailJob {
            to: to.into(),
            login_id: login_id.into(),
            code: String::new(),
            // The mailer drops a message whose link expired: a notice is worth sending for
            // as long as a link would be.
            link_expires_at: now + i64::from(self.token.link_valid_hours) * 3600,
            attempts: 0,
            next_try_at: now,
            queued_at: now,
            notice: Some(notice),
        })
    }

    fn seal_mail(&self, job: &MailJob) -> Result<Vec<u8>, OpError> {
        let plain =
            Zeroizing::new(serde_json::to_vec(job).map_err(|e| OpError::Store(e.to_string()))?);
        serde_json::to_vec(&self.sealer.seal(OUTBOX_AAD, &plain))
            .map_err(|e| OpError::Store(e.to_string()))
    }

    /// Messages in the outbox, and the age in seconds of the oldest (0 when empty).
    pub fn outbox_summary(&self, now: UnixTime) -> Result<(usize, i64), OpError> {
        let mail = self.pending_mail()?;
        let oldest = mail
            .iter()
            .filter_map(|(_, job)| job.as_ref().ok())
            .map(|j| j.queued_at)
            .filter(|t| *t > 0)
            .min()
            .map_or(0, |t| (now - t).max(0));
        Ok((mail.len(), oldest))
    }

    /// The outbox, opened: (id, job). Entries that cannot be opened are reported as errors.
    pub fn pending_mail(&self) -> Result<Vec<PendingMail>, OpError> {
        Ok(self
            .store
            .outbox()?
            .into_iter()
            .map(|(id, raw)| (id, self.open_mail(&raw)))
            .collect())
    }

    /// The outbox entries no other node is sending, opened, and leased to `node` for
    /// `lease_seconds` (see [`crate::store::Store::outbox_lease`]): with several nodes on
    /// one store, each message is sent by one of them.
    pub fn lease_mail(
        &self,
        node: &str,
        now: UnixTime,
        lease_seconds: u64,
    ) -> Result<Vec<PendingMail>, OpError> {
        const BATCH: usize = 256;
        Ok(self
            .store
            .outbox_lease(node, now, lease_seconds, BATCH)?
            .into_iter()
            .map(|(id, raw)| (id, self.open_mail(&raw)))
            .collect())
    }

    fn open_mail(&self, raw: &[u8]) -> Result<MailJob, String> {
        serde_json::from_slice::<Sealed>(raw)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                self.sealer
                    .open(OUTBOX_AAD, &s)
                    .or_else(|_| self.sealer.open(LEGACY_OUTBOX_AAD, &s))
                    .map_err(|e| e.to_string())
            })
            .and_then(|p| serde_json::from_slice::<MailJob>(&p).map_err(|e| e.to_string()))
    }

    pub fn mail_sent(&self, id: u64) -> Result<(), OpError> {
        Ok(self.store.outbox_remove(id)?)
    }

    pub fn mail_retry_later(&self, id: u64, job: &MailJob) -> Result<(), OpError> {
        Ok(self.store.outbox_replace(id, &self.seal_mail(job)?)?)
    }
}
