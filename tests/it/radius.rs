//! RADIUS against the real otpd: FreeRADIUS's radclient, FreeRADIUS as a proxy, and our own
//! client for what radclient cannot do (the RADIUS issue).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{Otpd, RADIUS_SECRET};
use otpd_testkit::freeradius::{radclient, FreeRadius, GATEWAY_SECRET};
use otpd_testkit::radius::*;

/// taro's PAP login through the FreeRADIUS proxy `fr`: radclient's output.
fn login_through(fr: &FreeRadius, password: &str) -> String {
    radclient(
        fr.addr,
        GATEWAY_SECRET,
        &format!("User-Name = taro\nUser-Password = {password}\n"),
    )
}

fn with_user(extra: &str) -> Otpd {
    let d = Otpd::start(extra);
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    d
}

#[test]
fn radclient_logs_in_with_the_password_before_start_of_use() {
    let d = with_user("");
    let out = radclient(
        d.radius(),
        RADIUS_SECRET,
        "User-Name = taro\nUser-Password = login-pw\nMessage-Authenticator = 0x00\n",
    );
    assert!(out.contains("Received Access-Accept"), "{out}");
    let out = radclient(
        d.radius(),
        RADIUS_SECRET,
        "User-Name = taro\nUser-Password = wrong\nMessage-Authenticator = 0x00\n",
    );
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert!(out.contains("Login failed"), "{out}");
    let audit = d.stderr();
    assert!(
        audit.contains("audit radius accept user=\"taro\""),
        "{audit}"
    );
    assert!(audit.contains("reason=bad_password"), "{audit}");
    assert!(!audit.contains("login-pw"), "a password reached the log");
}

#[test]
fn freeradius_as_a_proxy_in_front_of_otpd() {
    let d = with_user("");
    let fr = FreeRadius::proxy_to(d.radius());
    let out = login_through(&fr, "login-pw");
    assert!(
        out.contains("Received Access-Accept"),
        "{out}\n{}",
        fr.log()
    );
    let out = login_through(&fr, "nope");
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert!(
        out.contains("Login failed"),
        "otpd's Reply-Message passes through the proxy: {out}"
    );
}

#[test]
fn otp_required_refuses_users_without_a_token() {
    let d = with_user("[otp]\nrequired = true\n");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let r = c.login(1, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(r.message().contains("token is required"), "{}", r.message());
}

#[test]
fn replies_carry_the_message_authenticator_first_and_proxy_states_in_order() {
    let d = with_user("[radius]\nreject_delay_ms = 0\n");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let req = Request::access(7, "taro", "login-pw", RADIUS_SECRET.as_bytes())
        .attr(PROXY_STATE, b"first")
        .attr(PROXY_STATE, b"second")
        .attr(PROXY_STATE, b"third");
    let r = c.exchange(&req);
    assert_eq!(r.code, ACCESS_ACCEPT);
    assert_eq!(r.all(PROXY_STATE), vec![&b"first"[..], b"second", b"third"]);
    let bad = Request::access(8, "taro", "wrong", RADIUS_SECRET.as_bytes()).attr(PROXY_STATE, b"x");
    let r = c.exchange(&bad);
    assert_eq!(r.code, ACCESS_REJECT);
    assert_eq!(r.all(PROXY_STATE), vec![&b"x"[..]]);
}

#[test]
fn bad_requests_are_dropped_silently() {
    let d = with_user("");
    let server = d.radius();
    let c = Client::new(server, RADIUS_SECRET);
    let quiet = Duration::from_millis(1500);
    let req = Request::access(1, "taro", "login-pw", RADIUS_SECRET.as_bytes());
    // No Message-Authenticator (required by default).
    c.send_raw(&req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Missing));
    assert!(
        c.recv_raw(quiet).is_none(),
        "no Message-Authenticator: dropped"
    );
    // A corrupted one.
    c.send_raw(&req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Corrupt));
    assert!(
        c.recv_raw(quiet).is_none(),
        "corrupt Message-Authenticator: dropped"
    );
    // The wrong shared secret.
    let wrong = Request::access(2, "taro", "login-pw", b"not-the-secret-at-all");
    c.send_raw(&wrong.encode(ACCESS_REQUEST, b"not-the-secret-at-all", Ma::Good));
    assert!(c.recv_raw(quiet).is_none(), "wrong secret: dropped");
    // An unknown source address.
    let stranger = Client::bound("127.0.0.2:0", server, RADIUS_SECRET);
    stranger.send_raw(&req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Good));
    assert!(
        stranger.recv_raw(quiet).is_none(),
        "unknown client: dropped"
    );
    // The daemon is still well and answers a proper request.
    assert_eq!(c.login(3, "taro", "login-pw").code, ACCESS_ACCEPT);
    let log = d.stderr();
    for reason in [
        "missing_message_authenticator",
        "bad_message_authenticator",
        "unknown_client",
    ] {
        assert!(log.contains(reason), "no drop line for {reason}:\n{log}");
    }
}

