//! One datagram at a time through the engine, without sockets.

use std::sync::Arc;
use std::time::Duration;

use crate::clock;

use super::super::engine::Inbound;
use super::super::events::{DropReason, Outcome, RadiusEvent};
use super::*;

fn setup() -> (Engine<Mock>, Arc<Mock>, Events) {
    setup_with(config())
}

fn setup_with(cfg: RadiusConfig) -> (Engine<Mock>, Arc<Mock>, Events) {
    let mock = Arc::new(Mock::default());
    let events = Events::default();
    (engine(&cfg, Arc::clone(&mock), &events), mock, events)
}

fn dropped(e: &Engine<Mock>, bytes: &[u8], src: SocketAddr) -> Option<DropReason> {
    match e.inbound(bytes, src, clock::instant()) {
        Inbound::Dropped(reason) => Some(reason),
        _ => None,
    }
}

/// The code of the engine's answer to `request` from `src`, its authenticator checked.
async fn code_of(e: &Engine<Mock>, request: &[u8], src: SocketAddr) -> Code {
    let reply = e.process(request, src).await.unwrap();
    verify_reply(&reply, request, SECRET).get_code()
}

#[tokio::test]
async fn accept_is_authenticated_and_carries_the_reply_message() {
    let (e, mock, events) = setup();
    let mut req = Req::access("alice", "pw123456");
    req.nas_identifier = Some("nas-1".to_owned());
    let request = req.bytes();
    let reply = e.process(&request, gw_src()).await.unwrap();
    let p = verify_reply(&reply, &request, SECRET);
    assert_eq!(p.get_code(), Code::AccessAccept);
    assert_eq!(reply_messages(&p), "welcome");
    assert_eq!(
        mock.last().unwrap(),
        Seen {
            user: "alice".to_owned(),
            challenge_response: false,
            secret: "pw123456".to_owned(),
            client: "gw".to_owned(),
            nas: Some("nas-1".to_owned()),
        }
    );
    assert_eq!(events.decisions(), vec![(Outcome::Accept, None)]);
    let line = events.all()[0].to_string();
    assert!(
        line.contains("user=\"alice\"") && line.contains("client=\"gw\""),
        "{line}"
    );
    assert!(
        !line.contains("pw123456"),
        "no password in the audit line: {line}"
    );
}

#[tokio::test]
async fn proxy_states_are_echoed_in_order_on_every_kind_of_reply() {
    let (e, _, _) = setup();
    let proxy = vec![b"hop-1".to_vec(), vec![0u8, 1, 2, 3], b"hop-3".to_vec()];
    for (id, password, code) in [
        (1, "pw123456", Code::AccessAccept),
        (2, "pw", Code::AccessChallenge),
        (3, "wrong", Code::AccessReject),
    ] {
        let mut req = Req::access("alice", password);
        req.id = id;
        req.proxy_states = proxy.clone();
        let request = req.bytes();
        let reply = e.process(&request, gw_src()).await.unwrap();
        let p = verify_reply(&reply, &request, SECRET);
        assert_eq!(p.get_code(), code);
        assert_eq!(rfc2865::lookup_all_proxy_state(&p), proxy);
    }
}

#[tokio::test]
async fn password_of_128_octets_is_decoded() {
    let (e, mock, _) = setup();
    let long: String = ('a'..='z').cycle().take(128).collect();
    let request = Req::access("alice", &long).bytes();
    assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessReject);
    assert_eq!(mock.last().unwrap().secret, long);
}

#[tokio::test]
async fn retransmission_gets_identical_bytes_without_second_evaluation() {
    let (e, mock, events) = setup();
    for (id, password) in [(1, "pw123456"), (2, "pw"), (3, "wrong")] {
        let mut req = Req::access("alice", password);
        req.id = id;
        let request = req.bytes();
        let first = e.process(&request, gw_src()).await.unwrap();
        let again = e.process(&request, gw_src()).await.unwrap();
        assert_eq!(first, again, "byte for byte (a Challenge keeps its State)");
    }
    assert_eq!(mock.calls(), 3);
    assert_eq!(events.decisions().len(), 3, "one audit line per evaluation");
    assert_eq!(e.stats().resent_from_cache, 3);
}

