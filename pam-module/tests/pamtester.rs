//! Real PAM runs: Debian's `pamtester` loads the built `pam_otpd.so` through libpam, with
//! libpam_wrapper pointing it at service files in a temp folder, against the fake RADIUS
//! server from `support/`. Skipped, with a message, only where pamtester is not installed.

#[path = "support/fake_radius.rs"]
mod fake_radius;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fake_radius::{
    Answer, DeadServer, FakeRadius, Seen, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT, OTPD_USER,
};

const SECRET: &str = "pamtester shared secret";
/// Longest any single pamtester run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);
const WRAPPER_MODULES: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper";

// pam_strerror() texts pamtester prints for each result.
const SUCCESS: &str = "successfully authenticated";
const AUTH_ERR: &str = "Authentication failure";
const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
const SERVICE_ERR: &str = "Error in service module";

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The cdylib cargo built for this package. `cargo test` leaves it in the `deps/` folder
/// this test executable lives in; `cargo build` also copies it one folder up. The newer
/// of the two is the one built from the current source.
fn built_module() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps folder");
    let candidates = [
        deps.join("libpam_otpd.so"),
        deps.parent()
            .expect("profile folder")
            .join("libpam_otpd.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("libpam_otpd.so not found in {candidates:?}"))
}

struct Harness {
    tmp: tempfile::TempDir,
    pamtester: PathBuf,
}

struct Run {
    output: Output,
    elapsed: Duration,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
    fn assert_result(&self, expected: &str, success: bool) {
        let text = self.text();
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        assert_eq!(self.output.status.success(), success, "{text}");
    }
}

impl Harness {
    /// `None` (and a message) when pamtester is not installed.
    fn new() -> Option<Self> {
        let Some(pamtester) = find_in_path("pamtester") else {
            eprintln!(
                "SKIPPED: pamtester is not installed (apt-get install pamtester libpam-wrapper)"
            );
            return None;
        };
        let wrapper = Path::new(WRAPPER_MODULES).with_file_name("libpam_wrapper.so");
        assert!(
            wrapper.is_file(),
            "pamtester is installed but {} is not: apt-get install libpam-wrapper",
            wrapper.display()
        );
        let tmp = tempfile::tempdir().expect("temp dir");
        // libpam_wrapper copies every file of the service folder, so it holds only those.
        std::fs::create_dir(tmp.path().join("services")).expect("services dir");
        std::fs::copy(built_module(), tmp.path().join("pam_otpd.so")).expect("copy module");
        write_file(
            &tmp.path().join("pam.secret"),
            &format!("{SECRET}\n"),
            0o600,
        );
        Some(Self { tmp, pamtester })
    }

    fn module(&self) -> PathBuf {
        self.tmp.path().join("pam_otpd.so")
    }

    fn secret(&self) -> PathBuf {
        self.tmp.path().join("pam.secret")
    }

    /// The usual `auth` line for our module, with `extra` options.
    fn otpd_line(&self, servers: &[String], extra: &str) -> String {
        let servers: Vec<String> = servers.iter().map(|s| format!("server={s}")).collect();
        format!(
            "auth required {} {} secret_file={} {extra}",
            self.module().display(),
            servers.join(" "),
            self.secret().display()
        )
    }

    fn service(&self, name: &str, lines: &[String]) {
        let path = self.tmp.path().join("services").join(name);
        write_file(&path, &(lines.join("\n") + "\n"), 0o644);
    }

    fn spawn(&self, service: &str, user: &str, envs: &[(&str, &str)]) -> (Child, ChildStdin) {
        let mut cmd = Command::new(&self.pamtester);
        cmd.args([service, user, "authenticate"])
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.tmp.path().join("services"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pamtester");
        let stdin = child.stdin.take().expect("stdin");
        (child, stdin)
    }

    /// Runs pamtester, typing `lines` one at a time: each line after the first is written
    /// only once `before_line(i)` returns, so a prompt reading a pipe sees one line only.
    fn run(
        &self,
        service: &str,
        user: &str,
        envs: &[(&str, &str)],
        lines: &[&str],
        mut before_line: impl FnMut(usize),
    ) -> Run {
        let started = Instant::now();
        let (child, mut stdin) = self.spawn(service, user, envs);
        let pid = child.id();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait_with_output());
        });
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                before_line(i);
            }
            // The module may already have finished (e.g. a refused option): ignore EPIPE.
            let _ = stdin.write_all(format!("{line}\n").as_bytes());
            let _ = stdin.flush();
        }
        drop(stdin);
        let output = match done_rx.recv_timeout(RUN_LIMIT) {
            Ok(result) => result.expect("pamtester output"),
            Err(_) => {
                // SAFETY: plain kill(2) of the child this test spawned.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("pamtester did not finish within {RUN_LIMIT:?}");
            }
        };
        Run {
            output,
            elapsed: started.elapsed(),
        }
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Waits until the server has seen `n` requests, so the next line is typed only after the
/// module has sent what came before and is at its next prompt.
fn after_requests(server: &FakeRadius, n: usize) {
    assert!(
        server.wait_received(n, RUN_LIMIT),
        "the server saw fewer than {n} requests"
    );
}

