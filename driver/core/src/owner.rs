//! One file handle: its event queue, its table of connections and listeners, and what its
//! connections and listeners report to it ([`ConnOwner`], [`ListenerOwner`]). The handle's
//! lifecycle is here (open, cancel routine, cleanup); its IOCTLs are handled in the `dispatch` module.

use alloc::vec::Vec;

use kalloc::{Arc, Weak};

use ndkdisc_abi::{Cause, Event};

use crate::conn::{Conn, ConnOwner, SharedPd, release_abandoned};
use crate::defer::{self, Deferred, WorkItem};
use crate::error::Error;
use crate::events::{ConnIndex, EventQueue, Latch, QueueError, Ready};
use crate::listener::{Listener, ListenerOwner};
use crate::ports::{Lock, PendedRequest, Platform};
use crate::runtime::{HandleSlot, Runtime};

/// The access a handle was opened with (on Windows, what the I/O manager granted its
/// `CreateFile`). The I/O manager already refuses every control code that needs
/// `FILE_WRITE_ACCESS` to a handle without it; the engine also keeps its engine-wide counters
/// from such a handle: its `GET_INFO` reports them as zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Opened for reading only: queries.
    Read,
    /// Opened for writing too (`FILE_WRITE_DATA`): every operation, and `GET_INFO` with the
    /// engine-wide counters.
    ReadWrite,
}

/// One file handle: every connection and listener it creates belongs to it.
pub struct Owner<P: Platform> {
    pub(crate) inner: Arc<HandleState<P>>,
    /// What the handle was opened for.
    pub(crate) access: Access,
    /// Its place among the engine's `Config::max_handles`, given back when the owner is dropped.
    _slot: HandleSlot<P>,
}

pub(crate) struct Table<P: Platform> {
    /// The handle's connections at their record index in the event queue (see
    /// [`HandleState::take_conn`]); `max_connections` entries, reserved at open.
    pub(crate) conns: Vec<Option<Arc<Conn<P>>>>,
    pub(crate) listeners: Vec<Arc<Listener<P>>>,
    /// Pended CONNECTs and graceful DISCONNECTs by request token, so their cancel routine finds
    /// the connection even after CLOSE or cleanup took it out of `conns`. Capacity reserved at
    /// open: one per connection (a connection stores one of them at a time) and
    /// [`PENDED_SPARE`] for requests registered only to be refused.
    pended: Vec<(u64, Arc<Conn<P>>)>,
    /// Cleanup has run: nothing new joins the handle (a CONNECT or an accept still in flight
    /// releases its connection instead).
    pub(crate) closed: bool,
    /// The NDK adapter each interface's CONNECTs share while any of their connections holds it
    /// (the last one's teardown closes it). Room for [`ADAPTERS`] interfaces, reserved at open.
    adapters: Vec<(u32, Weak<ndkpi::Adapter>)>,
    /// The protection domains the handle's connections share, one per adapter, with the
    /// adapter's interface and address: room for [`PDS`], reserved at open.
    pds: Vec<(u32, usize, Weak<SharedPd>)>,
    /// Connections whose CONNECT was cancelled, for the handle's abandon work item to release
    /// at `PASSIVE_LEVEL`, by their index in `conns`. Only connections in `conns` are listed,
    /// each at most once (taking one out of `conns` takes it off the list), so an index names
    /// its connection while listed, and the room reserved at open, one per connection, always
    /// suffices: the cancel routine never allocates.
    abandoned: Vec<u32>,
}

/// Adapters (CONNECT interfaces and listeners) whose PD a handle's connections share; beyond
/// that a connection has a PD of its own.
const PDS: usize = 16;

/// Room in a handle's registry of pended requests beyond one per connection: a DISCONNECT is
/// refused before it is registered if it cannot start, but two racing on one connection can
/// both pass that check, and the loser holds a second entry for a moment before it is refused
/// under the lock. Past this many such races at once, a DISCONNECT or CONNECT of the handle is
/// refused with `STATUS_INSUFFICIENT_RESOURCES`.
const PENDED_SPARE: usize = 16;

/// Interfaces whose adapter a handle's CONNECTs share; a CONNECT on a further interface opens
/// an adapter of its own.
const ADAPTERS: usize = 8;

