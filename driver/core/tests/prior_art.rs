//! The disconnect bugs users reported against other RDMA and connection-notification projects,
//! each as a regression test of the guarantee ndkdisc gives instead. Each test is named after
//! the guarantee, and its first comment says what went wrong in the original project. They run
//! over the hardware-like softndk (no kindness) and, where timing matters, in every completion
//! mode. The table of which report maps to which test, and which do not apply, is in TESTING.md.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

use softndk::{CqError, Fault};

/// The events of `id` among `evs`.
fn of(evs: &[Event], id: u64) -> Vec<Event> {
    evs.iter()
        .filter(|e| e.connection_id == id)
        .copied()
        .collect()
}

/// Every event of `h` until `id`'s `Closed` has arrived (or the limit), those of `id` only.
fn events_until_closed(h: &HostHandle, id: u64) -> Vec<Event> {
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(of(&events(h), id));
        if all.iter().any(|e| e.kind == EventKind::Closed) {
            return all;
        }
    }
    panic!("no Closed event for {id}: {all:?}");
}

/// Every event of `h` for `id` until one satisfies `f` (or the limit).
fn events_until(h: &HostHandle, id: u64, f: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(of(&events(h), id));
        if all.iter().any(&f) {
            return all;
        }
    }
    panic!("no such event for {id}: {all:?}");
}

/// One more established connection from `ha` to the listener of `hb` on `port`, both sides'
/// establishment events read: (A's id, B's id).
fn connected(ha: &HostHandle, hb: &HostHandle, port: u16) -> (u64, u64) {
    let r = connect(ha, port);
    assert_eq!(r.status, NtStatus::SUCCESS, "connected");
    let cb = next_event(hb, EventKind::Accepted).connection_id;
    let evs = events_until(ha, r.connection_id, |e| e.kind == EventKind::Connected);
    assert_eq!(evs[0].kind, EventKind::Connected, "{evs:?}");
    (r.connection_id, cb)
}

/// The one event of a completed WAIT's reply.
fn only_event(p: &Pending) -> Event {
    let (st, out) = done(p);
    assert_eq!(st, NtStatus::SUCCESS, "the WAIT completed with an event");
    let evs = decode_events(&out);
    assert!(!evs.is_empty(), "a completed WAIT carries an event");
    evs[0]
}

// --- 1. linux-rdma/perftest#201 -----------------------------------------------------------------

fn a_local_disconnect_ends_the_connection_without_the_peers_cooperation(mode: Completion) {
    // perftest#201: the server never called rdma_disconnect, so the client waited for ever for
    // its DISCONNECTED event.
    let w = timed_world(mode, Duration::from_millis(300));
    let (ha, ca, hb, cb) = pair(&w);
    let a_wait = wait_pending(&ha, Some(ca), 4);
    let a_disconnect = disconnect_pending(&ha, ca);
    // B's consumer is told, but never answers: no DISCONNECT, no CLOSE.
    let db = disconnected(&hb, Cause::Peer);
    assert_eq!(db.connection_id, cb);
    assert_eq!(
        done(&a_disconnect).0,
        NtStatus::IO_TIMEOUT,
        "{mode:?}: the graceful DISCONNECT ends with the provider's timeout"
    );
    let da = only_event(&a_wait);
    assert_eq!(
        (da.connection_id, da.kind, da.cause, da.status),
        (
            ca,
            EventKind::Disconnected,
            Some(Cause::Local),
            NtStatus::IO_TIMEOUT
        ),
        "{mode:?}: A's own disconnect produced A's terminal event"
    );
    // The abortive path needs the peer even less: the event is there when DISCONNECT returns.
    let (ca2, cb2) = connected(&ha, &hb, 4791);
    let a_wait = wait_pending(&ha, Some(ca2), 4);
    assert_eq!(abortive(&ha, ca2), NtStatus::SUCCESS, "{mode:?}");
    let da = only_event(&a_wait);
    assert_eq!(
        (da.connection_id, da.kind, da.cause),
        (ca2, EventKind::Disconnected, Some(Cause::LocalAbortive)),
        "{mode:?}"
    );
    for (h, id) in [(&ha, ca), (&ha, ca2), (&hb, cb), (&hb, cb2)] {
        close(h, id);
    }
    finish(&w, ha, hb);
}

// --- 2. spdk/spdk#3592 --------------------------------------------------------------------------

