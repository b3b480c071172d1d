//! Connection establishment: connect / connect event / accept /
//! complete-connect over IPv4 and IPv6, private data and the `NdkGetConnectionData` size
//! protocol, refusal, rejection from either side, addresses, ephemeral ports, sharing
//! violations and paused listeners.
mod common;
use common::*;

use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ndkpi_sys::*;
use softndk::{Completion, ConnectorState};

const PORT: u16 = 4791;

// --- local helpers ------------------------------------------------------------------------------

/// Two ends (A on host 1, B on host 2) and a listener on B listening at `dst`.
fn ends(net: &Net, dst: SocketAddr) -> (End, End, *mut NDK_LISTENER, Arc<Incoming>) {
    let a = End::new(net, 1, V21);
    let b = End::new(net, 2, V21);
    let incoming = Incoming::new();
    let listener = create_listener(b.adapter, &incoming);
    assert_eq!(listen(listener, dst), NtStatus::SUCCESS, "listen on {dst}");
    (a, b, listener, incoming)
}

/// `NdkGetConnectionData` with `*pPrivateDataLength = len` and an optional buffer of at least
/// `len` bytes; returns the status and `*pPrivateDataLength` after the call.
fn connection_data(conn: *mut NDK_CONNECTOR, buf: Option<&mut [u8]>, len: u32) -> (NTSTATUS, u32) {
    let p = match buf {
        Some(b) => {
            assert!(
                b.len() >= len as usize,
                "test bug: buffer shorter than the length given"
            );
            b.as_mut_ptr().cast::<c_void>()
        }
        None => std::ptr::null_mut(),
    };
    let (mut ird, mut ord, mut len) = (0u32, 0u32, len);
    let f = d(conn).NdkGetConnectionData.unwrap();
    // SAFETY: live connector; `p` is null or holds at least `len` writable bytes; the other
    // out-pointers are locals.
    let st = unsafe { f(conn, &raw mut ird, &raw mut ord, p, &raw mut len) };
    (st, len)
}

/// The peer's private data, read the documented way: ask the size, then fetch.
fn private_data(conn: *mut NDK_CONNECTOR) -> Vec<u8> {
    let (st, need) = connection_data(conn, None, 0);
    assert_eq!(st, NtStatus::SUCCESS, "size query (NULL buffer, *len == 0)");
    let mut v = vec![0u8; need as usize];
    let (st, got) = connection_data(conn, Some(&mut v), need);
    assert_eq!(
        st,
        NtStatus::SUCCESS,
        "fetch with a buffer of the required size"
    );
    assert_eq!(got, need, "*len after a successful fetch");
    v
}

/// Assert `data` starts with what the peer sent (NDK allows the provider to report a larger
/// size than was sent: both ends need their own framing).
fn assert_carries(data: &[u8], sent: &[u8], what: &str) {
    assert!(
        data.len() >= sent.len(),
        "{what}: required size {} < {} bytes sent",
        data.len(),
        sent.len()
    );
    assert_eq!(&data[..sent.len()], sent, "{what}: private data");
}

fn reject(conn: *mut NDK_CONNECTOR, data: &[u8]) -> NTSTATUS {
    let f = d(conn).NdkReject.unwrap();
    let len = u32::try_from(data.len()).unwrap();
    // SAFETY: live connector; `data` is readable for `len` bytes during the call.
    unsafe { f(conn, data.as_ptr().cast(), len) }
}

fn control_connect_events(listener: *mut NDK_LISTENER, pause: bool) {
    let f = d(listener).NdkControlConnectEvents.unwrap();
    // SAFETY: live listener.
    unsafe { f(listener, if pause { TRUE } else { FALSE }) };
}

/// An address getter: `(pAddress, pAddressLength) -> status`.
type Getter = Box<dyn Fn(*mut SOCKADDR, *mut u32) -> NTSTATUS>;

fn local_of(conn: *mut NDK_CONNECTOR) -> Getter {
    let f = d(conn).NdkGetLocalAddress.unwrap();
    // SAFETY: live connector (the test keeps it open while using the getter); the caller
    // passes a buffer of at least *len bytes (or null) and a valid length pointer.
    Box::new(move |p, l| unsafe { f(conn, p, l) })
}

