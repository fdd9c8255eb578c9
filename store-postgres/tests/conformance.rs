//! One set of promises, checked against both engines: sled (one node, the store shared by
//! threads) and PostgreSQL (a private cluster, two store handles as two nodes would have).
//! A step is spent once however many race for it, failures from two nodes add up to one
//! lock, a whole-record write is refused once anything changed, a single-use key is used
//! once, two nodes never lease the same mail, and a backup restores into either engine.

mod common;

use common::{active, settings, NOW};

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use otpd_core::lifecycle::Token;
use otpd_core::lockout::{LockPolicy, LockState};
use otpd_core::store::{SledStore, Spend, Store};
use otpd_core::user::UserRecord;
use otpd_store_postgres::PgStore;
use otpd_testkit::postgres::Postgres;

/// A store under test: two handles (two nodes' worth for PostgreSQL; the one shared handle
/// for sled, which one process opens once) and what keeps its data alive.
struct Engine {
    name: &'static str,
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    /// The sled folder or the PostgreSQL cluster, removed or stopped when dropped.
    _keep: Box<dyn std::any::Any>,
}

fn sled() -> Engine {
    let dir = tempfile::tempdir().expect("tempdir");
    let s: Arc<dyn Store> = SledStore::open(dir.path()).expect("open sled");
    Engine {
        name: "sled",
        a: s.clone(),
        b: s,
        _keep: Box::new(dir),
    }
}

fn postgres() -> Engine {
    let pg = Postgres::start();
    let s = settings(&pg);
    let a: Arc<dyn Store> = PgStore::open(&s).expect("open node a");
    let b: Arc<dyn Store> = PgStore::open(&s).expect("open node b");
    Engine {
        name: "postgres",
        a,
        b,
        _keep: Box::new(pg),
    }
}

fn create(s: &dyn Store, u: &UserRecord) {
    assert!(
        s.swap_user(&u.login_id, None, Some(u)).expect("create"),
        "{} is new",
        u.login_id
    );
    s.wait_durable().expect("durable");
}

fn epoch(s: &dyn Store, id: &str) -> u64 {
    s.get_user(id).expect("read").expect("present").epoch
}

const POLICY: LockPolicy = LockPolicy {
    max_failures: 5,
    lockout_seconds: 600,
};

/// Runs `each(thread, handle)` on `n` threads started together, half on each handle.
fn race<T: Send + 'static>(
    e: &Engine,
    n: usize,
    each: impl Fn(usize, &dyn Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let each = Arc::new(each);
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|t| {
            let s = if t % 2 == 0 { e.a.clone() } else { e.b.clone() };
            let (each, start) = (each.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                each(t, &*s)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("racing thread"))
        .collect()
}

fn a_step_is_spent_exactly_once(e: Engine) {
    let users = 4;
    for u in 0..users {
        create(&*e.a, &active(&format!("u{u}"), 100));
    }
    let rounds = 10;
    for round in 0..rounds {
        for u in 0..users {
            let id = format!("u{u}");
            let ep = epoch(&*e.a, &id);
            let step = 101 + round;
            let outcomes = race(&e, 6, move |_, s| {
                s.spend_step(&id, ep, step, NOW).expect("spend")
            });
            let spent = outcomes
                .iter()
                .filter(|o| matches!(o, Spend::Spent))
                .count();
            assert_eq!(spent, 1, "{}: step {step} of u{u}: {outcomes:?}", e.name);
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, Spend::Spent | Spend::Replayed)),
                "{}: {outcomes:?}",
                e.name
            );
        }
    }
    let u0 = e.b.get_user("u0").expect("read").expect("present");
    assert_eq!(u0.value.token.last_step(), Some(100 + rounds), "{}", e.name);
    println!(
        "{}: {rounds} rounds x {users} users x 6 threads: each step spent once",
        e.name
    );
}

