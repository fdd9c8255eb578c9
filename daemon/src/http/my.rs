//! The customer's OTP menu (ワンタイムパスワード申請): a JSON API under `/api/v1/my/` for
//! internet-banking front ends, and the same steps as pages under `/my/` (see
//! [`super::my_pages`]). Sign-in is a login like RADIUS's (same lock); every step after it
//! is an existing core operation run through [`crate::ops::Ops`].
//!
//! The session is a cookie sealed under the master key (`otpd_core::customer`), so two
//! nodes behind one name both accept it; sign-out raises the user's session generation in
//! the store, which ends the session on every node.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use otpd_core::admin::{AdminData, AdminRequest, Secret};
use otpd_core::customer::{Session, IDLE_SECONDS};
use otpd_core::service::{LoginOutcome, RejectReason};
use otpd_core::user::{check_email, check_login_id, UserView};
use otpd_core::{OpError, Refusal};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::api::{body, fields_fit, renew_error};
use super::edge::Client;
use super::error::ApiError;
use super::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "otpd_my";
/// The header a front end repeats the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Who the audit lines name for the menu's operations.
const ACTOR: &str = "otp-menu";

/// A refusal of the menu: its code, status and English message (from [`Refusal`]).
pub fn refusal(r: Refusal) -> ApiError {
    ApiError::new(r, r.api_message().unwrap_or("the request was refused"))
}

/// The customer's view: what BOP001 shows, and the CSRF token for the next POST.
#[derive(Debug, Serialize)]
pub struct Status {
    pub login_id: String,
    pub state: String,
    pub state_ja: &'static str,
    pub locked: bool,
    pub email: Option<String>,
    pub expires_at: Option<String>,
    pub renewal_available: bool,
    pub renewal_available_from: Option<String>,
    /// The steps open in this state: `issue`, `activate`, `cancel`, `renew`.
    pub actions: Vec<&'static str>,
    pub csrf_token: String,
}

/// 登録状況 in the guide's words.
pub fn state_ja(state: &str) -> &'static str {
    match state {
        "unregistered" => "未登録",
        "issued" => "発行済",
        "provisioned" => "初期設定済",
        "active" => "利用中",
        "expired" => "有効期限切れ",
        _ => "不明",
    }
}

impl Status {
    /// `open`: whether this session may issue or cancel now (the core's `menu_view`).
    pub fn new(v: UserView, s: &Session, open: bool) -> Status {
        let state = v.state.name().to_string();
        let mut actions = Vec::new();
        // The core's rules: a token not yet in use can be issued again (a new phone), once
        // a pending setup is past the cool-down for a session without an OTP.
        if open && matches!(state.as_str(), "unregistered" | "issued" | "provisioned") {
            actions.push("issue");
        }
        if state == "provisioned" {
            actions.push("activate");
        }
        if v.renewal_available {
            actions.push("renew");
        }
        if open && state != "unregistered" {
            actions.push("cancel");
        }
        Status {
            login_id: v.login_id,
            state_ja: state_ja(&state),
            state,
            locked: v.locked,
            email: v.email,
            expires_at: v.expires_at,
            renewal_available: v.renewal_available,
            renewal_available_from: v.renewal_available_from,
            actions,
            csrf_token: s.csrf.clone(),
        }
    }
}

/// A live session and the refreshed cookie to send back with the answer.
pub struct Signed {
    pub session: Session,
    pub cookie: String,
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_string())
        })
}

/// The request's session, if its cookie opens and is still alive on this node's clock.
pub async fn session(web: &Shared, headers: &HeaderMap) -> Result<Signed, ApiError> {
    let Some(raw) = cookie_value(headers) else {
        return Err(refusal(Refusal::NotSignedIn));
    };
    let opened = web
        .ops
        .run(move |svc, now| {
            let s = svc.open_session(&raw, now)?;
            Ok::<_, OpError>(s.map(|s| {
                let cookie = svc.seal_session(&s.touched(now));
                Signed { session: s, cookie }
            }))
        })
        .await
        .and_then(|r| r)?;
    opened.ok_or_else(|| refusal(Refusal::NotSignedIn))
}

/// The `Set-Cookie` value for a sealed session (`None`: the sign-out that clears it).
pub fn set_cookie(web: &Shared, sealed: Option<&str>) -> HeaderValue {
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    let v = match sealed {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/; Max-Age={IDLE_SECONDS}; HttpOnly; SameSite=Strict{secure}"
        ),
        None => format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    };
    // Hex, a dot and fixed words: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// Whether `given` is the session's CSRF token.
