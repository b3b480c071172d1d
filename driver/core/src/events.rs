//! A handle's event queue: per-connection preallocated event records, the queue of latched
//! events, and the pended WAIT requests. One `EventQueue` lives under each handle's lock; every
//! method here is called with that lock held and never blocks or allocates, except
//! [`EventQueue::new`] and [`EventQueue::add_connection`] (`PASSIVE_LEVEL`, fallible).
//!
//! Completing a request is never done under the lock: methods hand back a [`Ready`] request
//! for the caller to complete after unlocking.

use alloc::vec::Vec;

use ndkdisc_abi::{
    BATCH_HEADER_SIZE, Cause, Event, EventKind, NtStatus, batch_capacity, encode_batch_header,
};

use crate::ports::PendedRequest;

/// The event records every connection owns. Each is latched at most once at a time, so a
/// connection never has more than [`SLOTS`] events queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Slot {
    /// `Connected` or `Accepted`.
    Established = 0,
    /// `ConnectFailed` or `Disconnected`: at most once per connection, ever.
    Terminal = 1,
    /// `Flushed` (reused: a flush latched while the previous one is still queued is merged).
    Flushed = 2,
    /// `Closed`.
    Closed = 3,
}

/// Event records per connection.
pub const SLOTS: usize = 4;

/// The slot an event of `kind` is latched in; `None` for a kind the ABI does not define
/// (never latched: the engine only builds the kinds it knows).
const fn slot_of(kind: EventKind) -> Option<Slot> {
    match kind {
        EventKind::Connected | EventKind::Accepted => Some(Slot::Established),
        EventKind::ConnectFailed | EventKind::Disconnected => Some(Slot::Terminal),
        EventKind::Flushed => Some(Slot::Flushed),
        EventKind::Closed => Some(Slot::Closed),
        EventKind::Unknown(_) => None,
    }
}

/// Per-handle limits, fixed when the handle is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections the handle may hold (until their `Closed` event is delivered).
    pub max_connections: usize,
    /// WAIT requests that may pend at once.
    pub max_waits: usize,
}

/// Why the queue refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Memory for the handle's records could not be reserved.
    NoMemory,
    /// The handle holds `max_connections` connections.
    Quota,
    /// No connection with that id on this handle.
    NotFound,
    /// The engine's id sequence numbers ran out (see [`crate::ids`]): no new id can be made.
    IdsExhausted,
}

/// A connection's place in its handle's table: its id, which holds its record index (see
/// [`crate::ids`]). A fact latched through a stale one (its record freed after `Closed` and
/// reused) is refused, not charged to the new owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnIndex(u64);

impl ConnIndex {
    /// The connection's record index in its handle (the handle's table of connections uses the
    /// same index).
    pub(crate) fn slot(self) -> usize {
        crate::ids::index_of(self.0)
    }

    /// The connection's id.
    pub fn id(self) -> u64 {
        self.0
    }
}

/// The end of an intrusive list.
const NIL: u32 = u32::MAX;

/// Links of an intrusive doubly-linked list: a member's neighbours, or a list's ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    const NONE: Self = Self {
        prev: NIL,
        next: NIL,
    };
}

#[derive(Debug)]
struct Records {
    /// The connection's id, as in `EventQueue::keys`: kept here too because the latch (the
    /// disconnect callback, at `DISPATCH_LEVEL`) checks it on the record's cache lines it
    /// writes anyway, while lookups by id read only the dense `keys`.
    id: u64,
    /// The connection's latched events, by [`Slot`].
    slots: [Option<Stored>; SLOTS],
    /// The provider's reason of the terminal event (`Disconnected`, or `ConnectFailed` when the
    /// disconnect callback raced establishment), if its slot says it has one: no other kind
    /// carries one, so it is kept once per connection instead of per slot. Set only by the
    /// terminal event's latch.
    terminal_reason: u32,
    /// Each queued slot's neighbours in the handle's latch-order list (entry
    /// `index * SLOTS + slot`).
    order: [Links; SLOTS],
    /// The WAITs pended on this connection alone, oldest first (`prev` = head, `next` = tail).
    waits: Links,
}

/// A latched event as a slot keeps it: what [`Event`] holds, minus what the records know (the
/// connection id, the terminal event's provider reason) or only delivery sets
/// (`already_delivered`), with the kind and cause as their wire numbers in a byte each: 32
/// bytes instead of 56, and `Option<Stored>` is no larger (`callback_fired` gives the niche).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    seq: u64,
    timestamp: u64,
    status: NtStatus,
    outstanding_receives: u32,
    outstanding_sends: u32,
    kind: u8,
    /// 0: none.
    cause: u8,
    callback_fired: bool,
    /// [`Stored::PROVIDER_FLUSHES`], [`Stored::HAS_REASON`].
    flags: u8,
}

