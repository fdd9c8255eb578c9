//! 有効期限更新 (renewal): by an administrator within the window, or by the customer with
//! an OTP on a lock of its own.

use subtle::ConstantTimeEq;

use crate::user::UserView;
use crate::{OpError, Service, UnixTime};

impl Service {
    /// 有効期限更新 by an administrator: the window rules, no OTP.
    pub fn renew_by_admin(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            u.token = u.token.renew(now, &self.token)?;
            Ok(self.view(u, now))
        })
    }

    /// 有効期限更新 by the customer: service ID + user ID + a valid unused OTP. The OTP is
    /// spent only when the renewal happens.
    pub fn renew_with_otp(
        &self,
        service_id: &str,
        login_id: &str,
        otp: &str,
        now: UnixTime,
    ) -> Result<UserView, OpError> {
        let service_ok: bool = service_id
            .as_bytes()
            .ct_eq(self.service_id.as_bytes())
            .into();
        if !service_ok {
            return Err(OpError::SetupRefused);
        }
        // The renewal page is on the internet and needs only the user ID: its failures
        // count on the login's own lock, so it adds no guesses to the login's budget. The
        // OTP is proven before the window is checked, so the expiry date is told only to
        // the token's holder; a proven code is spent even when the window is not open yet,
        // so no code is ever answered twice.
        let mut early = None;
        let result = self.update(login_id, |u| {
            early = None;
            let step = self.prove_otp(u, otp, now)?;
            if let Err(e) = u.token.renewal_check(now, &self.token) {
                u.token = u.token.spend_step(step);
                early = Some(e);
                return Ok(self.view(u, now));
            }
            u.token = u.token.spend_step(step).renew(now, &self.token)?;
            Ok(self.view(u, now))
        });
        let result = match (result, early) {
            (Ok(_), Some(e)) => Err(e),
            (r, _) => r,
        };
        // Until a valid, unused OTP is proven, every refusal reads the same: an unknown user
        // ID, a user without a token, a locked renewal, a wrong or spent code. Otherwise the
        // page would tell anyone which user IDs exist and which have a token.
        match result {
            Err(
                OpError::UnknownUser(_)
                | OpError::WrongState { .. }
                | OpError::Locked
                | OpError::OtpReplayed,
            ) => Err(OpError::BadOtp),
            other => other,
        }
    }
}
