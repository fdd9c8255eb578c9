//! What every request passes through: the body read whole, bounded in size and time,
//! before any handler runs; and the headers every response carries.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use super::html;

/// Largest request body: a setup form is a few hundred bytes.
pub const BODY_LIMIT: usize = 16 * 1024;
/// A client that has not sent its whole body by then is cut off.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn edge(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        refusal(api, "payload_too_large", "the request body is too large")
    } else {
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, BODY_LIMIT).collect()).await {
            Err(_) => refusal(
                api,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                refusal(api, "payload_too_large", "the request body is too large")
            }
            Ok(Err(_)) => refusal(api, "bad_request", "the request body could not be read"),
            Ok(Ok(collected)) => {
                next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                    .await
            }
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The token app's files set a policy of their own (same origin scripts only).
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A refusal in the caller's language: JSON under /api/, a page elsewhere.
fn refusal(api: bool, code: &str, message: &str) -> Response {
    if api {
        ApiError::new(code, message).into_response()
    } else {
        html::error_page(super::status_for(code), code, "").into_response()
    }
}

pub async fn not_found(req: Request) -> Response {
    refusal(
        req.uri().path().starts_with("/api/"),
        "not_found",
        "no such resource",
    )
}

pub async fn method_not_allowed(req: Request) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut r = refusal(api, "method_not_allowed", "this method is not allowed here");
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
