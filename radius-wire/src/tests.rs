//! Known answers from RFC 2865 §7.1 and FreeRADIUS, then round trips and properties.

use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The Message-Authenticator's offset in a whole packet: its attributes parsed, then found.
fn ma_of(packet: &[u8]) -> Result<Option<usize>, Error> {
    find_message_authenticator(&parse_attributes(packet)?)
}

fn auth(s: &str) -> Authenticator {
    hex(s).try_into().expect("16 octets")
}

const RFC_SECRET: &[u8] = b"xyzzy5461";
const RFC_REQUEST_AUTH: &str = "0f403f9473978057bd83d5cb98f4227a";

/// RFC 2865 §7.1: nemo / arctangent from NAS 192.168.1.16 port 3.
const RFC_REQUEST: &str = "01000038 0f403f9473978057bd83d5cb98f4227a
    01066e656d6f 02120dbe708d93d413ce3196e43f782a0aee 0406c0a80110 050600000003";
/// RFC 2865 §7.1: its Access-Accept (Service-Type, Login-Service, Login-IP-Host).
const RFC_ACCEPT: &str = "02000026 86fe220e7624ba2a1005f6bf9b55e0b2
    060600000001 0f0600000000 0e06c0a80103";

/// An Access-Request written by FreeRADIUS's `radclient` (secret xyzzy5461; User-Name nemo,
/// User-Password arctangent, NAS-Identifier gw, Message-Authenticator last).
const RADCLIENT_REQUEST: &str = "01910042 175e57bea08b30b1270495fd0a7288e1
    01066e656d6f 021237a6b423b0e739e595d2c5ba57d38f6e 20046777
    5012eca989642867a0f091888305676e2b6f";
/// An Access-Accept to it written with Python's hmac/hashlib, which `radclient` accepted
/// (it checks both authenticators): Message-Authenticator, Reply-Message "Welcome".
const RADCLIENT_ACCEPT: &str = "0291002f 8d1c57b5dfada237eb24e10e58fb2a14
    5012b9753fc235746c616d8600c94ac35ec7 120957656c636f6d65";

#[test]
fn hmac_md5_matches_rfc2104_vectors() {
    assert_eq!(
        message_authenticator(b"Hi There", &[0x0b; 16]).to_vec(),
        hex("9294727a3638bb1c13f48ef8158bfc9d")
    );
    assert_eq!(
        message_authenticator(b"what do ya want for nothing?", b"Jefe").to_vec(),
        hex("750c783e6ab0b503eaa86e310a5db738")
    );
}

#[test]
fn user_password_of_rfc2865_section_7_1_is_unhidden() {
    let request = hex(RFC_REQUEST);
    let request = packet(&request).expect("a packet");
    let attrs = parse_attributes(request).expect("framed");
    let types: Vec<u8> = attrs.iter().map(|a| a.typ).collect();
    assert_eq!(types, [attr::USER_NAME, attr::USER_PASSWORD, 4, 5]);
    assert_eq!(attrs[0].value, b"nemo");
    assert_eq!(attrs[1].offset, 26);
    let authenticator = authenticator(request).expect("header");
    let plain = unhide_password(attrs[1].value, RFC_SECRET, &authenticator).expect("unhidden");
    assert_eq!(&plain[..], b"arctangent");
}

#[test]
fn access_accept_of_rfc2865_section_7_1_is_reproduced() {
    let accept = hex(RFC_ACCEPT);
    let request_auth = auth(RFC_REQUEST_AUTH);
    assert!(verify_response_authenticator(
        &accept,
        &request_auth,
        RFC_SECRET
    ));
    assert!(!verify_response_authenticator(
        &accept,
        &request_auth,
        b"xyzzy5462"
    ));
    assert!(!verify_response_authenticator(
        &accept, &[0; 16], RFC_SECRET
    ));

    let mut w = Writer::new(code::ACCESS_ACCEPT, 0, &request_auth);
    w.push(6, &[0, 0, 0, 1]).expect("Service-Type Login-User");
    w.push(15, &[0, 0, 0, 0]).expect("Login-Service Telnet");
    w.push(14, &[0xc0, 0xa8, 0x01, 0x03])
        .expect("Login-IP-Host");
    assert_eq!(w.finish_reply(RFC_SECRET).expect("written"), accept);
}

