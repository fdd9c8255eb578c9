//! The HTTP front door and the mailer, driven from outside: the real otpd, a real SMTP
//! relay (aiosmtpd), oathtool for one-time passwords, headless chromium at phone size,
//! rsvg-convert + zbarimg to scan the QR code, libfaketime to move otpd's clock.
//!
//! Needs `cargo build --workspace --bins` first and the Debian packages that `scripts/install-test-deps` installs.

use std::time::Duration;

use otpd_testkit::daemon::{wait_until, Otpd, DEADLINE};
use otpd_testkit::http::{self, html_unescape};
use otpd_testkit::oath::{now, oathtool, oathtool_next, rfc3339};
use otpd_testkit::paths::{artifacts_dir, tool};
use otpd_testkit::smtp::{setup_link, Mail, SmtpSink};
use otpd_testkit::tools;
use serde_json::{json, Value};

const SID: &str = "EXAMPLE-BANK";
const ACT: &str = "act-pass-2468";
const DAY: i64 = 86_400;

/// An otpd as a bank's customers meet it, not started: mail over SMTP (start the relay on
/// its `smtp_port()` first), debug logging, `extra` merged over the config.
fn unstarted(extra: &str) -> Otpd {
    Otpd::builder()
        .smtp()
        .config(&format!(
            "service_id = \"{SID}\"\n[log]\nlevel = \"debug\"\n"
        ))
        .config(extra)
        .unstarted()
}

fn add_and_issue(otpd: &Otpd, who: &str) -> String {
    let email = format!("{who}@docomo.ne.jp");
    otpd.admin_ok(json!({"op": "user_add", "login_id": who, "password": "login-pw"}));
    let issued = otpd.admin_ok(json!({
        "op": "token_issue", "login_id": who, "email": email, "activation_password": ACT
    }));
    assert_eq!(issued["user"]["state"], "issued", "{issued}");
    email
}

fn setup_json(otpd: &Otpd, code: &str, sid: &str, uid: &str, pw: &str) -> http::Response {
    http::post_json(
        otpd.http(),
        &format!("/api/v1/enroll/{code}"),
        &json!({"service_id": sid, "user_id": uid, "activation_password": pw}),
    )
}

fn assert_guarded(r: &http::Response) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'")));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

/// The setup success page's headers: the pages' policy plus same-origin scripts (the token
/// app's import), never inline ones.
fn assert_guarded_with_scripts(r: &http::Response) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page"))
        + start.len();
    let j = html[i..].find(end).expect("end marker") + i;
    &html[i..j]
}

/// The otpauth URI a success page shows.
fn page_uri(html: &str) -> String {
    html_unescape(between(html, "<dd class=\"uri\" id=\"uri\">", "</dd>"))
}

fn secret_of(uri: &str) -> String {
    between(uri, "secret=", "&").to_string()
}

