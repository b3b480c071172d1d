//! The client API over the simulation backend: two hosts on one fabric, the real engine under
//! each, typed events and errors, timeouts and interruption.
#![cfg(feature = "sim")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::{OpenAs, REASON_GRACEFUL, SimFabric, SimOptions};
use ndkdisc_client::{
    Cause, Client, ConnState, ConnectionId, DisconnectMode, Error, ErrorKind, EventKind, NtStatus,
    Timeout, WaitOn, parse_socket_addr,
};

mod common;
use common::{A, B, LIMIT, Pair, params};

fn pair(port: u16) -> Pair {
    common::pair_on(SimOptions::default(), port)
}

#[test]
fn a_peer_disconnect_arrives_typed_and_leaves_receives_posted() {
    let p = pair(4791);
    p.b.post(p.cb, PostKind::Receive, 3, 1024).unwrap();
    // Graceful: A's DISCONNECT completes when B answers (here: when B closes).
    let a_disconnect = p.a.start_disconnect(p.ca).unwrap();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(
        (e.kind, e.cause),
        (EventKind::Disconnected, Some(Cause::Peer))
    );
    assert!(e.callback_fired);
    assert_eq!(e.provider_reason, Some(REASON_GRACEFUL));
    assert_eq!(e.outstanding_receives, 3);
    assert_eq!(e.status, NtStatus::SUCCESS);
    let q = p.b.query(p.cb).unwrap();
    assert_eq!(q.state, ConnState::Disconnected);
    assert!(q.callback_fired && !q.flushed && !q.local_disconnect);
    assert_eq!(q.outstanding_receives, 3);
    assert_eq!(q.remote.map(|r| r.ip()), Some(A));
    assert_eq!(p.fabric.stats().flush_calls, 0);
    p.b.flush(p.cb).unwrap();
    // The terminal event was delivered: a WAIT on the connection returns it again (flagged)
    // until `Flushed` is queued, so wait for a new event.
    let f = p.b.wait_new(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(f.kind, EventKind::Flushed);
    assert_eq!(p.b.query(p.cb).unwrap().outstanding_receives, 0);
    p.b.close_connection(p.cb).unwrap();
    p.a.finish_disconnect(a_disconnect, LIMIT)
        .expect("B's close answered A's graceful disconnect");
    p.a.close();
    p.b.close();
    assert_eq!(p.fabric.wait_released(Duration::from_secs(5)), 0);
}

#[test]
fn a_timed_out_wait_is_cancelled_and_a_later_event_is_not_lost() {
    let p = pair(4792);
    let start = Instant::now();
    let e =
        p.b.wait(
            WaitOn::Connection(p.cb),
            4,
            Timeout::After(Duration::from_millis(100)),
        )
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(matches!(e, Error::Timeout { op: "wait", .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.status(), Some(NtStatus::CANCELLED));
    p.a.disconnect(p.ca, DisconnectMode::Abortive).unwrap();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(e.cause, Some(Cause::Peer));
}

#[test]
fn an_interrupt_cancels_a_blocked_wait() {
    let mut p = pair(4793);
    let flag = Arc::new(AtomicBool::new(false));
    p.b.set_interrupt(Arc::clone(&flag));
    let setter = {
        let f = Arc::clone(&flag);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            f.store(true, Ordering::SeqCst);
        })
    };
    let e = p.b.wait(WaitOn::Any, 4, Timeout::Forever).unwrap_err();
    setter.join().unwrap();
    assert!(matches!(e, Error::Interrupted { op: "wait" }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Cancelled);
}

#[test]
fn abort_cancels_a_pended_wait_with_status_cancelled() {
    let p = pair(4794);
    let b = Arc::new(p.b);
    let waiter = {
        let b = Arc::clone(&b);
        let cb = p.cb;
        std::thread::spawn(move || b.wait(WaitOn::Connection(cb), 4, LIMIT))
    };
    std::thread::sleep(Duration::from_millis(200));
    b.abort(p.cb).unwrap();
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::CANCELLED), "{e}");
    assert_eq!(e.kind(), ErrorKind::Cancelled);
}

#[test]
fn errors_carry_the_status_and_its_meaning() {
    let p = pair(4795);
    let e = p.a.query(ConnectionId::from_raw(999)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownId);
    assert_eq!(e.status(), Some(NtStatus::NOT_FOUND));
    assert_eq!(
        e.to_string(),
        "query failed: STATUS_NOT_FOUND (0xC0000225): no such id on this handle (or no such interface)"
    );
    let e = p.a.connect(&params(9), LIMIT).unwrap_err();
    let Error::ConnectFailed {
        connection_id,
        status,
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(status, NtStatus::CONNECTION_REFUSED);
    p.a.close_connection(connection_id).unwrap();
    let e = p.a.post(p.ca, PostKind::Receive, 0, 16).unwrap_err();
    assert_eq!(
        e.status(),
        Some(NtStatus::INVALID_PARAMETER),
        "count 0 is out of range"
    );
}

#[test]
fn access_is_checked_as_the_io_manager_would() {
    let fabric = SimFabric::new(SimOptions::default());
    let host = fabric.add_host("a", 1, A).unwrap();
    let e = host.open(OpenAs::standard_user()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    let ro = host.open(OpenAs::read_only()).unwrap();
    assert_eq!(ro.adapters().unwrap().len(), 1);
    let e = ro.listen(1, SocketAddr::new(A, 1), 0).unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::ACCESS_DENIED));
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
}

