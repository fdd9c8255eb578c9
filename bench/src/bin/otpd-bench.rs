//! otpd-bench: one run that measures otpd side by side with FreeRADIUS 3.2 + rlm_totp on
//! this machine, with the same load generator: (1) the pipeline at a cheap argon2 setting,
//! (2) production argon2id against the hashing bound, (3) scaling with the store's size.
//! `scripts/bench` builds and runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use otpd_bench::harness::{self, FreeRadius, Machine, Otpd, OtpdSettings};
use otpd_bench::loadgen::Report;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug, Clone)]
#[command(name = "otpd-bench", version, about)]
struct Args {
    /// Short smoke run (small stores, a few seconds per measurement).
    #[arg(long)]
    quick: bool,
    /// Users in the pipeline stores (otpd and FreeRADIUS) [default: 100000; quick 2000].
    #[arg(long)]
    users: Option<u64>,
    /// Seconds per pipeline measurement [default: 10; quick 3].
    #[arg(long)]
    duration: Option<f64>,
    /// Pipeline measurements per server, alternating FreeRADIUS and otpd [default: 2; quick 1].
    #[arg(long)]
    rounds: Option<u32>,
    /// Requests in flight in the pipeline and scaling runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of the production measurement [default: 15; quick 3].
    #[arg(long)]
    production_duration: Option<f64>,
    /// Requests in flight in the production run (a few per core keeps every hasher busy).
    #[arg(long, default_value_t = 8)]
    production_concurrency: usize,
    /// Store sizes of the scaling runs [default: 1000,10000,100000; quick 200,2000].
    #[arg(long, value_delimiter = ',')]
    scaling: Option<Vec<u64>>,
    /// Requests per scaling run [default: 20000; quick 2000].
    #[arg(long)]
    scaling_requests: Option<u64>,
    /// otp.window of the scaling runs: 2w+1 fresh steps per user let 1k users carry them.
    #[arg(long, default_value_t = 10)]
    scaling_window: u64,
    /// Where otpd, otpd-loadgen and otpd-bench-seed are [default: this program's folder].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The FreeRADIUS configuration to copy.
    #[arg(long, default_value = "/etc/freeradius/3.0")]
    system_raddb: PathBuf,
    #[arg(long)]
    skip_freeradius: bool,
    #[arg(long)]
    skip_otpd: bool,
    /// Keep the temp folder (configs, stores, logs) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const SECRET: &str = "bench-shared-secret-0123456789";
const CHEAP: (u32, u32) = (64, 1);
const DEFAULT_ARGON2: (u32, u32) = (19456, 2);

struct Plan {
    users: u64,
    duration: f64,
    rounds: u32,
    production_duration: f64,
    production_users: u64,
    scaling: Vec<u64>,
    scaling_requests: u64,
}

impl Plan {
    fn from(a: &Args) -> Plan {
        let q = a.quick;
        Plan {
            users: a.users.unwrap_or(if q { 2000 } else { 100_000 }),
            duration: a.duration.unwrap_or(if q { 3.0 } else { 10.0 }),
            rounds: a.rounds.unwrap_or(if q { 1 } else { 2 }).max(1),
            production_duration: a.production_duration.unwrap_or(if q { 3.0 } else { 15.0 }),
            production_users: if q { 500 } else { 5000 },
            scaling: a.scaling.clone().unwrap_or_else(|| {
                if q {
                    vec![200, 2000]
                } else {
                    vec![1000, 10_000, 100_000]
                }
            }),
            scaling_requests: a.scaling_requests.unwrap_or(if q { 2000 } else { 20_000 }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HashBench {
    single_ms: f64,
    bound_rps: f64,
    parallel_rps: f64,
    threads: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    server: String,
    load_average: f64,
    /// The server's CPU time (user + system) per answered request.
    cpu_us_per_request: Option<f64>,
    report: Report,
}

#[derive(Debug, Clone, Serialize)]
struct ServerFacts {
    server: String,
    users: u64,
    startup_ms: f64,
    peak_rss_kib: Option<u64>,
    store_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Scaling {
    users: u64,
    run: Run,
    startup_ms: f64,
    peak_rss_kib: Option<u64>,
    store_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: Option<Machine>,
    freeradius_version: String,
    pipeline_hash: Option<HashBench>,
    pipeline: Vec<Run>,
    servers: Vec<ServerFacts>,
    production_hash: Vec<HashBench>,
    production: Option<Run>,
    scaling: Vec<Scaling>,
    checks: Vec<(String, bool)>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(all_met) => {
            if all_met {
                ExitCode::SUCCESS
            } else {
                // Figures were measured; some target was missed (said above).
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("otpd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Tools {
    otpd: PathBuf,
    loadgen: PathBuf,
    seed: PathBuf,
}

impl Tools {
    fn find(dir: Option<&Path>) -> anyhow::Result<Tools> {
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
struct Load {
    port: u16,
    first_user: u64,
    users: u64,
    concurrency: usize,
    duration: Option<f64>,
    requests: Option<u64>,
    period: u64,
    window: u64,
    replay_ok: bool,
}

/// Runs the load generator against the server `pid` and measures the server's CPU time.
fn measure(tools: &Tools, server: &str, pid: Option<u32>, l: &Load) -> anyhow::Result<Run> {
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

fn loadgen(tools: &Tools, l: &Load) -> anyhow::Result<Report> {
    let mut cmd = Command::new(&tools.loadgen);
    cmd.arg("--target")
        .arg(format!("127.0.0.1:{}", l.port))
        .args(["--secret", SECRET, "--json"])
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
    let out = stdout_of(&mut cmd, "otpd-loadgen")?;
    serde_json::from_slice(&out).context("otpd-loadgen's report")
}

/// Runs `cmd` to its end; its stdout, or an error with its stderr when it fails.
fn stdout_of(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd.output().context(what.to_string())?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

impl Load {
    /// otpd: 60-second steps, `window` steps either side, a step is refused twice; one
    /// pass over `users` from the first until `duration` or `requests` (set by the caller).
    fn otpd(port: u16, users: u64, concurrency: usize, window: u64) -> Load {
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
        }
    }

    /// FreeRADIUS: 30-second steps, only the current one, no replay refusal.
    fn freeradius(port: u16, users: u64, concurrency: usize, duration: f64) -> Load {
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
        }
    }
}

/// The seed program's `--argon2-memory-kib` and `--argon2-iterations`.
fn argon2_args(cmd: &mut Command, (m, t): (u32, u32)) -> &mut Command {
    cmd.arg("--argon2-memory-kib")
        .arg(m.to_string())
        .arg("--argon2-iterations")
        .arg(t.to_string())
}

fn seed(tools: &Tools, dir: &Path, count: u64, argon2: (u32, u32)) -> anyhow::Result<Duration> {
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
fn seeded_otpd(
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

fn hash_bench(tools: &Tools, argon2: (u32, u32), samples: u32) -> anyhow::Result<HashBench> {
    let mut cmd = Command::new(&tools.seed);
    cmd.args(["hash-bench", "--json"]);
    argon2_args(&mut cmd, argon2)
        .arg("--samples")
        .arg(samples.to_string());
    let out = stdout_of(&mut cmd, "otpd-bench-seed hash-bench")?;
    serde_json::from_slice(&out).context("hash-bench's report")
}

fn note(line: &str) {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!("otpd-bench: {line}");
}

fn freeradius_version() -> String {
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

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

fn row(run: &Run) -> String {
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

const HEADER: &str =
    "server      answers/s  CPU us/req  accepted rejected  lost retrans  p50 ms  p99 ms   max ms  load";

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn check(checks: &mut Vec<(String, bool)>, what: &str, ok: bool) {
    println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    checks.push((what.to_string(), ok));
}

fn runs_of<'a>(runs: &'a [Run], server: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
    runs.iter().filter(move |r| r.server == server)
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let plan = Plan::from(args);
    let tools = Tools::find(args.bin_dir.as_deref())?;
    let tmp = tempfile::Builder::new().prefix("otpd-bench-").tempdir()?;
    let root = tmp.path().to_path_buf();
    let mut results = Results {
        machine: Some(Machine::describe()),
        freeradius_version: freeradius_version(),
        ..Results::default()
    };
    let machine = Machine::describe();
    let started = Instant::now();
    println!(
        "otpd-bench{}: {} cores ({}), {} MiB RAM, Linux {}; load average {:.2} at start",
        if args.quick { " --quick" } else { "" },
        machine.cores,
        machine.cpu_model,
        machine.mem_total_mib,
        machine.kernel,
        harness::load_average()
    );

    // ---- 1. pipeline -------------------------------------------------------------
    println!();
    println!(
        "== 1. pipeline: otpd (argon2id m={} KiB, t={}) vs FreeRADIUS {} + rlm_totp; {} users each, {} in flight, {} s per run",
        CHEAP.0, CHEAP.1, results.freeradius_version, plan.users, args.concurrency, plan.duration
    );
    let cheap = hash_bench(&tools, CHEAP, if args.quick { 200 } else { 2000 })?;
    println!(
        "argon2id at m={} KiB, t={}: one verification {:.1} us on one thread (otpd does one per login; FreeRADIUS compares cleartext)",
        CHEAP.0,
        CHEAP.1,
        cheap.single_ms * 1000.0
    );
    results.pipeline_hash = Some(cheap);
    let mut fr = None;
    if !args.skip_freeradius {
        let port = harness::free_udp_port();
        note(&format!(
            "writing a FreeRADIUS users file for {} users",
            plan.users
        ));
        let raddb = FreeRadius::configure(
            &root.join("freeradius"),
            &args.system_raddb,
            plan.users,
            port,
            SECRET,
        )?;
        let f = FreeRadius::start(&raddb, port)?;
        note(&format!("FreeRADIUS ready in {} ms", f.startup.as_millis()));
        fr = Some(f);
    }
    let mut od = None;
    if !args.skip_otpd {
        let dir = root.join("otpd-pipeline");
        let (mut o, took) = seeded_otpd(&tools, &dir, plan.users, CHEAP, 1)?;
        note(&format!(
            "seeded {} otpd users in {:.1} s",
            plan.users,
            took.as_secs_f64()
        ));
        o.start()?;
        note(&format!("otpd ready in {} ms", o.startup.as_millis()));
        od = Some(o);
    }
    for round in 0..plan.rounds {
        if let Some(f) = &fr {
            note(&format!("pipeline round {}: FreeRADIUS", round + 1));
            let run = measure(
                &tools,
                "FreeRADIUS",
                f.pid(),
                &Load::freeradius(f.port, plan.users, args.concurrency, plan.duration),
            )?;
            results.pipeline.push(run);
        }
        if let Some(o) = &od {
            note(&format!("pipeline round {}: otpd", round + 1));
            // otpd refuses a step twice: each round drives its own share of the users.
            let share = plan.users / u64::from(plan.rounds);
            let run = measure(
                &tools,
                "otpd",
                o.pid(),
                &Load {
                    first_user: u64::from(round) * share,
                    duration: Some(plan.duration),
                    ..Load::otpd(o.radius_port, share, args.concurrency, 1)
                },
            )?;
            results.pipeline.push(run);
        }
    }
    if let Some(mut f) = fr.take() {
        let rss = f.pid().and_then(harness::peak_rss_kib);
        f.stop();
        results.servers.push(ServerFacts {
            server: "FreeRADIUS".into(),
            users: plan.users,
            startup_ms: f.startup.as_secs_f64() * 1000.0,
            peak_rss_kib: rss,
            store_bytes: None,
        });
    }
    if let Some(mut o) = od.take() {
        let rss = o.pid().and_then(harness::peak_rss_kib);
        o.stop();
        results.servers.push(ServerFacts {
            server: "otpd".into(),
            users: plan.users,
            startup_ms: o.startup.as_secs_f64() * 1000.0,
            peak_rss_kib: rss,
            store_bytes: Some(harness::disk_usage(&Otpd::data_dir(&o.dir))),
        });
    }
    println!("{HEADER}");
    for r in &results.pipeline {
        println!("{}", row(r));
    }
    let mut checks = Vec::new();
    let of = |name: &'static str| runs_of(&results.pipeline, name);
    let fr_rps = mean(of("FreeRADIUS").map(|r| r.report.throughput_rps));
    let od_rps = mean(of("otpd").map(|r| r.report.throughput_rps));
    let fr_p99 = mean(of("FreeRADIUS").map(|r| r.report.latency.p99_ms));
    let od_p99 = mean(of("otpd").map(|r| r.report.latency.p99_ms));
    for r in &results.pipeline {
        let answered = r.report.accepts + r.report.rejects + r.report.challenges;
        if r.report.replies_without_ma > 0 || r.report.replies_ma_not_first > 0 {
            println!(
                "{}: {} of {answered} replies without a Message-Authenticator, {} with it not first",
                r.server, r.report.replies_without_ma, r.report.replies_ma_not_first
            );
        }
    }
    for s in &results.servers {
        println!(
            "{:<11} {} users: started in {:.0} ms, peak RSS {} MiB{}",
            s.server,
            s.users,
            s.startup_ms,
            mib(s.peak_rss_kib),
            s.store_bytes
                .map(|b| format!(", store {:.1} MiB", b as f64 / 1048576.0))
                .unwrap_or_default()
        );
    }
    if !args.skip_freeradius && !args.skip_otpd {
        let ratio = od_rps / fr_rps;
        println!(
            "otpd / FreeRADIUS throughput: {ratio:.2}x (means: {od_rps:.0} vs {fr_rps:.0} answers/s); p99 {od_p99:.2} ms vs {fr_p99:.2} ms"
        );
        let all_accepted = of("otpd")
            .all(|r| r.report.accepts == r.report.sent && r.report.lost == 0 && r.report.sent > 0);
        check(
            &mut checks,
            "pipeline: otpd >= 1.0x FreeRADIUS throughput",
            ratio >= 1.0,
        );
        check(
            &mut checks,
            "pipeline: every otpd request accepted",
            all_accepted,
        );
        check(
            &mut checks,
            "pipeline: otpd p99 no worse than FreeRADIUS p99",
            od_p99 <= fr_p99,
        );
    }

    // ---- 2. production -----------------------------------------------------------
    if !args.skip_otpd {
        println!();
        println!(
            "== 2. production: otpd at argon2id m={} KiB, t={}, p=1 vs the hashing bound ({} in flight, {} s)",
            DEFAULT_ARGON2.0, DEFAULT_ARGON2.1, args.production_concurrency, plan.production_duration
        );
        let dir = root.join("otpd-production");
        let (mut o, _) = seeded_otpd(&tools, &dir, plan.production_users, DEFAULT_ARGON2, 1)?;
        let samples = if args.quick { 5 } else { 20 };
        note("timing argon2id verification (before)");
        results
            .production_hash
            .push(hash_bench(&tools, DEFAULT_ARGON2, samples)?);
        o.start()?;
        note("production run: otpd");
        let run = measure(
            &tools,
            "otpd",
            o.pid(),
            &Load {
                duration: Some(plan.production_duration),
                ..Load::otpd(
                    o.radius_port,
                    plan.production_users,
                    args.production_concurrency,
                    1,
                )
            },
        )?;
        o.stop();
        note("timing argon2id verification (after)");
        results
            .production_hash
            .push(hash_bench(&tools, DEFAULT_ARGON2, samples)?);
        let single_ms = mean(results.production_hash.iter().map(|h| h.single_ms));
        let parallel = mean(results.production_hash.iter().map(|h| h.parallel_rps));
        let bound = machine.cores as f64 * 1000.0 / single_ms;
        println!(
            "hashing bound: one verification {single_ms:.2} ms on one thread (mean of before/after) -> {} cores / that = {bound:.1}/s; {} threads hashing together measured {parallel:.1}/s",
            machine.cores, machine.cores
        );
        println!("{HEADER}");
        println!("{}", row(&run));
        let ratio = run.report.accept_rps / bound;
        println!(
            "otpd: {:.1} accepts/s = {ratio:.2} of the bound ({:.2} of the measured parallel rate)",
            run.report.accept_rps,
            run.report.accept_rps / parallel
        );
        check(
            &mut checks,
            "production: >= 0.9 of the argon2id bound",
            ratio >= 0.9,
        );
        results.production = Some(run);

        // ---- 3. scaling ------------------------------------------------------------
        println!();
        println!(
            "== 3. scaling: otpd pipeline setting with otp.window = {} (so the smallest store has enough fresh user-steps), {} requests per run, {} in flight",
            args.scaling_window, plan.scaling_requests, args.concurrency
        );
        for &n in &plan.scaling {
            let dir = root.join(format!("otpd-scaling-{n}"));
            let (mut o, _) = seeded_otpd(&tools, &dir, n, CHEAP, args.scaling_window)?;
            o.start()?;
            note(&format!("scaling run: {n} users"));
            let run = measure(
                &tools,
                "otpd",
                o.pid(),
                &Load {
                    requests: Some(plan.scaling_requests),
                    ..Load::otpd(o.radius_port, n, args.concurrency, args.scaling_window)
                },
            )?;
            let rss = o.pid().and_then(harness::peak_rss_kib);
            o.stop();
            results.scaling.push(Scaling {
                users: n,
                run,
                startup_ms: o.startup.as_secs_f64() * 1000.0,
                peak_rss_kib: rss,
                store_bytes: harness::disk_usage(&Otpd::data_dir(&dir)),
            });
        }
        println!(
            "  users  answers/s  CPU us/req  accepted  lost  p50 ms  p99 ms   max ms  peak RSS MiB  store MiB  bytes/user  startup ms  load"
        );
        for s in &results.scaling {
            let r = &s.run.report;
            println!(
                "{:>7} {:>10.0} {:>11} {:>9} {:>5} {:>7.2} {:>7.2} {:>8.2} {:>13} {:>10.1} {:>11.0} {:>11.0} {:>5.2}{}",
                s.users,
                r.throughput_rps,
                s.run
                    .cpu_us_per_request
                    .map(|c| format!("{c:.0}"))
                    .unwrap_or_else(|| "-".into()),
                r.accepts,
                r.lost,
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.max_ms,
                mib(s.peak_rss_kib),
                s.store_bytes as f64 / 1048576.0,
                s.store_bytes as f64 / s.users.max(1) as f64,
                s.startup_ms,
                s.run.load_average,
                if r.exhausted { "  (ran out of fresh user-steps)" } else { "" }
            );
        }
        if let (Some(small), Some(large)) = (results.scaling.first(), results.scaling.last()) {
            let ratio = large.run.report.throughput_rps / small.run.report.throughput_rps;
            println!(
                "{} users vs {} users: {ratio:.2}x the throughput",
                large.users, small.users
            );
            check(
                &mut checks,
                &format!(
                    "scaling: {} users within 10 % of {} users",
                    large.users, small.users
                ),
                ratio >= 0.9,
            );
            let rss_ok = large.peak_rss_kib.is_some_and(|k| k < 256 * 1024);
            check(
                &mut checks,
                &format!("scaling: peak RSS at {} users under 256 MiB", large.users),
                rss_ok,
            );
            let all_accepted = results
                .scaling
                .iter()
                .all(|s| s.run.report.accepts == s.run.report.sent && s.run.report.sent > 0);
            check(&mut checks, "scaling: every request accepted", all_accepted);
        }
    }

    results.checks = checks;
    println!();
    println!(
        "done in {:.0} s; load average {:.2} at the end",
        started.elapsed().as_secs_f64(),
        harness::load_average()
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    if args.keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(results.checks.iter().all(|(_, ok)| *ok))
}
