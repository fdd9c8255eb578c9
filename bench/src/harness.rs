//! What the side-by-side bench needs around the servers: the machine's description and
//! load, a server process's peak memory, and the two servers themselves on temp folders
//! ([`FreeRadius`], and [`Otpd`] through the test kit's one `Otpd`). Ports and the wait
//! with a deadline are the kit's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use otpd_testkit::wait::try_wait_until;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::users;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = proc_kib(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            mem_total_mib,
            kernel,
        }
    }
}

/// The 1-minute load average: how busy the machine was with other work too.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// A `Key:   123 kB` line of a /proc file, in KiB.
fn proc_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Peak resident memory of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    proc_kib(&status, "VmHWM:")
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    // utime and stime are fields 14 and 15 of the line.
    Some(ticks_of(&stat_fields(pid)?, 14, 15)? as f64 / clock_ticks() as f64)
}

/// CPU time (user + system) of the children a process has waited for, in seconds.
pub fn reaped_children_cpu_seconds(pid: u32) -> Option<f64> {
    // cutime and cstime are fields 16 and 17 of the line.
    Some(ticks_of(&stat_fields(pid)?, 16, 17)? as f64 / clock_ticks() as f64)
}

/// A process's parent (field 4 of its stat line).
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and may
/// contain spaces): field n of the line is at index n - 3.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn ticks_of(fields: &[String], a: usize, b: usize) -> Option<u64> {
    Some(fields.get(a - 3)?.parse::<u64>().ok()? + fields.get(b - 3)?.parse::<u64>().ok()?)
}

/// Clock ticks per second of /proc times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Bytes under `dir` as `du` counts them (allocated blocks).
pub fn disk_usage(dir: &Path) -> u64 {
    Command::new("du")
        .args(["-sk"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|k| k * 1024)
        .unwrap_or(0)
}

pub use otpd_testkit::paths::{free_tcp_port, free_udp_port};

/// Polls `f` until it returns Some, or fails after `limit` (the kit's one wait).
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    try_wait_until(what, limit, f).map_err(anyhow::Error::msg)
}

/// SIGTERM, then wait (SIGKILL after 20 s).
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let stopped = wait_until("the server to stop", Duration::from_secs(20), || {
        Ok(child.try_wait()?)
    });
    if stopped.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How FreeRADIUS's users file holds the bench password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrPassword {
    /// `Cleartext-Password`: pap compares bytes, no hashing at all.
    Cleartext,
    /// `Crypt-Password` with this SHA-512 crypt (`$6$`) string, shared by every user:
    /// pap runs crypt(3) per request, a hash as otpd runs argon2id.
    Crypt(String),
    /// `SSHA2-512-Password`: base64 of SHA-512(password ‖ salt) ‖ salt, one SHA-512 per
    /// request (OpenSSL's, thread-safe).
    Ssha512(String),
}

impl FrPassword {
    /// A `$6$` hash of the bench password at `rounds` (5000 is crypt's default).
    pub fn sha512_crypt(rounds: u32) -> anyhow::Result<FrPassword> {
        let params = sha_crypt::Sha512Params::new(usize::try_from(rounds)?)
            .map_err(|e| anyhow::anyhow!("SHA-512 crypt rounds {rounds}: {e:?}"))?;
        let hash = sha_crypt::sha512_simple(users::PASSWORD, &params)
            .map_err(|e| anyhow::anyhow!("SHA-512 crypt: {e:?}"))?;
        Ok(FrPassword::Crypt(hash))
    }

    /// An `SSHA2-512-Password` value of the bench password with a fixed 16-byte salt.
    pub fn ssha2_512() -> FrPassword {
        use base64::Engine;
        use sha2::{Digest, Sha512};
        let salt = *b"otpd-bench-salt!";
        let mut h = Sha512::new();
        h.update(users::PASSWORD.as_bytes());
        h.update(salt);
        let mut value = h.finalize().to_vec();
        value.extend_from_slice(&salt);
        FrPassword::Ssha512(base64::engine::general_purpose::STANDARD.encode(value))
    }

