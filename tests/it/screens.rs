//! The customer's own screens in a real browser: the OTP menu (/my/) through the guide's
//! steps, and the token app (/app/) with its renewal menu. Headless chromium at phone size
//! over the DevTools protocol, a real SMTP relay, oathtool, radclient, libfaketime.
//!
//! Needs `cargo build --workspace --bins` first and the Debian packages that
//! `scripts/install-test-deps` installs.

use std::net::SocketAddr;
use std::time::Duration;

use otpd_testkit::cdp::{shot, Browser};
use otpd_testkit::daemon::{wait_until, Otpd, DEADLINE};
use otpd_testkit::freeradius;
use otpd_testkit::http;
use otpd_testkit::oath::{now, oathtool, rfc3339};
use otpd_testkit::smtp::{Mail, SmtpSink};
use serde_json::{json, Value};

const SID: &str = "EXAMPLE-BANK";
const LOGIN_PW: &str = "login-pw-1357";
const ACT: &str = "act-pass-2468";
const GW_SECRET: &str = "gateway-secret-9";
const DAY: i64 = 86_400;

/// The bank's otpd, not started: mail over SMTP (start the relay on its `smtp_port()`
/// first), debug logging, the internet bank's gateway as its one RADIUS client.
fn site() -> Otpd {
    Otpd::builder()
        .smtp()
        .config(&format!(
            "service_id = \"{SID}\"\n[log]\nlevel = \"debug\"\n"
        ))
        .radius_client("ib-gateway", GW_SECRET)
        .unstarted()
}

/// radclient's verdict for one PAP login through the bank's gateway.
fn radclient(server: SocketAddr, user: &str, password: &str) -> String {
    freeradius::radclient(
        server,
        GW_SECRET,
        &format!(
            "User-Name = \"{user}\"\nUser-Password = \"{password}\"\nMessage-Authenticator = 0x00\n"
        ),
    )
}

/// A customer `who` added by the admin, a token issued to `email`: the issuance mail.
fn issued(otpd: &Otpd, sink: &SmtpSink, who: &str, email: &str) -> Mail {
    otpd.admin_ok(json!({"op": "user_add", "login_id": who, "password": LOGIN_PW}));
    otpd.admin_ok(json!({
        "op": "token_issue", "login_id": who, "email": email, "activation_password": ACT
    }));
    sink.wait_for(email, DEADLINE)
}

/// The token app's link in an issuance mail.
fn app_link(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains("/app/#/setup/"))
        .unwrap_or_else(|| panic!("no token app link in the mail:\n{body}"))
        .to_string()
}

/// Setup in the app through the mail's link; returns the secret (read off the wire by
/// the DevTools protocol, as the test's independent check) and the token's expiry.
fn set_up_in_app(b: &mut Browser, link: &str, who: &str, shots: &str) -> (String, String) {
    b.open(link);
    b.wait_for("the setup form", "!document.getElementById('setup').hidden");
    b.screenshot(&shot(&format!("{shots}-app-setup")));
    // A wrong activation password first: refused, the fields stay, nothing is stored.
    b.fill("service_id", SID);
    b.fill("user_id", who);
    b.fill("activation_password", "wrong-pass");
    b.click("setup-button");
    b.wait_for("the refusal", "document.getElementById('error')");
    assert_eq!(
        b.eval("document.getElementById('user_id').value"),
        json!(who)
    );
    assert!(b.text().contains("利用開始パスワードが正しくありません"));
    b.screenshot(&shot(&format!("{shots}-app-setup-refused")));
    b.fill("activation_password", ACT);
    b.click("setup-button");
    b.wait_for(
        "the setup to finish",
        "document.getElementById('setup-done')",
    );
    assert!(b.text().contains("初期設定が正常に完了しました"));
    assert!(
        !b.url().contains("setup"),
        "the spent link leaves the address bar"
    );
    b.wait_for(
        "a code",
        "/^[0-9]{6}$/.test(document.getElementById('token-0-code').textContent)",
    );
    let reply: Value = serde_json::from_str(&b.response_body("/api/v1/enroll/")).expect("json");
    let secret = reply["secret"].as_str().expect("secret").to_string();
    let expires = reply["expires_at"]
        .as_str()
        .expect("expires_at")
        .to_string();
    assert_eq!(
        rfc3339(reply["renewal_available_from"].as_str().expect("from")),
        rfc3339(&expires) - 30 * DAY
    );
    (secret, expires)
}

