//! The JSON twins of the customer's pages: setup through the link, and renewal.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::Json;
use otpd_core::service::SetupDone;
use otpd_core::Refusal;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::{plausible_code, Shared};

/// Longest value accepted in any field; the core's own limits are tighter.
pub const FIELD_MAX: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    pub service_id: String,
    pub user_id: String,
    pub activation_password: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    pub service_id: String,
    pub user_id: String,
    pub otp: Zeroizing<String>,
}

#[derive(Serialize)]
pub struct Renewed {
    pub expires_at: Option<String>,
    /// When the next renewal opens: the token app shows its renewal menu from then on.
    pub renewal_available_from: Option<String>,
}

/// A JSON body, or the 400/415 that says why not.
pub fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match b {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
            Refusal::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        )),
        Err(e) => Err(ApiError::bad_request(
            otpd_core::admin::describe_json_error(&e.body_text(), "the request body"),
        )),
    }
}

pub fn fields_fit(values: &[&str]) -> Result<(), ApiError> {
    if values.iter().any(|v| v.len() > FIELD_MAX) {
        return Err(ApiError::bad_request(format!(
            "a field is longer than {FIELD_MAX} bytes"
        )));
    }
    Ok(())
}

/// The link code from the path, if it could be one.
pub fn link_code(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match p {
        Ok(Path(code)) if plausible_code(&code) => Ok(code),
        _ => Err(otpd_core::OpError::UnknownLink.into()),
    }
}

/// `POST /api/v1/enroll/{code}`.
pub async fn setup(
    State(web): State<Shared>,
    code: Result<Path<String>, PathRejection>,
    b: Result<Json<SetupBody>, JsonRejection>,
) -> Result<Json<SetupDone>, ApiError> {
    let code = link_code(code)?;
    let b = body(b)?;
    fields_fit(&[&b.service_id, &b.user_id, &b.activation_password])?;
    let e = web
        .ops
        .setup(code, b.service_id, b.user_id, b.activation_password)
        .await?;
    Ok(Json(e))
}

/// `POST /api/v1/renew`.
pub async fn renew(
    State(web): State<Shared>,
    b: Result<Json<RenewBody>, JsonRejection>,
) -> Result<Json<Renewed>, ApiError> {
    let b = body(b)?;
    fields_fit(&[&b.service_id, &b.user_id, &b.otp])?;
    let view = web
        .ops
        .renew(b.service_id, b.user_id, b.otp)
        .await
        .map_err(renew_error)?;
    Ok(Json(Renewed {
        expires_at: view.expires_at,
        renewal_available_from: view.renewal_available_from,
    }))
}

/// The one answer to a renewal whose OTP was not proven: whatever the reason (unknown user
/// ID, no token, a wrong or spent code, renewal locked), it reads the same.
pub const RENEW_REFUSED: &str = "service ID, user ID or one-time password is wrong, or too many attempts were made; wait for the next code and try again";

/// The core words a wrong service ID for setup; at renewal the third answer is the OTP.
pub fn renew_error(e: otpd_core::OpError) -> ApiError {
    match e {
        otpd_core::OpError::SetupRefused => ApiError::new(Refusal::SetupRefused, RENEW_REFUSED),
        otpd_core::OpError::BadOtp => ApiError::new(Refusal::BadOtp, RENEW_REFUSED),
        e => e.into(),
    }
}
