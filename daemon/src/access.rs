//! The RADIUS login decision: turns an Access-Request into a core login and the outcome into
//! a reply. Reply-Messages help the person without helping an attacker: until the password
//! is proven, every refusal reads the same.

use std::sync::Arc;

use otpd_core::service::{LoginOutcome, RejectReason};
use tokio::time::Instant;

use crate::clock;
use crate::limit::Bucket;
use crate::ops::{LoginStep, Ops};
use crate::radius::{AccessHandler, AccessInput, AccessRequest, Decision};
use crate::schedule::Source;

pub const ASK_OTP: &str = "ワンタイムパスワードを入力してください / Enter your one-time password: ";
pub const LOGIN_FAILED: &str = "ログインできませんでした / Login failed";
pub const OTP_FAILED: &str =
    "ワンタイムパスワードが正しくありません / The one-time password was not accepted";
pub const EXPIRED: &str =
    "トークンの有効期限が切れています。有効期限更新の手続きができます / Your token has expired; renewal is open";
pub const OTP_REQUIRED: &str =
    "ワンタイムパスワードの利用登録が必要です / A one-time password token is required: ask for token issuance";

/// The daemon's [`AccessHandler`]: owns the per-source failure budget, the choice of each
/// login's line for a hashing worker and the wording of the replies; the login itself is
/// the core's, through [`Ops`].
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
        let source = Source::new(&req.client.name, req.calling_station_id.as_deref());
        // A source over its failure budget is never refused for that alone: its clean
        // users' logins wait behind other sources' (a customer's correct login still gets
        // through), and only what does not fit in the bounded back lines is refused.
        let spent = !self.budget.has_budget(&source, clock::instant());
        let (step, challenged) = match req.input {
            AccessInput::Password(pw) => (LoginStep::Password(pw), false),
            // Our challenge was answered: the password is proven, the user mid-login.
            AccessInput::ChallengeResponse { otp, state } => {
                (LoginStep::Challenge(otp, state), true)
            }
        };
        let queued = self
            .ops
            .radius_login(&source, spent, req.user_name, step)
            .await;
        let Ok(outcome) = queued else {
            return Decision::Reject {
                reply_message: Some(LOGIN_FAILED.to_string()),
                reason: if spent {
                    "client_rate_limited"
                } else {
                    "overloaded"
                },
            };
        };
        if counts_as_failure(outcome) && self.budget.spend(&source, clock::instant()) {
            self.ops.log.warn(&format!(
                "radius source {source} exceeded its failed-login budget; its logins wait behind other sources' until it recovers"
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

/// Sources whose budget is tracked at once; past it, sources whose bucket has refilled are
/// forgotten, and if none has, a new station shares its client's bucket.
const BUDGET_SOURCES: usize = 4096;

/// A token bucket of failed logins per source (a RADIUS client, or a Calling-Station-Id
/// behind it): `burst` failures at once, refilled at `rate` a second. A source over budget
/// is deprioritised, never refused for that alone (see [`Access::decide`]).
pub struct FailureBudget {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<Source, Bucket>>,
}

impl FailureBudget {
    pub fn new(rate: u32, burst: u32) -> FailureBudget {
        FailureBudget {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Default::default(),
        }
    }

    /// Refills `source`'s bucket up to `now` and lets `f` look at or take from it, all under
    /// one lock. `None` only if the lock was poisoned.
    fn with_bucket<T>(
        &self,
        source: &Source,
        now: Instant,
        f: impl FnOnce(&mut f64) -> T,
    ) -> Option<T> {
        let mut buckets = self.buckets.lock().ok()?;
        let (rate, burst) = (self.rate, self.burst);
        let mut key = source;
        let fallback = source.client_only();
        if !buckets.contains_key(source) && buckets.len() >= BUDGET_SOURCES {
            buckets.retain(|_, b| {
                b.refill(now, rate, burst);
                b.level < burst
            });
            if buckets.len() >= BUDGET_SOURCES {
                key = &fallback;
            }
        }
        let bucket = buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(burst, now));
        bucket.refill(now, rate, burst);
        Some(f(&mut bucket.level))
    }

    /// Whether `source` may still fail at `now`.
    pub fn has_budget(&self, source: &Source, now: Instant) -> bool {
        self.with_bucket(source, now, |level| *level >= 1.0)
            .unwrap_or(true)
    }

    /// Takes one failure at `now`; true when this emptied the bucket.
    pub fn spend(&self, source: &Source, now: Instant) -> bool {
        self.with_bucket(source, now, |level| {
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

    fn gw(name: &str) -> Source {
        Source::new(name, None)
    }

    #[test]
    fn failure_budget_is_per_client_and_refills() {
        let t0 = clock::instant();
        let b = FailureBudget::new(1000, 3);
        let (gw1, gw2) = (gw("gw1"), gw("gw2"));
        assert!(b.has_budget(&gw1, t0));
        assert!(!b.spend(&gw1, t0));
        assert!(!b.spend(&gw1, t0));
        assert!(b.spend(&gw1, t0), "the third failure empties the bucket");
        assert!(!b.has_budget(&gw1, t0));
        assert!(b.has_budget(&gw2, t0), "other gateways are unaffected");
        let half = t0 + Duration::from_micros(500);
        assert!(
            !b.has_budget(&gw1, half),
            "half a failure refilled after 0.5 ms"
        );
        assert!(
            b.has_budget(&gw1, t0 + Duration::from_millis(5)),
            "refilled at 1000/s after 5 ms"
        );
    }

    #[test]
    fn a_station_behind_a_gateway_spends_its_own_budget_only() {
        let t0 = clock::instant();
        let b = FailureBudget::new(1, 2);
        let attacker = Source::new("gw", Some("203.0.113.9"));
        let customer = Source::new("gw", Some("198.51.100.7"));
        assert!(!b.spend(&attacker, t0));
        assert!(b.spend(&attacker, t0));
        assert!(!b.has_budget(&attacker, t0));
        assert!(
            b.has_budget(&customer, t0),
            "another station behind the same gateway"
        );
        assert!(
            b.has_budget(&gw("gw"), t0),
            "nor the gateway's own requests"
        );
    }

    #[test]
    fn the_budget_table_stays_bounded_under_rotating_stations() {
        let t0 = clock::instant();
        let b = FailureBudget::new(1, 2);
        for n in 0..(BUDGET_SOURCES + 500) {
            let s = Source::new("gw", Some(&format!("station-{n}")));
            b.spend(&s, t0);
        }
        let tracked = b.buckets.lock().expect("lock").len();
        assert!(tracked <= BUDGET_SOURCES + 1, "{tracked}");
        // The stations past the table shared the gateway's bucket: 500 failures spent it.
        assert!(!b.has_budget(&Source::new("gw", Some("station-new")), t0));
        // Once the buckets refilled, old stations are forgotten to make room.
        let later = t0 + Duration::from_secs(10);
        assert!(b.has_budget(&Source::new("gw", Some("station-new")), later));
        assert!(b.buckets.lock().expect("lock").len() <= 2);
    }

    /// What `decide` reads: tokio's clock, moved here by `advance` with no real wait.
    #[tokio::test(start_paused = true)]
    async fn failure_budget_refills_on_tokio_s_clock() {
        let b = FailureBudget::new(2, 2);
        let gw1 = &gw("gw1");
        assert!(!b.spend(gw1, clock::instant()));
        assert!(b.spend(gw1, clock::instant()), "the burst is spent");
        let real = std::time::Instant::now();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(!b.has_budget(gw1, clock::instant()), "half a failure back");
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(
            b.has_budget(gw1, clock::instant()),
            "one failure back at 2/s"
        );
        assert!(
            b.spend(gw1, clock::instant()),
            "the failure that came back is spent"
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(
            !b.spend(gw1, clock::instant()),
            "refilled up to the burst only"
        );
        assert!(b.spend(gw1, clock::instant()));
        assert!(
            real.elapsed() < Duration::from_secs(1),
            "the clock was virtual"
        );
    }

    fn request(user: &str, password: &str, station: Option<&str>) -> AccessRequest {
        AccessRequest {
            user_name: user.to_string(),
            input: AccessInput::Password(zeroize::Zeroizing::new(password.to_string())),
            client: crate::radius::ClientInfo {
                name: "gw".to_string(),
                addr: "192.0.2.1:1812".parse().expect("addr"),
            },
            nas_identifier: None,
            calling_station_id: station.map(str::to_string),
        }
    }

    fn reason(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Reject { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_gateway_over_its_budget_still_gets_a_clean_customer_s_correct_login_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops = crate::ops::tests_support::ops(dir.path());
        ops.write(|svc, now| svc.add_user("taro", "login-pw", now))
            .await
            .expect("add");
        let access = Access::new(ops.clone(), 1, 3);
        for n in 0..3 {
            let d = access
                .decide(request(&format!("nobody{n}"), "guess", None))
                .await;
            assert_eq!(reason(&d), Some("unknown_user"), "{d:?}");
        }
        let gw = Source::new("gw", None);
        assert!(!access.budget.has_budget(&gw, clock::instant()), "spent");
        // Over budget: still evaluated, and a correct password is accepted.
        let d = access.decide(request("taro", "login-pw", None)).await;
        assert_eq!(
            d,
            Decision::Accept {
                reply_message: None
            }
        );
        // A wrong one is evaluated too (counted on the user), not refused unevaluated.
        let d = access.decide(request("taro", "wrong", None)).await;
        assert_eq!(reason(&d), Some("bad_password"), "{d:?}");
        let class = |who: &str| ops.login_class(who.to_string(), "login-pw".to_string().into());
        assert_eq!(class("taro").await, otpd_core::service::LoginClass::Failing);
        assert_eq!(
            class("nobody0").await,
            otpd_core::service::LoginClass::Unknown
        );
    }

    #[tokio::test]
    async fn failures_behind_a_calling_station_spend_that_station_s_budget_not_the_gateway_s() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ops = crate::ops::tests_support::ops(dir.path());
        let access = Access::new(ops, 1, 2);
        for n in 0..4 {
            let req = request(&format!("nobody{n}"), "guess", Some("203.0.113.9"));
            access.decide(req).await;
        }
        let now = clock::instant();
        assert!(!access
            .budget
            .has_budget(&Source::new("gw", Some("203.0.113.9")), now));
        assert!(access
            .budget
            .has_budget(&Source::new("gw", Some("198.51.100.7")), now));
        assert!(access.budget.has_budget(&Source::new("gw", None), now));
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
