//! Phase 2: otpd at the production argon2id against the hashing bound.

use super::*;

pub(super) fn run(b: &mut Bench) -> anyhow::Result<()> {
    println!();
    println!(
        "== 2. production: otpd at argon2id m={} KiB, t={}, p=1 vs the hashing bound ({} in flight, {} s)",
        DEFAULT_ARGON2.0, DEFAULT_ARGON2.1, b.args.production_concurrency, b.plan.production_duration
    );
    let dir = b.root.join("otpd-production");
    let (mut o, _) = seeded_otpd(&b.tools, &dir, b.plan.production_users, DEFAULT_ARGON2, 1)?;
    let samples = if b.args.quick { 5 } else { 20 };
    note("timing argon2id verification (before)");
    b.results
        .production_hash
        .push(hash_bench(&b.tools, DEFAULT_ARGON2, samples)?);
    o.start()?;
    note("production run: otpd");
    let run = measure(
        &b.tools,
        "otpd",
        o.pid(),
        &Load {
            duration: Some(b.plan.production_duration),
            ..Load::otpd(
                o.radius_port,
                b.plan.production_users,
                b.args.production_concurrency,
                1,
            )
        },
    )?;
    o.stop();
    note("timing argon2id verification (after)");
    b.results
        .production_hash
        .push(hash_bench(&b.tools, DEFAULT_ARGON2, samples)?);
    let single_ms = mean(b.results.production_hash.iter().map(|h| h.single_ms));
    let parallel = mean(b.results.production_hash.iter().map(|h| h.parallel_rps));
    let bound = b.hashing_bound();
    println!(
        "hashing bound: one verification {single_ms:.2} ms on one thread (mean of before/after) -> {} cores / that = {bound:.1}/s; {} threads hashing together measured {parallel:.1}/s",
        b.machine.cores, b.machine.cores
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
        &mut b.checks,
        "production: >= 0.9 of the argon2id bound (otpd's own verification)",
        ratio >= 0.9,
    );
    // The bound: cores ÷ one hash by the reference C libargon2 at the same setting.
    note("timing the reference C libargon2 (Debian's argon2 command)");
    match reference_hash_ms(DEFAULT_ARGON2, if b.args.quick { 3 } else { 9 })? {
        None => println!(
            "reference bound: not measured (Debian's argon2 command is not installed: apt-get install argon2)"
        ),
        Some(ms) => {
            let reference = b.machine.cores as f64 * 1000.0 / ms;
            let of_reference = run.report.accept_rps / reference;
            println!(
                "reference bound: one hash by the C libargon2 {ms:.2} ms (median of its own CPU times) -> {} cores / that = {reference:.1}/s; otpd {:.1} accepts/s = {of_reference:.2} of it",
                b.machine.cores, run.report.accept_rps
            );
            check(
                &mut b.checks,
                "production: >= 0.9 of the reference C libargon2 bound",
                of_reference >= 0.9,
            );
            b.results.production_reference_ms = Some(ms);
        }
    }
    b.results.production = Some(run);

    Ok(())
}
