//! Users and backup records page by page, with the cursor of the next page.

use crate::admin::{BackupCursor, BackupRow, MAX_PAGE};
use crate::seal::hex;
use crate::user::UserView;
use crate::{OpError, Service, UnixTime};

impl Service {
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
}

/// The store's records as the backup prints them: keys and values in hex.
pub(super) fn backup_rows(rows: Vec<crate::store::ExportRow>) -> Vec<BackupRow> {
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
pub(super) fn next_cursor<T, C>(
    page: &[T],
    limit: usize,
    cursor: impl FnOnce(&T) -> C,
) -> Option<C> {
    if page.len() == limit.clamp(1, MAX_PAGE) {
        page.last().map(cursor)
    } else {
        None
    }
}
