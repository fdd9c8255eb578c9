//! `pam_otpd.so`: a PAM module that authenticates users against otpd over RADIUS.
//!
//! The PAM glue is thin: the hooks build a [`libpam::LibPam`] handler and hand it to
//! [`flow`], which talks to otpd through the blocking client in [`client`].

pub mod client;
pub mod flow;
pub mod handler;
pub mod hooks;
pub mod libpam;
pub mod options;
pub mod packet;

use hooks::PamOtpd;
pam::pam_hooks!(PamOtpd);
