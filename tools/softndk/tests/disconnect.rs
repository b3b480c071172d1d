//! Disconnect callback rules: at most once per connection, only for
//! peer-initiated or abnormal termination, never for the local `NdkDisconnect` or close, the
//! Ex form with a reason at 2.1 and the plain form below; `NdkDisconnect` statuses.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use ndkpi_sys::*;
use softndk::{Completion, Misbehaviour, reason};

// --- local helpers ------------------------------------------------------------------------------

/// `NdkDisconnect`, resolved, and checked to have completed exactly once: inline (no callback)
/// or through exactly one completion callback.
/// Start a close and return its slot and inline status (for Manual mode, where it pends).
fn start_close<T>(obj: *mut T, close_fn: NDK_FN_CLOSE_OBJECT) -> (std::sync::Arc<Slot>, NTSTATUS) {
    let s = Slot::new();
    // SAFETY: live object; valid callback, and the slot outlives its completion.
    let st = unsafe { close_fn.unwrap()(hdr(obj), Some(on_close), s.ctx()) };
    s.mark_returned();
    (s, st)
}

/// Stops the pump thread when dropped, also on a panic (so the scope can join it).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Run `f` (harness calls that wait for their completions) while a helper thread delivers
/// the callbacks a [`Completion::Manual`] fabric queues; afterwards drain the queue, so that
/// from then on nothing is delivered except by the test's own `deliver` calls.
fn pumped<R>(net: &Net, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        let pump = s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                if net.fabric.deliver() == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let guard = StopOnDrop(&stop);
        let r = f();
        drop(guard);
        pump.join().expect("pump thread");
        r
    });
    net.fabric.deliver();
    r
}

/// These tests are about the disconnect *callback* (once, only the peer, the reason, plain vs
/// Ex) and the statuses of a second `NdkDisconnect`; they need the initiator's `NdkDisconnect`
/// to finish without scripting the peer's answer, so they use `Kindness::instant_disconnect`.
/// The hardware behaviour — `NdkDisconnect` waits for the peer's answer, times out, or fails
/// when the connection aborts — is tested in `tests/hardware.rs`.
fn instant_disconnect_net(mode: softndk::Completion) -> Net {
    Net::instant_disconnect(mode)
}

// --- tests --------------------------------------------------------------------------------------

/// Each side in turn — the active side (A), then the passive one (B) — disconnects gracefully
/// from a pair connected at `version` (which both connectors' headers carry); `then` gets the
/// network, the pair, the initiator and its peer ([`sides`]) and the message prefix naming the
/// mode and the initiator.
fn each_side_disconnects(
    mode: Completion,
    version: NDK_VERSION,
    then: impl Fn(&Net, Pair, bool, &str),
) {
    for a_initiates in [true, false] {
        let net = instant_disconnect_net(mode);
        let pair = Pair::connect(&net, version, version);
        assert_eq!(header_version(pair.a.conn), version);
        assert_eq!(header_version(pair.b.conn), version);
        let what = format!(
            "mode {mode:?}, initiator {}",
            if a_initiates { "A" } else { "B" }
        );
        assert_disconnect(
            &net,
            sides(&pair, a_initiates).0.conn,
            NtStatus::SUCCESS,
            &what,
        );
        net.settle();
        then(&net, pair, a_initiates, &what);
    }
}

/// The initiator of a disconnect and its peer.
fn sides(pair: &Pair, a_initiates: bool) -> (&End, &End) {
    if a_initiates {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    }
}

fn graceful_disconnect_calls_back_only_the_peer_once_with_reason_graceful(mode: Completion) {
    // Either side may start the graceful disconnect: the active side (A) or the passive one (B).
    each_side_disconnects(mode, V21, |net, pair, a_initiates, what| {
        let (me, peer) = sides(&pair, a_initiates);
        assert_only_told(
            &peer.events,
            &[Some(reason::GRACEFUL)],
            &me.events,
            &format!(
                "{what}: the peer gets one Ex callback with GRACEFUL; no callback for the local NdkDisconnect"
            ),
        );
        assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
        let info = net.fabric.connector(peer.conn).expect("peer connector");
        assert_eq!(info.disconnect_callbacks, 1, "{what}");

        // Closing both (already disconnected) connectors adds no callback.
        let (a_events, b_events) = (pair.a.events.clone(), pair.b.events.clone());
        pair.teardown(net);
        net.settle();
        assert_eq!(
            a_events.count() + b_events.count(),
            1,
            "{what}: teardown must not add callbacks"
        );
        assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
        assert_no_leak(net, what);
    });
}

per_mode!(graceful_disconnect_calls_back_only_the_peer_once_with_reason_graceful);

fn plain_disconnect_callback_is_used_at_1_2(mode: Completion) {
    each_side_disconnects(mode, V12, |net, pair, a_initiates, what| {
        let (me, peer) = sides(&pair, a_initiates);
        assert_only_told(
            &peer.events,
            &[None],
            &me.events,
            &format!("{what}: one plain (non-Ex) callback at 1.2"),
        );
        assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
        pair.finish(net, what);
    });
}

