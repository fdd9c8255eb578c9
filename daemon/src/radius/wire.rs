//! Bytes on the wire: parsing a request (through the `radius` codec), the
//! Message-Authenticator (RFC 2869 §5.14), PAP decoding (RFC 2865 §5.2) and reply
//! encoding with the Message-Authenticator first and the Response Authenticator last.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use radius::core::packet::Packet;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacMd5 = Hmac<Md5>;

pub(crate) const HEADER_LEN: usize = 20;
pub(crate) const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value (the length octet covers type and length too).
pub(crate) const MAX_ATTR_VALUE: usize = 253;
const MA_ATTR_LEN: usize = 18;

pub(crate) mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCESS_CHALLENGE: u8 = 11;
    pub const STATUS_SERVER: u8 = 12;
}

pub(crate) mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const EAP_MESSAGE: u8 = 79;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// A request that passed the structural checks.
pub(crate) struct Request<'a> {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    /// Exactly the `Length` octets of the packet (datagram padding cut off).
    pub bytes: &'a [u8],
    pub packet: Packet,
    /// Offset of the Message-Authenticator *value* in `bytes`, if present.
    pub ma_offset: Option<usize>,
}

/// Parses a datagram. `Err` carries a short description for tests and debugging.
pub(crate) fn parse(datagram: &[u8]) -> Result<Request<'_>, &'static str> {
    // The codec checks: header present, 20 <= Length <= 4096, Length <= datagram,
    // and every attribute length within 2..=255 and inside the packet.
    let packet = Packet::decode(datagram, &[]).map_err(|_| "codec rejected the packet")?;
    let len_field = datagram.get(2..4).ok_or("short header")?;
    let len = usize::from(u16::from_be_bytes([len_field[0], len_field[1]]));
    let bytes = datagram.get(..len).ok_or("length beyond datagram")?;
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(bytes.get(4..HEADER_LEN).ok_or("short header")?);
    let ma_offset = find_message_authenticator(bytes)?;
    Ok(Request {
        code: bytes[0],
        identifier: bytes[1],
        authenticator,
        bytes,
        packet,
        ma_offset,
    })
}

/// Walks the attributes to find the Message-Authenticator's position, which the codec does
/// not expose. More than one, or one of the wrong size, makes the packet malformed.
fn find_message_authenticator(bytes: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    let mut i = HEADER_LEN;
    while i < bytes.len() {
        let typ = bytes[i];
        let alen = usize::from(*bytes.get(i + 1).ok_or("truncated attribute")?);
        if alen < 2 || i + alen > bytes.len() {
            return Err("bad attribute length");
        }
        if typ == attr::MESSAGE_AUTHENTICATOR {
            if alen != MA_ATTR_LEN {
                return Err("Message-Authenticator of wrong length");
            }
            if found.is_some() {
                return Err("more than one Message-Authenticator");
            }
            found = Some(i + 2);
        }
        i += alen;
    }
    Ok(found)
}

/// HMAC-MD5 keyed with the secret over `packet`, whose Message-Authenticator value must
/// already be zeroed and whose authenticator field holds the value the RFC asks for.
pub(crate) fn message_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    // `new_from_slice` only fails for fixed-size keys; HMAC takes any length.
    let mut mac = match HmacMd5::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return [0u8; 16],
    };
    mac.update(packet);
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Checks a request's Message-Authenticator (value at `offset` in `bytes`), in constant time.
pub(crate) fn verify_message_authenticator(bytes: &[u8], offset: usize, secret: &[u8]) -> bool {
    let Some(received) = bytes.get(offset..offset + 16) else {
        return false;
    };
    let mut copy = bytes.to_vec();
    copy[offset..offset + 16].fill(0);
    let expected = message_authenticator(&copy, secret);
    expected.ct_eq(received).into()
}

/// Computes and writes the Message-Authenticator at `offset` (a value field of 16 zero
/// bytes) of a packet whose authenticator field is already what the RFC asks for.
pub(crate) fn sign_message_authenticator(packet: &mut [u8], offset: usize, secret: &[u8]) {
    if let Some(slot) = packet.get_mut(offset..offset + 16) {
        slot.fill(0);
        let ma = message_authenticator(packet, secret);
        packet[offset..offset + 16].copy_from_slice(&ma);
    }
}

/// Decodes a PAP `User-Password` (RFC 2865 §5.2): the value must be 16..=128 octets in
/// 16-octet blocks; trailing NUL padding is removed.
pub(crate) fn decode_pap(
    value: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    if value.len() < 16 || value.len() > 128 || value.len() % 16 != 0 {
        return Err("User-Password length is not 16..=128 in 16-octet blocks");
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(value.len()));
    let mut previous: &[u8] = request_authenticator;
    for block in value.chunks(16) {
        let mut md5 = Md5::new();
        md5.update(secret);
        md5.update(previous);
        let pad = Zeroizing::new(<[u8; 16]>::from(md5.finalize()));
        plain.extend(block.iter().zip(pad.iter()).map(|(c, b)| c ^ b));
        previous = block;
    }
    if let Some(end) = plain.iter().position(|&b| b == 0) {
        plain.truncate(end);
    }
    Ok(plain)
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
    let mut out = Vec::with_capacity(256);
    out.push(code);
    out.push(identifier);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(request_authenticator);
    out.push(attr::MESSAGE_AUTHENTICATOR);
    out.push(MA_ATTR_LEN as u8);
    let ma_offset = out.len();
    out.extend_from_slice(&[0u8; 16]);
    for (typ, value) in attrs {
        push_attr(&mut out, *typ, value)?;
    }
    for value in proxy_states {
        push_attr(&mut out, attr::PROXY_STATE, value)?;
    }
    if out.len() > MAX_PACKET_LEN {
        return Err("reply exceeds 4096 octets");
    }
    if let Some(msg) = reply_message {
        let mut budget = MAX_PACKET_LEN - out.len();
        for chunk in split_message(msg) {
            if budget < 2 + chunk.len() {
                break;
            }
            push_attr(&mut out, attr::REPLY_MESSAGE, chunk.as_bytes())?;
            budget -= 2 + chunk.len();
        }
    }
    let len = u16::try_from(out.len()).map_err(|_| "reply exceeds 65535 octets")?;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    sign_message_authenticator(&mut out, ma_offset, secret);
    // Response Authenticator = MD5(Code+ID+Length+RequestAuth+Attributes+Secret); the
    // header still holds the request authenticator at this point.
    let mut md5 = Md5::new();
    md5.update(&out);
    md5.update(secret);
    let response_authenticator = md5.finalize();
    out[4..HEADER_LEN].copy_from_slice(&response_authenticator);
    Ok(out)
}

fn push_attr(out: &mut Vec<u8>, typ: u8, value: &[u8]) -> Result<(), &'static str> {
    if value.len() > MAX_ATTR_VALUE {
        return Err("attribute value longer than 253 octets");
    }
    out.push(typ);
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
    Ok(())
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
