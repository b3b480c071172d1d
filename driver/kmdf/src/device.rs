//! The root-enumerated device: its creation (name, SDDL, symbolic link, interface, default
//! queue, work item, engine) and every callback WDF makes on it. Each callback is a short
//! trampoline: it recovers its context (the device's engine and platform, the file object's
//! core `Owner`), hands the event to ndkdisc-core, and completes or hands on its request
//! through the request wrapper (`crate::request`).

use core::mem::MaybeUninit;
use core::ptr::{null, null_mut};

use ndkdisc_abi::device::{DEVICE_INTERFACE_GUID, SYMBOLIC_LINK_KERNEL_NAME};
use ndkdisc_core::kalloc::Arc;
use ndkdisc_core::{Access, Config, Engine, Owner};
use ndkpi_sys::NtStatus;
use wdk::nt_success;
use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, GUID, NTSTATUS, PWDFDEVICE_INIT, ULONG,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_PNPPOWER_EVENT_CALLBACKS, WDF_WORKITEM_CONFIG,
    WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDFWORKITEM,
    call_unsafe_wdf_function_binding,
};

use crate::platform::KmPlatform;
use crate::request::{INPUT_COPY, Request, RequestRef};
use crate::wdf::{context_type, plain_attributes, unicode, utf16, wdf_size};
use crate::wsk;

/// Device security: generic-all for SYSTEM and built-in Administrators, nobody else
/// (`SDDL_DEVOBJ_SYS_ALL_ADM_ALL`). The INF sets the same on the device stack.
const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";
static SDDL_UTF16: [u16; SDDL.len()] = utf16(SDDL);
/// The device object's name, the target of the symbolic link.
const DEVICE_NAME: &str = "\\Device\\NdkDisc";
static DEVICE_NAME_UTF16: [u16; DEVICE_NAME.len()] = utf16(DEVICE_NAME);
static LINK_UTF16: [u16; SYMBOLIC_LINK_KERNEL_NAME.len()] = utf16(SYMBOLIC_LINK_KERNEL_NAME);
/// `GUID_DEVINTERFACE_NDKDISC`, shared with the client through ndkdisc-abi.
static INTERFACE_GUID: GUID = GUID {
    Data1: DEVICE_INTERFACE_GUID.data1,
    Data2: DEVICE_INTERFACE_GUID.data2,
    Data3: DEVICE_INTERFACE_GUID.data3,
    Data4: DEVICE_INTERFACE_GUID.data4,
};

/// What a device holds: the engine and its platform.
struct DeviceState {
    engine: Engine<KmPlatform>,
    platform: Arc<KmPlatform>,
}

/// The device's context. WDF zeroes it: `live == false` means `state` is not written yet.
struct DeviceContext {
    state: MaybeUninit<DeviceState>,
    live: bool,
}
context_type!(DEVICE_CONTEXT, DeviceContext, c"NdkDiscDevice");

/// A file object's context: the core owner of the handle, from create to close.
struct FileContext {
    owner: MaybeUninit<Owner<KmPlatform>>,
    live: bool,
}
context_type!(FILE_CONTEXT, FileContext, c"NdkDiscFile");

/// The state of a device whose context was written by [`evt_device_add`].
///
/// # Safety
/// `device` is a live device of this driver.
unsafe fn device_state<'a>(device: WDFOBJECT) -> Option<&'a DeviceState> {
    // SAFETY: a live device created with DEVICE_CONTEXT (caller).
    let ctx = unsafe { DEVICE_CONTEXT.get::<DeviceContext>(device) };
    // SAFETY: the context lives as long as the device; `live` is written once, before any
    // callback that reads it can run, and cleared only in the destroy callback.
    let ctx = unsafe { ctx.as_ref() }?;
    // SAFETY: `live` means `state` was written (device add) and not yet dropped (destroy).
    ctx.live.then(|| unsafe { ctx.state.assume_init_ref() })
}

