//! A private PostgreSQL cluster for a test: `initdb` into a temp folder, `pg_ctl start` on
//! a free loopback port, a role `otpd` with a password (SCRAM over TCP, as a bank's would
//! be) owning a database `otpd`; `pg_ctl stop -m fast` when dropped. PostgreSQL refuses
//! to run as root, so under root (CI) the cluster runs as `nobody` and its folder is theirs.
//! The server comes with the test dependencies (Debian `postgresql`,
//! `scripts/install-test-deps`); its binaries are found in `/usr/lib/postgresql/<version>/bin`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::distributions::{Alphanumeric, DistString};

use crate::daemon::Builder;
use crate::paths::{free_tcp_port, tool};
use crate::wait::try_wait_until;

/// Who runs the cluster when the tests run as root.
const RUN_AS: &str = "nobody";

/// One running cluster, stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    password: String,
    /// The server's `-o` options, kept so [`Postgres::start_again`] starts it as it was.
    options: String,
    running: bool,
    /// The processes [`Postgres::freeze`] stopped, continued by [`Postgres::thaw`].
    frozen: Vec<i32>,
}

impl Postgres {
    /// A new cluster with role and database `otpd`; returns once it accepts connections.
    pub fn start() -> Postgres {
        Postgres::launch(None, false)
    }

    /// As [`Postgres::start`], on the server's durable defaults (`fsync`,
    /// `full_page_writes` on) instead of the tests' fast settings: every commit is on disk
    /// before it is acknowledged, for a measurement that compares with a store that syncs.
    pub fn start_durable() -> Postgres {
        Postgres::launch(None, true)
    }

