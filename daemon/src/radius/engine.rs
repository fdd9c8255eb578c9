//! What happens to one datagram, without the socket: checks, duplicate detection, the
//! handler call, the challenge State and the reply bytes. The receive loop in `server.rs`
//! only moves bytes and timers around this. Times come in as `now` where the caller has
//! one, and otherwise from [`clock::instant`] (tokio's clock, which tests pause).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::clients::{Client, ClientTable};
use super::dedup::{DedupKey, ReplyCache, Seen};
use super::error::RadiusError;
use super::events::{DropReason, InputKind, Outcome, RadiusEvent, RadiusLog};
use super::ratelimit::DropLimiter;
use super::state::StateStore;
use super::stats::{bump, Counters, RadiusStatsHandle, Tables};
use super::wire::{self, attr, code};
use super::{lock, AccessHandler, AccessInput, AccessRequest, ClientInfo, Decision, RadiusConfig};
use crate::clock;

/// Total size of cached replies. Typical replies are under 100 octets; only a client that
/// holds the secret can make them large (by sending Proxy-State).
const REPLY_CACHE_MAX_BYTES: usize = 8 << 20;

/// What the receive loop should do with a datagram.
pub(crate) enum Inbound {
    /// Nothing: dropped (already counted and, rate-limited, logged).
    Dropped(#[cfg_attr(not(test), allow(dead_code))] DropReason),
    /// Send these bytes back at once (Status-Server answer or a cached reply).
    Send(Arc<[u8]>),
    /// A new request: evaluate it off the receive loop.
    Work(Box<Job>),
}

/// A request that passed every check and holds its in-flight slot.
pub(crate) struct Job {
    ticket: Ticket,
    client: Arc<Client>,
    src: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
    proxy_states: Vec<Vec<u8>>,
    /// The user name as it arrived, for the audit line.
    audit_user: Vec<u8>,
    nas_identifier: Option<String>,
    input: InputKind,
    work: Work,
}

/// Who decides a [`Job`]: the handler, or this layer already.
enum Work {
    Ask(AccessRequest),
    /// Decided by this layer (bad State, missing attributes): the handler is not asked.
    Decided(Decision),
}

/// The computed reply of a [`Job`]; `complete` records it in the duplicate cache.
pub(crate) struct Reply {
    pub bytes: Option<Arc<[u8]>>,
    /// Time to hold the reply back (the reject delay), zero otherwise.
    pub delay: Duration,
    ticket: Ticket,
}

impl Reply {
    pub(crate) fn complete(self, now: Instant) {
        self.ticket.finish(self.bytes, now);
    }
}

/// A request's place in the duplicate cache and its in-flight slot. Dropped without
/// `finish` (the task died), it forgets the request so a retransmission is evaluated.
struct Ticket {
    key: DedupKey,
    cache: Arc<Mutex<ReplyCache>>,
    _permit: OwnedSemaphorePermit,
    finished: bool,
}

impl Ticket {
    fn finish(mut self, reply: Option<Arc<[u8]>>, now: Instant) {
        lock(&self.cache).finish(self.key, reply, now);
        self.finished = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.cache).abandon(&self.key);
        }
    }
}

/// The packet path of the RADIUS layer: owns the client table, the duplicate cache, the
/// challenge States, the drop-line limiter, the in-flight bound and the counters, and asks
/// the handler for each new request's [`Decision`].
pub(crate) struct Engine<H> {
    handler: Arc<H>,
    log: Arc<dyn RadiusLog>,
    clients: ClientTable,
    reject_delay: Duration,
    pub(crate) drop_log_interval: Duration,
    cache: Arc<Mutex<ReplyCache>>,
    states: Arc<Mutex<StateStore>>,
    /// The wall clock of the States' expiry.
    wall: crate::clock::Clock,
    drops: DropLimiter,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) max_in_flight: u32,
    pub(crate) counters: Arc<Counters>,
}

