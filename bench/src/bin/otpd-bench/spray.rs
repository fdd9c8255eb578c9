//! Phase 4: customers' logins through one gateway during a password spray.

use super::*;

pub(super) fn run(b: &mut Bench) -> anyhow::Result<()> {
    if !b.args.skip_spray {
        let s = spray_phase(&b.tools, &b.root, b.args, &b.plan, b.hashing_bound())?;
        print_spray(b.args, &b.plan, &s);
        spray_checks(&mut b.checks, &s);
        b.results.spray = Some(s);
    }
    Ok(())
}

/// Users of the spray phase's store: customers first, the sprayed stored users after them.
pub(super) fn spray_users(plan: &Plan, customers: u64) -> u64 {
    plan.production_users.max(customers + 1)
}

/// Phase 4: otpd at the production setting, one gateway; a sprayer sends wrong passwords at
/// `rate` while the customers log in correctly at a modest rate, each a fresh step.
pub(super) fn spray_phase(
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

/// Counts otpd's audit lines by their `reason=` word; drop lines (no answer sent) count
/// apart, as `dropped REASON`, since a reject refused for lack of a hashing worker and a
/// datagram dropped past `max_in_flight` are both `overloaded`.
pub(super) fn audit_reasons(log: &str) -> Vec<(String, u64)> {
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in log.lines() {
        let word = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("reason="))
            .map(|w| w.trim_matches('"'));
        if let Some(w) = word {
            let key = if line.contains("radius drop") {
                format!("dropped {w}")
            } else {
                w.to_string()
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

pub(super) fn print_spray(args: &Args, plan: &Plan, s: &Spray) {
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

pub(super) fn customer_line(c: &Report) -> String {
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

pub(super) fn spray_line(r: &SprayReport) -> String {
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
pub(super) fn spray_checks(checks: &mut Vec<(String, bool)>, s: &Spray) {
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
