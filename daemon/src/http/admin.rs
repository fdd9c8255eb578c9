//! `/api/v1/admin/…`: the otpctl operations for integrating systems, behind bearer API
//! keys from `http.api_keys`. Each request becomes the same [`AdminRequest`] the admin
//! socket takes and runs through `Ops::admin` with actor `api:<key name>`. With no key
//! configured these routes do not exist (404).
//!
//! | request | admin op | success |
//! |---|---|---|
//! | `GET /status` | status | 200 |
//! | `GET /users` | user_list | 200 |
//! | `POST /users` `{login_id,password}` | user_add | 201 |
//! | `GET /users/{id}` | user_show | 200 |
//! | `DELETE /users/{id}` | user_delete | 200 |
//! | `POST`/`PUT /users/{id}/password` `{password}` | user_passwd | 200 |
//! | `POST /users/{id}/token/issue` `{email,activation_password}` | token_issue | 200 |
//! | `POST /users/{id}/token/activate` `{otp}` | token_activate | 200 |
//! | `POST /users/{id}/token/{cancel,renew,unlock}` | token_… | 200 |
//!
//! Replies are the admin socket's `Ok` object (`{"kind":…}` or a user view); refusals are
//! `{"error","message"}` with the status of [`otpd_core::Refusal`]; a missing or wrong key
//! is 401 with `WWW-Authenticate: Bearer`.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use otpd_core::admin::{AdminData, AdminRequest, Secret};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::body;
use super::error::ApiError;
use super::Shared;
use crate::config::HttpSection;

