//! WDF objects: handles, typed contexts, the parent/child tree, cleanup and destroy callbacks,
//! and deletion.
//!
//! KMDF behaviour followed (microsoft/Windows-Driver-Frameworks, MIT; `src/framework/shared/`):
//! - a context is allocated with its object and zeroed (`FxObjectHandleAllocCommon` /
//!   `FxContextHeader` in `object/fxobject.cpp`, `object/handleapi.cpp`), and
//!   `WdfObjectGetTypedContextWorker` finds it by its type info (`object/fxobjectapi.cpp`);
//! - an object without `ParentObject` gets the driver as parent; deleting an object deletes its
//!   children first, running every `EvtCleanupCallback` children first, then every
//!   `EvtDestroyCallback` once no reference is left (`FxObject::DeleteObject`,
//!   `FxObject::ProcessDestroy` in `object/fxobjectstatemachine.cpp`);
//! - `WDF_OBJECT_ATTRIBUTES.Size` must be the framework's (`FxValidateObjectAttributes` in
//!   `object/fxvalidatefunctions.cpp`).

use std::alloc::Layout;

use wdk_sys::{
    NTSTATUS, PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD, PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    PFN_WDF_OBJECT_CONTEXT_DESTROY, WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFOBJECT,
};

use crate::kernel::{Kernel, Rule, SendPtr, lock, violation_locked};

/// `STATUS_INFO_LENGTH_MISMATCH`.
pub(crate) const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32.cast_signed();
/// `STATUS_INVALID_PARAMETER`.
pub(crate) const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32.cast_signed();
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32.cast_signed();
/// `STATUS_INVALID_DEVICE_REQUEST`.
pub(crate) const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32.cast_signed();
/// `STATUS_INVALID_DEVICE_STATE`.
pub(crate) const STATUS_INVALID_DEVICE_STATE: NTSTATUS = 0xC000_0184_u32.cast_signed();
/// `STATUS_CANCELLED`.
pub(crate) const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32.cast_signed();
/// `STATUS_BUFFER_TOO_SMALL`.
pub(crate) const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32.cast_signed();
/// `STATUS_NOT_SUPPORTED`.
pub(crate) const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32.cast_signed();
/// `STATUS_PENDING`.
pub(crate) const STATUS_PENDING: NTSTATUS = 0x0000_0103;
/// `STATUS_OBJECT_NAME_COLLISION`.
pub(crate) const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = 0xC000_0035_u32.cast_signed();

/// What kind of object a handle is, with its kind's own state.
pub(crate) enum Kind {
    Driver,
    Device(crate::io::DeviceData),
    File(crate::io::FileData),
    Queue(crate::io::QueueData),
    Request(crate::request::RequestData),
    WorkItem(crate::wdf::WorkItemData),
    WaitLock(crate::wdf::WaitLockData),
}

impl Kind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Driver => "WDFDRIVER",
            Kind::Device(_) => "WDFDEVICE",
            Kind::File(_) => "WDFFILEOBJECT",
            Kind::Queue(_) => "WDFQUEUE",
            Kind::Request(_) => "WDFREQUEST",
            Kind::WorkItem(_) => "WDFWORKITEM",
            Kind::WaitLock(_) => "WDFWAITLOCK",
        }
    }
}

/// A typed context: zeroed memory of the type info's size, owned by its object.
pub(crate) struct Context {
    pub(crate) memory: SendPtr<u8>,
    pub(crate) layout: Layout,
    /// The type info the driver declared it with (its `UniqueType`, as KMDF compares).
    pub(crate) type_info: SendPtr<WDF_OBJECT_CONTEXT_TYPE_INFO>,
}

/// A live WDF object.
pub(crate) struct Object {
    pub(crate) kind: Kind,
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) context: Option<Context>,
    pub(crate) cleanup: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    pub(crate) destroy: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    /// `WdfObjectDelete` (or the framework) began deleting it.
    pub(crate) deleting: bool,
}

/// The driver: its object and its callbacks.
pub(crate) struct DriverState {
    pub(crate) handle: usize,
    pub(crate) device_add: PFN_WDF_DRIVER_DEVICE_ADD,
    pub(crate) unload: PFN_WDF_DRIVER_UNLOAD,
}

/// A handle's value as the `WDFOBJECT` the driver holds. It is never dereferenced, by the
/// driver or the kernel: it has no provenance.
pub(crate) fn handle_ptr<T>(handle: usize) -> *mut T {
    std::ptr::without_provenance_mut(handle)
}

