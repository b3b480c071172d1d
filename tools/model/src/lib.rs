//! # ndkdisc-model — model-based testing of the ndkdisc engine
//!
//! Runs of operations over two hosts and three handle slots, through the IOCTL ABI into the
//! engine over softndk (hardware-like provider, no kindness), checking the documented event
//! guarantees after every operation and at the end.
//!
//! The faults: a peer disconnect or reset, a link loss (nobody is told until a send is not
//! acknowledged), a CQ overrun or fatal error, and the removal of one host's adapters.
//!
//! Operations are data ([`Op`]): every value is valid in every state (indices resolve modulo
//! what exists; an operation with nothing to act on is a no-op), so any list is a run.
//! [`run`] executes a list in a completion mode and returns its [`Outcome`] or the first
//! [`Divergence`]; [`generate`] draws a seed's list, [`run_seed`] / [`run_seeds`] are the
//! seeded driver.
//!
//! What is checked, per step:
//! - sequence numbers: strictly increasing per connection, strictly increasing across the
//!   any-connection WAITs of a handle (a filtered WAIT may overtake other connections' older
//!   events), and never repeated on a handle (copies flagged `already_delivered` excepted);
//! - per connection: its first event is `Connected`/`ConnectFailed` (active, agreeing with the
//!   CONNECT reply) or `Accepted`/`ConnectFailed` (passive, on a handle that listens); at most
//!   one terminal event (`ConnectFailed` or `Disconnected`) is ever delivered, and at the end
//!   exactly one; nothing
//!   after `Closed`, and `Closed` only after CLOSE and after the terminal event;
//! - the cause is one the operations allow (`Local` needs a graceful DISCONNECT,
//!   `LocalAbortive` an abortive one or CLOSE, `Aborted` an ABORT, `TransportError` a send or
//!   a CQ error, `AdapterRemoved` a removal of the adapters of the host its end is on;
//!   `HandleClosed` is never delivered here), and, tighter, the one the reference model of
//!   causes predicts from the operations and faults applied to the connection and its peer
//!   before its terminal event (the rule and its table: the `causes` module, repeated here):
//!   the terminal cause is the cause of one of the connection's *triggers* up to and
//!   including the first *synchronous* one (one whose terminal event is latched before the
//!   operation returns: ABORT, abortive DISCONNECT, CLOSE, adapter removal of its host, and
//!   with `Synchronous` or `Inline` completion a peer fault on its own connector); the
//!   asynchronous ones (a graceful DISCONNECT, its peer's ending, a POST of sends, a link
//!   loss, a CQ error on its host, and peer faults with provider threads) may overtake a later
//!   trigger; a connection with no trigger must not end;
//! - an adapter removal ends, at once, every connection with an end on that host that had not
//!   ended before;
//! - no event reaches a handle that does not own the connection; another handle's connection
//!   cannot be queried;
//! - a terminal event's outstanding counts are at most what was posted; QUERY's completion
//!   counts plus its outstanding counts equal what was posted;
//! - ndkdisc never flushes on its own: a `Flushed` event only after a successful FLUSH, and the
//!   provider's `NdkFlush` count grows only in FLUSH; QUERY says the provider flushed only
//!   after a send, a fault, a CQ error, an adapter removal or a POST to a connection that
//!   never connected or had ended, and that the CQ failed only after a CQ error; a
//!   `TransportError` shows in QUERY as a failed completion or a dead CQ;
//! - no provider misuse after any step; at the end every NDK object is released, every graceful
//!   DISCONNECT completed, and nothing was allocated where it must not be.
//!
//! A seed's divergence is shrunk ([`shrink`]: delta debugging within a [`Budget`], in the same
//! completion mode) and [`report`]ed: the seed, the mode, both lengths and the shrunk list as
//! Rust source (`vec![Op::..., ...]`), with how to [`replay`] it. Runs with provider threads
//! do not replay exactly; the report says so, and whether the divergence reproduced.
//!
//! The seeded driver needs the test binary to install `softndk::alloc_check`'s allocator for
//! the end-of-run allocation check to count anything (a library cannot install it).

mod causes;
/// The world and the IOCTL helpers, shared with the engine's own end-to-end tests. Each helper
/// panics on a request that hangs (a test failure, not an error to handle).
#[allow(
    clippy::missing_panics_doc,
    reason = "test support: a hang is a test failure"
)]
pub mod io;
mod ops;
mod shrink;
pub use io::World;
use io::{
    WAIT, abort, bytes, close as close_status, connect_pending, decode_events, disconnect_pending,
    done, flush, post, wait_request, world,
};
pub use ops::{FaultKind, Op, generate};
pub use shrink::{Budget, Shrunk, shrink};

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

