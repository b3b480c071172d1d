//! Owned handles for NDK objects. A handle is the only way to reach its object; `close`
//! consumes it, so an object is closed at most once. Dropping a handle without closing it leaks
//! the provider object (never a use-after-free); softndk's live-object count exposes such leaks.

use alloc::boxed::Box;
use core::mem::MaybeUninit;

use core::net::SocketAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use kalloc::{AllocError, Arc};

use ndkpi_sys::{
    FALSE, NDK_ADAPTER, NDK_ADAPTER_INFO, NDK_CONNECTOR, NDK_CQ, NDK_FN_CLOSE_OBJECT, NDK_LISTENER,
    NDK_MR, NDK_OBJECT_HEADER, NDK_PD, NDK_QP, NDK_RESULT, NDK_RESULT_EX, NDK_VERSION, NTSTATUS,
    NtStatus, TRUE,
};

use crate::address::SockAddrBuf;
use crate::memory::{Buffer, PassiveLock, SharedMemory};
use crate::sink::{
    Op, Sink, close_done, connect_event, cq_notify, create_done, ctx_of, disconnect_event,
    disconnect_event_ex, ignore_close, release, request_done, sink, take_ref, wrap_created,
};
use alloc::vec::Vec;

const V12: NDK_VERSION = NDK_VERSION { Major: 1, Minor: 2 };
const V21: NDK_VERSION = NDK_VERSION { Major: 2, Minor: 1 };

