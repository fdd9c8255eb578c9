//! Floods against the real otpd: more HTTP connections than the cap, an oversized body,
//! clients that send their headers too slowly, and thousands of malformed RADIUS packets
//! from several threads while valid requests go on. otpd must keep answering the valid
//! requests, keep its memory under a stated bound and keep its log readable.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::http;
use otpd_testkit::radius::*;

/// otpd's HTTP connection cap (`daemon/src/http/server.rs`).
const HTTP_MAX_CONNECTIONS: usize = 256;
/// otpd's time for a client to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The memory bound SECURITY.md states: otpd's peak resident set under these floods.
const RSS_BOUND_KIB: u64 = 128 * 1024;

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_kib(d: &Otpd, field: &str) -> u64 {
    let pid = d.pid().expect("otpd running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn healthz_ok(d: &Otpd) {
    let r = http::get(d.http(), "/healthz");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ok");
}

/// What reading from a held connection shows right now.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    Open,
    /// otpd closed it (EOF or reset), with whatever it sent first.
    Closed(Vec<u8>),
}

fn poll(s: &mut TcpStream) -> Held {
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Held::Closed(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return if got.is_empty() {
                    Held::Open
                } else {
                    Held::Closed(got)
                };
            }
            Err(_) => return Held::Closed(got),
        }
    }
}

#[test]
fn connections_beyond_the_cap_are_refused_and_healthz_answers_afterwards() {
    let _heavy = otpd_testkit::serial::heavy();
    // Every connection comes from 127.0.0.1: the per-source cap is lifted to see the global one.
    let d = Otpd::start("[http]\nmax_connections_per_source = 1000\n");
    healthz_ok(&d);
    let flood = HTTP_MAX_CONNECTIONS + 144;
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = (0..flood)
        .map(|_| TcpStream::connect(d.http()).expect("connect"))
        .collect();
    // otpd takes the first 256 and closes the rest at once.
    let mut closed = vec![false; flood];
    wait_until(
        "otpd to close the connections beyond its cap",
        Duration::from_secs(5),
        || {
            for (c, done) in conns.iter_mut().zip(closed.iter_mut()) {
                if !*done && poll(c) != Held::Open {
                    *done = true;
                }
            }
            (closed.iter().filter(|c| **c).count() >= flood - HTTP_MAX_CONNECTIONS).then_some(())
        },
    );
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the check must end before the header timeout frees the held ones"
    );
    // (The connection of the readiness check may still hold its slot for a moment.)
    let held = closed.iter().filter(|c| !**c).count();
    assert!(
        (HTTP_MAX_CONNECTIONS - 2..=HTTP_MAX_CONNECTIONS).contains(&held),
        "{held} connections held open, the cap is {HTTP_MAX_CONNECTIONS}"
    );
    // While the cap is full a newcomer is refused, not queued.
    let mut extra = TcpStream::connect(d.http()).expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok();
    let refused = wait_until(
        "the newcomer refused",
        Duration::from_secs(5),
        || match poll(&mut extra) {
            Held::Open => None,
            Held::Closed(bytes) => Some(bytes),
        },
    );
    assert!(refused.is_empty(), "{}", String::from_utf8_lossy(&refused));
    drop(conns);
    wait_until(
        "/healthz once the flood is gone",
        Duration::from_secs(10),
        || {
            let mut s = TcpStream::connect(d.http()).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).ok()?;
            out.starts_with(b"HTTP/1.1 200").then_some(())
        },
    );
    healthz_ok(&d);
    let log = d.stderr();
    let lines = log
        .lines()
        .filter(|l| l.contains("connections open"))
        .count();
    assert!(lines >= 1, "the refusals are logged: {log}");
    assert!(
        lines <= 3,
        "{} refused connections made {lines} log lines: refusals must be rate-limited",
        flood - HTTP_MAX_CONNECTIONS + 1
    );
}

