//! Where the tests find what they run: the workspace binaries next to the test binary,
//! the Debian tools, libfaketime, the artifacts folder; and free loopback ports.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

/// A TCP port that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free tcp port")
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}

/// The folder cargo put this test binary's siblings in: `target/<profile>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target/<profile>")
}

/// `target/test-artifacts`, created.
pub fn artifacts_dir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .map(|t| t.join("test-artifacts"))
        .expect("target dir");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

/// A workspace binary (`otpd`, `otpctl`) built next to this test binary. Tests need
/// `cargo build --workspace --bins` first (`scripts/test` does it); a missing binary fails
/// loudly.
pub fn binary(name: &str) -> PathBuf {
    // OTPD_BIN_DIR runs the tests against other builds (an older release, an installed one).
    let dir = std::env::var_os("OTPD_BIN_DIR").map_or_else(profile_dir, PathBuf::from);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` (same profile and CARGO_TARGET_DIR) before the tests",
        path.display()
    );
    path
}

/// A Debian tool the tests drive; missing means the install script did not run.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: run scripts/install-test-deps (it installs the Debian packages in scripts/test-deps*.txt)");
}

/// The multi-threaded libfaketime, for running otpd with a moved wall clock.
pub fn libfaketime() -> PathBuf {
    for arch in ["x86_64-linux-gnu", "aarch64-linux-gnu"] {
        let p = PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"));
        if p.is_file() {
            return p;
        }
    }
    panic!("libfaketime is not installed: apt-get install -y faketime libfaketime");
}

/// Runs `cmd` with its wall clock `secs` ahead (behind if negative): libfaketime preloaded
/// directly, since the `faketime` wrapper would stand between the test and the process and
/// not pass SIGTERM on. Monotonic time stays real so timers behave.
pub fn with_clock_offset(cmd: &mut std::process::Command, secs: i64) {
    cmd.env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("{secs:+}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1");
}
