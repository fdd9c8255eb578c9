//! The pieces on their own: wire encoding, the stores, the client table, the drop limiter.

use std::sync::Arc;
use std::time::Duration;

use crate::clock;

use super::super::clients::ClientTable;
use super::super::dedup::{DedupKey, ReplyCache, Seen};
use super::super::events::{DropReason, RadiusEvent};
use super::super::ratelimit::DropLimiter;
use super::super::state::{StateError, StateKey, StateStore};
use super::super::wire;
use super::super::RadiusError;
use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hmac_md5_matches_rfc2104_vectors() {
    // RFC 2104 appendix / RFC 2202 test cases 1 and 2.
    assert_eq!(
        wire::message_authenticator(b"Hi There", &[0x0b; 16]).to_vec(),
        hex("9294727a3638bb1c13f48ef8158bfc9d")
    );
    assert_eq!(
        wire::message_authenticator(b"what do ya want for nothing?", b"Jefe").to_vec(),
        hex("750c783e6ab0b503eaa86e310a5db738")
    );
}

#[test]
fn request_message_authenticator_verifies_and_detects_tampering() {
    let bytes = Req::access("alice", "pw123456").bytes();
    let parsed = wire::parse(&bytes).unwrap();
    let offset = parsed.ma_offset.unwrap();
    assert!(wire::verify_message_authenticator(&bytes, offset, SECRET));
    assert!(!wire::verify_message_authenticator(
        &bytes,
        offset,
        OTHER_SECRET
    ));
    for i in [1, 5, 21, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(
            !wire::verify_message_authenticator(&t, offset, SECRET),
            "byte {i}"
        );
    }
}

#[test]
fn pap_decodes_rfc2865_example() {
    // RFC 2865 §7.1: user "nemo", password "arctangent", secret "xyzzy5461".
    let request = hex(concat!(
        "010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d93d413ce3196e43f782a0aee",
        "0406c0a80110050600000003"
    ));
    assert_eq!(request.len(), 0x38);
    let parsed = wire::parse(&request).unwrap();
    let value = parsed.all(wire::attr::USER_PASSWORD)[0];
    // The independent codec reads the same attribute.
    let codec = radius::core::packet::Packet::decode(&request, b"xyzzy5461").unwrap();
    let theirs = codec
        .lookup(wire::attr::USER_PASSWORD)
        .unwrap()
        .encode_bytes();
    assert_eq!(value, &theirs[..]);
    let plain = wire::decode_pap(value, b"xyzzy5461", &parsed.authenticator).unwrap();
    assert_eq!(&plain[..], b"arctangent");
}

#[test]
fn pap_rejects_bad_lengths() {
    let auth = [7u8; 16];
    assert!(wire::decode_pap(&[0u8; 15], SECRET, &auth).is_err());
    assert!(wire::decode_pap(&[0u8; 17], SECRET, &auth).is_err());
    assert!(wire::decode_pap(&[0u8; 144], SECRET, &auth).is_err());
    assert!(wire::decode_pap(&[0u8; 128], SECRET, &auth).is_ok());
}

#[test]
fn parse_drops_length_beyond_datagram_and_ignores_padding() {
    let bytes = Req::access("alice", "pw").bytes();
    // Length field larger than the datagram.
    assert!(wire::parse(&bytes[..bytes.len() - 1]).is_err());
    // Octets past the Length field are padding (RFC 2865 §3).
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0xff; 10]);
    let parsed = wire::parse(&padded).unwrap();
    assert_eq!(parsed.bytes, &bytes[..]);
}

#[test]
fn parse_rejects_duplicate_or_short_message_authenticator() {
    let mut bytes = Req::access("alice", "pw").bytes();
    let tail = bytes[bytes.len() - 18..].to_vec();
    bytes.extend_from_slice(&tail);
    let len = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        wire::parse(&bytes).err(),
        Some("more than one Message-Authenticator")
    );

    let mut short = Req::access("alice", "pw");
    short.message_authenticator = false;
    let mut bytes = short.bytes();
    bytes.extend_from_slice(&[wire::attr::MESSAGE_AUTHENTICATOR, 6, 0, 0, 0, 0]);
    let len = bytes.len() as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        wire::parse(&bytes).err(),
        Some("Message-Authenticator of wrong length")
    );
}

