//! Logging: every line to stderr, audit lines also to syslog (facility authpriv). Without a
//! syslog socket otpd warns once and goes on with stderr. Callers never pass secrets here.

use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger as Syslog, LoggerBackend};

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
}

pub struct Logger {
    level: Level,
    syslog: Option<Mutex<Syslog<LoggerBackend, Formatter3164>>>,
}

impl Logger {
    /// Stderr only (before the configuration is read, and in tests).
    pub fn stderr(level: Level) -> Logger {
        Logger {
            level,
            syslog: None,
        }
    }

    pub fn new(cfg: &crate::config::LogSection) -> Logger {
        let level = cfg.level;
        if !cfg.syslog {
            return Logger::stderr(level);
        }
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "otpd".into(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, &cfg.syslog_socket) {
            Ok(s) => Logger {
                level,
                syslog: Some(Mutex::new(s)),
            },
            Err(e) => {
                let l = Logger::stderr(level);
                l.warn(&format!(
                    "syslog socket {} unavailable ({e}); audit lines go to stderr only",
                    cfg.syslog_socket.display()
                ));
                l
            }
        }
    }

    fn emit(&self, level: Level, line: &str, to_syslog: bool) {
        self.emit_args(level, format_args!("{line}"), to_syslog);
    }

    /// Formats the line once, into the text stderr gets (prefix, line, newline); syslog
    /// gets the line out of it.
    fn emit_args(&self, level: Level, args: std::fmt::Arguments<'_>, to_syslog: bool) {
        use std::fmt::Write as _;
        if level > self.level {
            return;
        }
        // One write(2) per line: stderr is unbuffered, and eprintln! issues one per
        // formatted piece (six for this line), a cost paid on every audited login.
        let mut text = String::with_capacity(160);
        let _ = write!(text, "otpd[{}]: {}: ", pid(), level.name());
        let start = text.len();
        let _ = text.write_fmt(args);
        text.push('\n');
        write_stderr(text.as_bytes());
        if !to_syslog {
            return;
        }
        let line = &text[start..text.len() - 1];
        if let Some(s) = &self.syslog {
            if let Ok(mut s) = s.lock() {
                let _ = match level {
                    Level::Error => s.err(line),
                    Level::Warn => s.warning(line),
                    Level::Info => s.info(line),
                    Level::Debug => s.debug(line),
                };
            }
        }
    }

    pub fn error(&self, line: &str) {
        self.emit(Level::Error, line, true);
    }
    pub fn warn(&self, line: &str) {
        self.emit(Level::Warn, line, true);
    }
    pub fn info(&self, line: &str) {
        self.emit(Level::Info, line, true);
    }
    /// [`Logger::info`] of a line still to be formatted (an audit line of every login).
    pub fn info_args(&self, args: std::fmt::Arguments<'_>) {
        self.emit_args(Level::Info, args, true);
    }
    pub fn debug(&self, line: &str) {
        self.emit(Level::Debug, line, false);
    }

    /// One audit line: who did what to whom and how it ended. Values are quoted so a
    /// login ID cannot forge fields.
    pub fn audit(&self, fields: &[(&str, &str)]) {
        let mut line = String::from("audit");
        for (k, v) in fields {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(&quote(v));
        }
        self.emit(Level::Info, &line, true);
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

/// `bytes` to stderr in one write(2) when the kernel takes them whole, without std's
/// stderr lock, which the workers contended for on every audited login. A line to a pipe
/// (up to PIPE_BUF bytes) or to a file is not interleaved with another writer's.
fn write_stderr(mut bytes: &[u8]) {
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
