//! The HTTP front door: the customer's setup and renewal pages, their JSON twins, the
//! bearer-key admin API for integrating systems, and `/healthz`. Every operation goes
//! through [`Ops`], the same path the admin socket takes.

mod admin;
mod api;
mod app;
mod edge;
mod error;
mod html;
mod my;
mod my_pages;
mod pages;
mod qr;
mod server;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::ops::Ops;
pub use admin::ApiKeys;
pub use error::ApiError;
pub use server::HttpServer;

/// What every handler shares.
pub struct Web {
    pub ops: Arc<Ops>,
    pub service_id: String,
    pub keys: ApiKeys,
    /// Per-source and global rate limits of the customer's endpoints.
    pub customer_limit: crate::limit::SourceLimiter,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Refused admin API keys: one line per kind and interval, with a count.
    pub refusal_lines: crate::limit::LineLimiter<&'static str>,
    /// The OTP menu's cookie is marked `Secure` (HTTPS here or at a proxy in front).
    pub secure_cookies: bool,
}

impl Web {
    pub fn new(config: &crate::config::Config, ops: Arc<Ops>, keys: ApiKeys) -> Web {
        let h = &config.http;
        Web {
            ops,
            service_id: config.core.service_id.clone(),
            keys,
            customer_limit: crate::limit::SourceLimiter::new(
                crate::limit::Rates {
                    per_source: h.customer_rate,
                    source_burst: f64::from(h.customer_burst),
                    global: h.customer_rate_total,
                    global_burst: f64::from(h.customer_burst_total),
                },
                CUSTOMER_SOURCES,
                crate::clock::instant(),
            ),
            trusted_proxies: h.trusted_proxy_networks(),
            refusal_lines: crate::limit::LineLimiter::new(REFUSAL_LOG_INTERVAL),
            secure_cookies: h.tls_cert_file.is_some() || h.public_url.starts_with("https://"),
        }
    }
}

/// At most one line per kind of refused admin API request in this interval.
pub const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Sources whose rate the customer endpoints track one by one.
const CUSTOMER_SOURCES: usize = 16_384;

type Shared = Arc<Web>;

/// Readiness for a load balancer: 200 `ok` while the store answers, 503 while it does not
/// (this node refuses logins then, so the balancer should send them to another).
async fn healthz(
    axum::extract::State(web): axum::extract::State<Shared>,
) -> (axum::http::StatusCode, &'static str) {
    if web.ops.store_available() {
        (axum::http::StatusCode::OK, "ok")
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store unavailable",
        )
    }
}

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

/// Which doors a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doors {
    /// Everything: `http.listen` when there is no `http.admin_listen`.
    All,
    /// The customer's pages and APIs (`http.listen` beside an `admin_listen`).
    Customer,
    /// `/healthz` and the admin API (`http.admin_listen`).
    Admin,
}

/// The routes of `doors`, with the edge (body limit and timeout, security headers) around
/// them.
pub fn router(web: Shared, doors: Doors) -> Router {
    // The customer's doors are on the internet and need no credential to knock: they are
    // rate-limited per source and in total.
    let customer = Router::new()
        .route(
            "/enroll/{code}",
            get(pages::setup_get).post(pages::setup_post),
        )
        .route("/renew", get(pages::renew_get).post(pages::renew_post))
        .route("/api/v1/enroll/{code}", post(api::setup))
        .route("/api/v1/renew", post(api::renew))
        .merge(customer_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            web.clone(),
            edge::customer_limit,
        ));
    let mut r = Router::new();
    if doors != Doors::Admin {
        r = r.merge(customer);
    }
    if doors != Doors::Customer {
        r = r.route("/healthz", get(healthz));
        if !web.keys.is_empty() {
            r = r.nest("/api/v1/admin", admin::routes(web.clone()));
        }
    }
    r.fallback(edge::not_found)
        .method_not_allowed_fallback(edge::method_not_allowed)
        .with_state(web)
        .layer(axum::middleware::from_fn(edge::edge))
        .layer(axum::middleware::from_fn(crate::metrics::time_http))
}

/// The token app and the OTP menu, pages and API.
fn customer_routes() -> Router<Shared> {
    Router::new()
        .route("/app", get(app::root))
        .route("/app/", get(app::index))
        .route("/app/app.js", get(app::script))
        .route("/app/store.js", get(app::store))
        .route("/app/import.js", get(app::import))
        .route("/app/sw.js", get(app::worker))
        .route("/app/manifest.webmanifest", get(app::manifest))
        .route("/app/icon.svg", get(app::icon))
        .route(
            "/my",
            get(|| async { axum::response::Redirect::permanent("/my/") }),
        )
        .route("/my/", get(my_pages::menu))
        .route("/my/sign-in", post(my_pages::sign_in))
        .route("/my/sign-out", post(my_pages::sign_out))
        .route(
            "/my/issue",
            get(my_pages::issue_get).post(my_pages::issue_post),
        )
        .route(
            "/my/activate",
            get(my_pages::activate_get).post(my_pages::activate_post),
        )
        .route(
            "/my/cancel",
            get(my_pages::cancel_get).post(my_pages::cancel_post),
        )
        .route(
            "/my/renew",
            get(my_pages::renew_get).post(my_pages::renew_post),
        )
        .route("/api/v1/my/sign-in", post(my::api_sign_in))
        .route("/api/v1/my/status", get(my::api_status))
        .route("/api/v1/my/issue", post(my::api_issue))
        .route("/api/v1/my/activate", post(my::api_activate))
        .route("/api/v1/my/cancel", post(my::api_cancel))
        .route("/api/v1/my/renew", post(my::api_renew))
        .route("/api/v1/my/sign-out", post(my::api_sign_out))
}

#[cfg(test)]
mod tests;
