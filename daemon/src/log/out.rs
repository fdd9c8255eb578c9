//! The three places a line is written: readable text on stderr, JSON lines on stderr, the
//! journal's native socket.

use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::{pid, Record};

pub(super) enum Output {
    /// `journal_stream`: stderr is connected to the journal (`JOURNAL_STREAM`), so each line
    /// starts with its priority as `<N>` (sd-daemon(3)) and the journal adds name and pid.
    Text {
        journal_stream: bool,
    },
    Json,
    Journal(UnixDatagram),
}

impl Output {
    pub(super) fn text() -> Output {
        Output::Text {
            journal_stream: stderr_is_journal(),
        }
    }

    /// The native protocol's socket (`/run/systemd/journal/socket`), connected once: the
    /// journal keeps its path across restarts, so each send finds the new daemon.
    pub(super) fn journal(path: &Path) -> std::io::Result<Output> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(Output::Journal(socket))
    }

    pub(super) fn is_journal(&self) -> bool {
        matches!(self, Output::Journal(_))
    }

    pub(super) fn write(&self, r: &Record<'_>) {
        match self {
            Output::Text { journal_stream } => {
                write_stderr(text_line(r, *journal_stream).as_bytes())
            }
            Output::Json => write_stderr(json_line(r).as_bytes()),
            Output::Journal(socket) => {
                let fields = journal_fields(r);
                if socket.send(&fields).is_err() {
                    // The journal is away (restarting) or refused the size: the line is not
                    // lost, it goes to stderr, which the service manager also keeps.
                    write_stderr(text_line(r, false).as_bytes());
                }
            }
        }
    }
}

/// Whether fd 2 is the stream systemd connected to the journal: `JOURNAL_STREAM` names its
/// device and inode (systemd.exec(5)); a redirected stderr no longer matches.
pub(super) fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    // The stream itself, not where a path would lead: /proc's link of fd 2 stats as
    // the open file or socket.
    let Ok(st) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    use std::os::unix::fs::MetadataExt as _;
    dev.parse::<u64>().ok() == Some(st.dev()) && ino.parse::<u64>().ok() == Some(st.ino())
}

/// `otpd[PID]: LEVEL: [TARGET: ]MESSAGE`, or `<N>[TARGET: ]MESSAGE` on the journal's stream.
pub(super) fn text_line(r: &Record<'_>, journal_stream: bool) -> String {
    let mut text = String::with_capacity(r.message.len() + 40);
    if journal_stream {
        text.push('<');
        text.push(char::from(b'0' + r.level.severity()));
        text.push('>');
    } else {
        use std::fmt::Write as _;
        let _ = write!(text, "otpd[{}]: {}: ", pid(), r.level.name());
    }
    if r.target != "otpd" {
        text.push_str(r.target);
        text.push_str(": ");
    }
    push_one_line(&mut text, r.message);
    text.push('\n');
    text
}

/// A library's message may hold newlines; a line of ours never does. Each is written as
/// `\n` so one record stays one line.
fn push_one_line(text: &mut String, message: &str) {
    if !message.contains(['\n', '\r']) {
        text.push_str(message);
        return;
    }
    for c in message.chars() {
        match c {
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            c => text.push(c),
        }
    }
}

/// `{"time":…,"level":…,"target":…,"pid":…,"message":…[,"audit":{…}]}` and a newline. The
/// message is the audit line's text exactly as `text` writes it.
pub(super) fn json_line(r: &Record<'_>) -> String {
    let mut o = serde_json::Map::new();
    o.insert("time".into(), rfc3339_now().into());
    o.insert("level".into(), r.level.name().into());
    o.insert("target".into(), r.target.into());
    o.insert("pid".into(), pid().into());
    o.insert("message".into(), r.message.into());
    if let Some(fields) = r.audit {
        let audit: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).into()))
            .collect();
        o.insert("audit".into(), audit.into());
    }
    let mut line = serde_json::Value::Object(o).to_string();
    line.push('\n');
    line
}

