//! The listener: plain HTTP/1.1, or HTTPS when `http.tls_cert_file`/`tls_key_file` are set.
//! Connections are bounded in number, over all and per source (an IPv4 address or an
//! IPv6 /64; the trusted proxies are not bounded per source); a client gets 10 s to send its headers (also while
//! a kept-alive connection idles) and to finish a TLS handshake; on shutdown each
//! connection finishes its request in flight and closes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::admin::{ApiKeys, Peer};
use super::{router, Doors, Web};
use crate::config::Config;
use crate::ops::Ops;

const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish once shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections refused at the cap are logged at most this often, as a count: a
/// connection flood must not become a log flood.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts refused connections between two log lines.
#[derive(Default)]
struct Refusals {
    count: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    /// Counts one; returns the count to log when a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        let due = self
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

pub struct HttpServer {
    listener: TcpListener,
    /// `http.admin_listen` and its routes (`/healthz`, the admin API), when set.
    admin: Option<(TcpListener, Router)>,
    tls: Option<TlsAcceptor>,
    router: Router,
    ops: Arc<Ops>,
    per_source: Arc<PerSource>,
}

/// Connections open per source, bounded so that one address cannot take every slot of
/// [`MAX_CONNECTIONS`] from the others.
struct PerSource {
    cap: usize,
    /// Trusted proxies: every customer comes through them, so they are not bounded here.
    exempt: Vec<ipnet::IpNet>,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source; the count goes down when it is dropped.
struct Counted {
    table: Arc<PerSource>,
    key: Option<IpAddr>,
}

impl PerSource {
    /// A table allowing `cap` connections per source, none open yet; `exempt` sources are
    /// not bounded.
    fn new(cap: usize, exempt: Vec<ipnet::IpNet>) -> Arc<PerSource> {
        Arc::new(PerSource {
            cap,
            exempt,
            open: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`, or `None` when its source has `cap` open.
    fn admit(self: &Arc<PerSource>, ip: IpAddr) -> Option<Counted> {
        let ip = ip.to_canonical();
        if self.exempt.iter().any(|n| n.contains(&ip)) {
            return Some(Counted {
                table: Arc::clone(self),
                key: None,
            });
        }
        let key = crate::limit::source_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Counted {
            table: Arc::clone(self),
            key: Some(key),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

impl HttpServer {
    /// Binds `http.listen` and loads the API keys and TLS material: every mistake shows
    /// at start, not at the first request.
    pub async fn bind(config: &Config, ops: Arc<Ops>) -> anyhow::Result<HttpServer> {
        let h = &config.http;
        let tls = match (&h.tls_cert_file, &h.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let keys = ApiKeys::load(h)?;
        let listener = TcpListener::bind(&h.listen)
            .await
            .with_context(|| format!("cannot listen on http.listen {}", h.listen))?;
        ops.log.info(&format!(
            "http: listening on {}{}, {} API key(s){}",
            if tls.is_some() { "https://" } else { "http://" },
            listener
                .local_addr()
                .map_or(h.listen.clone(), |a| a.to_string()),
            keys.len(),
            if keys.is_empty() {
                " (admin API closed)"
            } else {
                ""
            }
        ));
        let web = Arc::new(Web::new(config, ops.clone(), keys));
        let (doors, admin) = match &h.admin_listen {
            None => (Doors::All, None),
            Some(at) => {
                let l = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on http.admin_listen {at}"))?;
                let shown = l.local_addr().map_or(at.clone(), |a| a.to_string());
                ops.log
                    .info(&format!("http: /healthz and the admin API on {shown} only"));
                (
                    Doors::Customer,
                    Some((l, router(web.clone(), Doors::Admin))),
                )
            }
        };
        Ok(HttpServer {
            listener,
            admin,
            tls,
            router: router(web, doors),
            ops,
            per_source: PerSource::new(h.max_connections_per_source, h.trusted_proxy_networks()),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) {
        let Some((listener, router)) = self.admin.take() else {
            return self.serve_one(shutdown).await;
        };
        // The admin listener: its own connections and cap, the same TLS and shutdown.
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let admin = HttpServer {
            listener,
            admin: None,
            tls: self.tls.clone(),
            router,
            ops: self.ops.clone(),
            per_source: PerSource::new(self.per_source.cap, Vec::new()),
        };
        let admin = tokio::spawn(admin.serve_one(async move { closed(&mut stop_rx).await }));
        // Both listeners stop at the same moment and drain side by side, so shutdown takes
        // one DRAIN_TIMEOUT at most, not one per listener.
        self.serve_one(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        let _ = admin.await;
    }

    async fn serve_one(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut refusals = Refusals::default();
        let mut source_refusals = Refusals::default();
        let (closing_tx, closing) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors, typically: pause rather than spin.
                            self.ops.log.warn(&format!("http: accept failed: {e}"));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(counted) = self.per_source.admit(peer.ip()) else {
                        if let Some(n) = source_refusals.note(Instant::now()) {
                            self.ops.log.warn(&format!("http: {} connections open from one source; refused {n} connection(s), the last from {peer} (logged at most every {}s)", self.per_source.cap, REFUSAL_LOG_INTERVAL.as_secs()));
                        }
                        continue;
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        if let Some(n) = refusals.note(Instant::now()) {
                            self.ops.log.warn(&format!("http: {MAX_CONNECTIONS} connections open; refused {n} connection(s), the last from {peer} (logged at most every {}s)", REFUSAL_LOG_INTERVAL.as_secs()));
                        }
                        continue;
                    };
                    let router = self.router.clone();
                    let tls = self.tls.clone();
                    let closing = closing.clone();
                    conns.spawn(async move {
                        let _permit = (permit, counted);
                        connection(tcp, peer, tls, router, closing).await;
                    });
                }
            }
        }
        let _ = closing_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.ops
                .log
                .warn("http: some requests did not finish in time and were cut off");
        }
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    closing: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => drive(TokioIo::new(tcp), peer, router, closing).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                drive(TokioIo::new(stream), peer, router, closing).await;
            }
        }
    }
}

async fn drive<I>(io: I, peer: SocketAddr, router: Router, mut closing: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        router.clone().oneshot(req.map(Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closed(&mut closing) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the server starts closing (or is gone).
async fn closed(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("http.tls_cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "http.tls_cert_file {}: no certificate found",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("http.tls_key_file {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("http.tls_cert_file and http.tls_key_file do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.note(t0), Some(1), "the first refusal is logged at once");
        for i in 1..1000 {
            assert_eq!(r.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(r.note(t0 + REFUSAL_LOG_INTERVAL), Some(1000));
        assert_eq!(r.note(t0 + REFUSAL_LOG_INTERVAL), None);
    }
}
