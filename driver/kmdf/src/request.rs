//! The request wrapper: every `WDFREQUEST` call of the shell, behind three types.
//!
//! - [`Request`]: a request WDF presented to a callback, which owns it until it completes it or
//!   hands it to the core. It gives the file object, a bounded copy of the input (on the
//!   stack: never more than the longest request record), and completion.
//! - [`KmRequest`]: the core's [`PendedRequest`] port over the same request, made from a
//!   [`Request`] once its input is copied: the output buffer, cancelability, and completion
//!   with information.
//! - [`RequestRef`]: a request WDF passes to its cancel routine, which does not own it (the
//!   core's [`KmRequest`] does): the file object and the token the core finds the request by.
//!
//! The cancel routine is passed in as a value ([`CancelRoutine`]) by whoever pends the request,
//! so this module needs nothing from the device that owns the queue.

use core::marker::PhantomData;
use core::ptr::null_mut;

use ndkdisc_core::ports::{Cancelled, PendedRequest};
use ndkpi_sys::NtStatus;
use wdk::nt_success;
use wdk_sys::{
    _WDF_REQUEST_TYPE, ACCESS_MASK, FILE_WRITE_DATA, GENERIC_ALL, GENERIC_WRITE, MAXIMUM_ALLOWED,
    NTSTATUS, PFN_WDF_REQUEST_CANCEL, PVOID, ULONG_PTR, WDF_REQUEST_PARAMETERS, WDFFILEOBJECT,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::wdf::wdf_size_ushort;

/// The `EvtRequestCancel` routine a pended request is marked cancelable with.
pub(crate) type CancelRoutine = unsafe extern "C" fn(WDFREQUEST);

/// A request's token: its handle, unique while the request exists. The cancel routine looks
/// the request up with the same value.
#[allow(
    clippy::cast_possible_truncation,
    reason = "pointers are 64-bit on both supported targets"
)]
fn token_of(request: WDFREQUEST) -> u64 {
    request.addr() as u64
}

