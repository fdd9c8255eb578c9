//! PAM against the real otpd: Debian's pamtester loads the built pam_otpd.so through libpam
//! (libpam_wrapper supplies the service files) and logs in over RADIUS to a running otpd,
//! with codes from oathtool (the PAM issue).

use std::net::SocketAddr;
use std::time::Duration;

use otpd_testkit::daemon::{Otpd, RADIUS_SECRET};
use otpd_testkit::fake_radius::DeadServer;
use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::pam::*;
use otpd_testkit::token::activate;

// otpd's Reply-Messages (daemon/src/access.rs), as the person at the prompt reads them.
const ASK_OTP: &str = "ワンタイムパスワードを入力してください / Enter your one-time password: ";
const LOGIN_FAILED: &str = "ログインできませんでした / Login failed";
const OTP_FAILED: &str =
    "ワンタイムパスワードが正しくありません / The one-time password was not accepted";

const USER: &str = "taro";
const PASSWORD: &str = "login-pw";

/// otpd with `taro`, who has only a password (no token yet).
fn password_user() -> Otpd {
    let d = Otpd::start("");
    d.ctl_ok(
        &["user", "add", USER, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    d
}

/// otpd with `taro`, whose token is in use; returns the token's base32 secret.
fn token_user() -> (Otpd, String) {
    let d = Otpd::start("");
    let secret = activate(&d, USER, PASSWORD);
    (d, secret)
}

/// A PAM stack whose service `otp` is pam_otpd.so asking `servers` in order.
fn stack(servers: &[SocketAddr], options: &str) -> PamStack {
    let pam = PamStack::new();
    pam.service("otp", &[pam.otpd_line(servers, options)]);
    pam
}

/// A six-digit code no time step near now produces for `secret`.
fn wrong_code(secret: &str) -> String {
    let t = now();
    let valid: Vec<String> = (-2..=2)
        .map(|step| oathtool(secret, Some(t + step * 60)))
        .collect();
    (0..)
        .map(|n: u32| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .expect("a code outside the window")
}

fn audit_lines(d: &Otpd) -> Vec<String> {
    d.stderr()
        .lines()
        .filter(|l| l.contains("audit radius"))
        .map(str::to_string)
        .collect()
}

#[test]
fn password_alone_logs_in_before_start_of_use() {
    let d = password_user();
    let pam = stack(&[d.radius()], "");
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, PASSWORD)]);
    run.assert_result(SUCCESS, true);
    assert!(!run.said(ASK_OTP), "no OTP asked before start of use");
    let audit = audit_lines(&d);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].contains("audit radius accept user=\"taro\""),
        "{audit:?}"
    );
    // No nas_identifier option: the PAM service name stands in.
    assert!(audit[0].contains("nas=\"otp\""), "{audit:?}");
}

#[test]
fn password_then_otp_at_the_challenge_prompt() {
    let (d, secret) = token_user();
    let pam = stack(&[d.radius()], "");
    let code = oathtool(&secret, None);
    let run = pam.authenticate(
        "otp",
        USER,
        &[],
        &[(PASSWORD_PROMPT, PASSWORD), (ASK_OTP, &code)],
    );
    run.assert_result(SUCCESS, true);
    assert!(run.said(ASK_OTP), "otpd's Reply-Message is the prompt");
    let audit = audit_lines(&d);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit[0].contains("radius challenge user=\"taro\"") && audit[0].contains("input=password"),
        "{audit:?}"
    );
    assert!(
        audit[1].contains("radius accept user=\"taro\"")
            && audit[1].contains("input=challenge_response"),
        "{audit:?}"
    );
}

#[test]
fn password_and_otp_typed_together_at_the_first_prompt() {
    let (d, secret) = token_user();
    let pam = stack(&[d.radius()], "");
    let both = format!("{PASSWORD}{}", oathtool(&secret, None));
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, &both)]);
    run.assert_result(SUCCESS, true);
    assert!(!run.said(ASK_OTP), "no challenge when the OTP came along");
}

#[test]
fn wrong_password_is_an_authentication_failure() {
    let (d, _secret) = token_user();
    let pam = stack(&[d.radius()], "");
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, "not-the-pw")]);
    run.assert_result(AUTH_ERR, false);
    assert!(run.said(LOGIN_FAILED), "otpd's Reply-Message is shown");
    assert!(!run.said(ASK_OTP), "a wrong password gets no OTP prompt");
    assert!(d.stderr().contains("reason=bad_password"), "{}", d.stderr());
}

#[test]
fn wrong_otp_at_the_challenge_is_refused() {
    let (d, secret) = token_user();
    let pam = stack(&[d.radius()], "");
    let wrong = wrong_code(&secret);
    let run = pam.authenticate(
        "otp",
        USER,
        &[],
        &[(PASSWORD_PROMPT, PASSWORD), (ASK_OTP, &wrong)],
    );
    run.assert_result(AUTH_ERR, false);
    assert!(run.said(OTP_FAILED), "{}", run.text);
    assert!(d.stderr().contains("reason=bad_otp"), "{}", d.stderr());
}

