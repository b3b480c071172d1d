//! The event path's guarantees, each with a test that fails if it were broken.

use std::sync::{Arc, Mutex};

use ndkdisc_abi::{Cause, Event, EventKind, NtStatus, decode_wait_reply};

use super::*;

/// What happened to a fake request: its completion, and whether cancellation began.
#[derive(Default, Debug)]
struct Fate {
    completed: Option<(NtStatus, usize, Vec<u8>)>,
    cancel_requested: bool,
    cancelable: bool,
    /// `unmark_cancelable` calls, successful or not.
    unmarks: usize,
}

/// A request with WDF's cancel semantics.
struct Fake {
    token: u64,
    out: Vec<u8>,
    fate: Arc<Mutex<Fate>>,
}

impl Fake {
    fn new(token: u64, events: usize) -> (Self, Arc<Mutex<Fate>>) {
        let fate = Arc::new(Mutex::new(Fate::default()));
        (
            Self {
                token,
                out: vec![0xEE; 16 + events * Event::SIZE],
                fate: Arc::clone(&fate),
            },
            fate,
        )
    }
}

impl PendedRequest for Fake {
    fn token(&self) -> u64 {
        self.token
    }
    fn output(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn mark_cancelable(&mut self) -> Result<(), crate::ports::Cancelled> {
        let mut f = self.fate.lock().unwrap();
        if f.cancel_requested {
            return Err(crate::ports::Cancelled);
        }
        f.cancelable = true;
        Ok(())
    }
    fn unmark_cancelable(&mut self) -> Result<(), crate::ports::Cancelled> {
        let mut f = self.fate.lock().unwrap();
        f.unmarks += 1;
        if f.cancel_requested {
            return Err(crate::ports::Cancelled);
        }
        f.cancelable = false;
        Ok(())
    }
    fn complete(self, status: NtStatus, information: usize) {
        let mut f = self.fate.lock().unwrap();
        assert!(f.completed.is_none(), "completed twice");
        f.completed = Some((status, information, self.out[..information].to_vec()));
    }
}

/// `CancelIoEx`: mark cancellation begun; the cancel routine runs when the test says.
fn begin_cancel(fate: &Arc<Mutex<Fate>>) {
    fate.lock().unwrap().cancel_requested = true;
}

fn events_of(fate: &Arc<Mutex<Fate>>) -> (NtStatus, Vec<Event>) {
    let f = fate.lock().unwrap();
    let (st, _, bytes) = f.completed.clone().expect("completed");
    if st != NtStatus::SUCCESS {
        return (st, Vec::new());
    }
    let mut slots = [None; 64];
    let n = decode_wait_reply(&bytes, &mut slots).expect("valid reply");
    (st, slots[..n].iter().map(|e| e.unwrap()).collect())
}

fn pending(fate: &Arc<Mutex<Fate>>) -> bool {
    fate.lock().unwrap().completed.is_none()
}

fn complete_all(ready: Option<Ready<Fake>>) {
    if let Some(r) = ready {
        r.complete();
    }
}

fn queue() -> EventQueue<Fake> {
    EventQueue::new(Limits {
        max_connections: 4,
        max_waits: 3,
    })
    .unwrap()
}

fn disconnected(cause: Cause) -> Event {
    Event {
        cause: Some(cause),
        ..Event::new(EventKind::Disconnected, 0, 100)
    }
}

#[test]
fn a_wait_pended_before_the_event_completes_with_it() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (req, fate) = Fake::new(1, 4);
    assert!(matches!(q.wait(req, None, false), WaitOutcome::Pended));
    assert!(pending(&fate));
    let (latch, ready) = q.latch(c, disconnected(Cause::Peer));
    assert_eq!(latch, Latch::Queued);
    complete_all(ready);
    let (st, evs) = events_of(&fate);
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].connection_id, evs[0].kind, evs[0].cause),
        (c.id(), EventKind::Disconnected, Some(Cause::Peer))
    );
    assert_eq!(q.queued(), 0);
}

