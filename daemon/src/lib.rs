//! otpd library: the daemon's front doors, usable from tests and from `main`.

pub mod radius;
