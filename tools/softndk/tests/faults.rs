//! Fault injection: a peer that goes away during the handshake, reset, link loss and adapter
//! removal, each with the statuses and callbacks softndk documents, and a clean teardown after.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::Arc;

use ndkpi_sys::*;
use softndk::{Fault, QpState, reason};

// --- local helpers ------------------------------------------------------------------------------

const LOCAL_WRITE: u32 = NDK_MR_FLAG_ALLOW_LOCAL_WRITE;

/// Both ends and a listener on B, with no connection yet.
fn ends(net: &Net, dst: SocketAddr) -> Pair {
    let mut a = End::new(net, 1, V21);
    let b = End::new(net, 2, V21);
    let incoming = Incoming::new();
    let listener = create_listener(b.adapter, &incoming);
    assert_eq!(listen(listener, dst), NtStatus::SUCCESS);
    a.conn = create_connector(a.adapter);
    Pair {
        a,
        b,
        listener,
        incoming,
    }
}

/// For tests of what follows a disconnect (callbacks, removal, injection outside a
/// connection), where the initiator's `NdkDisconnect` must finish without scripting the peer's
/// answer: `Kindness::instant_disconnect`. `NdkDisconnect`'s real wait is tested in
/// `tests/hardware.rs`.
fn instant_disconnect_net(mode: softndk::Completion) -> Net {
    Net::instant_disconnect(mode)
}

/// Both ends were called back once: A with the reasons `a`, B with `b` (`why` says why each,
/// for the messages), two disconnect callbacks in all.
#[track_caller]
fn assert_both_told(
    net: &Net,
    pair: &Pair,
    (a, b): (&[Option<u32>], &[Option<u32>]),
    (why_a, why_b): (&str, &str),
    what: &str,
) {
    assert_eq!(pair.a.events.all(), a, "{what}: {why_a}");
    assert_eq!(pair.b.events.all(), b, "{what}: {why_b}");
    assert_eq!(net.fabric.stats().disconnect_callbacks, 2, "{what}");
}

// --- peer gone during the handshake -------------------------------------------------------------

/// Both ends and a listener on B; A's connect started (it returned the status given with its
/// slot) and B has the incoming connector. Also the message prefix naming the mode.
fn connect_started(mode: Completion) -> (Net, String, Pair, (Arc<Slot>, NTSTATUS)) {
    let net = Net::new(mode);
    let what = format!("mode {mode:?}");
    let dst = SocketAddr::new(net.v4[1], 4791);
    let mut pair = ends(&net, dst);
    let started = start_connect(&pair.a, dst, b"hello");
    pair.b.conn = pair.incoming.next();
    (net, what, pair, started)
}

/// The handshake `request` (its slot and the status it returned) waits for `waits_for` and is
/// not completed yet; the peer going away (injected on `conn`) completes it with
/// `STATUS_CONNECTION_ABORTED`.
#[track_caller]
fn assert_peer_loss_aborts(
    net: &Net,
    conn: *mut NDK_CONNECTOR,
    (slot, returned): (&Slot, NTSTATUS),
    (request, waits_for): (&str, &str),
    what: &str,
) {
    assert_eq!(
        returned,
        NtStatus::PENDING,
        "{what}: the {request} waits for {waits_for}"
    );
    assert_eq!(
        slot.calls(),
        0,
        "{what}: the {request} is not completed yet"
    );
    assert!(
        net.fabric.inject(conn, Fault::PeerDisconnect),
        "{what}: inject on a pending {request}"
    );
    assert_eq!(
        resolved_once(net, slot, returned, what),
        NtStatus::CONNECTION_ABORTED,
        "{what}: the owed {request}"
    );
}

fn peer_disconnect_while_connect_pending_aborts_the_connect(mode: Completion) {
    let (net, what, pair, (cs, cst)) = connect_started(mode);
    // B's side goes away before accepting.
    assert_peer_loss_aborts(
        &net,
        pair.a.conn,
        (&cs, cst),
        ("connect", "the peer"),
        &what,
    );

    // The later handshake calls fail the same way, on both ends.
    assert_eq!(
        complete_connect(&pair.a),
        NtStatus::CONNECTION_ABORTED,
        "{what}: complete-connect"
    );
    let (acc, ast) = start_accept(&pair.b, b"welcome");
    assert_eq!(
        resolved_once(&net, &acc, ast, &what),
        NtStatus::CONNECTION_ABORTED,
        "{what}: accept"
    );
    pair.assert_nobody_told(
        &net,
        &format!("{what}: never connected, no disconnect callback"),
    );

    pair.finish(&net, &what);
}