const _: () = assert!(size_of::<Option<Stored>>() == 32, "a slot stays 32 bytes");

impl Stored {
    const PROVIDER_FLUSHES: u8 = 1;
    /// The records' `terminal_reason` is this event's provider reason.
    const HAS_REASON: u8 = 2;

    /// The slot of `e`, which the queue latched (a kind it knows, so its wire numbers fit a
    /// byte); `has_reason`: the caller keeps its provider reason.
    fn new(e: &Event, has_reason: bool) -> Self {
        let flags = if e.provider_flushes {
            Self::PROVIDER_FLUSHES
        } else {
            0
        } | if has_reason { Self::HAS_REASON } else { 0 };
        Self {
            seq: e.seq,
            timestamp: e.timestamp,
            status: e.status,
            outstanding_receives: e.outstanding_receives,
            outstanding_sends: e.outstanding_sends,
            kind: u8::try_from(e.kind.to_wire()).unwrap_or(u8::MAX),
            cause: e
                .cause
                .map_or(0, |c| u8::try_from(c.to_wire()).unwrap_or(u8::MAX)),
            callback_fired: e.callback_fired,
            flags,
        }
    }

    /// The event of connection `connection_id`, whose terminal reason is `reason`.
    fn event(&self, connection_id: u64, reason: u32) -> Event {
        Event {
            seq: self.seq,
            connection_id,
            timestamp: self.timestamp,
            kind: EventKind::from_wire(u16::from(self.kind)),
            cause: (self.cause != 0).then(|| Cause::from_wire(u16::from(self.cause))),
            status: self.status,
            provider_reason: (self.flags & Self::HAS_REASON != 0).then_some(reason),
            outstanding_receives: self.outstanding_receives,
            outstanding_sends: self.outstanding_sends,
            callback_fired: self.callback_fired,
            provider_flushes: self.flags & Self::PROVIDER_FLUSHES != 0,
            already_delivered: false,
        }
    }
}

/// A connection's flags, kept in a dense array apart from its records (one byte each), so a
/// WAIT on a connection with nothing queued reads no record: which slots are queued (bits
/// `0..SLOTS`), whether a terminal event and `Closed` were ever latched. Zero while the
/// records are free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State(u8);

const _: () = assert!(SLOTS + 2 <= 8, "the flags fit in a byte");

impl State {
    const QUEUED: u8 = (1 << SLOTS) - 1;
    const TERMINAL: u8 = 1 << SLOTS;
    const CLOSED: u8 = 1 << (SLOTS + 1);

    fn queued(self, slot: usize) -> bool {
        self.0 & (1 << slot) != 0
    }

    fn any_queued(self) -> bool {
        self.0 & Self::QUEUED != 0
    }

    fn set_queued(&mut self, slot: usize, on: bool) {
        if on {
            self.0 |= 1 << slot;
        } else {
            self.0 &= !(1 << slot);
        }
    }

    fn terminal_latched(self) -> bool {
        self.0 & Self::TERMINAL != 0
    }

    fn closed_latched(self) -> bool {
        self.0 & Self::CLOSED != 0
    }
}

/// What a caller learns from latching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latch {
    /// Queued (and possibly handed to a wait: see the `Ready`).
    Queued,
    /// Merged into the same kind of event still queued (`Flushed`).
    Merged,
    /// Ignored: a terminal event (or `Closed`) was already latched for the connection.
    Duplicate,
    /// No such connection.
    Unknown,
}

/// Which list a pended WAIT is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WaitList {
    /// The handle's any-connection waits.
    Any,
    /// The waits of the connection with this record index.
    Conn(u32),
    /// On none: its connection's records were freed while it was being cancelled; only its
    /// cancel routine takes it now.
    Orphan,
}

struct Wait<R> {
    request: R,
    list: WaitList,
    links: Links,
    /// When it pended: the oldest matching wait is served first.
    order: u64,
}

/// A request taken out of the queue, to complete after the lock is released.
#[derive(Debug)]
pub struct Ready<R> {
    /// The request.
    pub request: R,
    /// Its completion status.
    pub status: NtStatus,
    /// Valid output bytes.
    pub information: usize,
}

impl<R: PendedRequest> Ready<R> {
    /// Complete the request (outside the lock).
    pub fn complete(self) {
        self.request.complete(self.status, self.information);
    }
}

/// The result of a WAIT.
#[derive(Debug)]
pub enum WaitOutcome<R> {
    /// Complete it now (outside the lock).
    Complete(Ready<R>),
    /// It pends in the queue.
    Pended,
}

/// Counters of one handle's queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Events latched.
    pub latched: u64,
    /// Terminal facts ignored because one was already latched.
    pub duplicates: u64,
    /// Events delivered to WAIT requests.
    pub delivered: u64,
}

