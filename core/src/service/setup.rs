//! 初期設定 (setup) through the e-mailed link: the check of a link before anything is
//! typed, and the setup itself, which hands out the secret once.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::lifecycle::Token;
use crate::password;
use crate::{rfc3339, OpError, Service, UnixTime};

use super::link_hash;

/// What the customer receives at setup, once: the secret and everything a token app needs
/// to add it (the `otpauth://` URI and its parts), with the token's expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupDone {
    pub otpauth_uri: String,
    pub secret: String,
    pub period: u64,
    pub digits: usize,
    pub algorithm: String,
    pub issuer: String,
    pub account: String,
    pub expires_at: String,
    /// When the token app should start offering 有効期限更新 (`renewal_window_days` before).
    pub renewal_available_from: String,
}

impl Service {
    /// 初期設定 through the e-mailed link: hands out the secret exactly once.
    pub fn setup(
        &self,
        code: &str,
        service_id: &str,
        user_id: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<SetupDone, OpError> {
        let hash = link_hash(code);
        let login_id = self.store.link_owner(&hash)?.ok_or(OpError::UnknownLink)?;
        let service_ok: bool = service_id
            .as_bytes()
            .ct_eq(self.service_id.as_bytes())
            .into();
        let user_ok: bool = user_id.as_bytes().ct_eq(login_id.as_bytes()).into();
        let max = self.token.setup_max_attempts;
        let result = self.update(&login_id, |u| {
            let Token::Issued {
                activation_hash,
                link,
                ..
            } = &mut u.token
            else {
                return Err(OpError::LinkGone);
            };
            link_usable(link, &hash, now, max)?;
            let pw_ok = password::verify(activation_hash, activation_password);
            if !(service_ok && user_ok && pw_ok) {
                link.attempts += 1;
                return Err(if link.attempts >= max {
                    OpError::LinkExhausted
                } else {
                    OpError::SetupRefused
                });
            }
            u.token = u.token.setup(now, &self.token)?;
            Ok(u.token.clone())
        });
        let token = match result {
            Err(OpError::UnknownUser(_)) => return Err(OpError::UnknownLink),
            other => other?,
        };
        let secret = token.secret().ok_or(OpError::LinkGone)?;
        let secret = self
            .sealer
            .open(&login_id, secret)
            .map_err(|e| OpError::Store(e.to_string()))?;
        let b32 = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &secret);
        let expires = token.expires_at().unwrap_or(now);
        Ok(SetupDone {
            otpauth_uri: self.otp.otpauth_uri(&secret, &self.service_id, &login_id),
            secret: b32,
            period: self.otp.period,
            digits: self.otp.digits,
            algorithm: self.otp.algorithm.name().into(),
            issuer: self.service_id.clone(),
            account: login_id,
            expires_at: rfc3339(expires),
            renewal_available_from: rfc3339(self.token.renewal_opens(expires)),
        })
    }

    /// Whose setup link `code` is, if it is one (for the audit line of a setup attempt).
    pub fn link_owner(&self, code: &str) -> Option<String> {
        self.store.link_owner(&link_hash(code)).ok().flatten()
    }

    /// Whether a setup link can still be used, without counting an attempt: lets the setup
    /// page say "expired" before the customer types anything.
    pub fn check_link(&self, code: &str, now: UnixTime) -> Result<(), OpError> {
        let hash = link_hash(code);
        let login_id = self.store.link_owner(&hash)?.ok_or(OpError::UnknownLink)?;
        let user = self
            .store
            .get_user(&login_id)?
            .ok_or(OpError::UnknownLink)?
            .value;
        match &user.token {
            Token::Issued { link, .. } => {
                link_usable(link, &hash, now, self.token.setup_max_attempts)
            }
            _ => Err(OpError::LinkGone),
        }
    }
}

/// The one rule for a link that is still usable: the current one, not expired, attempts left.
fn link_usable(
    link: &crate::lifecycle::Link,
    hash: &str,
    now: UnixTime,
    max: u32,
) -> Result<(), OpError> {
    if link.hash != hash || now >= link.expires_at {
        return Err(OpError::LinkGone);
    }
    if link.attempts >= max {
        return Err(OpError::LinkExhausted);
    }
    Ok(())
}