#[test]
fn message_authenticator_of_radclient_request_verifies() {
    let request = hex(RADCLIENT_REQUEST);
    let offset = ma_of(&request).expect("framed").expect("present");
    assert_eq!(offset, request.len() - 16);
    assert!(verify_message_authenticator(&request, offset, RFC_SECRET));
    assert!(!verify_message_authenticator(
        &request,
        offset,
        b"xyzzy5462"
    ));
    let mut resigned = request.clone();
    sign_message_authenticator(&mut resigned, offset, RFC_SECRET);
    assert_eq!(resigned, request);

    let attrs = parse_attributes(&request).expect("framed");
    let authenticator = authenticator(&request).expect("header");
    let plain = unhide_password(attrs[1].value, RFC_SECRET, &authenticator).expect("unhidden");
    assert_eq!(&plain[..], b"arctangent");
}

#[test]
fn reply_message_authenticator_uses_the_request_authenticator() {
    let request = hex(RADCLIENT_REQUEST);
    let request_auth = authenticator(&request).expect("header");
    let accept = hex(RADCLIENT_ACCEPT);
    let offset = ma_of(&accept).expect("framed").expect("present");
    assert_eq!(offset, 22);
    assert!(verify_reply_message_authenticator(
        &accept,
        offset,
        &request_auth,
        RFC_SECRET
    ));
    // Over the reply's own header it does not verify.
    assert!(!verify_message_authenticator(&accept, offset, RFC_SECRET));
    assert!(verify_response_authenticator(
        &accept,
        &request_auth,
        RFC_SECRET
    ));

    let mut w = Writer::new(code::ACCESS_ACCEPT, request[1], &request_auth);
    w.push_message_authenticator();
    w.push(attr::REPLY_MESSAGE, b"Welcome").expect("attribute");
    assert_eq!(w.finish_reply(RFC_SECRET).expect("written"), accept);
}

#[test]
fn access_request_layout_and_message_authenticator_known_answer() {
    // The PAM module's request for nemo / arctangent, id 0x2a; the Message-Authenticator
    // was computed with Python's hmac/hashlib over this exact packet.
    let request_auth = auth(RFC_REQUEST_AUTH);
    let mut w = Writer::new(code::ACCESS_REQUEST, 0x2a, &request_auth);
    w.push_message_authenticator();
    w.push(attr::USER_NAME, b"nemo").expect("attribute");
    let hidden = hide_password(b"arctangent", RFC_SECRET, &request_auth).expect("fits");
    w.push(attr::USER_PASSWORD, &hidden).expect("attribute");
    let expected = hex("012a003e 0f403f9473978057bd83d5cb98f4227a
         5012 da386e1473870e74358ce372774e1f25
         01066e656d6f
         0212 0dbe708d93d413ce3196e43f782a0aee");
    assert_eq!(w.finish_request(RFC_SECRET).expect("written"), expected);
}

#[test]
fn packet_checks_the_header_and_cuts_padding() {
    let request = hex(RFC_REQUEST);
    assert_eq!(packet(&request), Ok(&request[..]));
    let mut padded = request.clone();
    padded.extend_from_slice(&[0xff; 9]);
    assert_eq!(packet(&padded), Ok(&request[..]));
    assert_eq!(
        packet(&request[..request.len() - 1]),
        Err(Error::LengthBeyondDatagram)
    );
    assert_eq!(packet(&request[..19]), Err(Error::ShortHeader));
    let mut short = request.clone();
    short[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(packet(&short), Err(Error::LengthOutOfRange));
    let mut long = vec![0u8; 4097];
    long[2..4].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(packet(&long), Err(Error::LengthOutOfRange));
    long.truncate(4096);
    long[2..4].copy_from_slice(&4096u16.to_be_bytes());
    assert!(packet(&long).is_ok());
}

#[test]
fn attribute_framing_faults_are_refused() {
    let header = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let with = |area: &[u8]| [&header[..], area].concat();
    assert_eq!(parse_attributes(&with(&[])), Ok(vec![]));
    assert_eq!(
        parse_attributes(&with(&[1])),
        Err(Error::TruncatedAttribute)
    );
    assert_eq!(
        parse_attributes(&with(&[1, 1])),
        Err(Error::AttributeLength)
    );
    assert_eq!(
        parse_attributes(&with(&[1, 4, b'a'])),
        Err(Error::AttributeLength)
    );
    // The fault is yielded once, after the good attributes before it.
    let p = with(&[1, 3, b'a', 2, 0, 9, 9]);
    let seen: Vec<_> = attributes(&p).collect();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1], Err(Error::AttributeLength));
    assert_eq!(
        attributes(&p).map_while(Result::ok).count(),
        1,
        "a lenient reader stops at the fault"
    );
    // An empty value is well framed.
    assert_eq!(
        parse_attributes(&with(&[24, 2])).expect("framed")[0].value,
        b""
    );
}

