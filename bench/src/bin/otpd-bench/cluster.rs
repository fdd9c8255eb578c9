//! Phase 5: two otpd nodes on one PostgreSQL against one node on sled, at the same load,
//! then one of the two nodes killed mid-run while the load generator fails over to the
//! survivor.
//!
//! One sled store is seeded and copied into a private, durable PostgreSQL cluster
//! (`otpd-bench-seed to-postgres`: the engines' own export and restore), so both engines
//! hold the same users under the same key file. Round `r` drives users `r·U .. (r+1)·U` on
//! both (the stores are apart, the two nodes share theirs); the kill run has its own range.

use otpd_bench::loadgen::{Outcome, Sample};
use otpd_bench::postgres::Cluster;
use otpd_bench::stats::{self, Latency};

use super::*;

/// The load generator's wait before a retransmission (and a fail-over) in this phase: a
/// gateway's usual few seconds, above otpd's 1 s reject delay (a shorter wait would resend
/// every refusal, a replay refused by the survivor included, before its answer came).
pub(super) const CLUSTER_TIMEOUT_MS: u64 = 3000;
/// Retransmissions of the kill run: each request is tried twice on each node at most, so
/// one slow answer of the survivor does not lose a request that failed over to it.
const CLUSTER_RETRIES: u32 = 3;
/// Around the kill: the window "during" is the requests in flight when the node died and
/// those started in the next `KILL_WINDOW_MS`, twice the retransmission timeout (each
/// client learns its node is gone by one timeout, then resends to the survivor).
pub(super) const KILL_WINDOW_MS: f64 = 2.0 * CLUSTER_TIMEOUT_MS as f64;

#[derive(Debug, Clone, Serialize)]
pub(super) struct Cluster2 {
    pub(super) users_per_round: u64,
    pub(super) postgres_version: String,
    /// Copying the seeded sled store into PostgreSQL.
    pub(super) copy_s: f64,
    pub(super) sled: Vec<Run>,
    pub(super) postgres: Vec<PgRun>,
    pub(super) kill: Option<Kill>,
}

/// One run of the load on both nodes of the database.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PgRun {
    /// Both nodes: answers/s, latency; `cpu_us_per_request` unused (per node below).
    pub(super) run: Run,
    /// Per node: answered requests, CPU µs per answered request.
    pub(super) answered: [u64; 2],
    pub(super) node_cpu_us_per_request: [Option<f64>; 2],
    /// The database's CPU (every server process), per answered request of both nodes.
    pub(super) db_cpu_us_per_request: Option<f64>,
    pub(super) db_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Kill {
    pub(super) duration_s: f64,
    /// Requests started a second (none: closed loop).
    pub(super) rate: Option<f64>,
    /// When node A was killed, ms after the load started.
    pub(super) at_ms: f64,
    pub(super) report: Report,
    pub(super) before: Window,
    pub(super) during: Window,
    pub(super) after: Window,
}

/// What the load generator saw in one stretch of the kill run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct Window {
    pub(super) from_ms: f64,
    pub(super) to_ms: f64,
    pub(super) requests: u64,
    pub(super) accepts: u64,
    pub(super) rejects: u64,
    pub(super) lost: u64,
    /// Answers that arrived inside [from, to), per second.
    pub(super) answers_per_s: f64,
    /// Of the window's requests that were answered.
    pub(super) latency: Latency,
    /// Of the window's answers, how many came from the survivor (node B).
    pub(super) answered_by_survivor: u64,
}