/// The owner of a file object between create and close.
///
/// # Safety
/// `file` is a live file object of this driver's device.
unsafe fn owner<'a>(file: WDFFILEOBJECT) -> Option<&'a Owner<KmPlatform>> {
    // SAFETY: a live file object created with FILE_CONTEXT (caller).
    let ctx = unsafe { FILE_CONTEXT.get::<FileContext>(file.cast()) };
    // SAFETY: the context lives as long as the file object.
    let ctx = unsafe { ctx.as_ref() }?;
    // SAFETY: `live` means `owner` was written (create) and not yet dropped (close).
    ctx.live.then(|| unsafe { ctx.owner.assume_init_ref() })
}

/// `EvtDriverDeviceAdd`: create the device for `Root\NdkDisc`. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// Called by WDF with a valid `init` that this function owns until `WdfDeviceCreate`.
pub(crate) unsafe extern "C" fn evt_device_add(
    _driver: WDFDRIVER,
    mut init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    let mut files = WDF_FILEOBJECT_CONFIG {
        Size: wdf_size::<WDF_FILEOBJECT_CONFIG>(),
        EvtDeviceFileCreate: Some(evt_file_create),
        EvtFileClose: Some(evt_file_close),
        EvtFileCleanup: Some(evt_file_cleanup),
        AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
        FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
    };
    let mut file_attributes = FILE_CONTEXT.attributes();
    // SAFETY: `init` is valid before WdfDeviceCreate; WDF copies both structures.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            init,
            &raw mut files,
            &raw mut file_attributes
        );
    }
    let mut pnp = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: wdf_size::<WDF_PNPPOWER_EVENT_CALLBACKS>(),
        EvtDeviceSelfManagedIoCleanup: Some(evt_self_managed_io_cleanup),
        ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
    };
    // SAFETY: as above.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            init,
            &raw mut pnp
        );
    }
    // The symbolic link needs a named device; the SDDL protects that name.
    let name = unicode(&DEVICE_NAME_UTF16);
    let status: NTSTATUS;
    // SAFETY: as above; WDF copies the string.
    unsafe {
        status = call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, init, &raw const name);
    }
    if !nt_success(status) {
        return status;
    }
    let sddl = unicode(&SDDL_UTF16);
    let status: NTSTATUS;
    // SAFETY: as above.
    unsafe {
        status =
            call_unsafe_wdf_function_binding!(WdfDeviceInitAssignSDDLString, init, &raw const sddl);
    }
    if !nt_success(status) {
        return status;
    }

    let mut attributes = DEVICE_CONTEXT.attributes();
    attributes.EvtDestroyCallback = Some(evt_device_destroy);
    let mut device: WDFDEVICE = null_mut();
    let status: NTSTATUS;
    // SAFETY: `init` is consumed here (WDF frees it, also on failure of a PnP device add).
    unsafe {
        status = call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut init,
            &raw mut attributes,
            &raw mut device
        );
    }
    if !nt_success(status) {
        return status;
    }
    // SAFETY: `device` was just created; from here on, a failure status makes WDF delete it
    // (and run evt_device_destroy).
    unsafe { finish_device(device) }
}

