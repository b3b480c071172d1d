//! Close conformance: an antecedent's close pends until its successors closed (CQ vs QP, PD vs
//! QP and MR, listener vs accepted connector), a closing listener refuses new connections, no
//! callback follows a close completion, an unaccepted connector's close rejects, and
//! `live_objects` sees leaks.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};

use ndkpi_sys::*;
use softndk::{Completion, FabricConfig, Kindness, ObjectKind};

// --- an ordered log of close completions ---------------------------------------------------------

/// Close completions in the order they ran: `name` when one starts, `/name` when it returns.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<String>>,
    cv: Condvar,
}

impl Log {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
        self.cv.notify_all();
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn wait_for(&self, event: &str) {
        let mut v = self.events.lock().unwrap();
        while !v.iter().any(|e| e == event) {
            let (g, t) = self.cv.wait_timeout(v, WAIT).unwrap();
            v = g;
            assert!(
                !t.timed_out() || v.iter().any(|e| e == event),
                "close completion {event:?} never came; log {v:?}"
            );
        }
    }
}

/// The context of one logged close.
struct Tag {
    log: Arc<Log>,
    name: &'static str,
}

impl Tag {
    fn new(log: &Arc<Log>, name: &'static str) -> Self {
        Self {
            log: Arc::clone(log),
            name,
        }
    }

    fn ctx(&self) -> PVOID {
        std::ptr::from_ref(self).cast_mut().cast()
    }
}

unsafe extern "system" fn on_close_logged(ctx: PVOID) {
    // SAFETY: ctx is `Tag::ctx` of a Tag the test keeps alive until its close completed.
    let tag = unsafe { &*ctx.cast::<Tag>() };
    tag.log.push(tag.name.to_owned());
    tag.log.push(format!("/{}", tag.name));
}

/// Start closing `obj`, its completion logged under `tag`.
fn start_close<T>(obj: *mut T, close_fn: NDK_FN_CLOSE_OBJECT, tag: &Tag) -> NTSTATUS {
    // SAFETY: live object; the tag outlives the close.
    unsafe { close_fn.unwrap()(hdr(obj), Some(on_close_logged), tag.ctx()) }
}

/// The log expected when the successors named in `closed` were closed one after the other
/// (each with the status its close returned) and then the antecedent `last` completed.
fn expected(closed: &[(&str, NTSTATUS)], last: &str) -> Vec<String> {
    let mut v = Vec::new();
    for &(name, st) in closed {
        if st == NtStatus::PENDING {
            v.extend([name.to_owned(), format!("/{name}")]);
        } else {
            assert_eq!(st, NtStatus::SUCCESS, "close of {name}");
        }
    }
    v.extend([last.to_owned(), format!("/{last}")]);
    v
}

/// Close a successor and, if its close pended, wait for its completion.
fn close_logged<T>(obj: *mut T, close_fn: NDK_FN_CLOSE_OBJECT, tag: &Tag) -> NTSTATUS {
    let st = start_close(obj, close_fn, tag);
    if st == NtStatus::PENDING {
        tag.log.wait_for(&format!("/{}", tag.name));
    }
    st
}

/// Adapter, PD, CQ and an unconnected QP on host 1.
fn objects(
    net: &Net,
) -> (
    *mut NDK_ADAPTER,
    *mut NDK_PD,
    *mut NDK_CQ,
    *mut NDK_QP,
    Arc<Notes>,
) {
    let adapter = net.open(1, V21);
    let pd = create_pd(adapter);
    let notes = Notes::new();
    let cq = create_cq(adapter, 16, &notes);
    let qp = create_qp(pd, cq, 0x51);
    (adapter, pd, cq, qp, notes)
}

