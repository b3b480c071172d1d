//! The NDK objects as the consumer sees them in memory: one [`ObjectBlock`] per object handed
//! out (what a consumer holds as `*mut NDK_QP`, `*mut NDK_CQ`, ...), and the process-wide
//! registry that validates every object pointer before softndk touches it.
//!
//! An object block starts with the 0x30-byte NDK object layout (header + dispatch pointer),
//! which is identical for all ten object types, so a `*mut ObjectBlock` is handed out as
//! `*mut NDK_QP`, `*mut NDK_CQ`, and so on; the provider-private fields (id, busy flags)
//! follow. Blocks are never freed while their fabric lives: a closed object's block stays as a
//! tombstone, so a stale pointer is recognised (use after close) instead of aliasing a newer
//! object.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use ndkpi_sys::{NDK_OBJECT_HEADER, NDK_OBJECT_HEADER_RESERVED_BLOCK, NDK_VERSION};

use crate::ObjectKind;
use crate::fabric::Shared;
use crate::misuse::Queue;

/// Provider-side identity of an object: handed out in order from 1 by each fabric's world
/// (`world::Objects`), never reused within it.
pub(crate) type ObjId = u64;

/// The consumer-visible object: NDK layout first, then provider-private fields.
#[repr(C)]
pub(crate) struct ObjectBlock {
    header: NDK_OBJECT_HEADER,
    dispatch: *const c_void,
    id: ObjId,
    receive_busy: AtomicBool,
    initiator_busy: AtomicBool,
    cq_busy: AtomicBool,
}

/// An owned pointer to an object block. Blocks are allocated by [`ObjectPtr::allocate`] and freed only
/// by [`ObjectPtr::free`] when the fabric is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectPtr(NonNull<ObjectBlock>);

// SAFETY: a ObjectPtr is an address plus ownership bookkeeping; the fields it is used to reach
// are atomics (safe to share) or written only before the pointer is published.
unsafe impl Send for ObjectPtr {}

impl ObjectPtr {
    /// Allocate the block for a new object with a zeroed reserved block, its header and its
    /// dispatch table set before the pointer is ever published.
    pub(crate) fn allocate(
        id: ObjId,
        kind: ObjectKind,
        version: NDK_VERSION,
        dispatch: *const c_void,
    ) -> Self {
        let block = Box::new(ObjectBlock {
            header: NDK_OBJECT_HEADER {
                Version: version,
                ObjectType: kind.object_type(),
                NdkReserved: NDK_OBJECT_HEADER_RESERVED_BLOCK {
                    rf: [std::ptr::null_mut(); 4],
                },
            },
            dispatch,
            id,
            receive_busy: AtomicBool::new(false),
            initiator_busy: AtomicBool::new(false),
            cq_busy: AtomicBool::new(false),
        });
        Self(NonNull::from(Box::leak(block)))
    }

    /// The pointer handed to the consumer, cast to the NDK object type it expects.
    pub(crate) fn as_ndk<T>(self) -> *mut T {
        self.0.as_ptr().cast()
    }

    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr().addr()
    }

    fn busy_flag(&self, which: Busy) -> &AtomicBool {
        let offset = match which {
            Busy::Queue(Queue::Receive) => std::mem::offset_of!(ObjectBlock, receive_busy),
            Busy::Queue(Queue::Initiator) => std::mem::offset_of!(ObjectBlock, initiator_busy),
            Busy::Cq => std::mem::offset_of!(ObjectBlock, cq_busy),
        };
        let flag = self
            .0
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(offset)
            .cast::<AtomicBool>();
        // SAFETY: the block is live (object blocks are freed only when the fabric drops, and the
        // caller holds the fabric) and `flag` points at one of its AtomicBool fields; a shared
        // reference to that field does not alias the fields the consumer may write (Header,
        // Dispatch).
        unsafe { &*flag }
    }

    /// Mark a queue (or the CQ) busy; `None` if another thread is already inside it.
    pub(crate) fn enter(self, which: Busy) -> Option<BusyGuard> {
        if self.busy_flag(which).swap(true, Ordering::Acquire) {
            None
        } else {
            Some(BusyGuard { block: self, which })
        }
    }

    /// Free the object block.
    ///
    /// # Safety
    /// Called once, when no consumer or provider code can reach the block any more (the
    /// fabric is being dropped and its registry entries are gone).
    pub(crate) unsafe fn free(self) {
        // SAFETY: allocated by Box in `allocate`, freed once per the caller's contract.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Which busy flag of an object block.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Busy {
    Queue(Queue),
    Cq,
}

/// Clears a busy flag when dropped.
pub(crate) struct BusyGuard {
    block: ObjectPtr,
    which: Busy,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.block
            .busy_flag(self.which)
            .store(false, Ordering::Release);
    }
}

/// What the registry knows about an address handed to a consumer.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) fabric: Weak<Shared>,
    pub(crate) id: ObjId,
    pub(crate) kind: ObjectKind,
    pub(crate) block: ObjectPtr,
}

static REGISTRY: Mutex<BTreeMap<usize, Entry>> = Mutex::new(BTreeMap::new());

fn registry() -> std::sync::MutexGuard<'static, BTreeMap<usize, Entry>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn register(entry: Entry) {
    registry().insert(entry.block.addr(), entry);
}

pub(crate) fn unregister(addr: usize) {
    registry().remove(&addr);
}

/// Every live fabric (for diagnostics).
pub(crate) fn fabrics() -> Vec<Arc<Shared>> {
    let mut seen: Vec<Arc<Shared>> = Vec::new();
    for entry in registry().values() {
        if let Some(f) = entry.fabric.upgrade()
            && !seen.iter().any(|s| Arc::ptr_eq(s, &f))
        {
            seen.push(f);
        }
    }
    seen
}

/// Look up an address without dereferencing it.
pub(crate) fn lookup(addr: usize) -> Option<(Arc<Shared>, Entry)> {
    let entry = registry().get(&addr)?.clone();
    let fabric = entry.fabric.upgrade()?;
    Some((fabric, entry))
}
