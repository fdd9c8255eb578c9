//! Every refusal the outside sees, in one place: the stable snake_case code (the SPEC's, in
//! JSON `error` fields, `data-code` attributes and audit lines), the HTTP status, the reason
//! word of a RADIUS login's audit line, and the sentences the pages show. The core has no
//! HTTP crate, so the status is a plain `u16` that the daemon converts.

/// Declares [`Refusal`] from one list, each variant with its row, and [`Refusal::ALL`] for
/// the lookups by code and the tests.
macro_rules! refusals {
    ($($(#[$doc:meta])* $name:ident = $row:expr;)*) => {
        /// A refusal of otpd, as the outside sees it: its code, HTTP status, RADIUS audit
        /// reason and the sentences of the pages (see the module's table).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Refusal {
            $($(#[$doc])* $name,)*
        }

        impl Refusal {
            /// Every refusal, in the table's order.
            pub const ALL: &'static [Refusal] = &[$(Refusal::$name,)*];

            fn row(self) -> Row {
                match self {
                    $(Refusal::$name => $row,)*
                }
            }
        }
    };
}

/// A sentence in both languages: (Japanese, English).
pub type Sentence = (&'static str, &'static str);

/// What a page says for a refusal it has no sentence of its own for.
pub const FALLBACK_SENTENCE: Sentence = (
    "エラーが発生しました。しばらくしてからもう一度お試しください。",
    "Something went wrong. Please try again later.",
);

/// A refusal's row: everything the outside shows of it.
struct Row {
    code: &'static str,
    status: u16,
    radius: Option<&'static str>,
    page: Option<Sentence>,
    menu: Option<Sentence>,
    api: Option<&'static str>,
}

impl Row {
    const fn new(code: &'static str, status: u16) -> Row {
        Row {
            code,
            status,
            radius: None,
            page: None,
            menu: None,
            api: None,
        }
    }

    /// The reason word of a RADIUS login's audit line.
    const fn radius(mut self, reason: &'static str) -> Row {
        self.radius = Some(reason);
        self
    }

    /// The sentence of the setup and renewal pages (and of the OTP menu, unless it has its own).
    const fn page(mut self, ja: &'static str, en: &'static str) -> Row {
        self.page = Some((ja, en));
        self
    }

    /// The OTP menu's own sentence.
    const fn menu(mut self, ja: &'static str, en: &'static str) -> Row {
        self.menu = Some((ja, en));
        self
    }

    /// The English message of the OTP menu's JSON answer, for a refusal no core error words.
    const fn api(mut self, message: &'static str) -> Row {
        self.api = Some(message);
        self
    }
}

refusals! {
    /// The user already exists (adding a user).
    UserExists = Row::new("user_exists", 409);
    /// No such user; also the login reason for an unknown login ID.
    UnknownUser = Row::new("unknown_user", 404)
        .radius("unknown_user");
    /// The login ID is not of the allowed form.
    BadLoginId = Row::new("bad_login_id", 400)
        .page("入力内容をご確認ください。", "Please check what you entered.");
    /// A value of the request is not acceptable.
    BadInput = Row::new("bad_input", 400)
        .page("入力内容をご確認ください。", "Please check what you entered.");
    /// The token's state does not allow this step.
    WrongState = Row::new("wrong_state", 409)
        .page(
            "現在のトークンの状態では、このお手続きはできません。",
            "This is not possible in the token's current state.",
        );
    /// The one-time password is not valid.
    BadOtp = Row::new("bad_otp", 401)
        .radius("bad_otp")
        .page(
            "サービスID、ユーザID、またはワンタイムパスワードが正しくありません。",
            "The service ID, user ID or one-time password is not correct.",
        )
        .menu("ワンタイムパスワードが正しくありません。", "The one-time password is not correct.");
    /// The one-time password was already used.
    OtpReplayed = Row::new("otp_replayed", 401)
        .radius("otp_replayed")
        .page(
            "このワンタイムパスワードは使用済みです。次のパスワードが表示されてから入力してください。",
            "This one-time password was already used. Please wait for the next one.",
        );
    /// The user is locked after too many failures.
    Locked = Row::new("locked", 423)
        .radius("locked")
        .page(
            "誤った入力が続いたため、ご利用を一時停止しています。しばらくしてからお試しいただくか、お取引店にお問い合わせください。",
            "Locked after too many wrong attempts. Please try again later or contact your branch.",
        );
    /// The renewal window has not opened yet.
    RenewalNotYetAvailable = Row::new("renewal_not_yet_available", 409)
        .menu("有効期限更新はまだお手続きいただけません。", "Renewal is not open yet.");
    /// The setup link is not one otpd issued.
    UnknownLink = Row::new("unknown_link", 404)
        .page(
            "このURLは無効です。メールに記載されたURLをもう一度ご確認ください。",
            "This link is not valid. Please check the link in the e-mail.",
        );
    /// The setup link was used, replaced or has expired.
    LinkGone = Row::new("link_gone", 410)
        .page(
            "このURLは使用済みか、有効期限が切れています。あらためてトークン発行をお申し込みください。",
            "This link has already been used or has expired. Please apply for a new token issuance.",
        );
    /// Too many wrong attempts at the setup link.
    AttemptsExhausted = Row::new("attempts_exhausted", 429)
        .page(
            "誤った入力が続いたため、このURLは使用できなくなりました。あらためてトークン発行をお申し込みください。",
            "Too many wrong attempts: this link no longer works. Please apply for a new token issuance.",
        );
    /// Service ID, user ID or activation password is wrong.
    SetupRefused = Row::new("setup_refused", 401)
        .page(
            "サービスID、ユーザID、または利用開始パスワードが正しくありません。",
            "The service ID, user ID or activation password is not correct.",
        );
    /// The answer to a challenge brought a State that was already answered (on any node).
    BadState = Row::new("bad_state", 400).radius("bad_state");
    /// The store failed; also the login reason when it did.
    StoreError = Row::new("store_error", 503)
        .radius("store_error")
        .page(
            "ただいまご利用いただけません。しばらくしてからもう一度お試しください。",
            "The service is temporarily unavailable. Please try again later.",
        );
    /// The HTTP request or its form could not be read.
    BadRequest = Row::new("bad_request", 400)
        .page("入力内容をご確認ください。", "Please check what you entered.");
    /// The HTTP API needs a valid bearer API key.
    Unauthorized = Row::new("unauthorized", 401);
    /// No such HTTP resource.
    NotFound = Row::new("not_found", 404)
        .page("ページが見つかりません。", "Page not found.");
    /// The HTTP method is not allowed on this path.
    MethodNotAllowed = Row::new("method_not_allowed", 405);
    /// The request body did not arrive in time.
    RequestTimeout = Row::new("request_timeout", 408)
        .page("通信がタイムアウトしました。もう一度お試しください。", "The request timed out. Please try again.");
    /// The request body is too large.
    PayloadTooLarge = Row::new("payload_too_large", 413)
        .page("入力内容が長すぎます。", "What you entered is too long.");
    /// The JSON API was sent a body that is not JSON.
    UnsupportedMediaType = Row::new("unsupported_media_type", 415);
    /// Too many requests from this address.
    RateLimited = Row::new("rate_limited", 429)
        .page(
            "ただいまアクセスが集中しています。少し時間をおいてからもう一度お試しください。",
            "Too many requests right now. Please wait a moment and try again.",
        );
    /// The OTP menu's sign-in was refused, whatever the reason.
    SignInRefused = Row::new("sign_in_refused", 401)
        .menu(
            "ログインID、ログインパスワード、またはワンタイムパスワードが正しくないか、誤った入力が続いたためロックされています。",
            "The login ID, login password or one-time password is not correct, or sign-in is locked after too many attempts.",
        )
        .api(
            "login ID or password (or one-time password) is wrong, or sign-in is locked after too many attempts",
        );
    /// The token is in use: the one-time password is needed too.
    OtpRequired = Row::new("otp_required", 401)
        .radius("otp_required")
        .menu(
            "ワンタイムパスワードのご利用中です。ワンタイムパスワードも入力してください。",
            "Your token is in use: please enter the one-time password too.",
        )
        .api("the token is in use: sign in with the one-time password too");
    /// The OTP menu's session is missing or ended.
    NotSignedIn = Row::new("not_signed_in", 401)
        .menu(
            "ログインしていないか、一定時間操作がなかったためログアウトしました。もう一度ログインしてください。",
            "You are not signed in, or were signed out after a while without activity. Please sign in again.",
        )
        .api("not signed in, or the session ended; sign in again");
    /// The request does not carry the session's CSRF token.
    CsrfMismatch = Row::new("csrf_mismatch", 403)
        .menu("画面の有効期限が切れました。もう一度操作してください。", "This screen has expired. Please try again.")
        .api("the request does not carry this session's CSRF token");
    /// The e-mail address and its confirmation differ.
    EmailMismatch = Row::new("email_mismatch", 400)
        .menu("メールアドレスと確認用のメールアドレスが一致しません。", "The e-mail address and its confirmation differ.")
        .api("the two e-mail addresses differ");
    /// The e-mail address is not of a valid form (the OTP menu).
    BadEmail = Row::new("bad_email", 400)
        .menu("メールアドレスの形式が正しくありません。", "This is not a valid e-mail address.");
    /// The activation password and its confirmation differ.
    PasswordMismatch = Row::new("password_mismatch", 400)
        .menu(
            "利用開始パスワードと確認用のパスワードが一致しません。",
            "The activation password and its confirmation differ.",
        )
        .api("the activation password and its confirmation differ");
    /// A cancellation without its confirmation.
    ConfirmationRequired = Row::new("confirmation_required", 400)
        .api("cancellation needs the confirmation (\"confirm\": true)");
    /// A renewal whose OTP was not proven (every reason reads the same).
    RenewRefused = Row::new("renew_refused", 401)
        .page(
            "サービスID、ユーザID、またはワンタイムパスワードが正しくないか、誤った入力が続いています。次のパスワードが表示されてから、もう一度入力してください。",
            "The service ID, user ID or one-time password is not correct, or too many attempts were made. Please wait for the next code and try again.",
        );
    /// The login password is wrong.
    BadPassword = Row::new("bad_password", 401)
        .radius("bad_password");
    /// The password and OTP are right but the token has expired.
    Expired = Row::new("expired", 401)
        .radius("expired");
    /// The store does not answer: what the internet is told (the detail goes to the log).
    StoreUnavailable = Row::new("store_unavailable", 503)
        .page(
            "ただいまご利用いただけません。しばらくしてからもう一度お試しください。",
            "The service is temporarily unavailable. Please try again later.",
        )
        .api("the service is temporarily unavailable; please try again later");
    /// The menu's issuance named another address than the one the bank registered.
    EmailChangeRefused = Row::new("email_change_refused", 409)
        .menu(
            "セットアップ用URLは、登録済みのメールアドレスにお送りします。別のメールアドレスをご利用の場合は、お取引店にお問い合わせください。",
            "The setup link is sent to the e-mail address registered with the bank. To use another address, please contact your branch.",
        );
    /// Acting on a token in use needs a session that proved a one-time password.
    OtpSessionRequired = Row::new("otp_session_required", 403)
        .menu(
            "このお手続きには、ワンタイムパスワードでのログインが必要です。いったんログアウトし、ワンタイムパスワードを入力してログインしてください。",
            "This step needs a sign-in with the one-time password. Please sign out and sign in again with the one-time password.",
        );
    /// A pending setup cannot be replaced or cancelled by a password alone yet.
    PendingSetupProtected = Row::new("pending_setup_protected", 409)
        .menu(
            "トークン発行のお手続き中です。しばらくの間、ログインパスワードだけでは再発行・利用解除はできません。お心当たりのない場合は、お取引店にお問い合わせください。",
            "A token issuance is under way. For a while it cannot be replaced or cancelled with the login password alone. If you did not ask for it, please contact your branch.",
        );
}

impl Refusal {
    /// The stable machine-readable code.
    pub fn as_str(self) -> &'static str {
        self.row().code
    }

    /// The refusal with this code, if there is one.
    pub fn from_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.iter().copied().find(|r| r.as_str() == code)
    }

    /// The HTTP status the JSON API and the pages answer with.
    pub fn http_status(self) -> u16 {
        self.row().status
    }

    /// The reason word of a RADIUS login's audit line, for the refusals a login can end in.
    pub fn radius_reason(self) -> Option<&'static str> {
        self.row().radius
    }

    /// The sentence of the setup and renewal pages, if they have one for this refusal.
    pub fn page_sentence(self) -> Option<Sentence> {
        self.row().page
    }

    /// The sentence of the OTP menu's pages: its own, else the setup pages' one.
    pub fn menu_sentence(self) -> Option<Sentence> {
        let row = self.row();
        row.menu.or(row.page)
    }

    /// The English message of the OTP menu's JSON answer, where the menu words its own.
    pub fn api_message(self) -> Option<&'static str> {
        self.row().api
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_found_again() {
        let mut seen = std::collections::HashSet::new();
        for &r in Refusal::ALL {
            let code = r.as_str();
            assert!(seen.insert(code), "{code} twice");
            assert!(
                code.split('_')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
                "{code} is not snake_case"
            );
            assert_eq!(Refusal::from_code(code), Some(r));
            assert!((400..600).contains(&r.http_status()), "{code}");
            if let Some(reason) = r.radius_reason() {
                assert_eq!(reason, code, "the audit word is the code");
            }
        }
        assert_eq!(Refusal::from_code("something_new"), None);
    }

    #[test]
    fn every_refusal_a_page_shows_has_both_sentences() {
        // What the setup and renewal pages and the OTP menu's pages can show.
        use Refusal::*;
        let shown = [
            SetupRefused,
            UnknownLink,
            LinkGone,
            AttemptsExhausted,
            BadOtp,
            RenewRefused,
            OtpReplayed,
            Locked,
            WrongState,
            StoreError,
            BadRequest,
            BadInput,
            BadLoginId,
            PayloadTooLarge,
            RequestTimeout,
            NotFound,
            RateLimited,
            SignInRefused,
            OtpRequired,
            NotSignedIn,
            CsrfMismatch,
            EmailMismatch,
            BadEmail,
            PasswordMismatch,
            RenewalNotYetAvailable,
            StoreUnavailable,
            EmailChangeRefused,
            OtpSessionRequired,
            PendingSetupProtected,
        ];
        for r in shown {
            assert!(r.menu_sentence().is_some(), "{r} has no sentence");
        }
        let sentences = Refusal::ALL
            .iter()
            .flat_map(|r| [r.page_sentence(), r.menu_sentence()])
            .flatten()
            .chain([FALLBACK_SENTENCE]);
        for (ja, en) in sentences {
            assert!(!ja.is_ascii() && !ja.is_empty(), "{ja:?} is not Japanese");
            assert!(en.is_ascii() && !en.is_empty(), "{en:?} is not English");
        }
    }

    #[test]
    fn every_login_reject_reason_is_a_refusal_with_its_audit_word() {
        use crate::service::RejectReason::*;
        for (reason, word) in [
            (UnknownUser, "unknown_user"),
            (BadPassword, "bad_password"),
            (BadOtp, "bad_otp"),
            (OtpReplayed, "otp_replayed"),
            (Locked, "locked"),
            (OtpRequired, "otp_required"),
            (Expired, "expired"),
            (Store, "store_error"),
            (BadState, "bad_state"),
        ] {
            assert_eq!(reason.name(), word);
            assert_eq!(reason.refusal().radius_reason(), Some(word));
        }
    }
}