fn group4(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_issuance_mail(mail: &Mail, otpd: &Otpd, who: &str) {
    assert_eq!(mail.to, format!("{who}@docomo.ne.jp"));
    assert!(
        mail.from.contains("otp@example-bank.invalid"),
        "{}",
        mail.from
    );
    assert!(
        mail.subject.contains("【EXAMPLE-BANK】"),
        "{}",
        mail.subject
    );
    assert!(mail.subject.contains("One-time password setup"));
    assert_eq!(mail.content_type, "text/plain");
    assert_eq!(mail.charset, "utf-8");
    let b = &mail.body;
    let ja = b.find("初期設定URL").expect("Japanese text");
    let en = b.find("Setup link").expect("English text");
    assert!(ja < en, "Japanese first:\n{b}");
    assert!(b.contains(&format!("サービスID　　　　: {SID}")), "{b}");
    assert!(b.contains(&format!("ログインID（{who}）")), "{b}");
    assert!(b.contains("（日本時間）"), "{b}");
    let link = format!("{}/enroll/", otpd.url(""));
    assert_eq!(b.matches(&link).count(), 2, "link in both languages:\n{b}");
}

/// トークン発行 → mail → 初期設定 (JSON and form) → 利用開始, with every refusal the
/// customer can meet on the way.
#[test]
fn setup_from_the_mailed_link_to_start_of_use() {
    let mut otpd = unstarted("");
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("mailbox"));
    otpd.launch();
    for who in ["taro", "jiro", "saburo"] {
        add_and_issue(&otpd, who);
    }
    let mail = sink.wait_for("taro@docomo.ne.jp", DEADLINE);
    check_issuance_mail(&mail, &otpd, "taro");
    let (path, code) = setup_link(&mail.body);
    assert_eq!(code.len(), 40, "160-bit code");

    let page = http::get(otpd.http(), &path);
    assert_eq!(page.status, 200);
    assert_guarded(&page);
    let html = page.text();
    assert!(html.contains("name=\"service_id\""), "{html}");
    assert!(html.contains("name=\"user_id\""));
    assert!(html.contains("name=\"activation_password\" value=\"\" required type=\"password\""));
    assert!(!html.contains("<script"));

    for (sid, uid, pw) in [
        ("OTHER-BANK", "taro", ACT),
        (SID, "jiro", ACT),
        (SID, "taro", "wrong-pass"),
    ] {
        let r = setup_json(&otpd, &code, sid, uid, pw);
        assert_eq!(r.status, 401, "{sid}/{uid}: {}", r.text());
        assert_eq!(r.json()["error"], "setup_refused");
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_guarded(&r);
    }
    let ok = setup_json(&otpd, &code, SID, "taro", ACT);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let e = ok.json();
    let secret = e["secret"].as_str().expect("secret").to_string();
    // totp-rs's URI: its parameter order, the format's defaults (SHA1, 6 digits) left out;
    // checked part by part rather than as one string.
    let uri = e["otpauth_uri"].as_str().expect("otpauth_uri");
    let (label, query) = uri
        .strip_prefix("otpauth://totp/")
        .and_then(|r| r.split_once('?'))
        .unwrap_or_else(|| panic!("{uri}"));
    assert_eq!(label, format!("{SID}:taro"));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').expect("key=value"))
        .collect();
    let get = |k: &str| params.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("secret"), Some(secret.as_str()), "{uri}");
    assert_eq!(get("issuer"), Some(SID), "{uri}");
    assert_eq!(get("period"), Some("60"), "{uri}");
    assert_eq!(get("digits").unwrap_or("6"), "6", "{uri}");
    assert_eq!(get("algorithm").unwrap_or("SHA1"), "SHA1", "{uri}");
    assert!(
        params
            .iter()
            .all(|(k, _)| ["secret", "issuer", "period", "digits", "algorithm"].contains(k)),
        "{uri}"
    );
    assert_eq!(
        (
            &e["period"],
            &e["digits"],
            &e["algorithm"],
            &e["issuer"],
            &e["account"]
        ),
        (
            &json!(60),
            &json!(6),
            &json!("SHA1"),
            &json!(SID),
            &json!("taro")
        )
    );
    let expires = rfc3339(e["expires_at"].as_str().expect("expires_at"));
    let now = now();
    assert!(
        (expires - (now + 1461 * DAY)).abs() < 120,
        "valid 1461 days"
    );
    let again = setup_json(&otpd, &code, SID, "taro", ACT);
    assert_eq!(again.status, 410);
    assert_eq!(again.json()["error"], "link_gone");
    assert_eq!(http::get(otpd.http(), &path).status, 410);
    assert_eq!(otpd.admin_show("taro")["state"], "provisioned");
    let unknown = setup_json(&otpd, &"0".repeat(40), SID, "taro", ACT);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "unknown_link");

    // jiro: five wrong answers kill the link; then even the right one is refused.
    let (jiro_path, jiro_code) = setup_link(&sink.wait_for("jiro@docomo.ne.jp", DEADLINE).body);
    let statuses: Vec<u16> = (0..5)
        .map(|_| setup_json(&otpd, &jiro_code, SID, "jiro", "guess").status)
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    let dead = setup_json(&otpd, &jiro_code, SID, "jiro", ACT);
    assert_eq!(dead.status, 429);
    assert_eq!(dead.json()["error"], "attempts_exhausted");
    assert_eq!(http::get(otpd.http(), &jiro_path).status, 429);

    // saburo: the form, as a phone browser sends it.
    let (saburo_path, saburo_code) =
        setup_link(&sink.wait_for("saburo@docomo.ne.jp", DEADLINE).body);
    let refused = http::post_form(
        otpd.http(),
        &saburo_path,
        &[
            ("service_id", SID),
            ("user_id", "saburo"),
            ("activation_password", "nope"),
        ],
    );
    assert_eq!(refused.status, 401);
    let html = refused.text();
    assert!(
        html.contains("利用開始パスワードが正しくありません"),
        "{html}"
    );
    assert!(html.contains("value=\"saburo\""), "typed user ID kept");
    assert!(!html.contains("nope"), "the password is never echoed");
    let done = http::post_form(
        otpd.http(),
        &saburo_path,
        &[
            ("service_id", SID),
            ("user_id", "saburo"),
            ("activation_password", ACT),
        ],
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert_guarded_with_scripts(&done);
    let html = done.text();
    assert!(html.contains("<svg"), "inline QR code");
    let uri = page_uri(&html);
    let saburo_secret = secret_of(&uri);
    assert!(html.contains(&group4(&saburo_secret)), "key in groups of 4");
    assert!(
        html.contains("年") && html.contains(" JST"),
        "expiry date shown"
    );

    // 利用開始 with codes from the secrets handed out.
    for (who, s) in [("taro", &secret), ("saburo", &saburo_secret)] {
        let wrong = otpd
            .admin(json!({"op": "token_activate", "login_id": who, "otp": "000000"}))
            .expect_err("a wrong code is refused");
        assert_eq!(wrong["error"], "bad_otp");
        let v = otpd.admin_ok(json!({
            "op": "token_activate", "login_id": who, "otp": oathtool(s, None)
        }));
        assert_eq!(v["state"], "active", "{v}");
        assert_eq!(otpd.admin_show(who)["state"], "active");
    }

    // The admin door is closed without API keys.
    assert_eq!(http::get(otpd.http(), "/api/v1/admin/status").status, 404);

    let log = otpd.stderr();
    assert!(log.contains("mail=sent user=taro"), "{log}");
    for c in [&code, &jiro_code, &saburo_code] {
        assert!(!log.contains(c.as_str()), "a link code reached the log");
    }
    assert!(!log.contains(&secret) && !log.contains(ACT));
}

