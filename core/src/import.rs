//! User import, the migration of a whole bank's customers from another system: rows are
//! staged and checked as they arrive (in batches small enough for one admin line), and only
//! a complete, valid file is written. Nothing is written before every row was checked.

use std::collections::BTreeMap;

use crate::admin::ImportRow;
use crate::lifecycle::Token;
use crate::lockout::LockState;
use crate::user::{check_email, check_login_id, UserRecord};
use crate::{OpError, Service, UnixTime};

/// Most rows one import may stage: far above a bank's customer count, low enough that a
/// runaway client cannot exhaust otpd's memory.
pub const MAX_STAGED: usize = 20_000_000;

/// The rows of one import checked so far, by login ID (the order writes go best in).
#[derive(Default)]
pub struct ImportStage {
    rows: BTreeMap<Box<str>, Staged>,
}

/// One checked row, kept compact: a million of them stay in memory until the commit.
struct Staged {
    line: usize,
    password_hash: Box<str>,
    email: Option<Box<str>>,
}

impl ImportStage {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn at(line: usize, why: impl std::fmt::Display) -> OpError {
    OpError::BadInput(format!("line {line}: {why}; nothing was imported"))
}

impl Service {
    /// Checks `rows` (login ID, hash kind and cost, e-mail, duplicates in the file and in
    /// the store) and adds them to `stage`; the number staged so far. An error names the
    /// first bad line.
    pub fn import_stage(
        &self,
        stage: &mut ImportStage,
        rows: Vec<ImportRow>,
    ) -> Result<usize, OpError> {
        if stage.rows.len() + rows.len() > MAX_STAGED {
            return Err(OpError::BadInput(format!(
                "an import holds at most {MAX_STAGED} users; split the file; nothing was imported"
            )));
        }
        let caps = self.hash_caps();
        for r in rows {
            check_login_id(&r.login_id).map_err(|e| at(r.line, e))?;
            // A hash over the caps would pin a hashing worker at every login attempt.
            caps.admit(&r.password_hash).map_err(|e| at(r.line, e))?;
            if let Some(e) = &r.email {
                check_email(e).map_err(|e| at(r.line, e))?;
            }
            if let Some(first) = stage.rows.get(r.login_id.as_str()) {
                return Err(at(
                    r.line,
                    format!(
                        "{:?} appears twice in the file (first on line {})",
                        r.login_id, first.line
                    ),
                ));
            }
            if self.store().get_user(&r.login_id)?.is_some() {
                return Err(at(r.line, format!("user {:?} already exists", r.login_id)));
            }
            stage.rows.insert(
                r.login_id.into_boxed_str(),
                Staged {
                    line: r.line,
                    password_hash: r.password_hash.into_boxed_str(),
                    email: r.email.map(String::into_boxed_str),
                },
            );
        }
        Ok(stage.rows.len())
    }

    /// Creates every staged user, or none, in one atomic commit of the store: a user
    /// created by someone else since its row was checked refuses all of them, and a crash
    /// during the commit leaves none. The number of users created.
    pub fn import_write(&self, stage: ImportStage, now: UnixTime) -> Result<usize, OpError> {
        // Each staged row becomes its record as it goes: the two are never all in memory.
        let mut lines = Vec::with_capacity(stage.rows.len());
        let users: Vec<UserRecord> = stage
            .rows
            .into_iter()
            .map(|(login_id, row)| {
                lines.push(row.line);
                UserRecord {
                    login_id: login_id.into(),
                    password_hash: row.password_hash.into(),
                    email: row.email.map(Into::into),
                    created_at: now,
                    token: Token::Unregistered,
                    lock: LockState::default(),
                    renew_lock: LockState::default(),
                    session_generation: crate::customer::new_epoch(0),
                }
            })
            .collect();
        match self.store().create_users(&users)? {
            Ok(()) => Ok(users.len()),
            Err(login_id) => {
                // In login-ID order, as staged.
                let line = users
                    .binary_search_by(|u| u.login_id.as_str().cmp(&login_id))
                    .ok()
                    .and_then(|i| lines.get(i).copied())
                    .unwrap_or(0);
                Err(at(line, format!("user {login_id:?} was created meanwhile")))
            }
        }
    }

    /// Stages and writes `rows` in one go (imports that fit one request).
    pub fn import(&self, rows: &[ImportRow], now: UnixTime) -> Result<usize, OpError> {
        let mut stage = ImportStage::default();
        self.import_stage(&mut stage, rows.to_vec())?;
        self.import_write(stage, now)
    }
}
