//! The RADIUS front door (RFC 2865, 2869, 5080, 5997): the UDP receive loop, client
//! lookup, Message-Authenticator checks, PAP decoding, the challenge `State` store, the
//! duplicate-reply cache, the reject delay and the reply encoding.
//!
//! It owns no login decision: every Access-Request that passes the wire checks is handed to
//! an [`AccessHandler`], which answers with a [`Decision`]. Audit and drop lines go out
//! through a [`RadiusLog`] hook, so the daemon chooses where they are written.
//!
//! ```no_run
//! use std::sync::Arc;
//! use otpd::radius::{AccessHandler, AccessRequest, Decision, RadiusConfig, RadiusError};
//! use otpd::radius::{RadiusEvent, RadiusServer};
//!
//! struct Handler;
//!
//! impl AccessHandler for Handler {
//!     async fn decide(&self, _req: AccessRequest) -> Decision {
//!         Decision::Reject { reply_message: None, reason: "not_implemented" }
//!     }
//! }
//!
//! async fn front_door(cfg: RadiusConfig) -> Result<(), RadiusError> {
//!     let log = Arc::new(|e: &RadiusEvent| eprintln!("{e}"));
//!     let server = RadiusServer::bind(cfg, Arc::new(Handler), log).await?;
//!     server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! }
//! ```

// Dependencies go one way: `server` (and `tls`) → `engine` → `clients`, `dedup`, `state`,
// `stats`, `ratelimit`, `events`, `wire`; `error` is shared; nothing depends on `server`.
mod clients;
mod dedup;
mod engine;
mod error;
mod events;
mod ratelimit;
mod server;
mod state;
mod stats;
pub mod tls;
mod wire;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use zeroize::Zeroizing;

pub use clients::{check_clients, parse_client_network, ClientFinding};
pub use engine::PacketPath;
pub use error::RadiusError;
pub use events::{DropReason, InputKind, Outcome, RadiusEvent, RadiusLog, Severity};
pub use server::{serve, RadiusServer};
pub use state::{StateKey, StateTicket};
pub use stats::{RadiusStats, RadiusStatsHandle, TableSizes};

/// Locks one of the layer's tables. Critical sections never panic half-way through an
/// update, so a poisoned lock still holds consistent data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The RADIUS client (NAS) a request came from, as configured and as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The configured client name (`[[radius.clients]] name`).
    pub name: String,
    /// The source address and port of the datagram.
    pub addr: SocketAddr,
}

/// What the user typed, as far as this request carries it.
pub enum AccessInput {
    /// `User-Password` as sent: the login password, or the login password followed by the OTP.
    Password(Zeroizing<String>),
    /// The answer to an Access-Challenge issued to this user through this client (by this
    /// node or another): the `User-Password` of the request is the OTP. `state` is what the
    /// handler marks used in the shared store, so the State is answered once on every node.
    ChallengeResponse {
        otp: Zeroizing<String>,
        state: StateTicket,
    },
}

impl std::fmt::Debug for AccessInput {
    // Never print the secret itself, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessInput::Password(_) => f.write_str("Password(<redacted>)"),
            AccessInput::ChallengeResponse { .. } => {
                f.write_str("ChallengeResponse { otp: <redacted> }")
            }
        }
    }
}

/// One authentication question for the [`AccessHandler`].
#[derive(Debug)]
pub struct AccessRequest {
    /// `User-Name`, as sent (valid UTF-8, not empty).
    pub user_name: String,
    pub input: AccessInput,
    pub client: ClientInfo,
    /// `NAS-Identifier`, if the client sent one (informational).
    pub nas_identifier: Option<String>,
    /// `Calling-Station-Id`, if the client sent one: who is behind the gateway.
    pub calling_station_id: Option<String>,
}

/// The handler's answer: the reply's kind and the text it carries; the State, the reject
/// delay and the encoding are the layer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Access-Accept, with an optional `Reply-Message`.
    Accept { reply_message: Option<String> },
    /// Access-Reject, sent after the configured reject delay. `reason` goes to the audit line
    /// only (snake_case, e.g. `"bad_password"`); `reply_message` goes to the client.
    Reject {
        reply_message: Option<String>,
        reason: &'static str,
    },
    /// The password is proven and an OTP is needed: the layer creates a single-use `State`
    /// bound to this user and client and sends an Access-Challenge with `reply_message`.
    NeedOtp { reply_message: String },
}

