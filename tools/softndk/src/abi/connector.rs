//! `NDK_CONNECTOR`: the handshake (connect, complete-connect, accept, reject), connection
//! data, addresses and disconnect.

use std::ffi::c_void;

use ndkpi_sys::*;

use super::args::{arg_object, read_private_data, read_sockaddr, write_sockaddr};
use super::{close_object, entered, query_extension, status_of};
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

unsupported! {
    fn connect_with_shared_endpoint(conn: *mut NDK_CONNECTOR, _qp: *mut NDK_QP,
        _se: *mut NDK_SHARED_ENDPOINT, _dst: *const SOCKADDR, _dst_len: u32, _ird: u32,
        _ord: u32, _data: *const c_void, _data_len: u32, _f: NDK_FN_REQUEST_COMPLETION,
        _ctx: PVOID) = Connector, "NdkConnectWithSharedEndpoint";
}

/// The entry points that come in a plain form and an `Ex` form (2.1), which differ only in
/// the type of the disconnect callback: both pass the callback as a [`DisconnectCb`] to
/// `$common(function, disc, f, ctx, args..)`.
macro_rules! plain_and_ex_entries {
    ($plain:ident, $ex:ident, $function:literal, $common:ident($($arg:ident: $ty:ty),*)) => {
        plain_and_ex_entries!(@one $plain, NDK_FN_DISCONNECT_EVENT_CALLBACK, Plain,
            $function, $common($($arg: $ty),*));
        plain_and_ex_entries!(@one $ex, NDK_FN_DISCONNECT_EVENT_CALLBACK_EX, Ex,
            concat!($function, "Ex"), $common($($arg: $ty),*));
    };
    (@one $name:ident, $callback:ty, $variant:ident, $function:expr,
        $common:ident($($arg:ident: $ty:ty),*)) => {
        unsafe extern "system" fn $name(
            $($arg: $ty,)*
            cb: $callback,
            cb_ctx: PVOID,
            f: NDK_FN_REQUEST_COMPLETION,
            ctx: PVOID,
        ) -> NTSTATUS {
            let disc = cb.map(|cb| DisconnectCb::$variant(Some(cb), Ctx(cb_ctx)));
            $common($function, disc, f, ctx, $($arg),*)
        }
    };
}

fn complete_connect_common(
    name: &'static str,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    conn: *mut NDK_CONNECTOR,
) -> NTSTATUS {
    status_of(|| {
        let t = entered(conn, ObjectKind::Connector, name)?;
        Ok(t.with(|world, out| Ok(world.complete_connect(out, t.id, disc, f, Ctx(ctx)))))
    })
}

plain_and_ex_entries!(
    complete_connect,
    complete_connect_ex,
    "NdkCompleteConnect",
    complete_connect_common(conn: *mut NDK_CONNECTOR)
);

#[expect(clippy::too_many_arguments, reason = "mirrors NdkAccept")]
fn accept_common(
    name: &'static str,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
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

plain_and_ex_entries!(
    accept,
    accept_ex,
    "NdkAccept",
    accept_common(
        conn: *mut NDK_CONNECTOR,
        qp: *mut NDK_QP,
        ird: u32,
        ord: u32,
        data: *const c_void,
        data_len: u32
    )
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
    let t = target!(conn, Connector, "NdkGetConnectionData");
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
    let t = target!(conn, Connector, name);
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
    let t = target!(conn, Connector, "NdkDisconnect");
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
versioned_tables!(NDK_CONNECTOR_DISPATCH, v21, "2.1");
