//! `NDK_CONNECTOR`: the handshake (connect, complete-connect, accept, reject), connection
//! data, addresses and disconnect.

use std::ffi::c_void;

use ndkpi_sys::*;

use super::args::{arg_object, read_private_data, read_sockaddr, write_sockaddr};
use super::{close_object, enter, entered, not_supported, query_extension, status_of};
use crate::ObjectKind;
use crate::conn::{AcceptArgs, ConnectArgs};
use crate::world::{Ctx, DisconnectCb};

unsafe extern "system" fn connect(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    src: *const SOCKADDR,
    src_len: u32,
    dst: *const SOCKADDR,
    dst_len: u32,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(conn, ObjectKind::Connector, "NdkConnect")?;
        let qp = arg_object(&t, qp, ObjectKind::Qp)?;
        let (src, dst) = (read_sockaddr(src, src_len), read_sockaddr(dst, dst_len));
        let (src, dst) = (src?, dst?);
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(NtStatus::INVALID_ADDRESS);
        }
        let args = ConnectArgs {
            qp,
            src,
            dst,
            ird,
            ord,
            private_data: read_private_data(&t, data, data_len)?,
            f,
            ctx: Ctx(ctx),
        };
        Ok(t.with(|world, out| Ok(world.connect(out, t.id, args))))
    })
}

unsafe extern "system" fn connect_with_shared_endpoint(
    conn: *mut NDK_CONNECTOR,
    _qp: *mut NDK_QP,
    _se: *mut NDK_SHARED_ENDPOINT,
    _dst: *const SOCKADDR,
    _dst_len: u32,
    _ird: u32,
    _ord: u32,
    _data: *const c_void,
    _data_len: u32,
    _f: NDK_FN_REQUEST_COMPLETION,
    _ctx: PVOID,
) -> NTSTATUS {
    not_supported(conn, ObjectKind::Connector, "NdkConnectWithSharedEndpoint")
}

fn complete_connect_common(
    conn: *mut NDK_CONNECTOR,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    name: &'static str,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(conn, ObjectKind::Connector, name)?;
        Ok(t.with(|world, out| Ok(world.complete_connect(out, t.id, disc, f, Ctx(ctx)))))
    })
}

/// `NdkCompleteConnect` and `NdkCompleteConnectEx` (2.1), which differ only in the type of
/// the disconnect callback.
macro_rules! complete_connect_entry {
    ($name:ident, $callback:ty, $variant:ident, $function:literal) => {
        unsafe extern "system" fn $name(
            conn: *mut NDK_CONNECTOR,
            cb: $callback,
            cb_ctx: PVOID,
            f: NDK_FN_REQUEST_COMPLETION,
            ctx: PVOID,
        ) -> NTSTATUS {
            let disc = cb.map(|cb| DisconnectCb::$variant(Some(cb), Ctx(cb_ctx)));
            complete_connect_common(conn, disc, f, ctx, $function)
        }
    };
}

complete_connect_entry!(
    complete_connect,
    NDK_FN_DISCONNECT_EVENT_CALLBACK,
    Plain,
    "NdkCompleteConnect"
);
complete_connect_entry!(
    complete_connect_ex,
    NDK_FN_DISCONNECT_EVENT_CALLBACK_EX,
    Ex,
    "NdkCompleteConnectEx"
);

#[expect(clippy::too_many_arguments, reason = "mirrors NdkAccept")]
fn accept_common(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    name: &'static str,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(conn, ObjectKind::Connector, name)?;
        let args = AcceptArgs {
            qp: arg_object(&t, qp, ObjectKind::Qp)?,
            ird,
            ord,
            private_data: read_private_data(&t, data, data_len)?,
            disc,
            f,
            ctx: Ctx(ctx),
        };
        Ok(t.with(|world, out| Ok(world.accept(out, t.id, args))))
    })
}

/// `NdkAccept` and `NdkAcceptEx` (2.1), which differ only in the type of the disconnect
/// callback.
macro_rules! accept_entry {
    ($name:ident, $callback:ty, $variant:ident, $function:literal) => {
        unsafe extern "system" fn $name(
            conn: *mut NDK_CONNECTOR,
            qp: *mut NDK_QP,
            ird: u32,
            ord: u32,
            data: *const c_void,
            data_len: u32,
            cb: $callback,
            cb_ctx: PVOID,
            f: NDK_FN_REQUEST_COMPLETION,
            ctx: PVOID,
        ) -> NTSTATUS {
            let disc = cb.map(|cb| DisconnectCb::$variant(Some(cb), Ctx(cb_ctx)));
            accept_common(conn, qp, ird, ord, data, data_len, disc, f, ctx, $function)
        }
    };
}

accept_entry!(accept, NDK_FN_DISCONNECT_EVENT_CALLBACK, Plain, "NdkAccept");
accept_entry!(
    accept_ex,
    NDK_FN_DISCONNECT_EVENT_CALLBACK_EX,
    Ex,
    "NdkAcceptEx"
);