fn peer_of(conn: *mut NDK_CONNECTOR) -> Getter {
    let f = d(conn).NdkGetPeerAddress.unwrap();
    // SAFETY: as in `local_of`.
    Box::new(move |p, l| unsafe { f(conn, p, l) })
}

fn listener_local_of(listener: *mut NDK_LISTENER) -> Getter {
    let f = d(listener).NdkGetLocalAddress.unwrap();
    // SAFETY: as in `local_of`, for a live listener.
    Box::new(move |p, l| unsafe { f(listener, p, l) })
}

fn sockaddr_len(addr: SocketAddr) -> u32 {
    let n = if addr.is_ipv4() {
        size_of::<SOCKADDR_IN>()
    } else {
        size_of::<SOCKADDR_IN6>()
    };
    u32::try_from(n).unwrap()
}

/// Read an address with a large buffer; checks `*len` is the written SOCKADDR's size.
fn read_addr(get: &Getter) -> SocketAddr {
    let mut sock = Sock::empty();
    let mut len = sock.len;
    let st = get(sock.ptr_mut(), &raw mut len);
    assert_eq!(
        st,
        NtStatus::SUCCESS,
        "address getter with a 128-byte buffer"
    );
    let addr = sock.decode();
    assert_eq!(
        len,
        sockaddr_len(addr),
        "*pAddressLength after success for {addr}"
    );
    addr
}

/// Call a getter with `*len = have` (and no buffer when `null`): the status, `*len` after the
/// call, and whether the buffer was left untouched.
fn read_addr_short(get: &Getter, have: u32, null: bool) -> (NTSTATUS, u32, bool) {
    let mut raw = Scribble::new();
    let mut len = have;
    let st = get(raw.ptr(null), &raw mut len);
    (st, len, raw.untouched())
}

fn state(net: &Net, conn: *mut NDK_CONNECTOR) -> ConnectorState {
    net.fabric
        .connector(conn)
        .expect("connector known to the fabric")
        .state
}

// --- establishment ------------------------------------------------------------------------------

/// Connect / connect event / accept / complete-connect, checked step by step.
fn establish(mode: Completion, v4: bool) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(if v4 { net.v4[1] } else { net.v6[1] }, PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    a.conn = create_connector(a.adapter);
    assert_eq!(state(&net, a.conn), ConnectorState::Idle);

    let (cs, cst) = start_connect(&a, dst, b"hello");
    assert!(
        cst == NtStatus::PENDING,
        "{mode:?}: a connect cannot finish before the peer answers, got {cst:#x}"
    );
    b.conn = incoming.next();
    assert!(
        !b.conn.is_null(),
        "{mode:?}: the connect event must deliver a connector"
    );
    assert_ne!(b.conn, a.conn);
    assert_ne!(
        b.conn.addr(),
        listener.addr(),
        "the connect event delivers a new connector, not the listener"
    );
    // SAFETY: the connector the connect event handed over is live; the header is at offset 0.
    let object_type = unsafe { (*hdr(b.conn)).ObjectType };
    assert_eq!(object_type, NdkObjectTypeConnector);
    assert_eq!(header_version(b.conn), V21);
    assert_eq!(state(&net, b.conn), ConnectorState::Incoming);
    net.settle();
    assert_eq!(
        cs.calls(),
        0,
        "{mode:?}: connect completed before the passive side accepted"
    );
    assert_eq!(net.fabric.stats().connect_events, 1);

    let (acc, ast) = start_accept(&b, b"welcome");
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS, "{mode:?}: connect");
    net.settle();
    assert_eq!(
        ast,
        NtStatus::PENDING,
        "{mode:?}: accept cannot finish before the active side's complete-connect"
    );
    assert_eq!(
        acc.calls(),
        0,
        "{mode:?}: accept completed before complete-connect"
    );
    assert_eq!(
        complete_connect(&a),
        NtStatus::SUCCESS,
        "{mode:?}: complete-connect"
    );
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS, "{mode:?}: accept");
    net.settle();
    assert_eq!(cs.calls(), 1, "{mode:?}: connect completion count");
    assert_eq!(acc.calls(), 1, "{mode:?}: accept completion count");
    assert_eq!(state(&net, a.conn), ConnectorState::Connected);
    assert_eq!(state(&net, b.conn), ConnectorState::Connected);
    assert_eq!(incoming.len(), 0, "exactly one connect event");

    // The connection runs over the dialled family.
    assert_eq!(read_addr(&peer_of(a.conn)), dst);
    assert_eq!(
        read_addr(&local_of(a.conn)).ip(),
        if v4 { net.v4[0] } else { net.v6[0] }
    );

    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
    assert_no_leak(&net, &format!("{mode:?}"));
}

