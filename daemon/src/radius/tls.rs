//! RADIUS over TLS (RFC 6614, "RadSec"): TCP listeners whose connections must present a
//! certificate signed by `client_ca_file` before a single RADIUS octet is read. A source
//! outside every client's network is closed before any TLS, and the connection slots are
//! shared with a per-source cap and a few reserved per client ([`Slots`]). A peer is a
//! configured TLS client when its certificate names it (a DNS SAN, or the subject CN of a
//! certificate without SANs) and it connects from the client's address; its packets then
//! go through the same [`Engine`] as UDP ones, with the shared secret `radsec` that the
//! RFC fixes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use super::clients::Client;
use super::engine::{Engine, Inbound};
use super::events::DropReason;
use super::AccessHandler;
use crate::clock;
use crate::limit::LineLimiter;

/// The shared secret of every RADIUS-over-TLS packet (RFC 6614 §2.3).
pub const RADSEC_SECRET: &[u8] = b"radsec";

/// Longest a handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One refusal line per reason in this time; the rest are counted (`suppressed=N`).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// RADIUS over TLS as configured under `[radius.tls]`.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub server: Arc<rustls::ServerConfig>,
    pub clients: Vec<TlsClient>,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once, over every source.
    pub max_connections: usize,
    /// Connections one address may hold at once, handshakes included.
    pub max_connections_per_source: usize,
    /// Of `max_connections`, those only a configured client's network may take, per
    /// `[[radius.tls.clients]]` entry: a flood from one place cannot lock the other
    /// gateways out.
    pub reserved_connections_per_client: usize,
    /// Requests of one connection being answered at once; beyond it, otpd stops reading
    /// that connection until one is answered.
    pub max_in_flight_per_connection: usize,
}

/// One `[[radius.tls.clients]]` entry.
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub name: String,
    /// Subject CN or DNS SAN its certificate must carry.
    pub certificate: String,
    pub network: IpNet,
}

