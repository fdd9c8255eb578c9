//! Every operation of the product, once: the admin socket, the HTTP API and RADIUS all call
//! these. Each method is synchronous (argon2 and the store are blocking) and takes `now`.
//! A method that changed anything has written it to the store but not yet made it durable:
//! the caller answers only after [`Store::when_durable`] (or `wait_durable`) reports success.

use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::admin::{AdminData, AdminRequest, BackupCursor, BackupRow, StatusView, MAX_PAGE};
use crate::config::Config;
use crate::lifecycle::{Token, TokenPolicy, TokenState};
use crate::lockout::{LockPolicy, LockState};
use crate::otp::{OtpParams, OtpRefusal};
use crate::password::{self, HashParams};
use crate::seal::{hex, Sealed, Sealer};
use crate::store::{Store, Versioned};
use crate::user::{check_email, check_login_id, UserRecord, UserView};
use crate::{rfc3339, OpError, UnixTime};

/// Why a login was refused; the names appear in audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownUser,
    BadPassword,
    BadOtp,
    OtpReplayed,
    Locked,
    OtpRequired,
    Expired,
    Store,
}

impl RejectReason {
    pub fn name(self) -> &'static str {
        match self {
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::BadPassword => "bad_password",
            RejectReason::BadOtp => "bad_otp",
            RejectReason::OtpReplayed => "otp_replayed",
            RejectReason::Locked => "locked",
            RejectReason::OtpRequired => "otp_required",
            RejectReason::Expired => "expired",
            RejectReason::Store => "store_error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Accept {
        with_otp: bool,
    },
    /// The password is proven; the one-time password is still needed.
    NeedOtp,
    Reject(RejectReason),
}

/// What the customer receives at initial setup, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    pub otpauth_uri: String,
    pub secret: String,
    pub period: u64,
    pub digits: usize,
    pub algorithm: String,
    pub issuer: String,
    pub account: String,
    pub expires_at: String,
    /// When the token app should start offering 有効期限更新 (`renewal_window_days` before).
    pub renewal_available_from: String,
}

/// An issuance e-mail waiting in the outbox. Sealed at rest: it carries the link code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailJob {
    pub to: String,
    pub login_id: String,
    pub code: String,
    pub link_expires_at: UnixTime,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_try_at: UnixTime,
    /// When the issuance queued it (0 in messages queued by older versions).
    #[serde(default)]
    pub queued_at: UnixTime,
}

/// An outbox entry: its id, and the job or why it cannot be opened.
pub type PendingMail = (u64, Result<MailJob, String>);

const OUTBOX_AAD: &str = "outbox";

pub struct Service {
    store: Arc<dyn Store>,
    sealer: Sealer,
    service_id: String,
    otp: OtpParams,
    lock: LockPolicy,
    hash: HashParams,
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
            token: config.token_policy(),
            otp_required: config.otp.required,
            started_at: now,
            dummy_hash,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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

    // ---- administration -------------------------------------------------------------

