//! otpd driven only through otpctl, as an administrator would (the Foundation issue).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use otpd_testkit::daemon::{bin, wait_until, Otpd};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `otpctl token issue` to `email`, the activation password on stdin; its output.
fn token_issue(d: &Otpd, who: &str, email: &str, activation_password: &str) -> String {
    d.ctl_ok(
        &[
            "token",
            "issue",
            who,
            "--email",
            email,
            "--activation-password-stdin",
        ],
        &format!("{activation_password}\n"),
    )
}

#[test]
fn lifecycle_through_otpctl_survives_a_restart() {
    let mut d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    let v = d.show("taro");
    assert_eq!(v["login_id"], "taro");
    assert_eq!(v["state"], "unregistered");
    assert_eq!(v["locked"], false);
    assert!(v["email"].is_null() && v["expires_at"].is_null());
    assert_eq!(v["renewal_available"], false);

    let out = token_issue(&d, "taro", "taro@docomo.ne.jp", "act-1234");
    assert!(out.contains("setup link e-mailed"), "{out}");
    let v = d.show("taro");
    assert_eq!(v["state"], "issued");
    assert_eq!(v["email"], "taro@docomo.ne.jp");

    d.ctl_ok(&["user", "add", "jiro", "--password-stdin"], "pw2\n");
    let list = d.ctl_ok(&["user", "list"], "");
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("taro\tissued")),
        "{list}"
    );

    d.restart();
    assert_eq!(
        d.show("taro")["state"],
        "issued",
        "issuance survived the restart"
    );
    assert_eq!(d.show("jiro")["state"], "unregistered");

    d.ctl_ok(&["token", "cancel", "taro"], "");
    assert_eq!(d.show("taro")["state"], "unregistered");
    d.ctl_ok(&["token", "unlock", "taro"], "");
    d.ctl_ok(&["user", "passwd", "taro", "--password-stdin"], "new-pw\n");
    d.ctl_ok(&["user", "delete", "jiro"], "");
    let out = d.otpctl(&["user", "show", "jiro"], "");
    assert_eq!(out.status.code(), Some(1));
    d.restart();
    let list = d.ctl_ok(&["--json", "user", "list"], "");
    let users: serde_json::Value = serde_json::from_str(&list).expect("json list");
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{list}");
    let status = d.ctl_ok(&["--json", "status"], "");
    let status: serde_json::Value = serde_json::from_str(&status).expect("json status");
    assert_eq!(status["users"], 1);
    assert_eq!(status["by_state"]["unregistered"], 1);
}

#[test]
fn refusals_are_one_clear_line_and_change_nothing() {
    let d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw\n");
    let before = d.show("taro");

    let dup = d.otpctl(&["user", "add", "taro", "--password-stdin"], "other\n");
    assert_eq!(dup.status.code(), Some(1));
    assert_eq!(
        stderr_of(&dup).trim(),
        "otpctl: user \"taro\" already exists"
    );

    let unknown = d.otpctl(&["token", "cancel", "nobody"], "");
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stderr_of(&unknown).trim(),
        "otpctl: no such user \"nobody\""
    );

    let wrong_state = d.otpctl(&["token", "activate", "taro", "--otp", "123456"], "");
    assert_eq!(wrong_state.status.code(), Some(1));
    assert!(
        stderr_of(&wrong_state).contains("unregistered"),
        "{}",
        stderr_of(&wrong_state)
    );

    let bad_mail = d.otpctl(
        &[
            "token",
            "issue",
            "taro",
            "--email",
            "not-an-address",
            "--activation-password-stdin",
        ],
        "act-1234\n",
    );
    assert_eq!(bad_mail.status.code(), Some(1));
    assert!(stderr_of(&bad_mail).contains("not an e-mail address"));

    let no_secret = d.otpctl(&["user", "add", "hanako"], "");
    assert_eq!(
        no_secret.status.code(),
        Some(2),
        "no password source: usage error"
    );
    assert!(stderr_of(&no_secret).contains("--password-stdin"));
    assert_eq!(stderr_of(&no_secret).lines().count(), 1);

    let bad_id = d.otpctl(&["user", "add", "has space", "--password-stdin"], "pw\n");
    assert_eq!(bad_id.status.code(), Some(1));

    assert_eq!(d.show("taro"), before, "nothing changed");
    let list = d.ctl_ok(&["user", "list"], "");
    assert_eq!(list.lines().count(), 1, "{list}");

    let cancelled_twice = d.otpctl(&["token", "cancel", "taro"], "");
    assert_eq!(cancelled_twice.status.code(), Some(1));
}

