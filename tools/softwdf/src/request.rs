//! Requests: the framework's `WDFREQUEST` calls and the I/O manager's cancel.
//!
//! KMDF behaviour followed (microsoft/Windows-Driver-Frameworks, MIT;
//! `src/framework/shared/core/fxrequest.cpp`, `fxrequestapi.cpp`):
//! - `WdfRequestMarkCancelableEx` on a request already cancelled returns `STATUS_CANCELLED`
//!   and does not call the cancel routine (the driver completes it); marking a request that is
//!   already marked is a verifier error (`FxRequest::MarkCancelable`,
//!   `FxRequest::VerifyMarkCancelable`);
//! - `WdfRequestUnmarkCancelable` returns `STATUS_CANCELLED` when the cancel routine has run or
//!   is about to (the routine owns the completion), `STATUS_SUCCESS` otherwise; unmarking a
//!   request that is not marked is a verifier error (`FxRequest::UnmarkCancelable`,
//!   `FxRequest::VerifyUnmarkCancelable`);
//! - the cancel routine is called once, when the I/O manager cancels a request marked
//!   cancelable (`FxRequest::_IrpCancelRoutine`), on the cancelling thread at its IRQL;
//! - completing a request still marked cancelable is a verifier error; it completes anyway
//!   (`FxRequest::CompleteInternal`); completing from the cancel routine is the rule;
//! - completing a request twice is a verifier error (`FxRequest::Complete`,
//!   `FxRequest::VerifyCompleteInternal`); a completed framework request is deleted, so its
//!   handle is dead afterwards;
//! - for `METHOD_BUFFERED`, the input and output share the system buffer, and
//!   `WdfRequestRetrieve{Input,Output}Buffer` fail with `STATUS_BUFFER_TOO_SMALL` when the
//!   buffer is empty or shorter than asked (`FxRequest::GetDeviceControlOutputMemoryObject`,
//!   `FxRequestSystemBuffer`, `fxrequestapi.cpp`: `WdfRequestRetrieveOutputBuffer`).

use std::alloc::Layout;

use wdk_sys::{
    _WDF_REQUEST_TYPE, IO_SECURITY_CONTEXT, NTSTATUS, PFN_WDF_REQUEST_CANCEL, PVOID, ULONG_PTR,
    WDF_REQUEST_PARAMETERS, WDFFILEOBJECT, WDFREQUEST,
};

use crate::kernel::{
    DISPATCH_LEVEL, Kernel, PASSIVE_LEVEL, Rule, SendPtr, at_irql, changed, lock, violation_locked,
};
use crate::objects::{
    Kind, STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST, STATUS_PENDING,
    handle_ptr,
};

/// What a request asks.
pub(crate) enum ReqKind {
    /// `IRP_MJ_CREATE`, with the access the caller asked for.
    Create,
    /// `IRP_MJ_DEVICE_CONTROL`, `METHOD_BUFFERED`.
    DeviceControl {
        code: u32,
        input_len: usize,
        output_len: usize,
    },
}

/// Who owns a request's completion, as far as cancellation goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cancel {
    /// Not marked cancelable.
    NotMarked,
    /// Marked, with this routine.
    Marked(unsafe extern "C" fn(WDFREQUEST)),
    /// The cancel routine was called (or is being called): it owns the completion.
    RoutineCalled,
}

/// A request's state.
pub(crate) struct RequestData {
    pub(crate) file: usize,
    pub(crate) kind: ReqKind,
    /// The system buffer (`METHOD_BUFFERED`: input copied in, output copied out), or a create's
    /// `IO_SECURITY_CONTEXT`.
    pub(crate) buffer: SendPtr<u8>,
    pub(crate) layout: Layout,
    pub(crate) cancel: Cancel,
    /// The I/O manager asked to cancel it.
    pub(crate) cancelled: bool,
}

/// What the caller gets back when a request completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The status.
    pub status: NTSTATUS,
    /// `IoStatus.Information`.
    pub information: usize,
    /// The output the I/O manager copied back (`METHOD_BUFFERED`: `information` bytes of the
    /// system buffer, unless the status is an error).
    pub output: Vec<u8>,
}

/// Allocate a request's zeroed buffer of `len` bytes (at least one).
pub(crate) fn buffer(len: usize) -> (SendPtr<u8>, Layout) {
    let layout = Layout::from_size_align(len.max(size_of::<IO_SECURITY_CONTEXT>()), 16)
        .expect("a request buffer layout");
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "softwdf: out of memory for a request buffer");
    (SendPtr(p), layout)
}

fn request_mut<'k>(k: &'k mut Kernel, h: usize, function: &str) -> Option<&'k mut RequestData> {
    if k.completed.contains(&h) {
        violation_locked(
            k,
            Rule::RequestCompletedTwice,
            format!("{function}: request {h:#x} was already completed"),
        );
        return None;
    }
    if !crate::objects::check_kind(k, h, "WDFREQUEST", function) {
        return None;
    }
    match k.objects.get_mut(&h).map(|o| &mut o.kind) {
        Some(Kind::Request(r)) => Some(r),
        _ => None,
    }
}

