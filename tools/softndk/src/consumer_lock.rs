//! The emulator's model of "the consumer holds a spin lock".
//!
//! A provider may hold its own lock while it calls the consumer's disconnect callback, and that
//! callback takes the consumer's spin lock. A consumer that calls into NDK while it holds that
//! spin lock can therefore deadlock at `DISPATCH_LEVEL` (lock-order inversion between the
//! consumer's lock and the provider's). softndk cannot see the consumer's locks, so the
//! consumer's test platform tells it: it calls [`enter`] whenever it takes one of its spin locks
//! and keeps the guard until it releases it. While the current thread's depth is non-zero,
//! every NDK entry point reports [`crate::Violation::CalledUnderConsumerLock`].
//!
//! ```
//! let guard = softndk::consumer_lock::enter();
//! assert!(softndk::consumer_lock::held());
//! drop(guard);
//! assert!(!softndk::consumer_lock::held());
//! ```

use std::cell::Cell;

use crate::thread_depth::{DepthGuard, depth};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// While alive, the current thread holds (at least) one consumer spin lock.
#[must_use = "the lock is considered released when the guard is dropped"]
pub struct ConsumerLockGuard {
    _level: DepthGuard,
}

/// The current thread took a consumer spin lock (nests); drop the guard when it releases it.
pub fn enter() -> ConsumerLockGuard {
    ConsumerLockGuard {
        _level: DepthGuard::enter(&DEPTH),
    }
}

/// Whether the current thread holds a consumer spin lock.
pub fn held() -> bool {
    depth(&DEPTH) > 0
}
