//! `otpctl user list` and `otpctl backup` page through otpd: each page is one bounded
//! reply, printed or written before the next is asked for, so a million users never make
//! one giant line on either side.

use std::io::Write;
use std::path::Path;

use otpd_proto::{AdminData, AdminRequest, MAX_PAGE};

use crate::client::Connection;
use crate::files::BackupFile;
use crate::Failure;

fn unexpected(data: AdminData) -> Failure {
    Failure::Unreachable(format!("unexpected answer from otpd: {data:?}"))
}

/// Asks for page after page (`ask(after)`) until otpd says there is no next one, handing
/// each page to `take` as it comes; `page` reads a reply as (items, next cursor), or
/// refuses one of another kind.
fn every_page<C, T>(
    conn: &mut Connection,
    ask: impl Fn(Option<C>) -> AdminRequest,
    page: impl Fn(AdminData) -> Result<(Vec<T>, Option<C>), Failure>,
    mut take: impl FnMut(Vec<T>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut after = None;
    loop {
        let (items, next) = page(conn.call(&ask(after.take()))?)?;
        take(items)?;
        match next {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

/// Prints every user, one a line (with `json`, one JSON array, written as it comes).
pub fn list(socket: &Path, json: bool) -> Result<(), Failure> {
    let mut conn = Connection::open(socket)?;
    let mut out = crate::out::stdout();
    let broken = crate::out::failed;
    let mut first = true;
    if json {
        write!(out, "[").map_err(broken)?;
    }
    every_page(
        &mut conn,
        |after| AdminRequest::UserPage {
            after,
            limit: MAX_PAGE,
        },
        |data| match data {
            AdminData::UserPage { users, next } => Ok((users, next)),
            other => Err(unexpected(other)),
        },
        |users| {
            for u in &users {
                if json {
                    let v = serde_json::to_string(u).map_err(|e| Failure::Usage(e.to_string()))?;
                    write!(out, "{}{v}", if first { "" } else { "," }).map_err(broken)?;
                    first = false;
                } else {
                    writeln!(out, "{}", crate::user_line(u)).map_err(broken)?;
                }
            }
            Ok(())
        },
    )?;
    if json {
        writeln!(out, "]").map_err(broken)?;
    }
    out.flush().map_err(broken)
}

/// Writes a backup of every record to `path`; prints what it wrote.
pub fn backup(socket: &Path, path: &Path, json: bool) -> Result<(), Failure> {
    let mut conn = Connection::open(socket)?;
    let mut file = BackupFile::create(path)?;
    every_page(
        &mut conn,
        |after| AdminRequest::BackupPage {
            after,
            limit: MAX_PAGE,
        },
        |data| match data {
            AdminData::BackupPage { rows, next } => Ok((rows, next)),
            other => Err(unexpected(other)),
        },
        |rows| file.write(&rows),
    )?;
    let (records, users) = file.finish()?;
    crate::out::line(&if json {
        serde_json::json!({"path": path, "records": records, "users": users}).to_string()
    } else {
        format!(
            "backup of {users} users ({records} records) written to {}",
            path.display()
        )
    })
}
