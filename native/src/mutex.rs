//! Locking a mutex that a panic elsewhere may have poisoned.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Every critical section in this crate leaves its state consistent at each step (pipeline
/// operations are single calls), so a panic elsewhere must not make the store unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
