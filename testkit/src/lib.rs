//! The test kit of otpd's integration tests and bench: one [`daemon::Otpd`] with a builder
//! (temp folder, free loopback ports, one config template, readiness polled with a
//! deadline, stopped on drop), the real `otpctl`, and the outside world the daemon meets:
//! RADIUS clients and servers, PAM through pamtester, an SMTP relay, FreeRADIUS, RadSec,
//! oathtool, a browser, PostgreSQL.

pub mod cdp;
pub mod daemon;
pub mod fake_radius;
pub mod freeradius;
pub mod http;
pub mod oath;
pub mod pam;
pub mod paths;
pub mod postgres;
pub mod raddb;
pub mod radius;
pub mod radsec;
pub mod serial;
pub mod smtp;
pub mod token;
pub mod tools;
pub mod wait;
