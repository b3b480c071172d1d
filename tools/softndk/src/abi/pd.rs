//! `NDK_PD`: MRs and QPs on a protection domain, and its privileged token (MWs, SRQs and
//! QPs with an SRQ are not emulated).

use ndkpi_sys::*;

use super::args::arg_object;
use super::{close_object, entered, query_extension, status_of};
use crate::ObjectKind;
use crate::qp::Qp;
use crate::world::{Body, Ctx, Mr};

unsafe extern "system" fn create_mr(
    pd: *mut NDK_PD,
    fast: BOOLEAN,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_MR,
) -> NTSTATUS {
    let t = target!(pd, Pd, "NdkCreateMr");
    if fast != FALSE {
        return t.not_supported();
    }
    t.create(ObjectKind::Mr, cc, ctx, pp, |world| {
        let (local_token, remote_token) = (world.next_token(), world.next_token());
        Ok((
            vec![t.id],
            Body::Mr(Mr {
                pd: t.id,
                region: None,
                local_token,
                remote_token,
            }),
        ))
    })
}

unsupported! {
    fn create_mw(pd: *mut NDK_PD, _cc: NDK_FN_CREATE_COMPLETION, _ctx: PVOID,
        _pp: *mut *mut NDK_MW) = Pd, "NdkCreateMw";
    fn create_srq(pd: *mut NDK_PD, _depth: u32, _sge: u32, _threshold: u32,
        _notify: NDK_FN_SRQ_NOTIFICATION_CALLBACK, _notify_ctx: PVOID,
        _affinity: *mut GROUP_AFFINITY, _cc: NDK_FN_CREATE_COMPLETION, _ctx: PVOID,
        _pp: *mut *mut NDK_SRQ) = Pd, "NdkCreateSrq";
}

unsafe extern "system" fn create_qp(
    pd: *mut NDK_PD,
    rcq: *mut NDK_CQ,
    icq: *mut NDK_CQ,
    qp_ctx: PVOID,
    rq_depth: u32,
    iq_depth: u32,
    max_rsge: u32,
    max_isge: u32,
    inline: u32,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_QP,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(pd, ObjectKind::Pd, "NdkCreateQp")?;
        // Both CQ arguments are checked (and reported) before either failure returns.
        let (rcq, icq) = (
            arg_object(&t, rcq, ObjectKind::Cq),
            arg_object(&t, icq, ObjectKind::Cq),
        );
        let (rcq, icq) = (rcq?, icq?);
        Ok(t.create(ObjectKind::Qp, cc, ctx, pp, |world| {
            let info = world.adapter_info(world.objects[t.id].adapter);
            let adapter = world.objects[t.id].adapter;
            let cqs_ok = [rcq, icq]
                .iter()
                .all(|cq| world.is_open(*cq) && world.objects[*cq].adapter == adapter);
            let limits_ok = (1..=info.MaxReceiveQueueDepth).contains(&rq_depth)
                && (1..=info.MaxInitiatorQueueDepth).contains(&iq_depth)
                && max_rsge <= info.MaxReceiveRequestSge
                && max_isge <= info.MaxInitiatorRequestSge
                && inline <= info.MaxInlineDataSize;
            if !cqs_ok || !limits_ok {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let qp = Qp::new(
                t.id,
                rcq,
                icq,
                Ctx(qp_ctx),
                rq_depth,
                iq_depth,
                max_rsge,
                max_isge,
                inline,
            );
            Ok((vec![t.id, rcq, icq], Body::Qp(Box::new(qp))))
        }))
    })
}

unsupported! {
    fn create_qp_with_srq(pd: *mut NDK_PD, _rcq: *mut NDK_CQ, _icq: *mut NDK_CQ,
        _srq: *mut NDK_SRQ, _qp_ctx: PVOID, _iq_depth: u32, _max_isge: u32, _inline: u32,
        _cc: NDK_FN_CREATE_COMPLETION, _ctx: PVOID, _pp: *mut *mut NDK_QP)
        = Pd, "NdkCreateQpWithSrq";
}

unsafe extern "system" fn privileged_token(pd: *mut NDK_PD, token: *mut u32) {
    let t = target!(pd, Pd, "NdkGetPrivilegedMemoryRegionToken", else ());
    if token.is_null() {
        t.violation("null pToken");
        return;
    }
    let mut value = 0;
    t.with(|world, _| {
        if let Some(Body::Pd { privileged_token }) = world.objects.get(t.id).map(|o| &o.body) {
            value = *privileged_token;
        }
        Ok(NtStatus::SUCCESS)
    });
    // SAFETY: non-null out-pointer.
    unsafe { token.write(value) };
}

pub(super) static DISPATCH: NDK_PD_DISPATCH = NDK_PD_DISPATCH {
    NdkClosePd: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkCreateMr: Some(create_mr),
    NdkCreateMw: Some(create_mw),
    NdkCreateSrq: Some(create_srq),
    NdkCreateQp: Some(create_qp),
    NdkCreateQpWithSrq: Some(create_qp_with_srq),
    NdkGetPrivilegedMemoryRegionToken: Some(privileged_token),
};
