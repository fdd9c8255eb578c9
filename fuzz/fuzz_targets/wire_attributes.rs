//! The `radius_wire` readers on arbitrary bytes: nothing panics; the attributes found tile the
//! packet exactly unless a framing fault is reported; a Message-Authenticator found lies
//! inside the packet and verifies once signed; a User-Password of a valid size unhides to a
//! password that hides and unhides back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use radius_wire::attr::USER_PASSWORD;
use radius_wire::HEADER_LEN;

const SECRET: &[u8] = b"fuzz-shared-secret-0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(p) = radius_wire::packet(data) else {
        return;
    };
    let mut end = HEADER_LEN;
    let mut fault = false;
    for a in radius_wire::attributes(p) {
        match a {
            Ok(a) => {
                assert!(!fault, "nothing after a fault");
                assert_eq!(a.offset, end, "attributes follow each other");
                end += a.value.len() + 2;
            }
            Err(_) => fault = true,
        }
    }
    assert!(fault || end == p.len(), "attributes tile the packet");
    assert_eq!(fault, radius_wire::parse_attributes(p).is_err());

    if let Ok(Some(offset)) = radius_wire::parse_attributes(p).and_then(|a| radius_wire::find_message_authenticator(&a)) {
        assert!(offset + 16 <= p.len(), "Message-Authenticator inside");
        let mut signed = p.to_vec();
        radius_wire::sign_message_authenticator(&mut signed, offset, SECRET);
        assert!(radius_wire::verify_message_authenticator(
            &signed, offset, SECRET
        ));
    }

    let auth = radius_wire::authenticator(p).expect("a packet has a header");
    for a in radius_wire::attributes(p).map_while(Result::ok) {
        if a.typ != USER_PASSWORD {
            continue;
        }
        if let Ok(plain) = radius_wire::unhide_password(a.value, SECRET, &auth) {
            let hidden = radius_wire::hide_password(&plain, SECRET, &auth).expect("fits");
            let again = radius_wire::unhide_password(&hidden, SECRET, &auth).expect("valid");
            assert_eq!(&again[..], &plain[..]);
        }
    }
});