per_mode!(plain_disconnect_callback_is_used_at_1_2);

fn closing_a_connected_connector_without_disconnect_resets_the_peer(mode: Completion) {
    let net = instant_disconnect_net(mode);
    let mut pair = Pair::connect(&net, V21, V21);
    let what = format!("mode {mode:?}");

    close(pair.a.conn, d(pair.a.conn).NdkCloseConnector);
    pair.a.conn = std::ptr::null_mut();
    net.settle();
    assert_only_told(
        &pair.b.events,
        &[Some(reason::RESET)],
        &pair.a.events,
        &format!("{what}: the peer gets one RESET callback; no callback for the local close"),
    );
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");

    // The survivor's NdkDisconnect after a reset completes with CONNECTION_ABORTED and
    // calls nobody back.
    assert_disconnect(&net, pair.b.conn, NtStatus::CONNECTION_ABORTED, &what);
    pair.finish_after_callbacks(&net, 1, &what);
}

per_mode!(closing_a_connected_connector_without_disconnect_resets_the_peer);

fn both_sides_disconnecting_gives_one_callback_in_total(mode: Completion) {
    let net = instant_disconnect_net(mode);
    let pair = Pair::connect(&net, V21, V21);
    let what = format!("mode {mode:?}");

    assert_disconnect(&net, pair.a.conn, NtStatus::SUCCESS, &format!("{what}: A"));
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::SUCCESS,
        &format!("{what}: B after the peer's graceful disconnect"),
    );
    net.settle();
    assert_eq!(
        pair.a.events.count(),
        0,
        "{what}: A disconnected first; B's disconnect must not call A back"
    );
    assert_eq!(pair.b.events.all(), vec![Some(reason::GRACEFUL)], "{what}");
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
    pair.teardown(&net);
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
    assert_no_leak(&net, &what);
}

per_mode!(both_sides_disconnecting_gives_one_callback_in_total);

fn second_disconnect_on_the_same_connector_is_harmless(mode: Completion) {
    let net = instant_disconnect_net(mode);
    let pair = Pair::connect(&net, V21, V21);
    let what = format!("mode {mode:?}");

    assert_disconnect(
        &net,
        pair.a.conn,
        NtStatus::SUCCESS,
        &format!("{what}: first"),
    );
    assert_disconnect(
        &net,
        pair.a.conn,
        NtStatus::SUCCESS,
        &format!("{what}: second"),
    );
    net.settle();
    assert_eq!(
        pair.b.events.count(),
        1,
        "{what}: one callback for the peer, however often A disconnects"
    );
    assert_eq!(pair.a.events.count(), 0, "{what}");

    // The same on the side that was called back.
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::SUCCESS,
        &format!("{what}: B first"),
    );
    assert_disconnect(
        &net,
        pair.b.conn,
        NtStatus::SUCCESS,
        &format!("{what}: B second"),
    );
    net.settle();
    assert_eq!(pair.a.events.count(), 0, "{what}");
    assert_eq!(pair.b.events.count(), 1, "{what}");
    assert_eq!(net.fabric.stats().disconnect_callbacks, 1, "{what}");
    assert!(
        poll(pair.a.cq).is_empty() && poll(pair.b.cq).is_empty(),
        "{what}: nothing was posted, nothing may complete"
    );
    pair.finish(&net, &what);
}

per_mode!(second_disconnect_on_the_same_connector_is_harmless);

fn disconnect_before_the_connection_is_established_is_connection_invalid(mode: Completion) {
    let net = instant_disconnect_net(mode);
    let what = format!("mode {mode:?}");
    let dst = SocketAddr::new(net.v4[1], 4791);
    let mut a = End::new(&net, 1, V21);
    let mut b = End::new(&net, 2, V21);
    let incoming = Incoming::new();
    let listener = create_listener(b.adapter, &incoming);
    assert_eq!(listen(listener, dst), NtStatus::SUCCESS);
    a.conn = create_connector(a.adapter);

    // Idle: nothing called yet.
    assert_disconnect(
        &net,
        a.conn,
        NtStatus::CONNECTION_INVALID,
        &format!("{what}: idle"),
    );

    // Connect pending (A) / request not yet accepted (B).
    let (cs, cst) = start_connect(&a, dst, b"hello");
    b.conn = incoming.next();
    assert_disconnect(
        &net,
        a.conn,
        NtStatus::CONNECTION_INVALID,
        &format!("{what}: connect pending"),
    );
    assert_disconnect(
        &net,
        b.conn,
        NtStatus::CONNECTION_INVALID,
        &format!("{what}: incoming request"),
    );

    // Connect completed, complete-connect not yet called (A) / accept pending (B).
    let (acc, ast) = start_accept(&b, b"welcome");
    assert_eq!(cs.resolve(cst), NtStatus::SUCCESS, "{what}: connect");
    assert_disconnect(
        &net,
        a.conn,
        NtStatus::CONNECTION_INVALID,
        &format!("{what}: before complete-connect"),
    );
    assert_disconnect(
        &net,
        b.conn,
        NtStatus::CONNECTION_INVALID,
        &format!("{what}: accept pending"),
    );

    // The failed disconnects did not disturb the handshake.
    assert_eq!(
        complete_connect(&a),
        NtStatus::SUCCESS,
        "{what}: complete connect"
    );
    assert_eq!(acc.resolve(ast), NtStatus::SUCCESS, "{what}: accept");
    net.settle();
    assert_eq!(net.fabric.stats().disconnect_callbacks, 0, "{what}");
    assert_disconnect(
        &net,
        a.conn,
        NtStatus::SUCCESS,
        &format!("{what}: established"),
    );
    assert_eq!(b.events.all(), vec![Some(reason::GRACEFUL)], "{what}");
    Pair {
        a,
        b,
        listener,
        incoming,
    }
    .teardown(&net);
    assert_no_leak(&net, &what);
}

