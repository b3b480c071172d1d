//! The simulator as a test bench, through the client API: faults of the network and the peer
//! injected on one connection, adapter removal, and the drivers' quotas.
#![cfg(feature = "sim")]

use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::{ConnectionFault, Quotas, SimOptions, reason_name};
use ndkdisc_client::{Cause, ErrorKind, EventKind, NtStatus, Timeout, WaitOn};

mod common;
use common::{LIMIT, pair_on, params};

const QUIET: Timeout = Timeout::After(Duration::from_millis(300));

#[test]
fn link_loss_is_silent_until_a_send_is_not_acknowledged() {
    let p = pair_on(SimOptions::default(), 4801);
    let a = p.fabric.host("a").unwrap();
    a.inject(&p.a, p.ca, ConnectionFault::LinkLoss).unwrap();
    // As on hardware, an idle end is not told.
    for (c, id) in [(&p.a, p.ca), (&p.b, p.cb)] {
        let e = c.wait(WaitOn::Connection(id), 4, QUIET).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    }
    // A send is not acknowledged: after the retry timeout it fails and the connection ends.
    p.a.post(p.ca, PostKind::Send, 1, 512).unwrap();
    let e = p.a.wait(WaitOn::Connection(p.ca), 4, LIMIT).unwrap()[0];
    assert_eq!(e.kind, EventKind::Disconnected);
    assert_eq!(e.cause, Some(Cause::TransportError), "{e:?}");
    assert!(
        e.provider_flushes,
        "the provider flushes the QP in the error state"
    );
    let q = p.a.query(p.ca).unwrap();
    assert_eq!(q.sends_failed, 1, "{q:?}");
    // B, idle, still knows nothing.
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, QUIET).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

#[test]
fn a_peer_reset_reaches_the_end_it_is_injected_on() {
    let p = pair_on(SimOptions::default(), 4802);
    p.b.post(p.cb, PostKind::Receive, 2, 1024).unwrap();
    let b = p.fabric.host("b").unwrap();
    b.inject(&p.b, p.cb, ConnectionFault::PeerReset).unwrap();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(
        (e.kind, e.cause),
        (EventKind::Disconnected, Some(Cause::Peer))
    );
    assert!(e.callback_fired);
    assert_eq!(e.provider_reason.and_then(reason_name), Some("reset"));
    // ndkdisc still flushes nothing on a peer disconnect.
    assert_eq!(e.outstanding_receives, 2);
    assert_eq!(p.fabric.stats().flush_calls, 0);
    // A graceful one, the same way.
    let p = pair_on(SimOptions::default(), 4803);
    let a = p.fabric.host("a").unwrap();
    a.inject(&p.a, p.ca, ConnectionFault::PeerDisconnect)
        .unwrap();
    let e = p.a.wait(WaitOn::Connection(p.ca), 4, LIMIT).unwrap()[0];
    assert_eq!(e.cause, Some(Cause::Peer));
    assert_eq!(e.provider_reason.and_then(reason_name), Some("graceful"));
}

#[test]
fn a_fault_needs_a_live_connection_of_the_handle() {
    let p = pair_on(SimOptions::default(), 4804);
    let a = p.fabric.host("a").unwrap();
    // Not a connection of this handle.
    let e = a
        .inject(&p.a, p.cb, ConnectionFault::PeerReset)
        .unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::NOT_FOUND), "{e}");
    // Ended: nothing left to break.
    p.a.disconnect(p.ca, ndkdisc_client::DisconnectMode::Abortive)
        .unwrap();
    let e = a
        .inject(&p.a, p.ca, ConnectionFault::PeerReset)
        .unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::INVALID_DEVICE_STATE), "{e}");
}

#[test]
fn adapter_removal_ends_the_hosts_connections_and_resets_their_peers() {
    let p = pair_on(SimOptions::default(), 4805);
    p.fabric.host("b").unwrap().remove_adapter();
    let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
    assert_eq!(
        (e.kind, e.cause),
        (EventKind::Disconnected, Some(Cause::AdapterRemoved))
    );
    let e = p.a.wait(WaitOn::Connection(p.ca), 4, LIMIT).unwrap()[0];
    assert_eq!(e.cause, Some(Cause::Peer));
    assert_eq!(e.provider_reason.and_then(reason_name), Some("reset"));
    // The interface is gone for new work.
    let e =
        p.b.listen(2, "10.0.0.2:4806".parse().unwrap(), 0)
            .unwrap_err();
    assert!(e.status().is_some_and(|s| !s.is_success()), "{e}");
}

#[test]
fn quotas_limit_each_handle_as_configured() {
    let options = SimOptions {
        quotas: Quotas {
            max_connections: Some(1),
            ..Quotas::default()
        },
        ..SimOptions::default()
    };
    let p = pair_on(options, 4807);
    assert_eq!(p.a.info().unwrap().max_connections, 1);
    let e = p.a.connect(&params(4807), LIMIT).unwrap_err();
    assert_eq!(e.status(), Some(NtStatus::QUOTA_EXCEEDED), "{e}");
}

#[test]
fn an_adapter_cq_error_ends_the_connection_with_a_transport_error() {
    for (fault, status) in [
        (ConnectionFault::CqOverrun, NtStatus::BUFFER_OVERFLOW),
        (ConnectionFault::CqFatal, NtStatus::INTERNAL_ERROR),
    ] {
        let p = pair_on(SimOptions::default(), 4808);
        p.b.post(p.cb, PostKind::Receive, 2, 1024).unwrap();
        let b = p.fabric.host("b").unwrap();
        b.inject(&p.b, p.cb, fault).unwrap();
        let e = p.b.wait(WaitOn::Connection(p.cb), 4, LIMIT).unwrap()[0];
        assert_eq!(
            (e.kind, e.cause, e.status),
            (EventKind::Disconnected, Some(Cause::TransportError), status),
            "{fault:?}"
        );
        assert!(e.provider_flushes, "{fault:?}");
        let q = p.b.query(p.cb).unwrap();
        assert!(q.cq_failed, "{fault:?}: {q:?}");
    }
}
