//! The ntoskrnl exports the shell imports: pool, MDLs, spin locks, events and waits, the
//! clock, the processor number, and ETW. Each is a `#[no_mangle]` function with the name and
//! signature wdk-sys declares, so the shell's calls link here on the host.
//!
//! Rules checked (Driver Verifier's, where it has them): a spin lock acquired above
//! `DISPATCH_LEVEL`, twice by its holder, or released by a thread that does not hold it;
//! `KeWaitForSingleObject` with a non-zero timeout above `APC_LEVEL` or while holding a spin
//! lock; an event used before `KeInitializeEvent`; pool and MDLs freed twice, freed when the
//! kernel did not allocate them, or left at unload; ETW left registered at unload.
//!
//! While a thread holds a spin lock it also holds softndk's consumer lock
//! (`softndk::consumer_lock`), so an NDK call under the shell's spin lock is a softndk misuse
//! violation, as on the host platform.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wdk_sys::{
    BOOLEAN, EVENT_DATA_DESCRIPTOR, EVENT_DESCRIPTOR, EVENT_TYPE, KIRQL, KPROCESSOR_MODE,
    KWAIT_REASON, LPCGUID, NTSTATUS, PCEVENT_DESCRIPTOR, PETWENABLECALLBACK,
    PEVENT_DATA_DESCRIPTOR, PIRP, PKSPIN_LOCK, PLARGE_INTEGER, PMDL, POOL_FLAGS, PPROCESSOR_NUMBER,
    PREGHANDLE, PRKEVENT, PVOID, REGHANDLE, SIZE_T, UCHAR, ULONG, ULONGLONG,
};

use crate::kernel::{
    APC_LEVEL, DISPATCH_LEVEL, Rule, SPIN_LOCKS, SendPtr, changed, irql, lock, require_irql,
    set_irql, violation, violation_locked,
};

/// A `KEVENT`'s state, kept beside the driver's memory.
pub(crate) struct EventState {
    synchronization: bool,
    signaled: bool,
}

/// One event the driver wrote with `EtwWriteTransfer`.
#[derive(Clone, Debug)]
pub struct EtwEvent {
    /// `EVENT_DESCRIPTOR.Level`.
    pub level: u8,
    /// `EVENT_DESCRIPTOR.Keyword`.
    pub keyword: u64,
    /// Each data descriptor's bytes and type (0 data, 1 event metadata, 2 provider metadata).
    pub data: Vec<(u8, Vec<u8>)>,
}

/// ETW registrations.
#[derive(Default)]
pub(crate) struct EtwState {
    registered: std::collections::BTreeMap<u64, [u8; 16]>,
    next: u64,
    /// A session listens (every level and keyword).
    pub(crate) capturing: bool,
    /// What the driver wrote while a session listened.
    pub(crate) events: Vec<EtwEvent>,
}

thread_local! {
    /// softndk's consumer-lock guards, one per spin lock held.
    static CONSUMER: RefCell<Vec<softndk::consumer_lock::ConsumerLockGuard>> = const { RefCell::new(Vec::new()) };
}

/// Touch the first byte of the driver's object: Miri then sees a use after free or a
/// dangling pointer at the kernel call that made it.
///
/// # Safety
/// `p` is the driver's pointer to the object (possibly dangling, which is the bug to find).
unsafe fn touch(p: *const c_void) {
    // SAFETY: the driver's claim (caller); a dangling pointer is the error Miri reports.
    let _ = unsafe { p.cast::<std::mem::MaybeUninit<u8>>().read_volatile() };
}

// ---------------------------------------------------------------------------------------------
// Pool.

/// `POOL_FLAG_UNINITIALIZED`.
const POOL_FLAG_UNINITIALIZED: u64 = 0x2;
/// `POOL_FLAG_PAGED`.
const POOL_FLAG_PAGED: u64 = 0x100;