/// One handle's events and waits. Every operation on one connection costs the same however
/// many connections and waits the handle has: its records are found through an id map, its
/// queued events and pended waits hang off its records in intrusive lists. A cancel routine
/// finds its WAIT through a map of request tokens; handle cleanup looks at each pended WAIT
/// once.
pub struct EventQueue<R> {
    limits: Limits,
    conns: Vec<Option<Records>>,
    /// Each connection's flags, by the same index.
    state: Vec<State>,
    /// Indexes of free records in `conns` (room reserved for all of them).
    free: Vec<u32>,
    /// The id of the connection at each record index (0, which no id is, when the index is
    /// free), by the same index: an id names its index ([`crate::ids`]), and this confirms the
    /// record is that connection's. Dense, so a lookup reads 8 bytes.
    keys: Vec<u64>,
    /// Queued events in latch order (`prev` = head, `next` = tail), linked through the records.
    queue: Links,
    /// Events in that list.
    queued: usize,
    /// Pended WAITs, in a pool reserved up front, and the free entries of the pool.
    waits: Vec<Option<Wait<R>>>,
    free_waits: Vec<u32>,
    /// Request token -> pool index, so a cancel routine finds its WAIT without looking through
    /// the others. Kept off the event path: an entry is removed only when its pool entry is
    /// reused (`mapped`), so a lookup checks that the entry it found still holds that token.
    tokens: IdMap,
    /// The token each pool entry has in `tokens`: the token of the WAIT pended there, or of
    /// the last one while the entry is free.
    mapped: Vec<Option<u64>>,
    /// Where handle cleanup's next look through the pool starts: every entry before it was
    /// already taken or is being cancelled (nothing pends once cleanup has begun).
    cleanup_from: usize,
    /// The any-connection waits, oldest first (`prev` = head, `next` = tail).
    any_waits: Links,
    next_wait_order: u64,
    next_seq: u64,
    counters: QueueCounters,
    /// The handle's cleanup has begun: a WAIT is cancelled, never pended.
    closing: bool,
}

impl<R: PendedRequest> EventQueue<R> {
    /// Reserve everything the handle will ever need. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`QueueError::NoMemory`] if the reservation fails (nothing is half-built), or the limits
    /// are more than the queue can index (`max_connections` above
    /// [`crate::ids::MAX_CONNECTIONS`], which ids can name; entries or waits beyond `u32`).
    pub fn new(limits: Limits) -> Result<Self, QueueError> {
        if limits.max_connections > crate::ids::MAX_CONNECTIONS {
            return Err(QueueError::NoMemory);
        }
        // Queue entries (index * SLOTS + slot) and wait indexes are u32, below NIL.
        let entries = limits
            .max_connections
            .checked_mul(SLOTS)
            .ok_or(QueueError::NoMemory)?;
        if u32::try_from(entries).map_or(true, |n| n == NIL)
            || u32::try_from(limits.max_waits).map_or(true, |n| n == NIL)
        {
            return Err(QueueError::NoMemory);
        }
        let mut conns = Vec::new();
        conns
            .try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut state = Vec::new();
        state
            .try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut free = Vec::new();
        free.try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut keys = Vec::new();
        keys.try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut waits = Vec::new();
        waits
            .try_reserve_exact(limits.max_waits)
            .map_err(|_| QueueError::NoMemory)?;
        let mut free_waits = Vec::new();
        free_waits
            .try_reserve_exact(limits.max_waits)
            .map_err(|_| QueueError::NoMemory)?;
        let tokens = IdMap::new(limits.max_waits)?;
        let mut mapped = Vec::new();
        mapped
            .try_reserve_exact(limits.max_waits)
            .map_err(|_| QueueError::NoMemory)?;
        Ok(Self {
            limits,
            conns,
            state,
            free,
            keys,
            queue: Links::NONE,
            queued: 0,
            waits,
            free_waits,
            tokens,
            mapped,
            cleanup_from: 0,
            any_waits: Links::NONE,
            next_wait_order: 0,
            next_seq: 1,
            counters: QueueCounters::default(),
            closing: false,
        })
    }

