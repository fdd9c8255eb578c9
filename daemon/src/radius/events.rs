//! What the RADIUS layer tells the daemon's logger: one audit line per decision, rate-limited
//! drop lines, configuration warnings. No event ever carries a password, OTP or secret.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the daemon sends RADIUS events (its syslog + stderr logger).
///
/// Called from the receive loop and from request tasks: keep it quick and non-blocking.
/// Any `Fn(&RadiusEvent) + Send + Sync` closure is a `RadiusLog`.
pub trait RadiusLog: Send + Sync + 'static {
    fn event(&self, event: &RadiusEvent);
}

impl<F> RadiusLog for F
where
    F: Fn(&RadiusEvent) + Send + Sync + 'static,
{
    fn event(&self, event: &RadiusEvent) {
        self(event)
    }
}

/// How loud an event is; the daemon maps it onto syslog levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warning,
}

/// The answer a request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Reject,
    Challenge,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accept => "accept",
            Outcome::Reject => "reject",
            Outcome::Challenge => "challenge",
        }
    }
}

/// Which step of a login a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A request without `State`: password, or password followed by OTP.
    Password,
    /// A request answering one of our challenges.
    ChallengeResponse,
    /// CHAP-Password instead of User-Password: refused, otpd needs the password itself.
    Chap,
    /// EAP-Message instead of User-Password: refused, otpd speaks no EAP.
    Eap,
    /// No credential attribute at all.
    Nothing,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Password => "password",
            InputKind::ChallengeResponse => "challenge_response",
            InputKind::Chap => "chap",
            InputKind::Eap => "eap",
            InputKind::Nothing => "none",
        }
    }
}

/// Why a datagram got no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The source address matches no configured client.
    UnknownClient,
    /// Not a well-formed RADIUS packet (lengths, attributes, encodings).
    Malformed,
    /// Neither an Access-Request nor a Status-Server.
    UnsupportedCode,
    /// The Message-Authenticator did not verify: wrong shared secret or a forgery.
    BadMessageAuthenticator,
    /// No Message-Authenticator where one is required.
    MissingMessageAuthenticator,
    /// `Proxy-State` without Message-Authenticator: refused as a BlastRADIUS precaution.
    ProxyStateWithoutMessageAuthenticator,
    /// A retransmission of a request whose reply is still being worked on (or held back
    /// by the reject delay): the client will retransmit again and get the cached reply.
    DuplicateInProgress,
    /// Too many requests already in flight.
    Overloaded,
    /// The reply would not fit in a RADIUS packet (the request carried too much Proxy-State).
    ReplyTooLarge,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::UnknownClient,
        DropReason::Malformed,
        DropReason::UnsupportedCode,
        DropReason::BadMessageAuthenticator,
        DropReason::MissingMessageAuthenticator,
        DropReason::ProxyStateWithoutMessageAuthenticator,
        DropReason::DuplicateInProgress,
        DropReason::Overloaded,
        DropReason::ReplyTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownClient => "unknown_client",
            DropReason::Malformed => "malformed",
            DropReason::UnsupportedCode => "unsupported_code",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::ProxyStateWithoutMessageAuthenticator => {
                "proxy_state_without_message_authenticator"
            }
            DropReason::DuplicateInProgress => "duplicate_in_progress",
            DropReason::Overloaded => "overloaded",
            DropReason::ReplyTooLarge => "reply_too_large",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn hint(self) -> &'static str {
        match self {
            DropReason::UnknownClient => "add the address to [[radius.clients]] if it is a NAS",
            DropReason::BadMessageAuthenticator => "shared secret mismatch or forged packet",
            DropReason::MissingMessageAuthenticator => {
                "configure the client to send Message-Authenticator"
            }
            _ => "",
        }
    }
}

