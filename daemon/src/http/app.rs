//! The token app: a web app served from otpd's own files (embedded at build time), under
//! a CSP that allows only this origin's scripts, requests and worker.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The edge's policy, plus what the app needs from its own origin and nothing else.
pub const APP_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STORE: &str = include_str!("assets/store.js");
const IMPORT: &str = include_str!("assets/import.js");
const WORKER: &str = include_str!("assets/sw.js");
const MANIFEST: &str = include_str!("assets/manifest.webmanifest");
const ICON: &str = include_str!("assets/icon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(APP_CSP),
    );
    r
}

pub async fn root() -> Redirect {
    Redirect::permanent("/app/")
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The token store, shared by the app and the setup success page.
pub async fn store() -> Response {
    asset("text/javascript; charset=utf-8", STORE)
}

/// The setup success page's import into the app's store.
pub async fn import() -> Response {
    asset("text/javascript; charset=utf-8", IMPORT)
}

pub async fn worker() -> Response {
    asset("text/javascript; charset=utf-8", WORKER)
}

pub async fn manifest() -> Response {
    asset("application/manifest+json", MANIFEST)
}

pub async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}
