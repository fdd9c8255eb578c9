use super::cluster::*;
use super::scaling::*;
use super::spray::*;
use super::*;
use otpd_bench::loadgen::{Outcome, Sample};
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
               w radius accept user=d\n\
               v radius reject user=e reason=overloaded\n\
               u radius drop reason=overloaded src=127.0.0.1:4 client=\"gw\"\n";
    assert_eq!(
        audit_reasons(log),
        vec![
            ("bad_password".to_string(), 1),
            ("client_rate_limited".to_string(), 2),
            ("dropped overloaded".to_string(), 1),
            ("overloaded".to_string(), 1)
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
        warm_ms: None,
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

/// The kill run's stretches: "before" holds only what the kill did not touch, "during" what
/// was in flight at the kill or started in the window after it, and answers/s counts the
/// answers that arrived inside each stretch.
#[test]
fn the_kill_windows_split_the_requests() {
    let kill = 10_000.0;
    let w = KILL_WINDOW_MS;
    let samples = [
        // Long before the kill: in no window.
        Sample(kill - w - 100.0, 5.0, Outcome::Accept, 0, 7),
        // Before: started and answered in the window before the kill, on A (0) and B (1).
        Sample(kill - w + 1000.0, 5.0, Outcome::Accept, 0, 7),
        Sample(kill - 100.0, 5.0, Outcome::Accept, 1, 7),
        // In flight at the kill on node A: failed over, answered by B one timeout later.
        Sample(kill - 10.0, 3020.0, Outcome::Accept, 1, 7),
        // In flight at the kill, committed on A, its retransmission refused by B (a replay).
        Sample(kill - 5.0, 3010.0, Outcome::Reject, 1, 7),
        // Started after the kill on B.
        Sample(kill + 1000.0, 4.0, Outcome::Accept, 1, 7),
        // Lost after every try.
        Sample(kill + 2000.0, 12_000.0, Outcome::Lost, 0, 7),
        // After the window.
        Sample(kill + w + 500.0, 3.0, Outcome::Accept, 1, 7),
    ];
    let before = window(&samples, kill - w, kill, Stretch::Before);
    assert_eq!((before.requests, before.accepts), (2, 2));
    assert_eq!(before.answered_by_survivor, 1);
    assert_eq!(before.answers_per_s, 2.0 / (w / 1000.0));
    let during = window(&samples, kill, kill + w, Stretch::During);
    assert_eq!(
        (during.requests, during.accepts, during.rejects, during.lost),
        (4, 2, 1, 1)
    );
    assert_eq!(during.answered_by_survivor, 3);
    // Three answers arrived in the window: two fail-overs and one fresh request.
    assert_eq!(during.answers_per_s, 3.0 / (w / 1000.0));
    assert_eq!(during.latency.max_ms, 3020.0);
    let after = window(&samples, kill + w, kill + w + 1000.0, Stretch::After);
    assert_eq!((after.requests, after.accepts), (1, 1));
    let from_start = window(&samples, -5.0, 1.0, Stretch::Before);
    assert_eq!(from_start.from_ms, 0.0, "clamped at the run's start");
}

fn pg_run(sent: u64, accepts: u64) -> PgRun {
    PgRun {
        run: Run {
            server: "otpd-pg x2".into(),
            load_average: 1.0,
            cpu_us_per_request: None,
            report: report(sent, accepts, 10.0),
        },
        answered: [sent / 2, sent - sent / 2],
        node_cpu_us_per_request: [Some(100.0), Some(100.0)],
        db_cpu_us_per_request: Some(100.0),
        db_cpu_s: Some(1.0),
    }
}

#[test]
fn cluster_targets() {
    let sled = Run {
        server: "otpd-sled".into(),
        load_average: 1.0,
        cpu_us_per_request: Some(100.0),
        report: report(100, 100, 5.0),
    };
    let kill = |lost: u64| Kill {
        duration_s: 6.0,
        rate: Some(50.0),
        at_ms: 2400.0,
        report: Report {
            lost,
            ..report(100, 100 - lost, 10.0)
        },
        before: Window::default(),
        during: Window {
            requests: 30,
            ..Window::default()
        },
        after: Window::default(),
    };
    let cluster = |pg: PgRun, lost: u64| Cluster2 {
        users_per_round: 100,
        postgres_version: "15".into(),
        copy_s: 0.1,
        sled: vec![sled.clone()],
        postgres: vec![pg],
        kill: Some(kill(lost)),
    };
    let mut checks = Vec::new();
    cluster_checks(&mut checks, &cluster(pg_run(100, 100), 0));
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|(_, ok)| *ok), "{checks:?}");
    let mut checks = Vec::new();
    cluster_checks(&mut checks, &cluster(pg_run(100, 99), 1));
    assert!(checks.iter().all(|(_, ok)| !ok), "{checks:?}");
}

#[test]
fn only_picks_phases() {
    let args = Args::parse_from(["otpd-bench", "--only", "production,cluster"]);
    assert_eq!(
        args.only.as_deref(),
        Some(&["production".to_string(), "cluster".to_string()][..])
    );
    assert!(Args::try_parse_from(["otpd-bench", "--only", "clusters"]).is_err());
    let plan = Plan::from(&Args::parse_from(["otpd-bench", "--quick"]));
    assert_eq!((plan.cluster_users, plan.kill_duration), (2000, 12.0));
}
