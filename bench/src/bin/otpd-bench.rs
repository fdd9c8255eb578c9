//! otpd-bench: one run that measures otpd side by side with FreeRADIUS 3.2 + rlm_totp on
//! this machine, with the same load generator: (1) the pipeline at a cheap argon2 setting,
//! against FreeRADIUS with cleartext and with hashed (SSHA2-512 or `$6$`) passwords,
//! (2) production argon2id against the hashing bound, (3) scaling with the store's size,
//! (4) customers' logins through one gateway during a password spray.
//! `scripts/bench` builds and runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use otpd_bench::harness::{self, FrPassword, FreeRadius, Machine, Otpd, OtpdSettings};
use otpd_bench::loadgen::Report;
use otpd_bench::spray::Report as SprayReport;
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
    /// Store sizes of the scaling runs [default: 1000,10000,100000,1000000; quick 200,2000].
    #[arg(long, value_delimiter = ',')]
    scaling: Option<Vec<u64>>,
    /// Requests per scaling run [default: 20000; quick 2000].
    #[arg(long)]
    scaling_requests: Option<u64>,
    /// otp.window of the scaling runs: 2w+1 fresh steps per user let 1k users carry them.
    #[arg(long, default_value_t = 10)]
    scaling_window: u64,
    /// Add a 1,000,000-user store to the scaling runs (the full run has it already; seeding
    /// it takes about 10 s, its store about 1 GB of disk).
    #[arg(long)]
    million: bool,
    /// FreeRADIUS's second pairing, whose users file holds hashes: `ssha2-512`
    /// (SSHA2-512-Password) or `crypt` (SHA-512 crypt `$6$` Crypt-Password; Debian's
    /// FreeRADIUS 3.2.1 rejects a few correct ones with several requests in flight).
    #[arg(long, default_value = "ssha2-512", value_parser = ["ssha2-512", "crypt"])]
    fr_hash: String,
    /// Rounds of the `crypt` pairing's SHA-512 crypt (5000 is crypt's default).
    #[arg(long, default_value_t = 5000)]
    crypt_rounds: u32,
    /// Leave out the FreeRADIUS pairing that hashes.
    #[arg(long)]
    skip_crypt: bool,
    /// Spray rate as a multiple of the production hashing bound (phase 2's bound).
    #[arg(long, default_value_t = 1.5)]
    spray_factor: f64,
    /// Spray rate in requests a second (instead of --spray-factor x the bound).
    #[arg(long)]
    spray_rate: Option<f64>,
    /// Of every 100 spray requests, this many name an ID the store does not hold.
    #[arg(long, default_value_t = 50)]
    spray_unknown_percent: u64,
    /// Seconds of customer logins during the spray [default: 20; quick 4].
    #[arg(long)]
    spray_duration: Option<f64>,
    /// Customers (clean users, each login a fresh step) logging in during the spray.
    #[arg(long, default_value_t = 20)]
    customers: u64,
    /// Customer logins a second during the spray, over all customers.
    #[arg(long, default_value_t = 2.0)]
    customer_rate: f64,
    #[arg(long)]
    skip_spray: bool,
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
const MILLION: u64 = 1_000_000;
/// The server name of FreeRADIUS's second pairing, whose users file holds hashes.
const FR_CRYPT: &str = "FR-hashed";
/// Seconds the spray runs before the customers start, so they meet it in full swing.
const SPRAY_LEAD_S: f64 = 2.0;
/// How long the sprayer and the customers wait for an answer (then: dropped, or resent).
const SPRAY_TIMEOUT_MS: u64 = 5000;

struct Plan {
    users: u64,
    duration: f64,
    rounds: u32,
    production_duration: f64,
    production_users: u64,
    scaling: Vec<u64>,
    scaling_requests: u64,
    spray_duration: f64,
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
            scaling: {
                let mut sizes = a.scaling.clone().unwrap_or_else(|| {
                    if q {
                        vec![200, 2000]
                    } else {
                        vec![1000, 10_000, 100_000, MILLION]
                    }
                });
                if a.million && !sizes.contains(&MILLION) {
                    sizes.push(MILLION);
                }
                sizes
            },
            scaling_requests: a.scaling_requests.unwrap_or(if q { 2000 } else { 20_000 }),
            spray_duration: a.spray_duration.unwrap_or(if q { 4.0 } else { 20.0 }),
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
    spray: Option<Spray>,
    checks: Vec<(String, bool)>,
}

