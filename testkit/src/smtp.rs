//! A real SMTP relay for the tests: `support/smtp_sink.py` on aiosmtpd, which writes each
//! accepted message as decoded JSON into a folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::paths::tool;
use crate::wait::{wait_until, DEADLINE};

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub rcpt_tos: Vec<String>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub content_type: String,
    pub charset: String,
    pub body: String,
}

impl SmtpSink {
    /// Listens on 127.0.0.1:`port` and stores into `dir`; returns once it accepts.
    pub fn start(port: u16, dir: &Path) -> SmtpSink {
        // Debian's python3 carries python3-aiosmtpd; another python on PATH may not.
        let python = tool("python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_sink.py");
        let child = Command::new(python)
            .arg(&script)
            .arg(port.to_string())
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start smtp_sink.py (needs python3-aiosmtpd)");
        let mut sink = SmtpSink {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        wait_until("the SMTP sink to listen", DEADLINE, || {
            if let Ok(Some(status)) = sink.child.try_wait() {
                panic!("smtp_sink.py exited ({status}); is python3-aiosmtpd installed?");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        sink
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<Mail> {
        received_in(&self.dir)
    }

    /// Waits for a message to `to`.
    pub fn wait_for(&self, to: &str, limit: Duration) -> Mail {
        wait_until(&format!("a mail to {to}"), limit, || {
            self.received()
                .into_iter()
                .find(|m| m.rcpt_tos.iter().any(|r| r == to))
        })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages a sink stored in `dir` (also after it stopped).
pub fn received_in(dir: &Path) -> Vec<Mail> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Mail {
                rcpt_tos: v["rcpt_tos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                from: s("from"),
                to: s("to"),
                subject: s("subject"),
                content_type: s("content_type"),
                charset: s("charset"),
                body: s("body"),
            }
        })
        .collect()
}

/// The setup link's path (`/enroll/{code}`) and code from a mail body.
pub fn setup_link(body: &str) -> (String, String) {
    // The token app's link comes first; this is the setup page's.
    let link: String = body
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains("/enroll/"))
        .expect("an /enroll/ link in the mail")
        .to_string();
    let path_start = link["http://".len()..]
        .find('/')
        .map(|i| i + "http://".len())
        .expect("a path");
    let path = link[path_start..].to_string();
    let code = path
        .strip_prefix("/enroll/")
        .expect("an /enroll/ link")
        .to_string();
    (path, code)
}
