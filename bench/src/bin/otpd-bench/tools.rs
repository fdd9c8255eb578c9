//! The programs a run starts (otpd, the load generator, the seeder), how one load is
//! shaped and measured, and the report's small pieces.

use super::*;
use std::process::Stdio;

pub(super) struct Tools {
    pub(super) otpd: PathBuf,
    pub(super) loadgen: PathBuf,
    pub(super) seed: PathBuf,
}

impl Tools {
    pub(super) fn find(dir: Option<&Path>) -> anyhow::Result<Tools> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()?
                .parent()
                .map(Path::to_path_buf)
                .context("no folder for this program")?,
        };
        let t = Tools {
            otpd: dir.join("otpd"),
            loadgen: dir.join("otpd-loadgen"),
            seed: dir.join("otpd-bench-seed"),
        };
        for p in [&t.otpd, &t.loadgen, &t.seed] {
            if !p.exists() {
                bail!(
                    "{} is missing: build with `cargo build --release -p otpd -p otpd-bench`",
                    p.display()
                );
            }
        }
        Ok(t)
    }
}

/// How one load-generator run is shaped.
#[derive(Clone)]
pub(super) struct Load {
    pub(super) port: u16,
    pub(super) first_user: u64,
    pub(super) users: u64,
    pub(super) concurrency: usize,
    pub(super) duration: Option<f64>,
    pub(super) requests: Option<u64>,
    pub(super) period: u64,
    pub(super) window: u64,
    pub(super) replay_ok: bool,
    /// At most this many requests started a second (none: closed loop).
    pub(super) rate: Option<f64>,
    /// Milliseconds before a retransmission (none: the load generator's 1 s).
    pub(super) timeout_ms: Option<u64>,
    /// Retransmissions before a request counts as lost (none: the load generator's 2).
    pub(super) retries: Option<u32>,
}

/// Runs the load generator against the server `pid` and measures the server's CPU time.
pub(super) fn measure(
    tools: &Tools,
    server: &str,
    pid: Option<u32>,
    l: &Load,
) -> anyhow::Result<Run> {
    let before = pid.and_then(harness::cpu_seconds);
    let report = loadgen(tools, l)?;
    let after = pid.and_then(harness::cpu_seconds);
    let answered = report.accepts + report.rejects + report.challenges;
    let cpu_us_per_request = match (before, after) {
        (Some(b), Some(a)) if answered > 0 => Some((a - b) * 1e6 / answered as f64),
        _ => None,
    };
    Ok(Run {
        server: server.into(),
        load_average: harness::load_average(),
        cpu_us_per_request,
        report,
    })
}

pub(super) fn loadgen(tools: &Tools, l: &Load) -> anyhow::Result<Report> {
    let out = stdout_of(&mut loadgen_command(tools, l, &[], false), "otpd-loadgen")?;
    serde_json::from_slice(&out).context("otpd-loadgen's report")
}

/// The load generator's command for `l`, on `l.port` and the `more` ports (fail-over), with
/// every request's timing in its report when `samples`.
pub(super) fn loadgen_command(tools: &Tools, l: &Load, more: &[u16], samples: bool) -> Command {
    let mut cmd = Command::new(&tools.loadgen);
    for port in std::iter::once(l.port).chain(more.iter().copied()) {
        cmd.arg("--target").arg(format!("127.0.0.1:{port}"));
    }
    if samples {
        cmd.arg("--samples");
    }
    cmd.args(["--secret", SECRET, "--json"])
        .arg("--first-user")
        .arg(l.first_user.to_string())
        .arg("--users")
        .arg(l.users.to_string())
        .arg("--concurrency")
        .arg(l.concurrency.to_string())
        .arg("--period")
        .arg(l.period.to_string())
        .arg("--window")
        .arg(l.window.to_string());
    if let Some(d) = l.duration {
        cmd.arg("--duration").arg(d.to_string());
    }
    if let Some(n) = l.requests {
        cmd.arg("--requests").arg(n.to_string());
    }
    if l.replay_ok {
        cmd.arg("--replay-ok");
    }
    if let Some(r) = l.rate {
        cmd.arg("--rate").arg(r.to_string());
    }
    if let Some(t) = l.timeout_ms {
        cmd.arg("--timeout-ms").arg(t.to_string());
    }
    if let Some(r) = l.retries {
        cmd.arg("--retries").arg(r.to_string());
    }
    cmd
}