    /// Counters.
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }

    /// Events queued and not yet delivered.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// WAIT requests pended: the pool's entries in use.
    pub fn pended_waits(&self) -> usize {
        self.waits.len() - self.free_waits.len()
    }

    /// Add a connection's records, its id made from sequence number `seq` (from the engine's
    /// counter) and the record index it gets. Never allocates: the table was reserved in `new`.
    ///
    /// # Errors
    /// [`QueueError::Quota`] when the handle holds `max_connections` connections;
    /// [`QueueError::IdsExhausted`] when `seq` does not fit an id.
    pub fn add_connection(&mut self, seq: u64) -> Result<ConnIndex, QueueError> {
        let i = match self.free.last() {
            Some(&i) => i as usize,
            None if self.conns.len() < self.limits.max_connections => self.conns.len(),
            None => return Err(QueueError::Quota),
        };
        let id = crate::ids::connection(seq, i).ok_or(QueueError::IdsExhausted)?;
        let records = Records {
            id,
            slots: [None; SLOTS],
            terminal_reason: 0,
            order: [Links::NONE; SLOTS],
            waits: Links::NONE,
        };
        if self.free.pop().is_some() {
            if let Some(slot) = self.conns.get_mut(i) {
                *slot = Some(records);
            }
            if let Some(state) = self.state.get_mut(i) {
                *state = State::default();
            }
            if let Some(key) = self.keys.get_mut(i) {
                *key = id;
            }
        } else {
            // INVARIANT: len < max_connections = reserved capacity: these pushes do not
            // allocate.
            self.conns.push(Some(records));
            self.state.push(State::default());
            self.keys.push(id);
        }
        Ok(ConnIndex(id))
    }

    /// Forget a connection that never became visible (nothing latched for it).
    pub fn remove_connection(&mut self, conn: ConnIndex) {
        let i = conn.slot();
        if self.records(i).is_some_and(|r| r.id == conn.0) && !self.state_of(i).any_queued() {
            self.free_records(i);
        }
    }

    /// The index of connection `id`, if this handle holds it.
    pub fn find(&self, id: u64) -> Option<ConnIndex> {
        self.index(id).map(|_| ConnIndex(id))
    }

    /// The record index of connection `id`, if this handle holds it: the index the id names,
    /// if the connection there has that id.
    fn index(&self, id: u64) -> Option<u32> {
        let c = crate::ids::index_of(id);
        (*self.keys.get(c)? == id).then(|| index_u32(c))
    }

    /// Latch an event about a connection (the queue fills in its `seq` and `connection_id`),
    /// and hand the oldest matching pended WAIT (if any) its batch. A provider reason is kept
    /// on the terminal kinds only (`Disconnected`, `ConnectFailed`); the ABI gives it no
    /// meaning elsewhere and the engine sets it nowhere else.
    /// `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub fn latch(&mut self, conn: ConnIndex, fact: Event) -> (Latch, Option<Ready<R>>) {
        let seq = self.next_seq;
        let Some(slot) = slot_of(fact.kind) else {
            return (Latch::Unknown, None);
        };
        let (index, id) = (conn.slot(), conn.id());
        let records = self
            .conns
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|r| r.id == id);
        let (Some(records), Some(state)) = (records, self.state.get_mut(index)) else {
            return (Latch::Unknown, None);
        };
        let event = Event {
            seq,
            connection_id: id,
            ..fact
        };
        let i = slot as usize;
        match slot {
            Slot::Terminal if state.terminal_latched() => {
                self.counters.duplicates += 1;
                return (Latch::Duplicate, None);
            }
            Slot::Flushed if state.queued(i) => {
                // Keep the queue position and sequence number; report the latest counts.
                if let Some(e) = records.slots[i].as_mut() {
                    *e = Stored {
                        seq: e.seq,
                        ..Stored::new(&event, false)
                    };
                }
                return (Latch::Merged, None);
            }
            // Nothing new after `Closed` (a merge in place above is harmless): its delivery
            // frees the records, and an entry queued behind it would be left in the list.
            _ if state.closed_latched() => return (Latch::Duplicate, None),
            Slot::Established if state.queued(i) => return (Latch::Duplicate, None),
            Slot::Terminal => state.0 |= State::TERMINAL,
            Slot::Closed => state.0 |= State::CLOSED,
            _ => {}
        }
        state.set_queued(i, true);
        // Only the terminal slot's latch sets the record's reason: the events latched after it
        // (Flushed, Closed) leave it to the terminal event.
        let reason = event.provider_reason.filter(|_| slot == Slot::Terminal);
        if slot == Slot::Terminal {
            records.terminal_reason = reason.unwrap_or(0);
        }
        records.slots[i] = Some(Stored::new(&event, reason.is_some()));
        self.next_seq += 1;
        self.counters.latched += 1;
        self.push_event(entry_of(index, slot));
        (Latch::Queued, self.serve(index_u32(index)))
    }

    /// Give the queued events to the oldest pended wait that matches connection `c`, which just
    /// latched one: the oldest any-connection wait or the oldest wait on `c`. Only waits whose
    /// `unmark_cancelable` succeeds are taken; a wait being cancelled is left for its cancel
    /// routine (and the next one is tried), and the events stay queued.
    fn serve(&mut self, c: u32) -> Option<Ready<R>> {
        let mut any = self.any_waits.prev;
        let mut own = self.records(c as usize).map_or(NIL, |r| r.waits.prev);
        loop {
            let any_order = self.wait_ref(any).map(|w| w.order);
            let own_order = self.wait_ref(own).map(|w| w.order);
            let (w, filter) = match (any_order, own_order) {
                (None, None) => return None,
                (Some(a), Some(o)) if o < a => (own, Some(c)),
                (Some(_), _) => (any, None),
                (None, Some(_)) => (own, Some(c)),
            };
            let next = self.wait_ref(w).map_or(NIL, |x| x.links.next);
            let taken = self
                .wait_mut(w)
                .is_some_and(|x| x.request.unmark_cancelable().is_ok());
            if taken {
                let mut wait = self.take_wait(w)?;
                let information = self.fill(&mut wait.request, filter);
                return Some(Ready {
                    request: wait.request,
                    status: NtStatus::SUCCESS,
                    information,
                });
            }
            // Being cancelled: its cancel routine completes it; try the next of that list.
            if filter.is_some() {
                own = next;
            } else {
                any = next;
            }
        }
    }

    fn has_events_for(&self, filter: Option<u32>) -> bool {
        match filter {
            None => self.queued > 0,
            Some(c) => self.state_of(c as usize).any_queued(),
        }
    }

    /// Move matching events (in latch order) into the request's output; returns the bytes
    /// written. The caller checked the output holds at least one event. `filter` is a record
    /// index.
    fn fill(&mut self, request: &mut R, filter: Option<u32>) -> usize {
        let out = request.output();
        let room = batch_capacity(out.len(), Event::SIZE).unwrap_or(0);
        let mut n = 0;
        while n < room {
            let entry = match filter {
                None => self.queue.prev,
                Some(c) => self.oldest_queued_of(c as usize),
            };
            if entry == NIL {
                break;
            }
            let (c, slot) = (entry as usize / SLOTS, entry as usize % SLOTS);
            self.unlink_event(entry);
            let Some(state) = self.state.get_mut(c) else {
                // Unreachable (an entry is linked only while its records live); stop rather
                // than meet the same entry again.
                break;
            };
            state.set_queued(slot, false);
            let stored = self
                .records(c)
                .and_then(|r| Some(r.slots[slot]?.event(r.id, r.terminal_reason)));
            if let Some(event) = stored {
                let at = BATCH_HEADER_SIZE + n * Event::SIZE;
                if event.encode(&mut out[at..]).is_ok() {
                    n += 1;
                }
            }
            if slot == Slot::Closed as usize {
                // Its last event is delivered: the connection's records are free again.
                self.free_records(c);
            }
        }
        self.counters.delivered += n as u64;
        // The output holds at least the header (checked by the caller), so this cannot fail.
        let _ = encode_batch_header(out, n, 0);
        BATCH_HEADER_SIZE + n * Event::SIZE
    }

    /// The handle's cleanup has begun: from now on every WAIT completes with
    /// `STATUS_CANCELLED` (one that raced `CloseHandle` and arrives after cleanup took the
    /// pended waits would otherwise pend forever).
    pub fn begin_cleanup(&mut self) {
        self.closing = true;
    }

    /// The terminal record of the connection at record index `c`, if it was already delivered
    /// and is still held (the connection's `Closed` event has not been delivered), flagged
    /// [`Event::already_delivered`]. Reads the record in place: no allocation.
    fn delivered_terminal(&self, c: usize) -> Option<Event> {
        let state = self.state_of(c);
        let i = Slot::Terminal as usize;
        if !state.terminal_latched() || state.queued(i) {
            return None;
        }
        let records = self.records(c)?;
        let event = records.slots[i]?.event(records.id, records.terminal_reason);
        Some(Event {
            already_delivered: true,
            ..event
        })
    }

    /// A WAIT request: complete now if events are queued (or it is non-blocking), else pend.
    /// Level-triggered per connection: a WAIT on a connection whose terminal event was already
    /// delivered and that has nothing else queued completes at once with a copy of the terminal
    /// record ([`Event::already_delivered`]). After [`EventQueue::begin_cleanup`] it completes
    /// with `STATUS_CANCELLED`.
    pub fn wait(
        &mut self,
        mut request: R,
        connection: Option<u64>,
        nonblocking: bool,
    ) -> WaitOutcome<R> {
        let ready = |request, status, information| {
            WaitOutcome::Complete(Ready {
                request,
                status,
                information,
            })
        };
        if self.closing {
            return ready(request, NtStatus::CANCELLED, 0);
        }
        if batch_capacity(request.output().len(), Event::SIZE).is_none() {
            return ready(request, NtStatus::BUFFER_TOO_SMALL, 0);
        }
        let filter = match connection {
            None => None,
            Some(id) => match self.index(id) {
                Some(c) => Some(c),
                None => return ready(request, NtStatus::NOT_FOUND, 0),
            },
        };
        if self.has_events_for(filter) {
            let information = self.fill(&mut request, filter);
            return ready(request, NtStatus::SUCCESS, information);
        }
        if let Some(copy) = filter.and_then(|c| self.delivered_terminal(c as usize)) {
            let out = request.output();
            // The output holds the header and one event (checked above): neither can fail.
            let _ = copy.encode(&mut out[BATCH_HEADER_SIZE..]);
            let _ = encode_batch_header(out, 1, 0);
            return ready(request, NtStatus::SUCCESS, BATCH_HEADER_SIZE + Event::SIZE);
        }
        if nonblocking {
            let information = self.fill(&mut request, filter);
            return ready(request, NtStatus::SUCCESS, information);
        }
        if self.pended_waits() >= self.limits.max_waits {
            return ready(request, NtStatus::QUOTA_EXCEEDED, 0);
        }
        if request.mark_cancelable().is_err() {
            return ready(request, NtStatus::CANCELLED, 0);
        }
        let list = filter.map_or(WaitList::Any, WaitList::Conn);
        let token = request.token();
        self.push_wait(request, token, list);
        WaitOutcome::Pended
    }

    /// Level-triggered for WAITs that pended before the terminal event: take one WAIT pended on
    /// connection `id` whose terminal record was meanwhile delivered to another WAIT (an older
    /// any-connection one) while nothing else of `id` is queued, filled with the flagged copy.
    /// The latcher of the terminal event calls this until it returns `None`, completing each
    /// outside the lock. Never allocates; waits being cancelled are left to their cancel
    /// routine.
    pub fn take_level_triggered(&mut self, id: u64) -> Option<Ready<R>> {
        let c = self.index(id)?;
        let copy = self.delivered_terminal(c as usize)?;
        if self.has_events_for(Some(c)) {
            return None;
        }
        let w = self.first_taken(self.records(c as usize)?.waits.prev)?;
        let mut wait = self.take_wait(w)?;
        let out = wait.request.output();
        // A pended wait's output holds the header and one event (checked in `wait`).
        let _ = copy.encode(&mut out[BATCH_HEADER_SIZE..]);
        let _ = encode_batch_header(out, 1, 0);
        Some(Ready {
            request: wait.request,
            status: NtStatus::SUCCESS,
            information: BATCH_HEADER_SIZE + Event::SIZE,
        })
    }

    /// The cancel routine of a pended WAIT ran: take it out (if the event path did not take it
    /// first) to complete with `STATUS_CANCELLED`.
    pub fn cancel(&mut self, token: u64) -> Option<Ready<R>> {
        let (waits, mapped) = (&self.waits, &self.mapped);
        // Stale entries (their pool entry freed, or reused by another token) are passed over;
        // a token may also appear twice (a request reused), only one of them pended.
        let w = self.tokens.get_where(token, |w| {
            let w = w as usize;
            mapped.get(w) == Some(&Some(token)) && waits.get(w).is_some_and(Option::is_some)
        })?;
        let wait = self.take_wait(w)?;
        Some(Ready {
            request: wait.request,
            status: NtStatus::CANCELLED,
            information: 0,
        })
    }

    /// Take one pended WAIT of `connection` (or of any filter when `None`: handle cleanup) to
    /// complete with `STATUS_CANCELLED` (ABORT). Call until it returns `None`. Waits being
    /// cancelled are left to their cancel routine.
    pub fn take_wait_to_cancel(&mut self, connection: Option<u64>) -> Option<Ready<R>> {
        let w = if let Some(id) = connection {
            let c = self.index(id)?;
            self.first_taken(self.records(c as usize)?.waits.prev)?
        } else {
            // Once cleanup has begun nothing pends, so the entries already passed stay passed:
            // the whole cleanup looks at each entry once.
            let from = if self.closing { self.cleanup_from } else { 0 };
            let w = from
                + self.waits.get_mut(from..)?.iter_mut().position(|w| {
                    w.as_mut()
                        .is_some_and(|w| w.request.unmark_cancelable().is_ok())
                })?;
            if self.closing {
                self.cleanup_from = w + 1;
            }
            index_u32(w)
        };
        let wait = self.take_wait(w)?;
        Some(Ready {
            request: wait.request,
            status: NtStatus::CANCELLED,
            information: 0,
        })
    }

    /// The first wait from `w` on (along its list) whose `unmark_cancelable` succeeds.
    fn first_taken(&mut self, mut w: u32) -> Option<u32> {
        while let Some(wait) = self.wait_mut(w) {
            if wait.request.unmark_cancelable().is_ok() {
                return Some(w);
            }
            w = wait.links.next;
        }
        None
    }
}

