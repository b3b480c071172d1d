//! The I/O manager and PnP side: boot a kernel, load the driver (`DriverEntry`), add its
//! device (`EvtDriverDeviceAdd`), open handles (`IRP_MJ_CREATE` → `EvtDeviceFileCreate`), send
//! IOCTLs (`DeviceIoControl` → `EvtIoDeviceControl`), cancel them (`CancelIoEx`), close
//! handles (`IRP_MJ_CLEANUP` → `EvtFileCleanup`, and `IRP_MJ_CLOSE` → `EvtFileClose` once the
//! last request of the file object completed), remove the device and unload the driver, in
//! whatever order a test asks — so the driver sees the callback order Windows gives.
//!
//! KMDF behaviour followed (microsoft/Windows-Driver-Frameworks, MIT):
//! - `EvtDeviceFileCreate` owns the create request and completes it; a failed create deletes
//!   the file object without cleanup or close (`FxPkgGeneral::OnCreate`,
//!   `src/framework/shared/irphandlers/general/fxpkggeneral.cpp`);
//! - cleanup comes when the last handle closes, close when the file object's last reference
//!   (its requests hold one each) goes (`FxPkgGeneral::OnCleanup`, `OnClose`; the file object's
//!   context lives until the object is deleted after close, `FxFileObject`);
//! - a parallel queue whose execution level is passive presents a request on the thread that
//!   sent it, which is at `PASSIVE_LEVEL` (`FxIoQueue::DispatchEvents`, `FxIoQueue::QueueRequest`
//!   in `src/framework/shared/irphandlers/io/fxioqueue.cpp`);
//! - on removal, `EvtDeviceSelfManagedIoCleanup` runs, then the device and its children are
//!   deleted (cleanup, then destroy callbacks) (`FxPkgPnp::PnpEventRemovedCommonCode`,
//!   `src/framework/shared/irphandlers/pnp/fxpkgpnp.cpp`);
//! - `EvtDriverUnload` runs when the last device is gone, then the driver object is deleted
//!   (`FxDriver::Unload`, `src/framework/shared/core/fxdriver.cpp`).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use wdk_sys::{
    DRIVER_OBJECT, IO_SECURITY_CONTEXT, NTSTATUS, PFN_WDF_DEVICE_SELF_MANAGED_IO_CLEANUP,
    PFN_WDF_FILE_CLEANUP, PFN_WDF_FILE_CLOSE, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL, UNICODE_STRING,
    WDF_OBJECT_ATTRIBUTES,
};

use crate::kernel::{Kernel, PASSIVE_LEVEL, Rule, SendPtr, at_irql, changed, lock, violation};
use crate::objects::{Kind, STATUS_INVALID_DEVICE_REQUEST, handle_ptr};
use crate::request::{Cancel, Completion, ReqKind, RequestData};

/// The machine the kernel runs on: its softndk fabric and its network interface.
#[derive(Clone)]
pub struct Machine {
    /// The fabric whose WSK NDK extension the kernel's WSK gives.
    pub fabric: Arc<softndk::Fabric>,
    /// This machine's interface (softndk host) index.
    pub if_index: u32,
    /// Its unicast addresses (what `GetUnicastIpAddressTable` lists).
    pub addresses: Vec<IpAddr>,
    /// Whether WSK has the NDK extension (`WskControlClient(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH)`
    /// succeeds); `false` plays a machine without NDK.
    pub ndk: bool,
}

/// A device's state, set by `WdfDeviceCreate` from its `WDFDEVICE_INIT`.
#[derive(Default)]
pub(crate) struct DeviceData {
    pub(crate) init: crate::wdf::DeviceInitData,
    pub(crate) default_queue: Option<usize>,
    pub(crate) symbolic_link: Option<String>,
    pub(crate) interfaces: Vec<[u8; 16]>,
    pub(crate) removed: bool,
}

/// A file object's state.
pub(crate) struct FileData {
    pub(crate) device: usize,
    /// The handle (until `IRP_MJ_CLEANUP`) and each outstanding request hold one.
    pub(crate) references: usize,
    /// Opened (its create succeeded) and not yet closed (`EvtFileClose` not yet called).
    pub(crate) open: bool,
    /// A handle to it is open (until its `CloseHandle`).
    pub(crate) handle: bool,
}

