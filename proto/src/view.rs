//! The views of a user every interface shows.

use serde::{Deserialize, Serialize};

/// The state names every interface shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Unregistered,
    Issued,
    Provisioned,
    Active,
    Expired,
}

impl TokenState {
    pub fn name(self) -> &'static str {
        match self {
            TokenState::Unregistered => "unregistered",
            TokenState::Issued => "issued",
            TokenState::Provisioned => "provisioned",
            TokenState::Active => "active",
            TokenState::Expired => "expired",
        }
    }
}

/// What `otpctl user show --json` and the admin API print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub login_id: String,
    pub state: TokenState,
    pub locked: bool,
    pub failures: u32,
    /// Customer renewal over HTTP is locked (its failures count apart from logins).
    #[serde(default)]
    pub renewal_locked: bool,
    #[serde(default)]
    pub renewal_failures: u32,
    pub email: Option<String>,
    pub expires_at: Option<String>,
    pub renewal_available: bool,
    pub renewal_available_from: Option<String>,
    pub created_at: String,
}
