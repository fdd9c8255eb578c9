//! The README's walk-through, run as written on a fresh temp folder (the packaging issue):
//! if a command in it stops working, this test fails.

use std::process::Command;

use otpd_testkit::daemon::{free_tcp_port, free_udp_port};
use otpd_testkit::paths::profile_dir;

/// The shell lines between the walk-through markers of README.md.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme.find("<!-- walkthrough -->").expect("start marker");
    let end = readme.find("<!-- /walkthrough -->").expect("end marker");
    readme[start..end]
        .lines()
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (radius, http) = (free_udp_port(), free_tcp_port());
    // The binaries are built already; the ports are made free ones so tests can run side by side.
    // Should the script stop half-way, otpd (started in its background) is stopped too.
    let script = "trap '[ -n \"${OTPD_PID:-}\" ] && kill $OTPD_PID 2>/dev/null; true' EXIT\n"
        .to_string()
        + &walkthrough()
            .lines()
            .filter(|l| !l.starts_with("cargo build"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("127.0.0.1:1812", &format!("127.0.0.1:{radius}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"));
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/otpd-dev.toml"
    ))
    .expect("dev config")
    .replace("127.0.0.1:1812", &format!("127.0.0.1:{radius}"))
    .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"));
    std::fs::create_dir_all(dir.path().join("packaging")).expect("mkdir");
    std::fs::write(dir.path().join("packaging/otpd-dev.toml"), config).expect("config");
    std::fs::create_dir_all(dir.path().join("target")).expect("mkdir");
    std::os::unix::fs::symlink(profile_dir(), dir.path().join("target/debug")).expect("symlink");
    std::fs::write(dir.path().join("walkthrough.sh"), &script).expect("script");
    let child = Command::new("timeout")
        .args(["120", "bash", "-e", "walkthrough.sh"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    let out = child.wait_with_output().expect("walk-through output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("run-otpd.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "walk-through failed:\n{stdout}\n{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "state              issued",
        "state              provisioned",
        "state              active",
        "Access-Accept",
        "Access-Reject",
        "\"state\":\"unregistered\"",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(log.contains("reason=otp_replayed"), "{log}");
}
