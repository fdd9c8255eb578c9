//! Audit lines to syslog: the local socket (RFC 3164, which journald and rsyslog parse
//! there) or a collector over UDP or TCP (RFC 5424; TCP framed by octet counting, RFC 6587).
//! A login never waits for it: lines go into a bounded queue that one thread empties; when
//! the queue is full the line is dropped and counted (`otpd_log_dropped_total`), and the
//! thread reconnects after an error with a growing pause.

use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use super::{pid, Record};

/// Lines waiting for the syslog thread; beyond them a line is dropped, never waited for.
const QUEUE: usize = 4096;
/// The first pause after a failed connection or send; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// authpriv (10) × 8 + the severity.
const AUTHPRIV: u8 = 10;

/// Where audit lines go besides the main output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// The host's syslog socket (`/dev/log`).
    Local(PathBuf),
    Udp(String),
    Tcp(String),
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogTarget::Local(path) => write!(f, "syslog socket {}", path.display()),
            SyslogTarget::Udp(addr) => write!(f, "syslog server udp://{addr}"),
            SyslogTarget::Tcp(addr) => write!(f, "syslog server tcp://{addr}"),
        }
    }
}

impl SyslogTarget {
    /// `[log] syslog_server`: `udp://HOST:PORT` or `tcp://HOST:PORT`.
    pub fn server(url: &str) -> Result<SyslogTarget, String> {
        let (scheme, addr) = url.split_once("://").ok_or_else(|| {
            format!("`log.syslog_server` {url:?}: udp://HOST:PORT or tcp://HOST:PORT")
        })?;
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!(
                "`log.syslog_server` {url:?}: the address needs a port"
            ));
        }
        match scheme {
            "udp" => Ok(SyslogTarget::Udp(addr.to_string())),
            "tcp" => Ok(SyslogTarget::Tcp(addr.to_string())),
            _ => Err(format!("`log.syslog_server` {url:?}: udp:// or tcp://")),
        }
    }

    pub(super) fn is_local(&self) -> bool {
        matches!(self, SyslogTarget::Local(_))
    }
}

pub(super) struct Queue {
    tx: SyncSender<Vec<u8>>,
    rfc5424: bool,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    pub(super) fn start(target: SyslogTarget) -> Queue {
        let (tx, rx) = sync_channel(QUEUE);
        let rfc5424 = !target.is_local();
        let dropped = Arc::new(AtomicU64::new(0));
        let count = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("otpd-syslog".into())
            .spawn(move || run(target, rx, count));
        if let Err(e) = spawned {
            super::out::write_stderr(format!("otpd: syslog thread: {e}\n").as_bytes());
        }
        Queue {
            tx,
            rfc5424,
            dropped,
        }
    }

    /// Queues the line; false when it was dropped (and counted) instead.
    pub(super) fn send(&self, r: &Record<'_>) -> bool {
        let line = if self.rfc5424 { rfc5424(r) } else { rfc3164(r) };
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                crate::metrics::get().log_dropped.inc();
                false
            }
        }
    }
}

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

fn connect(target: &SyslogTarget) -> std::io::Result<Conn> {
    Ok(match target {
        SyslogTarget::Local(path) => {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            Conn::Unix(s)
        }
        SyslogTarget::Udp(addr) => {
            let s = UdpSocket::bind(("0.0.0.0", 0))?;
            s.connect(addr.as_str())?;
            Conn::Udp(s)
        }
        SyslogTarget::Tcp(addr) => {
            let s = TcpStream::connect(addr.as_str())?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            Conn::Tcp(s)
        }
    })
}

fn send(conn: &mut Conn, line: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Unix(s) => s.send(line).map(drop),
        Conn::Udp(s) => s.send(line).map(drop),
        Conn::Tcp(s) => {
            let mut framed = format!("{} ", line.len()).into_bytes();
            framed.extend_from_slice(line);
            s.write_all(&framed)
        }
    }
}