/// The file object `request` was sent to. `// IRQL: <= DISPATCH_LEVEL`.
///
/// # Safety
/// `request` is a live request of this driver.
unsafe fn file_object_of(request: WDFREQUEST) -> WDFFILEOBJECT {
    let file: WDFFILEOBJECT;
    // SAFETY: a live request of this driver (caller). Any IRQL <= DISPATCH_LEVEL.
    unsafe { file = call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
    file
}

/// Bytes of an IOCTL's input the driver copies at most: the longest request record, and one
/// byte more to stand for any longer input ([`Request::copy_input`]).
pub(crate) const INPUT_COPY: usize = ndkdisc_abi::MAX_REQUEST_SIZE + 1;

/// A request WDF presented to a callback of this driver, not yet completed. The value is the
/// callback's ownership of the request: it ends in [`complete`](Self::complete) or
/// [`into_pended`](Self::into_pended), each of which consumes it.
#[must_use = "a presented request is completed or handed to the core"]
pub(crate) struct Request {
    request: WDFREQUEST,
}

impl Request {
    /// # Safety
    /// WDF presented `request` to the calling callback (`EvtDeviceFileCreate`,
    /// `EvtIoDeviceControl`), which has neither completed it nor made another value for it.
    pub(crate) unsafe fn presented(request: WDFREQUEST) -> Self {
        // INVARIANT: the caller owns a live, uncompleted request, and this is its only value.
        Self { request }
    }

    /// The file object the request was sent to; live while the request is.
    /// `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn file_object(&self) -> WDFFILEOBJECT {
        // SAFETY: a live request of this driver (type invariant).
        unsafe { file_object_of(self.request) }
    }

    /// Whether a create request opens its file object for writing: the access it asked for (or
    /// was already granted) includes `FILE_WRITE_DATA`, the right the I/O manager checks a
    /// control code's `FILE_WRITE_ACCESS` against — or `GENERIC_WRITE`, `GENERIC_ALL` or
    /// `MAXIMUM_ALLOWED`, which give it to the only callers the device's security descriptor
    /// admits (SYSTEM and Administrators, all access). `false` for any other request, or
    /// without a security context. `// IRQL: PASSIVE_LEVEL` (`EvtDeviceFileCreate`).
    pub(crate) fn opens_for_write(&self) -> bool {
        // WDF_REQUEST_PARAMETERS_INIT: zeroed, with its size.
        let mut params = WDF_REQUEST_PARAMETERS {
            Size: const { wdf_size_ushort::<WDF_REQUEST_PARAMETERS>() },
            ..WDF_REQUEST_PARAMETERS::default()
        };
        // SAFETY: a live request of this driver (type invariant); `params` is initialised as
        // WDF_REQUEST_PARAMETERS_INIT does and WDF writes only into it. <= DISPATCH_LEVEL.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestGetParameters,
                self.request,
                &raw mut params
            );
        }
        if params.Type != _WDF_REQUEST_TYPE::WdfRequestTypeCreate {
            return false;
        }
        // SAFETY: `Create` is the union's member for a create request (`Type`, just checked),
        // and every member is plain data.
        let context = unsafe { params.Parameters.Create.SecurityContext };
        // SAFETY: the I/O manager's security context of this create operation, null or valid
        // until the create request completes, which this value's owner has not done yet (type
        // invariant); only read.
        let Some(context) = (unsafe { context.as_ref() }) else {
            return false;
        };
        let mut access: ACCESS_MASK = context.DesiredAccess;
        // SAFETY: the same operation's access state, null or valid as long as the context;
        // only read.
        if let Some(state) = unsafe { context.AccessState.as_ref() } {
            access |= state.PreviouslyGrantedAccess;
        }
        access & (FILE_WRITE_DATA | GENERIC_WRITE | GENERIC_ALL | MAXIMUM_ALLOWED) != 0
    }

    /// The input, copied into `buffer` (`METHOD_BUFFERED` input and output share one system
    /// buffer, so the input is copied before the output is handed out as `&mut [u8]` by
    /// [`into_pended`](Self::into_pended)). Only an input no longer than the longest request
    /// record is copied; a longer one, which no operation accepts, is neither copied nor
    /// allocated for: the whole `buffer` (one byte longer than every record) stands for it, and
    /// the parse refuses it with the status of any wrong length. Empty when there is no input
    /// or WDF does not hand it out. Never allocates. `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn copy_input<'b>(
        &self,
        input_length: usize,
        buffer: &'b mut [u8; INPUT_COPY],
    ) -> &'b [u8] {
        if input_length == 0 {
            return &buffer[..0];
        }
        if input_length >= INPUT_COPY {
            return &buffer[..];
        }
        let mut input: PVOID = null_mut();
        let mut length = 0usize;
        let status: NTSTATUS;
        // SAFETY: a live request of this driver (type invariant); valid out-pointers.
        unsafe {
            status = call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                self.request,
                0,
                &raw mut input,
                &raw mut length
            );
        }
        if !nt_success(status) || input.is_null() {
            return &buffer[..0];
        }
        // WDF reports the request's input length; never copy more than the buffer holds (the
        // `min`s keep `split_at_mut` in range).
        let n = length.min(input_length).min(INPUT_COPY);
        let (copy, _) = buffer.split_at_mut(n);
        // SAFETY: WDF returned `length` >= `n` readable bytes of the system buffer, not
        // otherwise referenced while this slice lives (the output is only handed out by
        // `into_pended`, which consumes the request).
        copy.copy_from_slice(unsafe { core::slice::from_raw_parts(input.cast::<u8>(), n) });
        copy
    }

    /// Complete the request with `status` (no information). `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn complete(self, status: NtStatus) {
        // SAFETY: the request is this value's to complete (type invariant), once: `self` is
        // consumed. Allowed at <= DISPATCH_LEVEL.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, self.request, status.0) };
    }

    /// Hand the request to the core: its output buffer (when it has `output_length > 0` bytes
    /// of it and WDF hands it out; otherwise none), and `cancel` as the routine to mark it
    /// cancelable with. `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn into_pended(self, output_length: usize, cancel: CancelRoutine) -> KmRequest {
        let mut output: PVOID = null_mut();
        let mut output_len = 0usize;
        if output_length > 0 {
            let status: NTSTATUS;
            // SAFETY: a live request of this driver (type invariant); valid out-pointers.
            unsafe {
                status = call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveOutputBuffer,
                    self.request,
                    0,
                    &raw mut output,
                    &raw mut output_len
                );
            }
            if !nt_success(status) {
                output = null_mut();
                output_len = 0;
            }
        }
        // INVARIANT: the request is live and uncompleted, owned by this value alone (`self` is
        // consumed); `output` is its output buffer of `output_len` bytes, or null, and no input
        // slice is left (`copy_input` returns a copy).
        KmRequest {
            request: self.request,
            output: output.cast(),
            output_len: if output.is_null() { 0 } else { output_len },
            cancel: Some(cancel),
        }
    }
}

