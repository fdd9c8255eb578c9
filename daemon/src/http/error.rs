//! The JSON API's refusal body, and a refusal's HTTP status (from [`Refusal`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use otpd_core::admin::AdminFailure;
use otpd_core::{OpError, Refusal};
use serde::Serialize;

/// The status of a refusal.
pub fn status(r: Refusal) -> StatusCode {
    StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The status for a refusal code (`OpError::code()`, or one of the HTTP layer's own); an
/// unknown code is a 500.
pub fn status_for(code: &str) -> StatusCode {
    Refusal::from_code(code).map_or(StatusCode::INTERNAL_SERVER_ERROR, status)
}

/// A JSON error: `{"error","message"}`, plus `available_from` for an early renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_from: Option<String>,
    /// Seconds the client should wait before trying again (`Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(refusal: Refusal, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status(refusal),
            error: refusal.as_str().into(),
            message: message.into(),
            available_from: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Refusal::BadRequest, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(Refusal::NotFound, "no such resource")
    }
}

/// What the internet is told when the store fails: no host, port, database or OS error
/// (those are in the log, where the store's watch and the failed write report them).
fn store_unavailable() -> ApiError {
    let r = Refusal::StoreUnavailable;
    ApiError::new(r, r.api_message().unwrap_or("temporarily unavailable"))
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        if let OpError::Store(_) = e {
            return store_unavailable();
        }
        let mut a = ApiError::new(e.refusal(), e.to_string());
        if let OpError::RenewalNotYetAvailable { available_from } = e {
            a.available_from = Some(otpd_core::rfc3339(available_from));
        }
        a
    }
}

impl From<AdminFailure> for ApiError {
    fn from(f: AdminFailure) -> ApiError {
        // The admin socket's code is a string on the wire: one this build does not know
        // answers 500.
        if f.error == Refusal::StoreError.as_str() {
            return store_unavailable();
        }
        ApiError {
            status: status_for(&f.error),
            error: f.error,
            message: f.message,
            available_from: None,
            retry_after: None,
        }
    }
}

impl ApiError {
    /// Too many sign-ins from this source are waiting: 429 `rate_limited`, try again in a
    /// second. Nothing was evaluated and no failure counted.
    pub fn sign_ins_full() -> ApiError {
        let r = Refusal::RateLimited;
        let mut e = ApiError::new(r, r.api_message().unwrap_or("too many requests"));
        e.retry_after = Some(1);
        e
    }

    /// `Retry-After` on `response` when this refusal asks for a wait.
    pub fn mark(&self, mut response: Response) -> Response {
        if let Some(s) = self.retry_after {
            let v = axum::http::HeaderValue::from(s);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let r = (self.status, Json(&self)).into_response();
        self.mark(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_refusal_has_a_deliberate_status() {
        let cases = [
            (OpError::BadInput("x".into()), 400),
            (OpError::BadLoginId, 400),
            (OpError::SetupRefused, 401),
            (OpError::BadOtp, 401),
            (OpError::OtpReplayed, 401),
            (OpError::UnknownLink, 404),
            (OpError::UnknownUser("u".into()), 404),
            (OpError::LinkGone, 410),
            (OpError::LinkExhausted, 429),
            (OpError::Locked, 423),
            (
                OpError::RenewalNotYetAvailable {
                    available_from: 1_900_000_000,
                },
                409,
            ),
            (OpError::UserExists("u".into()), 409),
            (
                OpError::WrongState {
                    state: "issued",
                    hint: "h",
                },
                409,
            ),
        ];
        for (e, status) in cases {
            let code = e.code();
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status, "{code}");
            assert_eq!(a.error, code);
        }
        let hidden = ApiError::from(OpError::Store("db1:5432 otpd: Connection refused".into()));
        assert_eq!(hidden.status.as_u16(), 503);
        assert_eq!(hidden.error, "store_unavailable");
        assert!(!hidden.message.contains("5432"), "{}", hidden.message);
    }

    #[test]
    fn early_renewal_carries_available_from() {
        let a = ApiError::from(OpError::RenewalNotYetAvailable {
            available_from: 1_900_000_000,
        });
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["error"], "renewal_not_yet_available");
        assert_eq!(json["available_from"], "2030-03-17T17:46:40Z");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        let plain = serde_json::to_value(ApiError::from(OpError::LinkGone)).expect("json");
        assert!(plain.get("available_from").is_none());
        assert!(plain.get("status").is_none());
    }

    #[test]
    fn admin_socket_failures_map_by_code() {
        let a = ApiError::from(AdminFailure {
            error: "user_exists".into(),
            message: "user \"a\" already exists".into(),
        });
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert_eq!(
            status_for("something_new"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