pub fn csrf_ok(s: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(s.csrf.as_bytes())))
}

/// Sign-in: the login password, and the OTP once the token is in use; failures count on
/// the same lock as RADIUS logins. Returns the sealed session.
pub async fn sign_in(
    web: &Shared,
    login_id: String,
    password: Zeroizing<String>,
    otp: Zeroizing<String>,
    source: std::net::IpAddr,
) -> Result<(Session, String), ApiError> {
    fields_fit(&[&login_id, &password, &otp])?;
    let started = crate::clock::instant();
    let ops = &web.ops;
    if check_login_id(&login_id).is_err() || password.is_empty() {
        ops.refusal_floor(started).await;
        return Err(refusal(Refusal::SignInRefused));
    }
    // A full line for this source (or for all sign-ins) is answered at once: nothing was
    // evaluated, nothing counted, and RADIUS keeps its workers.
    let full = |_| ApiError::sign_ins_full();
    let mut outcome = ops
        .web_login(login_id.clone(), password, source)
        .await
        .map_err(full)?;
    let missing_otp = outcome == LoginOutcome::NeedOtp && otp.is_empty();
    if outcome == LoginOutcome::NeedOtp {
        outcome = if missing_otp {
            // The password is right, the OTP missing: counted, floored and audited like
            // any refused sign-in, so it is no cheaper oracle than a wrong password.
            let id = login_id.clone();
            ops.write(move |svc, now| Ok(svc.count_missing_otp(&id, now)))
                .await
                .unwrap_or(LoginOutcome::Reject(RejectReason::Store))
        } else {
            ops.web_login_otp(login_id.clone(), otp, source)
                .await
                .map_err(full)?
        };
    }
    let (refused, with_otp): (Option<ApiError>, bool) = match outcome {
        LoginOutcome::Accept { with_otp } => (None, with_otp),
        // The menu is also where a customer without an active token (otp.required) gets
        // one, and where an expired token is renewed: the password (and OTP, now spent)
        // are proven.
        LoginOutcome::Reject(RejectReason::OtpRequired) if missing_otp => {
            (Some(refusal(Refusal::OtpRequired)), false)
        }
        LoginOutcome::Reject(RejectReason::OtpRequired) => (None, false),
        LoginOutcome::Reject(RejectReason::Expired) => (None, true),
        // Locked is decided before the password is checked: it reads like a wrong
        // password, as on RADIUS, so the menu does not tell who exists or is locked.
        LoginOutcome::Reject(RejectReason::OtpReplayed) => {
            (Some(OpError::OtpReplayed.into()), false)
        }
        LoginOutcome::Reject(RejectReason::Store) => {
            (Some(refusal(Refusal::StoreUnavailable)), false)
        }
        _ => (Some(refusal(Refusal::SignInRefused)), false),
    };
    let reason = match (&refused, outcome) {
        (_, LoginOutcome::Reject(RejectReason::Expired)) => "expired",
        (Some(_), LoginOutcome::Reject(r)) => r.name(),
        (Some(_), _) => "refused",
        (None, _) => "ok",
    };
    ops.log.audit(&[
        ("menu", "sign_in"),
        ("user", &login_id),
        ("outcome", reason),
    ]);
    if let Some(e) = refused {
        ops.refusal_floor(started).await;
        return Err(e);
    }
    let id = login_id.clone();
    let r = ops
        .run(move |svc, now| {
            let s = svc.start_session(&id, with_otp, now)?;
            let sealed = svc.seal_session(&s);
            Ok::<_, OpError>((s, sealed))
        })
        .await
        .and_then(|r| r)?;
    Ok(r)
}

/// The user as the core shows it.
pub async fn view(web: &Shared, login_id: &str) -> Result<UserView, ApiError> {
    let req = AdminRequest::UserShow {
        login_id: login_id.into(),
    };
    match web.ops.admin(req, ACTOR).await? {
        AdminData::User(v) => Ok(v),
        _ => Err(OpError::Store("unexpected reply".into()).into()),
    }
}

/// The user after an operation that answers with it.
async fn user_op(web: &Shared, req: AdminRequest) -> Result<UserView, ApiError> {
    match web.ops.admin(req, ACTOR).await? {
        AdminData::User(v) | AdminData::Issued { user: v, .. } => Ok(v),
        _ => Err(OpError::Store("unexpected reply".into()).into()),
    }
}

