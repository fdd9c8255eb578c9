//! The customer's doors against a thief who knows the login password only: the OTP menu's
//! issuance and cancellation, its sessions, an expired token's code and the missing-OTP
//! answer, through the real otpd with mail to files.

use std::path::Path;
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{wait_until, Otpd, DEADLINE};
use otpd_testkit::http;
use otpd_testkit::oath::{now, oathtool};
use serde_json::{json, Value};

const PW: &str = "login-pw-1";
const ACT: &str = "act-pass-2468";
const DAY: i64 = 86_400;

fn site(extra: &str) -> Otpd {
    Otpd::builder()
        .config("[log]\nlevel = \"debug\"\n[radius]\nreject_delay_ms = 400\n")
        .config(extra)
        .start()
}

/// Every mail otpd wrote so far: (recipients, text with quoted-printable soft breaks and
/// `=3D` undone).
fn mails(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_else(|_| Vec::new());
    names.sort();
    names
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| {
            let text = t
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            let to = text
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap_or_default()
                .to_string();
            (to, text)
        })
        .collect()
}

fn mail_dir(otpd: &Otpd) -> std::path::PathBuf {
    otpd.path("mail")
}

/// The newest setup link code sent to `to`, once the mailer has written it.
fn link_code(otpd: &Otpd, to: &str) -> String {
    wait_until(&format!("a setup mail to {to}"), DEADLINE, || {
        let all = mails(&mail_dir(otpd));
        let (_, text) = all
            .iter()
            .rev()
            .find(|(t, x)| t.contains(to) && x.contains("/enroll/"))?;
        let at = text.find("/enroll/")? + "/enroll/".len();
        Some(
            text[at..]
                .chars()
                .take_while(char::is_ascii_hexdigit)
                .collect(),
        )
    })
}

/// Signs in to the menu; (status, body, cookie).
fn sign_in(otpd: &Otpd, who: &str, pw: &str, otp: &str) -> (u16, Value, String) {
    let r = http::post_json(
        otpd.http(),
        "/api/v1/my/sign-in",
        &json!({"login_id": who, "password": pw, "otp": otp}),
    );
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    (r.status, r.json(), cookie)
}

fn status(otpd: &Otpd, cookie: &str) -> http::Response {
    http::request(
        otpd.http(),
        "GET",
        "/api/v1/my/status",
        &[("Cookie", cookie)],
        b"",
    )
}

