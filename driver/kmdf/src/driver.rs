//! `DriverEntry` and unload: the WSK registration (`wsk`) around the WDF driver object, whose
//! `EvtDriverDeviceAdd` is the device module's.
//!
//! WSK is registered and its provider captured before `WdfDriverCreate`, so a failure can be
//! undone here, and released in `EvtDriverUnload`, which WDF calls only after every device —
//! and so every file handle, whose cleanup closed all of its NDK objects — is gone. Without the
//! WSK NDK extension the driver still loads (no Code 37): `GET_INFO` says why NDK is missing.

use wdk::nt_success;
use wdk_sys::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, WDF_DRIVER_CONFIG, WDF_NO_HANDLE,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::device::evt_device_add;
use crate::wdf::wdf_size;
use crate::{etw, wsk};

/// `DriverEntry`: register with WSK and get its NDK extension (recording why not, if not),
/// create the WDF driver. `// IRQL: PASSIVE_LEVEL`.
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
    unsafe { etw::register() };
    // SAFETY: as above.
    unsafe { wsk::load() };
    let mut config = WDF_DRIVER_CONFIG {
        Size: wdf_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: Some(evt_device_add),
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
        // SAFETY: no device exists: nothing uses WSK or traces.
        unsafe { wsk::unload() };
        // SAFETY: as above.
        unsafe { etw::unregister() };
    }
    status
}

/// `EvtDriverUnload`: every device is gone, so no NDK object of this driver is open; release
/// the provider and deregister (which waits for WSK to let go). `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    // SAFETY: DriverEntry succeeded (WDF calls unload only then), no device exists.
    unsafe { wsk::unload() };
    // SAFETY: as above: no engine is left to trace.
    unsafe { etw::unregister() };
}
