//! otpd: every socket of the product lives here — the admin socket, RADIUS over UDP, HTTP —
//! and the mail sender. The decisions are in `otpd-core`; [`ops::Ops`] is the bridge.

pub mod access;
pub mod admin_session;
pub mod admin_socket;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod limit;
pub mod log;
pub mod mail;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod radius;
pub mod schedule;