/// The relay is down at issuance: the mail waits in the outbox, goes out once the relay
/// is back, and is not lost when otpd restarts meanwhile.
#[test]
fn mail_waits_for_the_relay_and_survives_a_restart() {
    let mut otpd = unstarted("");
    let mailbox = otpd.path("mailbox");
    otpd.launch();
    add_and_issue(&otpd, "hanako");
    wait_until("a failed delivery", DEADLINE, || {
        otpd.stderr()
            .contains("mail: delivery to user hanako failed (attempt 1)")
            .then_some(())
    });
    assert_eq!(otpd.admin_ok(json!({"op": "status"}))["mail_queued"], 1);
    let sink = SmtpSink::start(otpd.smtp_port(), &mailbox);
    // The next try is at most 10 s after the failure.
    let mail = sink.wait_for("hanako@docomo.ne.jp", Duration::from_secs(25));
    check_issuance_mail(&mail, &otpd, "hanako");
    wait_until("an empty outbox", DEADLINE, || {
        (otpd.admin_ok(json!({"op": "status"}))["mail_queued"] == 0).then_some(())
    });
    sink.stop();

    add_and_issue(&otpd, "kenji");
    wait_until("a failed delivery", DEADLINE, || {
        otpd.stderr()
            .contains("mail: delivery to user kenji failed (attempt 1)")
            .then_some(())
    });
    otpd.stop_clean();
    let sink = SmtpSink::start(otpd.smtp_port(), &mailbox);
    otpd.launch();
    // Right after start, not after the backoff: a restart retries everything queued.
    let mail = sink.wait_for("kenji@docomo.ne.jp", Duration::from_secs(8));
    check_issuance_mail(&mail, &otpd, "kenji");
    let (path, _) = setup_link(&mail.body);
    assert_eq!(http::get(otpd.http(), &path).status, 200, "the link works");
    wait_until("an empty outbox", DEADLINE, || {
        (otpd.admin_ok(json!({"op": "status"}))["mail_queued"] == 0).then_some(())
    });
    let to_hanako = sink
        .received()
        .iter()
        .filter(|m| m.to.starts_with("hanako@"))
        .count();
    assert_eq!(to_hanako, 1, "delivered once");
}

