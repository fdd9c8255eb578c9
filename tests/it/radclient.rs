//! FreeRADIUS's `radclient` against the fake server: the fake server is what the module's
//! client tests trust, so here an independent implementation checks it both ways —
//! FreeRADIUS's Message-Authenticator and PAP hiding must pass the fake server's checks,
//! and the fake server's replies must pass FreeRADIUS's Response Authenticator and
//! Message-Authenticator checks. radclient comes with the test dependencies (`scripts/install-test-deps`).

use otpd_testkit::fake_radius::{FakeRadius, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT, OTPD_USER};
use otpd_testkit::freeradius::radclient;

const SECRET: &str = "radclient shared secret";

/// radclient's input for the otpd-like user's PAP request with `password`.
fn request(password: &str) -> String {
    format!(
        "User-Name = \"{OTPD_USER}\", User-Password = \"{password}\", \
         Message-Authenticator = 0x00\n"
    )
}

#[test]
fn radclient_accepts_the_fake_servers_accept() {
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = radclient(
        server.addr(),
        SECRET,
        &request(&format!("{OTPD_PASSWORD}{OTPD_OTP}")),
    );
    assert!(text.contains("Received Access-Accept"), "{text}");
    assert!(!text.contains("verification failed"), "{text}");
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].password,
        format!("{OTPD_PASSWORD}{OTPD_OTP}").as_bytes()
    );
}

#[test]
fn radclient_reads_the_fake_servers_challenge() {
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = radclient(server.addr(), SECRET, &request(OTPD_PASSWORD));
    assert!(text.contains("Received Access-Challenge"), "{text}");
    assert!(
        text.contains(&format!("Reply-Message = \"{OTPD_PROMPT}\"")),
        "{text}"
    );
    assert!(text.contains("State = 0x"), "{text}");
    assert!(server.problems().is_empty(), "{:?}", server.problems());
}

#[test]
fn the_fake_server_drops_a_request_signed_with_another_secret() {
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = radclient(
        server.addr(),
        "not the shared secret",
        &request(&format!("{OTPD_PASSWORD}{OTPD_OTP}")),
    );
    assert!(!text.contains("Received Access-Accept"), "{text}");
    assert!(server.seen().is_empty());
    let problems = server.problems();
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| p.contains("Message-Authenticator does not verify")),
        "{problems:?}"
    );
}
