//! The integration tests run as threads of one process. Those that load the machine hard
//! or assert an upper bound on time take [`heavy`] first, so no two of them overlap (as
//! separate binaries they overlapped only with the tests of their own file).

use std::sync::{Mutex, MutexGuard, PoisonError};

static HEAVY: Mutex<()> = Mutex::new(());

/// Held for the rest of the test: the other heavy tests wait for it. A heavy test that
/// failed does not hold the others up.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}