macro_rules! handle {
    (
        $(#[$doc:meta])* $name:ident, $raw:ty, $table:ty
        $(; $($(#[$fdoc:meta])* $field:ident: $fty:ty = $init:expr),+ $(,)?)?
    ) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[must_use = "an NDK object must be closed"]
        pub struct $name {
            raw: NonNull<$raw>,
            /// The context (address) of the sink NDK holds a reference to for this object
            /// (taken at its create, or at its first registration with a sink), or 0. Its
            /// close must go through that sink: the close completion releases the reference
            /// on the closing sink.
            #[allow(dead_code, reason = "the adapter is closed through WSK, not a sink")]
            ref_of: AtomicUsize,
            $($($(#[$fdoc])* $field: $fty,)+)?
        }

        // SAFETY: NDK objects may be used from any thread at <= DISPATCH_LEVEL; the handle is
        // the unique owner of the pointer (it is not Clone).
        unsafe impl Send for $name {}
        // SAFETY: every safe `&self` method makes a call NDK allows concurrently. The calls NDK
        // wants serialised go through an exclusive guard (a CQ's [`Reaper`], a
        // [`QueuePair`]'s [`ReceiveQueue`] and [`InitiatorQueue`]) or are `unsafe fn`s whose
        // contract says so ([`Qp::receive`], [`Qp::send`]).
        unsafe impl Sync for $name {}

        impl $name {
            #[doc = concat!("Take ownership of a provider `", stringify!($raw), "`; NDK holds no reference to a sink for it yet (closing it takes one).")]
            ///
            /// # Safety
            /// `raw` is a live object of this type, returned by its provider and not closed,
            /// whose dispatch table and header stay valid while it lives, and nothing else uses
            /// or closes it: the handle becomes its only owner (an adapter is closed through
            /// the [`crate::Wsk`] of the provider that opened it). ndkpi's own creates, connect
            /// events and [`crate::Wsk::open_adapter`] make handles; this is for objects
            /// obtained elsewhere.
            pub unsafe fn from_raw(raw: NonNull<$raw>) -> Self {
                // SAFETY: the caller's contract, with no sink reference held.
                unsafe { Self::adopt(raw, 0) }
            }

            /// [`Self::from_raw`], with the context of the sink NDK holds a reference to for
            /// it (0: none).
            ///
            /// # Safety
            /// As [`Self::from_raw`]; when `ref_of` is not 0, one reference taken by
            /// `take_ref` for the sink whose context it is passes to the handle (released
            /// by its close completion).
            pub(crate) unsafe fn adopt(raw: NonNull<$raw>, ref_of: usize) -> Self {
                Self {
                    raw,
                    ref_of: AtomicUsize::new(ref_of),
                    $($($field: $init,)+)?
                }
            }

            /// Make sure NDK holds a reference to `sink` for this object's callbacks.
            #[allow(dead_code, reason = "only connectors are registered after creation")]
            fn hold<T: Sink>(&self, sink: &Arc<T>) {
                let ctx = ctx_of(sink).addr();
                match self
                    .ref_of
                    .compare_exchange(0, ctx, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => take_ref(sink),
                    Err(held) => debug_assert_eq!(
                        held, ctx,
                        "an NDK object registered with a second sink: its callbacks would \
                         reach a sink NDK holds no reference to"
                    ),
                }
            }

            /// The provider object.
            pub fn as_ptr(&self) -> *mut $raw {
                self.raw.as_ptr()
            }

            fn header(&self) -> *mut NDK_OBJECT_HEADER {
                self.raw.as_ptr().cast()
            }

            /// The NDKPI version in the object's header.
            pub fn version(&self) -> NDK_VERSION {
                // SAFETY: the handle owns a live provider object; its header is set before the
                // object is returned and never changes.
                unsafe { (*self.header()).Version }
            }

            fn table(&self) -> &'static $table {
                // SAFETY: live object; `Dispatch` is set before the object is returned.
                let table = unsafe { (*self.raw.as_ptr()).Dispatch };
                // SAFETY: provider dispatch tables live as long as the provider (static in
                // every provider, and the object is live).
                unsafe { &*table }
            }
        }
    };
}

/// `close(sink)` for handles closed through their dispatch table's `$close` member, completing
/// with [`Op`]`::$op`.
macro_rules! closable {
    ($($name:ident: $close:ident => $op:ident),+ $(,)?) => {$(
        impl $name {
            #[doc = concat!("`", stringify!($close), "`; completes with [`Op::", stringify!($op), "`].")]
            pub fn close<T: Sink>(self, sink: &Arc<T>) {
                close::<T, { Op::$op as u8 }>(
                    self.header(),
                    self.table().$close,
                    sink,
                    self.ref_of.load(Ordering::Acquire),
                );
            }
        }
    )+};
}

closable!(
    Pd: NdkClosePd => ClosePd,
    Cq: NdkCloseCq => CloseCq,
    Qp: NdkCloseQp => CloseQp,
    Connector: NdkCloseConnector => CloseConnector,
    Listener: NdkCloseListener => CloseListener,
);

/// Start a request; report inline unless it pended.
fn request<T: Sink, const OP: u8>(
    sink: &Arc<T>,
    call: impl FnOnce(ndkpi_sys::NDK_FN_REQUEST_COMPLETION, ndkpi_sys::PVOID) -> NTSTATUS,
) {
    let ctx = ctx_of(sink);
    let status = call(Some(request_done::<T, OP>), ctx);
    if status != NtStatus::PENDING {
        sink.completed(Op::from_u8(OP), status, None);
    }
}

/// [`request`] through the entry point `f`: `STATUS_NOT_SUPPORTED` when the provider has none.
fn request_with<T: Sink, const OP: u8, F>(
    sink: &Arc<T>,
    f: Option<F>,
    call: impl FnOnce(F, ndkpi_sys::NDK_FN_REQUEST_COMPLETION, ndkpi_sys::PVOID) -> NTSTATUS,
) {
    request::<T, OP>(sink, |cb, ctx| match f {
        Some(f) => call(f, cb, ctx),
        None => NtStatus::NOT_SUPPORTED,
    });
}

/// Start a create through the entry point `f` (`STATUS_NOT_SUPPORTED` when the provider has
/// none); report inline (with the object) unless it pended.
fn create<T: Sink, const OP: u8, R, F>(
    sink: &Arc<T>,
    f: Option<F>,
    call: impl FnOnce(F, ndkpi_sys::NDK_FN_CREATE_COMPLETION, ndkpi_sys::PVOID, *mut *mut R) -> NTSTATUS,
) {
    let ctx = ctx_of(sink);
    take_ref(sink);
    let mut object: *mut R = core::ptr::null_mut();
    let status = match f {
        Some(f) => call(f, Some(create_done::<T, OP>), ctx, &raw mut object),
        None => NtStatus::NOT_SUPPORTED,
    };
    if status != NtStatus::PENDING {
        let op = Op::from_u8(OP);
        let created = if status == NtStatus::SUCCESS {
            wrap_created(op, object.cast(), ctx)
        } else {
            None
        };
        let failed = created.is_none();
        sink.completed(op, status, created);
        if failed {
            // SAFETY: no object was made and no callback will come, so the reference taken
            // above is surrendered.
            unsafe { release::<T>(ctx) };
        }
    }
}

/// Whether the reference NDK holds for an object (`ref_of`: its sink's context, or 0) is
/// `sink`'s, so its close completion may release it on `sink`. An object closed through
/// another sink than the one it holds a reference to is a bug in the caller: checked in debug
/// builds; in release builds that other reference is never released (a leak, never a release
/// on the wrong object).
fn holds_ref_of<T: Sink>(ref_of: usize, sink: &Arc<T>) -> bool {
    let ctx = ctx_of(sink).addr();
    debug_assert!(
        ref_of == 0 || ref_of == ctx,
        "an NDK object closed through another sink than the one NDK holds a reference to"
    );
    ref_of == ctx
}

/// Close an object; report inline unless it pended.
fn close<T: Sink, const OP: u8>(
    header: *mut NDK_OBJECT_HEADER,
    f: NDK_FN_CLOSE_OBJECT,
    sink: &Arc<T>,
    ref_of: usize,
) {
    let ctx = ctx_of(sink);
    if !holds_ref_of(ref_of, sink) {
        // The close completion releases one reference: make sure the object has one.
        take_ref(sink);
    }
    let status = match f {
        // SAFETY: the caller consumed the object's only handle, so this is its one close; the
        // completion routine and context stay valid (the object's reference) until it runs.
        Some(f) => unsafe { f(header, Some(close_done::<T, OP>), ctx) },
        None => NtStatus::NOT_SUPPORTED,
    };
    if status != NtStatus::PENDING {
        sink.closed(Op::from_u8(OP));
        // SAFETY: closed synchronously: no callback will come; the object's reference is
        // surrendered after delivering the close above.
        unsafe { release::<T>(ctx) };
    }
}

/// Close with nobody waiting (an unwanted incoming connector).
fn close_detached_raw(header: *mut NDK_OBJECT_HEADER, f: NDK_FN_CLOSE_OBJECT) {
    if let Some(f) = f {
        // SAFETY: the object's only handle was consumed; the completion ignores its context.
        let _ = unsafe { f(header, Some(ignore_close), core::ptr::null_mut()) };
    }
}

handle!(
    /// An `NDK_ADAPTER`, opened and closed through [`crate::Wsk`].
    Adapter, NDK_ADAPTER, ndkpi_sys::NDK_ADAPTER_DISPATCH
);

impl Adapter {
    /// `NdkQueryAdapterInfo`. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The provider's status.
    pub fn query_info(&self) -> Result<NDK_ADAPTER_INFO, NTSTATUS> {
        let f = self
            .table()
            .NdkQueryAdapterInfo
            .ok_or(NtStatus::NOT_SUPPORTED)?;
        let mut info = NDK_ADAPTER_INFO::default();
        let mut size = u32::try_from(size_of::<NDK_ADAPTER_INFO>()).unwrap_or(0);
        // SAFETY: live adapter; `info` and `size` are valid for the call.
        let status = unsafe { f(self.as_ptr(), &raw mut info, &raw mut size) };
        if status == NtStatus::SUCCESS {
            Ok(info)
        } else {
            Err(status)
        }
    }

    /// `NdkCreatePd`; completes with [`Op::CreatePd`].
    pub fn create_pd<T: Sink>(&self, sink: &Arc<T>) {
        let f = self.table().NdkCreatePd;
        create::<T, { Op::CreatePd as u8 }, NDK_PD, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live adapter; callback/context per the NDK contract; valid out-pointer.
            unsafe { f(self.as_ptr(), cb, ctx, pp) }
        });
    }

    /// `NdkCreateCq` with notifications going to `sink`; completes with [`Op::CreateCq`].
    pub fn create_cq<T: Sink>(&self, sink: &Arc<T>, depth: u32) {
        let f = self.table().NdkCreateCq;
        let notify: ndkpi_sys::NDK_FN_CQ_NOTIFICATION_CALLBACK = Some(cq_notify::<T>);
        let (adapter, affinity) = (self.as_ptr(), core::ptr::null_mut());
        create::<T, { Op::CreateCq as u8 }, NDK_CQ, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live adapter; both callbacks take the sink context, alive until the CQ's
            // close completion (NDK's reference); valid out-pointer.
            unsafe { f(adapter, depth, notify, ctx, affinity, cb, ctx, pp) }
        });
    }

    /// `NdkCreateConnector`; completes with [`Op::CreateConnector`].
    pub fn create_connector<T: Sink>(&self, sink: &Arc<T>) {
        let f = self.table().NdkCreateConnector;
        create::<T, { Op::CreateConnector as u8 }, NDK_CONNECTOR, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live adapter; callback/context per the NDK contract; valid out-pointer.
            unsafe { f(self.as_ptr(), cb, ctx, pp) }
        });
    }

    /// `NdkCreateListener` with connect events going to `sink`; completes with
    /// [`Op::CreateListener`].
    pub fn create_listener<T: Sink>(&self, sink: &Arc<T>) {
        let f = self.table().NdkCreateListener;
        create::<T, { Op::CreateListener as u8 }, NDK_LISTENER, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live adapter; both callbacks take the sink context, alive until the
            // listener's close completion; valid out-pointer.
            unsafe { f(self.as_ptr(), Some(connect_event::<T>), ctx, cb, ctx, pp) }
        });
    }
}