fn a_dead_peer_never_strands_a_waiter(mode: Completion) {
    // spdk#3592: the target process was killed, and vhost waited for a DISCONNECTED event that
    // never came until a timeout fired.
    let w = world(mode);
    let (ha, ca, hb, _cb) = pair(&w);
    // The peer process dies: its handle is closed without any DISCONNECT.
    let a_wait = wait_pending(&ha, Some(ca), 4);
    hb.close();
    let e = only_event(&a_wait);
    assert_eq!(
        (e.connection_id, e.kind, e.cause, e.provider_reason),
        (
            ca,
            EventKind::Disconnected,
            Some(Cause::Peer),
            Some(reason::RESET)
        ),
        "{mode:?}: the dead process's connections reset ours"
    );
    close(&ha, ca);
    // The peer's host dies silently (link loss on an idle connection): as on hardware, no
    // callback ever comes. ABORT is the local way out, and it cannot strand the waiter either.
    let hb = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4792);
    let (ca, cb) = connected(&ha, &hb, 4792);
    let victim = w.fabric.connectors(w.hosts[0]);
    assert_eq!(victim.len(), 1, "{mode:?}: A's one live connector");
    assert!(w.fabric.inject(victim[0], Fault::LinkLoss), "{mode:?}");
    let a_wait = wait_pending(&ha, Some(ca), 4);
    assert!(w.fabric.wait_idle(WAIT));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!a_wait.is_done(), "{mode:?}: an idle end is never told");
    assert_eq!(abort(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(
        done(&a_wait).0,
        NtStatus::CANCELLED,
        "{mode:?}: ABORT completed the stranded wait"
    );
    let evs = events_until(&ha, ca, |e| e.kind == EventKind::Disconnected);
    let t = terminal(&evs);
    assert_eq!(t.len(), 1, "{mode:?}: {evs:?}");
    assert_eq!(t[0].cause, Some(Cause::Aborted), "{mode:?}");
    close_pair_and_finish(&w, (ha, ca), (hb, cb));
}

// --- 3. openucx/ucx#4719 ------------------------------------------------------------------------

fn a_disconnect_before_the_connect_event_was_read_is_queued_after_it(mode: Completion) {
    // ucx#4719: DISCONNECTED arrived before the connect event had been handled, and the state
    // machine did not allow it.
    let w = world(mode);
    let (ha, hb) = listening(&w);
    // The active side: established, and before A reads anything its peer goes away.
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    let a = w.fabric.connectors(w.hosts[0]);
    assert_eq!(a.len(), 1, "{mode:?}");
    assert!(w.fabric.inject(a[0], Fault::PeerDisconnect), "{mode:?}");
    let evs = events_until(&ha, r.connection_id, |e| e.kind == EventKind::Disconnected);
    let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Connected, EventKind::Disconnected],
        "{mode:?}: both latched, in order: {evs:?}"
    );
    assert!(evs[0].seq < evs[1].seq);
    assert_eq!(evs[1].cause, Some(Cause::Peer), "{mode:?}");
    assert_eq!(
        query(&ha, r.connection_id).state,
        ConnState::Disconnected,
        "{mode:?}"
    );
    close(&ha, r.connection_id);
    let _ = drain(&hb);
    // The passive side: accepted, and before B reads its Accepted its peer goes away. A's
    // CONNECT completes once B's NdkAccept has been called, but with hardware-like completions
    // B's accept may complete later: a peer that goes away before then fails the accept, and
    // B is rightly told `ConnectFailed` instead (this test failed about once in 40 runs that
    // way). So the fault waits until no provider callback is owed: B's accept completion, which
    // latches `Accepted` in the callback itself, has run; B has not read it.
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    assert!(w.fabric.wait_idle(WAIT), "{mode:?}");
    let b = w.fabric.connectors(w.hosts[1]);
    assert!(
        w.fabric.inject(*b.last().unwrap(), Fault::PeerDisconnect),
        "{mode:?}"
    );
    let mut evs = Vec::new();
    for _ in 0..50 {
        evs.extend(events(&hb));
        if evs.iter().any(|e| e.kind == EventKind::Disconnected) {
            break;
        }
    }
    let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Accepted, EventKind::Disconnected],
        "{mode:?}: both latched, in order: {evs:?}"
    );
    assert_eq!(evs[0].connection_id, evs[1].connection_id, "{mode:?}");
    assert!(evs[0].seq < evs[1].seq);
    assert_eq!(evs[1].cause, Some(Cause::Peer), "{mode:?}");
    close(&hb, evs[0].connection_id);
    close(&ha, r.connection_id);
    finish(&w, ha, hb);
}

// --- 4. ofiwg/libfabric#5228 --------------------------------------------------------------------

fn the_disconnect_event_counts_completed_work_and_close_waits_for_no_further_event(
    mode: Completion,
) {
    // libfabric#5228: shutdown was reported before the queue pair's completions were drained;
    // moving the report to TIMEWAIT_EXIT then hung tests because that event sometimes never came.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    assert_eq!(post(&ha, ca, PostKind::Send, 2), NtStatus::SUCCESS);
    let q = query_until(&hb, cb, |q| q.receives_succeeded == 2);
    assert_eq!(q.receives_succeeded, 2, "{mode:?}");
    let a_disconnect = disconnect_pending(&ha, ca);
    let e = disconnected(&hb, Cause::Peer);
    assert_eq!(
        (e.outstanding_receives, e.outstanding_sends),
        (1, 0),
        "{mode:?}: the event counts the completions drained before it"
    );
    // Nothing optional gates the teardown: CLOSE with a receive still posted (never flushed,
    // never completed) returns, releases B's objects and queues Closed.
    close(&hb, cb);
    assert_eq!(
        events_until_closed(&hb, cb).last().map(|e| e.kind),
        Some(EventKind::Closed)
    );
    assert!(
        done(&a_disconnect).0.is_success(),
        "{mode:?}: B's close answered A's graceful disconnect"
    );
    close(&ha, ca);
    finish(&w, ha, hb);
}

// --- 5. ofiwg/libfabric#12362 -------------------------------------------------------------------