fn cq_close_pends_until_the_qp_using_it_has_closed(mode: Completion) {
    let net = Net::new(mode);
    let (adapter, pd, cq, qp, _notes) = objects(&net);
    let log = Arc::new(Log::default());
    let (tcq, tqp) = (Tag::new(&log, "cq"), Tag::new(&log, "qp"));

    assert_eq!(
        start_close(cq, d(cq).NdkCloseCq, &tcq),
        NtStatus::PENDING,
        "{mode:?}: a CQ in use cannot close at once"
    );
    net.settle();
    assert!(
        log.events().is_empty(),
        "{mode:?}: the CQ closed while its QP was open: {:?}",
        log.events()
    );

    let st = close_logged(qp, d(qp).NdkCloseQp, &tqp);
    log.wait_for("/cq");
    net.settle();
    assert_eq!(log.events(), expected(&[("qp", st)], "cq"), "{mode:?}");

    close(pd, d(pd).NdkClosePd);
    net.fabric.close_adapter(adapter);
    assert_eq!(net.fabric.live_objects(), 0, "{mode:?}");
}

per_mode!(cq_close_pends_until_the_qp_using_it_has_closed);

fn pd_close_pends_until_its_mr_and_qp_have_closed(mode: Completion) {
    let net = Net::new(mode);
    let (adapter, pd, cq, qp, _notes) = objects(&net);
    let buf = Buf::new(pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let log = Arc::new(Log::default());
    let (tpd, tmr, tqp) = (
        Tag::new(&log, "pd"),
        Tag::new(&log, "mr"),
        Tag::new(&log, "qp"),
    );

    assert_eq!(
        start_close(pd, d(pd).NdkClosePd, &tpd),
        NtStatus::PENDING,
        "{mode:?}: a PD with an MR and a QP cannot close at once"
    );
    net.settle();
    assert!(log.events().is_empty(), "{mode:?}: {:?}", log.events());

    let st_mr = close_logged(buf.mr, d(buf.mr).NdkCloseMr, &tmr);
    net.settle();
    assert!(
        !log.events().iter().any(|e| e == "pd"),
        "{mode:?}: the PD closed while its QP was open: {:?}",
        log.events()
    );

    let st_qp = close_logged(qp, d(qp).NdkCloseQp, &tqp);
    log.wait_for("/pd");
    net.settle();
    assert_eq!(
        log.events(),
        expected(&[("mr", st_mr), ("qp", st_qp)], "pd"),
        "{mode:?}"
    );
    drop(buf);

    close(cq, d(cq).NdkCloseCq);
    net.fabric.close_adapter(adapter);
    assert_eq!(net.fabric.live_objects(), 0, "{mode:?}");
}

per_mode!(pd_close_pends_until_its_mr_and_qp_have_closed);

/// Tear down both ends of a pair whose listener and passive connector the test closed itself.
fn teardown_ends(net: &Net, pair: Pair) {
    let Pair { a, mut b, .. } = pair;
    a.teardown(net);
    b.conn = std::ptr::null_mut();
    b.teardown(net);
    assert_no_leak(net, "teardown");
}

/// A connected pair whose listener's close has started and pends, since the connector it
/// delivered is still open; `test` gets the network, the pair, the close log and the tag to close
/// that connector with (the listener's tag lives until `test` returns).
fn with_closing_listener(mode: Completion, test: impl FnOnce(&Net, Pair, &Arc<Log>, &Tag)) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let log = Arc::new(Log::default());
    let (tl, tc) = (Tag::new(&log, "listener"), Tag::new(&log, "conn"));
    assert_eq!(
        start_close(pair.listener, d(pair.listener).NdkCloseListener, &tl),
        NtStatus::PENDING,
        "{mode:?}: an accepted connector is still open"
    );
    test(&net, pair, &log, &tc);
}

fn listener_close_pends_until_the_connector_it_delivered_has_closed(mode: Completion) {
    with_closing_listener(mode, |net, pair, log, tc| {
        net.settle();
        assert!(log.events().is_empty(), "{mode:?}: {:?}", log.events());

        let st = close_logged(pair.b.conn, d(pair.b.conn).NdkCloseConnector, tc);
        log.wait_for("/listener");
        net.settle();
        assert_eq!(
            log.events(),
            expected(&[("conn", st)], "listener"),
            "{mode:?}"
        );
        teardown_ends(net, pair);
    });
}

per_mode!(listener_close_pends_until_the_connector_it_delivered_has_closed);

