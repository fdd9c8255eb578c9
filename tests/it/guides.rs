//! The integration guides run as written (the operator's issue): the README's PAM service
//! through pamtester, the shipped radsecproxy example, the FreeRADIUS proxy example on
//! Debian's own FreeRADIUS configuration; and the README's PAM options are the module's.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{free_tcp_port, free_udp_port, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::freeradius::GATEWAY_SECRET;
use otpd_testkit::oath::oathtool;
use otpd_testkit::pam::{PamStack, PASSWORD_PROMPT, SUCCESS};
use otpd_testkit::radius::{
    wait_for_status_server, Client, Ma, Request, ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REQUEST,
    STATE,
};
use otpd_testkit::radsec::Pki;
use otpd_testkit::token::activate;

/// otpd's challenge text (daemon/src/access.rs).
const ASK_OTP: &str = "ワンタイムパスワードを入力してください / Enter your one-time password: ";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The README's section `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme = repo_file("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {title}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The option names `Options::parse` matches on: `("name", Some(v))` / `("name", None)`.
fn module_options() -> BTreeSet<String> {
    let source = repo_file("pam-module/src/options.rs");
    let mut names = BTreeSet::new();
    for arm in source.split("(\"").skip(1) {
        let Some((name, rest)) = arm.split_once('"') else {
            continue;
        };
        let rest = rest.trim_start_matches([',', ' ']);
        if (rest.starts_with("Some(") || rest.starts_with("None)"))
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn the_readme_lists_every_pam_option_and_no_other() {
    let options = module_options();
    // What the module takes today: the parse above found them all.
    for known in [
        "server",
        "secret_file",
        "retries",
        "use_first_pass",
        "debug",
    ] {
        assert!(options.contains(known), "{known} in {options:?}");
    }
    let section = readme_section("PAM");
    // The option table's first column: `name=VALUE` or `name`.
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(['`', '=']).next())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, options,
        "README.md's PAM table and pam-module/src/options.rs differ"
    );
    // The shipped example's comment names them all too.
    let example = repo_file("packaging/pam.d/otpd-example");
    for name in &options {
        assert!(example.contains(name.as_str()), "{name} in otpd-example");
    }
    // The installed path the README gives is the one the package installs.
    let cargo = repo_file("pam-module/Cargo.toml");
    let installed = cargo
        .lines()
        .find(|l| l.contains("target/release/libpam_otpd.so"))
        .and_then(|l| l.split('"').nth(3))
        .expect("the module's asset line");
    assert!(section.contains(&format!("`/{installed}`")), "{installed}");
    assert!(section.contains("target/release/libpam_otpd.so"));
    assert!(section.contains(PASSWORD_PROMPT) && section.contains(ASK_OTP));
}