per_mode!(connect_accept_complete_connect_establishes_over_ipv4 = establish(true));

per_mode!(connect_accept_complete_connect_establishes_over_ipv6 = establish(false));

// --- private data -------------------------------------------------------------------------------

fn private_data_reaches_passive_side_before_accept_and_active_side_after_connect(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(&a, dst, b"caller says hi");
    b.conn = incoming.next();
    assert_carries(
        &private_data(b.conn),
        b"caller says hi",
        "passive side before accept",
    );

    let (acc, ast) = start_accept(&b, b"callee answers");
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS, "{mode:?}: connect");
    assert_carries(
        &private_data(a.conn),
        b"callee answers",
        "active side after connect",
    );

    assert_eq!(complete_connect(&a), NtStatus::SUCCESS);
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(private_data_reaches_passive_side_before_accept_and_active_side_after_connect);

/// The size protocol on one connector whose peer sent `sent`.
fn check_size_protocol(conn: *mut NDK_CONNECTOR, sent: &[u8], side: &str) {
    // NULL buffer, *len == 0: success and the required size.
    let (st, rds) = connection_data(conn, None, 0);
    assert_eq!(st, NtStatus::SUCCESS, "{side}: NULL buffer with *len == 0");
    assert!(
        rds as usize >= sent.len(),
        "{side}: required size {rds} < {} bytes sent",
        sent.len()
    );

    // Too small: BUFFER_TOO_SMALL, the required size in *len, and what fits copied.
    let mut small = [0xA5u8; 16];
    let (st, len) = connection_data(conn, Some(&mut small), 4);
    assert_eq!(st, NtStatus::BUFFER_TOO_SMALL, "{side}: 4-byte buffer");
    assert_eq!(
        len, rds,
        "{side}: *len after BUFFER_TOO_SMALL is the required size"
    );
    assert_eq!(
        &small[..4],
        &sent[..4],
        "{side}: the bytes that fit are copied"
    );
    assert!(
        small[4..].iter().all(|b| *b == 0xA5),
        "{side}: nothing written past *len: {small:?}"
    );

    // Exactly the required size, then more: success, *len = required size.
    let mut exact = vec![0u8; rds as usize];
    assert_eq!(
        connection_data(conn, Some(&mut exact), rds),
        (NtStatus::SUCCESS, rds),
        "{side}: exact buffer"
    );
    assert_eq!(&exact[..sent.len()], sent, "{side}: data");
    let mut big = vec![0u8; rds as usize + 32];
    let have = rds + 32;
    assert_eq!(
        connection_data(conn, Some(&mut big), have),
        (NtStatus::SUCCESS, rds),
        "{side}: larger buffer"
    );
    assert_eq!(&big[..sent.len()], sent, "{side}: data");
}

fn get_connection_data_follows_the_size_protocol(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    a.conn = create_connector(a.adapter);
    let caller = b"a caller's private data, 36 bytes..";
    let callee = b"the callee's reply of 28 b..";
    let (cs, cst) = start_connect(&a, dst, caller);
    b.conn = incoming.next();
    check_size_protocol(b.conn, caller, "passive");
    let (acc, ast) = start_accept(&b, callee);
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS);
    check_size_protocol(a.conn, callee, "active");
    assert_eq!(complete_connect(&a), NtStatus::SUCCESS);
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(get_connection_data_follows_the_size_protocol);

// --- failures -----------------------------------------------------------------------------------