/// 有効期限更新: refused too early with the date it opens, accepted inside the window and
/// after expiry; otpd and oathtool share a moved clock.
#[test]
fn renewal_follows_the_window_on_a_moved_clock() {
    let mut otpd = unstarted("");
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("mailbox"));
    otpd.launch();
    add_and_issue(&otpd, "ken");
    let (_, code) = setup_link(&sink.wait_for("ken@docomo.ne.jp", DEADLINE).body);
    let e = setup_json(&otpd, &code, SID, "ken", ACT).json();
    let secret = e["secret"].as_str().expect("secret").to_string();
    otpd.admin_ok(
        json!({"op": "token_activate", "login_id": "ken", "otp": oathtool(&secret, None)}),
    );
    let shown = otpd.admin_show("ken");
    let expires = rfc3339(shown["expires_at"].as_str().expect("expires_at"));

    let renew = |otpd: &Otpd, otp: &str| {
        http::post_json(
            otpd.http(),
            "/api/v1/renew",
            &json!({"service_id": SID, "user_id": "ken", "otp": otp}),
        )
    };
    let early = renew(&otpd, &oathtool_next(&secret));
    assert_eq!(early.status, 409, "{}", early.text());
    let j = early.json();
    assert_eq!(j["error"], "renewal_not_yet_available");
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        rfc3339(j["available_from"].as_str().expect("available_from")),
        expires - 30 * DAY
    );
    // That code is spent now (an early renewal spends what it proved): the page is shown a
    // later one, on a clock two minutes on.
    let spent = renew(&otpd, &oathtool_next(&secret));
    assert_eq!(spent.status, 401, "{}", spent.text());
    otpd.stop_clean();
    otpd.relaunch_with_clock(120);
    let page = http::post_form(
        otpd.http(),
        "/renew",
        &[
            ("service_id", SID),
            ("user_id", "ken"),
            ("otp", &oathtool(&secret, Some(now() + 120))),
        ],
    );
    assert_eq!(page.status, 409);
    assert!(page.text().contains("まだできません"), "{}", page.text());
    assert_eq!(http::get(otpd.http(), "/renew").status, 200);
    otpd.stop_clean();

    // 1435 days on: inside the 30-day window before day 1461.
    let clock = 1435 * DAY;
    otpd.relaunch_with_clock(clock);
    assert_eq!(otpd.admin_show("ken")["renewal_available"], true);
    let bad = renew(&otpd, "000000");
    assert_eq!(bad.status, 401, "{}", bad.text());
    assert_eq!(bad.json()["error"], "bad_otp");
    let ok = renew(&otpd, &oathtool(&secret, Some(now() + clock)));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let renewed = rfc3339(ok.json()["expires_at"].as_str().expect("expires_at"));
    assert_eq!(
        renewed,
        expires + 1461 * DAY,
        "extended from the old expiry"
    );
    otpd.stop_clean();

    // Past the renewed expiry (day 2922): expired, and renewal still works, by the page.
    let clock = 2950 * DAY;
    otpd.relaunch_with_clock(clock);
    let before = otpd.admin_show("ken");
    assert_eq!(before["state"], "expired", "{before}");
    let page = http::post_form(
        otpd.http(),
        "/renew",
        &[
            ("service_id", SID),
            ("user_id", "ken"),
            ("otp", &oathtool(&secret, Some(now() + clock))),
        ],
    );
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("有効期限を更新しました"));
    let after = otpd.admin_show("ken");
    assert_eq!(after["state"], "active", "{after}");
    let new_expiry = rfc3339(after["expires_at"].as_str().expect("expires_at"));
    // max(now, expires_at) + 1461 days, with now = day 2950.
    let fake_now = now() + 2950 * DAY;
    assert!(
        (new_expiry - (fake_now + 1461 * DAY)).abs() < 300,
        "renewed from now, not from the old expiry"
    );
}