#[test]
fn hosts_addresses_and_the_missing_device() {
    let fabric = SimFabric::new(SimOptions::default());
    fabric.add_host("a", 1, A).unwrap();
    assert_eq!(
        fabric.add_host("b", 1, B).unwrap_err().kind(),
        ErrorKind::BadAddress
    );
    assert_eq!(
        fabric.add_host("c", 3, A).unwrap_err().kind(),
        ErrorKind::BadAddress
    );
    assert_eq!(
        parse_socket_addr("10.0.0.1").unwrap_err().kind(),
        ErrorKind::BadAddress
    );
    assert_eq!(parse_socket_addr("[fe80::1]:4791").unwrap().port(), 4791);
    #[cfg(not(windows))]
    assert_eq!(
        Client::open_device(None, true).unwrap_err().kind(),
        ErrorKind::DeviceMissing
    );
}

#[test]
fn only_a_handle_opened_for_writing_sees_the_driver_counters() {
    let p = pair(4791);
    let ro = p
        .fabric
        .host("a")
        .unwrap()
        .open(OpenAs::read_only())
        .unwrap();
    let full = p.a.info().unwrap();
    assert!(full.connections_opened >= 1, "{full:?}");
    assert!(full.events_latched >= 1, "{full:?}");
    // Versions and limits, but no engine-wide counters.
    let seen = ro.info().unwrap();
    // The clock has moved on between the two replies.
    assert!(seen.clock >= full.clock, "{seen:?} {full:?}");
    assert_eq!(
        ndkdisc_abi::InfoReply {
            clock: full.clock,
            ..seen
        },
        full.without_engine_counters()
    );
    assert_eq!(
        (seen.connections_opened, seen.events_latched),
        (0, 0),
        "the counters read zero"
    );
}

#[test]
fn a_driver_without_ndk_loads_reports_why_and_refuses_what_needs_an_adapter() {
    // A system without the WSK NDK extension: the driver loads anyway (no Code 37), GET_INFO
    // says why, and LISTEN and CONNECT fail with STATUS_NOT_SUPPORTED instead of hanging.
    let why = NtStatus::NOINTERFACE;
    let fabric = SimFabric::new(SimOptions {
        without_ndk: Some(why),
        ..SimOptions::default()
    });
    let a = fabric
        .add_host("a", 1, A)
        .unwrap()
        .open(OpenAs::default())
        .unwrap();
    let info = a.info().unwrap();
    assert_eq!(info.ndk_status, why);
    assert_eq!(
        a.listen(1, SocketAddr::new(A, 4791), 0)
            .unwrap_err()
            .status(),
        Some(NtStatus::NOT_SUPPORTED)
    );
    let refused = a.connect(&params(4791), LIMIT).unwrap_err();
    assert_eq!(
        refused.status(),
        Some(NtStatus::NOT_SUPPORTED),
        "{refused:?}"
    );
    // The refused CONNECT made no connection: no event of it is queued.
    let queued = a
        .wait(WaitOn::Any, 16, Timeout::After(Duration::ZERO))
        .unwrap();
    assert!(queued.is_empty(), "{queued:?}");
    // And a system with NDK reports success.
    let with = SimFabric::new(SimOptions::default());
    let b = with
        .add_host("b", 2, B)
        .unwrap()
        .open(OpenAs::default())
        .unwrap();
    assert_eq!(b.info().unwrap().ndk_status, NtStatus::SUCCESS);
}

#[test]
fn the_driver_trace_of_a_peer_disconnect_through_the_client() {
    use ndkdisc_client::sim::{NdkCallback, Trace};
    let p = pair(4793);
    let b_host = p.fabric.host("b").unwrap();
    b_host.capture_trace(256);
    let a_disconnect = p.a.start_disconnect(p.ca).unwrap();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(e.cause, Some(Cause::Peer));
    assert_eq!(
        p.b.query(ConnectionId::from_raw(12345))
            .unwrap_err()
            .status(),
        Some(NtStatus::NOT_FOUND)
    );
    p.b.close_connection(p.cb).unwrap();
    p.a.finish_disconnect(a_disconnect, LIMIT).unwrap();
    let (trace, dropped) = b_host.take_trace();
    assert_eq!(dropped, 0);
    // B's driver saw the disconnect callback with the graceful reason, latched one terminal
    // event, refused the QUERY, and released the connection, in that order.
    let position = |f: &dyn Fn(&Trace) -> bool| {
        trace
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("{trace:#?}"))
    };
    let callback = position(&|t| {
        *t == Trace::NdkCallback {
            id: p.cb.raw(),
            callback: NdkCallback::Disconnect,
            status: NtStatus::SUCCESS,
            reason: Some(REASON_GRACEFUL),
        }
    });
    let terminal = position(
        &|t| matches!(t, Trace::Terminal { id, cause: Some(Cause::Peer), .. } if *id == p.cb.raw()),
    );
    let refused = position(
        &|t| matches!(t, Trace::IoctlFailed { status, .. } if *status == NtStatus::NOT_FOUND),
    );
    let closed = position(&|t| *t == Trace::ConnectionClosed { id: p.cb.raw() });
    assert!(callback < terminal && terminal < refused && refused < closed);
    assert_eq!(
        trace
            .iter()
            .filter(|t| matches!(t, Trace::Terminal { .. }))
            .count(),
        1
    );
    p.a.close();
    p.b.close();
}