/// `ExAllocatePool2`: zeroed unless `POOL_FLAG_UNINITIALIZED`; nonpaged at <= DISPATCH_LEVEL,
/// paged at <= APC_LEVEL. Null on a zero size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExAllocatePool2(flags: POOL_FLAGS, size: SIZE_T, tag: ULONG) -> PVOID {
    let max = if flags & POOL_FLAG_PAGED != 0 {
        APC_LEVEL
    } else {
        DISPATCH_LEVEL
    };
    if !require_irql(max, "ExAllocatePool2") || size == 0 {
        return std::ptr::null_mut();
    }
    let Ok(size) = usize::try_from(size) else {
        return std::ptr::null_mut();
    };
    let Ok(layout) = Layout::from_size_align(size, 16) else {
        return std::ptr::null_mut();
    };
    let p = if flags & POOL_FLAG_UNINITIALIZED != 0 {
        // SAFETY: a layout of non-zero size.
        unsafe { std::alloc::alloc(layout) }
    } else {
        // SAFETY: as above.
        unsafe { std::alloc::alloc_zeroed(layout) }
    };
    if !p.is_null() {
        lock().pool.insert(p.addr(), (SendPtr(p), layout, tag));
    }
    p.cast()
}

/// `ExFreePool`: <= DISPATCH_LEVEL; the block must be live pool.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ExFreePool(p: PVOID) {
    require_irql(DISPATCH_LEVEL, "ExFreePool");
    let mut k = lock();
    match k.pool.remove(&p.addr()) {
        Some((block, layout, _)) => {
            // SAFETY: allocated by ExAllocatePool2 with this layout, freed once (removed).
            unsafe { std::alloc::dealloc(block.0, layout) };
        }
        None => violation_locked(
            &mut k,
            Rule::BadFree,
            format!("ExFreePool({:#x}): not live pool", p.addr()),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// MDLs: softndk's soft MDL, which its adapters accept.

/// `IoAllocateMdl` (no IRP, no secondary buffer): an MDL describing `length` bytes at `va`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn IoAllocateMdl(
    va: PVOID,
    length: ULONG,
    secondary: BOOLEAN,
    _charge_quota: BOOLEAN,
    irp: PIRP,
) -> PMDL {
    require_irql(DISPATCH_LEVEL, "IoAllocateMdl");
    if va.is_null() || length == 0 || secondary != 0 || !irp.is_null() {
        return std::ptr::null_mut();
    }
    let mdl = Box::into_raw(softndk::SoftMdl::new(va.cast(), length));
    lock().mdls.insert(mdl.addr(), SendPtr(mdl));
    mdl.cast()
}

/// `MmBuildMdlForNonPagedPool`: the soft MDL is built as it is made; check it is one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MmBuildMdlForNonPagedPool(mdl: PMDL) {
    require_irql(DISPATCH_LEVEL, "MmBuildMdlForNonPagedPool");
    let mut k = lock();
    if !k.mdls.contains_key(&mdl.addr()) {
        violation_locked(
            &mut k,
            Rule::BadFree,
            format!(
                "MmBuildMdlForNonPagedPool({:#x}): not an MDL of IoAllocateMdl",
                mdl.addr()
            ),
        );
    }
}

