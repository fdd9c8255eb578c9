//! The RADIUS packet path (`otpd::radius::PacketPath`): whatever arrives, nothing panics,
//! every reply answers its request (identifier, Response Authenticator, a valid
//! Message-Authenticator first) and a retransmission gets the very same bytes.
//!
//! Input: records of `flags, length (2 octets, big-endian), datagram`; the last record
//! takes whatever is left. Flags let the fuzzer past the cryptography so it reaches the
//! checks behind it:
//! - 0x01 sign: compute the Message-Authenticator in place (if the packet has one);
//! - 0x02 send from the client that may omit the Message-Authenticator;
//! - 0x04 append the State of the last Access-Challenge (answering it);
//! - 0x08 send the datagram twice (a retransmission);
//! - 0x10 hide each User-Password value as PAP does (the fuzzer writes it in clear).

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use otpd::radius::{
    AccessHandler, AccessInput, AccessRequest, Decision, PacketPath, RadiusClient, RadiusConfig,
    RadiusEvent,
};

use radius_wire::attr::{MESSAGE_AUTHENTICATOR as MA, STATE, USER_PASSWORD};
use radius_wire::code;

const SECRET: &[u8] = b"fuzz-shared-secret-0123456789";

/// "pw" → challenge, "pw123456" → accept, challenge answer "123456" → accept; else reject.
struct Handler;

impl AccessHandler for Handler {
    async fn decide(&self, req: AccessRequest) -> Decision {
        let accept = Decision::Accept {
            reply_message: None,
        };
        match req.input {
            AccessInput::Password(pw) if pw.as_str() == "pw" => Decision::NeedOtp {
                reply_message: "Enter your one-time password".into(),
            },
            AccessInput::Password(pw) if pw.as_str() == "pw123456" => accept,
            AccessInput::ChallengeResponse { otp, .. } if otp.as_str() == "123456" => accept,
            _ => Decision::Reject {
                reply_message: Some("Login failed".into()),
                reason: "bad_password",
            },
        }
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    path: PacketPath<Handler>,
    last_state: Mutex<Option<Vec<u8>>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let client = |name: &str, net: &str, require: Option<bool>| RadiusClient {
            name: name.into(),
            network: otpd::radius::parse_client_network(net).expect("network"),
            secret: SECRET.to_vec().into(),
            require_message_authenticator: require,
        };
        let mut cfg = RadiusConfig::new(
            vec!["127.0.0.1:0".parse().expect("addr")],
            vec![
                client("gw", "127.0.0.1", None),
                client("lan", "127.0.0.0/8", Some(false)),
            ],
        );
        cfg.reject_delay = Duration::ZERO;
        let log = Arc::new(|_: &RadiusEvent| {});
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
            path: PacketPath::new(&cfg, Arc::new(Handler), log).expect("packet path"),
            last_state: Mutex::new(None),
        }
    })
}

/// Offsets, types and lengths of the attributes, as far as they are well framed.
fn attributes(p: &[u8]) -> Vec<(usize, u8, usize)> {
    radius_wire::attributes(p)
        .map_while(Result::ok)
        .map(|a| (a.offset, a.typ, a.value.len() + 2))
        .collect()
}

fn prepare(flags: u8, mut p: Vec<u8>) -> Vec<u8> {
    if p.len() < 20 {
        return p;
    }
    if flags & 0x04 != 0 {
        if let Some(state) = fixture().last_state.lock().expect("lock").clone() {
            p.push(STATE);
            p.push(u8::try_from(state.len() + 2).unwrap_or(255));
            p.extend_from_slice(&state);
            let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
            p[2..4].copy_from_slice(&len.to_be_bytes());
        }
    }
    let attrs = attributes(&p);
    if flags & 0x10 != 0 {
        let auth: [u8; 16] = p[4..20].try_into().expect("16 octets");
        for &(at, typ, len) in &attrs {
            if typ == USER_PASSWORD && (len - 2) % 16 == 0 && len > 2 {
                radius_wire::hide_blocks(&mut p[at + 2..at + len], SECRET, &auth);
            }
        }
    }
    if flags & 0x01 != 0 {
        if let Some(&(at, _, 18)) = attrs.iter().find(|a| a.1 == MA) {
            radius_wire::sign_message_authenticator(&mut p, at + 2, SECRET);
        }
    }
    p
}

/// Panics unless `reply` is a well-formed, authenticated answer to `req`.
fn verify(reply: &[u8], req: &[u8]) {
    assert!(reply.len() >= 20 && reply.len() <= 4096, "reply size");
    assert_eq!(
        usize::from(u16::from_be_bytes([reply[2], reply[3]])),
        reply.len(),
        "length field"
    );
    assert!(
        matches!(
            reply[0],
            code::ACCESS_ACCEPT | code::ACCESS_REJECT | code::ACCESS_CHALLENGE
        ),
        "reply code {}",
        reply[0]
    );
    assert_eq!(reply[1], req[1], "identifier");
    let request_auth = radius_wire::authenticator(req).expect("a request has a header");
    assert!(
        radius_wire::verify_response_authenticator(reply, &request_auth, SECRET),
        "Response Authenticator"
    );
    let attrs = attributes(reply);
    let framed: usize = 20 + attrs.iter().map(|a| a.2).sum::<usize>();
    assert_eq!(framed, reply.len(), "attribute framing");
    assert_eq!(
        attrs.first().map(|a| (a.1, a.2)),
        Some((MA, 18)),
        "MA first"
    );
    assert!(
        radius_wire::verify_reply_message_authenticator(reply, 22, &request_auth, SECRET),
        "Message-Authenticator value"
    );
    if reply[0] == code::ACCESS_CHALLENGE {
        let state = attrs
            .iter()
            .find(|a| a.1 == STATE)
            .expect("a challenge has a State");
        *fixture().last_state.lock().expect("lock") =
            Some(reply[state.0 + 2..state.0 + state.2].to_vec());
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut rest = data;
    while let Some((&flags, tail)) = rest.split_first() {
        let (packet, next) = match tail {
            [a, b, body @ ..] if usize::from(u16::from_be_bytes([*a, *b])) <= body.len() => {
                body.split_at(usize::from(u16::from_be_bytes([*a, *b])))
            }
            [_, _, body @ ..] => (body, &[][..]),
            short => (short, &[][..]),
        };
        rest = next;
        let p = prepare(flags, packet.to_vec());
        let src: SocketAddr = if flags & 0x02 != 0 {
            "127.0.0.2:40000".parse().expect("addr")
        } else {
            "127.0.0.1:40000".parse().expect("addr")
        };
        let first = f.rt.block_on(f.path.process(&p, src));
        if let Some(reply) = &first {
            verify(reply, &p);
        }
        if flags & 0x08 != 0 {
            let again = f.rt.block_on(f.path.process(&p, src));
            if let (Some(a), Some(b)) = (&first, &again) {
                assert_eq!(a, b, "a retransmission must get the cached reply");
            }
        }
    }
});
