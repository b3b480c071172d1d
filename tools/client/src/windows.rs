//! The device backend: `\\.\NdkDisc` (or the device interface) opened for overlapped I/O, one
//! `DeviceIoControl` per operation, `GetOverlappedResultEx` to wait with a timeout, `CancelIoEx`
//! to cancel. This module is the only place in the client with `unsafe`: every block is one
//! Win32 call whose pointer arguments point into memory this module owns and keeps alive for as
//! long as the call (or, for an overlapped request, the I/O) can use it.
//!
//! An async caller ([`crate::asynchronous`]) is woken through the thread pool: the request's
//! event (set by the I/O manager when the request completes) is waited for with
//! `RegisterWaitForSingleObject`, whose callback wakes the caller's waker.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ndkdisc_abi::{DEVICE_INTERFACE_GUID, DOS_DEVICE_PATH, Ioctl};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_BUFFER_SMALL, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_IO_INCOMPLETE, ERROR_IO_PENDING,
    ERROR_PATH_NOT_FOUND, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, DeviceIoControl, GetOverlappedResultEx, OVERLAPPED,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, RegisterWaitForSingleObject, UnregisterWaitEx, WT_EXECUTEONLYONCE,
};
use windows_sys::core::GUID;

use crate::{Completed, Error, InFlight, NtStatus, OpenHandle, Ready, Transport};

/// A kernel handle this process owns, closed once on drop.
struct OwnedHandle(HANDLE);

// SAFETY: a kernel handle is a process-wide value; any thread may use or close it.
unsafe impl Send for OwnedHandle {}
// SAFETY: the Win32 calls made through a shared handle are themselves thread-safe.
unsafe impl Sync for OwnedHandle {}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a valid handle this value owns (constructors reject null and
        // INVALID_HANDLE_VALUE) and nothing uses it after this drop.
        unsafe { CloseHandle(self.0) };
    }
}