#[test]
fn a_wait_issued_after_the_event_completes_at_once() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    assert!(
        q.latch(c, disconnected(Cause::Local)).1.is_none(),
        "nobody waiting yet"
    );
    let (req, fate) = Fake::new(1, 4);
    let WaitOutcome::Complete(r) = q.wait(req, Some(c.id()), false) else {
        panic!("must not pend")
    };
    r.complete();
    let (_, evs) = events_of(&fate);
    assert_eq!(evs.len(), 1, "level-triggered: the latched event is there");
}

#[test]
fn exactly_one_terminal_event_however_many_terminal_facts_arrive() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    assert_eq!(q.latch(c, disconnected(Cause::Peer)).0, Latch::Queued);
    assert_eq!(
        q.latch(c, disconnected(Cause::Peer)).0,
        Latch::Duplicate,
        "a duplicated callback"
    );
    assert_eq!(
        q.latch(c, disconnected(Cause::Local)).0,
        Latch::Duplicate,
        "a racing local disconnect"
    );
    let failed = Event::new(EventKind::ConnectFailed, 0, 1);
    assert_eq!(
        q.latch(c, failed).0,
        Latch::Duplicate,
        "ConnectFailed is terminal too"
    );
    assert_eq!(q.counters().duplicates, 3);
    let (req, fate) = Fake::new(1, 8);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    let (_, evs) = events_of(&fate);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].cause, Some(Cause::Peer), "the first fact wins");
    // Even after delivery a second terminal fact stays a duplicate.
    assert_eq!(q.latch(c, disconnected(Cause::Aborted)).0, Latch::Duplicate);
}

#[test]
fn batches_preserve_latch_order_and_sequence_numbers_increase() {
    let mut q = queue();
    let a = q.add_connection(1).unwrap();
    let b = q.add_connection(2).unwrap();
    q.latch(a, Event::new(EventKind::Connected, 0, 1));
    q.latch(b, Event::new(EventKind::Accepted, 0, 2));
    q.latch(a, disconnected(Cause::Peer));
    q.latch(b, disconnected(Cause::Local));
    q.latch(a, Event::new(EventKind::Closed, 0, 5));
    let (req, fate) = Fake::new(1, 2);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    let (_, first) = events_of(&fate);
    let (req, fate) = Fake::new(2, 8);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    let (_, rest) = events_of(&fate);
    assert_eq!(first.len(), 2, "the batch is as big as the buffer");
    assert_eq!(rest.len(), 3);
    let all: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|e| (e.connection_id, e.kind))
        .collect();
    let (a, b) = (a.id(), b.id());
    assert_eq!(
        all,
        [
            (a, EventKind::Connected),
            (b, EventKind::Accepted),
            (a, EventKind::Disconnected),
            (b, EventKind::Disconnected),
            (a, EventKind::Closed)
        ]
    );
    let seqs: Vec<_> = first.iter().chain(&rest).map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {seqs:?}"
    );
}

#[test]
fn a_wait_on_one_connection_takes_only_its_events() {
    let mut q = queue();
    let a = q.add_connection(1).unwrap();
    let b = q.add_connection(2).unwrap();
    let (req, fate) = Fake::new(1, 4);
    assert!(matches!(
        q.wait(req, Some(b.id()), false),
        WaitOutcome::Pended
    ));
    assert!(
        q.latch(a, disconnected(Cause::Peer)).1.is_none(),
        "not the waited-on connection"
    );
    assert!(pending(&fate));
    complete_all(q.latch(b, disconnected(Cause::Peer)).1);
    let (_, evs) = events_of(&fate);
    assert_eq!(
        evs.iter().map(|e| e.connection_id).collect::<Vec<_>>(),
        [b.id()]
    );
    assert_eq!(q.queued(), 1, "a's event is still queued");
}

#[test]
fn an_event_racing_a_cancel_stays_queued_for_the_next_wait() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (req, fate) = Fake::new(1, 4);
    assert!(matches!(q.wait(req, None, false), WaitOutcome::Pended));
    // CancelIoEx begins; before the cancel routine runs, the event arrives.
    begin_cancel(&fate);
    let (_, ready) = q.latch(c, disconnected(Cause::Peer));
    assert!(ready.is_none(), "a wait being cancelled is not used");
    assert!(pending(&fate));
    // The cancel routine runs and completes it with STATUS_CANCELLED.
    q.cancel(1).expect("still in the queue").complete();
    assert_eq!(events_of(&fate).0, NtStatus::CANCELLED);
    // The event was not lost.
    let (req, fate) = Fake::new(2, 4);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).1.len(), 1);
}