use softndk::{CqError, Fault};

/// Handle slots: slot 0 listens on `PORTS[0]`, slot 1 on `PORTS[1]`, slot 2 only connects.
const SLOTS: usize = 3;
const PORTS: [u16; 2] = [4791, 4792];
/// A port nobody listens on (CONNECT fails).
const NO_LISTENER: u16 = 4799;

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
    /// The address of its connector, when known.
    end: Option<usize>,
    /// Its peer connection (the other end), when known.
    peer: Option<u64>,
    /// The address of its peer's connector (active side), when known.
    peer_end: Option<usize>,
    /// The handle listening on the port it connected to (active side).
    listener: Option<usize>,
    /// Its local address (active side, connected).
    local: Option<SocketAddr>,
    /// What may end it, in order ([`causes`]).
    triggers: Vec<causes::Trigger>,
    /// Triggers for its passive peer, not seen yet (active side).
    peer_pending: Vec<causes::Trigger>,
    /// Something was posted while its CONNECT had failed or after its terminal event.
    posted_after_end: bool,
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
    /// Faults that hit, by kind.
    faults: BTreeMap<FaultKind, u32>,
    /// CQ errors injected on a live CQ.
    cq_errors: u32,
    /// Hosts whose adapters were removed.
    removed: [bool; 2],
    /// The reference model of causes.
    causes: causes::Causes,
    /// Terminal causes checked against the prediction, and not (no attribution).
    predicted: u64,
    unpredicted: u64,
    /// Predicted causes where exactly one cause was allowed.
    exactly: u64,
}

impl Model {
    fn new(mode: Completion) -> Self {
        Self {
            log: Vec::new(),
            slots: (0..SLOTS).map(|_| None).collect(),
            next_hid: 0,
            conns: BTreeMap::new(),
            gracefuls: Vec::new(),
            flush_calls: 0,
            events: 0,
            tally: BTreeMap::new(),
            faults: BTreeMap::new(),
            cq_errors: 0,
            removed: [false; 2],
            causes: causes::Causes::new(mode),
            predicted: 0,
            unpredicted: 0,
            exactly: 0,
        }
    }

    /// Record that `cause` may end connection `id` (if its terminal event is still to come).
    fn trigger(&mut self, id: u64, cause: Cause, sync: bool) {
        let op = self.causes.op;
        if let Some(c) = self.conns.get_mut(&id)
            && c.terminal.is_none()
        {
            c.triggers.push(causes::Trigger { cause, sync, op });
        }
    }

    /// Record that `cause` may end the peer of connection `id` (known or not yet seen).
    fn trigger_peer(&mut self, id: u64, cause: Cause, sync: bool) {
        let op = self.causes.op;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.peer {
            Some(p) => self.trigger(p, cause, sync),
            None if c.peer_end.is_some() => {
                c.peer_pending.push(causes::Trigger { cause, sync, op });
            }
            None => {}
        }
    }

    /// Record `cause` for the connection whose connector is at `addr` (and `peer_cause` for
    /// its peer); an address nobody can attribute turns the prediction off.
    fn trigger_end(&mut self, addr: usize, cause: &[Cause], sync: bool, peer_cause: &[Cause]) {
        let (this, peer) = match self.causes.ends.get(&addr) {
            Some(causes::End::Conn(id)) => (Some(*id), self.conns[id].peer),
            Some(causes::End::PeerOf(c)) => (self.conns[c].peer, Some(*c)),
            None => {
                self.causes.off = true;
                return;
            }
        };
        for &k in cause {
            match (this, self.causes.ends.get(&addr)) {
                (Some(id), _) => self.trigger(id, k, sync),
                (None, Some(causes::End::PeerOf(c))) => self.trigger_peer(*c, k, sync),
                _ => {}
            }
        }
        for &k in peer_cause {
            match (peer, self.causes.ends.get(&addr)) {
                (Some(id), _) => self.trigger(id, k, sync),
                (None, Some(causes::End::Conn(c))) => self.trigger_peer(*c, k, sync),
                _ => {}
            }
        }
    }

