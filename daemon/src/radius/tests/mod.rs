//! Tests of the RADIUS layer. Requests are built with the `radius` crate's encoder (an
//! independent PAP and header implementation) and replies are checked with its Response
//! Authenticator check; `live.rs` also talks to FreeRADIUS' `radclient`.

#![allow(clippy::unwrap_used)]

mod engine;
mod fuzz;
mod live;
mod tls;
mod units;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use radius::core::avp::AVP;
use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::rfc2865;
use tokio::sync::Semaphore;

use super::engine::Engine;
use super::events::{RadiusEvent, RadiusLog};
use super::wire;
use super::{AccessHandler, AccessInput, AccessRequest, Decision, RadiusClient, RadiusConfig};

pub(crate) const SECRET: &[u8] = b"a-long-test-secret-0123456789";
pub(crate) const OTHER_SECRET: &[u8] = b"the-wrong-secret-for-this-nas";

/// Source of the client "gw" (127.0.0.1/32, Message-Authenticator required).
pub(crate) fn gw_src() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// Source of the client "lan" (127.0.0.0/8, Message-Authenticator not required).
pub(crate) fn lan_src() -> SocketAddr {
    "127.0.0.2:40000".parse().unwrap()
}

pub(crate) fn client(
    name: &str,
    network: &str,
    secret: &[u8],
    require_ma: Option<bool>,
) -> RadiusClient {
    RadiusClient {
        name: name.to_owned(),
        network: super::parse_client_network(network).unwrap(),
        secret: zeroize::Zeroizing::new(secret.to_vec()),
        require_message_authenticator: require_ma,
    }
}

/// Two clients on loopback, no reject delay, port 0.
pub(crate) fn config() -> RadiusConfig {
    let mut cfg = RadiusConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        vec![
            client("gw", "127.0.0.1", SECRET, None),
            client("lan", "127.0.0.0/8", SECRET, Some(false)),
        ],
    );
    cfg.reject_delay = Duration::ZERO;
    // The States' wall clock moves with tokio's, as the monotonic deadlines do.
    cfg.wall = crate::clock::Clock::starting_at(1_800_000_000);
    cfg
}

/// What the mock handler was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub user: String,
    pub challenge_response: bool,
    pub secret: String,
    pub client: String,
    pub nas: Option<String>,
}

/// "pw" → NeedOtp, "pw123456" → Accept, challenge response "123456" → Accept,
/// anything else → Reject("bad_password"). With a gate, each call first takes a permit.
#[derive(Default)]
pub(crate) struct Mock {
    pub calls: AtomicUsize,
    pub seen: Mutex<Vec<Seen>>,
    pub gate: Option<Arc<Semaphore>>,
}

