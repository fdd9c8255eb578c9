//! The OTP menu as pages (a reference front end for banks without their own): sign-in,
//! BOP001 status, BOT001 issuance, BOT002 result, start of use, cancellation with a
//! confirmation step, renewal. No JavaScript; every POST carries the session's CSRF token
//! in a hidden field, and a step that worked answers with a redirect to the status page.
//!
//! This file holds what every page of the menu shares (the layout's pieces, the session
//! and form of a step); `menu` the sign-in and status pages, `steps` the steps.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use otpd_core::refusal::FALLBACK_SENTENCE;
use otpd_core::Refusal;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::html::{self, escape, Page};
use super::my::{self, set_cookie, Signed};
use super::Shared;

/// A form that carries the session's CSRF token.
pub trait WithCsrf {
    fn csrf(&self) -> &str;
}

macro_rules! with_csrf {
    ($($form:ty),*) => {
        $(impl WithCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

mod menu;
mod steps;

use menu::sign_in_page;
pub use menu::{menu, sign_in, sign_out};
pub use steps::{
    activate_get, activate_post, cancel_get, cancel_post, issue_get, issue_post, renew_get,
    renew_post,
};

/// Both languages for a refusal code of the menu or the core.
fn friendly(code: &str) -> (&'static str, &'static str) {
    Refusal::from_code(code)
        .and_then(Refusal::menu_sentence)
        .unwrap_or(FALLBACK_SENTENCE)
}

fn error_box(code: &str) -> String {
    let (ja, en) = friendly(code);
    format!(
        "<div class=\"error\" role=\"alert\" id=\"error\" data-code=\"{}\"><p>{}</p><p lang=\"en\">{}</p></div>\n",
        escape(code),
        escape(ja),
        escape(en)
    )
}

fn page(web: &Shared, status: StatusCode, ja: &str, en: &str, body: &str) -> Page {
    Page::new(status, ja, en, &web.service_id, body)
}

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(csrf)
    )
}

fn submit(id: &str, ja: &str, en: &str, class: &str) -> String {
    format!("<button type=\"submit\" id=\"{id}\" class=\"{class}\">{ja}<span class=\"en\" lang=\"en\">{en}</span></button>\n")
}

fn back_link() -> &'static str {
    "<nav><a href=\"/my/\" id=\"back\">メニューに戻る<span class=\"en\" lang=\"en\">Back to the menu</span></a></nav>\n"
}

/// A page with the session's cookie refreshed.
fn signed_page(web: &Shared, signed: &Signed, p: Page) -> Response {
    let mut r = p.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(web, Some(&signed.cookie)));
    r
}

fn to_menu(web: &Shared, cookie: Option<&str>, done: &str) -> Response {
    let mut r = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/my/?done={done}"))],
    )
        .into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(web, cookie));
    r
}

fn error_page(web: &Shared, e: &ApiError) -> Response {
    refused_page(web, e.status, &e.error)
}

/// The page that only says what went wrong, for a refusal's `code`.
fn refused_page(web: &Shared, status: StatusCode, code: &str) -> Response {
    html::error_page(status, code, &web.service_id).into_response()
}

fn date(s: Option<&str>) -> String {
    match s.and_then(crate::mail::parse_rfc3339) {
        Some(t) => format!(
            "{}<span class=\"en\" lang=\"en\">{}</span>",
            escape(&crate::mail::jst_date(t)),
            escape(&crate::mail::jst_datetime_en(t))
        ),
        None => "—".into(),
    }
}

// ---- the session of a step ------------------------------------------------------------

/// The session of a GET step; the sign-in page when there is none.
async fn signed(web: &Shared, headers: &HeaderMap) -> Result<Signed, Response> {
    my::session(web, headers).await.map_err(|e| {
        sign_in_page(web, StatusCode::UNAUTHORIZED, Some(&e.error), "").into_response()
    })
}

/// The session of a POST step, whose form must carry its CSRF token.
async fn posted(web: &Shared, headers: &HeaderMap, csrf: Option<&str>) -> Result<Signed, Response> {
    let s = signed(web, headers).await?;
    if !my::csrf_ok(&s.session, csrf) {
        return Err(refused_page(
            web,
            StatusCode::FORBIDDEN,
            Refusal::CsrfMismatch.as_str(),
        ));
    }
    Ok(s)
}

/// The session of a GET step, taken before its handler runs; else the sign-in page.
pub struct SignedIn(Signed);

impl FromRequestParts<Shared> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Shared) -> Result<Self, Response> {
        signed(web, &parts.headers).await.map(SignedIn)
    }
}

/// A POSTed step's form and the session it belongs to (its CSRF token checked), or the
/// page that says why not: a form that does not parse first, then the session.
pub struct Posted<T>(T, Signed);

impl<T: DeserializeOwned + WithCsrf + Send> FromRequest<Shared> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Shared) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Ok(Form(f)) = Form::<T>::from_request(req, web).await else {
            return Err(refused_page(
                web,
                StatusCode::BAD_REQUEST,
                Refusal::BadRequest.as_str(),
            ));
        };
        let s = posted(web, &headers, Some(f.csrf())).await?;
        Ok(Posted(f, s))
    }
}