    /// At the first sight of passive connection `id` (its `Accepted`, on slot `i`): find its
    /// active peer by addresses, and take over its connector and the triggers recorded for it.
    fn link_passive(&mut self, i: usize, id: u64) {
        let (st, out) = done(&self.slot(i).unwrap().h.ioctl(
            Ioctl::Query.code(),
            &bytes(&QueryRequest { connection_id: id }),
            QueryReply::SIZE,
        ));
        let remote = (st == NtStatus::SUCCESS)
            .then(|| QueryReply::parse(&out).ok())
            .flatten()
            .and_then(|q| q.remote);
        let Some(remote) = remote else { return };
        let active = self
            .conns
            .iter()
            .rev()
            .find(|(_, c)| {
                c.active && c.local == Some(remote) && c.peer.is_none() && c.peer_end.is_some()
            })
            .map(|(a, _)| *a);
        let Some(a) = active else { return };
        let c = self.conns.get_mut(&a).unwrap();
        c.peer = Some(id);
        let end = c.peer_end;
        let pending = std::mem::take(&mut c.peer_pending);
        let p = self.conns.get_mut(&id).unwrap();
        p.peer = Some(a);
        p.end = end;
        p.triggers = pending;
        if let Some(end) = end {
            self.causes.ends.insert(end, causes::End::Conn(id));
        }
    }

    /// A local operation that ends connection `id` at once with `cause` returned `st`.
    fn ended_locally(&mut self, id: u64, cause: Cause, st: NtStatus) {
        if st == NtStatus::SUCCESS {
            self.trigger(id, cause, true);
            self.trigger_peer(id, Cause::Peer, false);
        }
    }

    /// What an extra check sees.
    fn facts(&self) -> Facts {
        Facts {
            posted: self
                .conns
                .iter()
                .map(|(id, c)| (*id, (c.recv_max, c.send_max)))
                .collect(),
            faults: self.faults.clone(),
        }
    }

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
            if e.kind == EventKind::Accepted {
                self.link_passive(i, id);
            }
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
                        Some(Cause::TransportError) => (c.send_max == 0 && self.cq_errors == 0)
                            .then_some("TransportError without a send or a CQ error"),
                        // Its end is on host 0 if active, else on host 1.
                        Some(Cause::AdapterRemoved) => (!self.removed[usize::from(!c.active)])
                            .then_some(
                                "AdapterRemoved on a connection whose host kept its adapter",
                            ),
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
        if e.kind == EventKind::Disconnected {
            let c = &self.conns[&id];
            if self.causes.off || c.end.is_none() {
                self.unpredicted += 1;
            } else {
                match causes::check(&c.triggers, e) {
                    Ok(exact) => self.exactly += u64::from(exact),
                    Err(what) => self.fail(&format!("connection {id}: {what}")),
                }
                self.predicted += 1;
            }
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
        for id in self.owned(i) {
            self.trigger_peer(id, Cause::Peer, false);
        }
        // Its passive connections not seen yet go too: their active peers hear of it.
        let hid = self.slot(i).unwrap().hid;
        let unseen: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.active && c.peer.is_none() && c.listener == Some(hid))
            .map(|(id, _)| *id)
            .collect();
        for id in unseen {
            self.trigger(id, Cause::Peer, false);
        }
        let s = self.slots[i].take().unwrap();
        for c in self.conns.values_mut().filter(|c| c.owner == s.hid) {
            c.owner_closed = true;
        }
        s.h.close();
    }
}

/// Which slot an operation's `slot` names.
fn slot_of(slot: u8) -> usize {
    usize::from(slot) % SLOTS
}

/// The `n`th (modulo) of `items`.
fn nth<T: Copy>(items: &[T], n: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(n) % items.len()])
}