/// The syslog thread: one line at a time; a line that could not be sent is kept and sent
/// again after the pause, while new lines wait in the bounded queue.
fn run(target: SyslogTarget, rx: Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    let mut conn: Option<Conn> = None;
    let mut pause = FIRST_PAUSE;
    let mut warned = false;
    for line in rx {
        loop {
            let result = match conn.as_mut() {
                Some(c) => send(c, &line),
                None => connect(&target).and_then(|mut c| {
                    let r = send(&mut c, &line);
                    conn = Some(c);
                    r
                }),
            };
            match result {
                Ok(()) => {
                    if warned {
                        let lost = dropped.swap(0, Ordering::Relaxed);
                        super::out::write_stderr(
                            format!(
                                "otpd[{}]: warn: {target} reached again; {lost} audit lines were dropped meanwhile\n",
                                pid()
                            )
                            .as_bytes(),
                        );
                        warned = false;
                    }
                    pause = FIRST_PAUSE;
                    break;
                }
                Err(e) => {
                    conn = None;
                    if !warned {
                        super::out::write_stderr(
                            format!(
                                "otpd[{}]: warn: {target} unavailable ({e}); audit lines wait (at most {QUEUE}) and it is tried again\n",
                                pid()
                            )
                            .as_bytes(),
                        );
                        warned = true;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }
}

/// `<PRI>Mmm dd hh:mm:ss otpd[PID]: MESSAGE` (RFC 3164), as the local daemons parse it.
fn rfc3164(r: &Record<'_>) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let now = time::OffsetDateTime::now_utc();
    format!(
        "<{}>{} {:2} {:02}:{:02}:{:02} otpd[{}]: {}",
        AUTHPRIV * 8 + r.level.severity(),
        MONTHS[usize::from(u8::from(now.month())) - 1],
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        pid(),
        r.message
    )
    .into_bytes()
}

/// `<PRI>1 TIMESTAMP HOST otpd PID audit - MESSAGE` (RFC 5424, no structured data).
fn rfc5424(r: &Record<'_>) -> Vec<u8> {
    format!(
        "<{}>1 {} {} otpd {} audit - {}",
        AUTHPRIV * 8 + r.level.severity(),
        super::out::rfc3339_now(),
        hostname(),
        pid(),
        r.message
    )
    .into_bytes()
}

fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let h = h.trim();
        if h.is_empty() || h.contains(' ') {
            "-".to_string()
        } else {
            h.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Level;

    fn audit() -> Record<'static> {
        Record {
            level: Level::Info,
            target: "otpd",
            message: "audit radius accept user=\"taro\"",
            audit: Some(&[]),
        }
    }

    #[test]
    fn both_formats_keep_the_audit_text_and_the_authpriv_facility() {
        let old = String::from_utf8(rfc3164(&audit())).expect("utf-8");
        assert!(old.starts_with("<86>"), "{old}");
        assert!(old.ends_with(&format!(
            " otpd[{}]: audit radius accept user=\"taro\"",
            pid()
        )));
        let new = String::from_utf8(rfc5424(&audit())).expect("utf-8");
        assert!(new.starts_with("<86>1 "), "{new}");
        assert!(new.ends_with(&format!(
            " otpd {} audit - audit radius accept user=\"taro\"",
            pid()
        )));
    }

    #[test]
    fn a_server_is_a_scheme_and_an_address_with_a_port() {
        assert_eq!(
            SyslogTarget::server("tcp://10.0.0.5:6514"),
            Ok(SyslogTarget::Tcp("10.0.0.5:6514".into()))
        );
        assert!(SyslogTarget::server("udp://collector").is_err());
        assert!(SyslogTarget::server("10.0.0.5:514").is_err());
        assert!(SyslogTarget::server("tls://10.0.0.5:6514").is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A local socket nobody listens on: the thread waits between attempts, so the
        // queue fills and every line beyond it is counted, none waited for.
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::start(SyslogTarget::Local(dir.path().join("absent")));
        let refused = (0..QUEUE + 100).filter(|_| !q.send(&audit())).count();
        assert!(refused >= 99, "{refused}");
        assert!(
            q.dropped.load(Ordering::Relaxed) as usize == refused,
            "{}",
            q.dropped.load(Ordering::Relaxed)
        );
    }
}
