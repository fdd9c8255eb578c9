//! The issuance e-mail's text: a built-in Japanese/English template, or `mail.template`.
//! Placeholders are replaced in one pass, so a value can never inject another placeholder.

use std::path::Path;

use otpd_core::UnixTime;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "link",
    "app_link",
    "service_id",
    "login_id",
    "expires_at",
    "expires_at_jst",
];

const BUILTIN_SUBJECT: &str =
    "【{service_id}】ワンタイムパスワード利用登録のご案内 / One-time password setup";

const BUILTIN_BODY: &str = "\
{service_id} をご利用いただきありがとうございます。

ワンタイムパスワード（ソフトウェアトークン）の発行を受け付けました。
下記のURLをスマートフォンで開き、初期設定を行ってください。

■ トークンアプリ（おすすめ）
{app_link}

■ 初期設定URL（他の認証アプリをお使いの場合）
{link}

■ 初期設定で入力していただく項目
  サービスID　　　　: {service_id}
  ユーザID　　　　　: ログインID（{login_id}）
  利用開始パスワード: トークン発行のお申し込み時にお決めいただいたもの

■ URLの有効期限
  {expires_at_jst}
  有効期限を過ぎた場合は、あらためてトークン発行をお申し込みください。

初期設定の後、トークンに表示されるワンタイムパスワードで利用開始のお手続きを
行ってください。

このメールにお心当たりのない場合は、URLを開かずにこのメールを削除してください。
このメールは送信専用です。ご返信いただいてもお答えできません。

------------------------------------------------------------
English

Thank you for using {service_id}.

A one-time password (software token) has been issued for you.
Please open the link below on your phone to complete the initial setup.

Token app (recommended):
{app_link}

Setup link (for another authenticator app):
{link}

At setup you will be asked for:
  Service ID:          {service_id}
  User ID:             your login ID ({login_id})
  Activation password: the one you chose when you applied for the token

The link expires at {expires_at} ({expires_at_jst}).
After that, please apply for a new token issuance.

After the setup, start using the token by entering a one-time password it shows.

If you did not expect this e-mail, do not open the link; just delete the e-mail.
This address does not receive replies.
";

/// The values one e-mail is rendered with.
pub struct Fields<'a> {
    pub link: &'a str,
    /// The same code opening the token app's setup screen.
    pub app_link: &'a str,
    pub service_id: &'a str,
    pub login_id: &'a str,
    pub link_expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct Template {
    subject: String,
    body: String,
}

impl Template {
    pub fn builtin() -> Template {
        Template {
            subject: BUILTIN_SUBJECT.into(),
            body: BUILTIN_BODY.into(),
        }
    }

    /// A template file: its text is the body; a first line `Subject: …` replaces the
    /// built-in subject. It must use `{link}`, or the customer could not set up.
    pub fn load(path: &Path) -> Result<Template, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("mail template {}: {e}", path.display()))?;
        Template::parse(&text).map_err(|e| format!("mail template {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Template, String> {
        let text = text.replace("\r\n", "\n");
        let (subject, body) = match text.split_once('\n') {
            Some((first, rest)) if first.to_ascii_lowercase().starts_with("subject:") => {
                let s = first["subject:".len()..].trim();
                (s.to_string(), rest.trim_start_matches('\n').to_string())
            }
            _ => (BUILTIN_SUBJECT.to_string(), text.clone()),
        };
        if !body.contains("{link}") {
            return Err("the text must contain {link}".into());
        }
        for name in placeholders_in(&subject).chain(placeholders_in(&body)) {
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}; known: {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ));
            }
        }
        Ok(Template { subject, body })
    }

    /// (subject, body).
    pub fn render(&self, f: &Fields<'_>) -> (String, String) {
        let expires_at = otpd_core::rfc3339(f.link_expires_at);
        let expires_jst = jst_datetime(f.link_expires_at);
        let value = |name: &str| -> Option<&str> {
            match name {
                "link" => Some(f.link),
                "app_link" => Some(f.app_link),
                "service_id" => Some(f.service_id),
                "login_id" => Some(f.login_id),
                "expires_at" => Some(&expires_at),
                "expires_at_jst" => Some(&expires_jst),
                _ => None,
            }
        };
        // A subject is one line whatever a template or a value holds.
        let subject = fill(&self.subject, &value).replace(['\r', '\n'], " ");
        (subject, fill(&self.body, &value))
    }
}

/// The `{name}` placeholders of `text` (names of letters and underscores only).
fn placeholders_in(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|part| {
        let (name, _) = part.split_once('}')?;
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then_some(name)
    })
}

fn fill<'v>(text: &str, value: &impl Fn(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after
            .split_once('}')
            .and_then(|(name, tail)| Some((value(name)?, tail)))
        {
            Some((v, tail)) => {
                out.push_str(v);
                rest = tail;
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `t` written by `show` in Japan Standard Time, the customers' clock (no daylight
/// saving); RFC 3339 for a time the calendar cannot hold.
fn in_jst(t: UnixTime, show: impl FnOnce(time::OffsetDateTime) -> String) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| show(d.to_offset(time::macros::offset!(+9))))
        .unwrap_or_else(|_| otpd_core::rfc3339(t))
}

/// `2029年11月25日 15:04（日本時間）`.
pub fn jst_datetime(t: UnixTime) -> String {
    in_jst(t, |d| {
        format!(
            "{}年{}月{}日 {:02}:{:02}（日本時間）",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        )
    })
}