per_mode!(disconnect_before_the_connection_is_established_is_connection_invalid);

fn duplicate_disconnect_callback_misbehaviour_fires_twice_for_one_peer_disconnect(
    mode: Completion,
) {
    let net = instant_disconnect_net(mode);
    let what = format!("mode {mode:?}");
    let bad = Misbehaviour {
        duplicate_disconnect_callback: true,
        ..Misbehaviour::default()
    };
    net.fabric.set_misbehaviour(net.hosts[1], bad);

    // The misbehaving host (B) is the one called back: two callbacks.
    let pair = Pair::connect(&net, V21, V21);
    assert_disconnect(&net, pair.a.conn, NtStatus::SUCCESS, &what);
    net.settle();
    assert_only_told(
        &pair.b.events,
        &[Some(reason::GRACEFUL); 2],
        &pair.a.events,
        &format!("{what}: the injected duplicate"),
    );
    assert_eq!(net.fabric.stats().disconnect_callbacks, 2, "{what}");
    pair.teardown(&net);

    // The fault is per host: A (well-behaved) is called back once when B disconnects.
    let pair = Pair::connect_to(&net, V21, V21, SocketAddr::new(net.v4[1], 4792));
    assert_disconnect(&net, pair.b.conn, NtStatus::SUCCESS, &what);
    net.settle();
    assert_eq!(
        pair.a.events.all(),
        vec![Some(reason::GRACEFUL)],
        "{what}: well-behaved host"
    );
    pair.finish_after_callbacks(&net, 3, &what);
}

per_mode!(duplicate_disconnect_callback_misbehaviour_fires_twice_for_one_peer_disconnect);

/// NDKPI object lifetime requirements: event callbacks may come until the close completion
/// (not after it). A disconnect callback owed when B's close starts is delivered — and B's close
/// answers A's graceful disconnect, which completes with success.
#[test]
fn no_disconnect_callback_after_the_connector_close_completed() {
    let net = Net::new(Completion::Manual);
    let mut pair = pumped(&net, || Pair::connect(&net, V21, V21));
    assert_eq!(net.fabric.queued(), 0);
    let before = net.fabric.stats();

    // The peer (A) disconnects: B's disconnect callback is owed and queued, not yet run.
    let ds = Slot::new();
    // SAFETY: live connector; valid callback, and the slot outlives its completion.
    let st =
        unsafe { d(pair.a.conn).NdkDisconnect.unwrap()(pair.a.conn, Some(on_request), ds.ctx()) };
    ds.mark_returned();
    assert_eq!(st, NtStatus::PENDING, "Manual mode: every request pends");
    assert!(
        net.fabric.queued() >= 1,
        "B's disconnect callback is queued (A's NdkDisconnect waits for B's answer)"
    );
    assert_eq!(pair.b.events.count(), 0);

    // B closes its connector before the callback is delivered.
    let (cs, cst) = start_close(pair.b.conn, d(pair.b.conn).NdkCloseConnector);
    pair.b.conn = std::ptr::null_mut();
    assert_eq!(cst, NtStatus::PENDING, "Manual mode: the close pends");
    assert_eq!(cs.calls(), 0);

    // Deliver everything: the owed callback runs, then the close completes.
    net.fabric.deliver();
    assert_eq!(cs.calls(), 1, "the close completed");
    assert_eq!(ds.calls(), 1, "A's NdkDisconnect completed");
    assert_eq!(ds.state.lock().unwrap().status, Some(NtStatus::SUCCESS));
    assert_eq!(net.fabric.queued(), 0);
    assert_eq!(
        net.fabric.deliver(),
        0,
        "nothing is left to deliver after the close completion"
    );
    assert_eq!(
        pair.b.events.count(),
        1,
        "the callback owed before the close is delivered before the close completion"
    );
    assert_eq!(pair.a.events.count(), 0);
    let after = net.fabric.stats();
    assert_eq!(after.suppressed_events, before.suppressed_events);
    assert_eq!(after.disconnect_callbacks, before.disconnect_callbacks + 1);

    pumped(&net, || pair.teardown(&net));
    assert_eq!(
        net.fabric.stats().disconnect_callbacks,
        1,
        "nothing after the close completion, and teardown adds no callback"
    );
    assert_no_leak(&net, "manual");
}