/// BOT001: the address twice, the activation password twice; then トークン発行.
pub async fn issue(
    web: &Shared,
    s: &Session,
    email: &str,
    email_again: &str,
    activation_password: Zeroizing<String>,
    again: &str,
) -> Result<(UserView, Signed), ApiError> {
    fields_fit(&[email, email_again, &activation_password, again])?;
    check_email(email)?;
    if email != email_again {
        return Err(refusal(Refusal::EmailMismatch));
    }
    if !bool::from(activation_password.as_bytes().ct_eq(again.as_bytes())) {
        return Err(refusal(Refusal::PasswordMismatch));
    }
    let (session, email) = (s.clone(), email.to_string());
    let r = web
        .ops
        .write(move |svc, now| svc.menu_issue(&session, &email, &activation_password, now))
        .await;
    menu_audit(web, "issue", &s.login_id, &r);
    web.ops.mail_wake.notify_one();
    let (v, session) = r?;
    Ok((v, resealed(web, session).await?))
}

/// A session that goes on after its own step changed the user's session epoch.
async fn resealed(web: &Shared, session: Session) -> Result<Signed, ApiError> {
    let s = session.clone();
    let cookie = web.ops.run(move |svc, _| svc.seal_session(&s)).await?;
    Ok(Signed { session, cookie })
}

/// The audit line of a menu step that changes the token.
fn menu_audit<T>(web: &Shared, step: &str, login_id: &str, r: &Result<T, OpError>) {
    let outcome = match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    web.ops
        .log
        .audit(&[("menu", step), ("user", login_id), ("outcome", outcome)]);
}

/// 利用開始 with one OTP. The OTP it proves makes the session one that proved an OTP:
/// the session answered with (its cookie sealed again) may then act on the token in use.
pub async fn activate(
    web: &Shared,
    s: &Session,
    otp: Zeroizing<String>,
) -> Result<(UserView, Signed), ApiError> {
    fields_fit(&[&otp])?;
    let v = user_op(
        web,
        AdminRequest::TokenActivate {
            login_id: s.login_id.clone(),
            otp: Secret(otp),
        },
    )
    .await?;
    let proven = Session {
        otp: true,
        ..s.clone()
    };
    let session = proven.clone();
    let cookie = web.ops.run(move |svc, _| svc.seal_session(&proven)).await?;
    Ok((v, Signed { session, cookie }))
}

/// 利用解除, once confirmed.
pub async fn cancel(
    web: &Shared,
    s: &Session,
    confirmed: bool,
) -> Result<(UserView, Signed), ApiError> {
    if !confirmed {
        return Err(refusal(Refusal::ConfirmationRequired));
    }
    let session = s.clone();
    let r = web
        .ops
        .write(move |svc, now| svc.menu_cancel(&session, now))
        .await;
    menu_audit(web, "cancel", &s.login_id, &r);
    web.ops.mail_wake.notify_one();
    let (v, session) = r?;
    Ok((v, resealed(web, session).await?))
}

/// 有効期限更新 with one OTP: the customer renewal's rules and lock.
pub async fn renew(web: &Shared, s: &Session, otp: Zeroizing<String>) -> Result<UserView, OpError> {
    fields_fit(&[&otp]).map_err(|e| OpError::BadInput(e.message))?;
    web.ops
        .renew(web.service_id.clone(), s.login_id.clone(), otp)
        .await
}

/// Sign-out: every session of the user ends, on every node.
pub async fn sign_out(web: &Shared, s: &Session) -> Result<(), ApiError> {
    let id = s.login_id.clone();
    web.ops
        .write(move |svc, _| svc.end_sessions(&id))
        .await
        .map_err(ApiError::from)?;
    web.ops.log.audit(&[
        ("menu", "sign_out"),
        ("user", &s.login_id),
        ("outcome", "ok"),
    ]);
    Ok(())
}

// ---- the JSON API ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    login_id: String,
    password: Zeroizing<String>,
    #[serde(default)]
    otp: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    email: String,
    email_confirmation: String,
    activation_password: Zeroizing<String>,
    activation_password_confirmation: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpBody {
    otp: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    confirm: bool,
}

/// A JSON answer with the session cookie refreshed (or cleared).
fn answer(web: &Shared, cookie: Option<&str>, value: impl Serialize) -> Response {
    let mut r = Json(value).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(web, cookie));
    r
}