/// One line for the daemon's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadiusEvent {
    /// The audit line: one per evaluated request.
    Decision {
        /// `User-Name` as it arrived; logged with invalid UTF-8 escaped byte for byte.
        user: Vec<u8>,
        client: String,
        src: SocketAddr,
        nas_identifier: Option<String>,
        input: InputKind,
        outcome: Outcome,
        /// Why a Reject was decided (`None` for Accept and Challenge).
        reason: Option<&'static str>,
    },
    /// A dropped datagram. At most one per reason and client per interval;
    /// `suppressed` counts the similar drops not logged since the previous line.
    Dropped {
        reason: DropReason,
        client: Option<String>,
        src: SocketAddr,
        suppressed: u64,
    },
    /// Drops that were not logged individually during the last interval.
    DropsSuppressed {
        reason: DropReason,
        client: Option<String>,
        count: u64,
        interval: Duration,
    },
    /// A RADIUS-over-TLS connection refused or closed (handshake, certificate, limits).
    Tls { message: String },
}

impl RadiusEvent {
    pub fn severity(&self) -> Severity {
        match self {
            RadiusEvent::Decision { .. } => Severity::Info,
            RadiusEvent::Dropped { reason, .. } | RadiusEvent::DropsSuppressed { reason, .. } => {
                if *reason == DropReason::DuplicateInProgress {
                    Severity::Debug
                } else {
                    Severity::Warning
                }
            }
            RadiusEvent::Tls { .. } => Severity::Warning,
        }
    }
}

/// Bytes from the wire, quoted as `{:?}` quotes a string, with every byte that is not part
/// of valid UTF-8 written as `\xNN`: an operator can find the exact name, and a name
/// cannot forge a log line.
pub fn quote_bytes(raw: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in raw.utf8_chunks() {
        let valid = format!("{:?}", chunk.valid());
        s.push_str(&valid[1..valid.len() - 1]);
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

// Strings from the wire are printed with `{:?}`: quoted, control characters escaped, so a
// user name cannot forge a log line.
impl fmt::Display for RadiusEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RadiusEvent::Decision {
                user,
                client,
                src,
                nas_identifier,
                input,
                outcome,
                reason,
            } => {
                write!(
                    f,
                    "radius {} user={} client={:?} src={} input={}",
                    outcome.as_str(),
                    quote_bytes(user),
                    client,
                    src,
                    input.as_str()
                )?;
                if let Some(nas) = nas_identifier {
                    write!(f, " nas={nas:?}")?;
                }
                if let Some(reason) = reason {
                    write!(f, " reason={reason}")?;
                }
                Ok(())
            }
            RadiusEvent::Dropped {
                reason,
                client,
                src,
                suppressed,
            } => {
                write!(f, "radius drop reason={} src={}", reason.as_str(), src)?;
                if let Some(client) = client {
                    write!(f, " client={client:?}")?;
                }
                if *suppressed > 0 {
                    write!(f, " suppressed={suppressed}")?;
                }
                let hint = reason.hint();
                if !hint.is_empty() {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            RadiusEvent::DropsSuppressed {
                reason,
                client,
                count,
                interval,
            } => {
                write!(f, "radius drop reason={}", reason.as_str())?;
                if let Some(client) = client {
                    write!(f, " client={client:?}")?;
                }
                write!(
                    f,
                    " suppressed={count} (not logged one by one in the last {}s)",
                    interval.as_secs()
                )
            }
            RadiusEvent::Tls { message } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's log table is what operators grep for: every name the log can print.
    #[test]
    fn the_readme_names_every_drop_reason_and_input() {
        let readme = include_str!("../../../README.md");
        for r in DropReason::ALL {
            assert!(
                readme.contains(&format!("`{}`", r.as_str())),
                "README lacks {}",
                r.as_str()
            );
        }
        for i in [
            InputKind::Password,
            InputKind::ChallengeResponse,
            InputKind::Chap,
            InputKind::Eap,
            InputKind::Nothing,
        ] {
            assert!(
                readme.contains(&format!("`{}`", i.as_str())),
                "README lacks input {}",
                i.as_str()
            );
        }
    }
}