/// Apply one operation to the world, checking what it returns and every per-step guarantee.
/// Returns whether it acted (an operation with nothing to act on is a no-op).
#[expect(clippy::too_many_lines, reason = "one arm per operation")]
fn apply(m: &mut Model, w: &World, op: Op) -> bool {
    let before = w.fabric.stats().flush_calls;
    let mut flushed_now = None;
    let own_conn = |m: &Model, slot: u8, conn: u8| {
        let i = slot_of(slot);
        nth(&m.owned(i), conn).map(|id| (i, id))
    };
    let acted = match op {
        Op::Connect {
            slot,
            port,
            refused,
        } => {
            let i = slot_of(slot);
            let port = if refused {
                NO_LISTENER
            } else {
                PORTS[usize::from(port) % PORTS.len()]
            };
            m.log.push(format!("connect slot {i} port {port}"));
            let live = |host: usize| -> Vec<usize> {
                w.fabric
                    .connectors(w.hosts[host])
                    .into_iter()
                    .map(<*mut _>::addr)
                    .collect()
            };
            let before = [live(0), live(1)];
            let (st, out) = done(&connect_pending(&m.slot(i).unwrap().h, port));
            let new: Vec<Vec<usize>> = (0..2)
                .map(|h| {
                    live(h)
                        .into_iter()
                        .filter(|a| !before[h].contains(a))
                        .collect()
                })
                .collect();
            if st == NtStatus::SUCCESS {
                let r = ConnectReply::parse(&out).unwrap();
                m.log
                    .push(format!("  -> {} {:?}", r.connection_id, r.status));
                m.check(!m.conns.contains_key(&r.connection_id), || {
                    format!("CONNECT returned an id in use: {}", r.connection_id)
                });
                let hid = m.slot(i).unwrap().hid;
                let id = r.connection_id;
                let listener = PORTS
                    .iter()
                    .position(|p| *p == port)
                    .and_then(|k| m.slot(k))
                    .filter(|s| s.listens)
                    .map(|s| s.hid);
                let connect_ok = r.status == NtStatus::SUCCESS;
                m.conns.insert(
                    id,
                    Conn {
                        owner: hid,
                        active: true,
                        connect_ok,
                        listener,
                        ..Conn::default()
                    },
                );
                // Its connector and its peer's: the ones this CONNECT created.
                if let [own] = new[0][..] {
                    m.causes.ends.insert(own, causes::End::Conn(id));
                    m.conns.get_mut(&id).unwrap().end = Some(own);
                } else if connect_ok {
                    m.causes.off = true;
                }
                if let [peer] = new[1][..] {
                    m.causes.ends.insert(peer, causes::End::PeerOf(id));
                    m.conns.get_mut(&id).unwrap().peer_end = Some(peer);
                } else if connect_ok {
                    m.causes.off = true;
                }
                if connect_ok {
                    let (st, out) = done(&m.slot(i).unwrap().h.ioctl(
                        Ioctl::Query.code(),
                        &bytes(&QueryRequest { connection_id: id }),
                        QueryReply::SIZE,
                    ));
                    m.conns.get_mut(&id).unwrap().local = (st == NtStatus::SUCCESS)
                        .then(|| QueryReply::parse(&out).ok())
                        .flatten()
                        .and_then(|q| q.local);
                }
            } else {
                m.log.push(format!("  -> {st:?}"));
            }
            true
        }
        Op::Post {
            slot,
            conn,
            send,
            count,
        } => match own_conn(m, slot, conn) {
            Some((i, id)) => {
                let kind = if send {
                    PostKind::Send
                } else {
                    PostKind::Receive
                };
                let count = 1 + u32::from(count % 4);
                let st = post(&m.slot(i).unwrap().h, id, kind, count);
                m.log
                    .push(format!("post slot {i} {id} {kind:?} x{count}: {st:?}"));
                let c = m.conns.get_mut(&id).unwrap();
                // Receives posted to a connection that never connected or has ended go to a QP
                // in the error state: the provider flushes them on its own.
                c.posted_after_end |= c.terminal.is_some() || (c.active && !c.connect_ok);
                let ok = u64::from(count) * u64::from(st == NtStatus::SUCCESS);
                if send {
                    c.send_max += u64::from(count);
                    c.send_ok += ok;
                    m.trigger(id, Cause::TransportError, false);
                } else {
                    c.recv_max += u64::from(count);
                    c.recv_ok += ok;
                }
                true
            }
            None => false,
        },
        Op::Fault {
            host,
            connector,
            fault,
        } => {
            let host = usize::from(host) % 2;
            let connectors = w.fabric.connectors(w.hosts[host]);
            match nth(&connectors, connector) {
                Some(victim) => {
                    let f = match fault {
                        FaultKind::PeerDisconnect => Fault::PeerDisconnect,
                        FaultKind::PeerReset => Fault::PeerReset,
                        FaultKind::LinkLoss => Fault::LinkLoss,
                    };
                    let hit = w.fabric.inject(victim, f);
                    m.log.push(format!(
                        "fault {f:?} on host {host}'s connector {} of {}: {hit}",
                        usize::from(connector) % connectors.len(),
                        connectors.len()
                    ));
                    if hit {
                        *m.faults.entry(fault).or_default() += 1;
                        let inline = m.causes.inline;
                        match fault {
                            FaultKind::PeerDisconnect | FaultKind::PeerReset => {
                                m.trigger_end(victim.addr(), &[Cause::Peer], inline, &[]);
                            }
                            FaultKind::LinkLoss => {
                                let both = [Cause::TransportError, Cause::Peer];
                                m.trigger_end(victim.addr(), &both, false, &both);
                            }
                        }
                    }
                    true
                }
                None => false,
            }
        }
        Op::CqError { host, cq, fatal } => {
            let host = usize::from(host) % 2;
            let cqs = w.fabric.cqs(w.hosts[host]);
            match nth(&cqs, cq) {
                Some(victim) => {
                    let error = if fatal {
                        CqError::Fatal
                    } else {
                        CqError::Overrun
                    };
                    let hit = w.fabric.inject_cq_error(victim, error);
                    m.log.push(format!(
                        "{error:?} on host {host}'s CQ {} of {}: {hit}",
                        usize::from(cq) % cqs.len(),
                        cqs.len()
                    ));
                    m.cq_errors += u32::from(hit);
                    if hit {
                        // Which CQ is whose is not known. A connection whose own QP died ends
                        // with `TransportError`; one whose peer's QP died finds out when its
                        // sends go unacknowledged, by a failed send (`TransportError`) or by
                        // the provider's disconnect indication (`Peer`, retry exceeded),
                        // whichever is reaped first; and a peer's reset after that is a `Peer`
                        // too. So every connection may see either.
                        let ids: Vec<u64> = m.conns.keys().copied().collect();
                        for id in ids {
                            for cause in [Cause::TransportError, Cause::Peer] {
                                m.trigger(id, cause, false);
                                // Its passive peer, if not seen yet, too.
                                m.trigger_peer(id, cause, false);
                            }
                        }
                    }
                    true
                }
                None => false,
            }
        }
        Op::RemoveAdapter { host } => {
            let host = usize::from(host) % 2;
            if m.removed[host] {
                false
            } else {
                remove_adapter(m, w, host);
                true
            }
        }
        Op::Disconnect {
            slot,
            conn,
            abortive,
        } => match own_conn(m, slot, conn) {
            Some((i, id)) if abortive => {
                m.conns.get_mut(&id).unwrap().abortive = true;
                let st = done(&disconnect_pending(&m.slot(i).unwrap().h, id, true)).0;
                m.ended_locally(id, Cause::LocalAbortive, st);
                m.log
                    .push(format!("abortive disconnect slot {i} {id}: {st:?}"));
                true
            }
            Some((i, id)) => {
                let p = disconnect_pending(&m.slot(i).unwrap().h, id, false);
                m.log
                    .push(format!("graceful disconnect slot {i} {id} (pending)"));
                m.conns.get_mut(&id).unwrap().graceful = true;
                m.gracefuls.push((id, p));
                m.trigger(id, Cause::Local, false);
                m.trigger_peer(id, Cause::Peer, false);
                true
            }
            None => false,
        },
        Op::Abort { slot, conn } => match own_conn(m, slot, conn) {
            Some((i, id)) => {
                m.conns.get_mut(&id).unwrap().abort = true;
                let st = abort(&m.slot(i).unwrap().h, id);
                m.log.push(format!("abort slot {i} {id}: {st:?}"));
                m.ended_locally(id, Cause::Aborted, st);
                true
            }
            None => false,
        },
        Op::Flush { slot, conn } => match own_conn(m, slot, conn) {
            Some((i, id)) => {
                m.conns.get_mut(&id).unwrap().flush_tried = true;
                let st = flush(&m.slot(i).unwrap().h, id);
                m.log.push(format!("flush slot {i} {id}: {st:?}"));
                if st == NtStatus::SUCCESS {
                    m.conns.get_mut(&id).unwrap().flush_ok += 1;
                }
                flushed_now = Some(st);
                true
            }
            None => false,
        },
        Op::Close { slot, conn } => match own_conn(m, slot, conn) {
            Some((i, id)) => {
                m.conns.get_mut(&id).unwrap().close_called = true;
                let st = close_status(&m.slot(i).unwrap().h, id);
                m.log.push(format!("close slot {i} {id}: {st:?}"));
                m.ended_locally(id, Cause::LocalAbortive, st);
                true
            }
            None => false,
        },
        Op::Query { slot, conn } => match own_conn(m, slot, conn) {
            Some((i, id)) => {
                query_checked(m, i, id);
                true
            }
            None => false,
        },
        Op::ForeignQuery { slot, conn } => {
            // Another handle's connection, not closed: invisible to this one.
            let i = slot_of(slot);
            let hid = m.slot(i).unwrap().hid;
            let foreign: Vec<u64> = m
                .conns
                .iter()
                .filter(|(_, c)| c.owner != hid && !c.owner_closed && !c.close_called)
                .map(|(id, _)| *id)
                .collect();
            match nth(&foreign, conn) {
                Some(id) => {
                    let (st, _) = done(&m.slot(i).unwrap().h.ioctl(
                        Ioctl::Query.code(),
                        &bytes(&QueryRequest { connection_id: id }),
                        QueryReply::SIZE,
                    ));
                    m.log.push(format!("foreign query slot {i} {id}: {st:?}"));
                    m.check(st == NtStatus::NOT_FOUND, || {
                        format!("QUERY of another handle's connection {id}: {st:?}")
                    });
                    true
                }
                None => false,
            }
        }
        Op::Wait {
            slot,
            on,
            room,
            cancel,
        } => {
            let i = slot_of(slot);
            let filter = match on {
                None => Some(None),
                Some(conn) => nth(&m.owned(i), conn).map(Some),
            };
            let room = 1 + usize::from(room % 4);
            match filter {
                Some(filter) if cancel => {
                    m.log
                        .push(format!("wait+cancel slot {i} on {filter:?} room {room}"));
                    m.wait_cancelled(i, filter, room);
                    true
                }
                Some(filter) => {
                    m.log
                        .push(format!("wait_now slot {i} on {filter:?} room {room}"));
                    let n = m.wait_now(i, filter, room);
                    m.log.push(format!("  -> {n} events"));
                    true
                }
                None => false,
            }
        }
        Op::Drain => {
            m.log.push("drain all".to_owned());
            m.drain_all();
            true
        }
        Op::CloseHandle { slot } => {
            let i = slot_of(slot);
            m.log.push(format!("close handle slot {i}, reopen"));
            m.close_handle(i);
            m.open(i, &w.engine);
            true
        }
    };
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
    acted
}

