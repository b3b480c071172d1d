//! `NDK_LISTENER`: listen, its local address and pausing connect events.

use ndkpi_sys::*;

use super::args::{read_sockaddr, write_sockaddr};
use super::{close_object, entered, query_extension, status_of};
use crate::ObjectKind;
use crate::world::Ctx;

unsafe extern "system" fn listen(
    listener: *mut NDK_LISTENER,
    addr: *const SOCKADDR,
    len: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(listener, ObjectKind::Listener, "NdkListen")?;
        let addr = read_sockaddr(addr, len)?;
        Ok(t.with(|world, out| Ok(world.listen(out, t.id, addr, f, Ctx(ctx)))))
    })
}

unsafe extern "system" fn listener_local_address(
    listener: *mut NDK_LISTENER,
    addr: *mut SOCKADDR,
    len: *mut u32,
) -> NTSTATUS {
    let t = target!(listener, Listener, "NdkGetLocalAddress");
    let mut found = None;
    let status = t.with(|world, _| {
        found = world.listener_address(t.id);
        Ok(NtStatus::SUCCESS)
    });
    if status != NtStatus::SUCCESS {
        return status;
    }
    write_sockaddr(&t, found, addr, len)
}

unsafe extern "system" fn control_connect_events(listener: *mut NDK_LISTENER, pause: BOOLEAN) {
    let t = target!(listener, Listener, "NdkControlConnectEvents", else ());
    t.with(|world, _| {
        world.pause_listener(t.id, pause != FALSE);
        Ok(NtStatus::SUCCESS)
    });
}

pub(super) static DISPATCH: NDK_LISTENER_DISPATCH = NDK_LISTENER_DISPATCH {
    NdkCloseListener: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkListen: Some(listen),
    NdkGetLocalAddress: Some(listener_local_address),
    NdkControlConnectEvents: Some(control_connect_events),
};
