//! Sinks, NDK's references to them, and the trampolines the provider calls.
//!
//! Reference rule: NDK holds one strong reference to a sink **per live object** whose callbacks
//! go to it (taken when the create starts, or when an incoming connector is first registered
//! with a sink), plus one per create in flight. It is released by the trampoline *after* the
//! object's last callback — its close completion — has returned, or after a failed create's
//! completion. A sink is therefore never freed while a callback to it runs or may still come.

use core::ffi::c_void;
use core::ptr::NonNull;
use kalloc::Arc;

use ndkpi_sys::{NDK_CONNECTOR, NDK_OBJECT_HEADER, NTSTATUS, NtStatus, PVOID};

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
    /// Every operation, in the order of their numbers (what [`Op::from_u8`] decodes).
    pub const ALL: [Self; 19] = {
        let mut all = [Self::CreatePd; 19];
        let mut i = 0;
        while i < all.len() {
            // `i + 1` <= 19: fits a u8.
            #[expect(clippy::cast_possible_truncation, reason = "at most 19")]
            let n = (i + 1) as u8;
            all[i] = Self::from_u8(n);
            i += 1;
        }
        all
    };

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

/// A consumer object that receives provider callbacks (at <= `DISPATCH_LEVEL`; never block,
/// never call a `PASSIVE_LEVEL` function).
pub trait Sink: Send + Sync + Sized + 'static {
    /// A request or create finished; creates carry the new object on success.
    fn completed(&self, op: Op, status: NTSTATUS, created: Option<Created>);

    /// A close finished: the object's last callback.
    fn closed(&self, op: Op);

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

/// The context pointer for `sink` (no reference taken).
pub(crate) fn ctx_of<T: Sink>(sink: &Arc<T>) -> PVOID {
    Arc::as_ptr(sink).cast_mut().cast()
}

/// Give NDK one strong reference to `sink`, released by exactly one [`release`].
pub(crate) fn take_ref<T: Sink>(sink: &Arc<T>) {
    // INVARIANT: a matching `release` follows after the object's (or failed create's) last
    // callback has returned.
    let _ = Arc::into_raw(Arc::clone(sink));
}

/// Borrow the sink behind a context pointer.
///
/// # Safety
/// `ctx` came from [`ctx_of`] for a `T` that NDK holds a reference to.
pub(crate) unsafe fn sink<'a, T: Sink>(ctx: PVOID) -> &'a T {
    // SAFETY: per the caller, `ctx` points to a live `T` kept alive by NDK's reference.
    unsafe { &*ctx.cast::<T>() }
}

/// Release one reference taken by [`take_ref`].
///
/// # Safety
/// `ctx` came from [`ctx_of`] for a `T`; the caller owns one reference taken by `take_ref` and
/// surrenders it; no borrow of the sink derived from `ctx` is used afterwards.
pub(crate) unsafe fn release<T: Sink>(ctx: PVOID) {
    let ptr = ctx.cast::<T>().cast_const();
    // SAFETY: per the caller, one strong reference of this allocation is owned and
    // surrendered; the pointer came from `Arc::as_ptr` of it.
    unsafe { Arc::decrement_strong_count(ptr) };
}

pub(crate) unsafe extern "system" fn request_done<T: Sink, const OP: u8>(
    ctx: PVOID,
    status: NTSTATUS,
) {
    // SAFETY: the provider passes back the context we gave it; the object it belongs to
    // holds a reference until its close completion, which follows every request completion.
    unsafe { sink::<T>(ctx) }.completed(Op::from_u8(OP), status, None);
}

pub(crate) unsafe extern "system" fn create_done<T: Sink, const OP: u8>(
    ctx: PVOID,
    status: NTSTATUS,
    object: *mut NDK_OBJECT_HEADER,
) {
    let op = Op::from_u8(OP);
    let created = if status == NtStatus::SUCCESS {
        wrap_created(op, object, ctx)
    } else {
        None
    };
    let failed = created.is_none();
    // SAFETY: the provider passes back the context we gave it; the create holds a reference.
    unsafe { sink::<T>(ctx) }.completed(op, status, created);
    if failed {
        // SAFETY: no object was made, so the create's reference is surrendered; the borrow
        // above has ended.
        unsafe { release::<T>(ctx) };
    }
}

/// Wrap a provider object into the handle its create operation makes; the create's reference
/// to the sink whose context is `ctx` passes to the object.
pub(crate) fn wrap_created(op: Op, object: *mut NDK_OBJECT_HEADER, ctx: PVOID) -> Option<Created> {
    let object = NonNull::new(object)?;
    let ctx = ctx.addr();
    // Each `adopt` below: the provider just returned this object from the create `op`, so it
    // is of that type, live, with its header and table set, and nothing else owns it; the
    // create's reference to the sink passes to the handle.
    Some(match op {
        // SAFETY: a live PD just created by the provider, owned by nobody else.
        Op::CreatePd => Created::Pd(unsafe { Pd::adopt(object.cast(), ctx) }),
        // SAFETY: a live CQ just created by the provider, owned by nobody else.
        Op::CreateCq => Created::Cq(unsafe { Cq::adopt(object.cast(), ctx) }),
        // SAFETY: a live QP just created by the provider, owned by nobody else.
        Op::CreateQp => Created::Qp(unsafe { Qp::adopt(object.cast(), ctx) }),
        // SAFETY: a live connector just created by the provider, owned by nobody else.
        Op::CreateConnector => Created::Connector(unsafe { Connector::adopt(object.cast(), ctx) }),
        // SAFETY: a live listener just created by the provider, owned by nobody else.
        Op::CreateListener => Created::Listener(unsafe { Listener::adopt(object.cast(), ctx) }),
        // SAFETY: a live MR just created by the provider, owned by nobody else.
        _ => Created::Mr(unsafe { Mr::adopt(object.cast(), ctx) }),
    })
}

pub(crate) unsafe extern "system" fn close_done<T: Sink, const OP: u8>(ctx: PVOID) {
    // SAFETY: the provider passes back the context we gave it; the object holds a reference.
    unsafe { sink::<T>(ctx) }.closed(Op::from_u8(OP));
    // SAFETY: a close completion is the object's last callback, so its reference is
    // surrendered now that the callback above has returned.
    unsafe { release::<T>(ctx) };
}

pub(crate) unsafe extern "system" fn disconnect_event<T: Sink>(ctx: PVOID) {
    // SAFETY: registered with our context; the connector holds a reference until its close.
    unsafe { sink::<T>(ctx) }.disconnected(None);
}

pub(crate) unsafe extern "system" fn disconnect_event_ex<T: Sink>(ctx: PVOID, reason: u32) {
    // SAFETY: registered with our context; the connector holds a reference until its close.
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
    // SAFETY: the provider hands over a new, live incoming connector that nobody else owns;
    // it holds no sink reference yet (it takes one when registered with a sink).
    let connector = unsafe { Connector::from_raw(connector) };
    // SAFETY: registered with our context at listener creation; held until its close.
    unsafe { sink::<T>(ctx) }.connection_requested(connector);
}

/// A close completion for objects nobody waits for.
pub(crate) unsafe extern "system" fn ignore_close(_ctx: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::Op;

    #[test]
    fn all_lists_each_operation_once_by_its_number() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i + 1, "{op:?}");
        }
        assert_eq!(Op::CloseMr as usize, Op::ALL.len(), "the last operation");
    }
}
