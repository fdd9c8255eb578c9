//! An in-process RADIUS server for tests, written apart from the module's own codec so the
//! two check each other: it verifies every request's Message-Authenticator, decodes the
//! hidden User-Password, records what it saw, and answers with proper authenticators
//! (or deliberately broken ones).
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// What the server saw in one Access-Request that passed its checks.
#[derive(Debug, Clone)]
pub struct Seen {
    /// 1 for the first request this server received, counting retransmissions.
    pub number: usize,
    pub raw: Vec<u8>,
    pub user: String,
    pub password: Vec<u8>,
    pub state: Option<Vec<u8>>,
    pub nas_identifier: Option<String>,
    /// Attribute types in wire order.
    pub attr_types: Vec<u8>,
}

/// One datagram to send back.
#[derive(Debug, Clone)]
pub struct Answer {
    code: u8,
    messages: Vec<String>,
    state: Option<Vec<u8>>,
    bad_response_authenticator: bool,
    bad_message_authenticator: bool,
    wrong_id: bool,
    no_message_authenticator: bool,
}

impl Answer {
    fn new(code: u8, messages: &[&str], state: Option<&[u8]>) -> Self {
        Self {
            code,
            messages: messages.iter().map(|m| m.to_string()).collect(),
            state: state.map(<[u8]>::to_vec),
            bad_response_authenticator: false,
            bad_message_authenticator: false,
            wrong_id: false,
            no_message_authenticator: false,
        }
    }
    pub fn accept(messages: &[&str]) -> Self {
        Self::new(2, messages, None)
    }
    pub fn reject(messages: &[&str]) -> Self {
        Self::new(3, messages, None)
    }
    pub fn challenge(state: &[u8], messages: &[&str]) -> Self {
        Self::new(11, messages, Some(state))
    }
    pub fn with_bad_response_authenticator(mut self) -> Self {
        self.bad_response_authenticator = true;
        self
    }
    pub fn with_bad_message_authenticator(mut self) -> Self {
        self.bad_message_authenticator = true;
        self
    }
    pub fn with_wrong_id(mut self) -> Self {
        self.wrong_id = true;
        self
    }
    pub fn without_message_authenticator(mut self) -> Self {
        self.no_message_authenticator = true;
        self
    }
}

type Handler = Box<dyn FnMut(&Seen) -> Vec<Answer> + Send>;

#[derive(Default)]
struct Shared {
    seen: Vec<Seen>,
    problems: Vec<String>,
    received: usize,
}