fn a_refused_step_says_why(e: Engine) {
    create(&*e.a, &active("taro", 100));
    let ep = epoch(&*e.a, "taro");
    assert!(matches!(
        e.a.spend_step("nobody", 1, 101, NOW).expect("spend"),
        Spend::Missing
    ));
    assert!(matches!(
        e.b.spend_step("taro", ep, 100, NOW).expect("spend"),
        Spend::Replayed
    ));
    // A whole-record write moves the epoch: a login that read before it must read again.
    let v = e.a.get_user("taro").expect("read").expect("present");
    let mut changed = v.value.clone();
    changed.email = Some("new@example.jp".into());
    assert!(e
        .a
        .swap_user("taro", Some(&v), Some(&changed))
        .expect("swap"));
    assert!(
        matches!(
            e.b.spend_step("taro", ep, 101, NOW).expect("spend"),
            Spend::Changed
        ),
        "{}",
        e.name
    );
    let ep = epoch(&*e.b, "taro");
    assert!(ep > v.epoch, "{}: the epoch grew", e.name);
    for _ in 0..5 {
        e.a.count_failure("taro", NOW, &POLICY).expect("count");
    }
    assert!(
        matches!(
            e.b.spend_step("taro", ep, 101, NOW).expect("spend"),
            Spend::Locked
        ),
        "{}",
        e.name
    );
    // Once the lock has run out, the step is spent and the failures cleared with it.
    assert!(matches!(
        e.b.spend_step("taro", ep, 101, NOW + 600).expect("spend"),
        Spend::Spent
    ));
    let u = e.a.get_user("taro").expect("read").expect("present").value;
    assert_eq!(u.lock, LockState::default(), "{}", e.name);
    assert_eq!(u.token.last_step(), Some(101));
    assert_eq!(u.email.as_deref(), Some("new@example.jp"));
}

fn failures_from_two_nodes_add_up_to_one_lock(e: Engine) {
    create(&*e.a, &active("hanako", 100));
    let n = 8;
    let after = race(&e, n, |_, s| {
        s.count_failure("hanako", NOW, &POLICY)
            .expect("count")
            .expect("the user exists")
    });
    let counts: BTreeSet<u32> = after.iter().map(|l| l.failures).collect();
    assert_eq!(
        counts,
        (1..=n as u32).collect(),
        "{}: every failure counted once: {after:?}",
        e.name
    );
    for l in &after {
        let locked = l.failures >= POLICY.max_failures;
        assert_eq!(
            l.locked_until,
            locked.then_some(NOW + 600),
            "{}: one lock, set by the fifth failure and kept: {after:?}",
            e.name
        );
    }
    let u =
        e.b.get_user("hanako")
            .expect("read")
            .expect("present")
            .value;
    assert!(u.lock.is_locked(NOW + 599) && !u.lock.is_locked(NOW + 600));
    assert_eq!(u.lock.failures, n as u32);
    // A timed lock that ran out restarts the count, as LockState::record_failure does.
    let l =
        e.a.count_failure("hanako", NOW + 600, &POLICY)
            .expect("count");
    assert_eq!(
        l,
        Some(LockState {
            failures: 1,
            locked_until: None
        }),
        "{}",
        e.name
    );
    e.b.clear_failures("hanako").expect("clear");
    let u =
        e.a.get_user("hanako")
            .expect("read")
            .expect("present")
            .value;
    assert_eq!(u.lock, LockState::default());
    assert_eq!(
        e.a.count_failure("nobody", NOW, &POLICY).expect("count"),
        None
    );
    // Until an administrator unlocks: locked_until = 0 stays whatever the time.
    let forever = LockPolicy {
        max_failures: 1,
        lockout_seconds: 0,
    };
    let l = e.a.count_failure("hanako", NOW, &forever).expect("count");
    assert_eq!(l.and_then(|l| l.locked_until), Some(0));
    let l =
        e.b.count_failure("hanako", i64::MAX / 2, &forever)
            .expect("count");
    assert_eq!(l.map(|l| (l.failures, l.locked_until)), Some((2, Some(0))));
}

