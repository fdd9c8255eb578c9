//! Helpers for the integration tests: start the real binaries, talk to them like their
//! users do, and drive the outside tools (SMTP relay, oathtool, a browser).

pub mod harness;
pub mod http;
pub mod smtp;
pub mod tools;