/// Sends a request head and the body; returns the whole answer (otpd closes after it).
fn raw_exchange(d: &Otpd, head: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(d.http()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    // otpd may answer and close before the whole body is in: a failed write is fine.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(e) => panic!("no answer: {e}"),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    out
}

#[test]
fn an_oversized_body_is_refused_413_and_otpd_goes_on() {
    let _heavy = otpd_testkit::serial::heavy();
    let d = Otpd::start("");
    healthz_ok(&d);
    let limit = 16 * 1024;
    // Declared too large: refused before a byte of the body is read.
    let head = format!(
        "POST /api/v1/renew HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        limit + 1
    );
    let out = raw_exchange(&d, &head, b"");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    // Chunked, no length declared: cut off once the limit is passed.
    let chunk = vec![b'a'; limit + 1];
    let mut body = format!("{:x}\r\n", chunk.len()).into_bytes();
    body.extend_from_slice(&chunk);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = "POST /api/v1/renew HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let out = raw_exchange(&d, head, &body);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    // A page route answers 413 too, as a page.
    let form = vec![b'x'; 4 * limit];
    let r = http::request(
        d.http(),
        "POST",
        "/renew",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(r.status, 413);

    // Just under the limit is read and judged on its content.
    let ok_sized = format!(
        "{{\"service_id\":\"TEST-BANK\",\"user_id\":\"nobody\",\"otp\":\"123456\",\"pad\":\"{}\"}}",
        "p".repeat(limit - 100)
    );
    let r = http::request(
        d.http(),
        "POST",
        "/api/v1/renew",
        &[("Content-Type", "application/json")],
        ok_sized.as_bytes(),
    );
    assert_ne!(r.status, 413, "{}", r.text());
    healthz_ok(&d);
    assert!(d.pid().is_some());
}

#[test]
fn a_slow_client_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let _heavy = otpd_testkit::serial::heavy();
    let d = Otpd::start("");
    healthz_ok(&d);
    let addr = d.http();
    let started = Instant::now();
    // One sends half a request and holds it; one trickles a header a byte at a time.
    let mut half = TcpStream::connect(addr).expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("half");
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let t0 = Instant::now();
        let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut i = 0usize;
        loop {
            let byte = header.get(i).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).is_err() {
                return t0.elapsed();
            }
            i += 1;
            if poll(&mut s) != Held::Open {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(250));
            assert!(t0.elapsed() < Duration::from_secs(30), "never cut off");
        }
    });
    // Meanwhile everybody else is served promptly.
    let mut served = 0;
    let half_closed = loop {
        let t = Instant::now();
        healthz_ok(&d);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/healthz took {:?}",
            t.elapsed()
        );
        served += 1;
        if let Held::Closed(bytes) = poll(&mut half) {
            assert!(
                !bytes.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
        std::thread::sleep(Duration::from_millis(200));
    };
    let trickle_closed = trickler.join().expect("trickler");
    eprintln!(
        "half request closed after {half_closed:?}, trickler after {trickle_closed:?}, {served} requests served meanwhile"
    );
    for t in [half_closed, trickle_closed] {
        assert!(
            t >= HEADER_TIMEOUT - Duration::from_secs(1)
                && t <= HEADER_TIMEOUT + Duration::from_secs(3),
            "cut off after {t:?}, expected about {HEADER_TIMEOUT:?}"
        );
    }
    assert!(served >= 10, "{served}");
}

/// One malformed or unauthenticated datagram of many kinds, from a seeded generator.
fn junk(seed: &mut u64, good: &[u8], i: usize) -> Vec<u8> {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let s = *seed;
    let mut p = good.to_vec();
    match i % 7 {
        0 => p.truncate((s % 20) as usize),
        1 => {
            let at = (s as usize) % p.len();
            p[at] ^= 0x5a;
        }
        2 => p[2..4].copy_from_slice(&4096u16.to_be_bytes()),
        3 => p = s.to_be_bytes().repeat(1 + (s % 500) as usize),
        // An Access-Accept sent to the server.
        4 => p[0] = ACCESS_ACCEPT,
        // No Message-Authenticator where one is required.
        5 => {
            p = Request::access(1, "flood", "x", RADIUS_SECRET.as_bytes()).encode(
                ACCESS_REQUEST,
                RADIUS_SECRET.as_bytes(),
                Ma::Missing,
            )
        }
        // Signed with the wrong secret.
        _ => {
            p = Request::access(2, "flood", "x", b"not-the-secret").encode(
                ACCESS_REQUEST,
                b"not-the-secret",
                Ma::Good,
            )
        }
    }
    p
}

