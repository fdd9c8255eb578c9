//! The OTP menu's API and the token app's files, in process.

use super::*;

fn cookie_of(a: &Answer) -> String {
    let set = a
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("Set-Cookie")
        .to_string();
    set.split(';').next().expect("name=value").to_string()
}

/// The API's answer to signing in as taro with `password`.
async fn sign_in_taro(app: &Router, password: &str) -> Answer {
    let body = format!(r#"{{"login_id":"taro","password":"{password}"}}"#);
    call(app, post_json("/api/v1/my/sign-in", &body)).await
}

fn with_session(mut r: Request<Body>, cookie: &str, csrf: Option<&str>) -> Request<Body> {
    let h = r.headers_mut();
    h.insert(header::COOKIE, cookie.parse().expect("cookie"));
    if let Some(c) = csrf {
        h.insert("x-csrf-token", c.parse().expect("csrf"));
    }
    r
}

#[tokio::test]
async fn sign_in_issue_and_sign_out_through_the_api() {
    let f = fixture(&[]);
    let svc = f.ops.service();
    svc.add_user("taro", "login-pw", clock::now()).expect("add");

    let wrong = sign_in_taro(&f.app, "nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "sign_in_refused");
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let list = svc.list(clock::now()).expect("list");
    assert_eq!(list[0].failures, 1, "counted on the login lock");

    let a = sign_in_taro(&f.app, "login-pw").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let set = a.headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    assert!(!set.contains("Secure"), "plain HTTP here");
    assert!(!set.contains("taro"), "the cookie is sealed: {set}");
    let status = a.json();
    assert_eq!(status["state"], "unregistered");
    assert_eq!(status["state_ja"], "未登録");
    assert_eq!(status["actions"], serde_json::json!(["issue"]));
    let csrf = status["csrf_token"].as_str().expect("csrf").to_string();
    let cookie = cookie_of(&a);

    let body = r#"{"email":"taro@docomo.ne.jp","email_confirmation":"taro@docomo.ne.jp","activation_password":"act-pass","activation_password_confirmation":"act-pass"}"#;
    let forged = call(
        &f.app,
        with_session(post_json("/api/v1/my/issue", body), &cookie, Some("0000")),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.json()["error"], "csrf_mismatch");
    let mismatch = call(
        &f.app,
        with_session(
            post_json(
                "/api/v1/my/issue",
                &body.replace(r#""act-pass"}"#, r#""act-pazz"}"#),
            ),
            &cookie,
            Some(&csrf),
        ),
    )
    .await;
    assert_eq!(mismatch.json()["error"], "password_mismatch");
    assert!(svc.pending_mail().expect("outbox").is_empty());

    let issued = call(
        &f.app,
        with_session(post_json("/api/v1/my/issue", body), &cookie, Some(&csrf)),
    )
    .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    assert_eq!(issued.json()["state"], "issued");
    assert_eq!(issued.json()["email"], "taro@docomo.ne.jp");
    assert_eq!(svc.pending_mail().expect("outbox").len(), 1, "the mail");
    // The issuance ended every session but this one, which goes on in a new cookie.
    let old = cookie.clone();
    let r = call(&f.app, with_session(get("/api/v1/my/status"), &old, None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the cookie from before");
    let cookie = issued.headers[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();

    // A tampered cookie is no session.
    let mut bad = cookie.clone();
    bad.pop();
    bad.push(if cookie.ends_with('0') { '1' } else { '0' });
    let r = call(&f.app, with_session(get("/api/v1/my/status"), &bad, None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let out = call(
        &f.app,
        with_session(post_json("/api/v1/my/sign-out", "{}"), &cookie, Some(&csrf)),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    let replay = call(
        &f.app,
        with_session(get("/api/v1/my/status"), &cookie, None),
    )
    .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.json()["error"], "not_signed_in");
}

#[tokio::test]
async fn the_token_app_is_served_under_its_own_strict_policy() {
    let f = fixture(&[]);
    for (path, kind) in [
        ("/app/", "text/html"),
        ("/app/app.js", "text/javascript"),
        ("/app/store.js", "text/javascript"),
        ("/app/import.js", "text/javascript"),
        ("/app/sw.js", "text/javascript"),
        ("/app/manifest.webmanifest", "application/manifest+json"),
        ("/app/icon.svg", "image/svg+xml"),
    ] {
        let a = call(&f.app, get(path)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let h = |n: header::HeaderName| a.headers[n].to_str().expect("ascii").to_string();
        assert!(h(header::CONTENT_TYPE).starts_with(kind), "{path}");
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self';"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-eval") && !csp.contains("http"),
            "{csp}"
        );
        assert_eq!(h(header::X_FRAME_OPTIONS), "DENY");
    }
    let m = call(&f.app, get("/app/manifest.webmanifest")).await.json();
    assert_eq!(m["start_url"], "/app/");
    assert_eq!(m["display"], "standalone");
    let page = call(&f.app, get("/app/")).await;
    assert!(!page.body.contains("<script>"), "no inline script");
    // The menu's pages keep the pages' policy: no script at all.
    let menu = call(&f.app, get("/my/")).await;
    assert_eq!(menu.status, StatusCode::OK);
    assert_guarded(&menu);
    assert!(menu.body.contains("name=\"login_id\""));
}

/// The sign-in form has no CSRF token yet: a browser's cross-site post is refused before
/// the password is looked at; its own pages' posts go on.
#[tokio::test]
async fn the_sign_in_form_refuses_a_post_from_another_site() {
    let f = fixture(&[]);
    f.ops
        .service()
        .add_user("goro", "login-pw", crate::clock::now())
        .expect("add");
    let post = |site: &str| {
        Request::post("/my/sign-in")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Body::from("login_id=goro&password=login-pw&otp="))
            .expect("request")
    };
    for site in ["cross-site", "same-site"] {
        let a = call(&f.app, post(site)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{site}: {}", a.body);
        assert!(a.headers.get(header::SET_COOKIE).is_none(), "{site}");
    }
    let a = call(&f.app, post("same-origin")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(cookie_of(&a).starts_with("otpd_my="));
}

/// The setup success page offers the token app first: a button whose data- attributes
/// carry the token, same-origin scripts only (no inline one), the QR code below it.
#[tokio::test]
async fn the_setup_success_page_imports_into_the_token_app_first() {
    let f = fixture(&[]);
    let code = issue(&f, "taro");
    let form = call(&f.app, get(&format!("/enroll/{code}"))).await;
    assert_guarded(&form);
    assert!(!form.body.contains("<script"), "the form runs no script");
    let a = call(
        &f.app,
        Request::post(format!("/enroll/{code}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "service_id=EXAMPLE-BANK&user_id=taro&activation_password=act-pass",
            ))
            .expect("request"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let csp = a.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ascii");
    assert_eq!(csp, super::edge::CSP_WITH_SCRIPTS);
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    // Every script is a same-origin file.
    assert_eq!(
        a.body.matches("<script").count(),
        a.body.matches("<script src=\"/app/").count()
    );
    assert!(a.body.contains("<script src=\"/app/store.js\"></script>"));
    assert!(a.body.contains("<script src=\"/app/import.js\"></script>"));
    let button = a.body.find("id=\"import-app\"").expect("the import button");
    let qr = a.body.find("<svg").expect("the QR code");
    assert!(button < qr, "the token app first, the QR code second");
    assert!(a.body.find("トークンアプリに登録する") < a.body.find("Add to the token app"));
    let attr = |name: &str| {
        let at = a
            .body
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("{name}"));
        let rest = &a.body[at + name.len() + 2..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    };
    let secret = attr("data-secret");
    assert!(
        secret.len() >= 26
            && secret
                .bytes()
                .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".contains(&b)),
        "{secret}"
    );
    assert_eq!(attr("data-issuer"), "EXAMPLE-BANK");
    assert_eq!(attr("data-account"), "taro");
    assert_eq!(attr("data-period"), "60");
    assert_eq!(attr("data-digits"), "6");
    assert_eq!(attr("data-algorithm"), "SHA1");
    let expires = crate::mail::parse_rfc3339(&attr("data-expires-at")).expect("expires");
    let from = crate::mail::parse_rfc3339(&attr("data-renewal-available-from")).expect("from");
    assert_eq!(expires - from, 30 * 86_400);
    assert!(
        a.body.contains(&super::html::group4(&secret)),
        "the key below"
    );
    // The other pages keep the policy without scripts.
    let renew = call(&f.app, get("/renew")).await;
    assert_guarded(&renew);
}

/// A second node over the same store and key file, as two otpd behind one name would be.
fn second_node(f: &Fixture, secure_cookies: bool) -> Router {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::ops::tests_support::config(dir.path());
    let ops = crate::ops::tests_support::ops_on(dir.path(), f.ops.service().store().clone());
    let mut web = Web::new(&config, ops, ApiKeys::from_pairs(&[]));
    web.secure_cookies = secure_cookies;
    router(Arc::new(web), super::Doors::All)
}

#[tokio::test]
async fn a_session_made_on_one_node_works_and_ends_on_the_other() {
    let f = fixture(&[]);
    f.ops
        .service()
        .add_user("taro", "login-pw", clock::now())
        .expect("add");
    let b = second_node(&f, true);
    let a = sign_in_taro(&f.app, "login-pw").await;
    let cookie = cookie_of(&a);
    let csrf = a.json()["csrf_token"].as_str().expect("csrf").to_string();

    let on_b = call(&b, with_session(get("/api/v1/my/status"), &cookie, None)).await;
    assert_eq!(on_b.status, StatusCode::OK, "{}", on_b.body);
    assert_eq!(on_b.json()["csrf_token"], csrf.as_str(), "the same session");
    let set = on_b.headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(set.contains("; Secure"), "HTTPS node: {set}");

    let out = call(
        &b,
        with_session(post_json("/api/v1/my/sign-out", "{}"), &cookie, Some(&csrf)),
    )
    .await;
    assert_eq!(out.status, StatusCode::OK);
    let on_a = call(
        &f.app,
        with_session(get("/api/v1/my/status"), &cookie, None),
    )
    .await;
    assert_eq!(
        on_a.status,
        StatusCode::UNAUTHORIZED,
        "signed out on every node"
    );
}