#[test]
fn message_authenticator_must_be_single_and_16_octets() {
    let mut w = Writer::new(code::ACCESS_REQUEST, 1, &[7; 16]);
    w.push_message_authenticator();
    w.push_message_authenticator();
    let one = w.finish_request(b"s").expect("written");
    assert_eq!(one.len(), HEADER_LEN + MESSAGE_AUTHENTICATOR_ATTR_LEN);
    assert_eq!(ma_of(&one), Ok(Some(22)));
    let mut two = one.clone();
    two.extend_from_slice(&one[HEADER_LEN..]);
    assert_eq!(ma_of(&two), Err(Error::DuplicateMessageAuthenticator));
    let mut short = one[..HEADER_LEN].to_vec();
    push_attr(&mut short, attr::MESSAGE_AUTHENTICATOR, &[0; 4]).expect("attribute");
    assert_eq!(ma_of(&short), Err(Error::MessageAuthenticatorLength));
    assert_eq!(ma_of(&one[..HEADER_LEN]), Ok(None));
    assert!(!verify_message_authenticator(&one, one.len() - 15, b"s"));
    assert!(!verify_message_authenticator(&one, usize::MAX, b"s"));
}

#[test]
fn lengths_beyond_radius_are_refused() {
    let a = [1u8; 16];
    assert_eq!(
        hide_password(&[b'x'; 129], b"s", &a),
        Err(Error::PasswordTooLong)
    );
    assert_eq!(
        hide_password(&[b'x'; 128], b"s", &a).map(|h| h.len()),
        Ok(128)
    );
    assert_eq!(hide_password(b"", b"s", &a).map(|h| h.len()), Ok(16));
    assert_eq!(
        hide_password(&[b'x'; 17], b"s", &a).map(|h| h.len()),
        Ok(32)
    );
    for bad in [0, 15, 17, 144] {
        assert_eq!(
            unhide_password(&vec![0u8; bad], b"s", &a).map(|_| ()),
            Err(Error::HiddenPasswordLength),
            "{bad} octets"
        );
    }
    let mut out = Vec::new();
    assert_eq!(push_attr(&mut out, 18, &[0; 254]), Err(Error::ValueTooLong));
    assert!(out.is_empty());
    assert_eq!(push_attr(&mut out, 18, &[0; 253]), Ok(()));
    assert_eq!(out[1], 255);

    let mut w = Writer::new(code::ACCESS_ACCEPT, 1, &a);
    for _ in 0..15 {
        w.push(attr::PROXY_STATE, &[0; 253]).expect("attribute");
    }
    assert!(w.size() <= MAX_PACKET_LEN);
    let mut over = w.clone();
    w.push(attr::PROXY_STATE, &[0; 253]).expect("attribute");
    assert_eq!(w.finish_reply(b"s"), Err(Error::PacketTooLong));
    over.push(attr::PROXY_STATE, &[0; 249]).expect("attribute");
    assert_eq!(over.size(), MAX_PACKET_LEN);
    assert!(over.finish_reply(b"s").is_ok());
}