/// Sends `req` and waits for its answer, retransmitting it byte for byte (as a NAS does)
/// when a datagram is lost in the flood. Returns the reply and the transmissions needed.
fn login_through_flood(c: &Client, req: &Request) -> (Reply, usize) {
    let bytes = req.encode(ACCESS_REQUEST, &c.secret, Ma::Good);
    for attempt in 1..=10 {
        c.send_raw(&bytes);
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match c.recv_raw(left) {
                Some(raw) if raw.get(1) == Some(&req.id) => {
                    return (verify_reply(&raw, req, &c.secret), attempt)
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    panic!("request {} never answered through the flood", req.id);
}

#[test]
fn malformed_radius_floods_from_many_threads_leave_every_valid_request_answered() {
    let _heavy = otpd_testkit::serial::heavy();
    let d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    let server = d.radius();
    // Warm up: the first login allocates what every later one reuses.
    let c = Client::new(server, RADIUS_SECRET);
    assert_eq!(c.login(0, "taro", "login-pw").code, ACCESS_ACCEPT);
    let rss_before = proc_kib(&d, "VmRSS");

    const FLOODERS: usize = 4;
    const PER_FLOODER: usize = 3000;
    const VALID_THREADS: usize = 2;
    const VALID_PER_THREAD: usize = 60;
    let go = Arc::new(Barrier::new(FLOODERS + VALID_THREADS));
    let sent = Arc::new(AtomicUsize::new(0));
    let good = Request::access(9, "flood", "x", RADIUS_SECRET.as_bytes()).encode(
        ACCESS_REQUEST,
        RADIUS_SECRET.as_bytes(),
        Ma::Good,
    );
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|t| {
            let (go, sent, good) = (go.clone(), sent.clone(), good.clone());
            std::thread::spawn(move || {
                // Half the threads look like an unknown NAS (127.0.0.2).
                let local = if t % 2 == 0 {
                    "127.0.0.1:0"
                } else {
                    "127.0.0.2:0"
                };
                let c = Client::bound(local, server, RADIUS_SECRET);
                let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (t as u64 + 1);
                go.wait();
                for i in 0..PER_FLOODER {
                    c.send_raw(&junk(&mut seed, &good, i));
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let valid: Vec<_> = (0..VALID_THREADS)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                let c = Client::new(server, RADIUS_SECRET);
                go.wait();
                let mut transmissions = 0;
                for i in 0..VALID_PER_THREAD {
                    let req = Request::access(i as u8, "taro", "login-pw", &c.secret);
                    let (reply, sends) = login_through_flood(&c, &req);
                    assert_eq!(reply.code, ACCESS_ACCEPT, "valid request {i}");
                    transmissions += sends;
                }
                transmissions
            })
        })
        .collect();
    for f in flooders {
        f.join().expect("flooder");
    }
    let transmissions: usize = valid.into_iter().map(|v| v.join().expect("valid")).sum();
    let answered = VALID_THREADS * VALID_PER_THREAD;
    // A last one after the flood, first time.
    assert_eq!(c.login(1, "taro", "login-pw").code, ACCESS_ACCEPT);

    let rss_after = proc_kib(&d, "VmRSS");
    let hwm = proc_kib(&d, "VmHWM");
    let junk_sent = sent.load(Ordering::Relaxed);
    let log = d.stderr();
    let drop_lines = log.lines().filter(|l| l.contains("radius drop")).count();
    eprintln!(
        "{junk_sent} junk datagrams from {FLOODERS} threads; {answered} valid requests all answered ({transmissions} transmissions); RSS {rss_before} KiB before, {rss_after} KiB after, peak {hwm} KiB; {drop_lines} drop lines"
    );
    assert_eq!(junk_sent, FLOODERS * PER_FLOODER);
    assert!(
        hwm < RSS_BOUND_KIB,
        "otpd's peak RSS {hwm} KiB is over the stated bound {RSS_BOUND_KIB} KiB"
    );
    assert!(
        (1..=30).contains(&drop_lines),
        "{drop_lines} drop lines for {junk_sent} drops: the drop log must be rate-limited"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The flood locked nobody out and left no trace in the user's record.
    let u = d.show("taro");
    assert_eq!(u["locked"], false, "{u}");
}

/// Whether otpd has closed `s` (EOF or reset), without waiting.
fn closed_by_otpd(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    match (&*s).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// RadSec (`[radius.tls]`): idle TCP connections from an address outside every client's
/// network, and from another gateway's network, leave a configured gateway its way in.
#[test]
fn idle_tcp_floods_do_not_lock_a_radsec_gateway_out() {
    use otpd_testkit::radsec::{connect_from, free_port, Pki};
    use std::net::{Ipv4Addr, SocketAddr};
    /// `[radius.tls]` defaults: the shared and the reserved slots, and one source's cap.
    const MAX: usize = 64;
    const RESERVED: usize = 4;
    const PER_SOURCE: usize = 16;
    let _heavy = otpd_testkit::serial::heavy();
    let pki = Pki::new();
    let port = free_port();
    let d = Otpd::start(&format!(
        "{}[[radius.tls.clients]]\nname = \"branch-gw\"\ncertificate = \"branch.test\"\naddress = \"127.0.0.8/29\"\n",
        pki.otpd_config(port)
    ));
    let tls: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = Instant::now();
    let from = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let open = |n: usize, src: Ipv4Addr| -> Vec<TcpStream> {
        (0..n)
            .map(|_| connect_from(src, tls).expect("connect"))
            .collect()
    };
    // 80 from 127.0.0.2, no client's address: each closed before any TLS.
    let strangers = open(80, from(2));
    // 20 from each address of the branch's /29: 16 from one address at most, and the
    // branch fills the shared slots and its own reserved ones, never the proxy's.
    let branch: Vec<Vec<TcpStream>> = (8..16).map(|n| open(20, from(n))).collect();
    let branch_total = 8 * 20;
    let held_by_branch = MAX - RESERVED;
    wait_until(
        "otpd to close the strangers and what the branch may not hold",
        Duration::from_secs(5),
        || {
            let strangers_closed = strangers.iter().filter(|s| closed_by_otpd(s)).count();
            let branch_closed = branch
                .iter()
                .flatten()
                .filter(|s| closed_by_otpd(s))
                .count();
            (strangers_closed == strangers.len() && branch_closed >= branch_total - held_by_branch)
                .then_some(())
        },
    );
    let held: Vec<usize> = branch
        .iter()
        .map(|conns| conns.iter().filter(|s| !closed_by_otpd(s)).count())
        .collect();
    assert_eq!(held[0], PER_SOURCE, "one source's cap: {held:?}");
    assert_eq!(held.iter().sum::<usize>(), held_by_branch, "{held:?}");

    // The proxy (127.0.0.1) completes a handshake and is answered over it.
    let mut proxy = pki.s_client(port, Some("proxy.test-ca"), true);
    let status = Request::new(5).encode(STATUS_SERVER, b"radsec", Ma::Good);
    proxy
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(&status)
        .expect("send");
    let mut reply = [0u8; 20];
    let answered = proxy
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut reply);
    let _ = proxy.kill();
    let _ = proxy.wait();
    let log = d.stderr();
    assert!(answered.is_ok(), "the proxy was answered: {log}");
    assert_eq!((reply[0], reply[1]), (ACCESS_ACCEPT, 5), "Status-Server");
    // ...while the branch's connections were all still held (no handshake timeout yet).
    let still: usize = branch
        .iter()
        .flatten()
        .filter(|s| !closed_by_otpd(s))
        .count();
    assert_eq!(still, held_by_branch);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "before the handshake timeout"
    );
    assert!(log.contains("reason=unknown_address"), "{log}");
    assert!(log.contains("reason=too_many_from_source"), "{log}");
    assert_eq!(
        log.matches("reason=unknown_address").count(),
        1,
        "80 refusals, one line: {log}"
    );
}

/// A flood of OTP-menu sign-ins (each an argon2id hash, from as many connections as the
/// flood likes, the HTTP rate limits opened wide as for a distributed one) does not delay a
/// clean customer's RADIUS logins: sign-ins wait below them, in a bounded line of their
/// own, and what does not fit is refused at once.
#[test]
fn a_flood_of_menu_sign_ins_does_not_delay_radius_customers() {
    let _heavy = otpd_testkit::serial::heavy();
    const FLOODERS: usize = 64;
    let d = Otpd::start(
        "[password]\nargon2_memory_kib = 65536\nargon2_iterations = 2\n\
         [http]\ncustomer_rate = 100000.0\ncustomer_burst = 100000\n\
         customer_rate_total = 100000.0\ncustomer_burst_total = 100000\n",
    );
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    let client = Client::new(d.radius(), RADIUS_SECRET);
    assert_eq!(client.login(1, "taro", "login-pw").code, ACCESS_ACCEPT);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let refused_at_once = Arc::new(AtomicUsize::new(0));
    let http_addr = d.http();
    let flood: Vec<_> = (0..FLOODERS)
        .map(|n| {
            let (stop, answered, refused) =
                (stop.clone(), answered.clone(), refused_at_once.clone());
            std::thread::spawn(move || {
                let body =
                    serde_json::json!({"login_id": format!("nobody{n}"), "password": "guess"});
                while !stop.load(Ordering::Relaxed) {
                    let r = http::post_json(http_addr, "/api/v1/my/sign-in", &body);
                    match r.status {
                        503 | 429 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => answered.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    wait_until("the flood to be hashing", Duration::from_secs(10), || {
        (answered.load(Ordering::Relaxed) >= 16).then_some(())
    });

    let mut slowest = Duration::ZERO;
    for id in 2..12u8 {
        let started = Instant::now();
        let reply = client.login(id, "taro", "login-pw");
        assert_eq!(reply.code, ACCESS_ACCEPT, "login {id}");
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().expect("flooder");
    }
    let (answered, refused) = (
        answered.load(Ordering::Relaxed),
        refused_at_once.load(Ordering::Relaxed),
    );
    assert!(
        slowest < Duration::from_millis(800),
        "slowest RADIUS login {slowest:?} during {answered} sign-ins answered, {refused} refused"
    );
    assert!(
        refused > 0,
        "the sign-ins' line is bounded: {answered} answered"
    );
    assert_eq!(
        http::get(d.http(), "/healthz").status,
        200,
        "otpd still answers"
    );
}

/// The value of `series` on a metrics page.
fn series_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{page}"))
}

/// Row 11 of issue 27: parallel scrapes share one reading of the store (it reads every
/// user), the metrics listener closes connections beyond its cap at once and a client
/// that does not finish its headers at its header timeout, and logins go on meanwhile.
#[test]
fn metrics_scrapes_share_one_sample_and_slow_or_extra_connections_are_closed() {
    /// The metrics listener's connection cap and header timeout (`daemon/src/metrics.rs`).
    const METRICS_MAX_CONNECTIONS: usize = 16;
    const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let port = otpd_testkit::daemon::free_tcp_port();
    let d = Otpd::start(&format!(
        "[radius]\nreject_delay_ms = 0\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    // 12 scrapers, 4 scrapes each, while a gateway logs in.
    let scrapers: Vec<_> = (0..12)
        .map(|_| {
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| http::get(metrics, "/metrics"))
                    .map(|r| (r.status, r.text()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let c = Client::new(d.radius(), RADIUS_SECRET);
    for id in 0..5 {
        assert_eq!(c.login(id, "taro", "login-pw").code, ACCESS_ACCEPT);
    }
    let pages: Vec<(u16, String)> = scrapers
        .into_iter()
        .flat_map(|t| t.join().expect("scraper"))
        .collect();
    assert!(
        pages.iter().all(|(s, _)| *s == 200),
        "every scrape answered"
    );
    let last = http::get(metrics, "/metrics").text();
    assert_eq!(
        series_value(&last, "otpd_metrics_samples_total"),
        1.0,
        "49 scrapes within sample_seconds read the store once:\n{last}"
    );
    assert_eq!(
        series_value(&last, r#"otpd_users{state="unregistered"}"#),
        1.0
    );

    // A client that sends part of its headers and then nothing is cut off.
    let started = Instant::now();
    let mut slow = TcpStream::connect(metrics).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    // Beyond the cap, idle connections are closed at once.
    let idle: Vec<TcpStream> = (0..METRICS_MAX_CONNECTIONS + 4)
        .map(|_| TcpStream::connect(metrics).expect("connect"))
        .collect();
    wait_until(
        "the connections beyond the cap closed",
        Duration::from_secs(3),
        || {
            let closed = idle.iter().filter(|s| closed_by_otpd(s)).count();
            (closed >= 5).then_some(())
        },
    );
    assert!(
        started.elapsed() < METRICS_HEADER_TIMEOUT,
        "closed at once, not at the timeout"
    );
    wait_until(
        "otpd to close the slow client",
        METRICS_HEADER_TIMEOUT + Duration::from_secs(5),
        || poll(&mut slow).ne(&Held::Open).then_some(()),
    );
    assert!(started.elapsed() >= METRICS_HEADER_TIMEOUT - Duration::from_millis(500));
    drop(idle);
    assert_eq!(http::get(metrics, "/metrics").status, 200, "served again");
}

/// Row 13 of issue 27: one source cannot take every HTTP connection slot: beyond its cap
/// (128 by default) its connections are closed at once, while another source is served.
#[test]
fn one_source_cannot_take_every_http_connection() {
    const PER_SOURCE: usize = 128;
    let d = Otpd::start("");
    let flood = PER_SOURCE + 16;
    let from = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let started = Instant::now();
    let conns: Vec<TcpStream> = (0..flood)
        .map(|_| otpd_testkit::radsec::connect_from(from, d.http()).expect("connect"))
        .collect();
    wait_until(
        "otpd to close the connections beyond the per-source cap",
        Duration::from_secs(5),
        || {
            let closed = conns.iter().filter(|s| closed_by_otpd(s)).count();
            (closed >= flood - PER_SOURCE).then_some(())
        },
    );
    let held = conns.iter().filter(|s| !closed_by_otpd(s)).count();
    assert_eq!(held, PER_SOURCE);
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "before the header timeout"
    );
    healthz_ok(&d);
    let log = d.stderr();
    assert!(log.contains("connections open from one source"), "{log}");
}

/// Menu sign-ins wait in their source's own room: a flood from one address (forwarded by
/// a trusted proxy) is refused 429 with `Retry-After` once its room is full, never 503,
/// and a customer at another address still signs in.
#[test]
fn one_sources_sign_in_flood_is_refused_429_while_another_source_signs_in() {
    let _heavy = otpd_testkit::serial::heavy();
    const FLOODERS: usize = 32;
    let d = Otpd::start(
        "[password]\nargon2_memory_kib = 65536\nargon2_iterations = 2\n\
         [http]\ncustomer_rate = 100000.0\ncustomer_burst = 100000\n\
         customer_rate_total = 100000.0\ncustomer_burst_total = 100000\n\
         trusted_proxies = [\"127.0.0.1\", \"::1\"]\n",
    );
    d.ctl_ok(&["user", "add", "hanako", "--password-stdin"], "login-pw\n");
    let sign_in = |from: &str, login: &str, password: &str| {
        let body = serde_json::json!({"login_id": login, "password": password});
        let body = serde_json::to_vec(&body).expect("json");
        http::request(
            d.http(),
            "POST",
            "/api/v1/my/sign-in",
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", from),
            ],
            &body,
        )
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (answered, limited, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let http_addr = d.http();
    let flood: Vec<_> = (0..FLOODERS)
        .map(|n| {
            let (stop, answered, limited, other) = (
                stop.clone(),
                answered.clone(),
                limited.clone(),
                other.clone(),
            );
            std::thread::spawn(move || {
                let body =
                    serde_json::json!({"login_id": format!("nobody{n}"), "password": "guess"});
                let body = serde_json::to_vec(&body).expect("json");
                while !stop.load(Ordering::Relaxed) {
                    let r = http::request(
                        http_addr,
                        "POST",
                        "/api/v1/my/sign-in",
                        &[
                            ("Content-Type", "application/json"),
                            ("X-Forwarded-For", "203.0.113.7"),
                        ],
                        &body,
                    );
                    match (r.status, r.header("retry-after")) {
                        (429, Some("1")) => limited.fetch_add(1, Ordering::Relaxed),
                        (401, _) => answered.fetch_add(1, Ordering::Relaxed),
                        (status, retry) => {
                            let seen = format!("{status} retry-after={retry:?} {}", r.text());
                            other.lock().expect("lock").push(seen);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    wait_until(
        "the flood to fill its room",
        Duration::from_secs(20),
        || {
            (limited.load(Ordering::Relaxed) >= 8 && answered.load(Ordering::Relaxed) >= 2)
                .then_some(())
        },
    );
    let mut customer = Vec::new();
    for _ in 0..3 {
        customer.push(sign_in("198.51.100.20", "hanako", "login-pw").status);
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().expect("flooder");
    }
    assert_eq!(customer, [200, 200, 200], "another source signs in");
    let other = other.lock().expect("lock");
    assert!(
        other.is_empty(),
        "flood answers besides 401 and 429: {other:?}"
    );
    // The flood's room was full, not the whole line: its refusals are the source's.
    assert_eq!(sign_in("203.0.113.7", "hanako", "login-pw").status, 200);
}