/// A queue's state (its device is its parent).
pub(crate) struct QueueData {
    pub(crate) device_control: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
}

/// One kernel at a time in a process: the driver's globals (WDF's, its own statics) are
/// per image.
static SERIAL: Mutex<()> = Mutex::new(());

/// `DriverEntry`'s signature.
pub type DriverEntry =
    unsafe extern "system" fn(*mut DRIVER_OBJECT, *const UNICODE_STRING) -> NTSTATUS;

/// A booted kernel, with at most one driver loaded. Dropping it unloads what is left.
pub struct System {
    _serial: MutexGuard<'static, ()>,
    driver_object: Option<SendPtr<DRIVER_OBJECT>>,
    registry_path: Box<UNICODE_STRING>,
    unloaded: bool,
}

/// What the rules saw by the time the driver unloaded.
#[derive(Debug)]
pub struct Report {
    /// Every rule broken, in order.
    pub violations: Vec<crate::Violation>,
}

/// How a handle is opened: what `CreateFile` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `GENERIC_READ`.
    Read,
    /// `GENERIC_READ | GENERIC_WRITE`.
    ReadWrite,
}

/// The registry path `DriverEntry` gets.
static REGISTRY_PATH: [u16; 60] = {
    let s = b"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\ndkdisc";
    let mut out = [0u16; 60];
    let mut i = 0;
    while i < s.len() {
        out[i] = s[i] as u16;
        i += 1;
    }
    out
};

