//! Shared harness for the integration tests: start the real binaries on temp folders and
//! free loopback ports, poll for readiness with a deadline, stop them on drop.

pub mod daemon;
pub mod freeradius;
pub mod http;
pub mod radius;
pub mod token;
