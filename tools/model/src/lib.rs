//! # ndkdisc-model — model-based testing of the ndkdisc engine
//!
//! A seeded driver of random operations over two hosts and several handles, through the IOCTL
//! ABI into the engine over softndk (hardware-like provider, no kindness), checking the
//! documented event guarantees after every step and at the end.
//!
//! What is checked, per step:
//! - sequence numbers: strictly increasing per connection, strictly increasing across the
//!   any-connection WAITs of a handle (a filtered WAIT may overtake other connections' older
//!   events), and never repeated on a handle (copies flagged `already_delivered` excepted);
//! - per connection: its first event is `Connected`/`ConnectFailed` (active, agreeing with the
//!   CONNECT reply) or `Accepted`/`ConnectFailed` (passive, on a handle that listens); at most one terminal event
//!   (`ConnectFailed` or `Disconnected`) is ever delivered, and at the end exactly one; nothing
//!   after `Closed`, and `Closed` only after CLOSE and after the terminal event;
//! - the cause is one the operations allow (`Local` needs a graceful DISCONNECT,
//!   `LocalAbortive` an abortive one or CLOSE, `Aborted` an ABORT, `TransportError` a send;
//!   `HandleClosed` and `AdapterRemoved` are never delivered here);
//! - no event reaches a handle that does not own the connection; another handle's connection
//!   cannot be queried;
//! - a terminal event's outstanding counts are at most what was posted; QUERY's completion
//!   counts plus its outstanding counts equal what was posted;
//! - ndkdisc never flushes on its own: a `Flushed` event only after a successful FLUSH, and the
//!   provider's `NdkFlush` count grows only in FLUSH;
//! - no provider misuse after any step; at the end every NDK object is released, every graceful
//!   DISCONNECT completed, and nothing was allocated where it must not be.
//!
//! A failure prints the seed, the completion mode and the operations so far. The operation
//! list is not shrunk yet, and with provider threads a seed does not replay exactly (the
//! operations chosen depend on the events seen), so the printed list is the record.
//!

mod io;
pub use io::World;
use io::{
    WAIT, abort, bytes, close as close_status, connect_pending, decode_events, disconnect_pending,
    done, flush, post, wait_request, world,
};

use ndkdisc_abi::{
    Cause, ConnectReply, Event, EventKind, Ioctl, ListenReply, ListenRequest, NtStatus, PostKind,
    QueryReply, QueryRequest, Record,
};
use ndkdisc_core::Engine;
use ndkdisc_host::{HostHandle, HostPlatform, Pending};
use softndk::Completion;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use softndk::Fault;

/// Handle slots: slot 0 listens on `PORTS[0]`, slot 1 on `PORTS[1]`, slot 2 only connects.
const SLOTS: usize = 3;
const PORTS: [u16; 2] = [4791, 4792];
/// A port nobody listens on (CONNECT fails).
const NO_LISTENER: u16 = 4799;

/// xorshift64: small, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())])
    }
}

/// The completion mode of a seed: mostly hardware-like, the others in turn.
pub fn mode_of(seed: u64) -> Completion {
    match seed % 6 {
        0..=2 => Completion::hardware(seed),
        3 => Completion::Random { seed },
        4 => Completion::Thread,
        _ => {
            if seed % 12 == 5 {
                Completion::Inline
            } else {
                Completion::Synchronous
            }
        }
    }
}

/// One handle slot.
struct Slot {
    h: HostHandle,
    /// Unique per opened handle: what connections are owned by.
    hid: usize,
    last_any_seq: Option<u64>,
    seqs: HashSet<u64>,
    listens: bool,
}

/// What the model knows of one connection.
#[derive(Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts of one connection"
)]
struct Conn {
    owner: usize,
    active: bool,
    /// The CONNECT reply's outcome (active side).
    connect_ok: bool,
    kinds: Vec<EventKind>,
    last_seq: Option<u64>,
    terminal: Option<Event>,
    closed_delivered: bool,
    owner_closed: bool,
    close_called: bool,
    graceful: bool,
    abortive: bool,
    abort: bool,
    flush_tried: bool,
    flush_ok: u32,
    flushed_events: u32,
    /// Receives/sends of POSTs that succeeded, and of every POST (a POST may stop part way).
    recv_ok: u64,
    recv_max: u64,
    send_ok: u64,
    send_max: u64,
}