/// The fields of an Access-Request, read before any state is touched.
struct Examined {
    user: Result<String, &'static str>,
    audit_user: Vec<u8>,
    password: Option<Zeroizing<Vec<u8>>>,
    /// What stood in place of a User-Password when there was none.
    other_credential: Option<InputKind>,
    state: Option<Vec<u8>>,
    nas_identifier: Option<String>,
    calling_station_id: Option<String>,
}

impl<H: AccessHandler> Engine<H> {
    pub(crate) fn new(
        cfg: &RadiusConfig,
        handler: Arc<H>,
        log: Arc<dyn RadiusLog>,
    ) -> Result<Self, RadiusError> {
        let clients = ClientTable::new(&cfg.clients, cfg.require_message_authenticator)?;
        let max_in_flight = u32::try_from(cfg.max_in_flight)
            .ok()
            .filter(|n| *n >= 1 && cfg.max_in_flight <= Semaphore::MAX_PERMITS)
            .ok_or(RadiusError::Config(
                "max_in_flight must be between 1 and 4294967295",
            ))?;
        if cfg.drop_log_interval.is_zero() {
            return Err(RadiusError::Config("drop_log_interval must not be zero"));
        }
        let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
        let counters = Arc::new(Counters::new(Arc::clone(&permits), max_in_flight));
        Ok(Engine {
            handler,
            log,
            clients,
            reject_delay: cfg.reject_delay,
            drop_log_interval: cfg.drop_log_interval,
            cache: Arc::new(Mutex::new(ReplyCache::new(
                cfg.reply_cache_ttl,
                cfg.reply_cache_capacity,
                REPLY_CACHE_MAX_BYTES,
            ))),
            states: Arc::new(Mutex::new(StateStore::new(
                Arc::clone(&cfg.state_key),
                cfg.state_ttl,
                cfg.state_capacity,
            ))),
            wall: cfg.wall.clone(),
            drops: DropLimiter::new(cfg.drop_log_interval),
            permits,
            max_in_flight,
            counters,
        })
    }

    /// Everything that can be decided at once about a datagram from `src`.
    pub(crate) fn inbound(&self, datagram: &[u8], src: SocketAddr, now: Instant) -> Inbound {
        let Some(client) = self.clients.lookup(src.ip()) else {
            bump(&self.counters.received);
            return self.drop_packet(DropReason::UnknownClient, None, src, now);
        };
        let client = Arc::clone(client);
        self.inbound_from(&client, datagram, src, now)
    }

