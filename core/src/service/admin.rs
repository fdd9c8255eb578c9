//! The admin socket's requests, dispatched to the operations, and the status summary.

use crate::admin::{AdminData, AdminRequest, BackupCursor, StatusView, MAX_PAGE};
use crate::lifecycle::TokenState;
use crate::{rfc3339, OpError, Service, UnixTime};

use super::pages::next_cursor;

impl Service {
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
        let (store_engine, store_location) = self.store.describe();
        Ok(StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: u64::try_from(now - self.started_at).unwrap_or(0),
            users,
            by_state,
            locked,
            mail_queued: self.store.outbox()?.len(),
            store_bytes: self.store.size_on_disk(),
            store_engine,
            store_location,
        })
    }
}
