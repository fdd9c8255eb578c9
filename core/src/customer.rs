//! The session of the customer's OTP menu (ワンタイムパスワード申請). It lives only in a
//! cookie sealed under the master key, so any node holding the same `key_file` and store
//! can open it; the one piece of server state is the user's session epoch, a random value
//! that sign-out and every change of the credentials (password, issuance, cancellation,
//! lock, unlock, deletion) replace, so that every cookie made before it is dead on every
//! node. A session also records whether the sign-in proved an OTP: what a session without
//! one may do is limited (see `otpd_core::service::menu`).

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::seal::{hex, Sealed};
use crate::{OpError, Service, UnixTime};

/// A session ends after this long without a request.
pub const IDLE_SECONDS: i64 = 15 * 60;
/// And after this long in any case.
pub const MAX_SECONDS: i64 = 8 * 60 * 60;
/// Longest cookie value looked at; a real one is about 400 bytes.
const COOKIE_MAX: usize = 2048;
/// Binds the sealed bytes to their purpose: an OTP secret cannot pass for a session.
const AAD: &str = "\u{0}otp-menu-session";

/// What a session cookie carries, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub login_id: String,
    /// The user's session epoch (`session_generation`) when the session began.
    pub generation: u64,
    /// Whether the sign-in proved an OTP of the token (false: the password alone).
    #[serde(default)]
    pub otp: bool,
    /// The CSRF token every POST of this session must repeat.
    pub csrf: String,
    pub signed_in_at: UnixTime,
    pub seen_at: UnixTime,
}

impl Session {
    fn alive(&self, now: UnixTime) -> bool {
        now >= self.seen_at - IDLE_SECONDS
            && now < self.seen_at + IDLE_SECONDS
            && now < self.signed_in_at + MAX_SECONDS
    }

    /// The same session, seen now: the idle timeout starts again.
    pub fn touched(&self, now: UnixTime) -> Session {
        Session {
            seen_at: now.max(self.seen_at),
            ..self.clone()
        }
    }
}

impl Service {
    /// A new session for a user whose sign-in just succeeded (`otp`: it proved an OTP).
    pub fn start_session(
        &self,
        login_id: &str,
        otp: bool,
        now: UnixTime,
    ) -> Result<Session, OpError> {
        let user = self
            .store()
            .get_user(login_id)?
            .ok_or_else(|| OpError::UnknownUser(login_id.into()))?
            .value;
        let mut csrf = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut csrf);
        Ok(Session {
            login_id: user.login_id,
            generation: user.session_generation,
            otp,
            csrf: hex(&csrf),
            signed_in_at: now,
            seen_at: now,
        })
    }

    /// The cookie value: nonce and ciphertext in hex, joined by a dot.
    pub fn seal_session(&self, s: &Session) -> String {
        // A struct of strings and integers always serializes.
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(s).unwrap_or_default());
        let sealed = self.sealer().seal(AAD, &plain);
        format!("{}.{}", sealed.nonce, sealed.ct)
    }

    /// The session a cookie carries, if it opens, is alive, its user's session epoch is
    /// still the one it began in (no sign-out or change of credentials since, on any node)
    /// and the user is not locked (nor was since its last success).
    pub fn open_session(&self, cookie: &str, now: UnixTime) -> Result<Option<Session>, OpError> {
        if cookie.len() > COOKIE_MAX {
            return Ok(None);
        }
        let Some((nonce, ct)) = cookie.split_once('.') else {
            return Ok(None);
        };
        let sealed = Sealed {
            nonce: nonce.into(),
            ct: ct.into(),
        };
        let Ok(plain) = self.sealer().open(AAD, &sealed) else {
            return Ok(None);
        };
        let Ok(s) = serde_json::from_slice::<Session>(&plain) else {
            return Ok(None);
        };
        if !s.alive(now) {
            return Ok(None);
        }
        let Some(user) = self.store().get_user(&s.login_id)? else {
            return Ok(None);
        };
        let user = user.value;
        // A lock that ran out stays recorded until the next success: sessions stay dead
        // until then too.
        let clear = user.lock.locked_until.is_none();
        Ok((user.session_generation == s.generation && clear).then_some(s))
    }

    /// Sign-out: ends every session of the user, on every node.
    pub fn end_sessions(&self, login_id: &str) -> Result<(), OpError> {
        self.update(login_id, |u| {
            u.session_generation = new_epoch(u.session_generation);
            Ok(())
        })
    }
}

/// A fresh random session epoch, never `old`: a counter would start again at 0 for a user
/// deleted and added again, and revive the old user's cookies.
pub fn new_epoch(old: u64) -> u64 {
    loop {
        let e = rand::rngs::OsRng.next_u64();
        if e != old {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_dies_when_idle_or_old() {
        let s = Session {
            login_id: "taro".into(),
            generation: 0,
            otp: false,
            csrf: "c".into(),
            signed_in_at: 1000,
            seen_at: 1000,
        };
        assert!(s.alive(1000 + IDLE_SECONDS - 1));
        assert!(!s.alive(1000 + IDLE_SECONDS));
        let late = s.touched(1000 + MAX_SECONDS - 10);
        assert!(late.alive(1000 + MAX_SECONDS - 1));
        assert!(!late.alive(1000 + MAX_SECONDS));
        assert!(!s.alive(1000 - IDLE_SECONDS - 1), "a clock far behind");
    }
}