/// An open ndkdisc device.
pub(crate) struct Device {
    handle: OpenHandle<Arc<OwnedHandle>>,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The present device interfaces of ndkdisc's interface GUID, as NUL-terminated wide strings.
fn interface_paths() -> Vec<Vec<u16>> {
    let g = DEVICE_INTERFACE_GUID;
    let guid = GUID {
        data1: g.data1,
        data2: g.data2,
        data3: g.data3,
        data4: g.data4,
    };
    for _ in 0..4 {
        let mut len = 0u32;
        // SAFETY: `len` and `guid` are live locals; a null device id means "all devices".
        let cr = unsafe {
            CM_Get_Device_Interface_List_SizeW(
                &raw mut len,
                &raw const guid,
                core::ptr::null(),
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr != CR_SUCCESS || len <= 1 {
            return Vec::new();
        }
        let mut buf = vec![0u16; len as usize];
        // SAFETY: `buf` has room for `len` UTF-16 units, the length passed; `guid` is live.
        let cr = unsafe {
            CM_Get_Device_Interface_ListW(
                &raw const guid,
                core::ptr::null(),
                buf.as_mut_ptr(),
                len,
                CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
            )
        };
        if cr == CR_BUFFER_SMALL {
            continue; // an interface arrived between the two calls
        }
        if cr != CR_SUCCESS {
            return Vec::new();
        }
        return buf
            .split(|&c| c == 0)
            .filter(|p| !p.is_empty())
            .map(|p| p.iter().copied().chain(Some(0)).collect())
            .collect();
    }
    Vec::new()
}

fn last_error() -> u32 {
    // SAFETY: GetLastError has no preconditions.
    unsafe { GetLastError() }
}

/// The NTSTATUS behind a Win32 error of a request that failed before it pended (the
/// `OVERLAPPED` is not written then).
fn status_of_win32(code: u32) -> NtStatus {
    match code {
        5 => NtStatus::ACCESS_DENIED,
        87 => NtStatus::INVALID_PARAMETER,
        1 => NtStatus::INVALID_DEVICE_REQUEST,
        122 => NtStatus::BUFFER_TOO_SMALL,
        995 => NtStatus::CANCELLED,
        1168 => NtStatus::NOT_FOUND,
        1450 => NtStatus::INSUFFICIENT_RESOURCES,
        1816 => NtStatus::QUOTA_EXCEEDED,
        1306 => NtStatus::REVISION_MISMATCH,
        50 => NtStatus::NOT_SUPPORTED,
        _ => NtStatus::UNSUCCESSFUL,
    }
}

fn open_path(path: &[u16], shown: &str, write: bool) -> Result<OwnedHandle, Error> {
    let access = GENERIC_READ | if write { GENERIC_WRITE } else { 0 };
    // SAFETY: `path` is a NUL-terminated UTF-16 string that outlives the call; null security
    // attributes and template are allowed.
    let h = unsafe {
        CreateFileW(
            path.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            core::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            core::ptr::null_mut(),
        )
    };
    if h != INVALID_HANDLE_VALUE && !h.is_null() {
        return Ok(OwnedHandle(h));
    }
    match last_error() {
        ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => Err(Error::DeviceMissing {
            path: shown.to_owned(),
            detail: "install the driver (pnputil /add-driver ndkdisc.inf /install) and create its device"
                .into(),
        }),
        ERROR_ACCESS_DENIED => Err(Error::AccessDenied {
            op: "open",
            status: NtStatus::ACCESS_DENIED,
        }),
        code => Err(Error::System { op: "open", code }),
    }
}

impl Device {
    /// Open `path`, else the first present device interface, else `\\.\NdkDisc`; with the
    /// path as shown to the user.
    pub(crate) fn open(path: Option<&str>, write: bool) -> Result<(Self, String), Error> {
        let (handle, shown) = if let Some(p) = path {
            (open_path(&wide(p), p, write)?, p.to_owned())
        } else if let Some(p) = interface_paths().first() {
            let shown = String::from_utf16_lossy(&p[..p.len() - 1]);
            (open_path(p, &shown, write)?, shown)
        } else {
            (
                open_path(&wide(DOS_DEVICE_PATH), DOS_DEVICE_PATH, write)?,
                DOS_DEVICE_PATH.to_owned(),
            )
        };
        let device = Self {
            handle: OpenHandle::new(Arc::new(handle)),
        };
        Ok((device, shown))
    }
}

/// One overlapped `DeviceIoControl` in flight. The `OVERLAPPED` and the output buffer are
/// heap allocations that stay put and alive until the I/O has completed: `Drop` cancels an
/// unfinished request and waits for its completion before freeing them.
struct DeviceRequest {
    device: Arc<OwnedHandle>,
    overlapped: Box<OVERLAPPED>,
    /// The OVERLAPPED's event; closed after the I/O completed (field order: dropped last).
    event: OwnedHandle,
    output: Vec<u8>,
    done: bool,
    /// An async caller's waker, for the thread-pool callback.
    slot: Option<Arc<WakeSlot>>,
    /// The thread-pool wait on `event` and the slot reference it holds (from
    /// `Arc::into_raw`), until unregistered.
    registered: Option<(HANDLE, *const WakeSlot)>,
}

/// Where the thread-pool callback finds the waker to wake.
struct WakeSlot(Mutex<Option<Waker>>);

impl WakeSlot {
    fn set(&self, waker: &Waker) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
    }
}

std::thread_local! {
    /// The slot whose callback this thread is running, if any: a request dropped by the waker
    /// it wakes (an executor that polls inline) must not wait for that very callback to end.
    static IN_CALLBACK: core::cell::Cell<*const WakeSlot> = const { core::cell::Cell::new(core::ptr::null()) };
}

/// The thread-pool callback of a request's event: the request completed; wake its caller.
unsafe extern "system" fn wake_async_caller(context: *mut core::ffi::c_void, _timed_out: bool) {
    let context = context.cast_const().cast::<WakeSlot>();
    // SAFETY: `context` is the pointer `Arc::into_raw` gave when the wait was registered; the
    // registration's reference is given back only after `UnregisterWaitEx` (blocking, or from
    // this callback itself, below), so it is alive now. It is borrowed, not taken: the
    // `ManuallyDrop` never releases it.
    let registered = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw(context) });
    // A count of the callback's own, so the slot outlives the callback whatever the wake does.
    let slot = Arc::clone(&registered);
    let waker = slot.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(w) = waker {
        IN_CALLBACK.with(|c| c.set(context));
        w.wake();
        IN_CALLBACK.with(|c| c.set(core::ptr::null()));
    }
}

