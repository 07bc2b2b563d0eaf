//! Poison-tolerant locking, in one place.
//!
//! A poisoned lock means a panic elsewhere while it was held; every critical section in afw
//! completes its mutation before anything that could panic, so the data is still consistent
//! and the lock is taken as it is. This module only wraps std's locks; it knows nothing of
//! what they guard.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