#[derive(Debug, Clone, Serialize)]
struct Spray {
    bound_rps: f64,
    rate: f64,
    customers: Run,
    spray: SprayReport,
    /// How otpd's audit lines of the run end, by reason (`client_rate_limited`, ...).
    audit: Vec<(String, u64)>,
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
    /// At most this many requests started a second (none: closed loop).
    rate: Option<f64>,
    /// Milliseconds before a retransmission (none: the load generator's 1 s).
    timeout_ms: Option<u64>,
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
    if let Some(r) = l.rate {
        cmd.arg("--rate").arg(r.to_string());
    }
    if let Some(t) = l.timeout_ms {
        cmd.arg("--timeout-ms").arg(t.to_string());
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
            rate: None,
            timeout_ms: None,
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
            rate: None,
            timeout_ms: None,
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
    // FreeRADIUS twice: cleartext passwords (what it is usually benchmarked with), and
    // SHA-512 crypt ones, so that it hashes per login as otpd does.
    let mut frs: Vec<(&str, FreeRadius)> = Vec::new();
    if !args.skip_freeradius {
        let mut pairings = vec![("FreeRADIUS", FrPassword::Cleartext, "freeradius")];
        if !args.skip_crypt {
            pairings.push((FR_CRYPT, hashed_password(args)?, "freeradius-crypt"));
        }
        for (name, password, folder) in pairings {
            let port = harness::free_udp_port();
            note(&format!(
                "writing a FreeRADIUS users file for {} users ({})",
                plan.users,
                password.attribute()
            ));
            let raddb = FreeRadius::configure(
                &root.join(folder),
                &args.system_raddb,
                plan.users,
                port,
                SECRET,
                &password,
            )?;
            let f = FreeRadius::start(&raddb, port)?;
            note(&format!("{name} ready in {} ms", f.startup.as_millis()));
            frs.push((name, f));
        }
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
        for (name, f) in &frs {
            note(&format!("pipeline round {}: {name}", round + 1));
            let run = measure(
                &tools,
                name,
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
    for (name, mut f) in frs.drain(..) {
        let rss = f.pid().and_then(harness::peak_rss_kib);
        f.stop();
        results.servers.push(ServerFacts {
            server: name.into(),
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
        if !args.skip_crypt {
            let crypt_rps = mean(of(FR_CRYPT).map(|r| r.report.throughput_rps));
            let crypt_p99 = mean(of(FR_CRYPT).map(|r| r.report.latency.p99_ms));
            let hashed = hashed_password(args)?;
            println!(
                "otpd / FreeRADIUS with {} ({FR_CRYPT}): {:.2}x (means: {od_rps:.0} vs {crypt_rps:.0} answers/s); p99 {od_p99:.2} ms vs {crypt_p99:.2} ms",
                hashed_label(args, &hashed),
                od_rps / crypt_rps
            );
            // A pairing that refuses everything would measure nothing.
            let crypt_accepted = of(FR_CRYPT).all(|r| {
                r.report.accepts == r.report.sent && r.report.lost == 0 && r.report.sent > 0
            });
            check(
                &mut checks,
                "pipeline: FreeRADIUS with hashed passwords accepted every request",
                crypt_accepted,
            );
        }
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
        scaling_checks(&mut checks, &results.scaling);

        // ---- 4. spray --------------------------------------------------------------
        if !args.skip_spray {
            let single_ms = mean(results.production_hash.iter().map(|h| h.single_ms));
            let bound = machine.cores as f64 * 1000.0 / single_ms;
            let s = spray_phase(&tools, &root, args, &plan, bound)?;
            print_spray(args, &plan, &s);
            spray_checks(&mut checks, &s);
            results.spray = Some(s);
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

/// The users-file password of FreeRADIUS's hashing pairing (`--fr-hash`).
fn hashed_password(args: &Args) -> anyhow::Result<FrPassword> {
    Ok(if args.fr_hash == "crypt" {
        FrPassword::sha512_crypt(args.crypt_rounds)?
    } else {
        FrPassword::ssha2_512()
    })
}

fn hashed_label(args: &Args, p: &FrPassword) -> String {
    match p {
        FrPassword::Crypt(_) => format!("{} ($6$, rounds={})", p.attribute(), args.crypt_rounds),
        _ => p.attribute().to_string(),
    }
}

/// The scaling targets: the largest store under a million against the smallest (within
/// 10 %, peak RSS under 256 MiB), and each million-user store (start-up under 1 s, peak RSS
/// under 256 MiB, within 15 % of the smallest).
fn scaling_checks(checks: &mut Vec<(String, bool)>, scaling: &[Scaling]) {
    let Some(small) = scaling.first() else {
        return;
    };
    let ratio_of = |s: &Scaling| s.run.report.throughput_rps / small.run.report.throughput_rps;
    let rss_under = |s: &Scaling, mib: u64| s.peak_rss_kib.is_some_and(|k| k < mib * 1024);
    if let Some(large) = scaling[1..].iter().rev().find(|s| s.users < MILLION) {
        let ratio = ratio_of(large);
        println!(
            "{} users vs {} users: {ratio:.2}x the throughput",
            large.users, small.users
        );
        check(
            checks,
            &format!(
                "scaling: {} users within 10 % of {} users",
                large.users, small.users
            ),
            ratio >= 0.9,
        );
        check(
            checks,
            &format!("scaling: peak RSS at {} users under 256 MiB", large.users),
            rss_under(large, 256),
        );
    }
    for m in scaling.iter().filter(|s| s.users >= MILLION) {
        let ratio = ratio_of(m);
        println!(
            "{} users vs {} users: {ratio:.2}x the throughput, start-up {:.0} ms, peak RSS {} MiB",
            m.users,
            small.users,
            m.startup_ms,
            mib(m.peak_rss_kib)
        );
        check(
            checks,
            &format!("scaling: {} users start up in under 1 s", m.users),
            m.startup_ms < 1000.0,
        );
        check(
            checks,
            &format!("scaling: peak RSS at {} users under 256 MiB", m.users),
            rss_under(m, 256),
        );
        check(
            checks,
            &format!(
                "scaling: {} users within 15 % of {} users",
                m.users, small.users
            ),
            ratio >= 0.85,
        );
    }
    let all_accepted = scaling
        .iter()
        .all(|s| s.run.report.accepts == s.run.report.sent && s.run.report.sent > 0);
    check(checks, "scaling: every request accepted", all_accepted);
}

/// Users of the spray phase's store: customers first, the sprayed stored users after them.
fn spray_users(plan: &Plan, customers: u64) -> u64 {
    plan.production_users.max(customers + 1)
}

/// Phase 4: otpd at the production setting, one gateway; a sprayer sends wrong passwords at
/// `rate` while the customers log in correctly at a modest rate, each a fresh step.
fn spray_phase(
    tools: &Tools,
    root: &Path,
    args: &Args,
    plan: &Plan,
    bound: f64,
) -> anyhow::Result<Spray> {
    let customers = args.customers.max(1);
    let users = spray_users(plan, customers);
    let rate = args.spray_rate.unwrap_or(args.spray_factor * bound);
    let dir = root.join("otpd-spray");
    let (mut o, _) = seeded_otpd(tools, &dir, users, DEFAULT_ARGON2, 1)?;
    o.start()?;
    note(&format!(
        "spray: {rate:.1}/s for {:.0} s, customers from {SPRAY_LEAD_S:.0} s in",
        plan.spray_duration + SPRAY_LEAD_S + 1.0
    ));
    let mut sprayer = Command::new(&tools.loadgen);
    sprayer
        .arg("--target")
        .arg(format!("127.0.0.1:{}", o.radius_port))
        .args(["--secret", SECRET, "--json", "--spray"])
        .arg("--rate")
        .arg(rate.to_string())
        .arg("--duration")
        .arg((plan.spray_duration + SPRAY_LEAD_S + 1.0).to_string())
        .arg("--first-user")
        .arg(customers.to_string())
        .arg("--users")
        .arg((users - customers).to_string())
        .arg("--first-unknown")
        .arg((users + 1_000_000).to_string())
        .arg("--unknown-percent")
        .arg(args.spray_unknown_percent.to_string())
        // A gateway gives up on an answer after a few seconds.
        .arg("--timeout-ms")
        .arg(SPRAY_TIMEOUT_MS.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let sprayer = sprayer.spawn().context("otpd-loadgen --spray")?;
    // The customers meet the spray in full swing (a schedule, not a readiness wait).
    std::thread::sleep(Duration::from_secs_f64(SPRAY_LEAD_S));
    let customers_run = measure(
        tools,
        "customers",
        o.pid(),
        &Load {
            duration: Some(plan.spray_duration),
            rate: Some(args.customer_rate),
            // As the sprayer's: a gateway waits a few seconds before it asks again.
            timeout_ms: Some(SPRAY_TIMEOUT_MS),
            ..Load::otpd(
                o.radius_port,
                customers,
                usize::try_from(customers).unwrap_or(1),
                1,
            )
        },
    );
    let out = sprayer.wait_with_output().context("otpd-loadgen --spray")?;
    o.stop();
    let customers_run = customers_run?;
    if !out.status.success() {
        bail!(
            "otpd-loadgen --spray failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let spray: SprayReport = serde_json::from_slice(&out.stdout).context("the spray's report")?;
    Ok(Spray {
        bound_rps: bound,
        rate,
        customers: customers_run,
        spray,
        audit: audit_reasons(&o.stderr()),
    })
}

/// Counts otpd's audit lines by their `reason=` (or `outcome=`) word.
fn audit_reasons(log: &str) -> Vec<(String, u64)> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in log.lines() {
        let word = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("reason="))
            .map(|w| w.trim_matches('"').to_string());
        if let Some(w) = word {
            *counts.entry(w).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

fn print_spray(args: &Args, plan: &Plan, s: &Spray) {
    let c = &s.customers.report;
    let r = &s.spray;
    println!();
    println!(
        "== 4. spray: otpd at argon2id m={} KiB, t={}, one gateway (one RADIUS client, one address); spray {:.1}/s = {:.2}x the hashing bound {:.1}/s, wrong passwords, {} % unknown IDs; {} customers at {} logins/s for {} s",
        DEFAULT_ARGON2.0,
        DEFAULT_ARGON2.1,
        s.rate,
        s.rate / s.bound_rps,
        s.bound_rps,
        args.spray_unknown_percent,
        args.customers.max(1),
        args.customer_rate,
        plan.spray_duration
    );
    println!("{}", customer_line(c));
    println!("{}", spray_line(r));
    let audit: Vec<String> = s.audit.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "otpd's audit lines by reason: {}",
        if audit.is_empty() {
            "none found".to_string()
        } else {
            audit.join(", ")
        }
    );
}

fn customer_line(c: &Report) -> String {
    format!(
        "customers: sent {}, accepted {}, rejected {}, lost {} (retransmissions {}); latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        c.sent,
        c.accepts,
        c.rejects + c.challenges,
        c.lost,
        c.retransmissions,
        c.latency.p50_ms,
        c.latency.p99_ms,
        c.latency.max_ms
    )
}

fn spray_line(r: &SprayReport) -> String {
    format!(
        "spray: sent {} ({} stored users, {} unknown IDs) in {:.1} s; answered {:.1}/s: {} rejects, {} accepts, {} challenges; {} answered after 5 s, {} never; answer latency p50 {:.0} ms, p99 {:.0} ms",
        r.sent,
        r.sent_known,
        r.sent_unknown,
        r.elapsed_s,
        r.answered_rps,
        r.rejects,
        r.accepts,
        r.challenges,
        r.late,
        r.dropped,
        r.latency.p50_ms,
        r.latency.p99_ms
    )
}

/// The targets under a spray: every customer login accepted, customer p99 < 1 s.
fn spray_checks(checks: &mut Vec<(String, bool)>, s: &Spray) {
    let c = &s.customers.report;
    check(
        checks,
        "spray: every customer login accepted",
        c.sent > 0 && c.accepts == c.sent,
    );
    check(
        checks,
        "spray: customer p99 under 1 s",
        c.sent > 0 && c.latency.p99_ms < 1000.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use otpd_bench::stats::Latency;

    fn report(sent: u64, accepts: u64, p99_ms: f64) -> Report {
        Report {
            sent,
            accepts,
            rejects: sent - accepts,
            latency: Latency {
                p99_ms,
                ..Latency::default()
            },
            ..Report::default()
        }
    }

    fn spray(customers: Report) -> Spray {
        Spray {
            bound_rps: 40.0,
            rate: 60.0,
            customers: Run {
                server: "customers".into(),
                load_average: 1.0,
                cpu_us_per_request: None,
                report: customers,
            },
            spray: SprayReport::default(),
            audit: Vec::new(),
        }
    }

    #[test]
    fn spray_targets() {
        let mut checks = Vec::new();
        spray_checks(&mut checks, &spray(report(40, 40, 300.0)));
        assert!(checks.iter().all(|(_, ok)| *ok), "{checks:?}");
        let mut checks = Vec::new();
        spray_checks(&mut checks, &spray(report(40, 39, 300.0)));
        assert_eq!(
            checks.iter().filter(|(_, ok)| !ok).count(),
            1,
            "one refused"
        );
        let mut checks = Vec::new();
        spray_checks(&mut checks, &spray(report(40, 40, 5200.0)));
        assert!(!checks[1].1, "p99 over a second");
        let mut checks = Vec::new();
        spray_checks(&mut checks, &spray(report(0, 0, 0.0)));
        assert!(
            checks.iter().all(|(_, ok)| !ok),
            "nothing sent proves nothing"
        );
    }

    #[test]
    fn report_lines_say_what_happened() {
        let mut c = report(40, 31, 5123.4);
        c.lost = 2;
        let line = customer_line(&c);
        assert!(
            line.contains("sent 40, accepted 31, rejected 9, lost 2"),
            "{line}"
        );
        assert!(line.contains("p99 5123 ms"), "{line}");
        let r = SprayReport {
            sent: 300,
            sent_known: 150,
            sent_unknown: 150,
            rejects: 280,
            dropped: 20,
            answered_rps: 46.7,
            elapsed_s: 6.0,
            ..SprayReport::default()
        };
        let line = spray_line(&r);
        assert!(
            line.contains("sent 300 (150 stored users, 150 unknown IDs)"),
            "{line}"
        );
        assert!(line.contains("answered 46.7/s: 280 rejects"), "{line}");
        assert!(line.contains("answered after 5 s, 20 never"), "{line}");
    }

    #[test]
    fn audit_lines_are_counted_by_reason() {
        let log = "x radius reject user=a reason=bad_password\n\
                   y radius reject user=b reason=client_rate_limited\n\
                   z radius reject user=c reason=\"client_rate_limited\"\n\
                   w radius accept user=d\n";
        assert_eq!(
            audit_reasons(log),
            vec![
                ("bad_password".to_string(), 1),
                ("client_rate_limited".to_string(), 2)
            ]
        );
    }

    fn scaling(users: u64, rps: f64, rss_mib: u64, startup_ms: f64) -> Scaling {
        Scaling {
            users,
            run: Run {
                server: "otpd".into(),
                load_average: 1.0,
                cpu_us_per_request: None,
                report: Report {
                    sent: 10,
                    accepts: 10,
                    throughput_rps: rps,
                    ..Report::default()
                },
            },
            startup_ms,
            peak_rss_kib: Some(rss_mib * 1024),
            store_bytes: 0,
        }
    }

    #[test]
    fn a_million_users_have_their_own_targets() {
        let mut checks = Vec::new();
        scaling_checks(
            &mut checks,
            &[
                scaling(1000, 1000.0, 40, 10.0),
                scaling(100_000, 950.0, 200, 40.0),
                scaling(MILLION, 860.0, 250, 900.0),
            ],
        );
        let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"scaling: 100000 users within 10 % of 1000 users"));
        assert!(names.contains(&"scaling: 1000000 users start up in under 1 s"));
        assert!(names.contains(&"scaling: 1000000 users within 15 % of 1000 users"));
        assert!(checks.iter().all(|(_, ok)| *ok), "{checks:?}");
        let mut checks = Vec::new();
        scaling_checks(
            &mut checks,
            &[
                scaling(1000, 1000.0, 40, 10.0),
                scaling(MILLION, 800.0, 300, 1500.0),
            ],
        );
        let missed: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(missed.len(), 3, "{missed:?}");
    }

    #[test]
    fn the_million_flag_adds_the_store() {
        let args = Args::parse_from(["otpd-bench", "--quick", "--million"]);
        assert_eq!(Plan::from(&args).scaling, vec![200, 2000, MILLION]);
        let args = Args::parse_from(["otpd-bench"]);
        assert_eq!(
            Plan::from(&args).scaling,
            vec![1000, 10_000, 100_000, MILLION]
        );
        let args = Args::parse_from(["otpd-bench", "--million", "--scaling", "1000,1000000"]);
        assert_eq!(Plan::from(&args).scaling, vec![1000, MILLION]);
    }
}
