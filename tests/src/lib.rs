//! Shared harness for the integration tests: start the real binaries on temp folders and
//! free loopback ports, poll for readiness with a deadline, stop them on drop; talk to them
//! like their users do, and drive the outside tools (SMTP relay, oathtool, a browser).

pub mod cdp;
pub mod daemon;
pub mod freeradius;
pub mod harness;
pub mod http;
pub mod pam;
pub mod radius;
pub mod radsec;
pub mod smtp;
pub mod token;
pub mod tools;