handle!(
    /// An `NDK_PD`.
    Pd, NDK_PD, ndkpi_sys::NDK_PD_DISPATCH
);

impl Pd {
    /// `NdkCreateQp` (one CQ for both queues); completes with [`Op::CreateQp`].
    pub fn create_qp<T: Sink>(
        &self,
        sink: &Arc<T>,
        cq: &Cq,
        qp_context: usize,
        receive_depth: u32,
        send_depth: u32,
    ) {
        let qctx = core::ptr::without_provenance_mut(qp_context);
        let f = self.table().NdkCreateQp;
        create::<T, { Op::CreateQp as u8 }, NDK_QP, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live PD and CQ; the QP context is an opaque value the provider only
            // echoes; callback/context per the NDK contract; valid out-pointer.
            unsafe {
                f(
                    self.as_ptr(),
                    cq.as_ptr(),
                    cq.as_ptr(),
                    qctx,
                    receive_depth,
                    send_depth,
                    1,
                    1,
                    0,
                    cb,
                    ctx,
                    pp,
                )
            }
        });
    }

    /// `NdkCreateMr` (not fast-register); completes with [`Op::CreateMr`].
    pub fn create_mr<T: Sink>(&self, sink: &Arc<T>) {
        let f = self.table().NdkCreateMr;
        create::<T, { Op::CreateMr as u8 }, NDK_MR, _>(sink, f, |f, cb, ctx, pp| {
            // SAFETY: live PD; callback/context per the NDK contract; valid out-pointer.
            unsafe { f(self.as_ptr(), FALSE, cb, ctx, pp) }
        });
    }
}

/// One completion read from a CQ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The request's status (`STATUS_CANCELLED` when flushed).
    pub status: NTSTATUS,
    /// Bytes received (receives only).
    pub bytes: u32,
    /// The QP's context.
    pub qp_context: usize,
    /// The request's context.
    pub request_context: usize,
    /// `NdkOperationType*` (0 when the adapter is older than NDKPI 1.2). Undefined when
    /// `status` is not `STATUS_SUCCESS` (NDKPI): never decide anything from it then.
    pub kind: u32,
    /// `NDK_RESULT_EX.ProviderErrorCode` (NDKPI 2.1): the provider's diagnostic on an error
    /// completion, 0 when not provided.
    pub provider_error: u32,
}

/// A scatter/gather element for posting (used with [`Qp::receive`]).
#[derive(Clone, Copy, Debug)]
pub struct Sge {
    /// Start of the buffer.
    pub address: *mut u8,
    /// Length.
    pub length: u32,
    /// Memory-region token.
    pub token: u32,
}

impl Sge {
    fn raw(self) -> ndkpi_sys::NDK_SGE {
        ndkpi_sys::NDK_SGE {
            Address: ndkpi_sys::NDK_SGE_ADDRESS {
                VirtualAddress: self.address.cast(),
            },
            Length: self.length,
            MemoryRegionToken: self.token,
        }
    }
}

/// [`Cq`] reaping states: nobody reaps; a [`Reaper`] is held; held, and another context was
/// refused one meanwhile (its notification's completions may be unseen by the holder).
const FREE: u8 = 0;
const HELD: u8 = 1;
const MISSED: u8 = 2;

handle!(
    /// An `NDK_CQ`. Its results are taken, and it is armed, only through its [`Reaper`]
    /// (NDK requires the consumer to serialise `NdkGetCqResults(Ex)` and `NdkArmCq` per CQ).
    Cq, NDK_CQ, ndkpi_sys::NDK_CQ_DISPATCH;
    /// `FREE`, `HELD` or `MISSED`.
    reaping: AtomicU8 = AtomicU8::new(FREE),
);

impl Cq {
    /// Exclusive access to the CQ's results and arming, or `None` while another context holds
    /// it. A refusal is remembered: the holder's [`Reaper::release`] then hands the reaper back
    /// to reap again, so a notification that finds the CQ busy may simply return. Never waits.
    pub fn reaper(&self) -> Option<Reaper<'_>> {
        loop {
            if self
                .reaping
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Reaper { cq: self });
            }
            match self
                .reaping
                .compare_exchange(HELD, MISSED, Ordering::AcqRel, Ordering::Acquire)
            {
                // Released in between: try to take it again.
                Err(FREE) => {}
                // Held: its holder now knows to go round again.
                _ => return None,
            }
        }
    }
}