/// Remove host `host`'s adapters: every connection with an end there and no terminal event
/// then has its terminal event (`AdapterRemoved`, unless something else ended it first).
fn remove_adapter(m: &mut Model, w: &World, host: usize) {
    m.log.push(format!("remove host {host}'s adapters"));
    // What had ended before is delivered now: what is still open after this is on the host.
    m.drain_all();
    let on_host: Vec<u64> = m
        .conns
        .iter()
        .filter(|(_, c)| {
            c.active == (host == 0) && c.terminal.is_none() && !c.close_called && !c.owner_closed
        })
        .map(|(id, _)| *id)
        .collect();
    let ids: Vec<u64> = m.conns.keys().copied().collect();
    for id in ids {
        if m.conns[&id].active == (host == 0) {
            m.trigger(id, Cause::AdapterRemoved, true);
            m.trigger_peer(id, Cause::Peer, false);
        } else if host == 1 {
            // An active connection whose passive end is not seen yet: that end goes, and it
            // hears of it.
            m.trigger_peer(id, Cause::AdapterRemoved, true);
            m.trigger(id, Cause::Peer, false);
        }
    }
    m.removed[host] = true;
    w.fabric.remove_adapters(w.hosts[host]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        m.drain_all();
        let open: Vec<u64> = on_host
            .iter()
            .copied()
            .filter(|id| {
                let c = &m.conns[id];
                c.terminal.is_none() && !c.owner_closed
            })
            .collect();
        if open.is_empty() {
            break;
        }
        m.check(std::time::Instant::now() < deadline, || {
            format!("connections on host {host} not ended by the adapter removal: {open:?}")
        });
        std::thread::sleep(Duration::from_millis(1));
    }
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
    let (receives, sends) = q.accounted();
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
    // The provider flushes on its own only after something failed: a send into a dead peer or
    // a lost link (so a send was posted), a fault, a CQ error, an adapter removal, or a QP in
    // the error state (a connection that never connected or has ended) given requests.
    let faults =
        m.faults.values().sum::<u32>() + m.cq_errors + u32::from(m.removed.contains(&true));
    m.check(
        !q.provider_flushed || c.send_max > 0 || faults > 0 || c.posted_after_end,
        || {
            format!(
                "QUERY says the provider flushed, with no send, fault, CQ error or POST after \
                 the end: {q:?}"
            )
        },
    );
    m.check(!q.cq_failed || m.cq_errors > 0, || {
        format!("QUERY says the CQ failed, and no CQ error was injected: {q:?}")
    });
    // A transport error shows in QUERY: a failed completion or a dead CQ.
    if c.terminal
        .is_some_and(|t| t.cause == Some(Cause::TransportError))
    {
        m.check(
            q.cq_failed || q.receives_failed + q.sends_failed > 0,
            || format!("TransportError with no failed completion and no dead CQ: {q:?}"),
        );
    }
}