per_mode!(peer_disconnect_while_connect_pending_aborts_the_connect);

fn peer_disconnect_while_accept_pending_aborts_accept_and_complete_connect(mode: Completion) {
    let (net, what, pair, (cs, cst)) = connect_started(mode);
    let (acc, ast) = start_accept(&pair.b, b"welcome");
    assert_eq!(
        resolved_once(&net, &cs, cst, &what),
        NtStatus::SUCCESS,
        "{what}: connect"
    );
    // A's side goes away before complete-connect.
    let request = ("accept", "complete-connect");
    assert_peer_loss_aborts(&net, pair.b.conn, (&acc, ast), request, &what);
    assert_eq!(
        complete_connect(&pair.a),
        NtStatus::CONNECTION_ABORTED,
        "{what}: A's later complete-connect"
    );
    net.settle();
    pair.assert_nobody_told(&net, &what);
    assert_ne!(
        pair.a.qp_stats(&net).state,
        Some(QpState::Connected),
        "{what}"
    );
    assert_ne!(
        pair.b.qp_stats(&net).state,
        Some(QpState::Connected),
        "{what}"
    );

    pair.finish(&net, &what);
}

per_mode!(peer_disconnect_while_accept_pending_aborts_accept_and_complete_connect);

// --- established connections --------------------------------------------------------------------

fn peer_reset_calls_the_victim_back_once_with_reset_without_flush(mode: Completion) {
    const N: usize = 3;
    let net = Net::new(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    let mut buf = Buf::new(pair.b.pd, 64 * N, LOCAL_WRITE);
    for i in 0..N {
        let sge = buf.sge(i * 64, 64);
        receive_ok(pair.b.qp, &sge, 0x300 + i);
    }

    assert!(net.fabric.inject(pair.b.conn, Fault::PeerReset), "{what}");
    net.settle();
    assert_only_told(
        &pair.b.events,
        &[Some(reason::RESET)],
        &pair.a.events,
        &format!("{what}: one RESET callback for the victim; the resetting end is not called back"),
    );
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");

    // Not flushed by the reset.
    let stats = pair.b.qp_stats(&net);
    assert_eq!(stats.outstanding_receives, N, "{what}");
    assert_eq!(
        (stats.flush_calls, stats.provider_flushes),
        (0, 0),
        "{what}"
    );
    assert!(poll(pair.b.cq).is_empty(), "{what}");

    // NdkDisconnect after a reset completes with CONNECTION_ABORTED (again on a second
    // call), flushes the QP, and calls nobody back.
    assert_disconnect(&net, pair.b.conn, NtStatus::CONNECTION_ABORTED, &what);
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::CONNECTION_ABORTED,
        &format!("{what}: second"),
    );
    let results = poll(pair.b.cq);
    assert_eq!(results.len(), N, "{what}: {results:?}");
    assert!(
        results.iter().all(|r| r.Status == NtStatus::CANCELLED),
        "{what}: {results:?}"
    );
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
    assert_eq!(pair.b.events.count(), 1, "{what}");

    buf.close();
    pair.finish(&net, &what);
}

per_mode!(peer_reset_calls_the_victim_back_once_with_reset_without_flush);

