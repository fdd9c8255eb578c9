//! The findings of the outside probe (SECURITY.md, "Findings fixed"), each through the
//! real binaries: memory at the production argon2 setting, renewal that told which user
//! IDs exist and could lock them, loose credential files, and the smaller edges.

use std::net::SocketAddr;
use std::time::Instant;

use otpd_tests::daemon::{Otpd, RADIUS_SECRET};
use otpd_tests::radius::{Client, ACCESS_ACCEPT};

/// Resident and peak resident size of a process, KiB (`VmRSS`, `VmHWM`).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn radius_addr(d: &Otpd) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], d.radius_port))
}

/// High: memory grew by hundreds of MiB over a few hundred logins at the default argon2id
/// setting (m=19 MiB) and stayed there. Expected: baseline plus one argon2 block set per
/// hashing slot (one per core), flat over thousands of logins and given back when idle.
/// `OTPD_RSS_LOGINS` sets the number of logins (default 2000).
#[test]
fn default_argon2_logins_keep_memory_flat() {
    let logins: usize = std::env::var("OTPD_RSS_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let d = Otpd::start("[password]\nargon2_memory_kib = 19456\nargon2_iterations = 2\n");
    const USERS: usize = 8;
    for i in 0..USERS {
        d.ctl_ok(
            &["user", "add", &format!("rss{i}"), "--password-stdin"],
            &format!("login-pw-{i}\n"),
        );
    }
    let pid = d.pid().expect("running");
    let (start, _) = rss_kib(pid);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    // One block set (19 MiB) per hashing slot, plus room for sled, the runtime and sockets.
    let bound = start + cores * 19 * 1024 + 24 * 1024;
    let addr = radius_addr(&d);
    let began = Instant::now();
    let mut curve = vec![("start".to_string(), start)];
    let mut done = 0;
    while done < logins {
        let round = (logins - done).min(1000);
        std::thread::scope(|s| {
            for t in 0..USERS {
                s.spawn(move || {
                    let c = Client::new(addr, RADIUS_SECRET);
                    for k in 0..round / USERS {
                        let r = c.login(k as u8, &format!("rss{t}"), &format!("login-pw-{t}"));
                        assert_eq!(r.code, ACCESS_ACCEPT, "login {k} of rss{t}");
                    }
                });
            }
        });
        done += round / USERS * USERS;
        let (now, peak) = rss_kib(pid);
        curve.push((format!("after {done} logins (peak {peak})"), now));
        assert!(
            peak <= bound,
            "peak RSS {peak} KiB after {done} logins exceeds {bound} KiB (start {start} KiB + {cores} x 19 MiB + 24 MiB); curve {curve:?}"
        );
    }
    let (idle, peak) = rss_kib(pid);
    curve.push(("idle".into(), idle));
    eprintln!(
        "RSS KiB over {done} default-setting logins in {:?}: {curve:?}, peak {peak}",
        began.elapsed()
    );
    assert!(peak <= bound, "peak {peak} KiB > bound {bound} KiB");
}