unsafe extern "system" fn reject(
    conn: *mut NDK_CONNECTOR,
    data: *const c_void,
    data_len: u32,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(conn, ObjectKind::Connector, "NdkReject")?;
        let _held = t.shared.connection_lock();
        let private_data = read_private_data(&t, data, data_len)?;
        Ok(t.with(|world, out| Ok(world.reject(out, t.id, private_data))))
    })
}

unsafe extern "system" fn get_connection_data(
    conn: *mut NDK_CONNECTOR,
    ird: *mut u32,
    ord: *mut u32,
    data: *mut c_void,
    len: *mut u32,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkGetConnectionData") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if len.is_null() {
        return t.violation("null pPrivateDataLength");
    }
    // SAFETY: non-null in/out length.
    let have = unsafe { len.read() };
    if data.is_null() && have > 0 {
        return t.violation("null pPrivateData with a non-zero *pPrivateDataLength");
    }
    let mut found = None;
    let status = t.with(|world, _| {
        Ok(match world.connection_data(t.id) {
            Ok((inbound, outbound, bytes)) => {
                found = Some((inbound, outbound, bytes.to_vec()));
                NtStatus::SUCCESS
            }
            Err(status) => status,
        })
    });
    let Some((inbound, outbound, bytes)) = found else {
        return status;
    };
    if !ird.is_null() {
        // SAFETY: non-null optional out-pointer.
        unsafe { ird.write(inbound) };
    }
    if !ord.is_null() {
        // SAFETY: non-null optional out-pointer.
        unsafe { ord.write(outbound) };
    }
    let rds = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    // SAFETY: non-null in/out length.
    unsafe { len.write(rds) };
    if data.is_null() {
        return NtStatus::SUCCESS;
    }
    let n = bytes.len().min(have as usize);
    // SAFETY: the consumer's buffer holds `have >= n` bytes; `bytes` is ours.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), n) };
    if have >= rds {
        NtStatus::SUCCESS
    } else {
        NtStatus::BUFFER_TOO_SMALL
    }
}

fn address_of(
    conn: *mut NDK_CONNECTOR,
    addr: *mut SOCKADDR,
    len: *mut u32,
    peer: bool,
) -> NTSTATUS {
    let name = if peer {
        "NdkGetPeerAddress"
    } else {
        "NdkGetLocalAddress"
    };
    let Some(t) = enter(conn, ObjectKind::Connector, name) else {
        return NtStatus::INVALID_PARAMETER;
    };
    let _held = t.shared.connection_lock();
    let mut found = None;
    let status = t.with(|world, _| {
        found = if peer {
            world.peer_address(t.id)
        } else {
            world.local_address(t.id)
        };
        Ok(NtStatus::SUCCESS)
    });
    if status != NtStatus::SUCCESS {
        return status;
    }
    write_sockaddr(&t, found, addr, len)
}

/// `NdkGetLocalAddress` and `NdkGetPeerAddress`.
macro_rules! address_entry {
    ($name:ident, $peer:literal) => {
        unsafe extern "system" fn $name(
            conn: *mut NDK_CONNECTOR,
            addr: *mut SOCKADDR,
            len: *mut u32,
        ) -> NTSTATUS {
            address_of(conn, addr, len, $peer)
        }
    };
}

address_entry!(get_local_address, false);
address_entry!(get_peer_address, true);

unsafe extern "system" fn disconnect(
    conn: *mut NDK_CONNECTOR,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkDisconnect") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let ran = {
        let _held = t.shared.connection_lock();
        t.run(|world, out| Ok(world.disconnect(out, t.id, f, Ctx(ctx))))
    };
    // Callbacks run after the provider's lock is released (the peer's disconnect callback
    // takes it).
    t.deliver(ran)
}

const fn table(v21: bool) -> NDK_CONNECTOR_DISPATCH {
    NDK_CONNECTOR_DISPATCH {
        NdkCloseConnector: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkConnect: Some(connect),
        NdkConnectWithSharedEndpoint: Some(connect_with_shared_endpoint),
        NdkCompleteConnect: Some(complete_connect),
        NdkAccept: Some(accept),
        NdkReject: Some(reject),
        NdkGetConnectionData: Some(get_connection_data),
        NdkGetLocalAddress: Some(get_local_address),
        NdkGetPeerAddress: Some(get_peer_address),
        NdkDisconnect: Some(disconnect),
        NdkCompleteConnectEx: if v21 { Some(complete_connect_ex) } else { None },
        NdkAcceptEx: if v21 { Some(accept_ex) } else { None },
    }
}
static DISPATCH_V1: NDK_CONNECTOR_DISPATCH = table(false);
static DISPATCH_V21: NDK_CONNECTOR_DISPATCH = table(true);

/// The table for the negotiated version: `v21` when it is at least 2.1.
pub(super) fn dispatch(v21: bool) -> &'static NDK_CONNECTOR_DISPATCH {
    if v21 { &DISPATCH_V21 } else { &DISPATCH_V1 }
}