/// At the end of a run: ABORT connection `id` of slot `i` if it has no terminal event yet, once.
fn abort_once(m: &mut Model, aborted: &mut HashSet<u64>, i: usize, id: u64) {
    if m.conns[&id].terminal.is_none() && aborted.insert(id) {
        m.conns.get_mut(&id).unwrap().abort = true;
        let st = abort(&m.slot(i).unwrap().h, id);
        m.log.push(format!("  abort slot {i} {id}: {st:?}"));
        m.ended_locally(id, Cause::Aborted, st);
    }
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
            if !m.conns[&id].close_called {
                abort_once(m, &mut aborted, i, id);
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
    // CLOSE every connection, also one accepted only now (its handshake was still under way
    // when the loop above ended: it is aborted first), until every `Closed` has arrived.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for (i, id) in open(m) {
            if m.conns[&id].close_called {
                continue;
            }
            abort_once(m, &mut aborted, i, id);
            m.conns.get_mut(&id).unwrap().close_called = true;
            let st = close_status(&m.slot(i).unwrap().h, id);
            m.check(st == NtStatus::SUCCESS, || {
                format!("final CLOSE of {id}: {st:?}")
            });
        }
        if !m
            .conns
            .values()
            .any(|c| !c.owner_closed && !c.closed_delivered)
        {
            break;
        }
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
    /// Operations that acted, by kind ([`Op::kind`]).
    pub ops: BTreeMap<&'static str, u64>,
    /// Operations that found nothing to act on.
    pub no_ops: u64,
    /// Terminal causes checked against the reference model's prediction (see the crate docs).
    pub predicted: u64,
    /// Of the predicted ones, those where exactly one cause was allowed.
    pub exactly: u64,
    /// Terminal causes only checked as allowed (a connector or connection the run could not
    /// attribute).
    pub unpredicted: u64,
}