/// The canonical type of a context type info: its `UniqueType` when set (what
/// `WDF_DECLARE_CONTEXT_TYPE` emits), else itself.
///
/// # Safety
/// `info` is null or points to a readable `WDF_OBJECT_CONTEXT_TYPE_INFO`.
unsafe fn unique_type(
    info: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
) -> *const WDF_OBJECT_CONTEXT_TYPE_INFO {
    // SAFETY: null or readable (caller).
    match unsafe { info.as_ref() } {
        Some(i) if !i.UniqueType.is_null() => i.UniqueType,
        _ => info,
    }
}

/// Read and check `attributes` (null for none): the size, the parent. Returns (context to
/// allocate, parent, cleanup, destroy).
///
/// # Safety
/// `attributes` is null or points to a readable `WDF_OBJECT_ATTRIBUTES` whose
/// `ContextTypeInfo` is null or readable (the driver's static).
pub(crate) unsafe fn read_attributes(
    k: &mut Kernel,
    attributes: *const WDF_OBJECT_ATTRIBUTES,
    function: &str,
) -> Result<
    (
        Option<Context>,
        Option<usize>,
        PFN_WDF_OBJECT_CONTEXT_CLEANUP,
        PFN_WDF_OBJECT_CONTEXT_DESTROY,
    ),
    NTSTATUS,
> {
    // SAFETY: null or readable (caller).
    let Some(a) = (unsafe { attributes.as_ref() }) else {
        return Ok((None, None, None, None));
    };
    if a.Size as usize != size_of::<WDF_OBJECT_ATTRIBUTES>() {
        violation_locked(
            k,
            Rule::BadStructureSize,
            format!(
                "{function}: WDF_OBJECT_ATTRIBUTES.Size {} (expected {})",
                a.Size,
                size_of::<WDF_OBJECT_ATTRIBUTES>()
            ),
        );
        return Err(STATUS_INFO_LENGTH_MISMATCH);
    }
    let parent = if a.ParentObject.is_null() {
        None
    } else {
        let p = a.ParentObject.addr();
        if !k.objects.contains_key(&p) {
            violation_locked(
                k,
                Rule::InvalidHandle,
                format!("{function}: ParentObject {p:#x} is not a live object"),
            );
            return Err(STATUS_INVALID_PARAMETER);
        }
        Some(p)
    };
    let context = if a.ContextTypeInfo.is_null() {
        None
    } else {
        // SAFETY: readable (caller).
        let info = unsafe { &*a.ContextTypeInfo };
        let size = if a.ContextSizeOverride != 0 {
            a.ContextSizeOverride
        } else {
            info.ContextSize
        };
        let layout =
            Layout::from_size_align(size.max(1), 16).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // SAFETY: a layout of non-zero size.
        let memory = unsafe { std::alloc::alloc_zeroed(layout) };
        if memory.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        Some(Context {
            memory: SendPtr(memory),
            layout,
            // SAFETY: readable (caller).
            type_info: SendPtr(unsafe { unique_type(a.ContextTypeInfo) }.cast_mut()),
        })
    };
    Ok((context, parent, a.EvtCleanupCallback, a.EvtDestroyCallback))
}

/// Add an object to the tree, under `parent` or (none given) the driver.
pub(crate) fn insert(
    k: &mut Kernel,
    kind: Kind,
    parent: Option<usize>,
    context: Option<Context>,
    cleanup: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    destroy: PFN_WDF_OBJECT_CONTEXT_DESTROY,
) -> usize {
    let handle = k.new_handle();
    let parent = parent.or_else(|| k.driver.as_ref().map(|d| d.handle));
    if let Some(p) = parent
        && let Some(po) = k.objects.get_mut(&p)
    {
        po.children.push(handle);
    }
    k.objects.insert(
        handle,
        Object {
            kind,
            parent,
            children: Vec::new(),
            context,
            cleanup,
            destroy,
            deleting: false,
        },
    );
    handle
}

/// `WdfObjectGetTypedContextWorker`: the context of `object` declared with `info`, or null.
pub(crate) fn typed_context(
    object: WDFOBJECT,
    info: *const WDF_OBJECT_CONTEXT_TYPE_INFO,
) -> *mut u8 {
    let mut k = lock();
    let h = object.addr();
    let Some(o) = k.objects.get(&h) else {
        violation_locked(
            &mut k,
            Rule::InvalidHandle,
            format!("WdfObjectGetTypedContextWorker: {h:#x} is not a live object"),
        );
        return std::ptr::null_mut();
    };
    // SAFETY: the driver passes its static type info (the function's contract).
    let want = unsafe { unique_type(info) };
    match &o.context {
        Some(c) if std::ptr::eq(c.type_info.0.cast_const(), want) => c.memory.0,
        _ => std::ptr::null_mut(),
    }
}