fn injected_peer_disconnect_on_an_established_connection_is_graceful(mode: Completion) {
    let net = Net::new(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    assert!(
        net.fabric.inject(pair.a.conn, Fault::PeerDisconnect),
        "{what}"
    );
    net.settle();
    assert_only_told(
        &pair.a.events,
        &[Some(reason::GRACEFUL)],
        &pair.b.events,
        &what,
    );
    assert_disconnect(
        &net,
        pair.a.conn,
        NtStatus::SUCCESS,
        &format!("{what}: after a graceful peer disconnect"),
    );
    pair.finish_after_callbacks(&net, 1, &what);
}

per_mode!(injected_peer_disconnect_on_an_established_connection_is_graceful);

/// `Fault::LinkLossNoticedAtOnce` (kinder than hardware: both ends told at once) keeps the
/// callback rules checkable; hardware link loss, noticed only on traffic, is in
/// `tests/hardware.rs`.
fn link_loss_calls_both_ends_back_once_with_link_down(mode: Completion) {
    let net = instant_disconnect_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    assert!(
        net.fabric.inject(pair.a.conn, Fault::LinkLossNoticedAtOnce),
        "{what}"
    );
    net.settle();
    let link_down = [Some(reason::LINK_DOWN)];
    assert_both_told(&net, &pair, (&link_down, &link_down), ("A", "B"), &what);

    assert_disconnect(
        &net,
        pair.a.conn,
        NtStatus::CONNECTION_ABORTED,
        &format!("{what}: A after link loss"),
    );
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::CONNECTION_ABORTED,
        &format!("{what}: B after link loss"),
    );
    assert!(
        !net.fabric.inject(pair.b.conn, Fault::LinkLoss),
        "{what}: nothing left to break"
    );
    net.settle();
    pair.finish_after_callbacks(&net, 2, &what);
}

per_mode!(link_loss_calls_both_ends_back_once_with_link_down);

// --- adapter removal ----------------------------------------------------------------------------

fn adapter_removal_ends_connections_and_fails_creates_with_device_removed(mode: Completion) {
    let net = Net::new(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    let (adapter, pd, cq) = (pair.a.adapter, pair.a.pd, pair.a.cq);

    net.fabric.remove_adapters(net.hosts[0]);
    net.settle();
    let told = (
        &[Some(reason::ADAPTER_REMOVED)][..],
        &[Some(reason::RESET)][..],
    );
    let why = ("A's own adapter went", "the remote peer sees a reset");
    assert_both_told(&net, &pair, told, why, &what);

    // Creates on the removed adapter (and its PD) fail and create nothing.
    let live = net.fabric.live_objects();
    let notes = Notes::new();
    let incoming = Incoming::new();
    let r = created(pd_create(adapter));
    assert_eq!(r, Err(NtStatus::DEVICE_REMOVED), "{what}: NdkCreatePd");
    assert_eq!(
        try_create_cq(adapter, 16, &notes),
        Err(NtStatus::DEVICE_REMOVED),
        "{what}: NdkCreateCq"
    );
    let r = created(connector_create(adapter));
    assert_eq!(
        r,
        Err(NtStatus::DEVICE_REMOVED),
        "{what}: NdkCreateConnector"
    );
    let r = created(listener_create(adapter, &incoming));
    assert_eq!(
        r,
        Err(NtStatus::DEVICE_REMOVED),
        "{what}: NdkCreateListener"
    );
    let r = created(mr_create(pd));
    assert_eq!(r, Err(NtStatus::DEVICE_REMOVED), "{what}: NdkCreateMr");
    let r = created(qp_create(pd, cq, 0x2001, (16, 1, 0)));
    assert_eq!(r, Err(NtStatus::DEVICE_REMOVED), "{what}: NdkCreateQp");
    net.settle();
    assert_eq!(
        net.fabric.live_objects(),
        live,
        "{what}: a failed create yields no object"
    );

    // No new adapter on the removed host.
    assert_eq!(
        net.fabric.open_adapter(1, V21).err(),
        Some(NtStatus::DEVICE_REMOVED),
        "{what}: WskOpenNdkAdapter"
    );

    // Both survivors' NdkDisconnect report the abortive end.
    assert_disconnect(
        &net,
        pair.a.conn,
        NtStatus::CONNECTION_ABORTED,
        &format!("{what}: A"),
    );
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::CONNECTION_ABORTED,
        &format!("{what}: B"),
    );
    pair.finish_after_callbacks(&net, 2, &what);
}

per_mode!(adapter_removal_ends_connections_and_fails_creates_with_device_removed);

