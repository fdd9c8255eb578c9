//! One connection with a deadline on everything it waits for. The server's
//! `statement_timeout` cancels a slow statement, but a server that hangs (a frozen process,
//! a network that drops packets) never answers at all, and neither does its kernel refuse
//! the connection; so every wait here is bounded on this side too. A wait that ran out
//! leaves the connection in an unknown state: it is marked broken, its socket is closed,
//! and it is never lent again.
//!
//! A statement cut off this way may still run: it reached the server's socket, and a
//! server that wakes up executes it (and, in autocommit, commits it) before it finds the
//! client gone. Its caller was told the store failed and refused; for a spent step that
//! means the code is refused and its step spent all the same, which is safe (the next code
//! is accepted), whereas sending it again could accept it twice (`Retry::Never`).

use std::future::Future;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;

use tokio_postgres::{IsolationLevel, Row, Statement};

/// Why a call on a connection failed.
#[derive(Debug)]
pub enum Fail {
    /// The server (or the connection) said no.
    Db(tokio_postgres::Error),
    /// No answer before the deadline: the server hangs or the network drops packets.
    Deadline(Duration),
    /// This side could not make the call (no runtime for the connection).
    Local(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl Fail {
    pub fn is_deadline(&self) -> bool {
        matches!(self, Fail::Deadline(_))
    }
}

/// A client, the runtime that drives its socket (current-thread, driven only while a call
/// waits), and the deadline of its next wait.
pub struct Db {
    runtime: Runtime,
    client: tokio_postgres::Client,
    /// How long one statement may wait for its answer.
    per_statement: Duration,
    /// The deadline of the next statement: the call's when it is the call's first one.
    until: Instant,
    broken: bool,
    /// The statements prepared on this connection: each is parsed and planned by the server
    /// once per connection, not at every call (which cost a round trip and a plan each:
    /// 1109 -> 1934 answers/s for two nodes in `scripts/bench --only cluster`).
    prepared: HashMap<String, Statement>,
}

impl Db {
    /// Connects with `config` and `tls`, giving up at `until` (the server's handshake
    /// included, which a frozen server accepts at the TCP level and never answers).
    pub fn connect<T>(
        config: &tokio_postgres::Config,
        tls: T,
        per_statement: Duration,
        until: Instant,
    ) -> Result<Db, Fail>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Fail::Local(format!("cannot start a connection's runtime: {e}")))?;
        let left = until.saturating_duration_since(Instant::now());
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout(left, config.connect(tls)).await })
            .map_err(|_| Fail::Deadline(left))??;
        runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(Db {
            runtime,
            client,
            per_statement,
            until,
            broken: false,
            prepared: HashMap::new(),
        })
    }

    /// Closed by the server, or broken by a deadline here.
    pub fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// A wait on it ran out: the server it leads to is taken to hang.
    pub fn timed_out(&self) -> bool {
        self.broken
    }

    /// The next statement must be answered by `until` (the call's deadline); later ones
    /// each get [`Db::per_statement`] from the answer before.
    pub fn deadline(&mut self, until: Instant) {
        self.until = until;
    }

    fn wait<T>(
        runtime: &Runtime,
        until: &mut Instant,
        broken: &mut bool,
        per_statement: Duration,
        f: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Fail> {
        let left = until.saturating_duration_since(Instant::now());
        let answer = runtime.block_on(async { tokio::time::timeout(left, f).await });
        *until = Instant::now() + per_statement;
        match answer {
            Ok(r) => Ok(r?),
            Err(_) => {
                *broken = true;
                Err(Fail::Deadline(left))
            }
        }
    }

    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Fail> {
        let st = self.statement(sql)?;
        let f = self.client.query(&st, params);
        Self::wait(
            &self.runtime,
            &mut self.until,
            &mut self.broken,
            self.per_statement,
            f,
        )
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Fail> {
        let st = self.statement(sql)?;
        let f = self.client.query_one(&st, params);
        Self::wait(
            &self.runtime,
            &mut self.until,
            &mut self.broken,
            self.per_statement,
            f,
        )
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Fail> {
        let st = self.statement(sql)?;
        let f = self.client.execute(&st, params);
        Self::wait(
            &self.runtime,
            &mut self.until,
            &mut self.broken,
            self.per_statement,
            f,
        )
    }

    /// `sql` prepared on this connection, at its first use here (within the deadline).
    fn statement(&mut self, sql: &str) -> Result<Statement, Fail> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let f = self.client.prepare(sql);
        let st = Self::wait(
            &self.runtime,
            &mut self.until,
            &mut self.broken,
            self.per_statement,
            f,
        )?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// One empty statement: the server answers, or not in time.
    pub fn ping(&mut self) -> Result<(), Fail> {
        let f = self.client.simple_query("");
        Self::wait(
            &self.runtime,
            &mut self.until,
            &mut self.broken,
            self.per_statement,
            f,
        )
        .map(|_| ())
    }

    /// A transaction; dropped without [`Tx::commit`], it rolls back.
    pub fn transaction(
        &mut self,
        isolation: Option<IsolationLevel>,
        read_only: bool,
    ) -> Result<Tx<'_>, Fail> {
        let Db {
            runtime,
            client,
            per_statement,
            until,
            broken,
            ..
        } = self;
        let mut builder = client.build_transaction().read_only(read_only);
        if let Some(level) = isolation {
            builder = builder.isolation_level(level);
        }
        let tx = Self::wait(runtime, until, broken, *per_statement, builder.start())?;
        Ok(Tx {
            runtime,
            until,
            broken,
            per_statement: *per_statement,
            tx,
        })
    }
}

/// A transaction on a [`Db`], under the same deadlines.
pub struct Tx<'a> {
    runtime: &'a Runtime,
    until: &'a mut Instant,
    broken: &'a mut bool,
    per_statement: Duration,
    tx: tokio_postgres::Transaction<'a>,
}

impl Tx<'_> {
    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Fail> {
        let f = self.tx.query(sql, params);
        Db::wait(self.runtime, self.until, self.broken, self.per_statement, f)
    }

    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Fail> {
        let f = self.tx.query_one(sql, params);
        Db::wait(self.runtime, self.until, self.broken, self.per_statement, f)
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Fail> {
        let f = self.tx.execute(sql, params);
        Db::wait(self.runtime, self.until, self.broken, self.per_statement, f)
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Fail> {
        let f = self.tx.batch_execute(sql);
        Db::wait(self.runtime, self.until, self.broken, self.per_statement, f)
    }

    pub fn commit(self) -> Result<(), Fail> {
        let Tx {
            runtime,
            until,
            broken,
            per_statement,
            tx,
        } = self;
        Db::wait(runtime, until, broken, per_statement, tx.commit())
    }
}