struct Model {
    log: Vec<String>,
    slots: Vec<Option<Slot>>,
    next_hid: usize,
    conns: BTreeMap<u64, Conn>,
    gracefuls: Vec<(u64, Pending)>,
    flush_calls: u64,
    /// Totals, for the report: events delivered, by kind and cause.
    events: u64,
    tally: BTreeMap<String, u64>,
}

impl Model {
    #[expect(clippy::unused_self, reason = "every check goes through the model")]
    fn fail(&self, what: &str) -> ! {
        panic!("{what}");
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(&what());
        }
    }

    fn slot(&self, i: usize) -> Option<&Slot> {
        self.slots[i].as_ref()
    }

    /// The connections `slot`'s handle owns (closed ones too).
    fn owned(&self, i: usize) -> Vec<u64> {
        let Some(s) = self.slot(i) else {
            return Vec::new();
        };
        self.conns
            .iter()
            .filter(|(_, c)| c.owner == s.hid)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Check and record one batch delivered to slot `i` by a WAIT (filtered on `filter`).
    fn deliver(&mut self, i: usize, filter: Option<u64>, evs: &[Event], room: usize) {
        self.check(evs.len() <= room, || {
            format!("{} events in a WAIT with room for {room}", evs.len())
        });
        for e in evs {
            self.deliver_one(i, filter, e);
        }
    }

    #[expect(clippy::too_many_lines, reason = "one check per event kind, in order")]
    fn deliver_one(&mut self, i: usize, filter: Option<u64>, e: &Event) {
        self.events += 1;
        let hid = self.slot(i).unwrap().hid;
        let listens = self.slot(i).unwrap().listens;
        let id = e.connection_id;
        if let Some(f) = filter {
            self.check(id == f, || format!("WAIT filtered on {f} returned {e:?}"));
        }
        if e.already_delivered {
            let c = self.conns.get(&id);
            self.check(filter == Some(id), || {
                format!("a copy outside a WAIT filtered on its connection: {e:?}")
            });
            self.check(
                c.is_some_and(|c| {
                    c.owner == hid
                        && c.terminal.is_some_and(|t| {
                            t.seq == e.seq && t.kind == e.kind && t.cause == e.cause
                        })
                }),
                || format!("a copy of a terminal event not delivered on this handle: {e:?}"),
            );
            return;
        }
        // Handle-wide: never repeated; across any-connection WAITs, increasing.
        let s = self.slots[i].as_mut().unwrap();
        let fresh = s.seqs.insert(e.seq);
        let any_order = filter.is_some() || s.last_any_seq.is_none_or(|l| l < e.seq);
        if filter.is_none() {
            s.last_any_seq = Some(e.seq);
        }
        self.check(fresh, || format!("seq {} delivered twice: {e:?}", e.seq));
        self.check(any_order, || {
            format!("any-connection WAIT out of latch order: {e:?}")
        });
        if !self.conns.contains_key(&id) {
            // The first sight of a passive connection.
            // (An accept that failed gives `ConnectFailed` and no `Accepted`.)
            let first = matches!(e.kind, EventKind::Accepted | EventKind::ConnectFailed);
            self.check(first && listens, || {
                format!("event on a connection handle {hid} never heard of: {e:?}")
            });
            self.conns.insert(
                id,
                Conn {
                    owner: hid,
                    ..Conn::default()
                },
            );
        }
        let c = self.conns.get(&id).unwrap();
        self.check(c.owner == hid && !c.owner_closed, || {
            format!(
                "event delivered to handle {hid}, connection owned by {}: {e:?}",
                c.owner
            )
        });
        self.check(!c.closed_delivered, || format!("event after Closed: {e:?}"));
        self.check(c.last_seq.is_none_or(|l| l < e.seq), || {
            format!(
                "connection's events out of order: {e:?} after {:?}",
                c.last_seq
            )
        });
        let first = c.kinds.is_empty();
        let problem = match e.kind {
            EventKind::Connected => (!(c.active && first && c.connect_ok))
                .then_some("Connected not first of a connected CONNECT"),
            EventKind::Accepted => {
                (c.active || !first).then_some("Accepted not first of a passive connection")
            }
            EventKind::ConnectFailed => (!first || c.connect_ok)
                .then_some("ConnectFailed not first of a failed CONNECT or accept"),
            EventKind::Disconnected => {
                if c.terminal.is_some() {
                    Some("a second terminal event")
                } else if !matches!(
                    c.kinds.first(),
                    Some(EventKind::Connected | EventKind::Accepted)
                ) {
                    Some("Disconnected before Connected/Accepted")
                } else if u64::from(e.outstanding_receives) > c.recv_max
                    || u64::from(e.outstanding_sends) > c.send_max
                {
                    Some("more outstanding than was posted")
                } else {
                    match e.cause {
                        Some(Cause::Peer) => None,
                        Some(Cause::Local) => {
                            (!c.graceful).then_some("Local without a graceful DISCONNECT")
                        }
                        Some(Cause::LocalAbortive) => (!(c.abortive || c.close_called))
                            .then_some("LocalAbortive without an abortive DISCONNECT or CLOSE"),
                        Some(Cause::Aborted) => (!c.abort).then_some("Aborted without ABORT"),
                        Some(Cause::TransportError) => {
                            (c.send_max == 0).then_some("TransportError without a send")
                        }
                        _ => Some("a cause nothing here can produce"),
                    }
                }
            }
            EventKind::Flushed => (c.flushed_events >= c.flush_ok)
                .then_some("Flushed without a FLUSH (ndkdisc flushed on its own)"),
            EventKind::Closed => (!c.close_called || c.terminal.is_none())
                .then_some("Closed without CLOSE or before the terminal event"),
            EventKind::Unknown(_) => Some("unknown event kind"),
        };
        if let Some(p) = problem {
            self.fail(&format!("{p}: {e:?}"));
        }
        *self
            .tally
            .entry(match e.cause {
                Some(cause) => format!("{:?}/{cause:?}", e.kind),
                None => format!("{:?}", e.kind),
            })
            .or_default() += 1;
        let c = self.conns.get_mut(&id).unwrap();
        c.kinds.push(e.kind);
        c.last_seq = Some(e.seq);
        match e.kind {
            EventKind::Disconnected | EventKind::ConnectFailed => c.terminal = Some(*e),
            EventKind::Flushed => c.flushed_events += 1,
            EventKind::Closed => c.closed_delivered = true,
            _ => {}
        }
    }

    /// A non-blocking WAIT, checked.
    fn wait_now(&mut self, i: usize, filter: Option<u64>, room: usize) -> usize {
        let h = &self.slot(i).unwrap().h;
        let (st, out) = done(&wait_request(h, filter, room, true));
        self.wait_result(i, filter, room, st, &out, false)
    }

    /// A WAIT that pends, cancelled at once: it completes with its events or CANCELLED.
    fn wait_cancelled(&mut self, i: usize, filter: Option<u64>, room: usize) {
        let p = wait_request(&self.slot(i).unwrap().h, filter, room, false);
        p.cancel();
        let (st, out) = done(&p);
        self.wait_result(i, filter, room, st, &out, true);
    }

    fn wait_result(
        &mut self,
        i: usize,
        filter: Option<u64>,
        room: usize,
        st: NtStatus,
        out: &[u8],
        cancelled: bool,
    ) -> usize {
        let gone = filter.is_some_and(|f| self.conns.get(&f).is_some_and(|c| c.closed_delivered));
        if st == NtStatus::SUCCESS {
            self.check(!gone, || {
                format!("WAIT on {filter:?} succeeded after its Closed was delivered")
            });
            let evs = decode_events(out);
            self.deliver(i, filter, &evs, room);
            return evs.len();
        }
        let ok = (gone && st == NtStatus::NOT_FOUND) || (cancelled && st == NtStatus::CANCELLED);
        self.check(ok, || {
            format!("WAIT on {filter:?} (room {room}, cancelled {cancelled}): {st:?}")
        });
        0
    }

    fn drain_all(&mut self) {
        for i in 0..SLOTS {
            if self.slot(i).is_some() {
                while self.wait_now(i, None, 32) > 0 {}
            }
        }
    }

    fn listen(&mut self, i: usize) {
        if i >= PORTS.len() {
            return;
        }
        let req = ListenRequest {
            if_index: 2,
            backlog: 0,
            local: SocketAddr::new(io::B, PORTS[i]),
        };
        let h = &self.slot(i).unwrap().h;
        let (st, _) = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE));
        self.log
            .push(format!("  listen slot {i} port {}: {st:?}", PORTS[i]));
        self.slots[i].as_mut().unwrap().listens |= st == NtStatus::SUCCESS;
    }

    fn open(&mut self, i: usize, engine: &Arc<Engine<HostPlatform>>) {
        let h = HostHandle::open(engine).expect("open a handle");
        self.next_hid += 1;
        self.slots[i] = Some(Slot {
            h,
            hid: self.next_hid,
            last_any_seq: None,
            seqs: HashSet::new(),
            listens: false,
        });
        self.listen(i);
    }

    fn close_handle(&mut self, i: usize) {
        let s = self.slots[i].take().unwrap();
        for c in self.conns.values_mut().filter(|c| c.owner == s.hid) {
            c.owner_closed = true;
        }
        s.h.close();
    }
}

