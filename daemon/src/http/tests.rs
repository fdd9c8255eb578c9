use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::clock;

const KEY: &str = "test-api-key-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    ops: Arc<Ops>,
    app: Router,
}

fn fixture(keys: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::ops::tests_support::config(dir.path());
    let ops = crate::ops::tests_support::ops(dir.path());
    let app = router(
        Arc::new(Web::new(&config, ops.clone(), ApiKeys::from_pairs(keys))),
        super::Doors::All,
    );
    Fixture {
        _dir: dir,
        ops,
        app,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(app: &Router, req: Request<Body>) -> Answer {
    let r = app.clone().oneshot(req).await.expect("infallible");
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn post_json(uri: &str, json: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_string()))
        .expect("request")
}

fn admin(method: &str, uri: &str, json: Option<&str>, key: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    match json {
        Some(j) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(j.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

/// Issues a token for `who` and returns the link code from the outbox.
fn issue(f: &Fixture, who: &str) -> String {
    let svc = f.ops.service();
    let now = clock::now();
    svc.add_user(who, "login-pw", now).expect("add");
    svc.issue(who, "m@docomo.ne.jp", "act-pass", now)
        .expect("issue");
    svc.pending_mail()
        .expect("outbox")
        .into_iter()
        .find_map(|(_, j)| j.ok().filter(|j| j.login_id == who))
        .expect("queued")
        .code
}

fn assert_guarded(a: &Answer) {
    let h = |n: &str| {
        a.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("cache-control"), "no-store");
    assert!(h("content-security-policy").starts_with("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"));
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("referrer-policy"), "no-referrer");
}

#[tokio::test]
async fn health_and_every_response_carries_the_security_headers() {
    let f = fixture(&[]);
    let a = call(&f.app, get("/healthz")).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"));
    assert_guarded(&a);
    for (req, status) in [
        (get("/nowhere"), StatusCode::NOT_FOUND),
        (get("/api/v1/nowhere"), StatusCode::NOT_FOUND),
        (get("/api/v1/renew"), StatusCode::METHOD_NOT_ALLOWED),
        (get("/enroll/..%2F..%2Fetc"), StatusCode::NOT_FOUND),
    ] {
        let a = call(&f.app, req).await;
        assert_eq!(a.status, status, "{}", a.body);
        assert_guarded(&a);
    }
    let a = call(&f.app, get("/api/v1/nowhere")).await;
    assert_eq!(a.json()["error"], "not_found");
}

#[tokio::test]
async fn implausible_link_codes_never_reach_the_store() {
    let f = fixture(&[]);
    for code in [
        "short",
        &"a".repeat(129),
        "abcdefabcdefabcdef%3Cscript%3E",
        "abcdefabcdefabcdef.abc",
    ] {
        let a = call(&f.app, get(&format!("/enroll/{code}"))).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{code}");
        assert!(!a.body.contains("<script>"));
        let a = call(&f.app, post_json(&format!("/api/v1/enroll/{code}"), "{}")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{code}");
        assert_eq!(a.json()["error"], "unknown_link");
    }
}

#[tokio::test]
async fn setup_by_json_refuses_counts_and_hands_out_the_secret_once() {
    let f = fixture(&[]);
    let code = issue(&f, "taro");
    let page = call(&f.app, get(&format!("/enroll/{code}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"service_id\""));
    let uri = format!("/api/v1/enroll/{code}");
    let bad = call(
        &f.app,
        post_json(
            &uri,
            r#"{"service_id":"EXAMPLE-BANK","user_id":"taro","activation_password":"nope"}"#,
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.json()["error"], "setup_refused");
    let malformed = call(&f.app, post_json(&uri, r#"{"service_id":"EXAMPLE-BANK"}"#)).await;
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.body
    );
    assert_eq!(malformed.json()["error"], "bad_request");
    let untyped = call(
        &f.app,
        Request::post(&uri).body(Body::from("{}")).expect("request"),
    )
    .await;
    assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let good = r#"{"service_id":"EXAMPLE-BANK","user_id":"taro","activation_password":"act-pass"}"#;
    let ok = call(&f.app, post_json(&uri, good)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let j = ok.json();
    for k in [
        "otpauth_uri",
        "secret",
        "period",
        "digits",
        "algorithm",
        "issuer",
        "account",
        "expires_at",
    ] {
        assert!(j.get(k).is_some(), "{k} in {j}");
    }
    assert_eq!(j["account"], "taro");
    let again = call(&f.app, post_json(&uri, good)).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert_eq!(again.json()["error"], "link_gone");
    let page = call(&f.app, get(&format!("/enroll/{code}"))).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("使用済み"));
}

#[tokio::test]
async fn a_link_dies_after_the_allowed_attempts() {
    let f = fixture(&[]);
    let code = issue(&f, "jiro");
    let uri = format!("/api/v1/enroll/{code}");
    let wrong = r#"{"service_id":"EXAMPLE-BANK","user_id":"jiro","activation_password":"x"}"#;
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(call(&f.app, post_json(&uri, wrong)).await.status.as_u16());
        }
        v
    };
    assert_eq!(codes, [401, 401, 429, 429]);
    let page = call(&f.app, get(&format!("/enroll/{code}"))).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn bodies_are_bounded() {
    let f = fixture(&[]);
    let big = format!("{{\"service_id\":\"{}\"}}", "x".repeat(20 * 1024));
    let a = call(&f.app, post_json("/api/v1/renew", &big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["error"], "payload_too_large");
    assert_guarded(&a);
    // A declared length over the limit is refused before reading.
    let a = call(
        &f.app,
        Request::post("/renew")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, "999999")
            .body(Body::from("otp=1"))
            .expect("request"),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body.contains("<!doctype html>"));
}

#[tokio::test]
async fn renewal_too_early_says_when() {
    let f = fixture(&[]);
    let a = call(
        &f.app,
        post_json(
            "/api/v1/renew",
            r#"{"service_id":"WRONG","user_id":"nobody","otp":"123456"}"#,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("one-time password")));
    // An active token far from expiry.
    let code = issue(&f, "saburo");
    let svc = f.ops.service().clone();
    let now = clock::now();
    let e = svc
        .setup(&code, "EXAMPLE-BANK", "saburo", "act-pass", now)
        .expect("enroll");
    let secret = base32_decode(&e.secret);
    let p = svc.otp_params();
    let step = p.step_at(now);
    svc.activate("saburo", &p.code_for_step(&secret, step - 1), now)
        .expect("activate");
    let body = format!(
        r#"{{"service_id":"EXAMPLE-BANK","user_id":"saburo","otp":"{}"}}"#,
        p.code_for_step(&secret, step)
    );
    let a = call(&f.app, post_json("/api/v1/renew", &body)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    let j = a.json();
    assert_eq!(j["error"], "renewal_not_yet_available");
    let from =
        crate::mail::parse_rfc3339(j["available_from"].as_str().expect("from")).expect("rfc3339");
    let expires = crate::mail::parse_rfc3339(&e.expires_at).expect("rfc3339");
    assert_eq!(from, expires - 30 * 86_400);
    let page = call(
        &f.app,
        Request::post("/renew")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            // The API's code was spent: the page is shown the next one.
            .body(Body::from(format!(
                "service_id=EXAMPLE-BANK&user_id=saburo&otp={}",
                p.code_for_step(&secret, step + 1)
            )))
            .expect("request"),
    )
    .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body.contains(&crate::mail::jst_date(from)),
        "{}",
        page.body
    );
}

fn base32_decode(s: &str) -> Vec<u8> {
    // RFC 4648 without padding, as the core hands it out.
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        bits = (bits << 5) | u32::from(v);
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn the_admin_door_is_closed_without_keys() {
    let f = fixture(&[]);
    let a = call(
        &f.app,
        admin("GET", "/api/v1/admin/status", None, Some(KEY)),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_api_takes_bearer_keys_and_speaks_admin_requests() {
    let f = fixture(&[("ib-frontend", KEY), ("other", "another-key-abcdefgh")]);
    let none = call(&f.app, admin("GET", "/api/v1/admin/status", None, None)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_guarded(&none);
    let wrong = call(
        &f.app,
        admin(
            "GET",
            "/api/v1/admin/status",
            None,
            Some("test-api-key-0123456788"),
        ),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let status = call(
        &f.app,
        admin("GET", "/api/v1/admin/status", None, Some(KEY)),
    )
    .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.json()["kind"], "status");
    let add = r#"{"login_id":"hanako","password":"login-pw"}"#;
    let a = call(
        &f.app,
        admin("POST", "/api/v1/admin/users", Some(add), Some(KEY)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.json()["state"], "unregistered");
    let a = call(
        &f.app,
        admin("POST", "/api/v1/admin/users", Some(add), Some(KEY)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json()["error"], "user_exists");
    let typo = r#"{"email":"h@docomo.ne.jp","activation_pasword":"act-pass"}"#;
    let a = call(
        &f.app,
        admin(
            "POST",
            "/api/v1/admin/users/hanako/token/issue",
            Some(typo),
            Some(KEY),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let issue = r#"{"email":"h@docomo.ne.jp","activation_password":"act-pass"}"#;
    let a = call(
        &f.app,
        admin(
            "POST",
            "/api/v1/admin/users/hanako/token/issue",
            Some(issue),
            Some(KEY),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["kind"], "issued");
    assert_eq!(a.json()["user"]["state"], "issued");
    let a = call(
        &f.app,
        admin(
            "POST",
            "/api/v1/admin/users/hanako/token/activate",
            Some(r#"{"otp":"000000"}"#),
            Some(KEY),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.json()["error"], "wrong_state");
    let a = call(
        &f.app,
        admin("GET", "/api/v1/admin/users/hanako", None, Some(KEY)),
    )
    .await;
    assert_eq!(a.json()["email"], "h@docomo.ne.jp");
    let a = call(
        &f.app,
        admin(
            "POST",
            "/api/v1/admin/users/hanako/token/cancel",
            None,
            Some(KEY),
        ),
    )
    .await;
    assert_eq!(a.json()["state"], "unregistered");
    let a = call(&f.app, admin("GET", "/api/v1/admin/users", None, Some(KEY))).await;
    assert_eq!(a.json()["users"].as_array().map(Vec::len), Some(1));
    let a = call(
        &f.app,
        admin("DELETE", "/api/v1/admin/users/hanako", None, Some(KEY)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &f.app,
        admin("GET", "/api/v1/admin/users/hanako", None, Some(KEY)),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"], "unknown_user");
    let other = call(
        &f.app,
        admin(
            "GET",
            "/api/v1/admin/status",
            None,
            Some("another-key-abcdefgh"),
        ),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[test]
fn key_check_names_the_matching_key() {
    let k = ApiKeys::from_pairs(&[("a", "key-a-0123456789ab"), ("b", "key-b-0123456789ab")]);
    assert_eq!(k.check("key-b-0123456789ab"), Some("b"));
    assert_eq!(k.check("key-b-0123456789a"), None);
    assert_eq!(k.check(""), None);
    assert_eq!(ApiKeys::none().check(""), None);
}

mod customer;
