//! The OTP menu as pages (a reference front end for banks without their own): sign-in,
//! BOP001 status, BOT001 issuance, BOT002 result, start of use, cancellation with a
//! confirmation step, renewal. No JavaScript; every POST carries the session's CSRF token
//! in a hidden field, and a step that worked answers with a redirect to the status page.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use otpd_core::refusal::FALLBACK_SENTENCE;
use otpd_core::{OpError, Refusal};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::error::ApiError;
use super::html::{self, escape, input, Page};
use super::my::{self, set_cookie, Signed, Status};
use super::Shared;

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

// ---- sign-in ---------------------------------------------------------------------------

fn sign_in_page(web: &Shared, status: StatusCode, error: Option<&str>, typed: &str) -> Page {
    let mut body = error.map(error_box).unwrap_or_default();
    body.push_str("<form method=\"post\" action=\"/my/sign-in\">\n");
    body.push_str(&input(
        "login_id",
        "ログインID",
        "Login ID",
        typed,
        "maxlength=\"64\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\"",
    ));
    body.push_str(&input(
        "password",
        "ログインパスワード",
        "Login password",
        "",
        "type=\"password\" maxlength=\"120\" autocomplete=\"current-password\"",
    ));
    body.push_str(
        "<label for=\"otp\">ワンタイムパスワード（利用開始後のみ）<span class=\"en\" lang=\"en\">One-time password (once your token is in use)</span></label>\n\
<input id=\"otp\" name=\"otp\" inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" autocomplete=\"one-time-code\">\n",
    );
    body.push_str(&submit("sign-in", "ログイン", "Sign in", ""));
    body.push_str("</form>\n");
    page(
        web,
        status,
        "ワンタイムパスワード申請 ログイン",
        "One-time password menu: sign in",
        &body,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    #[serde(default)]
    login_id: String,
    #[serde(default)]
    password: Zeroizing<String>,
    #[serde(default)]
    otp: Zeroizing<String>,
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /my/`: BOP001 when signed in, else the sign-in form.
pub async fn menu(
    State(web): State<Shared>,
    headers: HeaderMap,
    done: Result<Query<Done>, QueryRejection>,
) -> Response {
    let done = done.ok().and_then(|Query(d)| d.done);
    let signed = match my::session(&web, &headers).await {
        Ok(s) => s,
        Err(_) => {
            let note = (done.as_deref() == Some("signed_out")).then_some("signed_out");
            let mut p = sign_in_page(&web, StatusCode::OK, None, "");
            if note.is_some() {
                p.html = p.html.replacen(
                    "<form",
                    "<div class=\"ok\" role=\"status\"><p>ログアウトしました。</p><p lang=\"en\">You are signed out.</p></div>\n<form",
                    1,
                );
            }
            return p.into_response();
        }
    };
    match my::view(&web, &signed.session.login_id).await {
        Ok(v) => {
            let st = Status::new(v, &signed.session);
            signed_page(&web, &signed, status_page(&web, &st, done.as_deref()))
        }
        Err(e) => error_page(&web, &e),
    }
}

fn error_page(web: &Shared, e: &ApiError) -> Response {
    html::error_page(e.status, &e.error, &web.service_id).into_response()
}

/// A browser's word that the form was posted from another site. Sign-in has no session
/// (nor CSRF token) yet; this keeps another site from signing a customer in to its own
/// account (login CSRF). Browsers without the header post as before.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "same-origin" | "none"))
}

/// `POST /my/sign-in`.
pub async fn sign_in(
    State(web): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return html::error_page(
            StatusCode::FORBIDDEN,
            Refusal::CsrfMismatch.as_str(),
            &web.service_id,
        )
        .into_response();
    }
    let Ok(Form(f)) = form else {
        return sign_in_page(
            &web,
            StatusCode::BAD_REQUEST,
            Some(Refusal::BadRequest.as_str()),
            "",
        )
        .into_response();
    };
    let typed = f.login_id.clone();
    match my::sign_in(&web, f.login_id, f.password, f.otp).await {
        Ok((_, sealed)) => to_menu(&web, Some(&sealed), "signed_in"),
        Err(e) => {
            let typed = if typed.len() <= 64 {
                typed
            } else {
                String::new()
            };
            sign_in_page(&web, e.status, Some(&e.error), &typed).into_response()
        }
    }
}

// ---- BOP001 ----------------------------------------------------------------------------

fn done_box(done: &str) -> Option<(&'static str, &'static str)> {
    Some(match done {
        "activated" => (
            "ワンタイムパスワードの利用を開始しました。",
            "You have started using the one-time password.",
        ),
        "cancelled" => (
            "ワンタイムパスワードの利用を解除しました。",
            "The one-time password has been cancelled.",
        ),
        "renewed" => (
            "有効期限を更新しました。",
            "The expiry date has been extended.",
        ),
        _ => return None,
    })
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

/// BOP001: 登録状況 and the three buttons of the guide (and renewal when open).
fn status_page(web: &Shared, st: &Status, done: Option<&str>) -> Page {
    let mut body = String::new();
    if let Some((ja, en)) = done.and_then(done_box) {
        body.push_str(&format!(
            "<div class=\"ok\" role=\"status\"><p>{ja}</p><p lang=\"en\">{en}</p></div>\n"
        ));
    }
    body.push_str(&format!(
        "<dl>\n<dt>ログインID <span lang=\"en\">Login ID</span></dt><dd id=\"login\">{login}</dd>\n\
<dt>登録状況 <span lang=\"en\">Status</span></dt><dd id=\"state\" data-state=\"{state}\">{ja}<span class=\"en\" lang=\"en\">{state}</span></dd>\n\
<dt>メールアドレス <span lang=\"en\">E-mail</span></dt><dd id=\"email\">{email}</dd>\n\
<dt>有効期限 <span lang=\"en\">Valid until</span></dt><dd id=\"expires\">{exp}</dd>\n</dl>\n",
        login = escape(&st.login_id),
        state = escape(&st.state),
        ja = st.state_ja,
        email = escape(st.email.as_deref().unwrap_or("—")),
        exp = date(st.expires_at.as_deref()),
    ));
    let button = |action: &str, path: &str, ja: &str, en: &str| {
        if st.actions.contains(&action) {
            format!("<a class=\"app\" id=\"go-{action}\" href=\"{path}\">{ja}<span class=\"en\" lang=\"en\">{en}</span></a>\n")
        } else {
            format!("<p class=\"note\" id=\"no-{action}\" aria-disabled=\"true\">{ja}（現在はご利用いただけません）<span class=\"en\" lang=\"en\">{en} (not available now)</span></p>\n")
        }
    };
    body.push_str("<nav aria-label=\"お手続き / Steps\">\n");
    body.push_str(&button(
        "issue",
        "/my/issue",
        "トークン発行",
        "Issue a token",
    ));
    body.push_str(&button(
        "activate",
        "/my/activate",
        "ワンタイムパスワード利用開始",
        "Start using the one-time password",
    ));
    body.push_str(&button(
        "cancel",
        "/my/cancel",
        "ワンタイムパスワード利用解除",
        "Cancel the one-time password",
    ));
    if st.actions.contains(&"renew") {
        body.push_str(&button(
            "renew",
            "/my/renew",
            "有効期限更新",
            "Extend the expiry date",
        ));
    }
    body.push_str("</nav>\n<form method=\"post\" action=\"/my/sign-out\">\n");
    body.push_str(&csrf_field(&st.csrf_token));
    body.push_str(&submit("sign-out", "ログアウト", "Sign out", "sub"));
    body.push_str("</form>\n");
    page(
        web,
        StatusCode::OK,
        "ワンタイムパスワード申請",
        "One-time password menu",
        &body,
    )
}

// ---- the steps -------------------------------------------------------------------------

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
        return Err(html::error_page(
            StatusCode::FORBIDDEN,
            Refusal::CsrfMismatch.as_str(),
            &web.service_id,
        )
        .into_response());
    }
    Ok(s)
}

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

with_csrf!(IssueForm, OtpForm, CancelForm);

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
            return Err(html::error_page(
                StatusCode::BAD_REQUEST,
                Refusal::BadRequest.as_str(),
                &web.service_id,
            )
            .into_response());
        };
        let s = posted(web, &headers, Some(f.csrf())).await?;
        Ok(Posted(f, s))
    }
}

fn issue_page(
    web: &Shared,
    status: StatusCode,
    csrf: &str,
    error: Option<&str>,
    typed: &str,
) -> Page {
    let mut body = error.map(error_box).unwrap_or_default();
    body.push_str(
        "<p>トークンのダウンロード・初期設定のご案内を送る携帯電話のメールアドレスと、初期設定で使う利用開始パスワードを入力してください。</p>\n\
<p class=\"en\" lang=\"en\">Enter your mobile e-mail address (the setup link is sent there) and choose the activation password for the initial setup.</p>\n\
<form method=\"post\" action=\"/my/issue\">\n",
    );
    body.push_str(&csrf_field(csrf));
    body.push_str(&input(
        "email",
        "携帯メールアドレス",
        "Mobile e-mail address",
        typed,
        "type=\"email\" maxlength=\"254\" autocomplete=\"email\" autocapitalize=\"none\" spellcheck=\"false\"",
    ));
    body.push_str(&input(
        "email_confirmation",
        "携帯メールアドレス（確認用）",
        "Mobile e-mail address (again)",
        "",
        "type=\"email\" maxlength=\"254\" autocomplete=\"off\" autocapitalize=\"none\" spellcheck=\"false\"",
    ));
    body.push_str(&input(
        "activation_password",
        "利用開始パスワード（4文字以上）",
        "Activation password (4 characters or more)",
        "",
        "type=\"password\" minlength=\"4\" maxlength=\"120\" autocomplete=\"new-password\"",
    ));
    body.push_str(&input(
        "activation_password_confirmation",
        "利用開始パスワード（確認用）",
        "Activation password (again)",
        "",
        "type=\"password\" minlength=\"4\" maxlength=\"120\" autocomplete=\"new-password\"",
    ));
    body.push_str(&submit("issue", "トークン発行", "Issue the token", ""));
    body.push_str("</form>\n");
    body.push_str(back_link());
    page(
        web,
        status,
        "トークン発行（BOT001）",
        "Token issuance",
        &body,
    )
}

/// `GET /my/issue`: BOT001.
pub async fn issue_get(State(web): State<Shared>, SignedIn(s): SignedIn) -> Response {
    let p = issue_page(&web, StatusCode::OK, &s.session.csrf, None, "");
    signed_page(&web, &s, p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    email_confirmation: String,
    #[serde(default)]
    activation_password: Zeroizing<String>,
    #[serde(default)]
    activation_password_confirmation: Zeroizing<String>,
}

/// `POST /my/issue`: BOT002, or BOT001 again saying what to correct.
pub async fn issue_post(State(web): State<Shared>, Posted(f, s): Posted<IssueForm>) -> Response {
    let r = my::issue(
        &web,
        &s.session,
        &f.email,
        &f.email_confirmation,
        f.activation_password,
        &f.activation_password_confirmation,
    )
    .await;
    match r {
        Ok(v) => {
            let email = v.email.unwrap_or_default();
            // The guide's order: the address first, then "accepted as shown above".
            let body = format!(
                "<dl>\n<dt>携帯メールアドレス <span lang=\"en\">Mobile e-mail address</span></dt><dd id=\"email\">{}</dd>\n</dl>\n\
<div class=\"ok\" role=\"status\"><p id=\"accepted\">上記内容でトークン発行を受付ました。</p>\
<p lang=\"en\">Your token issuance has been accepted as shown above.</p></div>\n\
<p>このアドレスにトークンのダウンロード・初期設定のご案内をお送りしました。メールのURLを開いて初期設定を行ってください。</p>\n\
<p class=\"en\" lang=\"en\">We have sent the token's download and setup link to this address. Open it to complete the initial setup.</p>\n",
                escape(&email)
            ) + back_link();
            signed_page(
                &web,
                &s,
                page(
                    &web,
                    StatusCode::OK,
                    "トークン発行受付（BOT002）",
                    "Token issuance accepted",
                    &body,
                ),
            )
        }
        Err(e) => {
            // A format error of the address comes from the core as bad_input.
            let code = if e.error == Refusal::BadInput.as_str() {
                Refusal::BadEmail.as_str()
            } else {
                e.error.as_str()
            };
            let typed = if f.email.len() <= 254 {
                f.email.as_str()
            } else {
                ""
            };
            let p = issue_page(&web, e.status, &s.session.csrf, Some(code), typed);
            signed_page(&web, &s, p)
        }
    }
}

fn otp_page(
    web: &Shared,
    status: StatusCode,
    step: &str,
    csrf: &str,
    error: Option<&str>,
    extra: &str,
) -> Page {
    let (ja, en, intro_ja, intro_en, button_ja, button_en) = if step == "renew" {
        (
            "有効期限更新",
            "Extend the expiry date",
            "トークンアプリに表示されているワンタイムパスワードを入力してください。",
            "Enter the one-time password your token app shows.",
            "有効期限を更新する",
            "Extend",
        )
    } else {
        (
            "ワンタイムパスワード利用開始",
            "Start using the one-time password",
            "利用者様の携帯アプリ状況を確認するため、トークンアプリに表示されているワンタイムパスワードを入力してください。",
            "To check your phone's token app, enter the one-time password it shows.",
            "利用開始",
            "Start",
        )
    };
    let mut body = error.map(error_box).unwrap_or_default();
    body.push_str(extra);
    body.push_str(&format!(
        "<p>{intro_ja}</p>\n<p class=\"en\" lang=\"en\">{intro_en}</p>\n<form method=\"post\" action=\"/my/{step}\">\n"
    ));
    body.push_str(&csrf_field(csrf));
    body.push_str(
        "<label for=\"otp\">ワンタイムパスワード<span class=\"en\" lang=\"en\">One-time password</span></label>\n\
<input id=\"otp\" name=\"otp\" inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" autocomplete=\"one-time-code\" required>\n",
    );
    body.push_str(&submit(step, button_ja, button_en, ""));
    body.push_str("</form>\n");
    body.push_str(back_link());
    page(web, status, ja, en, &body)
}

/// `GET /my/activate`.
pub async fn activate_get(State(web): State<Shared>, SignedIn(s): SignedIn) -> Response {
    let p = otp_page(&web, StatusCode::OK, "activate", &s.session.csrf, None, "");
    signed_page(&web, &s, p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    otp: Zeroizing<String>,
}

/// `POST /my/activate`: 利用開始.
pub async fn activate_post(State(web): State<Shared>, Posted(f, s): Posted<OtpForm>) -> Response {
    match my::activate(&web, &s.session, f.otp).await {
        Ok(_) => to_menu(&web, Some(&s.cookie), "activated"),
        Err(e) => {
            let p = otp_page(
                &web,
                e.status,
                "activate",
                &s.session.csrf,
                Some(&e.error),
                "",
            );
            signed_page(&web, &s, p)
        }
    }
}

/// `GET /my/cancel`: the confirmation step.
pub async fn cancel_get(State(web): State<Shared>, SignedIn(s): SignedIn) -> Response {
    let mut body = String::from(
        "<div class=\"error\" role=\"alert\"><p>ワンタイムパスワードの利用を解除します。よろしいですか？解除するとトークンは使えなくなり、再度ご利用になるにはトークン発行からお手続きが必要です。</p>\
<p lang=\"en\">This cancels your one-time password. The token stops working; to use one again you will need a new token issuance. Continue?</p></div>\n\
<form method=\"post\" action=\"/my/cancel\">\n<input type=\"hidden\" name=\"confirm\" value=\"yes\">\n",
    );
    body.push_str(&csrf_field(&s.session.csrf));
    body.push_str(&submit(
        "cancel",
        "利用解除する",
        "Cancel the token",
        "danger",
    ));
    body.push_str("</form>\n");
    body.push_str(back_link());
    let p = page(
        &web,
        StatusCode::OK,
        "ワンタイムパスワード利用解除の確認",
        "Confirm cancellation",
        &body,
    );
    signed_page(&web, &s, p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /my/cancel`: 利用解除, once confirmed.
pub async fn cancel_post(State(web): State<Shared>, Posted(f, s): Posted<CancelForm>) -> Response {
    match my::cancel(&web, &s.session, f.confirm == "yes").await {
        Ok(_) => to_menu(&web, Some(&s.cookie), "cancelled"),
        Err(e) => error_page(&web, &e),
    }
}

/// `GET /my/renew`.
pub async fn renew_get(State(web): State<Shared>, SignedIn(s): SignedIn) -> Response {
    let extra = match my::view(&web, &s.session.login_id).await {
        Ok(v) => format!(
            "<dl><dt>現在の有効期限 <span lang=\"en\">Valid until</span></dt><dd id=\"expires\">{}</dd></dl>\n",
            date(v.expires_at.as_deref())
        ),
        Err(e) => return error_page(&web, &e),
    };
    let p = otp_page(&web, StatusCode::OK, "renew", &s.session.csrf, None, &extra);
    signed_page(&web, &s, p)
}

/// `POST /my/renew`: 有効期限更新.
pub async fn renew_post(State(web): State<Shared>, Posted(f, s): Posted<OtpForm>) -> Response {
    match my::renew(&web, &s.session, f.otp).await {
        Ok(_) => to_menu(&web, Some(&s.cookie), "renewed"),
        Err(e) => {
            let code = match &e {
                OpError::SetupRefused => Refusal::BadOtp.as_str(),
                e => e.code(),
            };
            let status = ApiError::from(e.clone()).status;
            let p = otp_page(&web, status, "renew", &s.session.csrf, Some(code), "");
            signed_page(&web, &s, p)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /my/sign-out`.
pub async fn sign_out(
    State(web): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let s = match posted(&web, &headers, Some(&csrf)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match my::sign_out(&web, &s.session).await {
        Ok(()) => to_menu(&web, None, "signed_out"),
        Err(e) => error_page(&web, &e),
    }
}