fn a_whole_record_write_sees_every_change(e: Engine) {
    create(&*e.a, &active("jiro", 100));
    assert!(
        !e.b.swap_user("jiro", None, Some(&active("jiro", 1)))
            .expect("create"),
        "{}: exists",
        e.name
    );
    let v = e.a.get_user("jiro").expect("read").expect("present");
    let mut renamed = v.value.clone();
    renamed.email = Some("jiro@bank.jp".into());
    assert!(e
        .a
        .swap_user("jiro", Some(&v), Some(&renamed))
        .expect("swap"));
    assert!(
        !e.b.swap_user("jiro", Some(&v), Some(&v.value))
            .expect("stale"),
        "{}: a stale version is refused",
        e.name
    );
    // A step spent after the read: the record that did not see it must not undo it.
    let v = e.b.get_user("jiro").expect("read").expect("present");
    assert!(matches!(
        e.a.spend_step("jiro", v.epoch, 101, NOW).expect("spend"),
        Spend::Spent
    ));
    let mut unaware = v.value.clone();
    unaware.email = Some("other@bank.jp".into());
    assert!(
        !e.b.swap_user("jiro", Some(&v), Some(&unaware))
            .expect("swap"),
        "{}: the write that did not see step 101 is refused",
        e.name
    );
    let v = e.b.get_user("jiro").expect("read").expect("present");
    assert_eq!(v.value.token.last_step(), Some(101));
    assert!(e.b.swap_user("jiro", Some(&v), None).expect("delete"));
    assert!(e.a.get_user("jiro").expect("read").is_none(), "{}", e.name);
}

fn a_single_use_key_is_used_once(e: Engine) {
    let firsts = race(&e, 6, |_, s| {
        s.use_once(b"challenge-1", NOW + 60, NOW).expect("use")
    });
    assert_eq!(
        firsts.iter().filter(|f| **f).count(),
        1,
        "{}: {firsts:?}",
        e.name
    );
    assert!(!e
        .a
        .use_once(b"challenge-1", NOW + 60, NOW + 59)
        .expect("use"));
    assert!(e.b.use_once(b"challenge-2", NOW + 60, NOW).expect("use"));
    assert!(
        !e.b.use_once(b"challenge-1", NOW + 120, NOW + 60)
            .expect("use"),
        "{}: used up to its expires_at",
        e.name
    );
    assert!(
        e.b.use_once(b"challenge-1", NOW + 120, NOW + 61)
            .expect("use"),
        "{}: a key past its time may be used again",
        e.name
    );
    assert!(!e
        .a
        .use_once(b"challenge-1", NOW + 120, NOW + 62)
        .expect("use"));
}

fn two_nodes_never_lease_the_same_mail(e: Engine) {
    let total = 40;
    for i in 0..total {
        e.a.outbox_push(format!("mail {i}").as_bytes())
            .expect("push");
    }
    let taken = race(&e, 4, |t, s| {
        let node = format!("node-{t}");
        let mut mine = Vec::new();
        // A holder is handed its own messages again (its lease renewed): ask for more
        // than it holds, until nothing new comes.
        loop {
            let got = s
                .outbox_lease(&node, NOW, 300, mine.len() + 3)
                .expect("lease");
            let new: Vec<u64> = got
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| !mine.contains(id))
                .collect();
            if new.is_empty() {
                return mine;
            }
            mine.extend(new);
        }
    });
    let held = &taken[0];
    let again = e.a.outbox_lease("node-0", NOW, 300, 100).expect("lease");
    assert_eq!(
        again.iter().map(|(id, _)| *id).collect::<BTreeSet<u64>>(),
        held.iter().copied().collect::<BTreeSet<u64>>(),
        "{}: a holder is handed its own again, and nothing another holds",
        e.name
    );
    let all: Vec<u64> = taken.iter().flatten().copied().collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), total, "{}: {taken:?}", e.name);
    assert_eq!(distinct.len(), total, "{}: a mail leased twice", e.name);
    assert!(e
        .b
        .outbox_lease("late", NOW + 299, 300, 100)
        .expect("lease")
        .is_empty());
    let again =
        e.b.outbox_lease("late", NOW + 300, 300, 100)
            .expect("lease");
    assert_eq!(
        again.len(),
        total,
        "{}: an expired lease is free again",
        e.name
    );
    let first = again.first().map(|(id, _)| *id).expect("one");
    e.a.outbox_remove(first).expect("remove");
    assert_eq!(e.b.outbox().expect("list").len(), total - 1);
}

