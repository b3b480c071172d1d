//! Flush rules: no flush of outstanding work on a peer
//! disconnect, an implicit flush after the local `NdkDisconnect`, and `NdkFlush` completing
//! every pending request with `STATUS_CANCELLED`.
mod common;
use common::*;

use ndkpi_sys::*;
use softndk::{Misbehaviour, QpState, reason};

// --- local helpers ------------------------------------------------------------------------------

/// The `QPContext` `End::new` gives each side's QP (`create_qp(.., 0x1000 + if_index)`).
const QP_CTX_A: usize = 0x1001;
const QP_CTX_B: usize = 0x1002;

/// Post `n` 64-byte receives from `buf` with request contexts `base, base + 1, ...`.
fn post_receives(qp: *mut NDK_QP, buf: &mut Buf, n: usize, base: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let sge = buf.sge(i * 64, 64);
            assert_eq!(
                post_receive(qp, &sge, base + i),
                NtStatus::SUCCESS,
                "NdkReceive"
            );
            base + i
        })
        .collect()
}

/// Post `n` 16-byte sends from `buf` with request contexts `base, base + 1, ...`.
fn post_sends(qp: *mut NDK_QP, buf: &mut Buf, n: usize, base: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let sge = buf.sge(i * 16, 16);
            assert_eq!(
                post_send(qp, &sge, base + i, 0),
                NtStatus::SUCCESS,
                "NdkSend"
            );
            base + i
        })
        .collect()
}

/// Every result of `op` is `STATUS_CANCELLED` on `qp_ctx`, and their request contexts are
/// exactly `expected` (in any order).
fn assert_cancelled(
    results: &[NDK_RESULT_EX],
    op: NDK_OPERATION_TYPE,
    qp_ctx: usize,
    expected: &[usize],
    what: &str,
) {
    let of_op: Vec<&NDK_RESULT_EX> = results.iter().filter(|r| r.Type == op).collect();
    for r in &of_op {
        assert_eq!(
            r.Status,
            NtStatus::CANCELLED,
            "{what}: flushed requests complete with STATUS_CANCELLED"
        );
        assert_eq!(r.QPContext.addr(), qp_ctx, "{what}: QPContext");
    }
    let mut got: Vec<usize> = of_op.iter().map(|r| r.RequestContext.addr()).collect();
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "{what}: each posted request completes exactly once"
    );
}

const LOCAL_WRITE: u32 = NDK_MR_FLAG_ALLOW_LOCAL_WRITE;

// --- tests --------------------------------------------------------------------------------------

/// These tests pin down *which* QP a flush touches (none on a peer disconnect, the local one
/// after `NdkDisconnect`, the QP's at its close). They need `NdkDisconnect` to finish without
/// scripting the peer's answer, `NdkFlush`'s completions inside the call, and a send to a
/// dead peer to stay posted, so they use those `Kindness` switches; and they sort completions
/// by `Type`, which NDKPI leaves undefined on error completions (`clean_error_completions`). What hardware does
/// instead — `NdkDisconnect` waits for the peer, `NdkFlush` only initiates, the unacknowledged
/// send fails and the provider flushes the QP — is tested in `tests/hardware.rs`.
fn kind_net(mode: softndk::Completion) -> Net {
    Net::kind(
        mode,
        softndk::Kindness {
            instant_disconnect: true,
            synchronous_flush: true,
            sends_to_dead_peer_wait: true,
            clean_error_completions: true,
            ..softndk::Kindness::default()
        },
    )
}