    /// A packet from `client`, already identified (by its address, or by its TLS
    /// certificate and address).
    pub(crate) fn inbound_from(
        &self,
        client: &Arc<Client>,
        datagram: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> Inbound {
        bump(&self.counters.received);
        let name = Some(&client.name);
        let Ok(req) = wire::parse(datagram) else {
            return self.drop_packet(DropReason::Malformed, name, src, now);
        };
        if req.code != code::ACCESS_REQUEST && req.code != code::STATUS_SERVER {
            return self.drop_packet(DropReason::UnsupportedCode, name, src, now);
        }
        match req.ma_offset {
            Some(offset)
                if !wire::verify_message_authenticator(req.bytes, offset, &client.secret) =>
            {
                return self.drop_packet(DropReason::BadMessageAuthenticator, name, src, now);
            }
            Some(_) => {}
            // RFC 5997 §3: Status-Server always needs one.
            None if req.code == code::STATUS_SERVER || client.require_message_authenticator => {
                return self.drop_packet(DropReason::MissingMessageAuthenticator, name, src, now);
            }
            // Proxy-State without integrity protection is what BlastRADIUS exploits (over
            // TLS the connection protects it).
            None if !client.over_tls && req.has(attr::PROXY_STATE) => {
                let reason = DropReason::ProxyStateWithoutMessageAuthenticator;
                return self.drop_packet(reason, name, src, now);
            }
            None => {}
        }
        let proxy_states: Vec<Vec<u8>> = req
            .all(attr::PROXY_STATE)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();

        if req.code == code::STATUS_SERVER {
            // Stateless and cheap: answered every time, not cached.
            bump(&self.counters.status_server);
            return match wire::encode_reply(
                code::ACCESS_ACCEPT,
                req.identifier,
                &req.authenticator,
                &client.secret,
                &[],
                None,
                &proxy_states,
            ) {
                Ok(bytes) => Inbound::Send(bytes.into()),
                Err(_) => self.drop_packet(DropReason::ReplyTooLarge, name, src, now),
            };
        }

        let Ok(examined) = examine(&req, &client.secret) else {
            return self.drop_packet(DropReason::Malformed, name, src, now);
        };

        let key = DedupKey {
            src,
            identifier: req.identifier,
            authenticator: req.authenticator,
        };
        let permit = {
            let mut cache = lock(&self.cache);
            match cache.seen(&key, now) {
                Seen::New => match Arc::clone(&self.permits).try_acquire_owned() {
                    Ok(permit) => {
                        cache.start(key);
                        Ok(permit)
                    }
                    Err(_) => Err(DropReason::Overloaded),
                },
                Seen::InProgress => Err(DropReason::DuplicateInProgress),
                Seen::Done(Some(bytes)) => {
                    drop(cache);
                    bump(&self.counters.resent);
                    return Inbound::Send(bytes);
                }
                Seen::Done(None) => Err(DropReason::ReplyTooLarge),
            }
        };
        let permit = match permit {
            Ok(permit) => permit,
            Err(reason) => return self.drop_packet(reason, name, src, now),
        };
        let ticket = Ticket {
            key,
            cache: Arc::clone(&self.cache),
            _permit: permit,
            finished: false,
        };

        let Examined {
            user,
            audit_user,
            password,
            other_credential,
            state,
            nas_identifier,
            calling_station_id,
        } = examined;
        let input = match (&password, other_credential, &state) {
            (None, Some(other), _) => other,
            (None, None, _) => InputKind::Nothing,
            (Some(_), _, Some(_)) => InputKind::ChallengeResponse,
            (Some(_), _, None) => InputKind::Password,
        };
        let work = match self.resolve(user, password, state, client, now) {
            Ok((user_name, input)) => Work::Ask(AccessRequest {
                user_name,
                input,
                client: ClientInfo {
                    name: client.name.to_string(),
                    addr: src,
                },
                nas_identifier: nas_identifier.clone(),
                calling_station_id,
            }),
            Err(reason) => Work::Decided(Decision::Reject {
                reply_message: self.handler.refusal_message(),
                reason,
            }),
        };
        Inbound::Work(Box::new(Job {
            ticket,
            client: Arc::clone(client),
            src,
            identifier: req.identifier,
            authenticator: req.authenticator,
            proxy_states,
            audit_user,
            nas_identifier,
            input,
            work,
        }))
    }

    /// Turns the examined credentials of a new request into the user name and input for
    /// the handler, or into the reason for this layer's own Reject. Consumes the State, so
    /// only called once per request.
    fn resolve(
        &self,
        user: Result<String, &'static str>,
        password: Option<Zeroizing<Vec<u8>>>,
        state: Option<Vec<u8>>,
        client: &Client,
        now: Instant,
    ) -> Result<(String, AccessInput), &'static str> {
        let user_name = user?;
        let password = password.ok_or("no_user_password")?;
        // A wrong shared secret (without Message-Authenticator) decodes to bytes that are
        // almost never UTF-8: say so in the audit line instead of asking the handler.
        let text = std::str::from_utf8(&password).map_err(|_| "undecodable_password")?;
        let text = Zeroizing::new(text.to_owned());
        let input = match state {
            None => AccessInput::Password(text),
            Some(state) => {
                let now_ms = self.wall.ms_at(now);
                let taken = lock(&self.states).take(&state, &user_name, &client.name, now, now_ms);
                let state = taken.map_err(|_| "bad_state")?;
                AccessInput::ChallengeResponse { otp: text, state }
            }
        };
        Ok((user_name, input))
    }

