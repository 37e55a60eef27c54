//! The one place that picks the synchronisation primitives.
//!
//! Under `--cfg loom` every atomic, lock, `Arc` and spin hint comes from
//! [loom](https://docs.rs/loom), so the Loom models in `tests/loom.rs` explore the
//! interleavings of the real engine code rather than of a copy of it. Otherwise the
//! atomics and `Arc` come from `std` and the locks from `parking_lot`.
//!
//! The lock wrappers give both back ends the same poison-free API: `lock()`,
//! `read()` and `write()` return a guard directly.

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How many busy spins a waiter makes before it yields its time slice.
#[cfg(not(loom))]
const SPINS_BEFORE_YIELD: u32 = 64;

/// Backs off while waiting for another thread to finish a short critical step.
///
/// `attempt` counts the waits so far; the first few are busy spins, later ones
/// yield the thread so a waiter on an oversubscribed machine lets the thread it
/// waits for run.
#[cfg(not(loom))]
pub(crate) fn wait_a_little(attempt: u32) {
    if attempt < SPINS_BEFORE_YIELD {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Under Loom a wait must yield, or the model would explore an unbounded spin.
#[cfg(loom)]
pub(crate) fn wait_a_little(_attempt: u32) {
    loom::thread::yield_now();
}

/// Reads `atomic` again inside a wait loop.
///
/// Under Loom a plain load may keep returning a stale value, which makes a
/// wait loop explode the model; a read-modify-write always reads the latest
/// value. Outside Loom a plain load is the right spin read: it leaves the
/// cache line shared instead of pulling it exclusive on every spin.
pub(crate) fn reload(atomic: &AtomicU64, ordering: Ordering) -> u64 {
    #[cfg(loom)]
    {
        atomic.fetch_add(0, ordering)
    }
    #[cfg(not(loom))]
    {
        atomic.load(ordering)
    }
}

/// A mutual-exclusion lock with a poison-free `lock()`.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: parking_lot::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.inner.lock()
    }
}

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        // A panic while holding the lock cannot leave the guarded maps half
        // updated (every update is a single insert or remove), so poisoning
        // carries no information here.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A reader-writer lock with poison-free `read()` and `write()`.
pub(crate) struct RwLock<T> {
    #[cfg(not(loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(loom)]
    inner: loom::sync::RwLock<T>,
}

#[cfg(not(loom))]
impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: parking_lot::RwLock::new(value),
        }
    }

    pub(crate) fn read(&self) -> parking_lot::RwLockReadGuard<'_, T> {
        self.inner.read()
    }

    pub(crate) fn write(&self) -> parking_lot::RwLockWriteGuard<'_, T> {
        self.inner.write()
    }
}

#[cfg(loom)]
impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::RwLock::new(value),
        }
    }

    pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
