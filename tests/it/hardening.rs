//! The findings of the outside probe (SECURITY.md, "Findings fixed"), each through the
//! real binaries: memory at the production argon2 setting, renewal that told which user
//! IDs exist and could lock them, loose credential files, and the smaller edges.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{bin, chmod, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::http::{get, post_form, post_json, request};
use otpd_testkit::oath::oathtool;
use otpd_testkit::radius::{Client, ACCESS_ACCEPT};
use otpd_testkit::token::{activate, issue};
use serde_json::json;
use std::os::unix::net::UnixStream;

/// Resident and peak resident size of a process, KiB (`VmRSS`, `VmHWM`).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// High: memory grew by hundreds of MiB over a few hundred logins at the default argon2id
/// setting (m=19 MiB) and stayed there. Expected: baseline plus one argon2 block set per
/// hashing slot (one per core), flat over thousands of logins and given back when idle.
/// `OTPD_RSS_LOGINS` sets the number of logins (default 2000).
#[test]
fn default_argon2_logins_keep_memory_flat() {
    let _heavy = otpd_testkit::serial::heavy();
    let logins: usize = std::env::var("OTPD_RSS_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let d = Otpd::start("[password]\nargon2_memory_kib = 19456\nargon2_iterations = 2\n");
    const USERS: usize = 8;
    for i in 0..USERS {
        d.ctl_ok(
            &["user", "add", &format!("rss{i}"), "--password-stdin"],
            &format!("login-pw-{i}\n"),
        );
    }
    let pid = d.pid().expect("running");
    let (start, _) = rss_kib(pid);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    // One block set (19 MiB) per hashing slot, plus room for sled, the runtime and sockets.
    let bound = start + cores * 19 * 1024 + 24 * 1024;
    let addr = d.radius();
    let began = Instant::now();
    let mut curve = vec![("start".to_string(), start)];
    let mut done = 0;
    while done < logins {
        let round = (logins - done).min(1000);
        std::thread::scope(|s| {
            for t in 0..USERS {
                s.spawn(move || {
                    let c = Client::new(addr, RADIUS_SECRET);
                    for k in 0..round / USERS {
                        let r = c.login(k as u8, &format!("rss{t}"), &format!("login-pw-{t}"));
                        assert_eq!(r.code, ACCESS_ACCEPT, "login {k} of rss{t}");
                    }
                });
            }
        });
        done += round / USERS * USERS;
        let (now, peak) = rss_kib(pid);
        curve.push((format!("after {done} logins (peak {peak})"), now));
        assert!(
            peak <= bound,
            "peak RSS {peak} KiB after {done} logins exceeds {bound} KiB (start {start} KiB + {cores} x 19 MiB + 24 MiB); curve {curve:?}"
        );
    }
    let (idle, peak) = rss_kib(pid);
    curve.push(("idle".into(), idle));
    eprintln!(
        "RSS KiB over {done} default-setting logins in {:?}: {curve:?}, peak {peak}",
        began.elapsed()
    );
    assert!(peak <= bound, "peak {peak} KiB > bound {bound} KiB");
}

fn renew(d: &Otpd, user: &str, otp: &str) -> (u16, String) {
    let r = post_json(
        d.http(),
        "/api/v1/renew",
        &json!({"service_id": "TEST-BANK", "user_id": user, "otp": otp}),
    );
    (r.status, r.text())
}

/// Medium: `/api/v1/renew` told which user IDs exist (401 for unknown, 409 for a user
/// without a token, 423 for one with a token after 5 wrong codes). Now every refusal
/// before a valid OTP reads the same, byte for byte, whoever the user is.
#[test]
fn renewal_answers_alike_for_unknown_users_and_every_state() {
    let d = Otpd::start("[http]\ncustomer_burst = 1000\ncustomer_burst_total = 1000\n");
    d.ctl_ok(&["user", "add", "plain", "--password-stdin"], "pw-plain\n");
    let secret = activate(&d, "holder", "pw-holder");
    let unknown = renew(&d, "nobody", "000000");
    assert_eq!(unknown.0, 401, "{}", unknown.1);
    for attempt in 0..8 {
        for who in ["plain", "holder", "nobody"] {
            let r = renew(&d, who, "000000");
            assert_eq!(r, unknown, "{who}, attempt {attempt}");
        }
    }
    // The holder's renewal is now locked; even the right code gets the same answer.
    let right = oathtool(&secret, None);
    assert_eq!(renew(&d, "holder", &right), unknown);
    // The page twin says the same for all three.
    let page = |who: &str| {
        let r = post_form(
            d.http(),
            "/renew",
            &[
                ("service_id", "TEST-BANK"),
                ("user_id", who),
                ("otp", "000000"),
            ],
        );
        (r.status, r.text().replace(who, "<id>"))
    };
    assert_eq!(page("plain"), page("nobody"));
    assert_eq!(page("holder"), page("nobody"));
}

/// Medium: five wrong renewal codes blocked a customer's renewal on a lock of its own,
/// which doubled the guesses a thief had. Now they count on the login's lock: it shows in
/// `user show`, stops logins too, and `token unlock` clears it.
#[test]
fn renewal_failures_lock_the_login_and_token_unlock_clears_it() {
    let d = Otpd::start("[token]\nvalidity_days = 1461\n");
    let secret = activate(&d, "taro", "pw-taro");
    for _ in 0..5 {
        assert_eq!(renew(&d, "taro", "000000").0, 401);
    }
    let v = d.show("taro");
    assert_eq!(
        v["locked"], true,
        "renewal guesses count on the login lock: {v}"
    );
    d.ctl_ok(&["token", "unlock", "taro"], "");
    assert_eq!(d.show("taro")["locked"], false);
    // Unlocked, a valid code reaches the window check: too early, and it says when.
    let (status, body) = renew(&d, "taro", &oathtool(&secret, None));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("renewal_not_yet_available"), "{body}");
}

