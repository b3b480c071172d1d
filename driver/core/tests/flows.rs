//! The engine end to end: IOCTLs in, NDK through softndk's real tables, events out.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

fn graceful_disconnect_gives_each_side_exactly_one_terminal_event(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let a_disconnect = disconnect_pending(&ha, ca);
    let db = disconnected(&hb, Cause::Peer);
    assert_eq!(db.connection_id, cb);
    assert_eq!(
        db.provider_reason,
        Some(reason::GRACEFUL),
        "the NDKPI 2.1 reason reaches user mode"
    );
    assert!(db.callback_fired);
    let q = query(&hb, cb);
    assert_eq!(q.state, ConnState::Disconnected);
    assert!(q.callback_fired);
    assert!(!a_disconnect.is_done(), "{mode:?}: B has not answered yet");
    // B answers with its own graceful DISCONNECT (NdkDisconnect completes the handshake).
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(
        done(&a_disconnect).0,
        NtStatus::SUCCESS,
        "{mode:?}: A's DISCONNECT reports the real outcome once B answered"
    );
    let da = disconnected(&ha, Cause::Local);
    assert_eq!(da.connection_id, ca);
    assert_eq!(da.status, NtStatus::SUCCESS, "{mode:?}");
    assert!(!da.callback_fired, "no NDK callback for our own disconnect");
    assert_eq!(
        w.fabric.stats().disconnect_timeouts,
        0,
        "{mode:?}: answered, not timed out"
    );
    // A second disconnect is harmless and adds no terminal event.
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS);
    assert_eq!(graceful(&ha, ca), NtStatus::SUCCESS);
    close(&ha, ca);
    close(&hb, cb);
    for h in [&ha, &hb] {
        let rest = drain(h);
        assert!(
            terminal(&rest).is_empty(),
            "{mode:?}: no second terminal event: {rest:?}"
        );
        assert!(rest.iter().any(|e| e.kind == EventKind::Closed));
    }
    finish(&w, ha, hb);
}

fn abortive_disconnect_and_abort_reach_the_peer_as_a_reset(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    // A wait pended on B's connection, then A resets the connection.
    let pend = wait_pending(&hb, Some(cb), 4);
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS);
    let (st, out) = done(&pend);
    assert_eq!(st, NtStatus::SUCCESS);
    let evs = decode_events(&out);
    assert_eq!(
        (evs[0].cause, evs[0].provider_reason),
        (Some(Cause::Peer), Some(reason::RESET)),
        "{mode:?}"
    );
    disconnected(&ha, Cause::LocalAbortive);
    // B's terminal event was delivered: a wait on the connection no longer pends, it gets
    // the record again, flagged (level-triggered per connection).
    let (st, out) = done(&wait_pending(&hb, Some(cb), 4));
    assert_eq!(st, NtStatus::SUCCESS);
    let again = decode_events(&out);
    assert_eq!(again[0].seq, evs[0].seq, "{mode:?}");
    assert!(again[0].already_delivered);
    // ABORT on B: no second terminal event.
    assert_eq!(abort(&hb, cb), NtStatus::SUCCESS);
    assert!(query(&hb, cb).aborted);
    assert!(terminal(&drain(&hb)).is_empty());
    // ABORT cancels the waits pended on a connection (one still established: once its
    // terminal event is delivered a wait on it no longer pends).
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    let cb2 = next_event(&hb, EventKind::Accepted).connection_id;
    let pend = wait_pending(&hb, Some(cb2), 4);
    assert_eq!(abort(&hb, cb2), NtStatus::SUCCESS);
    assert_eq!(done(&pend).0, NtStatus::CANCELLED);
    assert!(query(&hb, cb2).aborted);
    finish(&w, ha, hb);
}

fn refused_connect_reports_connect_failed_with_the_reason(mode: Completion) {
    let w = world(mode);
    let ha = HostHandle::open(&w.engine).unwrap();
    let r = connect(&ha, 9);
    assert_eq!(r.status, NtStatus::CONNECTION_REFUSED, "{mode:?}");
    let e = next_event(&ha, EventKind::ConnectFailed);
    assert_eq!(
        (e.connection_id, e.status),
        (r.connection_id, NtStatus::CONNECTION_REFUSED)
    );
    assert_eq!(query(&ha, r.connection_id).state, ConnState::Failed);
    // A wrong interface fails the request itself.
    let req = ConnectRequest {
        if_index: 77,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(B, 1),
    };
    assert_eq!(
        done(&ha.ioctl(Ioctl::Connect.code(), &bytes(&req), ConnectReply::SIZE)).0,
        NtStatus::NOT_FOUND
    );
    close(&ha, r.connection_id);
    let hb = HostHandle::open(&w.engine).unwrap();
    finish(&w, ha, hb);
}