#[test]
fn a_cancel_routine_after_the_event_took_the_wait_finds_nothing() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (req, fate) = Fake::new(1, 4);
    assert!(matches!(q.wait(req, None, false), WaitOutcome::Pended));
    let (_, ready) = q.latch(c, disconnected(Cause::Peer));
    assert!(q.cancel(1).is_none(), "the event path owns it now");
    complete_all(ready);
    assert_eq!(
        events_of(&fate).1.len(),
        1,
        "completed once, with the event"
    );
}

#[test]
fn a_wait_cancelled_before_it_could_pend_completes_cancelled_and_loses_nothing() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (req, fate) = Fake::new(1, 4);
    begin_cancel(&fate);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).0, NtStatus::CANCELLED);
    assert_eq!(q.pended_waits(), 0);
    q.latch(c, disconnected(Cause::Peer));
    assert_eq!(q.queued(), 1);
}

#[test]
fn a_second_wait_is_served_when_the_first_is_being_cancelled() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (r1, f1) = Fake::new(1, 4);
    let (r2, f2) = Fake::new(2, 4);
    assert!(matches!(q.wait(r1, None, false), WaitOutcome::Pended));
    assert!(matches!(q.wait(r2, None, false), WaitOutcome::Pended));
    begin_cancel(&f1);
    complete_all(q.latch(c, disconnected(Cause::Peer)).1);
    assert!(pending(&f1));
    assert_eq!(events_of(&f2).1.len(), 1);
    q.cancel(1).unwrap().complete();
    assert_eq!(events_of(&f1).0, NtStatus::CANCELLED);
}

#[test]
fn nonblocking_wait_returns_an_empty_batch_and_small_buffers_are_refused() {
    let mut q = queue();
    q.add_connection(7).unwrap();
    let (req, fate) = Fake::new(1, 4);
    let WaitOutcome::Complete(r) = q.wait(req, None, true) else {
        panic!()
    };
    r.complete();
    let (st, evs) = events_of(&fate);
    assert_eq!((st, evs.len()), (NtStatus::SUCCESS, 0));
    let (mut req, fate) = Fake::new(2, 1);
    req.out.truncate(16 + Event::SIZE - 1);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).0, NtStatus::BUFFER_TOO_SMALL);
}

#[test]
fn unknown_connections_and_quotas_have_their_statuses() {
    let mut q = queue();
    let (req, fate) = Fake::new(1, 1);
    let WaitOutcome::Complete(r) = q.wait(req, Some(99), false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).0, NtStatus::NOT_FOUND);
    let (req, fate) = Fake::new(1, 1);
    let never_made = crate::ids::connection(1, 0).unwrap();
    let WaitOutcome::Complete(r) = q.wait(req, Some(never_made), false) else {
        panic!()
    };
    r.complete();
    assert_eq!(
        events_of(&fate).0,
        NtStatus::NOT_FOUND,
        "an id naming a free index"
    );
    for id in 0..4 {
        q.add_connection(id + 1).unwrap();
    }
    assert_eq!(q.add_connection(5), Err(QueueError::Quota));
    for t in 0..3 {
        assert!(matches!(
            q.wait(Fake::new(t, 1).0, None, false),
            WaitOutcome::Pended
        ));
    }
    let (req, fate) = Fake::new(9, 1);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).0, NtStatus::QUOTA_EXCEEDED);
}

