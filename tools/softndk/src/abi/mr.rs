//! `NDK_MR`: registration and tokens (fast-register MRs are not emulated).

use ndkpi_sys::*;

use super::{close_object, query_extension};
use crate::mem::resolve_mdl;
use crate::world::{Body, Ctx, Region};

unsafe extern "system" fn register_mr(
    mr: *mut NDK_MR,
    mdl: *mut MDL,
    length: usize,
    flags: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let t = target!(mr, Mr, "NdkRegisterMr");
    let Some((base, count)) = resolve_mdl(mdl) else {
        return t.violation("MDL not created by softndk::SoftMdl::new");
    };
    t.with(|world, out| {
        let Some(Body::Mr(region_owner)) = world.objects.get_mut(t.id).map(|o| &mut o.body) else {
            return Ok(NtStatus::INVALID_PARAMETER);
        };
        if length == 0 || length > count || flags & !0xF != 0 {
            return Ok(NtStatus::INVALID_PARAMETER);
        }
        if region_owner.region.is_some() {
            return Ok(NtStatus::INVALID_DEVICE_STATE);
        }
        region_owner.region = Some(Region {
            base,
            len: length,
            flags,
        });
        let tokens = [region_owner.local_token, region_owner.remote_token];
        for token in tokens {
            world.tokens.insert(token, t.id);
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsafe extern "system" fn deregister_mr(
    mr: *mut NDK_MR,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let t = target!(mr, Mr, "NdkDeregisterMr");
    t.with(|world, out| {
        let Some(Body::Mr(m)) = world.objects.get_mut(t.id).map(|o| &mut o.body) else {
            return Ok(NtStatus::INVALID_PARAMETER);
        };
        if m.region.take().is_none() {
            return Ok(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsupported! {
    fn init_fast_register(mr: *mut NDK_MR, _pages: u32, _remote: BOOLEAN,
        _f: NDK_FN_REQUEST_COMPLETION, _ctx: PVOID) = Mr, "NdkInitializeFastRegisterMr";
}

fn mr_token(mr: *mut NDK_MR, remote: bool) -> u32 {
    let name = if remote {
        "NdkGetRemoteTokenFromMr"
    } else {
        "NdkGetLocalTokenFromMr"
    };
    let t = target!(mr, Mr, name, else 0);
    let mut token = 0;
    t.with(|world, _| {
        if let Some(Body::Mr(m)) = world.objects.get(t.id).map(|o| &o.body) {
            token = if remote {
                m.remote_token
            } else {
                m.local_token
            };
        }
        Ok(NtStatus::SUCCESS)
    });
    token
}

unsafe extern "system" fn remote_token(mr: *mut NDK_MR) -> u32 {
    mr_token(mr, true)
}

unsafe extern "system" fn local_token(mr: *mut NDK_MR) -> u32 {
    mr_token(mr, false)
}

pub(super) static DISPATCH: NDK_MR_DISPATCH = NDK_MR_DISPATCH {
    NdkCloseMr: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkRegisterMr: Some(register_mr),
    NdkDeregisterMr: Some(deregister_mr),
    NdkInitializeFastRegisterMr: Some(init_fast_register),
    NdkGetRemoteTokenFromMr: Some(remote_token),
    NdkGetLocalTokenFromMr: Some(local_token),
};