pub(super) fn run(b: &mut Bench) -> anyhow::Result<()> {
    let users = b.plan.cluster_users;
    let rounds = b.plan.rounds;
    println!();
    println!(
        "== 5. cluster: two otpd nodes on one PostgreSQL vs one otpd on sled, pipeline setting, {} in flight, {} s per run, {rounds} runs each, alternating; then node A killed {:.0} s into a {:.0} s run",
        b.args.concurrency, b.plan.duration, b.plan.kill_duration * KILL_AT, b.plan.kill_duration
    );
    let root = b.root.join("cluster");
    let sled_dir = root.join("sled");
    let seeded = u64::from(rounds + 1) * users;
    note(&format!("cluster: seeding {seeded} users"));
    let (mut sled, _) = seeded_otpd(&b.tools, &sled_dir, seeded, CHEAP, 1)?;
    let mut pg = Cluster::start()?;
    let version = pg.version();
    note(&format!(
        "cluster: PostgreSQL {version} on 127.0.0.1:{}, copying the store into it",
        pg.port
    ));
    let password_file = root.join("postgres.password");
    write_private(&password_file, &format!("{}\n", pg.password()))?;
    let copy_began = Instant::now();
    let mut cmd = Command::new(&b.tools.seed);
    cmd.args(["to-postgres", "--json", "--url"])
        .arg(pg.url())
        .arg("--password-file")
        .arg(&password_file)
        .arg("--data-dir")
        .arg(Otpd::data_dir(&sled_dir));
    stdout_of(&mut cmd, "otpd-bench-seed to-postgres")?;
    let copy_s = copy_began.elapsed().as_secs_f64();

    // The nodes of one database share the key file the secrets are sealed with.
    let key = std::fs::read_to_string(Otpd::key_file(&sled_dir))?;
    let store = format!(
        "[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"{}\"\npassword_file = \"postgres.password\"\nsslmode = \"disable\"\n",
        pg.url()
    );
    let files = [
        ("master.key", key, 0o600),
        ("postgres.password", format!("{}\n", pg.password()), 0o600),
    ];
    let settings = OtpdSettings {
        argon2_memory_kib: CHEAP.0,
        argon2_iterations: CHEAP.1,
        window: 1,
    };
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let mut o = Otpd::configure_with(
            &b.tools.otpd,
            &root.join(name),
            SECRET,
            settings,
            &store,
            &files,
        )?;
        o.start()?;
        nodes.push(o);
    }
    sled.start()?;

    let mut result = Cluster2 {
        users_per_round: users,
        postgres_version: version,
        copy_s,
        sled: Vec::new(),
        postgres: Vec::new(),
        kill: None,
    };
    let ports = [nodes[0].radius_port, nodes[1].radius_port];
    for r in 0..rounds {
        let first = u64::from(r) * users;
        note(&format!("cluster run {}: otpd on sled", r + 1));
        let load = Load {
            first_user: first,
            duration: Some(b.plan.duration),
            ..Load::otpd(sled.radius_port, users, b.args.concurrency, 1)
        };
        result
            .sled
            .push(measure(&b.tools, "otpd-sled", sled.pid(), &load)?);
        note(&format!(
            "cluster run {}: two otpd nodes on PostgreSQL",
            r + 1
        ));
        result.postgres.push(pg_run(b, &nodes, &pg, ports, &load)?);
    }
    sled.stop();

    // Paced below what the survivor carries alone: a site sized with room for a node's
    // loss, not a queue (in a saturated closed loop, a replay refused by the survivor waits
    // behind every fresh login, see BENCHMARKS.md).
    let pair_rps = median(result.postgres.iter().map(|r| r.run.report.throughput_rps));
    let rate = match b.args.kill_rate {
        Some(r) if r > 0.0 => Some(r),
        Some(_) => None,
        // And slow enough that the run's users have fresh steps to its end: at window 1 a
        // user has three, of which the generator may skip the oldest near a step's end.
        // (A quick run's few users ran out before the kill on a fast machine.)
        None => {
            let lasting = (2 * users) as f64 / b.plan.kill_duration;
            Some((pair_rps * KILL_RATE_OF_PAIR).min(lasting).max(1.0))
        }
    };
    note(&format!(
        "cluster: node kill, {}",
        rate.map(|r| format!("{r:.0} requests/s"))
            .unwrap_or_else(|| "closed loop".into())
    ));
    let load = Load {
        first_user: u64::from(rounds) * users,
        duration: Some(b.plan.kill_duration),
        rate,
        timeout_ms: Some(CLUSTER_TIMEOUT_MS),
        retries: Some(CLUSTER_RETRIES),
        ..Load::otpd(ports[0], users, b.args.concurrency, 1)
    };
    let child = loadgen_command(&b.tools, &load, &ports[1..], true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("otpd-loadgen")?;
    // A timed event inside the run, not a wait for readiness: the load runs meanwhile.
    std::thread::sleep(Duration::from_secs_f64(b.plan.kill_duration * KILL_AT));
    let killed_at_unix_ms = unix_ms();
    nodes[0].kill();
    let out = child.wait_with_output().context("otpd-loadgen")?;
    anyhow::ensure!(
        out.status.success(),
        "otpd-loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: Report = serde_json::from_slice(&out.stdout).context("loadgen report")?;
    let at_ms = killed_at_unix_ms - report.started_unix_ms;
    let samples = std::mem::take(&mut report.samples);
    for s in samples.iter().filter(|s| !s.outcome().answered()) {
        note(&format!(
            "kill run: a request for {} started {:.0} ms after the start went unanswered ({:.0} ms of tries, last on node {})",
            otpd_bench::users::login_id(s.user()),
            s.start_ms(),
            s.latency_ms(),
            ["A", "B"].get(s.target()).unwrap_or(&"?")
        ));
    }
    let end_ms = report.elapsed_s * 1000.0;
    result.kill = Some(Kill {
        duration_s: b.plan.kill_duration,
        rate,
        at_ms,
        before: window(&samples, at_ms - KILL_WINDOW_MS, at_ms, Stretch::Before),
        during: window(&samples, at_ms, at_ms + KILL_WINDOW_MS, Stretch::During),
        after: window(&samples, at_ms + KILL_WINDOW_MS, end_ms, Stretch::After),
        report,
    });
    nodes[1].stop();
    pg.stop();

    print_cluster(&result);
    cluster_checks(&mut b.checks, &result);
    b.results.cluster = Some(result);
    Ok(())
}

/// Where in the kill run node A dies (a fraction of its duration).
pub(super) const KILL_AT: f64 = 0.4;
/// The kill run's pace: this share of the two nodes' median answers/s.
const KILL_RATE_OF_PAIR: f64 = 0.5;

/// The load on both nodes at once (the clients dealt out over them), the CPU time of each
/// node and of the database around it.
fn pg_run(
    b: &Bench,
    nodes: &[Otpd],
    pg: &Cluster,
    ports: [u16; 2],
    load: &Load,
) -> anyhow::Result<PgRun> {
    let load = Load {
        port: ports[0],
        ..load.clone()
    };
    let cpu = |i: usize| nodes[i].pid().and_then(harness::cpu_seconds);
    let before = ([cpu(0), cpu(1)], pg.cpu_seconds());
    let out = stdout_of(
        &mut loadgen_command(&b.tools, &load, &ports[1..], false),
        "otpd-loadgen",
    )?;
    let after = ([cpu(0), cpu(1)], pg.cpu_seconds());
    let report: Report = serde_json::from_slice(&out).context("otpd-loadgen's report")?;
    let answered = [0, 1].map(|i| report.answered_per_target.get(i).copied().unwrap_or(0));
    let per_request = |b: Option<f64>, a: Option<f64>, n: u64| match (b, a) {
        (Some(b), Some(a)) if n > 0 => Some((a - b) * 1e6 / n as f64),
        _ => None,
    };
    let total = answered[0] + answered[1];
    Ok(PgRun {
        node_cpu_us_per_request: [0, 1].map(|i| per_request(before.0[i], after.0[i], answered[i])),
        db_cpu_us_per_request: per_request(before.1, after.1, total),
        db_cpu_s: before.1.zip(after.1).map(|(b, a)| a - b),
        answered,
        run: Run {
            server: "otpd-pg x2".into(),
            load_average: harness::load_average(),
            cpu_us_per_request: None,
            report,
        },
    })
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

/// Which requests a stretch of the kill run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stretch {
    /// Started in it and over before its end (the kill): untouched by the kill.
    Before,
    /// Started in it, or in flight at its start (the kill).
    During,
    /// Started in it.
    After,
}

/// The requests of one stretch `[from, to)` of the kill run (ms after its start), as
/// [`Stretch`] says; answers/s counts the answers that arrived inside it. Node B is target 1.
pub(super) fn window(samples: &[Sample], from: f64, to: f64, stretch: Stretch) -> Window {
    let from = from.max(0.0);
    let mut w = Window {
        from_ms: from,
        to_ms: to,
        ..Window::default()
    };
    let mut latencies = Vec::new();
    let mut answers_inside = 0u64;
    for s in samples {
        let answered = s.outcome().answered();
        if answered && s.end_ms() >= from && s.end_ms() < to {
            answers_inside += 1;
        }
        let started_inside = s.start_ms() >= from && s.start_ms() < to;
        let wanted = match stretch {
            Stretch::Before => started_inside && s.end_ms() < to,
            Stretch::During => started_inside || (s.start_ms() < from && s.end_ms() >= from),
            Stretch::After => started_inside,
        };
        if !wanted {
            continue;
        }
        w.requests += 1;
        match s.outcome() {
            Outcome::Accept => w.accepts += 1,
            Outcome::Lost => w.lost += 1,
            Outcome::Reject | Outcome::Challenge => w.rejects += 1,
        }
        if answered {
            latencies.push(u32::try_from((s.latency_ms() * 1000.0) as u64).unwrap_or(u32::MAX));
            if s.target() == 1 {
                w.answered_by_survivor += 1;
            }
        }
    }
    let seconds = (to - from) / 1000.0;
    w.answers_per_s = if seconds > 0.0 {
        answers_inside as f64 / seconds
    } else {
        0.0
    };
    w.latency = stats::summarize(&mut latencies);
    w
}

fn us(x: Option<f64>) -> String {
    x.map(|c| format!("{c:.0}")).unwrap_or_else(|| "-".into())
}

fn print_cluster(c: &Cluster2) {
    println!(
        "PostgreSQL {}; {} users per run, store copied into it in {:.1} s",
        c.postgres_version, c.users_per_round, c.copy_s
    );
    println!("{HEADER}   node A/B answered  node A/B CPU us/req  DB CPU us/req");
    for (s, p) in c.sled.iter().zip(&c.postgres) {
        println!("{}", row(s));
        println!(
            "{}   {:>8}/{:<8}  {:>9}/{:<9}  {:>13}",
            row(&p.run),
            p.answered[0],
            p.answered[1],
            us(p.node_cpu_us_per_request[0]),
            us(p.node_cpu_us_per_request[1]),
            us(p.db_cpu_us_per_request)
        );
    }
    let sled = median(c.sled.iter().map(|r| r.report.throughput_rps));
    let pg = median(c.postgres.iter().map(|r| r.run.report.throughput_rps));
    println!(
        "median answers/s: two nodes on PostgreSQL {pg:.0}, one node on sled {sled:.0} ({:.2}x); DB CPU {} us per request, nodes {} / {} us",
        pg / sled,
        us(Some(median(c.postgres.iter().filter_map(|r| r.db_cpu_us_per_request)))),
        us(Some(median(c.postgres.iter().filter_map(|r| r.node_cpu_us_per_request[0])))),
        us(Some(median(c.postgres.iter().filter_map(|r| r.node_cpu_us_per_request[1])))),
    );
    if let Some(k) = &c.kill {
        println!(
            "node kill: A killed {:.2} s into {:.0} s at {}; the load generator resends after {:.0} s, to the other node; \"during\" = requests in flight at the kill or started in the {:.0} s after it, \"before\" = the {:.0} s before it",
            k.at_ms / 1000.0,
            k.duration_s,
            k.rate
                .map(|r| format!("{r:.0} requests/s"))
                .unwrap_or_else(|| "a closed loop".into()),
            CLUSTER_TIMEOUT_MS as f64 / 1000.0,
            KILL_WINDOW_MS / 1000.0,
            KILL_WINDOW_MS / 1000.0
        );
        println!("  window            from s   to s  requests  accepted  rejected  lost  answers/s  p50 ms  p99 ms   max ms  answered by B");
        for (name, w) in [
            ("before", &k.before),
            ("during", &k.during),
            ("after", &k.after),
        ] {
            println!(
                "  {name:<16} {:>6.2} {:>6.2} {:>9} {:>9} {:>9} {:>5} {:>10.0} {:>7.2} {:>7.2} {:>8.2} {:>14}",
                w.from_ms / 1000.0,
                w.to_ms / 1000.0,
                w.requests,
                w.accepts,
                w.rejects,
                w.lost,
                w.answers_per_s,
                w.latency.p50_ms,
                w.latency.p99_ms,
                w.latency.max_ms,
                w.answered_by_survivor
            );
        }
        let r = &k.report;
        println!(
            "  whole run: {} sent, {} accepted, {} rejected, {} lost, {} retransmissions, {} invalid replies; {:.0} answers/s, p99 {:.2} ms",
            r.sent, r.accepts, r.rejects + r.challenges, r.lost, r.retransmissions, r.invalid_replies, r.throughput_rps, r.latency.p99_ms
        );
    }
}

/// The cluster phase's targets: every request of the steady runs accepted on both engines,
/// and no request lost across the node kill (each one in flight at the kill is answered by
/// the survivor after a fail-over).
pub(super) fn cluster_checks(checks: &mut Vec<(String, bool)>, c: &Cluster2) {
    let all_accepted = |r: &Report| r.sent > 0 && r.accepts == r.sent;
    check(
        checks,
        "cluster: every request accepted, sled and both PostgreSQL nodes",
        c.sled.iter().all(|r| all_accepted(&r.report))
            && c.postgres.iter().all(|r| all_accepted(&r.run.report)),
    );
    if let Some(k) = &c.kill {
        check(
            checks,
            "cluster: no request lost when a node is killed (the survivor answers)",
            k.report.lost == 0 && k.during.requests > 0,
        );
    }
}
