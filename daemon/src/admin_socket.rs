//! The admin socket: a Unix stream socket (mode 0660: only its group may administer),
//! one JSON request per line, one JSON reply per line. The peer's uid is the audit actor.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use otpd_core::admin::{AdminFailure, AdminReply, AdminRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limit::LineLimiter;
use crate::ops::Ops;

/// Longest request line accepted; a password never needs more.
const MAX_LINE: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 64;
/// A connection that has not sent (all of) its next request by then is closed: otpctl
/// writes its request as soon as it connects.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one "refused" line per interval; the rest are counted.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open connections, and which of them are waiting for a request. When all slots are
/// taken, a new caller takes the slot of the connection idle the longest, so idle clients
/// can never lock the administrators out.
#[derive(Default)]
pub struct Slots {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

struct Slot {
    idle_since: Option<Instant>,
    evict: Arc<Notify>,
}

impl Slots {
    /// A slot for a new connection (its id and its eviction signal), evicting the longest
    /// idle connection when all are taken; `None` when every connection is busy.
    /// A new connection counts as idle from `now` until its first request arrives.
    pub fn admit(&mut self, capacity: usize, now: Instant) -> Option<(u64, Arc<Notify>)> {
        if self.open.len() >= capacity {
            let (_, oldest) = self
                .open
                .iter()
                .filter_map(|(id, s)| s.idle_since.map(|t| (t, *id)))
                .min()?;
            if let Some(slot) = self.open.remove(&oldest) {
                slot.evict.notify_one();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let evict = Arc::new(Notify::new());
        self.open.insert(
            id,
            Slot {
                idle_since: Some(now),
                evict: evict.clone(),
            },
        );
        Some((id, evict))
    }

    pub fn set_idle(&mut self, id: u64, since: Option<Instant>) {
        if let Some(s) = self.open.get_mut(&id) {
            s.idle_since = since;
        }
    }

    pub fn release(&mut self, id: u64) {
        self.open.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

type SharedSlots = Arc<Mutex<Slots>>;

fn slots(s: &SharedSlots) -> std::sync::MutexGuard<'_, Slots> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frees the connection's slot however the connection ends.
struct SlotGuard {
    slots: SharedSlots,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        slots(&self.slots).release(self.id);
    }
}

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
        let open: SharedSlots = Arc::default();
        let refusals = LineLimiter::new(REFUSAL_LOG_INTERVAL);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Some((id, evict)) = slots(&open).admit(MAX_CONNECTIONS, crate::clock::instant()) else {
                        if let Some(suppressed) = refusals.note((), crate::clock::instant()) {
                            let more = if suppressed > 0 {
                                format!(" suppressed={suppressed} (refusals not logged one by one since the last line)")
                            } else {
                                String::new()
                            };
                            ops.log.warn(&format!(
                                "admin socket: {MAX_CONNECTIONS} connections busy; one refused{more}"
                            ));
                        }
                        continue;
                    };
                    let ops = ops.clone();
                    let guard = SlotGuard { slots: open.clone(), id };
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &ops, &guard, &evict).await {
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
pub fn check_folder(dir: &Path) -> anyhow::Result<()> {
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

async fn connection(
    stream: UnixStream,
    ops: &Ops,
    slot: &SlotGuard,
    evict: &Notify,
) -> std::io::Result<()> {
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
        slots(&slot.slots).set_idle(slot.id, Some(crate::clock::instant()));
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        let n = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, read) => match r {
                Ok(n) => n?,
                Err(_) => return Ok(()),
            },
            () = evict.notified() => return Ok(()),
        };
        slots(&slot.slots).set_idle(slot.id, None);
        if n == 0 {
            return Ok(());
        }
        let reply: AdminReply = if line.len() > MAX_LINE {
            Err(AdminFailure {
                error: "bad_request".into(),
                message: "request line too long".into(),
            })
        } else {
            match AdminRequest::parse(&line) {
                Ok(req) => session.handle(req, ops, &actor).await,
                Err(message) => Err(AdminFailure {
                    error: "bad_request".into(),
                    message,
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
    fn a_new_caller_takes_the_slot_of_the_longest_idle_connection() {
        let mut s = Slots::default();
        let t0 = crate::clock::instant();
        let (a, evict_a) = s.admit(2, t0).expect("a");
        let (b, evict_b) = s.admit(2, t0).expect("b");
        // Both busy with a request: nobody can be evicted.
        s.set_idle(a, None);
        s.set_idle(b, None);
        assert!(s.admit(2, t0).is_none());
        s.set_idle(b, Some(t0));
        s.set_idle(a, Some(t0 + Duration::from_secs(1)));
        let (_c, _) = s.admit(2, t0).expect("c takes b's slot");
        assert_eq!(s.len(), 2);
        // b was told to go, a was not.
        let now = futures_now(&evict_b);
        assert!(now, "b evicted");
        assert!(!futures_now(&evict_a), "a kept");
    }

    /// Whether `n` has a stored notification, without waiting.
    fn futures_now(n: &Notify) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(1), n.notified())
                .await
                .is_ok()
        })
    }

    /// An idle connection is closed after IDLE_TIMEOUT: tokio's paused clock moves
    /// instead of the test waiting.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.sock");
        let socket = AdminSocket::bind(&path).expect("bind");
        let ops = crate::ops::tests_support::ops(dir.path());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(socket.serve(ops, crate::app::wait_for(stop_rx)));
        let mut idle = UnixStream::connect(&path).await.expect("connect");
        let mut buf = [0u8; 1];
        let started = crate::clock::instant();
        // Nothing sent: the read ends (EOF) once the server closes the connection.
        let n = idle.read(&mut buf).await.expect("read");
        assert_eq!(n, 0, "closed by the server");
        let waited = started.elapsed();
        assert!(
            waited >= IDLE_TIMEOUT && waited < IDLE_TIMEOUT + Duration::from_secs(1),
            "{waited:?}"
        );
        let _ = stop_tx.send(true);
        server.await.expect("server");
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
