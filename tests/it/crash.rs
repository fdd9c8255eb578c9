//! Crash safety: otpd killed with SIGKILL in the middle of a login burst must, after a
//! restart, refuse every OTP it had answered Access-Accept, and have lost no user or token;
//! and so must a machine that loses its power right after an Access-Accept left.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otpd_testkit::daemon::{wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::oath::oathtool;
use otpd_testkit::radius::{Client, ACCESS_ACCEPT, ACCESS_REJECT};
use otpd_testkit::token::activate;

const ROUNDS: usize = 5;
const USERS_PER_ROUND: usize = 16;

#[test]
fn sigkill_during_a_login_burst_never_allows_a_replay() {
    let _heavy = otpd_testkit::serial::heavy();
    let mut d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let server = d.radius();
    let users: Vec<(String, String)> = (0..ROUNDS * USERS_PER_ROUND)
        .map(|i| {
            let login = format!("u{i:03}");
            let secret = activate(&d, &login, "pw");
            (login, secret)
        })
        .collect();
    let mut total_accepted = 0;
    for round in users.chunks(USERS_PER_ROUND) {
        // Codes are fixed before the burst so the replays after the restart use the same.
        let attempts: Vec<(String, String)> = round
            .iter()
            .map(|(login, secret)| (login.clone(), format!("pw{}", oathtool(secret, None))))
            .collect();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = attempts
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (login, pw))| {
                let accepted = accepted.clone();
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let c = Client::new(server, RADIUS_SECRET);
                    let req = otpd_testkit::radius::Request::access(
                        i as u8,
                        &login,
                        &pw,
                        RADIUS_SECRET.as_bytes(),
                    );
                    c.send_raw(&req.encode(
                        otpd_testkit::radius::ACCESS_REQUEST,
                        RADIUS_SECRET.as_bytes(),
                        otpd_testkit::radius::Ma::Good,
                    ));
                    if let Some(raw) = c.recv_raw(Duration::from_secs(3)) {
                        let r = otpd_testkit::radius::verify_reply(
                            &raw,
                            &req,
                            RADIUS_SECRET.as_bytes(),
                        );
                        if r.code == ACCESS_ACCEPT {
                            accepted.lock().expect("lock").push((login, pw));
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Kill once about half the burst has been answered: the rest is in flight.
        wait_until("half the burst answered", Duration::from_secs(20), || {
            (answered.load(Ordering::SeqCst) >= USERS_PER_ROUND / 2).then_some(())
        });
        d.kill();
        for h in handles {
            h.join().expect("client thread");
        }
        d.restart();
        let accepted = accepted.lock().expect("lock").clone();
        assert!(
            !accepted.is_empty(),
            "some logins were accepted before the kill"
        );
        total_accepted += accepted.len();
        let c = Client::new(server, RADIUS_SECRET);
        for (i, (login, pw)) in accepted.iter().enumerate() {
            let r = c.login(i as u8, login, pw);
            assert_eq!(
                r.code, ACCESS_REJECT,
                "{login}: an OTP answered Accept before the crash was accepted again"
            );
        }
    }
    // Every user and token is intact.
    let list = d.ctl_ok(&["--json", "user", "list"], "");
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), ROUNDS * USERS_PER_ROUND);
    assert!(list.iter().all(|u| u["state"] == "active"), "{list:?}");
    eprintln!("{ROUNDS} kill -9 rounds, {total_accepted} accepted OTPs, none accepted again");
    assert!(d.stderr().contains("reason=otp_replayed"));
}

/// An ext4 file system on a loop device over an image file, mounted for the test. Its
/// journal commits only when a file is synced (`commit=600`), so a copy of the image taken
/// at any moment is what the disk would hold had the power gone then: what a program wrote
/// without `fsync`/`fdatasync` (the new size of a file, the blocks it was given) is not in it.
struct LoopDisk {
    image: PathBuf,
    mount: PathBuf,
}

impl LoopDisk {
    /// `Err`: this machine cannot mount a loop device (not root, no loop or ext4 support).
    fn mount(image: &Path, mount: &Path) -> Result<LoopDisk, String> {
        std::fs::create_dir_all(mount).map_err(|e| e.to_string())?;
        let f = std::fs::File::create(image).map_err(|e| e.to_string())?;
        f.set_len(64 << 20).map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-F"], image)?;
        let disk = LoopDisk {
            image: image.to_path_buf(),
            mount: mount.to_path_buf(),
        };
        disk.attach(image)?;
        // otpd refuses a data_dir others may enter.
        otpd_testkit::daemon::chmod(mount, 0o700);
        Ok(disk)
    }

    fn attach(&self, image: &Path) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", "loop,commit=600"])
            .arg(image)
            .arg(&self.mount)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(())
    }

    /// The power goes now: the disk keeps what its device was sent, and is mounted again
    /// from that (ext4 replays its journal, as at a boot after a power loss).
    fn lose_power(&mut self) {
        let survived = self.image.with_extension("after-power-loss");
        std::fs::copy(&self.image, &survived).expect("copy the image");
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        self.attach(&survived).expect("mount what survived");
        self.image = survived;
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn run(tool: &str, args: &[&str], path: &Path) -> Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[test]
fn a_power_loss_right_after_an_accept_loses_no_spent_step() {
    let _heavy = otpd_testkit::serial::heavy();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut disk = match LoopDisk::mount(&tmp.path().join("disk.img"), &data) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("SKIPPED: cannot mount an ext4 loop device here ({e}); this test needs root");
            return;
        }
    };
    let mut d = Otpd::start(&format!(
        "data_dir = \"{}\"\n[radius]\nreject_delay_ms = 0\n",
        data.display()
    ));
    let secret = activate(&d, "taro", "pw");
    // Whatever otpd does, the user and its token are on the disk now.
    run("sync", &["-f"], &data).expect("sync");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let pw = format!("pw{}", oathtool(&secret, None));
    assert_eq!(c.login(1, "taro", &pw).code, ACCESS_ACCEPT);
    // The power goes the moment the Accept has left.
    d.kill();
    disk.lose_power();
    d.launch();
    assert_eq!(d.show("taro")["state"], "active", "{}", d.stderr());
    let r = c.login(2, "taro", &pw);
    assert_eq!(
        r.code, ACCESS_REJECT,
        "the code answered Accept before the power loss was accepted again"
    );
    assert!(
        d.stderr()
            .lines()
            .any(|l| l.contains("user=\"taro\"") && l.contains("reason=otp_replayed")),
        "{}",
        d.stderr()
    );
}
