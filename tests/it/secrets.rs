//! Secrets never reach a log: a customer's whole path and the administrator's work, with
//! wrong guesses along the way, then every secret that was used is looked for in otpd's
//! stderr, in the syslog lines it sent, in everything otpctl printed and in the backup.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otpd_testkit::daemon::{Otpd, RADIUS_SECRET};
use otpd_testkit::http;
use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::radius::*;
use otpd_testkit::token::link_code_from_mail_dir;

const LOGIN_PW: &str = "Login-Pw-Secret-1";
const NEW_LOGIN_PW: &str = "Login-Pw-Secret-6";
const ACT_PW: &str = "Act-Pw-Secret-2";
const WRONG_ACT_PW: &str = "Wrong-Act-Pw-3";
const WRONG_LOGIN_PW: &str = "Wrong-Login-Pw-4";
const API_KEY: &str = "Api-Key-Secret-0123456789";
const WRONG_API_KEY: &str = "Wrong-Api-Key-5-0123456789";
const WRONG_RADIUS_SECRET: &str = "Wrong-Radius-Secret-7";

/// Collects every datagram sent to our syslog socket until stopped.
struct SyslogSink {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyslogSink {
    fn bind(path: &std::path::Path) -> SyslogSink {
        let sock = UnixDatagram::bind(path).expect("our syslog socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => l
                        .lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if s.load(Ordering::SeqCst) => return,
                    Err(_) => {}
                }
            }
        });
        SyslogSink {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received, once the socket has been quiet for a moment.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("syslog thread");
        }
        self.lines.lock().expect("lock").clone()
    }
}

