//! Listeners: LISTEN's NDK listener, its backlog of incoming connection requests, and the
//! work item that accepts them at `PASSIVE_LEVEL` as connections of the listener's handle.

use alloc::collections::VecDeque;
use core::net::SocketAddr;

use kalloc::{Arc, Weak};

use ndkdisc_abi::NtStatus;
use ndkpi::{Connector, Created, Op, Sink};

use crate::conn::{Conn, ConnOwner};
use crate::defer;
use crate::error::Error;
use crate::events::{ConnIndex, QueueError};
use crate::owner::HandleState;
use crate::ports::{Lock, NdkCallback, Platform, Signal, Trace};
use crate::runtime::Runtime;
use crate::step::Stepper;
use crate::sync::{AtomicBool, Ordering};

/// What a listener reports to the handle that owns it, beyond what its connections report: an
/// accepted connection takes a place in the handle's queue and joins the handle's table. The
/// handle implements it (in the `owner` module).
pub(crate) trait ListenerOwner<P: Platform>: ConnOwner<P> {
    /// Reserve a new connection's event records in the handle's queue, its id made from
    /// sequence number `seq` and its record index ([`crate::ids`]); `Err` at the handle's
    /// connection quota (or when the sequence numbers ran out).
    fn add_connection(&self, seq: u64) -> Result<ConnIndex, QueueError>;

    /// Give back what [`ListenerOwner::add_connection`] reserved (the connection never joined).
    fn remove_connection(&self, index: ConnIndex);

    /// Add a new connection to the handle's table, unless cleanup has run (or, defensively,
    /// the reserved room is used up: growing it would allocate under the lock).
    fn adopt(&self, conn: &Arc<Conn<P>>) -> bool;
}

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
pub(crate) struct Listener<P: Platform> {
    pub(crate) id: u64,
    /// The interface it listens on.
    pub(crate) if_index: u32,
    /// `Engine::adapter_removed` has handled it.
    removal_seen: AtomicBool,
    bound: P::Lock<SocketAddr>,
    /// The handle, seen only through [`ListenerOwner`] (its other items are private to the
    /// `owner` module).
    owner: Arc<HandleState<P>>,
    adapter: P::Lock<Option<Arc<ndkpi::Adapter>>>,
    /// The NDK listener, once listening (taken by CLOSE).
    ndk: P::Lock<Option<ndkpi::Listener>>,
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
    work: defer::Work,
}

struct AcceptWork<P: Platform> {
    item: defer::WorkItem<Runtime<P>>,
    listener: Weak<Listener<P>>,
}

impl<P: Platform> defer::Deferred for AcceptWork<P> {
    fn queued(&self) -> &AtomicBool {
        self.item.queued()
    }