fn closing_a_handle_cancels_its_waits_and_resets_its_peers(mode: Completion) {
    let w = world(mode);
    let (ha, _ca, hb, cb) = pair(&w);
    let pend = wait_pending(&ha, None, 4);
    let peer_wait = wait_pending(&hb, Some(cb), 4);
    ha.close();
    assert_eq!(done(&pend).0, NtStatus::CANCELLED, "{mode:?}");
    let (st, out) = done(&peer_wait);
    assert_eq!(st, NtStatus::SUCCESS);
    let evs = decode_events(&out);
    assert_eq!(
        (evs[0].cause, evs[0].provider_reason),
        (Some(Cause::Peer), Some(reason::RESET))
    );
    hb.close();
    assert_released(&w);
}

/// `LIST_OBJECTS` on `h` with room for `room` entries: (status, count, total, entries).
fn list(h: &HostHandle, room: usize) -> (NtStatus, usize, u32, Vec<ObjectEntry>) {
    let (status, out) = done(&h.ioctl(
        Ioctl::ListObjects.code(),
        &bytes(&ListObjectsRequest),
        BATCH_HEADER_SIZE + room * ObjectEntry::SIZE,
    ));
    if !status.is_success() {
        return (status, 0, 0, Vec::new());
    }
    let (count, total) = decode_objects_header(&out).unwrap();
    assert_eq!(out.len(), BATCH_HEADER_SIZE + count * ObjectEntry::SIZE);
    let entries = (0..count)
        .map(|i| ObjectEntry::decode(&out[BATCH_HEADER_SIZE + i * ObjectEntry::SIZE..]).unwrap())
        .collect();
    (status, count, total, entries)
}

#[test]
fn list_objects_shows_the_handles_connections_and_listeners() {
    let w = world(Completion::Inline);
    let (ha, ca, hb, cb) = pair(&w);
    assert_eq!(post(&hb, cb, PostKind::Receive, 3), NtStatus::SUCCESS);
    // B: its accepted connection (with its receives) and its listener; nobody else's.
    let (_, count, total, entries) = list(&hb, 8);
    assert_eq!((count, total), (2, 2), "{entries:?}");
    let conn = entries[0];
    assert_eq!(
        (conn.id, conn.kind, conn.state),
        (cb, ObjectKind::Connection, Some(ConnState::Connected))
    );
    assert_eq!((conn.outstanding_receives, conn.outstanding_sends), (3, 0));
    assert_eq!(conn.local.map(|a| a.port()), Some(4791));
    assert_eq!(conn.remote.map(|a| a.ip()), Some(A));
    let listener = entries[1];
    assert_eq!(
        (listener.kind, listener.state),
        (ObjectKind::Listener, None)
    );
    assert_eq!(listener.local.map(|a| a.port()), Some(4791));
    assert!(
        entries.iter().all(|e| e.id != ca),
        "A's connection is not B's"
    );
    // A: only its connection.
    let (_, _, total, entries) = list(&ha, 8);
    assert_eq!(total, 1);
    assert_eq!(
        (entries[0].id, entries[0].remote.map(|a| a.ip())),
        (ca, Some(B))
    );
    // Room for one: the first, and how many exist.
    let (status, count, total, entries) = list(&hb, 1);
    assert_eq!((status, count, total), (NtStatus::SUCCESS, 1, 2));
    assert_eq!(entries[0].id, cb);
    let (_, count, total, _) = list(&hb, 0);
    assert_eq!((count, total), (0, 2));
    // Not even room for the header.
    let (status, _) = done(&hb.ioctl(
        Ioctl::ListObjects.code(),
        &bytes(&ListObjectsRequest),
        BATCH_HEADER_SIZE - 1,
    ));
    assert_eq!(status, NtStatus::BUFFER_TOO_SMALL);
    // Closed: gone from the list.
    close(&hb, cb);
    let (_, _, total, entries) = list(&hb, 8);
    assert_eq!(total, 1, "{entries:?}");
    assert_eq!(entries[0].kind, ObjectKind::Listener);
    close(&ha, ca);
    finish(&w, ha, hb);
}

