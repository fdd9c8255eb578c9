//! Storage faults: otpd's `data_dir` on a small tmpfs that the test fills. A login that
//! needs a write is refused (never accepted) while the store cannot write, the log says
//! why, and otpd is back once there is room again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{bin, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::oath::{oathtool, oathtool_next};
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
const USERS: usize = 32;

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
    // sled still has some room in pages it already holds, so the first writes may succeed;
    // how many depends on the layout of its file. So: OTP logins (every user's current
    // code, then its next one), each followed by a wrong password for the same user (a
    // failure count, also a write), until a write fails; the login whose write failed must
    // be refused.
    let codes = users
        .iter()
        .map(|(login, secret)| (login, oathtool(secret, None)))
        .chain(users.iter().map(|(l, s)| (l, oathtool_next(s))));
    let mut refused = None;
    let mut id = 10u8;
    for (login, code) in codes {
        let pw = format!("login-pw{code}");
        id = id.wrapping_add(2);
        let r = c.login(id, login, &pw);
        if r.code != ACCESS_ACCEPT {
            assert_eq!(r.code, ACCESS_REJECT);
            refused = Some(login.clone());
            break;
        }
        accepted.push((login.clone(), pw));
        assert_eq!(c.login(id + 1, login, "wrong-pw").code, ACCESS_REJECT);
        if d.stderr().contains(COULD_NOT_WRITE) {
            refused = Some(login.clone());
            break;
        }
    }
    let log = d.stderr();
    let Some(login) = &refused else {
        panic!(
            "{} OTP logins on a full disk were all accepted: {log}",
            accepted.len()
        );
    };
    eprintln!(
        "filled the tmpfs with {filled} bytes; {} OTP logins still written, then {login}'s write failed",
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
    let late = activate(&d, "late", "login-pw");
    let r = c.login(50, "late", &format!("login-pw{}", oathtool(&late, None)));
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

/// A store written by otpd before a user's marks (replay mark, login lock) had a tree of
/// their own, made with that otpd by the README walk-through (`tests/fixtures/store-v1`:
/// taro active with an OTP spent, jiro with two failed logins, hanako issued). Today's otpd
/// opens it, moves it to the new layout, and loses nothing: the spent code stays spent.
/// Then it reads the users into its cache (the warm-up line).
#[test]
fn a_store_written_before_the_marks_moved_opens_without_loss() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/store-v1");
    let backup = std::fs::read_to_string(fixture.join("backup.jsonl")).expect("backup");
    let taro: serde_json::Value = backup
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["tree"] == "users" && r["key"] == "7461726f")
        .map(|r| {
            let hex = r["value"].as_str().expect("value").to_string();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            serde_json::from_slice(&bytes).expect("record")
        })
        .next()
        .expect("taro in the backup");
    let spent = taro["token"]["last_step"].as_i64().expect("a spent step");
    let secret = std::fs::read_to_string(fixture.join("secret.txt")).expect("secret");
    let secret = secret.trim();
    // otpd's clock in the minute of the spent step, so that code is inside the window.
    let at = spent * 60 + 30;
    let mut d = Otpd::builder()
        .config("service_id = \"EXAMPLE-BANK\"\n[radius]\nreject_delay_ms = 0\n")
        .clock_offset(at - otpd_testkit::oath::now())
        .unstarted();
    copy_tree(&fixture.join("data"), &d.path("data"));
    otpd_testkit::daemon::chmod(&d.path("data"), 0o700);
    std::fs::copy(fixture.join("master.key"), d.path("master.key")).expect("key");
    otpd_testkit::daemon::chmod(&d.path("master.key"), 0o600);
    d.launch();
    assert!(
        d.stderr().contains("moved 3 users"),
        "the move is reported: {}",
        d.stderr()
    );
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let replay = format!("login-pw-1{}", oathtool(secret, Some(spent * 60)));
    assert_eq!(
        c.login(1, "taro", &replay).code,
        ACCESS_REJECT,
        "the code spent before the move stays spent"
    );
    let next = format!("login-pw-1{}", oathtool(secret, Some((spent + 1) * 60)));
    assert_eq!(c.login(2, "taro", &next).code, ACCESS_ACCEPT);
    assert_eq!(d.show("jiro")["failures"], 2, "the failure count kept");
    assert_eq!(d.show("hanako")["state"], "issued");
    assert_eq!(d.show("taro")["failures"], 0);
    // After ready, the users were read into the cache (all three fit).
    wait_until("the warm-up's line", Duration::from_secs(30), || {
        let log = d.stderr();
        log.contains("store: cache warmed with 3 users")
            .then_some(())
    });
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// An import file of `n` users sharing one (cheap, real) argon2id hash.
fn import_file(path: &Path, prefix: &str, n: usize) {
    let argon =
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$2mVm0mOyAwsc0b5ldyNWhnXEt/1Xy6ykTuAkmj7VVp4";
    let mut text = String::from("login_id,password_hash,email\n");
    for i in 1..=n {
        text.push_str(&format!("{prefix}{i:06},{argon},{prefix}{i}@example.jp\n"));
    }
    std::fs::write(path, text).expect("write the import file");
}

fn user_ids(d: &Otpd) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["--json", "user", "list"], "")).expect("json");
    list.as_array()
        .expect("array")
        .iter()
        .map(|u| u["login_id"].as_str().expect("login_id").to_string())
        .collect()
}

/// An import whose commit fails half way (the disk fills under it) leaves none of its
/// users, even after otpd stopped on the failure and started again with room; a complete
/// one survives a kill -9 right after otpctl said it was done.
#[test]
fn an_import_whose_commit_fails_leaves_none_of_its_users_and_a_done_one_stays() {
    let _heavy = otpd_testkit::serial::heavy();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mount = match Tmpfs::mount(&data, "16m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here ({e}); this test needs root");
            return;
        }
    };
    let mut d = Otpd::start(&format!("data_dir = \"{}\"\n", data.display()));
    d.ctl_ok(&["user", "add", "jiro", "--password-stdin"], "jiro-pw\n");
    let file = tmp.path().join("bank.csv");
    import_file(&file, "c", 20_000);
    let filler = data.join("filler");
    fill(&filler);
    let out = d.otpctl(&["user", "import", file.to_str().expect("utf8")], "");
    assert!(!out.status.success(), "an import on a full disk succeeded");
    let status = d.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{status}");
    std::fs::remove_file(&filler).expect("free the space");
    d.launch();
    let ids = user_ids(&d);
    assert_eq!(
        ids,
        vec!["jiro".to_string()],
        "{} imported users were left by a failed import",
        ids.len().saturating_sub(1)
    );

    let done = tmp.path().join("done.csv");
    import_file(&done, "d", 3000);
    let out = d.ctl_ok(&["user", "import", done.to_str().expect("utf8")], "");
    assert!(out.contains("imported 3000 users"), "{out}");
    d.kill();
    d.launch();
    assert_eq!(user_ids(&d).len(), 3001, "a completed import lost users");
    drop(d);
    drop(mount);
}