#[test]
fn reply_encoding_puts_ma_first_proxy_states_in_order_and_authenticates() {
    let request = Req::access("alice", "pw").bytes();
    let auth: [u8; 16] = request[4..20].try_into().unwrap();
    let proxy = vec![b"first".to_vec(), b"second".to_vec(), vec![0u8; 200]];
    let state = [9u8; 16];
    let reply = wire::encode_reply(
        wire::code::ACCESS_CHALLENGE,
        request[1],
        &auth,
        SECRET,
        &[(wire::attr::STATE, &state[..])],
        Some("Enter OTP"),
        &proxy,
    )
    .unwrap();
    let p = verify_reply(&reply, &request, SECRET);
    assert_eq!(p.get_code(), Code::AccessChallenge);
    assert_eq!(rfc2865::lookup_all_proxy_state(&p), proxy);
    assert_eq!(rfc2865::lookup_state(&p).unwrap(), state.to_vec());
    assert_eq!(reply_messages(&p), "Enter OTP");
    // Independent of the crate: MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
    let mut input = reply.clone();
    input[4..20].copy_from_slice(&auth);
    input.extend_from_slice(SECRET);
    use md5::Digest;
    assert_eq!(md5::Md5::digest(&input)[..], reply[4..20]);
}

#[test]
fn long_reply_message_is_split_on_character_boundaries() {
    let msg = "ワンタイムパスワードを入力してください。".repeat(20);
    let pieces = wire::split_message(&msg);
    assert!(pieces.len() > 1);
    assert!(pieces.iter().all(|p| p.len() <= 253 && !p.is_empty()));
    assert_eq!(pieces.concat(), msg);

    let request = Req::access("alice", "pw").bytes();
    let auth: [u8; 16] = request[4..20].try_into().unwrap();
    let reply = wire::encode_reply(2, request[1], &auth, SECRET, &[], Some(&msg), &[]).unwrap();
    assert_eq!(reply_messages(&verify_reply(&reply, &request, SECRET)), msg);
}

#[test]
fn reply_never_exceeds_4096_octets() {
    let request = Req::access("alice", "pw").bytes();
    let auth: [u8; 16] = request[4..20].try_into().unwrap();
    let proxy = vec![vec![1u8; 253]; 15];
    let msg = "x".repeat(5000);
    let reply = wire::encode_reply(2, 1, &auth, SECRET, &[], Some(&msg), &proxy).unwrap();
    assert!(reply.len() <= wire::MAX_PACKET_LEN);
    let too_much = vec![vec![1u8; 253]; 17];
    assert!(wire::encode_reply(2, 1, &auth, SECRET, &[], None, &too_much).is_err());
}

fn key(n: u8) -> DedupKey {
    DedupKey {
        src: gw_src(),
        identifier: n,
        authenticator: [n; 16],
    }
}

#[test]
fn reply_cache_states_ttl_and_capacity() {
    let t0 = clock::instant();
    let mut c = ReplyCache::new(Duration::from_secs(30), 2, 1 << 20);
    assert_eq!(c.seen(&key(1), t0), Seen::New);
    c.start(key(1));
    assert_eq!(c.seen(&key(1), t0), Seen::InProgress);
    let bytes: Arc<[u8]> = Arc::from(&b"reply"[..]);
    c.finish(key(1), Some(Arc::clone(&bytes)), t0);
    assert_eq!(c.seen(&key(1), t0), Seen::Done(Some(Arc::clone(&bytes))));
    assert_eq!(
        c.seen(&key(1), t0 + Duration::from_secs(29)),
        Seen::Done(Some(bytes))
    );
    assert_eq!(c.seen(&key(1), t0 + Duration::from_secs(30)), Seen::New);
    assert_eq!(c.len(t0 + Duration::from_secs(30)), (0, 0));

    // Capacity: the oldest completed reply goes first.
    for n in 2..=4 {
        c.start(key(n));
        c.finish(key(n), None, t0 + Duration::from_secs(40));
    }
    let t = t0 + Duration::from_secs(41);
    assert_eq!(c.seen(&key(2), t), Seen::New);
    assert_eq!(c.seen(&key(3), t), Seen::Done(None));
    assert_eq!(c.seen(&key(4), t), Seen::Done(None));
    assert_eq!(c.len(t), (2, 0));
    // Read while idle, the size leaves out what has expired since.
    assert_eq!(c.len(t0 + Duration::from_secs(70)), (0, 0));

    // An abandoned request is forgotten.
    c.start(key(9));
    c.abandon(&key(9));
    assert_eq!(c.seen(&key(9), t), Seen::New);
}

