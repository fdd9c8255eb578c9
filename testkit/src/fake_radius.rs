//! An in-process RADIUS server for tests, on the `radius_wire` primitives (which have their
//! own known-answer tests): it verifies every request's Message-Authenticator, decodes the
//! hidden User-Password, records what it saw, and answers with proper authenticators
//! (or deliberately broken ones).
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use radius_wire::{attr, code, Writer, HEADER_LEN};

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

fn check_request(raw: &[u8], secret: &[u8], number: usize) -> Result<Seen, String> {
    if raw.len() < HEADER_LEN {
        return Err(format!("short datagram ({} bytes)", raw.len()));
    }
    if raw[0] != code::ACCESS_REQUEST {
        return Err(format!("code {} is not Access-Request", raw[0]));
    }
    let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    if len != raw.len() {
        return Err(format!("length field {len} but datagram {}", raw.len()));
    }
    let authenticator = radius_wire::authenticator(raw).ok_or("short header")?;
    let attrs =
        radius_wire::parse_attributes(raw).map_err(|_| "bad attribute framing".to_string())?;

    let ma = match radius_wire::find_message_authenticator(&attrs) {
        Ok(Some(offset)) => offset,
        _ => return Err("no single 16-byte Message-Authenticator".into()),
    };
    if !radius_wire::verify_message_authenticator(raw, ma, secret) {
        return Err("Message-Authenticator does not verify".into());
    }

    let find = |t: u8| attrs.iter().find(|a| a.typ == t).map(|a| a.value.to_vec());
    let user = find(attr::USER_NAME).ok_or("no User-Name")?;
    let hidden = find(attr::USER_PASSWORD).ok_or("no User-Password")?;
    let password = radius_wire::unhide_password(&hidden, secret, &authenticator)
        .map_err(|_| format!("User-Password length {}", hidden.len()))?;

    Ok(Seen {
        number,
        raw: raw.to_vec(),
        user: String::from_utf8(user).map_err(|_| "User-Name not UTF-8")?,
        password: password.to_vec(),
        state: find(attr::STATE),
        nas_identifier: find(attr::NAS_IDENTIFIER)
            .map(|v| String::from_utf8_lossy(&v).into_owned()),
        attr_types: attrs.iter().map(|a| a.typ).collect(),
    })
}

fn encode_reply(answer: &Answer, request: &[u8], secret: &[u8]) -> Vec<u8> {
    let id = if answer.wrong_id {
        request[1].wrapping_add(1)
    } else {
        request[1]
    };
    let request_auth = radius_wire::authenticator(request).expect("a checked request");
    let mut w = Writer::new(answer.code, id, &request_auth);
    if !answer.no_message_authenticator {
        w.push_message_authenticator();
    }
    for m in &answer.messages {
        w.push(attr::REPLY_MESSAGE, m.as_bytes())
            .expect("message fits");
    }
    if let Some(state) = &answer.state {
        w.push(attr::STATE, state).expect("state fits");
    }
    let mut p = w.finish_reply(secret).expect("reply fits");
    if answer.bad_message_authenticator && !answer.no_message_authenticator {
        // Wrong, under a Response Authenticator that is right for it.
        p[22] ^= 0xff;
        radius_wire::sign_response(&mut p, &request_auth, secret);
    }
    if answer.bad_response_authenticator {
        p[19] ^= 0x01;
    }
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
