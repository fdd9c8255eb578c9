//! otpctl and a reader that stops early (`otpctl user list | head -1`): it ends quietly,
//! exit 0 and nothing on standard error, as any Unix tool does (the operator's issue).

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};

use otpd_testkit::daemon::{bin, Otpd};

/// An argon2id hash the import takes as it is (m=64: cheap, nobody logs in with it).
const HASH: &str =
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$2mVm0mOyAwsc0b5ldyNWhnXEt/1Xy6ykTuAkmj7VVp4";

/// Runs otpctl with `args` and its standard output on a FIFO whose only reader has already
/// gone, so its first write meets EPIPE, every time; returns (exit code, stderr).
fn into_a_closed_pipe(d: &Otpd, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let fifo = dir.join("stdout.fifo");
    if !fifo.exists() {
        let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
    }
    // Opening read-write never blocks; the write end opened next has a reader, which is
    // then closed before otpctl starts.
    let reader = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let writer = OpenOptions::new().write(true).open(&fifo).expect("fifo");
    drop(reader);
    let out = Command::new(bin("otpctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run otpctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_printing_command_ends_quietly_when_its_reader_has_gone() {
    let d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("backup.jsonl");
    let backup = backup.to_str().expect("utf8");
    let commands: &[&[&str]] = &[
        &["status"],
        &["--json", "status"],
        &["user", "show", "taro"],
        &["--json", "user", "show", "taro"],
        &["user", "list"],
        &["--json", "user", "list"],
        &["token", "unlock", "taro"],
        &["backup", backup],
    ];
    for args in commands {
        // The first write fails with EPIPE each time; a few runs each show it is no race.
        for _ in 0..5 {
            let (code, stderr) = into_a_closed_pipe(&d, dir.path(), args);
            assert_eq!(code, Some(0), "otpctl {args:?}: {stderr}");
            assert_eq!(stderr, "", "otpctl {args:?} said something");
        }
    }
    // The commands did their work: only the output was unwanted.
    assert!(dir.path().join("backup.jsonl").is_file());
    assert_eq!(d.show("taro")["state"], "unregistered");
    // A closed pipe is the only write failure kept quiet: a full disk is an error line.
    let out = Command::new(bin("otpctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .stdout(
            OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full"),
        )
        .stderr(Stdio::piped())
        .output()
        .expect("run otpctl");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("otpctl: cannot write to standard output:"),
        "{stderr}"
    );
}

#[test]
fn user_list_into_head_exits_zero_every_time() {
    let d = Otpd::start("");
    // More than a pipe's 64 KiB of lines, so otpctl is still writing when head leaves.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("users.csv");
    let rows: String = (0..4000)
        .map(|i| format!("user{i:05},{HASH},user{i:05}@example.invalid\n"))
        .collect();
    std::fs::write(&file, rows).expect("write users.csv");
    d.ctl_ok(&["user", "import", file.to_str().expect("utf8")], "");
    let script = r#"set -o pipefail
for i in $(seq 1 40); do
  first=$("$OTPCTL" --socket "$SOCKET" user list 2>>"$ERR" | head -1) || { echo "run $i: exit $?"; exit 1; }
  [ "${first%%	*}" = user00000 ] || { echo "run $i: first line $first"; exit 1; }
done
echo ok"#;
    let err = dir.path().join("stderr");
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("OTPCTL", bin("otpctl"))
        .env("SOCKET", &d.socket)
        .env("ERR", &err)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "ok");
    assert_eq!(stderr, "", "otpctl said something on a closed pipe");
}
