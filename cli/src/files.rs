//! The files otpctl reads and writes: user import CSV, backups.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use otpd_proto::{BackupRow, ImportRow};

use crate::Failure;

/// Reads one line of an import file: `login_id,password_hash,email`. A PHC hash contains
/// commas, so the login ID is what precedes the first comma and the e-mail what follows the
/// last one. Blank lines, `#` comments and a `login_id,...` header (line 1) are `None`.
pub fn parse_import_line(line: usize, raw: &str) -> Result<Option<ImportRow>, String> {
    let l = raw.trim();
    if l.is_empty() || l.starts_with('#') || (line == 1 && l.starts_with("login_id,")) {
        return Ok(None);
    }
    let shape = || "expected login_id,password_hash,email".to_string();
    let (id, rest) = l.split_once(',').ok_or_else(shape)?;
    let (hash, email) = rest.rsplit_once(',').ok_or_else(shape)?;
    let unquote = |s: &str| s.trim().trim_matches('"').to_string();
    let (id, hash, email) = (unquote(id), unquote(hash), unquote(email));
    if id.is_empty() || hash.is_empty() {
        return Err("login_id and password_hash are required".into());
    }
    Ok(Some(ImportRow {
        line,
        login_id: id,
        password_hash: hash,
        email: (!email.is_empty()).then_some(email),
    }))
}

/// Width of a backup's header line: written first as a placeholder, rewritten in place
/// with the counts once every record is in (JSON allows the trailing spaces).
const HEADER_WIDTH: usize = 120;

/// A backup being written as JSON lines (a header, then one record a line) to a temp file
/// beside its path, mode 0600; [`BackupFile::finish`] fills in the header, syncs and
/// renames it into place, so a backup that stopped half-way never takes the name.
pub struct BackupFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    pub records: usize,
    pub users: usize,
}

impl BackupFile {
    pub fn create(path: &Path) -> Result<BackupFile, Failure> {
        let tmp = path.with_extension("partial");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail(path, e))?;
        let mut out = std::io::BufWriter::new(f);
        writeln!(out, "{}", " ".repeat(HEADER_WIDTH)).map_err(|e| fail(path, e))?;
        Ok(BackupFile {
            path: path.to_path_buf(),
            tmp,
            out,
            records: 0,
            users: 0,
        })
    }

    pub fn write(&mut self, rows: &[BackupRow]) -> Result<(), Failure> {
        for r in rows {
            let line = serde_json::to_string(r).map_err(|e| Failure::Refused(e.to_string()))?;
            writeln!(self.out, "{line}").map_err(|e| fail(&self.path, e))?;
            self.records += 1;
            self.users += usize::from(r.tree == "users");
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(usize, usize), Failure> {
        use std::io::{Seek, SeekFrom};
        let path = self.path.clone();
        let mut f = self
            .out
            .into_inner()
            .map_err(|e| fail(&path, e.into_error()))?;
        let header = serde_json::json!({"format": "otpd-backup", "version": 1, "records": self.records, "users": self.users}).to_string();
        f.seek(SeekFrom::Start(0)).map_err(|e| fail(&path, e))?;
        write!(f, "{header:<HEADER_WIDTH$}").map_err(|e| fail(&path, e))?;
        f.sync_all().map_err(|e| fail(&path, e))?;
        std::fs::rename(&self.tmp, &path).map_err(|e| fail(&path, e))?;
        Ok((self.records, self.users))
    }
}

fn fail(path: &Path, e: std::io::Error) -> Failure {
    Failure::Refused(format!("cannot write {}: {e}", path.display()))
}