fn a_closing_listener_refuses_new_connections(mode: Completion) {
    with_closing_listener(mode, |net, pair, log, tc| {
        let dst = SocketAddr::new(net.v4[1], 4791);
        let refused_before = net.fabric.stats().refused_connects;

        // The listener still exists (its close pends) but must not take new connections.
        let mut late = End::new(net, 1, V21);
        late.conn = create_connector(late.adapter);
        let (slot, st) = start_connect(&late, dst, b"late");
        assert_eq!(slot.resolve(st), NtStatus::CONNECTION_REFUSED, "{mode:?}");
        net.settle();
        assert_eq!(
            pair.incoming.len(),
            0,
            "{mode:?}: no connect event after the close started"
        );
        assert_eq!(
            net.fabric.stats().refused_connects,
            refused_before + 1,
            "{mode:?}"
        );
        assert!(log.events().is_empty(), "{mode:?}");

        close_logged(pair.b.conn, d(pair.b.conn).NdkCloseConnector, tc);
        log.wait_for("/listener");
        late.teardown(net);
        teardown_ends(net, pair);
    });
}

per_mode!(a_closing_listener_refuses_new_connections);

fn a_closing_listener_keeps_its_address_until_its_close_completes(mode: Completion) {
    with_closing_listener(mode, |net, pair, log, tc| {
        let dst = SocketAddr::new(net.v4[1], 4791);

        let second = create_listener(pair.b.adapter, &Incoming::new());
        assert_ne!(
            listen(second, dst),
            NtStatus::SUCCESS,
            "{mode:?}: the address is still in use"
        );

        close_logged(pair.b.conn, d(pair.b.conn).NdkCloseConnector, tc);
        log.wait_for("/listener");
        net.settle();
        assert_eq!(
            listen(second, dst),
            NtStatus::SUCCESS,
            "{mode:?}: free once the close completed"
        );
        close(second, d(second).NdkCloseListener);
        teardown_ends(net, pair);
    });
}

per_mode!(a_closing_listener_keeps_its_address_until_its_close_completes);

fn closing_an_unaccepted_incoming_connector_rejects_the_connect(mode: Completion) {
    let net = Net::new(mode);
    let dst = SocketAddr::new(net.v4[1], 4791);
    let mut a = End::new(&net, 1, V21);
    let b = End::new(&net, 2, V21);
    let incoming = Incoming::new();
    let listener = create_listener(b.adapter, &incoming);
    assert_eq!(listen(listener, dst), NtStatus::SUCCESS);
    a.conn = create_connector(a.adapter);
    let refused_before = net.fabric.stats().refused_connects;

    let (slot, st) = start_connect(&a, dst, b"knock");
    let offered = incoming.next();
    assert_eq!(
        close(offered, d(offered).NdkCloseConnector),
        NtStatus::SUCCESS,
        "{mode:?}"
    );
    assert_eq!(
        slot.resolve(st),
        NtStatus::CONNECTION_REFUSED,
        "{mode:?}: closing without accepting rejects"
    );
    assert_eq!(
        slot.calls(),
        u32::from(st == NtStatus::PENDING),
        "{mode:?}: exactly one completion"
    );
    assert_eq!(
        net.fabric.stats().refused_connects,
        refused_before + 1,
        "{mode:?}"
    );

    a.teardown(&net);
    close(listener, d(listener).NdkCloseListener);
    b.teardown(&net);
    assert_no_leak(&net, &format!("{mode:?}"));
}

per_mode!(closing_an_unaccepted_incoming_connector_rejects_the_connect);

// --- Completion::Manual: no callback after a close completion ------------------------------------

/// NDKPI object lifetime requirements: callbacks may come until the close completion, and
/// none after it. A CQ notification owed when the CQ's close starts is still delivered — before
/// the close completion — and nothing follows the close completion.
#[test]
fn no_callback_arrives_after_a_close_completion() {
    owed_notification_and_close(false);
}

