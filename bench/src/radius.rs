//! The little of RADIUS the load generator speaks, on `radius_wire`: it builds PAP
//! Access-Requests with a Message-Authenticator as the first attribute and checks a reply's
//! Response Authenticator and, when present, its Message-Authenticator. Written on the
//! primitives rather than with the `radius` crate so the attribute order is ours.

use radius_wire::{attr, ReplyError as WireError, RequestBuilder, HEADER_LEN};

pub use radius_wire::code::{ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, ACCESS_REQUEST};
/// RFC 2865 §5.2: a hidden password is at most 128 bytes.
pub use radius_wire::MAX_PASSWORD_LEN as MAX_PASSWORD;

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
    let mut b = RequestBuilder::access_request(id, &authenticator, secret);
    b.push(attr::USER_NAME, user_name.as_bytes())
        .map_err(|_| BuildError::AttributeTooLong)?;
    b.push_user_password(password)
        .map_err(|_| BuildError::PasswordTooLong)?;
    b.push(attr::NAS_IDENTIFIER, nas_identifier.as_bytes())
        .map_err(|_| BuildError::AttributeTooLong)?;
    Ok(Request {
        bytes: b.finish().map_err(|_| BuildError::AttributeTooLong)?,
        id,
        authenticator,
    })
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
    // Another identifier is a late answer, whatever else is wrong with it.
    if reply.len() >= HEADER_LEN && reply[1] != request.id {
        return Err(ReplyError::NotOurs);
    }
    match radius_wire::verify_reply(&request.authenticator, secret, reply, request.id) {
        Ok(r) => Ok(Reply {
            code: r.code(),
            message_authenticator: r.message_authenticator().is_some(),
            message_authenticator_first: r.message_authenticator_first(),
        }),
        Err(WireError::IdentifierMismatch) => Err(ReplyError::NotOurs),
        // An answer to an earlier request with the same identifier fails here too.
        Err(WireError::BadResponseAuthenticator) => Err(ReplyError::BadResponseAuthenticator),
        Err(WireError::BadMessageAuthenticator) => Err(ReplyError::BadMessageAuthenticator),
        Err(WireError::Malformed(_) | WireError::MissingMessageAuthenticator) => {
            Err(ReplyError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radius::core::code::Code;
    use radius::core::packet::Packet;
    use radius::core::rfc2865;
    use radius_wire::attr::MESSAGE_AUTHENTICATOR;
    use radius_wire::Writer;
    use radius_wire::{message_authenticator, HEADER_LEN as HEADER};

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
            message_authenticator(&zeroed, SECRET),
            req.bytes[HEADER + 2..HEADER + 18]
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([req.bytes[2], req.bytes[3]])),
            req.bytes.len()
        );
    }

    fn reply_to(req: &Request, code: u8, with_ma: bool) -> Vec<u8> {
        let mut b = Writer::new(code, req.id, &req.authenticator);
        if with_ma {
            b.push_message_authenticator();
        }
        b.push(attr::REPLY_MESSAGE, b"ok").expect("attribute");
        b.finish_reply(SECRET).expect("reply")
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
