//! Against a real PostgreSQL: the schema is created once and versioned, a newer one is
//! refused, and what goes wrong is said without the password.

use std::time::Duration;

use otpd_store_postgres::{probe, PgStore, Settings, SslMode, SCHEMA_VERSION};
use otpd_testkit::postgres::Postgres;
use zeroize::Zeroizing;

fn settings(pg: &Postgres, url: String) -> Settings {
    Settings {
        url,
        password: Some(Zeroizing::new(pg.password().to_string())),
        sslmode: SslMode::Disable,
        ca_file: None,
        pool_size: 2,
        statement_timeout: Duration::from_secs(5),
    }
}

#[test]
fn nodes_starting_together_create_the_schema_once() {
    let pg = Postgres::start();
    let s = settings(&pg, pg.url());
    let before = probe(&s).expect("probe an empty database");
    assert_eq!(before.schema_version, None, "{before}");
    assert!(
        before.to_string().contains("no otpd schema yet"),
        "{before}"
    );

    let opened: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || PgStore::open(&s).map(|_| ()))
        })
        .collect();
    for o in opened {
        o.join().expect("thread").expect("open");
    }
    assert_eq!(
        pg.psql(
            "otpd",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version"
        ),
        (1..=SCHEMA_VERSION)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "each version recorded once"
    );
    let after = probe(&s).expect("probe");
    assert_eq!(after.schema_version, Some(SCHEMA_VERSION));
    assert_eq!(after.users, Some(0));
    assert!(
        after.server_version.starts_with(char::is_numeric),
        "{after}"
    );
    assert!(
        after
            .location
            .starts_with(&format!("127.0.0.1:{} otpd", pg.port())),
        "{after}"
    );
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_message() {
    let pg = Postgres::start();
    let s = settings(&pg, pg.url());
    drop(PgStore::open(&s).expect("open"));
    let newer = SCHEMA_VERSION + 1;
    pg.psql(
        "otpd",
        &format!("INSERT INTO schema_version (version) VALUES ({newer})"),
    );
    let Err(e) = PgStore::open(&s) else {
        panic!("a newer schema must be refused");
    };
    let e = e.to_string();
    assert!(
        e.contains(&format!("version {newer}")) && e.contains("upgrade"),
        "{e}"
    );
    let e = probe(&s)
        .expect_err("check-config refuses it too")
        .to_string();
    assert!(e.contains(&format!("version {newer}")), "{e}");
}

#[test]
fn connection_errors_name_the_server_and_never_the_password() {
    let pg = Postgres::start();
    let mut wrong = settings(&pg, pg.url());
    wrong.password = Some(Zeroizing::new("not-the-Password-42".into()));
    let e = probe(&wrong).expect_err("wrong password").to_string();
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("not-the-Password-42"), "{e}");

    let mut in_url = settings(&pg, pg.url().replace("otpd@", "otpd:url-Secret-7@"));
    in_url.password = None;
    let e = probe(&in_url)
        .expect_err("wrong password in the url")
        .to_string();
    assert!(!e.contains("url-Secret-7"), "{e}");

    let dead = settings(&pg, "postgresql://otpd@127.0.0.1:1/otpd".into());
    let e = probe(&dead).expect_err("nobody listens").to_string();
    assert!(
        e.contains("127.0.0.1:1 otpd") && e.contains("cannot connect"),
        "{e}"
    );
}