/// Exclusive access to a [`Cq`]'s results and arming, from [`Cq::reaper`]: while it lives no
/// other context takes results from the CQ or arms it (methods take `&mut self`, so one reaper
/// is used by one thread at a time). Dropping it gives the access up and forgets a refusal
/// meanwhile; [`Reaper::release`] reports one.
#[derive(Debug)]
#[must_use = "a reaper excludes every other reaper of its CQ until released"]
pub struct Reaper<'a> {
    cq: &'a Cq,
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        self.cq.reaping.store(FREE, Ordering::Release);
    }
}

impl Reaper<'_> {
    /// Give up the access: `Err` with the reaper when another context was refused one while it
    /// was held (a notification that found the CQ busy): completions may have arrived that the
    /// holder has not seen since, so it takes results (and re-arms) again, then releases again.
    ///
    /// # Errors
    /// The reaper itself, as above.
    pub fn release(self) -> Result<(), Self> {
        let released =
            self.cq
                .reaping
                .compare_exchange(HELD, FREE, Ordering::Release, Ordering::Acquire);
        if released.is_ok() {
            // Released: the drop would only release again.
            core::mem::forget(self);
            return Ok(());
        }
        // `MISSED`: taken over again, the refusal answered by the caller's next round.
        self.cq.reaping.store(HELD, Ordering::Relaxed);
        Err(self)
    }

    /// `NdkArmCq` (`NDK_CQ_NOTIFY_*`).
    pub fn arm(&mut self, kind: u32) {
        if let Some(f) = self.cq.table().NdkArmCq {
            // SAFETY: live CQ (borrowed for the reaper's life); the reaper is the only one of
            // this CQ and `&mut`, so no other arm or results call runs on it (NDK's rule).
            unsafe { f(self.cq.as_ptr(), kind) }
        }
    }

    /// Dequeue up to `out.len()` completions (`NdkGetCqResultsEx` from NDKPI 1.2, else
    /// `NdkGetCqResults`). Returns how many were written.
    pub fn results(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let want = (out.len() - n).min(16);
            let got = self.results_chunk(&mut out[n..n + want]);
            n += got;
            if got < want {
                break;
            }
        }
        n
    }

    fn results_chunk(&mut self, out: &mut [Completion]) -> usize {
        let table = self.cq.table();
        if let (true, Some(f)) = (self.cq.version() >= V12, table.NdkGetCqResultsEx) {
            let v21 = self.cq.version() >= V21;
            let empty = NDK_RESULT_EX {
                Status: NtStatus::SUCCESS,
                BytesTransferred: 0,
                QPContext: core::ptr::null_mut(),
                RequestContext: core::ptr::null_mut(),
                Type: 0,
                ProviderErrorCode: 0,
                TypeSpecificCompletionOutput: 0,
            };
            self.take_results(f, empty, out, |r| Completion {
                status: r.Status,
                bytes: r.BytesTransferred,
                qp_context: r.QPContext.addr(),
                request_context: r.RequestContext.addr(),
                kind: r.Type,
                provider_error: if v21 { r.ProviderErrorCode } else { 0 },
            })
        } else if let Some(f) = table.NdkGetCqResults {
            let empty = NDK_RESULT {
                Status: NtStatus::SUCCESS,
                BytesTransferred: 0,
                QPContext: core::ptr::null_mut(),
                RequestContext: core::ptr::null_mut(),
            };
            self.take_results(f, empty, out, |r| Completion {
                kind: 0,
                provider_error: 0,
                status: r.Status,
                bytes: r.BytesTransferred,
                qp_context: r.QPContext.addr(),
                request_context: r.RequestContext.addr(),
            })
        } else {
            0
        }
    }

    /// Up to `out.len()` (at most 16) results through `f` (`NdkGetCqResults` or its `Ex`
    /// form, whose result record is `R`), each converted by `convert`; how many were written.
    fn take_results<R: Copy>(
        &mut self,
        f: unsafe extern "system" fn(*mut NDK_CQ, *mut R, u32) -> u32,
        empty: R,
        out: &mut [Completion],
        convert: impl Fn(&R) -> Completion,
    ) -> usize {
        let want = u32::try_from(out.len()).unwrap_or(16);
        let mut buf = [empty; 16];
        // SAFETY: live CQ, reaped exclusively (see `arm`); `buf` holds at least `want` (<= 16)
        // results.
        let got = unsafe { f(self.cq.as_ptr(), buf.as_mut_ptr(), want) } as usize;
        for (o, r) in out.iter_mut().zip(&buf[..got.min(16)]) {
            *o = convert(r);
        }
        got.min(16)
    }
}

handle!(
    /// An `NDK_QP` (its attached buffers live in the [`QueuePair`] that holds it).
    Qp, NDK_QP, ndkpi_sys::NDK_QP_DISPATCH
);

impl Qp {
    /// `NdkFlush`: every outstanding request completes with `STATUS_CANCELLED`.
    pub fn flush(&self) {
        if let Some(f) = self.table().NdkFlush {
            // SAFETY: live QP; NdkFlush may run concurrently with posts.
            unsafe { f(self.as_ptr()) }
        }
    }

    /// `NdkReceive` of one buffer.
    ///
    /// # Safety
    /// `sge` describes memory registered (MR or LAM + privileged token) with this QP's PD,
    /// which stays valid and unmoved until the receive completes (or the QP is closed); no
    /// other post to the receive queue runs meanwhile (NDK's rule; for a QP inside a
    /// [`QueuePair`] that includes the posts of its [`ReceiveQueue`]).
    pub unsafe fn receive(&self, request_context: usize, sge: Sge) -> NTSTATUS {
        let f = self.table().NdkReceive;
        // SAFETY: live QP; one valid SGE whose memory the caller vouches for.
        self.post_one(f, request_context, sge, |f, qp, ctx, sgl| unsafe {
            f(qp, ctx, sgl, 1)
        })
    }

