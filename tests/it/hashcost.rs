//! Hash-cost poisoning (issue #27, row 5): an imported hash over the cost caps is refused
//! with its line, a stored one over them is refused at login without being run, hashes run
//! on the hashing threads (never on a reactor thread: `/healthz` answers while both
//! workers hash) and a stop does not wait for one.

use std::time::{Duration, Instant};

use otpd_testkit::daemon::{signal, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::http;
use otpd_testkit::radius::*;

/// bcrypt of "secret" at cost 14 (the ceiling), sha512-crypt of "secret" at 1 000 000
/// rounds (the ceiling; about 13 s a hash in the debug build, which does not optimise
/// sha-crypt).
const BCRYPT_14: &str = "$2b$14$AOiHAOiHAOiHAOiHAOiHAOjriElIkEDrKt68NxcvFTP.pqjzpp7bS";
const SHA512_1M: &str = "$6$rounds=1000000$anWODryuVPA1thoN$5HziSo5qf/E/H7tedNjwL1ZOqgAnkrwOm8irpcR8lNXf3GTYvcLDuL6l6ItcVfh0QlZL0b/LQvLmYUFrT/tnj0";
const SHA512_OF_SECRET: &str =
    "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `lines` as an import file in `d`'s folder and runs `otpctl user import` on it.
fn import(d: &Otpd, name: &str, lines: &[String]) -> std::process::Output {
    let file = d.dir.path().join(name);
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    d.otpctl(&["user", "import", file.to_str().expect("utf8")], "")
}

/// CPU seconds each thread of process `pid` has used so far, by thread id.
fn thread_cpu(pid: u32) -> Vec<(u32, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // After the name's closing parenthesis: state, then utime and stime are the
            // 12th and 13th fields, in clock ticks (100 a second).
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some((tid, ticks / 100.0))
        })
        .collect()
}

/// Waits until `n` threads of `pid` each used `secs` of CPU more than in `before`: hashes
/// under way (nothing else in an idle otpd burns CPU).
fn wait_busy(pid: u32, before: &[(u32, f64)], n: usize, secs: f64) {
    wait_until(
        "otpd's threads to be hashing",
        Duration::from_secs(20),
        || {
            let busy = thread_cpu(pid)
                .iter()
                .filter(|(tid, cpu)| {
                    let was = before.iter().find(|(t, _)| t == tid).map_or(0.0, |b| b.1);
                    cpu - was >= secs
                })
                .count();
            (busy >= n).then_some(())
        },
    );
}

/// Sends a login without waiting for its answer.
fn send_login(d: &Otpd, id: u8, user: &str, password: &str) -> Client {
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let req = Request::access(id, user, password, &c.secret);
    c.send_raw(&req.encode(ACCESS_REQUEST, &c.secret, Ma::Good));
    c
}

#[test]
fn imported_hashes_over_the_cost_caps_are_refused_with_their_line_and_nothing_is_written() {
    let d = Otpd::start("");
    let fake_bcrypt_31 = format!("$2b$31${}", "A".repeat(53));
    let out = import(
        &d,
        "bcrypt.csv",
        &[
            format!("u1,{SHA512_OF_SECRET},u1@example.jp"),
            format!("u2,{fake_bcrypt_31},u2@example.jp"),
        ],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(
        err.contains("bcrypt cost 31") && err.contains("max_bcrypt_cost"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "no user created");

    let rounds = SHA512_OF_SECRET.replacen("$6$", "$6$rounds=999999999$", 1);
    let out = import(
        &d,
        "sha.csv",
        &[
            format!("u1,{SHA512_OF_SECRET},"),
            "# a comment".into(),
            format!("u3,{rounds},"),
        ],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 3") && err.contains("rounds=999999999"),
        "{err}"
    );
    assert_eq!(d.ctl_ok(&["user", "list"], ""), "", "no user created");

    // At the ceilings, the same file shape imports.
    let out = import(
        &d,
        "ok.csv",
        &[format!("u1,{BCRYPT_14},"), format!("u2,{SHA512_1M},")],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));

    // A cap above the built-in ceiling is refused at config load.
    let (status, err) = Otpd::builder()
        .config("[password]\nmax_bcrypt_cost = 15\nmax_sha_crypt_rounds = 999999999\n")
        .unstarted()
        .run_to_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("password.max_bcrypt_cost") && err.contains("ceiling"),
        "{err}"
    );
    assert!(err.contains("password.max_sha_crypt_rounds"), "{err}");
}

/// A hash that was within the caps at import and is over them once the operator lowered a
/// cap: refused at once at login (never run), while both workers hash; `/healthz` answers.
#[test]
fn a_stored_hash_over_the_caps_is_refused_at_once_while_healthz_answers() {
    let _heavy = otpd_testkit::serial::heavy();
    let mut d = Otpd::start("");
    let out = import(
        &d,
        "users.csv",
        &[
            format!("poisoned,{BCRYPT_14},"),
            format!("slow1,{SHA512_1M},"),
            format!("slow2,{SHA512_1M},"),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    d.stop_clean();
    let config = std::fs::read_to_string(&d.config).expect("config");
    let lowered = config.replacen("[password]\n", "[password]\nmax_bcrypt_cost = 10\n", 1);
    assert_ne!(config, lowered, "the template has a [password] table");
    std::fs::write(&d.config, lowered).expect("write config");
    d.launch();
    let pid = d.pid().expect("running");

    // Two logins whose (capped, long) hashes take both workers.
    let before = thread_cpu(pid);
    let _slow = [
        send_login(&d, 1, "slow1", "wrong"),
        send_login(&d, 2, "slow2", "wrong"),
    ];
    wait_busy(pid, &before, 2, 0.2);

    let started = Instant::now();
    let health = http::get(d.http(), "/healthz");
    assert_eq!((health.status, health.text()), (200, "ok".to_string()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/healthz took {:?}",
        started.elapsed()
    );

    let client = Client::new(d.radius(), RADIUS_SECRET);
    for id in [10, 11] {
        let started = Instant::now();
        let reply = client.login(id, "poisoned", "secret");
        assert_eq!(
            reply.code, ACCESS_REJECT,
            "the right password is refused too"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered in {:?}",
            started.elapsed()
        );
    }
    let log = d.stderr();
    assert!(
        log.contains("user=poisoned") && log.contains("reason=hash_over_cap"),
        "{log}"
    );
    assert_eq!(
        log.matches("\"poisoned\" cannot log in").count(),
        1,
        "one operator error for two logins: {log}"
    );
    assert!(
        log.contains("bcrypt cost 14 is over the cap of 10"),
        "{log}"
    );
}

/// SIGTERM while a (capped) hash of many seconds runs: otpd exits within 2 s.
#[test]
fn sigterm_during_a_long_hash_exits_promptly() {
    let _heavy = otpd_testkit::serial::heavy();
    let mut d = Otpd::start("");
    let out = import(&d, "slow.csv", &[format!("slow,{SHA512_1M},")]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid = d.pid().expect("running");
    let before = thread_cpu(pid);
    let _login = send_login(&d, 1, "slow", "secret");
    wait_busy(pid, &before, 1, 0.3);
    let asked = Instant::now();
    signal(pid, "TERM");
    let status = d.wait_exit(Duration::from_secs(2));
    assert!(
        status.success(),
        "{status} after {:?}: {}",
        asked.elapsed(),
        d.stderr()
    );
}
