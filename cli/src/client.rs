//! The admin socket client: one JSON line out, one JSON line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use otpd_core::admin::{AdminData, AdminReply, AdminRequest};

use crate::Failure;

/// Reads `admin.socket` from otpd's config file (relative to the file's folder), without
/// validating the rest: otpctl may not be allowed to read the secrets it names.
pub fn socket_from_config(path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let socket = table
        .get("admin")
        .and_then(|a| a.get("socket"))
        .and_then(|s| s.as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_SOCKET));
    Ok(if socket.is_relative() {
        path.parent().map(|d| d.join(&socket)).unwrap_or(socket)
    } else {
        socket
    })
}

pub fn call(socket: &Path, request: &AdminRequest) -> Result<AdminData, Failure> {
    let unreachable = |e: std::io::Error| {
        Failure::Unreachable(format!(
            "cannot reach otpd at {}: {e} (is otpd running? see --socket)",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    // Password hashing can queue behind a login burst; a minute is generous.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(unreachable)?;
    let mut line = zeroize::Zeroizing::new(
        serde_json::to_vec(request).map_err(|e| Failure::Usage(e.to_string()))?,
    );
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(unreachable)?;
    if reply.is_empty() {
        return Err(Failure::Unreachable(
            "otpd closed the connection without answering".into(),
        ));
    }
    let reply: AdminReply = serde_json::from_str(&reply)
        .map_err(|e| Failure::Unreachable(format!("unreadable answer from otpd: {e}")))?;
    reply.map_err(|f| Failure::Refused(f.message))
}
