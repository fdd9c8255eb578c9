//! otpd's decisions, with no sockets and no async runtime: users and their passwords,
//! the token lifecycle, the OTP check with replay refusal, lockout, renewal rules, and the
//! store they live in. Time is always passed in (`now`), never read here.

pub mod admin;
mod cold;
pub mod config;
pub mod customer;
pub mod error;
pub mod import;
pub mod lifecycle;
pub mod lockout;
pub mod otp;
pub mod password;
pub mod refusal;
pub mod seal;
pub mod service;
pub mod store;
pub mod user;

pub use error::OpError;
pub use refusal::Refusal;
pub use service::Service;

/// Seconds since the Unix epoch: the one time unit the core speaks.
pub type UnixTime = i64;

/// Formats a [`UnixTime`] as RFC 3339 (UTC), the form every interface shows.
pub fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
