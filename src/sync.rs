//! Locking that survives a panic elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `mutex`, locked, even if a thread panicked while holding it.
///
/// What stackhook guards with a mutex (maps, queues, counters) is consistent
/// between statements, so what a panicking thread left behind is still
/// usable; refusing it would turn one panic into every later request's
/// failure.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
