//! A user as stored, and the view of it every interface shows.

use serde::{Deserialize, Serialize};

use crate::lifecycle::{Token, TokenPolicy};
use crate::lockout::LockState;
use crate::{rfc3339, OpError, UnixTime};

pub use otpd_proto::UserView;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub login_id: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub email: Option<String>,
    pub created_at: UnixTime,
    pub token: Token,
    #[serde(default)]
    pub lock: LockState,
    /// Failures of customer renewal over HTTP, counted apart from logins.
    #[serde(default)]
    pub renew_lock: LockState,
    /// Sign-out count of the customer's OTP menu: a session cookie names the generation it
    /// was made in, so one sign-out ends that user's sessions on every node.
    #[serde(default)]
    pub session_generation: u64,
}

impl UserRecord {
    pub fn view(&self, now: UnixTime, policy: &TokenPolicy) -> UserView {
        let renewal_from = match &self.token {
            Token::Active { expires_at, .. } => Some(rfc3339(policy.renewal_opens(*expires_at))),
            _ => None,
        };
        UserView {
            login_id: self.login_id.clone(),
            state: self.token.state(now),
            locked: self.lock.is_locked(now),
            failures: self.lock.failures,
            renewal_locked: self.renew_lock.is_locked(now),
            renewal_failures: self.renew_lock.failures,
            email: self.email.clone(),
            expires_at: self.token.expires_at().map(rfc3339),
            renewal_available: self.token.renewal_available(now, policy),
            renewal_available_from: renewal_from,
            created_at: rfc3339(self.created_at),
        }
    }
}

/// Login IDs are what gateways send as User-Name: printable, short, no spaces.
pub fn check_login_id(id: &str) -> Result<(), OpError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OpError::BadLoginId)
    }
}

/// A plausible mobile e-mail address: one '@', something either side, no spaces or
/// header-breaking characters.
pub fn check_email(addr: &str) -> Result<(), OpError> {
    let bad = || OpError::BadInput(format!("{addr:?} is not an e-mail address"));
    let (local, domain) = addr.split_once('@').ok_or_else(bad)?;
    let clean = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"<>()[],;:\\\"@".contains(&b))
    };
    if addr.len() <= 254 && clean(local) && clean(domain) && domain.contains('.') {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_ids() {
        for ok in ["alice", "a.b-c_d@bank", "0012345678"] {
            assert!(check_login_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "x\n", "ユーザー", &"a".repeat(65)] {
            assert_eq!(check_login_id(bad), Err(OpError::BadLoginId), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert!(check_email("taro@docomo.ne.jp").is_ok());
        for bad in [
            "taro",
            "taro@",
            "@x.jp",
            "a b@x.jp",
            "a@x",
            "a@x.jp\r\nBcc: e@v.il",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
