//! The engine under races and faults: a cancelled CONNECT, CLOSE racing ABORT, a peer that
//! disconnects before the connection is established, link loss.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ndkdisc_host::HostRequest;
use softndk::Fault;

fn raw_query(h: &HostHandle, id: u64) -> NtStatus {
    done(&h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest { connection_id: id }),
        QueryReply::SIZE,
    ))
    .0
}

/// Every event of `h` until `Closed` of `id` arrives (or the limit).
fn events_until_closed(h: &HostHandle, id: u64) -> Vec<Event> {
    let mut all = Vec::new();
    for _ in 0..50 {
        let evs = events(h);
        let closed = evs
            .iter()
            .any(|e| e.connection_id == id && e.kind == EventKind::Closed);
        all.extend(evs);
        if closed {
            return all;
        }
    }
    panic!("no Closed event for {id}: {all:?}");
}

fn of(evs: &[Event], id: u64) -> Vec<Event> {
    evs.iter()
        .filter(|e| e.connection_id == id)
        .copied()
        .collect()
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..2000 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn a_cancelled_connect_completes_cancelled_and_releases_the_connection(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let gate = block_passive(&w);
    let p = connect_pending(&ha, 4791);
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        !p.is_done(),
        "{mode:?}: CONNECT pends until the peer accepts"
    );
    p.cancel();
    let (st, out) = done(&p);
    assert_eq!(st, NtStatus::CANCELLED, "{mode:?}");
    assert!(out.is_empty(), "a cancelled request carries no reply");
    let failed = next_event(&ha, EventKind::ConnectFailed);
    assert_eq!(failed.status, NtStatus::CANCELLED, "{mode:?}");
    gate.send(()).unwrap();
    let evs = of(
        &events_until_closed(&ha, failed.connection_id),
        failed.connection_id,
    );
    assert!(
        evs.iter().all(|e| e.kind == EventKind::Closed),
        "{mode:?}: nothing between ConnectFailed and Closed: {evs:?}"
    );
    assert_eq!(
        raw_query(&ha, failed.connection_id),
        NtStatus::NOT_FOUND,
        "the abandoned connection's id is gone"
    );
    finish(&w, ha, hb);
}

fn a_cancel_racing_the_connect_completion_completes_it_exactly_once(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let (mut won, mut cancelled) = (0, 0);
    for i in 0..25 {
        let p = connect_pending(&ha, 4791);
        if i % 5 != 0 {
            std::thread::sleep(Duration::from_micros(50 * i));
        }
        p.cancel();
        // `HostRequest::complete` panics on a second completion.
        let (st, out) = done(&p);
        match st {
            NtStatus::SUCCESS => {
                let r = ConnectReply::parse(&out).unwrap();
                let mut evs = of(&drain_until(&ha, r.connection_id), r.connection_id);
                if r.status == NtStatus::SUCCESS {
                    won += 1;
                    assert_eq!(evs[0].kind, EventKind::Connected, "{mode:?}: {evs:?}");
                } else {
                    assert_eq!(evs[0].kind, EventKind::ConnectFailed, "{mode:?}: {evs:?}");
                }
                close(&ha, r.connection_id);
                evs.extend(of(
                    &events_until_closed(&ha, r.connection_id),
                    r.connection_id,
                ));
                assert_eq!(terminal(&evs).len(), 1, "{mode:?}: {evs:?}");
            }
            NtStatus::CANCELLED => {
                cancelled += 1;
                // The abandoned connection: cancelled while connecting, or established
                // just before the cancel won (then released like an abortive disconnect).
                let evs = until_any_closed(&ha);
                let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
                assert!(
                    evs.iter().all(|e| e.connection_id == evs[0].connection_id),
                    "{mode:?}: {evs:?}"
                );
                match kinds.as_slice() {
                    [EventKind::ConnectFailed, EventKind::Closed] => {
                        assert_eq!(evs[0].status, NtStatus::CANCELLED, "{mode:?}");
                    }
                    [
                        EventKind::Connected,
                        EventKind::Disconnected,
                        EventKind::Closed,
                    ] => {
                        assert_eq!(evs[1].cause, Some(Cause::LocalAbortive), "{mode:?}");
                    }
                    _ => panic!("{mode:?}: unexpected events {evs:?}"),
                }
            }
            other => panic!("{mode:?}: CONNECT completed with {other:#x}"),
        }
    }
    assert!(won + cancelled == 25);
    finish(&w, ha, hb);
}

