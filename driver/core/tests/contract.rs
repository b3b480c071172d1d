//! The engine's contract with user mode and with NDK, end to end through the IOCTL ABI over
//! softndk: level-triggered waits per connection, WAIT after cleanup, error paths that release
//! what they opened, a listener CLOSE that never blocks, no NDK call under an engine lock, a
//! connect event racing a listener CLOSE, the NDK version asked for, and refusals by
//! `NdkReject`.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

use std::sync::mpsc::channel;

use ndkdisc_host::HostRequest;
use softndk::{Fault, MisusePolicy, ObjectKind};

/// Let the provider's threads and then the engine's passive worker finish what they were given:
/// the worker is a FIFO, so once a marker sent now has run, every drainer run kicked before it
/// has run too.
fn settle(w: &World) {
    for _ in 0..3 {
        assert!(w.fabric.wait_idle(WAIT), "the provider settles");
        let (tx, rx) = channel::<()>();
        w.engine.platform().on_passive_worker(move || {
            let _ = tx.send(());
        });
        rx.recv_timeout(WAIT).expect("the passive worker runs");
    }
}

fn listen_at(
    h: &HostHandle,
    if_index: u32,
    local: SocketAddr,
    backlog: u32,
) -> (NtStatus, Vec<u8>) {
    let req = ListenRequest {
        if_index,
        backlog,
        local,
    };
    done(&h.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE))
}

/// Start a graceful DISCONNECT: the peer's callback fires at once; the DISCONNECT itself
/// completes when the peer answers (its close, at the latest), which these tests do not wait for.
fn disconnect(h: &HostHandle, id: u64) {
    let _completes_when_the_peer_answers = disconnect_pending(h, id);
}

// --- 1. level-triggered per connection -------------------------------------------------------

fn a_wait_on_a_connection_whose_terminal_event_was_delivered_returns_it_at_once(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    disconnect(&ha, ca);
    // The terminal event goes to an any-connection wait.
    let delivered = next_event(&hb, EventKind::Disconnected);
    assert_eq!(delivered.connection_id, cb);
    assert!(!delivered.already_delivered, "the original");
    // A wait on the connection does not pend for a later event: it gets a flagged copy.
    let p = wait_pending(&hb, Some(cb), 4);
    let (st, out) = p.wait(WAIT).unwrap_or_else(|| {
        panic!("{mode:?}: a WAIT on a connection whose terminal event was delivered pends")
    });
    assert_eq!(st, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(
        decode_events(&out),
        vec![Event {
            already_delivered: true,
            ..delivered
        }],
        "{mode:?}: a copy of the terminal record, flagged"
    );
    // Non-blocking too, and again: it is level-triggered.
    assert_eq!(wait_now(&hb, Some(cb), 4)[0].seq, delivered.seq, "{mode:?}");
    // Another queued event of the connection is returned instead of the copy.
    close(&hb, cb);
    let (st, out) = done(&wait_pending(&hb, Some(cb), 4));
    assert_eq!(st, NtStatus::SUCCESS);
    let evs = decode_events(&out);
    assert_eq!(evs.len(), 1, "{mode:?}: {evs:?}");
    assert_eq!(evs[0].kind, EventKind::Closed);
    assert!(!evs[0].already_delivered);
    // Once `Closed` is delivered the id is gone.
    assert_eq!(
        done(&wait_pending(&hb, Some(cb), 4)).0,
        NtStatus::NOT_FOUND,
        "{mode:?}"
    );
    finish(&w, ha, hb);
}

fn a_wait_pended_on_a_connection_gets_the_copy_when_an_older_any_wait_takes_the_event(
    mode: Completion,
) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    // Both pend; the any-connection wait is older, so the terminal event goes to it.
    let any = wait_pending(&hb, None, 4);
    let on_cb = wait_pending(&hb, Some(cb), 4);
    assert!(!any.is_done() && !on_cb.is_done());
    disconnect(&ha, ca);
    let (st, out) = done(&any);
    assert_eq!(st, NtStatus::SUCCESS);
    let delivered = decode_events(&out)[0];
    assert_eq!(
        (delivered.connection_id, delivered.kind),
        (cb, EventKind::Disconnected),
        "{mode:?}"
    );
    let (st, out) = on_cb.wait(WAIT).unwrap_or_else(|| {
        panic!("{mode:?}: a WAIT pended on the connection stays pended after its terminal event was delivered")
    });
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(
        decode_events(&out),
        vec![Event {
            already_delivered: true,
            ..delivered
        }],
        "{mode:?}"
    );
    finish(&w, ha, hb);
}

