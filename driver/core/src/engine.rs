//! The engine, one owner per file handle, listeners, and IOCTL dispatch.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ndkdisc_abi::{
    AdapterEntry, Cause, ConnectReply, ConnectRequest, Event, InfoReply, ListenReply,
    ListenRequest, NtStatus, QueryReply, Record, Request, encode_adapters_reply,
};
use ndkpi::sys::NDK_VERSION;
use ndkpi::{Connector, Created, Op, Sink};

use crate::conn::Conn;
use crate::defer;
use crate::events::{ConnIndex, EventQueue, Limits, Ready, WaitOutcome};
use crate::ports::{Lock, Passive, PendedRequest, Platform, Signal};
use crate::step::Stepper;

/// Driver version reported by `GET_INFO` (major << 16 | minor).
pub const DRIVER_VERSION: u32 = 0x0000_0001;

/// Engine-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Per-handle connection and wait limits.
    pub limits: Limits,
    /// Listeners per handle.
    pub max_listeners: usize,
    /// Backlog of a LISTEN that asks for 0.
    pub default_backlog: u32,
    /// Largest backlog a LISTEN may ask for.
    pub max_backlog: u32,
    /// Default QP receive depth.
    pub receive_depth: u32,
    /// Default QP send depth.
    pub send_depth: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits {
                max_connections: 256,
                max_waits: 16,
            },
            max_listeners: 8,
            default_backlog: 16,
            max_backlog: 128,
            receive_depth: 64,
            send_depth: 64,
        }
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    events: AtomicU64,
    disconnect_callbacks: AtomicU64,
    backlog_rejects: AtomicU64,
    duplicate_callbacks: AtomicU64,
}

/// The engine: one per driver.
pub struct Engine<P: Platform> {
    platform: Arc<P>,
    config: Config,
    next_id: AtomicU64,
    counters: Counters,
    /// Work deferred to `PASSIVE_LEVEL` ([`crate::defer`]).
    deferred: P::Lock<defer::Queue>,
    /// The one work the platform is asked to run: it drains `deferred`.
    drainer: Arc<dyn Passive>,
    /// Every open handle, for [`Engine::adapter_removed`]. Grown only outside the lock.
    owners: P::Lock<Vec<Weak<OwnerInner<P>>>>,
}

/// The engine's drainer.
struct Drainer<P: Platform> {
    engine: Weak<Engine<P>>,
}

impl<P: Platform> Passive for Drainer<P> {
    fn run(&self) {
        if let Some(engine) = self.engine.upgrade() {
            defer::drain(&engine.deferred);
        }
    }
}

