//! softndk is no kinder than an RDMA adapter. Each test names the NDKPI page whose rule it
//! checks; none of them turns a `Kindness` on.
mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ndkpi_sys::*;
use softndk::{Completion, CqError, FabricConfig, Fault, Timing, provider_error, reason};

/// A short retry timeout (the tests of failed sends wait for it), and handshake and
/// disconnect timeouts long enough that a test answering in time never races them, even on a
/// loaded machine or under Miri.
fn fast() -> Timing {
    Timing {
        disconnect_timeout: Duration::from_secs(30),
        retry_timeout: Duration::from_millis(50),
        handshake_timeout: Duration::from_secs(30),
    }
}

fn net(completion: Completion) -> Net {
    net_timed(completion, fast())
}

fn net_timed(completion: Completion, timing: Timing) -> Net {
    Net::with_config(
        FabricConfig {
            completion,
            timing,
            ..FabricConfig::default()
        },
        V21,
        V21,
    )
}

/// For the tests that wait for a timeout to expire.
fn short(timing: Timing) -> Timing {
    Timing {
        disconnect_timeout: Duration::from_millis(150),
        handshake_timeout: Duration::from_millis(150),
        ..timing
    }
}

/// Start `NdkDisconnect` without waiting for it.
fn start_disconnect(conn: *mut NDK_CONNECTOR) -> (std::sync::Arc<Slot>, NTSTATUS) {
    let s = Slot::new();
    // SAFETY: live connector; valid callback, and the slot outlives its completion.
    let st = unsafe { d(conn).NdkDisconnect.unwrap()(conn, Some(on_request), s.ctx()) };
    s.mark_returned();
    (s, st)
}

/// Poll `cq` until `n` completions arrived (or the hang limit).
fn poll_n(cq: *mut NDK_CQ, n: usize) -> Vec<NDK_RESULT_EX> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(poll(cq));
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

/// Run `work` while another thread delivers the (manual-mode) fabric's callbacks.
fn delivering<R>(net: &Net, work: impl FnOnce() -> R) -> R {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                net.fabric.deliver();
                std::thread::yield_now();
            }
        });
        let result = work();
        stop.store(true, Ordering::Release);
        result
    })
}

/// The completion of the request with context `ctx` among `done`.
fn result_for(done: &[NDK_RESULT_EX], ctx: usize) -> &NDK_RESULT_EX {
    done.iter()
        .find(|r| r.RequestContext.addr() == ctx)
        .unwrap_or_else(|| panic!("no completion for request {ctx:#x} in {done:?}"))
}

/// One `#[test]` per mode these tests hold in, for each named `fn(Completion)`: inline, and
/// the hardware mode with four provider threads (`name::inline`, `name::hardware`).
macro_rules! per_hardware_mode {
    ($($name:ident),+ $(,)?) => {$(
        per_mode!($name in {
            inline: Completion::Inline,
            hardware: Completion::Hardware { seed: 5, threads: 4 },
        });
    )+};
}

/// `NetworkDirect` disconnect scheme, `NDK_FN_DISCONNECT`: the initiator's `NdkDisconnect`
/// completes only when the peer answers (here by its own `NdkDisconnect`), then its QP is
/// flushed; the peer's callback fires once.
fn ndk_disconnect_completes_only_when_the_peer_answers(mode: Completion) {
    let net = net(mode);
    let pair = Pair::connect(&net, V21, V21);
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING, "{mode:?}: it waits for the peer");
    pair.b.events.wait_count(1);
    assert_eq!(pair.b.events.all(), [Some(reason::GRACEFUL)], "{mode:?}");
    net.settle();
    assert_eq!(slot.calls(), 0, "{mode:?}: no answer yet, no completion");
    assert_eq!(
        disconnect(pair.b.conn),
        NtStatus::SUCCESS,
        "{mode:?}: B answers"
    );
    assert_eq!(
        slot.wait(),
        NtStatus::SUCCESS,
        "{mode:?}: A's disconnect completes"
    );
    net.settle();
    assert!(
        pair.a.qp_stats(&net).provider_flushes >= 1,
        "{mode:?}: flushed implicitly after the disconnect completed"
    );
    assert_eq!(
        pair.a.events.count(),
        0,
        "{mode:?}: no callback for our own"
    );
    pair.finish(&net, "answered");
}