    /// `NdkSend` of one buffer.
    ///
    /// # Safety
    /// As [`Qp::receive`], for the initiator queue.
    pub unsafe fn send(&self, request_context: usize, sge: Sge, flags: u32) -> NTSTATUS {
        let f = self.table().NdkSend;
        self.post_one(f, request_context, sge, |f, qp, ctx, sgl| {
            // SAFETY: as for `receive`.
            unsafe { f(qp, ctx, sgl, 1, flags) }
        })
    }

    /// Post one SGE through the entry point `f` (`STATUS_NOT_SUPPORTED` when the provider has
    /// none): `call` gets it with the QP, the request context and the SGE list.
    fn post_one<F>(
        &self,
        f: Option<F>,
        request_context: usize,
        sge: Sge,
        call: impl FnOnce(F, *mut NDK_QP, ndkpi_sys::PVOID, *const ndkpi_sys::NDK_SGE) -> NTSTATUS,
    ) -> NTSTATUS {
        let Some(f) = f else {
            return NtStatus::NOT_SUPPORTED;
        };
        let raw = sge.raw();
        let ctx = core::ptr::without_provenance_mut(request_context);
        call(f, self.as_ptr(), ctx, &raw const raw)
    }
}

handle!(
    /// An `NDK_CONNECTOR`.
    Connector, NDK_CONNECTOR, ndkpi_sys::NDK_CONNECTOR_DISPATCH
);

impl Connector {
    /// Whether the connector speaks NDKPI 2.1 (the `Ex` registration with a reason).
    pub fn has_ex(&self) -> bool {
        self.version() >= V21
            && self.table().NdkCompleteConnectEx.is_some()
            && self.table().NdkAcceptEx.is_some()
    }

    /// `NdkConnect`; completes with [`Op::Connect`] once the peer accepted (or failed).
    pub fn connect<T: Sink>(
        &self,
        sink: &Arc<T>,
        qp: &Qp,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        ird: u32,
        ord: u32,
    ) {
        let src = local.map_or_else(|| SockAddrBuf::any_like(remote), SockAddrBuf::new);
        let dst = SockAddrBuf::new(remote);
        request_with::<T, { Op::Connect as u8 }, _>(sink, self.table().NdkConnect, |f, cb, ctx| {
            // SAFETY: live connector and QP; address buffers live across the call (the
            // provider copies them); callback/context per the NDK contract.
            unsafe {
                f(
                    self.as_ptr(),
                    qp.as_ptr(),
                    src.as_ptr(),
                    src.len(),
                    dst.as_ptr(),
                    dst.len(),
                    ird,
                    ord,
                    core::ptr::null(),
                    0,
                    cb,
                    ctx,
                )
            }
        });
    }

    /// `NdkCompleteConnectEx` (2.1) or `NdkCompleteConnect`, registering `sink` for the
    /// disconnect callback; completes with [`Op::CompleteConnect`].
    pub fn complete_connect<T: Sink>(&self, sink: &Arc<T>) {
        self.hold(sink);
        let table = self.table();
        let ex = self.has_ex();
        request::<T, { Op::CompleteConnect as u8 }>(sink, |cb, ctx| {
            match (ex, table.NdkCompleteConnectEx, table.NdkCompleteConnect) {
                // SAFETY: live connector; the disconnect context is the sink, alive until the
                // connector's close completion (NDK's reference).
                (true, Some(f), _) => unsafe {
                    f(self.as_ptr(), Some(disconnect_event_ex::<T>), ctx, cb, ctx)
                },
                // SAFETY: as above, plain form.
                (_, _, Some(f)) => unsafe {
                    f(self.as_ptr(), Some(disconnect_event::<T>), ctx, cb, ctx)
                },
                _ => NtStatus::NOT_SUPPORTED,
            }
        });
    }

    /// `NdkAcceptEx` (2.1) or `NdkAccept` with `qp`, registering `sink` for the disconnect
    /// callback; completes with [`Op::Accept`] after the active side's complete-connect.
    pub fn accept<T: Sink>(&self, sink: &Arc<T>, qp: &Qp, ird: u32, ord: u32) {
        self.hold(sink);
        let table = self.table();
        let ex = self.has_ex();
        let (conn, qp, data) = (self.as_ptr(), qp.as_ptr(), core::ptr::null());
        let event_ex: ndkpi_sys::NDK_FN_DISCONNECT_EVENT_CALLBACK_EX =
            Some(disconnect_event_ex::<T>);
        let event: ndkpi_sys::NDK_FN_DISCONNECT_EVENT_CALLBACK = Some(disconnect_event::<T>);
        request::<T, { Op::Accept as u8 }>(sink, |cb, ctx| {
            match (ex, table.NdkAcceptEx, table.NdkAccept) {
                // SAFETY: live connector and QP; the disconnect context is the sink, alive until
                // the connector's close completion.
                (true, Some(f), _) => unsafe {
                    f(conn, qp, ird, ord, data, 0, event_ex, ctx, cb, ctx)
                },
                // SAFETY: as above, plain form.
                (_, _, Some(f)) => unsafe { f(conn, qp, ird, ord, data, 0, event, ctx, cb, ctx) },
                _ => NtStatus::NOT_SUPPORTED,
            }
        });
    }

    /// `NdkReject` (synchronous).
    pub fn reject(&self) -> NTSTATUS {
        match self.table().NdkReject {
            // SAFETY: live connector; no private data.
            Some(f) => unsafe { f(self.as_ptr(), core::ptr::null(), 0) },
            None => NtStatus::NOT_SUPPORTED,
        }
    }

    /// `NdkDisconnect` (graceful); completes with [`Op::Disconnect`].
    pub fn disconnect<T: Sink>(&self, sink: &Arc<T>) {
        let f = self.table().NdkDisconnect;
        request_with::<T, { Op::Disconnect as u8 }, _>(sink, f, |f, cb, ctx| {
            // SAFETY: live connector; callback/context per the NDK contract.
            unsafe { f(self.as_ptr(), cb, ctx) }
        });
    }