/// Whether `code` (digits) stands alone in `text`, not inside a longer number (a port,
/// a pid, a timestamp).
fn has_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn no_secret_of_a_whole_flow_reaches_a_log_or_the_backup() {
    let sinkdir = tempfile::tempdir().expect("tempdir");
    let syslog_path = sinkdir.path().join("log.sock");
    let sink = SyslogSink::bind(&syslog_path);
    let api_key_file = sinkdir.path().join("api.key");
    std::fs::write(&api_key_file, format!("{API_KEY}\n")).expect("api key");
    std::fs::set_permissions(
        &api_key_file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod api key");
    let d = Otpd::start(&format!(
        "[log]\nlevel = \"debug\"\nsyslog = true\nsyslog_socket = \"{}\"\n\n[[http.api_keys]]\nname = \"ib\"\nkey_file = \"{}\"\n",
        syslog_path.display(),
        api_key_file.display()
    ));
    let web = d.http();
    let radius = d.radius();
    let mut printed: Vec<String> = Vec::new();
    let mut ctl = |args: &[&str], stdin: &str| {
        let out = d.otpctl(args, stdin);
        printed.push(String::from_utf8_lossy(&out.stdout).into_owned());
        printed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        out.status.success()
    };
    let mut codes: Vec<String> = Vec::new();

    // トークン発行: user, token, the mailed link.
    assert!(ctl(
        &["user", "add", "taro", "--password-stdin"],
        &format!("{LOGIN_PW}\n")
    ));
    assert!(!ctl(
        &["user", "add", "taro", "--password-stdin"],
        &format!("{WRONG_LOGIN_PW}\n")
    ));
    assert!(ctl(
        &[
            "token",
            "issue",
            "taro",
            "--email",
            "taro@docomo.example.jp",
            "--activation-password-stdin",
        ],
        &format!("{ACT_PW}\n"),
    ));
    let link = link_code_from_mail_dir(&d, "taro@docomo.example.jp");

    // 初期設定 over HTTP: the page, a wrong activation password, then the right one.
    assert_eq!(http::get(web, &format!("/enroll/{link}")).status, 200);
    let body = |pw: &str| serde_json::json!({"service_id": "TEST-BANK", "user_id": "taro", "activation_password": pw});
    let r = http::post_json(web, &format!("/api/v1/enroll/{link}"), &body(WRONG_ACT_PW));
    assert_eq!(r.status, 401, "{}", r.text());
    let r = http::post_json(web, &format!("/api/v1/enroll/{link}"), &body(ACT_PW));
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().expect("secret").to_string();

    // 利用開始 with the code of the step before now.
    let code = oathtool(&secret, Some(now() - 60));
    assert!(ctl(&["token", "activate", "taro", "--otp", &code], ""));
    codes.push(code);

    // RADIUS: password + OTP, a challenge, wrong passwords and a wrong OTP.
    let c = Client::new(radius, RADIUS_SECRET);
    let code = oathtool(&secret, None);
    let r = c.login(1, "taro", &format!("{LOGIN_PW}{code}"));
    assert_eq!(r.code, ACCESS_ACCEPT);
    codes.push(code.clone());
    let replayed = c.login(2, "taro", &format!("{LOGIN_PW}{code}"));
    assert_eq!(replayed.code, ACCESS_REJECT);
    let ch = c.login(3, "taro", LOGIN_PW);
    assert_eq!(ch.code, ACCESS_CHALLENGE);
    let state = ch.get(STATE).expect("State").to_vec();
    let next = oathtool(&secret, Some(now() + 60));
    let answer = Request::access(4, "taro", &next, RADIUS_SECRET.as_bytes()).attr(STATE, &state);
    assert_eq!(c.exchange(&answer).code, ACCESS_ACCEPT);
    codes.push(next);
    assert_eq!(c.login(5, "taro", WRONG_LOGIN_PW).code, ACCESS_REJECT);
    let wrong_otp = if code == "000000" { "999999" } else { "000000" };
    assert_eq!(
        c.login(6, "taro", &format!("{LOGIN_PW}{wrong_otp}")).code,
        ACCESS_REJECT
    );
    // A gateway with the wrong shared secret is dropped (and logged).
    let bad = Request::access(7, "taro", LOGIN_PW, WRONG_RADIUS_SECRET.as_bytes()).encode(
        ACCESS_REQUEST,
        WRONG_RADIUS_SECRET.as_bytes(),
        Ma::Good,
    );
    c.send_raw(&bad);
    assert!(c.recv_raw(Duration::from_millis(500)).is_none());
    let unsigned = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let plain = Request::access(8, "taro", LOGIN_PW, WRONG_RADIUS_SECRET.as_bytes()).encode(
        ACCESS_REQUEST,
        WRONG_RADIUS_SECRET.as_bytes(),
        Ma::Missing,
    );
    unsigned.send_to(&plain, radius).expect("send");

    // 有効期限更新 attempts, by JSON and by the page, with a code already spent (every step
    // of the window is used by now): refused before the window is even looked at.
    let r = http::post_json(
        web,
        "/api/v1/renew",
        &serde_json::json!({"service_id": "TEST-BANK", "user_id": "taro", "otp": code}),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = http::post_form(
        web,
        "/renew",
        &[
            ("service_id", "TEST-BANK"),
            ("user_id", "taro"),
            ("otp", &code),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.text());

    // The admin API with the right and a wrong key; a new password; a backup.
    let bearer = |key: &str| format!("Bearer {key}");
    let r = http::request(
        web,
        "GET",
        "/api/v1/admin/users/taro",
        &[("Authorization", &bearer(API_KEY))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http::request(
        web,
        "GET",
        "/api/v1/admin/users/taro",
        &[("Authorization", &bearer(WRONG_API_KEY))],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(ctl(
        &["user", "passwd", "taro", "--password-stdin"],
        &format!("{NEW_LOGIN_PW}\n")
    ));
    assert!(ctl(&["user", "show", "taro"], ""));
    assert!(ctl(&["--json", "user", "list"], ""));
    assert!(ctl(&["status"], ""));
    let backup = d.dir.path().join("otpd.backup");
    assert!(ctl(&["backup", backup.to_str().expect("utf8")], ""));

    let key_hex = std::fs::read_to_string(d.dir.path().join("master.key"))
        .expect("key file")
        .trim()
        .to_string();
    let syslog = sink.finish();
    let stderr = d.stderr();
    assert!(
        syslog.iter().any(|l| l.contains("radius accept")),
        "the flow reached syslog: {syslog:?}"
    );
    assert!(stderr.contains("radius drop"), "{stderr}");
    assert!(
        syslog
            .iter()
            .any(|l| l.contains("audit admin=backup actor=uid:") && l.contains("outcome=ok")),
        "a backup is audited: {syslog:?}"
    );

    let mut logs: Vec<(&str, String)> = vec![("stderr", stderr)];
    logs.extend(syslog.into_iter().map(|l| ("syslog", l)));
    logs.extend(printed.into_iter().map(|p| ("otpctl output", p)));
    // The backup holds every record, hex-encoded: decoded, it must hold no secret in clear.
    let backup_text = std::fs::read_to_string(&backup).expect("backup");
    for line in backup_text.lines().skip(1) {
        let row: serde_json::Value = serde_json::from_str(line).expect("backup row");
        for field in ["key", "value"] {
            let raw = otpd_core::seal::unhex(row[field].as_str().expect("hex")).expect("valid hex");
            logs.push(("backup", String::from_utf8_lossy(&raw).into_owned()));
        }
    }

    let lower_secret = secret.to_lowercase();
    let texts: Vec<(&str, &str)> = vec![
        ("login password", LOGIN_PW),
        ("new login password", NEW_LOGIN_PW),
        ("wrong login password", WRONG_LOGIN_PW),
        ("activation password", ACT_PW),
        ("wrong activation password", WRONG_ACT_PW),
        ("base32 secret", &secret),
        ("base32 secret (lower case)", &lower_secret),
        ("link code", &link),
        ("RADIUS shared secret", RADIUS_SECRET),
        ("wrong RADIUS shared secret", WRONG_RADIUS_SECRET),
        ("API key", API_KEY),
        ("wrong API key", WRONG_API_KEY),
        ("key file", &key_hex),
    ];
    for (place, text) in &logs {
        for (what, s) in &texts {
            assert!(!text.contains(s), "the {what} appears in {place}: {text}");
        }
        for code in codes.iter().map(String::as_str).chain([wrong_otp]) {
            assert!(
                !has_code(text, code),
                "OTP {code} appears in {place}: {text}"
            );
        }
    }
    eprintln!(
        "{} log lines, outputs and backup records checked for {} secrets and {} OTPs",
        logs.len(),
        texts.len(),
        codes.len() + 1
    );
}

/// The key file a node was started with: a store remembers it (its key check value), and
/// a node whose key does not match, or that has none, is refused before it serves.
mod key_check {
    use otpd_testkit::daemon::Otpd;
    use otpd_testkit::postgres::Postgres;
    use otpd_testkit::token::activate;

    /// Another key, then no key at all, for a second node of one PostgreSQL database:
    /// each refused with a line naming key_file and the store, nothing in the store changed,
    /// no key file made.
    #[test]
    fn a_second_node_without_the_cluster_s_key_is_refused_and_changes_nothing() {
        let pg = Postgres::start();
        let mut a = pg.configure(Otpd::builder(), "otpd").start();
        activate(&a, "taro", "pw");
        a.stop_clean();
        let snapshot = || {
            pg.psql(
                "otpd",
                "SELECT (SELECT string_agg(login_id || ':' || epoch || ':' || md5(record::text), ',') FROM users), (SELECT encode(value, 'hex') FROM meta), (SELECT count(*) FROM outbox)",
            )
        };
        let before = snapshot();
        assert!(before.contains("taro:"), "{before}");

        let other = pg.configure(Otpd::builder(), "otpd").unstarted();
        let (status, err) = other.run_to_exit();
        assert!(!status.success(), "{err}");
        let key_file = other.path("master.key");
        assert!(
            err.contains(&format!(
                "key_file {} does not match the postgres store",
                key_file.display()
            )),
            "{err}"
        );
        assert_eq!(snapshot(), before, "the refused node changed the store");

        let missing = other.path("absent/master.key");
        let keyless = pg
            .configure(Otpd::builder(), "otpd")
            .config(&format!("key_file = \"{}\"\n", missing.display()))
            .unstarted();
        let (status, err) = keyless.run_to_exit();
        assert!(!status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "key_file {} missing; copy the cluster's master.key",
                missing.display()
            )),
            "{err}"
        );
        assert!(!missing.exists(), "a key was made for a shared store");
        assert_eq!(snapshot(), before);

        // The node with the cluster's key still serves.
        a.launch();
        assert_eq!(a.show("taro")["state"], "active");
    }

    /// A sled store with users whose key file is gone: refused, and no new key is made (it
    /// would seal new secrets under a key the old ones do not open).
    #[test]
    fn a_store_with_users_and_no_key_file_is_refused_and_no_key_is_made() {
        let mut d = Otpd::start("");
        activate(&d, "taro", "pw");
        d.stop_clean();
        let key = d.path("master.key");
        let kept = std::fs::read_to_string(&key).expect("key");
        std::fs::remove_file(&key).expect("remove the key");
        let (status, err) = d.run_to_exit();
        assert!(!status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "key_file {} missing, but the sled store",
                key.display()
            )) && err.contains("already holds 1 users"),
            "{err}"
        );
        assert!(!key.exists(), "a new key was made for a store in use");

        // Another key in its place: refused too.
        std::fs::write(&key, format!("{}\n", "ab".repeat(32))).expect("write");
        otpd_testkit::daemon::chmod(&key, 0o600);
        let (status, err) = d.run_to_exit();
        assert!(!status.success(), "{err}");
        assert!(err.contains("does not match the sled store"), "{err}");

        // The right one back: it serves.
        std::fs::write(&key, kept).expect("write");
        d.launch();
        assert_eq!(d.show("taro")["state"], "active");
    }

    /// The README's first start: a new, empty store gets a new key (0600), and says so.
    #[test]
    fn a_new_store_gets_a_new_key() {
        use std::os::unix::fs::PermissionsExt;
        let d = Otpd::start("");
        let key = d.path("master.key");
        let mode = std::fs::metadata(&key)
            .expect("key made")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            d.stderr().contains("created a new key for this new store"),
            "{}",
            d.stderr()
        );
    }
}