per_hardware_mode!(ndk_disconnect_completes_only_when_the_peer_answers);

/// `NetworkDirect` disconnect scheme: closing the peer's connector answers too.
#[test]
fn closing_the_peer_connector_answers_a_disconnect() {
    let net = net(Completion::Inline);
    let mut pair = Pair::connect(&net, V21, V21);
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING);
    assert_eq!(
        close(pair.b.conn, d(pair.b.conn).NdkCloseConnector),
        NtStatus::SUCCESS
    );
    pair.b.conn = std::ptr::null_mut();
    assert_eq!(slot.wait(), NtStatus::SUCCESS);
    pair.finish(&net, "closed");
}

/// `NDK_FN_DISCONNECT`: `STATUS_IO_TIMEOUT` when the peer never answers.
#[test]
fn an_unanswered_disconnect_times_out() {
    let net = net_timed(Completion::hardware(3), short(fast()));
    let pair = Pair::connect(&net, V21, V21);
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING);
    assert_eq!(slot.wait(), NtStatus::IO_TIMEOUT);
    assert_eq!(net.fabric.stats().disconnect_timeouts, 1);
    pair.finish(&net, "timeout");
}

/// The disconnect callback does not flush (`NDK_FN_DISCONNECT_EVENT_CALLBACK`), but a send the
/// dead peer never takes fails after the retry timeout, the QP enters the error state and the
/// provider — not the consumer — flushes every remaining request, receives included. The error
/// completion carries a provider code (`NDK_RESULT_EX`, 2.1); Type is undefined.
fn a_send_to_a_peer_that_went_away_fails_and_the_provider_flushes_the_qp(mode: Completion) {
    let net = net(mode);
    let pair = Pair::connect(&net, V21, V21);
    let mut recv = Buf::new(pair.b.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let mut send = Buf::new(pair.b.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_READ);
    for ctx in [0x11, 0x12] {
        receive_ok(pair.b.qp, &recv.sge(0, 32), ctx);
    }
    // A has no receive posted: B's send waits (the adapter retries for a receive).
    send_ok(pair.b.qp, &send.sge(0, 16), 0x21, 0);
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING);
    pair.b.events.wait_count(1);
    let done = poll_n(pair.b.cq, 3);
    assert_eq!(
        done.len(),
        3,
        "{mode:?}: the send failed and both receives were flushed"
    );
    let send_done = result_for(&done, 0x21);
    assert_eq!(send_done.Status, NtStatus::IO_TIMEOUT, "{mode:?}");
    assert_eq!(send_done.ProviderErrorCode, provider_error::RETRY_EXCEEDED);
    assert_ne!(
        send_done.Type, NdkOperationTypeSend,
        "{mode:?}: Type is undefined"
    );
    for ctx in [0x11, 0x12] {
        let r = result_for(&done, ctx);
        assert_eq!(r.Status, NtStatus::CANCELLED, "{mode:?}: flushed");
        assert_eq!(r.ProviderErrorCode, provider_error::FLUSHED);
    }
    let stats = pair.b.qp_stats(&net);
    assert_eq!(stats.flush_calls, 0, "{mode:?}: the consumer never flushed");
    assert!(stats.provider_flushes >= 1, "{mode:?}: the provider did");
    assert_eq!(net.fabric.stats().retry_failures, 1);
    assert_eq!(pair.b.events.count(), 1, "{mode:?}: still one callback");
    assert_eq!(disconnect(pair.b.conn), NtStatus::SUCCESS);
    assert_eq!(slot.wait(), NtStatus::SUCCESS);
    recv.close();
    send.close();
    pair.finish(&net, "retry");
}

per_hardware_mode!(a_send_to_a_peer_that_went_away_fails_and_the_provider_flushes_the_qp);

