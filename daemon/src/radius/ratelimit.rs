//! Rate limit for drop lines: at most one line per (reason, client) per interval; the rest
//! are counted and reported as a number. Unknown sources share one key per reason, so a
//! flood of spoofed addresses cannot grow the table. The windows are the daemon's one
//! [`LineLimiter`]; this only turns its answers into [`RadiusEvent`]s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::events::{DropReason, RadiusEvent};
use crate::limit::LineLimiter;

/// The drop lines' windows, one per (reason, client).
pub(crate) struct DropLimiter(LineLimiter<(DropReason, Option<Arc<str>>)>);

impl DropLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        DropLimiter(LineLimiter::new(interval))
    }

    /// Counts a drop; returns the line to log, if this one is to be logged.
    pub(crate) fn note(
        &self,
        reason: DropReason,
        client: Option<&Arc<str>>,
        src: SocketAddr,
        now: Instant,
    ) -> Option<RadiusEvent> {
        let suppressed = self.0.note((reason, client.cloned()), now)?;
        Some(RadiusEvent::Dropped {
            reason,
            client: client.map(|c| c.to_string()),
            src,
            suppressed,
        })
    }

    /// Closes the windows that are over: returns a count line for each that suppressed
    /// drops and forgets them all, so the table only holds recent keys.
    pub(crate) fn flush(&self, now: Instant) -> Vec<RadiusEvent> {
        let interval = self.0.interval();
        self.0
            .flush(now)
            .into_iter()
            .map(|((reason, client), count)| RadiusEvent::DropsSuppressed {
                reason,
                client: client.as_deref().map(str::to_owned),
                count,
                interval,
            })
            .collect()
    }
}
