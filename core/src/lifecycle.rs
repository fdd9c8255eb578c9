//! The token lifecycle of the customer guide, and the one table of its transitions:
//! unregistered → issued (トークン発行) → provisioned (初期設定) → active (利用開始);
//! cancel (利用解除) returns to unregistered; `expired` is derived from `expires_at`;
//! renewal (有効期限更新) opens `renewal_window_days` before expiry and never shortens.

use serde::{Deserialize, Serialize};

use crate::seal::Sealed;
use crate::{OpError, UnixTime};

pub const DAY: i64 = 86_400;
/// The customer guide promises at least four years.
pub const MIN_VALIDITY_DAYS: u32 = 1461;

pub use otpd_proto::TokenState;

/// The setup link of an issued token. Only the code's hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub hash: String,
    pub expires_at: UnixTime,
    pub attempts: u32,
}

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Token {
    Unregistered,
    Issued {
        secret: Sealed,
        activation_hash: String,
        link: Link,
        issued_at: UnixTime,
    },
    Provisioned {
        secret: Sealed,
        provisioned_at: UnixTime,
        expires_at: UnixTime,
        last_step: Option<u64>,
    },
    Active {
        secret: Sealed,
        activated_at: UnixTime,
        expires_at: UnixTime,
        last_step: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    pub validity_days: u32,
    pub renewal_window_days: u32,
    pub link_valid_hours: u32,
    pub setup_max_attempts: u32,
    /// See `token.menu_reissue_cooldown_hours`.
    pub menu_reissue_cooldown_hours: u32,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            validity_days: MIN_VALIDITY_DAYS,
            renewal_window_days: 30,
            link_valid_hours: 72,
            setup_max_attempts: 5,
            menu_reissue_cooldown_hours: 72,
        }
    }
}

impl TokenPolicy {
    pub fn validity(&self) -> i64 {
        i64::from(self.validity_days) * DAY
    }

    /// Until when a pending setup begun at `since` is safe from a password-only session.
    pub fn pending_safe_until(&self, since: UnixTime) -> UnixTime {
        since + i64::from(self.menu_reissue_cooldown_hours) * 3600
    }

    /// When renewal opens for a token expiring at `expires_at`.
    pub fn renewal_opens(&self, expires_at: UnixTime) -> UnixTime {
        expires_at - i64::from(self.renewal_window_days) * DAY
    }
}

fn wrong(state: TokenState, hint: &'static str) -> OpError {
    OpError::WrongState {
        state: state.name(),
        hint,
    }
}

impl Token {
    pub fn state(&self, now: UnixTime) -> TokenState {
        match self {
            Token::Unregistered => TokenState::Unregistered,
            Token::Issued { .. } => TokenState::Issued,
            Token::Provisioned { .. } => TokenState::Provisioned,
            Token::Active { expires_at, .. } if now >= *expires_at => TokenState::Expired,
            Token::Active { .. } => TokenState::Active,
        }
    }

    pub fn expires_at(&self) -> Option<UnixTime> {
        match self {
            Token::Provisioned { expires_at, .. } | Token::Active { expires_at, .. } => {
                Some(*expires_at)
            }
            _ => None,
        }
    }

    pub fn secret(&self) -> Option<&Sealed> {
        match self {
            Token::Unregistered => None,
            Token::Issued { secret, .. }
            | Token::Provisioned { secret, .. }
            | Token::Active { secret, .. } => Some(secret),
        }
    }

    pub fn last_step(&self) -> Option<u64> {
        match self {
            Token::Provisioned { last_step, .. } => *last_step,
            Token::Active { last_step, .. } => Some(*last_step),
            _ => None,
        }
    }

    /// トークン発行. Allowed before start of use; a second issuance replaces the first link
    /// and secret (the customer lost the mail). An active token must be cancelled first.
    pub fn issue(
        &self,
        secret: Sealed,
        activation_hash: String,
        link_hash: String,
        now: UnixTime,
        policy: &TokenPolicy,
    ) -> Result<Token, OpError> {
        match self.state(now) {
            TokenState::Active | TokenState::Expired => Err(wrong(
                self.state(now),
                "cancel the token before issuing a new one",
            )),
            _ => Ok(Token::Issued {
                secret,
                activation_hash,
                link: Link {
                    hash: link_hash,
                    expires_at: now + i64::from(policy.link_valid_hours) * 3600,
                    attempts: 0,
                },
                issued_at: now,
            }),
        }
    }