    /// The attribute's name, for the report.
    pub fn attribute(&self) -> &'static str {
        match self {
            FrPassword::Cleartext => "Cleartext-Password",
            FrPassword::Crypt(_) => "Crypt-Password",
            FrPassword::Ssha512(_) => "SSHA2-512-Password",
        }
    }

    /// The check item of one users-file line.
    pub fn check_item(&self) -> String {
        match self {
            FrPassword::Cleartext => format!("Cleartext-Password := \"{}\"", users::PASSWORD),
            // Single quotes: the value is taken as it is, `$` and all.
            FrPassword::Crypt(hash) => format!("Crypt-Password := '{hash}'"),
            FrPassword::Ssha512(value) => format!("SSHA2-512-Password := \"{value}\""),
        }
    }
}

/// FreeRADIUS on a copy of the system's raddb: only `files`, `pap`, `totp` and what unlang
/// needs are enabled, one virtual server on a loopback port, the bench users in a users
/// file with their password ([`FrPassword`]) and base32 `TOTP-Secret`.
pub struct FreeRadius {
    pub raddb: PathBuf,
    pub port: u16,
    pub startup: Duration,
    child: Option<Child>,
}

impl FreeRadius {
    /// Writes the raddb for users `0..count`.
    pub fn configure(
        dir: &Path,
        system_raddb: &Path,
        count: u64,
        port: u16,
        secret: &str,
        password: &FrPassword,
    ) -> anyhow::Result<PathBuf> {
        let raddb = otpd_testkit::raddb::copy_raddb(system_raddb, dir, |line| {
            // Finished requests stay tracked for cleanup_delay (5 s) to catch duplicates;
            // the default 16384 drops requests above ~3k/s, 262144 holds 50k/s.
            line.trim_start()
                .starts_with("max_requests =")
                .then(|| "max_requests = 262144".into())
        })?;
        for sub in ["mods-enabled", "sites-enabled"] {
            for entry in std::fs::read_dir(raddb.join(sub))? {
                std::fs::remove_file(entry?.path())?;
            }
        }
        for m in ["always", "expr", "pap", "totp"] {
            std::os::unix::fs::symlink(
                format!("../mods-available/{m}"),
                raddb.join("mods-enabled").join(m),
            )?;
        }
        std::fs::write(
            raddb.join("mods-enabled/files"),
            "files {\n\tfilename = ${raddbdir}/bench-users\n}\n",
        )?;
        std::fs::write(
            raddb.join("clients.conf"),
            format!(
                "client loadgen {{\n\tipaddr = 127.0.0.1\n\tsecret = {secret}\n\trequire_message_authenticator = yes\n}}\n"
            ),
        )?;
        std::fs::write(
            raddb.join("sites-enabled/bench"),
            SITE.replace("@PORT@", &port.to_string()),
        )?;
        let check = password.check_item();
        let mut users_file =
            String::with_capacity(usize::try_from(count).unwrap_or(0) * (check.len() + 70));
        for i in 0..count {
            users_file.push_str(&format!(
                "{} {check}, TOTP-Secret := \"{}\"\n",
                users::login_id(i),
                users::secret_base32(i)
            ));
        }
        std::fs::write(raddb.join("bench-users"), users_file)?;
        Ok(raddb)
    }