/// The rest of device add, on a created device. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// `device` is the device just created by [`evt_device_add`], with no callbacks running yet.
unsafe fn finish_device(device: WDFDEVICE) -> NTSTATUS {
    let mut work_config = WDF_WORKITEM_CONFIG {
        Size: wdf_size::<WDF_WORKITEM_CONFIG>(),
        EvtWorkItemFunc: Some(evt_deferred_work),
        AutomaticSerialization: 0,
    };
    let mut work_attributes = plain_attributes();
    work_attributes.ParentObject = device.cast();
    let mut work_item: WDFWORKITEM = null_mut();
    let status: NTSTATUS;
    // SAFETY: a live device as parent; WDF copies the structures. PASSIVE_LEVEL.
    unsafe {
        status = call_unsafe_wdf_function_binding!(
            WdfWorkItemCreate,
            &raw mut work_config,
            &raw mut work_attributes,
            &raw mut work_item
        );
    }
    if !nt_success(status) {
        return status;
    }
    // SAFETY: DriverEntry ran `load` before creating the driver object, and `unload` runs
    // only after every device is gone.
    let wsk = unsafe { wsk::ndk_extension() };
    // On failure the device (with its work item, a child) is deleted by WDF.
    let Ok(platform) = Arc::try_new(KmPlatform::new(wsk, work_item)) else {
        return NtStatus::INSUFFICIENT_RESOURCES.0;
    };
    let engine = match Engine::new(Arc::clone(&platform), Config::default()) {
        Ok(engine) => engine,
        Err(status) => return status.0,
    };
    // SAFETY: a live device with DEVICE_CONTEXT.
    let ctx = unsafe { DEVICE_CONTEXT.get::<DeviceContext>(device.cast()) };
    // SAFETY: WDF allocated the context with the device; nothing else runs on this device yet
    // (no queue, no link, no interface), so this write is unobserved.
    let Some(ctx) = (unsafe { ctx.as_mut() }) else {
        return NtStatus::INVALID_DEVICE_STATE.0;
    };
    ctx.state.write(DeviceState { engine, platform });
    ctx.live = true;

    let mut queue_config = WDF_IO_QUEUE_CONFIG {
        Size: wdf_size::<WDF_IO_QUEUE_CONFIG>(),
        // A software device: dispatch whatever its power state.
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 1,
        // Pended requests (WAIT, CONNECT) must not hold up the next IOCTL.
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDeviceControl: Some(evt_io_device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    // WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE's value for a parallel queue: no limit.
    queue_config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    let mut queue_attributes = plain_attributes();
    // The core's dispatch runs at PASSIVE_LEVEL (it opens adapters and waits for NDK steps).
    queue_attributes.ExecutionLevel = _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    queue_attributes.SynchronizationScope = _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeNone;
    let mut queue: WDFQUEUE = null_mut();
    let status: NTSTATUS;
    // SAFETY: a live device; WDF copies the structures. PASSIVE_LEVEL.
    unsafe {
        status = call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            &raw mut queue_attributes,
            &raw mut queue
        );
    }
    if !nt_success(status) {
        return status;
    }
    let link = unicode(&LINK_UTF16);
    let status: NTSTATUS;
    // SAFETY: a live, named device; WDF copies the string. PASSIVE_LEVEL.
    unsafe {
        status =
            call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link);
    }
    if !nt_success(status) {
        return status;
    }
    // SAFETY: a live device; the GUID is a static; no reference string. PASSIVE_LEVEL.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const INTERFACE_GUID,
            null()
        )
    }
}

/// `EvtDeviceSelfManagedIoCleanup`: the device is being removed (every handle is closed). Let
/// the engine finish what NDK callbacks still owe it (a closed listener's adapter), then stop
/// deferring and wait for the work item, while it still exists. `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_self_managed_io_cleanup(device: WDFDEVICE) {
    // SAFETY: WDF passes a live device of this driver.
    if let Some(state) = unsafe { device_state(device.cast()) } {
        state.engine.quiesce();
        state.platform.stop_deferring();
    }
}

/// `EvtDestroyCallback` of the device: every child (file objects, queue, work item) is gone,
/// so nothing uses the engine any more. `// IRQL: <= DISPATCH_LEVEL`; dropping the engine only
/// frees memory.
unsafe extern "C" fn evt_device_destroy(device: WDFOBJECT) {
    // SAFETY: WDF passes the device being destroyed; its context is still allocated.
    let ctx = unsafe { DEVICE_CONTEXT.get::<DeviceContext>(device) };
    // SAFETY: no other callback of this device runs during its destroy callback.
    if let Some(ctx) = unsafe { ctx.as_mut() }
        && ctx.live
    {
        ctx.live = false;
        // SAFETY: `live` said it was written, and it is dropped once.
        unsafe { ctx.state.assume_init_drop() };
    }
}

/// `EvtDeviceFileCreate`: a handle opens; give it an owner. `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_file_create(device: WDFDEVICE, request: WDFREQUEST, file: WDFFILEOBJECT) {
    // SAFETY: WDF presents the create request to this callback, which completes it below.
    let request = unsafe { Request::presented(request) };
    let access = if request.opens_for_write() {
        Access::ReadWrite
    } else {
        Access::Read
    };
    // SAFETY: WDF passes a live device of this driver and the new file object, on which no
    // other callback runs before its create request completes.
    let status = match unsafe { open_handle(device, file, access) } {
        Ok(()) => NtStatus::SUCCESS,
        Err(status) => status,
    };
    request.complete(status);
}

