//! Debian's `pamtester` driving the built `pam_otpd.so` through libpam, with libpam_wrapper
//! pointing libpam at service files in a temp folder instead of `/etc/pam.d`. A run types
//! each answer only once pamtester has shown the prompt it answers, because libpam's text
//! conversation reads a pipe in chunks and would swallow a second line typed early.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::daemon::RADIUS_SECRET;
use crate::paths::{profile_dir, tool};

/// Where Debian's libpam-wrapper puts its helper modules (`pam_set_items.so`, ...).
pub const WRAPPER_MODULES: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper";
/// Longest a single pamtester run may take before the test kills it and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
/// The module's first prompt.
pub const PASSWORD_PROMPT: &str = "ログインパスワード / Password: ";

// pam_strerror() texts pamtester prints for each result.
pub const SUCCESS: &str = "successfully authenticated";
/// PAM_AUTH_ERR.
pub const AUTH_ERR: &str = "Authentication failure";
/// PAM_AUTHINFO_UNAVAIL.
pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
/// PAM_SERVICE_ERR.
pub const SERVICE_ERR: &str = "Error in service module";

/// The `pam_otpd.so` `cargo build --workspace` left in `target/<profile>/`, or the one in
/// `deps/` if that is newer (a later `cargo test` rebuilt it there).
pub fn built_module() -> PathBuf {
    let profile = profile_dir();
    let candidates = [
        profile.join("libpam_otpd.so"),
        profile.join("deps").join("libpam_otpd.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| {
            panic!(
                "libpam_otpd.so is missing from {}: run `cargo build --workspace --bins --lib` \
                 (same profile and CARGO_TARGET_DIR) before the tests",
                profile.display()
            )
        })
}

/// A temp folder with a copy of the module, a RADIUS secret file (otpd's test secret unless
/// told otherwise) and a `services/` folder of PAM service files.
pub struct PamStack {
    pub dir: tempfile::TempDir,
    pamtester: PathBuf,
}

impl PamStack {
    pub fn new() -> PamStack {
        PamStack::with_secret(RADIUS_SECRET)
    }

    /// A stack whose secret file holds `secret`.
    pub fn with_secret(secret: &str) -> PamStack {
        let pamtester = tool("pamtester");
        let wrapper = Path::new(WRAPPER_MODULES).with_file_name("libpam_wrapper.so");
        assert!(
            wrapper.is_file(),
            "{} is missing: run scripts/install-test-deps (Debian package libpam-wrapper)",
            wrapper.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // libpam_wrapper copies every file of the service folder, so it holds only those.
        std::fs::create_dir(dir.path().join("services")).expect("services dir");
        std::fs::copy(built_module(), dir.path().join("pam_otpd.so")).expect("copy module");
        write_file(
            &dir.path().join("pam.secret"),
            &format!("{secret}\n"),
            0o600,
        );
        PamStack { dir, pamtester }
    }

    pub fn module(&self) -> PathBuf {
        self.dir.path().join("pam_otpd.so")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("pam.secret")
    }

    /// `auth required pam_otpd.so server=... secret_file=... {extra}`.
    pub fn otpd_line(&self, servers: &[SocketAddr], extra: &str) -> String {
        let servers: Vec<String> = servers.iter().map(|s| format!("server={s}")).collect();
        format!(
            "auth required {} {} secret_file={} {extra}",
            self.module().display(),
            servers.join(" "),
            self.secret_file().display()
        )
    }

    /// Writes the service file `name` with these lines.
    pub fn service(&self, name: &str, lines: &[String]) {
        let path = self.dir.path().join("services").join(name);
        write_file(&path, &(lines.join("\n") + "\n"), 0o644);
    }

    /// `pamtester <service> <user> authenticate`. For each `(prompt, answer)` it waits until
    /// pamtester has shown `prompt` (after the previous one) and types `answer`. If pamtester
    /// ends before a prompt appears, the remaining answers are not typed.
    pub fn authenticate(
        &self,
        service: &str,
        user: &str,
        envs: &[(&str, &str)],
        conversation: &[(&str, &str)],
    ) -> Run {
        // libpam_wrapper picks its folder in /tmp (pam.a, pam.b, …) at start and removes it
        // at exit, and two processes doing that at once can take the same folder, and with
        // it each other's service files: one pamtester runs at a time.
        let _one = ONE_PAMTESTER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = Instant::now();
        let mut cmd = Command::new(&self.pamtester);
        cmd.args([service, user, "authenticate"])
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.dir.path().join("services"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pamtester");
        let transcript = Transcript::capture(&mut child);
        let mut stdin = child.stdin.take().expect("stdin");
        let mut from = 0;
        for (prompt, answer) in conversation {
            match transcript.wait_for(prompt, from, started + RUN_LIMIT) {
                Wait::Found(end) => from = end,
                Wait::Ended => break,
                Wait::TimedOut => fail_slow(&mut child, &transcript, &format!("prompt {prompt:?}")),
            }
            // pamtester may already be gone (a refused run): a broken pipe is its answer.
            let _ = stdin.write_all(format!("{answer}\n").as_bytes());
            let _ = stdin.flush();
        }
        drop(stdin);
        if !transcript.wait_closed(started + RUN_LIMIT) {
            fail_slow(&mut child, &transcript, "pamtester to finish");
        }
        let status = child.wait().expect("pamtester exit status");
        Run {
            status,
            text: transcript.text(),
            elapsed: started.elapsed(),
        }
    }
}

/// Held for each pamtester run (see [`PamStack::authenticate`]).
static ONE_PAMTESTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Default for PamStack {
    fn default() -> Self {
        PamStack::new()
    }
}

fn fail_slow(child: &mut Child, transcript: &Transcript, what: &str) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "no {what} within {RUN_LIMIT:?}; pamtester said:\n{}",
        transcript.text()
    );
}

