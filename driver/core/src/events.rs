//! A handle's event queue: per-connection preallocated event records, the queue of latched
//! events, and the pended WAIT requests. One `EventQueue` lives under each handle's lock; every
//! method here is called with that lock held and never blocks or allocates, except
//! [`EventQueue::new`] and [`EventQueue::add_connection`] (`PASSIVE_LEVEL`, fallible).
//!
//! Completing a request is never done under the lock: methods hand back a [`Ready`] request
//! for the caller to complete after unlocking.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use ndkdisc_abi::{
    BATCH_HEADER_SIZE, Event, EventKind, NtStatus, batch_capacity, encode_batch_header,
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
}

/// A connection's place in its handle's table, with its id: a fact latched through a stale
/// index (its record freed after `Closed` and reused) is refused, not charged to the new owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnIndex(usize, u64);

#[derive(Debug)]
struct Records {
    id: u64,
    slots: [Option<Event>; SLOTS],
    queued: [bool; SLOTS],
    terminal_latched: bool,
    closed_latched: bool,
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

struct Wait<R> {
    request: R,
    filter: Option<u64>,
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

/// One handle's events and waits.
pub struct EventQueue<R> {
    limits: Limits,
    conns: Vec<Option<Records>>,
    /// Indexes of free records in `conns` (room reserved for all of them).
    free: Vec<u32>,
    /// Queued events in latch order: (index in `conns`, slot); 8 bytes each.
    queue: VecDeque<(u32, Slot)>,
    waits: VecDeque<Wait<R>>,
    next_seq: u64,
    counters: QueueCounters,
    /// The handle's cleanup has begun: a WAIT is cancelled, never pended.
    closing: bool,
}

impl<R: PendedRequest> EventQueue<R> {
    /// Reserve everything the handle will ever need. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`QueueError::NoMemory`] if the reservation fails (nothing is half-built).
    pub fn new(limits: Limits) -> Result<Self, QueueError> {
        // Indexes are stored as u32 (the queue's entries stay 8 bytes).
        if u32::try_from(limits.max_connections).is_err() {
            return Err(QueueError::NoMemory);
        }
        let mut conns = Vec::new();
        conns
            .try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut free = Vec::new();
        free.try_reserve_exact(limits.max_connections)
            .map_err(|_| QueueError::NoMemory)?;
        let mut queue = VecDeque::new();
        let records = limits
            .max_connections
            .checked_mul(SLOTS)
            .ok_or(QueueError::NoMemory)?;
        queue
            .try_reserve_exact(records)
            .map_err(|_| QueueError::NoMemory)?;
        let mut waits = VecDeque::new();
        waits
            .try_reserve_exact(limits.max_waits)
            .map_err(|_| QueueError::NoMemory)?;
        Ok(Self {
            limits,
            conns,
            free,
            queue,
            waits,
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
        self.queue.len()
    }

    /// WAIT requests pended.
    pub fn pended_waits(&self) -> usize {
        self.waits.len()
    }

    /// Add a connection's records. Never allocates: the table was reserved in `new`.
    ///
    /// # Errors
    /// [`QueueError::Quota`] when the handle holds `max_connections` connections.
    pub fn add_connection(&mut self, id: u64) -> Result<ConnIndex, QueueError> {
        let records = Records {
            id,
            slots: [None; SLOTS],
            queued: [false; SLOTS],
            terminal_latched: false,
            closed_latched: false,
        };
        if let Some(i) = self.free.pop() {
            let i = i as usize;
            self.conns[i] = Some(records);
            return Ok(ConnIndex(i, id));
        }
        if self.conns.len() >= self.limits.max_connections {
            return Err(QueueError::Quota);
        }
        // INVARIANT: len < max_connections = reserved capacity, so this push does not allocate.
        self.conns.push(Some(records));
        Ok(ConnIndex(self.conns.len() - 1, id))
    }

    /// Forget a connection that never became visible (nothing latched for it).
    pub fn remove_connection(&mut self, conn: ConnIndex) {
        if let Some(slot) = self.conns.get_mut(conn.0)
            && slot
                .as_ref()
                .is_some_and(|r| r.id == conn.1 && !r.queued.iter().any(|q| *q))
        {
            *slot = None;
            self.release_index(conn.0);
        }
    }

    /// The index of connection `id`, if this handle holds it.
    pub fn find(&self, id: u64) -> Option<ConnIndex> {
        self.conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|r| r.id == id))
            .map(|i| ConnIndex(i, id))
    }

