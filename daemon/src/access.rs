//! The RADIUS login decision: turns an Access-Request into a core login and the outcome into
//! a reply. Reply-Messages help the person without helping an attacker: until the password
//! is proven, every refusal reads the same.

use std::sync::Arc;

use otpd_core::service::{LoginOutcome, RejectReason};
use tokio::time::Instant;

use crate::clock;
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

/// The daemon's [`AccessHandler`]: owns the per-gateway failure budget and the wording of
/// the replies; the login itself is the core's, through [`Ops`].
pub struct Access {
    ops: Arc<Ops>,
    budget: FailureBudget,
}

impl Access {
    pub fn new(ops: Arc<Ops>, failure_rate: u32, failure_burst: u32) -> Access {
        Access {
            ops,
            budget: FailureBudget::new(failure_rate, failure_burst),
        }
    }
}

impl AccessHandler for Access {
    async fn decide(&self, req: AccessRequest) -> Decision {
        // A gateway that already spent its failure budget is refused before anything is
        // evaluated, so its flood locks no customer out and costs no password hash.
        if !self.budget.has_budget(&req.client.name, clock::instant()) {
            return Decision::Reject {
                reply_message: Some(LOGIN_FAILED.to_string()),
                reason: "client_rate_limited",
            };
        }
        let user = req.user_name;
        let (outcome, challenged) = match req.input {
            AccessInput::Password(pw) => (self.ops.login(user, pw).await, false),
            AccessInput::ChallengeResponse { otp, state } => {
                (self.ops.answer_challenge(user, otp, state).await, true)
            }
        };
        if counts_as_failure(outcome) && self.budget.spend(&req.client.name, clock::instant()) {
            self.ops.log.warn(&format!(
                "radius client {:?} exceeded its failed-login budget; its requests are refused until it recovers",
                req.client.name
            ));
        }
        decision(outcome, challenged)
    }

    fn refusal_message(&self) -> Option<String> {
        Some(LOGIN_FAILED.to_string())
    }
}

fn counts_as_failure(o: LoginOutcome) -> bool {
    matches!(
        o,
        LoginOutcome::Reject(
            RejectReason::UnknownUser
                | RejectReason::BadPassword
                | RejectReason::BadOtp
                | RejectReason::OtpReplayed
                | RejectReason::Locked
        )
    )
}

/// A token bucket of failed logins per RADIUS client: `burst` failures at once, refilled
/// at `rate` a second. The map holds one entry per configured client name.
pub struct FailureBudget {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, crate::limit::Bucket>>,
}

impl FailureBudget {
    pub fn new(rate: u32, burst: u32) -> FailureBudget {
        FailureBudget {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Default::default(),
        }
    }

    /// Refills `client`'s bucket up to `now` and lets `f` look at or take from it, all under
    /// one lock. `None` only if the lock was poisoned.
    fn with_bucket<T>(
        &self,
        client: &str,
        now: Instant,
        f: impl FnOnce(&mut f64) -> T,
    ) -> Option<T> {
        let mut buckets = self.buckets.lock().ok()?;
        if !buckets.contains_key(client) {
            let full = crate::limit::Bucket::full(self.burst, now);
            buckets.insert(client.to_string(), full);
        }
        let bucket = buckets.get_mut(client)?;
        bucket.refill(now, self.rate, self.burst);
        Some(f(&mut bucket.level))
    }

    /// Whether `client` may still fail at `now`.
    pub fn has_budget(&self, client: &str, now: Instant) -> bool {
        self.with_bucket(client, now, |level| *level >= 1.0)
            .unwrap_or(true)
    }

    /// Takes one failure at `now`; true when this emptied the bucket.
    pub fn spend(&self, client: &str, now: Instant) -> bool {
        self.with_bucket(client, now, |level| {
            if *level < 1.0 {
                return false;
            }
            *level -= 1.0;
            *level < 1.0
        })
        .unwrap_or(false)
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
    use std::time::Duration;

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
    fn failure_budget_is_per_client_and_refills() {
        let t0 = clock::instant();
        let b = FailureBudget::new(1000, 3);
        assert!(b.has_budget("gw1", t0));
        assert!(!b.spend("gw1", t0));
        assert!(!b.spend("gw1", t0));
        assert!(b.spend("gw1", t0), "the third failure empties the bucket");
        assert!(!b.has_budget("gw1", t0));
        assert!(b.has_budget("gw2", t0), "other gateways are unaffected");
        let half = t0 + Duration::from_micros(500);
        assert!(
            !b.has_budget("gw1", half),
            "half a failure refilled after 0.5 ms"
        );
        assert!(
            b.has_budget("gw1", t0 + Duration::from_millis(5)),
            "refilled at 1000/s after 5 ms"
        );
    }

    /// What `decide` reads: tokio's clock, moved here by `advance` with no real wait.
    #[tokio::test(start_paused = true)]
    async fn failure_budget_refills_on_tokio_s_clock() {
        let b = FailureBudget::new(2, 2);
        assert!(!b.spend("gw1", clock::instant()));
        assert!(b.spend("gw1", clock::instant()), "the burst is spent");
        let real = std::time::Instant::now();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(
            !b.has_budget("gw1", clock::instant()),
            "half a failure back"
        );
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(
            b.has_budget("gw1", clock::instant()),
            "one failure back at 2/s"
        );
        assert!(
            b.spend("gw1", clock::instant()),
            "the failure that came back is spent"
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(
            !b.spend("gw1", clock::instant()),
            "refilled up to the burst only"
        );
        assert!(b.spend("gw1", clock::instant()));
        assert!(
            real.elapsed() < Duration::from_secs(1),
            "the clock was virtual"
        );
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