#[test]
fn a_client_may_be_allowed_to_omit_the_message_authenticator() {
    let extra = format!(
        "[[radius.clients]]\nname = \"legacy\"\naddress = \"127.0.0.3\"\nsecret = \"{RADIUS_SECRET}\"\nrequire_message_authenticator = false\n"
    );
    let d = with_user(&extra);
    let legacy = Client::bound("127.0.0.3:0", d.radius(), RADIUS_SECRET);
    let req = Request::access(1, "taro", "login-pw", RADIUS_SECRET.as_bytes());
    legacy.send_raw(&req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Missing));
    let raw = legacy.recv_raw(Duration::from_secs(5)).expect("answered");
    let r = verify_reply(&raw, &req, RADIUS_SECRET.as_bytes());
    assert_eq!(r.code, ACCESS_ACCEPT);
}

#[test]
fn a_retransmission_gets_the_cached_reply() {
    let d = with_user("");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let req = Request::access(42, "taro", "login-pw", RADIUS_SECRET.as_bytes());
    let bytes = req.encode(ACCESS_REQUEST, RADIUS_SECRET.as_bytes(), Ma::Good);
    c.send_raw(&bytes);
    let first = c.recv_raw(Duration::from_secs(5)).expect("reply");
    c.send_raw(&bytes);
    let second = c.recv_raw(Duration::from_secs(5)).expect("cached reply");
    assert_eq!(first, second, "byte for byte");
    let accepts = d.stderr().matches("audit radius accept").count();
    assert_eq!(accepts, 1, "evaluated once:\n{}", d.stderr());
}

#[test]
fn rejects_wait_for_the_reject_delay() {
    let _heavy = otpd_testkit::serial::heavy();
    let d = with_user("[radius]\nreject_delay_ms = 700\n");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let started = Instant::now();
    let r = c.login(1, "taro", "wrong");
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(c.login(2, "taro", "login-pw").code, ACCESS_ACCEPT);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "accepts are not delayed"
    );
}

#[test]
fn a_128_octet_password_is_decoded() {
    let d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let long = "p".repeat(120);
    d.ctl_ok(
        &["user", "add", "long", "--password-stdin"],
        &format!("{long}\n"),
    );
    let c = Client::new(d.radius(), RADIUS_SECRET);
    assert_eq!(c.login(1, "long", &long).code, ACCESS_ACCEPT);
    // 128 octets: the password and an eight-character tail, the most PAP can carry.
    assert_eq!(
        c.login(2, "long", &format!("{long}12345678")).code,
        ACCESS_REJECT
    );
}

#[test]
fn thousands_of_malformed_packets_then_a_valid_answer() {
    let d = with_user("");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let good = Request::access(9, "taro", "login-pw", RADIUS_SECRET.as_bytes()).encode(
        ACCESS_REQUEST,
        RADIUS_SECRET.as_bytes(),
        Ma::Good,
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..5000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut p = good.clone();
        match i % 4 {
            0 => p.truncate((seed % 20) as usize),
            1 => {
                let at = (seed as usize) % p.len();
                p[at] ^= 0xff;
            }
            2 => p[2..4].copy_from_slice(&4096u16.to_be_bytes()),
            _ => p = seed.to_be_bytes().repeat(1 + (seed % 50) as usize),
        }
        c.send_raw(&p);
    }
    // Drain whatever was answered (a mutation can still be a valid packet), then ask.
    while c.recv_raw(Duration::from_millis(300)).is_some() {}
    let r = c.login(10, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_ACCEPT);
}