    /// Runs one admin request. Mail for an issuance is queued in the outbox.
    pub fn execute(&self, req: &AdminRequest, now: UnixTime) -> Result<AdminData, OpError> {
        match req {
            AdminRequest::Status => Ok(AdminData::Status(self.status(now)?)),
            AdminRequest::UserAdd { login_id, password } => Ok(AdminData::User(self.add_user(
                login_id,
                password.expose(),
                now,
            )?)),
            AdminRequest::UserPasswd { login_id, password } => Ok(AdminData::User(
                self.set_password(login_id, password.expose(), now)?,
            )),
            AdminRequest::UserShow { login_id } => {
                Ok(AdminData::User(self.view(&self.get(login_id)?, now)))
            }
            AdminRequest::UserList => Ok(AdminData::Users {
                users: self.list(now)?,
            }),
            AdminRequest::UserDelete { login_id } => {
                self.delete_user(login_id)?;
                Ok(AdminData::Deleted {
                    login_id: login_id.clone(),
                })
            }
            AdminRequest::TokenIssue {
                login_id,
                email,
                activation_password,
            } => {
                let (user, link_expires_at) =
                    self.issue(login_id, email, activation_password.expose(), now)?;
                Ok(AdminData::Issued {
                    user,
                    link_expires_at: rfc3339(link_expires_at),
                })
            }
            AdminRequest::TokenActivate { login_id, otp } => Ok(AdminData::User(self.activate(
                login_id,
                otp.expose(),
                now,
            )?)),
            AdminRequest::TokenCancel { login_id } => {
                Ok(AdminData::User(self.cancel(login_id, now)?))
            }
            AdminRequest::TokenRenew { login_id } => {
                Ok(AdminData::User(self.renew_by_admin(login_id, now)?))
            }
            AdminRequest::TokenUnlock { login_id } => {
                Ok(AdminData::User(self.unlock(login_id, now)?))
            }
            AdminRequest::UserImport { users } => Ok(AdminData::Imported {
                count: self.import(users, now)?,
            }),
            AdminRequest::Backup => Ok(AdminData::Backup {
                rows: self.backup()?,
            }),
            AdminRequest::UserPage { after, limit } => {
                let users = self.list_page(after.as_deref(), *limit, now)?;
                let next = next_cursor(&users, *limit, |u| u.login_id.clone());
                Ok(AdminData::UserPage { users, next })
            }
            AdminRequest::BackupPage { after, limit } => {
                let rows = self.backup_page(after.as_ref(), *limit)?;
                let next = next_cursor(&rows, *limit, |r| BackupCursor {
                    tree: r.tree.clone(),
                    key: r.key.clone(),
                });
                Ok(AdminData::BackupPage { rows, next })
            }
            AdminRequest::ImportBegin
            | AdminRequest::ImportBatch { .. }
            | AdminRequest::ImportCommit => Err(OpError::BadInput(
                "a staged import is answered only on the admin socket; send the rows with user_import"
                    .into(),
            )),
        }
    }

