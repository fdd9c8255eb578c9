//! The one readiness wait of the kit: poll with a deadline, never sleep for a guess.

use std::time::{Duration, Instant};

/// How long any "wait until" in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns Some, or panics with `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    try_wait_until(what, limit, || Ok::<_, String>(f())).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `f` until it returns `Ok(Some)`; its first error, or a timeout naming `what`.
/// For callers that report failures instead of panicking (the bench).
pub fn try_wait_until<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T, String> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().map_err(|e| e.to_string())? {
            return Ok(v);
        }
        if Instant::now() > end {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