/// What a phone shows: the setup page, the success page with a scannable QR code, and
/// the renewal page, by headless chromium at 390×844. Screenshots are kept in
/// `target/test-artifacts/`.
#[test]
fn setup_pages_on_a_phone_screen() {
    let mut otpd = unstarted("");
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("mailbox"));
    otpd.launch();
    add_and_issue(&otpd, "yuki");
    let (path, _) = setup_link(&sink.wait_for("yuki@docomo.ne.jp", DEADLINE).body);
    let art = artifacts_dir();
    let profile = otpd.path("chromium-profile");

    let form_png = art.join("web-enroll-page.png");
    tools::phone_screenshot(&otpd.url(&path), &form_png, &profile);
    assert_eq!(tools::png_size(&form_png), (390, 844));

    let done = http::post_form(
        otpd.http(),
        &path,
        &[
            ("service_id", SID),
            ("user_id", "yuki"),
            ("activation_password", ACT),
        ],
    );
    assert_eq!(done.status, 200);
    let html_file = art.join("web-enroll-success.html");
    std::fs::write(&html_file, done.body.as_slice()).expect("save page");
    let done_png = art.join("web-enroll-success.png");
    tools::phone_screenshot(
        &format!("file://{}", html_file.display()),
        &done_png,
        &profile,
    );
    assert_eq!(tools::png_size(&done_png), (390, 844));
    // The QR code is on the first screen and scans from the phone-sized rendering.
    assert_eq!(tools::scan_qr(&done_png), page_uri(&done.text()));

    let renew_png = art.join("web-renew-page.png");
    tools::phone_screenshot(&otpd.url("/renew"), &renew_png, &profile);
    assert_eq!(tools::png_size(&renew_png), (390, 844));
}

/// The inline SVG decodes to exactly the otpauth URI the page and the API show.
#[test]
fn qr_code_scans_to_the_otpauth_uri() {
    let mut otpd = unstarted("");
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("mailbox"));
    otpd.launch();
    add_and_issue(&otpd, "mika");
    let (path, _) = setup_link(&sink.wait_for("mika@docomo.ne.jp", DEADLINE).body);
    let done = http::post_form(
        otpd.http(),
        &path,
        &[
            ("service_id", SID),
            ("user_id", "mika"),
            ("activation_password", ACT),
        ],
    );
    assert_eq!(done.status, 200);
    let html = done.text();
    let svg = format!("<svg{}</svg>", between(&html, "<svg", "</svg>"));
    let svg_file = otpd.path("qr.svg");
    std::fs::write(&svg_file, &svg).expect("write svg");
    let png = artifacts_dir().join("web-qr.png");
    tools::svg_to_png(&svg_file, &png);
    let uri = page_uri(&html);
    assert!(
        uri.starts_with("otpauth://totp/EXAMPLE-BANK:mika?secret="),
        "{uri}"
    );
    assert_eq!(tools::scan_qr(&png), uri);
    // The code it carries works for 利用開始.
    let v = otpd.admin_ok(json!({
        "op": "token_activate", "login_id": "mika", "otp": oathtool(&secret_of(&uri), None)
    }));
    assert_eq!(v["state"], "active");
}