/// Reads the certificate, key and client CA of `[radius.tls]`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read_certs = |path: &Path, what: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("radius.tls.{what} {}: {e}", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "radius.tls.{what} {}: no certificate found",
            path.display()
        );
        Ok(certs)
    };
    let certs = read_certs(cert, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("radius.tls.key_file {}: {e}", key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(client_ca, "client_ca_file")? {
        roots
            .add(ca)
            .with_context(|| format!("radius.tls.client_ca_file {}", client_ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("radius.tls.client_ca_file")?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("radius.tls.cert_file and radius.tls.key_file do not make a usable pair")
}

/// The names a certificate answers to: its DNS subject alternative names when it has a
/// subjectAltName extension, else its subject CNs (RFC 6125 §6.4.4: a CN is looked at only
/// in a certificate without subjectAltNames). An unreadable extension names nothing.
pub(crate) fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What every RADIUS-over-TLS listener shares: the settings, the engine's view of each TLS
/// client (its name, the `radsec` secret, and no Message-Authenticator requirement beyond
/// Status-Server's, the connection protecting the packets), and the refusal lines.
pub(crate) struct TlsDoor {
    settings: TlsSettings,
    clients: Vec<(TlsClient, Arc<Client>)>,
    slots: Arc<Slots>,
    refusals: Refusals,
}

impl TlsDoor {
    pub(crate) fn new(settings: &TlsSettings) -> TlsDoor {
        let clients = settings
            .clients
            .iter()
            .map(|c| {
                (
                    c.clone(),
                    Arc::new(Client {
                        name: Arc::from(c.name.as_str()),
                        network: c.network,
                        secret: Zeroizing::new(RADSEC_SECRET.to_vec()),
                        require_message_authenticator: false,
                        over_tls: true,
                    }),
                )
            })
            .collect();
        TlsDoor {
            settings: settings.clone(),
            clients,
            slots: Arc::new(Slots::new(
                settings.clients.iter().map(|c| c.network).collect(),
                settings.max_connections,
                settings.max_connections_per_source,
                settings.reserved_connections_per_client,
            )),
            refusals: Refusals::new(REFUSAL_LOG_INTERVAL),
        }
    }

    /// The configured client whose certificate names and address `names` and `ip` are.
    fn client(&self, names: &[String], ip: IpAddr) -> Option<Arc<Client>> {
        self.clients
            .iter()
            .find(|(c, _)| c.network.contains(&ip) && names.contains(&c.certificate))
            .map(|(_, client)| Arc::clone(client))
    }
}

/// Who may hold a connection, decided on the TCP source alone before any TLS: an address
/// inside some configured client's network, under its per-source count, with a slot of
/// the shared pool or, that one full, of a pool reserved to a client whose network holds it.
pub(crate) struct Slots {
    networks: Vec<IpNet>,
    shared: Arc<Semaphore>,
    reserved: Vec<(IpNet, Arc<Semaphore>)>,
    per_source: usize,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place: given back (pool slot and per-source count) when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    /// The reserved pools are cut out of `max_connections`, which stays the bound on all
    /// connections: each client gets `reserved_connections_per_client`, or its even share
    /// of `max_connections` when there are too many clients for that.
    pub(crate) fn new(
        networks: Vec<IpNet>,
        max_connections: usize,
        per_source: usize,
        reserved_per_client: usize,
    ) -> Slots {
        let clients = networks.len();
        let reserved = reserved_per_client.min(max_connections / clients.max(1));
        Slots {
            shared: Arc::new(Semaphore::new(max_connections - reserved * clients)),
            reserved: networks
                .iter()
                .map(|n| (*n, Arc::new(Semaphore::new(reserved))))
                .collect(),
            networks,
            per_source,
            open: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a connection from `ip`, or why it gets none.
    pub(crate) fn admit(self: &Arc<Slots>, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = ip.to_canonical();
        if !self.networks.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::UnknownAddress);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_source {
            return Err(Refusal::TooManyFromSource);
        }
        let permit = Arc::clone(&self.shared).try_acquire_owned().or_else(|_| {
            self.reserved
                .iter()
                .filter(|(n, _)| n.contains(&ip))
                .find_map(|(_, pool)| Arc::clone(pool).try_acquire_owned().ok())
                .ok_or(Refusal::TooManyConnections)
        });
        let permit = match permit {
            Ok(p) => p,
            Err(e) => {
                if *count == 0 {
                    open.remove(&ip);
                }
                return Err(e);
            }
        };
        *count += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was closed before any RADIUS was read: the `reason` label of
/// `otpd_radius_tls_refused_total` and the key of its rate-limited log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    UnknownAddress,
    TooManyFromSource,
    TooManyConnections,
    NoCertificate,
    UntrustedCertificate,
    HandshakeFailed,
    HandshakeTimeout,
    UnknownClient,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownAddress => "unknown_address",
            Refusal::TooManyFromSource => "too_many_from_source",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::NoCertificate => "no_certificate",
            Refusal::UntrustedCertificate => "untrusted_certificate",
            Refusal::HandshakeFailed => "handshake_failed",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::UnknownClient => "unknown_client",
        }
    }

    /// The refusal a failed handshake stands for.
    fn of_handshake(e: &std::io::Error) -> Refusal {
        match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::NoCertificatesPresented) => Refusal::NoCertificate,
            Some(rustls::Error::InvalidCertificate(_)) => Refusal::UntrustedCertificate,
            _ => Refusal::HandshakeFailed,
        }
    }
}

/// Connections refused before any RADIUS: each counted, one line per reason per interval.
pub(crate) struct Refusals(LineLimiter<Refusal>);

impl Refusals {
    pub(crate) fn new(interval: Duration) -> Refusals {
        Refusals(LineLimiter::new(interval))
    }

    /// Counts a refused connection; logs `line()` unless a line of the same reason went out
    /// less than the interval ago (the next one says how many were not logged).
    pub(crate) fn refuse<H: AccessHandler>(
        &self,
        engine: &Engine<H>,
        reason: Refusal,
        line: impl FnOnce() -> String,
    ) {
        crate::metrics::get()
            .radius_tls_refused
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        if let Some(suppressed) = self.0.note(reason, clock::instant()) {
            let more = if suppressed > 0 {
                format!(" suppressed={suppressed}")
            } else {
                String::new()
            };
            engine.log_line(&format!(
                "radius tls: {} reason={}{more}",
                line(),
                reason.as_str()
            ));
        }
    }
}

/// Accepts connections on `listener` until `stop`.
pub(crate) async fn accept_loop<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    listener: TcpListener,
    door: Arc<TlsDoor>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::clone(&door.settings.server));
    let max_connections = door.settings.max_connections;
    let per_source = door.settings.max_connections_per_source;
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, src)) = accepted else { continue };
        // Decided on the address before any TLS: a stranger costs otpd neither a slot
        // nor a handshake.
        let permit = match door.slots.admit(src.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                drop(tcp);
                door.refusals.refuse(&engine, reason, || match reason {
                    Refusal::UnknownAddress => format!(
                        "connection from {src} is outside every [[radius.tls.clients]] address; closed"
                    ),
                    Refusal::TooManyFromSource => format!(
                        "{per_source} connections from {} open already; one more refused",
                        src.ip()
                    ),
                    _ => format!(
                        "{max_connections} connections open already; one from {src} refused"
                    ),
                });
                continue;
            }
        };
        let engine = Arc::clone(&engine);
        let acceptor = acceptor.clone();
        let door = Arc::clone(&door);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(engine, acceptor, tcp, src, door, stop).await;
        });
    }
}

