//! The attribute area: type, length, value, one after the other (RFC 2865 §5).

use crate::{attr, Error, AUTHENTICATOR_LEN, HEADER_LEN, MAX_ATTR_VALUE};

/// One attribute as it stands in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The type octet.
    pub typ: u8,
    /// Offset of the type octet from the start of the packet (the header included).
    pub offset: usize,
    /// The value: the octets after type and length.
    pub value: &'a [u8],
}

impl Attribute<'_> {
    /// Offset of the value from the start of the packet.
    pub fn value_offset(&self) -> usize {
        self.offset + 2
    }
}

/// The attributes of a packet in wire order. A framing fault (a lone octet, a length below
/// 2 or past the end) is yielded once as an `Err`, and the iteration stops there.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    packet: &'a [u8],
    at: usize,
}

/// Walks the attributes of `packet` (header included, already cut to its Length, see
/// [`crate::packet`]).
pub fn attributes(packet: &[u8]) -> Attributes<'_> {
    Attributes {
        packet,
        at: HEADER_LEN,
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.packet.get(self.at..).filter(|r| !r.is_empty())?;
        let fault = match *rest {
            [_] => Some(Error::TruncatedAttribute),
            [_, len, ..] if len < 2 || usize::from(len) > rest.len() => {
                Some(Error::AttributeLength)
            }
            _ => None,
        };
        if let Some(e) = fault {
            self.at = self.packet.len();
            return Some(Err(e));
        }
        let (typ, len) = (rest[0], usize::from(rest[1]));
        let found = Attribute {
            typ,
            offset: self.at,
            value: &rest[2..len],
        };
        self.at += len;
        Some(Ok(found))
    }
}

/// Every attribute of `packet`, or the first framing fault.
pub fn parse_attributes(packet: &[u8]) -> Result<Vec<Attribute<'_>>, Error> {
    attributes(packet).collect()
}

/// Offset of the Message-Authenticator's value in the packet `attributes` were parsed from
/// (by [`parse_attributes`]), if it has one. More than one, or one whose value is not 16
/// octets, makes the packet malformed.
pub fn find_message_authenticator(attributes: &[Attribute<'_>]) -> Result<Option<usize>, Error> {
    let mut found = None;
    for attribute in attributes
        .iter()
        .filter(|a| a.typ == attr::MESSAGE_AUTHENTICATOR)
    {
        if attribute.value.len() != AUTHENTICATOR_LEN {
            return Err(Error::MessageAuthenticatorLength);
        }
        if found.is_some() {
            return Err(Error::DuplicateMessageAuthenticator);
        }
        found = Some(attribute.value_offset());
    }
    Ok(found)
}

/// Appends one attribute; refuses a value longer than 253 octets. Empty values are the
/// caller's to refuse where the attribute's definition does.
pub fn push_attr(out: &mut Vec<u8>, typ: u8, value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_ATTR_VALUE {
        return Err(Error::ValueTooLong);
    }
    out.push(typ);
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
    Ok(())
}
