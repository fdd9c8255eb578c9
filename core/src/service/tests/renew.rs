use super::*;

#[test]
fn renewal_by_customer_and_admin() {
    let f = fixture("");
    let svc = &f.svc;
    let secret = active(svc, "u");
    let exp = svc.get("u").expect("u").token.expires_at().expect("expiry");
    let early = exp - 31 * crate::lifecycle::DAY;
    let e = svc
        .renew_with_otp("TEST-BANK", "u", &code(svc, &secret, early), early)
        .err();
    assert_eq!(
        e,
        Some(OpError::RenewalNotYetAvailable {
            available_from: exp - 30 * crate::lifecycle::DAY
        })
    );
    assert_eq!(
        svc.renew_by_admin("u", early).err().map(|e| e.code()),
        Some("renewal_not_yet_available")
    );
    // After expiry: login refused with "expired", renewal still possible, then login works.
    let after = exp + 10;
    let c = code(svc, &secret, after);
    assert_eq!(
        svc.login("u", &format!("pw-of-{c}"), after),
        LoginOutcome::Reject(RejectReason::Expired)
    );
    assert_eq!(
        svc.renew_with_otp("WRONG", "u", &c, after),
        Err(OpError::SetupRefused)
    );
    let v = svc
        .renew_with_otp("TEST-BANK", "u", &c, after)
        .expect("renew");
    assert_eq!(v.state, TokenState::Active);
    // The renewal spent the code: a second try is refused like any wrong code, before any
    // window check.
    assert_eq!(
        svc.renew_with_otp("TEST-BANK", "u", &c, after)
            .err()
            .map(|e| e.code()),
        Some("bad_otp")
    );
    assert_eq!(
        svc.login("u", &format!("pw-of-{c}"), after),
        LoginOutcome::Reject(RejectReason::OtpReplayed),
        "renewal spent the OTP"
    );
}

#[test]
fn renewal_failures_count_on_the_login_lock_and_hide_the_expiry() {
    let f = fixture("[otp]\nmax_failures = 3\n");
    let svc = &f.svc;
    let secret = active(svc, "u");
    let t = NOW + 120;
    // Without a valid OTP the answer never reveals the renewal window.
    for _ in 0..3 {
        assert_eq!(
            svc.renew_with_otp("TEST-BANK", "u", "000000", t),
            Err(OpError::BadOtp)
        );
    }
    // Renewal is now locked for this user, and the answer still reads like a wrong code
    // (an unknown user ID gets the same) ...
    assert_eq!(
        svc.renew_with_otp("TEST-BANK", "u", &code(svc, &secret, t), t),
        Err(OpError::BadOtp)
    );
    assert_eq!(
        svc.renew_with_otp("TEST-BANK", "nobody", "000000", t),
        Err(OpError::BadOtp)
    );
    // ... and the failures counted on the login's own lock: the renewal page adds no
    // guesses to the login's budget.
    let v = svc.view(&svc.get("u").expect("u"), t);
    assert!(v.locked, "{v:?}");
    assert_eq!(v.failures, 3);
    assert_eq!(
        svc.login("u", &format!("pw-of-{}", code(svc, &secret, t)), t),
        LoginOutcome::Reject(crate::service::RejectReason::Locked)
    );
    let v = svc.unlock("u", t).expect("unlock");
    assert!(!v.locked && v.failures == 0);
}

#[test]
fn an_early_renewal_spends_its_code() {
    let f = fixture("");
    let svc = &f.svc;
    let secret = active(svc, "u");
    let t = NOW + 120;
    let c = code(svc, &secret, t);
    assert!(matches!(
        svc.renew_with_otp("TEST-BANK", "u", &c, t),
        Err(OpError::RenewalNotYetAvailable { .. })
    ));
    // The same code again reads like any refused one: it was spent.
    assert_eq!(
        svc.renew_with_otp("TEST-BANK", "u", &c, t),
        Err(OpError::BadOtp)
    );
    assert_eq!(
        svc.login("u", &format!("pw-of-{c}"), t),
        LoginOutcome::Reject(crate::service::RejectReason::OtpReplayed)
    );
}

#[test]
fn a_user_without_a_token_reads_like_an_unknown_one_at_renewal() {
    let f = fixture("");
    let svc = &f.svc;
    svc.add_user("plain", "pw", NOW).expect("add");
    for who in ["plain", "nobody"] {
        assert_eq!(
            svc.renew_with_otp("TEST-BANK", who, "123456", NOW),
            Err(OpError::BadOtp),
            "{who}"
        );
    }
}