    /// Asks the handler (if needed), writes the audit line and encodes the reply.
    pub(crate) async fn evaluate(&self, job: Box<Job>) -> Reply {
        let Job {
            ticket,
            client,
            src,
            identifier,
            authenticator,
            proxy_states,
            audit_user,
            nas_identifier,
            input,
            work,
        } = *job;
        let start = clock::instant();
        let decision = match work {
            Work::Ask(req) => self.handler.decide(req).await,
            Work::Decided(decision) => decision,
        };
        let (reply_code, outcome, reason, message, state) = match decision {
            Decision::Accept { reply_message } => (
                code::ACCESS_ACCEPT,
                Outcome::Accept,
                None,
                reply_message,
                None,
            ),
            Decision::Reject {
                reply_message,
                reason,
            } => (
                code::ACCESS_REJECT,
                Outcome::Reject,
                Some(reason),
                reply_message,
                None,
            ),
            Decision::NeedOtp { reply_message } => {
                // Only a valid UTF-8 name reaches the handler, so this is the name itself.
                let name = String::from_utf8_lossy(&audit_user);
                let now = clock::instant();
                let now_ms = self.wall.ms_at(now);
                let state = lock(&self.states).issue(&name, &client.name, now, now_ms);
                (
                    code::ACCESS_CHALLENGE,
                    Outcome::Challenge,
                    None,
                    Some(reply_message),
                    Some(state),
                )
            }
        };
        bump(match outcome {
            Outcome::Accept => &self.counters.accepted,
            Outcome::Reject => &self.counters.rejected,
            Outcome::Challenge => &self.counters.challenged,
        });
        self.log.event(&RadiusEvent::Decision {
            user: audit_user,
            client: client.name.to_string(),
            src,
            nas_identifier,
            input,
            outcome,
            reason,
        });
        let attrs: Vec<(u8, &[u8])> = state.iter().map(|s| (attr::STATE, &s[..])).collect();
        let bytes = match wire::encode_reply(
            reply_code,
            identifier,
            &authenticator,
            &client.secret,
            &attrs,
            message.as_deref(),
            &proxy_states,
        ) {
            Ok(bytes) => Some(Arc::from(bytes)),
            Err(_) => {
                self.drop_packet(
                    DropReason::ReplyTooLarge,
                    Some(&client.name),
                    src,
                    clock::instant(),
                );
                None
            }
        };
        crate::metrics::get().observe("radius", start.elapsed());
        let delay = if reply_code == code::ACCESS_REJECT {
            self.reject_delay
        } else {
            Duration::ZERO
        };
        Reply {
            bytes,
            delay,
            ticket,
        }
    }

    fn drop_packet(
        &self,
        reason: DropReason,
        client: Option<&Arc<str>>,
        src: SocketAddr,
        now: Instant,
    ) -> Inbound {
        bump(&self.counters.dropped[reason.index()]);
        crate::metrics::get()
            .radius_dropped
            .get_or_create(&crate::metrics::DropLabels {
                reason: reason.as_str(),
                client: client.map_or_else(|| "-".to_string(), |c| c.to_string()),
            })
            .inc();
        let line = self.drops.note(reason, client, src, now);
        if let Some(line) = line {
            self.log.event(&line);
        }
        Inbound::Dropped(reason)
    }

    /// Reads the counters, and the duplicate cache's and State table's sizes, at any time.
    pub(crate) fn stats_handle(&self) -> RadiusStatsHandle {
        let tables = Tables {
            cache: Arc::clone(&self.cache),
            states: Arc::clone(&self.states),
        };
        RadiusStatsHandle::new(Arc::clone(&self.counters), tables)
    }

    /// A line about a RADIUS-over-TLS connection.
    pub(crate) fn log_line(&self, message: &str) {
        self.log.event(&RadiusEvent::Tls {
            message: message.to_string(),
        });
    }

