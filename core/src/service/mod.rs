//! Every operation of the product, once: the admin socket, the HTTP API and RADIUS all call
//! these. Each method is synchronous (argon2 and the store are blocking) and takes `now`.
//! A method that changed anything has written it to the store but not yet made it durable:
//! the caller answers only after [`Store::when_durable`] (or `wait_durable`) reports success.
//!
//! One file per operation family: `admin` dispatches admin requests,
//! `accounts` adds, changes and deletes users, `pages` lists and backs them up page by page,
//! `issue` issues tokens, `menu` holds what the customer's OTP menu may do, `outbox` seals the issuance mail, `setup` is the customer's setup
//! through the link, `token` checks OTPs and starts, cancels or unlocks a token, `renew`
//! renews, and `login` answers logins.

use std::sync::Arc;

use crate::config::Config;
use crate::lifecycle::TokenPolicy;
use crate::lockout::LockPolicy;
use crate::otp::OtpParams;
use crate::password::{HashCaps, HashParams};
use crate::seal::Sealer;
use crate::store::{Store, Versioned};
use crate::user::{UserRecord, UserView};
use crate::{OpError, UnixTime};

mod accounts;
mod admin;
mod issue;
mod login;
mod menu;
mod outbox;
mod pages;
mod renew;
mod setup;
mod token;

pub use issue::link_hash;
pub use login::{LoginClass, LoginOutcome, RejectReason};
pub use menu::BY_MENU;
pub use outbox::{mask_email, MailJob, Notice, PendingMail};
pub use setup::SetupDone;

/// The product's operations over one store: it owns the store handle, the sealer of secrets
/// and mail, and the policies read from the configuration (OTP, lockout, password hashing,
/// token lifetimes), so every caller applies the same rules.
pub struct Service {
    store: Arc<dyn Store>,
    sealer: Sealer,
    service_id: String,
    otp: OtpParams,
    lock: LockPolicy,
    hash: HashParams,
    /// The most a stored password hash may cost (`[password] max_…`).
    caps: HashCaps,
    token: TokenPolicy,
    otp_required: bool,
    started_at: UnixTime,
    /// Verified against for unknown users, so their timing matches a real user's.
    dummy_hash: String,
}

impl Service {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        sealer: Sealer,
        now: UnixTime,
    ) -> Result<Self, OpError> {
        let hash = config.hash_params();
        let dummy_hash = hash
            .hash("otpd-dummy-password")
            .map_err(OpError::BadInput)?;
        Ok(Service {
            store,
            sealer,
            service_id: config.service_id.clone(),
            otp: config.otp_params(),
            lock: config.lock_policy(),
            hash,
            caps: config.hash_caps(),
            token: config.token_policy(),
            otp_required: config.otp.required,
            started_at: now,
            dummy_hash,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The argon2id parameters new password hashes get.
    pub fn hash_params(&self) -> HashParams {
        self.hash
    }

    /// The most a stored password hash may cost: over them it is refused, never run.
    pub fn hash_caps(&self) -> HashCaps {
        self.caps
    }

    pub fn otp_params(&self) -> OtpParams {
        self.otp
    }

    pub fn token_policy(&self) -> TokenPolicy {
        self.token
    }

    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// A key for `purpose`, derived from the key file's (the same on every node).
    pub fn derive_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.sealer.derive_key(purpose)
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Reads the user, lets `f` change it, and writes it back if it changed, retrying when
    /// another request changed the user meanwhile. The record as `f` left it is saved even
    /// when `f` returns an error, so failure counts stick.
    pub(crate) fn update<T>(
        &self,
        login_id: &str,
        f: impl FnMut(&mut UserRecord) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        self.update_from(login_id, None, f)
    }

    /// [`Service::update`] starting from a version the caller has just read, which saves a
    /// read when nobody changed the user meanwhile (the compare-and-swap still checks).
    fn update_from<T>(
        &self,
        login_id: &str,
        mut read: Option<Versioned<UserRecord>>,
        mut f: impl FnMut(&mut UserRecord) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        loop {
            let current = match read.take() {
                Some(v) => v,
                None => self
                    .store
                    .get_user(login_id)?
                    .ok_or_else(|| OpError::UnknownUser(login_id.into()))?,
            };
            let mut user = current.value.clone();
            let result = f(&mut user);
            if user == current.value
                || self
                    .store
                    .swap_user(login_id, Some(&current), Some(&user))?
            {
                return result;
            }
        }
    }

    fn get(&self, login_id: &str) -> Result<UserRecord, OpError> {
        Ok(self
            .store
            .get_user(login_id)?
            .ok_or_else(|| OpError::UnknownUser(login_id.into()))?
            .value)
    }

    fn hash_password(&self, password: &str) -> Result<String, OpError> {
        if password.is_empty() || password.len() > 120 {
            return Err(OpError::BadInput(
                "a password must be 1 to 120 bytes long".into(),
            ));
        }
        if password.contains(['\n', '\r', '\0']) {
            return Err(OpError::BadInput(
                "a password cannot contain line breaks or NUL".into(),
            ));
        }
        self.hash.hash(password).map_err(OpError::BadInput)
    }

    pub fn view(&self, u: &UserRecord, now: UnixTime) -> UserView {
        u.view(now, &self.token)
    }

    fn views(&self, users: &[UserRecord], now: UnixTime) -> Vec<UserView> {
        users.iter().map(|u| self.view(u, now)).collect()
    }
}

#[cfg(test)]
mod tests;
