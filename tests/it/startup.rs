//! Startup refusals through the real binary: otpd will not run with a sealing key that
//! others can read, nor put its admin socket where anyone could replace it.

use std::process::{Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{bin, chmod, wait_until, Otpd};

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
    let site = Otpd::builder()
        .config("[admin]\nsocket = \"run/admin.sock\"\n")
        .unstarted();
    let (dir, config) = (&site.dir, site.config.clone());
    let run = dir.path().join("run");
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
    let mut child = Command::new(bin("otpd"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("otpd");
    wait_until("the admin socket", Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("otpd exited: {status}");
        }
        std::os::unix::net::UnixStream::connect(run.join("admin.sock"))
            .ok()
            .map(|_| ())
    });
    let _ = child.kill();
    let _ = child.wait();
}