#[test]
fn a_failed_connects_terminal_record_is_level_triggered_too() {
    let w = world(Completion::Inline);
    let ha = HostHandle::open(&w.engine).unwrap();
    let r = connect(&ha, 9);
    assert_eq!(r.status, NtStatus::CONNECTION_REFUSED);
    let failed = next_event(&ha, EventKind::ConnectFailed);
    let p = wait_pending(&ha, Some(r.connection_id), 1);
    let (st, out) = p
        .wait(WAIT)
        .expect("a WAIT on a failed connection whose ConnectFailed was delivered pends");
    assert_eq!(st, NtStatus::SUCCESS);
    let evs = decode_events(&out);
    assert_eq!(evs[0].kind, EventKind::ConnectFailed);
    assert_eq!(evs[0].seq, failed.seq);
    assert!(evs[0].already_delivered);
    close(&ha, r.connection_id);
    let hb = HostHandle::open(&w.engine).unwrap();
    finish(&w, ha, hb);
}

// --- 2. WAIT after cleanup began ----------------------------------------------------------------

#[test]
fn a_wait_arriving_after_cleanup_began_completes_cancelled_without_pending() {
    let w = world(Completion::Inline);
    let owner = w.engine.open(Access::ReadWrite).unwrap();
    owner.cleanup();
    // An IOCTL that raced CloseHandle reaches the engine after cleanup.
    for filter in [None, Some(1)] {
        let req = WaitRequest {
            connection: filter,
            nonblocking: false,
        };
        let (request, pending) =
            HostRequest::new(7, BATCH_HEADER_SIZE + Event::SIZE, Box::new(|_| {}));
        owner.dispatch(Ioctl::Wait.code(), &bytes(&req), request);
        assert!(
            pending.is_done(),
            "a WAIT after cleanup pended (filter {filter:?}): nobody would ever complete it"
        );
        assert_eq!(done(&pending).0, NtStatus::CANCELLED);
    }
}

// --- 3. error paths release what they opened -------------------------------------------------

fn a_failed_listen_releases_its_adapter_at_once(mode: Completion) {
    let w = world(mode);
    let hb = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    let before = w.fabric.live_by_kind();
    for (local, status) in [
        // The address is in use.
        (SocketAddr::new(B, 4791), NtStatus::SHARING_VIOLATION),
        // An address that is not on the interface.
        (SocketAddr::new(A, 4791), NtStatus::INVALID_ADDRESS),
    ] {
        let (st, _) = listen_at(&hb, 2, local, 0);
        assert_eq!(st, status, "{mode:?}");
        assert_eq!(
            w.fabric.live_by_kind(),
            before,
            "{mode:?}: a LISTEN that failed with {status} left objects open"
        );
    }
    // The listener cannot be created.
    w.fabric.fail_creates(w.hosts[1], ObjectKind::Listener, 1);
    let (st, _) = listen_at(&hb, 2, SocketAddr::new(B, 4792), 0);
    assert_eq!(st, NtStatus::INSUFFICIENT_RESOURCES, "{mode:?}");
    assert_eq!(w.fabric.live_by_kind(), before, "{mode:?}: failed create");
    let ha = HostHandle::open(&w.engine).unwrap();
    finish(&w, ha, hb);
}

fn a_failed_connect_releases_what_it_opened_at_once(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let before = w.fabric.live_by_kind();
    for kind in [
        ObjectKind::Pd,
        ObjectKind::Cq,
        ObjectKind::Qp,
        ObjectKind::Connector,
    ] {
        w.fabric.fail_creates(w.hosts[0], kind, 1);
        let r = connect(&ha, 4791);
        assert_eq!(
            r.status,
            NtStatus::INSUFFICIENT_RESOURCES,
            "{mode:?}: {kind:?} create failed"
        );
        assert_eq!(
            w.fabric.live_by_kind(),
            before,
            "{mode:?}: a CONNECT whose {kind:?} create failed left objects open"
        );
        let failed = next_event(&ha, EventKind::ConnectFailed);
        assert_eq!(failed.connection_id, r.connection_id);
        close(&ha, r.connection_id);
    }
    // A wrong interface opens nothing.
    let req = ConnectRequest {
        if_index: 77,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(B, 4791),
    };
    assert_eq!(
        done(&ha.ioctl(Ioctl::Connect.code(), &bytes(&req), ConnectReply::SIZE)).0,
        NtStatus::NOT_FOUND
    );
    assert_eq!(w.fabric.live_by_kind(), before, "{mode:?}");
    finish(&w, ha, hb);
}

// --- 4. CLOSE of a listener never blocks -------------------------------------------------------

