//! TLS to a real PostgreSQL, each `sslmode` with libpq's meaning: the certificate's chain
//! and name are checked as the mode says, and a server that fails the check is refused
//! before any password is sent.

use std::time::Duration;

use otpd_store_postgres::{probe, PgStore, Settings, SslMode};
use otpd_testkit::postgres::Postgres;
use otpd_testkit::radsec::Pki;
use zeroize::Zeroizing;

fn settings(pg: &Postgres, sslmode: SslMode, ca: Option<&str>, pki: &Pki) -> Settings {
    Settings {
        url: pg.url(),
        password: Some(Zeroizing::new(pg.password().to_string())),
        sslmode,
        ca_file: ca.map(|c| pki.path(c)),
        pool_size: 1,
        statement_timeout: Duration::from_secs(5),
    }
}

/// Sessions the server sees encrypted.
fn encrypted_sessions(pg: &Postgres) -> usize {
    pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.usename = 'otpd'",
    )
    .parse()
    .expect("a count")
}

#[test]
fn verify_full_checks_the_chain_and_the_name() {
    let pki = Pki::new();
    // SAN DNS:otpd.test, IP:127.0.0.1, signed by `ca`.
    let pg = Postgres::start_tls(&pki.path("otpd.test-ca.pem"), &pki.path("otpd.test-ca.key"));
    let store = PgStore::open(&settings(&pg, SslMode::VerifyFull, Some("ca.pem"), &pki))
        .expect("verify-full against the right CA");
    assert_eq!(
        encrypted_sessions(&pg),
        1,
        "the pooled connection is encrypted"
    );
    drop(store);

    let e = probe(&settings(
        &pg,
        SslMode::VerifyFull,
        Some("rogue-ca.pem"),
        &pki,
    ))
    .expect_err("another CA's trust is refused")
    .to_string();
    println!("refused: {e}");
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
    assert!(!e.contains(pg.password()), "{e}");

    for mode in [SslMode::Require, SslMode::Prefer] {
        probe(&settings(&pg, mode, None, &pki)).expect("encrypted without a check");
    }
    let e = probe(&settings(&pg, SslMode::Require, Some("rogue-ca.pem"), &pki))
        .expect_err("require with a CA checks the chain, as libpq does");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_name() {
    let pki = Pki::new();
    // SAN DNS:proxy.test only: signed by `ca`, but not a name of 127.0.0.1.
    let pg = Postgres::start_tls(
        &pki.path("proxy.test-ca.pem"),
        &pki.path("proxy.test-ca.key"),
    );
    probe(&settings(&pg, SslMode::VerifyCa, Some("ca.pem"), &pki)).expect("verify-ca");
    let e = probe(&settings(&pg, SslMode::VerifyFull, Some("ca.pem"), &pki))
        .expect_err("the name is wrong")
        .to_string();
    assert!(e.contains("certificate"), "{e}");
    let e = probe(&settings(
        &pg,
        SslMode::VerifyCa,
        Some("rogue-ca.pem"),
        &pki,
    ))
    .expect_err("the chain is wrong")
    .to_string();
    assert!(e.contains("certificate"), "{e}");
}

#[test]
fn disable_stays_in_clear_and_verify_needs_a_ca() {
    let pki = Pki::new();
    let pg = Postgres::start_tls(&pki.path("otpd.test-ca.pem"), &pki.path("otpd.test-ca.key"));
    let store = PgStore::open(&settings(&pg, SslMode::Disable, None, &pki)).expect("plain");
    assert_eq!(encrypted_sessions(&pg), 0);
    drop(store);
    let e = probe(&settings(&pg, SslMode::VerifyFull, None, &pki))
        .expect_err("no CA to verify against")
        .to_string();
    assert!(e.contains("ca_file"), "{e}");
}
