//! The admin protocol: one request line as the admin socket reads it
//! (`serde_json::from_slice::<AdminRequest>`), then `Service::execute` on a scratch store.
//! Nothing panics; a request that parses serialises back to a line that parses to the same
//! request (otpctl and otpd agree); every answer serialises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_core::admin::{AdminFailure, AdminReply, AdminRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<AdminRequest>(data) else {
        return;
    };
    let line = serde_json::to_vec(&req).expect("a request serialises");
    let back: AdminRequest = serde_json::from_slice(&line).expect("a serialised request parses");
    assert_eq!(
        serde_json::to_vec(&back).expect("serialises"),
        line,
        "round trip changed the request"
    );
    let s = otpd_fuzz::scratch();
    let reply: AdminReply = s
        .service
        .execute(&req, otpd_fuzz::now())
        .map_err(AdminFailure::from);
    serde_json::to_vec(&reply).expect("a reply serialises");
    otpd_fuzz::keep_small(&s.service);
});
