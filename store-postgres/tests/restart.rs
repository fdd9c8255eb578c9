//! The database server stopping and starting again under a PgStore that has connections
//! open: the health check says it is gone and back, a read after the restart is answered
//! at once (the connections that died with the server are not lent again), and a spent
//! step stays spent.

mod common;

use common::{active, settings, NOW};

use std::sync::Arc;

use otpd_core::store::{Spend, Store};
use otpd_store_postgres::PgStore;
use otpd_testkit::postgres::Postgres;

/// Fills the pool with `n` connections at once (each thread holds one while the others
/// take theirs), so that several sit idle when the server goes away.
fn fill_pool(s: &Arc<dyn Store>, n: usize) {
    let start = Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (s, start) = (s.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                s.get_user("taro").expect("read").expect("taro");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("reader");
    }
}

#[test]
fn after_a_database_restart_the_first_calls_are_answered() {
    let mut pg = Postgres::start();
    let s: Arc<dyn Store> = PgStore::open(&settings(&pg)).expect("open");
    assert!(s
        .swap_user("taro", None, Some(&active("taro", 10)))
        .expect("create"));
    let epoch = s.get_user("taro").expect("read").expect("taro").epoch;
    assert_eq!(
        s.spend_step("taro", epoch, 11, NOW).expect("spend"),
        Spend::Spent
    );
    fill_pool(&s, 4);
    s.check().expect("the database answers");

    pg.stop();
    let down = s.check().expect_err("the check sees the database gone");
    assert!(
        down.to_string().contains("check that the database answers")
            || down.to_string().contains("cannot connect"),
        "{down}"
    );
    assert!(!down.to_string().contains(pg.password()), "{down}");
    assert!(s.get_user("taro").is_err(), "no answer while it is down");

    pg.start_again();
    s.check().expect("the check sees it back");
    fill_pool(&s, 4);

    // Stopped and started between two calls, with every connection idle: the first read
    // finds its connection dead and is asked again on a new one.
    pg.stop();
    pg.start_again();
    let u = s
        .get_user("taro")
        .expect("the first read after a restart is answered");
    assert_eq!(u.expect("taro").value.token.last_step(), Some(11));
    // The other idle connections were closed with the dead one: the next calls are answered.
    for step in [11, 12] {
        let got = s
            .spend_step("taro", epoch, step, NOW)
            .expect("spend after a restart");
        let want = if step == 11 {
            Spend::Replayed
        } else {
            Spend::Spent
        };
        assert_eq!(got, want, "step {step}");
    }

    // A write that is not safe to repeat is not repeated: on a connection that died with
    // the server it fails (the caller refuses), and the next call, on a new connection,
    // finds the step unspent.
    fill_pool(&s, 4);
    pg.stop();
    pg.start_again();
    let failed = s.spend_step("taro", epoch, 13, NOW);
    assert!(
        failed.is_err(),
        "sent once, on a dead connection: {failed:?}"
    );
    assert_eq!(
        s.spend_step("taro", epoch, 13, NOW).expect("spend"),
        Spend::Spent
    );
    assert_eq!(
        s.spend_step("taro", epoch, 13, NOW).expect("spend"),
        Spend::Replayed
    );
}
