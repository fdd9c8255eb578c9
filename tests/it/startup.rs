//! Startup refusals through the real binary: otpd will not run with a sealing key that
//! others can read, nor put its admin socket where anyone could replace it, nor open a
//! store another otpd is serving (a restart waits for the old process instead); and the
//! shipped PostgreSQL example passes `--check-config` against a live database.

use std::process::Command;
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{bin, chmod, Otpd};

#[test]
fn a_key_file_others_can_read_is_refused_at_start() {
    for mode in [0o640, 0o604, 0o644, 0o660] {
        let site = Otpd::builder().unstarted();
        let dir = &site.dir;
        let key = dir.path().join("master.key");
        std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("key");
        chmod(&key, mode);
        let (status, err) = site.run_to_exit();
        assert_eq!(status.code(), Some(1), "mode {mode:o}: {err}");
        assert!(
            err.contains("master.key") && err.contains("chmod 600"),
            "mode {mode:o}: the message names the file and the fix: {err}"
        );
        assert!(
            !dir.path().join("admin.sock").exists(),
            "nothing was served"
        );
    }
}

#[test]
fn an_admin_socket_folder_anyone_may_write_is_refused_at_start() {
    let mut site = Otpd::builder()
        .config("[admin]\nsocket = \"run/admin.sock\"\n")
        .unstarted();
    let run = site.dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    chmod(&run, 0o777);
    let (status, err) = site.run_to_exit();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("admin socket folder")
            && err.contains("writable by everyone")
            && err.contains("sticky"),
        "{err}"
    );
    assert!(!run.join("admin.sock").exists());

    // With the sticky bit (as /tmp has) nobody else can remove or rename the socket.
    chmod(&run, 0o1777);
    site.launch();
    assert!(run.join("admin.sock").exists());
}

/// A second otpd on a store that a running otpd holds waits for the store's lock, then
/// refuses to start and says why, and the first goes on serving. An otpd started while
/// the old one is still exiting (a service manager's restart) waits for it and starts.
#[test]
fn a_second_otpd_on_a_held_store_is_refused_and_a_restart_waits_for_the_old_one() {
    let mut site = Otpd::start("");
    let began = Instant::now();
    let (status, err) = site.run_to_exit();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not acquire lock")
            && err.contains("another process holds it")
            && err.contains("data_dir"),
        "the refusal says the store is held: {err}"
    );
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "refused only after the lock wait: {:?}",
        began.elapsed()
    );
    site.admin_ok(serde_json::json!({"op": "status"}));

    // SIGTERM to the old process and, without waiting for it, the new one.
    let stopped = site.restart_overlapping();
    assert!(stopped.success(), "the old otpd stopped with {stopped}");
    site.admin_ok(serde_json::json!({"op": "status"}));
}

/// The shipped example of a node on PostgreSQL (`packaging/otpd-postgres.toml`), with its
/// hosts, addresses and paths pointed at this test's private cluster and folder: every key
/// is known, every file it names passes the start-time checks, and `--check-config`
/// connects and says what it found at the database.
#[test]
fn the_shipped_postgres_example_checks_out_against_a_live_database() {
    let pg = otpd_testkit::postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/otpd-postgres.toml"
    ))
    .expect("the example");
    let url_line = example
        .lines()
        .find(|l| l.starts_with("url = "))
        .expect("a url line")
        .to_string();
    let config: String = example
        .replace(&url_line, &format!("url = \"{}\"", pg.url()))
        .replace("sslmode = \"verify-full\"", "sslmode = \"disable\"")
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "10.0.1.11:1812",
            &format!("127.0.0.1:{}", otpd_testkit::daemon::free_udp_port()),
        )
        .replace(
            "10.0.1.11:8080",
            &format!("127.0.0.1:{}", otpd_testkit::daemon::free_tcp_port()),
        )
        .replace("/run/otpd/", &format!("{d}/run/"))
        .replace("/etc/otpd/", &format!("{d}/"));
    assert!(config.contains("engine = \"postgres\""), "{config}");
    for (name, content) in [
        ("postgres.password", format!("{}\n", pg.password())),
        (
            "secrets/fr-proxy",
            "a-long-random-shared-secret-0123\n".into(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        chmod(&path, 0o600);
    }
    std::fs::create_dir_all(dir.path().join("run")).expect("mkdir");
    chmod(&dir.path().join("run"), 0o750);
    let path = dir.path().join("otpd.toml");
    std::fs::write(&path, &config).expect("config");
    let out = Command::new(bin("otpd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("otpd --check-config");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}\n{config}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("store: PostgreSQL")
            && stdout.contains(&format!("127.0.0.1:{}", pg.port())),
        "it connected and said what it found: {stdout}"
    );
    assert!(
        !stdout.contains(pg.password()) && !stderr.contains(pg.password()),
        "the password stays secret"
    );
}
