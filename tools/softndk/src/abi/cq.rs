//! `NDK_CQ`: arming and taking results (resize and interrupt moderation are not emulated).

use ndkpi_sys::*;

use super::{Target, close_object, enter, query_extension};
use crate::ObjectKind;
use crate::object::{Busy, BusyGuard};
use crate::world::{Body, CqEntry};

unsupported! {
    fn resize_cq(cq: *mut NDK_CQ, _depth: u32, _f: NDK_FN_REQUEST_COMPLETION, _ctx: PVOID)
        = Cq, "NdkResizeCq";
}

unsafe extern "system" fn arm_cq(cq: *mut NDK_CQ, kind: u32) {
    let t = target!(cq, Cq, "NdkArmCq", else ());
    let Some(_serial) = t.serialise(Busy::Cq) else {
        return;
    };
    if kind > NDK_CQ_NOTIFY_SOLICITED {
        t.violation("NdkArmCq type is not an NDK_CQ_NOTIFY_* value");
        return;
    }
    t.with(|world, out| {
        world.arm_cq(out, t.id, kind);
        Ok(NtStatus::SUCCESS)
    });
}

/// What softndk writes into a result field NDKPI leaves undefined on error completions
/// (`BytesTransferred`, `Type`): a value no consumer can mistake for a real one.
const UNDEFINED_FIELD: u32 = 0xDEAD_BEEF;

/// The common part of `NdkGetCqResults(Ex)`: validate the CQ, enter it (concurrent access is
/// misuse) and take up to `n` entries. `None` when the call returns 0 at once. The guard keeps
/// the CQ entered while the caller writes the results.
fn take_results<R>(
    cq: *mut NDK_CQ,
    results: *mut R,
    n: u32,
    function: &'static str,
) -> Option<(Target, BusyGuard, Vec<CqEntry>)> {
    let t = enter(cq, ObjectKind::Cq, function)?;
    let serial = t.serialise(Busy::Cq)?;
    if results.is_null() && n > 0 {
        t.violation("null Results array");
        return None;
    }
    let mut taken = Vec::new();
    t.with(|world, _| {
        if let Some(Body::Cq(cq)) = world.objects.get_mut(t.id).map(|o| &mut o.body) {
            let k = (n as usize).min(cq.entries.len());
            taken.extend(cq.entries.drain(..k));
        }
        Ok(NtStatus::SUCCESS)
    });
    Some((t, serial, taken))
}

/// Write the entries taken into the consumer's array, each built by `result` from the entry and
/// whether its undefined fields are scrambled (a failed entry, unless the kindness asks for
/// clean error completions); the count written.
fn write_results<R>(
    results: *mut R,
    taken: &[CqEntry],
    clean: bool,
    result: impl Fn(&CqEntry, bool) -> R,
) -> u32 {
    for (i, e) in taken.iter().enumerate() {
        let failed = e.status != NtStatus::SUCCESS && !clean;
        // SAFETY: the consumer's array holds `n` results and `i < taken.len() <= n`.
        unsafe { results.wrapping_add(i).write(result(e, failed)) };
    }
    u32::try_from(taken.len()).unwrap_or(0)
}

/// The `NDK_RESULT` of an entry; `failed` scrambles `BytesTransferred`.
fn result(e: &CqEntry, failed: bool) -> NDK_RESULT {
    NDK_RESULT {
        Status: e.status,
        BytesTransferred: if failed { UNDEFINED_FIELD } else { e.bytes },
        QPContext: e.qp_context.0,
        RequestContext: e.request_context.0,
    }
}

unsafe extern "system" fn get_cq_results(cq: *mut NDK_CQ, results: *mut NDK_RESULT, n: u32) -> u32 {
    let Some((t, _serial, taken)) = take_results(cq, results, n, "NdkGetCqResults") else {
        return 0;
    };
    let clean = t.shared.world().config.kindness.clean_error_completions;
    write_results(results, &taken, clean, result)
}

unsafe extern "system" fn get_cq_results_ex(
    cq: *mut NDK_CQ,
    results: *mut NDK_RESULT_EX,
    n: u32,
) -> u32 {
    let Some((t, _serial, taken)) = take_results(cq, results, n, "NdkGetCqResultsEx") else {
        return 0;
    };
    let (v21, clean) = {
        let world = t.shared.world();
        let v = world.objects.get(t.id).map(|o| o.version);
        (
            v.is_some_and(|v| (v.Major, v.Minor) >= (2, 1)),
            world.config.kindness.clean_error_completions,
        )
    };
    // NDK_RESULT_EX: on an error completion only Status and the contexts are defined;
    // ProviderErrorCode (2.1) carries the provider's diagnostic, zero below 2.1.
    write_results(results, &taken, clean, |e, failed| {
        let base = result(e, failed);
        NDK_RESULT_EX {
            Status: base.Status,
            BytesTransferred: base.BytesTransferred,
            QPContext: base.QPContext,
            RequestContext: base.RequestContext,
            Type: if failed { UNDEFINED_FIELD } else { e.op },
            ProviderErrorCode: if v21 && !clean { e.provider_code } else { 0 },
            TypeSpecificCompletionOutput: 0,
        }
    })
}

unsupported! {
    fn control_moderation(cq: *mut NDK_CQ, _interval: u32, _count: u32)
        = Cq, "NdkControlCqInterruptModeration";
}

const fn table(v12: bool) -> NDK_CQ_DISPATCH {
    NDK_CQ_DISPATCH {
        NdkCloseCq: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkResizeCq: Some(resize_cq),
        NdkArmCq: Some(arm_cq),
        NdkGetCqResults: Some(get_cq_results),
        NdkControlCqInterruptModeration: Some(control_moderation),
        NdkGetCqResultsEx: if v12 { Some(get_cq_results_ex) } else { None },
    }
}
versioned_tables!(NDK_CQ_DISPATCH, v12, "1.2");