async fn connection<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    src: SocketAddr,
    door: Arc<TlsDoor>,
    stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            door.refusals
                .refuse(&engine, Refusal::of_handshake(&e), || {
                    format!("handshake with {src} refused: {e}")
                });
            return;
        }
        Err(_) => {
            door.refusals
                .refuse(&engine, Refusal::HandshakeTimeout, || {
                    format!("handshake with {src} timed out")
                });
            return;
        }
    };
    let names = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| certificate_names(c.as_ref()))
        .unwrap_or_default();
    let Some(client) = door.client(&names, src.ip().to_canonical()) else {
        door.refusals.refuse(&engine, Refusal::UnknownClient, || {
            format!("certificate {names:?} from {src} matches no [[radius.tls.clients]] (name and address); connection closed")
        });
        return;
    };
    let in_flight = door.settings.max_in_flight_per_connection;
    serve_stream(
        engine,
        client,
        tls,
        src,
        door.settings.idle_timeout,
        in_flight,
        stop,
    )
    .await;
}

/// Reads RADIUS packets off an established connection of `client` and writes the replies
/// back, with at most `max_in_flight` of its requests being answered at once: beyond it,
/// nothing more is read until one is answered.
pub(crate) async fn serve_stream<H, S>(
    engine: Arc<Engine<H>>,
    client: Arc<Client>,
    stream: S,
    src: SocketAddr,
    idle_timeout: Duration,
    max_in_flight: usize,
    mut stop: watch::Receiver<bool>,
) where
    H: AccessHandler,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, write) = tokio::io::split(stream);
    let write = Arc::new(Mutex::new(write));
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let packet = tokio::select! {
            _ = stop.changed() => return,
            read = tokio::time::timeout(idle_timeout, read_packet(&mut read)) => match read {
                Ok(Ok(Some(p))) => p,
                // Closed, idle, or a length no RADIUS packet has: the stream cannot be
                // resynchronised, so the connection ends.
                _ => return,
            },
        };
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        match engine.inbound_from(&client, &packet, src, clock::instant()) {
            Inbound::Dropped(_) => {}
            Inbound::Send(bytes) => {
                if write.lock().await.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Inbound::Work(job) => {
                let engine = Arc::clone(&engine);
                let write = Arc::clone(&write);
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Some(bytes) = engine.answer(job).await {
                        let _ = write.lock().await.write_all(&bytes).await;
                    }
                });
            }
        }
    }
}

/// One RADIUS packet off the stream: `None` at a clean end, an error for a length outside
/// 20..=4096 (RFC 2865 §3).
async fn read_packet<R: AsyncRead + Unpin>(read: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match read.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !(20..=4096).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            DropReason::Malformed.as_str(),
        ));
    }
    let mut packet = vec![0u8; len];
    packet[..4].copy_from_slice(&header);
    read.read_exact(&mut packet[4..]).await?;
    Ok(Some(packet))
}