/// The session of a POST, which must repeat its CSRF token in `X-CSRF-Token`.
async fn posted(web: &Shared, headers: &HeaderMap) -> Result<Signed, ApiError> {
    let signed = session(web, headers).await?;
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !csrf_ok(&signed.session, given) {
        return Err(refusal(Refusal::CsrfMismatch));
    }
    Ok(signed)
}

/// A POSTed step of the API: its session (the CSRF header checked) first, then its body.
pub struct Step<T>(Signed, T);

impl<T: DeserializeOwned + Send> FromRequest<Shared> for Step<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, web: &Shared) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let signed = posted(web, &headers).await?;
        let b = body(Json::<T>::from_request(req, web).await)?;
        Ok(Step(signed, b))
    }
}

async fn status_answer(web: &Shared, signed: &Signed) -> Result<Response, ApiError> {
    let (v, open) = menu_view(web, &signed.session).await?;
    Ok(answer(
        web,
        Some(&signed.cookie),
        Status::new(v, &signed.session, open),
    ))
}

/// The user as session `s` sees it, and whether issuance and cancellation are open to it.
pub async fn menu_view(web: &Shared, s: &Session) -> Result<(UserView, bool), ApiError> {
    let s = s.clone();
    web.ops
        .run(move |svc, now| svc.menu_view(&s, now))
        .await
        .and_then(|r| r)
        .map_err(ApiError::from)
}

/// `POST /api/v1/my/sign-in` `{"login_id","password","otp"?}`.
pub async fn api_sign_in(
    State(web): State<Shared>,
    client: Option<axum::Extension<Client>>,
    b: Result<Json<SignInBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let source = Client::of(client);
    let (s, sealed) = sign_in(&web, b.login_id, b.password, b.otp, source).await?;
    let (v, open) = menu_view(&web, &s).await?;
    Ok(answer(&web, Some(&sealed), Status::new(v, &s, open)))
}

/// `GET /api/v1/my/status`.
pub async fn api_status(
    State(web): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let signed = session(&web, &headers).await?;
    status_answer(&web, &signed).await
}

/// `POST /api/v1/my/issue`.
pub async fn api_issue(
    State(web): State<Shared>,
    Step(signed, b): Step<IssueBody>,
) -> Result<Response, ApiError> {
    let (_, signed) = issue(
        &web,
        &signed.session,
        &b.email,
        &b.email_confirmation,
        b.activation_password,
        &b.activation_password_confirmation,
    )
    .await?;
    status_answer(&web, &signed).await
}

/// `POST /api/v1/my/activate` `{"otp"}`.
pub async fn api_activate(
    State(web): State<Shared>,
    Step(signed, b): Step<OtpBody>,
) -> Result<Response, ApiError> {
    let (_, proven) = activate(&web, &signed.session, b.otp).await?;
    status_answer(&web, &proven).await
}

/// `POST /api/v1/my/cancel` `{"confirm":true}`.
pub async fn api_cancel(
    State(web): State<Shared>,
    Step(signed, b): Step<CancelBody>,
) -> Result<Response, ApiError> {
    let (_, signed) = cancel(&web, &signed.session, b.confirm).await?;
    status_answer(&web, &signed).await
}

/// `POST /api/v1/my/renew` `{"otp"}`.
pub async fn api_renew(
    State(web): State<Shared>,
    Step(signed, b): Step<OtpBody>,
) -> Result<Response, ApiError> {
    renew(&web, &signed.session, b.otp)
        .await
        .map_err(renew_error)?;
    status_answer(&web, &signed).await
}

/// `POST /api/v1/my/sign-out`.
pub async fn api_sign_out(
    State(web): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let signed = posted(&web, &headers).await?;
    sign_out(&web, &signed.session).await?;
    Ok(answer(&web, None, serde_json::json!({"signed_out": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; otpd_my=ab.cd; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("ab.cd"));
        let mut none = HeaderMap::new();
        none.insert(header::COOKIE, HeaderValue::from_static("otpd_myx=1"));
        assert_eq!(cookie_value(&none), None);
    }

    #[test]
    fn every_menu_refusal_has_its_status() {
        for (code, status) in [
            ("sign_in_refused", 401),
            ("otp_required", 401),
            ("not_signed_in", 401),
            ("csrf_mismatch", 403),
            ("email_mismatch", 400),
            ("password_mismatch", 400),
            ("confirmation_required", 400),
        ] {
            let r = Refusal::from_code(code).expect("a refusal");
            assert_eq!(refusal(r).status.as_u16(), status, "{code}");
            assert_eq!(refusal(r).error, code);
        }
    }
}