// SAFETY: the raw pointers inside (the OVERLAPPED's event handle, the buffers, the thread-pool
// wait and its slot reference) are owned by this value and used by one thread at a time through
// `&mut self`; kernel handles work from any thread, and the slot is shared only through its
// `Arc`.
unsafe impl Send for DeviceRequest {}

impl DeviceRequest {
    /// `GetOverlappedResultEx` with `ms`; `Some` once the request has completed.
    fn poll(&mut self, ms: u32) -> Option<Completed> {
        if self.done {
            return None;
        }
        let mut n = 0u32;
        // SAFETY: the device handle is open (we hold a reference), `overlapped` is the one
        // passed to DeviceIoControl and still alive, `n` is a live local.
        let ok = unsafe {
            GetOverlappedResultEx(
                self.device.0,
                &raw const *self.overlapped,
                &raw mut n,
                ms,
                0,
            )
        };
        if ok == 0 {
            let err = last_error();
            if err == WAIT_TIMEOUT || err == ERROR_IO_INCOMPLETE {
                return None;
            }
        }
        self.done = true;
        // The I/O has completed: `Internal` holds its NTSTATUS (the low 32 bits).
        #[expect(
            clippy::cast_possible_truncation,
            reason = "NTSTATUS is the low 32 bits"
        )]
        let status = NtStatus((self.overlapped.Internal as u32).cast_signed());
        let mut output = core::mem::take(&mut self.output);
        output.truncate(n as usize);
        Some(Completed { status, output })
    }
}

impl DeviceRequest {
    /// Give back the thread-pool wait, if registered, once no callback of it can run.
    fn unregister(&mut self) {
        if let Some((wait, context)) = self.registered.take() {
            // From within this wait's own callback (its wake dropped the request) the call
            // must not wait for the callback to end: it is this one, which holds a count of the
            // slot until it returns.
            let own_callback = IN_CALLBACK.with(|c| c.get() == context);
            let completion = if own_callback {
                core::ptr::null_mut()
            } else {
                INVALID_HANDLE_VALUE
            };
            // SAFETY: `wait` came from RegisterWaitForSingleObject and is unregistered once
            // (taken out of `registered`); INVALID_HANDLE_VALUE makes the call wait for a
            // callback in progress to end; from within that callback, null makes it return at
            // once (the one-shot wait fires no other callback).
            unsafe { UnregisterWaitEx(wait, completion) };
            // SAFETY: the registration's reference, from `Arc::into_raw`; no callback can use it
            // any more.
            drop(unsafe { Arc::from_raw(context) });
        }
    }
}

