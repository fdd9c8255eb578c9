//! RADIUS over TLS peers: certificates made with `openssl` for one test, `radsecproxy`
//! (Debian package radsecproxy) as a UDP-to-TLS proxy, and otpd's `[radius.tls]` config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::freeradius::GATEWAY_SECRET;
use crate::paths::{free_tcp_port, free_udp_port};
use crate::radius::wait_for_status_server;

/// A CA, otpd's server certificate (127.0.0.1, otpd.test), a client certificate named
/// `proxy.test` signed by the CA, one named the same but signed by another CA, and
/// `cn-only-ca`: CN `proxy.test` but subjectAltName `elsewhere.test`, signed by the CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for ca in ["ca", "rogue-ca"] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        // `stem` names the files (`<stem>-<ca>.pem`), `name` the subject CN.
        let issue_as = |stem: &str, name: &str, ca: &str, san: &str| {
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{stem}-{ca}.key"),
                    "-out",
                    &format!("{stem}-{ca}.csr"),
                ],
            );
            std::fs::write(
                d.join(format!("{stem}.ext")),
                format!("subjectAltName={san}\n"),
            )
            .expect("ext");
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{stem}-{ca}.csr"),
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{stem}.ext"),
                    "-out",
                    &format!("{stem}-{ca}.pem"),
                ],
            );
        };
        let issue = |name: &str, ca: &str, san: &str| issue_as(name, name, ca, san);
        issue("otpd.test", "ca", "DNS:otpd.test,IP:127.0.0.1");
        issue("proxy.test", "ca", "DNS:proxy.test");
        issue("proxy.test", "rogue-ca", "DNS:proxy.test");
        // The client's name as CN, but its subjectAltName names another host.
        issue_as("cn-only", "proxy.test", "ca", "DNS:elsewhere.test");
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `openssl s_client` connected to otpd's TLS listener on `port`, with stdin and stdout
    /// piped: presenting `cert` (`<cert>.pem` and `.key` in this folder) or no certificate,
    /// and with `keep_open`, staying connected after its stdin ends until otpd closes.
    pub fn s_client(&self, port: u16, cert: Option<&str>, keep_open: bool) -> Child {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-quiet"])
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(self.path("ca.pem"));
        if keep_open {
            cmd.arg("-ign_eof");
        }
        if let Some(c) = cert {
            cmd.arg("-cert")
                .arg(self.path(&format!("{c}.pem")))
                .arg("-key")
                .arg(self.path(&format!("{c}.key")));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client (Debian package openssl)")
    }

    /// otpd's `[radius.tls]` on `port`, trusting clients named `proxy.test` from loopback.
    pub fn otpd_config(&self, port: u16) -> String {
        format!(
            r#"[radius.tls]
listen = ["127.0.0.1:{port}"]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
idle_timeout_seconds = 30
[[radius.tls.clients]]
name = "radsec-proxy"
certificate = "proxy.test"
address = "127.0.0.1"
"#,
            cert = self.path("otpd.test-ca.pem").display(),
            key = self.path("otpd.test-ca.key").display(),
            ca = self.path("ca.pem").display(),
        )
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// radsecproxy taking the gateways' UDP on `addr` and forwarding over TLS to otpd.
pub struct RadsecProxy {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl RadsecProxy {
    /// radsecproxy proxying the gateway's UDP to otpd's TLS listener at `home`, with the
    /// certificate `proxy.test` of `pki`; returns once it answers Status-Server.
    pub fn proxy_to(pki: &Pki, home: SocketAddr) -> RadsecProxy {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let mut p = RadsecProxy::start(addr, |log| {
            format!(
                r#"ListenUDP {addr}
LogLevel 4
LogDestination file://{log}
tls otpd {{
    CACertificateFile {ca}
    CertificateFile {cert}
    CertificateKeyFile {key}
}}
client gateway {{
    host 127.0.0.1
    type udp
    secret {GATEWAY_SECRET}
}}
server otpd {{
    host 127.0.0.1
    port {home_port}
    type tls
    tls otpd
    StatusServer on
}}
realm * {{
    server otpd
}}
"#,
                log = log.display(),
                ca = pki.path("ca.pem").display(),
                cert = pki.path("proxy.test-ca.pem").display(),
                key = pki.path("proxy.test-ca.key").display(),
                home_port = home.port(),
            )
        });
        p.wait_for_status_server();
        p
    }

    /// Starts radsecproxy on the configuration `conf` makes (given the log file it is to
    /// name in `LogDestination`), listening on `addr` as that configuration says; does not
    /// wait for it.
    pub fn start(addr: SocketAddr, conf: impl FnOnce(&Path) -> String) -> RadsecProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = conf(&dir.path().join("radsecproxy.log"));
        let conf_path = dir.path().join("radsecproxy.conf");
        std::fs::write(&conf_path, conf).expect("write radsecproxy.conf");
        let out = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new("radsecproxy")
            .arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("radsecproxy.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start radsecproxy (Debian package radsecproxy)");
        RadsecProxy {
            dir,
            addr,
            child: Some(child),
        }
    }

    /// Waits until it answers Status-Server (30 s at most); panics with its log if it
    /// exits first.
    pub fn wait_for_status_server(&mut self) {
        let dir = self.dir.path().to_owned();
        wait_for_status_server(
            "radsecproxy",
            self.addr,
            GATEWAY_SECRET,
            &mut self.child,
            || log_in(&dir),
        );
    }

    pub fn log(&self) -> String {
        log_in(self.dir.path())
    }
}

fn log_in(dir: &Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!("{}{}", read("stderr.log"), read("radsecproxy.log"))
}

impl Drop for RadsecProxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port for otpd's RADIUS-over-TLS listener.
pub fn free_port() -> u16 {
    free_tcp_port()
}

/// A TCP connection to `to` from the local address `from` (any of 127.0.0.0/8 works on
/// Linux): a second source on one host.
pub fn connect_from(
    from: std::net::Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other("connect_from: IPv4 only"));
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket owned by the TcpStream made from it (closed on every error
    // path by that TcpStream's drop); the addresses are valid sockaddr_in of `len` bytes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        if libc::bind(fd, std::ptr::from_ref(&local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, std::ptr::from_ref(&remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}
