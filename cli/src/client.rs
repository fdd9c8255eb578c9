//! The admin socket client: one JSON line out, one JSON line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use otpd_proto::{AdminData, AdminReply, AdminRequest};

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
    Connection::open(socket)?.call(request)
}

/// One admin connection, for requests that belong together (an import's batches, the pages
/// of a listing).
pub struct Connection {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    pub fn open(socket: &Path) -> Result<Connection, Failure> {
        let stream = UnixStream::connect(socket).map_err(|e| unreachable(socket, e))?;
        // Password hashing can queue behind a login burst; a minute is generous.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| unreachable(socket, e))?;
        let writer = stream.try_clone().map_err(|e| unreachable(socket, e))?;
        Ok(Connection {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// How long to wait for an answer (`None`: as long as it takes, for an import's commit).
    pub fn set_timeout(&self, limit: Option<Duration>) -> Result<(), Failure> {
        self.writer
            .set_read_timeout(limit)
            .map_err(|e| unreachable(&self.socket, e))
    }

    pub fn call(&mut self, request: &AdminRequest) -> Result<AdminData, Failure> {
        let mut line = zeroize::Zeroizing::new(
            serde_json::to_vec(request).map_err(|e| Failure::Usage(e.to_string()))?,
        );
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|e| unreachable(&self.socket, e))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(|e| unreachable(&self.socket, e))?;
        if reply.is_empty() {
            return Err(Failure::Unreachable(
                "otpd closed the connection without answering".into(),
            ));
        }
        let reply: AdminReply = serde_json::from_str(&reply)
            .map_err(|e| Failure::Unreachable(format!("unreadable answer from otpd: {e}")))?;
        reply.map_err(|f| Failure::Refused(f.message))
    }
}

fn unreachable(socket: &Path, e: std::io::Error) -> Failure {
    Failure::Unreachable(format!(
        "cannot reach otpd at {}: {e} (is otpd running? see --socket)",
        socket.display()
    ))
}
