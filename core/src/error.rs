//! The refusals an operation can answer with. Each has a stable snake_case code (shown by
//! otpctl --json and the HTTP API) and a sentence that tells the caller what to do.

use crate::UnixTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no such user {0:?}")]
    UnknownUser(String),
    #[error("login ID must be 1-64 characters of letters, digits, '.', '_', '-' or '@'")]
    BadLoginId,
    #[error("{0}")]
    BadInput(String),
    #[error("the token is {state}; {hint}")]
    WrongState {
        state: &'static str,
        hint: &'static str,
    },
    #[error("the one-time password is not valid")]
    BadOtp,
    #[error("this one-time password was already used; wait for the next one")]
    OtpReplayed,
    #[error("the user is locked after too many failures; an administrator can unlock it")]
    Locked,
    #[error("renewal is not yet available; it opens at {}", crate::rfc3339(*available_from))]
    RenewalNotYetAvailable { available_from: UnixTime },
    #[error("unknown setup link")]
    UnknownLink,
    #[error("this setup link was already used or has expired; ask for a new token issuance")]
    LinkGone,
    #[error(
        "too many wrong attempts; this setup link no longer works, ask for a new token issuance"
    )]
    LinkExhausted,
    #[error("service ID, user ID or activation password is wrong")]
    SetupRefused,
    #[error("storage failure: {0}")]
    Store(String),
}

impl OpError {
    /// The stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            OpError::UserExists(_) => "user_exists",
            OpError::UnknownUser(_) => "unknown_user",
            OpError::BadLoginId => "bad_login_id",
            OpError::BadInput(_) => "bad_input",
            OpError::WrongState { .. } => "wrong_state",
            OpError::BadOtp => "bad_otp",
            OpError::OtpReplayed => "otp_replayed",
            OpError::Locked => "locked",
            OpError::RenewalNotYetAvailable { .. } => "renewal_not_yet_available",
            OpError::UnknownLink => "unknown_link",
            OpError::LinkGone => "link_gone",
            OpError::LinkExhausted => "attempts_exhausted",
            OpError::SetupRefused => "setup_refused",
            OpError::Store(_) => "store_error",
        }
    }
}

impl From<crate::store::StoreError> for OpError {
    fn from(e: crate::store::StoreError) -> Self {
        OpError::Store(e.to_string())
    }
}
