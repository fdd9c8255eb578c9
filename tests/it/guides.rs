//! The integration guides run as written (the operator's issue): the README's PAM service
//! through pamtester, the shipped radsecproxy example, the FreeRADIUS proxy example on
//! Debian's own FreeRADIUS configuration; and the README's PAM options are the module's.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use otpd_testkit::daemon::{free_tcp_port, free_udp_port, wait_until, Otpd, RADIUS_SECRET};
use otpd_testkit::freeradius::GATEWAY_SECRET;
use otpd_testkit::oath::oathtool;
use otpd_testkit::pam::{PamStack, PASSWORD_PROMPT, SUCCESS};
use otpd_testkit::raddb::copy_raddb;
use otpd_testkit::radius::{
    Client, Ma, Request, ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST, STATE,
    STATUS_SERVER,
};
use otpd_testkit::radsec::{Pki, RadsecProxy};
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
fn shipped_radsecproxy(pki: &Pki, home: SocketAddr) -> RadsecProxy {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    RadsecProxy::start(addr, |log| {
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
        substitute(&repo_file("packaging/radsecproxy-otpd.conf"), &swaps)
    })
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
    let mut proxy = shipped_radsecproxy(&pki, tls);
    proxy.wait_for_status_server();
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
    let proxy = shipped_radsecproxy(&pki, tls);
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

/// The lines of step `step` of the FreeRADIUS guide that are meant to be copied: its
/// comment lines indented with a tab, the `#\t` taken off (one more tab is kept as the
/// block's own indent).
fn guide_step(guide: &str, step: u32) -> String {
    let start = format!("# {step}. ");
    let next = format!("# {}. ", step + 1);
    let mut lines = guide.lines().skip_while(|l| !l.starts_with(&start));
    assert!(lines.next().is_some(), "the guide has no step {step}");
    let block: Vec<&str> = lines
        .take_while(|l| l.starts_with('#') && !l.starts_with(&next))
        .filter_map(|l| l.strip_prefix("#\t"))
        .collect();
    assert!(!block.is_empty(), "step {step} has nothing to copy");
    block.join("\n") + "\n"
}

/// Debian's own FreeRADIUS configuration (`/etc/freeradius/3.0`, copied) with the guide's
/// steps 2 to 4 done as written; only what a test must change is changed: the folders,
/// the user it runs as, and free ports instead of 1812, 1813 and 18120.
struct DebianFreeRadius {
    raddb: PathBuf,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl DebianFreeRadius {
    /// `proxy_blocks`: the guide's blocks, otpd's address and secret in place; `gateway`
    /// the address the gateway sends from.
    fn start(guide: &str, proxy_blocks: &str, gateway: &str) -> DebianFreeRadius {
        let dir = tempfile::tempdir().expect("tempdir");
        let raddb = copy_raddb(Path::new("/etc/freeradius/3.0"), dir.path(), |_| None)
            .expect("copy /etc/freeradius/3.0");
        let edit = |file: &str, f: &dyn Fn(&str) -> String| {
            let path = raddb.join(file);
            let text = std::fs::read_to_string(&path).expect(file);
            let text: String = text.lines().map(|l| f(l) + "\n").collect();
            // sites-enabled/* are links into sites-available: write through a new file.
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, text).expect(file);
        };
        let auth_port = free_udp_port();
        let first_port = std::cell::Cell::new(true);
        // Step 3, as the first lines inside `authorize {`.
        let step3 = guide_step(guide, 3);
        edit("sites-enabled/default", &|l| {
            if l.trim_start().starts_with("port = 0") {
                let port = if first_port.replace(false) {
                    auth_port
                } else {
                    free_udp_port()
                };
                l.replace("port = 0", &format!("port = {port}"))
            } else if l == "authorize {" {
                format!("{l}\n{step3}")
            } else {
                l.to_string()
            }
        });
        assert!(!first_port.get(), "the default site's listeners were found");
        edit("sites-enabled/inner-tunnel", &|l| {
            l.replace("port = 18120", &format!("port = {}", free_udp_port()))
        });
        // Step 2: the blocks at the end of proxy.conf.
        let proxy = std::fs::read_to_string(raddb.join("proxy.conf")).expect("proxy.conf");
        std::fs::write(raddb.join("proxy.conf"), proxy + "\n" + proxy_blocks).expect("proxy");
        // Step 4: the gateway at the end of clients.conf.
        let client = guide_step(guide, 4)
            .replace("ipaddr = 192.0.2.10", &format!("ipaddr = {gateway}"))
            .replace("change-me-the-gateways-secret", GATEWAY_SECRET);
        assert!(
            client.contains(GATEWAY_SECRET) && client.contains(gateway),
            "{client}"
        );
        let clients = std::fs::read_to_string(raddb.join("clients.conf")).expect("clients");
        std::fs::write(raddb.join("clients.conf"), clients + "\n" + &client).expect("clients");

        let log = std::fs::File::create(dir.path().join("freeradius.log")).expect("log");
        let child = Command::new("freeradius")
            .args(["-f", "-l", "stdout", "-d"])
            .arg(&raddb)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start freeradius (Debian package freeradius)");
        let addr: SocketAddr = format!("127.0.0.1:{auth_port}").parse().expect("addr");
        let mut fr = DebianFreeRadius {
            raddb,
            _dir: dir,
            addr,
            child: Some(child),
        };
        let probe = Client::bound(&format!("{gateway}:0"), addr, GATEWAY_SECRET);
        wait_until(
            "FreeRADIUS to answer Status-Server",
            Duration::from_secs(60),
            || {
                if let Some(Ok(Some(status))) = fr.child.as_mut().map(Child::try_wait) {
                    panic!("freeradius exited ({status}):\n{}", fr.log());
                }
                let req = Request::new(1);
                probe.send_raw(&req.encode(STATUS_SERVER, GATEWAY_SECRET.as_bytes(), Ma::Good));
                probe.recv_raw(Duration::from_millis(200))
            },
        );
        fr
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.raddb.join("../freeradius.log")).unwrap_or_default()
    }
}

