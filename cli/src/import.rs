//! `otpctl user import FILE`: streams the file to otpd in batches that each fit one admin
//! line; otpd checks every batch as it arrives and writes nothing until the commit, so a
//! bad line anywhere (a format error here, a refused row there) imports nothing.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use otpd_proto::{AdminData, AdminRequest, ImportRow};

use crate::client::Connection;
use crate::files::parse_import_line;
use crate::Failure;

/// Bytes of rows per batch: well below the admin socket's 64 KiB line limit.
const BATCH_BYTES: usize = 48 * 1024;

/// Imports `file` over `socket`; prints the closing note.
pub fn run(socket: &Path, file: &Path, json: bool) -> Result<(), Failure> {
    let started = Instant::now();
    let f = std::fs::File::open(file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut progress = Progress::new(size, !json && std::io::stderr().is_terminal());
    let mut conn = Connection::open(socket)?;
    conn.call(&AdminRequest::ImportBegin)?;
    let mut batch: Vec<ImportRow> = Vec::new();
    let mut batch_bytes = 0;
    let mut read = 0u64;
    let mut staged = 0;
    let mut lines = std::io::BufReader::new(f);
    let mut raw = String::new();
    let mut line = 0;
    loop {
        raw.clear();
        let n = lines.read_line(&mut raw).map_err(|e| {
            Failure::Usage(format!(
                "cannot read {}: {e}; nothing was imported",
                file.display()
            ))
        })?;
        if n == 0 {
            break;
        }
        line += 1;
        read += n as u64;
        let row = parse_import_line(line, &raw).map_err(|why| {
            progress.clear();
            Failure::Usage(format!(
                "{}: line {line}: {why}; nothing was imported",
                file.display()
            ))
        })?;
        let Some(row) = row else { continue };
        batch_bytes += serde_json::to_vec(&row).map(|v| v.len() + 1).unwrap_or(0);
        batch.push(row);
        if batch_bytes >= BATCH_BYTES {
            staged = send(&mut conn, &mut batch, &mut progress)?;
            batch_bytes = 0;
            progress.show(read, staged);
        }
    }
    if !batch.is_empty() {
        staged = send(&mut conn, &mut batch, &mut progress)?;
    }
    if staged == 0 {
        return Err(Failure::Usage(format!(
            "{}: no users in the file",
            file.display()
        )));
    }
    progress.writing(staged);
    // Writing a million users takes a while; otpd answers when they are on disk.
    conn.set_timeout(None)?;
    let count = match conn.call(&AdminRequest::ImportCommit) {
        Ok(AdminData::Imported { count }) => count,
        Ok(other) => {
            progress.clear();
            return Err(Failure::Unreachable(format!(
                "unexpected answer from otpd: {other:?}"
            )));
        }
        Err(e) => {
            progress.clear();
            return Err(e);
        }
    };
    progress.clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = count as f64 / seconds.max(0.001);
    crate::out::line(&if json {
        serde_json::json!({"kind": "imported", "count": count, "seconds": (seconds * 1000.0).round() / 1000.0}).to_string()
    } else {
        format!("imported {count} users in {seconds:.1} s ({rate:.0} users/s)")
    })
}

fn send(
    conn: &mut Connection,
    batch: &mut Vec<ImportRow>,
    progress: &mut Progress,
) -> Result<usize, Failure> {
    let users = std::mem::take(batch);
    match conn.call(&AdminRequest::ImportBatch { users }) {
        Ok(AdminData::ImportStaged { staged }) => Ok(staged),
        Ok(other) => Err(Failure::Unreachable(format!(
            "unexpected answer from otpd: {other:?}"
        ))),
        Err(e) => {
            progress.clear();
            Err(e)
        }
    }
}

/// A one-line progress bar on standard error, drawn only on a terminal.
struct Progress {
    total_bytes: u64,
    on: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(total_bytes: u64, on: bool) -> Progress {
        Progress {
            total_bytes,
            on,
            started: Instant::now(),
            drawn: None,
        }
    }

    fn show(&mut self, read: u64, staged: usize) {
        if !self.on
            || self
                .drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let share = if self.total_bytes == 0 {
            1.0
        } else {
            read as f64 / self.total_bytes as f64
        };
        let width = 30;
        let done = ((share * width as f64) as usize).min(width);
        let rate = staged as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[Kchecking [{}{}] {:>3.0}%  {staged} users  {rate:.0}/s",
            "#".repeat(done),
            "-".repeat(width - done),
            share * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    fn writing(&mut self, staged: usize) {
        if self.on {
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[Kall {staged} users checked; writing them…"
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&mut self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}