#[test]
fn reply_cache_is_bounded_by_size_too() {
    let t0 = clock::instant();
    let mut c = ReplyCache::new(Duration::from_secs(30), 1000, 10_000);
    for n in 0..10 {
        c.start(key(n));
        c.finish(key(n), Some(Arc::from(vec![0u8; 4000])), t0);
    }
    assert_eq!(c.len(t0), (2, 0));
    assert_eq!(c.bytes(), 8000);
    assert_eq!(c.seen(&key(7), t0), Seen::New);
    assert!(matches!(c.seen(&key(9), t0), Seen::Done(Some(_))));
    c.seen(&key(0), t0 + Duration::from_secs(31));
    assert_eq!(c.bytes(), 0);
}

#[test]
fn state_is_single_use_bound_and_expires() {
    let t0 = clock::instant();
    let ms0 = 1_800_000_000_000;
    let key = Arc::new(StateKey::random());
    let mut s = StateStore::new(key, Duration::from_secs(120), 100);
    let a = s.issue("alice", "gw", t0, ms0);
    let b = s.issue("alice", "gw", t0, ms0);
    assert_ne!(a, b, "random States");
    assert_eq!(a.len(), 41);
    assert_eq!(s.take(&a, "bob", "gw", t0, ms0), Err(StateError::Unknown));
    assert_eq!(
        s.take(&a, "alice", "lan", t0, ms0),
        Err(StateError::Unknown)
    );
    let ticket = s.take(&a, "alice", "gw", t0, ms0).expect("the owner's");
    assert_eq!(ticket.expires_at_ms, ms0 + 120_000);
    assert_eq!(ticket.expires_at(), 1_800_000_121);
    assert_eq!(s.take(&a, "alice", "gw", t0, ms0), Err(StateError::Used));
    assert_eq!(
        s.take(&a[..8], "alice", "gw", t0, ms0),
        Err(StateError::Unknown)
    );
    let late = t0 + Duration::from_secs(120);
    assert_eq!(
        s.take(&b, "alice", "gw", late, ms0 + 120_000),
        Err(StateError::Expired)
    );
    assert!(s.take(&b, "alice", "gw", late, ms0 + 119_999).is_ok());
    assert_eq!(s.len(late), 0);
    // Read while idle, the size leaves out what has expired since.
    s.issue("alice", "gw", late, ms0 + 120_000);
    assert_eq!(s.len(late), 1);
    assert_eq!(s.len(late + Duration::from_secs(120)), 0);
}

#[test]
fn a_state_is_checked_by_any_node_that_shares_the_key() {
    let t0 = clock::instant();
    let ms0 = 1_800_000_000_000;
    let key = Arc::new(StateKey::random());
    let mut a = StateStore::new(Arc::clone(&key), Duration::from_secs(120), 100);
    let mut b = StateStore::new(key, Duration::from_secs(120), 100);
    let mut other = StateStore::new(Arc::new(StateKey::random()), Duration::from_secs(120), 100);
    let state = a.issue("alice", "gw", t0, ms0);
    assert_eq!(
        other.take(&state, "alice", "gw", t0, ms0),
        Err(StateError::Unknown),
        "a node with another key_file"
    );
    let on_b = b
        .take(&state, "alice", "gw", t0, ms0 + 5_000)
        .expect("node B");
    let on_a = a
        .take(&state, "alice", "gw", t0, ms0 + 5_000)
        .expect("node A");
    // Each node alone would take it once: the store's mark under one key catches the second.
    assert_eq!(on_a.once_key(), on_b.once_key());
    // A State whose expiry was moved is not one otpd made.
    let mut longer = state.clone();
    longer[8] ^= 1;
    assert_eq!(
        b.take(&longer, "alice", "gw", t0, ms0),
        Err(StateError::Unknown)
    );
}

#[test]
fn state_store_is_bounded() {
    let t0 = clock::instant();
    let ms0 = 1_800_000_000_000;
    let mut s = StateStore::new(Arc::new(StateKey::random()), Duration::from_secs(120), 3);
    let states: Vec<_> = (0..10).map(|_| s.issue("alice", "gw", t0, ms0)).collect();
    assert_eq!(s.len(t0), 3);
    // Forgotten here, still a valid State: its single use is the store's mark.
    assert!(s.take(&states[0], "alice", "gw", t0, ms0).is_ok());
    assert!(s.take(&states[9], "alice", "gw", t0, ms0).is_ok());
    assert_eq!(
        s.take(&states[9], "alice", "gw", t0, ms0),
        Err(StateError::Used)
    );
}

