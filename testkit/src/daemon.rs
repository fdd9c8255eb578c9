//! The one `Otpd` of the tests and the bench: a real `otpd` on a config of its own (one
//! template, overrides merged over it), free loopback ports, its files in a folder of its
//! own; started, stopped, crashed and started again as a test needs, and driven through the
//! real `otpctl` or the admin socket.
//!
//! Start-up order, as `daemon/src/app.rs` has it: otpd binds RADIUS, then HTTP (and
//! metrics), then the admin socket, and logs its `ready:` line. So once the admin socket
//! accepts, every door is open; that is the one readiness check here.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::paths::with_clock_offset;
pub use crate::paths::{binary as bin, free_tcp_port, free_udp_port};
use crate::wait::try_wait_until;
pub use crate::wait::{wait_until, DEADLINE};

/// The shared secret of the template's RADIUS client `test` (127.0.0.1).
pub const RADIUS_SECRET: &str = "test-shared-secret-0123456789";

/// The folder an `Otpd` keeps its config, data, key, socket and log in: a temp folder
/// removed with it, or one the caller named and keeps (the bench).
pub struct Folder {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Folder {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How an `Otpd` is set up; [`Otpd::builder`] gives the test defaults.
pub struct Builder {
    overrides: Vec<String>,
    files: Vec<(String, String, u32)>,
    https: bool,
    smtp: bool,
    clock_offset: Option<i64>,
    dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    client: (String, String),
    ready_limit: Duration,
}

impl Builder {
    /// TOML merged over the template: its tables extend or override the defaults, its
    /// arrays append. May be given more than once; later ones win.
    pub fn config(mut self, toml: &str) -> Builder {
        self.overrides.push(toml.to_string());
        self
    }

    /// A `(name, content, mode)` file written into the folder before otpd starts (API keys,
    /// secret files: otpd refuses those others may read).
    pub fn file(mut self, name: &str, content: &str, mode: u32) -> Builder {
        self.files
            .push((name.to_string(), content.to_string(), mode));
        self
    }

    /// The public URL is `https://`; the test supplies `http.tls_*_file` through
    /// [`Builder::config`].
    pub fn https(mut self) -> Builder {
        self.https = true;
        self
    }

    /// Mail goes over SMTP to 127.0.0.1:[`Otpd::smtp_port`] (a free port; start an
    /// [`crate::smtp::SmtpSink`] there) instead of into files under `mail/`.
    pub fn smtp(mut self) -> Builder {
        self.smtp = true;
        self
    }

    /// otpd's wall clock runs `secs` ahead (libfaketime) from its first start on.
    pub fn clock_offset(mut self, secs: i64) -> Builder {
        self.clock_offset = Some(secs);
        self
    }

    /// Keep everything in `dir` (created; left in place) instead of a temp folder.
    pub fn in_dir(mut self, dir: &Path) -> Builder {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Run the `otpd` and `otpctl` in `dir` instead of the ones next to the test binary.
    pub fn bin_dir(mut self, dir: &Path) -> Builder {
        self.bin_dir = Some(dir.to_path_buf());
        self
    }

    /// The template's one RADIUS client on 127.0.0.1: its name and shared secret.
    pub fn radius_client(mut self, name: &str, secret: &str) -> Builder {
        self.client = (name.to_string(), secret.to_string());
        self
    }

    /// How long start-up may take before it fails (a large store takes a while to open).
    pub fn ready_within(mut self, limit: Duration) -> Builder {
        self.ready_limit = limit;
        self
    }

    /// The folder and config written, otpd not started: for tests of what otpd refuses
    /// before it serves anything, or of files set up before the first start.
    pub fn unstarted(self) -> Otpd {
        self.try_unstarted().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes the config and starts otpd; returns once it is ready.
    pub fn start(self) -> Otpd {
        let mut otpd = self.unstarted();
        otpd.launch();
        otpd
    }

    /// As [`Builder::unstarted`], an error instead of a panic (the bench).
    pub fn try_unstarted(self) -> Result<Otpd, String> {
        let folder = match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Folder {
                    path: dir.clone(),
                    _temp: None,
                }
            }
            None => {
                let temp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
                Folder {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                }
            }
        };
        for (name, content, mode) in &self.files {
            write_private(&folder.path.join(name), content, *mode)?;
        }
        let radius_port = free_udp_port();
        let http_port = free_tcp_port();
        let smtp_port = self.smtp.then(free_tcp_port);
        let table = self.config_table(radius_port, http_port, smtp_port);
        let text = toml::to_string(&table).map_err(|e| format!("config serialises: {e}"))?;
        let config = folder.path.join("otpd.toml");
        // It holds the inline test secret: private, as otpd asks of such a file.
        write_private(&config, &text, 0o600)?;
        let socket = table
            .get("admin")
            .and_then(|a| a.get("socket"))
            .and_then(toml::Value::as_str)
            .map(|s| folder.path.join(s))
            .expect("admin.socket in the config");
        let http = table
            .get("http")
            .and_then(|h| h.get("listen"))
            .and_then(toml::Value::as_str)
            .and_then(|s| s.parse().ok())
            .expect("http.listen in the config");
        Ok(Otpd {
            socket,
            stderr_log: folder.path.join("otpd.log"),
            dir: folder,
            config,
            radius_port,
            http,
            smtp_port,
            bin_dir: self.bin_dir,
            ready_limit: self.ready_limit,
            startup: None,
            child: None,
            clock_offset: self.clock_offset,
            journal_stream: false,
        })
    }

