//! Logins: the password, the password followed by the OTP, or the OTP answering a
//! challenge; failures counted on the user's lock.

use crate::lifecycle::TokenState;
use crate::otp::OtpRefusal;
use crate::password;
use crate::store::{Spend, Versioned};
use crate::user::UserRecord;
use crate::{Refusal, Service, UnixTime};

/// Why a login was refused: one of the [`Refusal`]s, whose codes the audit lines name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownUser,
    BadPassword,
    BadOtp,
    OtpReplayed,
    Locked,
    OtpRequired,
    Expired,
    Store,
    /// The challenge's State was already answered.
    BadState,
}

impl RejectReason {
    /// The refusal this reason is, as the outside sees it.
    pub fn refusal(self) -> Refusal {
        match self {
            RejectReason::UnknownUser => Refusal::UnknownUser,
            RejectReason::BadPassword => Refusal::BadPassword,
            RejectReason::BadOtp => Refusal::BadOtp,
            RejectReason::OtpReplayed => Refusal::OtpReplayed,
            RejectReason::Locked => Refusal::Locked,
            RejectReason::OtpRequired => Refusal::OtpRequired,
            RejectReason::Expired => Refusal::Expired,
            RejectReason::Store => Refusal::StoreError,
            RejectReason::BadState => Refusal::BadState,
        }
    }

    /// The word of the audit line: the refusal's code.
    pub fn name(self) -> &'static str {
        self.refusal().as_str()
    }
}

/// The answer to one login step: accepted, the OTP still needed, or refused with the reason
/// the audit line names. RADIUS, the PAM module's server side and the OTP menu all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Accept {
        with_otp: bool,
    },
    /// The password is proven; the one-time password is still needed.
    NeedOtp,
    Reject(RejectReason),
}

/// How a login stands before its password is hashed: what the daemon's scheduler reads to
/// decide who waits for a hashing worker, never a login decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginClass {
    /// A user not locked whose `User-Password` ends in a valid, unspent OTP of its token in
    /// use: the part a sprayer cannot guess already checks out (failures or not).
    Proven,
    /// A known user with no failure since its last success, not locked.
    Clean,
    /// A known user with failures since its last success (or whose lock ran out).
    Failing,
    /// A user locked now.
    Locked,
    /// No such user, or the store could not be read (the login itself reports that).
    Unknown,
}

impl Service {
    /// The class of a login with `user_password` for `login_id` at `now`: one store read
    /// and, for a token in use, the OTP at the end checked as [`Service::login`] would (no
    /// password hash, nothing written, no failure counted).
    pub fn login_class(&self, login_id: &str, user_password: &str, now: UnixTime) -> LoginClass {
        let user = match self.store.get_user(login_id) {
            Ok(Some(read)) => read.value,
            Ok(None) | Err(_) => return LoginClass::Unknown,
        };
        if user.lock.is_locked(now) {
            return LoginClass::Locked;
        }
        let otp_checks_out = || {
            if user.token.state(now) != TokenState::Active {
                return false;
            }
            let split = user_password.len().checked_sub(self.otp.digits);
            let Some((_, code)) = split
                .filter(|&s| s > 0)
                .and_then(|s| user_password.split_at_checked(s))
            else {
                return false;
            };
            let secret = user.token.secret().map(|s| self.sealer.open(login_id, s));
            let Some(Ok(secret)) = secret else {
                return false;
            };
            code.bytes().all(|b| b.is_ascii_digit())
                && self
                    .otp
                    .verify(&secret, code, now, user.token.last_step())
                    .is_ok()
        };
        if otp_checks_out() {
            LoginClass::Proven
        } else if user.lock.failures > 0 {
            LoginClass::Failing
        } else {
            LoginClass::Clean
        }
    }

    /// A login with `User-Password`: the password, or the password followed by the OTP.
    pub fn login(&self, login_id: &str, user_password: &str, now: UnixTime) -> LoginOutcome {
        let read = match self.store.get_user(login_id) {
            Ok(Some(v)) => v,
            Ok(None) => {
                let _ = password::verify(&self.dummy_hash, user_password);
                return LoginOutcome::Reject(RejectReason::UnknownUser);
            }
            Err(_) => return LoginOutcome::Reject(RejectReason::Store),
        };
        let user = &read.value;
        if user.lock.is_locked(now) {
            let _ = password::verify(&self.dummy_hash, user_password);
            return LoginOutcome::Reject(RejectReason::Locked);
        }
        let state = user.token.state(now);
        if matches!(state, TokenState::Active | TokenState::Expired) {
            let digits = self.otp.digits;
            if let Some(split) = user_password.len().checked_sub(digits).filter(|&s| s > 0) {
                let (pw, code) = user_password
                    .split_at_checked(split)
                    .unwrap_or((user_password, ""));
                if code.bytes().all(|b| b.is_ascii_digit())
                    && password::verify(&user.password_hash, pw)
                {
                    if self.upgrade_hash(user, pw) {
                        return self.login_otp(login_id, code, now);
                    }
                    return self.login_otp_from(login_id, code, now, Some(read), false);
                }
            }
            if password::verify(&user.password_hash, user_password) {
                self.upgrade_hash(user, user_password);
                return LoginOutcome::NeedOtp;
            }
            return self.count_failure(login_id, now, RejectReason::BadPassword);
        }
        if !password::verify(&user.password_hash, user_password) {
            return self.count_failure(login_id, now, RejectReason::BadPassword);
        }
        self.upgrade_hash(user, user_password);
        if self.otp_required {
            return LoginOutcome::Reject(RejectReason::OtpRequired);
        }
        if user.lock.failures > 0 && self.store.clear_failures(login_id).is_err() {
            return LoginOutcome::Reject(RejectReason::Store);
        }
        LoginOutcome::Accept { with_otp: false }
    }

