//! The WDF function table: each function the KMDF shell calls, at its index of KMDF 1.31's
//! table (`_WDFFUNCENUM`), with the signature its `PFN_WDF*` type gives (checked at compile
//! time). Every other entry aborts the process with the index it was called at.
//!
//! KMDF behaviour followed (microsoft/Windows-Driver-Frameworks, MIT; `src/framework/shared/`
//! and `src/framework/kmdf/src/`), per function below; the IRQL each allows is its public
//! header's (`src/publicinc/wdf/kmdf/1.31/*.h`, `_IRQL_requires_max_`).

use std::sync::Mutex;
use std::thread::ThreadId;

use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDFFUNCENUM, GUID, LONGLONG, NTSTATUS, PCUNICODE_STRING,
    PDRIVER_OBJECT, PFN_WDF_DEVICE_FILE_CREATE, PFN_WDF_DEVICE_SELF_MANAGED_IO_CLEANUP,
    PFN_WDF_FILE_CLEANUP, PFN_WDF_FILE_CLOSE, PFN_WDF_REQUEST_CANCEL, PFN_WDF_WORKITEM, PVOID,
    PWDF_DRIVER_GLOBALS, PWDFDEVICE_INIT, ULONG, ULONG_PTR, WDF_DRIVER_CONFIG, WDF_DRIVER_GLOBALS,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_PNPPOWER_EVENT_CALLBACKS, WDF_REQUEST_PARAMETERS,
    WDF_WORKITEM_CONFIG, WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFFUNC, WDFOBJECT, WDFQUEUE,
    WDFREQUEST, WDFWAITLOCK, WDFWORKITEM,
};

use crate::io::{DeviceData, QueueData};
use crate::kernel::{
    DISPATCH_LEVEL, Kernel, PASSIVE_LEVEL, RUNNING_WORK_ITEM, Rule, SendPtr, at_irql, changed,
    lock, require_irql, violation, violation_locked,
};
use crate::objects::{
    Kind, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    check_kind, handle_ptr, insert, read_attributes,
};

/// `WDF_OBJECT_ATTRIBUTES` kept by the kernel (a copy of the driver's; its pointers lead to
/// the driver's statics).
#[derive(Clone, Copy)]
pub(crate) struct Attributes(pub(crate) WDF_OBJECT_ATTRIBUTES);

// SAFETY: a plain copy whose pointers (context type info) lead to the driver's immutable
// statics.
unsafe impl Send for Attributes {}

/// What `WdfDeviceInit*` set, before `WdfDeviceCreate`.
#[derive(Default, Clone)]
pub(crate) struct DeviceInitData {
    pub(crate) file_create: PFN_WDF_DEVICE_FILE_CREATE,
    pub(crate) file_cleanup: PFN_WDF_FILE_CLEANUP,
    pub(crate) file_close: PFN_WDF_FILE_CLOSE,
    pub(crate) file_attributes: Option<Attributes>,
    pub(crate) self_managed_io_cleanup: PFN_WDF_DEVICE_SELF_MANAGED_IO_CLEANUP,
    pub(crate) name: Option<String>,
    pub(crate) sddl: Option<String>,
}

/// The `WDFDEVICE_INIT` of the device add in progress.
pub(crate) struct DeviceInit {
    data: DeviceInitData,
    /// `WdfDeviceCreate` consumed it, creating this device.
    created: Option<usize>,
}

/// The one device add in progress (the kernel adds one device at a time).
static DEVICE_INIT: Mutex<Option<SendPtr<DeviceInit>>> = Mutex::new(None);

/// A new `WDFDEVICE_INIT` for `EvtDriverDeviceAdd`.
pub(crate) fn new_device_init() -> *mut DeviceInit {
    let p = Box::into_raw(Box::new(DeviceInit {
        data: DeviceInitData::default(),
        created: None,
    }));
    *DEVICE_INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(SendPtr(p));
    p
}

/// The device add returned: free the init (the framework does, whatever the outcome) and say
/// which device it created.
pub(crate) fn finish_device_init(p: *mut DeviceInit) -> Option<usize> {
    *DEVICE_INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    // SAFETY: made by `new_device_init` with Box::into_raw, taken back once.
    let init = unsafe { Box::from_raw(p) };
    init.created
}

/// Run `f` on the device add's init if `init` is it.
fn with_init<R>(
    init: PWDFDEVICE_INIT,
    function: &str,
    f: impl FnOnce(&mut DeviceInit) -> R,
) -> Option<R> {
    let current = DEVICE_INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|p| p.0);
    match current {
        Some(p) if p.addr() == init.addr() => {
            // SAFETY: the init of the device add in progress, owned by the kernel until
            // `finish_device_init`, reached by the add's own thread only.
            let init = unsafe { &mut *p };
            if init.created.is_some() {
                violation(
                    Rule::InvalidHandle,
                    format!("{function}: the WDFDEVICE_INIT was consumed by WdfDeviceCreate"),
                );
                return None;
            }
            Some(f(init))
        }
        _ => {
            violation(
                Rule::InvalidHandle,
                format!(
                    "{function}: {:#x} is not the WDFDEVICE_INIT of a device add in progress",
                    init.addr()
                ),
            );
            None
        }
    }
}

