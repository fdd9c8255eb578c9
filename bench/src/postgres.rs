//! The bench's cluster phase runs a private PostgreSQL cluster: the test kit's
//! (`otpd_testkit::postgres`: `initdb` into a temp folder, `pg_ctl start` on a free loopback
//! port, a role `otpd` with a password owning a database `otpd`, an unprivileged user under
//! root), started on the server's durable defaults (`fsync`, `synchronous_commit` and
//! `full_page_writes` on), so every commit is on disk before otpd answers, as sled's group
//! commit is. Here: the CPU time of every server process.

use otpd_testkit::postgres::Postgres;

use crate::harness;

/// One running cluster, stopped when dropped.
pub struct Cluster {
    pg: Postgres,
    pub port: u16,
}

impl Cluster {
    /// A new durable cluster with role and database `otpd`; returns once it accepts
    /// connections. A missing server is an error (Debian package postgresql; or
    /// `--skip-cluster`).
    pub fn start() -> anyhow::Result<Cluster> {
        let pg = std::panic::catch_unwind(Postgres::start_durable).map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            anyhow::anyhow!("cannot start PostgreSQL ({why}); or run with --skip-cluster")
        })?;
        let port = pg.port();
        Ok(Cluster { pg, port })
    }

    /// `postgresql://otpd@127.0.0.1:PORT/otpd` (the password goes in a password file).
    pub fn url(&self) -> String {
        self.pg.url()
    }

    pub fn password(&self) -> &str {
        self.pg.password()
    }

    /// The server's version and how it makes commits durable, as it says them:
    /// `15.18 (...), fsync on, synchronous_commit on`.
    pub fn version(&self) -> String {
        let show = |name: &str| self.pg.psql("postgres", &format!("SHOW {name}"));
        format!(
            "{}, fsync {}, synchronous_commit {}",
            self.pg.version(),
            show("fsync"),
            show("synchronous_commit")
        )
    }

    /// CPU seconds (user + system) of the whole server so far: the postmaster, every
    /// process it runs now (backends, WAL writer, checkpointer ...) and the children it has
    /// already reaped (their times are in its `cutime`/`cstime`).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pm = self.pg.postmaster_pid()?;
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

    pub fn stop(&mut self) {
        self.pg.stop();
    }
}