/// The app's code and the time step it belongs to.
fn app_code(b: &mut Browser) -> (String, i64) {
    let v = b.wait_for(
        "a code",
        "(() => { const e = document.getElementById('token-0-code'); return /^[0-9]{6}$/.test(e.textContent) && [e.textContent, Number(e.dataset.step)]; })()",
    );
    (
        v[0].as_str().expect("code").to_string(),
        v[1].as_i64().expect("step"),
    )
}

#[test]
fn the_guide_from_sign_in_to_cancellation() {
    let mut otpd = site();
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("relay"));
    otpd.launch();
    let who = "taro";
    otpd.admin_ok(json!({"op": "user_add", "login_id": who, "password": LOGIN_PW}));
    let mut b = Browser::launch();

    // Sign-in: a wrong password is refused (and counted), the right one opens BOP001.
    b.open(&otpd.url("/my/"));
    b.screenshot(&shot("my-sign-in"));
    b.fill("login_id", who);
    b.fill("password", "not-the-password");
    b.click_and_wait("sign-in");
    assert_eq!(
        b.eval("document.getElementById('error').dataset.code"),
        json!("sign_in_refused")
    );
    assert_eq!(
        otpd.admin_show(who)["failures"],
        json!(1),
        "counted on the lock"
    );
    b.fill("password", LOGIN_PW);
    b.click_and_wait("sign-in");
    assert_eq!(
        b.eval("document.getElementById('state').dataset.state"),
        json!("unregistered")
    );
    assert!(b.text().contains("未登録"));
    assert_eq!(otpd.admin_show(who)["failures"], json!(0));
    b.screenshot(&shot("my-bop001-unregistered"));
    let cookie = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "otpd_my")
        .expect("the session cookie");
    assert_eq!(cookie["httpOnly"], json!(true));
    assert_eq!(cookie["sameSite"], json!("Strict"));
    let cookie = format!("otpd_my={}", cookie["value"].as_str().expect("value"));

    // A POST without the session's CSRF token is refused.
    let forged = http::request(
        otpd.http(),
        "POST",
        "/api/v1/my/cancel",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        br#"{"confirm":true}"#,
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(forged.json()["error"], "csrf_mismatch");

    // BOT001: the address twice (checked), the activation password twice (must match).
    b.click_and_wait("go-issue");
    b.screenshot(&shot("my-bot001"));
    fits_320(&mut b, "my-bot001");
    let email = format!("{who}@docomo.ne.jp");
    b.fill("email", &email);
    b.fill("email_confirmation", "taro@docomo.ne.jq");
    b.fill("activation_password", ACT);
    b.fill("activation_password_confirmation", ACT);
    b.click_and_wait("issue");
    assert_eq!(
        b.eval("document.getElementById('error').dataset.code"),
        json!("email_mismatch")
    );
    assert_eq!(
        b.eval("document.getElementById('email').value"),
        json!(email)
    );
    b.screenshot(&shot("my-bot001-refused"));
    for (addr, again, pw2, code) in [
        ("taro-at-docomo", "taro-at-docomo", ACT, "bad_email"),
        (
            email.as_str(),
            email.as_str(),
            "other-pass",
            "password_mismatch",
        ),
    ] {
        b.fill("email", addr);
        b.fill("email_confirmation", again);
        b.fill("activation_password", ACT);
        b.fill("activation_password_confirmation", pw2);
        // The browser checks the address's format too; the server's check is the one tested.
        b.eval("document.querySelector('form').noValidate = true");
        b.click_and_wait("issue");
        assert_eq!(
            b.eval("document.getElementById('error').dataset.code"),
            json!(code)
        );
    }
    assert_eq!(
        otpd.admin_show(who)["state"],
        "unregistered",
        "nothing issued yet"
    );
    b.fill("email", &email);
    b.fill("email_confirmation", &email);
    b.fill("activation_password", ACT);
    b.fill("activation_password_confirmation", ACT);
    b.click_and_wait("issue");
    // BOT002.
    assert_eq!(
        b.text_of("accepted").as_deref(),
        Some("上記内容でトークン発行を受付ました。")
    );
    assert_eq!(b.text_of("email").as_deref(), Some(email.as_str()));
    b.screenshot(&shot("my-bot002"));
    assert_eq!(otpd.admin_show(who)["state"], "issued");

    // The mail at the relay; its first link opens the token app.
    let mail = sink.wait_for(&email, DEADLINE);
    let link = app_link(&mail.body);
    assert!(
        mail.body.find("/app/#/setup/") < mail.body.find("/enroll/"),
        "the app comes first"
    );
    let (secret, _) = set_up_in_app(&mut b, &link, who, "flow");
    assert_eq!(otpd.admin_show(who)["state"], "provisioned");
    let (code, step) = app_code(&mut b);
    assert_eq!(code, oathtool(&secret, Some(step * 60)), "the app's code");
    let current = now() / 60;
    assert!(
        step == current || step == current - 1,
        "the app shows the current step: {step} vs {current}"
    );
    b.screenshot(&shot("app-code"));

    // The key is a non-extractable WebCrypto key, and it is the only copy.
    let stored = stored_token(&mut b);
    assert_eq!(stored["count"], 1);
    assert_eq!(stored["extractable"], false, "{stored}");
    assert_eq!(stored["usages"], json!(["sign"]));
    assert_eq!(stored["exported"], "refused:InvalidAccessError", "{stored}");
    assert!(
        !stored["fields"].to_string().contains("secret")
            && !stored["fields"].to_string().contains("otpauth"),
        "{stored}"
    );
    assert_eq!(
        (stored["local"].clone(), stored["session"].clone()),
        (json!(0), json!(0))
    );

    // Readable at 320 px: nothing wider than the screen.
    fits_320(&mut b, "app-code");

    // Start of use on the menu with the app's code.
    b.open(&otpd.url("/my/"));
    b.click_and_wait("go-activate");
    b.screenshot(&shot("my-activate"));
    b.fill("otp", "000000");
    b.click_and_wait("activate");
    assert!(b.exists("error"), "a wrong code is refused");
    b.open(&otpd.url("/app/"));
    let (code, _) = app_code(&mut b);
    b.open(&otpd.url("/my/activate"));
    b.fill("otp", &code);
    b.click_and_wait("activate");
    assert_eq!(
        b.eval("document.getElementById('state').dataset.state"),
        json!("active"),
        "{}",
        b.text()
    );
    assert!(b.text().contains("利用中"));
    b.screenshot(&shot("my-bop001-active"));
    fits_320(&mut b, "my-bop001-active");
    assert_eq!(otpd.admin_show(who)["state"], "active");

    // Once active, signing in needs the OTP too.
    let r = http::post_json(
        otpd.http(),
        "/api/v1/my/sign-in",
        &json!({"login_id": who, "password": LOGIN_PW}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("otp_required"))
    );

    // A RADIUS login with the app's code. The code just used is spent, so the app is
    // shown the next minute (the window accepts one step ahead).
    let moved = b.clock_script(60_000);
    b.open(&otpd.url("/app/"));
    let (next, next_step) = app_code(&mut b);
    b.remove_script(&moved);
    assert_ne!(next, code);
    assert_eq!(next, oathtool(&secret, Some(next_step * 60)));
    let port = otpd.radius();
    let verdict = radclient(port, who, &format!("{LOGIN_PW}{next}"));
    assert!(
        verdict.contains("Received Access-Accept"),
        "radclient: {verdict}"
    );
    let again = radclient(port, who, &format!("{LOGIN_PW}{next}"));
    assert!(
        again.contains("Received Access-Reject"),
        "a code is used once: {again}"
    );

    // Cancellation, with its confirmation step.
    b.open(&otpd.url("/my/"));
    b.click_and_wait("go-cancel");
    assert!(b.text().contains("よろしいですか"));
    assert_eq!(
        otpd.admin_show(who)["state"],
        "active",
        "not before confirming"
    );
    b.screenshot(&shot("my-cancel-confirm"));
    b.click_and_wait("cancel");
    assert_eq!(
        b.eval("document.getElementById('state').dataset.state"),
        json!("unregistered")
    );
    b.screenshot(&shot("my-bop001-cancelled"));
    assert_eq!(otpd.admin_show(who)["state"], "unregistered");

    // Sign-out ends the session everywhere: the same cookie, replayed, no longer works.
    let cookie = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "otpd_my")
        .map(|c| format!("otpd_my={}", c["value"].as_str().unwrap_or_default()))
        .expect("cookie");
    let before = http::request(
        otpd.http(),
        "GET",
        "/api/v1/my/status",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.json()["state_ja"], "未登録");
    b.click_and_wait("sign-out");
    assert!(b.exists("login_id"), "back at the sign-in form");
    b.screenshot(&shot("my-signed-out"));
    let after = http::request(
        otpd.http(),
        "GET",
        "/api/v1/my/status",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["error"], "not_signed_in");

    // No secret reached the log.
    let log = otpd.stderr();
    for s in [secret.as_str(), ACT, LOGIN_PW, &cookie["otpd_my=".len()..]] {
        assert!(!log.contains(s), "a secret is in the log");
    }
    let code_in_link = link.rsplit('/').next().expect("code");
    assert!(!log.contains(code_in_link));
}

