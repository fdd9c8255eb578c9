//! The bound server on 127.0.0.1 with real UDP sockets, and FreeRADIUS' radclient.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::super::events::DropReason;
use super::super::{RadiusError, RadiusServer, RadiusStatsHandle};
use super::*;

/// Deadline for a reply that must come; none of these tests waits for readiness.
const REPLY_WITHIN: Duration = Duration::from_secs(5);

struct Live {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RadiusError>>,
    mock: Arc<Mock>,
    stats: RadiusStatsHandle,
}

async fn start(cfg: RadiusConfig) -> Live {
    start_with(cfg, Arc::new(Mock::default())).await
}

async fn start_with(cfg: RadiusConfig, mock: Arc<Mock>) -> Live {
    let server = RadiusServer::bind(cfg, Arc::clone(&mock), Events::default().log())
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let stats = server.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Live {
        addr,
        stop,
        task,
        mock,
        stats,
    }
}

impl Live {
    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(REPLY_WITHIN, self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn retransmission_over_udp_gets_the_same_bytes() {
    let live = start(config()).await;
    let sock = udp().await;
    let request = Req::access("alice", "pw123456").bytes();
    sock.send_to(&request, live.addr).await.unwrap();
    let first = recv(&sock, REPLY_WITHIN).await.expect("a reply");
    assert_eq!(
        verify_reply(&first, &request, SECRET).get_code(),
        Code::AccessAccept
    );
    sock.send_to(&request, live.addr).await.unwrap();
    let again = recv(&sock, REPLY_WITHIN).await.expect("the cached reply");
    assert_eq!(first, again);
    assert_eq!(live.mock.calls(), 1);
    assert_eq!(live.stats.snapshot().resent_from_cache, 1);
    live.shutdown().await;
}

/// Polls `cond` until it holds, failing after the deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = crate::clock::instant() + REPLY_WITHIN;
    while !cond() {
        assert!(crate::clock::instant() < deadline, "timed out: {what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_while_the_handler_works_is_dropped() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let live = start_with(config(), Arc::new(Mock::gated(Arc::clone(&gate)))).await;
    let sock = udp().await;
    let request = Req::access("alice", "pw123456").bytes();
    sock.send_to(&request, live.addr).await.unwrap();
    eventually("handler called", || live.mock.calls() == 1).await;
    sock.send_to(&request, live.addr).await.unwrap();
    let stats = live.stats.clone();
    eventually("duplicate seen", || {
        stats.snapshot().dropped(DropReason::DuplicateInProgress) == 1
    })
    .await;
    gate.add_permits(1);
    let reply = recv(&sock, REPLY_WITHIN).await.expect("one reply");
    assert_eq!(
        verify_reply(&reply, &request, SECRET).get_code(),
        Code::AccessAccept
    );
    assert_eq!(live.mock.calls(), 1);
    live.shutdown().await;
}

#[tokio::test]
async fn reject_is_sent_after_the_delay_and_duplicates_meanwhile_are_dropped() {
    let mut cfg = config();
    cfg.reject_delay = Duration::from_millis(300);
    let live = start(cfg).await;
    let sock = udp().await;
    let request = Req::access("alice", "wrong").bytes();
    let started = std::time::Instant::now();
    sock.send_to(&request, live.addr).await.unwrap();
    sock.send_to(&request, live.addr).await.unwrap();
    let reply = recv(&sock, REPLY_WITHIN).await.expect("a reject");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        verify_reply(&reply, &request, SECRET).get_code(),
        Code::AccessReject
    );
    // After the delay the same request is answered from the cache at once.
    sock.send_to(&request, live.addr).await.unwrap();
    let again = recv(&sock, REPLY_WITHIN).await.expect("the cached reject");
    assert_eq!(reply, again);
    let stats = live.stats.snapshot();
    assert_eq!(stats.dropped(DropReason::DuplicateInProgress), 1);
    assert_eq!(stats.resent_from_cache, 1);
    assert_eq!(live.mock.calls(), 1);
    live.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reject_delay_is_measured_on_the_tokio_clock() {
    let mut cfg = config();
    cfg.reject_delay = Duration::from_secs(30);
    let live = start(cfg).await;
    let sock = udp().await;
    let real = std::time::Instant::now();
    let started = crate::clock::instant();
    let request = Req::access("alice", "wrong").bytes();
    sock.send_to(&request, live.addr).await.unwrap();
    let reply = recv(&sock, Duration::from_secs(600))
        .await
        .expect("a reject");
    assert_eq!(
        verify_reply(&reply, &request, SECRET).get_code(),
        Code::AccessReject
    );
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert!(
        real.elapsed() < Duration::from_secs(30),
        "the clock was virtual"
    );
    live.shutdown().await;
}

/// A damaged copy of a valid request (never the request itself): must be dropped.
fn damaged(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    loop {
        let p = damage(rng, valid);
        if p != valid {
            return p;
        }
    }
}

fn damage(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut p = valid.to_vec();
    match rng.gen_range(0..5) {
        0 => {
            let len = rng.gen_range(0..300);
            (0..len).map(|_| rng.gen()).collect()
        }
        1 => {
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..p.len());
                p[i] ^= rng.gen_range(1..=255u8);
            }
            p
        }
        2 => {
            p.truncate(rng.gen_range(0..p.len()));
            p
        }
        3 => {
            // Length field pointing past the datagram, or short of the attributes.
            let len: u16 = rng.gen_range(0..5000);
            if usize::from(len) == p.len() {
                p[2..4].copy_from_slice(&(len + 1).to_be_bytes());
            } else {
                p[2..4].copy_from_slice(&len.to_be_bytes());
            }
            p
        }
        _ => {
            // A broken attribute length inside the packet.
            p[21] = rng.gen_range(0..2);
            p
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_packets_then_a_valid_request_is_answered() {
    const BATCHES: usize = 50;
    const PER_BATCH: usize = 100;
    let live = start(config()).await;
    let sock = udp().await;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let valid = Req::access("alice", "pw123456").bytes();
    let mut ping = Req::status_server();
    for batch in 0..BATCHES {
        for _ in 0..PER_BATCH {
            sock.send_to(&damaged(&mut rng, &valid), live.addr)
                .await
                .unwrap();
        }
        // Pace the flood so the kernel buffer never overflows: the server answers a
        // Status-Server only after it has read the batch before it.
        ping.id = batch as u8;
        let request = ping.bytes();
        sock.send_to(&request, live.addr).await.unwrap();
        let reply = recv(&sock, REPLY_WITHIN)
            .await
            .expect("status-server answer");
        verify_reply(&reply, &request, SECRET);
    }
    let mut req = Req::access("alice", "pw123456");
    req.id = 250;
    let request = req.bytes();
    sock.send_to(&request, live.addr).await.unwrap();
    let reply = recv(&sock, REPLY_WITHIN)
        .await
        .expect("an answer after the flood");
    let p = verify_reply(&reply, &request, SECRET);
    assert_eq!(p.get_code(), Code::AccessAccept);
    assert_eq!(live.mock.calls(), 1);
    let stats = live.stats.snapshot();
    assert_eq!(stats.dropped_total(), (BATCHES * PER_BATCH) as u64);
    assert_eq!(stats.received, (BATCHES * (PER_BATCH + 1) + 1) as u64);
    assert_eq!(stats.in_flight, 0);
    live.shutdown().await;
}

/// Runs `radclient -x 127.0.0.1:PORT COMMAND SECRET` with `input` on stdin.
fn radclient(port: u16, command: &str, input: &str) -> String {
    let mut child = Command::new("radclient")
        .args(["-x", "-t", "3", "-r", "1"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(command)
        .arg(std::str::from_utf8(SECRET).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_verifies_accept_challenge_reject_and_status_server() {
    if Command::new("radclient").arg("-h").output().is_err() {
        eprintln!("SKIPPED: radclient (freeradius-utils) is not installed");
        return;
    }
    let live = start(config()).await;
    let port = live.addr.port();
    let cases = [
        ("pw123456", "Received Access-Accept", "welcome"),
        (
            "pw",
            "Received Access-Challenge",
            "Enter the one-time password",
        ),
        ("wrong", "Received Access-Reject", "denied"),
    ];
    for (password, expected, message) in cases {
        // radclient fills in Message-Authenticator = 0x00 and verifies both the Response
        // Authenticator and the Message-Authenticator of the reply.
        let input = format!(
            "User-Name = \"alice\", User-Password = \"{password}\", Message-Authenticator = 0x00\n"
        );
        let output = tokio::task::spawn_blocking(move || radclient(port, "auth", &input))
            .await
            .unwrap();
        assert!(output.contains(expected), "{output}");
        assert!(output.contains(message), "{output}");
        assert!(
            !output.to_lowercase().contains("invalid"),
            "radclient found a bad authenticator: {output}"
        );
    }
    assert_eq!(live.mock.calls(), 3);
    let seen = live.mock.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].secret, "pw123456",
        "PAP decoded as radclient encoded it"
    );
    live.shutdown().await;
}
