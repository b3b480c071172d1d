//! The engine's resource limits beyond the per-handle quotas, end to end: the engine-wide cap on
//! open handles (`Config::max_handles`, refused with `STATUS_QUOTA_EXCEEDED`, each place given
//! back when its handle goes, whether or not the open succeeded), and `GET_INFO`'s engine-wide
//! counters, which only a handle opened for writing sees.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

fn capped(max_handles: usize) -> World {
    world_with(
        Completion::Inline,
        Config {
            max_handles,
            ..Config::default()
        },
    )
}

/// `open` must fail, with `status`.
fn refused(result: Result<HostHandle, NtStatus>, status: NtStatus) {
    match result {
        Ok(_) => panic!("the open succeeded; expected {status:?}"),
        Err(s) => assert_eq!(s, status),
    }
}

#[test]
fn the_default_cap_is_1024_handles() {
    assert_eq!(Config::default().max_handles, 1024);
}

#[test]
fn opening_one_handle_more_than_max_handles_fails_with_quota_exceeded_and_takes_no_place() {
    let w = capped(3);
    let mut open: Vec<HostHandle> = (0..3)
        .map(|_| HostHandle::open(&w.engine).unwrap())
        .collect();
    assert_eq!(w.engine.open_handles(), 3);
    // Refused however often it is tried, for reading or writing: no refusal takes a place.
    for _ in 0..5 {
        refused(HostHandle::open(&w.engine), NtStatus::QUOTA_EXCEEDED);
        refused(
            HostHandle::open_as(&w.engine, Access::Read),
            NtStatus::QUOTA_EXCEEDED,
        );
    }
    assert_eq!(w.engine.open_handles(), 3, "the refusals leaked no place");
    // Closing one lets exactly one other open.
    open.pop().unwrap().close();
    assert_eq!(w.engine.open_handles(), 2);
    open.push(HostHandle::open_as(&w.engine, Access::Read).unwrap());
    refused(HostHandle::open(&w.engine), NtStatus::QUOTA_EXCEEDED);
    // A handle dropped without cleanup (the owner itself gone) gives its place back too.
    drop(open.pop());
    assert_eq!(w.engine.open_handles(), 2);
    open.push(HostHandle::open(&w.engine).unwrap());
    for h in open {
        h.close();
    }
    assert_eq!(w.engine.open_handles(), 0);
    assert!(w.fabric.violations().is_empty());
}

#[test]
fn a_handle_with_connections_and_a_listener_gives_its_place_back_when_closed() {
    // Two handles for the pair, and the cap is reached.
    let w = capped(2);
    let (ha, ca, hb, _) = pair(&w);
    assert_eq!(query(&ha, ca).state, ConnState::Connected);
    refused(HostHandle::open(&w.engine), NtStatus::QUOTA_EXCEEDED);
    // B holds a listener and an accepted connection.
    hb.close();
    assert_eq!(w.engine.open_handles(), 1);
    let again = HostHandle::open(&w.engine).unwrap();
    refused(HostHandle::open(&w.engine), NtStatus::QUOTA_EXCEEDED);
    finish(&w, ha, again);
    assert_eq!(w.engine.open_handles(), 0);
}

#[cfg(target_pointer_width = "64")]
#[test]
fn a_handle_whose_open_fails_gives_its_place_back() {
    // A per-handle connection limit whose records cannot be indexed fails every open after the
    // handle's place was taken: the place must come back each time.
    let w = world_with(
        Completion::Inline,
        Config {
            max_handles: 1,
            limits: ndkdisc_core::events::Limits {
                max_connections: u32::MAX as usize + 1,
                max_waits: 1,
            },
            ..Config::default()
        },
    );
    for _ in 0..3 {
        refused(
            HostHandle::open(&w.engine),
            NtStatus::INSUFFICIENT_RESOURCES,
        );
        assert_eq!(
            w.engine.open_handles(),
            0,
            "the failed open gave its place back"
        );
    }
}

#[test]
fn get_info_shows_the_engine_wide_counters_only_to_a_handle_opened_for_writing() {
    let w = world(Completion::Inline);
    let ro = HostHandle::open_as(&w.engine, Access::Read).unwrap();
    let (ha, ca, hb, cb) = pair(&w);
    // A peer disconnect, so that every counter but the refusals has moved.
    assert_eq!(abortive(&ha, ca), NtStatus::SUCCESS);
    let e = next_event(&hb, EventKind::Disconnected);
    assert_eq!(e.connection_id, cb);
    let full = info(&ha);
    assert!(full.connections_opened >= 1, "{full:?}");
    assert!(full.events_latched >= 4, "{full:?}");
    assert!(full.disconnect_callbacks >= 1, "{full:?}");
    // Equal but for the clock, which moves on between replies.
    let at_clock = |i: InfoReply| InfoReply {
        clock: full.clock,
        ..i
    };
    assert_eq!(
        at_clock(info(&hb)),
        full,
        "every handle opened for writing sees the same counters"
    );
    // The read-only handle: versions and limits, but no engine-wide counters.
    let seen = at_clock(info(&ro));
    assert_eq!(seen, full.without_engine_counters());
    assert_eq!(
        (
            seen.connections_opened,
            seen.events_latched,
            seen.disconnect_callbacks,
            seen.backlog_rejects,
            seen.duplicate_callbacks
        ),
        (0, 0, 0, 0, 0),
        "every engine-wide counter reads zero"
    );
    assert_eq!(seen.max_connections, 256, "the limits are there");
    close(&ha, ca);
    close(&hb, cb);
    ro.close();
    finish(&w, ha, hb);
}