/// `NetworkDirect` disconnect scheme ("the provider detects that the connection was aborted"):
/// a lost link is noticed only by an end whose send is not acknowledged — it gets the
/// disconnect callback with `LINK_DOWN`; an idle end is never told, and its `NdkDisconnect`
/// times out.
#[test]
fn link_loss_is_noticed_only_by_an_end_that_sends() {
    let net = net_timed(Completion::hardware(9), short(fast()));
    let pair = Pair::connect(&net, V21, V21);
    assert!(net.fabric.inject(pair.a.conn, Fault::LinkLoss));
    let mut send = Buf::new(pair.b.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_READ);
    let mut recv = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    receive_ok(pair.a.qp, &recv.sge(0, 16), 0x31);
    send_ok(pair.b.qp, &send.sge(0, 16), 0x32, 0);
    pair.b.events.wait_count(1);
    assert_eq!(pair.b.events.all(), [Some(reason::LINK_DOWN)]);
    let done = poll_n(pair.b.cq, 1);
    assert_eq!(done[0].Status, NtStatus::IO_TIMEOUT);
    std::thread::sleep(Duration::from_millis(120));
    net.settle();
    assert_eq!(pair.a.events.count(), 0, "the idle end never noticed");
    assert_eq!(
        pair.a.qp_stats(&net).outstanding_receives,
        1,
        "and its receive is still posted"
    );
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING);
    assert_eq!(
        slot.wait(),
        NtStatus::IO_TIMEOUT,
        "nobody can answer over a dead link"
    );
    send.close();
    recv.close();
    pair.finish(&net, "link");
}

/// `NDK_FN_FLUSH`; NDKPI completion handling requirements: `NdkFlush` only initiates; the
/// flushed requests complete later, and the QP does not carry data any more.
#[test]
fn ndk_flush_only_initiates() {
    let net = net(Completion::Manual);
    // The handshake and the registrations need their callbacks delivered.
    let (pair, mut recv, mut send) = delivering(&net, || {
        let pair = Pair::connect(&net, V21, V21);
        let recv = Buf::new(pair.b.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
        let send = Buf::new(pair.b.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_READ);
        (pair, recv, send)
    });
    net.fabric.deliver();
    receive_ok(pair.b.qp, &recv.sge(0, 16), 1);
    flush(pair.b.qp);
    assert_eq!(
        net.fabric.cq_len(pair.b.cq),
        Some(0),
        "nothing completed inside NdkFlush"
    );
    receive_ok(pair.b.qp, &recv.sge(16, 16), 2);
    assert_eq!(
        post_send(pair.b.qp, &send.sge(0, 16), 3, 0),
        NtStatus::CONNECTION_INVALID,
        "a flushed QP carries no data"
    );
    net.fabric.deliver();
    let done = poll(pair.b.cq);
    let ctxs: Vec<_> = done
        .iter()
        .map(|r| (r.RequestContext.addr(), r.Status))
        .collect();
    assert_eq!(
        ctxs,
        [(1, NtStatus::CANCELLED), (2, NtStatus::CANCELLED)],
        "in order"
    );
    delivering(&net, || {
        recv.close();
        send.close();
        pair.teardown(&net);
    });
    net.fabric.deliver();
    assert_eq!(net.fabric.live_objects(), 0);
}

/// `NDK_FN_CQ_NOTIFICATION_CALLBACK`: a fatal error or an overrun reports
/// `STATUS_INTERNAL_ERROR` / `STATUS_BUFFER_OVERFLOW`; the CQ and its QPs complete nothing more, and
/// the peer's sends to the dead QP fail after the retry timeout.
#[test]
fn a_dead_cq_reports_its_error_and_its_qps_are_dead() {
    for (error, status) in [
        (CqError::Fatal, NtStatus::INTERNAL_ERROR),
        (CqError::Overrun, NtStatus::BUFFER_OVERFLOW),
    ] {
        let net = net(Completion::Inline);
        let pair = Pair::connect(&net, V21, V21);
        let mut recv = Buf::new(pair.b.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
        receive_ok(pair.b.qp, &recv.sge(0, 16), 1);
        arm(pair.b.cq, NDK_CQ_NOTIFY_ERRORS);
        assert!(net.fabric.inject_cq_error(pair.b.cq, error));
        net.settle();
        assert_eq!(pair.b.notes.all(), [status], "{error:?}");
        arm(pair.b.cq, NDK_CQ_NOTIFY_ANY);
        net.settle();
        assert_eq!(pair.b.notes.all().len(), 1, "{error:?}: reported once");
        let mut send = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_READ);
        send_ok(pair.a.qp, &send.sge(0, 16), 2, 0);
        let done = poll_n(pair.a.cq, 1);
        assert_eq!(
            done[0].Status,
            NtStatus::IO_TIMEOUT,
            "{error:?}: the peer's send failed"
        );
        assert!(
            poll(pair.b.cq).is_empty(),
            "{error:?}: the dead CQ completes nothing"
        );
        recv.close();
        send.close();
        pair.finish(&net, "cq");
    }
}

/// `NDK_FN_CONNECT` / `NDK_FN_ACCEPT`: a connect nobody accepts fails with `STATUS_IO_TIMEOUT`;
/// the connector the listener delivered can no longer be accepted.
#[test]
fn a_connect_nobody_accepts_times_out() {
    let net = net_timed(Completion::hardware(4), short(fast()));
    let mut a = End::new(&net, 1, V21);
    let mut b = End::new(&net, 2, V21);
    let incoming = Incoming::new();
    let listener = create_listener(b.adapter, &incoming);
    let dst = std::net::SocketAddr::new(net.v4[1], 4800);
    assert_eq!(listen(listener, dst), NtStatus::SUCCESS);
    a.conn = create_connector(a.adapter);
    let (slot, st) = start_connect(&a, dst, b"");
    b.conn = incoming.next();
    assert_eq!(slot.resolve(st), NtStatus::IO_TIMEOUT);
    assert_eq!(net.fabric.stats().handshake_timeouts, 1);
    let (acc, ast) = start_accept(&b, b"");
    assert_eq!(acc.resolve(ast), NtStatus::CONNECTION_ABORTED);
    a.teardown(&net);
    close(b.conn, d(b.conn).NdkCloseConnector);
    b.conn = std::ptr::null_mut();
    close(listener, d(listener).NdkCloseListener);
    b.teardown(&net);
    assert_no_leak(&net, "handshake");
}

static INSIDE: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

unsafe extern "system" fn overlapping(ctx: PVOID, status: NTSTATUS, obj: *mut NDK_OBJECT_HEADER) {
    let now = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(5));
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: forwarded unchanged to the recording callback of the same slot.
    unsafe { on_create(ctx, status, obj) };
}