/// `WdfRequestMarkCancelableEx`.
pub(crate) fn mark_cancelable(request: WDFREQUEST, routine: PFN_WDF_REQUEST_CANCEL) -> NTSTATUS {
    if !crate::kernel::require_irql(DISPATCH_LEVEL, "WdfRequestMarkCancelableEx") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let mut k = lock();
    let h = request.addr();
    let Some(r) = request_mut(&mut k, h, "WdfRequestMarkCancelableEx") else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let Some(routine) = routine else {
        violation_locked(
            &mut k,
            Rule::InvalidRequest,
            format!("WdfRequestMarkCancelableEx: request {h:#x} with no cancel routine"),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    if !matches!(r.cancel, Cancel::NotMarked) {
        let was = r.cancel;
        violation_locked(
            &mut k,
            Rule::MarkedCancelableTwice,
            format!("WdfRequestMarkCancelableEx: request {h:#x} is already {was:?}"),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if r.cancelled {
        return STATUS_CANCELLED;
    }
    r.cancel = Cancel::Marked(routine);
    0
}

/// `WdfRequestUnmarkCancelable`.
pub(crate) fn unmark_cancelable(request: WDFREQUEST) -> NTSTATUS {
    if !crate::kernel::require_irql(DISPATCH_LEVEL, "WdfRequestUnmarkCancelable") {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let mut k = lock();
    let h = request.addr();
    let Some(r) = request_mut(&mut k, h, "WdfRequestUnmarkCancelable") else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    match r.cancel {
        Cancel::Marked(_) => {
            r.cancel = Cancel::NotMarked;
            0
        }
        Cancel::RoutineCalled => STATUS_CANCELLED,
        Cancel::NotMarked => {
            violation_locked(
                &mut k,
                Rule::UnmarkedNotCancelable,
                format!("WdfRequestUnmarkCancelable: request {h:#x} is not marked cancelable"),
            );
            STATUS_INVALID_DEVICE_REQUEST
        }
    }
}

/// `NT_ERROR(status)`.
fn nt_error(status: NTSTATUS) -> bool {
    status.cast_unsigned() >> 30 == 3
}

/// `WdfRequestComplete` / `WdfRequestCompleteWithInformation`.
pub(crate) fn complete(
    request: WDFREQUEST,
    status: NTSTATUS,
    information: ULONG_PTR,
    function: &str,
) {
    if !crate::kernel::require_irql(DISPATCH_LEVEL, "WdfRequestComplete") {
        return;
    }
    if std::env::var_os("SOFTWDF_TRACE").is_some() {
        eprintln!(
            "softwdf: {function}({:#x}, {status:#x}, {information})",
            request.addr()
        );
    }
    let mut k = lock();
    let h = request.addr();
    if request_mut(&mut k, h, function).is_none() {
        return;
    }
    if status == STATUS_PENDING {
        violation_locked(
            &mut k,
            Rule::BadCompletion,
            format!("{function}: request {h:#x} completed with STATUS_PENDING"),
        );
        return;
    }
    if let Some(Kind::Request(r)) = k.objects.get(&h).map(|o| &o.kind)
        && matches!(r.cancel, Cancel::Marked(_))
    {
        // KMDF's verifier breaks ("call WdfRequestUnmarkCancelable first") and completes it
        // anyway (`FxRequest::CompleteInternal`); the I/O manager would then bugcheck on an
        // IRP completed with its cancel routine set.
        violation_locked(
            &mut k,
            Rule::CompletedWhileCancelable,
            format!("{function}: request {h:#x} is still marked cancelable"),
        );
    }
    let Some(object) = k.objects.remove(&h) else {
        return;
    };
    if let Some(p) = object.parent
        && let Some(po) = k.objects.get_mut(&p)
    {
        po.children.retain(|c| *c != h);
    }
    let Kind::Request(r) = object.kind else {
        return;
    };
    let information = usize::try_from(information).unwrap_or(usize::MAX);
    let mut output = Vec::new();
    if let ReqKind::DeviceControl { output_len, .. } = r.kind {
        let mut copied = information;
        // KMDF and the I/O manager look at Information only for a status whose output
        // is copied back (not an error).
        if information > output_len && !nt_error(status) {
            violation_locked(
                &mut k,
                Rule::BadCompletion,
                format!(
                    "{function}: request {h:#x} completed with Information {information} > OutputBufferLength {output_len}"
                ),
            );
            copied = output_len;
        }
        if !nt_error(status) {
            // SAFETY: the system buffer holds at least `output_len` >= `copied` bytes; the request
            // is completed, so the driver no longer writes it.
            output = unsafe { std::slice::from_raw_parts(r.buffer.0, copied) }.to_vec();
        }
    }
    // SAFETY: allocated by `buffer` with this layout; the request is gone, freed once.
    unsafe { std::alloc::dealloc(r.buffer.0, r.layout) };
    k.completed.insert(h);
    k.results.insert(
        h,
        Completion {
            status,
            information,
            output,
        },
    );
    crate::io::release_file_reference(&mut k, r.file);
    drop(k);
    changed();
}

/// The I/O manager cancels `h` (`CancelIoEx`): the cancel routine runs if the request is
/// marked cancelable; otherwise a later mark says `STATUS_CANCELLED`. The routine runs on the
/// cancelling thread at its IRQL (`PASSIVE_LEVEL` for `CancelIoEx` from user mode, and KMDF
/// moves a passive queue's cancel to a passive worker otherwise: `FxRequest::_IrpCancelRoutine`,
/// `FxIoQueue::CancelForQueue`).
pub(crate) fn cancel(h: usize) {
    let routine = {
        let mut k = lock();
        if k.completed.contains(&h) {
            return;
        }
        let Some(Kind::Request(r)) = k.objects.get_mut(&h).map(|o| &mut o.kind) else {
            return;
        };
        r.cancelled = true;
        match r.cancel {
            Cancel::Marked(routine) => {
                r.cancel = Cancel::RoutineCalled;
                Some(routine)
            }
            _ => None,
        }
    };
    if let Some(routine) = routine {
        at_irql(PASSIVE_LEVEL, "EvtRequestCancel", || {
            // SAFETY: the driver's cancel routine for its live, uncompleted request; the
            // request stays valid until the driver completes it.
            unsafe { routine(handle_ptr(h)) }
        });
    }
}

/// `WdfRequestRetrieveInputBuffer` / `WdfRequestRetrieveOutputBuffer`.
///
/// # Safety
/// `buffer` and `length` are null or valid for writes.
pub(crate) unsafe fn retrieve(
    request: WDFREQUEST,
    minimum: usize,
    buffer: *mut PVOID,
    length: *mut usize,
    output: bool,
) -> NTSTATUS {
    let function = if output {
        "WdfRequestRetrieveOutputBuffer"
    } else {
        "WdfRequestRetrieveInputBuffer"
    };
    if !crate::kernel::require_irql(DISPATCH_LEVEL, function) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let mut k = lock();
    let h = request.addr();
    let Some(r) = request_mut(&mut k, h, function) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let ReqKind::DeviceControl {
        input_len,
        output_len,
        ..
    } = r.kind
    else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let len = if output { output_len } else { input_len };
    if len == 0 || len < minimum {
        return STATUS_BUFFER_TOO_SMALL;
    }
    if buffer.is_null() {
        violation_locked(
            &mut k,
            Rule::InvalidRequest,
            format!("{function}: Buffer is NULL"),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let p = r.buffer.0;
    // SAFETY: valid for writes (caller).
    unsafe { buffer.write(p.cast()) };
    if !length.is_null() {
        // SAFETY: valid for writes (caller).
        unsafe { length.write(len) };
    }
    0
}

/// `WdfRequestGetFileObject`.
pub(crate) fn file_object(request: WDFREQUEST) -> WDFFILEOBJECT {
    let mut k = lock();
    let h = request.addr();
    match request_mut(&mut k, h, "WdfRequestGetFileObject") {
        Some(r) => handle_ptr(r.file),
        None => std::ptr::null_mut(),
    }
}

/// `WdfRequestGetParameters`.
///
/// # Safety
/// `params` is valid for reads and writes of a `WDF_REQUEST_PARAMETERS`.
pub(crate) unsafe fn parameters(request: WDFREQUEST, params: *mut WDF_REQUEST_PARAMETERS) {
    let mut k = lock();
    let h = request.addr();
    // SAFETY: valid (caller).
    let p = unsafe { &mut *params };
    if usize::from(p.Size) != size_of::<WDF_REQUEST_PARAMETERS>() {
        let size = p.Size;
        violation_locked(
            &mut k,
            Rule::BadStructureSize,
            format!("WdfRequestGetParameters: Size {size}"),
        );
        return;
    }
    let Some(r) = request_mut(&mut k, h, "WdfRequestGetParameters") else {
        return;
    };
    let size = p.Size;
    *p = WDF_REQUEST_PARAMETERS {
        Size: size,
        ..WDF_REQUEST_PARAMETERS::default()
    };
    match r.kind {
        ReqKind::Create => {
            p.Type = _WDF_REQUEST_TYPE::WdfRequestTypeCreate;
            p.Parameters.Create.SecurityContext = r.buffer.0.cast();
        }
        ReqKind::DeviceControl {
            code,
            input_len,
            output_len,
        } => {
            p.Type = _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl;
            p.Parameters.DeviceIoControl.IoControlCode = code;
            p.Parameters.DeviceIoControl.InputBufferLength = input_len;
            p.Parameters.DeviceIoControl.OutputBufferLength = output_len;
        }
    }
}