/// Runs `cmd` to its end; its stdout, or an error with its stderr when it fails.
pub(super) fn stdout_of(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd.output().context(what.to_string())?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

impl Load {
    /// otpd: 60-second steps, `window` steps either side, a step is refused twice; one
    /// pass over `users` from the first until `duration` or `requests` (set by the caller).
    pub(super) fn otpd(port: u16, users: u64, concurrency: usize, window: u64) -> Load {
        Load {
            port,
            first_user: 0,
            users,
            concurrency,
            duration: None,
            requests: None,
            period: 60,
            window,
            replay_ok: false,
            rate: None,
            timeout_ms: None,
            retries: None,
        }
    }

    /// FreeRADIUS: 30-second steps, only the current one, no replay refusal.
    pub(super) fn freeradius(port: u16, users: u64, concurrency: usize, duration: f64) -> Load {
        Load {
            port,
            first_user: 0,
            users,
            concurrency,
            duration: Some(duration),
            requests: None,
            period: 30,
            window: 0,
            replay_ok: true,
            rate: None,
            timeout_ms: None,
            retries: None,
        }
    }
}

/// The seed program's `--argon2-memory-kib` and `--argon2-iterations`.
pub(super) fn argon2_args(cmd: &mut Command, (m, t): (u32, u32)) -> &mut Command {
    cmd.arg("--argon2-memory-kib")
        .arg(m.to_string())
        .arg("--argon2-iterations")
        .arg(t.to_string())
}

pub(super) fn seed(
    tools: &Tools,
    dir: &Path,
    count: u64,
    argon2: (u32, u32),
) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let mut cmd = Command::new(&tools.seed);
    cmd.arg("seed")
        .arg("--data-dir")
        .arg(Otpd::data_dir(dir))
        .arg("--key-file")
        .arg(Otpd::key_file(dir))
        .arg("--count")
        .arg(count.to_string());
    argon2_args(&mut cmd, argon2);
    stdout_of(&mut cmd, "otpd-bench-seed")?;
    Ok(began.elapsed())
}

/// An otpd in `dir` at `argon2` and `window`, its store seeded with `users` (not started);
/// how long the seeding took.
pub(super) fn seeded_otpd(
    tools: &Tools,
    dir: &Path,
    users: u64,
    argon2: (u32, u32),
    window: u64,
) -> anyhow::Result<(Otpd, Duration)> {
    let o = Otpd::configure(
        &tools.otpd,
        dir,
        SECRET,
        OtpdSettings {
            argon2_memory_kib: argon2.0,
            argon2_iterations: argon2.1,
            window,
        },
    )?;
    let took = seed(tools, dir, users, argon2)?;
    Ok((o, took))
}

pub(super) fn hash_bench(
    tools: &Tools,
    argon2: (u32, u32),
    samples: u32,
) -> anyhow::Result<HashBench> {
    let mut cmd = Command::new(&tools.seed);
    cmd.args(["hash-bench", "--json"]);
    argon2_args(&mut cmd, argon2)
        .arg("--samples")
        .arg(samples.to_string());
    let out = stdout_of(&mut cmd, "otpd-bench-seed hash-bench")?;
    serde_json::from_slice(&out).context("hash-bench's report")
}

/// One hash by the reference C libargon2 (Debian's `argon2` command, package `argon2`) at
/// `argon2` = (m KiB, t), p = 1: the median of `samples` runs of the CPU time it reports, in
/// ms; `None` when the command is not installed.
pub(super) fn reference_hash_ms(argon2: (u32, u32), samples: u32) -> anyhow::Result<Option<f64>> {
    use std::io::Write;
    let mut times = Vec::new();
    for _ in 0..samples {
        let spawned = Command::new("argon2")
            .args(["otpd-bench-salt1", "-id", "-p", "1", "-l", "32"])
            .arg("-t")
            .arg(argon2.1.to_string())
            .arg("-k")
            .arg(argon2.0.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("argon2 (the reference C libargon2's command)"),
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(b"bench-password")?;
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "0.023 seconds": the CPU time of the hash, memory allocation included.
        let seconds = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_suffix(" seconds")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .with_context(|| format!("argon2 printed no time: {text}"))?;
        times.push(seconds * 1000.0);
    }
    Ok((!times.is_empty()).then(|| median(times.into_iter())))
}

/// How long a run waits for otpd's cache warm-up before its load starts.
pub(super) const WARM_LIMIT: Duration = Duration::from_secs(60);

/// "cache warmed N ms after ready", or that it was not.
pub(super) fn warmed(took: Option<Duration>) -> String {
    match took {
        Some(t) => format!("cache warmed {} ms after ready", t.as_millis()),
        None => format!("cache not warmed within {} s", WARM_LIMIT.as_secs()),
    }
}

pub(super) fn note(line: &str) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("otpd-bench: {line}");
}

pub(super) fn freeradius_version() -> String {
    Command::new("freeradius")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("Version"))
                .and_then(|l| l.split("Version ").nth(1))
                .map(|v| v.split(',').next().unwrap_or(v).trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub(super) fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

pub(super) fn row(run: &Run) -> String {
    let r = &run.report;
    format!(
        "{:<11} {:>9.0} {:>11} {:>9} {:>8} {:>5} {:>7} {:>7.2} {:>7.2} {:>8.2} {:>5.2}{}",
        run.server,
        r.throughput_rps,
        run.cpu_us_per_request
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "-".into()),
        r.accepts,
        r.rejects + r.challenges,
        r.lost,
        r.retransmissions,
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.latency.max_ms,
        run.load_average,
        if r.exhausted {
            "  (ran out of fresh user-steps)"
        } else {
            ""
        }
    )
}

pub(super) const HEADER: &str =
    "server      answers/s  CPU us/req  accepted rejected  lost retrans  p50 ms  p99 ms   max ms  load";

/// The median of the finite values (NaN when there are none).
pub(super) fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(super) fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

pub(super) fn check(checks: &mut Vec<(String, bool)>, what: &str, ok: bool) {
    println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    checks.push((what.to_string(), ok));
}

pub(super) fn runs_of<'a>(runs: &'a [Run], server: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter().filter(move |r| r.server == server)
}