fn connect_without_a_listener_is_refused(mode: Completion) {
    let net = Net::new(mode);
    // Somebody listens on B, but on another port.
    let (mut a, b, listener, incoming) = ends(&net, SocketAddr::new(net.v4[1], PORT));
    a.conn = create_connector(a.adapter);
    let refused_before = net.fabric.stats().refused_connects;
    let (cs, cst) = start_connect(&a, SocketAddr::new(net.v4[1], PORT + 1), b"anyone?");
    assert_eq!(cs.resolve(cst), NtStatus::CONNECTION_REFUSED, "{mode:?}");
    net.settle();
    assert_eq!(
        cs.calls(),
        u32::from(cst == NtStatus::PENDING),
        "{mode:?}: one callback if pending, none if failed inline"
    );
    assert_eq!(
        incoming.len(),
        0,
        "{mode:?}: no connect event for another port"
    );
    assert_eq!(net.fabric.stats().connect_events, 0);
    assert_eq!(net.fabric.stats().refused_connects, refused_before + 1);
    assert_eq!(state(&net, a.conn), ConnectorState::Failed);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(connect_without_a_listener_is_refused);

fn connect_to_an_address_no_host_has_is_host_unreachable(mode: Completion) {
    let net = Net::new(mode);
    let mut a = End::new(&net, 1, V21);
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(
        &a,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99)), PORT),
        b"",
    );
    assert_eq!(
        cs.resolve(cst),
        NtStatus::HOST_UNREACHABLE,
        "{mode:?}: IPv4"
    );
    net.settle();
    assert_eq!(
        cs.calls(),
        u32::from(cst == NtStatus::PENDING),
        "{mode:?}: completion count"
    );
    close(a.conn, d(a.conn).NdkCloseConnector);
    // A QP is bound to a connector for life: use a fresh one for the IPv6 attempt.
    close(a.qp, d(a.qp).NdkCloseQp);
    a.qp = create_qp(a.pd, a.cq, 0x99);
    a.conn = create_connector(a.adapter);
    let nowhere6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x99));
    let (cs, cst) = start_connect(&a, SocketAddr::new(nowhere6, PORT), b"");
    assert_eq!(
        cs.resolve(cst),
        NtStatus::HOST_UNREACHABLE,
        "{mode:?}: IPv6"
    );
    net.settle();
    assert_eq!(
        cs.calls(),
        u32::from(cst == NtStatus::PENDING),
        "{mode:?}: completion count"
    );
    assert_eq!(net.fabric.stats().connect_events, 0);
    a.teardown(&net);
}

per_mode!(connect_to_an_address_no_host_has_is_host_unreachable);

