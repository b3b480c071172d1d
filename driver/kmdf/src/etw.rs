//! The driver's ETW provider, `NdkDisc` (`ndkdisc_core::etw`): the engine's trace written as
//! `TraceLogging` events with `EtwWriteTransfer`. Registered in `DriverEntry` before the WDF
//! driver exists and unregistered in unload (or when `DriverEntry` fails), after every device
//! — and so every engine that traces — is gone. Failing to register only loses the trace.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::{null, null_mut};
use core::sync::atomic::{AtomicU64, Ordering};

use ndkdisc_core::etw;
use ndkdisc_core::ports::Trace;
use wdk::nt_success;
use wdk_sys::ntddk::{EtwProviderEnabled, EtwRegister, EtwUnregister, EtwWriteTransfer};
use wdk_sys::{EVENT_DATA_DESCRIPTOR, EVENT_DESCRIPTOR, GUID, NTSTATUS, REGHANDLE};

/// `EVENT_INFO_CLASS::EventProviderSetTraits`.
const EVENT_PROVIDER_SET_TRAITS: i32 = 2;

// `EtwSetInformation` (wdm.h, Windows 10 and later; exported by ntoskrnl, which wdk-build
// links), declared here because some header sets the bindings are generated from lack it.
unsafe extern "system" {
    fn EtwSetInformation(
        handle: REGHANDLE,
        information_class: i32,
        information: *mut c_void,
        length: u32,
    ) -> NTSTATUS;
}

/// The registration handle; 0 while not registered.
static HANDLE: AtomicU64 = AtomicU64::new(0);

/// [`etw::PROVIDER_GUID`].
static PROVIDER: GUID = GUID {
    Data1: etw::PROVIDER_GUID.data1,
    Data2: etw::PROVIDER_GUID.data2,
    Data3: etw::PROVIDER_GUID.data3,
    Data4: etw::PROVIDER_GUID.data4,
};

/// An `EVENT_DATA_DESCRIPTOR` as `evntprov.h` lays it out: `Ptr`, `Size`, then a union of
/// `Reserved` with `{ Type, Reserved1, Reserved2 }`. Declared here because header versions
/// spell that union differently (some have `Reserved` only), while the layout is fixed.
#[repr(C)]
struct DataDescriptor {
    ptr: u64,
    size: u32,
    /// 0: event data; 1: `TraceLogging` event metadata; 2: provider metadata.
    kind: u8,
    reserved1: u8,
    reserved2: u16,
}

const _: () = assert!(size_of::<DataDescriptor>() == size_of::<EVENT_DATA_DESCRIPTOR>());
const _: () = assert!(size_of::<DataDescriptor>() == 16);

impl DataDescriptor {
    fn new(bytes: &[u8], kind: u8) -> Self {
        Self {
            ptr: bytes.as_ptr() as u64,
            size: u32::try_from(bytes.len()).unwrap_or(0),
            kind,
            reserved1: 0,
            reserved2: 0,
        }
    }
}

/// Register the provider and its traits (its name: without traits ETW ignores the data
/// descriptors' types, and the `TraceLogging` metadata would be read as payload).
/// `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called from `DriverEntry` only, before the WDF driver exists.
pub(crate) unsafe fn register() {
    let mut handle: REGHANDLE = 0;
    // SAFETY: PASSIVE_LEVEL; a static GUID; no enable callback; a valid out-pointer.
    let status = unsafe { EtwRegister(&raw const PROVIDER, None, null_mut(), &raw mut handle) };
    if !nt_success(status) {
        return;
    }
    let traits = etw::PROVIDER_METADATA;
    // SAFETY: the handle just registered; PASSIVE_LEVEL; the traits blob is a static that ETW
    // only reads (the pointer is mutable in the signature alone), with its exact length.
    let status = unsafe {
        EtwSetInformation(
            handle,
            EVENT_PROVIDER_SET_TRAITS,
            traits.as_ptr().cast_mut().cast::<c_void>(),
            u32::try_from(traits.len()).unwrap_or(0),
        )
    };
    if nt_success(status) {
        HANDLE.store(handle, Ordering::Release);
    } else {
        // Events without traits would not decode: no provider rather than an unreadable one.
        // SAFETY: registered above, nothing wrote to it; PASSIVE_LEVEL.
        let _ = unsafe { EtwUnregister(handle) };
    }
}

/// Unregister the provider, if registered. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Nothing traces any more: no device exists (unload, or `WdfDriverCreate` failed).
pub(crate) unsafe fn unregister() {
    let handle = HANDLE.swap(0, Ordering::AcqRel);
    if handle != 0 {
        // SAFETY: a handle EtwRegister returned, unregistered once (swapped out above);
        // PASSIVE_LEVEL; no write is in flight (caller).
        let _ = unsafe { EtwUnregister(handle) };
    }
}

/// Write `trace`, if a session listens for its level and keyword. `// IRQL: <= DISPATCH_LEVEL`;
/// never allocates (the event is encoded on the stack).
pub(crate) fn write(trace: &Trace) {
    let handle = HANDLE.load(Ordering::Acquire);
    if handle == 0 {
        return;
    }
    let (level, keyword) = etw::level_and_keyword(trace);
    // SAFETY: a registered handle (not unregistered while devices exist); any IRQL.
    if unsafe { EtwProviderEnabled(handle, level, keyword) } == 0 {
        return;
    }
    let event = etw::event(trace);
    if !event.is_complete() {
        return;
    }
    let descriptor = EVENT_DESCRIPTOR {
        Id: 0,
        Version: 0,
        Channel: etw::CHANNEL_TRACELOGGING,
        Level: event.level,
        Opcode: 0,
        Task: 0,
        Keyword: event.keyword,
    };
    let data = [
        DataDescriptor::new(etw::PROVIDER_METADATA, 2),
        DataDescriptor::new(event.metadata(), 1),
        DataDescriptor::new(event.payload(), 0),
    ];
    // SAFETY: a registered handle; the descriptors and the bytes they point at (a static, and
    // `event` on this nonpaged kernel stack) live across the call, which copies them; the
    // array has the layout of EVENT_DATA_DESCRIPTOR[3] (asserted above); ETW reads it only.
    // Callable at <= HIGH_LEVEL with nonpaged data.
    let _ = unsafe {
        EtwWriteTransfer(
            handle,
            &raw const descriptor,
            null(),
            null(),
            3,
            data.as_ptr().cast::<EVENT_DATA_DESCRIPTOR>().cast_mut(),
        )
    };
}