impl InFlight for DeviceRequest {
    fn wait(&mut self, limit: Duration) -> Option<Completed> {
        let ms = u32::try_from(limit.as_millis())
            .unwrap_or(u32::MAX - 1)
            .min(u32::MAX - 1);
        self.poll(ms)
    }

    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Completed> {
        if let Some(done) = self.poll(0) {
            return Poll::Ready(done);
        }
        let slot = Arc::clone(
            self.slot
                .get_or_insert_with(|| Arc::new(WakeSlot(Mutex::new(None)))),
        );
        slot.set(cx.waker());
        if self.registered.is_none() {
            let context = Arc::into_raw(Arc::clone(&slot));
            let mut wait: HANDLE = core::ptr::null_mut();
            // SAFETY: `wait` is a live local for the new wait's handle; the event is open until
            // this request is dropped, which unregisters the wait first; `context` is a counted
            // reference to the slot that the registration keeps until `unregister`; one-shot:
            // the event is set once, by the completion.
            let ok = unsafe {
                RegisterWaitForSingleObject(
                    &raw mut wait,
                    self.event.0,
                    Some(wake_async_caller),
                    context.cast(),
                    INFINITE,
                    WT_EXECUTEONLYONCE,
                )
            };
            if ok == 0 {
                // SAFETY: the registration failed, so the reference was not handed over.
                drop(unsafe { Arc::from_raw(context) });
                // No notification can be had: ask to be polled again.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.registered = Some((wait, context));
        }
        // It may have completed before the waker was in place.
        self.poll(0).map_or(Poll::Pending, Poll::Ready)
    }

    fn cancel(&mut self) {
        if !self.done {
            // SAFETY: the handle is open and `overlapped` identifies our request, still in
            // flight or just completed (then CancelIoEx fails harmlessly with ERROR_NOT_FOUND).
            unsafe { CancelIoEx(self.device.0, &raw const *self.overlapped) };
        }
    }
}

impl Drop for DeviceRequest {
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
            // The buffers must outlive the I/O: wait for the completion however long it takes.
            while self.poll(u32::MAX - 1).is_none() && !self.done {}
        }
        // Before the event closes (with the fields, after this).
        self.unregister();
    }
}

impl Transport for Device {
    fn start(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn InFlight>, Error> {
        let op = "ioctl";
        let Some(device) = self.handle.cloned() else {
            return Ok(Ready::closed_handle());
        };
        let in_len = u32::try_from(input.len()).map_err(|_| Error::System { op, code: 87 })?;
        let out_len = u32::try_from(output_len).map_err(|_| Error::System { op, code: 87 })?;
        // SAFETY: null security attributes and name are allowed; a manual-reset event, initially
        // clear, as overlapped I/O requires.
        let event = unsafe { CreateEventW(core::ptr::null(), 1, 0, core::ptr::null()) };
        if event.is_null() {
            return Err(Error::System {
                op: "CreateEventW",
                code: last_error(),
            });
        }
        let event = OwnedHandle(event);
        let mut overlapped = Box::new(OVERLAPPED::default());
        overlapped.hEvent = event.0;
        let mut output = vec![0u8; output_len];
        let out_ptr = if output.is_empty() {
            core::ptr::null_mut()
        } else {
            output.as_mut_ptr().cast()
        };
        let in_ptr = if input.is_empty() {
            core::ptr::null()
        } else {
            input.as_ptr().cast()
        };
        // SAFETY: the handle is open; `input` is valid for `in_len` bytes for the call (it is
        // METHOD_BUFFERED: copied before the call returns); `output` (a heap buffer of
        // `out_len` bytes) and `overlapped` (boxed) are moved into the DeviceRequest below,
        // which keeps both at the same address until the I/O completes; the bytes-returned
        // pointer may be null because an OVERLAPPED is given.
        let ok = unsafe {
            DeviceIoControl(
                device.0,
                ioctl.code(),
                in_ptr,
                in_len,
                out_ptr,
                out_len,
                core::ptr::null_mut(),
                &raw mut *overlapped,
            )
        };
        if ok == 0 {
            let err = last_error();
            if err != ERROR_IO_PENDING {
                // Failed before it pended; nothing is in flight.
                #[expect(clippy::cast_possible_truncation, reason = "NTSTATUS is 32 bits")]
                let written = (overlapped.Internal as u32).cast_signed();
                let status = if written != NtStatus::PENDING.0 && written != 0 {
                    NtStatus(written)
                } else {
                    status_of_win32(err)
                };
                return Ok(Box::new(Ready(Some(Completed {
                    status,
                    output: Vec::new(),
                }))));
            }
        }
        Ok(Box::new(DeviceRequest {
            device,
            overlapped,
            event,
            output,
            done: false,
            slot: None,
            registered: None,
        }))
    }

    fn close(&self) {
        // Requests still in flight hold their own reference; the handle closes with the last.
        self.handle.take();
    }
}