impl Outcome {
    /// Add `other`'s figures to these.
    pub fn add(&mut self, other: Outcome) {
        self.events += other.events;
        self.connections += other.connections;
        self.no_ops += other.no_ops;
        self.predicted += other.predicted;
        self.unpredicted += other.unpredicted;
        self.exactly += other.exactly;
        for (k, n) in other.tally {
            *self.tally.entry(k).or_default() += n;
        }
        for (k, n) in other.ops {
            *self.ops.entry(k).or_default() += n;
        }
    }
}

/// A run that broke a guarantee (or panicked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The index of the operation after which it was found; the length of the list when found
    /// by the end-of-run checks.
    pub index: usize,
    /// What was wrong.
    pub message: String,
    /// The operations applied, with what they returned (the last ones before the divergence).
    pub log: Vec<String>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at operation {}: {}", self.index, self.message)
    }
}

/// What a run's extra check ([`run`]) sees after each operation.
#[derive(Debug, Default)]
pub struct Facts {
    /// Connections known so far, by id: receives and sends posted (every POST's count).
    pub posted: BTreeMap<u64, (u64, u64)>,
    /// Faults that hit a connector so far, by kind.
    pub faults: BTreeMap<FaultKind, u32>,
}

/// An extra check a run makes after each operation ([`run`]): `Err` is a divergence. For tests
/// of the machinery itself (a synthetic divergence to shrink) and for checks of a caller's own.
pub type Check<'a> = &'a dyn Fn(&Facts) -> Result<(), String>;

/// Run `ops` in a fresh world completing as `mode`: every operation checked as it goes, then
/// every connection ended and closed, the handles closed and the end-of-run checks made. A
/// panic anywhere (a check, the engine, the host platform's kernel rules) is caught and
/// reported as a [`Divergence`] at the operation that was running.
///
/// # Errors
///
/// The first divergence found.
pub fn run(ops: &[Op], mode: Completion, extra: Option<Check<'_>>) -> Result<Outcome, Divergence> {
    let at = std::cell::Cell::new(0);
    let mut log = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let w = world(mode);
        let mut m = Model::new(mode);
        let run = catch_unwind(AssertUnwindSafe(|| {
            for i in 0..SLOTS {
                m.open(i, &w.engine);
            }
            let mut outcome = Outcome::default();
            for (n, &op) in ops.iter().enumerate() {
                at.set(n);
                m.causes.op = n;
                if apply(&mut m, &w, op) {
                    *outcome.ops.entry(op.kind()).or_default() += 1;
                } else {
                    m.log.push(format!("no-op {op:?}"));
                    outcome.no_ops += 1;
                }
                if let Some(check) = extra {
                    check(&m.facts())?;
                }
            }
            at.set(ops.len());
            m.causes.op = ops.len();
            finish_model(&mut m, &w);
            Ok(outcome)
        }));
        log = std::mem::take(&mut m.log);
        match run {
            Ok(Ok(mut o)) => {
                o.events = m.events;
                o.tally = std::mem::take(&mut m.tally);
                o.connections = m.conns.len();
                o.predicted = m.predicted;
                o.unpredicted = m.unpredicted;
                o.exactly = m.exactly;
                Ok(o)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => std::panic::resume_unwind(e),
        }
    }));
    result
        .unwrap_or_else(|e| {
            Err(e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default())
        })
        .map_err(|message| Divergence {
            index: at.get(),
            message,
            log,
        })
}

