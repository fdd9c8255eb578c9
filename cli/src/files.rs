//! The files otpctl reads and writes: user import CSV, backups.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use otpd_core::admin::{BackupRow, ImportRow};

use crate::Failure;

/// Reads `login_id,password_hash,email` lines. A PHC hash contains commas, so the login ID
/// is what precedes the first comma and the e-mail what follows the last one. Blank lines,
/// `#` comments and a `login_id,...` header are skipped.
pub fn read_import(path: &Path) -> Result<Vec<ImportRow>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || (line == 1 && l.starts_with("login_id,")) {
            continue;
        }
        let bad = |why: &str| {
            Failure::Usage(format!(
                "{}: line {line}: {why}; nothing was imported",
                path.display()
            ))
        };
        let (id, rest) = l
            .split_once(',')
            .ok_or_else(|| bad("expected login_id,password_hash,email"))?;
        let (hash, email) = rest
            .rsplit_once(',')
            .ok_or_else(|| bad("expected login_id,password_hash,email"))?;
        let unquote = |s: &str| s.trim().trim_matches('"').to_string();
        let (id, hash, email) = (unquote(id), unquote(hash), unquote(email));
        if id.is_empty() || hash.is_empty() {
            return Err(bad("login_id and password_hash are required"));
        }
        rows.push(ImportRow {
            line,
            login_id: id,
            password_hash: hash,
            email: (!email.is_empty()).then_some(email),
        });
    }
    if rows.is_empty() {
        return Err(Failure::Usage(format!(
            "{}: no users in the file",
            path.display()
        )));
    }
    Ok(rows)
}

/// Writes a backup as JSON lines (a header, then one record a line) to a temp file beside
/// `path`, mode 0600, then renames it into place. Returns the number of users.
pub fn write_backup(path: &Path, rows: &[BackupRow]) -> Result<usize, Failure> {
    let fail =
        |e: std::io::Error| Failure::Refused(format!("cannot write {}: {e}", path.display()));
    let users = rows.iter().filter(|r| r.tree == "users").count();
    let tmp = path.with_extension("partial");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    let header = serde_json::json!({"format": "otpd-backup", "version": 1, "records": rows.len(), "users": users});
    let mut out = std::io::BufWriter::new(&mut f);
    writeln!(out, "{header}").map_err(fail)?;
    for r in rows {
        let line = serde_json::to_string(r).map_err(|e| Failure::Refused(e.to_string()))?;
        writeln!(out, "{line}").map_err(fail)?;
    }
    out.flush().map_err(fail)?;
    drop(out);
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(users)
}
