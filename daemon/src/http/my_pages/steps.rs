//! The steps behind the menu's buttons: BOT001/BOT002 issuance, start of use,
//! cancellation with its confirmation, renewal.

use axum::extract::State;
use otpd_core::OpError;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::*;
use crate::http::html::input;

with_csrf!(IssueForm, OtpForm, CancelForm);

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
        Ok((v, s)) => {
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
        Ok((_, proven)) => to_menu(&web, Some(&proven.cookie), "activated"),
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
        Ok((_, going_on)) => to_menu(&web, Some(&going_on.cookie), "cancelled"),
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