#[tokio::test]
async fn same_identifier_from_another_port_is_a_new_request() {
    let (e, mock, _) = setup();
    let request = Req::access("alice", "pw123456").bytes();
    e.process(&request, gw_src()).await.unwrap();
    let other_port: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    e.process(&request, other_port).await.unwrap();
    assert_eq!(mock.calls(), 2);
}

#[tokio::test]
async fn duplicate_while_in_progress_is_dropped() {
    let (e, mock, _) = setup();
    let request = Req::access("alice", "pw123456").bytes();
    let Inbound::Work(job) = e.inbound(&request, gw_src(), clock::instant()) else {
        panic!("expected work");
    };
    assert_eq!(
        dropped(&e, &request, gw_src()),
        Some(DropReason::DuplicateInProgress)
    );
    let reply = e.evaluate(job).await;
    let sent = reply.bytes.clone().unwrap();
    reply.complete(clock::instant());
    match e.inbound(&request, gw_src(), clock::instant()) {
        Inbound::Send(bytes) => assert_eq!(bytes, sent),
        _ => panic!("expected the cached reply"),
    }
    assert_eq!(mock.calls(), 1);
}

/// Runs the first step ("pw") and returns the State of the Challenge.
async fn challenge(e: &Engine<Mock>, user: &str, id: u8) -> Vec<u8> {
    let mut req = Req::access(user, "pw");
    req.id = id;
    let request = req.bytes();
    let reply = e.process(&request, gw_src()).await.unwrap();
    let p = verify_reply(&reply, &request, SECRET);
    assert_eq!(p.get_code(), Code::AccessChallenge);
    assert_eq!(reply_messages(&p), "Enter the one-time password");
    let state = rfc2865::lookup_state(&p).unwrap();
    assert!(state.len() >= 16);
    state
}

fn answer(user: &str, state: &[u8], otp: &str, id: u8) -> Vec<u8> {
    let mut req = Req::access(user, otp);
    req.id = id;
    req.state = Some(state.to_vec());
    req.bytes()
}

#[tokio::test]
async fn challenge_state_is_single_use() {
    let (e, mock, events) = setup();
    let state = challenge(&e, "alice", 1).await;
    let request = answer("alice", &state, "123456", 2);
    assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessAccept);
    let seen = mock.last().unwrap();
    assert!(seen.challenge_response);
    assert_eq!(seen.secret, "123456");

    // The same State in a new request: refused without asking the handler.
    let replay = answer("alice", &state, "123456", 3);
    assert_eq!(code_of(&e, &replay, gw_src()).await, Code::AccessReject);
    assert_eq!(mock.calls(), 2);
    assert_eq!(
        events.decisions().last().unwrap(),
        &(Outcome::Reject, Some("bad_state"))
    );
}

#[tokio::test]
async fn challenge_state_is_bound_to_user_and_client() {
    let (e, mock, events) = setup();
    let state = challenge(&e, "alice", 1).await;
    for (user, src, id) in [("bob", gw_src(), 2), ("alice", lan_src(), 3)] {
        let request = answer(user, &state, "123456", id);
        assert_eq!(code_of(&e, &request, src).await, Code::AccessReject);
        assert_eq!(
            events.decisions().last().unwrap(),
            &(Outcome::Reject, Some("bad_state"))
        );
    }
    assert_eq!(mock.calls(), 1);
    // The rightful owner can still use it.
    let request = answer("alice", &state, "123456", 4);
    assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessAccept);
}

