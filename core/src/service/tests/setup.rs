use super::*;

#[test]
fn setup_link_dies_after_max_attempts_and_expiry() {
    let f = fixture("[token]\nsetup_max_attempts = 2\n");
    let svc = &f.svc;
    let job = issued(svc, "u");
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "u", "x", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "u", "x", NOW),
        Err(OpError::LinkExhausted)
    );
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "u", "act-pass", NOW),
        Err(OpError::LinkExhausted),
        "dead even with the right password"
    );
    // A fresh issuance gives a fresh link; the old one is unknown now.
    let job2 = issued(svc, "u");
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "u", "act-pass", NOW),
        Err(OpError::UnknownLink)
    );
    let late = NOW + 72 * 3600;
    assert_eq!(
        svc.setup(&job2.code, "TEST-BANK", "u", "act-pass", late),
        Err(OpError::LinkGone)
    );
}

#[test]
fn check_link_reports_without_counting() {
    let f = fixture("[token]\nsetup_max_attempts = 2\n");
    let svc = &f.svc;
    let job = issued(svc, "u");
    assert_eq!(svc.check_link("0000", NOW), Err(OpError::UnknownLink));
    for _ in 0..5 {
        assert_eq!(svc.check_link(&job.code, NOW), Ok(()), "never counted");
    }
    assert_eq!(
        svc.check_link(&job.code, NOW + 72 * 3600),
        Err(OpError::LinkGone)
    );
    for _ in 0..2 {
        let _ = svc.setup(&job.code, "TEST-BANK", "u", "x", NOW);
    }
    assert_eq!(svc.check_link(&job.code, NOW), Err(OpError::LinkExhausted));
    let job2 = issued(svc, "u");
    svc.setup(&job2.code, "TEST-BANK", "u", "act-pass", NOW)
        .expect("enroll");
    assert_eq!(svc.check_link(&job2.code, NOW), Err(OpError::LinkGone));
}
