//! Storage faults: otpd's `data_dir` on a small tmpfs that the test fills. A login that
//! needs a write is refused (never accepted) while the store cannot write, the log says
//! why, and otpd is back once there is room again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{bin, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::oath::oathtool;
use otpd_testkit::radius::{Client, ACCESS_ACCEPT, ACCESS_REJECT};
use otpd_testkit::token::activate;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `Err`: mounting is not permitted here (not root, no CAP_SYS_ADMIN).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: still detached if something holds a file open in it.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros into `path` until the file system is full; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // Whatever part of a page is left.
    while f.write_all(&[0u8]).is_ok() {
        written += 1;
    }
    let _ = f.sync_all();
    written
}

const COULD_NOT_WRITE: &str = "the store could not write";
const USERS: usize = 12;

#[test]
fn a_full_disk_refuses_logins_that_need_a_write_and_otpd_recovers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mount = match Tmpfs::mount(&data, "16m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here ({e}); this test needs root");
            return;
        }
    };
    let mut d = Otpd::start(&format!(
        "data_dir = \"{}\"\n[radius]\nreject_delay_ms = 0\n",
        data.display()
    ));
    let server = d.radius();
    let users: Vec<(String, String)> = (0..USERS)
        .map(|i| {
            let login = format!("u{i:02}");
            let secret = activate(&d, &login, "login-pw");
            (login, secret)
        })
        .collect();
    d.ctl_ok(&["user", "add", "jiro", "--password-stdin"], "jiro-pw\n");
    let c = Client::new(server, RADIUS_SECRET);
    assert_eq!(c.login(1, "jiro", "jiro-pw").code, ACCESS_ACCEPT);
    // One OTP accepted while there is room; it must stay spent through what follows.
    let early_secret = activate(&d, "early", "login-pw");
    let early_pw = format!("login-pw{}", oathtool(&early_secret, None));
    assert_eq!(c.login(2, "early", &early_pw).code, ACCESS_ACCEPT);
    let mut accepted = vec![("early".to_string(), early_pw)];

    let filler = data.join("filler");
    let filled = fill(&filler);

    // Password and OTP: the accepted time step must be on disk before an Accept leaves.
    // sled still has some room in pages it already holds, so the first logins may be
    // written; the first one that cannot be written must be refused.
    let mut refused = None;
    for (i, (login, secret)) in users.iter().enumerate() {
        let pw = format!("login-pw{}", oathtool(secret, None));
        let r = c.login(10 + i as u8, login, &pw);
        if r.code == ACCESS_ACCEPT {
            accepted.push((login.clone(), pw));
            continue;
        }
        assert_eq!(r.code, ACCESS_REJECT);
        refused = Some((login.clone(), pw));
        break;
    }
    let log = d.stderr();
    let Some((login, _)) = &refused else {
        panic!("{USERS} OTP logins on a full disk were all accepted: {log}");
    };
    eprintln!(
        "filled the tmpfs with {filled} bytes; {} OTP logins still written, the next refused",
        accepted.len() - 1
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("user=\"{login}\"")) && l.contains("reason=store_error")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("error:") && l.contains(COULD_NOT_WRITE)),
        "{log}"
    );

    // sled refuses every write after an I/O error until the store is opened again: otpd
    // stops with a failure status for its service manager to restart it.
    let status = d.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{status}");
    assert!(d
        .stderr()
        .contains("stopping so that the service manager restarts otpd"));

    // Restarted while the disk is still full, otpd cannot open its store: it says so
    // and exits non-zero, and the service manager tries again.
    let mut early = Command::new(bin("otpd"))
        .arg("--config")
        .arg(&d.config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("otpd");
    let status = wait_until(
        "otpd on a full disk to exit",
        Duration::from_secs(20),
        || early.try_wait().ok().flatten(),
    );
    let mut err = String::new();
    early
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("cannot open store") && err.contains("No space left"),
        "{err}"
    );

    // Room again, and the service manager's restart: logins work, and no OTP answered
    // Accept (before the disk filled or while it was full) is accepted twice.
    std::fs::remove_file(&filler).expect("free the space");
    d.launch();
    let (login, _) = refused.expect("refused");
    let secret = &users.iter().find(|u| u.0 == login).expect("user").1;
    let r = c.login(50, &login, &format!("login-pw{}", oathtool(secret, None)));
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", d.stderr());
    assert_eq!(c.login(51, "jiro", "jiro-pw").code, ACCESS_ACCEPT);
    for (i, (login, pw)) in accepted.iter().enumerate() {
        assert_eq!(
            c.login(60 + i as u8, login, pw).code,
            ACCESS_REJECT,
            "{login}: an OTP answered Accept was accepted again"
        );
    }
    drop(d);
    drop(mount);
}
