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
            check_folder(dir)?;
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

/// Refuses a socket folder that everyone may write to without the sticky bit: anyone
/// could replace the socket with their own and collect the administrators' requests,
/// passwords among them.
fn check_folder(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mode = std::fs::metadata(dir)
        .map_err(|e| anyhow::anyhow!("admin socket folder {}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        anyhow::bail!(
            "admin socket folder {} is writable by everyone (mode {:o}) without the sticky bit: another user could replace the socket; make it writable only by otpd (e.g. chmod 0750) or set the sticky bit",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

async fn connection(stream: UnixStream, ops: &Ops) -> std::io::Result<()> {
    let actor = match stream.peer_cred() {
        Ok(c) => format!("uid:{}", c.uid()),
        Err(_) => "uid:?".into(),
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = zeroize::Zeroizing::new(Vec::new());
    let mut session = crate::admin_session::Session::default();
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
                Ok(req) => session.handle(req, ops, &actor).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    #[test]
    fn a_folder_everyone_may_write_needs_the_sticky_bit() {
        let open = folder(0o777);
        let err = check_folder(open.path()).expect_err("refused");
        assert!(err.to_string().contains("writable by everyone"), "{err}");
        assert!(err.to_string().contains("777"), "{err}");
        for ok in [0o1777, 0o755, 0o750, 0o700, 0o770] {
            let dir = folder(ok);
            check_folder(dir.path()).unwrap_or_else(|e| panic!("{ok:o}: {e}"));
        }
    }
}
