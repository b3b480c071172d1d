//! The "no allocation here" half of the simulated IRQL: a global allocator for test binaries
//! that counts allocations made while the current thread is inside a no-allocation scope.
//!
//! softndk opens a scope around every disconnect callback it makes (the consumer's event path
//! must not allocate); ndkdisc-core's host platform opens one while an engine lock is held.
//! A test binary opts in with
//! `#[global_allocator] static A: softndk::alloc_check::CheckingAllocator = CheckingAllocator;`
//! and asserts [`violations`] is zero. Without the opt-in the scopes cost a thread-local
//! increment and check nothing.
//!
//! The allocator also counts every allocation (per thread: [`thread_allocations`]) and the bytes
//! allocated and freed ([`usage`]), for benchmarks that measure memory or assert a path makes
//! no allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::thread_depth::{DepthGuard, depth};

thread_local! {
    static FORBIDDEN: Cell<u32> = const { Cell::new(0) };
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

/// Allocations (including reallocations) made so far by the current thread.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// Process-wide counts so far: (allocations, bytes allocated, bytes freed).
pub fn usage() -> (u64, u64, u64) {
    (
        ALLOCATIONS.load(Ordering::SeqCst),
        ALLOCATED.load(Ordering::SeqCst),
        FREED.load(Ordering::SeqCst),
    )
}
static FIRST: Mutex<Option<String>> = Mutex::new(None);

/// While alive, allocations on this thread are violations.
#[must_use = "the scope ends when the guard is dropped"]
pub struct NoAllocScope {
    _level: DepthGuard,
}

/// Open a no-allocation scope on the current thread (scopes nest).
pub fn forbid() -> NoAllocScope {
    NoAllocScope {
        _level: DepthGuard::enter(&FORBIDDEN),
    }
}

/// Allocations made inside a no-allocation scope so far (process-wide).
pub fn violations() -> u64 {
    VIOLATIONS.load(Ordering::SeqCst)
}

/// The backtrace of the first violation, if any.
pub fn first_violation() -> Option<String> {
    FIRST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Count one allocation of `bytes` (and `freed` bytes given back, for a reallocation), then
/// check the scope. Never allocates.
fn record(bytes: usize, freed: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED.fetch_add(bytes as u64, Ordering::Relaxed);
    FREED.fetch_add(freed as u64, Ordering::Relaxed);
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    check();
}

fn check() {
    let inside = depth(&FORBIDDEN);
    if inside == 0 {
        return;
    }
    VIOLATIONS.fetch_add(1, Ordering::SeqCst);
    // Record where, with the check off (capturing allocates).
    let _ = FORBIDDEN.try_with(|f| f.set(0));
    if let Ok(mut first) = FIRST.try_lock()
        && first.is_none()
    {
        *first = Some(std::backtrace::Backtrace::force_capture().to_string());
    }
    let _ = FORBIDDEN.try_with(|f| f.set(inside));
}

/// [`System`], counting allocations, and those made inside a no-allocation scope.
pub struct CheckingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; `check` never allocates while the
// scope is active (it clears the scope before capturing a backtrace).
unsafe impl GlobalAlloc for CheckingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size(), 0);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size(), 0);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator (that is, by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size, layout.size());
        // SAFETY: `ptr`/`layout` came from this allocator (`System`); the caller upholds
        // `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
