//! FreeRADIUS 3.2 as a proxy in front of otpd, the path a legacy gateway takes: started on
//! loopback from a temp config that forwards every Access-Request to otpd.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{free_udp_port, wait_until, RADIUS_SECRET};
use crate::radius::{Client, Ma, Request, STATUS_SERVER};

pub const GATEWAY_SECRET: &str = "gateway-secret-0123456789";

pub struct FreeRadius {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl FreeRadius {
    /// Starts FreeRADIUS proxying to otpd at `home`; returns once it answers Status-Server.
    pub fn proxy_to(home: SocketAddr) -> FreeRadius {
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
home_server otpd {{
	type = auth
	ipaddr = {home_ip}
	port = {home_port}
	secret = {RADIUS_SECRET}
	require_message_authenticator = yes
	response_window = 5
}}
home_server_pool otpd_pool {{
	type = fail-over
	home_server = otpd
}}
realm otp {{
	auth_pool = otpd_pool
	nostrip
}}
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
            home_ip = home.ip(),
            home_port = home.port(),
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
        let probe = Client::new(addr, GATEWAY_SECRET);
        wait_until(
            "FreeRADIUS to answer Status-Server",
            Duration::from_secs(30),
            || {
                if let Some(Ok(Some(status))) = fr.child.as_mut().map(Child::try_wait) {
                    panic!("freeradius exited ({status}): {}", fr.log());
                }
                let req = Request::new(1);
                probe.send_raw(&req.encode(STATUS_SERVER, GATEWAY_SECRET.as_bytes(), Ma::Good));
                probe.recv_raw(Duration::from_millis(200)).map(|_| ())
            },
        );
        fr
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("freeradius.log")).unwrap_or_default()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