/// Events of `h` until the first one of `id` (the connect outcome) has arrived.
fn drain_until(h: &HostHandle, id: u64) -> Vec<Event> {
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(events(h));
        if all.iter().any(|e| e.connection_id == id) {
            return all;
        }
    }
    panic!("no event for {id}");
}

/// Events of `h` until some connection's `Closed`.
fn until_any_closed(h: &HostHandle) -> Vec<Event> {
    let mut all = Vec::new();
    for _ in 0..50 {
        all.extend(events(h));
        if all.iter().any(|e| e.kind == EventKind::Closed) {
            return all;
        }
    }
    panic!("no Closed event: {all:?}");
}

/// A pump that runs softndk's queued callbacks ([`Completion::Manual`]) while its gate is open.
/// Closing the gate waits for a `deliver` in progress to finish, so nothing is delivered after.
struct Pump {
    open: Arc<Mutex<bool>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pump {
    fn start(fabric: &Arc<Fabric>) -> Self {
        let open = Arc::new(Mutex::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s, f) = (Arc::clone(&open), Arc::clone(&stop), Arc::clone(fabric));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                {
                    let open = o.lock().unwrap();
                    if *open {
                        f.deliver();
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        Self {
            open,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn close_racing_abort_returns_only_when_every_object_is_released() {
    let w = world(Completion::Manual);
    let pump = Pump::start(&w.fabric);
    let (ha, ca, hb, _cb) = pair(&w);
    let ha = Arc::new(ha);
    assert!(w.fabric.wait_idle(WAIT));
    let before = w.fabric.live_objects();
    // Hold every provider completion: ABORT's teardown stops at its first close.
    pump.set(false);
    let abort = {
        let ha = Arc::clone(&ha);
        std::thread::spawn(move || abort(&ha, ca))
    };
    assert!(
        wait_for(|| w.fabric.queued() > 0),
        "ABORT reached its first close"
    );
    let close = {
        let ha = Arc::clone(&ha);
        std::thread::spawn(move || close_status(&ha, ca))
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !close.is_finished(),
        "CLOSE must not return while ABORT's teardown still holds NDK objects"
    );
    pump.set(true);
    assert_eq!(close.join().unwrap(), NtStatus::SUCCESS);
    // A's adapter, PD, CQ, QP and connector are gone by the time CLOSE returns (B's remain).
    assert_eq!(
        w.fabric.live_objects(),
        before - 5,
        "{:?}",
        w.fabric.live_by_kind()
    );
    assert_eq!(abort.join().unwrap(), NtStatus::SUCCESS);
    let evs = of(&events_until_closed(&ha, ca), ca);
    assert_eq!(terminal(&evs).len(), 1, "{evs:?}");
    let ha = Arc::into_inner(ha).unwrap();
    finish(&w, ha, hb);
    drop(pump);
}

fn a_peer_disconnect_during_connect_fails_the_attempt_once(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let gate = block_passive(&w);
    let p = connect_pending(&ha, 4791);
    let victim = w.fabric.connectors(w.hosts[0]);
    assert_eq!(victim.len(), 1, "A's connector");
    assert!(
        w.fabric.inject(victim[0], Fault::PeerDisconnect),
        "{mode:?}"
    );
    gate.send(()).unwrap();
    let (st, out) = done(&p);
    assert_eq!(st, NtStatus::SUCCESS, "{mode:?}");
    let r = ConnectReply::parse(&out).unwrap();
    assert!(
        !r.status.is_success(),
        "{mode:?}: the attempt failed: {:#x}",
        r.status
    );
    let failed = next_event(&ha, EventKind::ConnectFailed);
    assert_eq!(
        (failed.connection_id, failed.status),
        (r.connection_id, r.status)
    );
    close(&ha, r.connection_id);
    let evs = of(&events_until_closed(&ha, r.connection_id), r.connection_id);
    assert!(
        evs.iter().all(|e| e.kind == EventKind::Closed),
        "{mode:?}: no Connected, no second terminal: {evs:?}"
    );
    // B never reports a connection without its terminal event.
    let evs_b = drain(&hb);
    for e in &evs_b {
        if e.kind == EventKind::Accepted {
            assert!(
                evs_b.iter().any(
                    |t| t.connection_id == e.connection_id && t.kind == EventKind::Disconnected
                ),
                "{mode:?}: {evs_b:?}"
            );
        }
    }
    finish(&w, ha, hb);
}

fn a_peer_disconnect_before_accept_fails_the_accept_and_the_connect(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let gate = block_passive(&w);
    let p = connect_pending(&ha, 4791);
    // The incoming connector B holds in its backlog: its peer (A) goes away.
    assert!(
        wait_for(|| w.fabric.connectors(w.hosts[1]).len() == 1),
        "{mode:?}"
    );
    let incoming = w.fabric.connectors(w.hosts[1])[0];
    assert!(w.fabric.inject(incoming, Fault::PeerDisconnect), "{mode:?}");
    gate.send(()).unwrap();
    let r = ConnectReply::parse(&done(&p).1).unwrap();
    assert!(
        !r.status.is_success(),
        "{mode:?}: the connect failed: {:#x}",
        r.status
    );
    // B: the accepted-then-lost connection (if the accept ran) ends with exactly one
    // terminal event and no Accepted.
    assert!(w.fabric.wait_idle(WAIT));
    std::thread::sleep(Duration::from_millis(20));
    let evs_b = drain(&hb);
    assert!(
        evs_b.iter().all(|e| e.kind != EventKind::Accepted),
        "{mode:?}: an accept that failed is not reported as Accepted: {evs_b:?}"
    );
    for e in terminal(&evs_b) {
        assert_eq!(e.kind, EventKind::ConnectFailed, "{mode:?}: {evs_b:?}");
        assert_eq!(terminal(&of(&evs_b, e.connection_id)).len(), 1);
    }
    close(&ha, r.connection_id);
    finish(&w, ha, hb);
}

fn link_loss_gives_both_sides_one_peer_event_with_the_link_reason(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    let victim = w.fabric.connectors(w.hosts[0]);
    // Both ends told at once (the kinder fault): this test is about one event per side
    // racing the other; hardware's late detection is in tests/hardware.rs.
    assert!(
        w.fabric.inject(victim[0], Fault::LinkLossNoticedAtOnce),
        "{mode:?}"
    );
    for (h, id) in [(&ha, ca), (&hb, cb)] {
        let e = next_event(h, EventKind::Disconnected);
        assert_eq!(
            (e.connection_id, e.cause, e.provider_reason),
            (id, Some(Cause::Peer), Some(reason::LINK_DOWN)),
            "{mode:?}"
        );
        assert!(e.callback_fired);
    }
    for (h, id) in [(&ha, ca), (&hb, cb)] {
        close(h, id);
        let evs = of(&events_until_closed(h, id), id);
        assert!(terminal(&evs).is_empty(), "{mode:?}: {evs:?}");
    }
    finish(&w, ha, hb);
}

#[test]
fn a_peer_disconnect_racing_establishment_yields_one_terminal_event() {
    for seed in 0..8 {
        let w = world(Completion::Random { seed });
        let (ha, hb) = listening(&w);
        for i in 0..10u64 {
            let p = connect_pending(&ha, 4791);
            std::thread::sleep(Duration::from_micros(40 * i));
            if let Some(&c) = w.fabric.connectors(w.hosts[0]).last() {
                w.fabric.inject(c, Fault::PeerDisconnect);
            }
            let r = ConnectReply::parse(&done(&p).1).unwrap();
            let evs = of(&drain_until(&ha, r.connection_id), r.connection_id);
            let first = evs[0];
            if r.status == NtStatus::SUCCESS {
                assert_eq!(first.kind, EventKind::Connected, "seed {seed}: {evs:?}");
            } else {
                assert_eq!(
                    (first.kind, first.status),
                    (EventKind::ConnectFailed, r.status),
                    "seed {seed}: {evs:?}"
                );
            }
            close(&ha, r.connection_id);
            let all = of(&events_until_closed(&ha, r.connection_id), r.connection_id);
            let mut seen: Vec<Event> = evs.clone();
            seen.extend(
                all.iter()
                    .copied()
                    .filter(|e| !evs.iter().any(|x| x.seq == e.seq)),
            );
            assert_eq!(terminal(&seen).len(), 1, "seed {seed}: {seen:?}");
        }
        finish(&w, ha, hb);
    }
}

#[test]
fn many_cancelled_connects_and_accepts_share_one_platform_work_item() {
    let w = world(Completion::Thread);
    let (ha, hb) = listening(&w);
    listen(&hb, 4792);
    let gate = block_passive(&w);
    // Twenty CONNECTs pend (the accepts wait behind the gate), then all are cancelled: twenty
    // releases and two listeners' accept work are queued while the passive level is busy.
    let pending: Vec<_> = (0..20)
        .map(|i| connect_pending(&ha, 4791 + (i % 2)))
        .collect();
    for p in &pending {
        p.cancel();
        assert_eq!(done(p).0, NtStatus::CANCELLED);
    }
    gate.send(()).unwrap();
    let mut closed = 0;
    while closed < 20 {
        closed += events(&ha)
            .iter()
            .filter(|e| e.kind == EventKind::Closed)
            .count();
    }
    assert_eq!(
        w.engine.platform().drainers(),
        1,
        "the platform was given one work, the engine's drainer, and only kicked after"
    );
    finish(&w, ha, hb);
}

// Found by review: cleanup racing a CONNECT that is still creating its objects, and the
// deferral reservation of work items outliving their listeners.

/// Handle cleanup runs while a CONNECT on the same handle is still creating its objects
/// (CloseHandle on one thread, an overlapped DeviceIoControl in flight on another).
#[test]
fn cleanup_racing_connect_creation_completes_the_connect() {
    let mut hung = 0;
    for i in 0..6 {
        if !cleanup_racing_connect_once(i) {
            hung += 1;
        }
    }
    assert_eq!(hung, 0, "CONNECTs left pending after cleanup");
}

fn cleanup_racing_connect_once(i: u32) -> bool {
    let w = world(Completion::Manual);
    let pump = Pump::start(&w.fabric);
    let hb = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    assert!(w.fabric.wait_idle(WAIT));
    let owner = Arc::new(w.engine.open(Access::ReadWrite).unwrap());
    pump.set(false);
    let (request, pending) = HostRequest::new(1, ConnectReply::SIZE, Box::new(|_| {}));
    let t1 = {
        let owner = Arc::clone(&owner);
        std::thread::spawn(move || {
            owner.dispatch(Ioctl::Connect.code(), &connect_request(4791), request)
        })
    };
    // Step the CONNECT through PD, CQ and QP creation, one delivery each, and stop at the
    // connector's create. (Under heavy load a delivery may run the next step too; the race
    // below then starts later, and the CONNECT must complete all the same.)
    for _step in 0..3 {
        for _ in 0..2000 {
            if w.fabric.queued() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if w.fabric.queued() == 0 {
            break;
        }
        w.fabric.deliver();
    }
    std::thread::sleep(Duration::from_millis(20));
    let t3 = {
        let owner = Arc::clone(&owner);
        std::thread::spawn(move || {
            let (request, pending) = HostRequest::new(2, 0, Box::new(|_| {}));
            let req = PostRequest {
                connection_id: 2,
                kind: PostKind::Receive,
                count: 40,
                length: 64,
            };
            owner.dispatch(Ioctl::Post.code(), &bytes(&req), request);
            pending.wait(Duration::from_secs(5)).map(|r| r.0)
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let t2 = {
        let owner = Arc::clone(&owner);
        std::thread::spawn(move || owner.cleanup())
    };
    std::thread::sleep(Duration::from_millis(100));
    pump.set(true);
    t1.join().unwrap();
    t2.join().unwrap();
    let _ = t3.join().unwrap();
    let r = pending.wait(Duration::from_secs(3));
    let _ = i;
    drop(pump);
    r.is_some()
}

/// Listeners closed while their accept work is still queued (the passive level is busy) keep
/// their work item alive: each item holds its own deferral slot, so new listeners never queue
/// more work than was reserved (this overran a per-handle reservation).
#[test]
fn closed_listeners_with_queued_accept_work_never_overrun_the_deferral_queue() {
    let defaults = Config::default();
    let config = Config {
        max_listeners: 1,
        limits: ndkdisc_core::events::Limits {
            max_connections: 2,
            ..defaults.limits
        },
        ..defaults
    };
    let w = world_with(Completion::Thread, config);
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    // The passive worker is busy (a slow drain).
    let tx = block_passive(&w);
    for i in 0..10u16 {
        let l = listen(&hb, 5000 + i);
        let p = connect_pending(&ha, 5000 + i);
        // The incoming request sits in the backlog; its accept work is queued behind the blocker.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(close_status(&hb, l.listener_id), NtStatus::SUCCESS);
        let (st, out) = done(&p);
        assert_eq!(st, NtStatus::SUCCESS);
        let r = ConnectReply::parse(&out).unwrap();
        close(&ha, r.connection_id);
        let _ = drain(&ha);
    }
    tx.send(()).unwrap();
}

per_mode!(
    a_cancelled_connect_completes_cancelled_and_releases_the_connection,
    a_cancel_racing_the_connect_completion_completes_it_exactly_once,
    a_peer_disconnect_during_connect_fails_the_attempt_once,
    a_peer_disconnect_before_accept_fails_the_accept_and_the_connect,
    link_loss_gives_both_sides_one_peer_event_with_the_link_reason,
);

/// A cancelled CONNECT's connection waits on its handle's list for the passive-level release;
/// CLOSE taking it first must take it off the list. Otherwise, with the passive level busy, the
/// list (room for one entry per connection the handle may hold) fills with entries of
/// connections long gone, and a later cancelled CONNECT finds no room and is never released.
/// Three times the handle's quota of cancel-then-CLOSE cycles while the passive level is
/// blocked (each reusing the same record), then two cancelled CONNECTs left to the release.
#[test]
fn close_of_a_cancelled_connect_takes_it_off_its_handles_release_list() {
    let quota = 4;
    let w = world_with(
        Completion::Thread,
        Config {
            limits: ndkdisc_core::events::Limits {
                max_connections: quota,
                max_waits: 16,
            },
            ..Config::default()
        },
    );
    let (ha, hb) = listening(&w);
    let gate = block_passive(&w);
    let cancelled = |h: &HostHandle| {
        let p = connect_pending(h, 4791);
        p.cancel();
        assert_eq!(done(&p).0, NtStatus::CANCELLED);
        next_event(h, EventKind::ConnectFailed).connection_id
    };
    for _ in 0..3 * quota {
        let id = cancelled(&ha);
        close(&ha, id);
        // Its Closed delivered: the record is free for the next connection.
        assert!(
            events_until_closed(&ha, id)
                .iter()
                .any(|e| e.connection_id == id && e.kind == EventKind::Closed)
        );
    }
    let last = [cancelled(&ha), cancelled(&ha)];
    gate.send(()).unwrap();
    // Both Closed events, in one WAIT or several (a WAIT that finds nothing fails the test
    // after its bound: a connection left unreleased).
    let mut seen = Vec::new();
    while !last.iter().all(|id| {
        seen.iter()
            .any(|e: &Event| e.connection_id == *id && e.kind == EventKind::Closed)
    }) {
        seen.extend(events(&ha));
    }
    for id in last {
        assert_eq!(raw_query(&ha, id), NtStatus::NOT_FOUND);
    }
    finish(&w, ha, hb);
}