fn post(otpd: &Otpd, cookie: &str, csrf: &str, path: &str, body: Value) -> http::Response {
    let body = body.to_string();
    http::request(
        otpd.http(),
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("X-CSRF-Token", csrf),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// A customer with an active token: its secret (base32).
fn active(otpd: &Otpd, who: &str) -> String {
    otpd.admin_ok(json!({"op": "user_add", "login_id": who, "password": PW}));
    let email = format!("{who}@docomo.ne.jp");
    otpd.admin_ok(json!({
        "op": "token_issue", "login_id": who, "email": email, "activation_password": ACT
    }));
    let code = link_code(otpd, &email);
    let r = http::post_json(
        otpd.http(),
        &format!("/api/v1/enroll/{code}"),
        &json!({"service_id": "TEST-BANK", "user_id": who, "activation_password": ACT}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().expect("secret").to_string();
    otpd.admin_ok(json!({
        "op": "token_activate", "login_id": who, "otp": oathtool(&secret, Some(now()))
    }));
    secret
}

/// Row 1: for a pending setup the bank registered, the password alone opens a menu
/// session, but that session can send no link to another address, cannot replace or
/// cancel the setup within the cool-down, and issuing clears no lock.
#[test]
fn a_password_alone_cannot_reroute_the_second_factor() {
    let otpd = site("");
    let victim = "victim@docomo.ne.jp";
    otpd.admin_ok(json!({"op": "user_add", "login_id": "hanako", "password": PW}));
    otpd.admin_ok(json!({
        "op": "token_issue", "login_id": "hanako", "email": victim, "activation_password": ACT
    }));
    let bank_link = link_code(&otpd, victim);

    let (code, st, cookie) = sign_in(&otpd, "hanako", PW, "");
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["state"], "issued");
    let csrf = st["csrf_token"].as_str().expect("csrf").to_string();
    assert_eq!(
        st["actions"],
        json!([]),
        "a password-only session is offered neither issue nor cancel: {st}"
    );
    let issue = |email: &str| {
        post(
            &otpd,
            &cookie,
            &csrf,
            "/api/v1/my/issue",
            json!({"email": email, "email_confirmation": email,
                   "activation_password": "thief-pass", "activation_password_confirmation": "thief-pass"}),
        )
    };
    let r = issue("thief@evil.example");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("email_change_refused")),
        "{}",
        r.text()
    );
    let r = issue(victim);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("pending_setup_protected")),
        "{}",
        r.text()
    );
    let r = post(
        &otpd,
        &cookie,
        &csrf,
        "/api/v1/my/cancel",
        json!({"confirm": true}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("pending_setup_protected")),
        "{}",
        r.text()
    );
    let log = otpd.stderr();
    assert!(
        log.contains("menu=issue user=hanako outcome=email_change_refused"),
        "the refusal is audited: {log}"
    );
    // Nothing reached the thief, and the bank's link still sets up the victim's phone.
    assert!(
        mails(&mail_dir(&otpd))
            .iter()
            .all(|(to, _)| !to.contains("evil.example")),
        "no mail to the thief"
    );
    let r = http::post_json(
        otpd.http(),
        &format!("/api/v1/enroll/{bank_link}"),
        &json!({"service_id": "TEST-BANK", "user_id": "hanako", "activation_password": ACT}),
    );
    assert_eq!(r.status, 200, "the bank's link still works: {}", r.text());

    // Past the cool-down the customer may ask again, to the registered address only; the
    // registered address hears of it.
    let mut otpd = otpd;
    otpd.stop_clean();
    otpd.relaunch_with_clock(4 * DAY);
    let (code, st, cookie) = sign_in(&otpd, "hanako", PW, "");
    assert_eq!(code, 200, "{st}");
    assert_eq!(
        st["actions"],
        json!(["issue", "activate", "cancel"]),
        "{st}"
    );
    let csrf = st["csrf_token"].as_str().expect("csrf").to_string();
    let r = post(
        &otpd,
        &cookie,
        &csrf,
        "/api/v1/my/issue",
        json!({"email": victim, "email_confirmation": victim,
               "activation_password": ACT, "activation_password_confirmation": ACT}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("the re-issuance notice", DEADLINE, || {
        mails(&mail_dir(&otpd))
            .into_iter()
            .any(|(to, text)| to.contains(victim) && text.contains("was issued again"))
            .then_some(())
    });

    // Issuing never clears a lock.
    for _ in 0..5 {
        let (code, _, _) = sign_in(&otpd, "hanako", "wrong-pw", "");
        assert_eq!(code, 401);
    }
    assert_eq!(otpd.admin_show("hanako")["locked"], true);
    otpd.admin_ok(json!({
        "op": "token_issue", "login_id": "hanako", "email": victim, "activation_password": ACT
    }));
    assert_eq!(
        otpd.admin_show("hanako")["locked"],
        true,
        "an issuance left the lock"
    );
}

/// Row 2: a menu cookie dies with a password change, an issuance, a lock, and a delete
/// followed by the same login ID added again.
#[test]
fn menu_sessions_end_with_the_credentials() {
    let otpd = site("");
    otpd.admin_ok(json!({"op": "user_add", "login_id": "jiro", "password": PW}));
    let fresh = |otpd: &Otpd| {
        let (code, st, cookie) = sign_in(otpd, "jiro", PW, "");
        assert_eq!(code, 200, "{st}");
        assert_eq!(status(otpd, &cookie).status, 200);
        cookie
    };

    let c = fresh(&otpd);
    otpd.ctl_ok(
        &["user", "passwd", "jiro", "--password-stdin"],
        &format!("{PW}\n"),
    );
    assert_eq!(status(&otpd, &c).status, 401, "after a password change");

    let c = fresh(&otpd);
    otpd.admin_ok(json!({
        "op": "token_issue", "login_id": "jiro", "email": "jiro@docomo.ne.jp",
        "activation_password": ACT
    }));
    assert_eq!(status(&otpd, &c).status, 401, "after an issuance");

    let c = fresh(&otpd);
    for _ in 0..5 {
        assert_eq!(sign_in(&otpd, "jiro", "wrong-pw", "").0, 401);
    }
    assert_eq!(status(&otpd, &c).status, 401, "while locked");
    otpd.admin_ok(json!({"op": "token_unlock", "login_id": "jiro"}));
    assert_eq!(status(&otpd, &c).status, 401, "after the unlock too");

    let c = fresh(&otpd);
    otpd.admin_ok(json!({"op": "user_delete", "login_id": "jiro"}));
    otpd.admin_ok(json!({"op": "user_add", "login_id": "jiro", "password": PW}));
    assert_eq!(
        status(&otpd, &c).status,
        401,
        "a new user of the same login ID"
    );
}

/// Row 3: an expired token's code gives one menu sign-in, audited `expired`, and is
/// spent: neither a second sign-in nor a renewal takes it again.
#[test]
fn an_expired_tokens_code_signs_in_once() {
    let mut otpd = site("");
    let secret = active(&otpd, "ume");
    otpd.stop_clean();
    let ahead = 1462 * DAY;
    otpd.relaunch_with_clock(ahead);
    let code = oathtool(&secret, Some(now() + ahead));
    let (status_code, st, cookie) = sign_in(&otpd, "ume", PW, &code);
    assert_eq!(status_code, 200, "{st}");
    assert_eq!(st["state"], "expired");
    assert!(st["actions"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("renew"))));
    let again = sign_in(&otpd, "ume", PW, &code);
    assert_eq!(again.0, 401, "the same code twice: {}", again.1);
    let csrf = st["csrf_token"].as_str().expect("csrf");
    let r = post(
        &otpd,
        &cookie,
        csrf,
        "/api/v1/my/renew",
        json!({"otp": code}),
    );
    assert_eq!(r.status, 401, "renewal with the spent code: {}", r.text());
    let log = otpd.stderr();
    assert!(
        log.contains("menu=sign_in user=ume outcome=expired"),
        "audited as expired: {log}"
    );
}

