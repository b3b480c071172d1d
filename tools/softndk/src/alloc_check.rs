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
//! allocated and freed (process-wide: [`usage`]; per thread: [`thread_usage`]), for benchmarks
//! that measure memory or assert a path makes no allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::thread_depth::{DepthGuard, depth};

thread_local! {
    static FORBIDDEN: Cell<u32> = const { Cell::new(0) };
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static THREAD_ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static THREAD_FREED: Cell<u64> = const { Cell::new(0) };
}

static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

/// Allocations (including reallocations) made so far by the current thread.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// The current thread's counts so far: (allocations, bytes allocated, bytes freed). What a
/// thread frees counts here whichever thread allocated it. For measuring one call that
/// allocates only on its own thread, when other threads (a fabric's workers just started)
/// may allocate at the same time.
pub fn thread_usage() -> (u64, u64, u64) {
    let get =
        |cell: &'static std::thread::LocalKey<Cell<u64>>| cell.try_with(Cell::get).unwrap_or(0);
    (
        get(&THREAD_ALLOCATIONS),
        get(&THREAD_ALLOCATED),
        get(&THREAD_FREED),
    )
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
    let _ = THREAD_ALLOCATED.try_with(|n| n.set(n.get() + bytes as u64));
    let _ = THREAD_FREED.try_with(|n| n.set(n.get() + freed as u64));
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

/// Who an allocation belongs to: the code running when it was made. softndk marks its own
/// work ([`provider_scope`]: its NDK entry points, WSK functions and threads) and the consumer's
/// callbacks it makes ([`consumer_scope`]); everything else is the consumer's. Each block
/// carries its owner, so a free is charged to whoever made the block, wherever it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Owner {
    /// The code under test (the NDK consumer: ndkdisc's engine and the test itself).
    Consumer = 0,
    /// softndk itself.
    Provider = 1,
}

thread_local! {
    static OWNER: Cell<u8> = const { Cell::new(Owner::Consumer as u8) };
}

static ALLOCATED_BY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static FREED_BY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static ALLOCATIONS_BY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Process-wide counts so far for one owner: (allocations, bytes allocated, bytes freed).
pub fn usage_by(owner: Owner) -> (u64, u64, u64) {
    let i = owner as usize;
    (
        ALLOCATIONS_BY[i].load(Ordering::SeqCst),
        ALLOCATED_BY[i].load(Ordering::SeqCst),
        FREED_BY[i].load(Ordering::SeqCst),
    )
}

/// While alive, the current thread's allocations belong to one owner; the previous owner is
/// restored when it is dropped.
#[must_use = "the scope ends when the guard is dropped"]
pub struct OwnerScope {
    previous: u8,
}

fn owner_scope(owner: Owner) -> OwnerScope {
    let previous = OWNER
        .try_with(|o| o.replace(owner as u8))
        .unwrap_or(Owner::Consumer as u8);
    OwnerScope { previous }
}

/// Charge the current thread's allocations to softndk until the guard is dropped.
pub fn provider_scope() -> OwnerScope {
    owner_scope(Owner::Provider)
}

/// Charge the current thread's allocations to the consumer until the guard is dropped (softndk
/// calling the consumer back).
pub fn consumer_scope() -> OwnerScope {
    owner_scope(Owner::Consumer)
}

impl Drop for OwnerScope {
    fn drop(&mut self) {
        let _ = OWNER.try_with(|o| o.set(self.previous));
    }
}

fn current_owner() -> u8 {
    OWNER.try_with(Cell::get).unwrap_or(Owner::Consumer as u8)
}

/// Whether blocks carry their owner. Not under Miri: Stacked Borrows forbids reaching the
/// prefix from the caller's pointer (its retag covers only the caller's bytes), so there a
/// free is charged to the owner running when it happens.
const TAGGED: bool = !cfg!(miri);

/// The bytes in front of every block, holding its owner in the last byte: at least 16 and a
/// multiple of the alignment, so the caller's pointer keeps its alignment (none untagged).
fn prefix(layout: Layout) -> usize {
    if TAGGED { layout.align().max(16) } else { 0 }
}

/// The owner of the block at `ptr`.
///
/// # Safety
/// `ptr` was returned by this allocator and is not yet freed.
unsafe fn owner_of(ptr: *mut u8) -> u8 {
    if !TAGGED {
        return current_owner();
    }
    // SAFETY: per the contract, the block has a prefix before `ptr` whose last byte `tag`
    // wrote.
    unsafe { ptr.wrapping_sub(1).read() }
}

