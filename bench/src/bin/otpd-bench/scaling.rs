//! Phase 3: the pipeline setting at growing store sizes, a million users among them.

use super::*;

pub(super) fn run(b: &mut Bench) -> anyhow::Result<()> {
    println!();
    println!(
        "== 3. scaling: otpd pipeline setting with otp.window = {} (so the smallest store has enough fresh user-steps), {} requests per run, {} in flight",
        b.args.scaling_window, b.plan.scaling_requests, b.args.concurrency
    );
    for &n in &b.plan.scaling {
        let dir = b.root.join(format!("otpd-scaling-{n}"));
        let (mut o, _) = seeded_otpd(&b.tools, &dir, n, CHEAP, b.args.scaling_window)?;
        o.start()?;
        let warm = o.wait_warm(WARM_LIMIT);
        note(&format!("scaling run: {n} users ({})", warmed(warm)));
        let run = measure(
            &b.tools,
            "otpd",
            o.pid(),
            &Load {
                requests: Some(b.plan.scaling_requests),
                ..Load::otpd(o.radius_port, n, b.args.concurrency, b.args.scaling_window)
            },
        )?;
        let rss = o.pid().and_then(harness::peak_rss_kib);
        o.stop();
        b.results.scaling.push(Scaling {
            users: n,
            run,
            startup_ms: o.startup.as_secs_f64() * 1000.0,
            warm_ms: warm.map(|w| w.as_secs_f64() * 1000.0),
            peak_rss_kib: rss,
            store_bytes: harness::disk_usage(&Otpd::data_dir(&dir)),
        });
    }
    println!(
        "  users  answers/s  CPU us/req  accepted  lost  p50 ms  p99 ms   max ms  peak RSS MiB  store MiB  bytes/user  startup ms  warm ms  load"
    );
    for s in &b.results.scaling {
        let r = &s.run.report;
        println!(
            "{:>7} {:>10.0} {:>11} {:>9} {:>5} {:>7.2} {:>7.2} {:>8.2} {:>13} {:>10.1} {:>11.0} {:>11.0} {:>8} {:>5.2}{}",
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
            s.warm_ms.map_or_else(|| "-".into(), |w| format!("{w:.0}")),
            s.run.load_average,
            if r.exhausted { "  (ran out of fresh user-steps)" } else { "" }
        );
    }
    scaling_checks(&mut b.checks, &b.results.scaling);

    Ok(())
}

/// The scaling targets: the largest store under a million against the smallest (within
/// 10 %, peak RSS under 256 MiB), and each million-user store (start-up under 1 s, peak RSS
/// under 256 MiB, within 15 % of the smallest).
pub(super) fn scaling_checks(checks: &mut Vec<(String, bool)>, scaling: &[Scaling]) {
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
