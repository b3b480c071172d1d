//! Sinks, the NDK-held reference, and the trampolines the provider calls.

use alloc::sync::Arc;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use ndkpi_sys::{NDK_CONNECTOR, NDK_OBJECT_HEADER, NTSTATUS, PVOID, STATUS_SUCCESS};

use crate::handles::{Connector, Cq, Listener, Mr, Pd, Qp};

/// The operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Op {
    /// `NdkCreatePd`.
    CreatePd = 1,
    /// `NdkCreateCq`.
    CreateCq,
    /// `NdkCreateQp`.
    CreateQp,
    /// `NdkCreateConnector`.
    CreateConnector,
    /// `NdkCreateListener`.
    CreateListener,
    /// `NdkCreateMr`.
    CreateMr,
    /// `NdkListen`.
    Listen,
    /// `NdkConnect`.
    Connect,
    /// `NdkCompleteConnect(Ex)`.
    CompleteConnect,
    /// `NdkAccept(Ex)`.
    Accept,
    /// `NdkDisconnect`.
    Disconnect,
    /// `NdkRegisterMr`.
    RegisterMr,
    /// `NdkDeregisterMr`.
    DeregisterMr,
    /// `NdkClosePd`.
    ClosePd,
    /// `NdkCloseCq`.
    CloseCq,
    /// `NdkCloseQp`.
    CloseQp,
    /// `NdkCloseConnector`.
    CloseConnector,
    /// `NdkCloseListener`.
    CloseListener,
    /// `NdkCloseMr`.
    CloseMr,
}

impl Op {
    pub(crate) const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::CreatePd,
            2 => Self::CreateCq,
            3 => Self::CreateQp,
            4 => Self::CreateConnector,
            5 => Self::CreateListener,
            6 => Self::CreateMr,
            7 => Self::Listen,
            8 => Self::Connect,
            9 => Self::CompleteConnect,
            10 => Self::Accept,
            11 => Self::Disconnect,
            12 => Self::RegisterMr,
            13 => Self::DeregisterMr,
            14 => Self::ClosePd,
            15 => Self::CloseCq,
            16 => Self::CloseQp,
            17 => Self::CloseConnector,
            18 => Self::CloseListener,
            _ => Self::CloseMr,
        }
    }
}

/// A new object, delivered with its create completion.
#[derive(Debug)]
pub enum Created {
    /// From `NdkCreatePd`.
    Pd(Pd),
    /// From `NdkCreateCq`.
    Cq(Cq),
    /// From `NdkCreateQp`.
    Qp(Qp),
    /// From `NdkCreateConnector`.
    Connector(Connector),
    /// From `NdkCreateListener`.
    Listener(Listener),
    /// From `NdkCreateMr`.
    Mr(Mr),
}

/// Tracks whether NDK holds a reference to a sink. Embed one in every sink type.
#[derive(Debug, Default)]
pub struct NdkRef {
    held: AtomicBool,
}

impl NdkRef {
    /// A sink NDK has not seen yet.
    pub const fn new() -> Self {
        Self {
            held: AtomicBool::new(false),
        }
    }

    /// Whether NDK currently holds a reference.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }
}

/// A consumer object that receives provider callbacks (at <= `DISPATCH_LEVEL`; never block,
/// never call a `PASSIVE_LEVEL` function).
pub trait Sink: Send + Sync + Sized + 'static {
    /// The sink's [`NdkRef`].
    fn ndk_ref(&self) -> &NdkRef;

    /// A request or create finished; creates carry the new object on success.
    fn completed(&self, op: Op, status: NTSTATUS, created: Option<Created>);

    /// A close finished. Return `true` if this is the last callback NDK will ever make to
    /// this sink: NDK's reference is released once this returns.
    fn closed(&self, op: Op) -> bool;

    /// The NDK disconnect callback fired; `reason` is `Some` for the NDKPI 2.1 `Ex` form.
    fn disconnected(&self, reason: Option<u32>) {
        let _ = reason;
    }

    /// The CQ's armed notification fired.
    fn cq_notified(&self, status: NTSTATUS) {
        let _ = status;
    }

    /// A listener's connect event: a new incoming connection request, now owned by the sink.
    fn connection_requested(&self, connector: Connector) {
        // Nobody wants it: refuse it by closing it (an implicit reject).
        connector.close_detached();
    }
}

/// The context pointer for `sink`, taking NDK's reference on first use.
pub(crate) fn ctx_of<T: Sink>(sink: &Arc<T>) -> PVOID {
    if !sink.ndk_ref().held.swap(true, Ordering::AcqRel) {
        // INVARIANT: NDK now owns one strong reference, released by `release` after the
        // sink's last callback (`Sink::closed` returned true).
        let _ = Arc::into_raw(Arc::clone(sink));
    }
    Arc::as_ptr(sink).cast_mut().cast()
}