/// Delete `root` and its subtree as the framework does: cleanup callbacks children first, then
/// destroy callbacks children first, then the memory. No lock is held during the callbacks,
/// and the objects (and their contexts) are live during both.
pub(crate) fn delete_tree(root: usize) {
    let order = {
        let mut k = lock();
        let mut order = Vec::new();
        collect_children_first(&k, root, &mut order);
        for h in &order {
            if let Some(o) = k.objects.get_mut(h) {
                o.deleting = true;
            }
        }
        order
    };
    // A work item is run down first: its deletion waits for a queued or running callback
    // (`FxWorkItem::FlushAndRundown`), which may still use its context.
    for &h in &order {
        crate::wdf::rundown_work_item(h);
    }
    for &h in &order {
        let cleanup = lock().objects.get(&h).and_then(|o| o.cleanup);
        if let Some(cb) = cleanup {
            crate::kernel::at_irql(crate::kernel::PASSIVE_LEVEL, "EvtCleanupCallback", || {
                // SAFETY: the driver's callback for this live object (not yet freed).
                unsafe { cb(handle_ptr(h)) }
            });
        }
    }
    for &h in &order {
        let destroy = lock().objects.get(&h).and_then(|o| o.destroy);
        if let Some(cb) = destroy {
            crate::kernel::at_irql(crate::kernel::PASSIVE_LEVEL, "EvtDestroyCallback", || {
                // SAFETY: as above; the context is freed only after this returns.
                unsafe { cb(handle_ptr(h)) }
            });
        }
    }
    let mut k = lock();
    for &h in &order {
        if let Some(o) = k.objects.remove(&h) {
            if let Some(p) = o.parent
                && let Some(po) = k.objects.get_mut(&p)
            {
                po.children.retain(|c| *c != h);
            }
            free_context(o.context);
            crate::wdf::dropped(&mut k, h, o.kind);
        }
    }
    drop(k);
    crate::kernel::changed();
}

/// `h`'s subtree, children first, leaving out what another deletion already took (KMDF ignores a
/// second delete of an object being deleted).
fn collect_children_first(k: &Kernel, h: usize, out: &mut Vec<usize>) {
    if let Some(o) = k.objects.get(&h)
        && !o.deleting
    {
        for &c in &o.children {
            collect_children_first(k, c, out);
        }
        out.push(h);
    }
}

/// Free a context's memory.
pub(crate) fn free_context(context: Option<Context>) {
    if let Some(c) = context {
        // SAFETY: allocated by `read_attributes` with this layout, freed once (its object is
        // gone).
        unsafe { std::alloc::dealloc(c.memory.0, c.layout) };
    }
}

/// The live object `h` of the kind `want` names, or a violation.
pub(crate) fn check_kind(k: &mut Kernel, h: usize, want: &'static str, function: &str) -> bool {
    match k.objects.get(&h) {
        Some(o) if o.kind.name() == want => true,
        Some(o) => {
            let got = o.kind.name();
            violation_locked(
                k,
                Rule::InvalidHandle,
                format!("{function}: {h:#x} is a {got}, not a {want}"),
            );
            false
        }
        None => {
            violation_locked(
                k,
                Rule::InvalidHandle,
                format!("{function}: {h:#x} is not a live {want}"),
            );
            false
        }
    }
}

/// Report every object still alive (but the driver's own) as leaked, and free them.
pub(crate) fn leak_check_at_unload() {
    let mut k = lock();
    let leaked: Vec<(usize, &'static str)> = k
        .objects
        .iter()
        .filter(|(_, o)| !matches!(o.kind, Kind::Driver))
        .map(|(h, o)| (*h, o.kind.name()))
        .collect();
    for (h, name) in leaked {
        violation_locked(
            &mut k,
            Rule::ObjectLeaked,
            format!("{name} {h:#x} still alive when the driver unloaded"),
        );
    }
    let all: Vec<usize> = k.objects.keys().copied().collect();
    for h in all {
        if let Some(o) = k.objects.remove(&h) {
            free_context(o.context);
            if let Kind::Request(r) = o.kind {
                // A request never completed: its buffer goes with it.
                // SAFETY: allocated by `request::buffer` with this layout; the request is gone.
                unsafe { std::alloc::dealloc(r.buffer.0, r.layout) };
            }
        }
    }
}
