//! Why bytes are not a RADIUS packet, or why a value cannot go on the wire.

use std::fmt;

/// What is wrong with a packet being read or written. [`Error::message`] is the short
/// sentence callers log or pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer octets than the 20 of the header.
    ShortHeader,
    /// The Length field is below 20 or above 4096.
    LengthOutOfRange,
    /// The Length field counts more octets than the datagram holds.
    LengthBeyondDatagram,
    /// A single octet left where an attribute's type and length should be.
    TruncatedAttribute,
    /// An attribute's length octet is below 2 or runs past the packet.
    AttributeLength,
    /// More than one Message-Authenticator in one packet.
    DuplicateMessageAuthenticator,
    /// A Message-Authenticator whose value is not 16 octets.
    MessageAuthenticatorLength,
    /// An attribute value longer than 253 octets.
    ValueTooLong,
    /// An empty value where the attribute needs at least one octet.
    EmptyValue,
    /// A User-Password longer than 128 octets.
    PasswordTooLong,
    /// A hidden User-Password that is not 16..=128 octets in 16-octet blocks.
    HiddenPasswordLength,
    /// The packet would exceed 4096 octets.
    PacketTooLong,
}

impl Error {
    /// The sentence for logs and for callers that report errors as text.
    pub const fn message(self) -> &'static str {
        match self {
            Self::ShortHeader => "short header",
            Self::LengthOutOfRange => "length field out of range",
            Self::LengthBeyondDatagram => "length beyond datagram",
            Self::TruncatedAttribute => "truncated attribute",
            Self::AttributeLength => "bad attribute length",
            Self::DuplicateMessageAuthenticator => "more than one Message-Authenticator",
            Self::MessageAuthenticatorLength => "Message-Authenticator of wrong length",
            Self::ValueTooLong => "attribute value longer than 253 octets",
            Self::EmptyValue => "empty attribute value",
            Self::PasswordTooLong => "User-Password longer than 128 octets",
            Self::HiddenPasswordLength => "User-Password length is not 16..=128 in 16-octet blocks",
            Self::PacketTooLong => "packet exceeds 4096 octets",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}
