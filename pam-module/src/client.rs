//! A small blocking RADIUS client over UDP: one Access-Request at a time, retransmitted
//! byte for byte on timeout, then failed over to the next server.
//!
//! Worst case for one exchange: `timeout × (retries + 1) × servers`; each attempt's deadline
//! is fixed when the packet leaves, so a stream of forged replies cannot stretch it.

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::handler::Priority;
use crate::packet::{self, EncodeError, Reply, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// No server gave a valid answer in time.
    Unavailable,
    /// The request itself cannot be put on the wire.
    Encode(EncodeError),
    /// The operating system's random source failed; no safe authenticator can be made.
    NoRandomness,
}

/// Sends one request and returns the first verified reply. `log` receives the details
/// worth a syslog line; it never sees a password, an OTP or the secret.
pub trait Transport {
    fn exchange(
        &mut self,
        req: &Request<'_>,
        log: &mut dyn FnMut(Priority, &str),
    ) -> Result<Reply, ExchangeError>;
}

pub struct UdpClient {
    servers: Vec<String>,
    secret: Zeroizing<Vec<u8>>,
    timeout: Duration,
    retries: u32,
    /// Index of the server that answered last. A State attribute only means something
    /// to the server that issued it, so a challenge answer goes there and nowhere else.
    last_answered: Option<usize>,
}

impl UdpClient {
    pub fn new(
        servers: Vec<String>,
        secret: Zeroizing<Vec<u8>>,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        Self {
            servers,
            secret,
            timeout,
            retries,
            last_answered: None,
        }
    }

    fn try_server(
        &self,
        server: &str,
        req: &Request<'_>,
        log: &mut dyn FnMut(Priority, &str),
    ) -> Result<Option<Reply>, ExchangeError> {
        let addr = match resolve(server) {
            Ok(addr) => addr,
            Err(e) => {
                log(Priority::Warning, &format!("server {server}: {e}"));
                return Ok(None);
            }
        };
        let socket = match connect(addr) {
            Ok(socket) => socket,
            Err(e) => {
                log(Priority::Warning, &format!("server {server}: socket: {e}"));
                return Ok(None);
            }
        };

        // 16 bytes of Request Authenticator and one of identifier, from the OS CSPRNG.
        let mut random = [0u8; 17];
        OsRng
            .try_fill_bytes(&mut random)
            .map_err(|_| ExchangeError::NoRandomness)?;
        let id = random[16];
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&random[..16]);
        let packet = packet::encode_request(req, id, &authenticator, &self.secret)
            .map_err(ExchangeError::Encode)?;

        let mut buf = [0u8; radius_wire::MAX_PACKET_LEN];
        for attempt in 1..=self.retries + 1 {
            log(
                Priority::Debug,
                &format!("server {server}: sending Access-Request id {id}, attempt {attempt}"),
            );
            if let Err(e) = socket.send(&packet) {
                log(Priority::Warning, &format!("server {server}: send: {e}"));
                return Ok(None);
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if let Err(e) = socket.set_read_timeout(Some(deadline - now)) {
                    log(Priority::Warning, &format!("server {server}: {e}"));
                    return Ok(None);
                }
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        match packet::verify_reply(&buf[..n], id, &authenticator, &self.secret) {
                            Ok(reply) => return Ok(Some(reply)),
                            Err(e) => log(
                                Priority::Warning,
                                &format!("server {server}: reply ignored: {e}"),
                            ),
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        // ECONNREFUSED: nothing listens there; no point waiting out the timeouts.
                        log(Priority::Warning, &format!("server {server}: {e}"));
                        return Ok(None);
                    }
                }
            }
            log(
                Priority::Debug,
                &format!("server {server}: no answer within {:?}", self.timeout),
            );
        }
        Ok(None)
    }
}

impl Transport for UdpClient {
    fn exchange(
        &mut self,
        req: &Request<'_>,
        log: &mut dyn FnMut(Priority, &str),
    ) -> Result<Reply, ExchangeError> {
        let order: Vec<usize> = match (req.state, self.last_answered) {
            (Some(_), Some(last)) => vec![last],
            _ => (0..self.servers.len()).collect(),
        };
        for index in order {
            let Some(server) = self.servers.get(index) else {
                continue;
            };
            if let Some(reply) = self.try_server(server, req, log)? {
                log(
                    Priority::Debug,
                    &format!("server {server}: answered {}", reply.kind),
                );
                self.last_answered = Some(index);
                return Ok(reply);
            }
            log(
                Priority::Warning,
                &format!("server {server} did not answer; trying the next one if any"),
            );
        }
        Err(ExchangeError::Unavailable)
    }
}