    fn run(&self) {
        if let Some(l) = self.listener.upgrade() {
            Listener::drain(&l);
            if l.ndk_closed.load(Ordering::Acquire) {
                l.release_adapter();
                // Dropped outside the lock (possibly not the last reference: `l` is another).
                let me = l.keep_alive.with(Option::take);
                if me.is_some() {
                    l.owner.runtime().listener_closed();
                }
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

impl<P: Platform> Listener<P> {
    /// Trace an NDK callback of this listener.
    fn trace(&self, callback: NdkCallback, status: NtStatus) {
        self.owner.runtime().platform().trace(&Trace::NdkCallback {
            id: self.id,
            callback,
            status,
            reason: None,
        });
    }

    /// Create the NDK listener and listen, owning `adapter`: on failure everything opened here
    /// (the adapter too) is closed before this returns. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn start(
        owner: Arc<HandleState<P>>,
        id: u64,
        adapter: ndkpi::Adapter,
        if_index: u32,
        capacity: usize,
        local: SocketAddr,
    ) -> Result<Arc<Self>, Error> {
        let runtime = Arc::clone(owner.runtime());
        let platform = runtime.platform();
        let mut queue = VecDeque::new();
        let reserved = queue
            .try_reserve_exact(capacity)
            .ok()
            .and_then(|()| Some((Stepper::<P>::new(platform)?, platform.signal()?)))
            .ok_or(Error::NoResources)
            // The accept work item's slot (given back when the item is dropped).
            .and_then(|made| runtime.reserve_work().map(|()| made));
        let (stepper, closed_signal) = match reserved {
            Ok(made) => made,
            Err(e) => {
                platform.wsk().close_adapter(adapter);
                return Err(e);
            }
        };
        // The work item's slot is reserved: the item gives it back when dropped, also on the
        // failures below.
        let item = defer::WorkItem::new(Runtime::slots(&runtime));
        let adapter = match Arc::try_new_returning(adapter) {
            Ok(adapter) => adapter,
            Err(adapter) => {
                platform.wsk().close_adapter(adapter);
                return Err(Error::NoResources);
            }
        };
        let made = Arc::try_new_cyclic_with(|weak: &Weak<Self>| {
            Ok::<_, Error>(Self {
                work: defer::work(AcceptWork {
                    item,
                    listener: weak.clone(),
                })?,
                id,
                if_index,
                removal_seen: AtomicBool::new(false),
                bound: platform.lock(local),
                owner,
                adapter: platform.lock(Some(Arc::clone(&adapter))),
                ndk: platform.lock(None),
                backlog: platform.lock(Backlog {
                    queue,
                    closing: false,
                }),
                capacity,
                ndk_closed: AtomicBool::new(false),
                closed_signal,
                keep_alive: platform.lock(None),
                stepper,
            })
        });
        let me = match made {
            Ok(me) => me,
            Err(e) => {
                // Ours was the only reference: close the adapter it opened for this listener.
                if let Some(adapter) = Arc::into_inner(adapter) {
                    platform.wsk().close_adapter(adapter);
                }
                return Err(e);
            }
        };
        drop(adapter);
        let created = {
            // Dropped before any release: `release_adapter` closes only the last reference.
            let Some(adapter) = me.adapter.with(|a| a.clone()) else {
                return Err(Error::InvalidState);
            };
            me.stepper.run(|| adapter.create_listener(&me))
        };
        let (st, created) = created;
        let Some(Created::Listener(listener)) = created else {
            me.release_adapter();
            return Err(Error::provider(st));
        };
        let (st, _) = me.stepper.run(|| listener.listen(&me, local));
        if st != NtStatus::SUCCESS {
            // Nothing was accepted through it: its close completes promptly, waited for here.
            me.backlog.with(|b| b.closing = true);
            me.stepper.run(|| listener.close(&me));
            me.release_adapter();
            return Err(Error::Provider(st));
        }
        let bound = listener.local_address().unwrap_or(local);
        me.bound.with(|b| *b = bound);
        me.ndk.with(|l| *l = Some(listener));
        Ok(me)
    }

    pub(crate) fn bound(&self) -> SocketAddr {
        self.bound.with(|b| *b)
    }

    /// Whether `Engine::adapter_removed` has handled it (and mark it handled).
    pub(crate) fn removal_seen(&self) -> bool {
        self.removal_seen.swap(true, Ordering::AcqRel)
    }

    /// Drop the listener's reference to its adapter, closing the adapter if it was the last
    /// (connections accepted through the listener hold the others). `// IRQL: PASSIVE_LEVEL`.
    fn release_adapter(&self) {
        if let Some(adapter) = self.adapter.with(Option::take).and_then(Arc::into_inner) {
            self.owner.runtime().platform().wsk().close_adapter(adapter);
        }
    }

    /// Accept what the backlog holds (nothing once closing: CLOSE took it).
    /// `// IRQL: PASSIVE_LEVEL`.
    fn drain(this: &Arc<Self>) {
        while let Some(connector) = this
            .backlog
            .with(|b| if b.closing { None } else { b.queue.pop_front() })
        {
            Self::accept_one(this, connector);
        }
    }

    fn accept_one(this: &Arc<Self>, connector: Connector) {
        let runtime = this.owner.runtime();
        let Ok(index) = this.owner.add_connection(runtime.next_id()) else {
            // The handle's connection quota (or, after 2^44 ids, no id left).
            runtime.count(|c| &c.backlog_rejects);
            return refuse(connector);
        };
        let Some(adapter) = this.adapter.with(|a| a.clone()) else {
            this.owner.remove_connection(index);
            return refuse(connector);
        };
        runtime.count(|c| &c.connections);
        let Ok(conn) = Conn::new(Arc::clone(&this.owner), index, adapter, this.if_index) else {
            // The listener's adapter is shared: dropping our reference is enough.
            this.owner.remove_connection(index);
            return refuse(connector);
        };
        runtime.platform().trace(&Trace::ConnectionCreated {
            id: conn.id(),
            if_index: this.if_index,
            active: false,
        });
        if !this.owner.adopt(&conn) {
            // The handle was cleaned up while this request waited in the backlog.
            refuse(connector);
            Conn::teardown(&conn);
            this.owner.remove_connection(index);
            return;
        }
        let config = &runtime.config;
        match Conn::create_queue_pair(&conn, config.receive_depth, config.send_depth) {
            Ok(()) => Conn::start_accept(&conn, connector),
            Err(e) => {
                refuse(connector);
                conn.fail_connect(None, e.ntstatus());
                Conn::teardown(&conn);
            }
        }
    }

    /// Stop accepting (requests still in the backlog are refused) and start the NDK listener's
    /// close; never waits for it. Returns whether this call started the close (it is the
    /// first, and the listener was listening). `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn close(this: &Arc<Self>) -> bool {
        let queued = this.backlog.with(|b| {
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
        let Some(listener) = this.ndk.with(Option::take) else {
            this.release_adapter();
            return false;
        };
        // Alive until the close completion is handled (the work item drops this).
        let me = Arc::clone(this);
        this.keep_alive.with(|k| *k = Some(me));
        this.owner.runtime().listener_closing();
        // NDK completes this close only after every connector accepted through the listener
        // has closed: `closed` then defers the adapter's release to the work item.
        listener.close(this);
        true
    }

    /// Wait until NDK completed the listener's close (which [`Listener::close`] started),
    /// then release the adapter if nothing else holds it. Handle cleanup only: it closed the
    /// listener's connections first. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn wait_closed(&self) {
        while !self.ndk_closed.load(Ordering::Acquire) {
            self.closed_signal.wait();
        }
        self.release_adapter();
    }
}

impl<P: Platform> Drop for Listener<P> {
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

impl<P: Platform> Sink for Listener<P> {
    fn completed(&self, op: Op, st: NtStatus, created: Option<Created>) {
        self.trace(NdkCallback::Completion(op), st);
        self.stepper.finish(op, st, created);
    }

    // IRQL: <= DISPATCH_LEVEL: the adapter is closed at PASSIVE_LEVEL by the work item.
    fn closed(&self, op: Op) {
        self.trace(NdkCallback::Closed(op), NtStatus::SUCCESS);
        if op == Op::CloseListener {
            self.ndk_closed.store(true, Ordering::Release);
            self.closed_signal.set();
            // Closed by CLOSE or cleanup (not by a failed LISTEN, which waits and releases the
            // adapter itself): the work item finishes the close.
            if self.keep_alive.with(|k| k.is_some()) {
                self.owner.runtime().defer(&self.work);
            }
        }
        self.stepper.finish(op, NtStatus::SUCCESS, None);
    }

    // IRQL: <= DISPATCH_LEVEL: take a preallocated backlog slot and defer; never allocate.
    fn connection_requested(&self, connector: Connector) {
        self.trace(NdkCallback::ConnectionRequest, NtStatus::SUCCESS);
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
                    self.owner.runtime().count(|c| &c.backlog_rejects);
                }
                refuse(connector);
            }
            None => self.owner.runtime().defer(&self.work),
        }
    }
}
