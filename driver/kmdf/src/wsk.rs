//! The driver's one WSK client registration, and the NDK extension it yields.
//!
//! `DriverEntry` registers and captures the WSK provider before `WdfDriverCreate` ([`load`]),
//! so a failure can be undone there; `EvtDriverUnload` releases it ([`unload`]), which WDF
//! calls only after every device — and so every file handle, whose cleanup closed all of its
//! NDK objects — is gone. In between, each new device takes the NDK extension
//! ([`ndk_extension`]) for its platform. A system without NDK (or whose WSK could not be
//! reached) still loads the driver: its devices get an unavailable extension that says why,
//! `GET_INFO` reports that status, and every operation that needs an adapter fails.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::{null, null_mut};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use ndkpi_sys::{
    MAKE_WSK_VERSION, NtStatus, WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_PROVIDER_NDK_DISPATCH,
    WSK_PROVIDER_NPI, WSK_REGISTRATION, WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH,
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI,
};

/// How long `DriverEntry` waits for the WSK subsystem (milliseconds). The driver is
/// demand-start, so the network stack is normally up already.
const WSK_CAPTURE_WAIT_MS: u32 = 10_000;

/// WSK client dispatch: WSK 1.0, no event callback.
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

/// The registration and what it captured. WSK requires the registration to stay at one
/// address until `WskDeregister` returns: a static.
struct WskState {
    client: UnsafeCell<WSK_CLIENT_NPI>,
    registration: UnsafeCell<WSK_REGISTRATION>,
    provider: UnsafeCell<WSK_PROVIDER_NPI>,
    ndk: UnsafeCell<WSK_PROVIDER_NDK_DISPATCH>,
}

// SAFETY: written only in DriverEntry (before WDF can call anything else of this driver) and
// in unload (after every device is gone); read-only in between.
unsafe impl Sync for WskState {}

static WSK: WskState = WskState {
    client: UnsafeCell::new(WSK_CLIENT_NPI {
        ClientContext: null_mut(),
        Dispatch: &raw const CLIENT_DISPATCH,
    }),
    registration: UnsafeCell::new(WSK_REGISTRATION {
        ReservedRegistrationState: 0,
        ReservedRegistrationContext: null_mut(),
        ReservedRegistrationLock: 0,
    }),
    provider: UnsafeCell::new(WSK_PROVIDER_NPI {
        Client: null_mut(),
        Dispatch: null(),
    }),
    ndk: UnsafeCell::new(WSK_PROVIDER_NDK_DISPATCH {
        WskOpenNdkAdapter: None,
        WskCloseNdkAdapter: None,
    }),
};

/// [`register`] succeeded: WSK is registered and captured, and the NDK dispatch fetched.
/// Written by [`load`] and [`unload`] only.
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// What [`register`] returned (an NTSTATUS), for devices created without NDK to report.
static STATUS: AtomicI32 = AtomicI32::new(0);

/// Register with WSK and obtain the NDK extension, recording the outcome; the driver loads
/// either way. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called from `DriverEntry` only, before the WDF driver exists.
pub(crate) unsafe fn load() {
    // SAFETY: per this function's contract.
    let status = unsafe { register() };
    STATUS.store(status.0, Ordering::Release);
    REGISTERED.store(status == NtStatus::SUCCESS, Ordering::Release);
}

/// Undo [`load`]: release the provider and deregister, if it registered.
/// `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Nothing uses WSK any more: no device exists (unload, or `WdfDriverCreate` failed).
pub(crate) unsafe fn unload() {
    if REGISTERED.swap(false, Ordering::AcqRel) {
        // SAFETY: registered and captured by `load`; nothing uses them (caller).
        unsafe { release() };
    }
}

/// The WSK NDK extension (the captured provider and its NDK dispatch) for a new device's
/// platform, or, if [`load`] could not obtain it, an unavailable one that says why.
///
/// # Safety
/// [`load`] ran and [`unload`] has not begun (true inside any device callback).
pub(crate) unsafe fn ndk_extension() -> ndkpi::Wsk {
    if !REGISTERED.load(Ordering::Acquire) {
        return ndkpi::Wsk::unavailable(NtStatus(STATUS.load(Ordering::Acquire)));
    }
    // SAFETY: written by DriverEntry before the driver object existed; read-only now.
    let ndk = unsafe { *WSK.ndk.get() };
    // SAFETY: as above.
    let client = unsafe { (*WSK.provider.get()).Client };
    // SAFETY: captured by DriverEntry and released only in unload, after every device (and
    // so every Wsk and every adapter opened through it) is gone.
    unsafe { ndkpi::Wsk::new(ndk, client) }
}

/// Register, capture the provider, and fetch the NDK dispatch; on failure nothing stays
/// registered. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called from [`load`] only.
unsafe fn register() -> NtStatus {
    // SAFETY: static NPI and registration that stay put until WskDeregister; PASSIVE_LEVEL.
    let status = unsafe { WskRegister(WSK.client.get(), WSK.registration.get()) };
    if status != NtStatus::SUCCESS {
        return status;
    }
    // SAFETY: a registration made above; a bounded wait at PASSIVE_LEVEL; static out-NPI.
    let status = unsafe {
        WskCaptureProviderNPI(
            WSK.registration.get(),
            WSK_CAPTURE_WAIT_MS,
            WSK.provider.get(),
        )
    };
    if status != NtStatus::SUCCESS {
        // SAFETY: registered above, nothing captured.
        unsafe { WskDeregister(WSK.registration.get()) };
        return status;
    }
    // SAFETY: filled by the successful capture above.
    let provider = unsafe { *WSK.provider.get() };
    // SAFETY: a captured provider's dispatch table is valid until it is released.
    let control = unsafe { provider.Dispatch.as_ref() }.and_then(|d| d.WskControlClient);
    let status = match control {
        None => NtStatus::NOT_SUPPORTED,
        // SAFETY: the captured client; a synchronous control (no IRP) whose output is the
        // static NDK dispatch, of exactly the size that WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH
        // writes (a WSK_PROVIDER_NDK_DISPATCH).
        Some(control) => unsafe {
            control(
                provider.Client,
                WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH,
                0,
                null_mut(),
                size_of::<WSK_PROVIDER_NDK_DISPATCH>(),
                WSK.ndk.get().cast(),
                null_mut(),
                null_mut(),
            )
        },
    };
    if status != NtStatus::SUCCESS {
        // SAFETY: captured and registered above; nothing else uses them.
        unsafe { release() };
    }
    status
}

/// Release the provider and deregister. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// [`register`] succeeded up to the capture, and nothing uses WSK any more.
unsafe fn release() {
    // SAFETY: a captured provider NPI (caller); <= DISPATCH_LEVEL.
    unsafe { WskReleaseProviderNPI(WSK.registration.get()) };
    // SAFETY: a registration with no capture left; PASSIVE_LEVEL; blocks until WSK lets go.
    unsafe { WskDeregister(WSK.registration.get()) };
}
