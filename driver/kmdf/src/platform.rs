//! The core's ports (`ndkdisc_core::ports`) over WDM and WDF. Each is a direct mapping to a
//! kernel object; none decides anything. The pended-request port, [`KmRequest`], is the
//! request wrapper's (`request`). `tools/host/src/platform.rs` (the `ndkdisc-host`
//! crate) is the same set of ports over std, and the model for what each must guarantee.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::net::SocketAddr;
use core::ptr::{NonNull, null_mut};

use ndkdisc_core::kalloc;
use ndkdisc_core::ports::{AdapterDesc, Lock, Platform, SharedPassive, Signal, Trace, WaitLock};
use ndkpi_sys::{
    AF_INET, AF_INET6, AF_UNSPEC, FreeMibTable, GetUnicastIpAddressTable, MIB_UNICASTIPADDRESS_ROW,
    MIB_UNICASTIPADDRESS_TABLE, NtStatus, SOCKADDR_INET,
};
use wdk::nt_success;
use wdk_sys::ntddk::{
    ExAllocatePool2, ExFreePool, IoAllocateMdl, IoFreeMdl, KeAcquireSpinLockRaiseToDpc,
    KeGetCurrentProcessorNumberEx, KeInitializeEvent, KeQueryUnbiasedInterruptTime,
    KeReleaseSpinLock, KeSetEvent, KeWaitForSingleObject, MmBuildMdlForNonPagedPool,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, KEVENT, KPROCESSOR_MODE, KSPIN_LOCK, NTSTATUS, PMDL,
    POOL_FLAG_NON_PAGED, SIZE_T, ULONG, WDFWAITLOCK, WDFWORKITEM, call_unsafe_wdf_function_binding,
};

use crate::request::KmRequest;

