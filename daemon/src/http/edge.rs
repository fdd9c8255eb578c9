//! What every request passes through: the body read whole, bounded in size and time,
//! before any handler runs; and the headers every response carries.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use otpd_core::Refusal;

use super::error::{status, ApiError};
use super::html;

/// Largest request body: a setup form is a few hundred bytes.
pub const BODY_LIMIT: usize = 16 * 1024;
/// A client that has not sent its whole body by then is cut off.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The setup success page's: the same, plus this origin's scripts (the import into the
/// token app), never inline ones.
pub const CSP_WITH_SCRIPTS: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn edge(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        refusal(
            api,
            Refusal::PayloadTooLarge,
            "the request body is too large",
        )
    } else {
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, BODY_LIMIT).collect()).await {
            Err(_) => refusal(
                api,
                Refusal::RequestTimeout,
                "the request body did not arrive in time",
            ),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => refusal(
                api,
                Refusal::PayloadTooLarge,
                "the request body is too large",
            ),
            Ok(Err(_)) => refusal(
                api,
                Refusal::BadRequest,
                "the request body could not be read",
            ),
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

/// The rate limit of the customer's endpoints, by the request's source (the peer, or the
/// address a trusted proxy forwarded for). Refused: 429 `rate_limited` with `Retry-After`.
pub async fn customer_limit(
    State(web): State<super::Shared>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<super::admin::Peer>()
        .map(|p| p.0.ip());
    let Some(peer) = peer else {
        return next.run(req).await;
    };
    let source = source_of(peer, req.headers(), &web.trusted_proxies);
    match web.customer_limit.admit(source, crate::clock::instant()) {
        Ok(()) => {
            req.extensions_mut().insert(Client(source));
            next.run(req).await
        }
        Err(_) => {
            let api = req.uri().path().starts_with("/api/");
            let mut r = refusal(
                api,
                Refusal::RateLimited,
                "too many requests; wait a moment and try again",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

/// The client's address as [`source_of`] found it, for the handlers behind
/// [`customer_limit`] (a web sign-in waits in its source's room).
#[derive(Debug, Clone, Copy)]
pub struct Client(pub std::net::IpAddr);

impl Client {
    /// The client of `req`'s extensions; a request that came by no socket (the router's
    /// own tests) is the loopback's.
    pub fn of(ext: Option<axum::Extension<Client>>) -> std::net::IpAddr {
        ext.map_or(std::net::Ipv6Addr::LOCALHOST.into(), |e| e.0 .0)
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy; then the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn source_of(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut source = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                source = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // An unreadable hop: nothing before it can be believed.
            Err(_) => break,
        }
    }
    source
}

/// A refusal in the caller's language: JSON under /api/, a page elsewhere.
fn refusal(api: bool, r: Refusal, message: &str) -> Response {
    if api {
        ApiError::new(r, message).into_response()
    } else {
        html::error_page(status(r), r.as_str(), "").into_response()
    }
}

pub async fn not_found(req: Request) -> Response {
    refusal(
        req.uri().path().starts_with("/api/"),
        Refusal::NotFound,
        "no such resource",
    )
}

pub async fn method_not_allowed(req: Request) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut r = refusal(
        api,
        Refusal::MethodNotAllowed,
        "this method is not allowed here",
    );
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}
