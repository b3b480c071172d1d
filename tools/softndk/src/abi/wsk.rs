//! The WSK side: `WskOpenNdkAdapter` / `WskCloseNdkAdapter` and the registry of softndk WSK
//! clients they are called with.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use ndkpi_sys::*;

use crate::fabric::{Shared, in_provider_callback};
use crate::misuse::Violation;
use crate::world::{Body, Out};
use crate::{ObjectKind, negotiate};

static CLIENTS: Mutex<BTreeMap<usize, Weak<Shared>>> = Mutex::new(BTreeMap::new());

pub(crate) fn register_client(addr: usize, shared: Weak<Shared>) {
    CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr, shared);
}

pub(crate) fn unregister_client(addr: usize) {
    CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&addr);
}

fn client(client: PWSK_CLIENT, function: &'static str) -> Arc<Shared> {
    let found = CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&client.addr())
        .and_then(Weak::upgrade);
    found.unwrap_or_else(|| {
        panic!(
            "softndk: {} ({function}: not a softndk WSK client)",
            Violation::UnknownObject { function }.rule()
        )
    })
}

unsafe extern "system" fn wsk_open(
    client_ptr: PWSK_CLIENT,
    version: NDK_VERSION,
    if_index: NET_IFINDEX,
    pp: *mut *mut NDK_ADAPTER,
) -> NTSTATUS {
    let _owner = crate::alloc_check::provider_scope();
    let shared = client(client_ptr, "WskOpenNdkAdapter");
    if in_provider_callback() {
        shared.report(Violation::PassiveOnlyInCallback {
            function: "WskOpenNdkAdapter",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    if pp.is_null() {
        shared.report(Violation::BadArgument {
            function: "WskOpenNdkAdapter",
            what: "null ppNdkAdapter",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    let created = {
        let mut world = shared.world();
        let Some(host) = world
            .hosts
            .iter()
            .position(|h| h.config.if_index == if_index)
        else {
            return NtStatus::NOT_FOUND;
        };
        if world.hosts[host].removed {
            return NtStatus::DEVICE_REMOVED;
        }
        let Some(negotiated) = negotiate(version, world.hosts[host].config.max_version) else {
            return NtStatus::NDIS_BAD_VERSION;
        };
        let body = Body::Adapter {
            removed: false,
            lams: BTreeMap::new(),
            live: std::collections::BTreeSet::new(),
        };
        world
            .create_object(ObjectKind::Adapter, 0, host, negotiated, Vec::new(), body)
            .1
    };
    // SAFETY: non-null out-pointer for the adapter.
    unsafe { pp.write(created.as_ndk()) };
    NtStatus::SUCCESS
}

unsafe extern "system" fn wsk_close(client_ptr: PWSK_CLIENT, adapter: *mut NDK_ADAPTER) {
    let _owner = crate::alloc_check::provider_scope();
    let shared = client(client_ptr, "WskCloseNdkAdapter");
    let t = target!(adapter, Adapter, "WskCloseNdkAdapter", else ());
    if in_provider_callback() {
        shared.report(Violation::PassiveOnlyInCallback {
            function: "WskCloseNdkAdapter",
        });
        return;
    }
    if !t.shared.world().is_open(t.id) {
        let v = Violation::DoubleClose {
            function: "WskCloseNdkAdapter",
            kind: ObjectKind::Adapter,
        };
        t.shared.report(v);
        return;
    }
    // Blocking: wait for closes in progress and callbacks still owed on descendants.
    t.shared.wait_adapter_quiet(t.id, Duration::from_secs(10));
    let mut out = Out::default();
    let live = {
        let mut world = t.shared.world();
        let live = world.live_children(t.id);
        if live == 0 {
            // The adapter close is blocking and has no completion callback: it is closed now.
            world.force_closed(&mut out, t.id);
        }
        live
    };
    t.shared.dispatch(out);
    if live > 0 {
        t.shared
            .report(Violation::AdapterClosedWithLiveObjects { live });
    }
}

/// The WSK NDK extension dispatch softndk hands out.
pub(crate) static WSK_NDK_DISPATCH: WSK_PROVIDER_NDK_DISPATCH = WSK_PROVIDER_NDK_DISPATCH {
    WskOpenNdkAdapter: Some(wsk_open),
    WskCloseNdkAdapter: Some(wsk_close),
};