/// Open a core owner for a new handle, with the access its create asked for, and keep it in
/// the file object's context. `// IRQL: PASSIVE_LEVEL`.
///
/// # Safety
/// `device` is a live device of this driver; `file` is a new file object of it, with
/// `FILE_CONTEXT`, on which no other callback runs yet.
unsafe fn open_handle(
    device: WDFDEVICE,
    file: WDFFILEOBJECT,
    access: Access,
) -> Result<(), NtStatus> {
    // SAFETY: a live device of this driver (caller).
    let state = unsafe { device_state(device.cast()) }.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    let owner = state.engine.open(access)?;
    // SAFETY: a live file object with FILE_CONTEXT (caller).
    let ctx = unsafe { FILE_CONTEXT.get::<FileContext>(file.cast()) };
    // SAFETY: no other callback runs on the file object before its create request completes
    // (caller), so this is the only reference to its context.
    let ctx = unsafe { ctx.as_mut() }.ok_or(NtStatus::INVALID_DEVICE_STATE)?;
    ctx.owner.write(owner);
    ctx.live = true;
    Ok(())
}

/// `EvtFileCleanup`: the last handle closed. The core cancels the handle's waits and tears
/// down its connections and listeners, waiting for each NDK close. `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    // SAFETY: WDF passes a live file object of this driver.
    if let Some(owner) = unsafe { owner(file) } {
        owner.cleanup();
    }
}

/// `EvtFileClose`: no request of the file object is left (each held a reference to it), so
/// no cancel routine can look for the owner any more: release it. `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_file_close(file: WDFFILEOBJECT) {
    // SAFETY: WDF passes a live file object of this driver.
    let ctx = unsafe { FILE_CONTEXT.get::<FileContext>(file.cast()) };
    // SAFETY: no other callback runs on a file object during its close.
    if let Some(ctx) = unsafe { ctx.as_mut() }
        && ctx.live
    {
        ctx.live = false;
        // SAFETY: `live` said it was written, and it is dropped once.
        unsafe { ctx.owner.assume_init_drop() };
    }
}

/// `EvtIoDeviceControl`: hand the IOCTL to the handle's owner, which completes it or pends it.
/// `// IRQL: PASSIVE_LEVEL` (the queue's execution level).
unsafe extern "C" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    code: ULONG,
) {
    // SAFETY: WDF presents the request to this callback, which completes it or hands it on.
    let request = unsafe { Request::presented(request) };
    // SAFETY: the request's file object is live while the request is.
    let Some(owner) = (unsafe { owner(request.file_object()) }) else {
        return request.complete(NtStatus::INVALID_DEVICE_STATE);
    };
    let mut copy = [0u8; INPUT_COPY];
    let input = request.copy_input(input_length, &mut copy);
    owner.dispatch(
        code,
        input,
        request.into_pended(output_length, evt_request_cancel),
    );
}

/// `EvtRequestCancel` of a pended request: the core finds it by its token and completes it,
/// unless its normal completion already took it. `// IRQL: <= DISPATCH_LEVEL`.
unsafe extern "C" fn evt_request_cancel(request: WDFREQUEST) {
    // SAFETY: WDF passes a request this driver marked cancelable, live during this routine.
    let request = unsafe { RequestRef::passed(request) };
    // SAFETY: the request holds its file object alive, and close (which drops the owner)
    // cannot come while a request is outstanding.
    if let Some(owner) = unsafe { owner(request.file_object()) } {
        owner.cancel(request.token());
    }
}

/// `EvtWorkItem` of the device's work item: run the deferred work. `// IRQL: PASSIVE_LEVEL`.
unsafe extern "C" fn evt_deferred_work(work_item: WDFWORKITEM) {
    let device: WDFOBJECT;
    // SAFETY: WDF passes the live work item; its parent is the device.
    unsafe { device = call_unsafe_wdf_function_binding!(WdfWorkItemGetParentObject, work_item) };
    // SAFETY: the parent of a live work item is a live device of this driver.
    if let Some(state) = unsafe { device_state(device) } {
        state.platform.run_deferred();
    }
}