    fn config_table(&self, radius_port: u16, http_port: u16, smtp: Option<u16>) -> toml::Table {
        let (client, secret) = &self.client;
        let scheme = if self.https { "https" } else { "http" };
        let mail = match smtp {
            Some(port) => format!(
                "transport = \"smtp\"\nfrom = \"OTP Center <otp@example-bank.invalid>\"\n\
                 smtp_host = \"127.0.0.1\"\nsmtp_port = {port}"
            ),
            None => "transport = \"file\"\ndir = \"mail\"".to_string(),
        };
        let base = format!(
            r#"service_id = "TEST-BANK"
data_dir = "data"
key_file = "master.key"

[radius]
listen = ["127.0.0.1:{radius_port}"]
reject_delay_ms = 200

[[radius.clients]]
name = "{client}"
address = "127.0.0.1"
secret = "{secret}"

[password]
argon2_memory_kib = 64
argon2_iterations = 1

[http]
listen = "127.0.0.1:{http_port}"
public_url = "{scheme}://127.0.0.1:{http_port}"
# Every test customer comes from 127.0.0.1: tests of the rate limit set their own.
customer_burst = 100000
customer_burst_total = 100000

[mail]
{mail}

[admin]
socket = "admin.sock"

[log]
syslog = false
"#
        );
        let mut table: toml::Table = base.parse().expect("the template parses");
        for extra in &self.overrides {
            let extra: toml::Table = extra.parse().expect("the overrides parse");
            merge(&mut table, extra);
        }
        table
    }
}

/// A real otpd (running or not) on its own folder; killed when dropped.
pub struct Otpd {
    pub dir: Folder,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub radius_port: u16,
    http: SocketAddr,
    smtp_port: Option<u16>,
    /// stdout and stderr of every start, appended.
    pub stderr_log: PathBuf,
    bin_dir: Option<PathBuf>,
    ready_limit: Duration,
    /// From the last spawn until ready.
    pub startup: Option<Duration>,
    child: Option<Child>,
    /// Seconds the daemon's wall clock runs ahead (libfaketime), if any.
    clock_offset: Option<i64>,
    /// Start with `JOURNAL_STREAM` naming the log file, as systemd does when stderr is the
    /// journal (set between [`Builder::unstarted`] and [`Otpd::launch`]).
    pub journal_stream: bool,
}

impl Otpd {
    /// The test defaults: cheap hashing, mail to files, no syslog, one RADIUS client.
    pub fn builder() -> Builder {
        Builder {
            overrides: Vec::new(),
            files: Vec::new(),
            https: false,
            smtp: false,
            clock_offset: None,
            dir: None,
            bin_dir: None,
            client: ("test".into(), RADIUS_SECRET.into()),
            ready_limit: DEADLINE,
        }
    }

    /// `Otpd::builder().config(extra).start()`.
    pub fn start(extra: &str) -> Otpd {
        Otpd::builder().config(extra).start()
    }

    /// The template with these ports and `extra`, as text: for a config otpd only checks.
    pub fn config_text(radius_port: u16, http_port: u16, extra: &str) -> String {
        let table = Otpd::builder()
            .config(extra)
            .config_table(radius_port, http_port, None);
        toml::to_string(&table).expect("config serialises")
    }

    fn bin(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => bin(name),
        }
    }