/// `ops` as Rust source: `vec![Op::..., ...]`, one operation a line.
pub fn rust_source(ops: &[Op]) -> String {
    let mut s = String::from("vec![\n");
    for op in ops {
        // `FaultKind`'s values print bare.
        let op = format!("{op:?}").replace("fault: ", "fault: FaultKind::");
        let _ = writeln!(s, "    Op::{op},");
    }
    s.push(']');
    s
}

/// Run the operations of `seed` (`n` of them, [`generate`]) in its completion mode
/// ([`mode_of`]).
///
/// # Panics
///
/// On a divergence: [`report`] of the seed's list, shrunk.
pub fn run_seed(seed: u64, n: usize) -> Outcome {
    let mode = mode_of(seed);
    let ops = generate(seed, n);
    match run(&ops, mode, None) {
        Ok(o) => o,
        Err(d) => {
            let shrunk = shrink(&ops, d.clone(), mode, None, Budget::default());
            panic!(
                "{}",
                report(&format!("seed {seed}"), &ops, &d, mode, &shrunk)
            );
        }
    }
}

/// What a failure prints: where the list came from (`origin`), the completion mode, the
/// divergence, the original and shrunk lengths, the shrunk list as Rust source, how to replay
/// it, and the log of the shrunk run.
pub fn report(
    origin: &str,
    ops: &[Op],
    first: &Divergence,
    mode: Completion,
    shrunk: &Shrunk,
) -> String {
    let deterministic = matches!(mode, Completion::Synchronous | Completion::Inline);
    let mut s = format!(
        "model divergence, {origin} (Completion::{mode:?}), {first}\n{} operations, shrunk to {} \
         in {} replays",
        ops.len(),
        shrunk.ops.len(),
        shrunk.replays,
    );
    if shrunk.reproduced {
        let _ = write!(s, "; the shrunk list diverges {}", shrunk.divergence);
    } else {
        s.push_str(
            "; the divergence did NOT reproduce when replayed in the same mode (provider threads \
             make a run depend on timing): the list below is the original, cut after the \
             diverging operation",
        );
    }
    if !deterministic {
        s.push_str(
            "\n(this mode has provider threads: a replay may take another course; try it also \
             in Completion::Synchronous)",
        );
    }
    let _ = write!(
        s,
        "\noperations:\n{}\nreplay: put this list and the mode in `replay` in \
         driver/core/tests/model.rs and run\n  cargo test -p ndkdisc-core --test model -- \
         --ignored replay --nocapture\nlog of the shrunk run:\n{}",
        rust_source(&shrunk.ops),
        shrunk.divergence.log.join("\n")
    );
    s
}

/// Run `ops` in `mode` once more: for a list a failure printed.
///
/// # Panics
///
/// On a divergence, with its log.
pub fn replay(ops: &[Op], mode: Completion) -> Outcome {
    match run(ops, mode, None) {
        Ok(o) => o,
        Err(d) => panic!(
            "model divergence in replay (Completion::{mode:?}), {d}\nlog:\n{}",
            d.log.join("\n")
        ),
    }
}

/// Run every seed of `seeds` with `n` operations each and print the totals.
///
/// # Panics
///
/// At the first divergence ([`run_seed`]).
pub fn run_seeds(seeds: std::ops::Range<u64>, n: usize) -> Outcome {
    let start = std::time::Instant::now();
    let mut total = Outcome::default();
    for seed in seeds.clone() {
        total.add(run_seed(seed, n));
    }
    eprintln!(
        "model: seeds {seeds:?} x {n} ops = {} operations ({} no-ops), {} connections, {} \
         events ({} terminal causes predicted, {} of them exactly, {} only allowed), 0 divergences, {:.1?}\nmodel: operations by kind: {:?}\nmodel: events by \
         kind/cause: {:?}",
        (seeds.end - seeds.start) * n as u64,
        total.no_ops,
        total.connections,
        total.events,
        total.predicted,
        total.exactly,
        total.unpredicted,
        start.elapsed(),
        total.ops,
        total.tally,
    );
    total
}
