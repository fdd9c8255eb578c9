//! A RADIUS test client that can also misbehave: requests without a Message-Authenticator,
//! signed with the wrong secret, corrupted, with Proxy-State, retransmitted byte for byte.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use radius_wire::{Writer, FIRST_MESSAGE_AUTHENTICATOR};
use rand::RngCore;

pub use radius_wire::attr::{
    MESSAGE_AUTHENTICATOR, PROXY_STATE, REPLY_MESSAGE, STATE, USER_NAME, USER_PASSWORD,
};
pub use radius_wire::code::{
    ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST, STATUS_SERVER,
};

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

    /// The packet bytes, signed per `ma` with `secret`: the Message-Authenticator first,
    /// then the attributes as they were added (empty ones too), so a test may build a
    /// packet the server must refuse. Panics past 4096 octets.
    pub fn encode(&self, code: u8, secret: &[u8], ma: Ma) -> Vec<u8> {
        let mut w = Writer::new(code, self.id, &self.authenticator);
        if ma != Ma::Missing {
            w.push_message_authenticator();
        }
        for (t, v) in &self.attrs {
            w.push(*t, v).expect("attribute fits");
        }
        let mut p = w.finish_request(secret).expect("packet fits");
        if ma == Ma::Corrupt {
            p[FIRST_MESSAGE_AUTHENTICATOR] ^= 1;
        }
        p
    }
}

/// A PAP User-Password value for `pw` (at most 128 octets).
pub fn hide_password(pw: &[u8], secret: &[u8], auth: &[u8; 16]) -> Vec<u8> {
    radius_wire::hide_password(pw, secret, auth).expect("a password RADIUS can carry")
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

/// Parses `raw` and checks it answers `req` under `secret`: a Length with no padding after
/// it, the identifier, the Response Authenticator and a Message-Authenticator that is valid
/// and first. Panics on any violation.
pub fn verify_reply(raw: &[u8], req: &Request, secret: &[u8]) -> Reply {
    if let Some(len) = raw.get(2..4) {
        assert_eq!(
            usize::from(u16::from_be_bytes([len[0], len[1]])),
            raw.len(),
            "length field"
        );
    }
    let reply = match radius_wire::verify_reply(&req.authenticator, secret, raw, req.id) {
        Ok(reply) => reply,
        Err(e) => panic!("reply refused: {e}"),
    };
    assert!(
        reply.message_authenticator_first(),
        "Message-Authenticator must be first"
    );
    Reply {
        code: raw[0],
        id: raw[1],
        attrs: reply
            .attributes()
            .map(|a| (a.typ, a.value.to_vec()))
            .collect(),
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

    /// A client whose socket is connected to `server`, so that a server that is not
    /// running (its port closed) is noticed at once: the refused datagram ends the wait
    /// for a reply instead of its timeout.
    pub fn connected(server: SocketAddr, secret: &str) -> Client {
        let c = Client::new(server, secret);
        c.sock.connect(server).expect("connect client");
        c
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

    /// Waits up to `wait` for one datagram (a signal arriving meanwhile does not end the
    /// wait; a refused datagram of a [`Client::connected`] one does).
    pub fn recv_raw(&self, wait: Duration) -> Option<Vec<u8>> {
        let end = std::time::Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            match self.sock.recv(&mut buf) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
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

    /// The answer to an Access-Challenge: the OTP as User-Password, with the challenge's
    /// State; returns the verified reply.
    pub fn answer(&self, id: u8, user: &str, otp: &str, state: &[u8]) -> Reply {
        self.exchange(&Request::access(id, user, otp, &self.secret).attr(STATE, state))
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