/// `IoFreeMdl`: <= DISPATCH_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn IoFreeMdl(mdl: PMDL) {
    require_irql(DISPATCH_LEVEL, "IoFreeMdl");
    let mut k = lock();
    match k.mdls.remove(&mdl.addr()) {
        Some(m) => {
            // SAFETY: made by IoAllocateMdl with Box::into_raw, freed once (removed).
            drop(unsafe { Box::from_raw(m.0) });
        }
        None => violation_locked(
            &mut k,
            Rule::BadFree,
            format!("IoFreeMdl({:#x}): not a live MDL", mdl.addr()),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Spin locks.

// A `KSPIN_LOCK` is a `ULONG_PTR`: the lock word is used as an `AtomicU64`.
const _: () = assert!(size_of::<wdk_sys::KSPIN_LOCK>() == 8);

/// `KeAcquireSpinLockRaiseToDpc`: spin until the lock word is ours, at `DISPATCH_LEVEL`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeAcquireSpinLockRaiseToDpc(spin: PKSPIN_LOCK) -> KIRQL {
    let now = irql();
    if now > DISPATCH_LEVEL {
        violation(
            Rule::IrqlTooHigh,
            format!("KeAcquireSpinLockRaiseToDpc at IRQL {now}"),
        );
    }
    let addr = spin.addr();
    if SPIN_LOCKS.with(|s| s.borrow().contains(&addr)) {
        violation(
            Rule::SpinLockMisuse,
            format!("KeAcquireSpinLockRaiseToDpc({addr:#x}) by its holder: a deadlock"),
        );
        eprintln!("softwdf: a recursive spin lock never returns; aborting");
        std::process::abort();
    }
    // SAFETY: the driver's KSPIN_LOCK (a ULONG_PTR, 8-aligned) in its memory, valid while it
    // uses the lock (the function's contract); every access goes through atomics here.
    let word = unsafe { AtomicU64::from_ptr(spin.cast::<u64>()) };
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    SPIN_LOCKS.with(|s| s.borrow_mut().push(addr));
    CONSUMER.with(|c| c.borrow_mut().push(softndk::consumer_lock::enter()));
    set_irql(now.max(DISPATCH_LEVEL))
}

/// `KeReleaseSpinLock`: by its holder, back to `old`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeReleaseSpinLock(spin: PKSPIN_LOCK, old: KIRQL) {
    let addr = spin.addr();
    let held = SPIN_LOCKS.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter().rposition(|a| *a == addr) {
            Some(i) => {
                s.remove(i);
                true
            }
            None => false,
        }
    });
    if !held {
        violation(
            Rule::SpinLockMisuse,
            format!("KeReleaseSpinLock({addr:#x}) by a thread that does not hold it"),
        );
        return;
    }
    CONSUMER.with(|c| drop(c.borrow_mut().pop()));
    // SAFETY: as in the acquire: the driver's live lock word.
    let word = unsafe { AtomicU64::from_ptr(spin.cast::<u64>()) };
    word.store(0, Ordering::Release);
    set_irql(old);
}

// ---------------------------------------------------------------------------------------------
// Events and waits.

/// `SynchronizationEvent`.
const SYNCHRONIZATION_EVENT: EVENT_TYPE = 1;

/// `KeInitializeEvent`: any IRQL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeInitializeEvent(event: PRKEVENT, kind: EVENT_TYPE, state: BOOLEAN) {
    // SAFETY: the driver's event memory (contract).
    unsafe { touch(event.cast()) };
    lock().events.insert(
        event.addr(),
        EventState {
            synchronization: kind == SYNCHRONIZATION_EVENT,
            signaled: state != 0,
        },
    );
}

/// `KeSetEvent` (`Wait` FALSE): <= DISPATCH_LEVEL. Returns the previous state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeSetEvent(event: PRKEVENT, _increment: i32, wait: BOOLEAN) -> i32 {
    require_irql(DISPATCH_LEVEL, "KeSetEvent");
    if wait != 0 {
        violation(Rule::Unimplemented, "KeSetEvent with Wait = TRUE".into());
    }
    // SAFETY: the driver's event memory (contract).
    unsafe { touch(event.cast()) };
    let mut k = lock();
    let Some(e) = k.events.get_mut(&event.addr()) else {
        violation_locked(
            &mut k,
            Rule::InvalidHandle,
            format!("KeSetEvent({:#x}): not initialised", event.addr()),
        );
        return 0;
    };
    let previous = i32::from(e.signaled);
    e.signaled = true;
    drop(k);
    changed();
    previous
}

/// `STATUS_TIMEOUT`.
const STATUS_TIMEOUT: NTSTATUS = 0x0000_0102;