/// One finished pamtester run.
pub struct Run {
    pub status: ExitStatus,
    /// stdout and stderr as they arrived: prompts, messages, pam_syslog() lines (which
    /// libpam_wrapper writes to stderr) and pamtester's verdict.
    pub text: String,
    pub elapsed: Duration,
}

impl Run {
    /// pamtester printed `verdict` and exited with success iff `success`.
    pub fn assert_result(&self, verdict: &str, success: bool) {
        assert!(
            self.text.contains(verdict),
            "expected {verdict:?} from pamtester; it said:\n{}",
            self.text
        );
        assert_eq!(
            self.status.success(),
            success,
            "pamtester exit status {}; it said:\n{}",
            self.status,
            self.text
        );
    }

    pub fn said(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }
}

enum Wait {
    /// Found; the offset just past it.
    Found(usize),
    /// Both pipes closed without it.
    Ended,
    TimedOut,
}

#[derive(Default)]
struct Shared {
    /// Bytes, not text: a reader's chunk may end inside a UTF-8 character.
    bytes: Vec<u8>,
    open: usize,
}

/// pamtester's stdout and stderr, merged in arrival order by one reader thread each.
#[derive(Clone)]
struct Transcript {
    shared: Arc<Mutex<Shared>>,
    /// Signalled on every chunk read and every pipe closed.
    changed: Arc<Condvar>,
}

impl Transcript {
    fn capture(child: &mut Child) -> Transcript {
        let t = Transcript {
            shared: Arc::default(),
            changed: Arc::default(),
        };
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        t.lock().open = 2;
        t.spawn_reader(stdout);
        t.spawn_reader(stderr);
        t
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_reader(&self, mut pipe: impl Read + Send + 'static) {
        let t = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = pipe.read(&mut buf).unwrap_or(0);
                let mut s = t.lock();
                if n == 0 {
                    s.open -= 1;
                    t.changed.notify_all();
                    return;
                }
                s.bytes.extend_from_slice(&buf[..n]);
                t.changed.notify_all();
            }
        });
    }

    /// Waits until `needle` appears at or after byte `from`, or the output ends.
    fn wait_for(&self, needle: &str, from: usize, deadline: Instant) -> Wait {
        let mut s = self.lock();
        loop {
            let needle = needle.as_bytes();
            if let Some(at) = s
                .bytes
                .get(from..)
                .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
            {
                return Wait::Found(from + at + needle.len());
            }
            if s.open == 0 {
                return Wait::Ended;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Wait::TimedOut;
            };
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until both pipes are closed (pamtester exited); false on the deadline.
    fn wait_closed(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        while s.open > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }
}

pub fn write_file(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
