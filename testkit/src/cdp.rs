//! Headless chromium driven over the DevTools protocol: a small WebSocket client (RFC 6455,
//! client side, text frames only) and the few commands the screen tests use. One browser
//! per test, with a fresh profile; one page attached in flat mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

use crate::paths::tool;
use crate::wait::{wait_until, DEADLINE};

/// A WebSocket connection to the browser.
struct Socket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Socket {
    fn connect(port: u16, path: &str) -> Socket {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut key = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut key);
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let mut writer = stream.try_clone().expect("clone socket");
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("send upgrade");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("upgrade answer");
        assert!(
            status.contains(" 101 "),
            "DevTools refused the WebSocket: {status}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("upgrade headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Socket { reader, writer }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut mask = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut mask);
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("send frame");
    }

    fn frame(&mut self) -> (u8, bool, Vec<u8>) {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head).expect("frame head");
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).expect("length");
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
        self.reader.read_exact(&mut payload).expect("frame payload");
        (opcode, fin, payload)
    }

    /// The next text message (pings answered, fragments joined).
    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let (opcode, fin, payload) = self.frame();
            match opcode {
                0x9 => {
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.writer.write_all(&pong).expect("pong");
                    continue;
                }
                0x8 => panic!("the browser closed the DevTools connection"),
                0xa => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).expect("UTF-8 message");
            }
        }
    }
}

/// A headless chromium with one phone-sized page.
pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    session: String,
    /// Every event seen so far, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

pub const PHONE: (u32, u32) = (390, 844);

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(tool("chromium"))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let (port, path) = wait_until("chromium's DevToolsActivePort", DEADLINE, || {
            let text = std::fs::read_to_string(&port_file).ok()?;
            let mut lines = text.lines();
            let port: u16 = lines.next()?.trim().parse().ok()?;
            let path = lines.next()?.trim().to_string();
            Some((port, path))
        });
        let socket = Socket::connect(port, &path);
        let mut b = Browser {
            child,
            socket,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: profile,
        };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.call("Network.enable", json!({}));
        b.size(PHONE.0, PHONE.1);
        b
    }

    fn exchange(&mut self, method: &str, params: Value, session: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.socket.send(&msg.to_string());
        let end = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < end, "no answer to {method}");
            let v: Value = serde_json::from_str(&self.socket.receive()).expect("DevTools JSON");
            if v["id"] == json!(id) {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.exchange(method, params, false)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A command to the page; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.exchange(method, params, true)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// The viewport, as a phone of that CSS size.
    pub fn size(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}),
        );
    }

    /// The value of a script (promises awaited); panics when it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("script failed: {expression}\n{e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (not false, null, 0 or "").
    pub fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            );
            let v = r["result"]["value"].clone();
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if r.get("exceptionDetails").is_none() && truthy {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} ({expression}); page: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `url` and waits until the new document has loaded.
    pub fn open(&mut self, url: &str) {
        self.eval("window.__leaving = true");
        self.call("Page.navigate", json!({"url": url}));
        self.settle();
    }

    /// Waits until the document that replaced the marked one has loaded.
    fn settle(&mut self) {
        self.wait_for(
            "the page to load",
            "window.__leaving === undefined && document.readyState === 'complete'",
        );
    }

    /// The page's visible text.
    pub fn text(&mut self) -> String {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": "document.body ? document.body.innerText : ''", "returnByValue": true}),
        );
        r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Types `value` into the field with that id, as input events would leave it.
    pub fn fill(&mut self, id: &str, value: &str) {
        let script = format!(
            "(() => {{ const e = document.getElementById({id}); e.focus(); e.value = {value}; e.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
            id = json!(id),
            value = json!(value)
        );
        assert_eq!(self.eval(&script), json!(true), "field #{id}");
    }

    /// Clicks the element with that id.
    pub fn click(&mut self, id: &str) {
        let script = format!(
            "(() => {{ const e = document.getElementById({}); if (!e) return false; e.click(); return true; }})()",
            json!(id)
        );
        assert_eq!(
            self.eval(&script),
            json!(true),
            "no #{id} to click on: {}",
            self.text()
        );
    }

    /// Clicks something that submits a form or follows a link, and waits for the new page.
    pub fn click_and_wait(&mut self, id: &str) {
        self.eval("window.__leaving = true");
        self.click(id);
        self.settle();
    }

    /// The text of the element with that id, or None.
    pub fn text_of(&mut self, id: &str) -> Option<String> {
        let script = format!(
            "(() => {{ const e = document.getElementById({}); return e ? e.textContent : null; }})()",
            json!(id)
        );
        self.eval(&script).as_str().map(str::to_string)
    }

    pub fn exists(&mut self, id: &str) -> bool {
        self.text_of(id).is_some()
    }

    /// The page's URL.
    pub fn url(&mut self) -> String {
        self.eval("location.href")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of what the phone shows, saved to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Moves the page's wall clock (`Date`) by `offset_ms` for every document opened from
    /// now on; returns the script's identifier for [`Browser::remove_script`].
    pub fn clock_script(&mut self, offset_ms: i64) -> String {
        let source = format!(
            "(() => {{ const Real = Date; const off = {offset_ms};\
 class Moved extends Real {{ constructor(...a) {{ if (a.length === 0) super(Real.now() + off); else super(...a); }}\
 static now() {{ return Real.now() + off; }} }};\
 globalThis.Date = Moved; }})();"
        );
        let r = self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": source}),
        );
        r["identifier"].as_str().expect("identifier").to_string()
    }

    pub fn remove_script(&mut self, identifier: &str) {
        self.call(
            "Page.removeScriptToEvaluateOnNewDocument",
            json!({"identifier": identifier}),
        );
    }

    /// The body of the last response whose URL contains `part`.
    pub fn response_body(&mut self, part: &str) -> String {
        let request_id = self
            .events
            .iter()
            .rev()
            .find(|e| {
                e["method"] == "Network.responseReceived"
                    && e["params"]["response"]["url"]
                        .as_str()
                        .is_some_and(|u| u.contains(part))
            })
            .map(|e| e["params"]["requestId"].clone())
            .unwrap_or_else(|| panic!("no response from {part} seen"));
        // The body may still be arriving when the event is seen.
        let end = Instant::now() + DEADLINE;
        loop {
            match self.exchange(
                "Network.getResponseBody",
                json!({"requestId": request_id}),
                true,
            ) {
                Ok(r) => return r["body"].as_str().unwrap_or_default().to_string(),
                Err(e) => assert!(Instant::now() < end, "no body for {part}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The browser's cookies for the page (HttpOnly ones too).
    pub fn cookies(&mut self) -> Vec<Value> {
        self.call("Network.getCookies", json!({}))["cookies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/test-artifacts/screens-<name>.png`.
pub fn shot(name: &str) -> PathBuf {
    crate::paths::artifacts_dir().join(format!("screens-{name}.png"))
}
