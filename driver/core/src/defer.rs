//! Deferral to `PASSIVE_LEVEL` without allocating and without a platform-side bound.
//!
//! Every piece of work the engine defers (a listener's accept work, a cancelled CONNECT's
//! release) is a [`Deferred`] allocated with its owner, holding its [`WorkItem`] header in the
//! same block, and each live item holds one slot of
//! the engine's queue, reserved when it was created and given back when it is dropped (an item
//! stays alive while queued), so the queue always has room for every item that can be queued.
//! Queuing a work item that was not queued kicks the platform (`Platform::kick`), which runs
//! the engine's drainer — the one work the platform was given — at `PASSIVE_LEVEL`. So the
//! platform holds no queue of its own and needs no room per work (a WDF work item enqueued
//! twice runs once), and nothing is ever dropped for lack of room.

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use kalloc::{Arc, Weak};

use crate::error::Error;
use crate::ports::Lock;
use crate::sync::{AtomicBool, Ordering};

/// Where a work item's slot is given back.
pub(crate) trait Slots: Send + Sync {
    /// One slot is no longer needed.
    fn release_one(&self);
}

/// Work to run at `PASSIVE_LEVEL`, queued at most once at a time: the work with its
/// [`WorkItem`] header (it holds a weak reference to what it works on, so a queued item keeps
/// nothing else alive).
pub(crate) trait Deferred: Send + Sync {
    /// Its header's queued flag ([`WorkItem::queued`]).
    fn queued(&self) -> &AtomicBool;
    /// Run it. `// IRQL: PASSIVE_LEVEL`.
    fn run(&self);
}

/// A work item as the queue holds it: boxed once, counted by a [`kalloc::Arc`] (so making one
/// fails instead of aborting, and queuing it clones a count without allocating).
pub(crate) type Work = Arc<Box<dyn Deferred>>;

/// Make a [`Work`] of `item`. `// IRQL: PASSIVE_LEVEL`.
///
/// # Errors
/// [`Error::NoResources`] (`item` is dropped, giving its slot back).
pub(crate) fn work(item: impl Deferred + 'static) -> Result<Work, Error> {
    let boxed: Box<dyn Deferred> = kalloc::try_box(item).map_err(|_| Error::NoResources)?;
    Arc::try_new(boxed).map_err(|_| Error::NoResources)
}

/// A work item's header: whether it is queued, and where its slot is given back when it is
/// dropped.
pub(crate) struct WorkItem<S: Slots> {
    queued: AtomicBool,
    slots: Weak<S>,
}

impl<S: Slots> WorkItem<S> {
    /// The header of an item whose slot the caller reserved in `slots`' queue ([`reserve`]).
    pub(crate) fn new(slots: Weak<S>) -> Self {
        Self {
            queued: AtomicBool::new(false),
            slots,
        }
    }

    /// Whether the item is queued (what [`Deferred::queued`] returns).
    pub(crate) fn queued(&self) -> &AtomicBool {
        &self.queued
    }
}

impl<S: Slots> Drop for WorkItem<S> {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.upgrade() {
            slots.release_one();
        }
    }
}

/// The engine's queue of work items.
#[derive(Default)]
pub(crate) struct Queue {
    items: VecDeque<Work>,
    /// Slots promised to live work items; `items` has at least this capacity.
    reserved: usize,
}

/// Promise `n` more slots, growing the queue outside the lock. `// IRQL: PASSIVE_LEVEL`.
///
/// # Errors
/// [`Error::NoResources`]: no memory for the larger queue (nothing is promised then).
pub(crate) fn reserve<L: Lock<Queue>>(queue: &L, n: usize) -> Result<(), Error> {
    let need = queue.with(|q| {
        q.reserved += n;
        q.reserved
    });
    loop {
        if queue.with(|q| q.items.capacity() >= q.reserved) {
            return Ok(());
        }
        let mut fresh = VecDeque::new();
        if fresh
            .try_reserve_exact(need.max(queue.with(|q| q.reserved)))
            .is_err()
        {
            queue.with(|q| q.reserved -= n);
            return Err(Error::NoResources);
        }
        let old = queue.with(|q| {
            if fresh.capacity() < q.reserved {
                return None;
            }
            // INVARIANT: fresh.capacity() >= reserved >= len: moving the items allocates nothing.
            fresh.extend(q.items.drain(..));
            Some(core::mem::replace(&mut q.items, fresh))
        });
        // The old queue is freed here, outside the lock (or the loop retries with more room).
        drop(old);
    }
}

/// Give back `n` slots (their items are gone).
pub(crate) fn release<L: Lock<Queue>>(queue: &L, n: usize) {
    queue.with(|q| q.reserved = q.reserved.saturating_sub(n));
}

/// Queue `item` unless it is queued already. Returns whether the drainer must be scheduled.
/// `// IRQL: <= DISPATCH_LEVEL`; never allocates.
pub(crate) fn push<L: Lock<Queue>>(queue: &L, item: &Work) -> bool {
    if item.queued().swap(true, Ordering::AcqRel) {
        return false;
    }
    queue.with(|q| {
        // INVARIANT: every live item holds a reserved slot (a queued item is alive) and is
        // queued at most once: len < capacity.
        debug_assert!(
            q.items.len() < q.items.capacity(),
            "deferral slot not reserved"
        );
        q.items.push_back(Arc::clone(item));
    });
    true
}

/// Run every queued item. `// IRQL: PASSIVE_LEVEL` (the drainer).
pub(crate) fn drain<L: Lock<Queue>>(queue: &L) {
    while let Some(item) = queue.with(|q| q.items.pop_front()) {
        // Cleared before running, so work queued while it runs is run again.
        item.queued().store(false, Ordering::Release);
        item.run();
    }
}