    /// Latch an event about a connection (the queue fills in its `seq` and `connection_id`),
    /// and hand the oldest matching pended WAIT (if any) its batch.
    /// `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub fn latch(&mut self, conn: ConnIndex, fact: Event) -> (Latch, Option<Ready<R>>) {
        let seq = self.next_seq;
        let Some(Some(records)) = self.conns.get_mut(conn.0) else {
            return (Latch::Unknown, None);
        };
        let Some(slot) = slot_of(fact.kind) else {
            return (Latch::Unknown, None);
        };
        if records.id != conn.1 {
            return (Latch::Unknown, None);
        }
        let event = Event {
            seq,
            connection_id: records.id,
            ..fact
        };
        let i = slot as usize;
        match slot {
            Slot::Terminal if records.terminal_latched => {
                self.counters.duplicates += 1;
                return (Latch::Duplicate, None);
            }
            Slot::Closed if records.closed_latched => return (Latch::Duplicate, None),
            Slot::Flushed if records.queued[i] => {
                // Keep the queue position and sequence number; report the latest counts.
                if let Some(e) = records.slots[i].as_mut() {
                    *e = Event {
                        seq: e.seq,
                        ..event
                    };
                }
                return (Latch::Merged, None);
            }
            Slot::Established if records.queued[i] => return (Latch::Duplicate, None),
            _ => {}
        }
        records.terminal_latched |= slot == Slot::Terminal;
        records.closed_latched |= slot == Slot::Closed;
        records.slots[i] = Some(event);
        records.queued[i] = true;
        self.next_seq += 1;
        self.counters.latched += 1;
        // INVARIANT: each (connection, slot) is queued at most once and there are at most
        // max_connections connections, so len < max_connections * SLOTS = reserved capacity:
        // this push never allocates and never drops.
        self.queue.push_back((index_u32(conn.0), slot));
        (
            Latch::Queued,
            self.serve(Some(records_id(&self.conns, conn.0))),
        )
    }

    /// Give queued events to the oldest pended wait they match. Only waits whose
    /// `unmark_cancelable` succeeds are taken; a wait being cancelled is left for its cancel
    /// routine, and the events stay queued.
    fn serve(&mut self, for_conn: Option<u64>) -> Option<Ready<R>> {
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            let matches = w.filter.is_none() || w.filter == for_conn;
            // A wait whose unmark fails is being cancelled: its cancel routine completes it,
            // and the next wait is tried.
            if matches
                && self.has_events_for(w.filter)
                && self.waits[i].request.unmark_cancelable().is_ok()
            {
                let mut wait = self.waits.remove(i)?;
                let information = self.fill(&mut wait.request, wait.filter);
                return Some(Ready {
                    request: wait.request,
                    status: NtStatus::SUCCESS,
                    information,
                });
            }
            i += 1;
        }
        None
    }

    fn has_events_for(&self, filter: Option<u64>) -> bool {
        match filter {
            None => !self.queue.is_empty(),
            Some(id) => self
                .queue
                .iter()
                .any(|(c, _)| records_id(&self.conns, *c as usize) == id),
        }
    }