#[test]
fn get_info_reads_the_clock_that_dates_events() {
    // The clock GET_INFO reports is the one events are stamped with: read before and after an
    // event, it brackets the event's timestamp (the host clock advances in 100 ns units).
    let w = world(Completion::Inline);
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let before = info(&ha).clock;
    std::thread::sleep(std::time::Duration::from_millis(2));
    let r = connect(&ha, 4791);
    let connected = next_event(&ha, EventKind::Connected);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let after = info(&ha).clock;
    assert!(
        before < connected.timestamp && connected.timestamp < after,
        "{before} < {} < {after}",
        connected.timestamp
    );
    let accepted = next_event(&hb, EventKind::Accepted);
    close(&ha, r.connection_id);
    close(&hb, accepted.connection_id);
    finish(&w, ha, hb);
}

#[test]
fn a_provider_firing_the_callback_twice_still_yields_one_event() {
    let w = world(Completion::Inline);
    misbehave_b(
        &w,
        Misbehaviour {
            duplicate_disconnect_callback: true,
            ..Default::default()
        },
    );
    let (ha, ca, hb, cb) = pair(&w);
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let _a_disconnect = disconnect_pending(&ha, ca);
    let evs = events(&hb);
    assert_eq!(terminal(&evs).len(), 1);
    assert!(
        terminal(&drain(&hb)).is_empty(),
        "the duplicate callback produced no second event"
    );
    assert_eq!(
        w.fabric.stats().disconnect_callbacks,
        2,
        "the provider really did call twice"
    );
    let (_, out) = done(&hb.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    assert_eq!(InfoReply::parse(&out).unwrap().duplicate_callbacks, 1);
    close(&hb, cb);
    finish(&w, ha, hb);
}

fn adapter_removal_ends_the_connection_with_cause_adapter_removed(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 2);
    w.fabric.remove_adapters(w.hosts[1]);
    let db = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        (db.connection_id, db.cause, db.status),
        (cb, Some(Cause::AdapterRemoved), NtStatus::DEVICE_REMOVED),
        "{mode:?}: the cause says the adapter went away, not the peer"
    );
    assert!(!db.callback_fired, "{mode:?}");
    // The peer's provider saw B's end close: a reset.
    let da = next_event(&ha, EventKind::Disconnected);
    assert_eq!(
        (da.connection_id, da.cause, da.provider_reason),
        (ca, Some(Cause::Peer), Some(reason::RESET)),
        "{mode:?}"
    );
    // B's connection released its NDK objects at once; its id stays until CLOSE.
    assert_eq!(query(&hb, cb).state, ConnState::Disconnected, "{mode:?}");
    close_pair_and_finish(&w, (hb, cb), (ha, ca));
}

/// A platform that is not told of the removal still learns of it from the provider's
/// disconnect callback: `Peer`, with the provider's reason.
#[test]
fn without_the_removal_notice_the_providers_callback_ends_the_connection() {
    let w = world_without_removal_notice(Completion::Thread);
    let (ha, ca, hb, cb) = pair(&w);
    w.fabric.remove_adapters(w.hosts[1]);
    let db = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        (db.connection_id, db.cause, db.provider_reason),
        (cb, Some(Cause::Peer), Some(reason::ADAPTER_REMOVED))
    );
    let da = next_event(&ha, EventKind::Disconnected);
    assert_eq!(
        (da.connection_id, da.provider_reason),
        (ca, Some(reason::RESET))
    );
    finish(&w, ha, hb);
}

#[test]
fn an_event_racing_a_wait_cancellation_is_not_lost() {
    let w = world(Completion::Inline);
    let (ha, ca, hb, _cb) = pair(&w);
    let pend = wait_pending(&hb, None, 4);
    pend.begin_cancel();
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let _a_disconnect = disconnect_pending(&ha, ca);
    assert!(
        !pend.is_done(),
        "the event did not use the wait being cancelled"
    );
    pend.run_cancel_routine();
    assert_eq!(done(&pend).0, NtStatus::CANCELLED);
    let e = next_event(&hb, EventKind::Disconnected);
    assert_eq!(
        e.cause,
        Some(Cause::Peer),
        "the event stayed queued for the next wait"
    );
    finish(&w, ha, hb);
}