/// `2029年11月25日`.
pub fn jst_date(t: UnixTime) -> String {
    in_jst(t, |d| {
        format!("{}年{}月{}日", d.year(), u8::from(d.month()), d.day())
    })
}

/// `2029-11-25 15:04 JST`.
pub fn jst_datetime_en(t: UnixTime) -> String {
    in_jst(t, |d| {
        format!(
            "{}-{:02}-{:02} {:02}:{:02} JST",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        )
    })
}

/// Parses the RFC 3339 strings the core hands out.
pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp())
}

/// The notice to a registered address (subject, body), Japanese first: what changed, who
/// asked, and what to do when the customer did not. It never carries a link.
pub fn notice_text(
    notice: &otpd_core::service::Notice,
    service_id: &str,
    login_id: &str,
) -> (String, String) {
    use otpd_core::service::Notice;
    let (ja, en) = match notice {
        Notice::Reissued { .. } => (
            "ワンタイムパスワードのトークンが再発行されました。これまでのセットアップ用URLや、初期設定済みのトークンはご利用いただけません。".to_string(),
            "Your one-time password token was issued again. The earlier setup link, or a token already set up, no longer works.".to_string(),
        ),
        Notice::AddressChanged { to, .. } => (
            format!("トークン発行のご案内メールの送信先が {to} に変更されました。"),
            format!("The token issuance e-mail now goes to {to}."),
        ),
        Notice::Cancelled { .. } => (
            "ワンタイムパスワードの利用解除を受け付けました。".to_string(),
            "Your one-time password token was cancelled.".to_string(),
        ),
    };
    let (by_ja, by_en) = if notice.by() == otpd_core::service::BY_MENU {
        ("ワンタイムパスワード申請メニュー", "the OTP menu")
    } else {
        ("当組合", "the bank")
    };
    let subject =
        format!("【{service_id}】ワンタイムパスワードの登録内容変更のお知らせ / Change to your one-time password");
    let body = format!(
        "{service_id} をご利用いただきありがとうございます。\n\n\
         ログインID（{login_id}）について、{by_ja}からのお手続きにより次の変更がありました。\n\
         {ja}\n\n\
         お心当たりのない場合は、至急お取引店にお問い合わせください。\n\
         このメールは送信専用です。\n\n\
         ------------------------------------------------------------\n\
         English\n\n\
         For login ID {login_id}, a request through {by_en} made this change:\n\
         {en}\n\n\
         If you did not ask for it, please contact your branch at once.\n\
         This address does not receive replies.\n"
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "0123456789abcdef0123456789abcdef01234567";

    fn fields(link: &str) -> Fields<'_> {
        Fields {
            link,
            app_link: "https://bank.example/app/#/setup/0123",
            service_id: "EXAMPLE-BANK",
            login_id: "taro",
            // 2025-11-25T06:04:00Z = 15:04 in Tokyo
            link_expires_at: 1_764_050_640,
        }
    }

    #[test]
    fn builtin_is_japanese_first_with_link_ids_and_expiry() {
        let link = format!("https://otp.example.jp/enroll/{CODE}");
        let (subject, body) = Template::builtin().render(&fields(&link));
        assert_eq!(
            subject,
            "【EXAMPLE-BANK】ワンタイムパスワード利用登録のご案内 / One-time password setup"
        );
        let ja = body.find("初期設定URL").expect("Japanese part");
        let en = body.find("Setup link").expect("English part");
        assert!(ja < en, "Japanese comes first");
        assert!(body[..en].contains(&link), "link in the Japanese part");
        assert!(body[en..].contains(&link), "link in the English part");
        assert!(body.contains("サービスID　　　　: EXAMPLE-BANK"));
        assert!(body.contains("ログインID（taro）"));
        assert!(body.contains("2025年11月25日 15:04（日本時間）"), "{body}");
        assert!(body.contains("2025-11-25T06:04:00Z"), "{body}");
        assert!(!body.contains('{'), "every placeholder filled: {body}");
    }

    #[test]
    fn a_template_file_replaces_text_and_subject() {
        let t = Template::parse(
            "Subject: {service_id} setup\r\n\r\nOpen {link} before {expires_at_jst}. {literal braces} {}\n",
        )
        .expect("valid");
        let (s, b) = t.render(&fields("L"));
        assert_eq!(s, "EXAMPLE-BANK setup");
        assert_eq!(
            b,
            "Open L before 2025年11月25日 15:04（日本時間）. {literal braces} {}\n"
        );
        let no_subject = Template::parse("{login_id}: {link}").expect("valid");
        assert!(no_subject.render(&fields("L")).0.contains("EXAMPLE-BANK"));
    }

    #[test]
    fn templates_without_the_link_or_with_unknown_placeholders_are_refused() {
        assert!(Template::parse("hello {login_id}")
            .expect_err("no link")
            .contains("{link}"));
        assert!(Template::parse("{link} {code}")
            .expect_err("unknown")
            .contains("{code}"));
    }

    #[test]
    fn values_are_not_expanded_again() {
        let t = Template::parse("{link}").expect("valid");
        let (_, b) = t.render(&fields("{login_id}"));
        assert_eq!(b, "{login_id}");
    }

    #[test]
    fn dates() {
        assert_eq!(jst_date(1_764_050_640), "2025年11月25日");
        assert_eq!(jst_datetime_en(1_764_050_640), "2025-11-25 15:04 JST");
        assert_eq!(parse_rfc3339("2025-11-25T06:04:00Z"), Some(1_764_050_640));
        // 15:30 UTC is already the next day in Tokyo.
        assert_eq!(jst_date(1_764_084_600), "2025年11月26日");
    }
}