/// The layout of the whole block (prefix and caller's bytes); `None` if it overflows.
fn with_prefix(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(prefix(layout))?;
    Layout::from_size_align(size, layout.align()).ok()
}

/// Count a new block of `size` bytes for `owner`.
fn charge(owner: u8, size: usize) {
    let i = usize::from(owner & 1);
    ALLOCATIONS_BY[i].fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BY[i].fetch_add(size as u64, Ordering::Relaxed);
}

/// Driver Verifier's low-resources simulation, for one thread: fail the `k`-th allocation made
/// by the code under test (the crates named at arming) while armed, and count them.
///
/// An allocation is the code under test's when softndk does not own it (see [`Owner`]) and the
/// innermost frame of its backtrace outside the allocation machinery (std, core, alloc,
/// `kalloc`, this allocator) belongs to one of the named crates: the engine's allocations
/// count, and the host platform's, the test's and softndk's do not (as Verifier fails only the
/// verified driver's). Classifying takes a backtrace, so arming is for sweeps, not benches.
/// Only with [`CheckingAllocator`] installed.
#[must_use = "disarmed when dropped; `finish` reports what was seen"]
pub struct FailureInjection {
    _private: (),
}

#[derive(Clone, Copy)]
struct Armed {
    /// The allocation to fail, counting from 1 (0: none, only count).
    fail_at: u64,
    /// Counted so far.
    counted: u64,
    /// The `fail_at`-th was failed.
    failed: bool,
    /// Classifying now (its own allocations pass).
    classifying: bool,
}

thread_local! {
    static ARMED: Cell<Option<Armed>> = const { Cell::new(None) };
    static CRATES: Cell<&'static [&'static str]> = const { Cell::new(&[]) };
}

/// What an armed injection saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injected {
    /// Allocations of the code under test made while armed, up to the failed one (none are
    /// classified after it).
    pub counted: u64,
    /// Whether the `k`-th was failed (false: fewer than `k` were made).
    pub failed: bool,
}

/// Arm on this thread: the `k`-th allocation (from 1) of `crates` fails; `k == 0` only counts.
pub fn fail_allocation(k: u64, crates: &'static [&'static str]) -> FailureInjection {
    let _ = CRATES.try_with(|c| c.set(crates));
    let _ = ARMED.try_with(|a| {
        a.set(Some(Armed {
            fail_at: k,
            counted: 0,
            failed: false,
            classifying: false,
        }));
    });
    FailureInjection { _private: () }
}

impl FailureInjection {
    /// Disarm and report.
    pub fn finish(self) -> Injected {
        let seen = ARMED.try_with(Cell::take).ok().flatten();
        std::mem::forget(self);
        seen.map_or(
            Injected {
                counted: 0,
                failed: false,
            },
            |a| Injected {
                counted: a.counted,
                failed: a.failed,
            },
        )
    }
}

impl Drop for FailureInjection {
    fn drop(&mut self) {
        let _ = ARMED.try_with(Cell::take);
    }
}

/// Allocations an armed injection could not attribute (no symbol for the deciding frame):
/// a sweep asserts there were none, or it could be counting too few.
static UNCLASSIFIED: AtomicU64 = AtomicU64::new(0);

/// Allocations seen while armed whose deciding frame had no symbol (see [`UNCLASSIFIED`]).
pub fn unclassified() -> u64 {
    UNCLASSIFIED.load(Ordering::SeqCst)
}

/// An allocation the code under test makes through a port of its platform (a WDF object, a
/// `KEVENT` in nonpaged pool): the host platform asks this where the driver's platform
/// allocates, and gives the engine `None` when it says so. An armed injection counts and fails
/// it like the engine's own allocations. `true`: this one fails.
pub fn port_allocation_fails() -> bool {
    let Ok(Some(mut armed)) = ARMED.try_with(Cell::get) else {
        return false;
    };
    if armed.classifying || armed.failed {
        return false;
    }
    armed.counted += 1;
    armed.failed = armed.counted == armed.fail_at;
    let _ = ARMED.try_with(|a| a.set(Some(armed)));
    armed.failed
}

/// The crate a demangled frame belongs to: for `<T as Trait>::f`, `T`'s if it is a path, else
/// the trait's; otherwise the first path segment.
fn frame_crate(symbol: &str) -> &str {
    let path = match symbol.strip_prefix('<') {
        Some(rest) => {
            let self_ty = rest.split(" as ").next().unwrap_or(rest);
            let self_ty = self_ty.trim_start_matches(['&', '*', '(', '[']);
            let self_ty = self_ty
                .trim_start_matches("mut ")
                .trim_start_matches("dyn ");
            if self_ty.contains("::") {
                self_ty
            } else {
                rest.split(" as ").nth(1).unwrap_or(rest)
            }
        }
        None => symbol,
    };
    path.split("::").next().unwrap_or(path)
}