/// The request the client tests send: nemo / arctangent, id 0x2a, NAS-Identifier gw.
fn built_request() -> Vec<u8> {
    let mut b = RequestBuilder::access_request(0x2a, &auth(RFC_REQUEST_AUTH), RFC_SECRET);
    b.push(attr::USER_NAME, b"nemo")
        .and_then(|b| b.push_user_password(b"arctangent"))
        .and_then(|b| b.push(attr::NAS_IDENTIFIER, b"gw"))
        .expect("attributes");
    b.finish().expect("written")
}

#[test]
fn request_builder_puts_the_message_authenticator_first_and_hides_the_password() {
    // The same octets as written attribute by attribute (the known answer above).
    let a = auth(RFC_REQUEST_AUTH);
    let mut b = RequestBuilder::access_request(0x2a, &a, RFC_SECRET);
    b.push(attr::USER_NAME, b"nemo").expect("attribute");
    b.push_user_password(b"arctangent").expect("password");
    assert_eq!(b.size(), 0x3e);
    let mut w = Writer::new(code::ACCESS_REQUEST, 0x2a, &a);
    w.push_message_authenticator();
    w.push(attr::USER_NAME, b"nemo").expect("attribute");
    let hidden = hide_password(b"arctangent", RFC_SECRET, &a).expect("fits");
    w.push(attr::USER_PASSWORD, &hidden).expect("attribute");
    assert_eq!(b.finish(), w.finish_request(RFC_SECRET));

    let request = built_request();
    let attrs = parse_attributes(&request).expect("framed");
    let kinds: Vec<u8> = attrs.iter().map(|a| a.typ).collect();
    use attr::{MESSAGE_AUTHENTICATOR, NAS_IDENTIFIER, USER_NAME, USER_PASSWORD};
    assert_eq!(
        kinds,
        [
            MESSAGE_AUTHENTICATOR,
            USER_NAME,
            USER_PASSWORD,
            NAS_IDENTIFIER
        ]
    );
    assert!(verify_message_authenticator(
        &request,
        FIRST_MESSAGE_AUTHENTICATOR,
        RFC_SECRET
    ));
    let plain = unhide_password(attrs[2].value, RFC_SECRET, &auth(RFC_REQUEST_AUTH));
    assert_eq!(&plain.expect("unhidden")[..], b"arctangent");
}

#[test]
fn request_builder_hides_as_hide_password_and_refuses_what_radius_cannot_carry() {
    let a = [7u8; 16];
    for len in [0, 1, 15, 16, 17, 127, 128] {
        let password = vec![b'p'; len];
        let mut b = RequestBuilder::access_request(1, &a, b"s3cret");
        b.push_user_password(&password).expect("fits");
        let request = b.finish().expect("written");
        let attrs = parse_attributes(&request).expect("framed");
        let hidden = hide_password(&password, b"s3cret", &a).expect("fits");
        assert_eq!(attrs[1].value, &hidden[..], "password of {len} octets");
    }
    let mut b = RequestBuilder::new(code::STATUS_SERVER, 9, &a, b"s");
    assert_eq!(
        b.push_user_password(&[b'x'; 129]).err(),
        Some(Error::PasswordTooLong)
    );
    assert_eq!(b.push(attr::USER_NAME, b"").err(), Some(Error::EmptyValue));
    assert_eq!(
        b.push(attr::USER_NAME, &[b'x'; 254]).err(),
        Some(Error::ValueTooLong)
    );
    // Nothing refused was written: only the Message-Authenticator is there.
    assert_eq!(b.size(), HEADER_LEN + MESSAGE_AUTHENTICATOR_ATTR_LEN);
    let status = b.finish().expect("written");
    assert_eq!(status[0], code::STATUS_SERVER);
    let mut big = RequestBuilder::new(code::STATUS_SERVER, 9, &a, b"s");
    while big.size() <= MAX_PACKET_LEN {
        big.push(attr::REPLY_MESSAGE, &[b'x'; 253]).expect("fits");
    }
    assert_eq!(big.finish(), Err(Error::PacketTooLong));
}

