//! The HTTP front door: the customer's setup and renewal pages, their JSON twins, the
//! bearer-key admin API for integrating systems, and `/healthz`. Every operation goes
//! through [`Ops`], the same path the admin socket takes.

mod admin;
mod api;
mod edge;
mod error;
mod html;
mod pages;
mod qr;
mod server;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::ops::Ops;
pub use admin::ApiKeys;
pub use error::{status_for, ApiError};
pub use server::HttpServer;

/// What every handler shares.
pub struct Web {
    pub ops: Arc<Ops>,
    pub service_id: String,
    pub keys: ApiKeys,
}

type Shared = Arc<Web>;

/// The longest setup-link code accepted in a path. Anything else is answered 404 without
/// touching the store.
const CODE_MAX: usize = 128;
const CODE_MIN: usize = 16;

/// A plausible link code: the store is asked only about these.
pub fn plausible_code(code: &str) -> bool {
    (CODE_MIN..=CODE_MAX).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// All routes, with the edge (body limit and timeout, security headers) around them.
pub fn router(web: Shared) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/enroll/{code}",
            get(pages::enroll_get).post(pages::enroll_post),
        )
        .route("/renew", get(pages::renew_get).post(pages::renew_post))
        .route("/api/v1/enroll/{code}", post(api::enroll))
        .route("/api/v1/renew", post(api::renew));
    if !web.keys.is_empty() {
        r = r.nest("/api/v1/admin", admin::routes(web.clone()));
    }
    r.fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed)
        .with_state(web)
        .layer(axum::middleware::from_fn(edge::edge))
        .layer(axum::middleware::from_fn(crate::metrics::time_http))
}

#[cfg(test)]
mod tests;