/// Read a `UNICODE_STRING` the driver passed.
///
/// # Safety
/// `s` is null or a valid `UNICODE_STRING` whose buffer holds `Length` bytes.
unsafe fn string(s: PCUNICODE_STRING) -> Option<String> {
    // SAFETY: null or valid (caller).
    let s = unsafe { s.as_ref() }?;
    if s.Buffer.is_null() {
        return Some(String::new());
    }
    // SAFETY: `Length` bytes of UTF-16 at `Buffer` (caller).
    let units = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

/// A work item's state.
pub(crate) struct WorkItemData {
    pub(crate) function: PFN_WDF_WORKITEM,
    pub(crate) parent: usize,
    /// Enqueued and its callback not yet started.
    pub(crate) queued: bool,
    /// Its callback runs.
    pub(crate) running: bool,
}

/// A wait lock's state.
pub(crate) struct WaitLockData {
    pub(crate) owner: Option<ThreadId>,
}

/// An object was removed from the tree (its kind's state goes with it).
pub(crate) fn dropped(_k: &mut Kernel, _h: usize, _kind: Kind) {}

/// The driver's structure at `p` (a config or callbacks), if given and of the framework's size
/// (`FxValidateStructSize`-style checks in each KMDF create function). A wrong size is a
/// verifier error and `STATUS_INFO_LENGTH_MISMATCH`; none at all `STATUS_INVALID_PARAMETER`.
///
/// # Safety
/// `p` is null or points to a readable `T` that outlives the call's use of the reference.
unsafe fn structure<'a, T>(
    p: *const T,
    size: impl Fn(&T) -> u64,
    function: &str,
) -> Result<&'a T, NTSTATUS> {
    // SAFETY: null or readable (caller).
    let Some(c) = (unsafe { p.as_ref() }) else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    let got = size(c);
    if usize::try_from(got).ok() != Some(size_of::<T>()) {
        violation(
            Rule::BadStructureSize,
            format!("{function}: Size {got}, expected {}", size_of::<T>()),
        );
        return Err(STATUS_INFO_LENGTH_MISMATCH);
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Driver and device creation.

/// `WdfDriverCreate` (`fxdriverapi.cpp`): the driver object, with the config's callbacks;
/// PASSIVE_LEVEL.
unsafe extern "C" fn driver_create(
    _g: PWDF_DRIVER_GLOBALS,
    _driver_object: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
    config: *mut WDF_DRIVER_CONFIG,
    driver: *mut WDFDRIVER,
) -> NTSTATUS {
    if !require_irql(PASSIVE_LEVEL, "WdfDriverCreate") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: null or the driver's config (the function's contract).
    let config = match unsafe { structure(config, |c| c.Size.into(), "WdfDriverCreate") } {
        Ok(c) => c,
        Err(status) => return status,
    };
    let mut k = lock();
    if k.driver.is_some() {
        violation_locked(
            &mut k,
            Rule::InvalidHandle,
            "WdfDriverCreate called twice".into(),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: null or the driver's attributes (contract).
    let (context, _parent, cleanup, destroy) =
        match unsafe { read_attributes(&mut k, attributes, "WdfDriverCreate") } {
            Ok(r) => r,
            Err(status) => return status,
        };
    let handle = insert(&mut k, Kind::Driver, None, context, cleanup, destroy);
    k.driver = Some(crate::objects::DriverState {
        handle,
        device_add: config.EvtDriverDeviceAdd,
        unload: config.EvtDriverUnload,
    });
    if !driver.is_null() {
        // SAFETY: a valid out-pointer when not WDF_NO_HANDLE (contract).
        unsafe { driver.write(handle_ptr(handle)) };
    }
    0
}

/// `WdfDeviceInitSetFileObjectConfig` (`fxdeviceinitapi.cpp`): PASSIVE_LEVEL.
unsafe extern "C" fn device_init_set_file_object_config(
    _g: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    config: *mut WDF_FILEOBJECT_CONFIG,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
) {
    require_irql(PASSIVE_LEVEL, "WdfDeviceInitSetFileObjectConfig");
    // SAFETY: null or the driver's structure (contract).
    let Ok(config) = (unsafe {
        structure(
            config,
            |c| c.Size.into(),
            "WdfDeviceInitSetFileObjectConfig",
        )
    }) else {
        return;
    };
    // SAFETY: null or the driver's attributes (contract).
    let attributes = unsafe { attributes.as_ref() }.copied().map(Attributes);
    with_init(init, "WdfDeviceInitSetFileObjectConfig", |i| {
        i.data.file_create = config.EvtDeviceFileCreate;
        i.data.file_cleanup = config.EvtFileCleanup;
        i.data.file_close = config.EvtFileClose;
        i.data.file_attributes = attributes;
    });
}

/// `WdfDeviceInitSetPnpPowerEventCallbacks`: PASSIVE_LEVEL.
unsafe extern "C" fn device_init_set_pnp_power_event_callbacks(
    _g: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    callbacks: *mut WDF_PNPPOWER_EVENT_CALLBACKS,
) {
    require_irql(PASSIVE_LEVEL, "WdfDeviceInitSetPnpPowerEventCallbacks");
    // SAFETY: null or the driver's structure (contract).
    let Ok(c) = (unsafe {
        structure(
            callbacks,
            |c| c.Size.into(),
            "WdfDeviceInitSetPnpPowerEventCallbacks",
        )
    }) else {
        return;
    };
    let cleanup = c.EvtDeviceSelfManagedIoCleanup;
    with_init(init, "WdfDeviceInitSetPnpPowerEventCallbacks", |i| {
        i.data.self_managed_io_cleanup = cleanup;
    });
}

/// A `WdfDeviceInitAssign*` of a string: read it and store it with `set`. PASSIVE_LEVEL.
///
/// # Safety
/// `text` is null or a valid `UNICODE_STRING` (the function's contract).
unsafe fn assign_string(
    init: PWDFDEVICE_INIT,
    text: PCUNICODE_STRING,
    function: &'static str,
    set: impl FnOnce(&mut DeviceInitData, Option<String>),
) -> NTSTATUS {
    require_irql(PASSIVE_LEVEL, function);
    // SAFETY: null or the driver's string (caller).
    let text = unsafe { string(text) };
    with_init(init, function, |i| {
        set(&mut i.data, text);
        0
    })
    .unwrap_or(STATUS_INVALID_DEVICE_REQUEST)
}

/// `WdfDeviceInitAssignName`.
unsafe extern "C" fn device_init_assign_name(
    _g: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: null or the driver's string (contract).
    unsafe {
        assign_string(init, name, "WdfDeviceInitAssignName", |d, v| {
            d.name = v;
        })
    }
}

/// `WdfDeviceInitAssignSDDLString`.
unsafe extern "C" fn device_init_assign_sddl_string(
    _g: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    sddl: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: null or the driver's string (contract).
    unsafe {
        assign_string(init, sddl, "WdfDeviceInitAssignSDDLString", |d, v| {
            d.sddl = v;
        })
    }
}

/// `WdfDeviceCreate` (`fxdeviceapi.cpp`): consumes the init (the framework owns it from here,
/// and sets the caller's pointer to NULL on success); the device's parent is the driver;
/// PASSIVE_LEVEL.
unsafe extern "C" fn device_create(
    _g: PWDF_DRIVER_GLOBALS,
    init: *mut PWDFDEVICE_INIT,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
    device: *mut WDFDEVICE,
) -> NTSTATUS {
    if !require_irql(PASSIVE_LEVEL, "WdfDeviceCreate") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if init.is_null() || device.is_null() {
        violation(
            Rule::InvalidHandle,
            "WdfDeviceCreate: NULL DeviceInit or Device".into(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: valid for reads (contract).
    let init_ptr = unsafe { init.read() };
    let Some(data) = with_init(init_ptr, "WdfDeviceCreate", |i| i.data.clone()) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let mut k = lock();
    // SAFETY: null or the driver's attributes (contract).
    let (context, _parent, cleanup, destroy) =
        match unsafe { read_attributes(&mut k, attributes, "WdfDeviceCreate") } {
            Ok(r) => r,
            Err(status) => return status,
        };
    let handle = insert(
        &mut k,
        Kind::Device(DeviceData {
            init: data,
            ..DeviceData::default()
        }),
        None,
        context,
        cleanup,
        destroy,
    );
    drop(k);
    with_init(init_ptr, "WdfDeviceCreate", |i| i.created = Some(handle));
    // SAFETY: valid for writes (contract).
    unsafe { device.write(handle_ptr(handle)) };
    // SAFETY: as above.
    unsafe { init.write(std::ptr::null_mut()) };
    0
}

/// `WdfIoQueueCreate` (`fxioqueueapi.cpp`): a queue of the device (its parent); the default
/// queue receives the device's requests. Only parallel dispatch is emulated. <= DISPATCH_LEVEL.
unsafe extern "C" fn io_queue_create(
    _g: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    config: *mut WDF_IO_QUEUE_CONFIG,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
    queue: *mut WDFQUEUE,
) -> NTSTATUS {
    if !require_irql(DISPATCH_LEVEL, "WdfIoQueueCreate") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: null or the driver's structure (contract).
    let config = match unsafe { structure(config, |c| c.Size.into(), "WdfIoQueueCreate") } {
        Ok(c) => c,
        Err(status) => return status,
    };
    if config.DispatchType != _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel {
        violation(
            Rule::Unimplemented,
            format!(
                "WdfIoQueueCreate: dispatch type {} (softwdf emulates parallel queues only)",
                config.DispatchType
            ),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut k = lock();
    let d = device.addr();
    if !check_kind(&mut k, d, "WDFDEVICE", "WdfIoQueueCreate") {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: null or the driver's attributes (contract).
    let (context, _parent, cleanup, destroy) =
        match unsafe { read_attributes(&mut k, attributes, "WdfIoQueueCreate") } {
            Ok(r) => r,
            Err(status) => return status,
        };
    let handle = insert(
        &mut k,
        Kind::Queue(QueueData {
            device_control: config.EvtIoDeviceControl,
        }),
        Some(d),
        context,
        cleanup,
        destroy,
    );
    if config.DefaultQueue != 0
        && let Some(Kind::Device(dd)) = k.objects.get_mut(&d).map(|o| &mut o.kind)
    {
        dd.default_queue = Some(handle);
    }
    if !queue.is_null() {
        // SAFETY: valid for writes when given (contract).
        unsafe { queue.write(handle_ptr(handle)) };
    }
    0
}

/// `WdfDeviceCreateSymbolicLink`: needs a named device; PASSIVE_LEVEL.
unsafe extern "C" fn device_create_symbolic_link(
    _g: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    if !require_irql(PASSIVE_LEVEL, "WdfDeviceCreateSymbolicLink") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: the driver's string (contract).
    let name = unsafe { string(name) };
    let mut k = lock();
    let d = device.addr();
    if !check_kind(&mut k, d, "WDFDEVICE", "WdfDeviceCreateSymbolicLink") {
        return STATUS_INVALID_PARAMETER;
    }
    let Some(Kind::Device(dd)) = k.objects.get_mut(&d).map(|o| &mut o.kind) else {
        return STATUS_INVALID_PARAMETER;
    };
    if dd.init.name.is_none() {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if dd.symbolic_link.is_some() {
        return crate::objects::STATUS_OBJECT_NAME_COLLISION;
    }
    dd.symbolic_link = name;
    0
}

/// `WdfDeviceCreateDeviceInterface`: PASSIVE_LEVEL.
unsafe extern "C" fn device_create_device_interface(
    _g: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    guid: *const GUID,
    _reference: PCUNICODE_STRING,
) -> NTSTATUS {
    if !require_irql(PASSIVE_LEVEL, "WdfDeviceCreateDeviceInterface") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: the driver's GUID (contract).
    let Some(guid) = (unsafe { guid.as_ref() }) else {
        return STATUS_INVALID_PARAMETER;
    };
    let bytes = crate::kernel::guid_bytes(guid);
    let mut k = lock();
    let d = device.addr();
    if !check_kind(&mut k, d, "WDFDEVICE", "WdfDeviceCreateDeviceInterface") {
        return STATUS_INVALID_PARAMETER;
    }
    if let Some(Kind::Device(dd)) = k.objects.get_mut(&d).map(|o| &mut o.kind) {
        dd.interfaces.push(bytes);
    }
    0
}

// ---------------------------------------------------------------------------------------------
// Objects.

/// `WdfObjectGetTypedContextWorker` (`fxobjectapi.cpp`): <= DISPATCH_LEVEL.
unsafe extern "C" fn object_get_typed_context_worker(
    _g: PWDF_DRIVER_GLOBALS,
    object: WDFOBJECT,
    info: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
) -> PVOID {
    require_irql(DISPATCH_LEVEL, "WdfObjectGetTypedContextWorker");
    crate::objects::typed_context(object, info).cast()
}

/// `WdfObjectDelete` (`fxobjectapi.cpp`): only objects the driver created and may delete (a
/// wait lock, a work item); a framework object (device, file, request, queue, driver) is a
/// verifier error. <= DISPATCH_LEVEL.
unsafe extern "C" fn object_delete(_g: PWDF_DRIVER_GLOBALS, object: WDFOBJECT) {
    require_irql(DISPATCH_LEVEL, "WdfObjectDelete");
    let h = object.addr();
    {
        let mut k = lock();
        let Some(o) = k.objects.get(&h) else {
            violation_locked(
                &mut k,
                Rule::InvalidHandle,
                format!("WdfObjectDelete: {h:#x} is not a live object"),
            );
            return;
        };
        match &o.kind {
            Kind::WaitLock(w) => {
                if w.owner.is_some() {
                    violation_locked(
                        &mut k,
                        Rule::WaitLockMisuse,
                        format!("WdfObjectDelete: wait lock {h:#x} is held"),
                    );
                }
            }
            Kind::WorkItem(_) => {}
            other => {
                let name = other.name();
                violation_locked(
                    &mut k,
                    Rule::IllegalDelete,
                    format!("WdfObjectDelete: the driver may not delete the {name} {h:#x}"),
                );
                return;
            }
        }
    }
    crate::objects::delete_tree(h);
}

// ---------------------------------------------------------------------------------------------
// Requests.

unsafe extern "C" fn request_complete(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
) {
    crate::request::complete(request, status, 0, "WdfRequestComplete");
}

unsafe extern "C" fn request_complete_with_information(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
    information: ULONG_PTR,
) {
    crate::request::complete(
        request,
        status,
        information,
        "WdfRequestCompleteWithInformation",
    );
}

unsafe extern "C" fn request_get_parameters(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    parameters: *mut WDF_REQUEST_PARAMETERS,
) {
    require_irql(DISPATCH_LEVEL, "WdfRequestGetParameters");
    if parameters.is_null() {
        violation(
            Rule::InvalidRequest,
            "WdfRequestGetParameters: NULL Parameters".into(),
        );
        return;
    }
    // SAFETY: valid (contract, checked non-null).
    unsafe { crate::request::parameters(request, parameters) };
}

unsafe extern "C" fn request_get_file_object(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> WDFFILEOBJECT {
    require_irql(DISPATCH_LEVEL, "WdfRequestGetFileObject");
    crate::request::file_object(request)
}

unsafe extern "C" fn request_retrieve_input_buffer(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    minimum: usize,
    buffer: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    // SAFETY: out-pointers valid or null (contract).
    unsafe { crate::request::retrieve(request, minimum, buffer, length, false) }
}

unsafe extern "C" fn request_retrieve_output_buffer(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    minimum: usize,
    buffer: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    // SAFETY: out-pointers valid or null (contract).
    unsafe { crate::request::retrieve(request, minimum, buffer, length, true) }
}

unsafe extern "C" fn request_mark_cancelable_ex(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    routine: PFN_WDF_REQUEST_CANCEL,
) -> NTSTATUS {
    crate::request::mark_cancelable(request, routine)
}

unsafe extern "C" fn request_unmark_cancelable(
    _g: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    crate::request::unmark_cancelable(request)
}

// ---------------------------------------------------------------------------------------------
// Work items (`fxworkitemapi.cpp`, `FxWorkItem` in `src/framework/shared/support/fxworkitem.cpp`).

/// `WdfWorkItemCreate`: the attributes must name a parent (a device or queue); <= DISPATCH.
unsafe extern "C" fn work_item_create(
    _g: PWDF_DRIVER_GLOBALS,
    config: *mut WDF_WORKITEM_CONFIG,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
    item: *mut WDFWORKITEM,
) -> NTSTATUS {
    if !require_irql(DISPATCH_LEVEL, "WdfWorkItemCreate") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    // SAFETY: null or the driver's structure (contract).
    let config = match unsafe { structure(config, |c| c.Size.into(), "WdfWorkItemCreate") } {
        Ok(c) => c,
        Err(status) => return status,
    };
    if config.EvtWorkItemFunc.is_none() || item.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let mut k = lock();
    // SAFETY: null or the driver's attributes (contract).
    let (context, parent, cleanup, destroy) =
        match unsafe { read_attributes(&mut k, attributes, "WdfWorkItemCreate") } {
            Ok(r) => r,
            Err(status) => return status,
        };
    let Some(parent) = parent.filter(|p| under_a_device(&k, *p)) else {
        violation_locked(
            &mut k,
            Rule::InvalidHandle,
            "WdfWorkItemCreate: the parent must be a device or a queue".into(),
        );
        crate::objects::free_context(context);
        return STATUS_INVALID_PARAMETER;
    };
    let handle = insert(
        &mut k,
        Kind::WorkItem(WorkItemData {
            function: config.EvtWorkItemFunc,
            parent,
            queued: false,
            running: false,
        }),
        Some(parent),
        context,
        cleanup,
        destroy,
    );
    // SAFETY: valid for writes (contract).
    unsafe { item.write(handle_ptr(handle)) };
    0
}

/// Whether `h` is a device or has one among its ancestors (a work item's parent must:
/// `FxWorkItem::_Create`).
fn under_a_device(k: &Kernel, mut h: usize) -> bool {
    loop {
        match k.objects.get(&h) {
            Some(o) if matches!(o.kind, Kind::Device(_)) => return true,
            Some(o) => match o.parent {
                Some(p) => h = p,
                None => return false,
            },
            None => return false,
        }
    }
}

fn work_item_mut<'k>(k: &'k mut Kernel, h: usize, function: &str) -> Option<&'k mut WorkItemData> {
    if !check_kind(k, h, "WDFWORKITEM", function) {
        return None;
    }
    match k.objects.get_mut(&h).map(|o| &mut o.kind) {
        Some(Kind::WorkItem(w)) => Some(w),
        _ => None,
    }
}

/// `WdfWorkItemEnqueue`: does nothing if the item is queued and its callback has not started;
/// the callback runs on a system worker thread at PASSIVE_LEVEL. <= DISPATCH_LEVEL.
unsafe extern "C" fn work_item_enqueue(_g: PWDF_DRIVER_GLOBALS, item: WDFWORKITEM) {
    require_irql(DISPATCH_LEVEL, "WdfWorkItemEnqueue");
    let h = item.addr();
    let mut k = lock();
    let Some(w) = work_item_mut(&mut k, h, "WdfWorkItemEnqueue") else {
        return;
    };
    if w.queued {
        return;
    }
    w.queued = true;
    let thread = std::thread::Builder::new()
        .name("softwdf-workitem".into())
        .spawn(move || run_work_item(h))
        .expect("spawn a softwdf work item thread");
    k.workers.push(thread);
}

fn run_work_item(h: usize) {
    // One run at a time per item (KMDF serialises an item's callbacks on its queue).
    let function = {
        let mut k = lock();
        loop {
            match k.objects.get_mut(&h).map(|o| &mut o.kind) {
                Some(Kind::WorkItem(w)) if w.running => {}
                Some(Kind::WorkItem(w)) => {
                    w.queued = false;
                    w.running = true;
                    break w.function;
                }
                _ => return,
            }
            k = k.wait();
        }
    };
    if let Some(f) = function {
        RUNNING_WORK_ITEM.with(|c| c.set(h));
        at_irql(PASSIVE_LEVEL, "EvtWorkItem", || {
            // SAFETY: the driver's callback on its live work item.
            unsafe { f(handle_ptr(h)) }
        });
        RUNNING_WORK_ITEM.with(|c| c.set(0));
    }
    if let Some(Kind::WorkItem(w)) = lock().objects.get_mut(&h).map(|o| &mut o.kind) {
        w.running = false;
    }
    changed();
}

/// `WdfWorkItemFlush`: waits until the item is neither queued nor running; from the item's own
/// callback it would never return (a verifier error). PASSIVE_LEVEL.
unsafe extern "C" fn work_item_flush(_g: PWDF_DRIVER_GLOBALS, item: WDFWORKITEM) {
    if !require_irql(PASSIVE_LEVEL, "WdfWorkItemFlush") {
        return;
    }
    let h = item.addr();
    if RUNNING_WORK_ITEM.with(std::cell::Cell::get) == h {
        violation(
            Rule::FlushFromOwnWorkItem,
            format!("WdfWorkItemFlush of {h:#x} from its own callback"),
        );
        return;
    }
    let mut k = lock();
    loop {
        match work_item_mut(&mut k, h, "WdfWorkItemFlush") {
            Some(w) if w.queued || w.running => {}
            _ => return,
        }
        k = k.wait();
    }
}

/// A work item being deleted: wait while it is queued or its callback runs (not from the
/// callback itself, which would wait for itself). Nothing for another kind of object.
pub(crate) fn rundown_work_item(h: usize) {
    if RUNNING_WORK_ITEM.with(std::cell::Cell::get) == h {
        return;
    }
    let mut k = lock();
    while let Some(Kind::WorkItem(w)) = k.objects.get(&h).map(|o| &o.kind) {
        if !(w.queued || w.running) {
            break;
        }
        k = k.wait();
    }
}

/// `WdfWorkItemGetParentObject`: <= DISPATCH_LEVEL.
unsafe extern "C" fn work_item_get_parent_object(
    _g: PWDF_DRIVER_GLOBALS,
    item: WDFWORKITEM,
) -> WDFOBJECT {
    require_irql(DISPATCH_LEVEL, "WdfWorkItemGetParentObject");
    let mut k = lock();
    match work_item_mut(&mut k, item.addr(), "WdfWorkItemGetParentObject") {
        Some(w) => handle_ptr(w.parent),
        None => std::ptr::null_mut(),
    }
}

// ---------------------------------------------------------------------------------------------
// Wait locks (`fxsyncapi.cpp`, `FxWaitLock` in `src/framework/shared/inc/private/common/fxwaitlock.hpp`).

/// `WdfWaitLockCreate`: parent the driver unless the attributes name one; <= DISPATCH_LEVEL.
unsafe extern "C" fn wait_lock_create(
    _g: PWDF_DRIVER_GLOBALS,
    attributes: *mut WDF_OBJECT_ATTRIBUTES,
    lock_out: *mut WDFWAITLOCK,
) -> NTSTATUS {
    if !require_irql(DISPATCH_LEVEL, "WdfWaitLockCreate") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if lock_out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let mut k = lock();
    // SAFETY: null or the driver's attributes (contract).
    let (context, parent, cleanup, destroy) =
        match unsafe { read_attributes(&mut k, attributes, "WdfWaitLockCreate") } {
            Ok(r) => r,
            Err(status) => return status,
        };
    let handle = insert(
        &mut k,
        Kind::WaitLock(WaitLockData { owner: None }),
        parent,
        context,
        cleanup,
        destroy,
    );
    // SAFETY: valid for writes (contract).
    unsafe { lock_out.write(handle_ptr(handle)) };
    0
}

/// `WdfWaitLockAcquire`: with no timeout it waits (PASSIVE_LEVEL only; never under a spin
/// lock); the lock is not recursive. Returns `STATUS_SUCCESS` once held, or `STATUS_TIMEOUT`.
unsafe extern "C" fn wait_lock_acquire(
    _g: PWDF_DRIVER_GLOBALS,
    wait_lock: WDFWAITLOCK,
    timeout: *mut LONGLONG,
) -> NTSTATUS {
    // SAFETY: null or valid (contract).
    let zero = unsafe { timeout.as_ref() }.is_some_and(|t| *t == 0);
    if !zero && !crate::kernel::may_wait(PASSIVE_LEVEL, "WdfWaitLockAcquire (waiting)") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let h = wait_lock.addr();
    let me = std::thread::current().id();
    let mut k = lock();
    loop {
        if !check_kind(&mut k, h, "WDFWAITLOCK", "WdfWaitLockAcquire") {
            return STATUS_INVALID_PARAMETER;
        }
        let Some(Kind::WaitLock(w)) = k.objects.get_mut(&h).map(|o| &mut o.kind) else {
            return STATUS_INVALID_PARAMETER;
        };
        match w.owner {
            None => {
                w.owner = Some(me);
                return 0;
            }
            Some(o) if o == me => {
                violation_locked(
                    &mut k,
                    Rule::WaitLockMisuse,
                    format!("WdfWaitLockAcquire: wait lock {h:#x} acquired again by its holder"),
                );
                return STATUS_INVALID_DEVICE_REQUEST;
            }
            Some(_) if zero => return STATUS_TIMEOUT,
            Some(_) => {}
        }
        k = k.wait();
    }
}

/// `WdfWaitLockRelease`: by its holder; <= DISPATCH_LEVEL.
unsafe extern "C" fn wait_lock_release(_g: PWDF_DRIVER_GLOBALS, wait_lock: WDFWAITLOCK) {
    require_irql(DISPATCH_LEVEL, "WdfWaitLockRelease");
    let h = wait_lock.addr();
    let me = std::thread::current().id();
    let mut k = lock();
    if !check_kind(&mut k, h, "WDFWAITLOCK", "WdfWaitLockRelease") {
        return;
    }
    if let Some(Kind::WaitLock(w)) = k.objects.get_mut(&h).map(|o| &mut o.kind) {
        if w.owner == Some(me) {
            w.owner = None;
        } else {
            violation_locked(
                &mut k,
                Rule::WaitLockMisuse,
                format!("WdfWaitLockRelease: wait lock {h:#x} is not held by this thread"),
            );
        }
    }
    drop(k);
    changed();
}

/// `STATUS_TIMEOUT`.
const STATUS_TIMEOUT: NTSTATUS = 0x0000_0102;

// ---------------------------------------------------------------------------------------------
// The table.

/// A table entry softwdf does not implement: the driver called a WDF function the emulation
/// has no semantics for. Its signature is unknown, so returning would be undefined: abort.
unsafe extern "C" fn unimplemented() {
    eprintln!("softwdf: the driver called a WDF function softwdf does not implement");
    std::process::abort();
}

macro_rules! table {
    ($($index:ident => $pfn:ident = $f:ident,)*) => {
        fn fill(table: &mut [WDFFUNC]) {
            $(
                let typed: wdk_sys::$pfn = Some($f);
                // SAFETY: a function pointer stored as the table's generic pointer type; the
                // binding macro casts it back to `$pfn` (the type checked here) before calling.
                table[_WDFFUNCENUM::$index as usize] = unsafe { std::mem::transmute::<wdk_sys::$pfn, WDFFUNC>(typed) };
            )*
        }
    };
}

table! {
    WdfDriverCreateTableIndex => PFN_WDFDRIVERCREATE = driver_create,
    WdfDeviceInitSetFileObjectConfigTableIndex => PFN_WDFDEVICEINITSETFILEOBJECTCONFIG = device_init_set_file_object_config,
    WdfDeviceInitSetPnpPowerEventCallbacksTableIndex => PFN_WDFDEVICEINITSETPNPPOWEREVENTCALLBACKS = device_init_set_pnp_power_event_callbacks,
    WdfDeviceInitAssignNameTableIndex => PFN_WDFDEVICEINITASSIGNNAME = device_init_assign_name,
    WdfDeviceInitAssignSDDLStringTableIndex => PFN_WDFDEVICEINITASSIGNSDDLSTRING = device_init_assign_sddl_string,
    WdfDeviceCreateTableIndex => PFN_WDFDEVICECREATE = device_create,
    WdfIoQueueCreateTableIndex => PFN_WDFIOQUEUECREATE = io_queue_create,
    WdfDeviceCreateSymbolicLinkTableIndex => PFN_WDFDEVICECREATESYMBOLICLINK = device_create_symbolic_link,
    WdfDeviceCreateDeviceInterfaceTableIndex => PFN_WDFDEVICECREATEDEVICEINTERFACE = device_create_device_interface,
    WdfObjectGetTypedContextWorkerTableIndex => PFN_WDFOBJECTGETTYPEDCONTEXTWORKER = object_get_typed_context_worker,
    WdfObjectDeleteTableIndex => PFN_WDFOBJECTDELETE = object_delete,
    WdfRequestCompleteTableIndex => PFN_WDFREQUESTCOMPLETE = request_complete,
    WdfRequestCompleteWithInformationTableIndex => PFN_WDFREQUESTCOMPLETEWITHINFORMATION = request_complete_with_information,
    WdfRequestGetParametersTableIndex => PFN_WDFREQUESTGETPARAMETERS = request_get_parameters,
    WdfRequestGetFileObjectTableIndex => PFN_WDFREQUESTGETFILEOBJECT = request_get_file_object,
    WdfRequestRetrieveInputBufferTableIndex => PFN_WDFREQUESTRETRIEVEINPUTBUFFER = request_retrieve_input_buffer,
    WdfRequestRetrieveOutputBufferTableIndex => PFN_WDFREQUESTRETRIEVEOUTPUTBUFFER = request_retrieve_output_buffer,
    WdfRequestMarkCancelableExTableIndex => PFN_WDFREQUESTMARKCANCELABLEEX = request_mark_cancelable_ex,
    WdfRequestUnmarkCancelableTableIndex => PFN_WDFREQUESTUNMARKCANCELABLE = request_unmark_cancelable,
    WdfWorkItemCreateTableIndex => PFN_WDFWORKITEMCREATE = work_item_create,
    WdfWorkItemEnqueueTableIndex => PFN_WDFWORKITEMENQUEUE = work_item_enqueue,
    WdfWorkItemFlushTableIndex => PFN_WDFWORKITEMFLUSH = work_item_flush,
    WdfWorkItemGetParentObjectTableIndex => PFN_WDFWORKITEMGETPARENTOBJECT = work_item_get_parent_object,
    WdfWaitLockCreateTableIndex => PFN_WDFWAITLOCKCREATE = wait_lock_create,
    WdfWaitLockAcquireTableIndex => PFN_WDFWAITLOCKACQUIRE = wait_lock_acquire,
    WdfWaitLockReleaseTableIndex => PFN_WDFWAITLOCKRELEASE = wait_lock_release,
}

/// The table and the driver globals, made once per process (the binding reads them through
/// wdk-sys's statics).
struct Installed {
    table: SendPtr<WDFFUNC>,
    count: usize,
    globals: SendPtr<WDF_DRIVER_GLOBALS>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

/// Point wdk-sys's `WdfFunctions`, `WdfFunctionCount` and `WdfDriverGlobals` at softwdf's.
pub(crate) fn install() {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let i = installed.get_or_insert_with(|| {
        let count = _WDFFUNCENUM::WdfFunctionTableNumEntries as usize;
        let stub: unsafe extern "C" fn() = unimplemented;
        let mut table = vec![Some(stub); count];
        fill(&mut table);
        Installed {
            table: SendPtr(Box::leak(table.into_boxed_slice()).as_mut_ptr()),
            count,
            globals: SendPtr(Box::into_raw(Box::new(WDF_DRIVER_GLOBALS::default()))),
        }
    });
    let count = ULONG::try_from(i.count).unwrap_or(0);
    // SAFETY: the statics are written only here, while no driver code runs (a boot, before
    // DriverEntry; `System` serialises boots), and read by the binding afterwards.
    unsafe {
        wdk_sys::WdfFunctions = i.table.0.cast_const();
    }
    // SAFETY: as above.
    unsafe {
        wdk_sys::WdfFunctionCount = count;
    }
    // SAFETY: as above.
    unsafe {
        wdk_sys::WdfDriverGlobals = i.globals.0;
    }
}
