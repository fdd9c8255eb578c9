//! Phase 1: the pipeline at a cheap argon2 setting, otpd against FreeRADIUS with cleartext
//! and with hashed passwords, rounds alternating.

use super::*;

pub(super) fn run(b: &mut Bench) -> anyhow::Result<()> {
    println!();
    println!(
        "== 1. pipeline: otpd (argon2id m={} KiB, t={}) vs FreeRADIUS {} + rlm_totp; {} users each, {} in flight, {} s per run",
        CHEAP.0, CHEAP.1, b.results.freeradius_version, b.plan.users, b.args.concurrency, b.plan.duration
    );
    let cheap = hash_bench(&b.tools, CHEAP, if b.args.quick { 200 } else { 2000 })?;
    println!(
        "argon2id at m={} KiB, t={}: one verification {:.1} us on one thread (otpd does one per login; FreeRADIUS compares cleartext)",
        CHEAP.0,
        CHEAP.1,
        cheap.single_ms * 1000.0
    );
    b.results.pipeline_hash = Some(cheap);
    // FreeRADIUS twice: cleartext passwords (what it is usually benchmarked with), and
    // SHA-512 crypt ones, so that it hashes per login as otpd does.
    let mut frs: Vec<(&str, FreeRadius)> = Vec::new();
    if !b.args.skip_freeradius {
        let mut pairings = vec![("FreeRADIUS", FrPassword::Cleartext, "freeradius")];
        if !b.args.skip_crypt {
            pairings.push((FR_CRYPT, hashed_password(b.args)?, "freeradius-crypt"));
        }
        for (name, password, folder) in pairings {
            let port = harness::free_udp_port();
            note(&format!(
                "writing a FreeRADIUS users file for {} users ({})",
                b.plan.users,
                password.attribute()
            ));
            let raddb = FreeRadius::configure(
                &b.root.join(folder),
                &b.args.system_raddb,
                b.plan.users,
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
    if !b.args.skip_otpd {
        let dir = b.root.join("otpd-pipeline");
        let (mut o, took) = seeded_otpd(&b.tools, &dir, b.plan.users, CHEAP, 1)?;
        note(&format!(
            "seeded {} otpd users in {:.1} s",
            b.plan.users,
            took.as_secs_f64()
        ));
        o.start()?;
        note(&format!("otpd ready in {} ms", o.startup.as_millis()));
        note(&format!("otpd {}", warmed(o.wait_warm(WARM_LIMIT))));
        od = Some(o);
    }
    for round in 0..b.plan.rounds {
        for (name, f) in &frs {
            note(&format!("pipeline round {}: {name}", round + 1));
            let run = measure(
                &b.tools,
                name,
                f.pid(),
                &Load::freeradius(f.port, b.plan.users, b.args.concurrency, b.plan.duration),
            )?;
            b.results.pipeline.push(run);
        }
        if let Some(o) = &od {
            note(&format!("pipeline round {}: otpd", round + 1));
            // otpd refuses a step twice: each round drives its own share of the users.
            let share = b.plan.users / u64::from(b.plan.rounds);
            let run = measure(
                &b.tools,
                "otpd",
                o.pid(),
                &Load {
                    first_user: u64::from(round) * share,
                    duration: Some(b.plan.duration),
                    ..Load::otpd(o.radius_port, share, b.args.concurrency, 1)
                },
            )?;
            b.results.pipeline.push(run);
        }
    }
    for (name, mut f) in frs.drain(..) {
        let rss = f.pid().and_then(harness::peak_rss_kib);
        f.stop();
        b.results.servers.push(ServerFacts {
            server: name.into(),
            users: b.plan.users,
            startup_ms: f.startup.as_secs_f64() * 1000.0,
            peak_rss_kib: rss,
            store_bytes: None,
        });
    }
    if let Some(mut o) = od.take() {
        let rss = o.pid().and_then(harness::peak_rss_kib);
        o.stop();
        b.results.servers.push(ServerFacts {
            server: "otpd".into(),
            users: b.plan.users,
            startup_ms: o.startup.as_secs_f64() * 1000.0,
            peak_rss_kib: rss,
            store_bytes: Some(harness::disk_usage(&Otpd::data_dir(&o.dir))),
        });
    }
    println!("{HEADER}");
    for r in &b.results.pipeline {
        println!("{}", row(r));
    }
    let of = |name: &'static str| runs_of(&b.results.pipeline, name);
    let fr_rps = mean(of("FreeRADIUS").map(|r| r.report.throughput_rps));
    let od_rps = mean(of("otpd").map(|r| r.report.throughput_rps));
    let fr_p99 = mean(of("FreeRADIUS").map(|r| r.report.latency.p99_ms));
    let od_p99 = mean(of("otpd").map(|r| r.report.latency.p99_ms));
    for r in &b.results.pipeline {
        let answered = r.report.accepts + r.report.rejects + r.report.challenges;
        if r.report.replies_without_ma > 0 || r.report.replies_ma_not_first > 0 {
            println!(
                "{}: {} of {answered} replies without a Message-Authenticator, {} with it not first",
                r.server, r.report.replies_without_ma, r.report.replies_ma_not_first
            );
        }
    }
    for s in &b.results.servers {
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
    if !b.args.skip_freeradius && !b.args.skip_otpd {
        let ratio = od_rps / fr_rps;
        println!(
            "otpd / FreeRADIUS throughput: {ratio:.2}x (means: {od_rps:.0} vs {fr_rps:.0} answers/s); p99 {od_p99:.2} ms vs {fr_p99:.2} ms"
        );
        let all_accepted = of("otpd")
            .all(|r| r.report.accepts == r.report.sent && r.report.lost == 0 && r.report.sent > 0);
        check(
            &mut b.checks,
            "pipeline: otpd >= 1.0x FreeRADIUS throughput",
            ratio >= 1.0,
        );
        check(
            &mut b.checks,
            "pipeline: every otpd request accepted",
            all_accepted,
        );
        check(
            &mut b.checks,
            "pipeline: otpd p99 no worse than FreeRADIUS p99",
            od_p99 <= fr_p99,
        );
        if !b.args.skip_crypt {
            let crypt_rps = mean(of(FR_CRYPT).map(|r| r.report.throughput_rps));
            let crypt_p99 = mean(of(FR_CRYPT).map(|r| r.report.latency.p99_ms));
            let hashed = hashed_password(b.args)?;
            println!(
                "otpd / FreeRADIUS with {} ({FR_CRYPT}): {:.2}x (means: {od_rps:.0} vs {crypt_rps:.0} answers/s); p99 {od_p99:.2} ms vs {crypt_p99:.2} ms",
                hashed_label(b.args, &hashed),
                od_rps / crypt_rps
            );
            // A pairing that refuses everything would measure nothing.
            let crypt_accepted = of(FR_CRYPT).all(|r| {
                r.report.accepts == r.report.sent && r.report.lost == 0 && r.report.sent > 0
            });
            check(
                &mut b.checks,
                "pipeline: FreeRADIUS with hashed passwords accepted every request",
                crypt_accepted,
            );
        }
    }

    Ok(())
}

/// The users-file password of FreeRADIUS's hashing pairing (`--fr-hash`).
pub(super) fn hashed_password(args: &Args) -> anyhow::Result<FrPassword> {
    Ok(if args.fr_hash == "crypt" {
        FrPassword::sha512_crypt(args.crypt_rounds)?
    } else {
        FrPassword::ssha2_512()
    })
}

pub(super) fn hashed_label(args: &Args, p: &FrPassword) -> String {
    match p {
        FrPassword::Crypt(_) => format!("{} ($6$, rounds={})", p.attribute(), args.crypt_rounds),
        _ => p.attribute().to_string(),
    }
}