    /// `NdkGetLocalAddress`.
    pub fn local_address(&self) -> Option<SocketAddr> {
        let f = self.table().NdkGetLocalAddress?;
        // SAFETY: live connector; the buffer `ask` passes holds 28 bytes and its length says so.
        SockAddrBuf::ask(|p, len| unsafe { f(self.as_ptr(), p, len) })
    }

    /// `NdkGetPeerAddress`.
    pub fn peer_address(&self) -> Option<SocketAddr> {
        let f = self.table().NdkGetPeerAddress?;
        // SAFETY: live connector; the buffer `ask` passes holds 28 bytes and its length says so.
        SockAddrBuf::ask(|p, len| unsafe { f(self.as_ptr(), p, len) })
    }

    /// Close with nobody waiting for the completion (an incoming request nobody will accept:
    /// closing it rejects it).
    pub fn close_detached(self) {
        close_detached_raw(self.header(), self.table().NdkCloseConnector);
    }
}

handle!(
    /// An `NDK_LISTENER`.
    Listener, NDK_LISTENER, ndkpi_sys::NDK_LISTENER_DISPATCH
);

impl Listener {
    /// `NdkListen`; completes with [`Op::Listen`].
    pub fn listen<T: Sink>(&self, sink: &Arc<T>, address: SocketAddr) {
        let addr = SockAddrBuf::new(address);
        request_with::<T, { Op::Listen as u8 }, _>(sink, self.table().NdkListen, |f, cb, ctx| {
            // SAFETY: live listener; the address buffer lives across the call.
            unsafe { f(self.as_ptr(), addr.as_ptr(), addr.len(), cb, ctx) }
        });
    }

    /// The bound address (`NdkGetLocalAddress`), e.g. to learn an ephemeral port.
    pub fn local_address(&self) -> Option<SocketAddr> {
        let f = self.table().NdkGetLocalAddress?;
        // SAFETY: live listener; the buffer `ask` passes holds 28 bytes and its length says so.
        SockAddrBuf::ask(|p, len| unsafe { f(self.as_ptr(), p, len) })
    }

    /// `NdkControlConnectEvents`: pause (requests are refused) or resume.
    pub fn pause(&self, pause: bool) {
        if let Some(f) = self.table().NdkControlConnectEvents {
            // SAFETY: live listener.
            unsafe { f(self.as_ptr(), if pause { TRUE } else { FALSE }) }
        }
    }
}

/// The memory registered in an [`Mr`], kept until the MR's close completes. Dropping it
/// without that close (an MR handle dropped without being closed) leaks the memory with the
/// provider object, which may still use it.
/// With the room its close will keep it in, made before the provider saw the memory.
#[derive(Default)]
struct Registered(Option<(SharedMemory, KeepRoom<SharedMemory>)>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(kept) = self.0.take() {
            core::mem::forget(kept);
        }
    }
}

impl core::fmt::Debug for Registered {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registered")
            .field("len", &self.0.as_ref().map(|(m, _)| m.len()))
            .finish()
    }
}

handle!(
    /// An `NDK_MR`. It owns (a counted reference to) the memory registered in it until its
    /// close completes.
    Mr, NDK_MR, ndkpi_sys::NDK_MR_DISPATCH;
    /// The registered memory.
    memory: Registered = Registered::default(),
);

impl Mr {
    /// `NdkRegisterMr` of `memory` for local write; completes with [`Op::RegisterMr`]. Once
    /// the provider has seen `memory`, the MR keeps it until its close completes (whatever the
    /// outcome of the registration). An MR registers once: a second call completes at once
    /// with `STATUS_INVALID_DEVICE_STATE`. When the room to keep the memory at close cannot be
    /// allocated, it completes at once with `STATUS_INSUFFICIENT_RESOURCES` (the provider never
    /// saw the memory; nothing is kept).
    pub fn register<T: Sink>(&mut self, sink: &Arc<T>, memory: SharedMemory) {
        if self.memory.0.is_some() {
            sink.completed(Op::RegisterMr, NtStatus::INVALID_DEVICE_STATE, None);
            return;
        }
        let Ok(room) = KeepRoom::try_new() else {
            sink.completed(Op::RegisterMr, NtStatus::INSUFFICIENT_RESOURCES, None);
            return;
        };
        let (mdl, len) = (memory.mdl(), memory.len());
        // Kept before the provider sees it: it may use the memory as soon as it is called.
        self.memory.0 = Some((memory, room));
        let f = self.table().NdkRegisterMr;
        request_with::<T, { Op::RegisterMr as u8 }, _>(sink, f, |f, cb, ctx| {
            // SAFETY: live MR; the MDL describes `len` pinned bytes (the `RegisteredMemory`
            // contract) that the MR keeps alive until its close completion.
            unsafe {
                f(
                    self.as_ptr(),
                    mdl,
                    len,
                    ndkpi_sys::NDK_MR_FLAG_ALLOW_LOCAL_WRITE,
                    cb,
                    ctx,
                )
            }
        });
    }

    /// The local token (valid after registration).
    pub fn local_token(&self) -> u32 {
        match self.table().NdkGetLocalTokenFromMr {
            // SAFETY: live MR.
            Some(f) => unsafe { f(self.as_ptr()) },
            None => 0,
        }
    }

    /// `NdkCloseMr`; completes with [`Op::CloseMr`]; the registered memory is released after
    /// it.
    pub fn close<T: Sink>(mut self, sink: &Arc<T>) {
        let f = self.table().NdkCloseMr;
        let ref_of = self.ref_of.load(Ordering::Acquire);
        match self.memory.0.take() {
            Some((memory, room)) => close_keeping::<T, _, { Op::CloseMr as u8 }>(
                self.header(),
                f,
                sink,
                ref_of,
                memory,
                room,
            ),
            // Never registered: nothing to keep.
            None => close::<T, { Op::CloseMr as u8 }>(self.header(), f, sink, ref_of),
        }
    }
}

impl Adapter {
    pub(crate) fn into_raw(self) -> NonNull<NDK_ADAPTER> {
        self.raw
    }
}

