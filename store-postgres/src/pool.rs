//! At most `pool_size` open connections, opened when first needed and reused; a connection
//! the server closed (a restart, a failover to another host) is dropped and the next call
//! opens a new one, on whichever listed host now takes writes.
//!
//! An idle connection is not watched (the client reads from its socket only during a
//! call), so one whose server went away still looks open until it is used. Once a call
//! finds its connection dead, [`Pool::discard_idle`] drops the idle ones too: they were
//! most likely opened to the same server and died with it.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use otpd_core::store::StoreError;

use crate::connect::Target;
use crate::db::Db;

/// Runs `f`, which blocks on the database, so that it may: as is on a plain thread or the
/// daemon's blocking pool; through `block_in_place` on a worker of a multi-threaded tokio
/// runtime; on a thread of its own under a single-threaded one. A [`Db`] drives its
/// socket with a runtime of its own, which tokio refuses to start on a
/// thread that is driving asynchronous tasks.
pub fn off_reactor<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

pub struct Pool {
    pub target: Target,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Db>,
    /// Connections open or being opened, idle ones included.
    open: usize,
    /// When a call last got no answer in time and nothing has answered since: for a
    /// statement's wait after it, calls fail at once instead of each waiting its own out
    /// (the health check keeps asking, and clears it once the server answers).
    stalled: Option<Instant>,
}

impl Pool {
    pub fn new(target: Target, size: usize) -> Pool {
        Pool {
            target,
            size: size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                stalled: None,
            }),
            freed: Condvar::new(),
        }
    }

    /// A call got no answer in time: the idle connections go (they lead to the same
    /// server), and the calls waiting for one, or coming within a statement's wait, fail.
    pub fn stalled(&self) {
        let idle = {
            let mut state = self.lock();
            state.stalled = Some(Instant::now());
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        self.freed.notify_all();
        drop(idle);
    }

    /// The server answered.
    pub fn answered(&self) {
        let mut state = self.lock();
        if state.stalled.is_some() {
            state.stalled = None;
        }
    }

    fn refuse_stalled(&self, state: &State) -> Result<(), StoreError> {
        match state.stalled {
            Some(at) if at.elapsed() < self.target.per_statement => Err(StoreError::Io(format!(
                "PostgreSQL at {}: not answering ({} ms ago a statement got no answer within {} ms)",
                self.target.location(),
                at.elapsed().as_millis(),
                self.target.per_statement.as_millis()
            ))),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, a new one if fewer than `size` are open, or the first one given
    /// back, by `until`; at once an error while the server is taken to hang.
    pub fn get(&self, until: Instant) -> Result<Conn<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            self.refuse_stalled(&state)?;
            while let Some(mut client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                client.deadline(until);
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                    reused: true,
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                let connected = self.target.connect(until);
                if connected.is_ok() {
                    self.answered();
                }
                return match connected {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(client),
                        reused: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        if e.is_deadline() {
                            self.stalled();
                        } else {
                            self.freed.notify_one();
                        }
                        Err(self.target.error("cannot connect", &e))
                    }
                };
            }
            let left = until.saturating_duration_since(Instant::now());
            let (next, _) = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            // A connection freed after the call's deadline would only time out its statement.
            if Instant::now() >= until {
                return Err(StoreError::Io(format!(
                    "PostgreSQL at {}: all {} connections stayed busy for {} ms; raise store.postgres.pool_size",
                    self.target.location(),
                    self.size,
                    self.target.per_statement.as_millis()
                )));
            }
        }
    }
}

impl Pool {
    /// Closes every idle connection (the next calls open new ones); called where blocking
    /// is allowed, since closing a client blocks on its connection.
    pub fn discard_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        if !idle.is_empty() {
            self.freed.notify_all();
        }
        drop(idle);
    }
}

impl Drop for Pool {
    /// Closing a client blocks on its connection: done where blocking is allowed.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        off_reactor(move || drop(idle));
    }
}

/// A connection lent by the [`Pool`]; given back when dropped.
pub struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Db>,
    /// Whether it was idle in the pool before (and may have died there unnoticed), rather
    /// than opened for this call.
    reused: bool,
}

impl Conn<'_> {
    pub fn reused(&self) -> bool {
        self.reused
    }
}

impl Deref for Conn<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.client
            .as_ref()
            .expect("a lent connection is present until dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        self.client
            .as_mut()
            .expect("a lent connection is present until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut state = self.pool.lock();
        if client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}