/// A handle's state, shared with its connections and listeners (which see it only as their
/// [`ConnOwner`] or [`ListenerOwner`]).
pub(crate) struct HandleState<P: Platform> {
    pub(crate) runtime: Arc<Runtime<P>>,
    pub(crate) queue: P::Lock<EventQueue<P::Request>>,
    pub(crate) table: P::Lock<Table<P>>,
    /// The work item that releases the connections in `Table::abandoned`: one per handle,
    /// allocated at open.
    abandon: defer::Work,
}

/// A handle's work item releasing its abandoned connections.
struct Abandon<P: Platform> {
    item: WorkItem<Runtime<P>>,
    handle: Weak<HandleState<P>>,
}

impl<P: Platform> Deferred for Abandon<P> {
    fn queued(&self) -> &crate::sync::AtomicBool {
        self.item.queued()
    }

    fn run(&self) {
        if let Some(h) = self.handle.upgrade() {
            // An entry whose connection is gone (or is not abandoned: never, as CLOSE and
            // cleanup take their connection off the list) releases nothing.
            while let Some(entry) = h.table.with(|t| {
                let index = usize::try_from(t.abandoned.pop()?).ok();
                Some(
                    index
                        .and_then(|i| t.conns.get(i)?.as_ref())
                        .filter(|c| c.abandoning())
                        .map(|c| c.id()),
                )
            }) {
                if let Some(id) = entry {
                    release_abandoned::<P>(&*h, id);
                }
            }
        }
    }
}

impl<P: Platform> Owner<P> {
    /// A new handle's owner in the place `slot`, its records and tables reserved up front.
    /// `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`Error::NoResources`] if its records cannot be reserved (`slot` is then given back).
    pub(crate) fn new(
        runtime: &Arc<Runtime<P>>,
        access: Access,
        slot: HandleSlot<P>,
    ) -> Result<Self, Error> {
        let config = &runtime.config;
        let queue = EventQueue::new(config.limits)?;
        let mut table = Table {
            conns: Vec::new(),
            listeners: Vec::new(),
            pended: Vec::new(),
            closed: false,
            adapters: Vec::new(),
            pds: Vec::new(),
            abandoned: Vec::new(),
        };
        table
            .adapters
            .try_reserve_exact(ADAPTERS)
            .map_err(|_| Error::NoResources)?;
        table
            .pds
            .try_reserve_exact(PDS)
            .map_err(|_| Error::NoResources)?;
        table
            .pended
            .try_reserve_exact(config.limits.max_connections.saturating_add(PENDED_SPARE))
            .map_err(|_| Error::NoResources)?;
        table
            .conns
            .try_reserve_exact(config.limits.max_connections)
            .map_err(|_| Error::NoResources)?;
        table.conns.resize(config.limits.max_connections, None);
        table
            .listeners
            .try_reserve(config.max_listeners)
            .map_err(|_| Error::NoResources)?;
        table
            .abandoned
            .try_reserve_exact(config.limits.max_connections)
            .map_err(|_| Error::NoResources)?;
        // The work item's slot: given back when the item is dropped (also when a later step
        // fails and drops it).
        runtime.reserve_work()?;
        let item = WorkItem::new(Runtime::slots(runtime));
        let platform = runtime.platform();
        let inner = Arc::try_new_cyclic_with(|me| {
            Ok::<_, Error>(HandleState {
                runtime: Arc::clone(runtime),
                queue: platform.lock(queue),
                table: platform.lock(table),
                abandon: defer::work(Abandon {
                    item,
                    handle: me.clone(),
                })?,
            })
        })?;
        Ok(Self {
            inner,
            access,
            _slot: slot,
        })
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
                request.complete(Error::Cancelled.ntstatus(), 0);
                conn.cancelled();
            } else if let Some(request) = conn.take_cancelled_disconnect(token) {
                request.complete(Error::Cancelled.ntstatus(), 0);
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
            // Cleanup releases every connection below, abandoned ones too.
            t.abandoned.clear();
            (
                core::mem::take(&mut t.conns),
                core::mem::take(&mut t.listeners),
            )
        });
        for c in conns.into_iter().flatten() {
            Conn::end(&c, Cause::HandleClosed);
            c.closed_event();
        }
        // Its connections are closed, so NDK completes each listener's close: wait for it here
        // (only a CLOSE IOCTL must not wait), and release the adapter if nobody else holds it.
        for l in listeners {
            if Listener::close(&l) {
                l.wait_closed();
            }
        }
    }

    /// Events queued on this handle.
    pub fn queued_events(&self) -> usize {
        self.inner.queue.with(|q| q.queued())
    }
}