/// `KeWaitForSingleObject` on an event: a non-zero (or no) timeout needs <= APC_LEVEL and no
/// spin lock held. Relative and absolute timeouts are taken as "wait at most that long".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeWaitForSingleObject(
    object: PVOID,
    _reason: KWAIT_REASON,
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    // SAFETY: null or valid (contract).
    let limit = unsafe { timeout.as_ref() }.map(|t| {
        // SAFETY: a LARGE_INTEGER's QuadPart is its whole value.
        let q = unsafe { t.QuadPart };
        std::time::Duration::from_nanos(q.unsigned_abs().saturating_mul(100))
    });
    let zero = limit.is_some_and(|d| d.is_zero());
    if !zero && !crate::kernel::may_wait(APC_LEVEL, "KeWaitForSingleObject (waiting)") {
        return STATUS_TIMEOUT;
    }
    // SAFETY: the driver's event memory (contract).
    unsafe { touch(object) };
    let deadline = limit.map(|d| Instant::now() + d);
    let mut k = lock();
    loop {
        let Some(e) = k.events.get_mut(&object.addr()) else {
            violation_locked(
                &mut k,
                Rule::InvalidHandle,
                format!(
                    "KeWaitForSingleObject({:#x}): not an initialised event",
                    object.addr()
                ),
            );
            return STATUS_TIMEOUT;
        };
        if e.signaled {
            if e.synchronization {
                e.signaled = false;
            }
            return 0;
        }
        match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return STATUS_TIMEOUT;
                }
                k = k.wait_timeout(d - now);
            }
            None => k = k.wait(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time and processors.

static BOOT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// `KeQueryUnbiasedInterruptTime`: 100 ns units since the first call.
#[unsafe(no_mangle)]
pub extern "C" fn KeQueryUnbiasedInterruptTime() -> ULONGLONG {
    let boot = *BOOT.get_or_init(Instant::now);
    u64::try_from(boot.elapsed().as_nanos() / 100).unwrap_or(u64::MAX)
}

/// `KeGetCurrentProcessorNumberEx`: two processors; each thread on one of them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn KeGetCurrentProcessorNumberEx(number: PPROCESSOR_NUMBER) -> ULONG {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    let n = u8::try_from(h.finish() % 2).unwrap_or(0);
    // SAFETY: null or valid for writes (contract).
    if let Some(p) = unsafe { number.as_mut() } {
        p.Group = 0;
        p.Number = n;
        p.Reserved = 0;
    }
    ULONG::from(n)
}

// ---------------------------------------------------------------------------------------------
// ETW.

/// `EtwRegister`: PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn EtwRegister(
    guid: LPCGUID,
    _callback: PETWENABLECALLBACK,
    _context: PVOID,
    handle: PREGHANDLE,
) -> NTSTATUS {
    require_irql(crate::kernel::PASSIVE_LEVEL, "EtwRegister");
    // SAFETY: the driver's GUID (contract).
    let Some(g) = (unsafe { guid.as_ref() }) else {
        return crate::objects::STATUS_INVALID_PARAMETER;
    };
    let bytes = crate::kernel::guid_bytes(g);
    let mut k = lock();
    k.etw.next += 1;
    let h = k.etw.next;
    k.etw.registered.insert(h, bytes);
    // SAFETY: valid for writes (contract).
    unsafe { handle.write(h) };
    0
}

/// `EtwSetInformation`: accepted for a registered handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn EtwSetInformation(
    handle: REGHANDLE,
    _class: i32,
    _info: *mut c_void,
    _len: u32,
) -> NTSTATUS {
    if lock().etw.registered.contains_key(&handle) {
        0
    } else {
        violation(
            Rule::Registration,
            format!("EtwSetInformation({handle}): not registered"),
        );
        crate::objects::STATUS_INVALID_PARAMETER
    }
}

/// `EtwUnregister`: PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn EtwUnregister(handle: REGHANDLE) -> NTSTATUS {
    require_irql(crate::kernel::PASSIVE_LEVEL, "EtwUnregister");
    let mut k = lock();
    if k.etw.registered.remove(&handle).is_none() {
        violation_locked(
            &mut k,
            Rule::Registration,
            format!("EtwUnregister({handle}): not registered"),
        );
    }
    0
}

/// `EtwProviderEnabled`: whether a session listens (softwdf's capture takes everything).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn EtwProviderEnabled(
    handle: REGHANDLE,
    _level: UCHAR,
    _keyword: ULONGLONG,
) -> BOOLEAN {
    let k = lock();
    BOOLEAN::from(k.etw.capturing && k.etw.registered.contains_key(&handle))
}