/// A reply to [`built_request`] as a correct server writes it.
fn reply_to_built_request(code: u8, with_ma: bool) -> Vec<u8> {
    let mut w = Writer::new(code, 0x2a, &auth(RFC_REQUEST_AUTH));
    if with_ma {
        w.push_message_authenticator();
    }
    w.push(attr::REPLY_MESSAGE, b"Welcome").expect("attribute");
    w.push(attr::STATE, b"st").expect("attribute");
    w.finish_reply(RFC_SECRET).expect("written")
}

fn check(reply: &[u8], id: u8) -> Result<Reply<'_>, ReplyError> {
    verify_reply(&auth(RFC_REQUEST_AUTH), RFC_SECRET, reply, id)
}

#[test]
fn verify_reply_accepts_a_good_reply_and_shows_it() {
    let good = reply_to_built_request(code::ACCESS_CHALLENGE, true);
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 5]);
    for datagram in [&good, &padded] {
        let reply = check(datagram, 0x2a).expect("verified");
        assert_eq!(reply.code(), code::ACCESS_CHALLENGE);
        assert_eq!(reply.packet(), &good[..]);
        assert_eq!(reply.message_authenticator(), Some(22));
        assert!(reply.message_authenticator_first());
        assert_eq!(reply.get(attr::STATE), Some(&b"st"[..]));
        assert_eq!(reply.get(attr::USER_NAME), None);
        let kinds: Vec<u8> = reply.attributes().map(|a| a.typ).collect();
        assert_eq!(
            kinds,
            [
                attr::MESSAGE_AUTHENTICATOR,
                attr::REPLY_MESSAGE,
                attr::STATE
            ]
        );
        assert_eq!(reply.require_message_authenticator(), Ok(reply));
    }
    // The radclient-tested Access-Accept, and a reply without a Message-Authenticator.
    let request = hex(RADCLIENT_REQUEST);
    let accept = hex(RADCLIENT_ACCEPT);
    let reply = verify_reply(
        &authenticator(&request).expect("header"),
        RFC_SECRET,
        &accept,
        0x91,
    );
    assert_eq!(
        reply.map(|r| r.get(attr::REPLY_MESSAGE)),
        Ok(Some(&b"Welcome"[..]))
    );
    let plain = reply_to_built_request(code::ACCESS_REJECT, false);
    let reply = check(&plain, 0x2a).expect("verified");
    assert_eq!(reply.message_authenticator(), None);
    assert!(!reply.message_authenticator_first());
    assert_eq!(
        reply.require_message_authenticator(),
        Err(ReplyError::MissingMessageAuthenticator)
    );
}

#[test]
fn verify_reply_refuses_a_bad_message_authenticator() {
    let mut reply = reply_to_built_request(code::ACCESS_ACCEPT, true);
    reply[FIRST_MESSAGE_AUTHENTICATOR + 3] ^= 0x10;
    // The Response Authenticator over the changed octets is right: only the MA is wrong.
    sign_response(&mut reply, &auth(RFC_REQUEST_AUTH), RFC_SECRET);
    assert_eq!(
        check(&reply, 0x2a),
        Err(ReplyError::BadMessageAuthenticator)
    );
}