#[test]
fn status_server_is_answered() {
    let d = Otpd::start("");
    let out = std::process::Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "5"])
        .arg(d.radius().to_string())
        .args(["status", RADIUS_SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"Message-Authenticator = 0x00\n")?;
            c.wait_with_output()
        })
        .expect("radclient");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Received Access-Accept"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_gateway_over_its_failure_budget_still_gets_a_correct_login_through() {
    let extra = format!(
        "[radius]\nreject_delay_ms = 0\nclient_failure_burst = 3\nclient_failure_rate = 1\n\n[[radius.clients]]\nname = \"other\"\naddress = \"127.0.0.3\"\nsecret = \"{RADIUS_SECRET}\"\n"
    );
    let d = Otpd::start(&extra);
    for u in ["a", "b", "c", "d"] {
        d.ctl_ok(&["user", "add", u, "--password-stdin"], "right\n");
    }
    let flood = Client::new(d.radius(), RADIUS_SECRET);
    for (i, u) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(flood.login(i as u8, u, "wrong").code, ACCESS_REJECT);
    }
    assert!(
        d.stderr().contains("exceeded its failed-login budget"),
        "{}",
        d.stderr()
    );
    // Over budget, a customer's correct password from this gateway is still evaluated and
    // accepted: the budget only puts the gateway's logins behind other gateways'.
    assert_eq!(flood.login(10, "d", "right").code, ACCESS_ACCEPT);
    assert!(
        !d.stderr().contains("reason=client_rate_limited"),
        "{}",
        d.stderr()
    );
    assert_eq!(d.show("d")["failures"], 0);
    // Another gateway's customers log in as usual.
    let other = Client::bound("127.0.0.3:0", d.radius(), RADIUS_SECRET);
    assert_eq!(other.login(1, "d", "right").code, ACCESS_ACCEPT);
}

use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::token::{activate, setup};

#[test]
fn password_and_otp_after_start_of_use_and_replay_refused() {
    let d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let secret = activate(&d, "taro", "login-pw");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    // The password alone no longer suffices: it gets a challenge.
    let r = c.login(1, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_CHALLENGE);
    assert!(
        r.get(STATE).is_some_and(|s| s.len() >= 16),
        "a random State"
    );
    assert!(r.message().contains("one-time password"), "{}", r.message());
    // Password + current OTP: accepted once.
    let code = oathtool(&secret, None);
    assert_eq!(
        c.login(2, "taro", &format!("login-pw{code}")).code,
        ACCESS_ACCEPT
    );
    // The same code again (a new request, not a retransmission): refused.
    assert_eq!(
        c.login(3, "taro", &format!("login-pw{code}")).code,
        ACCESS_REJECT
    );
    assert!(d.stderr().contains("reason=otp_replayed"), "{}", d.stderr());
    // A wrong OTP with the right password reads like any failure.
    let r = c.login(4, "taro", "login-pw000000");
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(r.message().contains("Login failed"), "{}", r.message());
}

#[test]
fn challenge_round_trip_with_radclient() {
    let d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let secret = activate(&d, "taro", "login-pw");
    let out = radclient(
        d.radius(),
        RADIUS_SECRET,
        "User-Name = taro\nUser-Password = login-pw\nMessage-Authenticator = 0x00\n",
    );
    assert!(out.contains("Received Access-Challenge"), "{out}");
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .expect("State in the challenge")
        .to_string();
    let code = oathtool(&secret, None);
    let answer = format!(
        "User-Name = taro\nUser-Password = {code}\nState = {state}\nMessage-Authenticator = 0x00\n"
    );
    let out = radclient(d.radius(), RADIUS_SECRET, &answer);
    assert!(out.contains("Received Access-Accept"), "{out}");
    // The State is single-use.
    let out = radclient(d.radius(), RADIUS_SECRET, &answer);
    assert!(out.contains("Received Access-Reject"), "{out}");
}

