//! The emulated kernel's one state: every WDF object, request, file, work item, wait lock, event,
//! pool block, MDL, table, the ETW and WSK registrations, and the rule violations seen. One
//! mutex guards it, with one condition variable for every wait (a work item's flush, a
//! request's completion, an event): the emulation favours plain correctness over speed.
//!
//! No driver callback is ever made while the state's lock is held: each entry point takes what
//! it needs, releases the lock, then calls the driver (which may call back into softwdf).

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// A pointer kept in the kernel's state: the emulation owns what it points to, or it is the
/// driver's memory handed to the kernel (an event, a spin lock) and used by the rules below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

// SAFETY: the kernel's state is behind one mutex; the pointers it keeps are dereferenced only
// by the entry points that own their memory (contexts, buffers, MDLs), under the rules each
// states.
unsafe impl<T> Send for SendPtr<T> {}

/// `PASSIVE_LEVEL`.
pub(crate) const PASSIVE_LEVEL: u8 = 0;
/// `APC_LEVEL`.
pub(crate) const APC_LEVEL: u8 = 1;
/// `DISPATCH_LEVEL`.
pub(crate) const DISPATCH_LEVEL: u8 = 2;

thread_local! {
    /// The emulated IRQL of this thread: raised by spin locks, and set for each callback the
    /// kernel makes to the level it makes it at.
    static IRQL: Cell<u8> = const { Cell::new(PASSIVE_LEVEL) };
    /// Spin locks this thread holds (their addresses), innermost last.
    pub(crate) static SPIN_LOCKS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The work item whose callback this thread runs, if any (its flush from inside would
    /// deadlock).
    pub(crate) static RUNNING_WORK_ITEM: Cell<usize> = const { Cell::new(0) };
}

/// The current thread's IRQL: its own, or `DISPATCH_LEVEL` inside a softndk callback (NDK
/// calls its consumer's callbacks at <= `DISPATCH_LEVEL`; the emulation takes the highest).
pub(crate) fn irql() -> u8 {
    let own = IRQL.with(Cell::get);
    if softndk::in_provider_callback() {
        own.max(DISPATCH_LEVEL)
    } else {
        own
    }
}

/// Set this thread's own IRQL, returning the previous one.
pub(crate) fn set_irql(level: u8) -> u8 {
    IRQL.with(|c| c.replace(level))
}

/// Run `f` at `level` (a callback the kernel makes at that IRQL); a callback that returns at
/// another IRQL (a spin lock acquired and not released) breaks a rule.
pub(crate) fn at_irql<R>(level: u8, what: &'static str, f: impl FnOnce() -> R) -> R {
    let old = set_irql(level);
    let r = f();
    let now = set_irql(old);
    if now != level {
        violation(
            Rule::IrqlNotRestored,
            format!("{what} returned at IRQL {now}, entered at {level}"),
        );
    }
    r
}

/// A rule of KMDF Verifier or Driver Verifier that the driver broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A request completed twice, or used after its completion.
    RequestCompletedTwice,
    /// A request handle that is not a live request of the driver.
    InvalidRequest,
    /// A request marked cancelable while already marked.
    MarkedCancelableTwice,
    /// `WdfRequestUnmarkCancelable` on a request that is not marked cancelable.
    UnmarkedNotCancelable,
    /// A request completed while still marked cancelable (not from its cancel routine).
    CompletedWhileCancelable,
    /// A request completed with `STATUS_PENDING`, or with more information than its output
    /// buffer holds.
    BadCompletion,
    /// A function called above the IRQL it allows.
    IrqlTooHigh,
    /// A wait (`KeWaitForSingleObject`, a wait lock) while holding a spin lock.
    WaitUnderSpinLock,
    /// A callback returned at another IRQL than it was called at.
    IrqlNotRestored,
    /// A spin lock released that the thread does not hold, or acquired twice.
    SpinLockMisuse,
    /// A wait lock acquired recursively, or released by a thread that does not hold it.
    WaitLockMisuse,
    /// `WdfWorkItemFlush` from the work item's own callback.
    FlushFromOwnWorkItem,
    /// A WDF handle that is not a live object of the expected kind.
    InvalidHandle,
    /// A structure whose `Size` is not the framework's.
    BadStructureSize,
    /// `WdfObjectDelete` on an object the driver may not delete.
    IllegalDelete,
    /// An object still alive when the driver unloads.
    ObjectLeaked,
    /// Pool, an MDL or an address table not freed when the driver unloads, or freed twice.
    MemoryLeaked,
    /// `ExFreePool`/`IoFreeMdl`/`FreeMibTable` of memory the kernel did not allocate (or freed
    /// already).
    BadFree,
    /// A WSK or ETW registration misused or left behind.
    Registration,
    /// A WDF function softwdf does not implement was called.
    Unimplemented,
}

/// One broken rule, with what the kernel saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.rule, self.detail)
    }
}

/// Record a broken rule (and print it, so a test's output shows where).
pub(crate) fn violation(rule: Rule, detail: String) {
    eprintln!("softwdf: verifier: {rule:?}: {detail}");
    lock().violations.push(Violation { rule, detail });
}

