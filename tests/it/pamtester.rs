//! Real PAM runs against the fake RADIUS server: Debian's `pamtester` loads the built
//! `pam_otpd.so` through libpam, with libpam_wrapper pointing it at service files in a temp
//! folder (the kit's one pamtester driver, [`otpd_testkit::pam`]).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use otpd_testkit::fake_radius::{
    Answer, DeadServer, FakeRadius, Seen, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT, OTPD_USER,
};
use otpd_testkit::pam::{
    write_file, PamStack, AUTHINFO_UNAVAIL, AUTH_ERR, PASSWORD_PROMPT, SERVICE_ERR, SUCCESS,
    WRAPPER_MODULES,
};

const SECRET: &str = "pamtester shared secret";

fn stack() -> PamStack {
    PamStack::with_secret(SECRET)
}

/// A stack whose `otp` service is pam_otpd alone with `options`, against an otpd-like
/// fake server.
fn otpd_service(options: &str) -> (PamStack, FakeRadius) {
    let h = stack();
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service("otp", &[h.otpd_line(&[server.addr()], options)]);
    (h, server)
}

#[test]
fn password_alone_is_accepted_and_handed_to_the_next_module() {
    let h = stack();
    // A user whose token is not active yet: the password alone suffices.
    let server = FakeRadius::start(SECRET.as_bytes(), |seen: &Seen| {
        if seen.user == "bob" && seen.password == b"bob's password" {
            vec![Answer::accept(&[])]
        } else {
            vec![Answer::reject(&[])]
        }
    });
    let capture = h.dir.path().join("authtok.out");
    let script = h.dir.path().join("capture.sh");
    write_file(&script, "#!/bin/sh\ncat > \"$1\"\n", 0o755);
    h.service(
        "otp",
        &[
            h.otpd_line(&[server.addr()], "nas_identifier=pamtester"),
            format!(
                "auth required /lib/x86_64-linux-gnu/security/pam_exec.so expose_authtok quiet {} {}",
                script.display(),
                capture.display()
            ),
        ],
    );
    let run = h.authenticate("otp", "bob", &[], &[(PASSWORD_PROMPT, "bob's password")]);
    run.assert_result(SUCCESS, true);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].nas_identifier.as_deref(), Some("pamtester"));
    assert_eq!(seen[0].attr_types[0], 80, "Message-Authenticator first");
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    // pam_exec read PAM_AUTHTOK as set by pam_otpd (it writes a trailing NUL).
    let handed = std::fs::read(&capture).expect("pam_exec captured the authtok");
    assert_eq!(
        handed.strip_suffix(b"\0").unwrap_or(&handed),
        b"bob's password"
    );
}