/// Medium: no rate limit on the customer endpoints (~600 requests/s were served). Now a
/// source gets its burst, then 429 with Retry-After; other sources are not held back by it.
#[test]
fn customer_endpoints_are_rate_limited_per_source() {
    let d = Otpd::start("[http]\ncustomer_rate = 0.1\ncustomer_burst = 5\n");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(renew(&d, "nobody", "000000").0);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 3], "{statuses:?}");
    let r = post_json(
        d.http(),
        "/api/v1/renew",
        &json!({"service_id": "TEST-BANK", "user_id": "x", "otp": "1"}),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "rate_limited");
    // A page gets a page.
    let page = get(d.http(), "/renew");
    assert_eq!(page.status, 429);
    assert!(
        page.text().contains("しばらく") || page.text().contains("少し時間"),
        "{}",
        page.text()
    );
    // The health check is not a customer endpoint.
    assert_eq!(get(d.http(), "/healthz").status, 200);
    // Behind a trusted proxy, each forwarded-for source has its own bucket; the proxy's
    // own address is not the source, and an untrusted peer cannot pick its source.
    drop(d);
    let d = Otpd::start(
        "[http]\ncustomer_rate = 0.1\ncustomer_burst = 2\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let via = |source: &str| {
        request(
            d.http(),
            "GET",
            "/renew",
            &[("X-Forwarded-For", &format!("198.51.100.9, {source}"))],
            b"",
        )
        .status
    };
    assert_eq!(
        [via("203.0.113.1"), via("203.0.113.1"), via("203.0.113.1")],
        [200, 200, 429]
    );
    assert_eq!(
        via("203.0.113.2"),
        200,
        "another customer behind the same proxy"
    );
}

/// `otpd --check-config`: exit status and everything it printed.
fn check_config(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin("otpd"))
        .arg("--check-config")
        .arg("--config")
        .arg(config)
        .output()
        .expect("otpd --check-config");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// Medium: an API key file and a RADIUS secret_file at 0644 were accepted silently. Now