impl System {
    /// Boot a kernel on `machine`: a fresh state, the WDF function table installed. Waits for
    /// any other kernel of this process to be dropped.
    pub fn boot(machine: Machine) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut k = lock();
            *k = Kernel::default();
            k.machine = Some(machine);
        }
        crate::wdf::install();
        Self {
            _serial: serial,
            driver_object: None,
            registry_path: Box::new(UNICODE_STRING {
                Length: 118,
                MaximumLength: 120,
                Buffer: REGISTRY_PATH.as_ptr().cast_mut(),
            }),
            unloaded: false,
        }
    }

    /// Load the driver: call its `DriverEntry` at `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The status `DriverEntry` returned, when it failed.
    ///
    /// # Safety
    /// `entry` is the driver's `DriverEntry`, whose image is linked into this process and
    /// loaded by no other kernel.
    pub unsafe fn load(&mut self, entry: DriverEntry) -> Result<(), NTSTATUS> {
        let object = Box::into_raw(Box::new(DRIVER_OBJECT::default()));
        self.driver_object = Some(SendPtr(object));
        let path: *const UNICODE_STRING = &raw const *self.registry_path;
        let status = at_irql(PASSIVE_LEVEL, "DriverEntry", || {
            // SAFETY: the driver's entry (caller), with a driver object and registry path that
            // outlive the driver.
            unsafe { entry(object, path) }
        });
        if status < 0 {
            // A failed DriverEntry: the driver object goes (and everything under it).
            let driver = lock().driver.take();
            if let Some(d) = driver {
                crate::objects::delete_tree(d.handle);
            }
            self.unloaded = true;
            return Err(status);
        }
        Ok(())
    }

    /// Plug and play adds the driver's device: `EvtDriverDeviceAdd` at `PASSIVE_LEVEL`. On
    /// failure after `WdfDeviceCreate`, the device is deleted as the framework does.
    ///
    /// # Errors
    /// The status `EvtDriverDeviceAdd` returned, or `STATUS_INVALID_DEVICE_STATE` without a
    /// loaded driver.
    pub fn add_device(&self) -> Result<Device, NTSTATUS> {
        let (driver, add) = {
            let k = lock();
            match &k.driver {
                Some(d) => (d.handle, d.device_add),
                None => return Err(crate::objects::STATUS_INVALID_DEVICE_STATE),
            }
        };
        let Some(add) = add else {
            return Err(crate::objects::STATUS_INVALID_DEVICE_STATE);
        };
        let init = crate::wdf::new_device_init();
        let status = at_irql(PASSIVE_LEVEL, "EvtDriverDeviceAdd", || {
            // SAFETY: the driver's callback, with its driver and an init it owns until
            // WdfDeviceCreate.
            unsafe { add(handle_ptr(driver), init.cast()) }
        });
        let created = crate::wdf::finish_device_init(init);
        if status < 0 {
            if let Some(device) = created {
                crate::objects::delete_tree(device);
            }
            return Err(status);
        }
        if let Some(handle) = created {
            Ok(Device { handle })
        } else {
            violation(
                Rule::InvalidHandle,
                "EvtDriverDeviceAdd succeeded without creating a device".into(),
            );
            Err(crate::objects::STATUS_INVALID_DEVICE_STATE)
        }
    }

    /// Open a handle to `device`: `IRP_MJ_CREATE`, presented to `EvtDeviceFileCreate` on this
    /// thread. Waits for the create to complete.
    ///
    /// # Errors
    /// The create request's failure status.
    pub fn open(&self, device: &Device, access: Access) -> Result<Handle, NTSTATUS> {
        let (file, request, create) = {
            let mut k = lock();
            let Some(Kind::Device(d)) = k.objects.get(&device.handle).map(|o| &o.kind) else {
                return Err(crate::objects::STATUS_INVALID_DEVICE_STATE);
            };
            if d.removed {
                return Err(crate::objects::STATUS_INVALID_DEVICE_STATE);
            }
            let create = d.init.file_create;
            let attributes = d.init.file_attributes;
            let attributes_ptr: *const WDF_OBJECT_ATTRIBUTES = attributes
                .as_ref()
                .map_or(std::ptr::null(), |a| std::ptr::from_ref(&a.0));
            // SAFETY: a copy of the attributes the driver gave WdfDeviceInitSetFileObjectConfig,
            // whose context type info is the driver's static.
            let read =
                unsafe { crate::objects::read_attributes(&mut k, attributes_ptr, "file object") };
            let Ok((context, _parent, cleanup, destroy)) = read else {
                return Err(crate::objects::STATUS_INSUFFICIENT_RESOURCES);
            };
            let file = crate::objects::insert(
                &mut k,
                Kind::File(FileData {
                    device: device.handle,
                    // The handle's, and the create request's.
                    references: 2,
                    open: false,
                    handle: true,
                }),
                Some(device.handle),
                context,
                cleanup,
                destroy,
            );
            let (buffer, layout) = crate::request::buffer(size_of::<IO_SECURITY_CONTEXT>());
            let desired: u32 = match access {
                Access::Read => GENERIC_READ,
                Access::ReadWrite => GENERIC_READ | GENERIC_WRITE,
            };
            let context = IO_SECURITY_CONTEXT {
                DesiredAccess: desired,
                ..IO_SECURITY_CONTEXT::default()
            };
            // SAFETY: the buffer is fresh, at least as large as an IO_SECURITY_CONTEXT and
            // aligned to 16 (`request::buffer`), so the unaligned write is in bounds.
            unsafe {
                buffer
                    .0
                    .cast::<IO_SECURITY_CONTEXT>()
                    .write_unaligned(context);
            };
            let request = crate::objects::insert(
                &mut k,
                Kind::Request(RequestData {
                    file,
                    kind: ReqKind::Create,
                    buffer,
                    layout,
                    cancel: Cancel::NotMarked,
                    cancelled: false,
                }),
                Some(file),
                None,
                None,
                None,
            );
            (file, request, create)
        };
        match create {
            Some(create) => at_irql(PASSIVE_LEVEL, "EvtDeviceFileCreate", || {
                // SAFETY: the driver's callback with its live device, a new create request it
                // owns and the new file object.
                unsafe {
                    create(
                        handle_ptr(device.handle),
                        handle_ptr(request),
                        handle_ptr(file),
                    );
                }
            }),
            None => crate::request::complete(handle_ptr(request), 0, 0, "(framework)"),
        }
        let done = Io { request }.wait();
        if done.status < 0 {
            // The create failed: no cleanup or close, the object goes.
            crate::objects::delete_tree(file);
            return Err(done.status);
        }
        let mut k = lock();
        if let Some(Kind::File(f)) = k.objects.get_mut(&file).map(|o| &mut o.kind) {
            f.open = true;
        }
        Ok(Handle {
            file,
            access,
            closed: false,
        })
    }

    /// Remove `device`: every handle must be closed and closed out (a query-remove with open
    /// handles is vetoed). A file object whose handle is closed but whose close has not come
    /// yet (a request of it still completing) is waited for, as the device's last reference.
    /// Runs `EvtDeviceSelfManagedIoCleanup`, then deletes the device.
    ///
    /// # Errors
    /// `STATUS_DEVICE_BUSY` while a handle to the device is open, or (a violation too) when a
    /// closed handle's file object is not closed within 30 s (a request never completed).
    pub fn remove_device(&self, device: Device) -> Result<(), (Device, NTSTATUS)> {
        let cleanup: PFN_WDF_DEVICE_SELF_MANAGED_IO_CLEANUP = {
            let mut k = lock();
            let of_device = |k: &Kernel, open_handle: bool| {
                k.objects.values().any(|o| {
                    matches!(&o.kind, Kind::File(f)
                        if f.device == device.handle && (f.handle || !open_handle))
                })
            };
            if of_device(&k, true) {
                return Err((device, STATUS_DEVICE_BUSY));
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while of_device(&k, false) {
                let now = std::time::Instant::now();
                if now >= deadline {
                    drop(k);
                    violation(
                        Rule::ObjectLeaked,
                        "remove: a closed handle's file object was never closed (a request of it never completed)".into(),
                    );
                    return Err((device, STATUS_DEVICE_BUSY));
                }
                k = k.wait_timeout(deadline - now);
            }
            let Some(Kind::Device(d)) = k.objects.get_mut(&device.handle).map(|o| &mut o.kind)
            else {
                return Err((device, crate::objects::STATUS_INVALID_DEVICE_STATE));
            };
            d.removed = true;
            d.init.self_managed_io_cleanup
        };
        if let Some(cb) = cleanup {
            at_irql(PASSIVE_LEVEL, "EvtDeviceSelfManagedIoCleanup", || {
                // SAFETY: the driver's callback on its live device.
                unsafe { cb(handle_ptr(device.handle)) }
            });
        }
        crate::objects::delete_tree(device.handle);
        Ok(())
    }

    /// Unload the driver: remove what devices are left (their handles must be closed), call
    /// `EvtDriverUnload`, delete the driver object, wait for the kernel's threads, and report
    /// every rule broken, leaks included (objects, pool, MDLs, tables, registrations).
    pub fn unload(mut self) -> Report {
        self.unload_inner()
    }

    fn unload_inner(&mut self) -> Report {
        if !self.unloaded {
            self.unloaded = true;
            let devices: Vec<usize> = lock()
                .objects
                .iter()
                .filter(|(_, o)| matches!(o.kind, Kind::Device(_)))
                .map(|(h, _)| *h)
                .collect();
            for handle in devices {
                if let Err((_, status)) = self.remove_device(Device { handle }) {
                    violation(
                        Rule::ObjectLeaked,
                        format!(
                            "unload: device {handle:#x} could not be removed ({status:#x}): a handle is still open"
                        ),
                    );
                }
            }
            let driver = lock().driver.as_ref().map(|d| (d.handle, d.unload));
            if let Some((handle, unload)) = driver {
                if let Some(cb) = unload {
                    at_irql(PASSIVE_LEVEL, "EvtDriverUnload", || {
                        // SAFETY: the driver's callback; no device is left.
                        unsafe { cb(handle_ptr(handle)) }
                    });
                }
                // Objects the driver parented to itself and never deleted are leaks (they
                // would pile up for the driver's whole life).
                let leaked: Vec<(usize, &'static str)> = {
                    let k = lock();
                    k.objects
                        .get(&handle)
                        .map(|o| {
                            o.children
                                .iter()
                                .filter_map(|c| k.objects.get(c).map(|co| (*c, co.kind.name())))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                for (h, name) in leaked {
                    violation(
                        Rule::ObjectLeaked,
                        format!("{name} {h:#x} (parent: the driver) still alive at unload"),
                    );
                }
                crate::objects::delete_tree(handle);
                lock().driver = None;
            }
        }
        // Join the kernel's threads (a work item's last run, deferred closes).
        loop {
            let workers = std::mem::take(&mut lock().workers);
            if workers.is_empty() {
                break;
            }
            for w in workers {
                let _ = w.join();
            }
        }
        crate::objects::leak_check_at_unload();
        crate::nt::leak_check_at_unload();
        crate::wsk::leak_check_at_unload();
        if let Some(object) = self.driver_object.take() {
            // SAFETY: allocated by `load`, freed once; the driver is gone.
            drop(unsafe { Box::from_raw(object.0) });
        }
        Report {
            violations: std::mem::take(&mut lock().violations),
        }
    }

    /// The rules broken so far (the kernel keeps them for the unload report too).
    pub fn violations(&self) -> Vec<crate::Violation> {
        lock().violations.clone()
    }

    /// Start capturing the driver's ETW events (every level and keyword).
    pub fn capture_etw(&self) {
        lock().etw.capturing = true;
    }

    /// The ETW events captured so far (taken).
    pub fn take_etw(&self) -> Vec<crate::nt::EtwEvent> {
        std::mem::take(&mut lock().etw.events)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if !self.unloaded || self.driver_object.is_some() {
            let _ = self.unload_inner();
        }
        // The machine's fabric is the test's; the kernel lets go of it (dropped outside the
        // state's lock: the last reference joins softndk's threads).
        let machine = lock().machine.take();
        drop(machine);
    }
}

/// `GENERIC_READ`.
const GENERIC_READ: u32 = 0x8000_0000;
/// `GENERIC_WRITE`.
const GENERIC_WRITE: u32 = 0x4000_0000;
/// `STATUS_DEVICE_BUSY`.
const STATUS_DEVICE_BUSY: NTSTATUS = 0x8000_0011_u32.cast_signed();
/// `STATUS_ACCESS_DENIED`.
const STATUS_ACCESS_DENIED: NTSTATUS = 0xC000_0022_u32.cast_signed();
/// `STATUS_NOT_IMPLEMENTED`.
const STATUS_NOT_IMPLEMENTED: NTSTATUS = 0xC000_0002_u32.cast_signed();

/// A device the driver created.
#[derive(Debug)]
pub struct Device {
    handle: usize,
}

/// An open handle (a file object of the device).
#[derive(Debug)]
pub struct Handle {
    file: usize,
    access: Access,
    closed: bool,
}

impl Handle {
    /// `DeviceIoControl`: a `METHOD_BUFFERED` control code with `input` and room for
    /// `output_len` bytes, presented to `EvtIoDeviceControl` on this thread at `PASSIVE_LEVEL`.
    /// The I/O manager refuses a code whose required access the handle lacks
    /// (`STATUS_ACCESS_DENIED`), and softwdf one with another transfer method
    /// (`STATUS_NOT_IMPLEMENTED`), without reaching the driver.
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize) -> Io {
        let required = (code >> 14) & 3;
        let granted = match self.access {
            Access::Read => 1,
            Access::ReadWrite => 3,
        };
        let refused = if required & !granted != 0 {
            Some(STATUS_ACCESS_DENIED)
        } else if code & 3 != 0 {
            Some(STATUS_NOT_IMPLEMENTED)
        } else {
            None
        };
        let (request, queue, device_control) = {
            let mut k = lock();
            let queue = match k.objects.get(&self.file).map(|o| &o.kind) {
                Some(Kind::File(f)) => match k.objects.get(&f.device).map(|o| &o.kind) {
                    Some(Kind::Device(d)) => d.default_queue,
                    _ => None,
                },
                _ => None,
            };
            let device_control = queue.and_then(|q| match k.objects.get(&q).map(|o| &o.kind) {
                Some(Kind::Queue(qd)) => qd.device_control,
                _ => None,
            });
            let (buffer, layout) = crate::request::buffer(input.len().max(output_len));
            // SAFETY: the buffer holds at least `input.len()` bytes, freshly allocated.
            unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), buffer.0, input.len()) };
            let request = crate::objects::insert(
                &mut k,
                Kind::Request(RequestData {
                    file: self.file,
                    kind: ReqKind::DeviceControl {
                        code,
                        input_len: input.len(),
                        output_len,
                    },
                    buffer,
                    layout,
                    cancel: Cancel::NotMarked,
                    cancelled: false,
                }),
                Some(self.file),
                None,
                None,
                None,
            );
            if let Some(Kind::File(f)) = k.objects.get_mut(&self.file).map(|o| &mut o.kind) {
                f.references += 1;
            }
            (request, queue, device_control)
        };
        match (refused, queue, device_control) {
            (Some(status), _, _) => {
                crate::request::complete(handle_ptr(request), status, 0, "(I/O manager)");
            }
            (None, Some(queue), Some(cb)) => {
                let in_len = input.len();
                at_irql(PASSIVE_LEVEL, "EvtIoDeviceControl", || {
                    // SAFETY: the driver's callback with its queue and a request it now owns.
                    unsafe {
                        cb(
                            handle_ptr(queue),
                            handle_ptr(request),
                            output_len,
                            in_len,
                            code,
                        );
                    }
                });
            }
            // No queue takes device controls: the framework fails the request.
            _ => crate::request::complete(
                handle_ptr(request),
                STATUS_INVALID_DEVICE_REQUEST,
                0,
                "(framework)",
            ),
        }
        Io { request }
    }

    /// `CloseHandle`: `IRP_MJ_CLEANUP` (`EvtFileCleanup`, on this thread) now; `IRP_MJ_CLOSE`
    /// (`EvtFileClose`) when the file object's last request completes (now, if none is out).
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let cleanup: PFN_WDF_FILE_CLEANUP = {
            let mut k = lock();
            if let Some(Kind::File(f)) = k.objects.get_mut(&self.file).map(|o| &mut o.kind) {
                f.handle = false;
            }
            match k.objects.get(&self.file).map(|o| &o.kind) {
                Some(Kind::File(f)) => match k.objects.get(&f.device).map(|o| &o.kind) {
                    Some(Kind::Device(d)) => d.init.file_cleanup,
                    _ => None,
                },
                _ => None,
            }
        };
        if let Some(cb) = cleanup {
            let file = self.file;
            at_irql(PASSIVE_LEVEL, "EvtFileCleanup", || {
                // SAFETY: the driver's callback on its live file object.
                unsafe { cb(handle_ptr(file)) }
            });
        }
        let close_now = {
            let mut k = lock();
            drop_reference(&mut k, self.file)
        };
        if close_now {
            close_file(self.file);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// Drop one reference of `file`; whether it was the last (close it now).
fn drop_reference(k: &mut Kernel, file: usize) -> bool {
    match k.objects.get_mut(&file).map(|o| &mut o.kind) {
        Some(Kind::File(f)) => {
            f.references = f.references.saturating_sub(1);
            f.references == 0
        }
        _ => false,
    }
}

/// A request of `file` completed: drop its reference, and close the file object (on a kernel
/// thread, at `PASSIVE_LEVEL`) if that was the last.
pub(crate) fn release_file_reference(k: &mut Kernel, file: usize) {
    if drop_reference(k, file) {
        let handle = std::thread::Builder::new()
            .name("softwdf-close".into())
            .spawn(move || close_file(file))
            .expect("spawn a softwdf close thread");
        k.workers.push(handle);
    }
}

/// `IRP_MJ_CLOSE`: `EvtFileClose`, then the file object is deleted.
fn close_file(file: usize) {
    let close: PFN_WDF_FILE_CLOSE = {
        let k = lock();
        match k.objects.get(&file).map(|o| &o.kind) {
            Some(Kind::File(f)) if f.open => match k.objects.get(&f.device).map(|o| &o.kind) {
                Some(Kind::Device(d)) => d.init.file_close,
                _ => None,
            },
            _ => None,
        }
    };
    if let Some(cb) = close {
        at_irql(PASSIVE_LEVEL, "EvtFileClose", || {
            // SAFETY: the driver's callback on its live file object, whose last request is done.
            unsafe { cb(handle_ptr(file)) }
        });
    }
    crate::objects::delete_tree(file);
    changed();
}

/// A request sent to the driver, from the caller's side.
#[derive(Debug)]
pub struct Io {
    request: usize,
}

impl Io {
    /// Wait for the completion.
    pub fn wait(&self) -> Completion {
        let mut k = lock();
        loop {
            if let Some(c) = k.results.remove(&self.request) {
                return c;
            }
            k = k.wait();
        }
    }

    /// Wait at most `timeout`; `None` if still pending.
    pub fn wait_for(&self, timeout: Duration) -> Option<Completion> {
        let deadline = std::time::Instant::now() + timeout;
        let mut k = lock();
        loop {
            if let Some(c) = k.results.remove(&self.request) {
                return Some(c);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            k = k.wait_timeout(deadline - now);
        }
    }

    /// Whether the request completed (its result not yet taken).
    pub fn is_done(&self) -> bool {
        lock().results.contains_key(&self.request)
    }

    /// `CancelIoEx` of this request: the driver's cancel routine runs now, on this thread at its
    /// IRQL (`PASSIVE_LEVEL`), if the request is marked cancelable.
    pub fn cancel(&self) {
        crate::request::cancel(self.request);
    }
}
