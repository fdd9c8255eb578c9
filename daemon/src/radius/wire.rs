//! The server's side of the wire, on top of `radius_wire`: a request parsed into its
//! attributes with its Message-Authenticator located, PAP decoding into a wiped buffer, and
//! a reply written the way otpd answers:
//! Message-Authenticator first, Proxy-States echoed, Reply-Message split and shortened to
//! fit, Response Authenticator last.

use radius_wire::{Attribute, Error, Writer, MAX_ATTR_VALUE};
use zeroize::Zeroizing;

// The names the engine, the server and the tests know the wire by.
pub(crate) use radius_wire::{attr, code, verify_message_authenticator, MAX_PACKET_LEN};
// The radius tests sign the requests they build and check the replies with these.
#[cfg(test)]
pub(crate) use radius_wire::{message_authenticator, sign_message_authenticator};

/// A request that passed the structural checks.
pub(crate) struct Request<'a> {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// Exactly the `Length` octets of the packet (datagram padding cut off).
    pub bytes: &'a [u8],
    /// Every attribute, in wire order.
    pub attributes: Vec<Attribute<'a>>,
    /// Offset of the Message-Authenticator *value* in `bytes`, if present.
    pub ma_offset: Option<usize>,
}

impl Request<'_> {
    /// The values of every attribute of type `typ`, in wire order.
    pub fn all(&self, typ: u8) -> Vec<&[u8]> {
        self.attributes
            .iter()
            .filter(|a| a.typ == typ)
            .map(|a| a.value)
            .collect()
    }

    /// The value of the first attribute of type `typ`.
    pub fn first(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value)
    }

    /// Whether the request carries an attribute of type `typ`.
    pub fn has(&self, typ: u8) -> bool {
        self.first(typ).is_some()
    }
}

/// Parses a datagram. `Err` carries a short description for tests and debugging.
pub(crate) fn parse(datagram: &[u8]) -> Result<Request<'_>, &'static str> {
    // Header present, 20 <= Length <= 4096, Length <= datagram; every attribute length
    // within 2..=255 and inside the packet.
    let bytes = radius_wire::packet(datagram).map_err(Error::message)?;
    let authenticator = radius_wire::authenticator(bytes).ok_or("short header")?;
    let attributes = radius_wire::parse_attributes(bytes).map_err(Error::message)?;
    // More than one Message-Authenticator, or one of the wrong size, is malformed.
    let ma_offset = radius_wire::find_message_authenticator(&attributes).map_err(Error::message)?;
    Ok(Request {
        code: bytes[0],
        identifier: bytes[1],
        authenticator,
        bytes,
        attributes,
        ma_offset,
    })
}

/// Decodes a PAP `User-Password` (RFC 2865 §5.2): the value must be 16..=128 octets in
/// 16-octet blocks; trailing NUL padding is removed.
pub(crate) fn decode_pap(
    value: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    radius_wire::unhide_password(value, secret, request_authenticator).map_err(Error::message)
}

/// Encodes a reply to the request (`identifier`, `request_authenticator`):
/// Message-Authenticator first, then `attrs` in order, then every Proxy-State of the
/// request in order, then the Reply-Message (split into 253-octet attributes on character
/// boundaries and shortened if the packet would exceed 4096 octets). The
/// Message-Authenticator is computed with the request authenticator in the header, the
/// Response Authenticator last.
pub(crate) fn encode_reply(
    code: u8,
    identifier: u8,
    request_authenticator: &[u8; 16],
    secret: &[u8],
    attrs: &[(u8, &[u8])],
    reply_message: Option<&str>,
    proxy_states: &[Vec<u8>],
) -> Result<Vec<u8>, &'static str> {
    let mut reply = Writer::new(code, identifier, request_authenticator);
    reply.push_message_authenticator();
    for (typ, value) in attrs {
        reply.push(*typ, value).map_err(Error::message)?;
    }
    for value in proxy_states {
        reply
            .push(attr::PROXY_STATE, value)
            .map_err(Error::message)?;
    }
    if reply.size() > MAX_PACKET_LEN {
        return Err("reply exceeds 4096 octets");
    }
    if let Some(msg) = reply_message {
        let mut budget = MAX_PACKET_LEN - reply.size();
        for chunk in split_message(msg) {
            if budget < 2 + chunk.len() {
                break;
            }
            reply
                .push(attr::REPLY_MESSAGE, chunk.as_bytes())
                .map_err(Error::message)?;
            budget -= 2 + chunk.len();
        }
    }
    reply.finish_reply(secret).map_err(Error::message)
}

/// Splits a message into pieces of at most 253 octets without cutting a character.
pub(crate) fn split_message(msg: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = msg;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_ATTR_VALUE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces
}
