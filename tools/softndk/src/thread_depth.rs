//! A per-thread nesting depth kept in a thread-local counter, raised while a guard lives: what
//! [`crate::consumer_lock`] (the consumer holds a spin lock) and [`crate::alloc_check`] (no
//! allocation here) both track.

use std::cell::Cell;
use std::thread::LocalKey;

/// One level of the depth in `self.0`, given back when dropped.
pub(crate) struct DepthGuard(&'static LocalKey<Cell<u32>>);

impl DepthGuard {
    /// Raise the current thread's depth in `key` by one until the guard is dropped. A thread
    /// whose thread-locals are being torn down is left alone.
    pub(crate) fn enter(key: &'static LocalKey<Cell<u32>>) -> Self {
        let _ = key.try_with(|d| d.set(d.get() + 1));
        Self(key)
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        let _ = self.0.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// The current thread's depth in `key` (0 while its thread-locals are being torn down).
pub(crate) fn depth(key: &'static LocalKey<Cell<u32>>) -> u32 {
    key.try_with(Cell::get).unwrap_or(0)
}
