use super::*;

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
        svc.setup(&job.code, "OTHER", "taro", "act-pass", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "jiro", "act-pass", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "taro", "nope", NOW),
        Err(OpError::SetupRefused)
    );
    assert_eq!(
        svc.setup("0000", "TEST-BANK", "taro", "act-pass", NOW),
        Err(OpError::UnknownLink)
    );
    let e = svc
        .setup(&job.code, "TEST-BANK", "taro", "act-pass", NOW)
        .expect("enroll");
    // The URI is totp-rs's (parameters in its order, the format's defaults left out):
    // checked part by part, and against the reply's own fields.
    let (label, query) = e
        .otpauth_uri
        .strip_prefix("otpauth://totp/")
        .and_then(|r| r.split_once('?'))
        .unwrap_or_else(|| panic!("{}", e.otpauth_uri));
    assert_eq!(label, "TEST-BANK:taro");
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').expect("key=value"))
        .collect();
    let get = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("secret"), Some(e.secret.as_str()));
    assert_eq!(get("issuer"), Some("TEST-BANK"));
    assert_eq!(get("period"), Some("60"));
    assert_eq!(get("digits").unwrap_or("6"), "6");
    assert_eq!(get("algorithm").unwrap_or("SHA1"), "SHA1");
    assert!(
        params
            .iter()
            .all(|(k, _)| ["secret", "issuer", "period", "digits", "algorithm"].contains(k)),
        "{}",
        e.otpauth_uri
    );
    assert_eq!((e.period, e.digits, e.algorithm.as_str()), (60, 6, "SHA1"));
    assert_eq!(
        svc.setup(&job.code, "TEST-BANK", "taro", "act-pass", NOW),
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
fn everything_survives_a_reopen_and_secrets_stay_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_secret;
    {
        let store = SledStore::open(dir.path()).expect("store");
        let svc = Service::new(&config(""), store, Sealer::from_key(&[9u8; 32]), NOW).expect("svc");
        raw_secret = active(&svc, "u");
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