impl<R> EventQueue<R> {
    /// The flags of record index `c` (empty when free).
    fn state_of(&self, c: usize) -> State {
        self.state.get(c).copied().unwrap_or_default()
    }

    fn records(&self, c: usize) -> Option<&Records> {
        self.conns.get(c)?.as_ref()
    }

    fn records_mut(&mut self, c: usize) -> Option<&mut Records> {
        self.conns.get_mut(c)?.as_mut()
    }

    fn wait_ref(&self, w: u32) -> Option<&Wait<R>> {
        self.waits.get(w as usize)?.as_ref()
    }

    fn wait_mut(&mut self, w: u32) -> Option<&mut Wait<R>> {
        self.waits.get_mut(w as usize)?.as_mut()
    }

    /// The links of queue entry `e` (a queued slot).
    fn event_links(&mut self, e: u32) -> Option<&mut Links> {
        let (c, slot) = (e as usize / SLOTS, e as usize % SLOTS);
        Some(&mut self.records_mut(c)?.order[slot])
    }

    /// Append queue entry `e` (latch order).
    fn push_event(&mut self, e: u32) {
        let tail = self.queue.next;
        if let Some(l) = self.event_links(e) {
            *l = Links {
                prev: tail,
                next: NIL,
            };
        }
        match self.event_links(tail) {
            Some(l) => l.next = e,
            None => self.queue.prev = e,
        }
        self.queue.next = e;
        self.queued += 1;
    }