/// One random operation on the world, checked.
#[expect(clippy::too_many_lines, reason = "one arm per operation")]
fn step(m: &mut Model, w: &World, rng: &mut Rng) {
    let before = w.fabric.stats().flush_calls;
    let live: Vec<usize> = (0..SLOTS).filter(|&i| m.slot(i).is_some()).collect();
    let Some(i) = rng.pick(&live) else {
        let i = rng.below(SLOTS);
        m.log.push(format!("open slot {i}"));
        m.open(i, &w.engine);
        return;
    };
    let own = m.owned(i);
    let conn = rng.pick(&own);
    let mut flushed_now = None;
    match (rng.below(100), conn) {
        (0..15, _) | (_, None) => {
            let port = match rng.below(10) {
                0 => NO_LISTENER,
                n => PORTS[n % 2],
            };
            m.log.push(format!("connect slot {i} port {port}"));
            let (st, out) = done(&connect_pending(&m.slot(i).unwrap().h, port));
            if st == NtStatus::SUCCESS {
                let r = ConnectReply::parse(&out).unwrap();
                m.log
                    .push(format!("  -> {} {:?}", r.connection_id, r.status));
                m.check(!m.conns.contains_key(&r.connection_id), || {
                    format!("CONNECT returned an id in use: {}", r.connection_id)
                });
                let hid = m.slot(i).unwrap().hid;
                m.conns.insert(
                    r.connection_id,
                    Conn {
                        owner: hid,
                        active: true,
                        connect_ok: r.status == NtStatus::SUCCESS,
                        ..Conn::default()
                    },
                );
            } else {
                m.log.push(format!("  -> {st:?}"));
            }
        }
        (15..33, Some(id)) => {
            let kind = if rng.below(3) == 0 {
                PostKind::Send
            } else {
                PostKind::Receive
            };
            let count = 1 + u32::try_from(rng.below(4)).expect("below 4");
            let st = post(&m.slot(i).unwrap().h, id, kind, count);
            m.log
                .push(format!("post slot {i} {id} {kind:?} x{count}: {st:?}"));
            let c = m.conns.get_mut(&id).unwrap();
            let ok = u64::from(count) * u64::from(st == NtStatus::SUCCESS);
            match kind {
                PostKind::Send => {
                    c.send_max += u64::from(count);
                    c.send_ok += ok;
                }
                PostKind::Receive => {
                    c.recv_max += u64::from(count);
                    c.recv_ok += ok;
                }
            }
        }
        (33..39, _) => {
            let host = rng.below(2);
            let connectors = w.fabric.connectors(w.hosts[host]);
            if let Some(victim) = rng.pick(&connectors) {
                let fault = if rng.below(2) == 0 {
                    Fault::PeerDisconnect
                } else {
                    Fault::PeerReset
                };
                let hit = w.fabric.inject(victim, fault);
                m.log.push(format!(
                    "fault {fault:?} on host {host}'s connector {} of {}: {hit}",
                    connectors.iter().position(|c| *c == victim).unwrap(),
                    connectors.len()
                ));
            }
        }
        (39..44, Some(id)) => {
            let p = disconnect_pending(&m.slot(i).unwrap().h, id, false);
            m.log
                .push(format!("graceful disconnect slot {i} {id} (pending)"));
            m.conns.get_mut(&id).unwrap().graceful = true;
            m.gracefuls.push((id, p));
        }
        (44..48, Some(id)) => {
            m.conns.get_mut(&id).unwrap().abortive = true;
            let st = done(&disconnect_pending(&m.slot(i).unwrap().h, id, true)).0;
            m.log
                .push(format!("abortive disconnect slot {i} {id}: {st:?}"));
        }
        (48..52, Some(id)) => {
            m.conns.get_mut(&id).unwrap().abort = true;
            let st = abort(&m.slot(i).unwrap().h, id);
            m.log.push(format!("abort slot {i} {id}: {st:?}"));
        }
        (52..57, Some(id)) => {
            m.conns.get_mut(&id).unwrap().flush_tried = true;
            let st = flush(&m.slot(i).unwrap().h, id);
            m.log.push(format!("flush slot {i} {id}: {st:?}"));
            if st == NtStatus::SUCCESS {
                m.conns.get_mut(&id).unwrap().flush_ok += 1;
            }
            flushed_now = Some(st);
        }
        (57..62, Some(id)) => {
            m.conns.get_mut(&id).unwrap().close_called = true;
            let st = close_status(&m.slot(i).unwrap().h, id);
            m.log.push(format!("close slot {i} {id}: {st:?}"));
        }
        (62..68, Some(id)) => query_checked(m, i, id),
        (68..70, _) => {
            // Another handle's connection, not closed: invisible to this one.
            let hid = m.slot(i).unwrap().hid;
            let foreign: Vec<u64> = m
                .conns
                .iter()
                .filter(|(_, c)| c.owner != hid && !c.owner_closed && !c.close_called)
                .map(|(id, _)| *id)
                .collect();
            if let Some(id) = rng.pick(&foreign) {
                let (st, _) = done(&m.slot(i).unwrap().h.ioctl(
                    Ioctl::Query.code(),
                    &bytes(&QueryRequest { connection_id: id }),
                    QueryReply::SIZE,
                ));
                m.log.push(format!("foreign query slot {i} {id}: {st:?}"));
                m.check(st == NtStatus::NOT_FOUND, || {
                    format!("QUERY of another handle's connection {id}: {st:?}")
                });
            }
        }
        (70..88, _) => {
            let filter = if rng.below(3) == 0 { conn } else { None };
            let room = 1 + rng.below(4);
            m.log
                .push(format!("wait_now slot {i} on {filter:?} room {room}"));
            let n = m.wait_now(i, filter, room);
            m.log.push(format!("  -> {n} events"));
        }
        (88..94, _) => {
            let filter = if rng.below(3) == 0 { conn } else { None };
            let room = 1 + rng.below(4);
            m.log
                .push(format!("wait+cancel slot {i} on {filter:?} room {room}"));
            m.wait_cancelled(i, filter, room);
        }
        (94..97, _) => {
            m.log.push("drain all".to_owned());
            m.drain_all();
        }
        _ => {
            m.log.push(format!("close handle slot {i}, reopen"));
            m.close_handle(i);
            m.open(i, &w.engine);
        }
    }
    // ndkdisc flushes only in FLUSH: one NdkFlush at most, and none when FLUSH failed.
    let grown = w.fabric.stats().flush_calls - before;
    let allowed = match flushed_now {
        Some(NtStatus::SUCCESS) => 1,
        _ => 0,
    };
    m.check(grown <= allowed, || {
        format!("{grown} NdkFlush calls in a step that allows {allowed}")
    });
    m.flush_calls += grown;
    let violations = w.fabric.violations();
    m.check(violations.is_empty(), || {
        format!("provider misuse: {violations:?}")
    });
}