fn peer_disconnect_does_not_flush_and_ndk_flush_cancels_every_receive(mode: Completion) {
    const N: usize = 5;
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    let mut buf = Buf::new(pair.b.pd, 64 * N, LOCAL_WRITE);
    let posted = post_receives(pair.b.qp, &mut buf, N, 0x500);

    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    assert_eq!(pair.b.events.all(), vec![Some(reason::GRACEFUL)], "{what}");

    // The survivor's receives are untouched by the peer's disconnect.
    let stats = pair.b.qp_stats(&net);
    assert_eq!(
        stats.outstanding_receives, N,
        "{what}: receives still outstanding"
    );
    assert_eq!(stats.flush_calls, 0, "{what}");
    assert_eq!(
        stats.provider_flushes, 0,
        "{what}: the provider must not flush on a peer disconnect"
    );
    assert_eq!(stats.cancelled, 0, "{what}");
    assert!(
        poll(pair.b.cq).is_empty(),
        "{what}: nothing completes on a peer disconnect"
    );

    // NdkFlush cancels them all.
    flush(pair.b.qp);
    net.settle();
    let results = poll(pair.b.cq);
    assert_eq!(
        results.len(),
        N,
        "{what}: one completion per receive: {results:?}"
    );
    assert_cancelled(&results, NdkOperationTypeReceive, QP_CTX_B, &posted, &what);
    let stats = pair.b.qp_stats(&net);
    assert_eq!(stats.flush_calls, 1, "{what}");
    assert_eq!(stats.outstanding_receives, 0, "{what}");
    assert_eq!(stats.cancelled, N as u64, "{what}");
    assert_eq!(net.fabric.stats().flush_calls, 1, "{what}");

    buf.close();
    pair.finish(&net, &what);
}

per_mode!(peer_disconnect_does_not_flush_and_ndk_flush_cancels_every_receive);

