//! The two proofs a packet carries: the Message-Authenticator, HMAC-MD5 over the whole
//! packet (RFC 3579 §3.2), and a reply's Response Authenticator, MD5 over the reply with the
//! request's authenticator in its place and the secret after it (RFC 2865 §3).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::{Authenticator, AUTHENTICATOR_LEN, HEADER_LEN};

type HmacMd5 = Hmac<Md5>;

/// HMAC-MD5 keyed with the secret over `packet` as given: the caller has zeroed the
/// Message-Authenticator value and put in the header the authenticator the RFC asks for
/// (a request's own; for a reply, the request's).
pub fn message_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    // HMAC takes keys of any length, so this never fails; a zero MAC would only fail to
    // verify, it cannot let a packet in.
    let Ok(mut mac) = <HmacMd5 as Mac>::new_from_slice(secret) else {
        return [0u8; 16];
    };
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

/// Computes and writes the Message-Authenticator whose value starts at `offset`, over the
/// packet as it stands (so a reply must still hold the request's authenticator). Does
/// nothing if the value does not fit in the packet.
pub fn sign_message_authenticator(packet: &mut [u8], offset: usize, secret: &[u8]) {
    let Some(end) = value_end(packet.len(), offset) else {
        return;
    };
    packet[offset..end].fill(0);
    let mac = message_authenticator(packet, secret);
    packet[offset..end].copy_from_slice(&mac);
}

/// Checks, in constant time, the Message-Authenticator of a request whose value starts at
/// `offset`.
pub fn verify_message_authenticator(packet: &[u8], offset: usize, secret: &[u8]) -> bool {
    verify_ma(packet, offset, None, secret)
}

/// Checks, in constant time, the Message-Authenticator of a reply whose value starts at
/// `offset`: RFC 3579 §3.2 computes it with the request's authenticator in the header.
pub fn verify_reply_message_authenticator(
    reply: &[u8],
    offset: usize,
    request_authenticator: &Authenticator,
    secret: &[u8],
) -> bool {
    verify_ma(reply, offset, Some(request_authenticator), secret)
}

/// Checks the Message-Authenticator whose value starts at `offset`, with
/// `header_authenticator` (if any) in the header's place, without copying the packet.
pub(crate) fn verify_ma(
    packet: &[u8],
    offset: usize,
    header_authenticator: Option<&Authenticator>,
    secret: &[u8],
) -> bool {
    if packet.len() < HEADER_LEN {
        return false;
    }
    let Some(end) = value_end(packet.len(), offset) else {
        return false;
    };
    let expected = if offset < HEADER_LEN {
        // Not where an attribute can stand; computed over a copy as the RFC reads.
        let mut copy = packet.to_vec();
        if let Some(authenticator) = header_authenticator {
            copy[4..HEADER_LEN].copy_from_slice(authenticator);
        }
        copy[offset..end].fill(0);
        message_authenticator(&copy, secret)
    } else {
        let Ok(mut mac) = <HmacMd5 as Mac>::new_from_slice(secret) else {
            return false;
        };
        mac.update(&packet[..4]);
        mac.update(header_authenticator.map_or(&packet[4..HEADER_LEN], |a| &a[..]));
        mac.update(&packet[HEADER_LEN..offset]);
        mac.update(&[0u8; AUTHENTICATOR_LEN]);
        mac.update(&packet[end..]);
        mac.finalize().into_bytes().into()
    };
    expected.ct_eq(&packet[offset..end]).into()
}

fn value_end(len: usize, offset: usize) -> Option<usize> {
    let end = offset.checked_add(AUTHENTICATOR_LEN)?;
    (end <= len).then_some(end)
}

/// The Response Authenticator of `reply`:
/// MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret).
/// The reply's own authenticator field is not read.
pub fn response_authenticator(
    reply: &[u8],
    request_authenticator: &Authenticator,
    secret: &[u8],
) -> Authenticator {
    let mut md5 = Md5::new();
    md5.update(reply.get(..4).unwrap_or(reply));
    md5.update(request_authenticator);
    md5.update(reply.get(HEADER_LEN..).unwrap_or_default());
    md5.update(secret);
    md5.finalize().into()
}

/// Writes the Response Authenticator into a reply's header, as the last step of writing it.
/// Does nothing to a packet shorter than a header.
pub fn sign_response(reply: &mut [u8], request_authenticator: &Authenticator, secret: &[u8]) {
    if reply.len() < HEADER_LEN {
        return;
    }
    let value = response_authenticator(reply, request_authenticator, secret);
    reply[4..HEADER_LEN].copy_from_slice(&value);
}

/// Checks a reply's Response Authenticator against the request it answers, in constant
/// time. A packet shorter than a header fails.
pub fn verify_response_authenticator(
    reply: &[u8],
    request_authenticator: &Authenticator,
    secret: &[u8],
) -> bool {
    let Some(received) = reply.get(4..HEADER_LEN) else {
        return false;
    };
    response_authenticator(reply, request_authenticator, secret)
        .ct_eq(received)
        .into()
}