/// Record a broken rule while holding the state.
pub(crate) fn violation_locked(k: &mut Kernel, rule: Rule, detail: String) {
    eprintln!("softwdf: verifier: {rule:?}: {detail}");
    k.violations.push(Violation { rule, detail });
}

/// Check that the current IRQL is at most `max` for `function`.
pub(crate) fn require_irql(max: u8, function: &'static str) -> bool {
    let now = irql();
    if now > max {
        violation(
            Rule::IrqlTooHigh,
            format!("{function} at IRQL {now}; it allows at most {max}"),
        );
        false
    } else {
        true
    }
}

/// The emulated kernel's state. See the module docs.
#[derive(Default)]
pub(crate) struct Kernel {
    /// Every live WDF object, by handle.
    pub(crate) objects: BTreeMap<usize, crate::objects::Object>,
    /// Handles of requests completed (and so deleted), to tell a second completion apart from
    /// a wrong handle.
    pub(crate) completed: std::collections::BTreeSet<usize>,
    /// The next handle value (never reused within a boot).
    pub(crate) next_handle: usize,
    /// `KEVENT`s initialised, by address.
    pub(crate) events: BTreeMap<usize, crate::nt::EventState>,
    /// Pool blocks: address → (layout, tag).
    pub(crate) pool: BTreeMap<usize, (SendPtr<u8>, Layout, u32)>,
    /// MDLs from `IoAllocateMdl`.
    pub(crate) mdls: BTreeMap<usize, SendPtr<softndk::SoftMdl>>,
    /// Address tables from `GetUnicastIpAddressTable`.
    pub(crate) tables: BTreeMap<usize, (SendPtr<u8>, Layout)>,
    /// Completed requests' results, until the caller takes them.
    pub(crate) results: BTreeMap<usize, crate::request::Completion>,
    /// The rules broken so far.
    pub(crate) violations: Vec<Violation>,
    /// Threads the kernel started (work items, deferred closes), joined at unload.
    pub(crate) workers: Vec<JoinHandle<()>>,
    /// The ETW registrations and what they wrote.
    pub(crate) etw: crate::nt::EtwState,
    /// The WSK registration.
    pub(crate) wsk: crate::wsk::WskState,
    /// The machine this kernel runs on (set by `System::boot`).
    pub(crate) machine: Option<crate::io::Machine>,
    /// The loaded driver, if any.
    pub(crate) driver: Option<crate::objects::DriverState>,
}

impl Kernel {
    /// A fresh handle value: distinct from every other of this boot, never a real address the
    /// driver could confuse with its own memory, and never dereferenced.
    pub(crate) fn new_handle(&mut self) -> usize {
        self.next_handle += 0x10;
        0x5EF_0000_0000 + self.next_handle
    }
}

static KERNEL: Mutex<Option<Kernel>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();

/// The kernel's state, locked. Created on first use.
pub(crate) struct Locked(MutexGuard<'static, Option<Kernel>>);

impl std::ops::Deref for Locked {
    type Target = Kernel;
    fn deref(&self) -> &Kernel {
        self.0.as_ref().expect("created by lock()")
    }
}

impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut Kernel {
        self.0.as_mut().expect("created by lock()")
    }
}

impl Locked {
    /// Wait for the next change of the state (any entry point that changes what a waiter looks
    /// at calls [`changed`]).
    pub(crate) fn wait(self) -> Self {
        Self(CHANGED.wait(self.0).unwrap_or_else(PoisonError::into_inner))
    }

    /// As [`Locked::wait`], at most `timeout`.
    pub(crate) fn wait_timeout(self, timeout: std::time::Duration) -> Self {
        Self(
            CHANGED
                .wait_timeout(self.0, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0,
        )
    }
}

/// Lock the kernel's state.
pub(crate) fn lock() -> Locked {
    let mut g = KERNEL.lock().unwrap_or_else(PoisonError::into_inner);
    if g.is_none() {
        *g = Some(Kernel::default());
    }
    Locked(g)
}

/// Wake every waiter: the state changed.
pub(crate) fn changed() {
    CHANGED.notify_all();
}

/// Whether this thread may wait (a wait without a zero timeout): it holds no spin lock and is at
/// most at `max`. Otherwise the broken rule is recorded for `function`.
pub(crate) fn may_wait(max: u8, function: &'static str) -> bool {
    if SPIN_LOCKS.with(|s| !s.borrow().is_empty()) {
        violation(
            Rule::WaitUnderSpinLock,
            format!("{function} while holding a spin lock"),
        );
        return false;
    }
    require_irql(max, function)
}

/// A `GUID`'s 16 bytes as Windows lays them out (the first three fields little-endian).
pub(crate) fn guid_bytes(g: &wdk_sys::GUID) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&g.Data1.to_le_bytes());
    bytes[4..6].copy_from_slice(&g.Data2.to_le_bytes());
    bytes[6..8].copy_from_slice(&g.Data3.to_le_bytes());
    bytes[8..].copy_from_slice(&g.Data4);
    bytes
}