#[test]
fn unreachable_daemon_is_exit_3() {
    let out = std::process::Command::new(bin("otpctl"))
        .args(["--socket", "/nonexistent/otpd.sock", "status"])
        .output()
        .expect("otpctl");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr_of(&out).contains("cannot reach otpd"));
}

#[test]
fn otpctl_finds_the_socket_through_the_config_file() {
    let d = Otpd::start("");
    let out = std::process::Command::new(bin("otpctl"))
        .arg("--config")
        .arg(&d.config)
        .args(["--json", "status"])
        .output()
        .expect("otpctl");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, Otpd::config_text(1812, 8080, "")).expect("write");
    let ok = std::process::Command::new(bin("otpd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&good)
        .output()
        .expect("otpd");
    assert!(ok.status.success(), "{}", stderr_of(&ok));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "colour = \"blue\"\n[token]\nvalidity_days = 365\n[otp]\nperiodd = 30\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin("otpd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("otpd");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    for needle in ["`colour`", "`otp.periodd`", "service_id", "validity_days"] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    // A broken config also refuses to start, with the same list.
    let start = std::process::Command::new(bin("otpd"))
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("otpd");
    assert_eq!(start.status.code(), Some(2));
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = Otpd::start("");
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "socket removed on a clean stop");
    assert!(d.stderr().contains("stopped"), "{}", d.stderr());
}

#[test]
fn admin_socket_and_key_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Otpd::start("");
    let sock = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(sock, 0o660);
    let key = std::fs::metadata(d.dir.path().join("master.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key, 0o600);
}

/// Audit lines reach syslog (facility authpriv) and never carry a secret.
#[test]
fn audit_lines_go_to_syslog_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&log_path).expect("our own syslog socket");
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let extra = format!(
        "[log]\nsyslog = true\nsyslog_socket = \"{}\"\n",
        log_path.display()
    );
    let d = Otpd::start(&extra);
    d.ctl_ok(
        &["user", "add", "taro", "--password-stdin"],
        "Very-Secret-Pw\n",
    );
    token_issue(&d, "taro", "t@example.jp", "Act-Secret-99");
    let _ = d.otpctl(
        &["user", "add", "taro", "--password-stdin"],
        "Another-Secret\n",
    );
    let mut lines = Vec::new();
    wait_until(
        "the audit line of the refused add",
        Duration::from_secs(10),
        || {
            let mut buf = [0u8; 2048];
            if let Ok(n) = syslog.recv(&mut buf) {
                lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            lines
                .iter()
                .any(|l| l.contains("outcome=user_exists"))
                .then_some(())
        },
    );
    let audits: Vec<&String> = lines.iter().filter(|l| l.contains("audit")).collect();
    // <86> = authpriv (10) * 8 + info (6)
    assert!(audits.iter().all(|l| l.starts_with("<86>")), "{audits:?}");
    assert!(audits.iter().any(|l| l.contains("admin=\"user add\"")
        && l.contains("user=taro")
        && l.contains("outcome=ok")));
    assert!(audits.iter().any(|l| l.contains("outcome=user_exists")));
    for secret in ["Very-Secret-Pw", "Act-Secret-99", "Another-Secret"] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "{secret} reached syslog"
        );
        assert!(!d.stderr().contains(secret), "{secret} reached stderr");
    }
}

#[test]
fn a_missing_syslog_socket_is_one_warning() {
    let d = Otpd::start("[log]\nsyslog = true\nsyslog_socket = \"/nonexistent/dev-log\"\n");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw\n");
    // The syslog thread says it once, when the first audit line finds no socket.
    otpd_testkit::daemon::wait_until(
        "the syslog warning",
        std::time::Duration::from_secs(10),
        || {
            let err = d.stderr();
            err.contains("syslog socket /nonexistent/dev-log unavailable")
                .then_some(())
        },
    );
    d.ctl_ok(&["user", "add", "jiro", "--password-stdin"], "pw\n");
    let err = wait_until_audit(&d, "user=jiro");
    assert_eq!(err.matches("syslog socket").count(), 1, "{err}");
    assert!(err.contains("audit admin=\"user add\""), "{err}");
}

/// stderr once it holds the audit line naming `what`.
fn wait_until_audit(d: &Otpd, what: &str) -> String {
    otpd_testkit::daemon::wait_until(
        "the second audit line",
        std::time::Duration::from_secs(10),
        || {
            let err = d.stderr();
            err.contains(what).then_some(err)
        },
    )
}