    /// Move matching events (in latch order) into the request's output; returns the bytes
    /// written. The caller checked the output holds at least one event.
    fn fill(&mut self, request: &mut R, filter: Option<u64>) -> usize {
        let out = request.output();
        let room = batch_capacity(out.len(), Event::SIZE).unwrap_or(0);
        let mut n = 0;
        let mut i = 0;
        while n < room && i < self.queue.len() {
            let (c, slot) = self.queue[i];
            let c = c as usize;
            if filter.is_some_and(|id| records_id(&self.conns, c) != id) {
                i += 1;
                continue;
            }
            let _ = self.queue.remove(i);
            let Some(Some(records)) = self.conns.get_mut(c) else {
                continue;
            };
            records.queued[slot as usize] = false;
            if let Some(event) = records.slots[slot as usize] {
                let at = BATCH_HEADER_SIZE + n * Event::SIZE;
                if event.encode(&mut out[at..]).is_ok() {
                    n += 1;
                }
            }
            if slot == Slot::Closed {
                // Its last event is delivered: the connection's records are free again.
                self.conns[c] = None;
                self.release_index(c);
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

    /// The connection's terminal record, if it was already delivered and is still held (the
    /// connection's `Closed` event has not been delivered), flagged
    /// [`Event::already_delivered`]. Reads the record in place: no allocation.
    fn delivered_terminal(&self, id: u64) -> Option<Event> {
        let records = self.conns.iter().flatten().find(|r| r.id == id)?;
        let i = Slot::Terminal as usize;
        if !records.terminal_latched || records.queued[i] {
            return None;
        }
        let event = records.slots[i]?;
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
        if let Some(id) = connection
            && self.find(id).is_none()
        {
            return ready(request, NtStatus::NOT_FOUND, 0);
        }
        if self.has_events_for(connection) {
            let information = self.fill(&mut request, connection);
            return ready(request, NtStatus::SUCCESS, information);
        }
        if let Some(copy) = connection.and_then(|id| self.delivered_terminal(id)) {
            let out = request.output();
            // The output holds the header and one event (checked above): neither can fail.
            let _ = copy.encode(&mut out[BATCH_HEADER_SIZE..]);
            let _ = encode_batch_header(out, 1, 0);
            return ready(request, NtStatus::SUCCESS, BATCH_HEADER_SIZE + Event::SIZE);
        }
        if nonblocking {
            let information = self.fill(&mut request, connection);
            return ready(request, NtStatus::SUCCESS, information);
        }
        if self.waits.len() >= self.limits.max_waits {
            return ready(request, NtStatus::QUOTA_EXCEEDED, 0);
        }
        if request.mark_cancelable().is_err() {
            return ready(request, NtStatus::CANCELLED, 0);
        }
        // INVARIANT: len < max_waits = reserved capacity: no allocation.
        self.waits.push_back(Wait {
            request,
            filter: connection,
        });
        WaitOutcome::Pended
    }

    /// Level-triggered for WAITs that pended before the terminal event: take one WAIT pended on
    /// connection `id` whose terminal record was meanwhile delivered to another WAIT (an older
    /// any-connection one) while nothing else of `id` is queued, filled with the flagged copy.
    /// The latcher of the terminal event calls this until it returns `None`, completing each
    /// outside the lock. Never allocates; waits being cancelled are left to their cancel
    /// routine.
    pub fn take_level_triggered(&mut self, id: u64) -> Option<Ready<R>> {
        let copy = self.delivered_terminal(id)?;
        if self.has_events_for(Some(id)) {
            return None;
        }
        let mut i = 0;
        while i < self.waits.len() {
            if self.waits[i].filter == Some(id) && self.waits[i].request.unmark_cancelable().is_ok()
            {
                let mut wait = self.waits.remove(i)?;
                let out = wait.request.output();
                // A pended wait's output holds the header and one event (checked in `wait`).
                let _ = copy.encode(&mut out[BATCH_HEADER_SIZE..]);
                let _ = encode_batch_header(out, 1, 0);
                return Some(Ready {
                    request: wait.request,
                    status: NtStatus::SUCCESS,
                    information: BATCH_HEADER_SIZE + Event::SIZE,
                });
            }
            i += 1;
        }
        None
    }

    /// The cancel routine of a pended WAIT ran: take it out (if the event path did not take it
    /// first) to complete with `STATUS_CANCELLED`.
    pub fn cancel(&mut self, token: u64) -> Option<Ready<R>> {
        let i = self.waits.iter().position(|w| w.request.token() == token)?;
        let wait = self.waits.remove(i)?;
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
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            let hit = connection.is_none() || w.filter == connection;
            if hit && self.waits[i].request.unmark_cancelable().is_ok() {
                let wait = self.waits.remove(i)?;
                return Some(Ready {
                    request: wait.request,
                    status: NtStatus::CANCELLED,
                    information: 0,
                });
            }
            i += 1;
        }
        None
    }
}

impl<R> EventQueue<R> {
    /// A record became free.
    fn release_index(&mut self, i: usize) {
        // INVARIANT: at most max_connections indexes exist and each is free at most once, so
        // the reserved room suffices; i < max_connections <= u32::MAX.
        debug_assert!(self.free.len() < self.free.capacity());
        self.free.push(index_u32(i));
    }
}

/// A record index as stored in the queue.
#[expect(
    clippy::cast_possible_truncation,
    reason = "indexes are < max_connections, which `EventQueue::new` checked fits in u32"
)]
fn index_u32(i: usize) -> u32 {
    i as u32
}

fn records_id(conns: &[Option<Records>], i: usize) -> u64 {
    conns.get(i).and_then(Option::as_ref).map_or(0, |r| r.id)
}

#[cfg(test)]
mod tests;