fn fill(s: &dyn Store) {
    let mut u = active("a-taro", 123);
    u.lock = LockState {
        failures: 2,
        locked_until: None,
    };
    create(s, &u);
    create(s, &active("b-hanako", 456));
    let mut issued = active("c-jiro", 0);
    issued.token = Token::Unregistered;
    create(s, &issued);
    s.count_failure("b-hanako", NOW, &POLICY).expect("count");
    let ep = s.get_user("a-taro").expect("read").expect("present").epoch;
    assert!(matches!(
        s.spend_step("a-taro", ep, 124, NOW).expect("spend"),
        Spend::Spent
    ));
    s.set_link_owner("linkhash-1", Some("c-jiro"))
        .expect("link");
    s.outbox_push(b"queued mail").expect("push");
    s.wait_durable().expect("durable");
}

fn a_backup_restores_into_either_engine(e: Engine) {
    fill(&*e.a);
    let rows = e.a.export().expect("export");
    assert_eq!(
        rows.len(),
        5,
        "{}: 3 users, 1 link, 1 mail: {rows:?}",
        e.name
    );
    let mut pages = Vec::new();
    let mut after: Option<(String, Vec<u8>)> = None;
    loop {
        let page =
            e.b.export_after(after.as_ref().map(|(t, k)| (t.as_str(), k.as_slice())), 2)
                .expect("page");
        let Some(last) = page.last() else { break };
        after = Some((last.0.clone(), last.1.clone()));
        pages.extend(page);
    }
    assert_eq!(pages, rows, "{}: pages add up to the whole", e.name);
    for other in [sled(), postgres()] {
        other.a.restore(&rows).expect("restore");
        other.a.wait_durable().expect("durable");
        assert_eq!(
            other.b.export().expect("export"),
            rows,
            "{} into {}: the same rows back",
            e.name,
            other.name
        );
        let taro = other.b.get_user("a-taro").expect("read").expect("present");
        assert_eq!(taro.value.token.last_step(), Some(124), "replay mark kept");
        let ep = taro.epoch;
        assert!(matches!(
            other.a.spend_step("a-taro", ep, 124, NOW).expect("spend"),
            Spend::Replayed
        ));
        let hanako = other
            .b
            .get_user("b-hanako")
            .expect("read")
            .expect("present");
        assert_eq!(hanako.value.lock.failures, 1);
        assert_eq!(
            other.b.link_owner("linkhash-1").expect("link").as_deref(),
            Some("c-jiro")
        );
        let id = other.a.outbox_push(b"after restore").expect("push");
        let ids: Vec<u64> = other
            .b
            .outbox()
            .expect("list")
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(ids.len(), 2, "{}: {ids:?}", other.name);
        assert!(ids.iter().filter(|i| **i == id).count() == 1);
    }
}

fn a_page_of_users_is_in_login_order(e: Engine) {
    for id in ["b", "A", "a", "_x", "a.b", "0"] {
        create(&*e.a, &active(id, 1));
    }
    let ids: Vec<String> =
        e.b.users()
            .expect("users")
            .into_iter()
            .map(|u| u.login_id)
            .collect();
    assert_eq!(
        ids,
        ["0", "A", "_x", "a", "a.b", "b"],
        "{}: byte order",
        e.name
    );
    let page: Vec<String> =
        e.b.users_after(Some("_x"), 2)
            .expect("page")
            .into_iter()
            .map(|u| u.login_id)
            .collect();
    assert_eq!(page, ["a", "a.b"], "{}", e.name);
    assert_eq!(e.a.user_count(), 6);
}

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod sled_engine {
            $(#[test] fn $name() { super::$name(super::sled()) })*
        }
        mod postgres_engine {
            $(#[test] fn $name() { super::$name(super::postgres()) })*
        }
    };
}

