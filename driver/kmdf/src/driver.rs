//! `DriverEntry`, the driver's one WSK client registration, and unload.
//!
//! WSK is registered and its provider captured before `WdfDriverCreate`, so a failure can be
//! undone here, and released in `EvtDriverUnload`, which WDF calls only after every device —
//! and so every file handle, whose cleanup closed all of its NDK objects — is gone.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::{null, null_mut};

use ndkpi_sys::{
    MAKE_WSK_VERSION, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI,
    WSK_PROVIDER_NDK_DISPATCH, WSK_PROVIDER_NPI, WSK_REGISTRATION,
    WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH, WskCaptureProviderNPI, WskDeregister, WskRegister,
    WskReleaseProviderNPI,
};
use wdk::nt_success;
use wdk_sys::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, WDF_DRIVER_CONFIG, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::wdf::wdf_size;

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

/// `DriverEntry`: register with WSK, get its NDK extension, create the WDF driver.
/// `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called once by KMDF's `FxDriverEntry` with the I/O manager's arguments.
// SAFETY: the only symbol of this image named DriverEntry, the name FxDriverEntry calls.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: PASSIVE_LEVEL, before any other code of this driver runs.
    let status = unsafe { wsk_start() };
    if !nt_success(status) {
        return status;
    }
    let mut config = WDF_DRIVER_CONFIG {
        Size: wdf_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: Some(crate::device::evt_device_add),
        EvtDriverUnload: Some(evt_driver_unload),
        ..WDF_DRIVER_CONFIG::default()
    };
    let status: NTSTATUS;
    // SAFETY: the I/O manager's driver object and registry path; WDF copies the config. No
    // attributes, and no driver handle wanted (WDF_NO_HANDLE).
    unsafe {
        status = call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>()
        );
    }
    if !nt_success(status) {
        // SAFETY: registered above, no device exists, nothing uses WSK.
        unsafe { wsk_stop() };
    }
    status
}

/// `EvtDriverUnload`: every device is gone, so no NDK object of this driver is open; release
/// the provider and deregister (which waits for WSK to let go). `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    // SAFETY: DriverEntry succeeded (WDF calls unload only then), no device exists.
    unsafe { wsk_stop() };
}

/// The WSK NDK extension for a new device's platform.
///
/// # Safety
/// `DriverEntry` succeeded and unload has not begun (true inside any device callback).
pub(crate) unsafe fn wsk() -> ndkpi::Wsk {
    // SAFETY: written by DriverEntry before the driver object existed; read-only now.
    let ndk = unsafe { *WSK.ndk.get() };
    // SAFETY: as above.
    let client = unsafe { (*WSK.provider.get()).Client };
    // SAFETY: captured by DriverEntry and released only in unload, after every device (and
    // so every Wsk and every adapter opened through it) is gone.
    unsafe { ndkpi::Wsk::new(ndk, client) }
}

/// Register, capture the provider, and fetch the NDK dispatch. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called from `DriverEntry` only, before the WDF driver exists.
unsafe fn wsk_start() -> NTSTATUS {
    // SAFETY: static NPI and registration that stay put until WskDeregister; PASSIVE_LEVEL.
    let status = unsafe { WskRegister(WSK.client.get(), WSK.registration.get()) };
    if status != STATUS_SUCCESS {
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
    if status != STATUS_SUCCESS {
        // SAFETY: registered above, nothing captured.
        unsafe { WskDeregister(WSK.registration.get()) };
        return status;
    }
    // SAFETY: filled by the successful capture above.
    let provider = unsafe { *WSK.provider.get() };
    // SAFETY: a captured provider's dispatch table is valid until it is released.
    let control = unsafe { provider.Dispatch.as_ref() }.and_then(|d| d.WskControlClient);
    let status = match control {
        None => STATUS_NOT_SUPPORTED,
        // SAFETY: the captured client; a synchronous control (no IRP) whose output is the
        // static NDK dispatch of exactly its size (fact sheet §10.3).
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
    if status != STATUS_SUCCESS {
        // SAFETY: captured and registered above; nothing else uses them.
        unsafe { wsk_stop() };
    }
    status
}

/// Release the provider and deregister. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// [`wsk_start`] succeeded up to the capture, and nothing uses WSK any more.
unsafe fn wsk_stop() {
    // SAFETY: a captured provider NPI (caller); <= DISPATCH_LEVEL.
    unsafe { WskReleaseProviderNPI(WSK.registration.get()) };
    // SAFETY: a registration with no capture left; PASSIVE_LEVEL; blocks until WSK lets go.
    unsafe { WskDeregister(WSK.registration.get()) };
}