#[test]
fn verify_reply_refuses_a_bad_response_authenticator() {
    let good = reply_to_built_request(code::ACCESS_ACCEPT, true);
    let mut reply = good.clone();
    reply[7] ^= 0x01;
    assert_eq!(
        check(&reply, 0x2a),
        Err(ReplyError::BadResponseAuthenticator)
    );
    assert_eq!(
        verify_reply(&auth(RFC_REQUEST_AUTH), b"xyzzy5462", &good, 0x2a),
        Err(ReplyError::BadResponseAuthenticator)
    );
    // An answer to another request (another Request Authenticator), same identifier.
    assert_eq!(
        verify_reply(&[0; 16], RFC_SECRET, &good, 0x2a),
        Err(ReplyError::BadResponseAuthenticator)
    );
}

#[test]
fn verify_reply_refuses_a_wrong_identifier() {
    let reply = reply_to_built_request(code::ACCESS_ACCEPT, true);
    assert_eq!(check(&reply, 0x2b), Err(ReplyError::IdentifierMismatch));
}

#[test]
fn verify_reply_refuses_a_truncated_packet() {
    let reply = reply_to_built_request(code::ACCESS_ACCEPT, true);
    assert_eq!(
        check(&reply[..reply.len() - 1], 0x2a),
        Err(ReplyError::Malformed(Error::LengthBeyondDatagram))
    );
    assert_eq!(
        check(&reply[..HEADER_LEN - 1], 0x2a),
        Err(ReplyError::Malformed(Error::ShortHeader))
    );
}

#[test]
fn verify_reply_refuses_framing_at_once_and_ma_faults_after_the_signature() {
    // An attribute length of 1: refused as framing, whatever the authenticators say.
    let mut framing = reply_to_built_request(code::ACCESS_ACCEPT, true);
    let n = framing.len();
    framing[n - 3] = 1;
    assert_eq!(
        check(&framing, 0x2a),
        Err(ReplyError::Malformed(Error::AttributeLength))
    );
    // Two Message-Authenticators: refused as malformed once the Response Authenticator
    // passes, as a forgery before.
    let mut w = Writer::new(code::ACCESS_ACCEPT, 0x2a, &auth(RFC_REQUEST_AUTH));
    w.push_message_authenticator();
    w.push(attr::MESSAGE_AUTHENTICATOR, &[0; 16])
        .expect("attribute");
    let twice = w.finish_reply(RFC_SECRET).expect("written");
    assert_eq!(
        check(&twice, 0x2a),
        Err(ReplyError::Malformed(Error::DuplicateMessageAuthenticator))
    );
    assert_eq!(
        verify_reply(&auth(RFC_REQUEST_AUTH), b"other", &twice, 0x2a),
        Err(ReplyError::BadResponseAuthenticator)
    );
    assert_eq!(
        ReplyError::Malformed(Error::ShortHeader).to_string(),
        "malformed packet: short header"
    );
}

fn rfc_authenticator() -> Authenticator {
    auth(RFC_REQUEST_AUTH)
}

#[test]
fn pap_hiding_matches_rfc2865_section_7_1() {
    let hidden = hide_password(b"arctangent", RFC_SECRET, &rfc_authenticator()).expect("fits");
    assert_eq!(hidden, hex("0dbe708d93d413ce3196e43f782a0aee"));
}