#[test]
fn abort_and_cleanup_take_pended_waits_but_not_those_being_cancelled() {
    let mut q = queue();
    let one = q.add_connection(1).unwrap().id();
    let two = q.add_connection(2).unwrap().id();
    let (r1, f1) = Fake::new(1, 1);
    let (r2, f2) = Fake::new(2, 1);
    let (r3, f3) = Fake::new(3, 1);
    for (r, filter) in [(r1, Some(one)), (r2, Some(two)), (r3, None)] {
        assert!(matches!(q.wait(r, filter, false), WaitOutcome::Pended));
    }
    // ABORT of connection 1 takes only its wait.
    while let Some(r) = q.take_wait_to_cancel(Some(one)) {
        r.complete();
    }
    assert_eq!(events_of(&f1).0, NtStatus::CANCELLED);
    assert!(pending(&f2) && pending(&f3));
    // Handle cleanup takes the rest, except one whose cancel routine is about to run.
    begin_cancel(&f2);
    while let Some(r) = q.take_wait_to_cancel(None) {
        r.complete();
    }
    assert_eq!(events_of(&f3).0, NtStatus::CANCELLED);
    assert!(pending(&f2));
    q.cancel(2).unwrap().complete();
    assert_eq!(events_of(&f2).0, NtStatus::CANCELLED);
}

#[test]
fn cleanup_and_cancel_routines_look_at_each_pended_wait_once() {
    // Handle cleanup over W pended waits, a third of them being cancelled, asks each wait once
    // whether it can be taken (looking again from the start each time asked the ones being
    // cancelled over and over: quadratic); their cancel routines, run in an order unrelated to
    // pending, each find their own wait by token.
    const W: usize = 300;
    let mut q = EventQueue::new(Limits {
        max_connections: 4,
        max_waits: W,
    })
    .unwrap();
    let mut fates = Vec::new();
    for t in 0..W as u64 {
        // Tokens far apart and out of order, as request addresses would be.
        let token = (t * 7919 % W as u64) << 20 | 0xABC;
        let (r, f) = Fake::new(token, 1);
        assert!(matches!(q.wait(r, None, false), WaitOutcome::Pended));
        fates.push((token, f));
    }
    let being_cancelled: Vec<_> = fates.iter().filter(|(t, _)| (t >> 20) % 3 == 0).collect();
    for (_, f) in &being_cancelled {
        begin_cancel(f);
    }
    q.begin_cleanup();
    let mut taken = 0;
    while let Some(r) = q.take_wait_to_cancel(None) {
        r.complete();
        taken += 1;
    }
    assert_eq!(taken, W - being_cancelled.len());
    let unmarks: usize = fates.iter().map(|(_, f)| f.lock().unwrap().unmarks).sum();
    assert_eq!(unmarks, W, "each pended wait asked once");
    assert!(q.cancel(0xDEAD).is_none(), "an unknown token finds nothing");
    for (token, f) in being_cancelled.iter().rev() {
        assert!(pending(f));
        q.cancel(*token).expect("its own wait").complete();
        assert_eq!(events_of(f).0, NtStatus::CANCELLED);
        assert!(q.cancel(*token).is_none(), "taken once");
    }
    assert_eq!(q.pended_waits(), 0);
}

/// The capacities of everything the queue reserved up front.
fn capacities(q: &EventQueue<Fake>) -> [usize; 8] {
    [
        q.conns.capacity(),
        q.state.capacity(),
        q.free.capacity(),
        q.keys.capacity(),
        q.waits.capacity(),
        q.free_waits.capacity(),
        q.tokens.table.capacity(),
        q.mapped.capacity(),
    ]
}

