//! The sockets: binding, one receive loop per listen address, a task per new request (so a
//! slow handler or the reject delay never holds the loop), and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::engine::{Engine, Inbound};
use super::error::RadiusError;
use super::events::RadiusLog;
use super::stats::RadiusStatsHandle;
use super::wire::MAX_PACKET_LEN;
use super::{AccessHandler, RadiusConfig};
use crate::clock;

/// A bound RADIUS server: owns the UDP sockets, the TLS listeners and the engine they feed.
/// [`RadiusServer::bind`], read [`RadiusServer::local_addrs`]
/// (tests bind port 0), then [`RadiusServer::run`].
pub struct RadiusServer<H> {
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// RADIUS over TLS: its listeners, settings and clients.
    tls: Option<TlsListeners>,
    engine: Arc<Engine<H>>,
    shutdown_grace: Duration,
}

/// The RADIUS-over-TLS side of a server: its bound listeners and the door they share.
struct TlsListeners {
    listeners: Vec<(SocketAddr, tokio::net::TcpListener)>,
    door: Arc<super::tls::TlsDoor>,
}

impl<H: AccessHandler> RadiusServer<H> {
    /// Checks the configuration, warns (through `log`) about short secrets, and binds every
    /// listen address.
    pub async fn bind(
        cfg: RadiusConfig,
        handler: Arc<H>,
        log: Arc<dyn RadiusLog>,
    ) -> Result<Self, RadiusError> {
        if cfg.listen.is_empty() {
            return Err(RadiusError::NoListenAddress);
        }
        let engine = Arc::new(Engine::new(&cfg, handler, log)?);
        let tls = match &cfg.tls {
            None => None,
            Some(settings) => {
                let mut listeners = Vec::with_capacity(settings.listen.len());
                for addr in &settings.listen {
                    let bind_error = |source| RadiusError::Bind {
                        addr: *addr,
                        source,
                    };
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(bind_error)?;
                    let local = listener.local_addr().map_err(bind_error)?;
                    listeners.push((local, listener));
                }
                Some(TlsListeners {
                    listeners,
                    door: Arc::new(super::tls::TlsDoor::new(settings)),
                })
            }
        };
        let mut sockets = Vec::with_capacity(cfg.listen.len());
        for addr in &cfg.listen {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| RadiusError::Bind {
                    addr: *addr,
                    source,
                })?;
            let local = socket.local_addr().map_err(|source| RadiusError::Bind {
                addr: *addr,
                source,
            })?;
            sockets.push((local, Arc::new(socket)));
        }
        Ok(RadiusServer {
            sockets,
            tls,
            engine,
            shutdown_grace: cfg.shutdown_grace,
        })
    }

    /// The bound addresses, in the order of `listen` (with the real port for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    /// The bound RADIUS-over-TLS addresses.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls
            .iter()
            .flat_map(|t| t.listeners.iter().map(|(a, _)| *a))
            .collect()
    }

    pub fn stats(&self) -> RadiusStatsHandle {
        self.engine.stats_handle()
    }

    /// Serves until `shutdown` completes, then stops receiving and gives requests in flight
    /// up to `shutdown_grace` to send their replies.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RadiusError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        if let Some(tls) = self.tls.take() {
            for (_, listener) in tls.listeners {
                let (engine, door, stop) = (
                    Arc::clone(&self.engine),
                    Arc::clone(&tls.door),
                    stop_rx.clone(),
                );
                loops.spawn(async move {
                    super::tls::accept_loop(engine, listener, door, stop).await;
                    Ok(())
                });
            }
        }
        for (addr, socket) in &self.sockets {
            loops.spawn(receive_loop(
                Arc::clone(&self.engine),
                *addr,
                Arc::clone(socket),
                stop_rx.clone(),
            ));
        }
        loops.spawn(flush_loop(Arc::clone(&self.engine), stop_rx));

        tokio::pin!(shutdown);
        let mut result = Ok(());
        tokio::select! {
            () = &mut shutdown => {}
            Some(ended) = loops.join_next() => result = loop_result(ended),
        }
        // Every loop watches this; a send error only means they are all gone already.
        let _ = stop_tx.send(true);
        while let Some(ended) = loops.join_next().await {
            if result.is_ok() {
                result = loop_result(ended);
            }
        }
        let all = self.engine.max_in_flight;
        let _ =
            tokio::time::timeout(self.shutdown_grace, self.engine.permits.acquire_many(all)).await;
        result
    }
}

/// Binds and serves until `shutdown` completes: [`RadiusServer::bind`] then `run`.
pub async fn serve<H: AccessHandler>(
    cfg: RadiusConfig,
    handler: Arc<H>,
    log: Arc<dyn RadiusLog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RadiusError> {
    RadiusServer::bind(cfg, handler, log)
        .await?
        .run(shutdown)
        .await
}

fn loop_result(
    ended: Result<Result<(), RadiusError>, tokio::task::JoinError>,
) -> Result<(), RadiusError> {
    ended.unwrap_or(Err(RadiusError::LoopDied))
}

async fn receive_loop<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RadiusError> {
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    loop {
        let (n, src) = tokio::select! {
            _ = stop.changed() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) if is_transient(&e) => continue,
                Err(source) => return Err(RadiusError::Receive { addr, source }),
            },
        };
        match engine.inbound(&buf[..n], src, clock::instant()) {
            Inbound::Dropped(_) => {}
            Inbound::Send(bytes) => {
                // A lost reply is recovered by the client's retransmission.
                let _ = socket.send_to(&bytes, src).await;
            }
            Inbound::Work(job) => {
                let (engine, socket) = (Arc::clone(&engine), Arc::clone(&socket));
                tokio::spawn(async move {
                    if let Some(bytes) = engine.answer(job).await {
                        let _ = socket.send_to(&bytes, src).await;
                    }
                });
            }
        }
    }
}

/// Errors a UDP socket reports for earlier sends (ICMP unreachable) or interruptions:
/// the socket itself is fine.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

async fn flush_loop<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RadiusError> {
    let mut tick = tokio::time::interval(engine.drop_log_interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tick.tick() => engine.flush_drop_log(clock::instant()),
        }
    }
}