/// NDKPI object lifetime requirements ("Consumer-Provider Interaction"): completions may run
/// on any thread; the hardware mode delivers on several provider threads at once.
#[test]
#[cfg_attr(
    miri,
    ignore = "about thread scheduling, not memory safety; Miri's scheduler decides the overlap"
)]
fn the_hardware_mode_runs_callbacks_concurrently() {
    let net = net(Completion::Hardware {
        seed: 1,
        threads: 4,
    });
    let adapter = net.open(1, V21);
    let mut slots = Vec::new();
    for _ in 0..64 {
        let s = Slot::new();
        let mut pd: *mut NDK_PD = std::ptr::null_mut();
        // SAFETY: live adapter; valid callback and context; the slot outlives the completion.
        let st = unsafe {
            d(adapter).NdkCreatePd.unwrap()(adapter, Some(overlapping), s.ctx(), &raw mut pd)
        };
        slots.push((s, st, pd));
    }
    let mut pds = Vec::new();
    for (s, st, pd) in slots {
        assert_eq!(s.resolve(st), NtStatus::SUCCESS);
        pds.push(if st == NtStatus::SUCCESS {
            pd
        } else {
            s.object_ptr()
        });
    }
    assert!(
        MOST.load(Ordering::SeqCst) > 1,
        "callbacks of different objects overlapped on several threads"
    );
    for pd in pds {
        close(pd, d(pd).NdkClosePd);
    }
    net.settle();
    net.fabric.close_adapter(adapter);
    assert_no_leak(&net, "threads");
}