/// `otpd --restore BACKUP` on the test daemon's config.
fn restore(d: &Otpd, backup: &std::path::Path) -> std::process::Output {
    std::process::Command::new(bin("otpd"))
        .arg("--config")
        .arg(&d.config)
        .arg("--restore")
        .arg(backup)
        .output()
        .expect("otpd --restore")
}

const SHA512_OF_SECRET: &str =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

#[test]
fn user_import_is_all_or_nothing_with_line_numbers() {
    let d = Otpd::start("");
    let bad = d.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("login_id,password_hash,email\nu1,{SHA512_OF_SECRET},u1@example.jp\nu2,plaintext,u2@example.jp\n"),
    )
    .expect("write");
    let out = d.otpctl(&["user", "import", bad.to_str().expect("utf8")], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("line 3"), "{}", stderr_of(&out));
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "nothing imported");

    let good = d.dir.path().join("good.csv");
    let argon =
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$2mVm0mOyAwsc0b5ldyNWhnXEt/1Xy6ykTuAkmj7VVp4";
    std::fs::write(
        &good,
        format!("u1,{SHA512_OF_SECRET},u1@example.jp\n\n# migrated\nu2,{argon},\n"),
    )
    .expect("write");
    let out = d.ctl_ok(&["user", "import", good.to_str().expect("utf8")], "");
    assert!(out.contains("imported 2 users"), "{out}");
    assert_eq!(d.show("u1")["email"], "u1@example.jp");
    assert!(d.show("u2")["email"].is_null());
    let again = d.otpctl(&["user", "import", good.to_str().expect("utf8")], "");
    assert_eq!(
        again.status.code(),
        Some(1),
        "existing users refuse the whole file"
    );
    assert!(
        stderr_of(&again).contains("line 1"),
        "{}",
        stderr_of(&again)
    );
}

#[test]
fn backup_restores_into_a_fresh_store() {
    let mut d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw\n");
    token_issue(&d, "taro", "t@example.jp", "act-1234");
    d.ctl_ok(&["user", "add", "jiro", "--password-stdin"], "pw\n");
    let backup = d.dir.path().join("otpd.backup");
    let out = d.ctl_ok(&["backup", backup.to_str().expect("utf8")], "");
    assert!(out.contains("backup of 2 users"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup)
            .expect("backup")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Restoring into the running daemon's store is refused with a reason.
    let busy = restore(&d, &backup);
    assert!(!busy.status.success());

    d.stop();
    std::fs::remove_dir_all(d.dir.path().join("data")).expect("lose the store");
    let restored = restore(&d, &backup);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
    let again = restore(&d, &backup);
    assert!(!again.status.success(), "a non-empty store needs --force");
    assert!(stderr_of(&again).contains("--force"));
    d.restart();
    assert_eq!(d.show("taro")["state"], "issued");
    assert_eq!(d.show("jiro")["state"], "unregistered");
}

#[test]
fn a_backup_under_load_restores_users_and_replay_marks() {
    use otpd_testkit::oath::oathtool;
    use otpd_testkit::radius::{Client, ACCESS_ACCEPT, ACCESS_REJECT};
    use otpd_testkit::token::activate;
    let mut d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let server = d.radius();
    let secrets: Vec<String> = (0..6)
        .map(|i| activate(&d, &format!("u{i}"), "pw"))
        .collect();
    for i in 0..200 {
        d.ctl_ok(
            &["user", "add", &format!("bulk{i:03}"), "--password-stdin"],
            "pw\n",
        );
    }
    // Logins before the backup: their codes must stay spent after the restore.
    let c = Client::new(server, otpd_testkit::daemon::RADIUS_SECRET);
    let spent: Vec<String> = secrets
        .iter()
        .map(|s| format!("pw{}", oathtool(s, None)))
        .collect();
    for (i, pw) in spent.iter().enumerate() {
        assert_eq!(c.login(i as u8, &format!("u{i}"), pw).code, ACCESS_ACCEPT);
    }
    // Load while the backup is taken: password logins of the bulk users.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let c = Client::new(server, otpd_testkit::daemon::RADIUS_SECRET);
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(
                    c.login((n % 256) as u8, &format!("bulk{:03}", n % 200), "pw")
                        .code,
                    ACCESS_ACCEPT
                );
                n += 1;
            }
            n
        })
    };
    let backup = d.dir.path().join("under-load.backup");
    let out = d.ctl_ok(&["backup", backup.to_str().expect("utf8")], "");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let logins = load.join().expect("load thread");
    assert!(out.contains("backup of 206 users"), "{out}");
    assert!(logins > 0, "the backup ran under load");

    d.stop();
    std::fs::remove_dir_all(d.dir.path().join("data")).expect("lose the store");
    let restored = restore(&d, &backup);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
    d.restart();
    let users: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "user", "list"], "")).expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(206));
    let c = Client::new(server, otpd_testkit::daemon::RADIUS_SECRET);
    for (i, pw) in spent.iter().enumerate() {
        assert_eq!(
            c.login(i as u8, &format!("u{i}"), pw).code,
            ACCESS_REJECT,
            "u{i}: a spent code was accepted after the restore"
        );
    }
    assert_eq!(c.login(50, "bulk007", "pw").code, ACCESS_ACCEPT);
}

