//! `NDK_ADAPTER`: adapter info, the creates hung off the adapter (CQ, PD, connector,
//! listener; shared endpoints are not emulated) and logical address mappings.

use ndkpi_sys::*;

use super::query_extension;
use crate::ObjectKind;
use crate::conn::{Conn, Listener};
use crate::fabric::in_provider_callback;
use crate::mem::resolve_mdl;
use crate::misuse::Violation;
use crate::world::{Body, Ctx, Lam, World};

const PAGE_SIZE: usize = 4096;
const ADAPTER_INFO_LEN: u32 = 0x68;
const _: () = assert!(size_of::<NDK_ADAPTER_INFO>() == ADAPTER_INFO_LEN as usize);

unsafe extern "system" fn query_adapter_info(
    adapter: *mut NDK_ADAPTER,
    info: *mut NDK_ADAPTER_INFO,
    size: *mut u32,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkQueryAdapterInfo");
    if in_provider_callback() {
        t.shared.report(Violation::PassiveOnlyInCallback {
            function: "NdkQueryAdapterInfo",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    if size.is_null() {
        return t.violation("null pBufferSize");
    }
    let mut value = None;
    let status = t.with(|world, _| {
        value = Some(world.adapter_info(t.id));
        Ok(NtStatus::SUCCESS)
    });
    let Some(value) = value else { return status };
    // SAFETY: non-null in/out size.
    let have = unsafe { size.read() };
    let full = ADAPTER_INFO_LEN;
    if info.is_null() || have < NDK_ADAPTER_INFO_V1_SIZE {
        // SAFETY: as above.
        unsafe { size.write(full) };
        return NtStatus::BUFFER_TOO_SMALL;
    }
    let n = have.min(full);
    let bytes = adapter_info_bytes(&value);
    // SAFETY: the consumer's buffer holds `have >= n` bytes; `bytes` is a local of `full >= n`
    // fully initialised bytes (padding zeroed); they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), info.cast::<u8>(), n as usize) };
    // SAFETY: as above.
    unsafe { size.write(n) };
    NtStatus::SUCCESS
}

/// `NDK_ADAPTER_INFO` as bytes, field by field: its padding (0x0C..0x10, 0x64..0x68) is
/// zero, never uninitialised memory copied to the consumer.
fn adapter_info_bytes(info: &NDK_ADAPTER_INFO) -> [u8; ADAPTER_INFO_LEN as usize] {
    use std::mem::offset_of;
    let mut b = [0u8; ADAPTER_INFO_LEN as usize];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(
        offset_of!(NDK_ADAPTER_INFO, Version),
        &info.Version.Major.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, Version) + 2,
        &info.Version.Minor.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, VendorId),
        &info.VendorId.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, DeviceId),
        &info.DeviceId.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, MaxRegistrationSize),
        &info.MaxRegistrationSize.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, MaxWindowSize),
        &info.MaxWindowSize.to_ne_bytes(),
    );
    let u32s = [
        (
            offset_of!(NDK_ADAPTER_INFO, FRMRPageCount),
            info.FRMRPageCount,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInitiatorRequestSge),
            info.MaxInitiatorRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReceiveRequestSge),
            info.MaxReceiveRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReadRequestSge),
            info.MaxReadRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxTransferLength),
            info.MaxTransferLength,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInlineDataSize),
            info.MaxInlineDataSize,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInboundReadLimit),
            info.MaxInboundReadLimit,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxOutboundReadLimit),
            info.MaxOutboundReadLimit,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReceiveQueueDepth),
            info.MaxReceiveQueueDepth,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInitiatorQueueDepth),
            info.MaxInitiatorQueueDepth,
        ),
        (offset_of!(NDK_ADAPTER_INFO, MaxSrqDepth), info.MaxSrqDepth),
        (offset_of!(NDK_ADAPTER_INFO, MaxCqDepth), info.MaxCqDepth),
        (
            offset_of!(NDK_ADAPTER_INFO, LargeRequestThreshold),
            info.LargeRequestThreshold,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxCallerData),
            info.MaxCallerData,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxCalleeData),
            info.MaxCalleeData,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, AdapterFlags),
            info.AdapterFlags,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, RdmaTechnology),
            info.RdmaTechnology,
        ),
    ];
    for (at, v) in u32s {
        put(at, &v.to_ne_bytes());
    }
    b
}