#[test]
fn latching_never_grows_the_reserved_queue_and_closed_frees_the_records() {
    let mut q = queue();
    let cap = capacities(&q);
    let conns: Vec<_> = (1..=4).map(|id| q.add_connection(id).unwrap()).collect();
    for &c in &conns {
        for fact in [
            Event::new(EventKind::Connected, 0, 1),
            disconnected(Cause::Peer),
            Event::new(EventKind::Flushed, 0, 2),
            Event::new(EventKind::Closed, 0, 3),
        ] {
            assert_eq!(q.latch(c, fact).0, Latch::Queued);
        }
        assert_eq!(
            q.latch(c, Event::new(EventKind::Flushed, 0, 4)).0,
            Latch::Merged,
            "the queued Flushed absorbs another"
        );
    }
    assert_eq!(q.queued(), 16);
    assert_eq!(capacities(&q), cap, "no reallocation on the latch path");
    let (req, fate) = Fake::new(1, 64);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).1.len(), 16);
    // Every Closed event was delivered: the connections' records are free for new ones.
    assert!(q.find(conns[0].id()).is_none());
    let free_cap = q.free.capacity();
    let again: Vec<_> = (5..=8).map(|id| q.add_connection(id).unwrap()).collect();
    assert_eq!(
        q.add_connection(9),
        Err(QueueError::Quota),
        "reuse keeps the quota"
    );
    // A connection forgotten before anything was latched frees its record too.
    q.remove_connection(again[0]);
    let reused = q.add_connection(10).unwrap();
    assert_eq!(reused.slot(), again[0].slot(), "the freed record is reused");
    assert_eq!(
        q.latch(again[0], disconnected(Cause::Peer)).0,
        Latch::Unknown,
        "a fact through the stale index is not charged to the record's new connection"
    );
    assert_eq!(
        q.latch(reused, Event::new(EventKind::Connected, 0, 5)).0,
        Latch::Queued
    );
    let (req, fate) = Fake::new(2, 4);
    let WaitOutcome::Complete(r) = q.wait(req, Some(reused.id()), false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).1[0].connection_id, reused.id());
    assert_eq!(q.free.capacity(), free_cap, "the free list never grows");
    assert_eq!(capacities(&q), cap);
}

#[test]
fn a_wait_on_a_connection_whose_terminal_was_delivered_gets_a_flagged_copy() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let id = c.id();
    let (any, any_fate) = Fake::new(1, 4);
    assert!(matches!(q.wait(any, None, false), WaitOutcome::Pended));
    let (on7, on7_fate) = Fake::new(2, 4);
    assert!(matches!(q.wait(on7, Some(id), false), WaitOutcome::Pended));
    // The older any-connection wait takes the terminal event.
    complete_all(q.latch(c, disconnected(Cause::Peer)).1);
    let (_, original) = events_of(&any_fate);
    assert!(pending(&on7_fate));
    // The latcher then completes the wait pended on the connection with the copy.
    complete_all(q.take_level_triggered(id));
    let (st, copy) = events_of(&on7_fate);
    assert_eq!(st, NtStatus::SUCCESS);
    assert_eq!(
        copy,
        vec![Event {
            already_delivered: true,
            ..original[0]
        }]
    );
    assert!(q.take_level_triggered(id).is_none());
    // A later wait on it completes at once with the copy, blocking or not.
    for nonblocking in [false, true] {
        let (req, fate) = Fake::new(3, 1);
        let WaitOutcome::Complete(r) = q.wait(req, Some(id), nonblocking) else {
            panic!("must not pend")
        };
        r.complete();
        assert_eq!(events_of(&fate).1, copy);
    }
    assert_eq!(q.counters().delivered, 1, "copies are not deliveries");
    // Once `Closed` is queued it is returned instead, and after it the id is gone.
    assert_eq!(
        q.latch(c, Event::new(EventKind::Closed, 0, 1)).0,
        Latch::Queued
    );
    let (req, fate) = Fake::new(4, 4);
    let WaitOutcome::Complete(r) = q.wait(req, Some(id), false) else {
        panic!("must not pend")
    };
    r.complete();
    assert_eq!(events_of(&fate).1[0].kind, EventKind::Closed);
    let (req, fate) = Fake::new(5, 4);
    let WaitOutcome::Complete(r) = q.wait(req, Some(id), false) else {
        panic!("must not pend")
    };
    r.complete();
    assert_eq!(events_of(&fate).0, NtStatus::NOT_FOUND);
}

#[test]
fn after_cleanup_began_a_wait_is_cancelled_not_pended() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    q.begin_cleanup();
    for filter in [None, Some(c.id())] {
        let (req, fate) = Fake::new(1, 4);
        let WaitOutcome::Complete(r) = q.wait(req, filter, false) else {
            panic!("a WAIT after cleanup must not pend")
        };
        r.complete();
        assert_eq!(events_of(&fate).0, NtStatus::CANCELLED);
    }
    assert_eq!(q.pended_waits(), 0);
}