fn passive_reject_completes_the_connect_with_connection_refused(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(&a, dst, b"let me in");
    b.conn = incoming.next();
    net.settle();
    assert_eq!(
        cs.calls(),
        0,
        "{mode:?}: connect completed before the passive side answered"
    );
    assert_eq!(
        reject(b.conn, b"go away"),
        NtStatus::SUCCESS,
        "{mode:?}: NdkReject is synchronous"
    );
    assert_eq!(cs.resolve(cst), NtStatus::CONNECTION_REFUSED, "{mode:?}");
    net.settle();
    assert_eq!(cs.calls(), 1, "{mode:?}: one connect completion");
    assert_eq!(state(&net, a.conn), ConnectorState::Failed);
    assert_eq!(state(&net, b.conn), ConnectorState::Rejected);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(passive_reject_completes_the_connect_with_connection_refused);

fn active_reject_after_connect_completes_the_accept_with_connection_aborted(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(&a, dst, b"");
    b.conn = incoming.next();
    let (acc, ast) = start_accept(&b, b"");
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS, "{mode:?}: connect");
    net.settle();
    assert_eq!(
        acc.calls(),
        0,
        "{mode:?}: accept completed before the active side answered"
    );
    assert_eq!(
        reject(a.conn, b"changed my mind"),
        NtStatus::SUCCESS,
        "{mode:?}: active NdkReject"
    );
    assert_eq!(
        acc.resolve(ast),
        NtStatus::CONNECTION_ABORTED,
        "{mode:?}: accept"
    );
    net.settle();
    assert_eq!(acc.calls(), 1, "{mode:?}: one accept completion");
    assert_eq!(
        b.events.count(),
        0,
        "{mode:?}: a connection never established has no disconnect callback"
    );
    assert_ne!(state(&net, b.conn), ConnectorState::Connected);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(active_reject_after_connect_completes_the_accept_with_connection_aborted);

// --- ordering (Manual mode) ---------------------------------------------------------------------

/// A request in Manual mode: pending, then delivered; returns the completion status.
fn manual_request(net: &Net, call: impl FnOnce(PVOID) -> NTSTATUS) -> NTSTATUS {
    let s = Slot::new();
    let st = call(s.ctx());
    s.mark_returned();
    assert_eq!(st, NtStatus::PENDING, "Manual mode: requests pend");
    net.fabric.deliver();
    assert_eq!(s.calls(), 1);
    s.wait()
}

fn manual_close<T>(net: &Net, obj: *mut T, close_fn: NDK_FN_CLOSE_OBJECT) {
    let f = close_fn.unwrap();
    // SAFETY: live object; valid callback and context.
    manual_request(net, |ctx| unsafe { f(hdr(obj), Some(on_close), ctx) });
}

fn manual_end(net: &Net, if_index: u32) -> End {
    let adapter = net.open(if_index, V21);
    let pd = manual_create(net, pd_create(adapter));
    let notes = Notes::new();
    let cq = manual_create(net, cq_create(adapter, 64, &notes));
    let qp = manual_create(net, qp_create(pd, cq, 0x2000, (16, 1, 0)));
    End::of(adapter, pd, (cq, notes), qp)
}

#[test]
fn accept_completes_only_after_the_active_side_completes_the_connect() {
    let net = Net::new(Completion::Manual);
    let mut a = manual_end(&net, 1);
    let mut b = manual_end(&net, 2);
    a.conn = manual_create(&net, connector_create(a.adapter));
    let incoming = Incoming::new();
    let listener = manual_create(&net, listener_create(b.adapter, &incoming));
    let dst = SocketAddr::new(net.v4[1], PORT);
    let sock = Sock::new(dst);
    let listen_fn = d(listener).NdkListen.unwrap();
    // SAFETY: live listener; `sock` outlives the call; valid callback and context.
    let st = manual_request(&net, |ctx| unsafe {
        listen_fn(listener, sock.ptr(), sock.len, Some(on_request), ctx)
    });
    assert_eq!(st, NtStatus::SUCCESS, "listen");

    let (cs, cst) = start_connect(&a, dst, b"");
    assert_eq!(cst, NtStatus::PENDING);
    assert_eq!(
        incoming.len(),
        0,
        "Manual mode: the connect event waits for deliver()"
    );
    net.fabric.deliver();
    b.conn = incoming.next();

    let (acc, ast) = start_accept(&b, b"");
    assert_eq!(ast, NtStatus::PENDING);
    net.fabric.deliver();
    assert_eq!(cs.calls(), 1, "the accept completes the connect");
    assert_eq!(cs.wait(), NtStatus::SUCCESS);
    assert_eq!(net.fabric.queued(), 0, "nothing else is owed yet");
    assert_eq!(
        acc.calls(),
        0,
        "accept completed before the active side's complete-connect"
    );

    let cc = Slot::new();
    let cc_fn = d(a.conn).NdkCompleteConnectEx.unwrap();
    // SAFETY: live connector; valid callbacks and contexts, kept alive until the end.
    let st = unsafe {
        cc_fn(
            a.conn,
            Some(on_disconnect_ex),
            a.events.ctx(),
            Some(on_request),
            cc.ctx(),
        )
    };
    cc.mark_returned();
    assert_eq!(st, NtStatus::PENDING);
    assert_eq!(
        acc.calls(),
        0,
        "Manual mode: the accept completion waits for deliver()"
    );
    net.fabric.deliver();
    assert_eq!(cc.calls(), 1);
    assert_eq!(cc.wait(), NtStatus::SUCCESS, "complete-connect");
    assert_eq!(acc.calls(), 1, "complete-connect completes the accept");
    assert_eq!(acc.wait(), NtStatus::SUCCESS, "accept");

    for (conn, qp) in [(a.conn, a.qp), (b.conn, b.qp)] {
        manual_close(&net, conn, d(conn).NdkCloseConnector);
        manual_close(&net, qp, d(qp).NdkCloseQp);
    }
    manual_close(&net, listener, d(listener).NdkCloseListener);
    for end in [&a, &b] {
        manual_close(&net, end.cq, d(end.cq).NdkCloseCq);
        manual_close(&net, end.pd, d(end.pd).NdkClosePd);
        net.fabric.close_adapter(end.adapter);
    }
    assert_eq!(
        net.fabric.live_objects(),
        0,
        "{:?}",
        net.fabric.live_by_kind()
    );
}

// --- addresses ----------------------------------------------------------------------------------

fn addresses_agree(mode: Completion, v4: bool) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(if v4 { net.v4[1] } else { net.v6[1] }, PORT);
    let pair = Pair::connect_to(&net, V21, V21, dst);
    let (a_local, a_peer) = (
        read_addr(&local_of(pair.a.conn)),
        read_addr(&peer_of(pair.a.conn)),
    );
    let (b_local, b_peer) = (
        read_addr(&local_of(pair.b.conn)),
        read_addr(&peer_of(pair.b.conn)),
    );
    assert_eq!(a_local, b_peer, "{mode:?}: active local == passive peer");
    assert_eq!(a_peer, b_local, "{mode:?}: active peer == passive local");
    assert_eq!(
        a_peer, dst,
        "{mode:?}: the active side's peer is the address it dialled"
    );
    assert_eq!(
        read_addr(&listener_local_of(pair.listener)),
        dst,
        "{mode:?}: listener address"
    );
    let a_ip = if v4 { net.v4[0] } else { net.v6[0] };
    assert_eq!(
        a_local.ip(),
        a_ip,
        "{mode:?}: an unspecified source binds the host's address"
    );
    assert_ne!(
        a_local.port(),
        0,
        "{mode:?}: a port-0 source gets a real port"
    );

    // Too small (and no buffer): BUFFER_TOO_SMALL with the required size, nothing written.
    let need = sockaddr_len(dst);
    let getters = [
        ("active local", local_of(pair.a.conn)),
        ("active peer", peer_of(pair.a.conn)),
        ("passive local", local_of(pair.b.conn)),
        ("passive peer", peer_of(pair.b.conn)),
        ("listener local", listener_local_of(pair.listener)),
    ];
    for (what, get) in &getters {
        for (have, null) in [(4, false), (need - 1, false), (0, true)] {
            let (st, len, untouched) = read_addr_short(get, have, null);
            assert_eq!(
                st,
                NtStatus::BUFFER_TOO_SMALL,
                "{mode:?} {what}: *len = {have}, null buffer: {null}"
            );
            assert_eq!(len, need, "{mode:?} {what}: required size in *len");
            assert!(
                untouched,
                "{mode:?} {what}: buffer written although too small"
            );
        }
        let (st, len, _) = read_addr_short(get, need, false);
        assert_eq!(
            (st, len),
            (NtStatus::SUCCESS, need),
            "{mode:?} {what}: exactly the required size"
        );
    }
    pair.teardown(&net);
}