/// The same with `Kindness::events_stop_at_close` (kept for consumers that want to see the old,
/// kinder provider): the owed notification is suppressed once the close starts.
#[test]
fn kind_provider_suppresses_events_once_the_close_starts() {
    owed_notification_and_close(true);
}

fn owed_notification_and_close(kind: bool) {
    let net = Net::with_config(
        FabricConfig {
            completion: Completion::Manual,
            kindness: Kindness {
                events_stop_at_close: kind,
                ..Kindness::default()
            },
            timing: patient(),
            ..FabricConfig::default()
        },
        V21,
        V21,
    );
    let adapter = net.open(1, V21);
    let pd = manual_create(&net, pd_create(adapter));
    let notes = Notes::new();
    let cq = manual_create(&net, cq_create(adapter, 16, &notes));
    let qp = manual_create(&net, qp_create(pd, cq, 0x51, (8, 1, 0)));

    // A completion arrives on an armed CQ: its notification is now owed.
    arm(cq, NDK_CQ_NOTIFY_ANY);
    let mut scratch = [0u8; 8];
    let sge = NDK_SGE {
        Address: NDK_SGE_ADDRESS {
            VirtualAddress: scratch.as_mut_ptr().cast(),
        },
        Length: 8,
        MemoryRegionToken: 0,
    };
    receive_ok(qp, &sge, 0x99);
    flush(qp);
    assert_eq!(
        net.fabric.cq_len(cq),
        Some(0),
        "NdkFlush only initiates: nothing completed yet"
    );
    assert!(net.fabric.deliver_one(), "the provider finishes the flush");
    assert_eq!(
        net.fabric.cq_len(cq),
        Some(1),
        "the flushed receive completed"
    );
    assert_eq!(net.fabric.queued(), 1, "the CQ notification is queued");
    assert!(notes.all().is_empty());
    let suppressed_before = net.fabric.stats().suppressed_events;

    // Close the QP and the CQ before the notification is delivered.
    let log = Arc::new(Log::default());
    let (tqp, tcq) = (Tag::new(&log, "qp"), Tag::new(&log, "cq"));
    assert_eq!(start_close(qp, d(qp).NdkCloseQp, &tqp), NtStatus::PENDING);
    assert_eq!(start_close(cq, d(cq).NdkCloseCq, &tcq), NtStatus::PENDING);
    net.fabric.deliver();
    if kind {
        assert!(
            notes.all().is_empty(),
            "kind provider: a CQ notification ran after the CQ's close had started"
        );
        assert_eq!(net.fabric.stats().suppressed_events, suppressed_before + 1);
    } else {
        assert_eq!(
            notes.all(),
            [NtStatus::SUCCESS],
            "the notification owed before the close is delivered before its completion"
        );
        assert_eq!(net.fabric.stats().suppressed_events, suppressed_before);
    }
    assert_eq!(
        log.events(),
        ["qp", "/qp", "cq", "/cq"],
        "the CQ's close completion comes after the QP's and last"
    );
    let seen = notes.all().len();
    assert_eq!(net.fabric.deliver(), 0, "nothing left to deliver");
    assert_eq!(
        notes.all().len(),
        seen,
        "no callback after the close completion"
    );

    let s = Slot::new();
    // SAFETY: live PD; valid callback and context.
    let st = unsafe { d(pd).NdkClosePd.unwrap()(hdr(pd), Some(on_close), s.ctx()) };
    assert_eq!(st, NtStatus::PENDING);
    net.fabric.deliver();
    assert_eq!(s.calls(), 1);
    net.fabric.close_adapter(adapter);
    assert_eq!(
        net.fabric.live_objects(),
        0,
        "{:?}",
        net.fabric.live_by_kind()
    );
}

// --- leaks ------------------------------------------------------------------------------------------

