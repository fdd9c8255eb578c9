//! otpd-loadgen: drives a RADIUS server (otpd or FreeRADIUS) with PAP Access-Requests for
//! the bench users (password followed by a valid TOTP code) and reports throughput and
//! latency. With `--spray` it is a password sprayer instead: wrong passwords for many user
//! IDs at a fixed rate (open loop), reporting what the server answered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use otpd_bench::loadgen::{self, Options, Report};
use otpd_bench::{spray, users};
use otpd_core::otp::{Algorithm, OtpParams};

#[derive(Parser, Debug)]
#[command(name = "otpd-loadgen", version, about)]
struct Args {
    /// The RADIUS server (loopback only). Several (`--target A --target B`, or `A,B`): the
    /// clients are dealt out over them, and a client whose server stops answering sends
    /// its retransmissions to the next one (fail-over); the spray uses the first.
    #[arg(long, default_value = "127.0.0.1:1812", value_delimiter = ',')]
    target: Vec<SocketAddr>,
    /// Put every request's timing in the JSON report (`samples`: start ms, latency ms,
    /// outcome, target index).
    #[arg(long, requires = "json")]
    samples: bool,
    /// The shared secret ...
    #[arg(long, conflicts_with = "secret_file")]
    secret: Option<String>,
    /// ... or a file whose first line is the shared secret.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// First bench user index.
    #[arg(long, default_value_t = 0)]
    first_user: u64,
    /// How many bench users to spread the requests over.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Requests in flight (one client socket each).
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Seconds to keep starting requests.
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Milliseconds before a request is retransmitted.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Retransmissions of the same packet before a request counts as lost.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// OTP period in seconds (otpd: 60; FreeRADIUS 3.2 rlm_totp: 30).
    #[arg(long, default_value_t = 60)]
    period: u64,
    /// Steps the server accepts either side of now (otpd: 1; rlm_totp: 0).
    #[arg(long, default_value_t = 1)]
    window: u64,
    /// The server accepts a code more than once (rlm_totp): reuse users within a step.
    #[arg(long)]
    replay_ok: bool,
    /// The login password of every bench user.
    #[arg(long, default_value = users::PASSWORD)]
    password: String,
    /// Runtime worker threads (1: the load generator takes one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Closed loop: start at most this many requests a second over all clients.
    /// Spray: send exactly this many a second (required with --spray).
    #[arg(long)]
    rate: Option<f64>,
    /// Spray wrong passwords (open loop at --rate, no retransmission) for the stored users
    /// --first-user .. +--users and for unknown IDs from --first-unknown.
    #[arg(long)]
    spray: bool,
    /// Spray: of every 100 requests, this many name an ID the store does not hold.
    #[arg(long, default_value_t = 50)]
    unknown_percent: u64,
    /// Spray: the first unknown user index (bench IDs from here up are not stored).
    #[arg(long, default_value_t = 900_000_000)]
    first_unknown: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("otpd-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.target.iter().all(|t| t.ip().is_loopback()),
        "--target must be a loopback address; this tool only loads servers on this machine"
    );
    let (&target, more_targets) = args.target.split_first().context("give --target")?;
    anyhow::ensure!(
        args.duration.is_some() || args.requests.is_some(),
        "give --duration or --requests (or both)"
    );
    let secret = match (&args.secret, &args.secret_file) {
        (Some(s), None) => s.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        _ => anyhow::bail!("give --secret or --secret-file"),
    };
    anyhow::ensure!(!secret.is_empty(), "the shared secret is empty");
    if args.spray {
        return run_spray(&args, target, secret);
    }
    let opts = Options {
        target,
        more_targets: more_targets.to_vec(),
        samples: args.samples,
        secret: secret.into_bytes(),
        first_user: args.first_user,
        users: args.users,
        concurrency: args.concurrency.max(1),
        duration: args.duration.map(Duration::from_secs_f64),
        requests: args.requests,
        rate: args.rate,
        timeout: Duration::from_millis(args.timeout_ms),
        retries: args.retries,
        otp: OtpParams {
            period: args.period,
            digits: 6,
            algorithm: Algorithm::SHA1,
            window: args.window,
        },
        replay_ok: args.replay_ok,
        password: args.password,
        nas_identifier: "otpd-loadgen".into(),
    };
    let report = runtime(args.threads)?.block_on(loadgen::run(opts))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_spray(args: &Args, target: SocketAddr, secret: String) -> anyhow::Result<ExitCode> {
    let rate = args
        .rate
        .filter(|r| *r > 0.0)
        .context("--spray needs --rate")?;
    let duration = args.duration.context("--spray needs --duration")?;
    anyhow::ensure!(
        args.first_unknown >= args.first_user + args.users,
        "--first-unknown must lie past the sprayed stored users"
    );
    let opts = spray::Options {
        target,
        secret: secret.into_bytes(),
        schedule: spray::Schedule {
            rate,
            known_first: args.first_user,
            known_count: args.users,
            unknown_first: args.first_unknown,
            unknown_percent: args.unknown_percent,
        },
        duration: Duration::from_secs_f64(duration),
        timeout: Duration::from_millis(args.timeout_ms),
        password: if args.password == users::PASSWORD {
            spray::WRONG_PASSWORD.into()
        } else {
            args.password.clone()
        },
        nas_identifier: "otpd-loadgen-spray".into(),
    };
    let r = runtime(args.threads)?.block_on(spray::run(opts))?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "spray {} at {:.1}/s: sent {} ({} stored users, {} unknown IDs)  accepts {}  rejects {}  challenges {}  dropped {}  invalid {}",
            r.target, r.rate, r.sent, r.sent_known, r.sent_unknown, r.accepts, r.rejects,
            r.challenges, r.dropped, r.invalid_replies
        );
        println!(
            "{:.1} s  {:.1} answered/s  latency p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            r.elapsed_s, r.answered_rps, r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    })
}

fn print_report(r: &Report) {
    println!(
        "target {}  concurrency {}  users {}",
        r.target, r.concurrency, r.users
    );
    println!(
        "sent {}  accepts {}  rejects {}  challenges {}  lost {}  retransmissions {}  invalid replies {}",
        r.sent, r.accepts, r.rejects, r.challenges, r.lost, r.retransmissions, r.invalid_replies
    );
    if r.replies_without_ma > 0 || r.replies_ma_not_first > 0 {
        println!(
            "replies without Message-Authenticator {}, with it not first {}",
            r.replies_without_ma, r.replies_ma_not_first
        );
    }
    if r.exhausted {
        println!("stopped early: every user had used every step the server accepts");
    }
    println!(
        "{:.1} s  {:.0} answers/s ({:.0} accepts/s)  latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        r.elapsed_s,
        r.throughput_rps,
        r.accept_rps,
        r.latency.p50_ms,
        r.latency.p90_ms,
        r.latency.p99_ms,
        r.latency.max_ms
    );
}
