//! The customer's pages: Japanese first, English below, readable on a phone, no
//! JavaScript but the setup success page's import into the token app (same-origin files,
//! never inline). Everything echoed is escaped here; handlers pass plain strings.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use otpd_core::refusal::FALLBACK_SENTENCE;
use otpd_core::service::SetupDone;
use otpd_core::{Refusal, UnixTime};

use crate::mail::{jst_date, jst_datetime_en};

/// Escapes text for element content and double- or single-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A rendered page with its status.
pub struct Page {
    pub status: StatusCode,
    pub html: String,
    /// A policy of the page's own; otherwise the edge's, which allows no script.
    pub csp: Option<&'static str>,
}

impl Page {
    /// A page in the common layout under the edge's policy.
    pub fn new(
        status: StatusCode,
        title_ja: &str,
        title_en: &str,
        service_id: &str,
        body: &str,
    ) -> Page {
        Page {
            status,
            html: layout(title_ja, title_en, service_id, body),
            csp: None,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut r = (self.status, Html(self.html)).into_response();
        if let Some(csp) = self.csp {
            r.headers_mut().insert(
                axum::http::header::CONTENT_SECURITY_POLICY,
                axum::http::HeaderValue::from_static(csp),
            );
        }
        r
    }
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font-family:system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',Meiryo,sans-serif;\
font-size:16px;line-height:1.6;color:#1a1a1a;background:#f4f5f7}\
main{max-width:34rem;margin:0 auto;padding:1rem;background:#fff;min-height:100vh}\
h1{font-size:1.3rem;margin:.5rem 0 1rem;line-height:1.4}\
h2{font-size:1.05rem;margin:1.5rem 0 .5rem}\
.en{display:block;font-size:.85em;font-weight:normal;color:#555}\
p.en{margin-top:-.5rem}\
label{display:block;font-weight:bold;margin-top:1rem}\
input{display:block;width:100%;font-size:1.1rem;padding:.6rem;margin-top:.25rem;\
border:1px solid #888;border-radius:.4rem}\
button{display:block;width:100%;font-size:1.1rem;padding:.8rem;margin-top:1.5rem;border:0;\
border-radius:.4rem;background:#0b5cad;color:#fff;font-weight:bold}\
.error{border-left:.3rem solid #c0262d;background:#fdecec;padding:.6rem .8rem;margin:1rem 0}\
.ok{border-left:.3rem solid #18794e;background:#e9f6ef;padding:.6rem .8rem;margin:1rem 0}\
.error p,.ok p{margin:.3rem 0}\
.qr{text-align:center;margin:1rem 0}\
.qr svg{width:100%;max-width:16rem;height:auto;border:1px solid #ddd}\
.key{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.15rem;letter-spacing:.05em;\
word-spacing:.3em;overflow-wrap:anywhere}\
.uri{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem;overflow-wrap:anywhere}\
dl{margin:0}dt{font-weight:bold;margin-top:.6rem}dd{margin:0}\
.note{font-size:.9rem;color:#444}\
a.app{display:block;text-align:center;font-size:1.1rem;padding:.8rem;border-radius:.4rem;\
background:#18794e;color:#fff;font-weight:bold;text-decoration:none}\
a.app .en{color:#e9f6ef}\
nav a{display:block;margin:.6rem 0}\
button .en{color:inherit;opacity:.9}\
button.sub{background:#fff;color:#0b5cad;border:1px solid #0b5cad}\
button.danger{background:#c0262d}\
button.app{background:#18794e}\
h3{font-size:1rem;margin:1.2rem 0 .4rem}\
[hidden]{display:none!important}";

pub(super) fn layout(title_ja: &str, title_en: &str, service_id: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n\
<title>{t_ja} / {t_en}{sid}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
<h1>{t_ja}<span class=\"en\" lang=\"en\">{t_en}</span></h1>\n{body}</main>\n</body>\n</html>\n",
        t_ja = escape(title_ja),
        t_en = escape(title_en),
        sid = if service_id.is_empty() {
            String::new()
        } else {
            format!(" — {}", escape(service_id))
        },
    )
}

/// A message in both languages, for a refusal code: the setup and renewal pages' sentence.
pub fn friendly(code: &str) -> (&'static str, &'static str) {
    Refusal::from_code(code)
        .and_then(Refusal::page_sentence)
        .unwrap_or(FALLBACK_SENTENCE)
}

pub(super) fn error_box(code: &str) -> String {
    let (ja, en) = friendly(code);
    format!(
        "<div class=\"error\" role=\"alert\"><p>{}</p><p lang=\"en\">{}</p></div>\n",
        escape(ja),
        escape(en)
    )
}

/// A page that only says what went wrong.
pub fn error_page(status: StatusCode, code: &str, service_id: &str) -> Page {
    Page::new(
        status,
        "お手続きできませんでした",
        "This could not be done",
        service_id,
        &error_box(code),
    )
}

pub(super) fn input(id: &str, ja: &str, en: &str, value: &str, extra: &str) -> String {
    format!(
        "<label for=\"{id}\">{ja}<span class=\"en\" lang=\"en\">{en}</span></label>\n\
<input id=\"{id}\" name=\"{id}\" value=\"{v}\" required {extra}>\n",
        v = escape(value),
    )
}

/// The service ID and user ID fields both forms start with, holding what was typed.
fn identity_inputs(typed_service_id: &str, typed_user_id: &str) -> String {
    input(
        "service_id",
        "サービスID",
        "Service ID",
        typed_service_id,
        "maxlength=\"64\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\"",
    ) + &input(
        "user_id",
        "ユーザID",
        "User ID",
        typed_user_id,
        "maxlength=\"64\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\"",
    )
}

/// 初期設定: the three fields. Typed IDs come back after a refusal; the password never.
pub fn setup_form(
    status: StatusCode,
    service_id: &str,
    link_code: &str,
    error: Option<&str>,
    typed_service_id: &str,
    typed_user_id: &str,
) -> Page {
    let mut body = error.map(error_box).unwrap_or_default();
    // The token app first: it honours the 60-second period and offers renewal itself.
    body.push_str(&format!(
        "<p><a class=\"app\" id=\"open-app\" href=\"/app/#/setup/{code}\">トークンアプリで初期設定する（おすすめ）\
<span class=\"en\" lang=\"en\">Set up in the token app (recommended)</span></a></p>\n\
<h2>他の認証アプリをお使いの場合<span class=\"en\" lang=\"en\">With another authenticator app</span></h2>\n",
        code = escape(link_code)
    ));
    body.push_str(
        "<p>メールでご案内したサービスIDとユーザID、トークン発行のお申し込み時にお決めいただいた利用開始パスワードを入力してください。</p>\n\
<p class=\"en\" lang=\"en\">Enter the service ID and user ID from the e-mail, and the activation password you chose when you applied for the token.</p>\n\
<form method=\"post\">\n",
    );
    body.push_str(&identity_inputs(typed_service_id, typed_user_id));
    body.push_str(&input(
        "activation_password",
        "利用開始パスワード",
        "Activation password",
        "",
        "type=\"password\" maxlength=\"120\" autocomplete=\"off\"",
    ));
    body.push_str(
        "<button type=\"submit\" id=\"setup-button\">初期設定する<span class=\"en\" lang=\"en\">Set up</span></button>\n</form>\n\
<p class=\"note\">続けて間違えると、このURLは使用できなくなります。<br>\
<span lang=\"en\">After several wrong attempts this link stops working.</span></p>\n",
    );
    Page::new(
        status,
        "ワンタイムパスワード 初期設定",
        "One-time password: initial setup",
        service_id,
        &body,
    )
}

/// `ABCD EFGH IJKL …`: the key as a person copies it.
pub fn group4(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one time the secret is shown: QR, key, URI, expiry.
pub fn setup_done(service_id: &str, e: &SetupDone, qr_svg: Option<&str>) -> Page {
    let expires = crate::mail::parse_rfc3339(&e.expires_at);
    let (exp_ja, exp_en) = match expires {
        Some(t) => (jst_date(t), jst_datetime_en(t)),
        None => (e.expires_at.clone(), e.expires_at.clone()),
    };
    let qr = match qr_svg {
        // Generated by us from the URI: markup, not text.
        Some(svg) => format!("<div class=\"qr\">{svg}</div>\n"),
        None => String::new(),
    };
    // First way: the token app on this phone. The block shows only where import.js runs
    // (and WebCrypto with it); the button's data- attributes carry what the app's store
    // keeps. Kept short: on a computer's screen the QR code below stays in sight.
    let import = format!(
        "<section id=\"import\" hidden aria-labelledby=\"import-title\">\n\
<h2 id=\"import-title\">トークンアプリに登録する（おすすめ）<span class=\"en\" lang=\"en\">Add it to the token app (recommended)</span></h2>\n\
<button type=\"button\" class=\"app\" id=\"import-app\" \
data-secret=\"{secret}\" data-issuer=\"{issuer}\" data-account=\"{account}\" data-period=\"{period}\" \
data-digits=\"{digits}\" data-algorithm=\"{alg}\" data-expires-at=\"{expires_at}\" \
data-renewal-available-from=\"{from}\">トークンアプリに登録する<span class=\"en\" lang=\"en\">Add to the token app</span></button>\n\
<div class=\"error\" id=\"import-failed\" role=\"alert\" tabindex=\"-1\" hidden><p>トークンアプリに登録できませんでした。下のQRコードかキーで、他のアプリに登録してください。</p>\
<p lang=\"en\">The token could not be added to the token app. Please use the QR code or the key below with another app.</p></div>\n\
</section>\n",
        secret = escape(&e.secret),
        issuer = escape(&e.issuer),
        account = escape(&e.account),
        period = e.period,
        digits = e.digits,
        alg = escape(&e.algorithm),
        expires_at = escape(&e.expires_at),
        from = escape(&e.renewal_available_from),
    );
    let body = format!(
        "<div class=\"ok\"><p>初期設定が正常に完了しました。</p><p lang=\"en\">Initial setup completed successfully.</p></div>\n\
{import}\
<h2>他の認証アプリをお使いの場合<span class=\"en\" lang=\"en\">With another authenticator app</span></h2>\n\
<p>お使いの認証アプリで、次のQRコードを読み取ってください。</p>\n\
<p class=\"en\" lang=\"en\">Scan this QR code with your authenticator app.</p>\n\
{qr}\
<p>この画面をスマートフォンで表示している場合は、<a href=\"{uri}\">こちらをタップ</a>してアプリに登録することもできます。</p>\n\
<p class=\"en\" lang=\"en\">On the phone itself, you can <a href=\"{uri}\">tap here</a> to add it.</p>\n\
<h3>手動で入力する場合<span class=\"en\" lang=\"en\">Manual entry</span></h3>\n\
<dl>\n<dt>キー <span lang=\"en\">Key</span></dt><dd class=\"key\" id=\"key\">{key}</dd>\n\
<dt>アカウント <span lang=\"en\">Account</span></dt><dd>{issuer}: {account}</dd>\n\
<dt>方式 <span lang=\"en\">Type</span></dt><dd>TOTP（時間ベース / time-based）, {period}秒 / {period} s, {digits}桁 / {digits} digits, {alg}</dd>\n\
<dt>有効期限 <span lang=\"en\">Valid until</span></dt><dd>{exp_ja}<span class=\"en\" lang=\"en\">{exp_en}</span></dd>\n\
<dt>URI</dt><dd class=\"uri\" id=\"uri\">{uri}</dd>\n</dl>\n\
<p class=\"note\" id=\"apps-60\">60秒ごとに変わるパスワードに対応したアプリをお使いください（FreeOTP、Aegis など）。Android版 Google Authenticator など、一部のアプリは60秒の設定を無視して30秒ごとのパスワードを表示すると報告されています。その場合はトークンアプリをお使いください。<br>\
<span lang=\"en\">Use an app that honours 60-second periods (e.g. FreeOTP, Aegis). Some apps, such as Google Authenticator on Android, are reported to ignore period=60 and show 30-second codes that will not work; use the token app instead.</span></p>\n\
<h2>利用開始<span class=\"en\" lang=\"en\">Start using it</span></h2>\n\
<p>アプリに表示される{digits}桁のワンタイムパスワードで、利用開始のお手続きを行ってください。</p>\n\
<p class=\"en\" lang=\"en\">Then start using the token with a {digits}-digit one-time password the app shows.</p>\n\
<p class=\"note\">この画面は一度しか表示されません。キーやQRコードを他人に見せたり、保存したりしないでください。<br>\
<span lang=\"en\">This page is shown only once. Do not show or keep the key or the QR code anywhere else.</span></p>\n\
<script src=\"/app/store.js\"></script>\n<script src=\"/app/import.js\"></script>\n",
        uri = escape(&e.otpauth_uri),
        key = escape(&group4(&e.secret)),
        issuer = escape(&e.issuer),
        account = escape(&e.account),
        period = e.period,
        digits = e.digits,
        alg = escape(&e.algorithm),
        exp_ja = escape(&exp_ja),
        exp_en = escape(&exp_en),
    );
    Page {
        status: StatusCode::OK,
        html: layout("初期設定完了", "Setup complete", service_id, &body),
        csp: Some(super::edge::CSP_WITH_SCRIPTS),
    }
}

/// 有効期限更新: service ID, user ID and a current one-time password.
pub fn renew_form(
    status: StatusCode,
    service_id: &str,
    window_days: u32,
    error: Option<&str>,
    typed_service_id: &str,
    typed_user_id: &str,
) -> Page {
    let mut body = error.map(error_box).unwrap_or_default();
    body.push_str(&format!(
        "<p>トークンの有効期限を更新します。サービスID、ユーザID、アプリに表示されているワンタイムパスワードを入力してください。\
更新は有効期限の{window_days}日前から、また有効期限が切れた後もできます。</p>\n\
<p class=\"en\" lang=\"en\">Renew your token: enter the service ID, your user ID and the one-time password the app shows now. \
Renewal opens {window_days} days before the token expires, and stays open after it expired.</p>\n\
<form method=\"post\">\n",
    ));
    body.push_str(&identity_inputs(typed_service_id, typed_user_id));
    body.push_str(&input(
        "otp",
        "ワンタイムパスワード",
        "One-time password",
        "",
        "maxlength=\"10\" inputmode=\"numeric\" pattern=\"[0-9]*\" autocomplete=\"one-time-code\"",
    ));
    body.push_str("<button type=\"submit\" id=\"renew-button\">更新する<span class=\"en\" lang=\"en\">Renew</span></button>\n</form>\n");
    Page::new(
        status,
        "トークン有効期限の更新",
        "Token renewal",
        service_id,
        &body,
    )
}

pub fn renewed(service_id: &str, expires_at: Option<&str>) -> Page {
    let when = expires_at.and_then(crate::mail::parse_rfc3339);
    let (ja, en) = match when {
        Some(t) => (jst_date(t), jst_datetime_en(t)),
        None => (String::new(), String::new()),
    };
    let body = format!(
        "<div class=\"ok\"><p>有効期限を更新しました。新しい有効期限は{ja}です。</p>\
<p lang=\"en\">Your token is renewed. It is now valid until {en}.</p></div>\n",
        ja = escape(&ja),
        en = escape(&en),
    );
    Page::new(
        StatusCode::OK,
        "更新完了",
        "Renewal complete",
        service_id,
        &body,
    )
}

pub fn renew_too_early(service_id: &str, available_from: UnixTime) -> Page {
    let body = format!(
        "<div class=\"error\" role=\"alert\"><p>有効期限の更新はまだできません。{ja}から更新できます。</p>\
<p lang=\"en\">Renewal is not yet available. It opens on {en}.</p></div>\n",
        ja = escape(&jst_date(available_from)),
        en = escape(&jst_datetime_en(available_from)),
    );
    Page::new(
        StatusCode::CONFLICT,
        "まだ更新できません",
        "Renewal not yet available",
        service_id,
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn typed_values_are_escaped_and_the_password_is_never_echoed() {
        let p = setup_form(
            StatusCode::UNAUTHORIZED,
            "BANK<1>",
            "0123456789abcdef",
            Some("setup_refused"),
            "\"><script>alert(1)</script>",
            "taro",
        );
        assert!(!p.html.contains("<script>"), "{}", p.html);
        assert!(p.html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(p.html.contains("BANK&lt;1&gt;"));
        assert!(p.html.contains("name=\"activation_password\" value=\"\""));
        let ja = p
            .html
            .find("利用開始パスワードが正しくありません")
            .expect("ja");
        let en = p
            .html
            .find("activation password is not correct")
            .expect("en");
        assert!(ja < en, "Japanese first");
    }

    /// The guide's three words, as the mail and the token app write them.
    #[test]
    fn the_setup_form_names_the_fields_as_the_guide_does() {
        let p = setup_form(StatusCode::OK, "BANK", "0123456789abcdef", None, "", "");
        for word in ["サービスID", "ユーザID", "利用開始パスワード"] {
            assert!(p.html.contains(word), "{word}");
        }
        assert!(!p.html.contains("ユーザーID"));
        let app = include_str!("assets/index.html");
        assert!(app.contains("ユーザID") && !app.contains("ユーザーID"));
    }

    #[test]
    fn keys_are_grouped_by_four() {
        assert_eq!(group4("ABCDEFGHIJ"), "ABCD EFGH IJ");
        assert_eq!(group4(""), "");
    }

    #[test]
    fn every_page_is_japanese_first_for_phones() {
        let p = error_page(StatusCode::GONE, "link_gone", "BANK");
        assert!(p.html.starts_with("<!doctype html>"));
        assert!(p.html.contains("<html lang=\"ja\">"));
        assert!(p.html.contains("width=device-width"));
        assert!(!p.html.contains("<script"));
        let ja = p.html.find("使用済み").expect("ja");
        let en = p.html.find("already been used").expect("en");
        assert!(ja < en);
    }
}