/// `EtwWriteTransfer`: the data descriptors' bytes are copied, as ETW does.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn EtwWriteTransfer(
    handle: REGHANDLE,
    descriptor: PCEVENT_DESCRIPTOR,
    _activity: LPCGUID,
    _related: LPCGUID,
    count: ULONG,
    data: PEVENT_DATA_DESCRIPTOR,
) -> NTSTATUS {
    // SAFETY: the driver's descriptor (contract).
    let Some(d) = (unsafe { descriptor.as_ref() }) else {
        return crate::objects::STATUS_INVALID_PARAMETER;
    };
    let d: &EVENT_DESCRIPTOR = d;
    let mut parts = Vec::new();
    for i in 0..count as usize {
        // SAFETY: `count` descriptors at `data` (contract): descriptor `i` is in bounds.
        let at = unsafe { data.add(i) };
        // SAFETY: a readable descriptor (contract).
        let dd: &EVENT_DATA_DESCRIPTOR = unsafe { &*at };
        // A descriptor is 16 bytes: Ptr (8), Size (4), then the type byte (header versions
        // name that union member differently).
        let kind = descriptor_type(at);
        let len = dd.Size as usize;
        let p = std::ptr::with_exposed_provenance::<u8>(usize::try_from(dd.Ptr).unwrap_or(0));
        let bytes = if len == 0 || p.is_null() {
            Vec::new()
        } else {
            // SAFETY: `Size` readable bytes at `Ptr`, live across the call (contract).
            unsafe { std::slice::from_raw_parts(p, len) }.to_vec()
        };
        parts.push((kind, bytes));
    }
    let mut k = lock();
    if !k.etw.registered.contains_key(&handle) {
        violation_locked(
            &mut k,
            Rule::Registration,
            format!("EtwWriteTransfer({handle}): not registered"),
        );
        return crate::objects::STATUS_INVALID_PARAMETER;
    }
    if k.etw.capturing {
        k.etw.events.push(EtwEvent {
            level: d.Level,
            keyword: d.Keyword,
            data: parts,
        });
    }
    0
}

/// The type byte of a data descriptor (offset 12: after `Ptr` and `Size`).
fn descriptor_type(d: *const EVENT_DATA_DESCRIPTOR) -> u8 {
    // SAFETY: a readable 16-byte descriptor (the caller's, from `EtwWriteTransfer`'s
    // contract), read as its bytes (any alignment: unaligned read).
    let bytes = unsafe { d.cast::<[u8; 16]>().read_unaligned() };
    bytes[12]
}

/// Pool, MDLs and ETW registrations left when the driver unloaded.
pub(crate) fn leak_check_at_unload() {
    let mut k = lock();
    let pool: Vec<(usize, u32)> = k.pool.iter().map(|(a, (_, _, tag))| (*a, *tag)).collect();
    for (a, tag) in pool {
        let tag = String::from_utf8_lossy(&tag.to_le_bytes()).into_owned();
        violation_locked(
            &mut k,
            Rule::MemoryLeaked,
            format!("pool block {a:#x} (tag {tag}) never freed"),
        );
    }
    for (_, (p, layout, _)) in std::mem::take(&mut k.pool) {
        // SAFETY: allocated by ExAllocatePool2 with this layout, freed once (taken).
        unsafe { std::alloc::dealloc(p.0, layout) };
    }
    let mdls = std::mem::take(&mut k.mdls);
    for (a, m) in mdls {
        violation_locked(
            &mut k,
            Rule::MemoryLeaked,
            format!("MDL {a:#x} never freed"),
        );
        // SAFETY: made by IoAllocateMdl with Box::into_raw, freed once (taken).
        drop(unsafe { Box::from_raw(m.0) });
    }
    let etw: Vec<u64> = k.etw.registered.keys().copied().collect();
    for h in etw {
        violation_locked(
            &mut k,
            Rule::Registration,
            format!("ETW provider {h} still registered at unload"),
        );
    }
    k.etw.registered.clear();
    k.events.clear();
}