    pub fn status(&self, now: UnixTime) -> Result<StatusView, OpError> {
        let mut by_state = std::collections::BTreeMap::new();
        for s in [
            TokenState::Unregistered,
            TokenState::Issued,
            TokenState::Provisioned,
            TokenState::Active,
            TokenState::Expired,
        ] {
            by_state.insert(s.name().to_string(), 0usize);
        }
        let (mut users, mut locked) = (0, 0);
        // Page by page: a million users are counted without holding them all at once.
        let mut after: Option<String> = None;
        loop {
            let page = self.store.users_after(after.as_deref(), MAX_PAGE)?;
            for u in &page {
                *by_state
                    .entry(u.token.state(now).name().to_string())
                    .or_default() += 1;
                locked += usize::from(u.lock.is_locked(now));
            }
            users += page.len();
            match page.last() {
                Some(last) if page.len() == MAX_PAGE => after = Some(last.login_id.clone()),
                _ => break,
            }
        }
        Ok(StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: u64::try_from(now - self.started_at).unwrap_or(0),
            users,
            by_state,
            locked,
            mail_queued: self.store.outbox()?.len(),
            store_bytes: self.store.size_on_disk(),
        })
    }

    pub fn add_user(
        &self,
        login_id: &str,
        password: &str,
        now: UnixTime,
    ) -> Result<UserView, OpError> {
        check_login_id(login_id)?;
        let user = UserRecord {
            login_id: login_id.into(),
            password_hash: self.hash_password(password)?,
            email: None,
            created_at: now,
            token: Token::Unregistered,
            lock: LockState::default(),
            renew_lock: LockState::default(),
            session_generation: 0,
        };
        if self.store.swap_user(login_id, None, Some(&user))? {
            Ok(self.view(&user, now))
        } else {
            Err(OpError::UserExists(login_id.into()))
        }
    }

    /// Up to `limit` users (at most [`MAX_PAGE`]) after `after`, in login-ID order.
    pub fn list_page(
        &self,
        after: Option<&str>,
        limit: usize,
        now: UnixTime,
    ) -> Result<Vec<UserView>, OpError> {
        Ok(self.views(
            &self.store.users_after(after, limit.clamp(1, MAX_PAGE))?,
            now,
        ))
    }

    /// Up to `limit` backup records (at most [`MAX_PAGE`]) after `after`.
    pub fn backup_page(
        &self,
        after: Option<&BackupCursor>,
        limit: usize,
    ) -> Result<Vec<BackupRow>, OpError> {
        let key =
            match after {
                Some(c) => Some(crate::seal::unhex(&c.key).ok_or_else(|| {
                    OpError::BadInput("the backup cursor's key is not hex".into())
                })?),
                None => None,
            };
        let after = after.zip(key.as_deref()).map(|(c, k)| (c.tree.as_str(), k));
        Ok(backup_rows(
            self.store.export_after(after, limit.clamp(1, MAX_PAGE))?,
        ))
    }

    pub fn backup(&self) -> Result<Vec<BackupRow>, OpError> {
        Ok(backup_rows(self.store.export()?))
    }

    fn views(&self, users: &[UserRecord], now: UnixTime) -> Vec<UserView> {
        users.iter().map(|u| self.view(u, now)).collect()
    }

    /// Replaces a legacy or outdated hash once the password was proven; true if it did.
    fn upgrade_hash(&self, user: &UserRecord, password: &str) -> bool {
        if !self.hash.needs_rehash(&user.password_hash) {
            return false;
        }
        let Ok(new_hash) = self.hash.hash(password) else {
            return false;
        };
        let old = user.password_hash.clone();
        let _ = self.update(&user.login_id, |u| {
            if u.password_hash == old {
                u.password_hash = new_hash.clone();
            }
            Ok(())
        });
        true
    }

    pub fn set_password(
        &self,
        login_id: &str,
        password: &str,
        now: UnixTime,
    ) -> Result<UserView, OpError> {
        let hash = self.hash_password(password)?;
        self.update(login_id, |u| {
            u.password_hash = hash.clone();
            Ok(self.view(u, now))
        })
    }

    pub fn list(&self, now: UnixTime) -> Result<Vec<UserView>, OpError> {
        Ok(self.views(&self.store.users()?, now))
    }

    pub fn delete_user(&self, login_id: &str) -> Result<(), OpError> {
        loop {
            let current = self
                .store
                .get_user(login_id)?
                .ok_or_else(|| OpError::UnknownUser(login_id.into()))?;
            if self.store.swap_user(login_id, Some(&current), None)? {
                if let Token::Issued { link, .. } = &current.value.token {
                    self.store.set_link_owner(&link.hash, None)?;
                }
                return Ok(());
            }
        }
    }

    /// トークン発行: stores the activation password's hash, a fresh sealed secret and the
    /// link's hash, and queues the e-mail. Returns the user and the link's expiry.
    pub fn issue(
        &self,
        login_id: &str,
        email: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<(UserView, UnixTime), OpError> {
        check_email(email)?;
        if activation_password.chars().count() < 4 {
            return Err(OpError::BadInput(
                "the activation password needs at least 4 characters".into(),
            ));
        }
        let activation_hash = self.hash_password(activation_password)?;
        let mut secret = Zeroizing::new(vec![0u8; self.otp.algorithm.secret_len()]);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let sealed = self.sealer.seal(login_id, &secret);
        let code = new_link_code();
        let link_hash = link_hash(&code);
        let mut old_link = None;
        let (view, link_expires_at) = self.update(login_id, |u| {
            let token = u.token.issue(
                sealed.clone(),
                activation_hash.clone(),
                link_hash.clone(),
                now,
                &self.token,
            )?;
            if let Token::Issued { link, .. } = &u.token {
                old_link = Some(link.hash.clone());
            }
            let expires = match &token {
                Token::Issued { link, .. } => link.expires_at,
                _ => now,
            };
            u.token = token;
            u.email = Some(email.to_string());
            u.lock.unlock();
            Ok((self.view(u, now), expires))
        })?;
        if let Some(old) = old_link {
            self.store.set_link_owner(&old, None)?;
        }
        self.store.set_link_owner(&link_hash, Some(login_id))?;
        let job = MailJob {
            to: email.into(),
            login_id: login_id.into(),
            code: code.to_string(),
            link_expires_at,
            attempts: 0,
            next_try_at: now,
            queued_at: now,
        };
        self.queue_mail(&job)?;
        Ok((view, link_expires_at))
    }

    fn queue_mail(&self, job: &MailJob) -> Result<u64, OpError> {
        Ok(self.store.outbox_push(&self.seal_mail(job)?)?)
    }

    fn seal_mail(&self, job: &MailJob) -> Result<Vec<u8>, OpError> {
        let plain =
            Zeroizing::new(serde_json::to_vec(job).map_err(|e| OpError::Store(e.to_string()))?);
        serde_json::to_vec(&self.sealer.seal(OUTBOX_AAD, &plain))
            .map_err(|e| OpError::Store(e.to_string()))
    }

    /// The outbox, opened: (id, job). Entries that cannot be opened are reported as errors.
    /// Messages in the outbox, and the age in seconds of the oldest (0 when empty).
    pub fn outbox_summary(&self, now: UnixTime) -> Result<(usize, i64), OpError> {
        let mail = self.pending_mail()?;
        let oldest = mail
            .iter()
            .filter_map(|(_, job)| job.as_ref().ok())
            .map(|j| j.queued_at)
            .filter(|t| *t > 0)
            .min()
            .map_or(0, |t| (now - t).max(0));
        Ok((mail.len(), oldest))
    }

    pub fn pending_mail(&self) -> Result<Vec<PendingMail>, OpError> {
        Ok(self
            .store
            .outbox()?
            .into_iter()
            .map(|(id, raw)| {
                let job = serde_json::from_slice::<Sealed>(&raw)
                    .map_err(|e| e.to_string())
                    .and_then(|s| self.sealer.open(OUTBOX_AAD, &s).map_err(|e| e.to_string()))
                    .and_then(|p| serde_json::from_slice::<MailJob>(&p).map_err(|e| e.to_string()));
                (id, job)
            })
            .collect())
    }

    pub fn mail_sent(&self, id: u64) -> Result<(), OpError> {
        Ok(self.store.outbox_remove(id)?)
    }

    pub fn mail_retry_later(&self, id: u64, job: &MailJob) -> Result<(), OpError> {
        Ok(self.store.outbox_replace(id, &self.seal_mail(job)?)?)
    }

    /// 初期設定 through the e-mailed link: hands out the secret exactly once.
    pub fn enroll(
        &self,
        code: &str,
        service_id: &str,
        user_id: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<Enrolled, OpError> {
        let hash = link_hash(code);
        let login_id = self.store.link_owner(&hash)?.ok_or(OpError::UnknownLink)?;
        let service_ok: bool = service_id
            .as_bytes()
            .ct_eq(self.service_id.as_bytes())
            .into();
        let user_ok: bool = user_id.as_bytes().ct_eq(login_id.as_bytes()).into();
        let max = self.token.setup_max_attempts;
        let result = self.update(&login_id, |u| {
            let Token::Issued {
                activation_hash,
                link,
                ..
            } = &mut u.token
            else {
                return Err(OpError::LinkGone);
            };
            link_usable(link, &hash, now, max)?;
            let pw_ok = password::verify(activation_hash, activation_password);
            if !(service_ok && user_ok && pw_ok) {
                link.attempts += 1;
                return Err(if link.attempts >= max {
                    OpError::LinkExhausted
                } else {
                    OpError::SetupRefused
                });
            }
            u.token = u.token.provision(now, &self.token)?;
            Ok(u.token.clone())
        });
        let token = match result {
            Err(OpError::UnknownUser(_)) => return Err(OpError::UnknownLink),
            other => other?,
        };
        let secret = token.secret().ok_or(OpError::LinkGone)?;
        let secret = self
            .sealer
            .open(&login_id, secret)
            .map_err(|e| OpError::Store(e.to_string()))?;
        let b32 = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &secret);
        let expires = token.expires_at().unwrap_or(now);
        Ok(Enrolled {
            otpauth_uri: otpauth_uri(&self.service_id, &login_id, &b32, &self.otp),
            secret: b32,
            period: self.otp.period,
            digits: self.otp.digits,
            algorithm: self.otp.algorithm.name().into(),
            issuer: self.service_id.clone(),
            account: login_id,
            expires_at: rfc3339(expires),
            renewal_available_from: rfc3339(self.token.renewal_opens(expires)),
        })
    }

    /// Whose setup link `code` is, if it is one (for the audit line of a setup attempt).
    pub fn link_owner(&self, code: &str) -> Option<String> {
        self.store.link_owner(&link_hash(code)).ok().flatten()
    }

    /// Whether a setup link can still be used, without counting an attempt: lets the setup
    /// page say "expired" before the customer types anything.
    pub fn check_link(&self, code: &str, now: UnixTime) -> Result<(), OpError> {
        let hash = link_hash(code);
        let login_id = self.store.link_owner(&hash)?.ok_or(OpError::UnknownLink)?;
        let user = self
            .store
            .get_user(&login_id)?
            .ok_or(OpError::UnknownLink)?
            .value;
        match &user.token {
            Token::Issued { link, .. } => {
                link_usable(link, &hash, now, self.token.setup_max_attempts)
            }
            _ => Err(OpError::LinkGone),
        }
    }

    /// Checks `otp` for the user's token and records its step. Failures are counted.
    fn prove_otp(&self, u: &mut UserRecord, otp: &str, now: UnixTime) -> Result<u64, OpError> {
        let mut lock = std::mem::take(&mut u.lock);
        let r = self.check_otp(u, &mut lock, otp, now);
        u.lock = lock;
        r
    }

    /// Checks `otp` against the user's token, counting the outcome on `lock`.
    fn check_otp(
        &self,
        u: &UserRecord,
        lock: &mut LockState,
        otp: &str,
        now: UnixTime,
    ) -> Result<u64, OpError> {
        if lock.is_locked(now) {
            return Err(OpError::Locked);
        }
        let sealed = u.token.secret().ok_or(OpError::WrongState {
            state: u.token.state(now).name(),
            hint: "there is no token to check the one-time password against",
        })?;
        let secret = self
            .sealer
            .open(&u.login_id, sealed)
            .map_err(|e| OpError::Store(e.to_string()))?;
        match self.otp.verify(&secret, otp, now, u.token.last_step()) {
            Ok(step) => {
                lock.record_success();
                Ok(step)
            }
            Err(refusal) => {
                lock.record_failure(now, &self.lock);
                Err(match refusal {
                    OtpRefusal::Invalid => OpError::BadOtp,
                    OtpRefusal::Replayed => OpError::OtpReplayed,
                })
            }
        }
    }

    /// 利用開始: a valid, unused OTP moves a provisioned token to active.
    pub fn activate(&self, login_id: &str, otp: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            if !matches!(u.token, Token::Provisioned { .. }) {
                // Refuse before looking at the OTP, so the state error is the one shown.
                u.token.activate(0, now)?;
            }
            let step = self.prove_otp(u, otp, now)?;
            u.token = u.token.activate(step, now)?;
            Ok(self.view(u, now))
        })
    }

    /// 利用解除.
    pub fn cancel(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        let mut old_link = None;
        let view = self.update(login_id, |u| {
            if let Token::Issued { link, .. } = &u.token {
                old_link = Some(link.hash.clone());
            }
            u.token = u.token.cancel(now)?;
            Ok(self.view(u, now))
        })?;
        if let Some(h) = old_link {
            self.store.set_link_owner(&h, None)?;
        }
        Ok(view)
    }

    /// 有効期限更新 by an administrator: the window rules, no OTP.
    pub fn renew_by_admin(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            u.token = u.token.renew(now, &self.token)?;
            Ok(self.view(u, now))
        })
    }

    /// 有効期限更新 by the customer: service ID + user ID + a valid unused OTP. The OTP is
    /// spent only when the renewal happens.
    pub fn renew_with_otp(
        &self,
        service_id: &str,
        login_id: &str,
        otp: &str,
        now: UnixTime,
    ) -> Result<UserView, OpError> {
        let service_ok: bool = service_id
            .as_bytes()
            .ct_eq(self.service_id.as_bytes())
            .into();
        if !service_ok {
            return Err(OpError::SetupRefused);
        }
        // The renewal page is on the internet and needs only the user ID, which the issuance
        // mail shows: its failures count on a lock of their own, so nobody can lock a
        // customer out of logins through it. The OTP is proven before the window is
        // checked, so the expiry date is told only to the token's holder.
        let result = self.update(login_id, |u| {
            let mut lock = std::mem::take(&mut u.renew_lock);
            let proven = self.check_otp(u, &mut lock, otp, now);
            u.renew_lock = lock;
            let step = proven?;
            u.token.renewal_check(now, &self.token)?;
            u.token = u.token.spend_step(step).renew(now, &self.token)?;
            Ok(self.view(u, now))
        });
        // Until a valid, unused OTP is proven, every refusal reads the same: an unknown user
        // ID, a user without a token, a locked renewal, a wrong or spent code. Otherwise the
        // page would tell anyone which user IDs exist and which have a token.
        match result {
            Err(
                OpError::UnknownUser(_)
                | OpError::WrongState { .. }
                | OpError::Locked
                | OpError::OtpReplayed,
            ) => Err(OpError::BadOtp),
            other => other,
        }
    }

    /// Clears the login lock and the renewal lock, with their failure counts.
    pub fn unlock(&self, login_id: &str, now: UnixTime) -> Result<UserView, OpError> {
        self.update(login_id, |u| {
            u.lock.unlock();
            u.renew_lock.unlock();
            Ok(self.view(u, now))
        })
    }

    // ---- authentication -------------------------------------------------------------

    /// A login with `User-Password`: the password, or the password followed by the OTP.
    pub fn login(&self, login_id: &str, user_password: &str, now: UnixTime) -> LoginOutcome {
        let read = match self.store.get_user(login_id) {
            Ok(Some(v)) => v,
            Ok(None) => {
                let _ = password::verify(&self.dummy_hash, user_password);
                return LoginOutcome::Reject(RejectReason::UnknownUser);
            }
            Err(_) => return LoginOutcome::Reject(RejectReason::Store),
        };
        let user = &read.value;
        if user.lock.is_locked(now) {
            let _ = password::verify(&self.dummy_hash, user_password);
            return LoginOutcome::Reject(RejectReason::Locked);
        }
        let state = user.token.state(now);
        if matches!(state, TokenState::Active | TokenState::Expired) {
            let digits = self.otp.digits;
            if let Some(split) = user_password.len().checked_sub(digits).filter(|&s| s > 0) {
                let (pw, code) = user_password
                    .split_at_checked(split)
                    .unwrap_or((user_password, ""));
                if code.bytes().all(|b| b.is_ascii_digit())
                    && password::verify(&user.password_hash, pw)
                {
                    if self.upgrade_hash(user, pw) {
                        return self.login_otp(login_id, code, now);
                    }
                    return self.login_otp_from(login_id, code, now, Some(read));
                }
            }
            if password::verify(&user.password_hash, user_password) {
                self.upgrade_hash(user, user_password);
                return LoginOutcome::NeedOtp;
            }
            return self.count_failure(login_id, now, RejectReason::BadPassword);
        }
        if !password::verify(&user.password_hash, user_password) {
            return self.count_failure(login_id, now, RejectReason::BadPassword);
        }
        self.upgrade_hash(user, user_password);
        if self.otp_required {
            return LoginOutcome::Reject(RejectReason::OtpRequired);
        }
        if user.lock.failures > 0 {
            let reset = self.update(login_id, |u| {
                u.lock.record_success();
                Ok(())
            });
            if reset.is_err() {
                return LoginOutcome::Reject(RejectReason::Store);
            }
        }
        LoginOutcome::Accept { with_otp: false }
    }

    /// The OTP of a login whose password is already proven (same request, or the answer to
    /// a challenge). An accepted step is recorded before this returns.
    pub fn login_otp(&self, login_id: &str, otp: &str, now: UnixTime) -> LoginOutcome {
        self.login_otp_from(login_id, otp, now, None)
    }

    fn login_otp_from(
        &self,
        login_id: &str,
        otp: &str,
        now: UnixTime,
        read: Option<Versioned<UserRecord>>,
    ) -> LoginOutcome {
        let result = self.update_from(login_id, read, |u| match u.token.state(now) {
            TokenState::Active => {
                let step = self.prove_otp(u, otp, now)?;
                u.token = u.token.spend_step(step);
                Ok(LoginOutcome::Accept { with_otp: true })
            }
            TokenState::Expired => {
                // Proven but expired: say so, and leave the OTP unspent for renewal.
                let mut probe = u.clone();
                self.prove_otp(&mut probe, otp, now)?;
                u.lock = probe.lock;
                Ok(LoginOutcome::Reject(RejectReason::Expired))
            }
            _ => Err(OpError::BadOtp),
        });
        match result {
            Ok(outcome) => outcome,
            Err(OpError::Locked) => LoginOutcome::Reject(RejectReason::Locked),
            Err(OpError::OtpReplayed) => LoginOutcome::Reject(RejectReason::OtpReplayed),
            Err(OpError::BadOtp) | Err(OpError::WrongState { .. }) => {
                LoginOutcome::Reject(RejectReason::BadOtp)
            }
            Err(OpError::UnknownUser(_)) => LoginOutcome::Reject(RejectReason::UnknownUser),
            Err(_) => LoginOutcome::Reject(RejectReason::Store),
        }
    }

    fn count_failure(&self, login_id: &str, now: UnixTime, reason: RejectReason) -> LoginOutcome {
        let r = self.update(login_id, |u| {
            u.lock.record_failure(now, &self.lock);
            Ok(())
        });
        match r {
            Ok(()) => LoginOutcome::Reject(reason),
            Err(_) => LoginOutcome::Reject(RejectReason::Store),
        }
    }
}

