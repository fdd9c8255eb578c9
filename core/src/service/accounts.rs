//! Users and their passwords: add, change the password, list, delete, and the quiet upgrade
//! of an outdated hash once a login proved the password.

use crate::lifecycle::Token;
use crate::lockout::LockState;
use crate::user::{check_login_id, UserRecord, UserView};
use crate::{OpError, Service, UnixTime};

impl Service {
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
            session_generation: crate::customer::new_epoch(0),
        };
        if self.store.swap_user(login_id, None, Some(&user))? {
            Ok(self.view(&user, now))
        } else {
            Err(OpError::UserExists(login_id.into()))
        }
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
            u.session_generation = crate::customer::new_epoch(u.session_generation);
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

    /// Replaces a legacy or outdated hash once the password was proven; true if it did.
    pub(super) fn upgrade_hash(&self, user: &UserRecord, password: &str) -> bool {
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
}
