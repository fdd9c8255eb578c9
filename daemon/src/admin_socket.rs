//! The admin socket: a Unix stream socket (mode 0660: only its group may administer),
//! one JSON request per line, one JSON reply per line. The peer's uid is the audit actor.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use otpd_core::admin::{AdminFailure, AdminReply, AdminRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::ops::Ops;

/// Longest request line accepted; a password never needs more.
const MAX_LINE: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 64;

pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Binds `path`, replacing a stale socket left by a crash but never a live one.
    pub fn bind(path: &Path) -> anyhow::Result<AdminSocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "admin socket {} is in use: is another otpd running?",
                    path.display()
                );
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("cannot bind admin socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        Ok(AdminSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub async fn serve(self, ops: Arc<Ops>, shutdown: impl std::future::Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        ops.log.warn("admin socket: too many connections; one refused");
                        continue;
                    };
                    let ops = ops.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = connection(stream, &ops).await {
                            ops.log.debug(&format!("admin connection ended: {e}"));
                        }
                    });
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(stream: UnixStream, ops: &Ops) -> std::io::Result<()> {
    let actor = match stream.peer_cred() {
        Ok(c) => format!("uid:{}", c.uid()),
        Err(_) => "uid:?".into(),
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = zeroize::Zeroizing::new(Vec::new());
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let reply: AdminReply = if line.len() > MAX_LINE {
            Err(AdminFailure {
                error: "bad_request".into(),
                message: "request line too long".into(),
            })
        } else {
            match serde_json::from_slice::<AdminRequest>(&line) {
                Ok(req) => ops.admin(req, &actor).await,
                Err(e) => Err(AdminFailure {
                    error: "bad_request".into(),
                    message: format!("unreadable request: {e}"),
                }),
            }
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}