    fn command(&self) -> Result<Command, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .map_err(|e| format!("{}: {e}", self.stderr_log.display()))?;
        let out = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let stream = {
            use std::os::unix::fs::MetadataExt as _;
            let m = log.metadata().map_err(|e| format!("log: {e}"))?;
            format!("{}:{}", m.dev(), m.ino())
        };
        let mut cmd = Command::new(self.bin("otpd"));
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        if let Some(secs) = self.clock_offset {
            with_clock_offset(&mut cmd, secs);
        }
        if self.journal_stream {
            cmd.env("JOURNAL_STREAM", stream);
        }
        Ok(cmd)
    }

    /// Starts otpd on its config and data (a first start, or again after it stopped, as a
    /// service manager's `Restart=` would); returns once it is ready.
    pub fn launch(&mut self) {
        self.try_launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// As [`Otpd::launch`], an error instead of a panic (the bench).
    pub fn try_launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "otpd is still running");
        let began = Instant::now();
        let child = self.spawn()?;
        self.await_ready(child, began)
    }

    fn spawn(&self) -> Result<Child, String> {
        self.command()?
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin("otpd").display()))
    }

    /// Waits until `child`, started at `began`, answers on the admin socket; it is then
    /// the running otpd.
    fn await_ready(&mut self, mut child: Child, began: Instant) -> Result<(), String> {
        let ready = try_wait_until("otpd's admin socket", self.ready_limit, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("otpd exited early ({status}): {}", self.stderr()));
            }
            Ok(UnixStream::connect(&self.socket).ok().map(|_| ()))
        });
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        self.startup = Some(began.elapsed());
        self.child = Some(child);
        Ok(())
    }

    /// A restart whose new otpd starts before the old one has exited: SIGTERM to the
    /// old one and, without waiting for it, the new one; then the old one's exit status
    /// (once it is gone, so the admin socket that answers is the new one's), and the new
    /// one ready.
    pub fn restart_overlapping(&mut self) -> ExitStatus {
        let mut old = self.child.take().expect("running");
        signal(old.id(), "TERM");
        let began = Instant::now();
        let next = self.spawn().unwrap_or_else(|e| panic!("{e}"));
        let stopped = wait_until("the old otpd to stop", DEADLINE, || {
            old.try_wait().ok().flatten()
        });
        self.await_ready(next, began)
            .unwrap_or_else(|e| panic!("{e}"));
        stopped
    }

    /// SIGTERM, and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.try_stop().unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGTERM, and wait for the exit; SIGKILL and an error if it has not come within the
    /// deadline (the bench).
    pub fn try_stop(&mut self) -> Result<ExitStatus, String> {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        try_wait_until("otpd to stop", DEADLINE, || child.try_wait()).inspect_err(|_| {
            let _ = child.kill();
            let _ = child.wait();
        })
    }

    /// SIGTERM, and assert a clean exit.
    pub fn stop_clean(&mut self) {
        let status = self.stop();
        assert!(status.success(), "otpd stopped with {status}");
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for otpd to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_until("otpd to exit by itself", limit, || {
            child.try_wait().ok().flatten()
        })
    }

    /// Runs otpd on its config until it exits by itself (a refusal to start); its status
    /// and what it wrote on stderr.
    pub fn run_to_exit(&self) -> (ExitStatus, String) {
        let mut child = Command::new(self.bin("otpd"))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otpd");
        let status = wait_until("otpd to refuse to start", DEADLINE, || {
            child.try_wait().ok().flatten()
        });
        let out = child.wait_with_output().expect("output");
        (status, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// A clean stop if running, then a start.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop_clean();
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

    /// What otpd wrote (stdout and stderr) over all its starts.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// A file in its folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The HTTP listener's address.
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// The RADIUS listener's address (UDP on loopback).
    pub fn radius(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.radius_port))
    }

    /// The port its mail goes to over SMTP ([`Builder::smtp`]).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port.expect("an otpd built with .smtp()")
    }

    /// `http://` URL of `path` on its HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Runs otpctl against this daemon; `stdin` is fed to it.
    pub fn otpctl(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(self.bin("otpctl"))
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
    pub fn show(&self, login: &str) -> Value {
        serde_json::from_str(&self.ctl_ok(&["--json", "user", "show", login], "")).expect("json")
    }

    /// The user's view by `user_show` over the admin socket.
    pub fn admin_show(&self, login: &str) -> Value {
        self.admin_ok(serde_json::json!({"op": "user_show", "login_id": login}))
    }

    /// One admin request over the socket; the reply's `Ok` or `Err` object.
    pub fn admin(&self, request: Value) -> Result<Value, Value> {
        let mut s = UnixStream::connect(&self.socket).expect("admin socket");
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
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write_private(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    std::fs::write(path, content)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
