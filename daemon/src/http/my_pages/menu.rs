//! Sign-in, BOP001 (the status and the menu's buttons) and sign-out.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::*;
use crate::http::html::input;
use crate::http::my::Status;

// ---- sign-in ---------------------------------------------------------------------------

pub(super) fn sign_in_page(
    web: &Shared,
    status: StatusCode,
    error: Option<&str>,
    typed: &str,
) -> Page {
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
    match my::menu_view(&web, &signed.session).await {
        Ok((v, open)) => {
            let st = Status::new(v, &signed.session, open);
            signed_page(&web, &signed, status_page(&web, &st, done.as_deref()))
        }
        Err(e) => error_page(&web, &e),
    }
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
    client: Option<axum::Extension<crate::http::edge::Client>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return refused_page(&web, StatusCode::FORBIDDEN, Refusal::CsrfMismatch.as_str());
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
    let source = crate::http::edge::Client::of(client);
    match my::sign_in(&web, f.login_id, f.password, f.otp, source).await {
        Ok((_, sealed)) => to_menu(&web, Some(&sealed), "signed_in"),
        Err(e) => {
            let typed = if typed.len() <= 64 {
                typed
            } else {
                String::new()
            };
            e.mark(sign_in_page(&web, e.status, Some(&e.error), &typed).into_response())
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

// ---- sign-out --------------------------------------------------------------------------

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
