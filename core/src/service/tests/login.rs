use super::*;

#[test]
fn otp_required_refuses_password_only_users() {
    let f = fixture("[otp]\nrequired = true\n");
    f.svc.add_user("u", "pw", NOW).expect("add");
    assert_eq!(
        f.svc.login("u", "pw", NOW),
        LoginOutcome::Reject(RejectReason::OtpRequired)
    );
}

#[test]
fn a_login_s_class_is_read_before_any_hash_and_changes_nothing() {
    let f = fixture("[otp]\nmax_failures = 3\n");
    let svc = &f.svc;
    let t = NOW + 120;
    assert_eq!(svc.login_class("nobody", "x", t), LoginClass::Unknown);
    svc.add_user("p", "pw", NOW).expect("add");
    assert_eq!(svc.login_class("p", "pw", t), LoginClass::Clean);
    let secret = active(svc, "u");
    let good = format!("pw-of-{}", code(svc, &secret, t));
    // The OTP checks out whatever the password: the class never says the password is right.
    let wrong_pw = format!("guess-{}", code(svc, &secret, t));
    assert_eq!(svc.login_class("u", &good, t), LoginClass::Proven);
    assert_eq!(svc.login_class("u", &wrong_pw, t), LoginClass::Proven);
    assert_eq!(svc.login_class("u", "pw-of-000000", t), LoginClass::Clean);
    assert_eq!(svc.login_class("u", "pw-of-", t), LoginClass::Clean);
    assert_eq!(
        svc.get("u").expect("u").lock.failures,
        0,
        "no failure counted"
    );
    svc.login("u", "pw-of-000000", t);
    assert_eq!(svc.login_class("u", "pw-of-000000", t), LoginClass::Failing);
    assert_eq!(
        svc.login_class("u", &good, t),
        LoginClass::Proven,
        "despite the failure"
    );
    // A spent code proves nothing.
    assert_eq!(
        svc.login("u", &good, t),
        LoginOutcome::Accept { with_otp: true }
    );
    assert_eq!(svc.login_class("u", &good, t), LoginClass::Clean);
    for _ in 0..3 {
        svc.login("u", "pw-of-000000", t);
    }
    let next = format!("pw-of-{}", code(svc, &secret, t + 60));
    assert_eq!(svc.login_class("u", &next, t + 60), LoginClass::Locked);
}

#[test]
fn lockout_and_unlock() {
    let f = fixture("[otp]\nmax_failures = 3\nlockout_seconds = 600\n");
    let svc = &f.svc;
    let secret = active(svc, "u");
    let t = NOW + 120;
    for _ in 0..3 {
        assert_eq!(
            svc.login("u", "pw-of-000000", t),
            LoginOutcome::Reject(RejectReason::BadOtp)
        );
    }
    // Locked: even the right password and OTP are refused.
    let good = format!("pw-of-{}", code(svc, &secret, t));
    assert_eq!(
        svc.login("u", &good, t),
        LoginOutcome::Reject(RejectReason::Locked)
    );
    assert!(svc.view(&svc.get("u").expect("u"), t).locked);
    // Unlocked by time ...
    let good_later = format!("pw-of-{}", code(svc, &secret, t + 600));
    assert_eq!(
        svc.login("u", &good_later, t + 600),
        LoginOutcome::Accept { with_otp: true }
    );
    // ... or by an administrator.
    for _ in 0..3 {
        svc.login("u", "bad", t + 700);
    }
    assert!(svc.view(&svc.get("u").expect("u"), t + 700).locked);
    let v = svc.unlock("u", t + 700).expect("unlock");
    assert!(!v.locked);
    assert_eq!(v.failures, 0);
}

#[test]
fn concurrent_logins_accept_a_code_once() {
    let f = fixture("");
    let svc = std::sync::Arc::new(f.svc);
    let secret = active(&svc, "u");
    let t = NOW + 60;
    let pw = format!("pw-of-{}", code(&svc, &secret, t));
    let accepted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| svc.login("u", &pw, t))).collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|o| *o == LoginOutcome::Accept { with_otp: true })
            .count()
    });
    assert_eq!(accepted, 1);
}

#[test]
fn a_challenge_is_answered_once_and_a_fresh_code_only_once() {
    let f = fixture("");
    let svc = std::sync::Arc::new(f.svc);
    let secret = active(&svc, "u");
    let t = NOW + 60;
    assert_eq!(svc.login("u", "pw-of-", t), LoginOutcome::NeedOtp);
    let otp = code(&svc, &secret, t);
    let answered = svc.answer_challenge("u", &otp, b"state-1", t + 120, t);
    assert_eq!(answered, LoginOutcome::Accept { with_otp: true });
    // The same State again, even with a code that would be fresh: refused before the OTP.
    let next = code(&svc, &secret, t + 60);
    assert_eq!(
        svc.answer_challenge("u", &next, b"state-1", t + 120, t),
        LoginOutcome::Reject(RejectReason::BadState)
    );
    assert_eq!(svc.view(&svc.get("u").expect("u"), t).failures, 0);
    // Many answers with one fresh code, each with its own State: one Accept.
    let accepted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let svc = &svc;
                let next = &next;
                s.spawn(move || {
                    let state = format!("state-race-{i}");
                    svc.answer_challenge("u", next, state.as_bytes(), t + 120, t)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|o| *o == LoginOutcome::Accept { with_otp: true })
            .count()
    });
    assert_eq!(accepted, 1);
}