/// [`PendedRequest`] over a `WDFREQUEST` of the default queue, `METHOD_BUFFERED`.
pub struct KmRequest {
    request: WDFREQUEST,
    output: *mut u8,
    output_len: usize,
    cancel: PFN_WDF_REQUEST_CANCEL,
}

// SAFETY: a WDFREQUEST may be completed, marked and unmarked from any thread; the output
// buffer is the request's nonpaged system buffer, owned with the request.
unsafe impl Send for KmRequest {}

impl PendedRequest for KmRequest {
    fn token(&self) -> u64 {
        token_of(self.request)
    }

    fn output(&mut self) -> &mut [u8] {
        if self.output.is_null() {
            return &mut [];
        }
        // SAFETY: the request's system buffer of `output_len` bytes, valid until completion
        // (which consumes `self`) and referred to by nothing else (type invariant).
        unsafe { core::slice::from_raw_parts_mut(self.output, self.output_len) }
    }

    // IRQL: <= DISPATCH_LEVEL.
    fn mark_cancelable(&mut self) -> Result<(), Cancelled> {
        let status: NTSTATUS;
        // SAFETY: the request is owned by the driver and not completed (type invariant); the
        // cancel routine has the EVT_WDF_REQUEST_CANCEL signature (`CancelRoutine`). Allowed
        // at <= DISPATCH_LEVEL.
        unsafe {
            status = call_unsafe_wdf_function_binding!(
                WdfRequestMarkCancelableEx,
                self.request,
                self.cancel
            );
        }
        // STATUS_CANCELLED: already cancelled, the routine will not run; the caller completes.
        if NtStatus(status) == NtStatus::SUCCESS {
            Ok(())
        } else {
            Err(Cancelled)
        }
    }

    // IRQL: <= DISPATCH_LEVEL.
    fn unmark_cancelable(&mut self) -> Result<(), Cancelled> {
        let status: NTSTATUS;
        // SAFETY: a driver-owned request that was marked cancelable (the core unmarks only
        // what it marked). Allowed at <= DISPATCH_LEVEL.
        unsafe {
            status = call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, self.request);
        }
        // STATUS_CANCELLED: the cancel routine has run or will run and completes it.
        if NtStatus(status) == NtStatus::CANCELLED {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    // IRQL: <= DISPATCH_LEVEL.
    fn complete(self, status: NtStatus, information: usize) {
        // SAFETY: the request is owned by the driver and completed exactly once (this consumes
        // the only value for it). Allowed at <= DISPATCH_LEVEL.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCompleteWithInformation,
                self.request,
                status.0,
                information as ULONG_PTR
            );
        }
    }
}

/// A request WDF passed to this driver's cancel routine, borrowed for the callback (`'a`): the
/// core's [`KmRequest`] for it owns it and completes it.
#[derive(Clone, Copy)]
pub(crate) struct RequestRef<'a> {
    request: WDFREQUEST,
    callback: PhantomData<&'a ()>,
}

impl RequestRef<'_> {
    /// # Safety
    /// `request` is a request of this driver that stays live for the value's lifetime (a
    /// cancel routine's argument, used within the routine).
    pub(crate) unsafe fn passed(request: WDFREQUEST) -> Self {
        // INVARIANT: live for the lifetime (caller).
        Self {
            request,
            callback: PhantomData,
        }
    }

    /// The file object the request was sent to; the request holds it alive.
    /// `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn file_object(self) -> WDFFILEOBJECT {
        // SAFETY: a live request of this driver (type invariant).
        unsafe { file_object_of(self.request) }
    }

    /// The token the core knows the pended request by ([`PendedRequest::token`]).
    pub(crate) fn token(self) -> u64 {
        token_of(self.request)
    }
}