#[test]
fn the_app_shows_its_renewal_menu_from_thirty_days_before_expiry() {
    let mut otpd = site();
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("relay"));
    otpd.launch();
    let who = "hanako";
    let email = format!("{who}@ezweb.ne.jp");
    let mail = issued(&otpd, &sink, who, &email);
    let mut b = Browser::launch();
    let (secret, expires) = set_up_in_app(&mut b, &app_link(&mail.body), who, "renewal");
    otpd.admin_ok(json!({
        "op": "token_activate", "login_id": who, "otp": oathtool(&secret, None)
    }));
    // A second token on the same phone: both are shown, each with its own code.
    let email2 = "jiro@ezweb.ne.jp";
    let mail2 = issued(&otpd, &sink, "jiro", email2);
    let (secret2, _) = set_up_in_app(&mut b, &app_link(&mail2.body), "jiro", "second");
    let codes = b.wait_for(
        "two codes",
        "(() => { const c = [...document.querySelectorAll('.code')]; return c.length === 2 && c.every((e) => /^[0-9]{6}$/.test(e.textContent)) && c.map((e) => [e.textContent, Number(e.dataset.step)]); })()",
    );
    for (i, s) in [&secret, &secret2].into_iter().enumerate() {
        let step = codes[i][1].as_i64().expect("step");
        assert_eq!(
            codes[i][0],
            json!(oathtool(s, Some(step * 60))),
            "token {i}"
        );
    }
    b.screenshot(&shot("app-two-tokens"));
    // Chromium's own judgement: the manifest, icon and service worker make it installable.
    let install = b.call("Page.getInstallabilityErrors", json!({}));
    assert_eq!(install["installabilityErrors"], json!([]), "{install}");
    // Removing one asks first; then only the other is left.
    b.click("token-1-remove");
    assert_eq!(
        b.eval("document.querySelectorAll('.token').length"),
        json!(2)
    );
    b.screenshot(&shot("app-remove-confirm"));
    b.click("token-1-remove-yes");
    b.wait_for("the removal", "document.getElementById('removed')");
    assert_eq!(
        b.eval("document.querySelectorAll('.token').length"),
        json!(1)
    );
    assert!(b.text().contains("EXAMPLE-BANK — hanako"));

    // The service worker has the app's files before otpd goes away.
    b.wait_for(
        "the service worker to hold the app",
        "(async () => !!navigator.serviceWorker.controller && !!(await caches.match('/app/app.js')))()",
    );
    let expires = rfc3339(&expires);

    let url = otpd.url("/app/");
    let (_, shown) = app_at(&mut b, &url, expires - 31 * DAY, "app-31-days-before");
    assert!(!shown, "no renewal menu 31 days before expiry");
    let (_, shown) = app_at(
        &mut b,
        &url,
        expires - 30 * DAY,
        "app-renewal-30-days-before",
    );
    assert!(shown, "the renewal menu 30 days before expiry");
    let (_, shown) = app_at(
        &mut b,
        &url,
        expires - 20 * DAY,
        "app-renewal-20-days-before",
    );
    assert!(shown, "the renewal menu 20 days before expiry");
    let (offset, shown) = app_at(&mut b, &url, expires + 10 * DAY, "app-renewal-expired");
    assert!(shown, "the renewal menu stays after expiry");

    // Renewal through the menu, 10 days after expiry, with otpd's clock moved as far.
    otpd.stop_clean();
    otpd.relaunch_with_clock(offset);
    assert_eq!(otpd.admin_show(who)["state"], "expired");
    let id = b.clock_script(offset * 1000);
    b.open(&otpd.url("/app/"));
    b.wait_for("the app", "document.body.dataset.ready === '1'");
    assert!(b.exists("token-0-expired"), "{}", b.text());
    let (code, step) = app_code(&mut b);
    assert_eq!(
        code,
        oathtool(&secret, Some(step * 60)),
        "codes still compute"
    );
    // The menu offers renewal too once it is open; signing in proves the code and spends
    // it, so the app renews with the next one (its clock a minute on; the window accepts
    // one step ahead).
    b.open(&otpd.url("/my/"));
    b.fill("login_id", who);
    b.fill("password", LOGIN_PW);
    b.fill("otp", &code);
    b.click_and_wait("sign-in");
    assert_eq!(
        b.eval("document.getElementById('state').dataset.state"),
        json!("expired"),
        "{}",
        b.text()
    );
    assert!(b.text().contains("有効期限切れ"));
    assert!(b.exists("go-renew"), "有効期限更新 on the menu");
    b.screenshot(&shot("my-bop001-expired"));

    b.remove_script(&id);
    let id = b.clock_script((offset + 60) * 1000);
    b.open(&otpd.url("/app/"));
    b.wait_for("the app", "document.body.dataset.ready === '1'");
    let (next, _) = app_code(&mut b);
    assert_ne!(next, code, "the app shows the next code");
    b.click("token-0-renew");
    b.wait_for("the renewal", "document.getElementById('renewed')");
    let user = otpd.admin_show(who);
    assert_eq!(user["state"], "active");
    let new_expiry = user["expires_at"].as_str().expect("expires_at").to_string();
    assert!(rfc3339(&new_expiry) >= now() + offset + 1461 * DAY - 120);
    assert_eq!(
        b.eval("document.getElementById('token-0-expires').dataset.expires"),
        json!(new_expiry),
        "the new expiry is shown"
    );
    assert!(b.text().contains("有効期限を更新しました"));
    assert!(
        !b.exists("token-0-renewal"),
        "the menu closes with the renewal"
    );
    b.screenshot(&shot("app-renewed"));
    b.open(&otpd.url("/my/"));
    assert_eq!(
        b.eval("document.getElementById('state').dataset.state"),
        json!("active")
    );
    assert!(!b.exists("go-renew"), "renewal closed again");
    b.remove_script(&id);

    // Offline after the first load: otpd is gone, the app still opens and shows codes.
    otpd.stop_clean();
    b.open(&otpd.url("/app/"));
    let (code, step) = app_code(&mut b);
    assert_eq!(code, oathtool(&secret, Some(step * 60)));
    b.screenshot(&shot("app-offline"));
    wait_until("nothing listening", Duration::from_secs(5), || {
        std::net::TcpStream::connect(otpd.http())
            .is_err()
            .then_some(())
    });
}

