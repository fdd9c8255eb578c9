//! The little of RADIUS the load generator speaks: it builds PAP Access-Requests with a
//! Message-Authenticator as the first attribute (RFC 2865 §5.2 password hiding, RFC 3579
//! §3.2 HMAC-MD5) and checks a reply's Response Authenticator and, when present, its
//! Message-Authenticator. Written by hand rather than with the `radius` crate so the
//! attribute order is ours and a request costs one allocation.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

pub const ACCESS_REQUEST: u8 = 1;
pub const ACCESS_ACCEPT: u8 = 2;
pub const ACCESS_REJECT: u8 = 3;
pub const ACCESS_CHALLENGE: u8 = 11;

const USER_NAME: u8 = 1;
const USER_PASSWORD: u8 = 2;
const NAS_IDENTIFIER: u8 = 32;
const MESSAGE_AUTHENTICATOR: u8 = 80;

const HEADER: usize = 20;
/// RFC 2865 §5.2: a hidden password is at most 128 bytes.
pub const MAX_PASSWORD: usize = 128;

type HmacMd5 = Hmac<Md5>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    PasswordTooLong,
    AttributeTooLong,
}

/// One Access-Request as sent: the bytes and what a reply must match.
#[derive(Debug, Clone)]
pub struct Request {
    pub bytes: Vec<u8>,
    pub id: u8,
    pub authenticator: [u8; 16],
}

/// Builds an Access-Request: Message-Authenticator (first), User-Name, User-Password
/// (hidden with `secret` and `authenticator`), NAS-Identifier.
pub fn access_request(
    secret: &[u8],
    id: u8,
    authenticator: [u8; 16],
    user_name: &str,
    password: &[u8],
    nas_identifier: &str,
) -> Result<Request, BuildError> {
    if password.len() > MAX_PASSWORD {
        return Err(BuildError::PasswordTooLong);
    }
    let hidden_len = password.len().div_ceil(16).max(1) * 16;
    let mut b = Vec::with_capacity(HEADER + 18 + 2 + user_name.len() + 2 + hidden_len + 40);
    b.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
    b.extend_from_slice(&authenticator);
    // Message-Authenticator first, zeroed until the packet is complete (BlastRADIUS).
    b.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    let ma_at = b.len();
    b.extend_from_slice(&[0u8; 16]);
    push_attr(&mut b, USER_NAME, user_name.as_bytes())?;
    b.push(USER_PASSWORD);
    b.push(u8::try_from(2 + hidden_len).map_err(|_| BuildError::AttributeTooLong)?);
    hide_password(&mut b, secret, &authenticator, password, hidden_len);
    push_attr(&mut b, NAS_IDENTIFIER, nas_identifier.as_bytes())?;
    let len = u16::try_from(b.len()).map_err(|_| BuildError::AttributeTooLong)?;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    let ma = hmac_md5(secret, &b);
    b[ma_at..ma_at + 16].copy_from_slice(&ma);
    Ok(Request {
        bytes: b,
        id,
        authenticator,
    })
}

fn push_attr(b: &mut Vec<u8>, typ: u8, value: &[u8]) -> Result<(), BuildError> {
    if value.is_empty() || value.len() > 253 {
        return Err(BuildError::AttributeTooLong);
    }
    b.push(typ);
    b.push(u8::try_from(value.len() + 2).map_err(|_| BuildError::AttributeTooLong)?);
    b.extend_from_slice(value);
    Ok(())
}

/// RFC 2865 §5.2: c(1) = p(1) xor MD5(S + RA), c(i) = p(i) xor MD5(S + c(i-1)).
fn hide_password(
    out: &mut Vec<u8>,
    secret: &[u8],
    authenticator: &[u8; 16],
    password: &[u8],
    hidden_len: usize,
) {
    let mut prev: [u8; 16] = *authenticator;
    for chunk in 0..hidden_len / 16 {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let key = h.finalize();
        let mut block = [0u8; 16];
        for (i, slot) in block.iter_mut().enumerate() {
            let p = password.get(chunk * 16 + i).copied().unwrap_or(0);
            *slot = p ^ key[i];
        }
        out.extend_from_slice(&block);
        prev = block;
    }
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length.
    let mut mac = match HmacMd5::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0u8; 16],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// What a reply was, once it proved authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub code: u8,
    /// A Message-Authenticator was present (and valid).
    pub message_authenticator: bool,
    /// ... and it was the first attribute.
    pub message_authenticator_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// Not a reply to this request (another identifier): a late answer to an earlier one.
    NotOurs,
    Malformed,
    BadResponseAuthenticator,
    BadMessageAuthenticator,
}

