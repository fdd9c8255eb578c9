//! otpd-bench: one run that measures otpd side by side with FreeRADIUS 3.2 + rlm_totp on
//! this machine, with the same load generator: (1) the pipeline at a cheap argon2 setting,
//! against FreeRADIUS with cleartext and with hashed (SSHA2-512 or `$6$`) passwords,
//! (2) production argon2id against the hashing bound, (3) scaling with the store's size,
//! (4) customers' logins through one gateway during a password spray, (5) two otpd nodes
//! on one PostgreSQL against one node on sled, and a node killed under load.
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

mod cluster;
mod pipeline;
mod production;
mod scaling;
mod spray;
#[cfg(test)]
mod tests;
mod tools;

use tools::*;

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
    /// Users per run of the cluster phase (each run, and the kill run, has its own range)
    /// [default: 50000; quick 2000].
    #[arg(long)]
    cluster_users: Option<u64>,
    /// Seconds of the cluster phase's node-kill run; node A dies 40 % into it
    /// [default: 20; quick 12].
    #[arg(long)]
    kill_duration: Option<f64>,
    /// Requests a second of the node-kill run [default: half the two nodes' median
    /// answers/s, at most 2 × cluster-users ÷ kill-duration so that fresh user-steps last
    /// the run; 0: a closed loop, as many as are answered].
    #[arg(long)]
    kill_rate: Option<f64>,
    /// Leave out phase 5 (two otpd nodes on PostgreSQL; needs Debian's postgresql).
    #[arg(long)]
    skip_cluster: bool,
    /// Run only these phases (pipeline, production, scaling, spray, cluster; comma
    /// separated). The spray's rate is a multiple of production's hashing bound: with
    /// spray, give production too, or --spray-rate.
    #[arg(long, value_delimiter = ',', value_parser = ["pipeline", "production", "scaling", "spray", "cluster"])]
    only: Option<Vec<String>>,
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
    cluster_users: u64,
    kill_duration: f64,
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
            cluster_users: a
                .cluster_users
                .unwrap_or(if q { 2000 } else { 50_000 })
                .max(1),
            kill_duration: a.kill_duration.unwrap_or(if q { 12.0 } else { 20.0 }),
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
    /// From ready until otpd said its store's cache was warmed (the run starts after it).
    warm_ms: Option<f64>,
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
    /// One hash by the reference C libargon2 at the production setting, ms (its median).
    production_reference_ms: Option<f64>,
    production: Option<Run>,
    scaling: Vec<Scaling>,
    spray: Option<Spray>,
    cluster: Option<cluster::Cluster2>,
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

/// What every phase reads and adds to: the arguments, the plan, the programs, the temp
/// folder, the machine, the figures and the targets' verdicts.
struct Bench<'a> {
    args: &'a Args,
    plan: Plan,
    tools: Tools,
    root: PathBuf,
    machine: Machine,
    results: Results,
    checks: Vec<(String, bool)>,
}

impl Bench<'_> {
    /// The hashing bound of the production setting: cores ÷ one argon2id verification (the
    /// mean of the timings taken around phase 2), in verifications a second.
    fn hashing_bound(&self) -> f64 {
        let single_ms = mean(self.results.production_hash.iter().map(|h| h.single_ms));
        self.machine.cores as f64 * 1000.0 / single_ms
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let tmp = tempfile::Builder::new().prefix("otpd-bench-").tempdir()?;
    let machine = Machine::describe();
    let mut b = Bench {
        args,
        plan: Plan::from(args),
        tools: Tools::find(args.bin_dir.as_deref())?,
        root: tmp.path().to_path_buf(),
        machine: machine.clone(),
        results: Results {
            machine: Some(machine),
            freeradius_version: freeradius_version(),
            ..Results::default()
        },
        checks: Vec::new(),
    };
    let started = Instant::now();
    let machine = &b.machine;
    println!(
        "otpd-bench{}: {} cores ({}), {} MiB RAM, Linux {}; load average {:.2} at start",
        if args.quick { " --quick" } else { "" },
        machine.cores,
        machine.cpu_model,
        machine.mem_total_mib,
        machine.kernel,
        harness::load_average()
    );

    let wanted = |phase: &str| {
        args.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == phase))
    };
    if wanted("pipeline") {
        pipeline::run(&mut b)?;
    }
    if !args.skip_otpd {
        if wanted("production") {
            production::run(&mut b)?;
        }
        if wanted("scaling") {
            scaling::run(&mut b)?;
            settle_disk();
        }
        if wanted("spray") {
            spray::run(&mut b)?;
        }
        if wanted("cluster") && !args.skip_cluster {
            cluster::run(&mut b)?;
        }
    }

    let mut results = b.results;
    results.checks = b.checks;
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

/// The scaling phase writes up to a gigabyte of stores: the kernel's write-back of it
/// would queue the next phase's group commits (and a spray's customers) behind it, so it
/// is written back first.
fn settle_disk() {
    let started = std::time::Instant::now();
    let _ = std::process::Command::new("sync").status();
    eprintln!(
        "otpd-bench: page cache written back in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
