//! A password spray through the bank's one gateway at well above the node's hashing
//! capacity, at the production argon2id cost: wrong passwords (and six digits) for stored
//! IDs, the customers' among them (one guess each, so each has a failure on record), and
//! for IDs the store does not hold. Meanwhile the customers log in with password + OTP
//! through the same gateway: every one must be accepted, and quickly.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd_core::password::HashParams;
use otpd_testkit::daemon::{Otpd, RADIUS_SECRET};
use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::radius::*;
use otpd_testkit::token::activate;

/// Customers, each logging in twice (this step's code, then the next step's).
const CUSTOMERS: usize = 20;
/// Stored users the spray guesses at, each once: their record is clean when it arrives.
const SPRAYED_USERS: usize = 1500;
/// The spray's rate over the measured hashing capacity.
const SPRAY_FACTOR: f64 = 1.5;
/// The spray runs this long before the first customer logs in.
const LEAD: Duration = Duration::from_secs(2);
/// Between two customers' first logins (the second round follows the same schedule).
const CUSTOMER_GAP: Duration = Duration::from_millis(250);

/// What this machine hashes at the production setting with every core busy, a second.
fn hashing_capacity() -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 6;
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    HashParams::default().hash("capacity probe").expect("hash");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("hashing thread");
    }
    (cores * per_thread) as f64 / started.elapsed().as_secs_f64()
}

