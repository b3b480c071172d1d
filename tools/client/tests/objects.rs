//! Owned listeners and connections and the event iterator, through the public API: what a
//! drop closes, what `close` reports, and where an iteration ends.
#![cfg(feature = "sim")]

use std::net::SocketAddr;
use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::{OpenAs, SimFabric, SimOptions};
use ndkdisc_client::{
    Cause, ConnectionId, DisconnectMode, Error, ErrorKind, EventKind, NtStatus, Timeout, WaitOn,
};

mod common;
use common::{A, B, LIMIT, params};

const QUIET: Timeout = Timeout::After(Duration::from_millis(200));

/// A fabric with host `a`, and a handle on it.
fn host_a() -> (std::sync::Arc<SimFabric>, ndkdisc_client::Client) {
    let fabric = SimFabric::new(SimOptions::default());
    let a = fabric
        .add_host("a", 1, A)
        .unwrap()
        .open(OpenAs::default())
        .unwrap();
    (fabric, a)
}

#[test]
fn dropping_owned_objects_closes_them_and_the_iterator_ends_at_closed() {
    let (fabric, a) = host_a();
    let b = fabric
        .add_host("b", 2, B)
        .unwrap()
        .open(OpenAs::default())
        .unwrap();
    {
        let listener = b.open_listener(2, SocketAddr::new(B, 0), 0).unwrap();
        let port = listener.bound().port();
        assert_ne!(port, 0, "the driver chose a port");
        let client_end = a.open_connection(&params(port), LIMIT).unwrap();
        let accepted = b.events(WaitOn::Any, LIMIT).next().unwrap().unwrap();
        assert_eq!(accepted.kind, EventKind::Accepted);
        let server_end = b.adopt_connection(ConnectionId::of(&accepted));
        server_end.post(PostKind::Receive, 2, 512).unwrap();
        // The client's end goes out of scope while connected: the drop resets it.
        drop(client_end);
        let first = server_end.events(LIMIT).next().unwrap().unwrap();
        assert_eq!(
            (first.kind, first.cause),
            (EventKind::Disconnected, Some(Cause::Peer)),
            "{first:?}"
        );
        let q = server_end.query().unwrap();
        assert_eq!(q.remote.map(|r| r.ip()), Some(A));
        assert_eq!(
            q.outstanding_receives, 2,
            "nothing flushed at the peer's reset"
        );
        // Explicit close reports the driver's answer; the iterator then ends after Closed.
        let id = server_end.id();
        server_end.close().unwrap();
        let after: Vec<EventKind> = b
            .events(WaitOn::Connection(id), LIMIT)
            .map(|e| e.unwrap().kind)
            .collect();
        assert_eq!(after.last(), Some(&EventKind::Closed), "{after:?}");
        // The listener is dropped here.
    }
    // A's dropped end: its own Closed came too, and the id is gone.
    let a_kinds: Vec<EventKind> = a
        .events(WaitOn::Any, QUIET)
        .map_while(Result::ok)
        .map(|e| e.kind)
        .collect();
    assert!(a_kinds.contains(&EventKind::Closed), "{a_kinds:?}");
    // The dropped listener accepts no more: a new connect is refused.
    let e = a.open_connection(&params(4900), LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectFailed, "{e}");
    a.close();
    b.close();
    assert_eq!(fabric.wait_released(Duration::from_secs(5)), 0);
}

#[test]
fn a_failed_open_connection_is_closed_and_an_iterator_error_ends_it() {
    let (fabric, a) = host_a();
    fabric.add_host("b", 2, B).unwrap();
    let e = a.open_connection(&params(4901), LIMIT).unwrap_err();
    let Error::ConnectFailed {
        connection_id,
        status,
    } = e
    else {
        panic!("{e}");
    };
    assert_eq!(status, NtStatus::CONNECTION_REFUSED);
    // Closed already: CLOSE again finds nothing to close once the Closed event is taken.
    let kinds: Vec<EventKind> = a
        .events(WaitOn::Connection(connection_id), LIMIT)
        .map(|e| e.unwrap().kind)
        .collect();
    assert_eq!(kinds, [EventKind::ConnectFailed, EventKind::Closed]);
    assert_eq!(
        a.close_connection(connection_id).unwrap_err().status(),
        Some(NtStatus::NOT_FOUND)
    );
    // A quiet handle: the timeout is returned once, then the iterator is done.
    let mut quiet = a.events(WaitOn::Any, QUIET);
    assert_eq!(
        quiet.next().unwrap().unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert!(quiet.next().is_none());
    // An owned connection kept past its object by into_id stays open.
    let listener = fabric.host("b").unwrap().open(OpenAs::default()).unwrap();
    let l = listener
        .open_listener(2, SocketAddr::new(B, 4902), 0)
        .unwrap();
    let kept = a.open_connection(&params(4902), LIMIT).unwrap().into_id();
    assert_eq!(
        a.query(kept).unwrap().state,
        ndkdisc_client::ConnState::Connected
    );
    a.disconnect(kept, DisconnectMode::Abortive).unwrap();
    l.close().unwrap();
}
