//! The log outputs against real readers: a systemd-journald of its own namespace (read back
//! with journalctl), JSON lines on stderr, a syslog collector on TCP that goes away and
//! comes back. The audit line's text is the same in every output.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::radius::{Client, ACCESS_REJECT};

/// A journald of namespace `otpd-test-PID-N`; stopped and its files removed on drop.
struct Journal {
    name: String,
    child: Child,
}

impl Journal {
    fn start(n: u32) -> Journal {
        let name = format!("otpdtest{}x{n}", std::process::id());
        let child = Command::new("/lib/systemd/systemd-journald")
            .arg(&name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-journald (Debian systemd)");
        let j = Journal { name, child };
        wait_until("the journal's socket", Duration::from_secs(10), || {
            j.socket().exists().then_some(())
        });
        j
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/run/systemd/journal.{}/socket", self.name))
    }

    /// Every record otpd wrote, as journalctl's JSON objects.
    fn records(&self) -> Vec<serde_json::Value> {
        let out = Command::new("journalctl")
            .args([
                "--namespace",
                &self.name,
                "-o",
                "json",
                "--no-pager",
                "SYSLOG_IDENTIFIER=otpd",
            ])
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/run/systemd/journal.{}", self.name));
        if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
            for base in ["/var/log/journal", "/run/log/journal"] {
                let _ = std::fs::remove_dir_all(format!("{base}/{}.{}", id.trim(), self.name));
            }
        }
    }
}

fn reject(d: &Otpd, id: u8) {
    let c = Client::new(d.radius(), RADIUS_SECRET);
    assert_eq!(c.login(id, "taro", "wrong-password").code, ACCESS_REJECT);
}