/// A provider may hold its own lock while it calls the disconnect callback
/// (`FabricConfig::provider_lock`, on by default): another thread's connector call waits until
/// the callback returns — which is why a consumer must never call NDK while holding the lock its
/// callback takes.
#[test]
fn the_provider_holds_its_lock_across_the_disconnect_callback() {
    let net = net(Completion::Thread);
    let pair = Pair::connect(&net, V21, V21);
    let peer_conn = SendPtr(pair.b.conn.cast());
    let observed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = std::sync::Arc::clone(&observed);
    *pair.b.events.hook.lock().unwrap() = Some(Box::new(move || {
        // The whole wrapper, not its raw field, moves into the closure.
        let peer_conn = &peer_conn;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&done);
        let conn = SendPtr(peer_conn.0);
        let other = std::thread::spawn(move || {
            let conn = &conn;
            let mut sock = Sock::empty();
            let mut len = u32::try_from(std::mem::size_of::<SOCKADDR_IN6>()).unwrap();
            // SAFETY: live connector (closed only after this thread is joined); valid buffer.
            let st = unsafe {
                d(conn.0.cast::<NDK_CONNECTOR>()).NdkGetPeerAddress.unwrap()(
                    conn.0.cast(),
                    sock.ptr_mut(),
                    &raw mut len,
                )
            };
            flag.store(true, Ordering::SeqCst);
            st
        });
        std::thread::sleep(Duration::from_millis(50));
        let finished_inside = done.load(Ordering::SeqCst);
        *seen.lock().unwrap() = Some((finished_inside, other));
    }));
    let (slot, st) = start_disconnect(pair.a.conn);
    assert_eq!(st, NtStatus::PENDING);
    pair.b.events.wait_count(1);
    let (finished_inside, other) = observed.lock().unwrap().take().expect("hook ran");
    assert!(
        !finished_inside,
        "NdkGetPeerAddress on another thread waited for the callback to return"
    );
    assert_eq!(other.join().unwrap(), NtStatus::SUCCESS, "then it ran");
    assert_eq!(disconnect(pair.b.conn), NtStatus::SUCCESS);
    assert_eq!(slot.wait(), NtStatus::SUCCESS);
    pair.finish(&net, "provider lock");
}

/// iWARP (RDMAP/DDP) has no receiver-not-ready retry: a send that finds no receive posted at
/// the peer makes the peer terminate the connection. The send fails, both QPs are flushed by
/// the provider, and both ends are told through their disconnect callbacks.
fn on_iwarp_a_send_without_a_posted_receive_terminates_the_connection(mode: Completion) {
    let net = Net::with_hosts(
        FabricConfig {
            completion: mode,
            timing: fast(),
            ..FabricConfig::default()
        },
        |mut h| {
            h.info.RdmaTechnology = NdkiWarp;
            h
        },
    );
    let pair = Pair::connect(&net, V21, V21);
    let mut a_recv = Buf::new(pair.a.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let mut send = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_READ);
    receive_ok(pair.a.qp, &a_recv.sge(0, 16), 0x41);
    // B posted no receive.
    send_ok(pair.a.qp, &send.sge(0, 16), 0x42, 0);
    pair.a.events.wait_count(1);
    pair.b.events.wait_count(1);
    assert_eq!(pair.a.events.all(), [Some(reason::TERMINATED)], "{mode:?}");
    assert_eq!(pair.b.events.all(), [Some(reason::TERMINATED)], "{mode:?}");
    let done = poll_n(pair.a.cq, 2);
    let failed = result_for(&done, 0x42);
    assert_eq!(failed.Status, NtStatus::CONNECTION_ABORTED, "{mode:?}");
    assert_eq!(failed.ProviderErrorCode, provider_error::RNR_TERMINATED);
    let flushed = result_for(&done, 0x41);
    assert_eq!(
        flushed.Status,
        NtStatus::CANCELLED,
        "{mode:?}: the provider flushed A's QP"
    );
    assert_eq!(pair.a.qp_stats(&net).flush_calls, 0);
    a_recv.close();
    send.close();
    pair.finish(&net, "iwarp");
}

per_hardware_mode!(on_iwarp_a_send_without_a_posted_receive_terminates_the_connection);