impl Mock {
    pub(crate) fn gated(gate: Arc<Semaphore>) -> Self {
        Mock {
            gate: Some(gate),
            ..Mock::default()
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
}

impl AccessHandler for Mock {
    async fn decide(&self, req: AccessRequest) -> Decision {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let (challenge_response, secret) = match &req.input {
            AccessInput::Password(p) => (false, p.to_string()),
            AccessInput::ChallengeResponse { otp, .. } => (true, otp.to_string()),
        };
        self.seen.lock().unwrap().push(Seen {
            user: req.user_name.clone(),
            challenge_response,
            secret: secret.clone(),
            client: req.client.name.clone(),
            nas: req.nas_identifier.clone(),
        });
        match (challenge_response, secret.as_str()) {
            (false, "pw") => Decision::NeedOtp {
                reply_message: "Enter the one-time password".to_owned(),
            },
            (false, "pw123456") | (true, "123456") => Decision::Accept {
                reply_message: Some("welcome".to_owned()),
            },
            _ => Decision::Reject {
                reply_message: Some("denied".to_owned()),
                reason: "bad_password",
            },
        }
    }
}

/// Collects the events the layer logs.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<RadiusEvent>>>);

impl Events {
    pub(crate) fn log(&self) -> Arc<dyn RadiusLog> {
        let events = Arc::clone(&self.0);
        Arc::new(move |e: &RadiusEvent| events.lock().unwrap().push(e.clone()))
    }

    pub(crate) fn all(&self) -> Vec<RadiusEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The reasons of the Decision lines, in order (None for Accept/Challenge).
    pub(crate) fn decisions(&self) -> Vec<(super::Outcome, Option<&'static str>)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                RadiusEvent::Decision {
                    outcome, reason, ..
                } => Some((outcome, reason)),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn engine(cfg: &RadiusConfig, mock: Arc<Mock>, events: &Events) -> Engine<Mock> {
    Engine::new(cfg, mock, events.log()).unwrap()
}

/// An Access-Request or Status-Server under construction, encoded by the `radius` crate.
pub(crate) struct Req {
    pub code: Code,
    pub id: u8,
    pub secret: Vec<u8>,
    pub user: Option<String>,
    pub password: Option<Vec<u8>>,
    pub state: Option<Vec<u8>>,
    pub proxy_states: Vec<Vec<u8>>,
    pub nas_identifier: Option<String>,
    pub message_authenticator: bool,
}

impl Req {
    pub(crate) fn access(user: &str, password: &str) -> Self {
        Req {
            code: Code::AccessRequest,
            id: 7,
            secret: SECRET.to_vec(),
            user: Some(user.to_owned()),
            password: Some(password.as_bytes().to_vec()),
            state: None,
            proxy_states: Vec::new(),
            nas_identifier: None,
            message_authenticator: true,
        }
    }

    pub(crate) fn status_server() -> Self {
        Req {
            code: Code::StatusServer,
            user: None,
            password: None,
            ..Req::access("", "")
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut p = Packet::new_with_identifier(self.code, &self.secret, self.id);
        if let Some(user) = &self.user {
            rfc2865::add_user_name(&mut p, user);
        }
        if let Some(pw) = &self.password {
            rfc2865::add_user_password(&mut p, pw).unwrap();
        }
        if let Some(state) = &self.state {
            rfc2865::add_state(&mut p, state);
        }
        if let Some(nas) = &self.nas_identifier {
            rfc2865::add_nas_identifier(&mut p, nas);
        }
        for ps in &self.proxy_states {
            rfc2865::add_proxy_state(&mut p, ps);
        }
        if self.message_authenticator {
            p.add(AVP::from_bytes(
                wire::attr::MESSAGE_AUTHENTICATOR,
                &[0u8; 16],
            ));
        }
        let mut bytes = p.encode().unwrap();
        if self.message_authenticator {
            let offset = bytes.len() - 16;
            wire::sign_message_authenticator(&mut bytes, offset, &self.secret);
        }
        bytes
    }
}

/// Checks everything a client checks in a reply and returns it decoded: same identifier,
/// Response Authenticator (by the `radius` crate), Message-Authenticator first and valid.
pub(crate) fn verify_reply(reply: &[u8], request: &[u8], secret: &[u8]) -> Packet {
    assert_eq!(reply[1], request[1], "identifier echoed");
    assert!(
        Packet::is_authentic_response(reply, request, secret),
        "Response Authenticator must verify"
    );
    assert_eq!(reply[20], wire::attr::MESSAGE_AUTHENTICATOR, "MA first");
    assert_eq!(reply[21], 18, "MA length");
    let mut copy = reply.to_vec();
    copy[4..20].copy_from_slice(&request[4..20]);
    copy[22..38].fill(0);
    assert_eq!(
        wire::message_authenticator(&copy, secret)[..],
        reply[22..38],
        "Message-Authenticator must verify"
    );
    Packet::decode(reply, secret).unwrap()
}

pub(crate) fn reply_messages(p: &Packet) -> String {
    rfc2865::lookup_all_reply_message(p).unwrap().concat()
}