    /// Logs the counts of drops that were suppressed in windows now over.
    pub(crate) fn flush_drop_log(&self, now: Instant) {
        let lines = self.drops.flush(now);
        for line in &lines {
            self.log.event(line);
        }
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> super::RadiusStats {
        self.counters.snapshot()
    }

    /// Evaluates `job`, holds a reject back for the reject delay, and hands back the reply
    /// to send (none when it was decided to send nothing). The request stays "in progress"
    /// during the delay: a retransmission meanwhile is dropped rather than answered early.
    pub(crate) async fn answer(&self, job: Box<Job>) -> Option<Arc<[u8]>> {
        let reply = self.evaluate(job).await;
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        let bytes = reply.bytes.clone();
        reply.complete(clock::instant());
        bytes
    }

    /// The whole path for one datagram without socket or delay (tests and fuzzing).
    pub(crate) async fn process(&self, datagram: &[u8], src: SocketAddr) -> Option<Arc<[u8]>> {
        match self.inbound(datagram, src, clock::instant()) {
            Inbound::Dropped(_) => None,
            Inbound::Send(bytes) => Some(bytes),
            Inbound::Work(job) => {
                let reply = self.evaluate(job).await;
                let bytes = reply.bytes.clone();
                reply.complete(clock::instant());
                bytes
            }
        }
    }
}

/// The packet path without a socket, for fuzzing: client lookup, the wire checks, the
/// duplicate cache, challenge States, the handler and the reply encoding, exactly as the
/// server runs them, minus the reject delay.
pub struct PacketPath<H>(Engine<H>);

impl<H: AccessHandler> PacketPath<H> {
    pub fn new(
        cfg: &RadiusConfig,
        handler: Arc<H>,
        log: Arc<dyn RadiusLog>,
    ) -> Result<Self, RadiusError> {
        Engine::new(cfg, handler, log).map(PacketPath)
    }

    /// One datagram from `src`: the reply to send back, or `None` when it is dropped.
    pub async fn process(&self, datagram: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        self.0.process(datagram, src).await.map(|b| b.to_vec())
    }
}

/// Reads the Access-Request's attributes. `Err`: malformed (drop).
fn examine(req: &wire::Request<'_>, secret: &[u8]) -> Result<Examined, &'static str> {
    // RFC 2865 §5.1: at most one User-Name; which one would the audit line name?
    let (user, audit_user) = match req.all(attr::USER_NAME).as_slice() {
        [] => (Err("no_user_name"), Vec::new()),
        [raw] => match std::str::from_utf8(raw) {
            Ok("") => (Err("no_user_name"), raw.to_vec()),
            Ok(name) => (Ok(name.to_owned()), raw.to_vec()),
            Err(_) => (Err("bad_user_name"), raw.to_vec()),
        },
        _ => return Err("more than one User-Name"),
    };
    // RFC 2865 §4.1: User-Password or CHAP-Password, never both; and PAP is not EAP.
    if req.has(attr::USER_PASSWORD) && (req.has(attr::CHAP_PASSWORD) || req.has(attr::EAP_MESSAGE))
    {
        return Err("User-Password together with CHAP-Password or EAP-Message");
    }
    let password = match req.all(attr::USER_PASSWORD).as_slice() {
        [] => None,
        [one] => Some(wire::decode_pap(one, secret, &req.authenticator)?),
        _ => return Err("more than one User-Password"),
    };
    let other_credential = if req.has(attr::CHAP_PASSWORD) {
        Some(InputKind::Chap)
    } else if req.has(attr::EAP_MESSAGE) {
        Some(InputKind::Eap)
    } else {
        None
    };
    let state = match req.all(attr::STATE).as_slice() {
        [] => None,
        [one] => Some(one.to_vec()),
        _ => return Err("more than one State"),
    };
    let nas_identifier = req
        .first(attr::NAS_IDENTIFIER)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let calling_station_id = req
        .first(attr::CALLING_STATION_ID)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Ok(Examined {
        user,
        audit_user,
        password,
        other_credential,
        state,
        nas_identifier,
        calling_station_id,
    })
}