fn closing_a_listener_returns_while_its_accepted_connection_is_open(mode: Completion) {
    let w = world(mode);
    let hb = Arc::new(HostHandle::open(&w.engine).unwrap());
    let ha = HostHandle::open(&w.engine).unwrap();
    let l = listen(&hb, 4791);
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS);
    let accepted = next_event(&hb, EventKind::Accepted);
    // CLOSE(listener) from another thread: today it would never return.
    let (tx, rx) = channel();
    let closer = {
        let hb = Arc::clone(&hb);
        std::thread::spawn(move || {
            let st = close_status(&hb, l.listener_id);
            let _ = tx.send(st);
        })
    };
    let st = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
        panic!("{mode:?}: CLOSE of a listener blocked while its accepted connection is open")
    });
    closer.join().unwrap();
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(
        query(&hb, accepted.connection_id).state,
        ConnState::Connected,
        "{mode:?}: the accepted connection is untouched"
    );
    // The listener is gone: a second CLOSE does not find it, a new CONNECT is refused.
    assert_eq!(close_status(&hb, l.listener_id), NtStatus::NOT_FOUND);
    let refused = connect(&ha, 4791);
    assert_eq!(refused.status, NtStatus::CONNECTION_REFUSED, "{mode:?}");
    close(&ha, refused.connection_id);
    // Closing the connection lets NDK complete the listener's close; its adapter (shared
    // with the connection) is closed by whoever releases it last.
    close(&hb, accepted.connection_id);
    close(&ha, r.connection_id);
    settle(&w);
    assert_eq!(
        w.fabric.live_objects(),
        0,
        "{mode:?}: every NDK object is released with both handles still open: {:?}",
        w.fabric.live_by_kind()
    );
    let hb = Arc::into_inner(hb).unwrap();
    finish(&w, ha, hb);
}

// --- 5. no NDK call under an engine lock ------------------------------------------------------

#[test]
fn the_engine_never_calls_ndk_while_holding_its_lock() {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion: Completion::Inline,
        misuse: MisusePolicy::Record,
        ..Default::default()
    }));
    let w = world_of(
        fabric,
        [HostConfig::new(1, [A]), HostConfig::new(2, [B])],
        Config::default(),
    );
    let (ha, ca, hb, cb) = pair(&w);
    assert_eq!(query(&hb, cb).remote.map(|a| a.ip()), Some(A));
    disconnect(&ha, ca);
    next_event(&hb, EventKind::Disconnected);
    assert!(
        w.fabric.violations().is_empty(),
        "NDK was called while the engine held a spin lock: {:?}",
        w.fabric.violations()
    );
    finish(&w, ha, hb);
}

// --- 6. a connect event racing a listener CLOSE -------------------------------------------------

/// A stress test beside the deterministic one below: connect events on the provider's thread
/// racing CLOSE for real (it rarely hits the narrow window by itself; the deterministic test
/// stages it). Every CONNECT completes, nothing leaks, nothing is refused by closing it
/// unaccepted. With the passive worker held, a connector stranded in the backlog would never
/// be looked at again.
#[test]
fn a_connect_event_racing_a_listener_close_never_strands_its_connector() {
    const ROUNDS: u16 = 150;
    const CONNECTS: usize = 6;
    let w = world(Completion::Thread);
    let ha = HostHandle::open(&w.engine).unwrap();
    for round in 0..ROUNDS {
        let hb = HostHandle::open(&w.engine).unwrap();
        let port = 6000 + round;
        let l = listen(&hb, port);
        let gate = (round % 2 == 0).then(|| block_passive(&w));
        let pending: Vec<_> = (0..CONNECTS).map(|_| connect_pending(&ha, port)).collect();
        close(&hb, l.listener_id);
        drop(gate);
        for p in &pending {
            let (st, out) = p.wait(WAIT).unwrap_or_else(|| {
                panic!("round {round}: a CONNECT racing the listener's CLOSE never completed")
            });
            assert_eq!(st, NtStatus::SUCCESS);
            close(&ha, ConnectReply::parse(&out).unwrap().connection_id);
        }
        hb.close();
        // Delivering `Closed` frees the connections' records (the handle's quota).
        let _ = drain(&ha);
    }
    assert_eq!(
        w.fabric.stats().closed_unaccepted,
        0,
        "requests are refused with NdkReject, not by closing them unaccepted"
    );
    let hb = HostHandle::open(&w.engine).unwrap();
    finish(&w, ha, hb);
}

/// Where a connect-event callback stands, for [`a_listener_close_landing_anywhere_in_a_connect_event_never_strands_it`].
#[derive(Default)]
struct Stop {
    /// Lock acquisitions seen so far.
    seen: usize,
    /// The callback reached acquisition `at` and waits.
    reached: bool,
    released: bool,
    /// The CONNECT returned without reaching it.
    finished: bool,
}