#[test]
fn through_freeradius_an_otp_login_is_accepted_and_a_wrong_otp_rejected() {
    let d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let secret = activate(&d, "taro", "login-pw");
    let fr = FreeRadius::proxy_to(d.radius());
    let code = oathtool(&secret, None);
    let out = login_through(&fr, &format!("login-pw{code}"));
    assert!(
        out.contains("Received Access-Accept"),
        "{out}\n{}",
        fr.log()
    );
    let out = login_through(&fr, "login-pw000000");
    assert!(out.contains("Received Access-Reject"), "{out}");
}

#[test]
fn provisioned_but_not_started_logs_in_with_the_password() {
    let d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    setup(&d, "taro", "login-pw");
    assert_eq!(d.show("taro")["state"], "provisioned");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    assert_eq!(c.login(1, "taro", "login-pw").code, ACCESS_ACCEPT);
}

#[test]
fn an_expired_token_is_refused_with_a_renewal_hint() {
    let mut d = Otpd::start("[radius]\nreject_delay_ms = 0\n");
    let secret = activate(&d, "taro", "login-pw");
    // Four years and a day later.
    let later = 1462 * 86_400;
    d.stop();
    d.relaunch_with_clock(later);
    let code = oathtool(&secret, Some(now() + later));
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let r = c.login(1, "taro", &format!("login-pw{code}"));
    assert_eq!(r.code, ACCESS_REJECT);
    assert!(r.message().contains("expired"), "{}", r.message());
    assert_eq!(d.show("taro")["state"], "expired");
    assert_eq!(d.show("taro")["renewal_available"], true);
    // Before the password is proven, nothing is said about the token.
    let r = c.login(2, "taro", "wrong-pw123456");
    assert!(r.message().contains("Login failed"), "{}", r.message());
}

/// Sends a login for `user` through `fr` every half second until it is accepted; the time
/// that took. FreeRADIUS's own answers (a Reject while it holds otpd dead) do not count.
fn poll_until_accepted(fr: &FreeRadius, user: &str, password: &str, limit: Duration) -> Duration {
    let c = Client::new(fr.addr, GATEWAY_SECRET);
    let start = Instant::now();
    let mut id: u8 = 100;
    loop {
        assert!(
            start.elapsed() < limit,
            "no Accept through FreeRADIUS within {limit:?} of otpd's restart:\n{}",
            fr.log()
        );
        id = id.wrapping_add(1);
        let req = Request::access(id, user, password, GATEWAY_SECRET.as_bytes());
        c.send_raw(&req.encode(ACCESS_REQUEST, GATEWAY_SECRET.as_bytes(), Ma::Good));
        let waited = Instant::now();
        while let Some(raw) =
            c.recv_raw(Duration::from_millis(500).saturating_sub(waited.elapsed()))
        {
            if raw.first() == Some(&ACCESS_ACCEPT) && raw.get(1) == Some(&id) {
                return start.elapsed();
            }
            if waited.elapsed() >= Duration::from_millis(500) {
                break;
            }
        }
    }
}

#[test]
fn freeradius_in_front_recovers_within_seconds_of_an_otpd_restart() {
    let mut d = with_user("[radius]\nreject_delay_ms = 0\n");
    let fr = FreeRadius::proxy_to(d.radius());
    let c = Client::new(fr.addr, GATEWAY_SECRET);
    assert_eq!(
        c.login(1, "taro", "login-pw").code,
        ACCESS_ACCEPT,
        "{}",
        fr.log()
    );
    // Logins keep arriving while otpd is down, one every half second: FreeRADIUS sees its
    // home server stop answering and holds it a zombie (no answer within response_window).
    assert!(d.stop().success());
    let down = Instant::now();
    let mut id = 2u8;
    while !fr.log().contains("as zombie") {
        assert!(
            down.elapsed() < Duration::from_secs(30),
            "FreeRADIUS never noticed: {}",
            fr.log()
        );
        id = id.wrapping_add(1).max(2);
        let req = Request::access(id, "taro", "login-pw", GATEWAY_SECRET.as_bytes());
        c.send_raw(&req.encode(ACCESS_REQUEST, GATEWAY_SECRET.as_bytes(), Ma::Good));
        c.recv_raw(Duration::from_millis(500));
    }
    d.launch();
    let took = poll_until_accepted(&fr, "taro", "login-pw", Duration::from_secs(60));
    eprintln!("FreeRADIUS accepted logins again {took:?} after otpd was back");
    // One check_interval (6 s) and the answer's round trip, with room for a loaded machine.
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}:\n{}",
        fr.log()
    );
}

