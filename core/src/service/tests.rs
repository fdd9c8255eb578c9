use super::*;
use crate::admin::ImportRow;
use crate::store::SledStore;

const NOW: UnixTime = 1_800_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Service,
}

fn config(extra: &str) -> Config {
    let text = format!(
        "service_id = \"TEST-BANK\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n{extra}"
    );
    Config::parse(&text, std::path::Path::new("/tmp"))
        .expect("valid test config")
        .config
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("store");
    let svc =
        Service::new(&config(extra), store, Sealer::from_key(&[9u8; 32]), NOW).expect("service");
    Fixture { _dir: dir, svc }
}

fn secret_of(e: &Enrolled) -> Vec<u8> {
    base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &e.secret).expect("base32")
}

/// Issues, sets up through the link, and returns the raw secret.
fn provision(svc: &Service, who: &str) -> Vec<u8> {
    svc.add_user(who, "pw-of-", NOW).ok();
    let (_, _) = svc
        .issue(who, "taro@example.jp", "act-pass", NOW)
        .expect("issue");
    let jobs = svc.pending_mail().expect("outbox");
    let job = jobs
        .into_iter()
        .rev()
        .find_map(|(_, j)| j.ok().filter(|j| j.login_id == who))
        .expect("mail queued");
    let e = svc
        .enroll(&job.code, "TEST-BANK", who, "act-pass", NOW)
        .expect("enroll");
    secret_of(&e)
}

/// The newest queued issuance mail, opened.
fn last_mail(svc: &Service) -> MailJob {
    svc.pending_mail()
        .expect("outbox")
        .pop()
        .expect("a queued mail")
        .1
        .expect("opens")
}

fn code(svc: &Service, secret: &[u8], at: UnixTime) -> String {
    let p = svc.otp_params();
    p.code_for_step(secret, p.step_at(at))
}

#[test]
fn add_show_duplicate_delete() {
    let f = fixture("");
    let v = f.svc.add_user("alice", "s3cret", NOW).expect("add");
    assert_eq!(v.state, TokenState::Unregistered);
    assert_eq!(
        f.svc.add_user("alice", "x", NOW),
        Err(OpError::UserExists("alice".into()))
    );
    assert_eq!(f.svc.add_user("bad id", "x", NOW), Err(OpError::BadLoginId));
    assert!(matches!(
        f.svc.add_user("bob", "", NOW),
        Err(OpError::BadInput(_))
    ));
    f.svc.delete_user("alice").expect("delete");
    assert_eq!(
        f.svc.delete_user("alice"),
        Err(OpError::UnknownUser("alice".into()))
    );
}

