//! Registered memory for posting: a platform buffer described by an MDL, registered in an MR.

use alloc::boxed::Box;

use kalloc::Arc;

use ndkpi_sys::MDL;

/// Memory the provider may DMA into: pinned, described by a locked MDL.
///
/// # Safety
/// Implementors promise that `mdl()` describes exactly `len()` bytes starting at `base()`,
/// that the memory is valid for reads and writes, not moved, and not otherwise accessed while
/// the value lives (the provider may use it while it is registered, and DMAs into it until
/// every request using it completed: ndkpi keeps the value alive until the close completion
/// of the [`crate::Mr`] it is registered in, and of every QP a [`Buffer`] over it is attached
/// to).
pub unsafe trait RegisteredMemory: Send + Sync + 'static {
    /// The MDL describing the memory.
    fn mdl(&self) -> *mut MDL;
    /// The first byte.
    fn base(&self) -> *mut u8;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the length is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registered memory shared by the [`crate::Mr`] it is registered in and the [`Buffer`]s over
/// it (boxed once by the platform, counted here: a `kalloc::Arc`, so sharing it can fail
/// instead of aborting).
pub type SharedMemory = Arc<Box<dyn RegisteredMemory>>;

/// Registered memory and the token of the MR it is registered in.
pub struct Buffer {
    memory: SharedMemory,
    token: u32,
}

impl core::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.memory.len())
            .field("token", &self.token)
            .finish()
    }
}

impl Buffer {
    /// `memory`, registered in an MR whose local token is `token` (from
    /// [`crate::Mr::local_token`] after a successful [`crate::Mr::register`], which keeps its
    /// own reference). A wrong token only makes the provider fail the requests (the token is
    /// checked against the region).
    pub fn new(memory: SharedMemory, token: u32) -> Self {
        Self { memory, token }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// The element for `offset..offset + len`, if inside the buffer.
    pub(crate) fn sge(&self, offset: usize, len: u32) -> Option<crate::Sge> {
        let end = offset.checked_add(len as usize)?;
        (end <= self.memory.len() && len > 0).then(|| crate::Sge {
            address: self.memory.base().wrapping_add(offset),
            length: len,
            token: self.token,
        })
    }
}

/// A tiny spin lock for lists touched only at `PASSIVE_LEVEL` (never from a callback), so it
/// needs no IRQL raise.
pub(crate) struct PassiveLock<T> {
    busy: core::sync::atomic::AtomicBool,
    value: core::cell::UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `busy`.
unsafe impl<T: Send> Sync for PassiveLock<T> {}
// SAFETY: the lock owns its value.
unsafe impl<T: Send> Send for PassiveLock<T> {}

impl<T> PassiveLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            busy: core::sync::atomic::AtomicBool::new(false),
            value: core::cell::UnsafeCell::new(value),
        }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        use core::sync::atomic::Ordering;
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `busy` is held, so this is the only reference to the value until released.
        let result = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        result
    }
}