pub struct FakeRadius {
    addr: SocketAddr,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub const OTPD_USER: &str = "alice";
pub const OTPD_PASSWORD: &str = "correct horse";
pub const OTPD_OTP: &str = "123456";
pub const OTPD_PROMPT: &str = "Enter your one-time password: ";

impl FakeRadius {
    pub fn start(
        secret: &[u8],
        handler: impl FnMut(&Seen) -> Vec<Answer> + Send + 'static,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind fake server");
        let addr = socket.local_addr().expect("local addr");
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            let secret = secret.to_vec();
            let handler: Handler = Box::new(handler);
            std::thread::spawn(move || serve(socket, secret, handler, shared, stop))
        };
        Self {
            addr,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Behaves as otpd does for a user with an active token: password and OTP in one go
    /// are accepted; the password alone gets a challenge whose State must come back with
    /// the OTP; anything else is rejected.
    pub fn otpd_like(secret: &[u8]) -> Self {
        let mut issued: Vec<Vec<u8>> = Vec::new();
        Self::start(secret, move |seen: &Seen| {
            let combined = format!("{OTPD_PASSWORD}{OTPD_OTP}");
            if seen.user != OTPD_USER {
                return vec![Answer::reject(&["Login failed"])];
            }
            match &seen.state {
                None if seen.password == combined.as_bytes() => vec![Answer::accept(&[])],
                None if seen.password == OTPD_PASSWORD.as_bytes() => {
                    let state = format!("otpd-state-{}", seen.number).into_bytes();
                    issued.push(state.clone());
                    vec![Answer::challenge(&state, &[OTPD_PROMPT])]
                }
                Some(state) if issued.contains(state) && seen.password == OTPD_OTP.as_bytes() => {
                    issued.retain(|s| s != state);
                    vec![Answer::accept(&["Welcome"])]
                }
                _ => vec![Answer::reject(&["Login failed"])],
            }
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Requests the server refused to answer, and why. Empty in a passing test.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// Waits until `n` requests have arrived (valid or not), or `within` has passed.
    pub fn wait_received(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut guard = self.lock();
        while guard.received < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .shared
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Drop for FakeRadius {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking recv.
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(&[], self.addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: UdpSocket,
    secret: Vec<u8>,
    mut handler: Handler,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let raw = buf[..n].to_vec();
        let mut guard = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.received += 1;
        let number = guard.received;
        let checked = check_request(&raw, &secret, number);
        let seen = match checked {
            Ok(seen) => {
                guard.seen.push(seen.clone());
                seen
            }
            Err(problem) => {
                guard.problems.push(problem);
                shared.1.notify_all();
                continue;
            }
        };
        drop(guard);
        let answers = handler(&seen);
        for answer in answers {
            let reply = encode_reply(&answer, &raw, &secret);
            let _ = socket.send_to(&reply, peer);
        }
        shared.1.notify_all();
    }
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret).expect("hmac key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn check_request(raw: &[u8], secret: &[u8], number: usize) -> Result<Seen, String> {
    if raw.len() < 20 {
        return Err(format!("short datagram ({} bytes)", raw.len()));
    }
    if raw[0] != 1 {
        return Err(format!("code {} is not Access-Request", raw[0]));
    }
    let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    if len != raw.len() {
        return Err(format!("length field {len} but datagram {}", raw.len()));
    }
    let authenticator = &raw[4..20];
    let mut attrs = Vec::new();
    let mut at = 20;
    while at < raw.len() {
        if at + 2 > raw.len() || raw[at + 1] < 2 || at + usize::from(raw[at + 1]) > raw.len() {
            return Err("bad attribute framing".into());
        }
        let l = usize::from(raw[at + 1]);
        attrs.push((raw[at], at, raw[at + 2..at + l].to_vec()));
        at += l;
    }

    let ma: Vec<_> = attrs.iter().filter(|a| a.0 == 80).collect();
    if ma.len() != 1 || ma[0].2.len() != 16 {
        return Err("no single 16-byte Message-Authenticator".into());
    }
    let mut zeroed = raw.to_vec();
    let off = ma[0].1 + 2;
    zeroed[off..off + 16].fill(0);
    if hmac_md5(secret, &zeroed)[..] != ma[0].2[..] {
        return Err("Message-Authenticator does not verify".into());
    }

    let find = |t: u8| attrs.iter().find(|a| a.0 == t).map(|a| a.2.clone());
    let user = find(1).ok_or("no User-Name")?;
    let hidden = find(2).ok_or("no User-Password")?;
    if hidden.is_empty() || hidden.len() % 16 != 0 || hidden.len() > 128 {
        return Err(format!("User-Password length {}", hidden.len()));
    }
    // RFC 2865 §5.2, run backwards.
    let mut password = Vec::with_capacity(hidden.len());
    let mut previous = authenticator.to_vec();
    for block in hidden.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(&previous);
        let pad = md5.finalize();
        password.extend(block.iter().zip(pad.iter()).map(|(c, k)| c ^ k));
        previous = block.to_vec();
    }
    while password.last() == Some(&0) {
        password.pop();
    }

    Ok(Seen {
        number,
        raw: raw.to_vec(),
        user: String::from_utf8(user).map_err(|_| "User-Name not UTF-8")?,
        password,
        state: find(24),
        nas_identifier: find(32).map(|v| String::from_utf8_lossy(&v).into_owned()),
        attr_types: attrs.iter().map(|a| a.0).collect(),
    })
}

fn encode_reply(answer: &Answer, request: &[u8], secret: &[u8]) -> Vec<u8> {
    let id = if answer.wrong_id {
        request[1].wrapping_add(1)
    } else {
        request[1]
    };
    let mut p = vec![answer.code, id, 0, 0];
    p.extend_from_slice(&request[4..20]);
    if !answer.no_message_authenticator {
        p.extend_from_slice(&[80, 18]);
        p.extend_from_slice(&[0; 16]);
    }
    for m in &answer.messages {
        p.push(18);
        p.push((m.len() + 2) as u8);
        p.extend_from_slice(m.as_bytes());
    }
    if let Some(state) = &answer.state {
        p.push(24);
        p.push((state.len() + 2) as u8);
        p.extend_from_slice(state);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if !answer.no_message_authenticator {
        // RFC 2869 §5.14: over the reply with the Request Authenticator in place.
        let mut ma = hmac_md5(secret, &p);
        if answer.bad_message_authenticator {
            ma[0] ^= 0xff;
        }
        p[22..38].copy_from_slice(&ma);
    }
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret);
    let mut response_auth: [u8; 16] = md5.finalize().into();
    if answer.bad_response_authenticator {
        response_auth[15] ^= 0x01;
    }
    p[4..20].copy_from_slice(&response_auth);
    p
}

/// A server that never answers: a bound socket nobody reads, so what was sent to it can
/// be counted and compared afterwards.
pub struct DeadServer {
    socket: UdpSocket,
}

impl DeadServer {
    pub fn bind() -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").expect("bind dead server"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    /// Every datagram received so far.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        self.socket.set_nonblocking(true).expect("nonblocking");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// An address on which nothing listens (the port was bound, then released).
    pub fn closed_port() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("local addr")
    }
}