/// `/api/v1/admin/…` with a bearer key: the admin socket's operations over HTTP, audited
/// as `api:<key name>`.
#[test]
fn admin_api_over_http_with_a_bearer_key() {
    let key = "kQ9-integration-key-7d1f0c2b";
    let mut otpd =
        unstarted("[[http.api_keys]]\nname = \"ib-frontend\"\nkey_file = \"ib-frontend.key\"\n");
    std::fs::write(
        otpd.path("ib-frontend.key"),
        format!("{key}\nsecond line ignored\n"),
    )
    .expect("key file");
    // otpd refuses a key file others may read (SECURITY.md).
    std::fs::set_permissions(
        otpd.path("ib-frontend.key"),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod key file");
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("mailbox"));
    otpd.launch();
    let bearer = format!("Bearer {key}");
    let call = |method: &str, path: &str, body: Option<Value>| {
        let b = body.map(|v| v.to_string()).unwrap_or_default();
        let mut h = vec![("Authorization", bearer.as_str())];
        if !b.is_empty() {
            h.push(("Content-Type", "application/json"));
        }
        http::request(otpd.http(), method, path, &h, b.as_bytes())
    };

    let anon = http::get(otpd.http(), "/api/v1/admin/status");
    assert_eq!(anon.status, 401);
    assert_eq!(anon.header("www-authenticate"), Some("Bearer"));
    let wrong = http::request(
        otpd.http(),
        "GET",
        "/api/v1/admin/status",
        &[("Authorization", "Bearer kQ9-integration-key-7d1f0c2c")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "unauthorized");

    let status = call("GET", "/api/v1/admin/status", None);
    assert_eq!(status.status, 200, "{}", status.text());
    assert_eq!(status.json()["kind"], "status");
    let add = call(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"login_id": "naoko", "password": "login-pw"})),
    );
    assert_eq!(add.status, 201, "{}", add.text());
    assert_eq!(add.json()["state"], "unregistered");
    let dup = call(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"login_id": "naoko", "password": "login-pw"})),
    );
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["error"], "user_exists");
    let issue = call(
        "POST",
        "/api/v1/admin/users/naoko/token/issue",
        Some(json!({"email": "naoko@au.example.jp", "activation_password": ACT})),
    );
    assert_eq!(issue.status, 200, "{}", issue.text());
    assert_eq!(issue.json()["kind"], "issued");
    let mail = sink.wait_for("naoko@au.example.jp", DEADLINE);
    let (_, code) = setup_link(&mail.body);
    let e = setup_json(&otpd, &code, SID, "naoko", ACT).json();
    let secret = e["secret"].as_str().expect("secret").to_string();
    let act = call(
        "POST",
        "/api/v1/admin/users/naoko/token/activate",
        Some(json!({"otp": oathtool(&secret, None)})),
    );
    assert_eq!(act.status, 200, "{}", act.text());
    assert_eq!(act.json()["state"], "active");
    let show = call("GET", "/api/v1/admin/users/naoko", None);
    assert_eq!(show.json()["state"], "active");
    let early = call("POST", "/api/v1/admin/users/naoko/token/renew", None);
    assert_eq!(early.status, 409);
    assert_eq!(early.json()["error"], "renewal_not_yet_available");
    let list = call("GET", "/api/v1/admin/users", None);
    assert_eq!(list.json()["users"].as_array().map(Vec::len), Some(1));
    // What the HTTP door did, the socket sees.
    assert_eq!(otpd.admin_show("naoko")["state"], "active");
    let del = call("DELETE", "/api/v1/admin/users/naoko", None);
    assert_eq!(del.status, 200);
    let gone = call("GET", "/api/v1/admin/users/naoko", None);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"], "unknown_user");

    let log = otpd.stderr();
    assert!(
        log.contains("admin=\"token issue\" actor=api:ib-frontend user=naoko outcome=ok"),
        "{log}"
    );
    assert!(!log.contains(key), "the API key never reaches the log");
}

/// With `tls_cert_file`/`tls_key_file`, otpd serves HTTPS itself.
#[test]
fn https_when_tls_files_are_configured() {
    let mut otpd = Otpd::builder()
        .smtp()
        .https()
        .config(&format!(
            "service_id = \"{SID}\"\n[log]\nlevel = \"debug\"\n"
        ))
        .config("[http]\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"")
        .unstarted();
    let out = std::process::Command::new(tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(otpd.path("tls.key"))
        .arg("-out")
        .arg(otpd.path("tls.crt"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    otpd.launch();
    let out = std::process::Command::new(tool("curl"))
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(otpd.path("tls.crt"))
        .arg(format!("https://{}/healthz", otpd.http()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    assert!(text.ends_with("ok"), "{text}");
}