/// every credential file others may read is refused, by the start and by --check-config,
/// with a line naming the file and the chmod that fixes it.
#[test]
fn credential_files_others_can_read_are_refused() {
    let cases = [
        (
            "[[http.api_keys]]\nname = \"ib\"\nkey_file = \"cred\"\n",
            "kQ9-integration-key-7d1f0c2b\n",
        ),
        (
            "[[radius.clients]]\nname = \"gw2\"\naddress = \"10.9.0.0/16\"\nsecret_file = \"cred\"\n",
            "a-long-shared-secret-for-gw2\n",
        ),
        (
            "[mail]\nusername = \"otpd\"\npassword_file = \"cred\"\n",
            "relay-password\n",
        ),
    ];
    for (extra, content) in cases {
        for mode in [0o644, 0o640, 0o604] {
            let site = Otpd::builder().config(extra).unstarted();
            let (dir, config) = (&site.dir, site.config.clone());
            let cred = dir.path().join("cred");
            std::fs::write(&cred, content).expect("cred");
            chmod(&cred, mode);
            let (code, text) = check_config(&config);
            assert_eq!(code, Some(2), "{extra} {mode:o}: {text}");
            let fix = format!("chmod 600 {}", cred.display());
            assert!(
                text.contains(&fix),
                "{extra} {mode:o}: names the file and the fix: {text}"
            );
            let (status, text) = site.run_to_exit();
            assert_eq!(status.code(), Some(2), "{text}");
            assert!(text.contains(&fix), "{text}");
            chmod(&cred, 0o600);
            let (code, text) = check_config(&config);
            assert_eq!(code, Some(0), "{extra} at 0600: {text}");
        }
    }
    // A config file everyone may read that holds an inline shared secret: a warning.
    let site = Otpd::builder().unstarted();
    let config = site.config.clone();
    chmod(&config, 0o644);
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("holds inline RADIUS shared secrets") && text.contains("chmod 640"),
        "{text}"
    );
    chmod(&config, 0o640);
    let (_, text) = check_config(&config);
    assert!(!text.contains("inline RADIUS"), "{text}");
}

/// Low: --check-config passed configs that otpd then refused to start. Now it makes every
/// start-time refusal: a readable key file, a duplicate client address, an admin socket
/// folder anyone may write to, a data folder anyone may enter.
#[test]
fn check_config_makes_every_start_time_refusal() {
    let site = Otpd::builder().unstarted();
    let (dir, config) = (&site.dir, site.config.clone());
    let key = dir.path().join("master.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("key");
    chmod(&key, 0o644);
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("master.key") && text.contains("chmod 600"),
        "{text}"
    );

    let site = Otpd::builder().config(
        "[[radius.clients]]\nname = \"twin\"\naddress = \"127.0.0.1\"\nsecret = \"another-secret-0123456789\"\n",
    ).unstarted();
    let config = site.config.clone();
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("same address"), "{text}");

    let site = Otpd::builder()
        .config("[admin]\nsocket = \"run/admin.sock\"\n")
        .unstarted();
    let (dir, config) = (&site.dir, site.config.clone());
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    chmod(&run, 0o777);
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("writable by everyone"), "{text}");

    let site = Otpd::builder().unstarted();
    let (dir, config) = (&site.dir, site.config.clone());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o755);
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("chmod 700"), "{text}");
    // The start says the same, before anything is served.
    let (status, text) = site.run_to_exit();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("data_dir") && text.contains("chmod 700"),
        "{text}"
    );
    assert!(!dir.path().join("admin.sock").exists());
}