/// The first key check value recorded stays; a second node's is not written over it.
fn the_first_key_check_value_recorded_stays(e: Engine) {
    assert_eq!(e.a.key_check().expect("read"), None, "{}", e.name);
    assert_eq!(e.a.record_key_check(b"first").expect("record"), b"first");
    assert_eq!(e.b.record_key_check(b"other").expect("record"), b"first");
    e.b.wait_durable().expect("durable");
    assert_eq!(
        e.b.key_check().expect("read").as_deref(),
        Some(&b"first"[..])
    );
}

/// Users created together are created all, or none when one of them exists already.
fn users_created_together_are_all_or_none(e: Engine) {
    create(&*e.b, &active("taken", 5));
    let many: Vec<UserRecord> = (0..2500)
        .map(|i| active(&format!("imp{i:05}"), i))
        .collect();
    let mut clash = many.clone();
    clash.push(active("taken", 9));
    assert_eq!(
        e.a.create_users(&clash).expect("create"),
        Err("taken".to_string()),
        "{}",
        e.name
    );
    assert_eq!(e.b.user_count(), 1, "none of them was created");
    assert!(e.b.get_user("imp00000").expect("read").is_none());
    e.a.create_users(&many)
        .expect("create")
        .expect("none exists");
    e.a.wait_durable().expect("durable");
    assert_eq!(e.b.user_count(), 2501);
    let last = e.b.get_user("imp02499").expect("read").expect("present");
    assert_eq!(last.value, active("imp02499", 2499));
    assert_eq!(
        e.b.spend_step("imp02499", last.epoch, 2499, NOW)
            .expect("spend"),
        Spend::Replayed,
        "the marks came with the records"
    );
}

both_engines!(
    users_created_together_are_all_or_none,
    the_first_key_check_value_recorded_stays,
    a_step_is_spent_exactly_once,
    a_refused_step_says_why,
    failures_from_two_nodes_add_up_to_one_lock,
    a_whole_record_write_sees_every_change,
    a_single_use_key_is_used_once,
    two_nodes_never_lease_the_same_mail,
    a_backup_restores_into_either_engine,
    a_page_of_users_is_in_login_order,
);

/// PostgreSQL restores in batches inside one transaction: thousands of users come back
/// whole, a key given twice keeps its last row, and a backup with one bad row writes nothing.
#[test]
fn a_large_restore_into_postgres_is_all_or_nothing() {
    let e = postgres();
    let n = 2500;
    let mut rows: Vec<(String, Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            let id = format!("bulk{i:05}");
            let json = serde_json::to_vec(&active(&id, i)).expect("json");
            ("users".to_string(), id.into_bytes(), json)
        })
        .collect();
    let twice = active("bulk00007", 999_999);
    rows.push((
        "users".into(),
        b"bulk00007".to_vec(),
        serde_json::to_vec(&twice).expect("json"),
    ));
    let mut bad = rows.clone();
    bad.push(("users".into(), b"broken".to_vec(), b"{not json".to_vec()));
    assert!(e.a.restore(&bad).is_err(), "a bad row refuses the backup");
    assert_eq!(e.a.user_count(), 0, "and nothing of it was written");

    e.a.restore(&rows).expect("restore");
    assert_eq!(e.b.user_count(), n as usize);
    let seven = e.b.get_user("bulk00007").expect("read").expect("present");
    assert_eq!(
        seven.value.token.last_step(),
        Some(999_999),
        "the last row wins"
    );
    let last = e.b.get_user("bulk02499").expect("read").expect("present");
    assert_eq!(last.value, active("bulk02499", 2499));
}
