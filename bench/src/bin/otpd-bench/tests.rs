use super::scaling::*;
use super::spray::*;
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