fn ndk_disconnect_flushes_the_local_qp_implicitly_and_not_the_peers(mode: Completion) {
    const N: usize = 3;
    const M: usize = 4;
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    let mut a_buf = Buf::new(pair.a.pd, 64 * N, LOCAL_WRITE);
    let mut b_buf = Buf::new(pair.b.pd, 64 * M, LOCAL_WRITE);
    let a_posted = post_receives(pair.a.qp, &mut a_buf, N, 0xA00);
    let b_posted = post_receives(pair.b.qp, &mut b_buf, M, 0xB00);

    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
    net.settle();

    // A: flushed by its own NdkDisconnect, without any NdkFlush.
    let results = poll(pair.a.cq);
    assert_eq!(results.len(), N, "{what}: {results:?}");
    assert_cancelled(
        &results,
        NdkOperationTypeReceive,
        QP_CTX_A,
        &a_posted,
        &what,
    );
    let a = pair.a.qp_stats(&net);
    assert_eq!(a.flush_calls, 0, "{what}");
    assert_eq!(
        a.provider_flushes, 1,
        "{what}: the implicit flush is counted"
    );
    assert_eq!(a.outstanding_receives, 0, "{what}");

    // B: the peer, not flushed.
    let b = pair.b.qp_stats(&net);
    assert_eq!(b.outstanding_receives, M, "{what}");
    assert_eq!((b.flush_calls, b.provider_flushes), (0, 0), "{what}");
    assert!(poll(pair.b.cq).is_empty(), "{what}");

    // B's own NdkDisconnect (after the peer's) flushes B in turn.
    assert_eq!(disconnect(pair.b.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    let results = poll(pair.b.cq);
    assert_eq!(results.len(), M, "{what}: {results:?}");
    assert_cancelled(
        &results,
        NdkOperationTypeReceive,
        QP_CTX_B,
        &b_posted,
        &what,
    );
    assert_eq!(pair.b.qp_stats(&net).provider_flushes, 1, "{what}");
    assert_eq!(pair.b.qp_stats(&net).flush_calls, 0, "{what}");

    a_buf.close();
    b_buf.close();
    pair.finish(&net, &what);
}

per_mode!(ndk_disconnect_flushes_the_local_qp_implicitly_and_not_the_peers);

fn sends_waiting_for_a_peer_receive_stay_outstanding_after_peer_disconnect_until_flush(
    mode: Completion,
) {
    const R: usize = 2;
    const S: usize = 3;
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    let mut rbuf = Buf::new(pair.a.pd, 64 * R, LOCAL_WRITE);
    let mut sbuf = Buf::new(pair.a.pd, 16 * S, LOCAL_WRITE);
    let receives = post_receives(pair.a.qp, &mut rbuf, R, 0x700);
    // B posts no receive: the sends wait in A's initiator queue.
    let sends = post_sends(pair.a.qp, &mut sbuf, S, 0x800);
    net.settle();
    assert_eq!(
        pair.a.qp_stats(&net).outstanding_sends,
        S,
        "{what}: sends wait for a peer receive"
    );
    assert!(poll(pair.a.cq).is_empty(), "{what}");

    // B disconnects; A survives with everything still outstanding.
    assert_eq!(disconnect(pair.b.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    assert_eq!(pair.a.events.all(), vec![Some(reason::GRACEFUL)], "{what}");
    let stats = pair.a.qp_stats(&net);
    assert_eq!(
        stats.outstanding_sends, S,
        "{what}: sends are not flushed by a peer disconnect"
    );
    assert_eq!(stats.outstanding_receives, R, "{what}");
    assert_eq!(
        (stats.flush_calls, stats.provider_flushes),
        (0, 0),
        "{what}"
    );
    assert!(poll(pair.a.cq).is_empty(), "{what}");

    // NdkFlush cancels both queues.
    flush(pair.a.qp);
    net.settle();
    let results = poll(pair.a.cq);
    assert_eq!(results.len(), R + S, "{what}: {results:?}");
    assert_cancelled(&results, NdkOperationTypeSend, QP_CTX_A, &sends, &what);
    assert_cancelled(
        &results,
        NdkOperationTypeReceive,
        QP_CTX_A,
        &receives,
        &what,
    );
    let stats = pair.a.qp_stats(&net);
    assert_eq!(
        (stats.outstanding_sends, stats.outstanding_receives),
        (0, 0),
        "{what}"
    );
    assert_eq!(stats.flush_calls, 1, "{what}");

    rbuf.close();
    sbuf.close();
    pair.finish(&net, &what);
}

per_mode!(sends_waiting_for_a_peer_receive_stay_outstanding_after_peer_disconnect_until_flush);

fn flush_on_peer_disconnect_misbehaviour_cancels_the_victims_receives(mode: Completion) {
    const N: usize = 4;
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let bad = Misbehaviour {
        flush_on_peer_disconnect: true,
        ..Misbehaviour::default()
    };
    net.fabric.set_misbehaviour(net.hosts[1], bad);
    let pair = Pair::connect(&net, V21, V21);
    let mut buf = Buf::new(pair.b.pd, 64 * N, LOCAL_WRITE);
    let posted = post_receives(pair.b.qp, &mut buf, N, 0x900);

    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    assert_eq!(pair.b.events.count(), 1, "{what}");
    let results = poll(pair.b.cq);
    assert_eq!(
        results.len(),
        N,
        "{what}: the misbehaving host flushed: {results:?}"
    );
    assert_cancelled(&results, NdkOperationTypeReceive, QP_CTX_B, &posted, &what);
    let stats = pair.b.qp_stats(&net);
    assert_eq!(stats.flush_calls, 0, "{what}: no NdkFlush was called");
    assert_eq!(stats.provider_flushes, 1, "{what}");
    assert_eq!(stats.outstanding_receives, 0, "{what}");

    buf.close();
    pair.finish(&net, &what);
}

per_mode!(flush_on_peer_disconnect_misbehaviour_cancels_the_victims_receives);

fn receive_posted_after_the_local_side_disconnected_completes_cancelled_at_once(mode: Completion) {
    // Torn down by NdkDisconnect, or by closing the connector without disconnecting.
    for by_close in [false, true] {
        let net = kind_net(mode);
        let what = format!(
            "mode {mode:?}, {}",
            if by_close {
                "connector closed"
            } else {
                "NdkDisconnect"
            }
        );
        let mut pair = Pair::connect(&net, V21, V21);
        if by_close {
            close(pair.a.conn, d(pair.a.conn).NdkCloseConnector);
            pair.a.conn = std::ptr::null_mut();
        } else {
            assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
        }
        net.settle();
        assert!(
            poll(pair.a.cq).is_empty(),
            "{what}: nothing was outstanding"
        );

        let mut buf = Buf::new(pair.a.pd, 64, LOCAL_WRITE);
        let sge = buf.sge(0, 64);
        assert_eq!(
            post_receive(pair.a.qp, &sge, 0x1234),
            NtStatus::SUCCESS,
            "{what}"
        );
        // At once: the completion is in the CQ when NdkReceive returns.
        let results = poll(pair.a.cq);
        assert_eq!(results.len(), 1, "{what}: {results:?}");
        assert_cancelled(
            &results,
            NdkOperationTypeReceive,
            QP_CTX_A,
            &[0x1234],
            &what,
        );
        assert_eq!(pair.a.qp_stats(&net).outstanding_receives, 0, "{what}");

        net.settle();
        buf.close();
        pair.finish(&net, &what);
    }
}

per_mode!(receive_posted_after_the_local_side_disconnected_completes_cancelled_at_once);

fn receive_posted_after_the_peer_disconnected_stays_outstanding_until_local_disconnect(
    mode: Completion,
) {
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    assert_eq!(
        pair.b.qp_stats(&net).state,
        Some(QpState::PeerGone),
        "{what}"
    );

    let mut buf = Buf::new(pair.b.pd, 64, LOCAL_WRITE);
    let sge = buf.sge(0, 64);
    assert_eq!(
        post_receive(pair.b.qp, &sge, 0x4321),
        NtStatus::SUCCESS,
        "{what}"
    );
    net.settle();
    assert!(
        poll(pair.b.cq).is_empty(),
        "{what}: the peer being gone does not cancel new receives"
    );
    assert_eq!(pair.b.qp_stats(&net).outstanding_receives, 1, "{what}");

    assert_eq!(disconnect(pair.b.conn), NtStatus::SUCCESS, "{what}");
    net.settle();
    let results = poll(pair.b.cq);
    assert_eq!(results.len(), 1, "{what}: {results:?}");
    assert_cancelled(
        &results,
        NdkOperationTypeReceive,
        QP_CTX_B,
        &[0x4321],
        &what,
    );

    buf.close();
    pair.finish(&net, &what);
}

per_mode!(receive_posted_after_the_peer_disconnected_stays_outstanding_until_local_disconnect);

fn send_after_the_peer_disconnected_is_connection_invalid(mode: Completion) {
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    assert_eq!(disconnect(pair.a.conn), NtStatus::SUCCESS, "{what}");
    net.settle();

    let mut buf = Buf::new(pair.b.pd, 16, LOCAL_WRITE);
    let sge = buf.sge(0, 16);
    assert_eq!(
        post_send(pair.b.qp, &sge, 0x55, 0),
        NtStatus::CONNECTION_INVALID,
        "{what}: the QP left the connected state"
    );
    net.settle();
    assert!(
        poll(pair.b.cq).is_empty(),
        "{what}: a rejected post completes nothing"
    );
    assert_eq!(pair.b.qp_stats(&net).outstanding_sends, 0, "{what}");

    buf.close();
    pair.finish(&net, &what);
}

per_mode!(send_after_the_peer_disconnected_is_connection_invalid);

fn flush_with_nothing_outstanding_completes_nothing_and_calls_nobody_back(mode: Completion) {
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let pair = Pair::connect(&net, V21, V21);
    flush(pair.b.qp);
    net.settle();
    assert!(poll(pair.b.cq).is_empty(), "{what}");
    assert_eq!(pair.b.qp_stats(&net).flush_calls, 1, "{what}");
    pair.assert_nobody_told(&net, &format!("{what}: a flush is not a disconnect"));
    pair.finish(&net, &what);
}

per_mode!(flush_with_nothing_outstanding_completes_nothing_and_calls_nobody_back);

fn closing_the_connector_does_not_flush_the_qp_but_closing_the_qp_does(mode: Completion) {
    const N: usize = 3;
    let net = kind_net(mode);
    let what = format!("mode {mode:?}");
    let mut pair = Pair::connect(&net, V21, V21);
    let mut buf = Buf::new(pair.a.pd, 64 * N, LOCAL_WRITE);
    let posted = post_receives(pair.a.qp, &mut buf, N, 0xC00);

    close(pair.a.conn, d(pair.a.conn).NdkCloseConnector);
    pair.a.conn = std::ptr::null_mut();
    net.settle();
    assert_eq!(
        pair.a.qp_stats(&net).outstanding_receives,
        N,
        "{what}: the connector's close leaves the QP alone"
    );
    assert!(poll(pair.a.cq).is_empty(), "{what}");

    // Closing the QP cancels what it still holds, into the (still open) CQ.
    let qp = pair.a.qp;
    close(qp, d(qp).NdkCloseQp);
    pair.a.qp = std::ptr::null_mut();
    net.settle();
    let results = poll(pair.a.cq);
    assert_eq!(results.len(), N, "{what}: {results:?}");
    assert_cancelled(&results, NdkOperationTypeReceive, QP_CTX_A, &posted, &what);

    // A's connector and QP are already closed: the teardown skips them.
    buf.close();
    pair.finish(&net, &what);
}

per_mode!(closing_the_connector_does_not_flush_the_qp_but_closing_the_qp_does);