/// An open-loop sprayer on one socket: sends on schedule whatever comes back, counts the
/// answers on a second thread.
struct Sprayer {
    sent: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sprayer {
    /// Sprays at `rate` for `duration`: every other guess names the next of `stored`
    /// (each once), the others IDs the store does not hold.
    fn start(
        server: std::net::SocketAddr,
        rate: f64,
        duration: Duration,
        stored: Vec<String>,
    ) -> Sprayer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let recv = sock.try_clone().expect("clone");
        let (sent, answered, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let total = (rate * duration.as_secs_f64()) as u64;
        let sender = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                for i in 0..total {
                    let user = if i % 2 == 0 {
                        stored[(i / 2) as usize % stored.len()].clone()
                    } else {
                        format!("ghost{i:06}")
                    };
                    let guess = format!("Spray-Guess-2024{:06}", i % 1_000_000);
                    let req = Request::access(i as u8, &user, &guess, RADIUS_SECRET.as_bytes());
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    // The spray's schedule (an open loop), not a wait for readiness.
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let bytes = req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Good);
                    if sock.send_to(&bytes, server).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let receiver = {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if recv.recv(&mut buf).is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Sprayer {
            sent,
            answered,
            stop,
            threads: vec![sender, receiver],
        }
    }

    /// Waits for the schedule to end, stops counting; returns (sent, answered).
    fn finish(mut self) -> (u64, u64) {
        let sender = self.threads.remove(0);
        sender.join().expect("sprayer");
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("receiver");
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
        )
    }
}

/// The value at quantile `q` of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn under_a_spray_above_hashing_capacity_every_customer_login_is_accepted_within_a_second() {
    let _heavy = otpd_testkit::serial::heavy();
    let capacity = hashing_capacity();
    let rate = SPRAY_FACTOR * capacity;
    let d = Otpd::start(
        "[radius]\nreject_delay_ms = 1000\n\n[password]\nargon2_memory_kib = 19456\nargon2_iterations = 2\n",
    );
    // The sprayed stored users, at the production cost (verifying a guess costs a hash).
    let hash = HashParams::default()
        .hash("their-own-password")
        .expect("hash");
    let mut lines = vec!["login_id,password_hash,email".to_string()];
    lines.extend((0..SPRAYED_USERS).map(|i| format!("sprayed{i:05},{hash},s{i}@example.jp")));
    let file = d.dir.path().join("sprayed.csv");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    d.ctl_ok(&["user", "import", file.to_str().expect("utf8")], "");
    // The customers: tokens set up and in use, a clean record.
    let customers: Vec<(String, String)> = std::thread::scope(|s| {
        let d = &d;
        let parts: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    (0..CUSTOMERS)
                        .filter(|i| i % 4 == t)
                        .map(|i| {
                            let login = format!("customer{i:02}");
                            let secret = activate(d, &login, "customer-pw");
                            (login, secret)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("setup"))
            .collect()
    });

    let rounds = 2;
    let customer_window = CUSTOMER_GAP * (CUSTOMERS * rounds) as u32;
    let spray_for = LEAD + customer_window + Duration::from_secs(1);
    // The customers are guessed at first, before they log in.
    let stored: Vec<String> = customers
        .iter()
        .map(|c| c.0.clone())
        .chain((0..SPRAYED_USERS).map(|i| format!("sprayed{i:05}")))
        .collect();
    let sprayer = Sprayer::start(d.radius(), rate, spray_for, stored);
    let started = Instant::now();
    let server = d.radius();
    let results: Vec<(String, u8, Duration)> = std::thread::scope(|s| {
        let threads: Vec<_> = customers
            .iter()
            .enumerate()
            .map(|(k, (login, secret))| {
                s.spawn(move || {
                    let c = Client::new(server, RADIUS_SECRET);
                    let mut out = Vec::new();
                    for round in 0..rounds {
                        let slot = round * CUSTOMERS + k;
                        let due = started + LEAD + CUSTOMER_GAP * slot as u32;
                        // The customers' schedule within the spray, not a readiness wait.
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        // This step's code first, then the next step's: each is spent once.
                        let code = oathtool(secret, Some(now() + 60 * round as i64));
                        let req = Request::access(
                            slot as u8,
                            login,
                            &format!("customer-pw{code}"),
                            RADIUS_SECRET.as_bytes(),
                        );
                        let t = Instant::now();
                        let reply = c.exchange(&req);
                        out.push((login.clone(), reply.code, t.elapsed()));
                    }
                    out
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("customer"))
            .collect()
    });
    let (sent, answered) = sprayer.finish();

    let log = d.stderr();
    let overflowed = log
        .lines()
        .filter(|l| l.contains("reason=overloaded") || l.contains("reason=client_rate_limited"))
        .count();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.2).collect();
    latencies.sort();
    let p50 = quantile(&latencies, 0.5);
    let p99 = quantile(&latencies, 0.99);
    let accepted = results.iter().filter(|r| r.1 == ACCESS_ACCEPT).count();
    let slowest: Vec<u128> = latencies
        .iter()
        .rev()
        .take(5)
        .map(Duration::as_millis)
        .collect();
    eprintln!(
        "hashing capacity {capacity:.1}/s; spray {rate:.1}/s for {spray_for:?}: sent {sent}, answered {answered}, {overflowed} refused unhashed; customers {accepted}/{} accepted, p50 {p50:?}, p99 {p99:?}, slowest {slowest:?} ms",
        results.len()
    );
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.1 != ACCESS_ACCEPT)
        .map(|r| (&r.0, r.1))
        .collect();
    assert!(refused.is_empty(), "customers refused: {refused:?}");
    assert_eq!(results.len(), CUSTOMERS * rounds);
    assert!(
        p99 < Duration::from_secs(1),
        "customer p99 {p99:?} (p50 {p50:?})"
    );
    // The spray really was above capacity: work was refused without a hash.
    assert!(
        sent as f64 >= 0.9 * rate * spray_for.as_secs_f64(),
        "the sprayer kept its rate: {sent}"
    );
    assert!(
        overflowed > 0,
        "no request was refused for lack of a worker"
    );
    assert!(!log.contains("panicked"), "{log}");
    for (login, _) in &customers {
        let guessed = format!("user=\"{login}\"");
        assert!(
            log.lines()
                .any(|l| l.contains(&guessed) && l.contains("reason=bad_password")),
            "the spray's guess at {login} was evaluated and counted"
        );
        assert_eq!(
            d.show(login)["failures"],
            0,
            "{login}: the login reset the count"
        );
    }
}
