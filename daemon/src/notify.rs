//! systemd readiness (`Type=notify`): one datagram to `$NOTIFY_SOCKET`, nothing when unset.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `STOPPING=1`) to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let _ = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        temp_env(&path, || super::notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"READY=1");
    }

    fn temp_env(path: &std::path::Path, f: impl FnOnce()) {
        std::env::set_var("NOTIFY_SOCKET", path);
        f();
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