#[test]
fn password_alone_is_accepted_and_handed_to_the_next_module() {
    let Some(h) = Harness::new() else { return };
    // A user whose token is not active yet: the password alone suffices.
    let server = FakeRadius::start(SECRET.as_bytes(), |seen: &Seen| {
        if seen.user == "bob" && seen.password == b"bob's password" {
            vec![Answer::accept(&[])]
        } else {
            vec![Answer::reject(&[])]
        }
    });
    let capture = h.tmp.path().join("authtok.out");
    let script = h.tmp.path().join("capture.sh");
    write_file(&script, "#!/bin/sh\ncat > \"$1\"\n", 0o755);
    h.service(
        "otp",
        &[
            h.otpd_line(&[server.addr().to_string()], "nas_identifier=pamtester"),
            format!(
                "auth required /lib/x86_64-linux-gnu/security/pam_exec.so expose_authtok quiet {} {}",
                script.display(),
                capture.display()
            ),
        ],
    );
    let run = h.run("otp", "bob", &[], &["bob's password"], |_| {});
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
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service("otp", &[h.otpd_line(&[server.addr().to_string()], "")]);
    let run = h.run("otp", OTPD_USER, &[], &[OTPD_PASSWORD, OTPD_OTP], |_| {
        after_requests(&server, 1)
    });
    run.assert_result(SUCCESS, true);
    let text = run.text();
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
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service("otp", &[h.otpd_line(&[server.addr().to_string()], "")]);
    let combined = format!("{OTPD_PASSWORD}{OTPD_OTP}");
    let run = h.run("otp", OTPD_USER, &[], &[&combined], |_| {});
    run.assert_result(SUCCESS, true);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn wrong_password_fails_and_shows_the_reply_message() {
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service("otp", &[h.otpd_line(&[server.addr().to_string()], "")]);
    let run = h.run("otp", OTPD_USER, &[], &["not the password"], |_| {});
    run.assert_result(AUTH_ERR, false);
    assert!(run.text().contains("Login failed"), "{}", run.text());
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn wrong_otp_at_the_challenge_fails() {
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service("otp", &[h.otpd_line(&[server.addr().to_string()], "")]);
    let run = h.run("otp", OTPD_USER, &[], &[OTPD_PASSWORD, "000000"], |_| {
        after_requests(&server, 1)
    });
    run.assert_result(AUTH_ERR, false);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn use_first_pass_takes_the_earlier_modules_password() {
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    // pam_set_items.so sets PAM_AUTHTOK from the environment, as pam_unix would from a prompt.
    h.service(
        "otp",
        &[
            format!("auth required {WRAPPER_MODULES}/pam_set_items.so"),
            h.otpd_line(&[server.addr().to_string()], "use_first_pass"),
        ],
    );
    let run = h.run(
        "otp",
        OTPD_USER,
        &[("PAM_AUTHTOK", OTPD_PASSWORD)],
        &[OTPD_OTP],
        |_| {},
    );
    run.assert_result(SUCCESS, true);
    let text = run.text();
    assert!(!text.contains("Password: "), "{text}");
    let seen = server.seen();
    assert_eq!(seen[0].password, OTPD_PASSWORD.as_bytes());
    assert_eq!(seen[1].password, OTPD_OTP.as_bytes());
}

#[test]
fn no_server_is_authinfo_unavail_within_the_bound() {
    let Some(h) = Harness::new() else { return };
    let (a, b) = (DeadServer::bind(), DeadServer::bind());
    h.service(
        "otp",
        &[h.otpd_line(
            &[a.addr().to_string(), b.addr().to_string()],
            "timeout=1 retries=1",
        )],
    );
    let run = h.run("otp", OTPD_USER, &[], &["whatever"], |_| {});
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
        run.text().contains("no RADIUS server answered"),
        "{}",
        run.text()
    );
}

#[test]
fn unknown_option_is_a_service_error_with_a_log_line() {
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    h.service(
        "otp",
        &[h.otpd_line(&[server.addr().to_string()], "frobnicate=yes")],
    );
    let run = h.run("otp", OTPD_USER, &[], &[OTPD_PASSWORD], |_| {});
    run.assert_result(SERVICE_ERR, false);
    let text = run.text();
    // libpam_wrapper turns pam_syslog() lines into stderr lines.
    assert!(text.contains("unknown option \"frobnicate\""), "{text}");
    assert!(!text.contains("Password: "), "{text}");
    assert!(server.seen().is_empty());
}

#[test]
fn loose_secret_file_is_refused() {
    let Some(h) = Harness::new() else { return };
    let server = FakeRadius::otpd_like(SECRET.as_bytes());
    std::fs::set_permissions(h.secret(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    h.service("otp", &[h.otpd_line(&[server.addr().to_string()], "")]);
    let run = h.run("otp", OTPD_USER, &[], &[OTPD_PASSWORD], |_| {});
    run.assert_result(SERVICE_ERR, false);
    let text = run.text();
    assert!(text.contains("0644"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(server.seen().is_empty());
}
