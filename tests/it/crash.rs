//! Crash safety: otpd killed with SIGKILL in the middle of a login burst must, after a
//! restart, refuse every OTP it had answered Access-Accept, and have lost no user or token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otpd_testkit::daemon::{wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::oath::oathtool;
use otpd_testkit::radius::{Client, ACCESS_ACCEPT, ACCESS_REJECT};
use otpd_testkit::token::activate;

const ROUNDS: usize = 5;
const USERS_PER_ROUND: usize = 16;

#[test]
fn sigkill_during_a_login_burst_never_allows_a_replay() {
    let _heavy = otpd_testkit::serial::heavy();
    let mut d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let server = d.radius();
    let users: Vec<(String, String)> = (0..ROUNDS * USERS_PER_ROUND)
        .map(|i| {
            let login = format!("u{i:03}");
            let secret = activate(&d, &login, "pw");
            (login, secret)
        })
        .collect();
    let mut total_accepted = 0;
    for round in users.chunks(USERS_PER_ROUND) {
        // Codes are fixed before the burst so the replays after the restart use the same.
        let attempts: Vec<(String, String)> = round
            .iter()
            .map(|(login, secret)| (login.clone(), format!("pw{}", oathtool(secret, None))))
            .collect();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = attempts
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (login, pw))| {
                let accepted = accepted.clone();
                let answered = answered.clone();
                std::thread::spawn(move || {
                    let c = Client::new(server, RADIUS_SECRET);
                    let req = otpd_testkit::radius::Request::access(
                        i as u8,
                        &login,
                        &pw,
                        RADIUS_SECRET.as_bytes(),
                    );
                    c.send_raw(&req.encode(
                        otpd_testkit::radius::ACCESS_REQUEST,
                        RADIUS_SECRET.as_bytes(),
                        otpd_testkit::radius::Ma::Good,
                    ));
                    if let Some(raw) = c.recv_raw(Duration::from_secs(3)) {
                        let r = otpd_testkit::radius::verify_reply(
                            &raw,
                            &req,
                            RADIUS_SECRET.as_bytes(),
                        );
                        if r.code == ACCESS_ACCEPT {
                            accepted.lock().expect("lock").push((login, pw));
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        // Kill once about half the burst has been answered: the rest is in flight.
        wait_until("half the burst answered", Duration::from_secs(20), || {
            (answered.load(Ordering::SeqCst) >= USERS_PER_ROUND / 2).then_some(())
        });
        d.kill();
        for h in handles {
            h.join().expect("client thread");
        }
        d.restart();
        let accepted = accepted.lock().expect("lock").clone();
        assert!(
            !accepted.is_empty(),
            "some logins were accepted before the kill"
        );
        total_accepted += accepted.len();
        let c = Client::new(server, RADIUS_SECRET);
        for (i, (login, pw)) in accepted.iter().enumerate() {
            let r = c.login(i as u8, login, pw);
            assert_eq!(
                r.code, ACCESS_REJECT,
                "{login}: an OTP answered Accept before the crash was accepted again"
            );
        }
    }
    // Every user and token is intact.
    let list = d.ctl_ok(&["--json", "user", "list"], "");
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), ROUNDS * USERS_PER_ROUND);
    assert!(list.iter().all(|u| u["state"] == "active"), "{list:?}");
    eprintln!("{ROUNDS} kill -9 rounds, {total_accepted} accepted OTPs, none accepted again");
    assert!(d.stderr().contains("reason=otp_replayed"));
}