/// Borrow the sink behind a context pointer.
///
/// # Safety
/// `ctx` came from [`ctx_of`] for a `T`, and NDK's reference has not been released.
unsafe fn sink<'a, T: Sink>(ctx: PVOID) -> &'a T {
    // SAFETY: per the caller, `ctx` points to a live `T` kept alive by NDK's reference.
    unsafe { &*ctx.cast::<T>() }
}

/// Release NDK's reference after the last callback.
///
/// # Safety
/// `ctx` came from [`ctx_of`] for a `T`; NDK will make no further callback with it.
unsafe fn release<T: Sink>(ctx: PVOID) {
    let ptr = ctx.cast::<T>().cast_const();
    // SAFETY: the caller guarantees NDK's reference (taken in `ctx_of`) is still owned and is
    // now surrendered; the pointer came from `Arc::as_ptr` of the same allocation.
    unsafe { Arc::decrement_strong_count(ptr) };
}

/// Deliver a close completion, releasing NDK's reference when it was the last callback.
pub(crate) fn deliver_closed<T: Sink>(sink: &Arc<T>, op: Op) {
    if sink.closed(op) && sink.ndk_ref().held.swap(false, Ordering::AcqRel) {
        let ctx = Arc::as_ptr(sink).cast_mut().cast();
        // SAFETY: `held` was true, so `ctx_of` gave NDK a reference for this allocation; the
        // sink said no callback follows; `sink` (the caller's Arc) keeps it alive past this.
        unsafe { release::<T>(ctx) };
    }
}

pub(crate) unsafe extern "system" fn request_done<T: Sink, const OP: u8>(
    ctx: PVOID,
    status: NTSTATUS,
) {
    // SAFETY: the provider passes back the context we gave it; NDK's reference is held.
    unsafe { sink::<T>(ctx) }.completed(Op::from_u8(OP), status, None);
}

pub(crate) unsafe extern "system" fn create_done<T: Sink, const OP: u8>(
    ctx: PVOID,
    status: NTSTATUS,
    object: *mut NDK_OBJECT_HEADER,
) {
    let op = Op::from_u8(OP);
    let created = if status == STATUS_SUCCESS {
        wrap_created(op, object)
    } else {
        None
    };
    // SAFETY: the provider passes back the context we gave it; NDK's reference is held.
    unsafe { sink::<T>(ctx) }.completed(op, status, created);
}

/// Wrap a provider object into the handle its create operation makes.
pub(crate) fn wrap_created(op: Op, object: *mut NDK_OBJECT_HEADER) -> Option<Created> {
    let object = NonNull::new(object)?;
    Some(match op {
        Op::CreatePd => Created::Pd(Pd::from_raw(object.cast())),
        Op::CreateCq => Created::Cq(Cq::from_raw(object.cast())),
        Op::CreateQp => Created::Qp(Qp::from_raw(object.cast())),
        Op::CreateConnector => Created::Connector(Connector::from_raw(object.cast())),
        Op::CreateListener => Created::Listener(Listener::from_raw(object.cast())),
        _ => Created::Mr(Mr::from_raw(object.cast())),
    })
}

pub(crate) unsafe extern "system" fn close_done<T: Sink, const OP: u8>(ctx: PVOID) {
    // SAFETY: the provider passes back the context we gave it; NDK's reference is held.
    let sink_ref = unsafe { sink::<T>(ctx) };
    let last = sink_ref.closed(Op::from_u8(OP));
    let surrender = last && sink_ref.ndk_ref().held.swap(false, Ordering::AcqRel);
    if surrender {
        // SAFETY: the sink said this was its last callback and the reference is surrendered
        // exactly once (the swap above); `sink_ref` is not used after this.
        unsafe { release::<T>(ctx) };
    }
}

pub(crate) unsafe extern "system" fn disconnect_event<T: Sink>(ctx: PVOID) {
    // SAFETY: registered with our context; NDK's reference lasts past the connector's close.
    unsafe { sink::<T>(ctx) }.disconnected(None);
}

pub(crate) unsafe extern "system" fn disconnect_event_ex<T: Sink>(ctx: PVOID, reason: u32) {
    // SAFETY: registered with our context; NDK's reference lasts past the connector's close.
    unsafe { sink::<T>(ctx) }.disconnected(Some(reason));
}

pub(crate) unsafe extern "system" fn cq_notify<T: Sink>(ctx: PVOID, status: NTSTATUS) {
    // SAFETY: registered with our context at CQ creation; held until the CQ's close.
    unsafe { sink::<T>(ctx) }.cq_notified(status);
}

pub(crate) unsafe extern "system" fn connect_event<T: Sink>(
    ctx: PVOID,
    connector: *mut NDK_CONNECTOR,
) {
    let Some(connector) = NonNull::new(connector) else {
        return;
    };
    // SAFETY: registered with our context at listener creation; held until its close.
    unsafe { sink::<T>(ctx) }.connection_requested(Connector::from_raw(connector));
}

/// A close completion for objects nobody waits for.
pub(crate) unsafe extern "system" fn ignore_close(_ctx: *mut c_void) {}
