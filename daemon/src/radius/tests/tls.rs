//! A RADIUS-over-TLS connection's packet loop, over an in-memory stream (the handshake is
//! rustls' and tested through the binary).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::super::clients::Client;
use super::super::tls::{serve_stream, Refusal, Refusals, Slot, Slots, RADSEC_SECRET};
use super::*;

fn radsec_client() -> Arc<Client> {
    Arc::new(Client {
        name: Arc::from("radsec-proxy"),
        network: super::super::parse_client_network("127.0.0.1").unwrap(),
        secret: zeroize::Zeroizing::new(RADSEC_SECRET.to_vec()),
        require_message_authenticator: false,
        over_tls: true,
    })
}

async fn read_reply(stream: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut reply = vec![0u8; 4];
    stream.read_exact(&mut reply).await.unwrap();
    let len = usize::from(u16::from_be_bytes([reply[2], reply[3]]));
    reply.resize(len, 0);
    stream.read_exact(&mut reply[4..]).await.unwrap();
    reply
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_not_read_beyond_its_in_flight_bound_and_every_request_is_answered() {
    let gate = Arc::new(Semaphore::new(0));
    let mock = Arc::new(Mock::gated(Arc::clone(&gate)));
    let e = Arc::new(engine(&config(), Arc::clone(&mock), &Events::default()));
    let requests: Vec<Vec<u8>> = (1..=5)
        .map(|id| {
            let mut r = Req::access("alice", "pw123456");
            r.id = id;
            r.secret = RADSEC_SECRET.to_vec();
            r.bytes()
        })
        .collect();
    let len = requests[0].len();
    assert!(requests.iter().all(|r| r.len() == len));
    // The pipe holds one packet: a write that does not fit shows otpd has stopped reading.
    let (mut peer, ours) = tokio::io::duplex(len);
    let (_stop, stop) = watch::channel(false);
    let idle = Duration::from_secs(3600);
    tokio::spawn(serve_stream(
        Arc::clone(&e),
        radsec_client(),
        ours,
        gw_src(),
        idle,
        2,
        stop,
    ));

    // Two are being answered, the third is read and waits for a slot, the fourth fills
    // the pipe; the fifth does not go in while none is answered.
    for r in &requests[..4] {
        peer.write_all(r).await.unwrap();
    }
    let fifth = tokio::time::timeout(Duration::from_secs(60), peer.write_all(&requests[4]));
    assert!(fifth.await.is_err(), "otpd read past its in-flight bound");
    assert_eq!(mock.calls(), 2, "only two handed to the handler");
    assert_eq!(e.stats().in_flight, 2);

    // Once answers go out, the rest is read and every request answered.
    gate.add_permits(5);
    peer.write_all(&requests[4]).await.unwrap();
    let mut answered = Vec::new();
    for _ in 0..5 {
        let reply = read_reply(&mut peer).await;
        let request = &requests[usize::from(reply[1]) - 1];
        let p = verify_reply(&reply, request, RADSEC_SECRET);
        assert_eq!(p.get_code(), Code::AccessAccept);
        answered.push(reply[1]);
    }
    answered.sort_unstable();
    assert_eq!(answered, vec![1, 2, 3, 4, 5]);
    assert_eq!(mock.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn refusals_log_one_line_per_reason_and_interval_with_the_count_of_the_rest() {
    let events = Events::default();
    let e = engine(&config(), Arc::new(Mock::default()), &events);
    let refusals = Refusals::new(Duration::from_secs(10));
    let lines = || -> Vec<String> { events.all().iter().map(ToString::to_string).collect() };
    for n in 0..5 {
        refusals.refuse(&e, Refusal::HandshakeFailed, || {
            format!("handshake {n} refused")
        });
    }
    refusals.refuse(&e, Refusal::TooManyConnections, || "full".to_owned());
    assert_eq!(
        lines(),
        vec![
            "radius tls: handshake 0 refused reason=handshake_failed",
            "radius tls: full reason=too_many_connections",
        ]
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    refusals.refuse(&e, Refusal::HandshakeFailed, || {
        "handshake 5 refused".to_owned()
    });
    assert_eq!(
        lines()[2],
        "radius tls: handshake 5 refused reason=handshake_failed suppressed=4"
    );
}

fn net(s: &str) -> ipnet::IpNet {
    super::super::parse_client_network(s).unwrap()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_source_outside_every_client_network_gets_no_slot() {
    let slots = Arc::new(Slots::new(vec![net("127.0.0.1")], 4, 4, 1));
    assert_eq!(
        slots.admit(ip("127.0.0.2")).err(),
        Some(Refusal::UnknownAddress)
    );
    assert_eq!(
        slots.admit(ip("::ffff:127.0.0.2")).err(),
        Some(Refusal::UnknownAddress)
    );
    assert!(
        slots.admit(ip("::ffff:127.0.0.1")).is_ok(),
        "mapped v4 is v4"
    );
}

#[test]
fn one_source_is_capped_and_its_slots_come_back_when_closed() {
    let slots = Arc::new(Slots::new(vec![net("10.0.0.0/24")], 64, 3, 0));
    let held: Vec<Slot> = (0..3)
        .map(|_| slots.admit(ip("10.0.0.7")).unwrap())
        .collect();
    assert_eq!(
        slots.admit(ip("10.0.0.7")).err(),
        Some(Refusal::TooManyFromSource)
    );
    assert!(
        slots.admit(ip("10.0.0.8")).is_ok(),
        "another source is not held back"
    );
    drop(held);
    assert!(
        slots.admit(ip("10.0.0.7")).is_ok(),
        "the count went down again"
    );
}

#[test]
fn a_flood_from_one_clients_network_leaves_the_others_their_reserved_slots() {
    let (a, b) = (net("127.0.0.1"), net("127.0.0.8/29"));
    let slots = Arc::new(Slots::new(vec![a, b], 10, 16, 2));
    // b's network takes the 6 shared slots and its own 2, then nothing more.
    let mut held = Vec::new();
    for n in 8..16 {
        while let Ok(s) = slots.admit(ip(&format!("127.0.0.{n}"))) {
            held.push(s);
        }
    }
    assert_eq!(held.len(), 8);
    assert_eq!(
        slots.admit(ip("127.0.0.9")).err(),
        Some(Refusal::TooManyConnections)
    );
    let first = slots.admit(ip("127.0.0.1")).expect("a's reserved slot");
    let _second = slots
        .admit(ip("127.0.0.1"))
        .expect("a's second reserved slot");
    assert_eq!(
        slots.admit(ip("127.0.0.1")).err(),
        Some(Refusal::TooManyConnections),
        "max_connections bounds everything"
    );
    drop(first);
    assert!(slots.admit(ip("127.0.0.1")).is_ok());
}

#[test]
fn more_clients_than_slots_share_max_connections_evenly() {
    let nets: Vec<_> = (1..=5).map(|n| net(&format!("10.0.0.{n}"))).collect();
    let slots = Arc::new(Slots::new(nets, 5, 16, 4));
    // Four each would need 20: each gets one, and none is left to share.
    let _one = slots.admit(ip("10.0.0.1")).unwrap();
    assert_eq!(
        slots.admit(ip("10.0.0.1")).err(),
        Some(Refusal::TooManyConnections)
    );
    assert!(slots.admit(ip("10.0.0.2")).is_ok());
}
