//! The page handlers: the same operations as the JSON API, answered as HTML.

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use otpd_core::{OpError, Refusal};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::api::{fields_fit, link_code};
use super::error::status;
use super::html::{self, Page};
use super::{qr, Shared};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupForm {
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

fn error_page(web: &Shared, r: Refusal) -> Page {
    html::error_page(status(r), r.as_str(), &web.service_id)
}

/// `GET /enroll/{code}`: the form, or why the link no longer works.
pub async fn setup_get(
    State(web): State<Shared>,
    code: Result<Path<String>, PathRejection>,
) -> Page {
    let code = match link_code(code) {
        Ok(c) => c,
        Err(e) => return html::error_page(e.status, &e.error, &web.service_id),
    };
    let link = code.clone();
    match web
        .ops
        .run(move |svc, now| svc.check_link(&link, now))
        .await
    {
        Ok(Ok(())) => html::setup_form(StatusCode::OK, &web.service_id, &code, None, "", ""),
        Ok(Err(e)) | Err(e) => error_page(&web, e.refusal()),
    }
}

/// `POST /enroll/{code}`: 初期設定; the secret is shown on the answer, once.
pub async fn setup_post(
    State(web): State<Shared>,
    code: Result<Path<String>, PathRejection>,
    form: Result<Form<SetupForm>, FormRejection>,
) -> Page {
    let code = match link_code(code) {
        Ok(c) => c,
        Err(e) => return html::error_page(e.status, &e.error, &web.service_id),
    };
    let Ok(Form(f)) = form else {
        return error_page(&web, Refusal::BadRequest);
    };
    if fields_fit(&[&f.service_id, &f.user_id, &f.activation_password]).is_err() {
        return error_page(&web, Refusal::BadRequest);
    }
    let (typed_sid, typed_uid) = (f.service_id.clone(), f.user_id.clone());
    let link = code.clone();
    match web
        .ops
        .setup(code, f.service_id, f.user_id, f.activation_password)
        .await
    {
        Ok(e) => html::setup_done(&web.service_id, &e, qr::svg(&e.otpauth_uri).as_deref()),
        Err(OpError::SetupRefused) => html::setup_form(
            StatusCode::UNAUTHORIZED,
            &web.service_id,
            &link,
            Some(Refusal::SetupRefused.as_str()),
            &typed_sid,
            &typed_uid,
        ),
        Err(e) => error_page(&web, e.refusal()),
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
        return error_page(&web, Refusal::BadRequest);
    };
    if fields_fit(&[&f.service_id, &f.user_id, &f.otp]).is_err() {
        return error_page(&web, Refusal::BadRequest);
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
            again(StatusCode::UNAUTHORIZED, Refusal::RenewRefused.as_str())
        }
        Err(e) => error_page(&web, e.refusal()),
    }
}