fn connecting_to_a_listener_on_a_removed_host_fails(mode: Completion) {
    let net = Net::new(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    net.fabric.remove_adapters(net.hosts[1]);
    net.settle();
    assert_eq!(
        pair.b.events.all(),
        vec![Some(reason::ADAPTER_REMOVED)],
        "{what}: B"
    );
    assert_eq!(pair.a.events.all(), vec![Some(reason::RESET)], "{what}: A");

    // A (alive) dials B's listener again, with a fresh connector and QP.
    let before = net.fabric.stats();
    let qp = create_qp(pair.a.pd, pair.a.cq, 0x2001);
    let conn = create_connector(pair.a.adapter);
    // A second view of A's adapter, PD and CQ (pointers copied, nothing owned).
    let end = End {
        adapter: pair.a.adapter,
        pd: pair.a.pd,
        cq: pair.a.cq,
        qp,
        conn,
        events: Events::new(),
        notes: Arc::clone(&pair.a.notes),
    };
    let (cs, cst) = start_connect(&end, SocketAddr::new(net.v4[1], 4791), b"again");
    let status = resolved_once(&net, &cs, cst, &what);
    assert!(
        !status.is_success(),
        "{what}: the connect must fail, got {status:#x}"
    );
    assert_eq!(
        pair.incoming.len(),
        0,
        "{what}: the removed listener delivered a connect event"
    );
    assert_eq!(
        net.fabric.stats().connect_events,
        before.connect_events,
        "{what}"
    );
    assert_eq!(
        complete_connect(&end),
        NtStatus::CONNECTION_INVALID,
        "{what}: nothing to complete"
    );

    close(conn, d(conn).NdkCloseConnector);
    close(qp, d(qp).NdkCloseQp);
    pair.finish(&net, &what);
}

per_mode!(connecting_to_a_listener_on_a_removed_host_fails);

fn adapter_removal_after_the_connection_ended_calls_nobody_back(mode: Completion) {
    // Remove the host of the end that disconnected first (A), or of the end it called back (B).
    for removed in [0, 1] {
        let net = instant_disconnect_net(mode);
        let what = format!("mode {mode:?}, host {removed} removed");
        let pair = Pair::connect(&net, V21, V21);
        assert_disconnect(&net, pair.a.conn, NtStatus::SUCCESS, &what);
        assert_eq!(pair.b.events.count(), 1, "{what}");

        // The connection is over: at most one callback per connection, and none for the
        // side that ended it.
        net.fabric.remove_adapters(net.hosts[removed]);
        net.settle();
        assert_eq!(
            pair.a.events.count(),
            0,
            "{what}: A ended the connection itself"
        );
        assert_eq!(
            pair.b.events.all(),
            vec![Some(reason::GRACEFUL)],
            "{what}: B was already called back"
        );
        pair.finish_after_callbacks(&net, 1, &what);
    }
}

per_mode!(adapter_removal_after_the_connection_ended_calls_nobody_back);

// --- nothing to inject on -----------------------------------------------------------------------

fn inject_on_a_connector_outside_any_connection_returns_false(mode: Completion) {
    const FAULTS: [Fault; 3] = [Fault::PeerDisconnect, Fault::PeerReset, Fault::LinkLoss];
    let net = instant_disconnect_net(mode);
    let what = format!("mode {mode:?}");

    // Idle: created, never connected.
    let end = End::new(&net, 1, V21);
    let idle = create_connector(end.adapter);
    for fault in FAULTS {
        assert!(
            !net.fabric.inject(idle, fault),
            "{what}: {fault:?} on an idle connector"
        );
    }
    close(idle, d(idle).NdkCloseConnector);
    end.teardown(&net);

    // Disconnected on both ends: nothing left to break, and no further callback.
    let pair = Pair::connect(&net, V21, V21);
    assert_disconnect(&net, pair.a.conn, NtStatus::SUCCESS, &what);
    assert_disconnect(&net, pair.b.conn, NtStatus::SUCCESS, &what);
    for fault in FAULTS {
        assert!(
            !net.fabric.inject(pair.a.conn, fault),
            "{what}: {fault:?} on a disconnected connector (A)"
        );
        assert!(
            !net.fabric.inject(pair.b.conn, fault),
            "{what}: {fault:?} on a disconnected connector (B)"
        );
    }
    net.settle();
    assert_eq!(pair.a.events.count(), 0, "{what}");
    assert_eq!(pair.b.events.count(), 1, "{what}");
    pair.finish_after_callbacks(&net, 1, &what);
}

per_mode!(inject_on_a_connector_outside_any_connection_returns_false);
