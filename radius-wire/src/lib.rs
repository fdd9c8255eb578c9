//! RADIUS on the wire, written once for otpd, its PAM module, the bench, the tests and the
//! fuzz targets: packet codes and attribute types, the header and its limits, attribute
//! encoding and parsing, User-Password hiding (RFC 2865 §5.2), the Message-Authenticator
//! (RFC 3579 §3.2) and the Response Authenticator (RFC 2865 §3).
//!
//! No sockets, no runtime and no randomness: the caller brings the datagram, the shared
//! secret and the Request Authenticator, and decides what a packet means.

mod attributes;
mod authenticators;
mod client;
mod error;
mod password;
mod writer;

pub use attributes::{
    attributes, find_message_authenticator, parse_attributes, push_attr, Attribute, Attributes,
};
pub use authenticators::{
    message_authenticator, response_authenticator, sign_message_authenticator, sign_response,
    verify_message_authenticator, verify_reply_message_authenticator,
    verify_response_authenticator,
};
pub use client::{verify_reply, Reply, ReplyError, RequestBuilder, FIRST_MESSAGE_AUTHENTICATOR};
pub use error::Error;
pub use password::{hide_blocks, hide_password, unhide_blocks, unhide_password};
pub use writer::Writer;

/// Octets of the header: Code, Identifier, Length (2) and the Authenticator (16).
pub const HEADER_LEN: usize = 20;
/// The largest packet either side may send (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
/// The largest attribute value: the length octet counts the type and itself too.
pub const MAX_ATTR_VALUE: usize = 253;
/// The longest User-Password before hiding (RFC 2865 §5.2).
pub const MAX_PASSWORD_LEN: usize = 128;
/// Octets of a Request or Response Authenticator, and of a Message-Authenticator value.
pub const AUTHENTICATOR_LEN: usize = 16;
/// Octets of a whole Message-Authenticator attribute (type, length, 16-octet value).
pub const MESSAGE_AUTHENTICATOR_ATTR_LEN: usize = 18;

/// A Request or Response Authenticator (RFC 2865 §3).
pub type Authenticator = [u8; AUTHENTICATOR_LEN];

/// Packet codes (RFC 2865 §4, RFC 5997 for Status-Server).
pub mod code {
    /// Access-Request: a client asks.
    pub const ACCESS_REQUEST: u8 = 1;
    /// Access-Accept: the server lets the user in.
    pub const ACCESS_ACCEPT: u8 = 2;
    /// Access-Reject: the server refuses.
    pub const ACCESS_REJECT: u8 = 3;
    /// Access-Challenge: the server wants one more answer (with the State it sends).
    pub const ACCESS_CHALLENGE: u8 = 11;
    /// Status-Server: a client asks whether the server is alive.
    pub const STATUS_SERVER: u8 = 12;
}

/// Attribute types (RFC 2865 §5, RFC 3579 for EAP-Message and Message-Authenticator).
pub mod attr {
    /// User-Name.
    pub const USER_NAME: u8 = 1;
    /// User-Password, hidden as RFC 2865 §5.2 says.
    pub const USER_PASSWORD: u8 = 2;
    /// CHAP-Password.
    pub const CHAP_PASSWORD: u8 = 3;
    /// Reply-Message: text for the user.
    pub const REPLY_MESSAGE: u8 = 18;
    /// State: sent with an Access-Challenge, returned with the answer to it.
    pub const STATE: u8 = 24;
    /// Calling-Station-Id: who is calling, as the NAS sees it (RFC 2865 §5.31): for a
    /// web gateway, the customer's address.
    pub const CALLING_STATION_ID: u8 = 31;
    /// NAS-Identifier: the client's name for itself.
    pub const NAS_IDENTIFIER: u8 = 32;
    /// Proxy-State: a proxy's own value, echoed in the reply in order.
    pub const PROXY_STATE: u8 = 33;
    /// EAP-Message.
    pub const EAP_MESSAGE: u8 = 79;
    /// Message-Authenticator: HMAC-MD5 over the whole packet (RFC 3579 §3.2).
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// Cuts a datagram to the packet its Length field declares: the header must be there and
/// `20 <= Length <= 4096`, not beyond the datagram; octets after it are padding and are
/// ignored (RFC 2865 §3).
pub fn packet(datagram: &[u8]) -> Result<&[u8], Error> {
    let header = datagram.get(..HEADER_LEN).ok_or(Error::ShortHeader)?;
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&declared) {
        return Err(Error::LengthOutOfRange);
    }
    datagram.get(..declared).ok_or(Error::LengthBeyondDatagram)
}

/// The Authenticator field of a packet, if it has a whole header.
pub fn authenticator(packet: &[u8]) -> Option<Authenticator> {
    packet.get(4..HEADER_LEN)?.try_into().ok()
}

/// Writes the packet's own length into its Length field; refuses more than 4096 octets.
pub fn set_length(packet: &mut [u8]) -> Result<(), Error> {
    if packet.len() < HEADER_LEN {
        return Err(Error::ShortHeader);
    }
    if packet.len() > MAX_PACKET_LEN {
        return Err(Error::PacketTooLong);
    }
    let len = u16::try_from(packet.len()).map_err(|_| Error::PacketTooLong)?;
    packet[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