/// Checks `reply` against the request it answers: identifier, length, Response
/// Authenticator (RFC 2865 §3) and a Message-Authenticator if there is one (RFC 3579 §3.2).
pub fn check_reply(secret: &[u8], request: &Request, reply: &[u8]) -> Result<Reply, ReplyError> {
    if reply.len() < HEADER {
        return Err(ReplyError::Malformed);
    }
    if reply[1] != request.id {
        return Err(ReplyError::NotOurs);
    }
    let len = usize::from(u16::from_be_bytes([reply[2], reply[3]]));
    if !(HEADER..=reply.len()).contains(&len) {
        return Err(ReplyError::Malformed);
    }
    let reply = &reply[..len];
    let mut h = Md5::new();
    h.update(&reply[..4]);
    h.update(request.authenticator);
    h.update(&reply[HEADER..]);
    h.update(secret);
    if h.finalize().as_slice() != &reply[4..HEADER] {
        // An answer to an earlier request with the same identifier fails here too.
        return Err(ReplyError::BadResponseAuthenticator);
    }
    let mut at = HEADER;
    let mut ma_at = None;
    let mut first = true;
    let mut ma_first = false;
    while at < len {
        if at + 2 > len {
            return Err(ReplyError::Malformed);
        }
        let (typ, alen) = (reply[at], usize::from(reply[at + 1]));
        if alen < 2 || at + alen > len {
            return Err(ReplyError::Malformed);
        }
        if typ == MESSAGE_AUTHENTICATOR {
            if alen != 18 || ma_at.is_some() {
                return Err(ReplyError::Malformed);
            }
            ma_at = Some(at + 2);
            ma_first = first;
        }
        first = false;
        at += alen;
    }
    if let Some(m) = ma_at {
        let mut copy = reply.to_vec();
        copy[4..HEADER].copy_from_slice(&request.authenticator);
        copy[m..m + 16].fill(0);
        if hmac_md5(secret, &copy) != reply[m..m + 16] {
            return Err(ReplyError::BadMessageAuthenticator);
        }
    }
    Ok(Reply {
        code: reply[0],
        message_authenticator: ma_at.is_some(),
        message_authenticator_first: ma_first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use radius::core::code::Code;
    use radius::core::packet::Packet;
    use radius::core::rfc2865;

    const SECRET: &[u8] = b"bench-shared-secret";

    fn request(password: &[u8]) -> Request {
        access_request(SECRET, 7, [0x5a; 16], "bench0000001", password, "loadgen").expect("built")
    }

    #[test]
    fn the_radius_crate_reads_what_we_build() {
        for pw in [
            &b"Bench-Passw0rd123456"[..],
            b"x",
            &[b'p'; 16],
            &[b'q'; 128],
        ] {
            let req = request(pw);
            let p = Packet::decode(&req.bytes, SECRET).expect("decodes");
            assert_eq!(p.get_code(), Code::AccessRequest);
            assert_eq!(p.get_identifier(), 7);
            assert_eq!(
                rfc2865::lookup_user_name(&p)
                    .expect("present")
                    .expect("utf8"),
                "bench0000001"
            );
            let got = rfc2865::lookup_user_password(&p)
                .expect("present")
                .expect("unhidden");
            assert_eq!(got, pw, "password of {} bytes", pw.len());
        }
    }

    #[test]
    fn message_authenticator_is_first_and_valid() {
        let req = request(b"Bench-Passw0rd123456");
        assert_eq!(req.bytes[HEADER], MESSAGE_AUTHENTICATOR);
        let mut zeroed = req.bytes.clone();
        zeroed[HEADER + 2..HEADER + 18].fill(0);
        assert_eq!(
            hmac_md5(SECRET, &zeroed),
            req.bytes[HEADER + 2..HEADER + 18]
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([req.bytes[2], req.bytes[3]])),
            req.bytes.len()
        );
    }

    fn reply_to(req: &Request, code: u8, with_ma: bool) -> Vec<u8> {
        let mut b = vec![code, req.id, 0, 0];
        b.extend_from_slice(&req.authenticator);
        if with_ma {
            b.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
            b.extend_from_slice(&[0; 16]);
        }
        b.extend_from_slice(&[18, 4, b'o', b'k']);
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        if with_ma {
            let ma = hmac_md5(SECRET, &b);
            b[HEADER + 2..HEADER + 18].copy_from_slice(&ma);
        }
        let mut h = Md5::new();
        h.update(&b);
        h.update(SECRET);
        let auth = h.finalize();
        b[4..HEADER].copy_from_slice(&auth);
        b
    }

    #[test]
    fn replies_are_checked() {
        let req = request(b"pw123456");
        let ok = reply_to(&req, ACCESS_ACCEPT, true);
        assert_eq!(
            check_reply(SECRET, &req, &ok),
            Ok(Reply {
                code: ACCESS_ACCEPT,
                message_authenticator: true,
                message_authenticator_first: true
            })
        );
        let plain = reply_to(&req, ACCESS_REJECT, false);
        assert_eq!(
            check_reply(SECRET, &req, &plain).map(|r| r.message_authenticator),
            Ok(false)
        );
        assert_eq!(
            check_reply(b"other-secret", &req, &ok),
            Err(ReplyError::BadResponseAuthenticator)
        );
        let mut tampered = ok.clone();
        tampered[HEADER + 5] ^= 1;
        assert_eq!(
            check_reply(SECRET, &req, &tampered),
            Err(ReplyError::BadResponseAuthenticator)
        );
        let other = access_request(SECRET, 8, [1; 16], "u", b"p", "n").expect("built");
        assert_eq!(check_reply(SECRET, &other, &ok), Err(ReplyError::NotOurs));
        assert_eq!(
            check_reply(SECRET, &req, &ok[..10]),
            Err(ReplyError::Malformed)
        );
    }
}
