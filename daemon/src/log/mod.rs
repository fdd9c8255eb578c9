//! Logging. Every line goes to one place chosen by `[log] format`: readable lines on
//! stderr (`text`, with sd-daemon priority prefixes when stderr is the journal), the
//! journal's native socket with fields (`journal`), or JSON lines on stderr (`json`).
//! Audit lines also go to syslog (facility authpriv) through a bounded queue that never
//! blocks a login, unless the journal already has them with that facility.
//!
//! The libraries' own lines (sled, rustls, tokio-postgres, lettre log through the `log`
//! crate) reach the same place through `tracing`: see [`install`]. Callers never pass
//! secrets here.

mod library;
mod out;
mod syslog;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use library::install;
pub use syslog::SyslogTarget;

use out::Output;

/// How much is logged (`[log] level`): a line is written when its level is at or above
/// this one. Read once, with the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl TryFrom<String> for Level {
    type Error = String;

    fn try_from(s: String) -> Result<Level, String> {
        match s.as_str() {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!(
                "`log.level` {s:?}: one of error, warn, info, debug"
            )),
        }
    }
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// The syslog severity (RFC 5424 §6.2.1), which is also the journal's `PRIORITY`.
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// `[log] format`: where and how lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Readable lines on stderr.
    #[default]
    Text,
    /// The systemd journal's native protocol, with `OTPD_*` fields on audit events.
    Journal,
    /// One JSON object per line on stderr, for a SIEM.
    Json,
}

/// `[log]` as the logger needs it (the configuration's section, without serde).
#[derive(Debug, Clone)]
pub struct Settings {
    pub level: Level,
    pub format: Format,
    pub journal_socket: PathBuf,
    /// Where audit lines also go; `None` with `syslog = false`.
    pub syslog: Option<SyslogTarget>,
}

/// One line with what the outputs need of it.
pub(crate) struct Record<'a> {
    pub level: Level,
    /// `otpd`, or the library's module path (`sled::pagecache`).
    pub target: &'a str,
    pub message: &'a str,
    /// An audit event's fields, in the order of its line; `None` for other lines.
    pub audit: Option<&'a [(&'a str, &'a str)]>,
}

pub struct Logger {
    level: Level,
    out: Output,
    syslog: Option<syslog::Queue>,
    /// Audit lines are written by `out` too (false when the only copy that keeps the
    /// authpriv facility is syslog's, and `out` would be a second one in the same journal).
    audit_to_out: bool,
}

impl Logger {
    /// Stderr only (before the configuration is read, and in tests).
    pub fn stderr(level: Level) -> Logger {
        Logger {
            level,
            out: Output::text(),
            syslog: None,
            audit_to_out: true,
        }
    }

    pub fn new(cfg: &crate::config::LogSection) -> Logger {
        Logger::with(&cfg.settings())
    }

    pub fn with(s: &Settings) -> Logger {
        let mut warnings = Vec::new();
        let out = match s.format {
            Format::Text => Output::text(),
            Format::Json => Output::Json,
            Format::Journal => match Output::journal(&s.journal_socket) {
                Ok(out) => out,
                Err(e) => {
                    warnings.push(format!(
                        "journal socket {} unavailable ({e}); lines go to stderr as text",
                        s.journal_socket.display()
                    ));
                    Output::text()
                }
            },
        };
        // journald is the host's syslog: where it already has the audit line (the journal
        // format sends it with SYSLOG_FACILITY=10) or where stderr is the journal, a copy
        // through the local syslog socket would be a second one. A remote collector
        // always gets its copy.
        let local_journal = out.is_journal() || out::stderr_is_journal();
        let mut audit_to_out = true;
        let syslog = match &s.syslog {
            Some(t) if t.is_local() && out.is_journal() => None,
            Some(t) if t.is_local() && local_journal && s.format == Format::Json => None,
            Some(t) => {
                if let SyslogTarget::Local(path) = t {
                    if local_journal && path.exists() {
                        // Text on the journal's stderr: syslog's copy keeps authpriv. Without
                        // the socket, stderr stays the audit trail.
                        audit_to_out = false;
                    }
                }
                Some(syslog::Queue::start(t.clone()))
            }
            None => None,
        };
        let logger = Logger {
            level: s.level,
            out,
            syslog,
            audit_to_out,
        };
        for w in &warnings {
            logger.warn(w);
        }
        logger
    }

    pub(crate) fn write(&self, r: &Record<'_>) {
        if r.level > self.level {
            return;
        }
        if r.audit.is_none() || self.audit_to_out {
            self.out.write(r);
        }
        if r.audit.is_some() {
            if let Some(q) = &self.syslog {
                // A line syslog had to drop is written by `out` after all, so the audit
                // trail keeps it (without the authpriv facility, with the same text).
                if !q.send(r) && !self.audit_to_out {
                    self.out.write(r);
                }
            }
        }
    }

    fn line(&self, level: Level, message: &str) {
        self.write(&Record {
            level,
            target: "otpd",
            message,
            audit: None,
        });
    }

    pub fn error(&self, line: &str) {
        self.line(Level::Error, line);
    }
    pub fn warn(&self, line: &str) {
        self.line(Level::Warn, line);
    }
    pub fn info(&self, line: &str) {
        self.line(Level::Info, line);
    }
    pub fn debug(&self, line: &str) {
        self.line(Level::Debug, line);
    }

    /// An audit event whose line is formatted by the caller (a RADIUS decision, on every
    /// login): `args` is the line's text after `audit `; `fields` are its values for the
    /// journal and JSON (`event` first).
    pub fn audit_args(&self, args: std::fmt::Arguments<'_>, fields: &[(&str, &str)]) {
        if Level::Info > self.level {
            return;
        }
        let mut line = String::with_capacity(160);
        line.push_str("audit ");
        let _ = line.write_fmt(args);
        self.write(&Record {
            level: Level::Info,
            target: "otpd",
            message: &line,
            audit: Some(fields),
        });
    }

    /// One audit line: who did what to whom and how it ended. Values are quoted so a
    /// login ID cannot forge fields. The first field names the event (`admin`, `setup`).
    pub fn audit(&self, fields: &[(&str, &str)]) {
        if Level::Info > self.level {
            return;
        }
        let mut line = String::from("audit");
        for (k, v) in fields {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(&quote(v));
        }
        let mut structured = Vec::with_capacity(fields.len() + 1);
        if let Some((event, _)) = fields.first() {
            structured.push(("event", *event));
        }
        structured.extend_from_slice(fields);
        self.write(&Record {
            level: Level::Info,
            target: "otpd",
            message: &line,
            audit: Some(&structured),
        });
    }
}

fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:/".contains(&b))
    {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// This process's id, asked of the kernel once (each `getpid` is a system call, and every
/// audited login writes a line).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn audit_values_cannot_forge_fields() {
        assert_eq!(quote("alice"), "alice");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x\" outcome=ok"), "\"x\\\" outcome=ok\"");
        assert_eq!(quote("a\nb"), "\"a\\u{a}b\"");
    }
}
