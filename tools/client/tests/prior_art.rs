//! Some of the prior-art disconnect bugs (see TESTING.md) checked from the outside: through
//! the public client API over the simulation backend, with the hardware-like provider (several
//! provider threads), as a user of ndkdisc would meet them.
#![cfg(feature = "sim")]

use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::SimOptions;
use ndkdisc_client::{
    Cause, Client, ConnState, ConnectionId, DisconnectMode, Event, EventKind, WaitOn,
};
use softndk::Completion;

mod common;
use common::{LIMIT, Pair};

const PORT: u16 = 4791;

/// Two hosts on a hardware-like fabric, A connected to B, both establishment events read.
fn pair() -> Pair {
    common::pair_on(
        SimOptions {
            completion: Completion::hardware(7),
            ..SimOptions::default()
        },
        PORT,
    )
}

/// The next event of connection `id` on `client`: `Disconnected` with `cause`.
fn disconnected(client: &Client, id: ConnectionId, cause: Cause) -> Event {
    let e = client.wait(WaitOn::Connection(id), 4, LIMIT).unwrap()[0];
    assert_eq!(
        (ConnectionId::of(&e), e.kind, e.cause),
        (id, EventKind::Disconnected, Some(cause))
    );
    e
}

/// Close both handles; every NDK object is then released.
fn finish(p: Pair) {
    p.a.close();
    p.b.close();
    assert_eq!(p.fabric.wait_released(Duration::from_secs(5)), 0);
}

#[test]
fn a_wait_registered_after_the_disconnect_still_fires() {
    // aspnetcore#17278 (also AspNetKatana#141): a disconnect token created after the client
    // had gone never fired.
    let p = pair();
    p.a.disconnect(p.ca, DisconnectMode::Abortive).unwrap();
    assert!(p.fabric.settle(Duration::from_secs(10)));
    // Nobody was waiting on B when it happened; the wait made now fires at once.
    let e = disconnected(&p.b, p.cb, Cause::Peer);
    // And so does every later one, with the same record flagged as already delivered.
    let again = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!((again.seq, again.already_delivered), (e.seq, true));
    finish(p);
}

#[test]
fn a_local_disconnect_ends_the_connection_without_the_peers_cooperation() {
    // perftest#201: the server never called rdma_disconnect, so the client waited for ever for
    // its DISCONNECTED event.
    let p = pair();
    // B does nothing at all; A's own abortive disconnect gives A its terminal event.
    p.a.disconnect(p.ca, DisconnectMode::Abortive).unwrap();
    disconnected(&p.a, p.ca, Cause::LocalAbortive);
    assert_eq!(p.a.query(p.ca).unwrap().state, ConnState::Disconnected);
    finish(p);
}

#[test]
fn disconnecting_a_connection_the_peer_already_reset_is_harmless() {
    // spdk#1704 (also perftest#121, #246): rdma_disconnect after the peer had reset the
    // connection failed with EINVAL or ECONNRESET and was logged as an error.
    let p = pair();
    p.a.disconnect(p.ca, DisconnectMode::Abortive).unwrap();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(e.cause, Some(Cause::Peer));
    p.b.disconnect(p.cb, DisconnectMode::Abortive)
        .expect("an abortive disconnect after the peer's reset");
    p.b.abort(p.cb).expect("ABORT after the peer's reset");
    p.a.disconnect(p.ca, DisconnectMode::Abortive)
        .expect("the resetting side disconnects again");
    // No second terminal event: what is new on B is only the Closed of its CLOSE.
    p.b.close_connection(p.cb).unwrap();
    let rest = p.b.wait_new(WaitOn::Any, 8, LIMIT).unwrap();
    assert!(
        rest.iter()
            .all(|e| e.kind == EventKind::Closed && ConnectionId::of(e) == p.cb),
        "{rest:?}"
    );
    finish(p);
}

#[test]
fn every_posted_request_completes_exactly_once_flushed_or_not() {
    // libfabric#4756: the provider silently dropped flush completions, so an application
    // counting its outstanding sends never reached zero.
    let p = pair();
    p.b.post(p.cb, PostKind::Receive, 4, 1024).unwrap();
    p.a.post(p.ca, PostKind::Send, 3, 1024).unwrap();
    // A's sends complete into three of B's receives; B flushes the fourth.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (p.b.query(p.cb).unwrap().receives_succeeded < 3
        || p.a.query(p.ca).unwrap().outstanding_sends > 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    p.b.flush(p.cb).unwrap();
    let f = p.b.wait_new(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(f.kind, EventKind::Flushed);
    let q = p.b.query(p.cb).unwrap();
    assert_eq!(q.outstanding_receives, 0, "{q:?}");
    assert_eq!(
        (
            q.receives_succeeded,
            q.receives_cancelled,
            q.receives_failed
        ),
        (3, 1, 0),
        "each receive completed exactly once: {q:?}"
    );
    let q = p.a.query(p.ca).unwrap();
    assert_eq!(
        (q.outstanding_sends, q.sends_succeeded),
        (0, 3),
        "each send completed exactly once: {q:?}"
    );
    assert_eq!(p.fabric.stats().flush_calls, 1, "the one FLUSH asked for");
    finish(p);
}
