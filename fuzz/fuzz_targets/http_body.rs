//! The HTTP request bodies: the real router (`otpd::http::router`) over a scratch store,
//! with the first input byte choosing a route and the rest sent as its body: the JSON of
//! setup and renewal, the admin API's JSON (with a valid bearer key), the OTP menu's
//! sign-in (JSON and form), and the two forms.
//! Nothing panics, nothing is answered 500, and every /api/ answer is a JSON document.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use otpd::http::{router, ApiKeys, Doors, Web};
use otpd::log::{Level, Logger};
use otpd::ops::Ops;
use tower::ServiceExt;

const API_KEY: &str = "fuzz-api-key-0123456789";
const LOGIN: &str = "fz";

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let s = otpd_fuzz::scratch();
        let ops = Arc::new(Ops::new(
            s.service.clone(),
            Arc::new(Logger::stderr(Level::Error)),
        ));
        let web = Arc::new(Web::new(
            &s.config,
            ops,
            ApiKeys::from_pairs(&[("fuzz", API_KEY)]),
        ));
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            router: router(web, Doors::All),
        }
    })
}

/// A fresh setup link for `fz` (created if needed), with activation password "act-1234".
fn fresh_link() -> String {
    let svc = &otpd_fuzz::scratch().service;
    let now = otpd_fuzz::now();
    let _ = svc.add_user(LOGIN, "fz-password", now);
    let _ = svc.cancel(LOGIN, now);
    svc.issue(LOGIN, "fz@example.invalid", "act-1234", now)
        .expect("issue a token");
    let mut code = String::new();
    for (id, job) in svc.pending_mail().expect("outbox") {
        if let Ok(job) = job {
            code = job.code;
        }
        let _ = svc.mail_sent(id);
    }
    code
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let (method, path, json) = match route % 10 {
        0 => ("POST", format!("/api/v1/enroll/{}", fresh_link()), true),
        1 => ("POST", "/api/v1/renew".to_string(), true),
        2 => ("POST", "/api/v1/admin/users".to_string(), true),
        3 => ("PUT", format!("/api/v1/admin/users/{LOGIN}/password"), true),
        4 => (
            "POST",
            format!("/api/v1/admin/users/{LOGIN}/token/issue"),
            true,
        ),
        5 => (
            "POST",
            format!("/api/v1/admin/users/{LOGIN}/token/activate"),
            true,
        ),
        6 => ("POST", format!("/enroll/{}", fresh_link()), false),
        7 => ("POST", "/renew".to_string(), false),
        8 => ("POST", "/api/v1/my/sign-in".to_string(), true),
        _ => ("POST", "/my/sign-in".to_string(), false),
    };
    let req = Request::builder()
        .method(method)
        .uri(&path)
        .header(
            header::CONTENT_TYPE,
            if json {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            },
        )
        .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
        .body(Body::from(body.to_vec()))
        .expect("request");
    let f = fixture();
    let (status, bytes) = f.rt.block_on(async {
        let r = f.router.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, bytes)
    });
    assert_ne!(
        status.as_u16(),
        500,
        "{path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if json {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON ({e})"));
    }
    otpd_fuzz::keep_small(&otpd_fuzz::scratch().service);
});