#[test]
fn password_then_otp_at_the_challenge_prompt() {
    let (h, server) = otpd_service("");
    let run = h.authenticate(
        "otp",
        OTPD_USER,
        &[],
        &[(PASSWORD_PROMPT, OTPD_PASSWORD), (OTPD_PROMPT, OTPD_OTP)],
    );
    run.assert_result(SUCCESS, true);
    let text = &run.text;
    assert!(text.contains("Password: "), "{text}");
    assert!(text.contains(OTPD_PROMPT), "{text}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].password, OTPD_PASSWORD.as_bytes());
    assert_eq!(seen[0].state, None);
    assert_eq!(seen[1].password, OTPD_OTP.as_bytes());
    assert_eq!(seen[1].state.as_deref(), Some(&b"otpd-state-1"[..]));
    // No NAS-Identifier configured: the PAM service name stands in.
    assert_eq!(seen[0].nas_identifier.as_deref(), Some("otp"));
}

#[test]
fn password_and_otp_in_one_go() {
    let (h, server) = otpd_service("");
    let combined = format!("{OTPD_PASSWORD}{OTPD_OTP}");
    let run = h.authenticate("otp", OTPD_USER, &[], &[(PASSWORD_PROMPT, &combined)]);
    run.assert_result(SUCCESS, true);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn wrong_password_fails_and_shows_the_reply_message() {
    let (h, server) = otpd_service("");
    let run = h.authenticate(
        "otp",
        OTPD_USER,
        &[],
        &[(PASSWORD_PROMPT, "not the password")],
    );
    run.assert_result(AUTH_ERR, false);
    assert!(run.text.contains("Login failed"), "{}", run.text);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn wrong_otp_at_the_challenge_fails() {
    let (h, server) = otpd_service("");
    let run = h.authenticate(
        "otp",
        OTPD_USER,
        &[],
        &[(PASSWORD_PROMPT, OTPD_PASSWORD), (OTPD_PROMPT, "000000")],
    );
    run.assert_result(AUTH_ERR, false);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn use_first_pass_takes_the_earlier_modules_password() {
    let h = stack();
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    // pam_set_items.so sets PAM_AUTHTOK from the environment, as pam_unix would from a prompt.
    h.service(
        "otp",
        &[
            format!("auth required {WRAPPER_MODULES}/pam_set_items.so"),
            h.otpd_line(&[server.addr()], "use_first_pass"),
        ],
    );
    let run = h.authenticate(
        "otp",
        OTPD_USER,
        &[("PAM_AUTHTOK", OTPD_PASSWORD)],
        &[(OTPD_PROMPT, OTPD_OTP)],
    );
    run.assert_result(SUCCESS, true);
    let text = &run.text;
    assert!(!text.contains("Password: "), "{text}");
    let seen = server.seen();
    assert_eq!(seen[0].password, OTPD_PASSWORD.as_bytes());
    assert_eq!(seen[1].password, OTPD_OTP.as_bytes());
}

#[test]
fn no_server_is_authinfo_unavail_within_the_bound() {
    let _heavy = otpd_testkit::serial::heavy();
    let h = stack();
    let (a, b) = (DeadServer::bind(), DeadServer::bind());
    h.service(
        "otp",
        &[h.otpd_line(&[a.addr(), b.addr()], "timeout=1 retries=1")],
    );
    let run = h.authenticate("otp", OTPD_USER, &[], &[(PASSWORD_PROMPT, "whatever")]);
    run.assert_result(AUTHINFO_UNAVAIL, false);
    // timeout × (retries + 1) × servers = 1 s × 2 × 2.
    let bound = Duration::from_secs(4);
    eprintln!("no-server run took {:?} (bound {bound:?})", run.elapsed);
    assert!(run.elapsed >= bound, "{:?}", run.elapsed);
    assert!(
        run.elapsed < bound + Duration::from_secs(2),
        "{:?}",
        run.elapsed
    );
    for dead in [a, b] {
        let got = dead.drain();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], got[1], "a retransmission repeats the same bytes");
    }
    assert!(
        run.text.contains("no RADIUS server answered"),
        "{}",
        run.text
    );
}

#[test]
fn unknown_option_is_a_service_error_with_a_log_line() {
    let (h, server) = otpd_service("frobnicate=yes");
    let run = h.authenticate("otp", OTPD_USER, &[], &[(PASSWORD_PROMPT, OTPD_PASSWORD)]);
    run.assert_result(SERVICE_ERR, false);
    let text = &run.text;
    // libpam_wrapper turns pam_syslog() lines into stderr lines.
    assert!(text.contains("unknown option \"frobnicate\""), "{text}");
    assert!(!text.contains("Password: "), "{text}");
    assert!(server.seen().is_empty());
}

#[test]
fn loose_secret_file_is_refused() {
    let (h, server) = otpd_service("");
    std::fs::set_permissions(h.secret_file(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let run = h.authenticate("otp", OTPD_USER, &[], &[(PASSWORD_PROMPT, OTPD_PASSWORD)]);
    run.assert_result(SERVICE_ERR, false);
    let text = &run.text;
    assert!(text.contains("0644"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(server.seen().is_empty());
}