impl<P: Platform> Engine<P> {
    /// A new engine over `platform`.
    pub fn new(platform: Arc<P>, config: Config) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            deferred: platform.lock(defer::Queue::default()),
            owners: platform.lock(Vec::new()),
            drainer: Arc::new(Drainer {
                engine: weak.clone(),
            }),
            platform,
            config,
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        })
    }

    /// An adapter went away (NDK disabled on it, or the NIC removed — on Windows the platform
    /// learns it from a plug-and-play or IP-interface notification; on softndk from
    /// `Fabric::on_adapter_removal`). Every connection on interface `if_index` ends with
    /// `Disconnected`/`AdapterRemoved` (`ConnectFailed` if still connecting), status
    /// `STATUS_DEVICE_REMOVED`, and releases its NDK objects so the adapter can close; its id
    /// stays valid until CLOSE. Listeners on it stop accepting and release their adapter.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub fn adapter_removed(&self, if_index: u32) {
        let mut i = 0;
        // One owner at a time (no snapshot: that would allocate under the lock).
        while let Some(next) = self.owners.with(|o| {
            let found = o.get(i).cloned();
            i += 1;
            found
        }) {
            if let Some(owner) = next.upgrade() {
                owner.adapter_removed(if_index);
            }
        }
    }

    /// Add a handle to the registry; the list grows outside the lock. `// IRQL: PASSIVE_LEVEL`.
    fn register_owner(&self, owner: &Arc<OwnerInner<P>>) -> Result<(), NtStatus> {
        let weak = Arc::downgrade(owner);
        loop {
            let pushed = self.owners.with(|o| {
                o.retain(|w| w.strong_count() > 0);
                push_reserved(o, weak.clone())
            });
            if pushed {
                return Ok(());
            }
            // Full: build a bigger list outside the lock, then swap it in if nobody else did.
            let cap = self.owners.with(|o| o.capacity());
            let mut bigger = Vec::new();
            bigger
                .try_reserve_exact(cap.max(4) * 2)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            let old = self.owners.with(|o| {
                if o.capacity() != cap {
                    return None;
                }
                // INVARIANT: bigger.capacity() > o.len(): moving them in does not allocate.
                bigger.append(o);
                Some(core::mem::replace(o, core::mem::take(&mut bigger)))
            });
            // The old buffer (or the unused new one) is freed here, outside the lock.
            drop((old, bigger));
        }
    }

    /// Reserve the deferral slot of one work item about to be created with
    /// [`defer::WorkItem::new`] and [`Engine::slots`]. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub(crate) fn reserve_work(&self) -> Result<(), NtStatus> {
        defer::reserve(&self.deferred, 1).map_err(|()| NtStatus::INSUFFICIENT_RESOURCES)
    }

    /// Where work items give their slot back.
    pub(crate) fn slots(self: &Arc<Self>) -> Weak<dyn defer::Slots> {
        let weak: Weak<Self> = Arc::downgrade(self);
        weak
    }

    /// Queue `item` to run at `PASSIVE_LEVEL`. `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub(crate) fn defer(&self, item: &Arc<defer::WorkItem>) {
        if defer::push(&self.deferred, item) {
            self.platform.defer(Arc::clone(&self.drainer));
        }
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<P> {
        &self.platform
    }

    /// A new file handle's owner. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` if its records cannot be reserved.
    pub fn open(self: &Arc<Self>) -> Result<Owner<P>, NtStatus> {
        let queue =
            EventQueue::new(self.config.limits).map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let mut table = Table {
            conns: Vec::new(),
            listeners: Vec::new(),
            pended: Vec::new(),
            closed: false,
        };
        table
            .pended
            .try_reserve(2 * self.config.limits.max_connections)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        table
            .conns
            .try_reserve(self.config.limits.max_connections)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        table
            .listeners
            .try_reserve(self.config.max_listeners)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let inner = Arc::new(OwnerInner {
            engine: Arc::clone(self),
            queue: self.platform.lock(queue),
            table: self.platform.lock(table),
        });
        self.register_owner(&inner)?;
        Ok(Owner { inner })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Open the adapter of `if_index` asking for the lowest version we support of each major:
    /// in NDKPI the requested minor is the minimum acceptable and the provider answers with its
    /// highest minor of that major, so a 2.1 provider gives 2.1 (the disconnect reason) and a
    /// 2.0 provider 2.0 (asking for 2.1 would fail, and 1.x would then get it down-level).
    fn open_adapter(&self, if_index: u32) -> Result<ndkpi::Adapter, NtStatus> {
        let wsk = self.platform.wsk();
        wsk.open_adapter(if_index, NDK_VERSION { Major: 2, Minor: 0 })
            .or_else(|_| wsk.open_adapter(if_index, NDK_VERSION { Major: 1, Minor: 1 }))
    }
}

struct Table<P: Platform> {
    conns: Vec<Arc<Conn<P>>>,
    listeners: Vec<Arc<ListenerObj<P>>>,
    /// Pended CONNECTs and graceful DISCONNECTs by request token, so their cancel routine finds
    /// the connection even after CLOSE or cleanup took it out of `conns`. Capacity reserved at
    /// open: two per connection (one of each).
    pended: Vec<(u64, Arc<Conn<P>>)>,
    /// Cleanup has run: nothing new joins the handle (a CONNECT or an accept still in flight
    /// releases its connection instead).
    closed: bool,
}

/// A handle's state, shared with its connections and listeners.
pub(crate) struct OwnerInner<P: Platform> {
    engine: Arc<Engine<P>>,
    queue: P::Lock<EventQueue<P::Request>>,
    table: P::Lock<Table<P>>,
}

impl<P: Platform> defer::Slots for Engine<P> {
    fn release_one(&self) {
        defer::release(&self.deferred, 1);
    }
}

impl<P: Platform> OwnerInner<P> {
    pub(crate) fn platform(&self) -> &P {
        &self.engine.platform
    }

    pub(crate) fn engine(&self) -> &Arc<Engine<P>> {
        &self.engine
    }