impl<P: Platform> HandleState<P> {
    /// Connection `id` of this handle: found through the event queue's id map, then at its
    /// record index in the table (O(1)).
    pub(crate) fn conn(&self, id: u64) -> Option<Arc<Conn<P>>> {
        let index = self.queue.with(|q| q.find(id))?;
        self.table.with(|t| {
            t.conns
                .get(index.slot())?
                .as_ref()
                .filter(|c| c.id() == id)
                .cloned()
        })
    }

    /// Take connection `id` out of the table (CLOSE, cleanup of a CONNECT abandoned). Its
    /// queue record lives on until its `Closed` event is delivered, so its index is not reused
    /// before it left the table.
    pub(crate) fn take_conn(&self, id: u64) -> Option<Arc<Conn<P>>> {
        let index = self.queue.with(|q| q.find(id))?;
        self.table.with(|t| {
            let slot = t.conns.get_mut(index.slot())?;
            if slot.as_ref().is_none_or(|c| c.id() != id) {
                return None;
            }
            let conn = slot.take()?;
            if conn.abandoning() {
                // Rare (a cancelled CONNECT), and the list is short: it holds the cancelled
                // CONNECTs the work item has not reached yet.
                let index = u32::try_from(index.slot()).ok();
                t.abandoned.retain(|&a| Some(a) != index);
            }
            Some(conn)
        })
    }

    /// The NDK adapter for a CONNECT on `if_index`: the one this handle's connections on that
    /// interface already share, or a new one (then shared). Opening an adapter per connection
    /// would make each close wait for the adapter's blocking close. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The provider's failure to open the adapter.
    pub(crate) fn shared_adapter(&self, if_index: u32) -> Result<Arc<ndkpi::Adapter>, Error> {
        let cached = self.table.with(|t| {
            t.adapters
                .iter()
                .find(|(i, _)| *i == if_index)
                .and_then(|(_, a)| a.upgrade())
        });
        if let Some(adapter) = cached {
            return Ok(adapter);
        }
        let adapter = self.runtime.open_adapter(if_index)?;
        let adapter = match Arc::try_new_returning(adapter) {
            Ok(adapter) => adapter,
            Err(adapter) => {
                // Never shared: closed here, at PASSIVE_LEVEL like the open.
                self.runtime.platform().wsk().close_adapter(adapter);
                return Err(Error::NoResources);
            }
        };
        self.table.with(|t| {
            // Entries whose adapter was closed make room; never more than reserved.
            t.adapters
                .retain(|(i, a)| *i != if_index && a.strong_count() > 0);
            let _ = push_reserved(&mut t.adapters, (if_index, Arc::downgrade(&adapter)));
        });
        Ok(adapter)
    }

    /// `Engine::adapter_removed` for this handle. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn adapter_removed(&self, if_index: u32) {
        // A CONNECT from now on opens a new adapter, never the removed one (which a connection
        // not yet torn down may still hold).
        self.table.with(|t| {
            t.adapters.retain(|(i, _)| *i != if_index);
            t.pds.retain(|(i, _, _)| *i != if_index);
        });
        // One at a time, each marked so it is not found again (no allocation under the lock),
        // going on from where the last one was found: the whole walk visits each table entry
        // once (from the start each time, it was quadratic in the handle's connections, under
        // the table's spin lock).
        let mut from = 0;
        while let Some((i, c)) = self.table.with(|t| {
            t.conns.iter().enumerate().skip(from).find_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| c.if_index == if_index && !c.removal_seen())
                    .map(|c| (i, Arc::clone(c)))
            })
        }) {
            from = i + 1;
            Conn::adapter_removed(&c);
        }
        while let Some(l) = self.table.with(|t| {
            t.listeners
                .iter()
                .find(|l| l.if_index == if_index && !l.removal_seen())
                .cloned()
        }) {
            Listener::close(&l);
        }
    }
}