/// An import file of `n` customers sharing one (cheap, real) argon2id hash.
fn import_file(n: usize) -> Vec<String> {
    import_file_of("c", n)
}

fn import_file_of(prefix: &str, n: usize) -> Vec<String> {
    let argon =
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$2mVm0mOyAwsc0b5ldyNWhnXEt/1Xy6ykTuAkmj7VVp4";
    let mut lines = vec!["login_id,password_hash,email".to_string()];
    lines.extend((1..=n).map(|i| format!("{prefix}{i:07},{argon},{prefix}{i}@example.jp")));
    lines
}

#[test]
fn an_import_far_above_one_admin_line_streams_all_or_nothing() {
    let d = Otpd::start("");
    let path = d.dir.path().join("bank.csv");
    let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let file = path.to_str().expect("utf8");

    // A row otpd refuses near the end: the 4,988 rows checked before it are not written.
    let mut lines = import_file(5000);
    lines[4990] = "c0004990,plaintext,c4990@example.jp".into();
    write(&lines);
    let out = d.otpctl(&["user", "import", file], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("line 4991") && stderr_of(&out).contains("nothing was imported"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "nothing imported");

    // A line otpctl cannot read, after otpd staged every batch before it: still nothing.
    let mut lines = import_file(5000);
    lines[4999] = "no-commas-here".into();
    write(&lines);
    let out = d.otpctl(&["user", "import", file], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("line 5000"), "{}", stderr_of(&out));
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "nothing imported");

    // A duplicate at the very end names both lines.
    let mut lines = import_file(5000);
    lines[5000] = lines[1].clone();
    write(&lines);
    let out = d.otpctl(&["user", "import", file], "");
    assert!(
        stderr_of(&out).contains("line 5001") && stderr_of(&out).contains("first on line 2"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "nothing imported");

    write(&import_file(5000));
    let out = d.otpctl(&["user", "import", file], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("imported 5000 users in "), "{stdout}");
    assert!(stdout.contains("users/s"), "a throughput figure: {stdout}");
    assert_eq!(stderr_of(&out), "", "no progress bar without a terminal");

    let list = d.ctl_ok(&["user", "list"], "");
    let ids: Vec<&str> = list
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), 5000, "every page, once");
    assert_eq!((ids[0], ids[4999]), ("c0000001", "c0005000"));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    let json: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "user", "list"], "")).expect("json array");
    assert_eq!(json.as_array().map(Vec::len), Some(5000));
    assert_eq!(json[4999]["email"], "c5000@example.jp");

    let backup = d.dir.path().join("bank.backup");
    let out = d.ctl_ok(&["backup", backup.to_str().expect("utf8")], "");
    assert!(out.contains("backup of 5000 users (5000 records)"), "{out}");
    let text = std::fs::read_to_string(&backup).expect("backup");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("header")).expect("header json");
    assert_eq!(header["records"], 5000);
    assert_eq!(text.lines().count(), 5001);

    // Every imported user is a real one: a row near the end has its e-mail.
    assert_eq!(d.show("c0004999")["email"], "c4999@example.jp");

    // On a terminal (script(1) gives otpctl one) a progress bar shows; --json stays quiet.
    write(&import_file_of("t", 3000));
    let on_tty = |json: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "{} --socket {} {json} user import {file}",
                bin("otpctl").display(),
                d.socket.display()
            ))
            .arg("/dev/null")
            .output()
            .expect("script (bsdutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_tty("");
    assert!(shown.contains("checking ["), "a progress bar: {shown:?}");
    assert!(shown.contains("imported 3000 users"), "{shown:?}");
    write(&import_file_of("k", 3000));
    let shown = on_tty("--json");
    assert!(!shown.contains("checking ["), "--json is quiet: {shown:?}");
    assert!(shown.contains(r#""count":3000"#), "{shown:?}");
    write(&import_file_of("j", 3000));
    let out = d.otpctl(&["--json", "user", "import", file], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["count"], 3000);
    assert_eq!(stderr_of(&out), "");
}
