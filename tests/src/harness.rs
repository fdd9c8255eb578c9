//! Starts the real `otpd` with a config of its own: free ports, everything in a temp
//! folder, cheap password hashing. Readiness is polled with a deadline, never slept for.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any "wait until" in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns Some, or panics with `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
    fs::create_dir_all(&dir).expect("create test-artifacts");
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// One installation: a temp folder with config, data, key and logs. Start and stop its
/// otpd as often as a test needs; the data stays.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http: SocketAddr,
    pub smtp_port: u16,
    pub admin_socket: PathBuf,
    pub log: PathBuf,
}

impl Site {
    /// `extra` is appended to the config (whole tables only, e.g. `[[http.api_keys]]`).
    pub fn new(extra: &str) -> Site {
        Site::build(Scheme::Http, "", extra)
    }

    /// `http_lines` go into the `[http]` table; `scheme` is the public URL's.
    pub fn build(scheme: Scheme, http_lines: &str, extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let smtp_port = free_port();
        let radius = free_port();
        let config = dir.path().join("otpd.toml");
        let scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        // Every test customer comes from 127.0.0.1: tests of the rate limit set their own.
        let limits = if http_lines.contains("customer_") {
            ""
        } else {
            "customer_burst = 100000\ncustomer_burst_total = 100000"
        };
        let text = format!(
            r#"service_id = "EXAMPLE-BANK"
data_dir = "data"
key_file = "master.key"

[radius]
listen = ["127.0.0.1:{radius}"]

[password]
argon2_memory_kib = 64
argon2_iterations = 1

[http]
listen = "{http}"
public_url = "{scheme}://{http}"
{http_lines}
{limits}

[mail]
transport = "smtp"
from = "OTP Center <otp@example-bank.invalid>"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}

[admin]
socket = "admin.sock"

[log]
level = "debug"
syslog = false

{extra}
"#
        );
        fs::write(&config, text).expect("write config");
        // It holds the inline test secret: private, as otpd asks of such a file.
        fs::set_permissions(
            &config,
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .expect("chmod config");
        Site {
            admin_socket: dir.path().join("admin.sock"),
            log: dir.path().join("otpd.log"),
            dir,
            config,
            http,
            smtp_port,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn start(&self) -> Otpd {
        self.start_with_clock(None)
    }

    /// Starts otpd with its wall clock moved by `offset` (libfaketime syntax, e.g.
    /// `+1435d`); monotonic time stays real so timers behave.
    pub fn start_with_clock(&self, offset: Option<&str>) -> Otpd {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(binary("otpd"));
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(off) = offset {
            cmd.env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", off)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = cmd.spawn().expect("spawn otpd");
        let mut otpd = Otpd {
            child,
            admin_socket: self.admin_socket.clone(),
            http: self.http,
            log: self.log.clone(),
        };
        otpd.wait_ready();
        otpd
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A running otpd; killed when dropped.
pub struct Otpd {
    child: Child,
    pub admin_socket: PathBuf,
    pub http: SocketAddr,
    log: PathBuf,
}

impl Otpd {
    fn wait_ready(&mut self) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "otpd exited at start ({status}):\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if UnixStream::connect(&self.admin_socket).is_ok()
                && TcpStream::connect(self.http).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "otpd not ready after {DEADLINE:?}:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One admin request over the socket; the reply's `Ok` or `Err` object.
    pub fn admin(&self, request: Value) -> Result<Value, Value> {
        let mut s = UnixStream::connect(&self.admin_socket).expect("admin socket");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut line = serde_json::to_vec(&request).expect("json");
        line.push(b'\n');
        s.write_all(&line).expect("send");
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply).expect("reply");
        let v: Value = serde_json::from_str(&reply).expect("reply json");
        match (v.get("Ok"), v.get("Err")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(err)) => Err(err.clone()),
            _ => panic!("unexpected admin reply {reply}"),
        }
    }

    /// An admin request that must succeed.
    pub fn admin_ok(&self, request: Value) -> Value {
        let what = request.to_string();
        self.admin(request)
            .unwrap_or_else(|e| panic!("admin {what} failed: {e}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = wait_until("otpd to stop", DEADLINE, || {
            self.child.try_wait().ok().flatten()
        });
        assert!(status.success(), "otpd stopped with {status}");
    }
}

impl Drop for Otpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
