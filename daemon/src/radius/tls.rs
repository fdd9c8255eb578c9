//! RADIUS over TLS (RFC 6614, "RadSec"): TCP listeners whose connections must present a
//! certificate signed by `client_ca_file` before a single RADIUS octet is read. A peer is
//! a configured TLS client when its certificate names it (subject CN or a DNS SAN) and it
//! connects from the client's address; its packets then go through the same [`Engine`] as
//! UDP ones, with the shared secret `radsec` that the RFC fixes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use super::clients::Client;
use super::engine::{Engine, Inbound};
use super::events::DropReason;
use super::AccessHandler;

/// The shared secret of every RADIUS-over-TLS packet (RFC 6614 §2.3).
pub const RADSEC_SECRET: &[u8] = b"radsec";

/// Longest a handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// RADIUS over TLS as configured under `[radius.tls]`.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub server: Arc<rustls::ServerConfig>,
    pub clients: Vec<TlsClient>,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
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

/// The names a certificate answers to: its subject CNs and DNS subject alternative names.
pub(crate) fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push((*d).to_string());
            }
        }
    }
    names
}

/// The engine's view of each TLS client: its name, the `radsec` secret, and no
/// Message-Authenticator requirement beyond Status-Server's (the connection protects the
/// packets).
pub(crate) fn engine_clients(settings: &TlsSettings) -> Vec<(TlsClient, Arc<Client>)> {
    settings
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
        .collect()
}

/// Accepts connections on `listener` until `stop`.
pub(crate) async fn accept_loop<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    listener: TcpListener,
    settings: Arc<TlsSettings>,
    clients: Arc<Vec<(TlsClient, Arc<Client>)>>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::clone(&settings.server));
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, src)) = accepted else { continue };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            engine.log_line(&format!(
                "radius tls: {} connections open already; one from {src} refused",
                settings.max_connections
            ));
            continue;
        };
        let engine = Arc::clone(&engine);
        let acceptor = acceptor.clone();
        let settings = Arc::clone(&settings);
        let clients = Arc::clone(&clients);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(engine, acceptor, tcp, src, settings, clients, stop).await;
        });
    }
}

async fn connection<H: AccessHandler>(
    engine: Arc<Engine<H>>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    src: SocketAddr,
    settings: Arc<TlsSettings>,
    clients: Arc<Vec<(TlsClient, Arc<Client>)>>,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            engine.log_line(&format!("radius tls: handshake with {src} refused: {e}"));
            return;
        }
        Err(_) => {
            engine.log_line(&format!("radius tls: handshake with {src} timed out"));
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
    let ip = src.ip().to_canonical();
    let Some(client) = clients
        .iter()
        .find(|(c, _)| c.network.contains(&ip) && names.contains(&c.certificate))
        .map(|(_, client)| Arc::clone(client))
    else {
        engine.log_line(&format!(
            "radius tls: certificate {names:?} from {src} matches no [[radius.tls.clients]] (name and address); connection closed"
        ));
        return;
    };
    let (mut read, write) = tokio::io::split(tls);
    let write = Arc::new(Mutex::new(write));
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight_per_connection));
    loop {
        let packet = tokio::select! {
            _ = stop.changed() => return,
            read = tokio::time::timeout(settings.idle_timeout, read_packet(&mut read)) => match read {
                Ok(Ok(Some(p))) => p,
                // Closed, idle, or a length no RADIUS packet has: the stream cannot be
                // resynchronised, so the connection ends.
                _ => return,
            },
        };
        let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        match engine.inbound_from(&client, &packet, src, Instant::now()) {
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
                    answer(engine, write, job).await;
                });
            }
        }
    }
}

async fn answer<H: AccessHandler, S: tokio::io::AsyncWrite>(
    engine: Arc<Engine<H>>,
    write: Arc<Mutex<WriteHalf<S>>>,
    job: Box<super::engine::Job>,
) {
    let reply = engine.evaluate(job).await;
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let bytes = reply.bytes.clone();
    reply.complete(Instant::now());
    if let Some(bytes) = bytes {
        let _ = write.lock().await.write_all(&bytes).await;
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