/// The setup form's way, on the phone: the link's `/enroll/{code}` page, the three fields,
/// and the success page's first button puts the token into the token app, which then
/// opens with it. The key is as non-extractable there as after the app's own setup.
#[test]
fn the_setup_success_page_adds_the_token_to_the_app() {
    let mut otpd = site();
    let sink = SmtpSink::start(otpd.smtp_port(), &otpd.path("relay"));
    otpd.launch();
    let who = "shiro";
    let email = format!("{who}@softbank.ne.jp");
    let mail = issued(&otpd, &sink, who, &email);
    let form_link = mail
        .body
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains("/enroll/"))
        .unwrap_or_else(|| panic!("no setup form link in the mail:\n{}", mail.body))
        .to_string();
    let mut b = Browser::launch();
    b.open(&form_link);
    b.screenshot(&shot("enroll-form"));
    fits_320(&mut b, "enroll-form");
    b.fill("service_id", SID);
    b.fill("user_id", who);
    b.fill("activation_password", ACT);
    b.click_and_wait("setup-button");
    assert!(
        b.text().contains("初期設定が正常に完了しました"),
        "{}",
        b.text()
    );
    b.wait_for(
        "the import button",
        "!document.getElementById('import').hidden",
    );
    // The page's own key (grouped by four), as the test's independent copy.
    let secret: String = b
        .text_of("key")
        .expect("the key")
        .split_whitespace()
        .collect();
    let order = b.eval(
        "(() => { const a = document.getElementById('import-app'), q = document.querySelector('.qr svg');
                  return !!(a.compareDocumentPosition(q) & Node.DOCUMENT_POSITION_FOLLOWING); })()",
    );
    assert_eq!(
        order,
        json!(true),
        "the token app first, the QR code second"
    );
    // On a computer the QR code is what the customer needs: it stays on the first screen.
    assert_eq!(
        b.eval("document.querySelector('.qr svg').getBoundingClientRect().bottom <= innerHeight"),
        json!(true),
        "the QR code on the first screen"
    );
    b.screenshot(&shot("enrolled"));
    fits_320(&mut b, "enrolled");

    b.click_and_wait("import-app");
    b.wait_for("the app", "document.body.dataset.ready === '1'");
    assert!(b.exists("setup-done"), "{}", b.text());
    assert_eq!(
        b.url(),
        otpd.url("/app/"),
        "nothing left in the address bar"
    );
    let (code, step) = app_code(&mut b);
    assert_eq!(code, oathtool(&secret, Some(step * 60)), "the app's code");
    b.screenshot(&shot("app-imported"));
    let stored = stored_token(&mut b);
    assert_eq!(stored["count"], 1, "{stored}");
    assert_eq!(stored["extractable"], false, "{stored}");
    assert_eq!(stored["usages"], json!(["sign"]));
    assert_eq!(stored["exported"], "refused:InvalidAccessError", "{stored}");
    assert_eq!(
        stored["fields"],
        json!([
            "account",
            "algorithm",
            "digits",
            "expires_at",
            "id",
            "issuer",
            "key",
            "period",
            "renewal_available_from"
        ])
    );
    assert_eq!(
        (&stored["issuer"], &stored["account"]),
        (&json!(SID), &json!(who))
    );
    assert_eq!(
        (&stored["period"], &stored["digits"], &stored["algorithm"]),
        (&json!(60), &json!(6), &json!("SHA1"))
    );
    let user = otpd.admin_show(who);
    assert_eq!(user["state"], "provisioned");
    let expires = user["expires_at"].as_str().expect("expires_at");
    assert_eq!(stored["expires_at"], json!(expires));
    let expires = rfc3339(expires);
    assert_eq!(
        rfc3339(stored["from"].as_str().expect("renewal_available_from")),
        expires - 30 * DAY
    );
    assert_eq!(
        (stored["local"].clone(), stored["session"].clone()),
        (json!(0), json!(0))
    );
    // The renewal menu works from the imported dates.
    let url = otpd.url("/app/");
    let (_, shown) = app_at(
        &mut b,
        &url,
        expires - 31 * DAY,
        "app-imported-31-days-before",
    );
    assert!(!shown, "no renewal menu 31 days before expiry");
    let (_, shown) = app_at(&mut b, &url, expires - 30 * DAY, "app-imported-renewal");
    assert!(shown, "the renewal menu 30 days before expiry");

    let log = otpd.stderr();
    assert!(
        !log.contains(&secret) && !log.contains(ACT),
        "a secret is in the log"
    );
}