fn several_reports_of_one_failure_give_one_terminal_event(mode: Completion) {
    // libfabric#12362 (PR #12378): one failure produced several CM error events, and a work
    // completion error raced the CM event; the handlers' assertions tripped.
    let w = timed_world(mode, Duration::from_secs(30));
    misbehave_b(
        &w,
        Misbehaviour {
            duplicate_disconnect_callback: true,
            ..Default::default()
        },
    );
    let (ha, ca, hb, cb) = pair_with_receives(&w, 2);
    // A posted no receive: B's send waits for one, then fails when A is gone.
    assert_eq!(post(&hb, cb, PostKind::Send, 1), NtStatus::SUCCESS);
    // A resets: B's provider calls the disconnect callback twice, B's send fails with a
    // transport error and the provider flushes B's receives.
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    let e = next_event(&hb, EventKind::Disconnected);
    assert_eq!(e.connection_id, cb, "{mode:?}");
    let q = query_until(&hb, cb, |q| {
        q.outstanding_sends == 0 && q.outstanding_receives == 0
    });
    assert_eq!(
        (q.outstanding_sends, q.outstanding_receives),
        (0, 0),
        "{mode:?}: every report arrived: {q:?}"
    );
    assert_eq!(q.sends_failed + q.sends_cancelled, 1, "{mode:?}: {q:?}");
    assert!(q.callback_fired, "{mode:?}");
    assert!(w.fabric.wait_idle(WAIT));
    assert!(
        w.fabric.stats().disconnect_callbacks >= 2,
        "{mode:?}: the provider really reported twice"
    );
    close(&hb, cb);
    let rest = events_until_closed(&hb, cb);
    assert!(
        terminal(&rest).is_empty(),
        "{mode:?}: no second terminal event: {rest:?}"
    );
    assert_eq!(info(&hb).duplicate_callbacks, 1, "{mode:?}");
    finish(&w, ha, hb);
}

// --- 6. linux-rdma/perftest#60 ------------------------------------------------------------------

fn closing_connections_whose_events_were_never_read_does_not_block(mode: Completion) {
    // perftest#60: error events were never acknowledged, so rdma_destroy_id blocked for ever.
    let w = world(mode);
    let ha = HostHandle::open(&w.engine).unwrap();
    let hb = HostHandle::open(&w.engine).unwrap();
    let listener = listen(&hb, 4791).listener_id;
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    let ca = r.connection_id;
    // B reads its Accepted (it needs the id); A reads nothing at all.
    let cb = next_event(&hb, EventKind::Accepted).connection_id;
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert!(w.fabric.wait_idle(WAIT));
    assert!(
        ha.queued_events() >= 2 && hb.queued_events() >= 1,
        "{mode:?}: events are waiting to be read"
    );
    // With every event unread, CLOSE returns and every NDK object is released.
    close(&hb, cb);
    close(&ha, ca);
    close(&hb, listener);
    assert_released(&w);
    // The events were not lost either: in order, one terminal each, Closed last.
    for (h, id) in [(&ha, ca), (&hb, cb)] {
        let evs = events_until_closed(h, id);
        assert_eq!(terminal(&evs).len(), 1, "{mode:?}: {evs:?}");
        assert!(evs.windows(2).all(|p| p[0].seq < p[1].seq), "{evs:?}");
    }
    finish(&w, ha, hb);
}

// --- 7. linux-rdma/rdma-core#1182 ---------------------------------------------------------------

fn closing_a_connection_while_other_threads_wait_on_it_is_safe(mode: Completion) {
    // rdma-core#1182: rdma_destroy_id raced a concurrent rdma_get_cm_event on another thread.
    let w = world(mode);
    let (ha, hb) = listening(&w);
    for i in 0..8 {
        let (ca, cb) = connected(&ha, &hb, 4791);
        let on_conn = wait_pending(&hb, Some(cb), 4);
        let on_any = wait_pending(&hb, None, 16);
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS));
            s.spawn(|| close(&hb, cb));
        });
        // Both waits complete (HostRequest panics on a second completion); between them and
        // what is still queued, B's connection has one terminal event and then Closed.
        let mut seen = Vec::new();
        for p in [&on_conn, &on_any] {
            let (st, out) = done(p);
            match st {
                NtStatus::SUCCESS => seen.extend(of(&decode_events(&out), cb)),
                NtStatus::CANCELLED | NtStatus::NOT_FOUND => {}
                other => panic!("{mode:?} #{i}: WAIT completed with {other:#x}"),
            }
        }
        if !seen.iter().any(|e| e.kind == EventKind::Closed) {
            seen.extend(events_until_closed(&hb, cb));
        }
        seen.retain(|e| !e.already_delivered);
        seen.sort_by_key(|e| e.seq);
        seen.dedup_by_key(|e| e.seq);
        assert_eq!(terminal(&seen).len(), 1, "{mode:?} #{i}: {seen:?}");
        assert_eq!(seen.last().map(|e| e.kind), Some(EventKind::Closed));
        assert_eq!(
            done(&wait_pending(&hb, Some(cb), 1)).0,
            NtStatus::NOT_FOUND,
            "{mode:?} #{i}: the id is gone once Closed was read"
        );
        close(&ha, ca);
        let _ = events_until_closed(&ha, ca);
    }
    finish(&w, ha, hb);
}