fn resolve(server: &str) -> std::io::Result<SocketAddr> {
    server
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "the name resolves to no address"))
}

/// A socket connected to the server, so the kernel drops datagrams from anyone else
/// and reports ICMP port-unreachable as ECONNREFUSED.
fn connect(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ReplyKind;
    use otpd_testkit::fake_radius::{Answer, DeadServer, FakeRadius, Seen};

    const SECRET: &[u8] = b"unit-test shared secret";

    fn client(servers: Vec<String>, timeout_ms: u64, retries: u32) -> UdpClient {
        UdpClient::new(
            servers,
            Zeroizing::new(SECRET.to_vec()),
            Duration::from_millis(timeout_ms),
            retries,
        )
    }

    fn alice<'a>(password: &'a [u8], state: Option<&'a [u8]>) -> Request<'a> {
        Request {
            user: "alice",
            password,
            state,
            nas_identifier: Some("unit"),
        }
    }

    #[test]
    fn accept_after_the_server_checked_authenticator_and_password() {
        let server = FakeRadius::start(SECRET, |seen: &Seen| {
            if seen.password == b"right" {
                vec![Answer::accept(&["Welcome"])]
            } else {
                vec![Answer::reject(&["Wrong"])]
            }
        });
        let mut c = client(vec![server.addr().to_string()], 2000, 0);
        let mut lines = Vec::new();
        let reply = c
            .exchange(&alice(b"right", None), &mut |p, m| {
                lines.push((p, m.to_string()))
            })
            .expect("answered");
        assert_eq!(reply.kind, ReplyKind::Accept);
        assert_eq!(reply.messages, ["Welcome"]);
        let reply = c
            .exchange(&alice(b"wrong", None), &mut |_, _| {})
            .expect("answered");
        assert_eq!(reply.kind, ReplyKind::Reject);
        assert_eq!(reply.messages, ["Wrong"]);

        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].user, "alice");
        assert_eq!(
            seen[0].attr_types[0],
            radius_wire::attr::MESSAGE_AUTHENTICATOR
        );
        assert_eq!(seen[0].nas_identifier.as_deref(), Some("unit"));
        assert_eq!(seen[0].state, None);
        assert!(server.problems().is_empty(), "{:?}", server.problems());
        assert!(lines.iter().all(|(_, l)| !l.contains("right")), "{lines:?}");
    }

    #[test]
    fn challenge_round_trip_carries_the_state() {
        let server = FakeRadius::otpd_like(SECRET);
        let mut c = client(vec![server.addr().to_string()], 2000, 0);
        let first = c
            .exchange(&alice(b"correct horse", None), &mut |_, _| {})
            .expect("answered");
        assert_eq!(first.kind, ReplyKind::Challenge);
        assert_eq!(first.messages, ["Enter your one-time password: "]);
        let state = first.state.expect("state");
        let second = c
            .exchange(&alice(b"123456", Some(&state)), &mut |_, _| {})
            .expect("answered");
        assert_eq!(second.kind, ReplyKind::Accept);
        let seen = server.seen();
        assert_eq!(seen[1].state.as_deref(), Some(&state[..]));
        assert_eq!(seen[1].password, b"123456");
        assert!(server.problems().is_empty(), "{:?}", server.problems());
    }

    #[test]
    fn forged_replies_are_ignored_until_the_timeout() {
        let server = FakeRadius::start(SECRET, |_: &Seen| {
            vec![
                Answer::accept(&[]).with_bad_response_authenticator(),
                Answer::accept(&[]).with_bad_message_authenticator(),
                Answer::accept(&[]).with_wrong_id(),
                Answer::accept(&[]).without_message_authenticator(),
            ]
        });
        let mut c = client(vec![server.addr().to_string()], 1000, 0);
        let mut lines = Vec::new();
        let started = Instant::now();
        let result = c.exchange(&alice(b"right", None), &mut |p, m| {
            lines.push((p, m.to_string()))
        });
        let elapsed = started.elapsed();
        assert_eq!(result, Err(ExchangeError::Unavailable));
        assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
        let ignored: Vec<_> = lines
            .iter()
            .filter(|(_, l)| l.contains("reply ignored"))
            .collect();
        assert_eq!(ignored.len(), 4, "{lines:?}");
        assert!(ignored[0].1.contains("Response Authenticator"));
        assert!(ignored[1].1.contains("bad Message-Authenticator"));
        assert!(ignored[2].1.contains("identifier"));
        assert!(ignored[3].1.contains("no Message-Authenticator"));
    }

    #[test]
    fn a_forged_reply_does_not_hide_the_real_one() {
        let server = FakeRadius::start(SECRET, |_: &Seen| {
            vec![
                Answer::reject(&[]).with_bad_response_authenticator(),
                Answer::accept(&[]),
            ]
        });
        let mut c = client(vec![server.addr().to_string()], 2000, 0);
        let reply = c
            .exchange(&alice(b"x", None), &mut |_, _| {})
            .expect("answered");
        assert_eq!(reply.kind, ReplyKind::Accept);
    }

    #[test]
    fn retransmissions_repeat_the_same_bytes() {
        let server = FakeRadius::start(SECRET, |seen: &Seen| {
            if seen.number < 3 {
                vec![]
            } else {
                vec![Answer::accept(&[])]
            }
        });
        let mut c = client(vec![server.addr().to_string()], 200, 2);
        let reply = c
            .exchange(&alice(b"pw", None), &mut |_, _| {})
            .expect("answered on the third try");
        assert_eq!(reply.kind, ReplyKind::Accept);
        let seen = server.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].raw, seen[1].raw);
        assert_eq!(seen[1].raw, seen[2].raw);
        assert!(server.problems().is_empty(), "{:?}", server.problems());
    }

    #[test]
    fn silent_first_server_fails_over_to_the_second() {
        let dead = DeadServer::bind();
        let live = FakeRadius::otpd_like(SECRET);
        let mut c = client(
            vec![dead.addr().to_string(), live.addr().to_string()],
            200,
            1,
        );
        let started = Instant::now();
        let reply = c
            .exchange(&alice(b"correct horse123456", None), &mut |_, _| {})
            .expect("second server answers");
        let elapsed = started.elapsed();
        assert_eq!(reply.kind, ReplyKind::Accept);
        // The dead one got the first try and one retransmission, identical.
        let got = dead.drain();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], got[1]);
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
        assert_eq!(live.seen().len(), 1);
    }

    #[test]
    fn closed_port_fails_over_without_waiting() {
        let closed = DeadServer::closed_port();
        let live = FakeRadius::otpd_like(SECRET);
        let mut c = client(vec![closed.to_string(), live.addr().to_string()], 1500, 2);
        let started = Instant::now();
        let reply = c
            .exchange(&alice(b"correct horse123456", None), &mut |_, _| {})
            .expect("second server answers");
        assert_eq!(reply.kind, ReplyKind::Accept);
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn no_server_is_unavailable_within_the_bound() {
        let (a, b) = (DeadServer::bind(), DeadServer::bind());
        let (timeout_ms, retries) = (150, 2);
        let mut c = client(
            vec![a.addr().to_string(), b.addr().to_string()],
            timeout_ms,
            retries,
        );
        let bound = Duration::from_millis(timeout_ms * u64::from(retries + 1) * 2);
        let started = Instant::now();
        let result = c.exchange(&alice(b"pw", None), &mut |_, _| {});
        let elapsed = started.elapsed();
        assert_eq!(result, Err(ExchangeError::Unavailable));
        eprintln!("no server: {elapsed:?} for a bound of {bound:?}");
        assert!(elapsed >= bound, "{elapsed:?} < {bound:?}");
        assert!(elapsed < bound + Duration::from_millis(1000), "{elapsed:?}");
        for dead in [a, b] {
            let got = dead.drain();
            assert_eq!(got.len(), 3);
            assert!(got.iter().all(|p| *p == got[0]));
        }
    }

    #[test]
    fn challenge_answer_goes_only_to_the_server_that_issued_the_state() {
        let first = FakeRadius::otpd_like(SECRET);
        let second = FakeRadius::otpd_like(SECRET);
        let mut c = client(
            vec![first.addr().to_string(), second.addr().to_string()],
            300,
            0,
        );
        let challenge = c
            .exchange(&alice(b"correct horse", None), &mut |_, _| {})
            .expect("answered");
        let state = challenge.state.expect("state");
        drop(first);
        let result = c.exchange(&alice(b"123456", Some(&state)), &mut |_, _| {});
        assert_eq!(result, Err(ExchangeError::Unavailable));
        assert!(second.seen().is_empty());
    }

    #[test]
    fn request_that_cannot_be_encoded_is_not_sent() {
        let live = FakeRadius::otpd_like(SECRET);
        let mut c = client(vec![live.addr().to_string()], 300, 0);
        let long = [b'p'; 129];
        let result = c.exchange(&alice(&long, None), &mut |_, _| {});
        assert_eq!(
            result,
            Err(ExchangeError::Encode(EncodeError::PasswordTooLong))
        );
        assert!(live.seen().is_empty());
    }
}