    /// 初期設定: the customer proved the activation password on a live link; the secret is
    /// delivered and the validity period starts.
    pub fn setup(&self, now: UnixTime, policy: &TokenPolicy) -> Result<Token, OpError> {
        match self {
            Token::Issued { secret, .. } => Ok(Token::Provisioned {
                secret: secret.clone(),
                provisioned_at: now,
                expires_at: now + policy.validity(),
                last_step: None,
            }),
            other => Err(wrong(
                other.state(now),
                "initial setup needs an issued token",
            )),
        }
    }

    /// 利用開始, after the caller proved an unused OTP of step `step`.
    pub fn activate(&self, step: u64, now: UnixTime) -> Result<Token, OpError> {
        match self {
            Token::Provisioned {
                secret, expires_at, ..
            } => Ok(Token::Active {
                secret: secret.clone(),
                activated_at: now,
                expires_at: *expires_at,
                last_step: step,
            }),
            other => Err(wrong(
                other.state(now),
                "start of use needs a token that completed initial setup",
            )),
        }
    }

    /// Records an accepted step on an active (or provisioned) token.
    pub fn spend_step(&self, step: u64) -> Token {
        let mut t = self.clone();
        match &mut t {
            Token::Active { last_step, .. } => *last_step = step,
            Token::Provisioned { last_step, .. } => *last_step = Some(step),
            _ => {}
        }
        t
    }

    /// 利用解除: the secret is destroyed.
    pub fn cancel(&self, _now: UnixTime) -> Result<Token, OpError> {
        match self {
            Token::Unregistered => Err(wrong(
                TokenState::Unregistered,
                "there is no token to cancel",
            )),
            _ => Ok(Token::Unregistered),
        }
    }

    /// Checks the renewal window without changing anything.
    pub fn renewal_check(&self, now: UnixTime, policy: &TokenPolicy) -> Result<(), OpError> {
        match self {
            Token::Active { expires_at, .. } => {
                let opens = policy.renewal_opens(*expires_at);
                if now < opens {
                    Err(OpError::RenewalNotYetAvailable {
                        available_from: opens,
                    })
                } else {
                    Ok(())
                }
            }
            other => Err(wrong(
                other.state(now),
                "only a token in use can be renewed",
            )),
        }
    }

    /// 有効期限更新: `expires_at = max(now, expires_at) + validity`, never shorter.
    pub fn renew(&self, now: UnixTime, policy: &TokenPolicy) -> Result<Token, OpError> {
        self.renewal_check(now, policy)?;
        let mut t = self.clone();
        if let Token::Active { expires_at, .. } = &mut t {
            *expires_at = (*expires_at).max(now) + policy.validity();
        }
        Ok(t)
    }