#[test]
fn the_customer_guide_end_to_end() {
    let f = fixture("");
    let svc = &f.svc;
    svc.add_user("taro", "login-pw", NOW).expect("add");
    // Before start of use, the password alone logs in.
    assert_eq!(
        svc.login("taro", "login-pw", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    svc.issue("taro", "taro@docomo.ne.jp", "act-pass", NOW)
        .expect("issue");
    assert_eq!(
        svc.view(&svc.get("taro").expect("u"), NOW).state,
        TokenState::Issued
    );
    let job = last_mail(svc);
    assert_eq!(job.to, "taro@docomo.ne.jp");
    // Wrong service ID, user ID, activation password: refused and counted.
    assert_eq!(
        svc.enroll(&job.code, "OTHER", "taro", "act-pass", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "jiro", "act-pass", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "taro", "nope", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.enroll("0000", "TEST-BANK", "taro", "act-pass", NOW),
        Err(OpError::UnknownLink)
    );
    let e = svc
        .enroll(&job.code, "TEST-BANK", "taro", "act-pass", NOW)
        .expect("enroll");
    assert!(
        e.otpauth_uri
            .starts_with("otpauth://totp/TEST-BANK:taro?secret="),
        "{}",
        e.otpauth_uri
    );
    assert!(e.otpauth_uri.contains("&period=60") && e.otpauth_uri.contains("&digits=6"));
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "taro", "act-pass", NOW),
        Err(OpError::LinkGone),
        "secret shown once"
    );
    let secret = secret_of(&e);
    // Start of use: a wrong OTP is refused, a right one activates.
    assert_eq!(
        svc.activate("taro", "000000", NOW).err().map(|e| e.code()),
        Some("bad_otp")
    );
    let c = code(svc, &secret, NOW);
    assert_eq!(
        svc.activate("taro", &c, NOW).expect("activate").state,
        TokenState::Active
    );
    // The same code cannot log in again: it was spent by start of use.
    assert_eq!(
        svc.login("taro", &format!("login-pw{c}"), NOW),
        LoginOutcome::Reject(RejectReason::OtpReplayed)
    );
    let later = NOW + 60;
    let c2 = code(svc, &secret, later);
    assert_eq!(
        svc.login("taro", &format!("login-pw{c2}"), later),
        LoginOutcome::Accept { with_otp: true }
    );
    assert_eq!(
        svc.login("taro", &format!("login-pw{c2}"), later),
        LoginOutcome::Reject(RejectReason::OtpReplayed)
    );
    // Password alone now needs the OTP; the challenge answer completes it.
    assert_eq!(svc.login("taro", "login-pw", later), LoginOutcome::NeedOtp);
    let t3 = later + 60;
    assert_eq!(
        svc.login_otp("taro", &code(svc, &secret, t3), t3),
        LoginOutcome::Accept { with_otp: true }
    );
    assert_eq!(
        svc.login("taro", "wrong-pw", t3),
        LoginOutcome::Reject(RejectReason::BadPassword)
    );
    assert_eq!(
        svc.login("nobody", "x", t3),
        LoginOutcome::Reject(RejectReason::UnknownUser)
    );
    // Cancel: back to unregistered, the secret destroyed, password alone works again.
    let v = svc.cancel("taro", t3).expect("cancel");
    assert_eq!(v.state, TokenState::Unregistered);
    assert!(svc.get("taro").expect("u").token.secret().is_none());
    assert_eq!(
        svc.login("taro", "login-pw", t3),
        LoginOutcome::Accept { with_otp: false }
    );
}

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
fn lockout_and_unlock() {
    let f = fixture("[otp]\nmax_failures = 3\nlockout_seconds = 600\n");
    let svc = &f.svc;
    let secret = provision(svc, "u");
    svc.activate("u", &code(svc, &secret, NOW), NOW)
        .expect("activate");
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
fn renewal_by_customer_and_admin() {
    let f = fixture("");
    let svc = &f.svc;
    let secret = provision(svc, "u");
    svc.activate("u", &code(svc, &secret, NOW), NOW)
        .expect("activate");
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
fn setup_link_dies_after_max_attempts_and_expiry() {
    let f = fixture("[token]\nsetup_max_attempts = 2\n");
    let svc = &f.svc;
    svc.add_user("u", "pw", NOW).expect("add");
    svc.issue("u", "u@example.jp", "act-pass", NOW)
        .expect("issue");
    let job = last_mail(svc);
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "u", "x", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "u", "x", NOW),
        Err(OpError::LinkExhausted)
    );
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "u", "act-pass", NOW),
        Err(OpError::LinkExhausted),
        "dead even with the right password"
    );
    // A fresh issuance gives a fresh link; the old one is unknown now.
    svc.issue("u", "u@example.jp", "act-pass", NOW)
        .expect("reissue");
    let job2 = last_mail(svc);
    assert_eq!(
        svc.enroll(&job.code, "TEST-BANK", "u", "act-pass", NOW),
        Err(OpError::UnknownLink)
    );
    let late = NOW + 72 * 3600;
    assert_eq!(
        svc.enroll(&job2.code, "TEST-BANK", "u", "act-pass", late),
        Err(OpError::LinkGone)
    );
}