/// One datagram of the journal's native protocol: `KEY=value\n` per field, or for a value
/// with a newline `KEY\n`, its length as 64-bit little endian, the value and `\n`.
pub(super) fn journal_fields(r: &Record<'_>) -> Vec<u8> {
    let mut d = Vec::with_capacity(256);
    field(&mut d, "MESSAGE", r.message);
    field(&mut d, "PRIORITY", &r.level.severity().to_string());
    field(&mut d, "SYSLOG_IDENTIFIER", "otpd");
    field(&mut d, "SYSLOG_PID", &pid().to_string());
    // authpriv (10) for the audit trail, daemon (3) for the rest: a syslog daemon reading
    // the journal routes them as it would from /dev/log.
    let facility = if r.audit.is_some() { "10" } else { "3" };
    field(&mut d, "SYSLOG_FACILITY", facility);
    if r.target != "otpd" {
        field(&mut d, "OTPD_TARGET", r.target);
    }
    if let Some(fields) = r.audit {
        for (k, v) in fields {
            let name = journal_name(k);
            field(&mut d, &name, v);
        }
    }
    d
}

/// `OTPD_` and the key in the journal's alphabet (upper-case letters, digits, `_`).
fn journal_name(key: &str) -> String {
    let mut name = String::from("OTPD_");
    name.extend(key.chars().map(|c| match c {
        'a'..='z' => c.to_ascii_uppercase(),
        'A'..='Z' | '0'..='9' => c,
        _ => '_',
    }));
    name
}

fn field(d: &mut Vec<u8>, name: &str, value: &str) {
    d.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        d.push(b'\n');
        d.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        d.push(b'=');
    }
    d.extend_from_slice(value.as_bytes());
    d.push(b'\n');
}

/// Now, as RFC 3339 in UTC with microseconds (`2026-12-07T21:10:00.123456Z`).
pub(super) fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

/// `bytes` to stderr in one write(2) when the kernel takes them whole, without std's
/// stderr lock, which the workers contended for on every audited login. A line to a pipe
/// (up to PIPE_BUF bytes) or to a file is not interleaved with another writer's.
pub(super) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: fd 2 is only written; the pointer and length come from a live slice.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
            }
            Err(_) => return,
        }
    }
    let _ = std::io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Level;

    fn audit<'a>(fields: &'a [(&'a str, &'a str)]) -> Record<'a> {
        Record {
            level: Level::Info,
            target: "otpd",
            message: "audit radius accept user=\"taro\" client=\"gw\"",
            audit: Some(fields),
        }
    }

    #[test]
    fn the_journal_gets_the_audit_line_and_its_fields() {
        let fields = [
            ("event", "radius"),
            ("user", "taro"),
            ("typed_user", "a\nb"),
        ];
        let d = journal_fields(&audit(&fields));
        let text = String::from_utf8_lossy(&d);
        assert!(text.starts_with("MESSAGE=audit radius accept user=\"taro\" client=\"gw\"\n"));
        assert!(text.contains("\nPRIORITY=6\n"), "{text}");
        assert!(text.contains("\nSYSLOG_FACILITY=10\n"), "{text}");
        assert!(
            text.contains("\nOTPD_EVENT=radius\nOTPD_USER=taro\n"),
            "{text}"
        );
        // A value with a newline is written with its length, not as KEY=value.
        let mut framed = b"OTPD_TYPED_USER\n".to_vec();
        framed.extend_from_slice(&3u64.to_le_bytes());
        framed.extend_from_slice(b"a\nb\n");
        assert!(d.ends_with(&framed));
    }

    #[test]
    fn a_json_line_is_one_object_whose_message_is_the_audit_text() {
        let fields = [("event", "radius"), ("user", "ta\"ro")];
        let line = json_line(&audit(&fields));
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(
            v["message"],
            "audit radius accept user=\"taro\" client=\"gw\""
        );
        assert_eq!(v["level"], "info");
        assert_eq!(v["audit"]["user"], "ta\"ro");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn text_on_the_journal_stream_carries_the_priority() {
        let r = Record {
            level: Level::Warn,
            target: "sled::pagecache",
            message: "two\nlines",
            audit: None,
        };
        assert_eq!(text_line(&r, true), "<4>sled::pagecache: two\\nlines\n");
        assert!(text_line(&r, false).ends_with(": warn: sled::pagecache: two\\nlines\n"));
    }
}