    /// Starts `freeradius -f -l stdout -d RADDB` and waits for "Ready to process requests".
    pub fn start(raddb: &Path, port: u16) -> anyhow::Result<FreeRadius> {
        let began = Instant::now();
        let mut child = Command::new("freeradius")
            .args(["-f", "-l", "stdout", "-d"])
            .arg(raddb)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start freeradius (Debian package freeradius)")?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let log = raddb.join("log/stdout.log");
            std::thread::spawn(move || {
                let mut file = std::fs::File::create(log).ok();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.contains("Ready to process requests") {
                        let _ = tx.send(());
                    }
                    if let Some(f) = file.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(f, "{line}");
                    }
                }
            });
        }
        let ready = wait_until("FreeRADIUS to start", Duration::from_secs(120), || {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(raddb.join("log/stdout.log")).unwrap_or_default();
                bail!("freeradius exited ({status}): {err}{log}");
            }
            Ok(rx.try_recv().ok())
        });
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(FreeRadius {
            raddb: raddb.to_path_buf(),
            port,
            startup: began.elapsed(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bench's virtual server: split the trailing six digits off User-Password into
/// TOTP-Password, check the rest with `pap`, then the code with `totp`.
const SITE: &str = r#"server bench {
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = @PORT@
}
authorize {
	if (&User-Password =~ /^(.+)([0-9]{6})$/) {
		update request {
			&TOTP-Password := "%{2}"
			&User-Password := "%{1}"
		}
	}
	else {
		reject
	}
	files
	pap
}
authenticate {
	Auth-Type PAP {
		pap {
			ok = 1
		}
		totp {
			fail = reject
			noop = reject
		}
	}
}
}
"#;

/// otpd's side: the settings a bench run varies.
#[derive(Debug, Clone, Copy)]
pub struct OtpdSettings {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub window: u64,
}

/// A real otpd on a bench folder (config, data_dir and key_file under `dir`), started
/// through the test kit's one `Otpd`: the kit's template, with the bench's knobs merged
/// over it.
pub struct Otpd {
    pub dir: PathBuf,
    pub radius_port: u16,
    /// From spawn until ready (the admin socket accepts), once started.
    pub startup: Duration,
    otpd: otpd_testkit::daemon::Otpd,
}

impl Otpd {
    pub fn data_dir(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    pub fn key_file(dir: &Path) -> PathBuf {
        dir.join("master.key")
    }

    /// Writes `dir/otpd.toml` for free loopback ports and the `otpd` binary `bin`; not
    /// started yet, so its store can be seeded first.
    pub fn configure(
        bin: &Path,
        dir: &Path,
        secret: &str,
        s: OtpdSettings,
    ) -> anyhow::Result<Otpd> {
        Otpd::configure_with(bin, dir, secret, s, "", &[])
    }

    /// As [`Otpd::configure`], with `extra` merged over the bench's config and `files`
    /// (name in `dir`, content, mode) written next to it, e.g. a `[store]` section and its
    /// password file, or the key file nodes of one database share.
    pub fn configure_with(
        bin: &Path,
        dir: &Path,
        secret: &str,
        s: OtpdSettings,
        extra: &str,
        files: &[(&str, String, u32)],
    ) -> anyhow::Result<Otpd> {
        let bin_dir = bin.parent().context("the otpd binary's folder")?;
        let overrides = format!(
            r#"service_id = "BENCH-BANK"

[radius]
# The daemon's default, not the tests' shorter delay: refusals cost what they cost.
reject_delay_ms = 1000

[otp]
window = {window}

[password]
argon2_memory_kib = {m}
argon2_iterations = {t}
"#,
            window = s.window,
            m = s.argon2_memory_kib,
            t = s.argon2_iterations,
        );
        let mut builder = otpd_testkit::daemon::Otpd::builder()
            .in_dir(dir)
            .bin_dir(bin_dir)
            .radius_client("loadgen", secret)
            .config(&overrides);
        if !extra.is_empty() {
            builder = builder.config(extra);
        }
        for (name, content, mode) in files {
            builder = builder.file(name, content, *mode);
        }
        let otpd = builder
            // A large store takes a while to open.
            .ready_within(Duration::from_secs(120))
            .try_unstarted()
            .map_err(anyhow::Error::msg)?;
        Ok(Otpd {
            dir: dir.to_path_buf(),
            radius_port: otpd.radius_port,
            startup: Duration::ZERO,
            otpd,
        })
    }

    /// Starts otpd; returns once it is ready.
    pub fn start(&mut self) -> anyhow::Result<()> {
        self.otpd.try_launch().map_err(anyhow::Error::msg)?;
        self.startup = self.otpd.startup.unwrap_or_default();
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.otpd.pid()
    }

    /// Waits, at most `limit`, for otpd's line that its store's cache is warmed (what a
    /// server restarted before the morning's first logins has, and the steady state of a
    /// store whose users fit its cache: FreeRADIUS reads its users into memory before it
    /// is ready). How long it took after ready; `None` when no such line came.
    pub fn wait_warm(&self, limit: Duration) -> Option<Duration> {
        let began = Instant::now();
        wait_until("otpd's cache warm-up", limit, || {
            let log = self.otpd.stderr();
            Ok(log.contains("store: cache warmed").then(|| began.elapsed()))
        })
        .ok()
    }

    /// SIGTERM, then wait (SIGKILL if it does not stop in time).
    pub fn stop(&mut self) {
        if self.otpd.pid().is_some() {
            let _ = self.otpd.try_stop();
        }
    }

    /// SIGKILL: a crash (and the process reaped).
    pub fn kill(&mut self) {
        self.otpd.kill();
    }

    pub fn stderr(&self) -> String {
        self.otpd.stderr()
    }
}