/// A QP with the buffers attached to it. Posts name a buffer by index, so they can only use
/// memory that is registered and that lives at least until the QP's close completion: closing
/// keeps the buffers alive until that (last) callback has returned. Posts go through a queue's
/// guard ([`QueuePair::receive_queue`], [`QueuePair::initiator_queue`]), so posts to one queue
/// never run concurrently.
#[derive(Debug)]
#[must_use = "an NDK object must be closed"]
pub struct QueuePair {
    qp: Qp,
    buffers: PassiveLock<Vec<Arc<Buffer>>>,
    /// The sink context of the pair's close, set once by [`QueuePair::close`] (null before):
    /// its completion reads it, and a second close finds it set.
    closing: AtomicPtr<core::ffi::c_void>,
    /// A [`ReceiveQueue`] is held.
    receiving: AtomicBool,
    /// An [`InitiatorQueue`] is held.
    sending: AtomicBool,
}

impl core::fmt::Debug for PassiveLock<Vec<Arc<Buffer>>> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PassiveLock")
    }
}

/// A guard of one of a [`QueuePair`]'s queues: `$guard` (exclusive access taken by
/// `QueuePair::$take` through the flag `$flag`) whose `$post` posts `len` bytes at `offset` of
/// buffer `index` (`STATUS_INVALID_PARAMETER` when that is not inside an attached buffer):
/// `$call` with the QP, the SGE and the request context.
macro_rules! queue_guard {
    (
        $(#[$doc:meta])* $guard:ident, $flag:ident,
        $(#[$take_doc:meta])* $take:ident,
        $(#[$post_doc:meta])* $post:ident => |$qp:ident, $sge:ident, $ctx:ident| $call:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[must_use = "a queue guard excludes every other post to its queue until dropped"]
        pub struct $guard<'a> {
            pair: &'a QueuePair,
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                self.pair.$flag.store(false, Ordering::Release);
            }
        }

        impl QueuePair {
            $(#[$take_doc])*
            pub fn $take(&self) -> Option<$guard<'_>> {
                (!self.$flag.swap(true, Ordering::Acquire)).then_some($guard { pair: self })
            }
        }

        impl $guard<'_> {
            $(#[$post_doc])*
            pub fn $post(
                &mut self,
                index: usize,
                offset: usize,
                len: u32,
                request_context: usize,
            ) -> NTSTATUS {
                let Some($sge) = self.pair.sge(index, offset, len) else {
                    return NtStatus::INVALID_PARAMETER;
                };
                let ($qp, $ctx) = (&self.pair.qp, request_context);
                // SAFETY: the SGE lies inside an attached, registered buffer, which lives until
                // the QP's close completion (after which no request can complete); this guard
                // is the queue's only one and `&mut`, so no other post to the queue runs.
                unsafe { $call }
            }
        }
    };
}

queue_guard!(
    /// Exclusive access to a [`QueuePair`]'s receive queue (NDK requires the consumer to
    /// serialise posts per queue), from [`QueuePair::receive_queue`]; dropping it gives it up.
    ReceiveQueue, receiving,
    /// The receive queue for posting, or `None` while another context holds it. Never waits.
    receive_queue,
    /// Post a receive into `len` bytes at `offset` of buffer `index`. `// IRQL:
    /// PASSIVE_LEVEL`.
    post_receive => |qp, sge, ctx| qp.receive(ctx, sge)
);

queue_guard!(
    /// Exclusive access to a [`QueuePair`]'s initiator queue (NDK requires the consumer to
    /// serialise posts per queue), from [`QueuePair::initiator_queue`]; dropping it gives it
    /// up. The receive queue is separate: a receive may be posted meanwhile.
    InitiatorQueue, sending,
    /// The initiator queue for posting, or `None` while another context holds it. Never waits.
    initiator_queue,
    /// Post a send of `len` bytes at `offset` of buffer `index`. `// IRQL: PASSIVE_LEVEL`.
    post_send => |qp, sge, ctx| qp.send(ctx, sge, 0)
);

/// The completion of [`QueuePair::close`].
///
/// # Safety
/// `ctx` is the pointer `QueuePair::close` made with `Arc::into_raw` for this close, whose
/// `closing` holds the context of a `T` that the QP holds a reference to.
unsafe extern "system" fn close_pair_done<T: Sink>(ctx: ndkpi_sys::PVOID) {
    // SAFETY: per the contract, `ctx` came from `Arc::into_raw` of a `QueuePair` and its count
    // is taken back once, here.
    let pair = unsafe { Arc::from_raw(ctx.cast::<QueuePair>().cast_const()) };
    let sink_ctx = pair.closing.load(Ordering::Acquire);
    // SAFETY: the QP holds a reference to the sink behind `sink_ctx` until the release below.
    unsafe { sink::<T>(sink_ctx) }.closed(Op::CloseQp);
    // SAFETY: the close completion is the QP's last callback: its reference to the sink is
    // surrendered after the callback above returned; nothing borrowed from it is used after.
    unsafe { release::<T>(sink_ctx) };
    // The pair (and its buffers, if this was its last count) goes after the provider's last
    // use of the QP.
    drop(pair);
}

/// What a close completion keeps alive until the object's last callback: `kept`, and the
/// sink's context (whose reference the object holds).
struct Keep<K> {
    sink: ndkpi_sys::PVOID,
    _kept: K,
}

// SAFETY: `sink` is a context pointer to a sink, which is `Send + Sync` (the `Sink` bound), used
// only by the close completion; the rest is `K`'s to say.
unsafe impl<K: Send> Send for Keep<K> {}
// SAFETY: as above; a `Keep` is never read through a shared reference but by its completion.
unsafe impl<K: Sync> Sync for Keep<K> {}

/// Room for a [`Keep`], allocated when the object that will need it is made (where a failure
/// can be reported), so that closing allocates nothing and cannot fail.
struct KeepRoom<K>(Box<MaybeUninit<Keep<K>>>);

impl<K> KeepRoom<K> {
    fn try_new() -> Result<Self, AllocError> {
        kalloc::try_box(MaybeUninit::uninit()).map(Self)
    }
}

impl<K> core::fmt::Debug for KeepRoom<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeepRoom")
    }
}