unsafe extern "system" fn create_cq(
    adapter: *mut NDK_ADAPTER,
    depth: u32,
    notify: NDK_FN_CQ_NOTIFICATION_CALLBACK,
    notify_ctx: PVOID,
    _affinity: *mut GROUP_AFFINITY,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_CQ,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkCreateCq");
    t.create(ObjectKind::Cq, cc, ctx, pp, |world| {
        if depth == 0 || depth > world.adapter_info(t.id).MaxCqDepth {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok((
            vec![t.id],
            Body::Cq(Box::new(World::new_cq(depth, notify, Ctx(notify_ctx)))),
        ))
    })
}

unsafe extern "system" fn create_pd(
    adapter: *mut NDK_ADAPTER,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_PD,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkCreatePd");
    t.create(ObjectKind::Pd, cc, ctx, pp, |world| {
        let token = world.next_token();
        Ok((
            vec![t.id],
            Body::Pd {
                privileged_token: token,
            },
        ))
    })
}

unsupported! {
    fn create_shared_endpoint(adapter: *mut NDK_ADAPTER, _addr: *const SOCKADDR, _len: u32,
        _cc: NDK_FN_CREATE_COMPLETION, _ctx: PVOID, _pp: *mut *mut NDK_SHARED_ENDPOINT)
        = Adapter, "NdkCreateSharedEndpoint";
}

unsafe extern "system" fn create_connector(
    adapter: *mut NDK_ADAPTER,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_CONNECTOR,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkCreateConnector");
    t.create(ObjectKind::Connector, cc, ctx, pp, |_| {
        Ok((vec![t.id], Body::Connector(Box::new(Conn::new()))))
    })
}

unsafe extern "system" fn create_listener(
    adapter: *mut NDK_ADAPTER,
    event: NDK_FN_CONNECT_EVENT_CALLBACK,
    event_ctx: PVOID,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_LISTENER,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkCreateListener");
    if event.is_none() {
        return t.violation("null ConnectEvent callback");
    }
    t.create(ObjectKind::Listener, cc, ctx, pp, |_| {
        let listener = Listener {
            callback: event,
            ctx: Ctx(event_ctx),
            addr: None,
            paused: false,
        };
        Ok((vec![t.id], Body::Listener(Box::new(listener))))
    })
}

unsafe extern "system" fn build_lam(
    adapter: *mut NDK_ADAPTER,
    mdl: *mut MDL,
    length: usize,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    lam: *mut NDK_LOGICAL_ADDRESS_MAPPING,
    lam_size: *mut u32,
    fbo: *mut u32,
) -> NTSTATUS {
    let t = target!(adapter, Adapter, "NdkBuildLAM");
    if lam_size.is_null() || fbo.is_null() {
        return t.violation("null pLAMSize or pFBO");
    }
    let Some((va, count)) = resolve_mdl(mdl) else {
        return t.violation("MDL not created by softndk::SoftMdl::new");
    };
    if length == 0 || length > count {
        return NtStatus::INVALID_PARAMETER;
    }
    let offset = va.addr() % PAGE_SIZE;
    let pages = (offset + length).div_ceil(PAGE_SIZE);
    let Some(required) = u32::try_from(pages).ok().and_then(NDK_LAM_SIZE) else {
        return NtStatus::INVALID_PARAMETER;
    };
    // SAFETY: non-null in/out size.
    let have = unsafe { lam_size.read() };
    // SAFETY: as above.
    unsafe { lam_size.write(required) };
    if lam.is_null() || have < required {
        return NtStatus::BUFFER_TOO_SMALL;
    }
    let first_page = va.addr() - offset;
    // SAFETY: `lam` is non-null and points to `required` bytes the consumer provides for the
    // LAM; this only computes field addresses (no read).
    let context = unsafe { &raw mut (*lam).AdapterContext };
    // SAFETY: as above.
    let count = unsafe { &raw mut (*lam).AdapterPageCount };
    // SAFETY: as above; the declared one-element array is the start of `pages` entries.
    let array = unsafe { &raw mut (*lam).AdapterPageArray }.cast::<NDK_LOGICAL_ADDRESS>();
    // SAFETY: `lam` holds `required` bytes (checked above), which covers the header fields;
    // the consumer allocated it for a LAM, so it is suitably aligned.
    unsafe { context.write(std::ptr::null_mut()) };
    // SAFETY: as above.
    unsafe { count.write(u32::try_from(pages).unwrap_or(u32::MAX)) };
    for i in 0..pages {
        let logical = i64::try_from(first_page + i * PAGE_SIZE).unwrap_or(i64::MAX);
        // SAFETY: `required` covers `pages` entries and `i < pages`.
        unsafe { array.wrapping_add(i).write(logical) };
    }
    // SAFETY: non-null out-pointer.
    unsafe { fbo.write(u32::try_from(offset).unwrap_or(0)) };
    t.with(|world, out| {
        if let Some(Body::Adapter { lams, .. }) = world.objects.get_mut(t.id).map(|o| &mut o.body) {
            lams.insert(
                lam.addr(),
                Lam {
                    base: va,
                    len: length,
                },
            );
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsafe extern "system" fn release_lam(
    adapter: *mut NDK_ADAPTER,
    lam: *mut NDK_LOGICAL_ADDRESS_MAPPING,
) {
    let t = target!(adapter, Adapter, "NdkReleaseLAM", else ());
    t.with(|world, _| {
        let removed = match world.objects.get_mut(t.id).map(|o| &mut o.body) {
            Some(Body::Adapter { lams, .. }) => lams.remove(&lam.addr()).is_some(),
            _ => false,
        };
        if removed {
            Ok(NtStatus::SUCCESS)
        } else {
            Err(Violation::BadArgument {
                function: "NdkReleaseLAM",
                what: "LAM not built by this adapter (or released twice)",
            })
        }
    });
}

pub(super) static DISPATCH: NDK_ADAPTER_DISPATCH = NDK_ADAPTER_DISPATCH {
    NdkQueryExtension: Some(query_extension),
    NdkQueryAdapterInfo: Some(query_adapter_info),
    NdkCreateCq: Some(create_cq),
    NdkCreatePd: Some(create_pd),
    NdkCreateSharedEndpoint: Some(create_shared_endpoint),
    NdkCreateConnector: Some(create_connector),
    NdkCreateListener: Some(create_listener),
    NdkBuildLAM: Some(build_lam),
    NdkReleaseLAM: Some(release_lam),
};
