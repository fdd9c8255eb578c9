//! A private PostgreSQL cluster for the bench's cluster phase: `initdb` into a folder of the
//! run, `pg_ctl start` on a free loopback port, a role `otpd` with a password (SCRAM over
//! TCP) owning a database `otpd`, and the CPU time of every server process.
//!
//! It follows the test kit's cluster (`otpd_testkit::postgres`: same layout, same
//! unprivileged user under root) with one difference that matters to a measurement: the
//! kit turns `fsync` off, because a test's cluster lives for seconds; here the server runs
//! on its defaults (`fsync`, `synchronous_commit` and `full_page_writes` on), so every
//! commit is on disk before otpd answers, as sled's group commit is.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};

use crate::harness::{self, free_tcp_port, wait_until};

/// Who runs the cluster when the bench runs as root (PostgreSQL refuses root).
const RUN_AS: &str = "nobody";

/// One running cluster, stopped (`pg_ctl stop -m fast`) when dropped.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    run_as: Option<&'static str>,
    password: String,
    running: bool,
}

impl Cluster {
    /// A new cluster in `dir` (created, must not exist) with role and database `otpd`;
    /// returns once it accepts connections.
    pub fn start(dir: &Path) -> anyhow::Result<Cluster> {
        let bin = pg_bin()?;
        std::fs::create_dir_all(dir)?;
        let run_as = running_as_root().then_some(RUN_AS);
        if run_as.is_some() {
            let status = Command::new("chown").arg(RUN_AS).arg(dir).status()?;
            anyhow::ensure!(status.success(), "chown {RUN_AS} {}", dir.display());
            // The cluster's user must be able to reach its folder.
            let mut up = dir.parent();
            while let Some(p) = up {
                let mode = std::fs::metadata(p)?.permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o711))?;
                }
                up = p.parent();
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            bin,
            port: free_tcp_port(),
            run_as,
            password: Alphanumeric.sample_string(&mut rand::thread_rng(), 24),
            running: false,
        };
        let data = c.data_dir();
        c.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-instructions",
            ],
        )?;
        // The server's defaults but the address and the socket folder: durable commits.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            c.port,
            c.dir.display()
        );
        let log = c.dir.join("postgres.log");
        c.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-W",
                "start",
            ],
        )?;
        c.running = true;
        wait_until(
            "PostgreSQL to accept connections",
            Duration::from_secs(60),
            || {
                let out = c.command("pg_isready").args(c.socket_args()).output()?;
                Ok(out.status.success().then_some(()))
            },
        )
        .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        c.psql(&format!("CREATE ROLE otpd LOGIN PASSWORD '{}'", c.password))?;
        c.psql("CREATE DATABASE otpd OWNER otpd")?;
        Ok(c)
    }

    /// `postgresql://otpd@127.0.0.1:PORT/otpd` (the password goes in a password file).
    pub fn url(&self) -> String {
        format!("postgresql://otpd@127.0.0.1:{}/otpd", self.port)
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's version, as `SHOW server_version` says it.
    pub fn version(&self) -> String {
        self.psql("SHOW server_version")
            .unwrap_or_else(|_| "?".into())
    }

    /// The postmaster's process id (the first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// CPU seconds (user + system) of the whole server so far: the postmaster, every
    /// process it runs now (backends, WAL writer, checkpointer ...) and the children it has
    /// already reaped (their times are in its `cutime`/`cstime`).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pm = self.postmaster_pid()?;
        let mut total = harness::cpu_seconds(pm)? + harness::reaped_children_cpu_seconds(pm)?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if harness::parent_pid(pid) == Some(pm) {
                total += harness::cpu_seconds(pid).unwrap_or(0.0);
            }
        }
        Some(total)
    }

    /// Runs `sql` as the superuser in database `otpd`... or `postgres` before it exists.
    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let out = self
            .command("psql")
            .args(self.socket_args())
            .args(["-U", "postgres", "-d", "postgres", "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server (fast: open sessions are ended); later calls do nothing.
    pub fn stop(&mut self) {
        if !std::mem::take(&mut self.running) {
            return;
        }
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "fast", "-w", "stop"])
            .output();
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn socket_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.dir.display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// One of the server's programs, as the cluster's user, from inside its folder.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("run {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/lib/postgresql/<version>/bin` of the newest installed server.
fn pg_bin() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
        .with_context(|| {
            format!(
                "no PostgreSQL server under {} (Debian package postgresql; or --skip-cluster)",
                root.display()
            )
        })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