fn query_checked(m: &mut Model, i: usize, id: u64) {
    let (st, out) = done(&m.slot(i).unwrap().h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest { connection_id: id }),
        QueryReply::SIZE,
    ));
    m.log.push(format!("query slot {i} {id}: {st:?}"));
    let c = &m.conns[&id];
    if c.close_called {
        m.check(st == NtStatus::NOT_FOUND, || {
            format!("QUERY after CLOSE of {id}: {st:?}")
        });
        return;
    }
    m.check(st == NtStatus::SUCCESS, || {
        format!("QUERY of own {id}: {st:?}")
    });
    let q = QueryReply::parse(&out).unwrap();
    let receives = u64::from(q.receives_succeeded)
        + u64::from(q.receives_cancelled)
        + u64::from(q.receives_failed)
        + u64::from(q.outstanding_receives);
    let sends = u64::from(q.sends_succeeded)
        + u64::from(q.sends_cancelled)
        + u64::from(q.sends_failed)
        + u64::from(q.outstanding_sends);
    m.check(
        (c.recv_ok..=c.recv_max).contains(&receives) && (c.send_ok..=c.send_max).contains(&sends),
        || {
            format!(
                "QUERY of {id}: completed + outstanding ({receives} receives, {sends} sends) is not \
                 what was posted ({}..={} receives, {}..={} sends): {q:?}",
                c.recv_ok, c.recv_max, c.send_ok, c.send_max
            )
        },
    );
    m.check(q.flushed == c.flush_tried, || {
        format!("QUERY's flushed flag without FLUSH (or the reverse): {q:?}")
    });
    m.check(!q.aborted || c.abort || c.abortive, || {
        format!("QUERY says aborted without ABORT or an abortive DISCONNECT: {q:?}")
    });
}

