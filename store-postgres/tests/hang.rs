//! A database server that hangs (its processes stopped: the kernel still accepts
//! connections and acknowledges what is sent, nothing is answered) under a PgStore: each
//! call fails within the statement's wait, the health check within its own, calls after a
//! wait ran out fail at once, and a step whose spend got no answer is never accepted twice.

mod common;

use common::{active, settings, NOW};

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd_core::store::{Spend, Store};
use otpd_store_postgres::{PgStore, Settings};
use otpd_testkit::postgres::Postgres;
use otpd_testkit::wait::wait_until;

const STATEMENT_TIMEOUT: Duration = Duration::from_millis(800);
/// The statement's wait here: the server's timeout and the store's margin (500 ms).
const WAIT: Duration = Duration::from_millis(1300);
/// Scheduling slack on a shared machine.
const SLACK: Duration = Duration::from_millis(700);

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

#[test]
fn a_frozen_server_fails_each_call_within_its_wait_and_a_step_is_never_accepted_twice() {
    let mut pg = Postgres::start();
    let s: Arc<dyn Store> = PgStore::open(&Settings {
        statement_timeout: STATEMENT_TIMEOUT,
        ..settings(&pg)
    })
    .expect("open");
    assert!(s
        .swap_user("taro", None, Some(&active("taro", 10)))
        .expect("create"));
    let epoch = s.get_user("taro").expect("read").expect("taro").epoch;
    s.check().expect("the server answers");

    pg.freeze();
    // A spend in flight when the server froze: it fails, in time.
    let (spent, took) = timed(|| s.spend_step("taro", epoch, 11, NOW));
    let e = spent.expect_err("no answer from a frozen server");
    assert!(took < WAIT + SLACK, "spend answered after {took:?}");
    assert!(e.to_string().contains("no answer within"), "{e}");
    // The calls after it fail at once, before their own wait.
    let (read, took) = timed(|| s.get_user("taro"));
    assert!(read.is_err(), "a read on a frozen server fails");
    assert!(
        took < Duration::from_millis(300),
        "read failed after {took:?}"
    );
    // The health check gives up within its own deadline (2 s), again and again: the
    // daemon's watch asks it every 250 ms while down, one at a time.
    for _ in 0..2 {
        let (checked, took) = timed(|| s.check());
        assert!(checked.is_err(), "a frozen server fails the check");
        assert!(
            took < Duration::from_secs(2) + SLACK,
            "check answered after {took:?}"
        );
    }
    pg.thaw();
    wait_until(
        "the check passes after the thaw",
        Duration::from_secs(10),
        || s.check().ok(),
    );
    // The spend cut off above may have committed once the server woke: step 11 is then
    // spent; either way it is never accepted twice, and the next step is accepted once.
    let again = s.spend_step("taro", epoch, 11, NOW).expect("answered");
    let committed_before = again == Spend::Replayed;
    assert!(
        matches!(again, Spend::Spent | Spend::Replayed),
        "step 11: {again:?}"
    );
    assert_eq!(
        s.spend_step("taro", epoch, 11, NOW).expect("answered"),
        Spend::Replayed
    );
    assert_eq!(
        s.spend_step("taro", epoch, 12, NOW).expect("answered"),
        Spend::Spent
    );
    eprintln!("the cut-off spend had committed: {committed_before}");
}

#[test]
fn a_store_whose_check_ran_drops_on_an_async_worker() {
    let pg = Postgres::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dropped = runtime.block_on(async {
        tokio::spawn(async move {
            let s = PgStore::open(&Settings {
                statement_timeout: STATEMENT_TIMEOUT,
                ..settings(&pg)
            })
            .expect("open");
            s.check().expect("the server answers");
            drop(s);
            true
        })
        .await
    });
    assert!(dropped.is_ok(), "dropping the store panicked: {dropped:?}");
}