struct Gate {
    at: usize,
    state: std::sync::Mutex<Stop>,
    cv: std::sync::Condvar,
}

impl Gate {
    /// Called before each lock a callback takes: stop at the `at`-th.
    fn hit(&self) {
        let mut s = self.state.lock().unwrap();
        s.seen += 1;
        if s.seen == self.at + 1 {
            s.reached = true;
            self.cv.notify_all();
            while !s.released {
                s = self.cv.wait(s).unwrap();
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut Stop)) {
        f(&mut self.state.lock().unwrap());
        self.cv.notify_all();
    }

    /// Wait (hang detector only) until the callback stopped or the CONNECT returned; whether
    /// it stopped.
    fn stopped(&self) -> bool {
        let s = self.state.lock().unwrap();
        let (s, timeout) = self
            .cv
            .wait_timeout_while(s, WAIT, |s| !s.reached && !s.finished)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "the CONNECT neither stopped nor returned"
        );
        s.reached
    }
}

/// Deterministic: the CONNECT's callbacks (Inline: they run on the connecting thread, the
/// listener's connect event among them) are stopped before their 1st, 2nd, ... lock in turn,
/// and the listener is closed right there. Wherever CLOSE lands — in particular between a
/// `closing` check and the push into the backlog, if those were two steps — the CONNECT must
/// complete (refused or accepted), and nothing may be left open.
#[test]
fn a_listener_close_landing_anywhere_in_a_connect_event_never_strands_it() {
    let mut at = 0;
    loop {
        let w = world(Completion::Inline);
        let hb = HostHandle::open(&w.engine).unwrap();
        let ha = Arc::new(HostHandle::open(&w.engine).unwrap());
        let l = listen(&hb, 4791);
        let gate = Arc::new(Gate {
            at,
            state: std::sync::Mutex::new(Stop::default()),
            cv: std::sync::Condvar::new(),
        });
        let connecting = {
            let (ha, gate) = (Arc::clone(&ha), Arc::clone(&gate));
            std::thread::spawn(move || {
                let hook = Arc::clone(&gate);
                ndkdisc_host::on_callback_lock(Some(Box::new(move || hook.hit())));
                let p = connect_pending(&ha, 4791);
                ndkdisc_host::on_callback_lock(None);
                gate.update(|s| s.finished = true);
                p
            })
        };
        let stopped = gate.stopped();
        // CLOSE lands exactly there; it must not wait for the callback (hang detector).
        let hb = Arc::new(hb);
        let (tx, rx) = channel();
        {
            let hb = Arc::clone(&hb);
            std::thread::spawn(move || {
                let st = close_status(&hb, l.listener_id);
                drop(hb);
                let _ = tx.send(st);
            });
        }
        let st = rx
            .recv_timeout(WAIT)
            .expect("CLOSE of the listener waited for its connect event");
        assert_eq!(st, NtStatus::SUCCESS);
        gate.update(|s| s.released = true);
        let p = connecting.join().unwrap();
        let (st, out) = p.wait(WAIT).unwrap_or_else(|| {
            panic!("CLOSE before the connect callbacks' lock #{at}: the CONNECT never completed (its connector was stranded)")
        });
        assert_eq!(st, NtStatus::SUCCESS);
        let r = ConnectReply::parse(&out).unwrap();
        close(&ha, r.connection_id);
        // The closer thread dropped its reference before it sent the status.
        let hb = Arc::into_inner(hb).unwrap();
        finish(&w, Arc::into_inner(ha).unwrap(), hb);
        if !stopped {
            // Every point of the CONNECT's callbacks was tried.
            assert!(at > 3, "the CONNECT's callbacks took only {at} locks");
            break;
        }
        at += 1;
    }
}

// --- 7. the lowest NDK version we support -------------------------------------------------------