#[tokio::test]
async fn expired_challenge_state_is_refused() {
    let (e, mock, events) = setup();
    let state = challenge(&e, "alice", 1).await;
    let request = answer("alice", &state, "123456", 2);
    let later = clock::instant() + Duration::from_secs(121);
    let Inbound::Work(job) = e.inbound(&request, gw_src(), later) else {
        panic!("expected work");
    };
    let reply = e.evaluate(job).await;
    let bytes = reply.bytes.clone().unwrap();
    assert_eq!(
        verify_reply(&bytes, &request, SECRET).get_code(),
        Code::AccessReject
    );
    assert_eq!(
        events.decisions().last().unwrap(),
        &(Outcome::Reject, Some("bad_state"))
    );
    assert_eq!(mock.calls(), 1);
}

#[tokio::test]
async fn only_rejects_are_delayed() {
    let mut cfg = config();
    cfg.reject_delay = Duration::from_millis(1500);
    let (e, _, _) = setup_with(cfg);
    for (id, password, delay) in [
        (1, "pw123456", Duration::ZERO),
        (2, "pw", Duration::ZERO),
        (3, "wrong", Duration::from_millis(1500)),
    ] {
        let mut req = Req::access("alice", password);
        req.id = id;
        let Inbound::Work(job) = e.inbound(&req.bytes(), gw_src(), clock::instant()) else {
            panic!("expected work");
        };
        assert_eq!(e.evaluate(job).await.delay, delay, "{password}");
    }
}

#[tokio::test]
async fn unknown_client_is_dropped_and_logged() {
    let (e, mock, events) = setup();
    let src: SocketAddr = "192.0.2.1:1812".parse().unwrap();
    let request = Req::access("alice", "pw123456").bytes();
    assert_eq!(dropped(&e, &request, src), Some(DropReason::UnknownClient));
    assert_eq!(dropped(&e, &request, src), Some(DropReason::UnknownClient));
    assert_eq!(mock.calls(), 0);
    let lines: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| matches!(e, RadiusEvent::Dropped { .. }))
        .collect();
    assert_eq!(lines.len(), 1, "rate-limited: {lines:?}");
    assert_eq!(e.stats().dropped(DropReason::UnknownClient), 2);
}

