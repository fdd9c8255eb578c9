//! FreeRADIUS's `radclient` against the fake server: the fake server is what the module's
//! client tests trust, so here an independent implementation checks it both ways —
//! FreeRADIUS's Message-Authenticator and PAP hiding must pass the fake server's checks,
//! and the fake server's replies must pass FreeRADIUS's Response Authenticator and
//! Message-Authenticator checks. Skipped, with a message, where radclient is not installed.

#[path = "support/fake_radius.rs"]
mod fake_radius;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fake_radius::{FakeRadius, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT, OTPD_USER};

const SECRET: &str = "radclient shared secret";

fn radclient() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("radclient"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: radclient is not installed (apt-get install freeradius-utils)");
    }
    found
}

/// Sends one Access-Request with radclient (`-x` prints the reply's attributes).
fn send(radclient: &PathBuf, server: &FakeRadius, secret: &str, attrs: &str) -> String {
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
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output: Output = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(result) => result.expect("radclient output"),
        Err(_) => {
            // SAFETY: plain kill(2) of the child this test spawned.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("radclient did not finish in time");
        }
    };
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn radclient_accepts_the_fake_servers_accept() {
    let Some(radclient) = radclient() else { return };
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
    let Some(radclient) = radclient() else { return };
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
    let Some(radclient) = radclient() else { return };
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