/// `KernelMode` (`_MODE::KernelMode` is an `int`; `KPROCESSOR_MODE` is a `CCHAR`).
const KERNEL_MODE: KPROCESSOR_MODE = 0;
/// Pool tag of posted buffers, `NdkB` in the debugger.
const BUFFER_TAG: ULONG = u32::from_le_bytes(*b"NdkB");
/// [`Lock`] over a `KSPIN_LOCK`: `with` raises to `DISPATCH_LEVEL` for the closure.
pub struct KmLock<T> {
    spin: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only with the spin lock held, by one thread at a time.
unsafe impl<T: Send> Send for KmLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for KmLock<T> {}

impl<T> KmLock<T> {
    fn new(value: T) -> Self {
        // INVARIANT: 0 is an initialised, free spin lock: `KeInitializeSpinLock` is an inline
        // function on x64 and ARM64 that stores 0 (bindgen binds no inline functions).
        Self {
            spin: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: Send> Lock<T> for KmLock<T> {
    // IRQL: <= DISPATCH_LEVEL on entry; DISPATCH_LEVEL inside `f`.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let old;
        // SAFETY: an initialised spin lock (constructor) in nonpaged memory (every allocation
        // of this driver is nonpaged pool; stacks are resident while running); the caller is
        // at <= DISPATCH_LEVEL (the port's contract) and does not hold this lock (`f` must not
        // re-enter it).
        unsafe {
            old = KeAcquireSpinLockRaiseToDpc(self.spin.get());
        }
        // SAFETY: the spin lock is held: this is the only reference to the value until the
        // release below.
        let result = f(unsafe { &mut *self.value.get() });
        // SAFETY: held by this thread, acquired above, which returned `old`.
        unsafe { KeReleaseSpinLock(self.spin.get(), old) };
        result
    }
}

/// [`Signal`] over a synchronization (auto-reset) `KEVENT`. The event is boxed: a dispatcher
/// object must not move once initialised, and the core moves its values.
pub struct KmSignal {
    event: Box<UnsafeCell<KEVENT>>,
}

// SAFETY: KEVENTs are made to be set and waited for from any thread.
unsafe impl Send for KmSignal {}
// SAFETY: as above; every access goes through the kernel's dispatcher lock.
unsafe impl Sync for KmSignal {}

impl KmSignal {
    // IRQL: <= DISPATCH_LEVEL (the port asks PASSIVE_LEVEL).
    fn new() -> Option<Self> {
        let event = kalloc::try_box(UnsafeCell::new(KEVENT::default())).ok()?;
        // SAFETY: the event is in nonpaged pool (the global allocator), never moves (boxed)
        // and outlives every set and wait (owned by `self`). Any IRQL is allowed.
        unsafe { KeInitializeEvent(event.get(), _EVENT_TYPE::SynchronizationEvent, 0) };
        Some(Self { event })
    }
}

impl Signal for KmSignal {
    // IRQL: <= DISPATCH_LEVEL, with Wait = FALSE.
    fn set(&self) {
        // SAFETY: an initialised event (constructor); increment 0 (IO_NO_INCREMENT), no wait.
        let _previous = unsafe { KeSetEvent(self.event.get(), 0, 0) };
    }

    // IRQL: PASSIVE_LEVEL (the port's contract: never from a callback or under a lock).
    fn wait(&self) {
        // SAFETY: an initialised event in nonpaged memory; a kernel-mode, non-alertable wait
        // with no timeout, at PASSIVE_LEVEL (port contract), which KeWaitForSingleObject
        // allows. It returns STATUS_SUCCESS when the event is signalled, clearing it.
        let _status: NTSTATUS = unsafe {
            KeWaitForSingleObject(
                self.event.get().cast(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                0,
                null_mut(),
            )
        };
    }
}

/// [`WaitLock`] over a `WDFWAITLOCK`: acquiring waits at `PASSIVE_LEVEL` inside a critical
/// region (normal kernel APCs off, IRQL unchanged), so the holder may call NDK and wait on a
/// [`KmSignal`]. Its parent is the driver object (WDF's default), which outlives every device
/// and so every engine object; the lock is deleted when this value drops.
pub struct KmWaitLock {
    lock: WDFWAITLOCK,
}

// SAFETY: a WDF wait lock may be acquired and released from any thread; the handle is owned by
// this value and deleted once, in drop.
unsafe impl Send for KmWaitLock {}
// SAFETY: as above; every access goes through WDF's own synchronisation.
unsafe impl Sync for KmWaitLock {}

impl KmWaitLock {
    /// A new, free wait lock, or `None` if WDF cannot allocate it. `// IRQL: <= DISPATCH_LEVEL`
    /// (the port asks `PASSIVE_LEVEL`).
    fn new() -> Option<Self> {
        let mut lock: WDFWAITLOCK = null_mut();
        let status: NTSTATUS;
        // SAFETY: no attributes (WDF_NO_OBJECT_ATTRIBUTES: the driver object is the parent) and a
        // valid out-pointer; WdfWaitLockCreate may be called at <= DISPATCH_LEVEL.
        unsafe {
            status =
                call_unsafe_wdf_function_binding!(WdfWaitLockCreate, null_mut(), &raw mut lock);
        }
        (nt_success(status) && !lock.is_null()).then_some(Self { lock })
    }
}

impl Drop for KmWaitLock {
    // IRQL: <= DISPATCH_LEVEL. Not held: every guard borrows the lock, so none outlives it.
    fn drop(&mut self) {
        // SAFETY: a wait lock created in `new` with the driver as its parent, which has not
        // been deleted (the driver outlives its devices and their engines), deleted once;
        // WdfObjectDelete may be called at <= DISPATCH_LEVEL.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.lock.cast()) };
    }
}

/// Holds a [`KmWaitLock`] until dropped.
pub struct KmWaitGuard<'a> {
    lock: &'a KmWaitLock,
}

impl WaitLock for KmWaitLock {
    type Guard<'a> = KmWaitGuard<'a>;

    // IRQL: PASSIVE_LEVEL (the port's contract: never from a callback or under a lock).
    fn acquire(&self) -> KmWaitGuard<'_> {
        // SAFETY: a live wait lock (owned by `self`), not held by this thread (the port's
        // locks are not re-entrant and the core opens one session at a time per object); no
        // timeout (NULL), which requires PASSIVE_LEVEL (port contract). It then returns
        // STATUS_SUCCESS, holding the lock.
        let _status: NTSTATUS =
            unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockAcquire, self.lock, null_mut()) };
        KmWaitGuard { lock: self }
    }
}

impl Drop for KmWaitGuard<'_> {
    // IRQL: <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: held by this thread (acquired when this guard was made); a live wait lock
        // (the guard borrows its owner). WdfWaitLockRelease may be called at <= DISPATCH_LEVEL.
        unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockRelease, self.lock.lock) };
    }
}

/// Posted-buffer memory: nonpaged pool described by an MDL built for nonpaged pool.
struct KmMemory {
    base: NonNull<u8>,
    len: usize,
    mdl: NonNull<ndkpi_sys::MDL>,
}

// SAFETY: the buffer and MDL are owned by this value and only reached through raw pointers
// (by the provider's DMA); nonpaged memory may be used from any thread.
unsafe impl Send for KmMemory {}
// SAFETY: as above; `&KmMemory` gives no access to the bytes.
unsafe impl Sync for KmMemory {}