#[test]
fn most_specific_client_wins_and_mapped_ipv4_matches() {
    let t = ClientTable::new(
        &[
            client("wide", "10.0.0.0/8", SECRET, None),
            client("narrow", "10.1.2.0/24", SECRET, Some(false)),
            client("host", "10.1.2.3", SECRET, None),
            client("v6", "fd00::/64", SECRET, None),
        ],
        true,
    )
    .unwrap();
    let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|c| c.name.to_string());
    assert_eq!(name("10.1.2.3").as_deref(), Some("host"));
    assert_eq!(name("10.1.2.4").as_deref(), Some("narrow"));
    assert_eq!(name("10.9.9.9").as_deref(), Some("wide"));
    assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("host"));
    assert_eq!(name("fd00::1").as_deref(), Some("v6"));
    assert_eq!(name("192.0.2.1"), None);
    let narrow = t.lookup("10.1.2.4".parse().unwrap()).unwrap();
    assert!(!narrow.require_message_authenticator);
    let wide = t.lookup("10.9.9.9".parse().unwrap()).unwrap();
    assert!(wide.require_message_authenticator);
}

#[test]
fn bad_client_configurations_are_refused() {
    let err = |clients: &[RadiusClient]| match ClientTable::new(clients, true) {
        Err(RadiusError::Client { problem, .. }) => problem,
        _ => "accepted",
    };
    assert_eq!(
        err(&[client("a", "10.0.0.1", b"", None)]),
        "the shared secret is empty"
    );
    assert_eq!(
        err(&[
            client("a", "10.0.0.0/8", SECRET, None),
            client("b", "10.2.3.4/8", SECRET, None)
        ]),
        "another client has the same address"
    );
    assert_eq!(
        err(&[
            client("a", "10.0.0.1", SECRET, None),
            client("a", "10.0.0.2", SECRET, None)
        ]),
        "another client has the same name"
    );
}

#[test]
fn drop_lines_are_rate_limited_per_reason_and_client() {
    let t0 = clock::instant();
    let every = Duration::from_secs(10);
    let l = DropLimiter::new(every);
    let gw: Arc<str> = Arc::from("gw");
    let src = gw_src();
    assert!(l.note(DropReason::Malformed, Some(&gw), src, t0).is_some());
    assert!(l.note(DropReason::Malformed, Some(&gw), src, t0).is_none());
    assert!(l.note(DropReason::Malformed, Some(&gw), src, t0).is_none());
    // Other reason, or other client: its own line.
    assert!(l.note(DropReason::UnknownClient, None, src, t0).is_some());
    assert!(l
        .note(DropReason::UnknownClient, None, lan_src(), t0)
        .is_none());
    // Next window: one line carrying the count of the previous one.
    match l.note(DropReason::Malformed, Some(&gw), src, t0 + every) {
        Some(RadiusEvent::Dropped { suppressed, .. }) => assert_eq!(suppressed, 2),
        other => panic!("expected a line, got {other:?}"),
    }
    // Flushing closes finished windows and reports what they suppressed.
    let lines = l.flush(t0 + every * 2);
    assert_eq!(
        lines,
        vec![RadiusEvent::DropsSuppressed {
            reason: DropReason::UnknownClient,
            client: None,
            count: 1,
            interval: every,
        }]
    );
    assert!(l
        .note(DropReason::UnknownClient, None, src, t0 + every * 2)
        .is_some());
}

#[test]
fn events_never_let_a_user_name_forge_a_log_line() {
    let e = RadiusEvent::Decision {
        user: b"mallory\nradius accept user=\"admin\"".to_vec(),
        client: "gw".to_owned(),
        src: gw_src(),
        nas_identifier: None,
        input: super::super::InputKind::Password,
        outcome: super::super::Outcome::Reject,
        reason: Some("bad_password"),
    };
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("reason=bad_password"));
}

#[test]
fn user_names_that_are_not_utf8_are_logged_byte_for_byte() {
    use super::super::events::quote_bytes;
    assert_eq!(quote_bytes(b"taro"), "\"taro\"");
    assert_eq!(quote_bytes(b"ta\xffro\xc3"), "\"ta\\xffro\\xc3\"");
    assert_eq!(quote_bytes("田中".as_bytes()), "\"田中\"");
    assert_eq!(quote_bytes(b"a\"b\nc\\"), "\"a\\\"b\\nc\\\\\"");
}