#[test]
fn the_oldest_matching_wait_is_served_whether_it_waits_on_one_connection_or_any() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let other = q.add_connection(8).unwrap();
    // Pended in this order: on 7, on any, on 8.
    let (r1, f1) = Fake::new(1, 4);
    let (r2, f2) = Fake::new(2, 4);
    let (r3, f3) = Fake::new(3, 4);
    assert!(matches!(
        q.wait(r1, Some(c.id()), false),
        WaitOutcome::Pended
    ));
    assert!(matches!(q.wait(r2, None, false), WaitOutcome::Pended));
    assert!(matches!(
        q.wait(r3, Some(other.id()), false),
        WaitOutcome::Pended
    ));
    // 8's event: the any-connection wait is older than 8's own.
    complete_all(q.latch(other, Event::new(EventKind::Connected, 0, 1)).1);
    assert_eq!(events_of(&f2).1[0].connection_id, other.id());
    assert!(pending(&f1) && pending(&f3));
    // 7's event: its own wait, the oldest.
    complete_all(q.latch(c, Event::new(EventKind::Connected, 0, 1)).1);
    assert_eq!(events_of(&f1).1[0].connection_id, c.id());
    assert!(pending(&f3));
    assert_eq!(q.pended_waits(), 1);
}

#[test]
fn a_wait_being_cancelled_when_its_connection_goes_is_still_cancelled_once() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    let (r1, f1) = Fake::new(1, 4);
    assert!(matches!(
        q.wait(r1, Some(c.id()), false),
        WaitOutcome::Pended
    ));
    begin_cancel(&f1);
    // Every event of 7, Closed last, goes to a WAIT on any connection: 7's records are freed
    // while its own WAIT is being cancelled.
    for kind in [EventKind::Connected, EventKind::Closed] {
        assert!(q.latch(c, Event::new(kind, 0, 1)).1.is_none());
    }
    let (r2, f2) = Fake::new(2, 4);
    let WaitOutcome::Complete(r) = q.wait(r2, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&f2).1.len(), 2);
    assert!(q.find(c.id()).is_none());
    // The record is reused: the new connection's events and waits are its own.
    let d = q.add_connection(9).unwrap();
    assert_eq!(d.slot(), c.slot(), "the freed record is reused");
    let (r3, f3) = Fake::new(3, 4);
    assert!(matches!(
        q.wait(r3, Some(d.id()), false),
        WaitOutcome::Pended
    ));
    complete_all(q.latch(d, Event::new(EventKind::Connected, 0, 1)).1);
    assert_eq!(events_of(&f3).1[0].connection_id, d.id());
    assert!(pending(&f1), "the cancel routine completes it");
    q.cancel(1).unwrap().complete();
    assert_eq!(events_of(&f1).0, NtStatus::CANCELLED);
    assert!(q.cancel(1).is_none(), "once");
    assert_eq!(q.pended_waits(), 0);
}

#[test]
fn lookup_by_id_agrees_with_a_reference_map_through_adds_and_removals() {
    use std::collections::BTreeMap;
    let max = 64;
    let mut q: EventQueue<Fake> = EventQueue::new(Limits {
        max_connections: max,
        max_waits: 1,
    })
    .unwrap();
    let mut reference = BTreeMap::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next_seq = 1;
    let mut gone = Vec::new();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(2) && reference.len() < max {
            // Mostly consecutive sequence numbers (as the engine hands them out: other
            // handles take some), sometimes a jump.
            next_seq += if x.is_multiple_of(7) { x >> 40 } else { 1 };
            let c = q.add_connection(next_seq).unwrap();
            assert_eq!(
                crate::ids::index_of(c.id()),
                c.slot(),
                "the id names its index"
            );
            assert!(
                reference.insert(c.id(), c).is_none(),
                "ids are never reused"
            );
        } else if let Some(&id) = reference
            .keys()
            .nth((x >> 8) as usize % reference.len().max(1))
        {
            let c = reference.remove(&id).unwrap();
            q.remove_connection(c);
            gone.push(id);
        }
        for (&id, &c) in &reference {
            assert_eq!(q.find(id), Some(c), "id {id}");
        }
        // An id gone (its index perhaps reused since) and one not made yet find nothing.
        for &id in gone.iter().rev().take(8) {
            assert!(q.find(id).is_none(), "stale id {id}");
        }
        let unmade = crate::ids::connection(next_seq + 1, reference.len() / 2).unwrap();
        assert!(q.find(unmade).is_none());
    }
}

