//! The refusals an operation can answer with. Each is a [`Refusal`] (its stable snake_case
//! code, shown by otpctl --json and the HTTP API, and its status and sentences) and carries
//! a message that tells the caller what to do.

use crate::{Refusal, UnixTime};

/// Why an operation of the core was refused: the [`Refusal`] it shows outside, with the
/// details its message needs (which user, which state, when renewal opens).
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
    #[error("the setup link goes to the address registered with the bank ({registered}); to use another address, ask the bank")]
    EmailChangeRefused { registered: String },
    #[error("this step needs a session signed in with the one-time password")]
    OtpSessionRequired,
    #[error("a token issuance is under way; without a one-time password it can be replaced or cancelled from {}", crate::rfc3339(*until))]
    PendingSetupProtected { until: UnixTime },
}

impl OpError {
    /// The refusal this error is, as the outside sees it.
    pub fn refusal(&self) -> Refusal {
        match self {
            OpError::UserExists(_) => Refusal::UserExists,
            OpError::UnknownUser(_) => Refusal::UnknownUser,
            OpError::BadLoginId => Refusal::BadLoginId,
            OpError::BadInput(_) => Refusal::BadInput,
            OpError::WrongState { .. } => Refusal::WrongState,
            OpError::BadOtp => Refusal::BadOtp,
            OpError::OtpReplayed => Refusal::OtpReplayed,
            OpError::Locked => Refusal::Locked,
            OpError::RenewalNotYetAvailable { .. } => Refusal::RenewalNotYetAvailable,
            OpError::UnknownLink => Refusal::UnknownLink,
            OpError::LinkGone => Refusal::LinkGone,
            OpError::LinkExhausted => Refusal::AttemptsExhausted,
            OpError::SetupRefused => Refusal::SetupRefused,
            OpError::Store(_) => Refusal::StoreError,
            OpError::EmailChangeRefused { .. } => Refusal::EmailChangeRefused,
            OpError::OtpSessionRequired => Refusal::OtpSessionRequired,
            OpError::PendingSetupProtected { .. } => Refusal::PendingSetupProtected,
        }
    }

    /// The stable machine-readable reason: the code of [`OpError::refusal`].
    pub fn code(&self) -> &'static str {
        self.refusal().as_str()
    }
}

impl From<crate::store::StoreError> for OpError {
    fn from(e: crate::store::StoreError) -> Self {
        OpError::Store(e.to_string())
    }
}
