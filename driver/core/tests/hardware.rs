//! The engine against what RDMA adapters do (softndk's defaults, no kindness): sends that fail
//! after the peer went away, a dead CQ, an unanswered graceful disconnect, late link loss.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

use softndk::{CqError, Fault};

/// A short retry timeout (the tests of failed sends wait for it); a disconnect timeout long
/// enough that a test answering in time never races it on a loaded machine.
fn fast_world(completion: Completion) -> World {
    timed_world(completion, Duration::from_secs(30))
}

/// Sends outstanding when the peer disconnects fail after the retry timeout; the provider —
/// not ndkdisc — flushes the receives; QUERY says so, and there is still one terminal event.
fn sends_outstanding_at_a_peer_disconnect_fail_and_the_provider_flushes(mode: Completion) {
    let w = fast_world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    // A posted no receive: B's send waits for one (the adapter retries).
    assert_eq!(post(&hb, cb, PostKind::Send, 1), NtStatus::SUCCESS);
    let a_disconnect = disconnect_pending(&ha, ca);
    let e = disconnected(&hb, Cause::Peer);
    assert_eq!(
        (e.outstanding_receives, e.outstanding_sends),
        (3, 1),
        "{mode:?}: nothing flushed at the peer disconnect"
    );
    let q = query_until(&hb, cb, |q| q.outstanding_receives == 0);
    assert_eq!(q.sends_failed, 1, "{mode:?}: the send failed");
    assert_eq!(q.last_error_status, NtStatus::IO_TIMEOUT, "{mode:?}");
    assert_eq!(
        q.last_provider_error,
        softndk::provider_error::RETRY_EXCEEDED,
        "{mode:?}: the NDKPI 2.1 provider code"
    );
    assert_eq!(q.receives_cancelled, 3, "{mode:?}");
    assert!(q.provider_flushed, "{mode:?}: the provider flushed them");
    assert!(!q.flushed, "{mode:?}: ndkdisc did not");
    assert_eq!(w.fabric.stats().flush_calls, 0, "{mode:?}");
    assert!(
        terminal(&drain(&hb)).is_empty(),
        "{mode:?}: still exactly one terminal event"
    );
    // B answers A's disconnect.
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(done(&a_disconnect).0, NtStatus::SUCCESS, "{mode:?}");
    finish(&w, ha, hb);
}

per_mode!(sends_outstanding_at_a_peer_disconnect_fail_and_the_provider_flushes in {
    inline: Completion::Inline,
    hardware: Completion::hardware(2),
});

/// A fatal CQ error ends the connection with one `TransportError` event that says the provider
/// flushes; FLUSH afterwards reports Flushed instead of waiting for completions that never come.
fn a_fatal_cq_error_ends_the_connection_once_with_transport_error(mode: Completion) {
    let w = fast_world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 2);
    let cqs = w.fabric.cqs(w.hosts[1]);
    assert_eq!(cqs.len(), 1);
    assert!(w.fabric.inject_cq_error(cqs[0], CqError::Fatal));
    let e = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        (e.connection_id, e.cause, e.status),
        (cb, Some(Cause::TransportError), NtStatus::INTERNAL_ERROR),
        "{mode:?}"
    );
    assert!(e.provider_flushes, "{mode:?}");
    assert!(!e.callback_fired, "{mode:?}");
    let q = query(&hb, cb);
    assert!(q.cq_failed, "{mode:?}");
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS);
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    assert!(
        terminal(&drain(&hb)).is_empty(),
        "{mode:?}: one terminal event"
    );
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

per_mode!(a_fatal_cq_error_ends_the_connection_once_with_transport_error in {
    inline: Completion::Inline,
    hardware: Completion::hardware(3),
});

/// A graceful DISCONNECT nobody answers reports the timeout in its reply and in the Local
/// event.
#[test]
fn an_unanswered_graceful_disconnect_reports_the_timeout() {
    let w = timed_world(Completion::hardware(4), Duration::from_millis(150));
    let (ha, ca, hb, cb) = pair(&w);
    // B's provider saw the disconnect, but B's consumer never answers; A's link is lost first
    // so that B's close does not answer either.
    let victim = w.fabric.connectors(w.hosts[0]);
    assert!(w.fabric.inject(victim[0], Fault::LinkLoss));
    assert_eq!(graceful(&ha, ca), NtStatus::IO_TIMEOUT);
    let e = next_event(&ha, EventKind::Disconnected);
    assert_eq!(
        (e.cause, e.status),
        (Some(Cause::Local), NtStatus::IO_TIMEOUT)
    );
    assert_eq!(query(&ha, ca).terminal_status, NtStatus::IO_TIMEOUT);
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

/// Link loss on an idle connection is never noticed (no event); an end that sends notices it
/// after the retry timeout: one terminal event, and the send's failure in QUERY.
#[test]
fn link_loss_is_noticed_only_through_traffic() {
    let w = fast_world(Completion::hardware(5));
    let (ha, ca, hb, cb) = pair(&w);
    let victim = w.fabric.connectors(w.hosts[0]);
    assert!(w.fabric.inject(victim[0], Fault::LinkLoss));
    assert_eq!(post(&ha, ca, PostKind::Send, 1), NtStatus::SUCCESS);
    let e = next_event(&ha, EventKind::Disconnected);
    assert!(
        matches!(e.cause, Some(Cause::Peer) | Some(Cause::TransportError)),
        "the provider's verdict: {e:?}"
    );
    let q = query_until(&ha, ca, |q| q.sends_failed == 1);
    assert_eq!(q.sends_failed, 1);
    std::thread::sleep(Duration::from_millis(120));
    assert!(terminal(&drain(&ha)).is_empty(), "one terminal event on A");
    assert!(
        terminal(&drain(&hb)).is_empty(),
        "the idle end never noticed"
    );
    close_pair_and_finish(&w, (ha, ca), (hb, cb));
}