#[test]
fn nothing_is_latched_after_closed() {
    let mut q = queue();
    let c = q.add_connection(7).unwrap();
    assert_eq!(
        q.latch(c, Event::new(EventKind::Closed, 0, 1)).0,
        Latch::Queued
    );
    // (A Flushed still queued before Closed would merge in place: no new entry.)
    for kind in [
        EventKind::Flushed,
        EventKind::Connected,
        EventKind::Disconnected,
    ] {
        assert_eq!(
            q.latch(c, Event::new(kind, 0, 2)).0,
            Latch::Duplicate,
            "{kind:?} after Closed"
        );
    }
    let (req, fate) = Fake::new(1, 4);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    assert_eq!(events_of(&fate).1.len(), 1, "only Closed");
    assert_eq!(q.queued(), 0);
    assert!(q.find(c.id()).is_none());
}

#[test]
fn a_slot_keeps_every_field_of_its_event_in_32_bytes() {
    assert_eq!(core::mem::size_of::<Option<Stored>>(), 32);
    for (cause, reason) in [
        (None, None),
        (Some(Cause::TransportError), Some(0xC000_0001)),
    ] {
        let e = Event {
            seq: 0x0102_0304_0506_0708,
            connection_id: 99,
            timestamp: u64::MAX - 5,
            kind: EventKind::Disconnected,
            cause,
            status: NtStatus::CONNECTION_DISCONNECTED,
            provider_reason: reason,
            outstanding_receives: 7,
            outstanding_sends: u32::MAX,
            callback_fired: true,
            provider_flushes: cause.is_some(),
            already_delivered: false,
        };
        assert_eq!(
            Stored::new(&e, reason.is_some()).event(99, reason.unwrap_or(0)),
            e
        );
    }
}

#[test]
fn the_terminal_event_keeps_its_provider_reason_through_the_queue_and_others_carry_none() {
    let mut q = queue();
    let c = q.add_connection(1).unwrap();
    let reasoned = |kind| Event {
        provider_reason: Some(0x8000_0042),
        callback_fired: true,
        outstanding_receives: 3,
        ..Event::new(kind, 0, 7)
    };
    for kind in [
        EventKind::Connected,
        EventKind::Flushed,
        EventKind::Disconnected,
    ] {
        assert_eq!(q.latch(c, reasoned(kind)).0, Latch::Queued);
    }
    let (req, fate) = Fake::new(1, 8);
    let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
        panic!()
    };
    r.complete();
    let events = events_of(&fate).1;
    let reasons: Vec<_> = events.iter().map(|e| (e.kind, e.provider_reason)).collect();
    assert_eq!(
        reasons,
        [
            (EventKind::Connected, None),
            (EventKind::Flushed, None),
            (EventKind::Disconnected, Some(0x8000_0042)),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.callback_fired && e.outstanding_receives == 3 && e.timestamp == 7)
    );
    // The level-triggered copy of the delivered terminal event keeps it too.
    let (req, fate) = Fake::new(2, 8);
    let WaitOutcome::Complete(r) = q.wait(req, Some(c.id()), false) else {
        panic!("a delivered terminal event answers a filtered WAIT at once")
    };
    r.complete();
    let again = events_of(&fate).1;
    assert_eq!(again.len(), 1);
    assert!(again[0].already_delivered);
    assert_eq!(again[0].provider_reason, Some(0x8000_0042));
}