const CHAP_PASSWORD: u8 = 3;

#[test]
fn rejects_decided_before_the_handler_read_like_the_others_and_log_what_arrived() {
    let d = with_user("[radius]\nreject_delay_ms = 0\n");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let wrong = c.login(1, "taro", "wrong");
    assert_eq!(wrong.code, ACCESS_REJECT);
    assert!(
        wrong.message().contains("Login failed"),
        "{}",
        wrong.message()
    );

    let mut chap_value = vec![7u8];
    chap_value.extend_from_slice(&[0x5a; 16]);
    let chap = Request::new(2)
        .attr(USER_NAME, b"taro")
        .attr(CHAP_PASSWORD, &chap_value);
    let r = c.exchange(&chap);
    assert_eq!(r.code, ACCESS_REJECT);
    assert_eq!(
        r.message(),
        wrong.message(),
        "CHAP refused in the same words"
    );

    let bad_state = Request::access(3, "taro", "123456", RADIUS_SECRET.as_bytes())
        .attr(STATE, b"not-a-state-of-ours");
    let r = c.exchange(&bad_state);
    assert_eq!(r.code, ACCESS_REJECT);
    assert_eq!(
        r.message(),
        wrong.message(),
        "a bad State refused in the same words"
    );

    let log = wait_until_logged(&d, "reason=bad_state");
    assert!(
        log.contains("input=chap reason=no_user_password"),
        "what arrived: {log}"
    );
    assert!(
        log.contains("input=challenge_response reason=bad_state"),
        "{log}"
    );
    assert!(
        !log.contains("input=password reason=no_user_password"),
        "{log}"
    );
}

fn wait_until_logged(d: &Otpd, needle: &str) -> String {
    otpd_testkit::daemon::wait_until("the audit line", Duration::from_secs(10), || {
        let log = d.stderr();
        log.contains(needle).then_some(log)
    })
}

fn value_of(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{page}"))
}