/// What the token app keeps in the page's IndexedDB, read there: the count, the first
/// token's key (extractable, usages, whether exporting it is refused), its fields and
/// settings, and how much is in localStorage and sessionStorage.
fn stored_token(b: &mut Browser) -> Value {
    b.eval(
        "(async () => {
            const db = await new Promise((ok, no) => { const r = indexedDB.open('otpd-token-app'); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
            const all = await new Promise((ok) => { const q = db.transaction('tokens').objectStore('tokens').getAll(); q.onsuccess = () => ok(q.result); });
            const t = all[0];
            let exported = 'exported';
            try { await crypto.subtle.exportKey('raw', t.key); } catch (e) { exported = 'refused:' + e.name; }
            return { count: all.length, extractable: t.key.extractable, usages: t.key.usages, exported,
                     fields: Object.keys(t).sort(), issuer: t.issuer, account: t.account, period: t.period,
                     digits: t.digits, algorithm: t.algorithm, expires_at: t.expires_at,
                     from: t.renewal_available_from,
                     local: localStorage.length, session: sessionStorage.length };
        })()",
    )
}

/// Readable at 320 px: nothing wider than the screen. Saves `<name>-320` and goes back to
/// the phone's size. For a screen reader: the page says it is Japanese, every field has a
/// label, every button a name, and the focus follows the page's order (no positive
/// tabindex).
fn fits_320(b: &mut Browser, name: &str) {
    let basics = b.eval(
        "(() => {
            const bad = [];
            if (document.documentElement.lang !== 'ja') bad.push('lang');
            for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                if (!e.labels || e.labels.length === 0) bad.push('unlabelled #' + e.id);
            for (const e of document.querySelectorAll('button, a'))
                if (!e.textContent.trim() && !e.getAttribute('aria-label')) bad.push('nameless ' + e.outerHTML.slice(0, 60));
            for (const e of document.querySelectorAll('[tabindex]'))
                if (e.tabIndex > 0) bad.push('tabindex #' + e.id);
            for (const e of document.querySelectorAll('.en'))
                if (!e.closest('[lang=en]')) bad.push('English without lang: ' + e.textContent.slice(0, 30));
            return bad;
        })()",
    );
    assert_eq!(basics, json!([]), "{name}");
    b.size(320, 640);
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= 320"),
        json!(true),
        "{name} fits 320 px"
    );
    b.screenshot(&shot(&format!("{name}-320")));
    b.size(390, 844);
}

