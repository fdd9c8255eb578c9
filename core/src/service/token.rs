//! The OTP check against a user's token (with its failure count), and the token's steps
//! that need no link: 利用開始 (activate), 利用解除 (cancel), and unlocking.

use crate::lifecycle::Token;
use crate::lockout::LockState;
use crate::otp::OtpRefusal;
use crate::user::{UserRecord, UserView};
use crate::{OpError, Service, UnixTime};

impl Service {
    /// Checks `otp` for the user's token and records its step. Failures are counted.
    pub(super) fn prove_otp(
        &self,
        u: &mut UserRecord,
        otp: &str,
        now: UnixTime,
    ) -> Result<u64, OpError> {
        let mut lock = std::mem::take(&mut u.lock);
        let r = self.check_otp(u, &mut lock, otp, now);
        if r.is_err() && lock.is_locked(now) {
            // Locked now: the menu's sessions end with it.
            u.session_generation = crate::customer::new_epoch(u.session_generation);
        }
        u.lock = lock;
        r
    }

    /// Checks `otp` against the user's token, counting the outcome on `lock`.
    pub(super) fn check_otp(
        &self,
        u: &UserRecord,
        lock: &mut LockState,
        otp: &str,
        now: UnixTime,
    ) -> Result<u64, OpError> {
        if lock.is_locked(now) {
            return Err(OpError::Locked);
        }
        let sealed = u.token.secret().ok_or(OpError::WrongState {
            state: u.token.state(now).name(),
            hint: "there is no token to check the one-time password against",
        })?;
        let secret = self
            .sealer
            .open(&u.login_id, sealed)
            .map_err(|e| OpError::Store(e.to_string()))?;
        match self.otp.verify(&secret, otp, now, u.token.last_step()) {
            Ok(step) => {
                lock.record_success();
                Ok(step)
            }
            Err(refusal) => {
                lock.record_failure(now, &self.lock);
                Err(match refusal {
                    OtpRefusal::Invalid => OpError::BadOtp,
                    OtpRefusal::Replayed => OpError::OtpReplayed,
                })
            }
        }
    }

    /// 利用開始: a valid, unused OTP moves a provisioned token to active.
    pub fn activate(&self, login_id: &str, otp: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            if !matches!(u.token, Token::Provisioned { .. }) {
                // Refuse before looking at the OTP, so the state error is the one shown.
                u.token.activate(0, now)?;
            }
            let step = self.prove_otp(u, otp, now)?;
            u.token = u.token.activate(step, now)?;
            Ok(self.view(u, now))
        })
    }

    /// 利用解除 by the bank: see [`Service::cancel_epoch`].
    pub fn cancel(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.cancel_epoch(login_id, super::issue::BY_BANK, now)
            .map(|(v, _)| v)
    }

    /// 利用解除; the registered address gets a notice naming `by`, and the menu's
    /// sessions end. Returns the user and the session epoch it set.
    pub(super) fn cancel_epoch(
        &self,
        login_id: &str,
        by: &str,
        now: UnixTime,
    ) -> Result<(UserView, u64), OpError> {
        let mut old_link = None;
        let mut notify = None;
        let view = self.update(login_id, |u| {
            old_link = None;
            if let Token::Issued { link, .. } = &u.token {
                old_link = Some(link.hash.clone());
            }
            notify = u.email.clone();
            u.token = u.token.cancel(now)?;
            u.session_generation = crate::customer::new_epoch(u.session_generation);
            Ok((self.view(u, now), u.session_generation))
        })?;
        if let Some(h) = old_link {
            self.store.set_link_owner(&h, None)?;
        }
        if let Some(to) = notify {
            let notice = super::outbox::Notice::Cancelled { by: by.into() };
            self.queue_notice(&to, login_id, notice, now)?;
        }
        Ok(view)
    }

    /// Clears the login lock and the renewal lock, with their failure counts.
    pub fn unlock(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            u.lock.unlock();
            u.renew_lock.unlock();
            u.session_generation = crate::customer::new_epoch(u.session_generation);
            Ok(self.view(u, now))
        })
    }
}