// --- 8. linux-rdma/rdma-core#28 -----------------------------------------------------------------

fn adapter_removal_wakes_every_waiter(mode: Completion) {
    // rdma-core#28: after DEVICE_REMOVAL the event thread exited and the flush completions were
    // ignored, so rping hung on a semaphore.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    let (ca2, cb2) = connected(&ha, &hb, 4791);
    assert_eq!(post(&hb, cb, PostKind::Receive, 3), NtStatus::SUCCESS);
    // Every kind of waiter on B: a WAIT on each connection, a graceful DISCONNECT that A
    // never answers, and a WAIT on A for its peer.
    let on_cb = wait_pending(&hb, Some(cb), 4);
    let b_disconnect = disconnect_pending(&hb, cb2);
    let _ = next_event(&ha, EventKind::Disconnected);
    let on_cb2 = wait_pending(&hb, Some(cb2), 4);
    let on_ca = wait_pending(&ha, Some(ca), 4);
    w.fabric.remove_adapters(w.hosts[1]);
    let e = only_event(&on_cb);
    assert_eq!(
        (e.connection_id, e.cause, e.status),
        (cb, Some(Cause::AdapterRemoved), NtStatus::DEVICE_REMOVED),
        "{mode:?}"
    );
    assert!(
        !done(&b_disconnect).0.is_success(),
        "{mode:?}: the DISCONNECT on the removed adapter completed, and not as a success"
    );
    let e = only_event(&on_cb2);
    assert_eq!(
        (e.connection_id, e.kind),
        (cb2, EventKind::Disconnected),
        "{mode:?}"
    );
    let e = only_event(&on_ca);
    assert_eq!(
        (e.connection_id, e.cause, e.provider_reason),
        (ca, Some(Cause::Peer), Some(reason::RESET)),
        "{mode:?}"
    );
    for (h, id) in [(&ha, ca), (&ha, ca2), (&hb, cb), (&hb, cb2)] {
        close(h, id);
    }
    finish(&w, ha, hb);
}

/// rdma-core#28's second half: receives posted on a connection whose adapter went away must not
/// stay outstanding for ever, or a consumer draining them (as it must after a flush) hangs.
#[test]
fn adapter_removal_does_not_leave_posted_receives_outstanding_for_ever() {
    // rdma-core#28: after DEVICE_REMOVAL the flush completions were ignored, so rping hung on a
    // semaphore waiting for them.
    let w = world(Completion::hardware(11));
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    w.fabric.remove_adapters(w.hosts[1]);
    disconnected(&hb, Cause::AdapterRemoved);
    let q = query_until(&hb, cb, |q| q.outstanding_receives == 0);
    assert_eq!(
        q.outstanding_receives, 0,
        "the removed adapter's receives are accounted for: {q:?}"
    );
    assert_eq!(
        q.receives_cancelled + q.receives_failed,
        3,
        "each completed as flushed or failed: {q:?}"
    );
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "FLUSH reports at once");
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

/// The same for a connection the consumer ends itself: once ABORT or an abortive DISCONNECT
/// has released the NDK objects, what was posted is accounted for when the IOCTL returns, and
/// FLUSH reports at once. Each request the QP's close flushed counts as cancelled, and none as
/// a flush by the provider.
fn ending_a_connection_locally_leaves_nothing_outstanding(mode: Completion) {
    // rdma-core#28 again, on the local side: the requests a close flushed were never reaped, so
    // QUERY kept them outstanding and FLUSH was refused with STATUS_INVALID_DEVICE_STATE.
    for (end, cause) in [
        (abort as fn(&HostHandle, u64) -> NtStatus, Cause::Aborted),
        (abortive, Cause::LocalAbortive),
    ] {
        let w = world(mode);
        let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
        assert_eq!(end(&hb, cb), NtStatus::SUCCESS, "{mode:?} {cause:?}");
        let e = disconnected(&hb, cause);
        assert_eq!(
            e.outstanding_receives, 3,
            "the event keeps the counts of the end"
        );
        // No polling: teardown ran inside the IOCTL.
        let q = query(&hb, cb);
        assert_eq!(
            (
                q.outstanding_receives,
                q.receives_cancelled,
                q.receives_failed
            ),
            (0, 3, 0),
            "{mode:?} {cause:?}: each posted receive was flushed by the close and counted: {q:?}"
        );
        assert!(
            !q.provider_flushed,
            "{mode:?} {cause:?}: the close was ours: {q:?}"
        );
        assert_eq!(
            flush(&hb, cb),
            NtStatus::SUCCESS,
            "{mode:?} {cause:?}: FLUSH reports at once"
        );
        assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
        disconnected(&ha, Cause::Peer);
        close_pair_and_finish(&w, (hb, cb), (ha, ca));
    }
}