#[test]
fn metrics_count_logins_drops_and_doors_and_never_name_a_user() {
    let port = otpd_testkit::daemon::free_tcp_port();
    let d = with_user(&format!(
        "[radius]\nreject_delay_ms = 0\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let c = Client::new(d.radius(), RADIUS_SECRET);
    // A wrong shared secret: dropped unanswered, counted.
    let forged = Client::new(d.radius(), "not-the-secret-0123456789");
    let req = Request::access(1, "taro", "login-pw", forged.secret.as_slice());
    forged.send_raw(&req.encode(ACCESS_REQUEST, &forged.secret, Ma::Good));
    assert_eq!(c.login(2, "taro", "login-pw").code, ACCESS_ACCEPT);
    assert_eq!(c.login(3, "taro", "wrong").code, ACCESS_REJECT);
    assert_eq!(c.login(4, "taro", "wrong-again").code, ACCESS_REJECT);
    let http = d.http();
    assert_eq!(otpd_testkit::http::get(http, "/healthz").status, 200);
    assert_eq!(
        otpd_testkit::http::get(http, "/metrics").status,
        404,
        "never on the public HTTP listener"
    );

    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let page = otpd_testkit::http::get(metrics, "/metrics").text();
    let v = |s: &str| value_of(&page, s);
    assert_eq!(
        v(r#"otpd_radius_requests_total{client="test",outcome="accept",reason="none"}"#),
        1.0
    );
    assert_eq!(
        v(r#"otpd_radius_requests_total{client="test",outcome="reject",reason="bad_password"}"#),
        2.0
    );
    assert_eq!(
        v(r#"otpd_radius_dropped_total{reason="bad_message_authenticator",client="test"}"#),
        1.0
    );
    assert_eq!(v(r#"otpd_users{state="unregistered"}"#), 1.0);
    assert_eq!(v(r#"otpd_users{state="active"}"#), 0.0);
    assert_eq!(v("otpd_users_locked"), 0.0);
    assert_eq!(v("otpd_mail_outbox_messages"), 0.0);
    assert_eq!(v("otpd_mail_outbox_oldest_age_seconds"), 0.0);
    assert_eq!(v("otpd_store_errors_total"), 0.0);
    assert_eq!(
        v(r#"otpd_request_duration_seconds_count{door="radius"}"#),
        3.0
    );
    assert!(v(r#"otpd_request_duration_seconds_count{door="admin"}"#) >= 1.0);
    assert!(v(r#"otpd_request_duration_seconds_count{door="http"}"#) >= 2.0);
    assert!(
        v("otpd_store_commit_batch_size_count") >= 3.0,
        "each login committed"
    );
    assert!(v("otpd_radius_reply_cache_entries") >= 3.0);
    assert_eq!(v("otpd_radius_challenge_states"), 0.0);
    for secret in ["taro", "login-pw", "wrong", RADIUS_SECRET] {
        assert!(!page.contains(secret), "{secret:?} in the metrics:\n{page}");
    }
}

fn radsec_otpd(pki: &otpd_testkit::radsec::Pki) -> (Otpd, SocketAddr) {
    let port = otpd_testkit::radsec::free_port();
    let d = Otpd::start(&format!(
        "[radius]\nreject_delay_ms = 0\n{}",
        pki.otpd_config(port)
    ));
    let tls: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    (d, tls)
}

/// Password, Access-Challenge, OTP with the State, Access-Accept: through `proxy`.
fn challenge_round_trip(proxy: SocketAddr, secret_b32: &str) {
    let c = Client::new(proxy, GATEWAY_SECRET);
    let r = c.login(1, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_CHALLENGE, "{}", r.message());
    let state = r.get(STATE).expect("a State").to_vec();
    let code = oathtool(secret_b32, None);
    let answer = Request::access(2, "taro", &code, GATEWAY_SECRET.as_bytes()).attr(STATE, &state);
    let r = c.exchange(&answer);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", r.message());
}

#[test]
fn radsecproxy_over_tls_reaches_otpd_with_a_challenge_round_trip() {
    let pki = otpd_testkit::radsec::Pki::new();
    let (d, tls) = radsec_otpd(&pki);
    let secret = activate(&d, "taro", "login-pw");
    let proxy = otpd_testkit::radsec::RadsecProxy::proxy_to(&pki, tls);
    challenge_round_trip(proxy.addr, &secret);
    let log = wait_until_logged(&d, "input=challenge_response");
    assert!(
        log.contains("audit radius challenge user=\"taro\" client=\"radsec-proxy\""),
        "{log}\n{}",
        proxy.log()
    );
    assert!(
        log.contains("audit radius accept user=\"taro\" client=\"radsec-proxy\""),
        "{log}"
    );
}

#[test]
fn a_tls_client_without_a_trusted_certificate_is_refused_before_any_radius() {
    let pki = otpd_testkit::radsec::Pki::new();
    let (d, tls) = radsec_otpd(&pki);
    let packet = Request::access(1, "taro", "login-pw", b"radsec").encode(
        ACCESS_REQUEST,
        b"radsec",
        Ma::Good,
    );
    for cert in [Some("proxy.test-rogue-ca"), None] {
        let mut child = pki.s_client(tls.port(), cert, false);
        use std::io::Write;
        let _ = child.stdin.take().expect("stdin").write_all(&packet);
        let out = child.wait_with_output().expect("s_client");
        assert!(out.stdout.is_empty(), "no RADIUS reply: {:?}", out.stdout);
    }
    let log = wait_until_logged(&d, "reason=no_certificate");
    assert_eq!(
        log.matches("radius tls: handshake with 127.0.0.1").count(),
        2,
        "both refused in the handshake: {log}"
    );
    assert!(log.contains("reason=untrusted_certificate"), "{log}");
    assert!(!log.contains("audit radius"), "no RADIUS was read: {log}");
}

#[test]
fn freeradius_proxies_over_tls_to_otpd_with_a_challenge_round_trip() {
    let pki = otpd_testkit::radsec::Pki::new();
    let (d, tls) = radsec_otpd(&pki);
    let secret = activate(&d, "taro", "login-pw");
    let fr = FreeRadius::proxy_over_tls(tls, &pki);
    challenge_round_trip(fr.addr, &secret);
    let log = wait_until_logged(&d, "input=challenge_response");
    assert!(
        log.contains("audit radius accept user=\"taro\" client=\"radsec-proxy\""),
        "{log}\n{}",
        fr.log()
    );
}

#[test]
fn status_server_is_answered_over_the_tls_connection_and_an_idle_one_is_closed() {
    let pki = otpd_testkit::radsec::Pki::new();
    let port = otpd_testkit::radsec::free_port();
    let config = pki
        .otpd_config(port)
        .replace("idle_timeout_seconds = 30", "idle_timeout_seconds = 1");
    let _d = Otpd::start(&config);
    let status = Request::new(9).encode(STATUS_SERVER, b"radsec", Ma::Good);
    let mut child = pki.s_client(port, Some("proxy.test-ca"), true);
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&status)
        .expect("send");
    // s_client ends only when otpd closes the idle connection.
    otpd_testkit::daemon::wait_until(
        "otpd to close the idle connection",
        Duration::from_secs(20),
        || child.try_wait().ok().flatten(),
    );
    let mut reply = Vec::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut reply)
        .expect("read");
    assert!(reply.len() >= 20, "a reply over the connection: {reply:?}");
    assert_eq!(
        (reply[0], reply[1]),
        (ACCESS_ACCEPT, 9),
        "Status-Server answered"
    );
}

#[test]
fn tls_connections_beyond_the_bound_are_refused() {
    let pki = otpd_testkit::radsec::Pki::new();
    let port = otpd_testkit::radsec::free_port();
    let config = pki.otpd_config(port).replace(
        "idle_timeout_seconds = 30\n",
        "idle_timeout_seconds = 30\nmax_connections = 1\n",
    );
    let d = Otpd::start(&config);
    let s_client = || pki.s_client(port, Some("proxy.test-ca"), true);
    // The first holds the only connection (it answers a Status-Server, so it is set up).
    let mut first = s_client();
    use std::io::{Read, Write};
    let status = Request::new(3).encode(STATUS_SERVER, b"radsec", Ma::Good);
    let mut first_in = first.stdin.take().expect("stdin");
    first_in.write_all(&status).expect("send");
    let mut reply = [0u8; 20];
    first
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut reply)
        .expect("the first connection is answered");
    assert_eq!(reply[0], ACCESS_ACCEPT);
    // The second is closed at once, with a line saying why.
    let mut second = s_client();
    otpd_testkit::daemon::wait_until(
        "otpd to refuse the second connection",
        Duration::from_secs(20),
        || second.try_wait().ok().flatten(),
    );
    let log = wait_until_logged(&d, "reason=too_many_connections");
    assert!(log.contains("1 connections open already"), "{log}");
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_burst_of_bad_tls_handshakes_logs_one_line_and_counts_every_one() {
    const BURST: usize = 30;
    let pki = otpd_testkit::radsec::Pki::new();
    let (port, metrics_port) = (
        otpd_testkit::radsec::free_port(),
        otpd_testkit::daemon::free_tcp_port(),
    );
    let d = Otpd::start(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
        pki.otpd_config(port)
    ));
    use std::io::{Read, Write};
    for _ in 0..BURST {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"not a TLS ClientHello\r\n").expect("send");
        // otpd answers with an alert at most, then closes.
        let _ = s.read_to_end(&mut Vec::new());
    }
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().expect("addr");
    let series = r#"otpd_radius_tls_refused_total{reason="handshake_failed"}"#;
    let page =
        otpd_testkit::daemon::wait_until("every refusal counted", Duration::from_secs(10), || {
            let page = otpd_testkit::http::get(metrics, "/metrics").text();
            (page.contains(series) && value_of(&page, series) >= BURST as f64).then_some(page)
        });
    assert_eq!(value_of(&page, series), BURST as f64, "{page}");
    assert!(
        !page.contains("127.0.0.1:"),
        "no address in a label:\n{page}"
    );
    let log = d.stderr();
    assert_eq!(
        log.matches("reason=handshake_failed").count(),
        1,
        "one line for the burst:\n{log}"
    );
}