impl KmMemory {
    // IRQL: <= DISPATCH_LEVEL (the port asks PASSIVE_LEVEL).
    fn new(len: usize) -> Option<Self> {
        let len32 = u32::try_from(len).ok().filter(|l| *l > 0)?;
        // SAFETY: nonpaged allocation of a non-zero size, allowed at <= DISPATCH_LEVEL.
        // ExAllocatePool2 zeroes the memory.
        let base = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len as SIZE_T, BUFFER_TAG) };
        let base = NonNull::new(base.cast::<u8>())?;
        // SAFETY: describes `len` bytes of our own allocation; no IRP is associated.
        let mdl: PMDL = unsafe { IoAllocateMdl(base.as_ptr().cast(), len32, 0, 0, null_mut()) };
        let Some(mdl) = NonNull::new(mdl) else {
            // SAFETY: allocated above with ExAllocatePool2, freed once.
            unsafe { ExFreePool(base.as_ptr().cast()) };
            return None;
        };
        // SAFETY: the MDL describes nonpaged pool, which is what this function requires.
        unsafe { MmBuildMdlForNonPagedPool(mdl.as_ptr()) };
        Some(Self {
            base,
            len,
            mdl: mdl.cast(),
        })
    }
}

impl Drop for KmMemory {
    // IRQL: <= DISPATCH_LEVEL. ndkpi drops registered memory only after the QP's close
    // completed, so no DMA targets it any more.
    fn drop(&mut self) {
        // SAFETY: allocated by IoAllocateMdl in `new`, freed once.
        unsafe { IoFreeMdl(self.mdl.as_ptr().cast()) };
        // SAFETY: allocated by ExAllocatePool2 in `new`, freed once, after its MDL.
        unsafe { ExFreePool(self.base.as_ptr().cast()) };
    }
}

// SAFETY: the MDL describes exactly the `len` bytes at `base` (built by
// MmBuildMdlForNonPagedPool over them), which this value owns, never moves and frees on drop.
unsafe impl ndkpi::RegisteredMemory for KmMemory {
    fn mdl(&self) -> *mut ndkpi_sys::MDL {
        self.mdl.as_ptr()
    }
    fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// The KMDF platform: one per device.
pub struct KmPlatform {
    wsk: ndkpi::Wsk,
    /// The device's work item: a kick enqueues it, and its routine runs `drainer`.
    work_item: WDFWORKITEM,
    /// The engine's drainer (`Platform::set_drainer`).
    drainer: KmLock<Option<SharedPassive>>,
    /// `stop_deferring` closed the gate: kicks no longer enqueue the work item. A kick checks
    /// it and enqueues under this lock, so no enqueue can land after the gate closed.
    stopped: KmLock<bool>,
}

// SAFETY: WDF handles may be used from any thread; the work item outlives this value (the
// device's self-managed-I/O cleanup flushes it, and the device context holding this platform
// is destroyed after the work item, its child).
unsafe impl Send for KmPlatform {}
// SAFETY: as above; the mutable state is behind the `drainer` and `stopped` locks.
unsafe impl Sync for KmPlatform {}

impl KmPlatform {
    /// A platform over the WSK NDK extension and the device's work item.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn new(wsk: ndkpi::Wsk, work_item: WDFWORKITEM) -> Self {
        Self {
            wsk,
            work_item,
            drainer: KmLock::new(None),
            stopped: KmLock::new(false),
        }
    }

    /// The work item ran: run the engine's drainer. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn run_deferred(&self) {
        // Cloned under the lock, run and dropped outside it.
        if let Some(drainer) = self.drainer.with(|d| d.clone()) {
            drainer.run();
        }
    }

    /// Drain what the engine deferred, then ignore further kicks, so no engine work runs after
    /// this returns. `// IRQL: PASSIVE_LEVEL`, not from the work item.
    ///
    /// Flush, close, flush: the first flush waits for a run already enqueued, which drains
    /// everything queued before it and what that work defers in turn (the drainer loops until
    /// the engine's queue is empty), with kicks still accepted; closing the gate under its lock
    /// orders every later kick after it (refused) and every earlier one before it (its enqueue
    /// done); the second flush waits for a run such an earlier kick enqueued after the first.
    pub(crate) fn stop_deferring(&self) {
        self.flush();
        self.stopped.with(|stopped| *stopped = true);
        self.flush();
    }

    /// Wait until the work item is not queued or running. `// IRQL: PASSIVE_LEVEL`, not from
    /// the work item.
    fn flush(&self) {
        // SAFETY: a live work item (type invariant), flushed at PASSIVE_LEVEL from outside
        // its own callback (self-managed-I/O cleanup is the only caller).
        unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, self.work_item) };
    }
}

impl Platform for KmPlatform {
    type Request = KmRequest;
    type Lock<T: Send + 'static> = KmLock<T>;
    type Signal = KmSignal;
    type WaitLock = KmWaitLock;