/// The one rule for a link that is still usable: the current one, not expired, attempts left.
fn link_usable(
    link: &crate::lifecycle::Link,
    hash: &str,
    now: UnixTime,
    max: u32,
) -> Result<(), OpError> {
    if link.hash != hash || now >= link.expires_at {
        return Err(OpError::LinkGone);
    }
    if link.attempts >= max {
        return Err(OpError::LinkExhausted);
    }
    Ok(())
}

/// A setup link code: 160 random bits, hex.
fn new_link_code() -> Zeroizing<String> {
    let mut b = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    Zeroizing::new(hex(&b))
}

/// Only this hash of a link code is stored.
pub fn link_hash(code: &str) -> String {
    hex(&Sha256::digest(code.as_bytes()))
}

fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str, p: &OtpParams) -> String {
    let i = pct(issuer);
    format!(
        "otpauth://totp/{i}:{}?secret={secret_b32}&issuer={i}&algorithm={}&digits={}&period={}",
        pct(account),
        p.algorithm.name(),
        p.digits,
        p.period
    )
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The store's records as the backup prints them: keys and values in hex.
fn backup_rows(rows: Vec<crate::store::ExportRow>) -> Vec<BackupRow> {
    rows.into_iter()
        .map(|(tree, k, v)| BackupRow {
            tree,
            key: hex(&k),
            value: hex(&v),
        })
        .collect()
}

/// Where the page after `page` starts: a full page (of `limit`, as clamped) may have more
/// after its last item; a shorter one is the last.
fn next_cursor<T, C>(page: &[T], limit: usize, cursor: impl FnOnce(&T) -> C) -> Option<C> {
    if page.len() == limit.clamp(1, MAX_PAGE) {
        page.last().map(cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