#[test]
fn the_journal_gets_each_audit_event_once_with_its_fields() {
    let j = Journal::start(1);
    let d = Otpd::start(&format!(
        "[log]\nformat = \"journal\"\njournal_socket = \"{}\"\nsyslog = true\nsyslog_socket = \"{}\"",
        j.socket().display(),
        "/nonexistent/dev-log"
    ));
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    reject(&d, 1);
    let audit = wait_until(
        "the audit record in the journal",
        Duration::from_secs(10),
        || {
            j.records()
                .into_iter()
                .find(|r| r["OTPD_EVENT"] == "radius" && r["OTPD_USER"] == "taro")
        },
    );
    let message = audit["MESSAGE"].as_str().expect("MESSAGE");
    assert!(
        message.starts_with("audit radius reject user=\"taro\""),
        "{message}"
    );
    assert_eq!(audit["PRIORITY"], "6");
    assert_eq!(audit["SYSLOG_FACILITY"], "10", "authpriv");
    assert_eq!(audit["OTPD_OUTCOME"], "reject");
    assert!(
        audit["OTPD_REASON"].as_str().is_some_and(|r| !r.is_empty()),
        "{audit}"
    );
    assert!(audit["OTPD_CLIENT"].as_str().is_some(), "{audit}");
    assert!(
        audit["OTPD_SRC"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{audit}"
    );
    assert_eq!(audit["OTPD_INPUT"], "password");
    // No second copy: nothing of it on stderr, and the local syslog is not tried at all.
    let stderr = d.stderr();
    assert!(!stderr.contains("audit radius"), "{stderr}");
    assert!(!stderr.contains("syslog"), "{stderr}");
    let copies = j
        .records()
        .iter()
        .filter(|r| r["MESSAGE"] == message)
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn json_lines_carry_the_audit_text_unchanged() {
    let text = Otpd::start("");
    text.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    reject(&text, 1);
    let json = Otpd::start("[log]\nformat = \"json\"\nsyslog = false");
    json.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    reject(&json, 1);
    let line = wait_until("the JSON audit line", Duration::from_secs(10), || {
        json.stderr()
            .lines()
            .find(|l| l.contains("audit radius"))
            .map(str::to_string)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(v["level"], "info");
    assert_eq!(v["audit"]["user"], "taro");
    assert_eq!(v["audit"]["outcome"], "reject");
    let plain = wait_until("the text audit line", Duration::from_secs(10), || {
        text.stderr()
            .lines()
            .find(|l| l.contains("audit radius"))
            .map(str::to_string)
    });
    let message = v["message"].as_str().expect("message");
    // The same words but the source port and client's numbers: compare up to `src=`.
    let head = |s: &str| {
        s[s.find("audit").expect("audit")..]
            .split(" src=")
            .next()
            .map(str::to_string)
    };
    assert_eq!(head(message), head(&plain));
    for l in json.stderr().lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}

#[test]
fn a_syslog_collector_that_goes_away_gets_lines_again_when_it_is_back() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let d = Otpd::start(&format!(
        "[log]\nsyslog = true\nsyslog_server = \"tcp://127.0.0.1:{port}\""
    ));
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    // RFC 6587 octet counting: frames until one carries the RADIUS audit line (the admin
    // socket's own audit lines may come first).
    let radius_frame = |l: &TcpListener| {
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut pending = Vec::new();
        loop {
            while let Some(sp) = pending.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&pending[..sp])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a frame length: {pending:?}"));
                if pending.len() < sp + 1 + len {
                    break;
                }
                let frame = String::from_utf8_lossy(&pending[sp + 1..sp + 1 + len]).into_owned();
                pending.drain(..sp + 1 + len);
                if frame.contains("audit radius") {
                    return (s, frame);
                }
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "the collector's peer closed: {pending:?}");
            pending.extend_from_slice(&buf[..n]);
        }
    };
    reject(&d, 1);
    let (first, msg) = radius_frame(&listener);
    // RFC 5424 with facility authpriv.
    assert!(msg.starts_with("<86>1 "), "{msg}");
    assert!(
        msg.contains(" otpd ") && msg.contains(" audit - audit radius reject user=\"taro\""),
        "{msg}"
    );
    drop(first);
    drop(listener);
    // The collector is gone: logins are answered as before (the queue never blocks one).
    for id in 2..6 {
        reject(&d, id);
    }
    let back = TcpListener::bind(("127.0.0.1", port)).expect("the collector back on its port");
    let (_s, again) = radius_frame(&back);
    assert!(
        again.contains("audit radius reject user=\"taro\""),
        "{again}"
    );
}

#[test]
fn a_librarys_own_warning_reaches_the_log() {
    let mut d = Otpd::start("[log]\nformat = \"json\"\nsyslog = false");
    d.stop();
    // sled warns (through the `log` crate) when its settings file is empty, and then
    // rewrites it; before otpd installed a logger this line was lost.
    std::fs::write(d.path("data/store/conf"), b"").expect("truncate sled's conf");
    d.launch();
    let line = wait_until("sled's warning", Duration::from_secs(10), || {
        d.stderr()
            .lines()
            .find(|l| l.contains("empty/corrupt configuration file"))
            .map(str::to_string)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
    assert_eq!(v["level"], "warn", "{line}");
    assert!(
        v["target"].as_str().is_some_and(|t| t.starts_with("sled")),
        "{line}"
    );
    // The store opened as before and serves.
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    reject(&d, 1);
}

#[test]
fn text_on_the_journals_stderr_has_priorities_and_audit_goes_to_syslog_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev_log = dir.path().join("log");
    let syslog = std::os::unix::net::UnixDatagram::bind(&dev_log).expect("a /dev/log of our own");
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut d = Otpd::builder()
        .config(&format!(
            "[log]\nsyslog = true\nsyslog_socket = \"{}\"",
            dev_log.display()
        ))
        .unstarted();
    d.journal_stream = true;
    d.launch();
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    reject(&d, 1);
    let mut buf = [0u8; 2048];
    let line = loop {
        let n = syslog
            .recv(&mut buf)
            .expect("an audit line on the syslog socket");
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains("audit radius") {
            break line;
        }
    };
    // authpriv.info, RFC 3164 as journald and rsyslog parse it on /dev/log.
    assert!(line.starts_with("<86>"), "{line}");
    assert!(
        line.contains(" otpd[") && line.contains("]: audit radius reject user=\"taro\""),
        "{line}"
    );
    // stderr is the journal: each line starts with its priority, and the audit line is not
    // there a second time.
    let stderr = wait_until("otpd's start line", Duration::from_secs(10), || {
        let s = d.stderr();
        (!s.is_empty()).then_some(s)
    });
    for l in stderr.lines() {
        let p = l.strip_prefix('<').and_then(|r| r.split_once('>'));
        assert!(
            p.is_some_and(|(n, _)| n.parse::<u8>().is_ok_and(|n| n <= 7)),
            "no priority prefix: {l}"
        );
    }
    assert!(!stderr.contains("audit radius"), "{stderr}");
}