/// Whether the allocation being made belongs to `crates` (see [`FailureInjection`]).
fn allocation_of(crates: &[&str]) -> bool {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    for line in trace.lines() {
        let Some((number, symbol)) = line.trim_start().split_once(": ") else {
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if symbol.contains("alloc_check")
            || symbol.starts_with("__r")
            || symbol.starts_with("rust_")
        {
            continue;
        }
        let krate = frame_crate(symbol);
        if matches!(krate, "std" | "core" | "alloc" | "kalloc" | "hashbrown") {
            continue;
        }
        if symbol.starts_with("<unknown>") {
            UNCLASSIFIED.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        return crates.contains(&krate);
    }
    false
}

/// Whether this allocation is to fail (and count it). Never fails one softndk owns.
fn inject() -> bool {
    let Ok(Some(mut armed)) = ARMED.try_with(Cell::get) else {
        return false;
    };
    // After the one failure nothing is classified: what follows may be the allocation-error
    // handler itself, which holds the backtrace lock a classification would take.
    if armed.classifying
        || armed.failed
        || current_owner() != Owner::Consumer as u8
        || RECORDING.try_with(Cell::get).unwrap_or(true)
    {
        return false;
    }
    armed.classifying = true;
    let _ = ARMED.try_with(|a| a.set(Some(armed)));
    let crates = CRATES.try_with(Cell::get).unwrap_or(&[]);
    // What classifying allocates (the backtrace, the resolver's lasting caches) is not the
    // code under test's: charged to softndk, so the consumer's balance stays its own.
    let ours = {
        let _charge = provider_scope();
        allocation_of(crates)
    };
    armed.classifying = false;
    if ours {
        armed.counted += 1;
        if armed.counted == armed.fail_at {
            armed.failed = true;
            if std::env::var_os("NDKDISC_SHOW_FAILED_ALLOCATION").is_some() {
                // Where it failed, for a person chasing what the sweep found (allocates,
                // classified as softndk's: the failure is already decided).
                let _charge = provider_scope();
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                eprintln!("failed allocation {}:\n{trace}", armed.counted);
            }
        }
    }
    let _ = ARMED.try_with(|a| a.set(Some(armed)));
    ours && armed.counted == armed.fail_at
}

/// Whether the consumer's live blocks are being recorded ([`track_live`]).
static TRACKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The consumer's blocks allocated since tracking started and not freed: address -> (size,
/// backtrace).
static LIVE: Mutex<Option<std::collections::HashMap<usize, (usize, std::backtrace::Backtrace)>>> =
    Mutex::new(None);

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Start (or stop) recording every block the consumer allocates, with its backtrace, until it
/// is freed: for finding what a leak check found (slow; a debugging aid).
pub fn track_live(on: bool) {
    let only = std::env::var("NDKDISC_TRACK_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    TRACK_SIZE.store(only, Ordering::Relaxed);
    if on {
        *LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(std::collections::HashMap::new());
    }
    TRACKING.store(on, Ordering::SeqCst);
}

/// The consumer's blocks recorded by [`track_live`] and still allocated: (size, backtrace).
pub fn live_blocks() -> Vec<(usize, String)> {
    let was = TRACKING.swap(false, Ordering::SeqCst);
    let out = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|m| m.values().map(|(n, t)| (*n, t.to_string())).collect())
        .unwrap_or_default();
    TRACKING.store(was, Ordering::SeqCst);
    out
}

/// Only blocks of this size are recorded when non-zero (`NDKDISC_TRACK_SIZE`): recording
/// every block is too slow for a sweep.
static TRACK_SIZE: AtomicU64 = AtomicU64::new(0);

fn record_live(ptr: *mut u8, size: usize) {
    let only = TRACK_SIZE.load(Ordering::Relaxed);
    if ptr.is_null()
        || !TRACKING.load(Ordering::Relaxed)
        || (only != 0 && size as u64 != only)
        || current_owner() != Owner::Consumer as u8
        || RECORDING.try_with(Cell::get).unwrap_or(true)
    {
        return;
    }
    let _ = RECORDING.try_with(|r| r.set(true));
    // Resolved only when reported.
    let trace = std::backtrace::Backtrace::force_capture();
    if let Some(m) = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
    {
        m.insert(ptr.addr(), (size, trace));
    }
    let _ = RECORDING.try_with(|r| r.set(false));
}

fn forget_live(ptr: *mut u8) {
    if !TRACKING.load(Ordering::Relaxed) || RECORDING.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    let _ = RECORDING.try_with(|r| r.set(true));
    if let Some(m) = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
    {
        m.remove(&ptr.addr());
    }
    let _ = RECORDING.try_with(|r| r.set(false));
}

/// [`System`], counting allocations (by owner too), and those made inside a no-allocation
/// scope.
pub struct CheckingAllocator;

impl CheckingAllocator {
    /// Tag a fresh block from `System` (`base`, null on failure) and return the caller's
    /// pointer.
    ///
    /// # Safety
    /// `base` is null or a block of `with_prefix(layout)` bytes.
    unsafe fn tag(base: *mut u8, layout: Layout) -> *mut u8 {
        if base.is_null() {
            return base;
        }
        let owner = current_owner();
        charge(owner, layout.size());
        // The block holds `prefix(layout)` bytes before the caller's, so both pointers stay
        // inside it.
        let ptr = base.wrapping_add(prefix(layout));
        if TAGGED {
            // SAFETY: the last prefix byte lies inside the fresh block, which nobody else sees
            // yet.
            unsafe { ptr.wrapping_sub(1).write(owner) };
        }
        ptr
    }

    /// The owner of the block at `ptr` (a pointer this allocator returned), charged with
    /// freeing `size` bytes, and the block's base.
    ///
    /// # Safety
    /// `ptr` was returned by this allocator for `layout` and is not yet freed.
    unsafe fn untag(ptr: *mut u8, layout: Layout) -> *mut u8 {
        // SAFETY: per the contract.
        let owner = unsafe { owner_of(ptr) };
        let base = ptr.wrapping_sub(prefix(layout));
        FREED_BY[usize::from(owner & 1)].fetch_add(layout.size() as u64, Ordering::Relaxed);
        base
    }
}

// SAFETY: every block comes from `System` with room for a prefix in front (a multiple of the
// alignment, so the pointer handed out keeps the requested alignment), and is given back to
// `System` from its base with the same enlarged layout; `check` never allocates while the
// scope is active (it clears the scope before capturing a backtrace).
unsafe impl GlobalAlloc for CheckingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        record(layout.size(), 0);
        let Some(full) = with_prefix(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `full` has a non-zero size (it includes the prefix).
        let base = unsafe { System.alloc(full) };
        // SAFETY: `base` is null or a block of `full` bytes, as `tag` requires.
        let ptr = unsafe { Self::tag(base, layout) };
        record_live(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        record(layout.size(), 0);
        let Some(full) = with_prefix(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: as for `alloc`.
        let base = unsafe { System.alloc_zeroed(full) };
        // SAFETY: as for `alloc`.
        let ptr = unsafe { Self::tag(base, layout) };
        record_live(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        forget_live(ptr);
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        let _ = THREAD_FREED.try_with(|n| n.set(n.get() + layout.size() as u64));
        // SAFETY: `ptr` came from `alloc` for `layout` and is freed once (the caller's
        // contract), as `untag` requires.
        let base = unsafe { Self::untag(ptr, layout) };
        if let Some(full) = with_prefix(layout) {
            // SAFETY: the block starts at `base` and was allocated with `with_prefix(layout)`
            // (which did not overflow then either).
            unsafe { System.dealloc(base, full) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if inject() {
            return std::ptr::null_mut();
        }
        record(new_size, layout.size());
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let (Some(full), Some(new_full)) = (with_prefix(layout), with_prefix(new_layout)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `ptr` came from this allocator for `layout` (the caller's contract).
        let old_owner = unsafe { owner_of(ptr) };
        // SAFETY: as above; the block is given up only if `realloc` below succeeds, and on
        // failure the charge for freeing it is undone.
        let base = unsafe { Self::untag(ptr, layout) };
        // SAFETY: the block is `full` bytes from `base`, from `System`; the prefix is the same
        // for both layouts (same alignment), so the caller's bytes keep their offset.
        let moved = unsafe { System.realloc(base, full, new_full.size()) };
        if moved.is_null() {
            // The old block is untouched and still tagged: undo the free `untag` counted.
            FREED_BY[usize::from(old_owner & 1)].fetch_sub(layout.size() as u64, Ordering::Relaxed);
            return moved;
        }
        forget_live(ptr);
        // SAFETY: `moved` is a block of `new_full` bytes, as `tag` requires.
        let moved = unsafe { Self::tag(moved, new_layout) };
        record_live(moved, new_size);
        moved
    }
}
