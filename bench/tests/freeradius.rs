//! The load generator against a real FreeRADIUS 3.2 with rlm_totp, configured by the bench
//! harness: every request it builds (Message-Authenticator first, hidden password, valid
//! code) is accepted, every reply passes the Response Authenticator check, and a wrong
//! shared secret gets nothing back.

use std::time::Duration;

use otpd_bench::harness::{self, FreeRadius};
use otpd_bench::loadgen::{self, Options};
use otpd_bench::users;
use otpd_core::otp::OtpParams;

const SECRET: &str = "test-shared-secret-0123456789";

fn options(port: u16, secret: &str, requests: u64) -> Options {
    Options {
        target: format!("127.0.0.1:{port}").parse().expect("address"),
        secret: secret.as_bytes().to_vec(),
        first_user: 0,
        users: 20,
        concurrency: 4,
        duration: Some(Duration::from_secs(10)),
        requests: Some(requests),
        timeout: Duration::from_millis(300),
        retries: 1,
        otp: OtpParams {
            period: 30,
            window: 0,
            ..OtpParams::default()
        },
        replay_ok: true,
        password: users::PASSWORD.into(),
        nas_identifier: "otpd-bench-test".into(),
    }
}

#[test]
fn freeradius_accepts_what_the_load_generator_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = harness::free_udp_port();
    let raddb = FreeRadius::configure(
        dir.path(),
        std::path::Path::new("/etc/freeradius/3.0"),
        20,
        port,
        SECRET,
    )
    .expect("raddb (Debian package freeradius)");
    let _server = FreeRadius::start(&raddb, port).expect("freeradius starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let good = rt
        .block_on(loadgen::run(options(port, SECRET, 200)))
        .expect("run");
    assert_eq!(good.sent, 200, "{good:?}");
    assert_eq!(good.accepts, 200, "{good:?}");
    assert_eq!((good.lost, good.invalid_replies), (0, 0), "{good:?}");

    let wrong = rt
        .block_on(loadgen::run(options(port, "not-the-secret-0123456789", 3)))
        .expect("run");
    assert_eq!(wrong.accepts + wrong.rejects, 0, "{wrong:?}");
    assert_eq!(wrong.lost, 3, "{wrong:?}");
}
