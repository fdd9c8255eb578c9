//! A URL that lists several hosts with `target_session_attrs=read-write`, as a bank lists
//! its primary and its standby: the store skips a host that is down and a host that takes
//! no writes (here a server whose sessions are read-only, as a hot standby's are), and
//! writes on the one that takes them.

mod common;

use common::{active, settings};
use otpd_core::store::Store;
use otpd_store_postgres::{PgStore, Settings};
use otpd_testkit::daemon::free_tcp_port;
use otpd_testkit::postgres::Postgres;

#[test]
fn the_store_skips_a_host_that_is_down_and_one_that_takes_no_writes() {
    let read_only = Postgres::start();
    let primary = Postgres::start();
    // Every session of `otpd` on this server is read-only, as on a standby in recovery.
    read_only.psql(
        "postgres",
        "ALTER ROLE otpd SET default_transaction_read_only = on",
    );
    let down = free_tcp_port();
    let url = format!(
        "postgresql://otpd@127.0.0.1:{down},127.0.0.1:{},127.0.0.1:{}/otpd?target_session_attrs=read-write&connect_timeout=2",
        read_only.port(),
        primary.port()
    );
    // One password for the role on both servers, as a replicated pair has.
    read_only.psql(
        "postgres",
        &format!("ALTER ROLE otpd PASSWORD '{}'", primary.password()),
    );
    let store = PgStore::open(&Settings {
        url,
        pool_size: 2,
        ..settings(&primary)
    })
    .expect("open: the third host takes writes");
    assert!(store
        .swap_user("taro", None, Some(&active("taro", 10)))
        .expect("write"));
    let read = store.get_user("taro").expect("read").expect("present");
    assert_eq!(read.value, active("taro", 10));
    assert_eq!(
        primary.psql("otpd", "SELECT count(*) FROM users WHERE login_id = 'taro'"),
        "1",
        "the write is on the server that takes writes"
    );
    assert_eq!(
        read_only.psql("otpd", "SELECT to_regclass('users') IS NULL"),
        "t",
        "nothing was created on the read-only server"
    );
}