    fn lock<T: Send + 'static>(&self, value: T) -> KmLock<T> {
        KmLock::new(value)
    }

    fn signal(&self) -> Option<KmSignal> {
        KmSignal::new()
    }

    fn wait_lock(&self) -> Option<KmWaitLock> {
        KmWaitLock::new()
    }

    // IRQL: any.
    fn now(&self) -> u64 {
        // SAFETY: no preconditions; callable at any IRQL. 100 ns units since boot, not
        // counting sleep.
        unsafe { KeQueryUnbiasedInterruptTime() }
    }

    // IRQL: any.
    fn processor(&self) -> usize {
        // SAFETY: callable at any IRQL; a null PPROCESSOR_NUMBER asks for the system-wide
        // index only. Below DISPATCH_LEVEL the thread may move right after: harmless, the
        // engine only spreads counters with it.
        let n = unsafe { KeGetCurrentProcessorNumberEx(null_mut()) };
        usize::try_from(n).unwrap_or(0)
    }

    // IRQL: PASSIVE_LEVEL (engine creation).
    fn set_drainer(&self, drainer: SharedPassive) {
        let old = self.drainer.with(|d| d.replace(drainer));
        // A platform serves one engine; a replaced drainer is dropped outside the lock.
        drop(old);
    }

    // IRQL: <= DISPATCH_LEVEL. Never allocates.
    fn kick(&self) {
        // Checked and enqueued under one lock: `stop_deferring` closes the gate under it, so
        // this enqueue happens before the gate closed (and its second flush waits for the run)
        // or not at all.
        self.stopped.with(|stopped| {
            if !*stopped {
                // SAFETY: a live work item (type invariant); WdfWorkItemEnqueue may be called
                // at <= DISPATCH_LEVEL (this lock holds DISPATCH_LEVEL) and does nothing if
                // the item is already queued.
                unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, self.work_item) };
            }
        });
    }

    fn wsk(&self) -> &ndkpi::Wsk {
        &self.wsk
    }

    // IRQL: PASSIVE_LEVEL (GetUnicastIpAddressTable).
    fn adapters(&self) -> Vec<AdapterDesc> {
        let mut out = Vec::new();
        let mut table: *mut MIB_UNICASTIPADDRESS_TABLE = null_mut();
        // SAFETY: PASSIVE_LEVEL (port contract); a valid out-pointer.
        let status = unsafe { GetUnicastIpAddressTable(AF_UNSPEC, &raw mut table) };
        if status != NtStatus::SUCCESS || table.is_null() {
            return out;
        }
        // SAFETY: on success `table` is a valid table until FreeMibTable.
        let count = unsafe { (*table).NumEntries };
        // SAFETY: as above; `Table` is the first of `NumEntries` contiguous rows.
        let first = unsafe { (&raw const (*table).Table).cast::<MIB_UNICASTIPADDRESS_ROW>() };
        let count = usize::try_from(count).unwrap_or(0);
        // SAFETY: `count` initialised rows from `first`, valid until FreeMibTable below.
        let rows = unsafe { core::slice::from_raw_parts(first, count) };
        if out.try_reserve_exact(rows.len()).is_ok() {
            out.extend(rows.iter().filter_map(|row| {
                socket_addr(&row.Address).map(|address| AdapterDesc {
                    if_index: row.InterfaceIndex,
                    address,
                })
            }));
        }
        // SAFETY: returned by GetUnicastIpAddressTable, released once; `rows` is not used
        // after this.
        unsafe { FreeMibTable(table.cast()) };
        out
    }

    fn memory(&self, len: usize) -> Option<Box<dyn ndkpi::RegisteredMemory>> {
        let memory = KmMemory::new(len)?;
        // On failure `memory` is dropped: its MDL and buffer are freed.
        let boxed: Box<dyn ndkpi::RegisteredMemory> = kalloc::try_box(memory).ok()?;
        Some(boxed)
    }

    // IRQL: <= DISPATCH_LEVEL; never allocates.
    fn trace(&self, trace: &Trace) {
        crate::etw::write(trace);
    }
}

/// A `SOCKADDR_INET` from the address table as a `SocketAddr`.
fn socket_addr(inet: &SOCKADDR_INET) -> Option<SocketAddr> {
    // SAFETY: both members start with the family at offset 0; any u16 is valid.
    let family = unsafe { inet.si_family };
    match family {
        // SAFETY: the family says the IPv4 member is the one written; all bit patterns of its
        // plain integer fields are valid.
        AF_INET => Some(SocketAddr::V4(ndkpi::sockaddr::v4(&unsafe { inet.Ipv4 }))),
        // SAFETY: as above, for the IPv6 member.
        AF_INET6 => Some(SocketAddr::V6(ndkpi::sockaddr::v6(&unsafe { inet.Ipv6 }))),
        _ => None,
    }
}
