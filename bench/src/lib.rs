//! Benchmark tooling for otpd: the bench users every tool derives the same way
//! ([`users`]), the Access-Request codec of the load generator ([`radius`]), the load
//! generator itself ([`loadgen`]), the password sprayer ([`spray`]) and latency statistics
//! ([`stats`]). The binaries are thin: `otpd-loadgen` drives a RADIUS server (or sprays
//! it), `otpd-bench-seed` fills a stopped otpd's store, `otpd-bench` runs the side-by-side
//! comparison with FreeRADIUS ([`harness`] starts both) and two otpd nodes on one
//! PostgreSQL ([`postgres`] starts the private cluster).

pub mod harness;
pub mod loadgen;
pub mod postgres;
pub mod radius;
pub mod spray;
pub mod stats;
pub mod users;