    /// As [`Postgres::start`], also offering TLS with this certificate (PEM, chain first)
    /// and key; clients choose whether to use it.
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        Postgres::launch(Some((cert, key)), false)
    }

    fn launch(tls: Option<(&Path, &Path)>, durable: bool) -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("otpd-pg-")
            .tempdir()
            .expect("tempdir");
        let run_as = running_as_root().then_some(RUN_AS);
        if run_as.is_some() {
            let status = Command::new(tool("chown"))
                .arg(RUN_AS)
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown {RUN_AS} {}", dir.path().display());
        }
        // Others may cross into the folder (the tests' own user may not be RUN_AS), not list it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod temp folder");
        let mut pg = Postgres {
            dir,
            bin,
            port: free_tcp_port(),
            run_as,
            password: Alphanumeric.sample_string(&mut rand::thread_rng(), 24),
            options: String::new(),
            running: false,
            frozen: Vec::new(),
        };
        let data = pg.data_dir();
        pg.run(
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
                "--no-sync",
                "--no-instructions",
            ],
        );
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            pg.port,
            pg.dir.path().display()
        );
        if !durable {
            // fsync off: a test's cluster lives for seconds and never survives a power cut.
            options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        if let Some((cert, key)) = tls {
            // The server reads them as its own user and refuses a key others may read.
            for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
                let to = pg.dir.path().join(name);
                std::fs::copy(from, &to).expect("copy the TLS files");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .expect("chmod TLS file");
                if pg.run_as.is_some() {
                    let status = Command::new(tool("chown"))
                        .arg(RUN_AS)
                        .arg(&to)
                        .status()
                        .expect("chown");
                    assert!(status.success(), "chown {}", to.display());
                }
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                pg.dir.path().display()
            ));
        }
        pg.options = options;
        pg.start_server();
        pg.psql(
            "postgres",
            &format!("CREATE ROLE otpd LOGIN PASSWORD '{}'", pg.password),
        );
        pg.create_database("otpd");
        pg
    }

    /// `pg_ctl start` on the cluster's data, port and options; returns once it accepts
    /// connections (panics with the server's log if it does not).
    fn start_server(&mut self) {
        let data = self.data_dir();
        let log = self.log_path();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &self.options,
                "-W",
                "start",
            ],
        );
        self.running = true;
        let ready = try_wait_until(
            "PostgreSQL to accept connections",
            crate::wait::DEADLINE,
            || {
                let out = self.command("pg_isready").args(self.socket_args()).output();
                Ok::<_, String>(out.ok().filter(|o| o.status.success()).map(|_| ()))
            },
        );
        if let Err(e) = ready {
            panic!("{e}; its log:\n{}", self.log());
        }
    }

    /// Starts the cluster again after [`Postgres::stop`]: the same data, port, role and
    /// password, as a database server coming back after a restart. Returns once it accepts
    /// connections; does nothing while it runs.
    pub fn start_again(&mut self) {
        if !self.running {
            self.start_server();
        }
    }

    /// Whether the server runs (started and not stopped since).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of role `otpd`.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgresql://otpd@127.0.0.1:PORT/otpd`: no password in it (give [`Self::password`]).
    pub fn url(&self) -> String {
        self.url_for("otpd")
    }

    /// The URL of database `db` as role `otpd`.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgresql://otpd@127.0.0.1:{}/{db}", self.port)
    }

    /// A further empty database owned by `otpd` (one per store under test); its URL.
    pub fn create_database(&self, db: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\" OWNER otpd"));
        self.url_for(db)
    }

    /// Runs `sql` as the superuser in database `db`; its rows, one a line, columns split
    /// by `|`. Panics with the server's message when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(self.socket_args())
            .args(["-U", "postgres", "-d", db, "-X", "-q", "-A", "-t"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The `[store]` section for an otpd on database `db`, its password file, and a new
    /// key file of its own (otpd never makes one for a shared store: a second node of the
    /// same database is given the first one's, see `tests/it/postgres.rs`).
    pub fn configure(&self, builder: Builder, db: &str) -> Builder {
        let mut key = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
            &mut key,
        )
        .expect("random key");
        let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
        builder
            .file("master.key", &format!("{key}\n"), 0o600)
            .file("postgres.password", &format!("{}\n", self.password), 0o600)
            .config(&format!(
                "[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"{}\"\npassword_file = \"postgres.password\"\nsslmode = \"disable\"\n",
                self.url_for(db)
            ))
    }

    /// The postmaster's process id (the first line of `postmaster.pid`), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        std::fs::read_to_string(pid_file)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The server's version, as `SHOW server_version` says it.
    pub fn version(&self) -> String {
        self.psql("postgres", "SHOW server_version")
    }

    /// Freezes the server as a hung machine would be: SIGSTOP to the postmaster (read from
    /// `postmaster.pid`) and to every process of the server, its children. Its kernel still
    /// accepts connections and acknowledges what is sent; nothing is ever answered.
    pub fn freeze(&mut self) {
        assert!(self.frozen.is_empty(), "the server is frozen already");
        let postmaster = self.postmaster_pid().expect("the postmaster's pid") as i32;
        // The postmaster first, so that it starts no process once its children are listed.
        signal(postmaster, libc::SIGSTOP);
        self.frozen.push(postmaster);
        for child in children_of(postmaster) {
            signal(child, libc::SIGSTOP);
            self.frozen.push(child);
        }
    }

    /// Continues every process [`Postgres::freeze`] stopped; does nothing when none was.
    pub fn thaw(&mut self) {
        for pid in std::mem::take(&mut self.frozen).into_iter().rev() {
            signal(pid, libc::SIGCONT);
        }
    }

    /// Stops the server (fast: open sessions are ended); later calls do nothing.
    pub fn stop(&mut self) {
        self.thaw();
        if !std::mem::take(&mut self.running) {
            return;
        }
        let data = self.data_dir();
        let out = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "fast", "-w", "stop"])
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("pg_ctl stop: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn socket_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.dir.path().display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// One of the cluster's programs, as the cluster's user, from inside its folder.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new(runuser());
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the name may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of the test's own server and a plain signal number.
    let rc = unsafe { libc::kill(pid, sig) };
    assert!(
        rc == 0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/lib/postgresql/<version>/bin` of the newest installed server.
fn pg_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under {}: run scripts/install-test-deps (Debian package postgresql)",
            root.display()
        ),
    }
}

/// util-linux's `runuser`, in the system folders root's commands live in.
fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("runuser (util-linux) to run PostgreSQL as an unprivileged user")
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