#[test]
fn use_first_pass_takes_the_password_a_stacked_module_set() {
    let (d, secret) = token_user();
    let pam = PamStack::new();
    // pam_set_items.so sets PAM_AUTHTOK from the environment, as pam_unix would from a prompt.
    pam.service(
        "otp",
        &[
            format!("auth required {WRAPPER_MODULES}/pam_set_items.so"),
            pam.otpd_line(&[d.radius()], "use_first_pass"),
        ],
    );
    let code = oathtool(&secret, None);
    let run = pam.authenticate(
        "otp",
        USER,
        &[("PAM_AUTHTOK", PASSWORD)],
        &[(ASK_OTP, &code)],
    );
    run.assert_result(SUCCESS, true);
    assert!(!run.said(PASSWORD_PROMPT), "{}", run.text);
}

#[test]
fn a_dead_first_server_fails_over_to_otpd() {
    let _heavy = otpd_testkit::serial::heavy();
    let d = password_user();
    let dead = DeadServer::bind();
    let pam = stack(&[dead.addr(), d.radius()], "timeout=1 retries=0");
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, PASSWORD)]);
    run.assert_result(SUCCESS, true);
    assert_eq!(dead.drain().len(), 1, "the dead server was asked once");
    eprintln!("failover run took {:?}", run.elapsed);
    assert!(
        run.elapsed >= Duration::from_millis(900),
        "the dead server got its full timeout: {:?}",
        run.elapsed
    );
    assert!(
        d.stderr().contains("audit radius accept user=\"taro\""),
        "{}",
        d.stderr()
    );
}

#[test]
fn no_server_answering_is_authinfo_unavail_within_the_bound() {
    let _heavy = otpd_testkit::serial::heavy();
    let (a, b) = (DeadServer::bind(), DeadServer::bind());
    let pam = stack(&[a.addr(), b.addr()], "timeout=1 retries=0");
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, PASSWORD)]);
    run.assert_result(AUTHINFO_UNAVAIL, false);
    // timeout × (retries + 1) × servers = 1 s × 1 × 2.
    let bound = Duration::from_secs(2);
    eprintln!("no-server run took {:?} (bound {bound:?})", run.elapsed);
    assert!(
        run.elapsed >= bound - Duration::from_millis(100),
        "gave up before every server had its timeout: {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed < bound + Duration::from_secs(3),
        "{:?}",
        run.elapsed
    );
    assert_eq!(
        (a.drain().len(), b.drain().len()),
        (1, 1),
        "each asked once"
    );
    assert!(run.said("no RADIUS server answered"), "{}", run.text);
}

#[test]
fn a_loose_secret_file_is_refused() {
    let d = password_user();
    let pam = stack(&[d.radius()], "");
    write_file(&pam.secret_file(), &format!("{RADIUS_SECRET}\n"), 0o644);
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, PASSWORD)]);
    run.assert_result(SERVICE_ERR, false);
    assert!(
        run.said("0644"),
        "the log line names the mode: {}",
        run.text
    );
    assert!(!run.said(RADIUS_SECRET), "the secret reached the log");
    assert!(!run.said(PASSWORD_PROMPT), "refused before asking anything");
    assert!(audit_lines(&d).is_empty(), "otpd was not asked");
}

#[test]
fn an_unknown_option_is_a_service_error_naming_it() {
    let d = password_user();
    let pam = stack(&[d.radius()], "frobnicate=yes");
    let run = pam.authenticate("otp", USER, &[], &[(PASSWORD_PROMPT, PASSWORD)]);
    run.assert_result(SERVICE_ERR, false);
    // libpam_wrapper writes pam_syslog() lines to stderr.
    assert!(run.said("unknown option \"frobnicate\""), "{}", run.text);
    assert!(!run.said(PASSWORD_PROMPT), "refused before asking anything");
    assert!(audit_lines(&d).is_empty(), "otpd was not asked");
}

#[test]
fn a_replayed_otp_is_refused_through_pam() {
    let (d, secret) = token_user();
    let pam = stack(&[d.radius()], "");
    let code = oathtool(&secret, None);
    let conversation = [(PASSWORD_PROMPT, PASSWORD), (ASK_OTP, code.as_str())];
    let first = pam.authenticate("otp", USER, &[], &conversation);
    first.assert_result(SUCCESS, true);
    let again = pam.authenticate("otp", USER, &[], &conversation);
    again.assert_result(AUTH_ERR, false);
    assert!(again.said(OTP_FAILED), "{}", again.text);
    assert!(d.stderr().contains("reason=otp_replayed"), "{}", d.stderr());
}
