//! A real `otpd` on a temp config, and the real `otpctl` to drive it.

use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use crate::harness::{binary as bin, free_port as free_tcp_port, wait_until};

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free udp port")
        .port()
}

pub const RADIUS_SECRET: &str = "test-shared-secret-0123456789";

pub struct Otpd {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub radius_port: u16,
    pub http_port: u16,
    pub stderr_log: PathBuf,
    child: Option<Child>,
    /// Seconds the daemon's wall clock runs ahead (libfaketime), if any.
    clock_offset: Option<i64>,
}

impl Otpd {
    /// A config with free ports, cheap hashing, mail to files, no syslog. `extra` (TOML) is
    /// merged over it: its tables extend or override the defaults, its arrays append.
    pub fn config_text(radius_port: u16, http_port: u16, extra: &str) -> String {
        let base = format!(
            r#"service_id = "TEST-BANK"
data_dir = "data"
key_file = "master.key"

[radius]
listen = ["127.0.0.1:{radius_port}"]
reject_delay_ms = 200

[[radius.clients]]
name = "test"
address = "127.0.0.1"
secret = "{RADIUS_SECRET}"

[password]
argon2_memory_kib = 64
argon2_iterations = 1

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
# Every test customer comes from 127.0.0.1: tests of the rate limit set their own.
customer_burst = 100000
customer_burst_total = 100000

[mail]
transport = "file"
dir = "mail"

[admin]
socket = "admin.sock"

[log]
syslog = false
"#
        );
        let mut table: toml::Table = base.parse().expect("harness config parses");
        let extra: toml::Table = extra.parse().expect("test's extra config parses");
        merge(&mut table, extra);
        toml::to_string(&table).expect("config serialises")
    }

    /// Writes the config and starts otpd; returns once the admin socket answers.
    pub fn start(extra: &str) -> Otpd {
        Otpd::start_with(extra)
    }

    /// Writes the config and starts otpd; returns once the admin socket answers.
    fn start_with(extra: &str) -> Otpd {
        Otpd::start_with_files(extra, &[])
    }

    /// Like [`Otpd::start`], with `(name, content, mode)` files written into its folder
    /// first (API keys, secret files: otpd refuses those others may read).
    pub fn start_with_files(extra: &str, files: &[(&str, &str, u32)]) -> Otpd {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content, mode) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        let radius_port = free_udp_port();
        let http_port = free_tcp_port();
        let config = dir.path().join("otpd.toml");
        std::fs::write(&config, Otpd::config_text(radius_port, http_port, extra))
            .expect("write config");
        // It holds the inline test secret: private, as otpd asks of such a file.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config");
        let mut d = Otpd {
            socket: dir.path().join("admin.sock"),
            stderr_log: dir.path().join("otpd.stderr"),
            dir,
            config,
            radius_port,
            http_port,
            child: None,
            clock_offset: None,
        };
        d.launch();
        d
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("stderr log");
        let mut cmd = Command::new(bin("otpd"));
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(secs) = self.clock_offset {
            // Preloaded directly: the faketime wrapper would stand between us and otpd.
            cmd.env("LD_PRELOAD", crate::harness::libfaketime())
                .env("FAKETIME", format!("{secs:+}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        self.child = Some(cmd.spawn().expect("start otpd"));
        let socket = self.socket.clone();
        // otpd binds the admin socket, then RADIUS, then HTTP: once HTTP accepts too, every
        // door is open.
        let http = format!("127.0.0.1:{}", self.http_port);
        let mut child = self.child.take().expect("child");
        wait_until(
            "otpd's admin socket and HTTP listener",
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "otpd exited early ({status}): {}",
                        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
                    );
                }
                std::os::unix::net::UnixStream::connect(&socket).ok()?;
                std::net::TcpStream::connect(&http).ok().map(|_| ())
            },
        );
        self.child = Some(child);
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_free_kill(child.id(), "TERM");
        wait_until("otpd to stop", Duration::from_secs(30), || {
            child.try_wait().ok().flatten()
        })
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for otpd to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_until("otpd to exit by itself", limit, || {
            child.try_wait().ok().flatten()
        })
    }

    /// Starts an otpd that exited again on the same config and data, as a service
    /// manager's `Restart=` would.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "otpd is still running");
        self.launch();
    }

    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "otpd stopped with {status}");
        }
        self.launch();
    }

    /// Starts the (stopped) daemon again with its wall clock `secs` ahead.
    pub fn relaunch_with_clock(&mut self, secs: i64) {
        self.clock_offset = Some(secs);
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Runs otpctl against this daemon; `stdin` is fed to it.
    pub fn otpctl(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(bin("otpctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run otpctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("feed stdin");
        child.wait_with_output().expect("otpctl output")
    }

    /// otpctl that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.otpctl(args, stdin);
        assert!(
            out.status.success(),
            "otpctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `otpctl --json user show`, parsed.
    pub fn show(&self, login: &str) -> serde_json::Value {
        serde_json::from_str(&self.ctl_ok(&["--json", "user", "show", login], "")).expect("json")
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) => a.extend(b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

impl Drop for Otpd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal with the `kill` command (no unsafe code in tests).
pub fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A config in a fresh folder (the harness defaults plus `extra`), not started: for tests
/// of what otpd refuses before it serves anything.
pub fn unstarted(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("otpd.toml");
    std::fs::write(
        &config,
        Otpd::config_text(free_udp_port(), free_tcp_port(), extra),
    )
    .expect("config");
    chmod(&config, 0o600);
    (dir, config)
}

pub fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs otpd on `config` until it exits by itself (a refusal to start); status and stderr.
pub fn run_to_exit(config: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(bin("otpd"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otpd");
    let status = wait_until("otpd to refuse to start", Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    });
    let out = child.wait_with_output().expect("output");
    (status, String::from_utf8_lossy(&out.stderr).into_owned())
}