#[test]
fn another_handles_ids_are_not_found_and_bad_input_has_its_status() {
    let w = world(Completion::Inline);
    let (ha, ca, hb, cb) = pair(&w);
    for id in [ca, 12345] {
        assert_eq!(abort(&hb, id), NtStatus::NOT_FOUND);
        assert_eq!(close_status(&hb, id), NtStatus::NOT_FOUND);
        let (st, _) = done(&hb.ioctl(
            Ioctl::Query.code(),
            &bytes(&QueryRequest { connection_id: id }),
            QueryReply::SIZE,
        ));
        assert_eq!(st, NtStatus::NOT_FOUND);
        assert_eq!(done(&wait_pending(&hb, Some(id), 1)).0, NtStatus::NOT_FOUND);
    }
    // Every IOCTL: truncated input, bad version, foreign code.
    for &i in Ioctl::ALL {
        assert_eq!(
            done(&hb.ioctl(i.code(), &[1, 0], 256)).0,
            NtStatus::INVALID_PARAMETER,
            "{i:?} truncated"
        );
    }
    let mut bad = bytes(&QueryRequest { connection_id: cb });
    bad[0] = 9;
    assert_eq!(
        done(&hb.ioctl(Ioctl::Query.code(), &bad, QueryReply::SIZE)).0,
        NtStatus::REVISION_MISMATCH
    );
    assert_eq!(
        done(&hb.ioctl(0x0022_0000, &bad, 0)).0,
        NtStatus::INVALID_DEVICE_REQUEST
    );
    let (st, _) = done(&hb.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest { connection_id: cb }),
        QueryReply::SIZE - 1,
    ));
    assert_eq!(st, NtStatus::BUFFER_TOO_SMALL);
    finish(&w, ha, hb);
}

fn a_peer_disconnect_leaves_posted_receives_outstanding_until_flush(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair(&w);
    assert_eq!(
        post(&hb, cb, PostKind::Receive, 4),
        NtStatus::SUCCESS,
        "{mode:?}"
    );
    assert_eq!(query(&hb, cb).outstanding_receives, 4);
    // The peer goes away.
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let _a_disconnect = disconnect_pending(&ha, ca);
    let e = disconnected(&hb, Cause::Peer);
    assert_eq!(
        e.outstanding_receives, 4,
        "{mode:?}: the event says what is still posted"
    );
    assert!(w.fabric.wait_idle(WAIT));
    let q = query(&hb, cb);
    assert_eq!(q.outstanding_receives, 4, "{mode:?}: nothing was flushed");
    assert_eq!(
        q.receives_cancelled, 0,
        "{mode:?}: no receive completed as flushed"
    );
    assert_eq!(
        w.fabric.stats().flush_calls,
        0,
        "{mode:?}: ndkdisc made no NdkFlush call"
    );
    // The user decides: FLUSH. Every receive completes (STATUS_CANCELLED), then Flushed.
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS);
    let f = next_event(&hb, EventKind::Flushed);
    assert_eq!(f.connection_id, cb);
    let q = query(&hb, cb);
    assert_eq!(q.outstanding_receives, 0, "{mode:?}");
    assert_eq!(
        (q.receives_cancelled, q.receives_succeeded),
        (4, 0),
        "{mode:?}: every posted receive completed with STATUS_CANCELLED"
    );
    assert_eq!(w.fabric.stats().flush_calls, 1);
    assert!(query(&hb, cb).flushed);
    finish(&w, ha, hb);
}

fn sends_complete_into_the_peers_posted_receives(mode: Completion) {
    let w = world(mode);
    let (ha, ca, hb, cb) = pair_with_receives(&w, 3);
    assert_eq!(
        post(&ha, ca, PostKind::Send, 2),
        NtStatus::SUCCESS,
        "{mode:?}"
    );
    assert!(w.fabric.wait_idle(WAIT));
    query_until(&ha, ca, |q| q.outstanding_sends == 0);
    query_until(&hb, cb, |q| q.outstanding_receives == 1);
    assert_eq!(
        query(&ha, ca).outstanding_sends,
        0,
        "{mode:?}: both sends completed"
    );
    assert_eq!(
        query(&hb, cb).outstanding_receives,
        1,
        "{mode:?}: two receives consumed"
    );
    assert_eq!(query(&hb, cb).receives_succeeded, 2, "{mode:?}");
    assert_eq!(query(&ha, ca).sends_succeeded, 2, "{mode:?}");
    // Bytes: the provider's count of what the receives took (two 256-byte sends), and the
    // bytes of the sends posted; a failed POST adds nothing.
    assert_eq!(query(&hb, cb).received_bytes, 512, "{mode:?}");
    assert_eq!(query(&ha, ca).send_bytes_posted, 512, "{mode:?}");
    assert_eq!(query(&hb, cb).send_bytes_posted, 0, "{mode:?}");
    // Sends need a connection.
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let _a_disconnect = disconnect_pending(&ha, ca);
    assert_eq!(
        post(&ha, ca, PostKind::Send, 1),
        NtStatus::INVALID_DEVICE_STATE
    );
    assert_eq!(query(&ha, ca).send_bytes_posted, 512, "{mode:?}");
    finish(&w, ha, hb);
}