    /// Queue `item` to run at `PASSIVE_LEVEL`. `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub(crate) fn defer(&self, item: &Arc<defer::WorkItem>) {
        self.engine.defer(item);
    }

    /// Latch a fact, returning the wait it satisfies for the caller to complete once it holds
    /// no lock: for latching inside a connection's lock, in step with its state change.
    pub(crate) fn latch_in(&self, index: ConnIndex, fact: Event) -> Option<Ready<P::Request>> {
        let (latch, ready) = self.queue.with(|q| q.latch(index, fact));
        if latch == crate::events::Latch::Queued {
            self.engine.counters.events.fetch_add(1, Ordering::Relaxed);
        }
        ready
    }

    /// After latching connection `id`'s terminal event (and completing the wait it satisfied):
    /// complete the WAITs pended on `id` that are left without it because it went to an older
    /// any-connection WAIT, each with the flagged copy (level-triggered per connection).
    /// `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub(crate) fn complete_level_triggered(&self, id: u64) {
        while let Some(ready) = self.queue.with(|q| q.take_level_triggered(id)) {
            ready.complete();
        }
    }

    pub(crate) fn count_disconnect_callback(&self) {
        self.engine
            .counters
            .disconnect_callbacks
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_duplicate_callback(&self) {
        self.engine
            .counters
            .duplicate_callbacks
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Add a new connection to the handle's table, unless cleanup has run (or, defensively,
    /// the reserved room is used up: growing it would allocate under the lock).
    fn adopt(&self, conn: &Arc<Conn<P>>) -> bool {
        self.table
            .with(|t| !t.closed && push_reserved(&mut t.conns, Arc::clone(conn)))
    }

    /// Register a CONNECT or graceful DISCONNECT about to pend (before it is made cancelable).
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` if the reserved room is used up.
    pub(crate) fn register_pended(&self, token: u64, conn: &Arc<Conn<P>>) -> Result<(), NtStatus> {
        let pushed = self
            .table
            .with(|t| push_reserved(&mut t.pended, (token, Arc::clone(conn))));
        if pushed {
            Ok(())
        } else {
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        }
    }

    /// The CONNECT or DISCONNECT `token` no longer pends (completed, or taken by its cancel
    /// routine).
    pub(crate) fn unregister_pended(&self, token: u64) -> Option<Arc<Conn<P>>> {
        self.table.with(|t| {
            let i = t.pended.iter().position(|(k, _)| *k == token)?;
            Some(t.pended.swap_remove(i).1)
        })
    }

    /// Take connection `id` out of the table (it is being released).
    pub(crate) fn forget(&self, id: u64) -> Option<Arc<Conn<P>>> {
        self.table.with(|t| {
            let i = t.conns.iter().position(|c| c.id == id)?;
            Some(t.conns.swap_remove(i))
        })
    }

    fn conn(&self, id: u64) -> Option<Arc<Conn<P>>> {
        self.table
            .with(|t| t.conns.iter().find(|c| c.id == id).cloned())
    }

    /// [`Engine::adapter_removed`] for this handle. `// IRQL: PASSIVE_LEVEL`.
    fn adapter_removed(&self, if_index: u32) {
        // One at a time, each marked so it is not found again (no allocation under the lock).
        while let Some(c) = self.table.with(|t| {
            t.conns
                .iter()
                .find(|c| c.if_index == if_index && !c.removal_seen())
                .cloned()
        }) {
            c.adapter_removed();
        }
        while let Some(l) = self.table.with(|t| {
            t.listeners
                .iter()
                .find(|l| l.if_index == if_index && !l.removal_seen.swap(true, Ordering::AcqRel))
                .cloned()
        }) {
            l.close();
        }
    }
}

/// One file handle: every connection and listener it creates belongs to it.
pub struct Owner<P: Platform> {
    inner: Arc<OwnerInner<P>>,
}

fn complete<R: PendedRequest>(request: R, st: NtStatus) {
    request.complete(st, 0);
}

fn reply<R: PendedRequest, T: Record>(mut request: R, value: &T) {
    match value.encode(request.output()) {
        Ok(n) => request.complete(NtStatus::SUCCESS, n),
        Err(e) => request.complete(e.ntstatus(), 0),
    }
}

impl<P: Platform> Owner<P> {
    /// Handle one IOCTL: parse once, then complete the request or let it pend.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub fn dispatch(&self, code: u32, input: &[u8], mut request: P::Request) {
        let parsed = match Request::parse(code, input) {
            Ok(r) => r,
            Err(e) => return complete(request, e.ntstatus()),
        };
        let engine = &self.inner.engine;
        match parsed {
            Request::GetInfo(_) => {
                let c = &engine.counters;
                let info = InfoReply {
                    abi_version: u32::from(ndkdisc_abi::ABI_VERSION),
                    driver_version: DRIVER_VERSION,
                    max_connections: saturate(engine.config.limits.max_connections),
                    max_listeners: saturate(engine.config.max_listeners),
                    max_waits: saturate(engine.config.limits.max_waits),
                    default_backlog: engine.config.default_backlog,
                    events_per_connection: saturate(crate::events::SLOTS),
                    connections_opened: c.connections.load(Ordering::Relaxed),
                    events_latched: c.events.load(Ordering::Relaxed),
                    disconnect_callbacks: c.disconnect_callbacks.load(Ordering::Relaxed),
                    backlog_rejects: c.backlog_rejects.load(Ordering::Relaxed),
                    duplicate_callbacks: c.duplicate_callbacks.load(Ordering::Relaxed),
                };
                reply(request, &info);
            }
            Request::ListAdapters(_) => {
                // The version each adapter really negotiates (its highest of 2.x, else 1.x): open
                // it once.
                let mut entries: Vec<AdapterEntry> = Vec::new();
                for desc in engine.platform.adapters() {
                    let Ok(adapter) = engine.open_adapter(desc.if_index) else {
                        continue;
                    };
                    let v = adapter.version();
                    engine.platform.wsk().close_adapter(adapter);
                    entries.push(AdapterEntry {
                        if_index: desc.if_index,
                        ndk_major: v.Major,
                        ndk_minor: v.Minor,
                        address: desc.address,
                    });
                }
                match encode_adapters_reply(&entries, request.output()) {
                    Ok(n) => request.complete(NtStatus::SUCCESS, n),
                    Err(e) => complete(request, e.ntstatus()),
                }
            }
            Request::Listen(req) => self.listen(req, request),
            Request::Connect(req) => self.connect(req, request),
            Request::Wait(req) => {
                let outcome = self
                    .inner
                    .queue
                    .with(|q| q.wait(request, req.connection, req.nonblocking));
                if let WaitOutcome::Complete(ready) = outcome {
                    ready.complete();
                }
            }
            Request::Query(req) => {
                if request.output().len() < QueryReply::SIZE {
                    return complete(request, NtStatus::BUFFER_TOO_SMALL);
                }
                match self.inner.conn(req.connection_id) {
                    Some(c) => reply(request, &c.query()),
                    None => complete(request, NtStatus::NOT_FOUND),
                }
            }
            Request::Post(req) => match self.inner.conn(req.connection_id) {
                None => complete(request, NtStatus::NOT_FOUND),
                Some(c) => complete(request, c.post(req.kind, req.count, req.length)),
            },
            Request::Disconnect(req) => match self.inner.conn(req.connection_id) {
                None => complete(request, NtStatus::NOT_FOUND),
                Some(c) if req.abortive => {
                    c.end(Cause::LocalAbortive);
                    complete(request, NtStatus::SUCCESS);
                }
                Some(c) => c.disconnect(request),
            },
            Request::Abort(req) => match self.inner.conn(req.connection_id) {
                None => complete(request, NtStatus::NOT_FOUND),
                Some(c) => {
                    while let Some(w) = self.inner.queue.with(|q| q.take_wait_to_cancel(Some(c.id)))
                    {
                        w.complete();
                    }
                    c.end(Cause::Aborted);
                    complete(request, NtStatus::SUCCESS);
                }
            },
            Request::Flush(req) => match self.inner.conn(req.connection_id) {
                None => complete(request, NtStatus::NOT_FOUND),
                Some(c) => complete(request, c.flush()),
            },
            Request::Close(req) => self.close(req.id, request),
        }
    }

    /// The cancel routine of a pended request ran. `// IRQL: <= DISPATCH_LEVEL`.
    pub fn cancel(&self, token: u64) {
        if let Some(ready) = self.inner.queue.with(|q| q.cancel(token)) {
            return ready.complete();
        }
        // A pended CONNECT (the attempt is abandoned) or graceful DISCONNECT (NdkDisconnect
        // goes on; its outcome still reaches the Local event).
        if let Some(conn) = self.inner.unregister_pended(token) {
            if let Some(request) = conn.take_cancelled_connect(token) {
                request.complete(NtStatus::CANCELLED, 0);
                conn.cancelled();
            } else if let Some(request) = conn.take_cancelled_disconnect(token) {
                request.complete(NtStatus::CANCELLED, 0);
            }
        }
    }

    /// The handle is being closed (`EvtFileCleanup`): cancel its waits, end and release every
    /// connection (`Disconnected`/`HandleClosed`), close its listeners. `// IRQL: PASSIVE_LEVEL`.
    pub fn cleanup(&self) {
        // First: a WAIT that raced CloseHandle and arrives from now on is cancelled, not pended.
        self.inner.queue.with(EventQueue::begin_cleanup);
        while let Some(w) = self.inner.queue.with(|q| q.take_wait_to_cancel(None)) {
            w.complete();
        }
        let (conns, listeners) = self.inner.table.with(|t| {
            t.closed = true;
            (
                core::mem::take(&mut t.conns),
                core::mem::take(&mut t.listeners),
            )
        });
        for c in conns {
            c.end(Cause::HandleClosed);
            c.closed_event();
        }
        // Its connections are closed, so NDK completes each listener's close: wait for it here
        // (only a CLOSE IOCTL must not wait), and release the adapter if nobody else holds it.
        for l in listeners {
            if l.close() {
                l.wait_closed();
            }
        }
    }

    /// Events queued on this handle.
    pub fn queued_events(&self) -> usize {
        self.inner.queue.with(|q| q.queued())
    }

    fn connect(&self, req: ConnectRequest, mut request: P::Request) {
        if request.output().len() < ConnectReply::SIZE {
            return complete(request, NtStatus::BUFFER_TOO_SMALL);
        }
        let engine = &self.inner.engine;
        let id = engine.next_id();
        let Ok(index) = self.inner.queue.with(|q| q.add_connection(id)) else {
            return complete(request, NtStatus::QUOTA_EXCEEDED);
        };
        let adapter = match engine.open_adapter(req.if_index) {
            Ok(a) => Arc::new(a),
            Err(st) => {
                self.inner.queue.with(|q| q.remove_connection(index));
                return complete(request, st);
            }
        };
        engine.counters.connections.fetch_add(1, Ordering::Relaxed);
        let conn = match Conn::new(&self.inner, id, index, adapter, req.if_index) {
            Ok(conn) => conn,
            Err(st) => {
                self.inner.queue.with(|q| q.remove_connection(index));
                return complete(request, st);
            }
        };
        if !self.inner.adopt(&conn) {
            // The handle is being cleaned up under this CONNECT.
            conn.teardown();
            self.inner.queue.with(|q| q.remove_connection(index));
            return complete(request, NtStatus::CANCELLED);
        }
        let receive = nonzero(req.receive_depth, engine.config.receive_depth);
        let send = nonzero(req.send_depth, engine.config.send_depth);
        match conn.create_queue_pair(receive, send) {
            Ok(()) => conn.start_connect(request, req.local, req.remote),
            Err(st) => {
                conn.fail_connect(Some(request), st);
                conn.teardown();
            }
        }
    }

    fn listen(&self, req: ListenRequest, mut request: P::Request) {
        if request.output().len() < ListenReply::SIZE {
            return complete(request, NtStatus::BUFFER_TOO_SMALL);
        }
        let engine = &self.inner.engine;
        let backlog = if req.backlog == 0 {
            engine.config.default_backlog
        } else {
            req.backlog
        };
        if backlog > engine.config.max_backlog {
            return complete(request, NtStatus::QUOTA_EXCEEDED);
        }
        let full = self
            .inner
            .table
            .with(|t| t.listeners.len() >= engine.config.max_listeners);
        if full {
            return complete(request, NtStatus::QUOTA_EXCEEDED);
        }
        let adapter = match engine.open_adapter(req.if_index) {
            Ok(a) => a,
            Err(st) => return complete(request, st),
        };
        // The listener owns the adapter from here: on failure it has closed it.
        let listener = match ListenerObj::start(
            &self.inner,
            engine.next_id(),
            adapter,
            req.if_index,
            backlog as usize,
            req.local,
        ) {
            Ok(l) => l,
            Err(st) => return complete(request, st),
        };
        let bound = listener.bound();
        let adopted = self
            .inner
            .table
            .with(|t| !t.closed && push_reserved(&mut t.listeners, Arc::clone(&listener)));
        if !adopted {
            listener.close();
            return complete(request, NtStatus::CANCELLED);
        }
        reply(
            request,
            &ListenReply {
                listener_id: listener.id,
                bound,
            },
        );
    }

    fn close(&self, id: u64, request: P::Request) {
        let (conn, listener) = self.inner.table.with(|t| {
            let c = t
                .conns
                .iter()
                .position(|c| c.id == id)
                .map(|i| t.conns.swap_remove(i));
            let l = t
                .listeners
                .iter()
                .position(|l| l.id == id)
                .map(|i| t.listeners.swap_remove(i));
            (c, l)
        });
        if let Some(c) = conn {
            c.end(Cause::LocalAbortive);
            c.closed_event();
            complete(request, NtStatus::SUCCESS);
        } else if let Some(l) = listener {
            l.close();
            complete(request, NtStatus::SUCCESS);
        } else {
            complete(request, NtStatus::NOT_FOUND);
        }
    }
}