unsafe extern "system" fn close_keep_done<T: Sink, K, const OP: u8>(ctx: ndkpi_sys::PVOID) {
    // SAFETY: `ctx` is the `Box<MaybeUninit<Keep<K>>>` that `close_keeping` initialised and
    // leaked for this close only (`MaybeUninit<Keep<K>>` is laid out as `Keep<K>`).
    let keep = unsafe { Box::from_raw(ctx.cast::<Keep<K>>()) };
    // SAFETY: the object holds a reference to the sink behind `keep.sink` (made sure of by
    // `close_keeping`) until the release below.
    unsafe { sink::<T>(keep.sink) }.closed(Op::from_u8(OP));
    // SAFETY: the close completion is the object's last callback: its reference to the sink
    // (taken at its create, or by `close_keeping`) is surrendered after the callback above
    // returned, and nothing borrowed from it is used afterwards.
    unsafe { release::<T>(keep.sink) };
    // `kept` is dropped here, after the provider's last use of the object.
}

/// Close an object through `f`, keeping `kept` alive (in `room`) until its close completion has
/// returned; report inline unless it pended. Allocates nothing.
fn close_keeping<T: Sink, K, const OP: u8>(
    header: *mut NDK_OBJECT_HEADER,
    f: NDK_FN_CLOSE_OBJECT,
    sink: &Arc<T>,
    ref_of: usize,
    kept: K,
    room: KeepRoom<K>,
) {
    if !holds_ref_of(ref_of, sink) {
        // The close completion releases one reference: make sure the object has one.
        take_ref(sink);
    }
    let mut room = room.0;
    room.write(Keep {
        sink: ctx_of(sink),
        _kept: kept,
    });
    // Initialised just above: the box now holds a `Keep<K>` (same layout).
    let ctx: ndkpi_sys::PVOID = Box::into_raw(room).cast();
    let status = match f {
        // SAFETY: the object's only handle was consumed, so this is its one close; `ctx` stays
        // valid until `close_keep_done` reclaims it.
        Some(f) => unsafe { f(header, Some(close_keep_done::<T, K, OP>), ctx) },
        None => NtStatus::NOT_SUPPORTED,
    };
    if status != NtStatus::PENDING {
        // SAFETY: closed synchronously: no callback will come, so the context is ours to
        // reclaim exactly once here.
        unsafe { close_keep_done::<T, K, OP>(ctx) };
    }
}

impl QueuePair {
    /// Wrap a QP. It is closed through the [`Arc`] it is shared in ([`QueuePair::close`]), or,
    /// never shared and with nothing attached, unwrapped again ([`QueuePair::into_qp`]).
    pub fn new(qp: Qp) -> Self {
        Self {
            qp,
            buffers: PassiveLock::new(Vec::new()),
            closing: AtomicPtr::new(core::ptr::null_mut()),
            receiving: AtomicBool::new(false),
            sending: AtomicBool::new(false),
        }
    }

    /// The QP back, for a pair with no buffer attached (so nothing can be in use); the pair
    /// itself otherwise.
    ///
    /// # Errors
    ///
    /// The pair, unchanged, when a buffer is attached.
    pub fn into_qp(self) -> Result<Qp, Self> {
        if self.buffers.with(|b| b.is_empty()) {
            Ok(self.qp)
        } else {
            Err(self)
        }
    }

    /// The QP (for connect, accept, flush).
    pub fn qp(&self) -> &Qp {
        &self.qp
    }

    /// Attach a buffer; returns its index, or `None` (the buffer dropped) when the list cannot
    /// grow for lack of memory. `// IRQL: PASSIVE_LEVEL`.
    pub fn attach(&self, buffer: Arc<Buffer>) -> Option<usize> {
        self.buffers.with(|b| {
            b.try_reserve(1).ok()?;
            b.push(buffer);
            Some(b.len() - 1)
        })
    }

    fn sge(&self, index: usize, offset: usize, len: u32) -> Option<Sge> {
        self.buffers
            .with(|b| b.get(index).and_then(|buf| buf.sge(offset, len)))
    }

    /// `NdkCloseQp`; completes with [`Op::CloseQp`]. `this` is kept (so the buffers live) until
    /// the completion has returned: closing allocates nothing.
    ///
    /// # Errors
    /// `this`, untouched, unless it is the pair's only reference ([`Arc::is_unique`]): a clone
    /// could otherwise still post to (or flush) the QP after its close.
    pub fn close<T: Sink>(this: Arc<Self>, sink: &Arc<T>) -> Result<(), Arc<Self>> {
        if !Arc::is_unique(&this) {
            return Err(this);
        }
        let ctx = ctx_of(sink);
        let first = this
            .closing
            .compare_exchange(
                core::ptr::null_mut(),
                ctx,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        // INVARIANT: `this` is unique, and `close` consumes it: the pair is closed once.
        debug_assert!(first, "a QP closed twice");
        if !first {
            return Ok(());
        }
        if !holds_ref_of(this.qp.ref_of.load(Ordering::Acquire), sink) {
            // The close completion releases one reference: make sure the object has one.
            take_ref(sink);
        }
        let (header, f) = (this.qp.header(), this.qp.table().NdkCloseQp);
        // The completion's context: the pair itself, its count surrendered to the completion.
        let keep: ndkpi_sys::PVOID = Arc::into_raw(this).cast_mut().cast();
        let status = match f {
            // SAFETY: `closing` admits one close of the pair's QP; `keep` (a counted pointer to
            // the pair) stays valid until `close_pair_done` takes its count back.
            Some(f) => unsafe { f(header, Some(close_pair_done::<T>), keep) },
            None => NtStatus::NOT_SUPPORTED,
        };
        if status != NtStatus::PENDING {
            // SAFETY: closed synchronously: no callback will come, so the count is taken back
            // exactly once, here.
            unsafe { close_pair_done::<T>(keep) };
        }
        Ok(())
    }
}