fn version_flow(mode: Completion, major: u16, minor: u16) {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion: mode,
        ..Default::default()
    }));
    let w = world_of(
        fabric,
        [
            HostConfig::new(1, [A]).max_version(major, minor),
            HostConfig::new(2, [B]).max_version(major, minor),
        ],
        Config::default(),
    );
    let (ha, ca, hb, cb) = pair(&w);
    let what = format!("{mode:?}, provider {major}.{minor}");
    for (h, id) in [(&ha, ca), (&hb, cb)] {
        let q = query(h, id);
        assert_eq!(
            q.ndk_version,
            (major, minor),
            "{what}: the adapter was opened at the provider's version"
        );
    }
    assert_eq!(post(&hb, cb, PostKind::Receive, 4), NtStatus::SUCCESS);
    assert_eq!(post(&ha, ca, PostKind::Send, 2), NtStatus::SUCCESS);
    // Two receives complete through the CQ (hang detector only: the sends are asynchronous).
    let deadline = std::time::Instant::now() + WAIT;
    while query(&hb, cb).receives_succeeded < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: receives never completed: {:?}",
            query(&hb, cb)
        );
        std::thread::yield_now();
    }
    // B's peer disconnects (fault injection on B's connector: B gets the callback).
    let victims = w.fabric.connectors(w.hosts[1]);
    assert_eq!(victims.len(), 1);
    assert!(w.fabric.inject(victims[0], Fault::PeerDisconnect));
    let d = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        (d.connection_id, d.cause),
        (cb, Some(Cause::Peer)),
        "{what}"
    );
    assert!(d.callback_fired, "{what}: the plain callback fired");
    assert_eq!(d.provider_reason, None, "{what}: no reason below 2.1");
    assert_eq!(d.outstanding_receives, 2, "{what}: nothing flushed");
    let q = query(&hb, cb);
    assert!(q.callback_fired);
    assert_eq!(q.provider_reason, None);
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS);
    next_event(&hb, EventKind::Flushed);
    let q = query(&hb, cb);
    assert_eq!(
        (
            q.receives_succeeded,
            q.receives_cancelled,
            q.outstanding_receives
        ),
        (2, 2, 0),
        "{what}: completions reaped through the CQ"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

fn a_2_0_provider_is_used_at_2_0(mode: Completion) {
    version_flow(mode, 2, 0);
}

fn a_1_1_provider_is_used_at_1_1(mode: Completion) {
    version_flow(mode, 1, 1);
}

// --- 8. refusals by NdkReject ---------------------------------------------------------------

fn connections_beyond_the_backlog_are_rejected_with_ndk_reject(mode: Completion) {
    let w = world(mode);
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    let (st, _) = listen_at(&hb, 2, SocketAddr::new(B, 4791), 1);
    assert_eq!(st, NtStatus::SUCCESS);
    // The accept work is held: the first request fills the backlog of one.
    let gate = block_passive(&w);
    let first = connect_pending(&ha, 4791);
    let refused: Vec<_> = (0..2).map(|_| connect_pending(&ha, 4791)).collect();
    for p in &refused {
        let (st, out) = done(p);
        assert_eq!(st, NtStatus::SUCCESS);
        let r = ConnectReply::parse(&out).unwrap();
        assert_eq!(r.status, NtStatus::CONNECTION_REFUSED, "{mode:?}");
        close(&ha, r.connection_id);
    }
    assert_eq!(
        (w.fabric.stats().rejects, w.fabric.stats().closed_unaccepted),
        (2, 0),
        "{mode:?}: refused with NdkReject, not by closing unaccepted"
    );
    assert_eq!(info(&hb).backlog_rejects, 2);
    gate.send(()).unwrap();
    let r = ConnectReply::parse(&done(&first).1).unwrap();
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    close(&ha, r.connection_id);
    finish(&w, ha, hb);
}

#[test]
fn connections_beyond_the_handles_quota_are_rejected_with_ndk_reject() {
    let config = Config {
        limits: ndkdisc_core::events::Limits {
            max_connections: 1,
            max_waits: 4,
        },
        ..Config::default()
    };
    let w = world_with(Completion::Inline, config);
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    let ha2 = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    assert_eq!(connect(&ha, 4791).status, NtStatus::SUCCESS);
    let r = connect(&ha2, 4791);
    assert_eq!(
        r.status,
        NtStatus::CONNECTION_REFUSED,
        "no room on the listener's handle"
    );
    assert_eq!(
        (w.fabric.stats().rejects, w.fabric.stats().closed_unaccepted),
        (1, 0),
        "refused with NdkReject, not by closing unaccepted"
    );
    assert_eq!(info(&hb).backlog_rejects, 1);
    ha2.close();
    finish(&w, ha, hb);
}

per_mode!(
    a_wait_on_a_connection_whose_terminal_event_was_delivered_returns_it_at_once,
    a_wait_pended_on_a_connection_gets_the_copy_when_an_older_any_wait_takes_the_event,
    a_failed_listen_releases_its_adapter_at_once,
    a_failed_connect_releases_what_it_opened_at_once,
    closing_a_listener_returns_while_its_accepted_connection_is_open,
    a_2_0_provider_is_used_at_2_0,
    a_1_1_provider_is_used_at_1_1,
    connections_beyond_the_backlog_are_rejected_with_ndk_reject,
);
