//! What the authentication flow needs from PAM, as a trait: libpam implements it in
//! `libpam.rs`, and tests script it without libpam.

use pam::constants::PamResultCode;
use zeroize::Zeroizing;

/// Secret bytes (a password or an OTP) that are wiped when dropped.
pub type Secret = Zeroizing<Vec<u8>>;

/// Syslog priorities the module uses (the facility is libpam's: authpriv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Err,
    Warning,
    Info,
    Debug,
}

impl Priority {
    pub fn as_raw(self) -> libc::c_int {
        match self {
            Self::Err => libc::LOG_ERR,
            Self::Warning => libc::LOG_WARNING,
            Self::Info => libc::LOG_INFO,
            Self::Debug => libc::LOG_DEBUG,
        }
    }
}

pub trait PamHandler {
    /// PAM_USER, asking the application for it if unset.
    fn get_user(&mut self) -> Result<String, PamResultCode>;
    /// PAM_SERVICE, used as the NAS-Identifier when none is configured.
    fn service(&mut self) -> Option<String>;
    /// PAM_AUTHTOK as an earlier module left it; `None` when unset or empty.
    fn get_authtok(&mut self) -> Result<Option<Secret>, PamResultCode>;
    /// Sets PAM_AUTHTOK so later modules in the stack can use the password.
    fn set_authtok(&mut self, token: &[u8]) -> Result<(), PamResultCode>;
    /// Asks with echo off; `None` when the application gave no answer.
    fn prompt_echo_off(&mut self, msg: &str) -> Result<Option<Secret>, PamResultCode>;
    /// PAM_TEXT_INFO.
    fn info(&mut self, msg: &str);
    /// PAM_ERROR_MSG.
    fn error(&mut self, msg: &str);
    fn syslog(&mut self, priority: Priority, msg: &str);
}