/// Low: outside the systemd unit (umask 022) data_dir was created 0755 and the store files
/// 0644. Now the folder is created 0700 whatever the umask.
#[test]
fn data_dir_is_created_private() {
    let d = Otpd::start("");
    let data = d.dir.path().join("data");
    let mode = std::fs::metadata(&data)
        .expect("data_dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "data_dir mode {mode:o}");
}

/// Low: no warning for risky settings, and the short-secret warning printed twice.
#[test]
fn risky_settings_are_warned_about_once() {
    let site = Otpd::builder().config(
        "[radius]\nrequire_message_authenticator = false\nreject_delay_ms = 0\n[http]\nlisten = \"0.0.0.0:0\"\n",
    ).unstarted();
    let config = site.config.clone();
    let (code, text) = check_config(&config);
    assert_eq!(code, Some(0), "{text}");
    for needle in [
        "require_message_authenticator = false",
        "reject_delay_ms = 0",
        "plain HTTP",
    ] {
        assert_eq!(text.matches(needle).count(), 1, "{needle}: {text}");
    }
    let d = Otpd::start(
        "[[radius.clients]]\nname = \"short\"\naddress = \"10.1.0.0/16\"\nsecret = \"tiny\"\n",
    );
    let log = d.stderr();
    assert_eq!(
        log.matches("shorter than 16 bytes").count(),
        1,
        "the short-secret warning, once: {log}"
    );
}

/// Polls otpd's stderr until `needle` shows up.
fn wait_for_log(d: &Otpd, needle: &str) -> String {
    wait_until(
        &format!("{needle:?} in otpd's log"),
        Duration::from_secs(20),
        || {
            let log = d.stderr();
            log.contains(needle).then_some(log)
        },
    )
}

/// Low: a second `User-Name`, or `User-Password` together with `CHAP-Password` or
/// `EAP-Message`, was accepted (RFC 2865 §5.1 and §4.1 forbid both). Now such requests are
/// dropped as malformed, and the server goes on answering.
#[test]
fn ambiguous_access_requests_are_dropped() {
    use otpd_testkit::radius::{Ma, Request, ACCESS_REQUEST, USER_NAME};
    let d = Otpd::start("");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw-taro\n");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let secret = RADIUS_SECRET.as_bytes();
    let cases: [(&str, Request); 3] = [
        (
            "two User-Names",
            Request::access(1, "taro", "pw-taro", secret).attr(USER_NAME, b"admin"),
        ),
        (
            "CHAP-Password",
            Request::access(2, "taro", "pw-taro", secret).attr(3, &[7u8; 17]),
        ),
        (
            "EAP-Message",
            Request::access(3, "taro", "pw-taro", secret).attr(79, &[2, 0, 0, 5, 1]),
        ),
    ];
    for (what, req) in &cases {
        c.send_raw(&req.encode(ACCESS_REQUEST, secret, Ma::Good));
        let log = wait_for_log(&d, "radius drop reason=malformed");
        assert!(!log.contains("radius accept"), "{what}: {log}");
        assert!(
            c.recv_raw(Duration::from_millis(300)).is_none(),
            "{what}: no answer"
        );
    }
    // Plain PAP still works.
    assert_eq!(c.login(9, "taro", "pw-taro").code, ACCESS_ACCEPT);
}

/// Low: a `User-Name` that is not UTF-8 was logged with replacement characters. Now it is
/// logged escaped byte for byte.
#[test]
fn a_user_name_that_is_not_utf8_is_logged_byte_for_byte() {
    use otpd_testkit::radius::{hide_password, Request, USER_NAME, USER_PASSWORD};
    let d = Otpd::start("");
    let c = Client::new(d.radius(), RADIUS_SECRET);
    let mut req = Request::new(4);
    let hidden = hide_password(b"pw", RADIUS_SECRET.as_bytes(), &req.authenticator);
    req = req
        .attr(USER_NAME, b"ta\xffro\xc3")
        .attr(USER_PASSWORD, &hidden);
    let reply = c.exchange(&req);
    assert_eq!(reply.code, otpd_testkit::radius::ACCESS_REJECT);
    let log = wait_for_log(&d, "radius reject");
    assert!(log.contains(r#"user="ta\xffro\xc3""#), "{log}");
    assert!(!log.contains('\u{fffd}'), "{log}");
}

/// Low: 64 idle connections locked every otpctl out of the admin socket. Now a new caller
/// takes the slot of the connection idle the longest.
#[test]
fn idle_admin_connections_cannot_lock_otpctl_out() {
    use std::io::Read;
    let d = Otpd::start("");
    let idle: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&d.socket).expect("connect"))
        .collect();
    let out = d.ctl_ok(&["status"], "");
    assert!(out.contains("users"), "{out}");
    // The oldest idle connection was closed to make room: it reads end-of-file.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    assert_eq!(first.read(&mut buf).expect("read"), 0, "evicted");
}

/// Low: unknown JSON fields were ignored by `/api/v1/renew` and by admin requests without
/// fields (`{"op":"status","x":1}`), and 400 messages quoted the parser's internals.
#[test]
fn unknown_fields_are_refused_in_the_products_words() {
    use std::io::{BufRead, BufReader, Write};
    let d = Otpd::start("");
    let r = post_json(
        d.http(),
        "/api/v1/renew",
        &json!({"service_id": "TEST-BANK", "user_id": "u", "otp": "123456", "x": 1}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["message"].as_str().expect("message").to_string();
    assert!(msg.contains("\"x\""), "{msg}");
    for internal in [
        "Failed to deserialize",
        "line 1",
        "column",
        "expected one of",
    ] {
        assert!(!msg.contains(internal), "{msg}");
    }
    // The OTP menu's API too.
    let r = post_json(
        d.http(),
        "/api/v1/my/sign-in",
        &json!({"login_id": "u", "password": "pw", "remember_me": true}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("\"remember_me\""), "{msg}");
    let r = request(
        d.http(),
        "POST",
        "/api/v1/renew",
        &[("Content-Type", "application/json")],
        b"{not json",
    );
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("column"), "{}", r.text());
    let mut s = UnixStream::connect(&d.socket).expect("admin socket");
    s.write_all(b"{\"op\":\"status\",\"x\":1}\n").expect("send");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("reply");
    let reply: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(reply["Err"]["error"], "bad_request", "{line}");
    assert!(
        reply["Err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"x\"")),
        "{line}"
    );
}

/// Low: the setup audit line recorded the user ID the visitor typed, not the link's owner.
#[test]
fn the_setup_audit_line_names_the_links_owner() {
    let d = Otpd::start("");
    let code = issue(&d, "taro", "pw");
    let r = post_json(
        d.http(),
        &format!("/api/v1/enroll/{code}"),
        &json!({"service_id": "TEST-BANK", "user_id": "hanako\"x", "activation_password": "act-pass-1234"}),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let log = wait_for_log(&d, "audit setup=enroll");
    let line = log
        .lines()
        .find(|l| l.contains("audit setup=enroll"))
        .expect("setup line");
    assert!(
        line.contains("user=taro typed_user=\"hanako\\\"x\" outcome=setup_refused"),
        "{line}"
    );
}

/// Low: the bearer-key parser took surrounding whitespace, a lowercase scheme and the
/// first of two `Authorization` headers; refusals were logged one line each.
#[test]
fn exactly_one_well_formed_bearer_header_opens_the_admin_api() {
    let key = "kQ9-integration-key-7d1f0c2b";
    let d = Otpd::builder()
        .config("[[http.api_keys]]\nname = \"ib\"\nkey_file = \"ib.key\"\n")
        .file("ib.key", &format!("{key}\n"), 0o600)
        .start();
    let status = |headers: &[(&str, &str)]| {
        request(d.http(), "GET", "/api/v1/admin/status", headers, b"").status
    };
    let good = format!("Bearer {key}");
    assert_eq!(status(&[("Authorization", &good)]), 200);
    let lower = format!("bearer {key}");
    let spaced = format!("Bearer  {key}");
    let tabbed = format!("Bearer\t{key}");
    for bad in [&lower, &spaced, &tabbed] {
        assert_eq!(status(&[("Authorization", bad)]), 401, "{bad:?}");
    }
    assert_eq!(
        status(&[
            ("Authorization", &good),
            ("Authorization", "Bearer wrong-key-0000000000")
        ]),
        401,
        "two headers"
    );
    for _ in 0..20 {
        assert_eq!(
            status(&[("Authorization", "Bearer wrong-key-0000000000")]),
            401
        );
    }
    let log = wait_for_log(&d, "http admin API: refused");
    let lines = log.matches("http admin API: refused").count();
    assert_eq!(lines, 1, "24 refusals within 10 s log one line: {log}");
}

/// Row 10 of issue 27: a RadSec certificate whose CN is a client's name but whose
/// subjectAltName names another host is refused (RFC 6125: no CN when SANs are present),
/// and the one that names the client in its SAN is still served.
#[test]
fn a_radsec_certificate_is_named_by_its_san_not_its_cn() {
    use otpd_testkit::radius::{Ma, Request, STATUS_SERVER};
    use std::io::{Read, Write};
    let pki = otpd_testkit::radsec::Pki::new();
    let port = otpd_testkit::radsec::free_port();
    let d = Otpd::start(&pki.otpd_config(port));
    let status = Request::new(7).encode(STATUS_SERVER, b"radsec", Ma::Good);
    let answered = |cert: &str| -> Vec<u8> {
        let mut child = pki.s_client(port, Some(cert), true);
        let _ = child.stdin.as_mut().expect("stdin").write_all(&status);
        let mut reply = [0u8; 20];
        let got = child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut reply);
        let _ = child.kill();
        let _ = child.wait();
        got.map(|()| reply.to_vec()).unwrap_or_default()
    };
    let refused = answered("cn-only-ca");
    assert!(refused.is_empty(), "no RADIUS for CN-only: {refused:?}");
    let log = wait_for_log(&d, "reason=unknown_client");
    assert!(
        log.contains(r#"certificate ["elsewhere.test"] from 127.0.0.1"#),
        "only the SAN counts: {log}"
    );
    let served = answered("proxy.test-ca");
    assert_eq!(
        served.first(),
        Some(&ACCESS_ACCEPT),
        "the SAN-named client is served"
    );
}

/// Row 11 of issue 27: metrics bound beyond loopback are warned about, by --check-config
/// and at start; a loopback bind is not.
#[test]
fn metrics_beyond_loopback_are_warned_about() {
    let needle = "`metrics.listen` 0.0.0.0:";
    let port = otpd_testkit::daemon::free_tcp_port();
    let site = Otpd::builder()
        .config(&format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\n"))
        .unstarted();
    let (code, text) = check_config(&site.config);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches(needle).count(), 1, "{text}");
    assert!(text.contains("beyond loopback"), "{text}");
    let d = Otpd::start(&format!("[metrics]\nlisten = \"0.0.0.0:{port}\"\n"));
    assert!(d.stderr().contains(needle), "at start: {}", d.stderr());
    drop(d);
    let local = Otpd::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    assert!(
        !local.stderr().contains("`metrics.listen`"),
        "{}",
        local.stderr()
    );
}

/// A STARTTLS relay on 127.0.0.1:`port` (aiosmtpd) with `cert`/`key`, writing each
/// message it accepts to `dir` as `<n>.eml`.
fn starttls_relay(port: u16, cert: &Path, key: &Path, dir: &Path) -> std::process::Child {
    let script = dir.join("relay.py");
    std::fs::write(
        &script,
        r#"import os, signal, ssl, sys, time
from aiosmtpd.controller import Controller
port, cert, key, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
class Sink:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.n += 1
        with open(os.path.join(folder, ".tmp"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(os.path.join(folder, ".tmp"), os.path.join(folder, "%d.eml" % Sink.n))
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
c.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
"#,
    )
    .expect("relay.py");
    let child = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(cert)
        .arg(key)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        // A refused handshake prints a traceback: kept beside the mail, not in the output.
        .stderr(std::fs::File::create(dir.join("relay.log")).expect("relay.log"))
        .spawn()
        .expect("python3 with aiosmtpd");
    wait_until(
        "the STARTTLS relay to listen",
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    child
}

/// Row 13 of issue 27: `[mail] ca_file` makes a relay whose certificate a private CA
/// signed usable with STARTTLS; without it such a relay is refused (the public roots do
/// not know the CA), and a file that holds no certificate is refused by --check-config.
#[test]
fn a_relay_with_a_private_ca_is_reached_over_starttls_with_mail_ca_file() {
    let pki = otpd_testkit::radsec::Pki::new();
    let relay_dir = tempfile::tempdir().expect("tempdir");
    let issue_to = |d: &Otpd, login: &str| {
        d.ctl_ok(&["user", "add", login, "--password-stdin"], "pw\n");
        d.ctl_ok(
            &[
                "token",
                "issue",
                login,
                "--email",
                &format!("{login}@docomo.example.jp"),
                "--activation-password-stdin",
            ],
            "act-pass-1234\n",
        );
    };
    let trusting = Otpd::builder()
        .smtp()
        .config(&format!(
            "[mail]\nstarttls = true\nca_file = \"{}\"\n",
            pki.path("ca.pem").display()
        ))
        .start();
    let mut relay = starttls_relay(
        trusting.smtp_port(),
        &pki.path("otpd.test-ca.pem"),
        &pki.path("otpd.test-ca.key"),
        relay_dir.path(),
    );
    issue_to(&trusting, "taro");
    let mail = wait_until("the mail at the relay", Duration::from_secs(30), || {
        std::fs::read_to_string(relay_dir.path().join("1.eml")).ok()
    });
    assert!(mail.contains("taro@docomo.example.jp"), "{mail}");
    let _ = relay.kill();
    let _ = relay.wait();
    drop(trusting);

    let public_roots = Otpd::builder()
        .smtp()
        .config("[mail]\nstarttls = true\n")
        .start();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let mut relay = starttls_relay(
        public_roots.smtp_port(),
        &pki.path("otpd.test-ca.pem"),
        &pki.path("otpd.test-ca.key"),
        other_dir.path(),
    );
    issue_to(&public_roots, "hanako");
    let log = wait_for_log(&public_roots, "UnknownIssuer");
    assert!(
        !other_dir.path().join("1.eml").exists(),
        "nothing delivered: {log}"
    );
    let _ = relay.kill();
    let _ = relay.wait();

    let not_pem = relay_dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let site = Otpd::builder()
        .smtp()
        .config(&format!(
            "[mail]\nstarttls = true\nca_file = \"{}\"\n",
            not_pem.display()
        ))
        .unstarted();
    let (code, text) = check_config(&site.config);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("`mail.ca_file`") && text.contains("no PEM certificate"),
        "{text}"
    );
}

/// Row 13 of issue 27: mail handed to a relay off loopback without STARTTLS is warned
/// about; to a relay on loopback it is not.
#[test]
fn mail_in_clear_off_loopback_is_warned_about() {
    let site = Otpd::builder()
        .smtp()
        .config("[mail]\nsmtp_host = \"mail.bank.example\"\n")
        .unstarted();
    let (code, text) = check_config(&site.config);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("`mail.starttls = false` with the relay mail.bank.example"),
        "{text}"
    );
    let local = Otpd::builder().smtp().unstarted();
    let (_, text) = check_config(&local.config);
    assert!(!text.contains("mail.starttls"), "{text}");
}

/// Row 13: with `http.admin_listen`, `/healthz` and the admin API answer on that listener
/// only, and the customer's listener serves the customer's doors alone.
#[test]
fn admin_listen_takes_healthz_and_the_admin_api_off_the_customers_listener() {
    let key = "kQ9-integration-key-7d1f0c2b";
    let port = otpd_testkit::paths::free_tcp_port();
    let d = Otpd::builder()
        .config(&format!(
            "[http]\nadmin_listen = \"127.0.0.1:{port}\"\n\
             [[http.api_keys]]\nname = \"ib\"\nkey_file = \"ib.key\"\n"
        ))
        .file("ib.key", &format!("{key}\n"), 0o600)
        .start();
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let bearer = format!("Bearer {key}");
    let status = |at, path| request(at, "GET", path, &[("Authorization", &bearer)], b"").status;
    assert_eq!(status(admin, "/healthz"), 200);
    assert_eq!(status(admin, "/api/v1/admin/status"), 200);
    assert_eq!(
        status(d.http(), "/healthz"),
        404,
        "not on the customers' listener"
    );
    assert_eq!(status(d.http(), "/api/v1/admin/status"), 404);
    assert_eq!(status(d.http(), "/renew"), 200, "the customers' doors stay");
    assert_eq!(
        status(admin, "/renew"),
        404,
        "and are not on the admin listener"
    );
}

const ADMIN_KEY: &str = "kQ9-integration-key-7d1f0c2b";

/// A daemon holding the API key [`ADMIN_KEY`], its admin API on `http.admin_listen` when
/// `admin_port` is given, else on the customers' listener; and the address it answers on.
fn admin_api_daemon(admin_port: Option<u16>) -> (Otpd, std::net::SocketAddr) {
    let listen = admin_port.map_or(String::new(), |p| {
        format!("admin_listen = \"127.0.0.1:{p}\"\n")
    });
    let d = Otpd::builder()
        .config(&format!(
            "[http]\n{listen}[[http.api_keys]]\nname = \"ib\"\nkey_file = \"ib.key\"\n"
        ))
        .file("ib.key", &format!("{ADMIN_KEY}\n"), 0o600)
        .start();
    let at = admin_port.map_or(d.http(), |p| ([127, 0, 0, 1], p).into());
    (d, at)
}

/// What a refusal is, for comparing two listeners' answers: status, error code and the
/// `WWW-Authenticate` challenge.
fn refusal_of(r: &otpd_testkit::http::Response) -> (u16, String, Option<String>) {
    let code = r.json()["error"].as_str().unwrap_or_default().to_string();
    (
        r.status,
        code,
        r.header("WWW-Authenticate").map(str::to_string),
    )
}

/// The admin listener refuses a request without the right bearer key exactly as the
/// customers' listener does when it carries the admin API.
#[test]
fn admin_listen_refuses_a_missing_or_wrong_key_as_the_main_listener_does() {
    let (_split, admin) = admin_api_daemon(Some(otpd_testkit::paths::free_tcp_port()));
    let (_joint, main) = admin_api_daemon(None);
    let wrong = "Bearer wrong-key-0000000000".to_string();
    let lower = format!("bearer {ADMIN_KEY}");
    let basic = "Basic aWI6a2V5".to_string();
    let user = br#"{"login_id":"taro","password":"login-pw-1"}"#;
    for auth in [None, Some(&wrong), Some(&lower), Some(&basic)] {
        let headers: Vec<(&str, &str)> = auth
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .chain([("Content-Type", "application/json")])
            .collect();
        for (method, path, body) in [
            ("GET", "/api/v1/admin/status", &b""[..]),
            ("POST", "/api/v1/admin/users", &user[..]),
            ("POST", "/api/v1/admin/users/taro/token/unlock", &b"{}"[..]),
        ] {
            let on_admin = refusal_of(&request(admin, method, path, &headers, body));
            let on_main = refusal_of(&request(main, method, path, &headers, body));
            assert_eq!(on_admin, on_main, "{method} {path} with {auth:?}");
            assert_eq!(
                on_admin,
                (401, "unauthorized".into(), Some("Bearer".into())),
                "{method} {path} with {auth:?}"
            );
        }
    }
    let bearer = format!("Bearer {ADMIN_KEY}");
    let ok = request(
        admin,
        "GET",
        "/api/v1/admin/status",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(
        ok.status,
        200,
        "the right key still opens it: {}",
        ok.text()
    );
}

/// The admin listener bounds request bodies as the customers' listener does (413
/// `payload_too_large`, before the key is even looked at), and goes on serving.
#[test]
fn admin_listen_refuses_an_oversized_body_and_goes_on_serving() {
    let (_split, admin) = admin_api_daemon(Some(otpd_testkit::paths::free_tcp_port()));
    let (_joint, main) = admin_api_daemon(None);
    let bearer = format!("Bearer {ADMIN_KEY}");
    let big = format!(
        "{{\"login_id\":\"taro\",\"password\":\"{}\"}}",
        "p".repeat(4 * 16 * 1024)
    );
    for auth in [&bearer, &"Bearer wrong-key-0000000000".to_string()] {
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let path = "/api/v1/admin/users";
        let on_admin = request(admin, "POST", path, &headers, big.as_bytes());
        let on_main = request(main, "POST", path, &headers, big.as_bytes());
        assert_eq!(refusal_of(&on_admin), refusal_of(&on_main), "{auth}");
        assert_eq!(on_admin.status, 413, "{}", on_admin.text());
        assert_eq!(on_admin.json()["error"], "payload_too_large");
    }
    assert_eq!(request(admin, "GET", "/healthz", &[], b"").status, 200);
    let status = request(
        admin,
        "GET",
        "/api/v1/admin/status",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(status.status, 200, "{}", status.text());
}

/// A mail queued by a release that sealed the outbox under the AAD `outbox` (the same as a
/// user named `outbox`) still goes out after the upgrade to `"\0outbox"`, and leaves the
/// outbox: nothing a customer asked for is lost to the change of AAD.
#[test]
fn mail_sealed_by_an_older_release_is_still_delivered() {
    use otpd_core::store::{open_key, SledStore, Store as _};
    use otpd_testkit::smtp::SmtpSink;

    let mut d = Otpd::builder().smtp().start();
    d.stop_clean();
    let job = json!({
        "to": "legacy@example.invalid",
        "login_id": "taro",
        "code": "LEGACYCODE0123456789",
        "link_expires_at": otpd_testkit::oath::now() + 3600,
        "queued_at": otpd_testkit::oath::now() - 60,
    });
    {
        let store = SledStore::open(&d.path("data")).expect("the stopped daemon's store");
        let (sealer, _) = open_key(&d.path("master.key"), &*store).expect("the store's key");
        let plain = serde_json::to_vec(&job).expect("job json");
        let sealed = sealer.seal("outbox", &plain);
        // What the older release wrote does not open under today's AAD: only the
        // fallback can read it.
        assert!(sealer.open("\u{0}outbox", &sealed).is_err());
        let raw = serde_json::to_vec(&sealed).expect("sealed json");
        store.outbox_push(&raw).expect("queued the old way");
        store.wait_durable().expect("durable");
    }
    let sink = SmtpSink::start(d.smtp_port(), &d.path("relay"));
    d.launch();
    let mail = sink.wait_for("legacy@example.invalid", Duration::from_secs(20));
    assert!(mail.body.contains("LEGACYCODE0123456789"), "{}", mail.body);
    wait_until("the outbox is empty", Duration::from_secs(20), || {
        (d.admin_ok(json!({"op": "status"}))["mail_queued"] == 0).then_some(())
    });
    assert!(
        !d.stderr().contains("LEGACYCODE0123456789"),
        "the link code never reaches the log"
    );
}