fn full_teardown_leaves_no_live_object_and_a_leaked_mr_is_visible(mode: Completion) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    let before = net.fabric.live_objects();
    let buf = Buf::new(pair.a.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    assert_eq!(
        net.fabric.live_objects(),
        before + 1,
        "{mode:?}: one MR more"
    );
    assert_eq!(
        net.fabric.live_by_kind().get(&Some(ObjectKind::Mr)),
        Some(&1),
        "{mode:?}"
    );

    // Tear down everything else; the PD's close pends on the MR.
    let Pair { a, b, listener, .. } = pair;
    b.teardown_with_listener(&net, Some(listener));
    close(a.conn, d(a.conn).NdkCloseConnector);
    close(a.qp, d(a.qp).NdkCloseQp);
    close(a.cq, d(a.cq).NdkCloseCq);
    let pd_close = Slot::new();
    // SAFETY: live PD; valid callback and context.
    let st = unsafe { d(a.pd).NdkClosePd.unwrap()(hdr(a.pd), Some(on_close), pd_close.ctx()) };
    assert_eq!(
        st,
        NtStatus::PENDING,
        "{mode:?}: the leaked MR holds its PD"
    );
    net.settle();
    let live = net.fabric.live_by_kind();
    assert_eq!(
        live.get(&Some(ObjectKind::Mr)),
        Some(&1),
        "{mode:?}: {live:?}"
    );
    assert_eq!(
        net.fabric.live_objects(),
        3,
        "{mode:?}: the MR, its closing PD and their adapter: {live:?}"
    );

    buf.close();
    assert_eq!(pd_close.resolve(st), NtStatus::SUCCESS, "{mode:?}");
    net.settle();
    assert_eq!(
        net.fabric.live_objects(),
        1,
        "{mode:?}: only the adapter: {:?}",
        net.fabric.live_by_kind()
    );
    net.fabric.close_adapter(a.adapter);
    assert_eq!(
        net.fabric.live_objects(),
        0,
        "{mode:?}: {:?}",
        net.fabric.live_by_kind()
    );
}

per_mode!(full_teardown_leaves_no_live_object_and_a_leaked_mr_is_visible);

/// The context of a listener close completion that listens again on the same address.
struct Relisten {
    second: *mut NDK_LISTENER,
    addr: Sock,
    listened: Arc<Slot>,
    status: Mutex<Option<NTSTATUS>>,
}

unsafe extern "system" fn relisten_on_close(ctx: PVOID) {
    // SAFETY: ctx is the Relisten the test keeps alive until this completion ran.
    let r = unsafe { &*ctx.cast::<Relisten>() };
    let f = d(r.second).NdkListen.unwrap();
    // SAFETY: live listener; the address outlives the call; valid callback and context.
    // NdkListen is callable at DISPATCH_LEVEL, so calling it from a callback is legal.
    let st = unsafe {
        f(
            r.second,
            r.addr.ptr(),
            r.addr.len,
            Some(on_request),
            r.listened.ctx(),
        )
    };
    *r.status.lock().unwrap() = Some(st);
}

#[test]
fn a_listeners_address_is_free_by_the_time_its_close_completes() {
    let net = Net::new(Completion::Inline);
    let pair = Pair::connect(&net, V21, V21);
    let dst = SocketAddr::new(net.v4[1], 4791);
    let second = create_listener(pair.b.adapter, &Incoming::new());
    let relisten = Relisten {
        second,
        addr: Sock::new(dst),
        listened: Slot::new(),
        status: Mutex::new(None),
    };
    let ctx: PVOID = std::ptr::from_ref(&relisten).cast_mut().cast();
    // SAFETY: live listener; valid callback; `relisten` outlives the close.
    let st = unsafe {
        d(pair.listener).NdkCloseListener.unwrap()(hdr(pair.listener), Some(relisten_on_close), ctx)
    };
    assert_eq!(st, NtStatus::PENDING, "an accepted connector is still open");
    // Closing the last connector delivered through the listener completes the listener's close.
    close(pair.b.conn, d(pair.b.conn).NdkCloseConnector);
    net.settle();
    let inline = relisten
        .status
        .lock()
        .unwrap()
        .expect("the listener's close completed");
    assert_eq!(
        relisten.listened.resolve(inline),
        NtStatus::SUCCESS,
        "every connector of the old listener is closed and so is the listener: its address is free"
    );
    close(second, d(second).NdkCloseListener);
    teardown_ends(&net, pair);
}