#[test]
fn a_provider_that_flushes_on_its_own_is_tolerated() {
    let w = world(Completion::Thread);
    misbehave_b(
        &w,
        Misbehaviour {
            flush_on_peer_disconnect: true,
            ..Default::default()
        },
    );
    let (ha, ca, hb, cb) = pair_with_receives(&w, 2);
    // Graceful: A's DISCONNECT pends until B answers (B's close, at the latest).
    let _a_disconnect = disconnect_pending(&ha, ca);
    disconnected(&hb, Cause::Peer);
    query_until(&hb, cb, |q| q.outstanding_receives == 0);
    assert_eq!(
        query(&hb, cb).outstanding_receives,
        0,
        "the provider's flush completed them"
    );
    assert_eq!(
        w.fabric.stats().flush_calls,
        0,
        "still no NdkFlush from ndkdisc"
    );
    assert!(
        drain(&hb).iter().all(|e| e.kind != EventKind::Flushed),
        "no Flushed: nobody asked for one"
    );
    // A FLUSH afterwards finds nothing outstanding and reports at once.
    assert_eq!(flush(&hb, cb), NtStatus::SUCCESS);
    assert_eq!(next_event(&hb, EventKind::Flushed).connection_id, cb);
    finish(&w, ha, hb);
}

#[test]
fn every_ioctl_rejects_every_truncated_input_through_the_engine() {
    let w = world(Completion::Inline);
    let h = HostHandle::open(&w.engine).unwrap();
    let full: Vec<(Ioctl, Vec<u8>)> = vec![
        (Ioctl::GetInfo, bytes(&GetInfoRequest)),
        (Ioctl::ListAdapters, bytes(&ListAdaptersRequest)),
        (
            Ioctl::Listen,
            bytes(&ListenRequest {
                if_index: 2,
                backlog: 0,
                local: SocketAddr::new(B, 1),
            }),
        ),
        (Ioctl::Connect, connect_request(1)),
        (
            Ioctl::Wait,
            bytes(&WaitRequest {
                connection: None,
                nonblocking: true,
            }),
        ),
        (Ioctl::Query, bytes(&QueryRequest { connection_id: 1 })),
        (
            Ioctl::Post,
            bytes(&PostRequest {
                connection_id: 1,
                kind: PostKind::Receive,
                count: 1,
                length: 1,
            }),
        ),
        (
            Ioctl::Disconnect,
            bytes(&DisconnectRequest {
                connection_id: 1,
                abortive: false,
            }),
        ),
        (Ioctl::Abort, bytes(&AbortRequest { connection_id: 1 })),
        (Ioctl::Flush, bytes(&FlushRequest { connection_id: 1 })),
        (Ioctl::Close, bytes(&CloseRequest { id: 1 })),
    ];
    for (ioctl, input) in &full {
        for len in 0..input.len() {
            let (st, _) = done(&h.ioctl(ioctl.code(), &input[..len], 512));
            assert_eq!(
                st,
                NtStatus::INVALID_PARAMETER,
                "{ioctl:?} truncated to {len}"
            );
        }
        let mut bad = input.clone();
        bad[0] = 2;
        assert_eq!(
            done(&h.ioctl(ioctl.code(), &bad, 512)).0,
            NtStatus::REVISION_MISMATCH,
            "{ioctl:?}"
        );
        let mut bad = input.clone();
        bad[4] = 1;
        assert_eq!(
            done(&h.ioctl(ioctl.code(), &bad, 512)).0,
            NtStatus::INVALID_PARAMETER,
            "{ioctl:?} reserved"
        );
    }
    let hb = HostHandle::open(&w.engine).unwrap();
    finish(&w, h, hb);
}

