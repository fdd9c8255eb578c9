//! The load generator with two targets, as the cluster phase drives two otpd nodes: the
//! clients are dealt out over both, and a client whose target does not answer resends to
//! the other and stays there (a RADIUS proxy's fail-over). Real UDP, a real RADIUS server
//! (the test kit's) checking every request, and one that never answers.

use std::time::Duration;

use otpd_bench::loadgen::{self, Options, Outcome};
use otpd_bench::users;
use otpd_core::otp::OtpParams;
use otpd_testkit::fake_radius::{Answer, DeadServer, FakeRadius};

const SECRET: &str = "test-shared-secret-0123456789";

fn options(targets: [std::net::SocketAddr; 2]) -> Options {
    Options {
        target: targets[0],
        more_targets: vec![targets[1]],
        samples: true,
        secret: SECRET.as_bytes().to_vec(),
        first_user: 0,
        users: 50,
        concurrency: 4,
        duration: Some(Duration::from_secs(20)),
        requests: Some(12),
        rate: None,
        timeout: Duration::from_millis(300),
        retries: 2,
        otp: OtpParams::default(),
        replay_ok: false,
        password: users::PASSWORD.into(),
        nas_identifier: "otpd-bench-test".into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn clients_fail_over_to_the_target_that_answers_and_stay_there() {
    let dead = DeadServer::bind();
    let alive = FakeRadius::start(SECRET.as_bytes(), |_| vec![Answer::accept(&[])]);
    let report = runtime()
        .block_on(loadgen::run(options([dead.addr(), alive.addr()])))
        .expect("run");
    assert_eq!((report.sent, report.accepts, report.lost), (12, 12, 0));
    assert_eq!(report.answered_per_target, vec![0, 12]);
    // Clients 0 and 2 started on the dead target: one timeout each, then never again.
    assert_eq!(report.retransmissions, 2);
    assert_eq!(dead.drain().len(), 2);
    assert_eq!(alive.seen().len(), 12);
    assert_eq!(report.samples.len(), 12);
    assert!(report
        .samples
        .iter()
        .all(|s| s.target() == 1 && s.outcome() == Outcome::Accept));
    let failed_over = report
        .samples
        .iter()
        .filter(|s| s.latency_ms() >= 300.0)
        .count();
    assert_eq!(failed_over, 2, "{:?}", report.samples);
    assert!(report.started_unix_ms > 1.6e12, "a Unix time in ms");
}

#[test]
fn with_both_targets_answering_the_load_is_shared() {
    let a = FakeRadius::start(SECRET.as_bytes(), |_| vec![Answer::accept(&[])]);
    let b = FakeRadius::start(SECRET.as_bytes(), |_| vec![Answer::reject(&["no"])]);
    let report = runtime()
        .block_on(loadgen::run(options([a.addr(), b.addr()])))
        .expect("run");
    assert_eq!(report.retransmissions, 0);
    let [on_a, on_b] = [report.answered_per_target[0], report.answered_per_target[1]];
    assert_eq!(on_a + on_b, 12);
    assert!(on_a > 0 && on_b > 0, "{on_a} / {on_b}");
    assert_eq!((report.accepts, report.rejects), (on_a, on_b));
    assert_eq!(a.seen().len() as u64, on_a);
}

/// A request that failed over to a node that answers late (after the timeout, as a held
/// back Access-Reject does): the late answer still counts when the client comes back to
/// that node, so the request is not lost.
#[test]
fn a_late_answer_from_the_survivor_is_taken_on_the_next_try() {
    let dead = DeadServer::bind();
    // The server's own slowness, not a wait for readiness: it answers after the timeout.
    let slow = FakeRadius::start(SECRET.as_bytes(), |_| {
        std::thread::sleep(Duration::from_millis(400));
        vec![Answer::reject(&["late"])]
    });
    let report = runtime()
        .block_on(loadgen::run(Options {
            concurrency: 1,
            requests: Some(1),
            timeout: Duration::from_millis(300),
            retries: 3,
            ..options([dead.addr(), slow.addr()])
        }))
        .expect("run");
    assert_eq!(
        (report.sent, report.rejects, report.lost),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.answered_per_target, vec![0, 1]);
}