/// Opens the app with the browser's clock at `at`; returns the offset in seconds and
/// whether the renewal menu is shown.
fn app_at(b: &mut Browser, url: &str, at: i64, name: &str) -> (i64, bool) {
    let offset = at - now();
    let id = b.clock_script(offset * 1000);
    b.open(url);
    b.wait_for("the app", "document.body.dataset.ready === '1'");
    app_code(b);
    let shown = b.exists("token-0-renewal");
    b.screenshot(&shot(name));
    b.remove_script(&id);
    (offset, shown)
}

/// The session lives in the cookie alone: it outlives a restart of otpd (or another node
/// answering), and ends after 15 minutes without a request, on otpd's clock.
#[test]
fn a_menu_session_outlives_a_restart_and_ends_when_idle() {
    let mut otpd = site();
    otpd.launch();
    otpd.admin_ok(json!({"op": "user_add", "login_id": "saburo", "password": LOGIN_PW}));
    let r = http::post_json(
        otpd.http(),
        "/api/v1/my/sign-in",
        &json!({"login_id": "saburo", "password": LOGIN_PW}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").expect("Set-Cookie").to_string();
    assert!(set.contains("Max-Age=900"), "{set}");
    let cookie = set.split(';').next().expect("cookie").to_string();
    // The status and the refreshed cookie.
    let status = |otpd: &Otpd, cookie: &str| {
        let r = http::request(
            otpd.http(),
            "GET",
            "/api/v1/my/status",
            &[("Cookie", cookie)],
            b"",
        );
        let fresh = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_string();
        (r.status, fresh)
    };
    otpd.stop_clean();
    otpd.launch();
    assert_eq!(
        status(&otpd, &cookie).0,
        200,
        "the same session after a restart"
    );
    otpd.stop_clean();
    otpd.relaunch_with_clock(14 * 60);
    let (code, fresh) = status(&otpd, &cookie);
    assert_eq!(code, 200, "14 minutes idle");
    otpd.stop_clean();
    // 28 minutes after sign-in: the first cookie has been idle too long, the one renewed
    // at 14 minutes has not.
    otpd.relaunch_with_clock(28 * 60);
    assert_eq!(status(&otpd, &cookie).0, 401, "idle for 28 minutes");
    assert_eq!(status(&otpd, &fresh).0, 200, "idle for 14 minutes");
}