    /// Take queue entry `e` out of the latch-order list.
    fn unlink_event(&mut self, e: u32) {
        let Some(l) = self
            .event_links(e)
            .map(|l| core::mem::replace(l, Links::NONE))
        else {
            return;
        };
        match self.event_links(l.prev) {
            Some(p) => p.next = l.next,
            None => self.queue.prev = l.next,
        }
        match self.event_links(l.next) {
            Some(n) => n.prev = l.prev,
            None => self.queue.next = l.prev,
        }
        self.queued = self.queued.saturating_sub(1);
    }

    /// The queue entry of the oldest event queued for the connection at record index `c` (its
    /// few slots, by sequence number), or `NIL`.
    fn oldest_queued_of(&self, c: usize) -> u32 {
        let state = self.state_of(c);
        if !state.any_queued() {
            return NIL;
        }
        let Some(slots) = self.records(c).map(|r| &r.slots) else {
            return NIL;
        };
        (0..SLOTS)
            .filter(|&s| state.queued(s))
            .min_by_key(|&s| slots[s].map_or(u64::MAX, |e| e.seq))
            .map_or(NIL, |s| index_u32(c * SLOTS + s))
    }

    /// The ends of `list`.
    fn wait_list(&mut self, list: WaitList) -> Option<&mut Links> {
        match list {
            WaitList::Any => Some(&mut self.any_waits),
            WaitList::Conn(c) => Some(&mut self.records_mut(c as usize)?.waits),
            WaitList::Orphan => None,
        }
    }

