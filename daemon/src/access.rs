//! The RADIUS login decision: turns an Access-Request into a core login and the outcome into
//! a reply. Reply-Messages help the person without helping an attacker: until the password
//! is proven, every refusal reads the same.

use std::sync::Arc;

use otpd_core::service::{LoginOutcome, RejectReason};

use crate::ops::Ops;
use crate::radius::{AccessHandler, AccessInput, AccessRequest, Decision};

pub const ASK_OTP: &str = "ワンタイムパスワードを入力してください / Enter your one-time password: ";
pub const LOGIN_FAILED: &str = "ログインできませんでした / Login failed";
pub const OTP_FAILED: &str =
    "ワンタイムパスワードが正しくありません / The one-time password was not accepted";
pub const EXPIRED: &str =
    "トークンの有効期限が切れています。有効期限更新の手続きができます / Your token has expired; renewal is open";
pub const OTP_REQUIRED: &str =
    "ワンタイムパスワードの利用登録が必要です / A one-time password token is required: ask for token issuance";

pub struct Access {
    pub ops: Arc<Ops>,
}

impl AccessHandler for Access {
    async fn decide(&self, req: AccessRequest) -> Decision {
        let user = req.user_name;
        let (outcome, challenged) = match req.input {
            AccessInput::Password(pw) => (self.ops.login(user, pw).await, false),
            AccessInput::ChallengeResponse { otp } => (self.ops.login_otp(user, otp).await, true),
        };
        decision(outcome, challenged)
    }
}

/// `challenged`: this request answers our Access-Challenge, so the password is proven.
pub fn decision(outcome: LoginOutcome, challenged: bool) -> Decision {
    let reject = |msg: &str, reason: RejectReason| Decision::Reject {
        reply_message: Some(msg.to_string()),
        reason: reason.name(),
    };
    match outcome {
        LoginOutcome::Accept { .. } => Decision::Accept {
            reply_message: None,
        },
        LoginOutcome::NeedOtp => Decision::NeedOtp {
            reply_message: ASK_OTP.to_string(),
        },
        LoginOutcome::Reject(r @ RejectReason::Expired) => reject(EXPIRED, r),
        LoginOutcome::Reject(r @ RejectReason::OtpRequired) => reject(OTP_REQUIRED, r),
        LoginOutcome::Reject(r @ (RejectReason::BadOtp | RejectReason::OtpReplayed))
            if challenged =>
        {
            reject(OTP_FAILED, r)
        }
        LoginOutcome::Reject(r) => reject(LOGIN_FAILED, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(d: &Decision) -> Option<&str> {
        match d {
            Decision::Reject { reply_message, .. } | Decision::Accept { reply_message } => {
                reply_message.as_deref()
            }
            Decision::NeedOtp { reply_message } => Some(reply_message),
        }
    }

    #[test]
    fn refusals_before_the_password_is_proven_all_read_the_same() {
        let same: Vec<_> = [
            RejectReason::UnknownUser,
            RejectReason::BadPassword,
            RejectReason::Locked,
            RejectReason::BadOtp,
            RejectReason::OtpReplayed,
        ]
        .into_iter()
        .map(|r| decision(LoginOutcome::Reject(r), false))
        .collect();
        assert!(
            same.iter().all(|d| message(d) == Some(LOGIN_FAILED)),
            "{same:?}"
        );
        // Audit reasons still differ.
        let reasons: std::collections::HashSet<_> = same
            .iter()
            .filter_map(|d| match d {
                Decision::Reject { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 5);
    }

    #[test]
    fn after_the_password_the_message_helps() {
        let d = decision(LoginOutcome::Reject(RejectReason::BadOtp), true);
        assert_eq!(message(&d), Some(OTP_FAILED));
        let d = decision(LoginOutcome::Reject(RejectReason::Locked), true);
        assert_eq!(message(&d), Some(LOGIN_FAILED));
        let d = decision(LoginOutcome::Reject(RejectReason::Expired), false);
        assert!(message(&d).is_some_and(|m| m.contains("renewal is open")));
        assert!(matches!(
            decision(LoginOutcome::NeedOtp, false),
            Decision::NeedOtp { .. }
        ));
        assert_eq!(
            decision(LoginOutcome::Accept { with_otp: true }, false),
            Decision::Accept {
                reply_message: None
            }
        );
    }
}