#[test]
fn pap_hiding_chains_blocks_and_pads() {
    use md5::{Digest, Md5};
    let hide = |pw: &[u8], a: &Authenticator| hide_password(pw, RFC_SECRET, a).expect("fits");
    // 17 bytes need two blocks; the second block's pad is keyed by the first cipher block.
    let auth = rfc_authenticator();
    let hidden = hide(b"0123456789abcdefX", &auth);
    assert_eq!(hidden.len(), 32);
    let first = hide(b"0123456789abcdef", &auth);
    assert_eq!(hidden[..16], first[..]);
    let mut md5 = Md5::new();
    md5.update(RFC_SECRET);
    md5.update(&hidden[..16]);
    let pad = md5.finalize();
    let mut plain = [0u8; 16];
    plain[0] = b'X';
    let second: Vec<u8> = plain.iter().zip(pad.iter()).map(|(p, k)| p ^ k).collect();
    assert_eq!(hidden[16..], second[..]);
    // An empty password still occupies one block.
    assert_eq!(hide(b"", &auth).len(), 16);
    assert_eq!(hide(&[b'a'; 128], &auth).len(), 128);
    // The same second block, hidden on its own chained to the first cipher block.
    let chained: Authenticator = hidden[..16].try_into().expect("16 octets");
    hide_blocks(&mut plain, RFC_SECRET, &chained);
    assert_eq!(hidden[16..], plain[..]);
}

fn attribute() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..=MAX_ATTR_VALUE),
    )
}

proptest! {
    #[test]
    fn hidden_passwords_come_back(
        password in prop::collection::vec(1u8..=255, 0..=MAX_PASSWORD_LEN),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        a in any::<[u8; 16]>(),
    ) {
        let hidden = hide_password(&password, &secret, &a).expect("fits");
        prop_assert_eq!(hidden.len() % 16, 0);
        prop_assert!(!hidden.is_empty() && hidden.len() <= MAX_PASSWORD_LEN);
        let plain = unhide_password(&hidden, &secret, &a).expect("unhidden");
        prop_assert_eq!(&plain[..], &password[..]);
        let mut blocks = hidden.clone();
        unhide_blocks(&mut blocks, &secret, &a);
        hide_blocks(&mut blocks, &secret, &a);
        prop_assert_eq!(blocks, hidden);
    }

    #[test]
    fn written_replies_parse_back_and_authenticate(
        attrs in prop::collection::vec(attribute(), 0..12),
        code in any::<u8>(),
        id in any::<u8>(),
        a in any::<[u8; 16]>(),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        flip in any::<prop::sample::Index>(),
    ) {
        let mut w = Writer::new(code, id, &a);
        w.push_message_authenticator();
        for (typ, value) in &attrs {
            w.push(*typ, value).expect("attribute");
        }
        let reply = w.finish_reply(&secret).expect("written");
        prop_assert_eq!(packet(&reply), Ok(&reply[..]));
        let parsed = parse_attributes(&reply).expect("framed");
        prop_assert_eq!(parsed.len(), attrs.len() + 1);
        for (got, (typ, value)) in parsed[1..].iter().zip(&attrs) {
            prop_assert_eq!(got.typ, *typ);
            prop_assert_eq!(got.value, &value[..]);
        }
        let ma = ma_of(&reply);
        // A random attribute may be a second Message-Authenticator.
        if let Ok(Some(offset)) = ma {
            prop_assert_eq!(offset, 22);
            prop_assert!(verify_reply_message_authenticator(&reply, offset, &a, &secret));
        }
        prop_assert!(verify_response_authenticator(&reply, &a, &secret));
        let mut tampered = reply.clone();
        tampered[flip.index(reply.len())] ^= 0x01;
        prop_assert!(!verify_response_authenticator(&tampered, &a, &secret));
        prop_assert!(!verify_reply_message_authenticator(&tampered, 22, &a, &secret)
            || tampered[4..20] != reply[4..20]);
    }

    #[test]
    fn any_bytes_parse_or_are_refused_without_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(p) = packet(&bytes) {
            let mut end = HEADER_LEN;
            for a in attributes(p) {
                match a {
                    Ok(a) => {
                        prop_assert_eq!(a.offset, end);
                        end += a.value.len() + 2;
                    }
                    Err(_) => end = p.len() + 1,
                }
            }
            prop_assert!(end == p.len() || parse_attributes(p).is_err());
            let _ = ma_of(p);
        }
        let _ = parse_attributes(&bytes);
    }
}