/// Push within the room reserved at open; `false` (and no push) when it is used up: growing
/// would allocate under a spin lock.
fn push_reserved<T>(v: &mut Vec<T>, item: T) -> bool {
    if v.len() == v.capacity() {
        return false;
    }
    // INVARIANT: len < capacity: no allocation.
    v.push(item);
    true
}

fn saturate(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn nonzero(v: u32, default: u32) -> u32 {
    if v == 0 { default } else { v }
}

// --- listeners ------------------------------------------------------------------------------

/// A listener's backlog and whether it is closing, under one lock: a connect event checks the
/// flag and queues its connector in one critical section, and CLOSE sets the flag and takes
/// what is queued in another, so no connector lands in the backlog after CLOSE emptied it.
struct Backlog {
    queue: VecDeque<Connector>,
    closing: bool,
}

/// A listener: incoming connect events go through a preallocated backlog to a work item at
/// `PASSIVE_LEVEL`, which creates the connection and accepts it.
///
/// CLOSE never waits for NDK: the NDK listener's close completes only once every connector
/// accepted through it is closed. The listener keeps itself alive (`keep_alive`) until its
/// close completion has been handled at `PASSIVE_LEVEL` by its work item, which then releases
/// the adapter it shares with its connections; whichever of them releases it last closes it.
pub(crate) struct ListenerObj<P: Platform> {
    pub(crate) id: u64,
    /// The interface it listens on.
    if_index: u32,
    /// [`Engine::adapter_removed`] has handled it.
    removal_seen: AtomicBool,
    bound: P::Lock<SocketAddr>,
    owner: Arc<OwnerInner<P>>,
    adapter: P::Lock<Option<Arc<ndkpi::Adapter>>>,
    listener: P::Lock<Option<ndkpi::Listener>>,
    backlog: P::Lock<Backlog>,
    capacity: usize,
    /// NDK completed the listener's close (no callback comes after it).
    ndk_closed: AtomicBool,
    /// Set with `ndk_closed`, for handle cleanup to wait on.
    closed_signal: P::Signal,
    /// The listener itself, from CLOSE until its work item handled the close completion.
    keep_alive: P::Lock<Option<Arc<Self>>>,
    stepper: Stepper<P>,
    /// The accept work item, allocated with the listener so a connect event never allocates;
    /// it also releases the adapter once the close completed.
    work: Arc<defer::WorkItem>,
}

struct AcceptWork<P: Platform> {
    listener: Weak<ListenerObj<P>>,
}

impl<P: Platform> Passive for AcceptWork<P> {
    fn run(&self) {
        if let Some(l) = self.listener.upgrade() {
            l.drain();
            if l.ndk_closed.load(Ordering::Acquire) {
                l.release_adapter();
                // Dropped outside the lock (possibly not the last reference: `l` is another).
                let me = l.keep_alive.with(Option::take);
                drop(me);
            }
        }
    }
}

/// Refuse an incoming connection request: `NdkReject` (synchronous, allowed at
/// `DISPATCH_LEVEL`), then close the connector. `// IRQL: <= DISPATCH_LEVEL`; never under a lock.
fn refuse(connector: Connector) {
    let _ = connector.reject();
    connector.close_detached();
}

impl<P: Platform> ListenerObj<P> {
    /// Create the NDK listener and listen, owning `adapter`: on failure everything opened here
    /// (the adapter too) is closed before this returns. `// IRQL: PASSIVE_LEVEL`.
    fn start(
        owner: &Arc<OwnerInner<P>>,
        id: u64,
        adapter: ndkpi::Adapter,
        if_index: u32,
        capacity: usize,
        local: SocketAddr,
    ) -> Result<Arc<Self>, NtStatus> {
        let platform = owner.platform();
        let mut queue = VecDeque::new();
        let reserved = queue
            .try_reserve_exact(capacity)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)
            // The accept work item's slot (given back when the item is dropped).
            .and_then(|()| owner.engine.reserve_work());
        if let Err(st) = reserved {
            platform.wsk().close_adapter(adapter);
            return Err(st);
        }
        let me = Arc::new_cyclic(|weak: &Weak<Self>| Self {
            id,
            if_index,
            removal_seen: AtomicBool::new(false),
            bound: platform.lock(local),
            owner: Arc::clone(owner),
            adapter: platform.lock(Some(Arc::new(adapter))),
            listener: platform.lock(None),
            backlog: platform.lock(Backlog {
                queue,
                closing: false,
            }),
            capacity,
            ndk_closed: AtomicBool::new(false),
            closed_signal: platform.signal(),
            keep_alive: platform.lock(None),
            stepper: Stepper::new(platform),
            work: defer::WorkItem::new(
                Arc::new(AcceptWork {
                    listener: weak.clone(),
                }),
                owner.engine.slots(),
            ),
        });
        let created = {
            // Dropped before any release: `release_adapter` closes only the last reference.
            let Some(adapter) = me.adapter.with(|a| a.clone()) else {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            };
            me.stepper.run(|| adapter.create_listener(&me))
        };
        let (st, created) = created;
        let Some(Created::Listener(listener)) = created else {
            me.release_adapter();
            return Err(if st.is_success() {
                NtStatus::INSUFFICIENT_RESOURCES
            } else {
                st
            });
        };
        let (st, _) = me.stepper.run(|| listener.listen(&me, local));
        if st != NtStatus::SUCCESS {
            // Nothing was accepted through it: its close completes promptly, waited for here.
            me.backlog.with(|b| b.closing = true);
            me.stepper.run(|| listener.close(&me));
            me.release_adapter();
            return Err(st);
        }
        let bound = listener.local_address().unwrap_or(local);
        me.bound.with(|b| *b = bound);
        me.listener.with(|l| *l = Some(listener));
        Ok(me)
    }

    pub(crate) fn bound(&self) -> SocketAddr {
        self.bound.with(|b| *b)
    }

    /// Drop the listener's reference to its adapter, closing the adapter if it was the last
    /// (connections accepted through the listener hold the others). `// IRQL: PASSIVE_LEVEL`.
    fn release_adapter(&self) {
        if let Some(adapter) = self.adapter.with(Option::take).and_then(Arc::into_inner) {
            self.owner.platform().wsk().close_adapter(adapter);
        }
    }

    /// Accept what the backlog holds (nothing once closing: CLOSE took it).
    /// `// IRQL: PASSIVE_LEVEL`.
    fn drain(self: &Arc<Self>) {
        while let Some(connector) = self
            .backlog
            .with(|b| if b.closing { None } else { b.queue.pop_front() })
        {
            self.accept_one(connector);
        }
    }

    fn accept_one(self: &Arc<Self>, connector: Connector) {
        let engine = &self.owner.engine;
        let id = engine.next_id();
        let Ok(index) = self.owner.queue.with(|q| q.add_connection(id)) else {
            // The handle's connection quota.
            engine
                .counters
                .backlog_rejects
                .fetch_add(1, Ordering::Relaxed);
            return refuse(connector);
        };
        let Some(adapter) = self.adapter.with(|a| a.clone()) else {
            self.owner.queue.with(|q| q.remove_connection(index));
            return refuse(connector);
        };
        engine.counters.connections.fetch_add(1, Ordering::Relaxed);
        let Ok(conn) = Conn::new(&self.owner, id, index, adapter, self.if_index) else {
            // The listener's adapter is shared: dropping our reference is enough.
            self.owner.queue.with(|q| q.remove_connection(index));
            return refuse(connector);
        };
        if !self.owner.adopt(&conn) {
            // The handle was cleaned up while this request waited in the backlog.
            refuse(connector);
            conn.teardown();
            self.owner.queue.with(|q| q.remove_connection(index));
            return;
        }
        match conn.create_queue_pair(engine.config.receive_depth, engine.config.send_depth) {
            Ok(()) => conn.start_accept(connector),
            Err(st) => {
                refuse(connector);
                conn.fail_connect(None, st);
                conn.teardown();
            }
        }
    }

    /// Stop accepting (requests still in the backlog are refused) and start the NDK listener's
    /// close; never waits for it. Returns whether this call started the close (it is the
    /// first, and the listener was listening). `// IRQL: PASSIVE_LEVEL`.
    fn close(self: &Arc<Self>) -> bool {
        let queued = self.backlog.with(|b| {
            if core::mem::replace(&mut b.closing, true) {
                return None;
            }
            // Leaves an empty queue without allocating; the taken one is freed outside.
            Some(core::mem::take(&mut b.queue))
        });
        let Some(queued) = queued else {
            return false;
        };
        for connector in queued {
            refuse(connector);
        }
        let Some(listener) = self.listener.with(Option::take) else {
            self.release_adapter();
            return false;
        };
        // Alive until the close completion is handled (the work item drops this).
        let me = Arc::clone(self);
        self.keep_alive.with(|k| *k = Some(me));
        // NDK completes this close only after every connector accepted through the listener
        // has closed: `closed` then defers the adapter's release to the work item.
        listener.close(self);
        true
    }

    /// Wait until NDK completed the listener's close (which [`ListenerObj::close`] started),
    /// then release the adapter if nothing else holds it. Handle cleanup only: it closed the
    /// listener's connections first. `// IRQL: PASSIVE_LEVEL`.
    fn wait_closed(&self) {
        while !self.ndk_closed.load(Ordering::Acquire) {
            self.closed_signal.wait();
        }
        self.release_adapter();
    }
}

