//! At most `pool_size` open connections, opened when first needed and reused; a connection
//! the server closed (a restart, a failover to another host) is dropped and the next call
//! opens a new one, on whichever listed host now takes writes.
//!
//! An idle connection is not watched (the client reads from its socket only during a
//! call), so one whose server went away still looks open until it is used. Once a call
//! finds its connection dead, [`Pool::discard_idle`] drops the idle ones too: they were
//! most likely opened to the same server and died with it.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use otpd_core::store::StoreError;
use postgres::{Client, Statement};

use crate::connect::Target;

/// Runs `f`, which blocks on the database, so that it may: as is on a plain thread or the
/// daemon's blocking pool; through `block_in_place` on a worker of a multi-threaded tokio
/// runtime; on a thread of its own under a single-threaded one. The `postgres` client
/// drives its connection with a runtime of its own, which tokio refuses to start on a
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
    /// How long a caller waits for a busy pool before it is told so.
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

/// An open connection and the statements prepared on it: a statement is parsed and
/// planned by the server once per connection, not once per call (which cost a round trip
/// and a plan for every call).
pub struct Session {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Session {
    fn new(client: Client) -> Session {
        Session {
            client,
            prepared: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection (at its first use here).
    pub fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

impl Deref for Session {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

struct State {
    idle: Vec<Session>,
    /// Connections open or being opened, idle ones included.
    open: usize,
}

impl Pool {
    pub fn new(target: Target, size: usize, wait: Duration) -> Pool {
        Pool {
            target,
            size: size.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, a new one if fewer than `size` are open, or the first one given
    /// back within `wait`.
    pub fn get(&self) -> Result<Conn<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                    reused: true,
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.target.connect() {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(Session::new(client)),
                        reused: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = self
                .freed
                .wait_timeout(state, self.wait)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if waited.timed_out() && state.idle.is_empty() && state.open >= self.size {
                return Err(StoreError::Io(format!(
                    "PostgreSQL at {}: all {} connections stayed busy for {:?}; raise store.postgres.pool_size",
                    self.target.location(),
                    self.size,
                    self.wait
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
    client: Option<Session>,
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
    type Target = Session;
    fn deref(&self) -> &Session {
        self.client
            .as_ref()
            .expect("a lent connection is present until dropped")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Session {
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
