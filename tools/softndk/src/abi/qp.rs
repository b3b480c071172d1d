//! `NDK_QP`: flush and the posts (send, receive, read, write; bind, fast-register and
//! invalidate are not emulated).

use ndkpi_sys::*;

use super::args::read_sges;
use super::{close_object, entered, query_extension, status_of};
use crate::ObjectKind;
use crate::misuse::Queue;
use crate::object::{Busy, ObjId};
use crate::qp::Sge;
use crate::world::{Ctx, Out, World};

unsafe extern "system" fn flush(qp: *mut NDK_QP) {
    let t = target!(qp, Qp, "NdkFlush", else ());
    t.with(|world, out| {
        world.start_flush(out, t.id);
        Ok(NtStatus::SUCCESS)
    });
}

/// A post on one of the QP's queues: the object is validated, the consumer's scatter/gather
/// list copied, the queue entered (a concurrent post on it is misuse), then `op` runs with the
/// lock held.
fn post(
    qp: *mut NDK_QP,
    function: &'static str,
    queue: Queue,
    sgl: *const NDK_SGE,
    n: u32,
    op: impl FnOnce(&mut World, &mut Out, ObjId, Vec<Sge>) -> NTSTATUS,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(qp, ObjectKind::Qp, function)?;
        let sges = read_sges(&t, sgl, n)?;
        let Some(_serial) = t.serialise(Busy::Queue(queue)) else {
            return Err(NtStatus::INVALID_PARAMETER);
        };
        t.shared.gate_point(t.block.addr(), queue);
        Ok(t.with(|world, out| Ok(op(world, out, t.id, sges))))
    })
}

unsafe extern "system" fn send(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
    flags: u32,
) -> NTSTATUS {
    post(
        qp,
        "NdkSend",
        Queue::Initiator,
        sgl,
        n,
        |world, out, id, sges| world.post_send(out, id, Ctx(ctx), &sges, flags),
    )
}

unsafe extern "system" fn receive(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
) -> NTSTATUS {
    post(
        qp,
        "NdkReceive",
        Queue::Receive,
        sgl,
        n,
        |world, out, id, sges| world.post_receive(out, id, Ctx(ctx), sges),
    )
}

unsupported! {
    fn bind(qp: *mut NDK_QP, _ctx: PVOID, _mr: *mut NDK_MR, _mw: *mut NDK_MW, _va: PVOID,
        _len: usize, _flags: u32) = Qp, "NdkBind";
    fn fast_register(qp: *mut NDK_QP, _ctx: PVOID, _mr: *mut NDK_MR, _pages: u32,
        _array: *const NDK_LOGICAL_ADDRESS, _fbo: u32, _len: usize, _base: PVOID,
        _flags: u32) = Qp, "NdkFastRegister";
    fn invalidate(qp: *mut NDK_QP, _ctx: PVOID, _obj: *mut NDK_OBJECT_HEADER,
        _flags: u32) = Qp, "NdkInvalidate";
}

/// `NdkRead` and `NdkWrite`, which differ only in the direction.
macro_rules! rdma_entry {
    ($name:ident, $function:literal, $write:literal) => {
        unsafe extern "system" fn $name(
            qp: *mut NDK_QP,
            ctx: PVOID,
            sgl: *const NDK_SGE,
            n: u32,
            remote: u64,
            token: u32,
            flags: u32,
        ) -> NTSTATUS {
            post(
                qp,
                $function,
                Queue::Initiator,
                sgl,
                n,
                |world, out, id, sges| {
                    world.post_rdma(out, id, Ctx(ctx), &sges, remote, token, flags, $write)
                },
            )
        }
    };
}

rdma_entry!(read, "NdkRead", false);
rdma_entry!(write, "NdkWrite", true);

unsupported! {
    fn send_and_invalidate(qp: *mut NDK_QP, _ctx: PVOID, _sgl: *const NDK_SGE, _n: u32,
        _flags: u32, _token: u32) = Qp, "NdkSendAndInvalidate";
}

const fn table(v12: bool) -> NDK_QP_DISPATCH {
    NDK_QP_DISPATCH {
        NdkCloseQp: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkFlush: Some(flush),
        NdkSend: Some(send),
        NdkReceive: Some(receive),
        NdkBind: Some(bind),
        NdkFastRegister: Some(fast_register),
        NdkInvalidate: Some(invalidate),
        NdkRead: Some(read),
        NdkWrite: Some(write),
        NdkSendAndInvalidate: if v12 { Some(send_and_invalidate) } else { None },
    }
}
versioned_tables!(NDK_QP_DISPATCH, v12, "1.2");
