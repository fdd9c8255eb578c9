//! Why the RADIUS front door could not start or stopped: one error type for the client
//! table, the engine's settings and the sockets.

use std::io;
use std::net::SocketAddr;

/// Why the RADIUS front door could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RadiusError {
    #[error("radius: no listen address configured; set [radius] listen")]
    NoListenAddress,
    #[error("radius client {name:?}: {problem}")]
    Client { name: String, problem: &'static str },
    #[error("radius: {0}")]
    Config(&'static str),
    #[error("radius: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("radius: receiving on {addr} failed: {source}")]
    Receive {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("radius: a receive loop stopped unexpectedly")]
    LoopDied,
}