per_mode!(local_and_peer_addresses_of_both_ends_agree_over_ipv4 = addresses_agree(true));

per_mode!(local_and_peer_addresses_of_both_ends_agree_over_ipv6 = addresses_agree(false));

// --- listeners ----------------------------------------------------------------------------------

fn listen_on_port_zero_picks_an_ephemeral_port(mode: Completion) {
    for v4 in [true, false] {
        let net = Net::new(mode);
        let ip = if v4 { net.v4[1] } else { net.v6[1] };
        let (mut a, mut b, listener, incoming) = ends(&net, SocketAddr::new(ip, 0));
        let bound = read_addr(&listener_local_of(listener));
        assert_eq!(bound.ip(), ip, "{mode:?}");
        assert!(
            (49152..=65535).contains(&bound.port()),
            "{mode:?}: ephemeral port {}",
            bound.port()
        );

        // A second port-0 listener gets another port.
        let incoming2 = Incoming::new();
        let listener2 = create_listener(b.adapter, &incoming2);
        assert_eq!(listen(listener2, SocketAddr::new(ip, 0)), NtStatus::SUCCESS);
        let bound2 = read_addr(&listener_local_of(listener2));
        assert!(
            (49152..=65535).contains(&bound2.port()),
            "{mode:?}: ephemeral port {}",
            bound2.port()
        );
        assert_ne!(
            bound2, bound,
            "{mode:?}: two listeners on one ephemeral port"
        );

        // The port read back is the one really listened on.
        a.conn = create_connector(a.adapter);
        let (cs, cst) = start_connect(&a, bound, b"");
        b.conn = incoming.next();
        let (acc, ast) = start_accept(&b, b"");
        assert_eq!(
            cs.resolve(cst),
            NtStatus::SUCCESS,
            "{mode:?}: connect to the ephemeral port"
        );
        assert_eq!(complete_connect(&a), NtStatus::SUCCESS);
        assert_eq!(acc.resolve(ast), NtStatus::SUCCESS);
        assert_eq!(incoming2.len(), 0);
        close(listener2, d(listener2).NdkCloseListener);
        Pair {
            a,
            b,
            listener,
            incoming,
        }
        .teardown(&net);
    }
}