#[test]
fn quotas_hold_and_rejected_incoming_connections_are_counted() {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion: Completion::Inline,
        ..Default::default()
    }));
    fabric.add_host(HostConfig::new(1, [A]));
    fabric.add_host(HostConfig::new(2, [B]));
    let platform = HostPlatform::new(Arc::clone(&fabric), Vec::new());
    let config = Config {
        limits: ndkdisc_core::events::Limits {
            max_connections: 2,
            max_waits: 1,
        },
        max_listeners: 1,
        ..Config::default()
    };
    let engine = ndkdisc_host::engine(platform, config);
    let ha = HostHandle::open(&engine).unwrap();
    let hb = HostHandle::open(&engine).unwrap();
    listen(&hb, 4791);
    // A second listener is over the quota.
    let req = ListenRequest {
        if_index: 2,
        backlog: 0,
        local: SocketAddr::new(B, 4792),
    };
    assert_eq!(
        done(&hb.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE)).0,
        NtStatus::QUOTA_EXCEEDED
    );
    // Two connections per handle: the third CONNECT is over the quota.
    let c1 = connect(&ha, 4791);
    let c2 = connect(&ha, 4791);
    assert_eq!(
        (c1.status, c2.status),
        (NtStatus::SUCCESS, NtStatus::SUCCESS)
    );
    assert_eq!(
        done(&connect_pending(&ha, 4791)).0,
        NtStatus::QUOTA_EXCEEDED
    );
    // One pended wait per handle.
    let first = wait_pending(&hb, Some(999_999), 1);
    assert_eq!(done(&first).0, NtStatus::NOT_FOUND);
    let w1 = {
        let req = WaitRequest {
            connection: None,
            nonblocking: false,
        };
        // Drain B's two Accepted events first so the next wait pends.
        let _ = drain(&hb);
        hb.ioctl(
            Ioctl::Wait.code(),
            &bytes(&req),
            BATCH_HEADER_SIZE + Event::SIZE,
        )
    };
    assert!(!w1.is_done());
    assert_eq!(
        done(&wait_pending(&hb, None, 1)).0,
        NtStatus::QUOTA_EXCEEDED
    );
    // B's handle holds two connections; a third incoming one is rejected and counted.
    let ha2 = HostHandle::open(&engine).unwrap();
    let r = connect(&ha2, 4791);
    assert_ne!(
        r.status,
        NtStatus::SUCCESS,
        "no room on the listener's handle"
    );
    let (_, out) = done(&hb.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    assert_eq!(InfoReply::parse(&out).unwrap().backlog_rejects, 1);
    ha2.close();
    ha.close();
    hb.close();
    assert_fabric_released(&fabric);
}

#[test]
fn both_sides_disconnecting_at_once_each_get_exactly_one_terminal_event() {
    for _ in 0..10 {
        let w = world(Completion::Thread);
        let (ha, ca, hb, cb) = pair(&w);
        std::thread::scope(|s| {
            s.spawn(|| graceful(&ha, ca));
            s.spawn(|| graceful(&hb, cb));
        });
        for (h, id) in [(&ha, ca), (&hb, cb)] {
            let e = next_event(h, EventKind::Disconnected);
            assert_eq!(e.connection_id, id);
            assert!(matches!(e.cause, Some(Cause::Local) | Some(Cause::Peer)));
            close(h, id);
            assert!(
                terminal(&drain(h)).is_empty(),
                "one terminal event per side"
            );
        }
        finish(&w, ha, hb);
    }
}

#[test]
fn list_adapters_reports_each_interfaces_negotiated_version() {
    let fabric = Arc::new(Fabric::new(FabricConfig::default()));
    fabric.add_host(HostConfig::new(1, [A]));
    fabric.add_host(HostConfig::new(2, [B]).max_version(1, 2));
    let adapters = adapters(&[(1, A), (2, B), (9, B)]);
    let engine = ndkdisc_host::engine(
        HostPlatform::new(Arc::clone(&fabric), adapters),
        Config::default(),
    );
    let h = HostHandle::open(&engine).unwrap();
    let (st, out) = done(&h.ioctl(
        Ioctl::ListAdapters.code(),
        &bytes(&ListAdaptersRequest),
        16 + 4 * AdapterEntry::SIZE,
    ));
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(
        decode_adapters_header(&out).unwrap(),
        (2, 2),
        "an interface without an NDK adapter is left out"
    );
    let e1 = AdapterEntry::decode(&out[16..]).unwrap();
    let e2 = AdapterEntry::decode(&out[16 + AdapterEntry::SIZE..]).unwrap();
    assert_eq!((e1.if_index, e1.ndk_major, e1.ndk_minor), (1, 2, 1));
    assert_eq!(
        (e2.if_index, e2.ndk_major, e2.ndk_minor),
        (2, 1, 2),
        "a 1.2 provider is reported as 1.2"
    );
    h.close();
    assert_eq!(fabric.live_objects(), 0, "the probe adapters were closed");
}