/// The connecting address, set by the server for each connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The configured keys, kept only as SHA-256 digests: comparing digests takes the same
/// time whatever the presented key's length.
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl ApiKeys {
    pub fn none() -> ApiKeys {
        ApiKeys { keys: Vec::new() }
    }

    /// Reads each key_file's first line.
    pub fn load(http: &HttpSection) -> anyhow::Result<ApiKeys> {
        let mut keys = Vec::new();
        for k in &http.api_keys {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&k.key_file)
                    .with_context(|| format!("api key {:?}: {}", k.name, k.key_file.display()))?,
            );
            let line = text.lines().next().unwrap_or("").trim();
            if line.len() < 16 {
                anyhow::bail!(
                    "api key {:?}: {} must hold at least 16 characters on its first line",
                    k.name,
                    k.key_file.display()
                );
            }
            keys.push((k.name.clone(), Sha256::digest(line.as_bytes()).into()));
        }
        Ok(ApiKeys { keys })
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> ApiKeys {
        ApiKeys {
            keys: pairs
                .iter()
                .map(|(n, k)| (n.to_string(), Sha256::digest(k.as_bytes()).into()))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented` matches. Every key is compared, always.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, key) in &self.keys {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Who is calling, for the audit line: `api:<key name>`.
#[derive(Clone)]
struct Actor(String);

/// The key of the one well-formed `Authorization: Bearer <key>` header: exactly one such
/// header, the scheme spelt `Bearer`, one space, then the key in RFC 6750's characters
/// and nothing around it. Anything else is no key at all: a lenient parser is where two
/// components start to disagree about who is calling.
pub fn bearer_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(only), None) = (all.next(), all.next()) else {
        return None;
    };
    let token = only.to_str().ok()?.strip_prefix("Bearer ")?;
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    let body = token.trim_end_matches('=');
    (!body.is_empty() && body.bytes().all(token68)).then_some(token)
}

async fn require_key(State(web): State<Shared>, mut req: Request, next: Next) -> Response {
    let presented = bearer_key(req.headers());
    let name = presented
        .and_then(|p| web.keys.check(p))
        .map(str::to_string);
    let Some(name) = name else {
        let peer = req
            .extensions()
            .get::<Peer>()
            .map_or_else(|| "-".to_string(), |p| p.0.to_string());
        let kind = if req.headers().contains_key(header::AUTHORIZATION) {
            "a wrong or malformed"
        } else {
            "no"
        };
        if let Some(suppressed) = web.refusal_lines.note(kind, crate::clock::instant()) {
            let more = if suppressed > 0 {
                format!(
                    " suppressed={suppressed} (refusals not logged one by one since the last line)"
                )
            } else {
                String::new()
            };
            web.ops.log.warn(&format!(
                "http admin API: refused a request from {peer}: {kind} bearer key{more}"
            ));
        }
        let mut r = ApiError::new(
            otpd_core::Refusal::Unauthorized,
            "a valid bearer API key is required",
        )
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    req.extensions_mut().insert(Actor(format!("api:{name}")));
    next.run(req).await
}

pub fn routes(web: Shared) -> Router<Shared> {
    Router::new()
        .route("/status", get(status))
        .route("/users", get(user_list).post(user_add))
        .route("/users/{id}", get(user_show).delete(user_delete))
        .route("/users/{id}/password", post(user_passwd).put(user_passwd))
        .route("/users/{id}/token/issue", post(token_issue))
        .route("/users/{id}/token/activate", post(token_activate))
        .route("/users/{id}/token/cancel", post(token_cancel))
        .route("/users/{id}/token/renew", post(token_renew))
        .route("/users/{id}/token/unlock", post(token_unlock))
        .route_layer(axum::middleware::from_fn_with_state(web, require_key))
}

async fn run(web: &Shared, actor: &Actor, req: AdminRequest) -> Result<Json<AdminData>, ApiError> {
    Ok(Json(web.ops.admin(req, &actor.0).await?))
}

async fn status(State(web): State<Shared>, Extension(a): Extension<Actor>) -> impl IntoResponse {
    run(&web, &a, AdminRequest::Status).await
}

async fn user_list(State(web): State<Shared>, Extension(a): Extension<Actor>) -> impl IntoResponse {
    run(&web, &a, AdminRequest::UserList).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    login_id: String,
    password: Secret,
}

async fn user_add(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    b: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<AdminData>), ApiError> {
    let b = body(b)?;
    let req = AdminRequest::UserAdd {
        login_id: b.login_id,
        password: b.password,
    };
    Ok((StatusCode::CREATED, run(&web, &a, req).await?))
}

async fn user_show(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
) -> impl IntoResponse {
    run(&web, &a, AdminRequest::UserShow { login_id }).await
}

async fn user_delete(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
) -> impl IntoResponse {
    run(&web, &a, AdminRequest::UserDelete { login_id }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: Secret,
}

async fn user_passwd(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
    b: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Json<AdminData>, ApiError> {
    let b = body(b)?;
    let req = AdminRequest::UserPasswd {
        login_id,
        password: b.password,
    };
    run(&web, &a, req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Issue {
    email: String,
    activation_password: Secret,
}

async fn token_issue(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
    b: Result<Json<Issue>, JsonRejection>,
) -> Result<Json<AdminData>, ApiError> {
    let b = body(b)?;
    let req = AdminRequest::TokenIssue {
        login_id,
        email: b.email,
        activation_password: b.activation_password,
    };
    run(&web, &a, req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    otp: Secret,
}

async fn token_activate(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
    b: Result<Json<Activate>, JsonRejection>,
) -> Result<Json<AdminData>, ApiError> {
    let b = body(b)?;
    run(
        &web,
        &a,
        AdminRequest::TokenActivate {
            login_id,
            otp: b.otp,
        },
    )
    .await
}

async fn token_cancel(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
) -> impl IntoResponse {
    run(&web, &a, AdminRequest::TokenCancel { login_id }).await
}

async fn token_renew(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
) -> impl IntoResponse {
    run(&web, &a, AdminRequest::TokenRenew { login_id }).await
}

async fn token_unlock(
    State(web): State<Shared>,
    Extension(a): Extension<Actor>,
    Path(login_id): Path<String>,
) -> impl IntoResponse {
    run(&web, &a, AdminRequest::TokenUnlock { login_id }).await
}

#[cfg(test)]
mod bearer_tests {
    use super::bearer_key;
    use axum::http::{header, HeaderMap, HeaderValue};

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn exactly_one_well_formed_bearer_header() {
        assert_eq!(
            bearer_key(&with(&["Bearer abc-DEF_1.2~3+4/5=="])),
            Some("abc-DEF_1.2~3+4/5==")
        );
        for bad in [
            "bearer abc",
            "BEARER abc",
            "Bearer  abc",
            "Bearer abc ",
            " Bearer abc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer ==",
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        ] {
            assert_eq!(bearer_key(&with(&[bad])), None, "{bad:?}");
        }
        assert_eq!(bearer_key(&with(&["Bearer abc", "Bearer abc"])), None);
        assert_eq!(bearer_key(&HeaderMap::new()), None);
    }
}