    /// Pend `request` at the tail of `list`. Never allocates: the pool was reserved in `new`
    /// and the caller checked `pended < max_waits`.
    fn push_wait(&mut self, request: R, token: u64, list: WaitList) {
        let tail = self.wait_list(list).map_or(NIL, |l| l.next);
        let wait = Wait {
            request,
            list,
            links: Links {
                prev: tail,
                next: NIL,
            },
            order: self.next_wait_order,
        };
        self.next_wait_order += 1;
        let w = if let Some(w) = self.free_waits.pop() {
            if let Some(entry) = self.waits.get_mut(w as usize) {
                *entry = Some(wait);
            }
            w
        } else {
            // INVARIANT: every entry is in use and pended < max_waits = reserved capacity:
            // this push does not allocate.
            self.waits.push(Some(wait));
            // INVARIANT: as long as `waits`, within the same reserved length.
            self.mapped.push(None);
            index_u32(self.waits.len() - 1)
        };
        // The entry's previous token leaves the map now, off the event path.
        if let Some(mapped) = self.mapped.get_mut(w as usize) {
            if let Some(old) = mapped.replace(token) {
                self.tokens.remove(old, w);
            }
            self.tokens.insert(token, w);
        }
        match self.wait_mut(tail) {
            Some(t) => t.links.next = w,
            None => {
                if let Some(l) = self.wait_list(list) {
                    l.prev = w;
                }
            }
        }
        if let Some(l) = self.wait_list(list) {
            l.next = w;
        }
    }

    /// Take wait `w` out of its list and the pool.
    fn take_wait(&mut self, w: u32) -> Option<Wait<R>> {
        let wait = self.waits.get_mut(w as usize)?.take()?;
        let Links { prev, next } = wait.links;
        match self.wait_mut(prev) {
            Some(p) => p.links.next = next,
            None => {
                if let Some(l) = self.wait_list(wait.list) {
                    l.prev = next;
                }
            }
        }
        match self.wait_mut(next) {
            Some(n) => n.links.prev = prev,
            None => {
                if let Some(l) = self.wait_list(wait.list) {
                    l.next = prev;
                }
            }
        }
        // INVARIANT: each entry is freed once, and there are at most max_waits of them.
        debug_assert!(self.free_waits.len() < self.free_waits.capacity());
        self.free_waits.push(w);
        Some(wait)
    }