impl<P: Platform> Drop for ListenerObj<P> {
    // Backstop: a connector still in the backlog is refused, never stranded. (CLOSE empties
    // the backlog under the lock that also stops connect events from queuing, so this finds
    // something only for a listener dropped without CLOSE.)
    fn drop(&mut self) {
        let queued = self.backlog.with(|b| {
            b.closing = true;
            core::mem::take(&mut b.queue)
        });
        for connector in queued {
            refuse(connector);
        }
    }
}

impl<P: Platform> Sink for ListenerObj<P> {
    fn completed(&self, op: Op, st: NtStatus, created: Option<Created>) {
        self.stepper.finish(op, st, created);
    }

    // IRQL: <= DISPATCH_LEVEL: the adapter is closed at PASSIVE_LEVEL by the work item.
    fn closed(&self, op: Op) {
        if op == Op::CloseListener {
            self.ndk_closed.store(true, Ordering::Release);
            self.closed_signal.set();
            // Closed by CLOSE or cleanup (not by a failed LISTEN, which waits and releases the
            // adapter itself): the work item finishes the close.
            if self.keep_alive.with(|k| k.is_some()) {
                self.owner.defer(&self.work);
            }
        }
        self.stepper.finish(op, NtStatus::SUCCESS, None);
    }

    // IRQL: <= DISPATCH_LEVEL: take a preallocated backlog slot and defer; never allocate.
    fn connection_requested(&self, connector: Connector) {
        // One critical section with CLOSE's: queued here means CLOSE (or the work) sees it.
        let refused = self.backlog.with(|b| {
            if b.closing {
                Some((connector, false))
            } else if b.queue.len() < self.capacity {
                // INVARIANT: len < capacity = reserved: no allocation.
                b.queue.push_back(connector);
                None
            } else {
                Some((connector, true))
            }
        });
        match refused {
            Some((connector, overflow)) => {
                if overflow {
                    self.owner
                        .engine
                        .counters
                        .backlog_rejects
                        .fetch_add(1, Ordering::Relaxed);
                }
                refuse(connector);
            }
            None => self.owner.defer(&self.work),
        }
    }
}
