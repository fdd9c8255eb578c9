//! A RADIUS test client that can also misbehave: requests without a Message-Authenticator,
//! signed with the wrong secret, corrupted, with Proxy-State, retransmitted byte for byte.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::RngCore;

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCESS_CHALLENGE: u8 = 11;
pub const STATUS_SERVER: u8 = 12;

pub const USER_NAME: u8 = 1;
pub const USER_PASSWORD: u8 = 2;
pub const REPLY_MESSAGE: u8 = 18;
pub const STATE: u8 = 24;
pub const PROXY_STATE: u8 = 33;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

/// How to sign a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ma {
    /// A correct Message-Authenticator, first attribute.
    Good,
    /// None at all.
    Missing,
    /// Present, with one bit flipped.
    Corrupt,
}

pub struct Request {
    pub id: u8,
    pub authenticator: [u8; 16],
    pub attrs: Vec<(u8, Vec<u8>)>,
}

impl Request {
    pub fn new(id: u8) -> Request {
        let mut authenticator = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut authenticator);
        Request {
            id,
            authenticator,
            attrs: Vec::new(),
        }
    }

    /// An Access-Request with User-Name and a PAP User-Password hidden with `secret`.
    pub fn access(id: u8, user: &str, password: &str, secret: &[u8]) -> Request {
        let mut r = Request::new(id);
        r.attrs.push((USER_NAME, user.as_bytes().to_vec()));
        let hidden = hide_password(password.as_bytes(), secret, &r.authenticator);
        r.attrs.push((USER_PASSWORD, hidden));
        r
    }

    pub fn attr(mut self, t: u8, v: &[u8]) -> Request {
        self.attrs.push((t, v.to_vec()));
        self
    }

    /// The packet bytes, signed per `ma` with `secret`.
    pub fn encode(&self, code: u8, secret: &[u8], ma: Ma) -> Vec<u8> {
        let mut p = vec![code, self.id, 0, 0];
        p.extend_from_slice(&self.authenticator);
        if ma != Ma::Missing {
            p.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
            p.extend_from_slice(&[0u8; 16]);
        }
        for (t, v) in &self.attrs {
            p.push(*t);
            p.push(u8::try_from(v.len() + 2).expect("attribute fits"));
            p.extend_from_slice(v);
        }
        let len = u16::try_from(p.len()).expect("packet fits");
        p[2..4].copy_from_slice(&len.to_be_bytes());
        if ma != Ma::Missing {
            let mac = hmac_md5(secret, &p);
            p[22..38].copy_from_slice(&mac);
            if ma == Ma::Corrupt {
                p[22] ^= 1;
            }
        }
        p
    }
}

pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut m = <Hmac<Md5> as Mac>::new_from_slice(key).expect("hmac takes any key");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub fn hide_password(pw: &[u8], secret: &[u8], auth: &[u8; 16]) -> Vec<u8> {
    let mut padded = pw.to_vec();
    let len = padded.len().div_ceil(16).max(1) * 16;
    padded.resize(len, 0);
    let mut out = Vec::with_capacity(len);
    let mut prev: Vec<u8> = auth.to_vec();
    for chunk in padded.chunks(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(&prev);
        let b = h.finalize();
        let c: Vec<u8> = chunk.iter().zip(b.iter()).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    out
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u8,
    pub id: u8,
    pub attrs: Vec<(u8, Vec<u8>)>,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn get(&self, t: u8) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(a, _)| *a == t)
            .map(|(_, v)| v.as_slice())
    }
    pub fn all(&self, t: u8) -> Vec<&[u8]> {
        self.attrs
            .iter()
            .filter(|(a, _)| *a == t)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
    pub fn message(&self) -> String {
        self.all(REPLY_MESSAGE)
            .iter()
            .map(|m| String::from_utf8_lossy(m))
            .collect()
    }
}

/// Parses `raw` and checks it answers `req` under `secret`: Response Authenticator and a
/// Message-Authenticator that is valid and first. Panics on any violation.
pub fn verify_reply(raw: &[u8], req: &Request, secret: &[u8]) -> Reply {
    assert!(raw.len() >= 20, "short reply");
    let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    assert_eq!(len, raw.len(), "length field");
    assert_eq!(raw[1], req.id, "identifier");
    let mut h = Md5::new();
    h.update(&raw[..4]);
    h.update(req.authenticator);
    h.update(&raw[20..]);
    h.update(secret);
    assert_eq!(
        h.finalize().as_slice(),
        &raw[4..20],
        "Response Authenticator"
    );
    let mut attrs = Vec::new();
    let mut i = 20;
    while i < raw.len() {
        let (t, l) = (raw[i], usize::from(raw[i + 1]));
        assert!(l >= 2 && i + l <= raw.len(), "attribute framing");
        attrs.push((t, raw[i + 2..i + l].to_vec()));
        i += l;
    }
    assert_eq!(
        attrs.first().map(|a| a.0),
        Some(MESSAGE_AUTHENTICATOR),
        "Message-Authenticator must be first"
    );
    let mut zeroed = raw.to_vec();
    zeroed[4..20].copy_from_slice(&req.authenticator);
    zeroed[22..38].fill(0);
    assert_eq!(
        hmac_md5(secret, &zeroed).as_slice(),
        &raw[22..38],
        "Message-Authenticator value"
    );
    Reply {
        code: raw[0],
        id: raw[1],
        attrs,
        raw: raw.to_vec(),
    }
}

pub struct Client {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub secret: Vec<u8>,
}

impl Client {
    pub fn new(server: SocketAddr, secret: &str) -> Client {
        Client::bound("127.0.0.1:0", server, secret)
    }

    /// A client sending from `local` (e.g. 127.0.0.2 to look like an unknown NAS).
    pub fn bound(local: &str, server: SocketAddr, secret: &str) -> Client {
        let sock = UdpSocket::bind(local).expect("bind client");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Client {
            sock,
            server,
            secret: secret.as_bytes().to_vec(),
        }
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).expect("send");
    }

    /// Waits up to `wait` for one datagram.
    pub fn recv_raw(&self, wait: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    /// Sends `req` (properly signed) and returns the verified reply.
    pub fn exchange(&self, req: &Request) -> Reply {
        let bytes = req.encode(ACCESS_REQUEST, &self.secret, Ma::Good);
        self.send_raw(&bytes);
        let raw = self.recv_raw(Duration::from_secs(10)).expect("a reply");
        verify_reply(&raw, req, &self.secret)
    }

    /// A login with User-Password; returns the verified reply.
    pub fn login(&self, id: u8, user: &str, password: &str) -> Reply {
        self.exchange(&Request::access(id, user, password, &self.secret))
    }
}

/// Sends Status-Server to the proxy `name` on `addr` until it answers (30 s at most);
/// panics with `log()` if its process `child` exits first.
pub fn wait_for_status_server(
    name: &str,
    addr: SocketAddr,
    secret: &str,
    child: &mut Option<std::process::Child>,
    log: impl Fn() -> String,
) {
    let probe = Client::new(addr, secret);
    crate::daemon::wait_until(
        &format!("{name} to answer Status-Server"),
        Duration::from_secs(30),
        || {
            if let Some(Ok(Some(status))) = child.as_mut().map(std::process::Child::try_wait) {
                panic!("{name} exited ({status}): {}", log());
            }
            let req = Request::new(1);
            probe.send_raw(&req.encode(STATUS_SERVER, secret.as_bytes(), Ma::Good));
            probe.recv_raw(Duration::from_millis(200)).map(|_| ())
        },
    );
}