    pub fn renewal_available(&self, now: UnixTime, policy: &TokenPolicy) -> bool {
        self.renewal_check(now, policy).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = 1_800_000_000;

    fn sealed() -> Sealed {
        Sealed {
            nonce: "00".into(),
            ct: "11".into(),
        }
    }

    fn issued(p: &TokenPolicy) -> Token {
        Token::Unregistered
            .issue(sealed(), "h".into(), "l".into(), NOW, p)
            .expect("issue from unregistered")
    }

    fn active(p: &TokenPolicy) -> Token {
        issued(p)
            .setup(NOW, p)
            .expect("provision")
            .activate(7, NOW)
            .expect("activate")
    }

    #[test]
    fn the_happy_path() {
        let p = TokenPolicy::default();
        assert_eq!(Token::Unregistered.state(NOW), TokenState::Unregistered);
        let t = issued(&p);
        assert_eq!(t.state(NOW), TokenState::Issued);
        if let Token::Issued { link, .. } = &t {
            assert_eq!(link.expires_at, NOW + 72 * 3600);
        }
        let t = t.setup(NOW + 10, &p).expect("provision");
        assert_eq!(t.state(NOW), TokenState::Provisioned);
        assert_eq!(t.expires_at(), Some(NOW + 10 + 1461 * DAY));
        let t = t.activate(42, NOW + 20).expect("activate");
        assert_eq!(t.state(NOW + 20), TokenState::Active);
        assert_eq!(t.last_step(), Some(42));
        assert_eq!(t.state(NOW + 10 + 1461 * DAY), TokenState::Expired);
        assert_eq!(t.cancel(NOW).expect("cancel"), Token::Unregistered);
    }

    #[test]
    fn refused_transitions() {
        let p = TokenPolicy::default();
        let code = |r: Result<Token, OpError>| r.err().map(|e| e.code());
        // provision/activate out of order
        assert_eq!(
            code(Token::Unregistered.setup(NOW, &p)),
            Some("wrong_state")
        );
        assert_eq!(
            code(Token::Unregistered.activate(1, NOW)),
            Some("wrong_state")
        );
        assert_eq!(code(issued(&p).activate(1, NOW)), Some("wrong_state"));
        assert_eq!(code(active(&p).setup(NOW, &p)), Some("wrong_state"));
        assert_eq!(code(active(&p).activate(8, NOW)), Some("wrong_state"));
        // issue over an active or expired token
        let a = active(&p);
        assert_eq!(
            code(a.issue(sealed(), "h".into(), "l".into(), NOW, &p)),
            Some("wrong_state")
        );
        let later = NOW + 2000 * DAY;
        assert_eq!(
            code(a.issue(sealed(), "h".into(), "l".into(), later, &p)),
            Some("wrong_state")
        );
        // cancel with nothing to cancel
        assert_eq!(code(Token::Unregistered.cancel(NOW)), Some("wrong_state"));
        // renew before use
        assert_eq!(code(issued(&p).renew(NOW, &p)), Some("wrong_state"));
    }

    #[test]
    fn reissue_before_use_replaces_the_link() {
        let p = TokenPolicy::default();
        let again = issued(&p).issue(sealed(), "h2".into(), "l2".into(), NOW + 5, &p);
        assert!(matches!(again, Ok(Token::Issued { ref link, .. }) if link.hash == "l2"));
        let prov = issued(&p).setup(NOW, &p).expect("provision");
        assert!(prov
            .issue(sealed(), "h".into(), "l3".into(), NOW, &p)
            .is_ok());
    }

    #[test]
    fn cancel_from_every_state() {
        let p = TokenPolicy::default();
        for t in [
            issued(&p),
            issued(&p).setup(NOW, &p).expect("p"),
            active(&p),
        ] {
            assert_eq!(t.cancel(NOW).expect("cancel"), Token::Unregistered);
        }
    }

    #[test]
    fn renewal_window_31_30_29_days_and_after_expiry() {
        let p = TokenPolicy::default();
        let t = active(&p);
        let exp = t.expires_at().expect("has expiry");
        let at = |days: i64| exp - days * DAY;
        let err = t.renew(at(31), &p).expect_err("31 days before: refused");
        assert_eq!(
            err,
            OpError::RenewalNotYetAvailable {
                available_from: exp - 30 * DAY
            }
        );
        assert!(!t.renewal_available(at(31), &p));
        assert!(t.renewal_available(at(30), &p));
        let r30 = t.renew(at(30), &p).expect("30 days before: open");
        assert_eq!(r30.expires_at(), Some(exp + 1461 * DAY), "never shortens");
        let r29 = t.renew(at(29), &p).expect("29 days before");
        assert_eq!(r29.expires_at(), Some(exp + 1461 * DAY));
        let after = exp + 100 * DAY;
        assert_eq!(t.state(after), TokenState::Expired);
        let r = t.renew(after, &p).expect("after expiry: still open");
        assert_eq!(r.expires_at(), Some(after + 1461 * DAY));
        assert_eq!(r.state(after), TokenState::Active);
        assert_eq!(r.last_step(), Some(7), "renewal keeps the replay mark");
    }
}