/// The provider objects of `kind` alive now.
fn live_of(w: &World, kind: softndk::ObjectKind) -> usize {
    w.fabric
        .live_by_kind()
        .get(&Some(kind))
        .copied()
        .unwrap_or(0)
}

/// `n` CONNECTs from `h` to port 4791, each established; their ids.
fn connect_n(h: &HostHandle, n: usize, mode: Completion) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let r = connect(h, 4791);
            assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
            r.connection_id
        })
        .collect()
}

/// A handle's CONNECTs on one interface share one NDK adapter while any of their connections
/// holds it; the last connection's teardown closes it (its close is blocking, so one per
/// connection made closing many connections slow).
fn a_handles_connections_on_one_interface_share_one_adapter(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let adapters = || live_of(&w, softndk::ObjectKind::Adapter);
    let ids = connect_n(&ha, 3, mode);
    // B's listener holds one (its accepted connections share it), A's three connections one.
    assert_eq!(adapters(), 2, "{mode:?}");
    for &id in &ids[..2] {
        close(&ha, id);
    }
    assert_eq!(adapters(), 2, "{mode:?}: still held by A's last connection");
    close(&ha, ids[2]);
    assert_eq!(adapters(), 1, "{mode:?}: the last close closed it");
    // A new CONNECT opens a new one.
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "{mode:?}");
    assert_eq!(adapters(), 2, "{mode:?}");
    close(&ha, r.connection_id);
    finish(&w, ha, hb);
}

/// A handle's connections on one adapter share one protection domain (NDKPI: a PD holds any
/// number of QPs and MRs). It outlives the connection that created it: after that one is
/// closed the others still register memory on it, and the last one's teardown closes it.
fn a_handles_connections_on_one_adapter_share_one_pd(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let pds = || live_of(&w, softndk::ObjectKind::Pd);
    let ids = connect_n(&ha, 3, mode);
    // A's three connections share one; B's three accepted ones share the listener adapter's.
    assert_eq!(pds(), 2, "{mode:?}");
    // The first connection created the PD: closing it leaves the PD to the other two.
    close(&ha, ids[0]);
    assert_eq!(pds(), 2, "{mode:?}: still held by A's other connections");
    for &id in &ids[1..] {
        assert_eq!(
            post(&ha, id, PostKind::Receive, 2),
            NtStatus::SUCCESS,
            "{mode:?}: memory registered on the shared PD"
        );
    }
    close(&ha, ids[1]);
    assert_eq!(pds(), 2, "{mode:?}");
    close(&ha, ids[2]);
    assert_eq!(pds(), 1, "{mode:?}: the last connection closed A's PD");
    finish(&w, ha, hb);
}

/// Adapter removal ends every connection of the handle on that interface, each once, past the
/// holes a CLOSE leaves in the handle's table (the walk goes on from where it found the last).
fn adapter_removal_ends_every_connection_on_the_interface_once(mode: Completion) {
    let w = world(mode);
    let (ha, hb) = listening(&w);
    let ids = connect_n(&ha, 5, mode);
    close(&ha, ids[1]);
    drain(&ha);
    w.fabric.remove_adapters(w.hosts[0]);
    let mut ended = Vec::new();
    while ended.len() < 4 {
        for e in events(&ha) {
            if e.kind == EventKind::Disconnected {
                assert_eq!(e.cause, Some(Cause::AdapterRemoved), "{mode:?}");
                ended.push(e.connection_id);
            }
        }
    }
    ended.sort_unstable();
    let mut expected: Vec<u64> = ids.iter().copied().filter(|&id| id != ids[1]).collect();
    expected.sort_unstable();
    assert_eq!(ended, expected, "{mode:?}: each connection ended once");
    for &id in &expected {
        close(&ha, id);
    }
    assert!(
        terminal(&drain(&ha)).is_empty(),
        "{mode:?}: no second terminal event"
    );
    finish(&w, ha, hb);
}

per_mode!(
    adapter_removal_ends_every_connection_on_the_interface_once,
    a_handles_connections_on_one_adapter_share_one_pd,
    a_handles_connections_on_one_interface_share_one_adapter,
    graceful_disconnect_gives_each_side_exactly_one_terminal_event,
    abortive_disconnect_and_abort_reach_the_peer_as_a_reset,
    refused_connect_reports_connect_failed_with_the_reason,
    closing_a_handle_cancels_its_waits_and_resets_its_peers,
    adapter_removal_ends_the_connection_with_cause_adapter_removed,
    a_peer_disconnect_leaves_posted_receives_outstanding_until_flush,
    sends_complete_into_the_peers_posted_receives,
);

