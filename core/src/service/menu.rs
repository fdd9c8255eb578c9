//! The rules of the customer's OTP menu (ワンタイムパスワード申請) on top of the bank's own
//! operations: what a session may do depends on whether its sign-in proved an OTP. The
//! password alone (a token not yet in use) may start an issuance to the address the bank
//! registered, but may not replace or cancel a pending setup within the operator's
//! cool-down, and never act on a token in use.

use crate::customer::Session;
use crate::lifecycle::Token;
use crate::user::UserView;
use crate::{OpError, Service, UnixTime};

use super::issue::same_address;
use super::outbox::mask_email;

/// Who the notices name for the menu's changes.
pub const BY_MENU: &str = "otp-menu";

impl Service {
    /// トークン発行 from the menu (BOT001/BOT002): to the registered address, or to the one
    /// typed when the bank registered none. Every other session of the user ends; this one
    /// goes on as the session returned.
    pub fn menu_issue(
        &self,
        s: &Session,
        email: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<(UserView, Session), OpError> {
        let u = self.get(&s.login_id)?;
        if let Some(registered) = u.email.as_deref() {
            if !same_address(registered, email) {
                return Err(OpError::EmailChangeRefused {
                    registered: mask_email(registered),
                });
            }
        }
        self.menu_may_touch(s, &u.token, now)?;
        let (v, _, epoch) =
            self.issue_epoch(&s.login_id, email, activation_password, BY_MENU, now)?;
        Ok((v, going_on(s, epoch)))
    }

    /// 利用解除 from the menu; as [`Service::menu_issue`], this session goes on.
    pub fn menu_cancel(&self, s: &Session, now: UnixTime) -> Result<(UserView, Session), OpError> {
        let u = self.get(&s.login_id)?;
        self.menu_may_touch(s, &u.token, now)?;
        let (v, epoch) = self.cancel_epoch(&s.login_id, BY_MENU, now)?;
        Ok((v, going_on(s, epoch)))
    }

    /// Whether session `s` may replace or remove `token` now. The cancellation or issuance
    /// itself checks the state again in its write, so a token that changed meanwhile is
    /// caught there (its own state rules) or by the next request's session check (every
    /// change of the token ends the sessions).
    fn menu_may_touch(&self, s: &Session, token: &Token, now: UnixTime) -> Result<(), OpError> {
        if s.otp {
            return Ok(());
        }
        let since = match token {
            Token::Unregistered => return Ok(()),
            Token::Active { .. } => return Err(OpError::OtpSessionRequired),
            Token::Issued { issued_at, .. } => *issued_at,
            Token::Provisioned { provisioned_at, .. } => *provisioned_at,
        };
        let until = self.token.pending_safe_until(since);
        if now < until {
            return Err(OpError::PendingSetupProtected { until });
        }
        Ok(())
    }

    /// The user as the menu shows it to session `s`, and whether issuance and cancellation
    /// are open to that session now.
    pub fn menu_view(&self, s: &Session, now: UnixTime) -> Result<(UserView, bool), OpError> {
        let u = self.get(&s.login_id)?;
        let open = self.menu_may_touch(s, &u.token, now).is_ok();
        Ok((self.view(&u, now), open))
    }
}

/// Session `s` in the epoch its own step set.
fn going_on(s: &Session, epoch: u64) -> Session {
    Session {
        generation: epoch,
        ..s.clone()
    }
}
