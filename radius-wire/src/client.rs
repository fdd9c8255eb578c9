//! The client's side of one exchange, written once for the PAM module, the bench and the
//! tests: an Access-Request with the Message-Authenticator as its first attribute and the
//! User-Password hidden in place, and the checks a reply must pass before it is believed.

use std::fmt;

use crate::{
    attr, attributes, authenticators::verify_ma, code, hide_blocks, verify_response_authenticator,
    Attribute, Authenticator, Error, Writer, AUTHENTICATOR_LEN, HEADER_LEN, MAX_PASSWORD_LEN,
};

/// Offset of the Message-Authenticator's value when it is the first attribute.
pub const FIRST_MESSAGE_AUTHENTICATOR: usize = HEADER_LEN + 2;

/// A request being written: the Message-Authenticator first (BlastRADIUS), then the
/// attributes in the order the caller adds them, all in the one buffer that is sent.
#[derive(Debug, Clone)]
pub struct RequestBuilder<'s> {
    writer: Writer,
    secret: &'s [u8],
}

impl<'s> RequestBuilder<'s> {
    /// Starts an Access-Request.
    pub fn access_request(identifier: u8, authenticator: &Authenticator, secret: &'s [u8]) -> Self {
        Self::new(code::ACCESS_REQUEST, identifier, authenticator, secret)
    }

    /// Starts a request with another code (Status-Server).
    pub fn new(code: u8, identifier: u8, authenticator: &Authenticator, secret: &'s [u8]) -> Self {
        let mut writer = Writer::new(code, identifier, authenticator);
        writer.push_message_authenticator();
        Self { writer, secret }
    }

    /// Adds one attribute; refuses an empty value ([`Error::EmptyValue`]: nothing a client
    /// sends may be empty) and one longer than 253 octets.
    pub fn push(&mut self, typ: u8, value: &[u8]) -> Result<&mut Self, Error> {
        if value.is_empty() {
            return Err(Error::EmptyValue);
        }
        self.writer.push(typ, value)?;
        Ok(self)
    }

    /// Adds the User-Password, padded and hidden (RFC 2865 §5.2) in the packet's own buffer;
    /// refuses a password longer than 128 octets.
    pub fn push_user_password(&mut self, password: &[u8]) -> Result<&mut Self, Error> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(Error::PasswordTooLong);
        }
        let padded = password.len().div_ceil(AUTHENTICATOR_LEN).max(1) * AUTHENTICATOR_LEN;
        let authenticator = *self.writer.authenticator();
        let value = self
            .writer
            .push_with(attr::USER_PASSWORD, padded, |value| {
                value[..password.len()].copy_from_slice(password);
            })?;
        hide_blocks(value, self.secret, &authenticator);
        Ok(self)
    }

    /// Octets written so far, the header included.
    pub fn size(&self) -> usize {
        self.writer.size()
    }

    /// The Length and the Message-Authenticator; refuses a packet over 4096 octets.
    pub fn finish(self) -> Result<Vec<u8>, Error> {
        self.writer.finish_request(self.secret)
    }
}

/// Why a reply is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a RADIUS packet: a short header, a Length out of range or beyond the datagram
    /// (a truncated packet), an attribute badly framed, a Message-Authenticator twice or of
    /// the wrong length.
    Malformed(Error),
    /// Another identifier: not an answer to this request (perhaps a late one to an earlier).
    IdentifierMismatch,
    /// The Response Authenticator does not match: another secret, or another request.
    BadResponseAuthenticator,
    /// The reply's Message-Authenticator does not match.
    BadMessageAuthenticator,
    /// No Message-Authenticator, where [`Reply::require_message_authenticator`] asks one.
    MissingMessageAuthenticator,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed packet: {e}"),
            Self::IdentifierMismatch => f.write_str("identifier does not match the request"),
            Self::BadResponseAuthenticator => {
                f.write_str("bad Response Authenticator (wrong shared secret?)")
            }
            Self::BadMessageAuthenticator => f.write_str("bad Message-Authenticator"),
            Self::MissingMessageAuthenticator => f.write_str("no Message-Authenticator"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<Error> for ReplyError {
    fn from(e: Error) -> Self {
        Self::Malformed(e)
    }
}

/// A reply that passed [`verify_reply`]: a view of the packet, cut to its Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    packet: &'a [u8],
    message_authenticator: Option<usize>,
}

impl<'a> Reply<'a> {
    /// The packet code; any code passes [`verify_reply`], the caller decides what it means.
    pub fn code(&self) -> u8 {
        self.packet[0]
    }

    /// The packet, padding cut off.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// The attributes in wire order (their framing was checked).
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> {
        attributes(self.packet).flatten()
    }

    /// The first value of the attribute `typ`.
    pub fn get(&self, typ: u8) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// Offset of the (verified) Message-Authenticator's value, if the reply has one.
    pub fn message_authenticator(&self) -> Option<usize> {
        self.message_authenticator
    }

    /// The Message-Authenticator is there and is the first attribute.
    pub fn message_authenticator_first(&self) -> bool {
        self.message_authenticator == Some(FIRST_MESSAGE_AUTHENTICATOR)
    }

    /// Refuses a reply without a Message-Authenticator.
    pub fn require_message_authenticator(self) -> Result<Self, ReplyError> {
        match self.message_authenticator {
            Some(_) => Ok(self),
            None => Err(ReplyError::MissingMessageAuthenticator),
        }
    }
}

/// Checks that `datagram` answers the request sent with `request_authenticator` and
/// `expected_id` under `secret`, in this order: the header and Length (octets past the
/// Length are padding), the identifier, the attribute framing, the Response Authenticator
/// (RFC 2865 §3), then the Message-Authenticator if there is one (RFC 3579 §3.2). Nothing
/// is allocated.
pub fn verify_reply<'a>(
    request_authenticator: &Authenticator,
    secret: &[u8],
    datagram: &'a [u8],
    expected_id: u8,
) -> Result<Reply<'a>, ReplyError> {
    let packet = crate::packet(datagram)?;
    if packet[1] != expected_id {
        return Err(ReplyError::IdentifierMismatch);
    }
    // A framing fault is reported at once; a Message-Authenticator fault only once the
    // Response Authenticator has proved who wrote the packet.
    let mut message_authenticator: Result<Option<usize>, Error> = Ok(None);
    for found in attributes(packet) {
        let found = found?;
        if found.typ != attr::MESSAGE_AUTHENTICATOR {
            continue;
        }
        message_authenticator = match message_authenticator {
            Ok(_) if found.value.len() != AUTHENTICATOR_LEN => {
                Err(Error::MessageAuthenticatorLength)
            }
            Ok(None) => Ok(Some(found.value_offset())),
            Ok(Some(_)) => Err(Error::DuplicateMessageAuthenticator),
            Err(e) => Err(e),
        };
    }
    if !verify_response_authenticator(packet, request_authenticator, secret) {
        return Err(ReplyError::BadResponseAuthenticator);
    }
    let message_authenticator = message_authenticator?;
    if let Some(offset) = message_authenticator {
        if !verify_ma(packet, offset, Some(request_authenticator), secret) {
            return Err(ReplyError::BadMessageAuthenticator);
        }
    }
    Ok(Reply {
        packet,
        message_authenticator,
    })
}