/// The engine's trace (ETW on Windows) of one connection's life, captured by the host
/// platform: each side's creation, the NDK callbacks that drove it (the listener's connection
/// request, the connect and accept completions, the peer's disconnect callback with its
/// reason), one terminal event per side with its cause, the release; and an IOCTL refused with
/// its status.
#[test]
fn the_trace_tells_a_connections_life_and_the_ioctls_refused() {
    use ndkdisc_core::ports::{NdkCallback, Trace};
    use ndkpi::Op;
    let w = world(Completion::Inline);
    w.engine.platform().capture_traces(4096);
    let (ha, ca, hb, cb) = pair(&w);
    let a_disconnect = disconnect_pending(&ha, ca);
    disconnected(&hb, Cause::Peer);
    assert_eq!(graceful(&hb, cb), NtStatus::SUCCESS);
    assert_eq!(done(&a_disconnect).0, NtStatus::SUCCESS);
    disconnected(&ha, Cause::Local);
    assert_eq!(close_status(&ha, 12345), NtStatus::NOT_FOUND);
    close(&ha, ca);
    close(&hb, cb);
    let (traces, dropped) = w.engine.platform().take_traces();
    assert_eq!(dropped, 0);
    let of = |id: u64| -> Vec<Trace> {
        traces
            .iter()
            .filter(|t| match t {
                Trace::ConnectionCreated { id: i, .. }
                | Trace::NdkCallback { id: i, .. }
                | Trace::Terminal { id: i, .. }
                | Trace::ConnectionClosed { id: i } => *i == id,
                Trace::IoctlFailed { .. } => false,
            })
            .copied()
            .collect()
    };
    let completed = |t: &Trace, op: Op| {
        matches!(t, Trace::NdkCallback { callback: NdkCallback::Completion(o), status, .. }
            if *o == op && *status == NtStatus::SUCCESS)
    };
    let a = of(ca);
    assert_eq!(
        a.first(),
        Some(&Trace::ConnectionCreated {
            id: ca,
            if_index: 1,
            active: true
        })
    );
    assert!(a.iter().any(|t| completed(t, Op::Connect)), "{a:?}");
    assert!(a.iter().any(|t| completed(t, Op::CompleteConnect)), "{a:?}");
    assert!(a.iter().any(|t| completed(t, Op::Disconnect)), "{a:?}");
    let b = of(cb);
    assert!(
        matches!(
            b.first(),
            Some(Trace::ConnectionCreated { active: false, .. })
        ),
        "{b:?}"
    );
    assert!(b.iter().any(|t| completed(t, Op::Accept)), "{b:?}");
    assert!(
        b.contains(&Trace::NdkCallback {
            id: cb,
            callback: NdkCallback::Disconnect,
            status: NtStatus::SUCCESS,
            reason: Some(reason::GRACEFUL),
        }),
        "{b:?}"
    );
    let terminal = |t: &[Trace]| -> Vec<Trace> {
        t.iter()
            .filter(|t| matches!(t, Trace::Terminal { .. }))
            .copied()
            .collect()
    };
    assert_eq!(
        terminal(&a),
        [Trace::Terminal {
            id: ca,
            kind: EventKind::Disconnected,
            cause: Some(Cause::Local),
            status: NtStatus::SUCCESS
        }]
    );
    assert_eq!(
        terminal(&b),
        [Trace::Terminal {
            id: cb,
            kind: EventKind::Disconnected,
            cause: Some(Cause::Peer),
            status: NtStatus::SUCCESS
        }]
    );
    for (t, id) in [(&a, ca), (&b, cb)] {
        assert_eq!(t.last(), Some(&Trace::ConnectionClosed { id }), "{t:?}");
    }
    assert!(
        traces.iter().any(|t| matches!(
            t,
            Trace::NdkCallback {
                callback: NdkCallback::ConnectionRequest,
                ..
            }
        )),
        "the listener's connection request"
    );
    assert!(traces.contains(&Trace::IoctlFailed {
        code: ndkdisc_abi::Ioctl::Close.code(),
        status: NtStatus::NOT_FOUND
    }));
    finish(&w, ha, hb);
}