per_mode!(listen_on_port_zero_picks_an_ephemeral_port);

fn second_listen_on_the_same_address_is_a_sharing_violation(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);
    let incoming2 = Incoming::new();
    let listener2 = create_listener(b.adapter, &incoming2);
    assert_eq!(
        listen(listener2, dst),
        NtStatus::SHARING_VIOLATION,
        "{mode:?}"
    );
    // The failure is about the address: the same listener can listen elsewhere.
    let other = SocketAddr::new(net.v4[1], PORT + 1);
    assert_eq!(
        listen(listener2, other),
        NtStatus::SUCCESS,
        "{mode:?}: listen on a free port"
    );
    assert_eq!(read_addr(&listener_local_of(listener2)), other);

    // The first listener still owns the address.
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(&a, dst, b"");
    b.conn = incoming.next();
    let (acc, ast) = start_accept(&b, b"");
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS);
    assert_eq!(complete_connect(&a), NtStatus::SUCCESS);
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS);
    assert_eq!(
        incoming2.len(),
        0,
        "{mode:?}: the failed listen must not steal the address"
    );
    close(listener2, d(listener2).NdkCloseListener);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(second_listen_on_the_same_address_is_a_sharing_violation);

fn paused_listener_refuses_connects_and_resumed_listener_accepts_them(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], PORT);
    let (mut a, mut b, listener, incoming) = ends(&net, dst);

    control_connect_events(listener, true);
    a.conn = create_connector(a.adapter);
    let (cs, cst) = start_connect(&a, dst, b"");
    assert_eq!(
        cs.resolve(cst),
        NtStatus::CONNECTION_REFUSED,
        "{mode:?}: paused listener"
    );
    net.settle();
    assert_eq!(incoming.len(), 0, "{mode:?}: connect event while paused");
    assert_eq!(net.fabric.stats().connect_events, 0);

    // A refused connector and its QP are not reused.
    close(a.conn, d(a.conn).NdkCloseConnector);
    close(a.qp, d(a.qp).NdkCloseQp);
    a.qp = create_qp(a.pd, a.cq, 0x1001);
    a.conn = create_connector(a.adapter);

    control_connect_events(listener, false);
    let (cs, cst) = start_connect(&a, dst, b"");
    b.conn = incoming.next();
    let (acc, ast) = start_accept(&b, b"");
    assert_eq!(
        cs.resolve(cst),
        NtStatus::SUCCESS,
        "{mode:?}: resumed listener"
    );
    assert_eq!(complete_connect(&a), NtStatus::SUCCESS);
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS);
    assert_eq!(net.fabric.stats().connect_events, 1);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
}

per_mode!(paused_listener_refuses_connects_and_resumed_listener_accepts_them);