    /// Free the records at index `c`: out of the id map, its waits (only ones being cancelled
    /// can be left) orphaned, the index free for reuse.
    fn free_records(&mut self, c: usize) {
        let Some(records) = self.conns.get_mut(c).and_then(Option::take) else {
            return;
        };
        let mut w = records.waits.prev;
        while let Some(wait) = self.wait_mut(w) {
            wait.list = WaitList::Orphan;
            w = core::mem::replace(&mut wait.links, Links::NONE).next;
        }
        if let Some(state) = self.state.get_mut(c) {
            *state = State::default();
        }
        if let Some(key) = self.keys.get_mut(c) {
            *key = 0;
        }
        // INVARIANT: at most max_connections indexes exist and each is free at most once, so
        // the reserved room suffices; c < max_connections <= u32::MAX.
        debug_assert!(self.free.len() < self.free.capacity());
        self.free.push(index_u32(c));
    }
}

/// A 64-bit key -> index map (request tokens to pool indexes; connection ids need none, as
/// they hold their index): open addressing with linear probing over a table at least twice
/// the entries, reserved up front. Each entry holds the key beside the index, so a lookup
/// reads only the table (usually one cache line), never the pool. Expected O(1) per operation;
/// never allocates after `new`.
struct IdMap {
    table: Vec<IdEntry>,
    shift: u32,
}

/// One entry of the id map; `c == NIL` is empty.
#[derive(Clone, Copy)]
struct IdEntry {
    id: u64,
    c: u32,
}

impl IdEntry {
    const EMPTY: Self = Self { id: 0, c: NIL };
}

impl IdMap {
    /// A map for at most `entries` entries at once.
    fn new(entries: usize) -> Result<Self, QueueError> {
        let len = entries
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or(QueueError::NoMemory)?
            .max(2);
        let mut table = Vec::new();
        table
            .try_reserve_exact(len)
            .map_err(|_| QueueError::NoMemory)?;
        table.resize(len, IdEntry::EMPTY);
        Ok(Self {
            table,
            shift: 64 - len.trailing_zeros(),
        })
    }

    fn home(&self, id: u64) -> usize {
        // Fibonacci hashing: the top bits of id times 2^64 / phi.
        usize::try_from(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift).unwrap_or(0)
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// The table position of the first entry for `id` that `matches`, if any.
    fn position(&self, id: u64, matches: impl Fn(u32) -> bool) -> Option<usize> {
        let mut i = self.home(id);
        loop {
            let e = self.table.get(i)?;
            if e.c == NIL {
                return None;
            }
            if e.id == id && matches(e.c) {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The index of the first entry for `id` whose index `matches`.
    fn get_where(&self, id: u64, matches: impl Fn(u32) -> bool) -> Option<u32> {
        Some(self.table.get(self.position(id, matches)?)?.c)
    }

    /// Insert `id` -> `c` (the table has room: it is at least twice the entries).
    fn insert(&mut self, id: u64, c: u32) {
        let mut i = self.home(id);
        let mask = self.mask();
        while let Some(slot) = self.table.get_mut(i) {
            if slot.c == NIL {
                *slot = IdEntry { id, c };
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Remove the entry mapping `id` to `c` (only that one, should `id` appear twice),
    /// shifting back the entries after it so every lookup still finds its entry before an empty
    /// one.
    fn remove(&mut self, id: u64, c: u32) {
        let Some(i) = self.position(id, |x| x == c) else {
            return;
        };
        let mask = self.mask();
        // Backward-shift deletion.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let x = self.table.get(j).copied().unwrap_or(IdEntry::EMPTY);
            if x.c == NIL {
                break;
            }
            let home = self.home(x.id);
            // x may move to the hole if the hole lies cyclically in [home, j).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(h) = self.table.get_mut(hole) {
                    *h = x;
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
        if let Some(h) = self.table.get_mut(hole) {
            *h = IdEntry::EMPTY;
        }
    }
}

/// The queue entry of a connection's slot.
fn entry_of(c: usize, slot: Slot) -> u32 {
    index_u32(c * SLOTS + slot as usize)
}

/// A record, entry or wait index as stored in the lists.
#[expect(
    clippy::cast_possible_truncation,
    reason = "indexes are below the bounds `EventQueue::new` checked fit in u32"
)]
fn index_u32(i: usize) -> u32 {
    i as u32
}

#[cfg(test)]
mod tests;