#[test]
fn concurrent_logins_accept_a_code_once() {
    let f = fixture("");
    let svc = std::sync::Arc::new(f.svc);
    let secret = provision(&svc, "u");
    svc.activate("u", &code(&svc, &secret, NOW), NOW)
        .expect("activate");
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
fn everything_survives_a_reopen_and_secrets_stay_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_secret;
    {
        let store = SledStore::open(dir.path()).expect("store");
        let svc = Service::new(&config(""), store, Sealer::from_key(&[9u8; 32]), NOW).expect("svc");
        raw_secret = provision(&svc, "u");
        svc.activate("u", &code(&svc, &raw_secret, NOW), NOW)
            .expect("activate");
        svc.add_user("other", "pw", NOW).expect("add");
        svc.store().wait_durable().expect("durable");
    }
    // The secret appears nowhere in the store's files, in any encoding we hand out.
    let b32 = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &raw_secret);
    let needles = [
        raw_secret.clone(),
        hex(&raw_secret).into_bytes(),
        b32.into_bytes(),
    ];
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read store file");
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "secret found in {}",
                entry.display()
            );
        }
    }
    let store = SledStore::open(dir.path()).expect("reopen");
    let svc = Service::new(&config(""), store, Sealer::from_key(&[9u8; 32]), NOW).expect("svc");
    let users = svc.list(NOW).expect("list");
    assert_eq!(users.len(), 2);
    let u = svc.get("u").expect("u");
    assert_eq!(u.token.state(NOW), TokenState::Active);
    // The replay mark survived: the activation code is still refused.
    assert_eq!(
        svc.login("u", &format!("pw-of-{}", code(&svc, &raw_secret, NOW)), NOW),
        LoginOutcome::Reject(RejectReason::OtpReplayed)
    );
    // A store copied without the key reveals nothing: another key cannot open the secret.
    let store2 = svc.store().clone();
    drop(svc);
    let other = Service::new(&config(""), store2, Sealer::from_key(&[1u8; 32]), NOW).expect("svc");
    assert_eq!(
        other.login(
            "u",
            &format!("pw-of-{}", code(&other, &raw_secret, NOW + 60)),
            NOW + 60
        ),
        LoginOutcome::Reject(RejectReason::Store)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn import_is_all_or_nothing_and_legacy_hashes_upgrade_at_login() {
    let f = fixture("");
    let svc = &f.svc;
    svc.add_user("existing", "pw", NOW).expect("add");
    let sha = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    let bc = bcrypt::hash_with_salt("bc-pw", 4, [3u8; 16])
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoB);
    let row = |line, id: &str, hash: &str| ImportRow {
        line,
        login_id: id.into(),
        password_hash: hash.into(),
        email: Some(format!("{id}@example.jp")),
    };
    // A bad row anywhere imports nothing, and the error names its line.
    let bad = [row(2, "a", sha), row(3, "b", "plaintext")];
    let e = svc.import(&bad, NOW).expect_err("refused");
    assert!(e.to_string().starts_with("line 3:"), "{e}");
    assert!(
        svc.store().get_user("a").expect("read").is_none(),
        "nothing imported"
    );
    let dup = [row(2, "a", sha), row(3, "existing", sha)];
    assert!(svc
        .import(&dup, NOW)
        .expect_err("refused")
        .to_string()
        .contains("line 3"));
    let twice = [row(2, "a", sha), row(5, "a", sha)];
    assert!(svc
        .import(&twice, NOW)
        .expect_err("refused")
        .to_string()
        .contains("line 5"));
    // A good file imports every row.
    let good = [row(2, "a", sha), row(3, "b", &bc)];
    assert_eq!(svc.import(&good, NOW), Ok(2));
    // The legacy hash verifies as it is, and is replaced by argon2id on success.
    assert_eq!(
        svc.login("a", "wrong", NOW),
        LoginOutcome::Reject(RejectReason::BadPassword)
    );
    assert!(
        svc.get("a").expect("a").password_hash.starts_with("$6$"),
        "unchanged after a failure"
    );
    assert_eq!(
        svc.login("a", "secret", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert!(svc
        .get("a")
        .expect("a")
        .password_hash
        .starts_with("$argon2id$"));
    assert_eq!(
        svc.login("a", "secret", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert_eq!(
        svc.login("b", "bc-pw", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert!(svc
        .get("b")
        .expect("b")
        .password_hash
        .starts_with("$argon2id$"));
}

#[test]
fn backup_restores_into_an_empty_store() {
    let f = fixture("");
    let svc = &f.svc;
    let secret = provision(svc, "u");
    svc.activate("u", &code(svc, &secret, NOW), NOW)
        .expect("activate");
    let rows = svc.backup().expect("backup");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("store");
    let raw: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.tree.clone(),
                crate::seal::unhex(&r.key).expect("hex"),
                crate::seal::unhex(&r.value).expect("hex"),
            )
        })
        .collect();
    store.restore(&raw).expect("restore");
    let restored =
        Service::new(&config(""), store, Sealer::from_key(&[9u8; 32]), NOW).expect("svc");
    assert_eq!(
        restored.view(&restored.get("u").expect("u"), NOW).state,
        TokenState::Active
    );
    let used = format!("pw-of-{}", code(svc, &secret, NOW));
    assert_eq!(
        restored.login("u", &used, NOW),
        LoginOutcome::Reject(RejectReason::OtpReplayed)
    );
    let t = NOW + 60;
    assert_eq!(
        restored.login("u", &format!("pw-of-{}", code(svc, &secret, t)), t),
        LoginOutcome::Accept { with_otp: true }
    );
}

#[test]
fn check_link_reports_without_counting() {
    let f = fixture("[token]\nsetup_max_attempts = 2\n");
    let svc = &f.svc;
    svc.add_user("u", "pw", NOW).expect("add");
    svc.issue("u", "u@example.jp", "act-pass", NOW)
        .expect("issue");
    let job = last_mail(svc);
    assert_eq!(svc.check_link("0000", NOW), Err(OpError::UnknownLink));
    for _ in 0..5 {
        assert_eq!(svc.check_link(&job.code, NOW), Ok(()), "never counted");
    }
    assert_eq!(
        svc.check_link(&job.code, NOW + 72 * 3600),
        Err(OpError::LinkGone)
    );
    for _ in 0..2 {
        let _ = svc.enroll(&job.code, "TEST-BANK", "u", "x", NOW);
    }
    assert_eq!(svc.check_link(&job.code, NOW), Err(OpError::LinkExhausted));
    svc.issue("u", "u@example.jp", "act-pass", NOW)
        .expect("reissue");
    let job2 = last_mail(svc);
    svc.enroll(&job2.code, "TEST-BANK", "u", "act-pass", NOW)
        .expect("enroll");
    assert_eq!(svc.check_link(&job2.code, NOW), Err(OpError::LinkGone));
}

#[test]
fn renewal_failures_never_lock_logins_and_hide_the_expiry() {
    let f = fixture("[otp]\nmax_failures = 3\n");
    let svc = &f.svc;
    let secret = provision(svc, "u");
    svc.activate("u", &code(svc, &secret, NOW), NOW)
        .expect("activate");
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
    // ... the administrator sees it ...
    let v = svc.view(&svc.get("u").expect("u"), t);
    assert!(v.renewal_locked);
    assert_eq!(v.renewal_failures, 3);
    // ... but logins are not locked.
    assert!(!v.locked);
    assert_eq!(
        svc.login("u", &format!("pw-of-{}", code(svc, &secret, t)), t),
        LoginOutcome::Accept { with_otp: true }
    );
    // `token unlock` clears the renewal lock too.
    let v = svc.unlock("u", t).expect("unlock");
    assert!(!v.renewal_locked && v.renewal_failures == 0);
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