/// The login decision, implemented by the daemon on top of the core library: owns
/// everything about the user, nothing about the wire.
///
/// Called at most once per distinct request: retransmissions are answered from the cache.
/// Calls run concurrently (up to [`RadiusConfig::max_in_flight`]); a handler doing heavy
/// work (password hashing) should bound that work itself.
pub trait AccessHandler: Send + Sync + 'static {
    fn decide(&self, req: AccessRequest) -> impl Future<Output = Decision> + Send;

    /// The Reply-Message of a Reject the engine decides itself (no usable password, a State
    /// that is not ours), so that it reads like the handler's own refusals.
    fn refusal_message(&self) -> Option<String> {
        None
    }
}

/// One configured RADIUS client (NAS).
#[derive(Clone)]
pub struct RadiusClient {
    pub name: String,
    /// Source addresses this client sends from: a single IP is a /32 (or /128); see
    /// [`parse_client_network`] for the configuration syntax.
    pub network: ipnet::IpNet,
    pub secret: Zeroizing<Vec<u8>>,
    /// Overrides [`RadiusConfig::require_message_authenticator`] for this client.
    pub require_message_authenticator: Option<bool>,
}

impl std::fmt::Debug for RadiusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClient")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("secret", &"<redacted>")
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish()
    }
}

/// Everything the RADIUS layer needs. Build it with [`RadiusConfig::new`] and adjust fields;
/// the bounds have defaults that keep memory small under any flood.
#[derive(Debug, Clone)]
pub struct RadiusConfig {
    /// UDP addresses to listen on (`[radius] listen`).
    pub listen: Vec<SocketAddr>,
    /// Drop Access-Requests without a Message-Authenticator (clients may override).
    pub require_message_authenticator: bool,
    /// Time an Access-Reject is held back (`[radius] reject_delay_ms`).
    pub reject_delay: Duration,
    pub clients: Vec<RadiusClient>,
    /// How long an issued challenge `State` stays valid.
    pub state_ttl: Duration,
    /// Most challenges this node remembers issuing or taking; beyond it the oldest is
    /// forgotten (its State stays valid: the store's single-use mark still holds).
    pub state_capacity: usize,
    /// Signs the challenge States: derived from `key_file`, so every node verifies them.
    pub state_key: Arc<StateKey>,
    /// The wall clock the States' expiry is read on (nodes' clocks agree, as TOTP needs).
    pub wall: crate::clock::Clock,
    /// How long a sent reply is kept for retransmissions (RFC 5080).
    pub reply_cache_ttl: Duration,
    /// Most cached replies; beyond it the oldest is forgotten.
    pub reply_cache_capacity: usize,
    /// Most requests being worked on at once, counted until their reply has left
    /// (reject delay included); beyond it new requests are dropped.
    pub max_in_flight: usize,
    /// Window of the drop-line rate limit: one line per reason and client per window.
    pub drop_log_interval: Duration,
    /// How long [`RadiusServer::run`] waits for in-flight requests after shutdown.
    pub shutdown_grace: Duration,
    /// RADIUS over TLS (`[radius.tls]`), if configured.
    pub tls: Option<tls::TlsSettings>,
}

impl RadiusConfig {
    /// A configuration with the product defaults: Message-Authenticator required, 1 s
    /// reject delay, 120 s challenges, 30 s reply cache.
    pub fn new(listen: Vec<SocketAddr>, clients: Vec<RadiusClient>) -> Self {
        RadiusConfig {
            listen,
            require_message_authenticator: true,
            reject_delay: Duration::from_millis(1000),
            clients,
            state_ttl: Duration::from_secs(120),
            state_capacity: 16_384,
            state_key: Arc::new(StateKey::random()),
            wall: crate::clock::Clock::system(),
            reply_cache_ttl: Duration::from_secs(30),
            reply_cache_capacity: 16_384,
            max_in_flight: 1024,
            drop_log_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }
}