#[test]
fn events_latched_after_the_terminal_one_leave_its_provider_reason_alone() {
    // Disconnected with a reason, then Flushed (FLUSH after a peer disconnect) and Closed
    // (CLOSE): each kind keeps its own fields, and the terminal event still reports the
    // provider's reason, delivered in one batch or taken level-triggered after Flushed.
    for deliver_first in [false, true] {
        let mut q = queue();
        let c = q.add_connection(1).unwrap();
        let terminal = Event {
            provider_reason: Some(0x8000_0042),
            ..disconnected(Cause::Peer)
        };
        assert_eq!(q.latch(c, terminal).0, Latch::Queued);
        if deliver_first {
            let (req, fate) = Fake::new(1, 8);
            let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
                panic!()
            };
            r.complete();
            assert_eq!(events_of(&fate).1[0].provider_reason, Some(0x8000_0042));
        }
        assert_eq!(
            q.latch(c, Event::new(EventKind::Flushed, 0, 9)).0,
            Latch::Queued
        );
        if deliver_first {
            // The level-triggered copy of the delivered terminal event, once Flushed is gone.
            let (req, fate) = Fake::new(2, 8);
            let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
                panic!()
            };
            r.complete();
            assert_eq!(events_of(&fate).1[0].kind, EventKind::Flushed);
            let (req, fate) = Fake::new(3, 8);
            let WaitOutcome::Complete(r) = q.wait(req, Some(c.id()), false) else {
                panic!("the delivered terminal event answers at once")
            };
            r.complete();
            let copy = events_of(&fate).1;
            assert!(copy[0].already_delivered);
            assert_eq!(copy[0].provider_reason, Some(0x8000_0042));
        }
        assert_eq!(
            q.latch(c, Event::new(EventKind::Closed, 0, 10)).0,
            Latch::Queued
        );
        let (req, fate) = Fake::new(4, 8);
        let WaitOutcome::Complete(r) = q.wait(req, None, false) else {
            panic!()
        };
        r.complete();
        for e in events_of(&fate).1 {
            let expected = (e.kind == EventKind::Disconnected).then_some(0x8000_0042);
            assert_eq!(e.provider_reason, expected, "{e:?}");
        }
    }
}

#[test]
fn a_cancel_routine_finds_its_wait_past_stale_and_reused_tokens() {
    // The token map is kept off the event path: a WAIT taken by an event or ABORT leaves its
    // entry until the pool entry is reused. A request (token) reused meanwhile must still be
    // found, and a stale token must find nothing.
    let mut q: EventQueue<Fake> = EventQueue::new(Limits {
        max_connections: 2,
        max_waits: 2,
    })
    .unwrap();
    let one = q.add_connection(1).unwrap().id();
    let two = q.add_connection(2).unwrap().id();
    let pend = |q: &mut EventQueue<Fake>, token: u64, conn: u64| {
        let (r, f) = Fake::new(token, 1);
        assert!(matches!(q.wait(r, Some(conn), false), WaitOutcome::Pended));
        f
    };
    let a = pend(&mut q, 7, one);
    let b = pend(&mut q, 8, two);
    // ABORT takes both without their cancel routines: 7's entry then 8's go stale.
    q.take_wait_to_cancel(Some(one)).unwrap().complete();
    q.take_wait_to_cancel(Some(two)).unwrap().complete();
    assert_eq!(events_of(&a).0, NtStatus::CANCELLED);
    assert_eq!(events_of(&b).0, NtStatus::CANCELLED);
    // Token 7 comes back and pends in 8's old entry: the map holds the stale 7 and the live one.
    let c = pend(&mut q, 7, two);
    assert!(q.cancel(8).is_none(), "8's entry was reused");
    begin_cancel(&c);
    q.cancel(7)
        .expect("the live 7, past the stale one")
        .complete();
    assert_eq!(events_of(&c).0, NtStatus::CANCELLED);
    assert!(q.cancel(7).is_none(), "taken once");
    assert_eq!(q.pended_waits(), 0);
}

#[test]
fn a_sequence_number_past_the_last_id_is_refused_and_uses_no_record() {
    let mut q = queue();
    let past = 1u64 << crate::ids::SEQ_BITS;
    assert_eq!(q.add_connection(past), Err(QueueError::IdsExhausted));
    assert_eq!(
        q.add_connection(0),
        Err(QueueError::IdsExhausted),
        "no id is 0"
    );
    // Every record is still there for connections with good sequence numbers.
    let conns: Vec<_> = (1..=4).map(|seq| q.add_connection(seq).unwrap()).collect();
    assert_eq!(q.add_connection(5), Err(QueueError::Quota));
    // A freed record is not lost to a refused sequence number either.
    q.remove_connection(conns[2]);
    assert_eq!(q.add_connection(past), Err(QueueError::IdsExhausted));
    let again = q.add_connection(6).unwrap();
    assert_eq!(again.slot(), conns[2].slot());
}
