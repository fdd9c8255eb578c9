//! Property tests: whatever arrives, the packet path never panics, and anything it does
//! answer is a well-formed reply authenticated for that very request.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// Feeds one datagram from both clients (MA required, and not) through the whole path.
fn feed(datagram: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let e = engine(&config(), Arc::new(Mock::default()), &Events::default());
    rt.block_on(async {
        for src in [gw_src(), lan_src()] {
            if let Some(reply) = e.process(datagram, src).await {
                verify_reply(&reply, datagram, SECRET);
            }
        }
    });
}

fn attr_type() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(wire::attr::USER_NAME),
        Just(wire::attr::USER_PASSWORD),
        Just(wire::attr::STATE),
        Just(wire::attr::PROXY_STATE),
        Just(wire::attr::NAS_IDENTIFIER),
        Just(wire::attr::MESSAGE_AUTHENTICATOR),
        any::<u8>(),
    ]
}

fn attr_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        (1usize..=8).prop_flat_map(|blocks| prop::collection::vec(any::<u8>(), blocks * 16)),
        prop::collection::vec(any::<u8>(), 0..=255),
    ]
}

/// A packet assembled from random attributes, optionally with a valid Message-Authenticator
/// so that the checks behind it are reached too.
fn assemble(
    code: u8,
    id: u8,
    auth: [u8; 16],
    attrs: &[(u8, Vec<u8>)],
    sign: bool,
    length_delta: i32,
) -> Vec<u8> {
    let mut p = vec![code, id, 0, 0];
    p.extend_from_slice(&auth);
    for (typ, value) in attrs {
        p.push(*typ);
        p.push((value.len() + 2) as u8);
        p.extend_from_slice(value);
    }
    let ma_offset = p.len() + 2;
    if sign {
        p.extend_from_slice(&[wire::attr::MESSAGE_AUTHENTICATOR, 18]);
        p.extend_from_slice(&[0u8; 16]);
    }
    let len = (p.len() as i32 + length_delta).clamp(0, 65535) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if sign && ma_offset + 16 <= p.len() {
        wire::sign_message_authenticator(&mut p, ma_offset, SECRET);
    }
    p
}

fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..4,
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..3),
        any::<[u8; 16]>(),
        any::<bool>(),
    )
        .prop_map(|(kind, proxy, state, ma)| {
            let mut req = match kind {
                0 => Req::access("alice", "pw123456"),
                1 => Req::access("alice", "pw"),
                2 => {
                    let mut r = Req::access("alice", "123456");
                    r.state = Some(state.to_vec());
                    r
                }
                _ => Req::status_server(),
            };
            req.proxy_states = proxy;
            req.message_authenticator = ma;
            req.bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_datagrams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        feed(&bytes);
    }

    #[test]
    fn random_attribute_packets_never_panic(
        code in prop_oneof![Just(1u8), Just(12u8), any::<u8>()],
        id in any::<u8>(),
        auth in any::<[u8; 16]>(),
        attrs in prop::collection::vec((attr_type(), attr_value()), 0..10),
        sign in any::<bool>(),
        length_delta in prop_oneof![Just(0i32), -20i32..20],
    ) {
        feed(&assemble(code, id, auth, &attrs, sign, length_delta));
    }

    #[test]
    fn mutated_requests_never_panic(
        valid in valid_request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        tail in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut p = valid;
        for (at, x) in flips {
            let i = at.index(p.len());
            p[i] ^= x;
        }
        if let Some(at) = cut {
            p.truncate(at.index(p.len()));
        }
        p.extend_from_slice(&tail);
        feed(&p);
    }
}
