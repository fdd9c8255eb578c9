//! The page handlers: the same operations as the JSON API, answered as HTML.

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use otpd_core::OpError;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::api::{fields_fit, link_code};
use super::html::{self, Page};
use super::{qr, status_for, Shared};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollForm {
    #[serde(default)]
    service_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    activation_password: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewForm {
    #[serde(default)]
    service_id: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    otp: Zeroizing<String>,
}

fn error_page(web: &Shared, code: &str) -> Page {
    html::error_page(status_for(code), code, &web.service_id)
}

/// `GET /enroll/{code}`: the form, or why the link no longer works.
pub async fn enroll_get(
    State(web): State<Shared>,
    code: Result<Path<String>, PathRejection>,
) -> Page {
    let code = match link_code(code) {
        Ok(c) => c,
        Err(e) => return error_page(&web, &e.error),
    };
    let link = code.clone();
    match web
        .ops
        .run(move |svc, now| svc.check_link(&link, now))
        .await
    {
        Ok(Ok(())) => html::enroll_form(StatusCode::OK, &web.service_id, &code, None, "", ""),
        Ok(Err(e)) | Err(e) => error_page(&web, e.code()),
    }
}

/// `POST /enroll/{code}`: 初期設定; the secret is shown on the answer, once.
pub async fn enroll_post(
    State(web): State<Shared>,
    code: Result<Path<String>, PathRejection>,
    form: Result<Form<EnrollForm>, FormRejection>,
) -> Page {
    let code = match link_code(code) {
        Ok(c) => c,
        Err(e) => return error_page(&web, &e.error),
    };
    let Ok(Form(f)) = form else {
        return error_page(&web, "bad_request");
    };
    if fields_fit(&[&f.service_id, &f.user_id, &f.activation_password]).is_err() {
        return error_page(&web, "bad_request");
    }
    let (typed_sid, typed_uid) = (f.service_id.clone(), f.user_id.clone());
    let link = code.clone();
    match web
        .ops
        .enroll(code, f.service_id, f.user_id, f.activation_password)
        .await
    {
        Ok(e) => html::enrolled(&web.service_id, &e, qr::svg(&e.otpauth_uri).as_deref()),
        Err(OpError::SetupRefused) => html::enroll_form(
            StatusCode::UNAUTHORIZED,
            &web.service_id,
            &link,
            Some("setup_refused"),
            &typed_sid,
            &typed_uid,
        ),
        Err(e) => error_page(&web, e.code()),
    }
}

fn window_days(web: &Shared) -> u32 {
    web.ops.service().token_policy().renewal_window_days
}

/// `GET /renew`.
pub async fn renew_get(State(web): State<Shared>) -> Page {
    html::renew_form(
        StatusCode::OK,
        &web.service_id,
        window_days(&web),
        None,
        "",
        "",
    )
}

/// `POST /renew`: 有効期限更新 by the customer.
pub async fn renew_post(
    State(web): State<Shared>,
    form: Result<Form<RenewForm>, FormRejection>,
) -> Page {
    let Ok(Form(f)) = form else {
        return error_page(&web, "bad_request");
    };
    if fields_fit(&[&f.service_id, &f.user_id, &f.otp]).is_err() {
        return error_page(&web, "bad_request");
    }
    let (typed_sid, typed_uid) = (f.service_id.clone(), f.user_id.clone());
    let again = |status: StatusCode, code: &str| {
        html::renew_form(
            status,
            &web.service_id,
            window_days(&web),
            Some(code),
            &typed_sid,
            &typed_uid,
        )
    };
    match web.ops.renew(f.service_id, f.user_id, f.otp).await {
        Ok(view) => html::renewed(&web.service_id, view.expires_at.as_deref()),
        Err(OpError::RenewalNotYetAvailable { available_from }) => {
            html::renew_too_early(&web.service_id, available_from)
        }
        // The core answers every refusal before the OTP is proven with BadOtp.
        Err(OpError::SetupRefused) | Err(OpError::BadOtp) => {
            again(StatusCode::UNAUTHORIZED, "renew_refused")
        }
        Err(e) => error_page(&web, e.code()),
    }
}