    /// The OTP of a login whose password is already proven (same request, or the answer to
    /// a challenge). An accepted step is recorded before this returns.
    pub fn login_otp(&self, login_id: &str, otp: &str, now: UnixTime) -> LoginOutcome {
        self.login_otp_from(login_id, otp, now, None, false)
    }

    /// The OTP of the menu's sign-in: as [`Service::login_otp`], but the step of an expired
    /// token is spent too (the sign-in is the use of that code; renewal then needs the next
    /// one), answered `Reject(Expired)` once spent.
    pub fn sign_in_otp(&self, login_id: &str, otp: &str, now: UnixTime) -> LoginOutcome {
        self.login_otp_from(login_id, otp, now, None, true)
    }

    /// The OTP check of a login. The code is checked against the user as read; the step it
    /// proves is then spent with one conditional write, which refuses it if another login
    /// (on this node or another) spent it first, or if the token was replaced meanwhile, in
    /// which case the user is read again.
    /// The OTP answering the challenge whose State is `once_key`, valid until `expires_at`:
    /// the State is marked used in the store first, so it is answered once on every node
    /// sharing the store.
    pub fn answer_challenge(
        &self,
        login_id: &str,
        otp: &str,
        once_key: &[u8],
        expires_at: UnixTime,
        now: UnixTime,
    ) -> LoginOutcome {
        match self.store.use_once(once_key, expires_at, now) {
            Ok(true) => self.login_otp(login_id, otp, now),
            Ok(false) => LoginOutcome::Reject(RejectReason::BadState),
            Err(_) => LoginOutcome::Reject(RejectReason::Store),
        }
    }

    fn login_otp_from(
        &self,
        login_id: &str,
        otp: &str,
        now: UnixTime,
        mut read: Option<Versioned<UserRecord>>,
        spend_expired: bool,
    ) -> LoginOutcome {
        const REREADS: usize = 8;
        for _ in 0..REREADS {
            let current = match read.take() {
                Some(v) => v,
                None => match self.store.get_user(login_id) {
                    Ok(Some(v)) => v,
                    Ok(None) => return LoginOutcome::Reject(RejectReason::UnknownUser),
                    Err(_) => return LoginOutcome::Reject(RejectReason::Store),
                },
            };
            let user = &current.value;
            if user.lock.is_locked(now) {
                return LoginOutcome::Reject(RejectReason::Locked);
            }
            let state = user.token.state(now);
            let Some(sealed) = user
                .token
                .secret()
                .filter(|_| matches!(state, TokenState::Active | TokenState::Expired))
            else {
                return LoginOutcome::Reject(RejectReason::BadOtp);
            };
            let Ok(secret) = self.sealer().open(login_id, sealed) else {
                return LoginOutcome::Reject(RejectReason::Store);
            };
            let step = match self.otp.verify(&secret, otp, now, user.token.last_step()) {
                Ok(step) => step,
                Err(OtpRefusal::Invalid) => {
                    return self.count_failure(login_id, now, RejectReason::BadOtp)
                }
                Err(OtpRefusal::Replayed) => {
                    return self.count_failure(login_id, now, RejectReason::OtpReplayed)
                }
            };
            if state == TokenState::Expired && !spend_expired {
                // Proven but expired: say so, and leave the OTP unspent for renewal (RADIUS
                // answers Reject; the customer renews with this code).
                if user.lock.failures > 0 && self.store.clear_failures(login_id).is_err() {
                    return LoginOutcome::Reject(RejectReason::Store);
                }
                return LoginOutcome::Reject(RejectReason::Expired);
            }
            return match self.store.spend_step(login_id, current.epoch, step, now) {
                Ok(Spend::Spent) if state == TokenState::Expired => {
                    LoginOutcome::Reject(RejectReason::Expired)
                }
                Ok(Spend::Spent) => LoginOutcome::Accept { with_otp: true },
                Ok(Spend::Replayed) => self.count_failure(login_id, now, RejectReason::OtpReplayed),
                Ok(Spend::Locked) => LoginOutcome::Reject(RejectReason::Locked),
                Ok(Spend::Missing) => LoginOutcome::Reject(RejectReason::UnknownUser),
                Ok(Spend::Changed) => continue,
                Err(_) => LoginOutcome::Reject(RejectReason::Store),
            };
        }
        LoginOutcome::Reject(RejectReason::Store)
    }

    /// A menu sign-in whose password was right but which brought no OTP for a token in
    /// use: counted like any failed attempt, so the answer is no free password oracle.
    pub fn count_missing_otp(&self, login_id: &str, now: UnixTime) -> LoginOutcome {
        self.count_failure(login_id, now, RejectReason::OtpRequired)
    }

    fn count_failure(&self, login_id: &str, now: UnixTime, reason: RejectReason) -> LoginOutcome {
        match self.store.count_failure(login_id, now, &self.lock) {
            // This failure locked the user: the menu's sessions end with it.
            Ok(Some(lock)) if lock.is_locked(now) => match self.end_sessions(login_id) {
                Ok(()) | Err(crate::OpError::UnknownUser(_)) => LoginOutcome::Reject(reason),
                Err(_) => LoginOutcome::Reject(RejectReason::Store),
            },
            Ok(_) => LoginOutcome::Reject(reason),
            Err(_) => LoginOutcome::Reject(RejectReason::Store),
        }
    }
}