impl Drop for DebianFreeRadius {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The guide's proxy blocks with otpd's address, port and secret (and, with `source`, the
/// `src_ipaddr` line uncommented to that address).
fn guide_proxy_blocks(guide: &str, otpd: SocketAddr, secret: &str, source: Option<&str>) -> String {
    let blocks = &guide[guide.find("\nhome_server ").expect("the home server block")..];
    let mut swaps = vec![
        ("ipaddr = ", format!("ipaddr = {}", otpd.ip())),
        ("port = ", format!("port = {}", otpd.port())),
        ("secret = ", format!("secret = {secret}")),
    ];
    if let Some(src) = source {
        swaps.push(("# src_ipaddr = 127.0.0.2", format!("src_ipaddr = {src}")));
    }
    substitute(blocks, &swaps)
}

/// taro's login through FreeRADIUS from the gateway's address: password, challenge, OTP.
fn challenge_through(fr: &DebianFreeRadius, gateway: &str, secret_b32: &str) {
    let c = Client::bound(&format!("{gateway}:0"), fr.addr, GATEWAY_SECRET);
    let r = c.login(1, "taro", "login-pw");
    assert_eq!(r.code, ACCESS_CHALLENGE, "{}\n{}", r.message(), fr.log());
    assert!(
        r.message().contains("Enter your one-time password"),
        "{}",
        r.message()
    );
    let state = r.get(STATE).expect("a State").to_vec();
    let r = c.answer(2, "taro", &oathtool(secret_b32, None), &state);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}\n{}", r.message(), fr.log());
    let r = c.login(3, "taro", "wrong-pw");
    assert_eq!(r.code, ACCESS_REJECT, "{}", r.message());
}

#[test]
fn the_freeradius_guide_runs_as_written_on_debians_configuration() {
    let guide = repo_file("packaging/otpd-freeradius-proxy.conf");
    // Step 1: otpd on loopback, on the port the home server names, not FreeRADIUS's 1812.
    let step1 = guide_step(&guide, 1);
    let blocks = &guide[guide.find("\nhome_server ").expect("home server")..];
    let port = blocks
        .lines()
        .find_map(|l| l.trim().strip_prefix("port = "))
        .expect("the home server's port");
    assert_ne!(port, "1812", "otpd must not take FreeRADIUS's port");
    assert!(
        step1.contains(&format!("listen = [\"127.0.0.1:{port}\"]")),
        "{step1}"
    );
    assert!(step1.contains("address = \"127.0.0.1\"") && step1.contains("[[radius.clients]]"));

    // otpd's one client is this FreeRADIUS on 127.0.0.1, as step 1 has it.
    let d = Otpd::builder()
        .radius_client("freeradius", RADIUS_SECRET)
        .config("[radius]\nreject_delay_ms = 0\n")
        .start();
    let secret = activate(&d, "taro", "login-pw");
    let fr = DebianFreeRadius::start(
        &guide,
        &guide_proxy_blocks(&guide, d.radius(), RADIUS_SECRET, None),
        "127.0.0.2",
    );
    // FreeRADIUS listens on every address (`ipaddr = *`, as Debian ships it) while otpd
    // holds 127.0.0.1 on its own port: FreeRADIUS answers on another loopback address too.
    let elsewhere: SocketAddr = format!("127.0.0.5:{}", fr.addr.port())
        .parse()
        .expect("addr");
    let probe = Client::bound("127.0.0.2:0", elsewhere, GATEWAY_SECRET);
    let status = Request::new(7).encode(STATUS_SERVER, GATEWAY_SECRET.as_bytes(), Ma::Good);
    probe.send_raw(&status);
    assert!(
        probe.recv_raw(Duration::from_secs(5)).is_some(),
        "FreeRADIUS answers on {elsewhere}"
    );
    challenge_through(&fr, "127.0.0.2", &secret);
    let audit = d.stderr();
    assert!(
        audit.contains("audit radius accept user=\"taro\" client=\"freeradius\""),
        "{audit}"
    );
    assert!(
        !fr.log().contains("does not have at least one dot"),
        "{}",
        fr.log()
    );
}

#[test]
fn with_src_ipaddr_freeradius_is_a_client_of_its_own_beside_a_pam_host() {
    let guide = repo_file("packaging/otpd-freeradius-proxy.conf");
    // 127.0.0.1 stays the PAM host's (the template's client `test`), FreeRADIUS sends from
    // 127.0.0.2 with its own secret.
    let fr_secret = "freeradius-secret-0123456789";
    let d = Otpd::start(&format!(
        "[radius]\nreject_delay_ms = 0\n[[radius.clients]]\nname = \"freeradius\"\naddress = \"127.0.0.2\"\nsecret = \"{fr_secret}\"\n"
    ));
    let secret = activate(&d, "taro", "login-pw");
    let fr = DebianFreeRadius::start(
        &guide,
        &guide_proxy_blocks(&guide, d.radius(), fr_secret, Some("127.0.0.2")),
        "127.0.0.3",
    );
    challenge_through(&fr, "127.0.0.3", &secret);
    let audit = d.stderr();
    assert!(
        audit.contains("audit radius accept user=\"taro\" client=\"freeradius\""),
        "{audit}"
    );
    // The PAM host's client on 127.0.0.1 answers with its own secret meanwhile.
    let pam_host = Client::new(d.radius(), RADIUS_SECRET);
    assert_eq!(pam_host.login(9, "taro", "wrong").code, ACCESS_REJECT);
    assert!(d.stderr().contains("client=\"test\""));
}
