//! Taking a user through the customer's path with the real binaries: issuance by otpctl,
//! the link from the mail, setup over HTTP, codes from oathtool, start of use by otpctl.

use std::time::Duration;

use crate::daemon::{wait_until, Otpd};
use crate::oath::{now, oathtool};

/// The setup link code in the newest mail to `to` in otpd's file-transport mail folder.
pub fn link_code_from_mail_dir(d: &Otpd, to: &str) -> String {
    let dir = d.dir.path().join("mail");
    wait_until("the issuance mail", Duration::from_secs(20), || {
        let mut newest: Option<(std::time::SystemTime, String)> = None;
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let text = std::fs::read_to_string(e.path()).ok()?;
            if !text.contains(to) {
                continue;
            }
            let t = e.metadata().ok()?.modified().ok()?;
            if newest.as_ref().is_none_or(|(nt, _)| t >= *nt) {
                newest = Some((t, text));
            }
        }
        newest.and_then(|(_, text)| link_code(&text))
    })
}

/// The code after `/enroll/` in an .eml file (a base64 body decoded first).
pub fn link_code(mail: &str) -> Option<String> {
    use base64::Engine;
    let (head, body) = mail
        .split_once("\r\n\r\n")
        .or_else(|| mail.split_once("\n\n"))?;
    let flat = if head
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: base64")
    {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD
                .decode(joined)
                .ok()?,
        )
        .into_owned()
    } else {
        body.replace("=\r\n", "").replace("=\n", "")
    };
    let at = flat.find("/enroll/")? + "/enroll/".len();
    let code: String = flat[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!code.is_empty()).then_some(code)
}

/// Adds `login` with `password` and issues a token (activation password `act-pass-1234`,
/// mail to `{login}@docomo.example.jp`); returns the setup link's code from the mail.
pub fn issue(d: &Otpd, login: &str, password: &str) -> String {
    d.ctl_ok(
        &["user", "add", login, "--password-stdin"],
        &format!("{password}\n"),
    );
    let email = format!("{login}@docomo.example.jp");
    d.ctl_ok(
        &[
            "token",
            "issue",
            login,
            "--email",
            &email,
            "--activation-password-stdin",
        ],
        "act-pass-1234\n",
    );
    link_code_from_mail_dir(d, &email)
}

/// Adds `login` with `password`, issues a token, sets it up through the link by JSON and
/// returns the base32 secret (state: provisioned).
pub fn setup(d: &Otpd, login: &str, password: &str) -> String {
    let code = issue(d, login, password);
    let r = crate::http::post_json(
        d.http(),
        &format!("/api/v1/enroll/{code}"),
        &serde_json::json!({"service_id": "TEST-BANK", "user_id": login, "activation_password": "act-pass-1234"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["secret"].as_str().expect("secret").to_string()
}

/// As [`setup`], then start of use with the code of the step before now (so the
/// current step stays free for the test). Returns the secret.
pub fn activate(d: &Otpd, login: &str, password: &str) -> String {
    let secret = setup(d, login, password);
    // The code of the step before now is accepted within otp.window = 1 only while now is
    // still in the step it was computed in: on a loaded machine a step may end between
    // oathtool and otpd, so a refusal is tried once more with a fresh code (the refused
    // code was not spent, and one counted failure is far from the lock).
    for attempt in 0..2 {
        let code = oathtool(&secret, Some(now() - 60));
        let out = d.otpctl(&["token", "activate", login, "--otp", &code], "");
        if out.status.success() {
            return secret;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            attempt == 0 && err.contains("not valid"),
            "otpctl token activate {login} failed: {err}"
        );
    }
    unreachable!("the loop returns or panics")
}