#[test]
fn the_readme_pam_service_logs_in_with_the_bilingual_prompts() {
    let d = Otpd::start("");
    let secret = activate(&d, "taro", "login-pw");
    let section = readme_section("PAM");
    let start = section.find("<!-- pam-example -->").expect("start marker");
    let end = section.find("<!-- /pam-example -->").expect("end marker");
    let pam = PamStack::with_secret(RADIUS_SECRET);
    // The lines as written, with this test's module copy, otpd and secret file.
    let lines: Vec<String> = section[start..end]
        .lines()
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--"))
        .map(|l| {
            l.replace(" pam_otpd.so ", &format!(" {} ", pam.module().display()))
                .replace("127.0.0.1:1812", &d.radius().to_string())
                .replace(
                    "/etc/otpd/pam.secret",
                    &pam.secret_file().display().to_string(),
                )
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(&d.radius().to_string()), "{lines:?}");
    pam.service("otpd-login", &lines);
    let code = oathtool(&secret, None);
    let run = pam.authenticate(
        "otpd-login",
        "taro",
        &[],
        &[(PASSWORD_PROMPT, "login-pw"), (ASK_OTP, &code)],
    );
    run.assert_result(SUCCESS, true);
    assert!(run.said("ログインパスワード / Password: "), "{}", run.text);
    assert!(run.said(ASK_OTP), "{}", run.text);
}

/// radsecproxy running `packaging/radsecproxy-otpd.conf` as shipped, with this test's
/// addresses, certificates and secret put in place of the example's; stopped on drop.
struct ShippedRadsecproxy {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl ShippedRadsecproxy {
    fn start(pki: &Pki, home: SocketAddr) -> ShippedRadsecproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let log = dir.path().join("radsecproxy.log");
        let swaps = [
            ("ListenUDP ", format!("ListenUDP {addr}")),
            (
                "LogDestination ",
                format!("LogDestination file://{}", log.display()),
            ),
            (
                "CACertificateFile ",
                format!("CACertificateFile {}", pki.path("ca.pem").display()),
            ),
            (
                "CertificateFile ",
                format!(
                    "CertificateFile {}",
                    pki.path("proxy.test-ca.pem").display()
                ),
            ),
            (
                "CertificateKeyFile ",
                format!(
                    "CertificateKeyFile {}",
                    pki.path("proxy.test-ca.key").display()
                ),
            ),
            ("secret change-me", format!("secret {GATEWAY_SECRET}")),
            ("host otpd.bank.example", format!("host {}", home.ip())),
            ("port 2083", format!("port {}", home.port())),
        ];
        let conf = substitute(&repo_file("packaging/radsecproxy-otpd.conf"), &swaps);
        let path = dir.path().join("radsecproxy.conf");
        std::fs::write(&path, conf).expect("write radsecproxy.conf");
        let out = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new("radsecproxy")
            .arg("-f")
            .arg("-c")
            .arg(&path)
            .arg("-i")
            .arg(dir.path().join("radsecproxy.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start radsecproxy (Debian package radsecproxy)");
        ShippedRadsecproxy {
            dir,
            addr,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("radsecproxy.log"))
    }
}

impl Drop for ShippedRadsecproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `text` with each line that starts (after its indent) with a swap's key replaced by the
/// swap's line, indent kept; every key must match exactly one line.
fn substitute(text: &str, swaps: &[(&str, String)]) -> String {
    let mut used = vec![0; swaps.len()];
    let mut out = String::new();
    for line in text.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match swaps.iter().position(|(key, _)| body.starts_with(key)) {
            Some(i) => {
                used[i] += 1;
                out.push_str(indent);
                out.push_str(&swaps[i].1);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for ((key, _), n) in swaps.iter().zip(used) {
        assert_eq!(n, 1, "{key:?} is on {n} lines of the example");
    }
    out
}

/// otpd with its RadSec listener on `cert` (a stem of `pki`), trusting `proxy.test`.
fn radsec_otpd(pki: &Pki, cert: &str) -> (Otpd, SocketAddr) {
    let port = free_tcp_port();
    let config = pki.otpd_config(port).replace("otpd.test-ca", cert);
    let d = Otpd::start(&format!("[radius]\nreject_delay_ms = 0\n{config}"));
    (d, format!("127.0.0.1:{port}").parse().expect("addr"))
}

#[test]
fn the_shipped_radsecproxy_example_carries_a_challenge_round_trip_to_otpd() {
    let pki = Pki::new();
    // otpd's certificate names 127.0.0.1 (IP subjectAltName): radsecproxy's `host`.
    let (d, tls) = radsec_otpd(&pki, "otpd.test-ca");
    let secret = activate(&d, "taro", "login-pw");
    let mut proxy = ShippedRadsecproxy::start(&pki, tls);
    let dir = proxy.dir.path().to_owned();
    let log = move || {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("radsecproxy.log"))
    };
    let addr = proxy.addr;
    wait_for_status_server("radsecproxy", addr, GATEWAY_SECRET, &mut proxy.child, log);
    let c = Client::new(proxy.addr, GATEWAY_SECRET);
    let r = c.login(1, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_CHALLENGE, "{}\n{}", r.message(), proxy.log());
    assert!(
        r.message().contains("Enter your one-time password"),
        "{}",
        r.message()
    );
    let state = r.get(STATE).expect("a State").to_vec();
    let r = c.answer(2, "taro", &oathtool(&secret, None), &state);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", r.message());
    let audit = wait_until("the accept's audit line", Duration::from_secs(10), || {
        let log = d.stderr();
        log.contains("audit radius accept user=\"taro\"")
            .then_some(log)
    });
    assert!(
        audit.contains("audit radius accept user=\"taro\" client=\"radsec-proxy\""),
        "{audit}"
    );
}

#[test]
fn radsecproxy_refuses_an_otpd_certificate_that_names_another_host() {
    let pki = Pki::new();
    // subjectAltName DNS:elsewhere.test only: not radsecproxy's host 127.0.0.1.
    let (d, tls) = radsec_otpd(&pki, "cn-only-ca");
    d.ctl_ok(&["user", "add", "taro", "--password-stdin"], "login-pw\n");
    let proxy = ShippedRadsecproxy::start(&pki, tls);
    let c = Client::new(proxy.addr, GATEWAY_SECRET);
    let refused = wait_until(
        "radsecproxy to refuse otpd's certificate",
        Duration::from_secs(30),
        || {
            c.send_raw(
                &Request::access(1, "taro", "login-pw", GATEWAY_SECRET.as_bytes()).encode(
                    ACCESS_REQUEST,
                    GATEWAY_SECRET.as_bytes(),
                    Ma::Good,
                ),
            );
            assert!(
                c.recv_raw(Duration::from_millis(300)).is_none(),
                "an answer through a server whose certificate names another host"
            );
            let log = proxy.log();
            log.contains("certificate name check failed").then_some(log)
        },
    );
    assert!(
        !d.stderr().contains("audit radius"),
        "no login reached otpd:\n{refused}"
    );
}