/// What a dead CQ never reported counts as failed, with the CQ's reason, once ABORT has released
/// the connection, and FLUSH then reports at once.
fn what_a_dead_cq_never_reported_counts_as_failed_after_teardown(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    // A dead CQ keeps the three receives from ever completing, so only teardown can account
    // for them. (Its TransportError is the terminal event: ABORT adds none.)
    let cqs = w.fabric.cqs(w.hosts[1]);
    assert!(
        w.fabric.inject_cq_error(cqs[0], CqError::Overrun),
        "{mode:?}"
    );
    disconnected(&hb, Cause::TransportError);
    assert_eq!(abort(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    let q = query(&hb, cb);
    assert_eq!(
        (q.outstanding_receives, q.receives_failed),
        (0, 3),
        "{mode:?}: what the dead CQ never reported counts as failed: {q:?}"
    );
    assert_eq!(
        q.last_error_status,
        NtStatus::BUFFER_OVERFLOW,
        "{mode:?}: with the CQ's reason: {q:?}"
    );
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    assert!(
        wait_now(&hb, Some(cb), 4)
            .iter()
            .all(|e| e.already_delivered),
        "{mode:?}: ABORT after the terminal event adds no event"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

/// A FLUSH still waiting for its completions when ABORT comes is answered, by the completions
/// or by the teardown that accounts for them: exactly one `Flushed` event, and nothing stays
/// outstanding.
fn a_flush_overtaken_by_abort_still_reports_flushed(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    // NdkFlush only starts the flush: with a provider that completes later, ABORT overtakes it.
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(abort(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    // Teardown ran inside the ABORT: every event is latched when it returns.
    let evs = drain(&hb);
    let kinds: Vec<_> = evs.iter().map(|e| (e.kind, e.cause)).collect();
    let flushed = kinds.iter().filter(|k| k.0 == EventKind::Flushed).count();
    let aborted = kinds
        .iter()
        .filter(|k| **k == (EventKind::Disconnected, Some(Cause::Aborted)))
        .count();
    assert_eq!(
        (flushed, aborted, evs.len()),
        (1, 1, 2),
        "{mode:?}: {kinds:?}"
    );
    let q = query(&hb, cb);
    assert_eq!(
        (q.outstanding_receives, q.receives_cancelled),
        (0, 3),
        "{mode:?}: {q:?}"
    );
    disconnected(&ha, Cause::Peer);
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

// --- 9. ofiwg/libfabric#4756 --------------------------------------------------------------------

/// Every request posted on `id` completed exactly once: nothing outstanding, and completions
/// by status add up to what was posted.
fn assert_each_completed_once(
    h: &HostHandle,
    id: u64,
    receives: u32,
    sends: u32,
    mode: Completion,
) {
    let q = query_until(h, id, |q| {
        q.outstanding_receives == 0 && q.outstanding_sends == 0
    });
    assert_eq!(
        (q.outstanding_receives, q.outstanding_sends),
        (0, 0),
        "{mode:?}: {q:?}"
    );
    assert_eq!(
        q.receives_succeeded + q.receives_cancelled + q.receives_failed,
        receives,
        "{mode:?}: each receive completed exactly once: {q:?}"
    );
    assert_eq!(
        q.sends_succeeded + q.sends_cancelled + q.sends_failed,
        sends,
        "{mode:?}: each send completed exactly once: {q:?}"
    );
}

fn every_posted_request_completes_exactly_once_flushed_or_not(mode: Completion) {
    // libfabric#4756: the provider silently dropped flush completions (IBV_WC_WR_FLUSH_ERR), so
    // an application counting its outstanding sends never reached zero.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 5);
    assert_eq!(post(&ha, ca, PostKind::Receive, 1), NtStatus::SUCCESS);
    assert_eq!(post(&ha, ca, PostKind::Send, 3), NtStatus::SUCCESS);
    // A has one receive: B's first send completes, the second waits for a receive.
    assert_eq!(post(&hb, cb, PostKind::Send, 2), NtStatus::SUCCESS);
    query_until(&hb, cb, |q| q.receives_succeeded == 3);
    // The user flushes both ends: what had not completed completes now, as cancelled.
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(flush(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    assert_eq!(next_event(&ha, EventKind::Flushed).connection_id, ca);
    assert_each_completed_once(&hb, cb, 5, 2, mode);
    assert_each_completed_once(&ha, ca, 1, 3, mode);
    let qb = query(&hb, cb);
    assert_eq!(qb.receives_succeeded, 3, "{mode:?}: {qb:?}");
    assert!(
        qb.receives_cancelled == 2,
        "{mode:?}: flushed, not lost: {qb:?}"
    );
    // A send to a peer that went away: the provider fails it and flushes the rest itself.
    let (ca2, cb2) = connected(&ha, &hb, 4791);
    assert_eq!(post(&hb, cb2, PostKind::Receive, 4), NtStatus::SUCCESS);
    assert_eq!(post(&hb, cb2, PostKind::Send, 2), NtStatus::SUCCESS);
    assert_eq!(abortive(&ha, ca2), NtStatus::SUCCESS);
    assert_each_completed_once(&hb, cb2, 4, 2, mode);
    for (h, id) in [(&ha, ca), (&ha, ca2), (&hb, cb), (&hb, cb2)] {
        close(h, id);
    }
    finish(&w, ha, hb);
}

// --- 10. spdk/spdk#1840 -------------------------------------------------------------------------

fn teardown_never_waits_for_completions_the_provider_does_not_deliver(mode: Completion) {
    // spdk#1840: an E810 iWARP driver never moved the QP to the error state on rdma_disconnect,
    // so no flush completions arrived and the target could not exit.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    assert_eq!(post(&hb, cb, PostKind::Send, 2), NtStatus::SUCCESS);
    // B's CQ dies: nothing posted on B will ever complete, flushed or otherwise.
    let cqs = w.fabric.cqs(w.hosts[1]);
    assert_eq!(cqs.len(), 1, "{mode:?}");
    assert!(w.fabric.inject_cq_error(cqs[0], CqError::Fatal));
    disconnected(&hb, Cause::TransportError);
    // FLUSH does not wait for completions that never come, and neither does CLOSE.
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    close(&hb, cb);
    assert_eq!(
        events_until_closed(&hb, cb).last().map(|e| e.kind),
        Some(EventKind::Closed)
    );
    // B's CLOSE reached A as a reset, whatever B's dead CQ still owed.
    let da = disconnected(&ha, Cause::Peer);
    assert_eq!(da.connection_id, ca);
    close(&ha, ca);
    finish(&w, ha, hb);
}

// --- 11. spdk/spdk#1704 -------------------------------------------------------------------------

/// A pair whose active side (A) has reset the connection, B's `Peer` event read: (A, A's id, B,
/// B's id, B's terminal event).
fn reset_by_the_peer(w: &World) -> (HostHandle, u64, HostHandle, u64, Event) {
    let (ha, ca, hb, cb) = pair(w);
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS);
    let e = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        (e.cause, e.provider_reason),
        (Some(Cause::Peer), Some(reason::RESET))
    );
    assert!(w.fabric.wait_idle(WAIT));
    (ha, ca, hb, cb, e)
}

fn disconnecting_a_connection_the_peer_already_reset_is_harmless(mode: Completion) {
    // spdk#1704 (also perftest#121, #246): rdma_disconnect after the peer had reset the
    // connection failed with EINVAL or ECONNRESET and was logged as an error.
    let w = world(mode);
    let (ha, ca, hb, cb, _e) = reset_by_the_peer(&w);
    // The first graceful DISCONNECT's status is the ignored test below; whatever it is, it
    // changes nothing, and every later disconnect of either end succeeds.
    let _ = graceful(&hb, cb);
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(abortive(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(abort(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS, "{mode:?}: and again");
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(graceful(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(query(&hb, cb).state, ConnState::Disconnected, "{mode:?}");
    close(&hb, cb);
    let rest = events_until_closed(&hb, cb);
    assert!(
        terminal(&rest).is_empty(),
        "{mode:?}: no second terminal event on B: {rest:?}"
    );
    close(&ha, ca);
    let rest = events_until_closed(&ha, ca);
    let t = terminal(&rest);
    assert_eq!(t.len(), 1, "{mode:?}: one terminal event on A: {rest:?}");
    assert_eq!(t[0].cause, Some(Cause::LocalAbortive), "{mode:?}");
    finish(&w, ha, hb);
}

/// spdk#1704 itself: the first graceful DISCONNECT after the peer's reset must succeed (there
/// is nothing left to disconnect), and must not rewrite the terminal status QUERY reports.
#[test]
fn a_graceful_disconnect_after_the_peer_reset_succeeds() {
    // spdk#1704 (also perftest#121, #246): rdma_disconnect after the peer had reset the
    // connection failed with EINVAL or ECONNRESET and was logged as an error.
    let w = world(Completion::hardware(11));
    let (ha, ca, hb, cb, e) = reset_by_the_peer(&w);
    assert_eq!(
        graceful(&hb, cb),
        NtStatus::SUCCESS,
        "graceful after a reset"
    );
    assert_eq!(
        query(&hb, cb).terminal_status,
        e.status,
        "QUERY still reports the terminal event's status"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

// --- 12. spdk/spdk#3214 -------------------------------------------------------------------------

fn flushed_completions_are_told_apart_by_their_request_not_their_opcode(mode: Completion) {
    // spdk#3214 (also #3212): an assertion on the opcode of a flushed completion, a field that
    // is undefined on error completions, killed the target during shutdown.
    let w = world(mode);
    // The hardware-like provider leaves Type and BytesTransferred undefined on every error
    // completion (no `clean_error_completions` kindness).
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    // A posted no receive: B's sends wait.
    assert_eq!(post(&hb, cb, PostKind::Send, 2), NtStatus::SUCCESS);
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    let q = query(&hb, cb);
    assert_eq!(
        (q.outstanding_receives, q.outstanding_sends),
        (0, 0),
        "{mode:?}"
    );
    assert_eq!(
        (
            q.receives_succeeded,
            q.receives_cancelled,
            q.receives_failed
        ),
        (0, 3, 0),
        "{mode:?}: each flushed receive is charged to the receives: {q:?}"
    );
    assert_eq!(
        (q.sends_succeeded, q.sends_cancelled + q.sends_failed),
        (0, 2),
        "{mode:?}: each flushed send to the sends: {q:?}"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

// --- 13. spdk/spdk#858 --------------------------------------------------------------------------

fn racing_teardown_triggers_release_each_object_once(mode: Completion) {
    // spdk#858 (also #851): DISCONNECTED and LAST_WQE_REACHED each started the destruction of
    // the queue pair, which was freed twice.
    let w = world(mode);
    let (ha, hb) = listening(&w);
    for i in 0..8 {
        let (ca, cb) = connected(&ha, &hb, 4791);
        assert_eq!(post(&hb, cb, PostKind::Receive, 2), NtStatus::SUCCESS);
        // Every trigger at once: the peer's reset (B's disconnect callback), ABORT, FLUSH and
        // CLOSE. softndk panics on a second close of any NDK object (misuse policy).
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS));
            s.spawn(|| {
                let st = abort(&hb, cb);
                assert!(
                    matches!(st, NtStatus::SUCCESS | NtStatus::NOT_FOUND),
                    "ABORT: {st:#x}"
                );
            });
            s.spawn(|| {
                let st = flush(&hb, cb);
                assert!(
                    matches!(
                        st,
                        NtStatus::SUCCESS | NtStatus::INVALID_DEVICE_STATE | NtStatus::NOT_FOUND
                    ),
                    "FLUSH: {st:#x}"
                );
            });
            s.spawn(|| close(&hb, cb));
        });
        let evs = events_until_closed(&hb, cb);
        assert_eq!(terminal(&evs).len(), 1, "{mode:?} #{i}: {evs:?}");
        assert_eq!(
            evs.iter().filter(|e| e.kind == EventKind::Closed).count(),
            1,
            "{mode:?} #{i}"
        );
        close(&ha, ca);
        let _ = events_until_closed(&ha, ca);
    }
    finish(&w, ha, hb);
}

// --- 14. chimera-nas/libevpl#52 -----------------------------------------------------------------

fn a_callback_still_owed_after_a_local_disconnect_reaches_no_other_connection(mode: Completion) {
    // libevpl#52 (also ldms#556): after a local rdma_disconnect a DISCONNECTED event was still
    // owed, and it arrived after the connection's context had been freed.
    let w = world(mode);
    let (ha, hb) = listening(&w);
    for i in 0..8 {
        let (ca, cb) = connected(&ha, &hb, 4791);
        // Both ends disconnect at once, so each provider may still owe its end the disconnect
        // callback, and both close at once: the context must live until the close completes.
        let a_disconnect = disconnect_pending(&ha, ca);
        let b_disconnect = disconnect_pending(&hb, cb);
        close(&ha, ca);
        close(&hb, cb);
        for p in [&a_disconnect, &b_disconnect] {
            let st = done(p).0;
            assert!(
                matches!(
                    st,
                    NtStatus::SUCCESS | NtStatus::CANCELLED | NtStatus::CONNECTION_ABORTED
                ),
                "{mode:?} #{i}: {st:#x}"
            );
        }
        for (h, id) in [(&ha, ca), (&hb, cb)] {
            let evs = events_until_closed(h, id);
            assert_eq!(terminal(&evs).len(), 1, "{mode:?} #{i}: {evs:?}");
        }
        // A new connection (which may reuse the freed slots) gets nothing owed to the old one.
        let (ca2, cb2) = connected(&ha, &hb, 4791);
        assert!(w.fabric.wait_idle(WAIT));
        for (h, id) in [(&ha, ca), (&hb, cb)] {
            assert_eq!(
                done(&wait_pending(h, Some(id), 1)).0,
                NtStatus::NOT_FOUND,
                "{mode:?} #{i}: the closed id is gone"
            );
        }
        for (h, id) in [(&ha, ca2), (&hb, cb2)] {
            let q = query(h, id);
            assert_eq!(
                (q.state, q.callback_fired),
                (ConnState::Connected, false),
                "{mode:?} #{i}: a late callback was charged to the new connection"
            );
            assert!(
                wait_now(h, Some(id), 4).is_empty(),
                "{mode:?} #{i}: the new connection has no event yet"
            );
        }
        for (h, id) in [(&ha, ca2), (&hb, cb2)] {
            close(h, id);
            let _ = events_until_closed(h, id);
        }
    }
    finish(&w, ha, hb);
}

// --- 15. ni/easyrdma#21 -------------------------------------------------------------------------

fn closing_a_session_never_waits_for_the_peer(mode: Completion) {
    // easyrdma#21 (PR #23): on Windows ND, closing a listener-side session blocked in Disconnect
    // until the Linux peer closed, and the timeout proposed as a fix risked losing queued sends.
    // The provider here would wait a minute for the peer's answer: anything that waited for it
    // would fail `done`'s hang limit.
    let w = timed_world(mode, Duration::from_secs(60));
    let ha = HostHandle::open(&w.engine).unwrap();
    let hb = HostHandle::open(&w.engine).unwrap();
    let listener = listen(&hb, 4791).listener_id;
    let (ca, cb) = connected(&ha, &hb, 4791);
    // Sends queued by the listener side complete before it goes (A posted receives for them).
    assert_eq!(post(&ha, ca, PostKind::Receive, 2), NtStatus::SUCCESS);
    assert_eq!(post(&hb, cb, PostKind::Send, 2), NtStatus::SUCCESS);
    let q = query_until(&hb, cb, |q| q.outstanding_sends == 0);
    assert_eq!(q.sends_succeeded, 2, "{mode:?}: no queued send lost");
    // The notification is not tied to the graceful handshake: A is told while B's DISCONNECT
    // still waits for A's answer.
    let b_disconnect = disconnect_pending(&hb, cb);
    let da = next_event(&ha, EventKind::Disconnected);
    assert_eq!(
        (da.connection_id, da.cause, da.provider_reason),
        (ca, Some(Cause::Peer), Some(reason::GRACEFUL)),
        "{mode:?}"
    );
    assert!(!b_disconnect.is_done(), "{mode:?}: A has not answered");
    // The abortive way out: B closes the session and its listener without A's answer.
    close(&hb, cb);
    assert!(
        !done(&b_disconnect).0.is_success(),
        "{mode:?}: the DISCONNECT overtaken by CLOSE completed, and not as a success"
    );
    close(&hb, listener);
    let evs = events_until_closed(&hb, cb);
    assert_eq!(terminal(&evs).len(), 1, "{mode:?}: {evs:?}");
    close(&ha, ca);
    finish(&w, ha, hb);
}

// --- Also seen in the survey --------------------------------------------------------------------

fn a_wait_registered_after_the_disconnect_still_fires(mode: Completion) {
    // aspnetcore#17278 (also AspNetKatana#141, IISIntegration#517): a disconnect token created
    // after the client had gone never fired; IIS notified only while an async read was pending.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    // No wait is pending on B when A resets.
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert!(w.fabric.wait_idle(WAIT));
    let late = wait_pending(&hb, Some(cb), 4);
    let e = only_event(&late);
    assert_eq!(
        (e.connection_id, e.kind, e.cause),
        (cb, EventKind::Disconnected, Some(Cause::Peer)),
        "{mode:?}"
    );
    // And again after it was delivered: the terminal record again, flagged.
    let again = only_event(&wait_pending(&hb, Some(cb), 4));
    assert_eq!(
        (again.seq, again.already_delivered),
        (e.seq, true),
        "{mode:?}"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

fn a_wait_satisfied_at_once_completes_in_the_call_with_its_event(mode: Completion) {
    // AspNetKatana#162: a disconnect wait that succeeded synchronously (skip completion port on
    // success) posted no completion packet, and the callback was skipped.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS, "{mode:?}");
    assert!(w.fabric.wait_idle(WAIT));
    query_until(&hb, cb, |q| q.state == ConnState::Disconnected);
    let p = wait_pending(&hb, Some(cb), 4);
    assert!(
        p.is_done(),
        "{mode:?}: a latched event completes the WAIT inside the call"
    );
    let e = only_event(&p);
    assert_eq!(
        (e.connection_id, e.cause),
        (cb, Some(Cause::Peer)),
        "{mode:?}: with the event in its reply"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

fn a_graceful_peer_disconnect_is_reported_like_a_reset(mode: Completion) {
    // aspnet/HttpSysServer#70: a client that closed gracefully (FIN rather than RST) was not
    // reported as disconnected.
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    let (ca2, cb2) = connected(&ha, &hb, 4791);
    let graceful_wait = wait_pending(&hb, Some(cb), 4);
    let reset_wait = wait_pending(&hb, Some(cb2), 4);
    let a_disconnect = disconnect_pending(&ha, ca);
    assert_eq!(abortive(&ha, ca2), NtStatus::SUCCESS, "{mode:?}");
    for (p, id, why) in [
        (&graceful_wait, cb, reason::GRACEFUL),
        (&reset_wait, cb2, reason::RESET),
    ] {
        let e = only_event(p);
        assert_eq!(
            (e.connection_id, e.kind, e.cause, e.provider_reason),
            (id, EventKind::Disconnected, Some(Cause::Peer), Some(why)),
            "{mode:?}"
        );
    }
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(done(&a_disconnect).0, NtStatus::SUCCESS, "{mode:?}");
    for (h, id) in [(&ha, ca), (&ha, ca2), (&hb, cb), (&hb, cb2)] {
        close(h, id);
    }
    finish(&w, ha, hb);
}

per_mode!(
    a_local_disconnect_ends_the_connection_without_the_peers_cooperation,
    a_dead_peer_never_strands_a_waiter,
    a_disconnect_before_the_connect_event_was_read_is_queued_after_it,
    the_disconnect_event_counts_completed_work_and_close_waits_for_no_further_event,
    several_reports_of_one_failure_give_one_terminal_event,
    closing_connections_whose_events_were_never_read_does_not_block,
    closing_a_connection_while_other_threads_wait_on_it_is_safe,
    adapter_removal_wakes_every_waiter,
    ending_a_connection_locally_leaves_nothing_outstanding,
    what_a_dead_cq_never_reported_counts_as_failed_after_teardown,
    a_flush_overtaken_by_abort_still_reports_flushed,
    every_posted_request_completes_exactly_once_flushed_or_not,
    teardown_never_waits_for_completions_the_provider_does_not_deliver,
    disconnecting_a_connection_the_peer_already_reset_is_harmless,
    flushed_completions_are_told_apart_by_their_request_not_their_opcode,
    racing_teardown_triggers_release_each_object_once,
    a_callback_still_owed_after_a_local_disconnect_reaches_no_other_connection,
    closing_a_session_never_waits_for_the_peer,
    a_wait_registered_after_the_disconnect_still_fires,
    a_wait_satisfied_at_once_completes_in_the_call_with_its_event,
    a_graceful_peer_disconnect_is_reported_like_a_reset,
);
