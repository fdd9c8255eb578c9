//! FreeRADIUS's `radclient` against the fake server: the fake server is what the module's
//! client tests trust, so here an independent implementation checks it both ways —
//! FreeRADIUS's Message-Authenticator and PAP hiding must pass the fake server's checks,
//! and the fake server's replies must pass FreeRADIUS's Response Authenticator and
//! Message-Authenticator checks. radclient comes with the test dependencies (`scripts/install-test-deps`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use otpd_testkit::fake_radius::{FakeRadius, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT, OTPD_USER};
use otpd_testkit::paths::tool;
use otpd_testkit::wait::try_wait_until;

const SECRET: &str = "radclient shared secret";

fn radclient() -> PathBuf {
    tool("radclient")
}

/// Sends one Access-Request with radclient (`-x` prints the reply's attributes).
fn send(radclient: &Path, server: &FakeRadius, secret: &str, attrs: &str) -> String {
    let mut child = Command::new(radclient)
        .args(["-x", "-r", "1", "-t", "2"])
        .arg(server.addr().to_string())
        .args(["auth", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(attrs.as_bytes()).expect("write attributes");
    drop(stdin);
    // Its output is a few lines: the pipes cannot fill while it runs.
    if let Err(e) = try_wait_until("radclient to finish", Duration::from_secs(20), || {
        child.try_wait()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}");
    }
    let output = child.wait_with_output().expect("radclient output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn radclient_accepts_the_fake_servers_accept() {
    let radclient = radclient();
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = send(
        &radclient,
        &server,
        SECRET,
        &format!(
            "User-Name = \"{OTPD_USER}\", User-Password = \"{OTPD_PASSWORD}{OTPD_OTP}\", \
             Message-Authenticator = 0x00\n"
        ),
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
    let radclient = radclient();
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = send(
        &radclient,
        &server,
        SECRET,
        &format!(
            "User-Name = \"{OTPD_USER}\", User-Password = \"{OTPD_PASSWORD}\", \
             Message-Authenticator = 0x00\n"
        ),
    );
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
    let radclient = radclient();
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    let text = send(
        &radclient,
        &server,
        "not the shared secret",
        &format!(
            "User-Name = \"{OTPD_USER}\", User-Password = \"{OTPD_PASSWORD}{OTPD_OTP}\", \
             Message-Authenticator = 0x00\n"
        ),
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