#[tokio::test]
async fn wrong_secret_with_message_authenticator_is_dropped() {
    let (e, mock, _) = setup();
    let mut req = Req::access("alice", "pw123456");
    req.secret = OTHER_SECRET.to_vec();
    for src in [gw_src(), lan_src()] {
        assert_eq!(
            dropped(&e, &req.bytes(), src),
            Some(DropReason::BadMessageAuthenticator)
        );
    }
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn missing_message_authenticator_follows_global_setting_and_client_override() {
    let mut req = Req::access("alice", "pw123456");
    req.message_authenticator = false;
    let request = req.bytes();

    // Global true: "gw" inherits it, "lan" overrides it with false.
    let (e, _, _) = setup();
    assert_eq!(
        dropped(&e, &request, gw_src()),
        Some(DropReason::MissingMessageAuthenticator)
    );
    assert_eq!(code_of(&e, &request, lan_src()).await, Code::AccessAccept);

    // Global false with a client that overrides it with true.
    let mut cfg = config();
    cfg.require_message_authenticator = false;
    cfg.clients[0].require_message_authenticator = Some(true);
    cfg.clients[1].require_message_authenticator = None;
    let (e, _, _) = setup_with(cfg);
    assert_eq!(
        dropped(&e, &request, gw_src()),
        Some(DropReason::MissingMessageAuthenticator)
    );
    assert!(e.process(&request, lan_src()).await.is_some());
}

#[tokio::test]
async fn proxy_state_without_message_authenticator_is_dropped() {
    let (e, _, _) = setup();
    let mut req = Req::access("alice", "pw123456");
    req.message_authenticator = false;
    req.proxy_states = vec![b"hop".to_vec()];
    assert_eq!(
        dropped(&e, &req.bytes(), lan_src()),
        Some(DropReason::ProxyStateWithoutMessageAuthenticator)
    );
}

#[tokio::test]
async fn wrong_secret_without_message_authenticator_is_a_failed_login() {
    let (e, mock, _) = setup();
    let mut req = Req::access("alice", "pw123456");
    req.message_authenticator = false;
    req.secret = OTHER_SECRET.to_vec();
    let request = req.bytes();
    let reply = e.process(&request, lan_src()).await.unwrap();
    // Signed with the server's secret, so the misconfigured NAS cannot verify it.
    assert_eq!(
        verify_reply(&reply, &request, SECRET).get_code(),
        Code::AccessReject
    );
    assert!(!radius::core::packet::Packet::is_authentic_response(
        &reply,
        &request,
        OTHER_SECRET
    ));
    assert!(mock.last().is_none_or(|s| s.secret != "pw123456"));
}

#[tokio::test]
async fn status_server_is_answered_with_an_authenticated_accept() {
    let (e, mock, _) = setup();
    let mut req = Req::status_server();
    req.proxy_states = vec![b"p1".to_vec(), b"p2".to_vec()];
    let request = req.bytes();
    for src in [gw_src(), lan_src()] {
        let reply = e.process(&request, src).await.unwrap();
        let p = verify_reply(&reply, &request, SECRET);
        assert_eq!(p.get_code(), Code::AccessAccept);
        assert_eq!(rfc2865::lookup_all_proxy_state(&p), req.proxy_states);
    }
    assert_eq!(mock.calls(), 0);
    assert_eq!(e.stats().status_server, 2);

    // RFC 5997: never without Message-Authenticator, whatever the client setting.
    req.message_authenticator = false;
    req.proxy_states.clear();
    assert_eq!(
        dropped(&e, &req.bytes(), lan_src()),
        Some(DropReason::MissingMessageAuthenticator)
    );
    req.message_authenticator = true;
    req.secret = OTHER_SECRET.to_vec();
    assert_eq!(
        dropped(&e, &req.bytes(), gw_src()),
        Some(DropReason::BadMessageAuthenticator)
    );
}

#[tokio::test]
async fn other_codes_are_dropped() {
    let (e, _, _) = setup();
    for code in [
        Code::AccountingRequest,
        Code::AccessAccept,
        Code::CoARequest,
    ] {
        let mut req = Req::access("alice", "pw");
        req.code = code;
        assert_eq!(
            dropped(&e, &req.bytes(), gw_src()),
            Some(DropReason::UnsupportedCode),
            "{code:?}"
        );
    }
}

#[tokio::test]
async fn requests_without_name_or_password_are_rejected_without_asking() {
    let (e, mock, events) = setup();
    let mut no_name = Req::access("alice", "pw");
    no_name.user = None;
    let mut no_password = Req::access("alice", "pw");
    no_password.password = None;
    no_password.id = 8;
    for req in [no_name, no_password] {
        let request = req.bytes();
        assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessReject);
    }
    assert_eq!(mock.calls(), 0);
    assert_eq!(
        events.decisions(),
        vec![
            (Outcome::Reject, Some("no_user_name")),
            (Outcome::Reject, Some("no_user_password"))
        ]
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_dropped() {
    let mut cfg = config();
    cfg.max_in_flight = 1;
    let (e, _, _) = setup_with(cfg);
    let first = Req::access("alice", "pw123456").bytes();
    let mut second = Req::access("alice", "pw123456");
    second.id = 99;
    let second = second.bytes();
    let Inbound::Work(job) = e.inbound(&first, gw_src(), clock::instant()) else {
        panic!("expected work");
    };
    assert_eq!(e.stats().in_flight, 1);
    assert_eq!(dropped(&e, &second, gw_src()), Some(DropReason::Overloaded));
    // A job that dies without a reply frees its slot and is evaluated on retransmission.
    drop(job);
    assert_eq!(e.stats().in_flight, 0);
    assert!(matches!(
        e.inbound(&first, gw_src(), clock::instant()),
        Inbound::Work(_)
    ));
}

#[tokio::test]
async fn table_sizes_are_read_when_asked_and_forget_what_expired_while_idle() {
    let cfg = config();
    let (e, _, _) = setup_with(cfg.clone());
    let tables = e.stats_handle();
    let request = Req::access("alice", "pw").bytes();
    assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessChallenge);
    let now = clock::instant();
    let sizes = |at| tables.table_sizes(at);
    assert_eq!(
        sizes(now),
        super::super::TableSizes {
            reply_cache: 1,
            challenge_states: 1
        }
    );
    // What the scrape prints: the sizes at the time it is asked, with no request since.
    let metrics = crate::metrics::Metrics::new();
    let printed = |at, n| {
        metrics.tables(sizes(at));
        let page = metrics.text();
        for series in [
            "otpd_radius_challenge_states",
            "otpd_radius_reply_cache_entries",
        ] {
            assert!(page.contains(&format!("\n{series} {n}\n")), "{page}");
        }
    };
    printed(now, 1);
    printed(
        now + cfg.state_ttl.max(cfg.reply_cache_ttl) + Duration::from_secs(1),
        0,
    );
}

#[tokio::test(start_paused = true)]
async fn a_cached_reply_expires_exactly_after_its_lifetime() {
    let cfg = config();
    let ttl = cfg.reply_cache_ttl;
    let (e, mock, _) = setup_with(cfg);
    let request = Req::access("alice", "pw123456").bytes();
    let first = e.process(&request, gw_src()).await.unwrap();
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    assert_eq!(e.process(&request, gw_src()).await.unwrap(), first);
    assert_eq!(mock.calls(), 1, "answered from the cache");
    tokio::time::advance(Duration::from_millis(1)).await;
    e.process(&request, gw_src()).await.unwrap();
    assert_eq!(mock.calls(), 2, "evaluated again once its lifetime is over");
    assert_eq!(e.stats().resent_from_cache, 1);
}

#[tokio::test(start_paused = true)]
async fn a_challenge_state_expires_exactly_after_its_lifetime() {
    let cfg = config();
    let ttl = cfg.state_ttl;
    let (e, mock, events) = setup_with(cfg);
    let state = challenge(&e, "alice", 1).await;
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    let request = answer("alice", &state, "123456", 2);
    assert_eq!(
        code_of(&e, &request, gw_src()).await,
        Code::AccessAccept,
        "still valid a moment before its lifetime is over"
    );
    let state = challenge(&e, "alice", 3).await;
    tokio::time::advance(ttl).await;
    let request = answer("alice", &state, "123456", 4);
    assert_eq!(code_of(&e, &request, gw_src()).await, Code::AccessReject);
    assert_eq!(
        events.decisions().last().unwrap(),
        &(Outcome::Reject, Some("bad_state"))
    );
    assert_eq!(
        mock.calls(),
        3,
        "the expired State's answer is not evaluated"
    );
}

#[tokio::test(start_paused = true)]
async fn the_reject_delay_holds_the_answer_for_exactly_its_time() {
    let mut cfg = config();
    cfg.reject_delay = Duration::from_millis(1500);
    let (e, _, events) = setup_with(cfg);
    let e = Arc::new(e);
    let request = Req::access("alice", "wrong").bytes();
    let started = clock::instant();
    let Inbound::Work(job) = e.inbound(&request, gw_src(), started) else {
        panic!("expected work");
    };
    let answering = tokio::spawn({
        let e = Arc::clone(&e);
        async move { e.answer(job).await }
    });
    // The audit line is written when the reject is decided, right before the delay starts.
    for polls in 0.. {
        if !events.decisions().is_empty() {
            break;
        }
        assert!(polls < 1000, "the reject was never decided");
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_millis(1499)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!answering.is_finished(), "held back");
    assert_eq!(
        dropped(&e, &request, gw_src()),
        Some(DropReason::DuplicateInProgress),
        "a retransmission meanwhile is dropped"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let reply = answering.await.unwrap().expect("a reject");
    assert_eq!(clock::instant() - started, Duration::from_millis(1500));
    assert_eq!(
        verify_reply(&reply, &request, SECRET).get_code(),
        Code::AccessReject
    );
    match e.inbound(&request, gw_src(), clock::instant()) {
        Inbound::Send(bytes) => assert_eq!(bytes, reply, "then resent from the cache"),
        _ => panic!("expected the cached reply"),
    }
}
