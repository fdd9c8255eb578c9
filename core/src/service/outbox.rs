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
}

/// An outbox entry: its id, and the job or why it cannot be opened.
pub type PendingMail = (u64, Result<MailJob, String>);

const OUTBOX_AAD: &str = "outbox";

impl Service {
    pub(super) fn queue_mail(&self, job: &MailJob) -> Result<u64, OpError> {
        Ok(self.store.outbox_push(&self.seal_mail(job)?)?)
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
            .and_then(|s| self.sealer.open(OUTBOX_AAD, &s).map_err(|e| e.to_string()))
            .and_then(|p| serde_json::from_slice::<MailJob>(&p).map_err(|e| e.to_string()))
    }

    pub fn mail_sent(&self, id: u64) -> Result<(), OpError> {
        Ok(self.store.outbox_remove(id)?)
    }

    pub fn mail_retry_later(&self, id: u64, job: &MailJob) -> Result<(), OpError> {
        Ok(self.store.outbox_replace(id, &self.seal_mail(job)?)?)
    }
}