/// Row 4: the right password without the OTP of a token in use is answered after the
/// same floor as a wrong one, audited, and counted on the lock. Row 13: an early renewal's
/// proven code is spent.
#[test]
fn a_missing_otp_is_floored_audited_and_counted_and_an_early_renewal_spends_its_code() {
    let otpd = site("");
    let secret = active(&otpd, "kiku");
    let started = Instant::now();
    let (code, body, _) = sign_in(&otpd, "kiku", PW, "");
    assert_eq!((code, body["error"].clone()), (401, json!("otp_required")));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered after {:?}, before the refusal floor",
        started.elapsed()
    );
    assert!(
        otpd.stderr()
            .contains("menu=sign_in user=kiku outcome=otp_required"),
        "audited"
    );
    assert_eq!(otpd.admin_show("kiku")["failures"], 1, "counted");

    // The next step's code (the window takes one ahead): the current one started the use.
    let c = oathtool(&secret, Some(now() + 60));
    let r = http::post_json(
        otpd.http(),
        "/api/v1/renew",
        &json!({"service_id": "TEST-BANK", "user_id": "kiku", "otp": c}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"], "renewal_not_yet_available");
    // The same code now signs in nowhere: it was spent.
    let (code, body, _) = sign_in(&otpd, "kiku", PW, &c);
    assert_eq!(code, 401, "{body}");
}