/// End every connection, check each has had exactly one terminal event, close everything and
/// check that every NDK object is released.
fn finish_model(m: &mut Model, w: &World) {
    m.log
        .push("finish: drain, abort the rest, wait for the terminal events".to_owned());
    let open = |m: &Model| -> Vec<(usize, u64)> {
        (0..SLOTS)
            .flat_map(|i| m.owned(i).into_iter().map(move |id| (i, id)))
            .collect()
    };
    let mut aborted = HashSet::new();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        m.drain_all();
        // Connections may still appear (accepted ones): each without its terminal event is
        // aborted once.
        for (i, id) in open(m) {
            if m.conns[&id].terminal.is_none() && !m.conns[&id].close_called && aborted.insert(id) {
                m.conns.get_mut(&id).unwrap().abort = true;
                let st = abort(&m.slot(i).unwrap().h, id);
                m.log.push(format!("  abort slot {i} {id}: {st:?}"));
            }
        }
        // Every connection of an open handle: its terminal event delivered, and the Closed of
        // those CLOSEd.
        let waiting = m.conns.iter().any(|(_, c)| {
            !c.owner_closed && (c.terminal.is_none() || (c.close_called && !c.closed_delivered))
        });
        if !waiting {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<_> = m
                .conns
                .iter()
                .filter(|(_, c)| !c.owner_closed && c.terminal.is_none())
                .map(|(id, c)| (*id, c.kinds.clone()))
                .collect();
            m.fail(&format!(
                "connections without their terminal event (or Closed): {missing:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (i, id) in open(m) {
        if !m.conns[&id].close_called {
            m.conns.get_mut(&id).unwrap().close_called = true;
            let st = close_status(&m.slot(i).unwrap().h, id);
            m.check(st == NtStatus::SUCCESS, || {
                format!("final CLOSE of {id}: {st:?}")
            });
        }
    }
    let deadline = std::time::Instant::now() + WAIT;
    while m
        .conns
        .values()
        .any(|c| !c.owner_closed && !c.closed_delivered)
    {
        if std::time::Instant::now() > deadline {
            let missing: Vec<_> = m
                .conns
                .iter()
                .filter(|(_, c)| !c.owner_closed && !c.closed_delivered)
                .map(|(id, c)| (*id, c.owner, c.kinds.clone()))
                .collect();
            m.fail(&format!(
                "Closed never delivered after the final CLOSE: {missing:?}"
            ));
        }
        m.drain_all();
        std::thread::sleep(Duration::from_millis(1));
    }
    for (id, p) in std::mem::take(&mut m.gracefuls) {
        m.check(p.wait(WAIT).is_some(), || {
            format!("a graceful DISCONNECT of {id} never completed")
        });
    }
    for i in 0..SLOTS {
        if m.slot(i).is_some() {
            m.close_handle(i);
        }
    }
    if let Err(e) = io::released(&w.fabric) {
        m.fail(&e);
    }
    let violations = w.fabric.violations();
    m.check(violations.is_empty(), || {
        format!("provider misuse: {violations:?}")
    });
    m.check(softndk::alloc_check::violations() == 0, || {
        format!(
            "allocated under an engine lock or in the disconnect callback: {}",
            softndk::alloc_check::first_violation().unwrap_or_default()
        )
    });
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Events delivered and checked.
    pub events: u64,
    /// Events by kind (and cause, for `Disconnected`).
    pub tally: BTreeMap<String, u64>,
    /// Connections seen.
    pub connections: usize,
}

/// Run `ops` random operations with `seed`.
///
/// # Panics
///
/// On a divergence, with the seed, the completion mode and the operations.
pub fn run_seed(seed: u64, ops: usize) -> Outcome {
    let mode = mode_of(seed);
    let mut log = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let w = world(mode);
        let mut m = Model {
            log: Vec::new(),
            slots: (0..SLOTS).map(|_| None).collect(),
            next_hid: 0,
            conns: BTreeMap::new(),
            gracefuls: Vec::new(),
            flush_calls: 0,
            events: 0,
            tally: BTreeMap::new(),
        };
        let mut rng = Rng::new(seed);
        let run = catch_unwind(AssertUnwindSafe(|| {
            for i in 0..SLOTS {
                m.open(i, &w.engine);
            }
            for _ in 0..ops {
                step(&mut m, &w, &mut rng);
            }
            finish_model(&mut m, &w);
        }));
        log = std::mem::take(&mut m.log);
        match run {
            Ok(()) => Outcome {
                events: m.events,
                tally: std::mem::take(&mut m.tally),
                connections: m.conns.len(),
            },
            Err(e) => std::panic::resume_unwind(e),
        }
    }));
    match result {
        Ok(o) => o,
        Err(e) => {
            let what = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let mut ops = String::new();
            for (n, l) in log.iter().enumerate() {
                let _ = writeln!(ops, "  {n:4}: {l}");
            }
            panic!(
                "model divergence, seed {seed} ({mode:?}): {what}\noperations so far (not \
                 shrunk):\n{ops}"
            );
        }
    }
}

/// Run every seed of `seeds` with `ops` operations each and print the totals.
///
/// # Panics
///
/// At the first divergence, with the seed, the completion mode and the operations.
pub fn run_seeds(seeds: std::ops::Range<u64>, ops: usize) {
    let start = std::time::Instant::now();
    let (mut events, mut connections) = (0, 0);
    let mut tally = BTreeMap::<String, u64>::new();
    for seed in seeds.clone() {
        let o = run_seed(seed, ops);
        events += o.events;
        for (k, n) in o.tally {
            *tally.entry(k).or_default() += n;
        }
        connections += o.connections;
    }
    eprintln!(
        "model: seeds {seeds:?} x {ops} ops = {} operations, {connections} connections, {events} \
         events, 0 divergences, {:.1?}\nmodel: events by kind/cause: {tally:?}",
        (seeds.end - seeds.start) * ops as u64,
        start.elapsed()
    );
}
