//! FreeRADIUS 3.2 as a proxy in front of otpd, the path a legacy gateway takes: started on
//! loopback from a temp config that forwards every Access-Request to otpd; and its
//! `radclient`, an independent RADIUS client.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::RADIUS_SECRET;
use crate::paths::{free_udp_port, tool};
use crate::radius::wait_for_status_server;
use crate::wait::try_wait_until;

/// Sends one Access-Request with FreeRADIUS's `radclient` (one try, 5 s for the answer;
/// `-x` prints the reply's attributes); `attrs` is radclient's input, e.g.
/// `User-Name = "taro"\nUser-Password = "pw"\n`. Returns its stdout then its stderr.
/// radclient comes with the test dependencies (`scripts/install-test-deps`).
pub fn radclient(server: SocketAddr, secret: &str, attrs: &str) -> String {
    let mut child = Command::new(tool("radclient"))
        .args(["-x", "-r", "1", "-t", "5"])
        .arg(server.to_string())
        .args(["auth", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient (Debian package freeradius-utils)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(attrs.as_bytes()).expect("write attributes");
    drop(stdin);
    // Its output is a few lines: the pipes cannot fill while it runs.
    if let Err(e) = try_wait_until("radclient to finish", Duration::from_secs(20), || {
        child.try_wait()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}");
    }
    let output = child.wait_with_output().expect("radclient output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub const GATEWAY_SECRET: &str = "gateway-secret-0123456789";

pub struct FreeRadius {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl FreeRadius {
    /// Starts FreeRADIUS proxying to otpd at `home` with the shipped example's blocks;
    /// returns once it answers Status-Server.
    pub fn proxy_to(home: SocketAddr) -> FreeRadius {
        FreeRadius::start(shipped_proxy_blocks(home))
    }

    /// FreeRADIUS proxying to otpd's RADIUS-over-TLS listener at `home`, presenting the
    /// client certificate `proxy.test` of `pki`. FreeRADIUS 3.2 spells a TLS home server
    /// `proto = tcp` with a `tls` block (it refuses `proto = tls`).
    pub fn proxy_over_tls(home: SocketAddr, pki: &crate::radsec::Pki) -> FreeRadius {
        FreeRadius::start(format!(
            r#"home_server otpd {{
	type = auth
	ipaddr = {ip}
	port = {port}
	proto = tcp
	secret = radsec
	response_window = 5
	status_check = status-server
	tls {{
		private_key_file = {key}
		certificate_file = {cert}
		ca_file = {ca}
		fragment_size = 8192
		check_crl = no
	}}
}}
home_server_pool otpd_pool {{
	type = fail-over
	home_server = otpd
}}
realm otp {{
	auth_pool = otpd_pool
	nostrip
}}
"#,
            ip = home.ip(),
            port = home.port(),
            key = pki.path("proxy.test-ca.key").display(),
            cert = pki.path("proxy.test-ca.pem").display(),
            ca = pki.path("ca.pem").display(),
        ))
    }

    fn start(proxy: String) -> FreeRadius {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_udp_port();
        let conf = format!(
            r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {raddb}
confdir = ${{raddbdir}}
modconfdir = ${{confdir}}/mods-config
logdir = ${{raddbdir}}
run_dir = ${{raddbdir}}
db_dir = ${{raddbdir}}
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/radiusd.pid
name = radiusd
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
	destination = stdout
	auth = yes
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}
proxy_requests = yes
{proxy}
client gateway {{
	ipaddr = 127.0.0.1
	secret = {GATEWAY_SECRET}
	require_message_authenticator = no
}}
thread pool {{
	start_servers = 2
	max_servers = 4
	min_spare_servers = 1
	max_spare_servers = 4
}}
modules {{
}}
server default {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {port}
	}}
	authorize {{
		update control {{
			&Proxy-To-Realm := "otp"
		}}
	}}
	authenticate {{
	}}
}}
"#,
            raddb = dir.path().display(),
        );
        std::fs::write(dir.path().join("radiusd.conf"), conf).expect("write radiusd.conf");
        let log = std::fs::File::create(dir.path().join("freeradius.log")).expect("log");
        let child = Command::new("freeradius")
            .args(["-f", "-n", "radiusd", "-l", "stdout", "-d"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start freeradius (Debian package freeradius)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut fr = FreeRadius {
            dir,
            addr,
            child: Some(child),
        };
        let dir = fr.dir.path().to_owned();
        wait_for_status_server("freeradius", addr, GATEWAY_SECRET, &mut fr.child, || {
            log_in(&dir)
        });
        fr
    }

    pub fn log(&self) -> String {
        log_in(self.dir.path())
    }
}

fn log_in(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("freeradius.log")).unwrap_or_default()
}

/// The home server, pool and realm of `packaging/otpd-freeradius-proxy.conf`, pointed at
/// `home`: the tests run the example as shipped, its health-check values included.
pub fn shipped_proxy_blocks(home: SocketAddr) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/otpd-freeradius-proxy.conf"
    );
    let text = std::fs::read_to_string(path).expect("packaging/otpd-freeradius-proxy.conf");
    let mut out = String::new();
    let mut replaced = 0;
    for line in text.lines() {
        let (key, indent) = (
            line.trim_start(),
            &line[..line.len() - line.trim_start().len()],
        );
        let mut value = |v: String| {
            replaced += 1;
            format!("{indent}{v}")
        };
        let line = if key.starts_with("ipaddr = ") {
            value(format!("ipaddr = {}", home.ip()))
        } else if key.starts_with("port = ") {
            value(format!("port = {}", home.port()))
        } else if key.starts_with("secret = ") {
            value(format!("secret = {RADIUS_SECRET}"))
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(
        replaced, 3,
        "the example names ipaddr, port and secret once each"
    );
    out
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
