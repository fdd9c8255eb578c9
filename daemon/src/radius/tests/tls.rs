//! A RADIUS-over-TLS connection's packet loop, over an in-memory stream (the handshake is
//! rustls' and tested through the binary).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::super::clients::Client;
use super::super::tls::{serve_stream, Refusal, Refusals, RADSEC_SECRET};
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