impl<P: Platform> ConnOwner<P> for HandleState<P> {
    fn runtime(&self) -> &Arc<Runtime<P>> {
        &self.runtime
    }

    fn latch_in(&self, index: ConnIndex, fact: Event) -> Option<Ready<P::Request>> {
        let (latch, ready) = self.queue.with(|q| q.latch(index, fact));
        if latch == Latch::Queued {
            self.runtime.count(|c| &c.events);
        }
        ready
    }

    fn complete_level_triggered(&self, id: u64) {
        while let Some(ready) = self.queue.with(|q| q.take_level_triggered(id)) {
            ready.complete();
        }
    }

    fn register_pended(&self, token: u64, conn: &Arc<Conn<P>>) -> Result<(), Error> {
        let pushed = self
            .table
            .with(|t| push_reserved(&mut t.pended, (token, Arc::clone(conn))));
        if pushed {
            Ok(())
        } else {
            Err(Error::NoResources)
        }
    }

    fn unregister_pended(&self, token: u64) -> Option<Arc<Conn<P>>> {
        self.table.with(|t| {
            let i = t.pended.iter().position(|(k, _)| *k == token)?;
            Some(t.pended.swap_remove(i).1)
        })
    }

    fn shared_pd(&self, adapter: &Arc<ndkpi::Adapter>) -> Option<Arc<SharedPd>> {
        // Entries are matched by the adapter's address and only the match is upgraded, so the
        // reference always leaves the lock with the caller: upgrading and dropping another
        // entry could drop the last reference to its PD here, unclosed. (A dead adapter's
        // address taken by a new one finds a dead entry, which does not upgrade.)
        let addr = Arc::as_ptr(adapter).addr();
        let pd = self.table.with(|t| {
            t.pds
                .iter()
                .find(|(_, a, _)| *a == addr)
                .and_then(|(_, _, pd)| pd.upgrade())
        });
        // A live PD keeps its adapter alive, so the adapter at that address is this one.
        debug_assert!(pd.as_ref().is_none_or(|pd| pd.on(adapter)));
        pd
    }

    fn offer_pd(&self, if_index: u32, pd: &Arc<SharedPd>) {
        let addr = Arc::as_ptr(pd.adapter()).addr();
        self.table.with(|t| {
            // Entries whose PD was closed make room; never more than reserved.
            t.pds.retain(|(_, _, p)| p.strong_count() > 0);
            let _ = push_reserved(&mut t.pds, (if_index, addr, Arc::downgrade(pd)));
        });
    }

    fn forget(&self, id: u64) -> Option<Arc<Conn<P>>> {
        self.take_conn(id)
    }

    fn abandon(&self, id: u64) {
        let index = crate::ids::index_of(id);
        let queued = self.table.with(|t| {
            let held = t
                .conns
                .get(index)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.id() == id);
            // INVARIANT: only connections in `conns`, each once (see `Table::abandoned`):
            // within the reserved room.
            held && u32::try_from(index).is_ok_and(|i| push_reserved(&mut t.abandoned, i))
        });
        // Not held: CLOSE or the handle's cleanup took it first and releases it.
        if queued {
            self.runtime.defer(&self.abandon);
        }
    }
}

impl<P: Platform> ListenerOwner<P> for HandleState<P> {
    fn add_connection(&self, seq: u64) -> Result<ConnIndex, QueueError> {
        self.queue.with(|q| q.add_connection(seq))
    }

    fn remove_connection(&self, index: ConnIndex) {
        self.queue.with(|q| q.remove_connection(index));
    }

    fn adopt(&self, conn: &Arc<Conn<P>>) -> bool {
        self.table.with(|t| {
            // The record index is free in the table: a connection leaves it before its record
            // can be reused (`take_conn`).
            match t.conns.get_mut(conn.index.slot()) {
                Some(slot @ None) if !t.closed => {
                    *slot = Some(Arc::clone(conn));
                    true
                }
                _ => false,
            }
        })
    }
}

/// Push within the room reserved at open; `false` (and no push) when it is used up: growing
/// would allocate under a spin lock.
pub(crate) fn push_reserved<T>(v: &mut Vec<T>, item: T) -> bool {
    if v.len() == v.capacity() {
        return false;
    }
    // INVARIANT: len < capacity: no allocation.
    v.push(item);
    true
}
