//! One table from a refusal's code to its HTTP status, for the JSON API and the pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use otpd_core::admin::AdminFailure;
use otpd_core::OpError;
use serde::Serialize;

/// The status for a refusal code (`OpError::code()`, or one of the HTTP layer's own).
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "bad_request" | "bad_input" | "bad_login_id" => StatusCode::BAD_REQUEST,
        "setup_refused" | "bad_otp" | "otp_replayed" | "unauthorized" => StatusCode::UNAUTHORIZED,
        "unknown_link" | "unknown_user" | "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "request_timeout" => StatusCode::REQUEST_TIMEOUT,
        "renewal_not_yet_available" | "user_exists" | "wrong_state" => StatusCode::CONFLICT,
        "link_gone" => StatusCode::GONE,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "locked" => StatusCode::LOCKED,
        "attempts_exhausted" | "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "store_error" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status_for(code),
            error: code.into(),
            message: message.into(),
            available_from: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new("bad_request", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new("not_found", "no such resource")
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let mut a = ApiError::new(e.code(), e.to_string());
        if let OpError::RenewalNotYetAvailable { available_from } = e {
            a.available_from = Some(otpd_core::rfc3339(available_from));
        }
        a
    }
}

impl From<AdminFailure> for ApiError {
    fn from(f: AdminFailure) -> ApiError {
        ApiError::new(&f.error, f.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
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
            (OpError::Store("disk".into()), 503),
        ];
        for (e, status) in cases {
            let code = e.code();
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status, "{code}");
            assert_eq!(a.error, code);
        }
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
