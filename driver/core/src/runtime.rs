//! What every handle, connection and listener of one engine shares: the platform, the
//! settings, the counters `GET_INFO` reports, connection ids, and deferral to `PASSIVE_LEVEL`.
//! It knows nothing of handles: the engine keeps those (`Engine`).

use alloc::boxed::Box;

use kalloc::{Arc, Weak};

use ndkpi::sys::NDK_VERSION;

use crate::defer;
use crate::error::Error;
use crate::events::Limits;
use crate::ports::{Passive, Platform, SharedPassive, Signal};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Engine-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Handles open at once, engine-wide: `Engine::open` refuses one more with
    /// `STATUS_QUOTA_EXCEEDED`. A handle holds its place until its [`Owner`](crate::Owner) is
    /// dropped (on Windows at `EvtFileClose`, once its last request completed).
    pub max_handles: usize,
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
            max_handles: 1024,
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

/// One processor's share of the engine-wide counters, on a cache line of its own so processors
/// counting at once never share one.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct CounterSlot {
    pub(crate) connections: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) disconnect_callbacks: AtomicU64,
    pub(crate) backlog_rejects: AtomicU64,
    pub(crate) duplicate_callbacks: AtomicU64,
}

/// Slots of the engine-wide counters: processors beyond this share slots (modulo), which
/// is still correct (each add is atomic), only less spread.
pub(crate) const COUNTER_SLOTS: usize = 64;

/// The engine-wide counters `GET_INFO` reports, kept per processor
/// ([`Platform::processor`]) so the disconnect callbacks of many processors never contend on
/// one cache line, and summed when read.
pub(crate) struct Counters {
    slots: [CounterSlot; COUNTER_SLOTS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            slots: core::array::from_fn(|_| CounterSlot::default()),
        }
    }
}

impl Counters {
    /// Add one to a counter in processor `processor`'s slot. `// IRQL: any`; never allocates.
    pub(crate) fn add(&self, processor: usize, counter: impl Fn(&CounterSlot) -> &AtomicU64) {
        if let Some(slot) = self.slots.get(processor % COUNTER_SLOTS) {
            counter(slot).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A counter summed over every slot (each slot read once; counts added meanwhile may or
    /// may not be included).
    pub(crate) fn total(&self, counter: impl Fn(&CounterSlot) -> &AtomicU64) -> u64 {
        self.slots
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// The engine's shared services: one per engine, held by each of its handles, connections and
/// listeners.
pub(crate) struct Runtime<P: Platform> {
    platform: Arc<P>,
    pub(crate) config: Config,
    next_id: AtomicU64,
    pub(crate) counters: Counters,
    /// Handles open now: the places of `config.max_handles` taken ([`HandleSlot`]).
    open_handles: AtomicUsize,
    /// Work deferred to `PASSIVE_LEVEL` (the `defer` module).
    deferred: P::Lock<defer::Queue>,
    /// Listeners whose CLOSE started and whose work item has not yet released their adapter
    /// (it runs after NDK completes the close, possibly after every handle is gone).
    closing_listeners: AtomicUsize,
    /// Set when `closing_listeners` drops to zero, for [`Runtime::quiesce`].
    quiet: P::Signal,
}

/// One of the engine's `Config::max_handles` places, held by an open handle's owner: dropping it
/// gives the place back.
pub(crate) struct HandleSlot<P: Platform> {
    runtime: Arc<Runtime<P>>,
}

impl<P: Platform> Drop for HandleSlot<P> {
    fn drop(&mut self) {
        // INVARIANT: each slot was counted once by `take_handle_slot`, so this never wraps.
        self.runtime.open_handles.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The runtime's drainer: the one work the platform runs when kicked. It drains `deferred`.
struct Drainer<P: Platform> {
    runtime: Weak<Runtime<P>>,
}

impl<P: Platform> Passive for Drainer<P> {
    fn run(&self) {
        if let Some(runtime) = self.runtime.upgrade() {
            defer::drain(&runtime.deferred);
        }
    }
}

impl<P: Platform> defer::Slots for Runtime<P> {
    fn release_one(&self) {
        defer::release(&self.deferred, 1);
    }
}

impl<P: Platform> Runtime<P> {
    /// A runtime over `platform`, which it gives its drainer. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`Error::NoResources`].
    pub(crate) fn new(platform: Arc<P>, config: Config) -> Result<Arc<Self>, Error> {
        let quiet = platform.signal().ok_or(Error::NoResources)?;
        let runtime = Arc::try_new(Self {
            deferred: platform.lock(defer::Queue::default()),
            closing_listeners: AtomicUsize::new(0),
            quiet,
            platform,
            config,
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            open_handles: AtomicUsize::new(0),
        })
        .map_err(|_| Error::NoResources)?;
        // Weak: the platform outlives the runtime's last user, and must not keep it alive.
        let drainer: Box<dyn Passive> = kalloc::try_box(Drainer {
            runtime: Arc::downgrade(&runtime),
        })
        .map_err(|_| Error::NoResources)?;
        let drainer: SharedPassive = Arc::try_new(drainer).map_err(|_| Error::NoResources)?;
        runtime.platform.set_drainer(drainer);
        Ok(runtime)
    }

    /// A listener's CLOSE started: its adapter's release is still to come, from the work
    /// item. `// IRQL: any`.
    pub(crate) fn listener_closing(&self) {
        self.closing_listeners.fetch_add(1, Ordering::AcqRel);
    }

    /// A listener's close is finished (its work item released the adapter). `// IRQL: any`.
    pub(crate) fn listener_closed(&self) {
        if self.closing_listeners.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.quiet.set();
        }
    }

    /// Wait until no listener close is in flight: every adapter a CLOSE left to the work item
    /// is released. NDK completes a listener's close once its accepted connections are
    /// closed, so once every handle is closed this ends. `// IRQL: PASSIVE_LEVEL`, with
    /// deferral still running.
    pub(crate) fn quiesce(&self) {
        while self.closing_listeners.load(Ordering::Acquire) != 0 {
            self.quiet.wait();
        }
    }

    /// The platform.
    pub(crate) fn platform(&self) -> &Arc<P> {
        &self.platform
    }

    /// Add one to an engine-wide counter, in the current processor's slot. `// IRQL: any`.
    pub(crate) fn count(&self, counter: impl Fn(&CounterSlot) -> &AtomicU64) {
        self.counters.add(self.platform.processor(), counter);
    }

    /// Take one of the `config.max_handles` places for a handle about to open; it is given back
    /// when the returned slot is dropped (with the handle's owner, or at once if the open fails).
    ///
    /// # Errors
    /// [`Error::Quota`] when `config.max_handles` handles are open.
    pub(crate) fn take_handle_slot(this: &Arc<Self>) -> Result<HandleSlot<P>, Error> {
        this.open_handles
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < this.config.max_handles).then_some(n + 1)
            })
            .map_err(|_| Error::Quota)?;
        Ok(HandleSlot {
            runtime: Arc::clone(this),
        })
    }

    /// Handles open now.
    pub(crate) fn open_handles(&self) -> usize {
        self.open_handles.load(Ordering::Relaxed)
    }

    /// A new connection or listener id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Reserve the deferral slot of one work item about to be created with
    /// [`defer::WorkItem::new`] and [`Runtime::slots`]. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`Error::NoResources`].
    pub(crate) fn reserve_work(&self) -> Result<(), Error> {
        defer::reserve(&self.deferred, 1)
    }

    /// Where work items give their slot back.
    pub(crate) fn slots(this: &Arc<Self>) -> Weak<Self> {
        Arc::downgrade(this)
    }

    /// Queue `item` to run at `PASSIVE_LEVEL`. `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub(crate) fn defer(&self, item: &defer::Work) {
        if defer::push(&self.deferred, item) {
            self.platform.kick();
        }
    }

    /// Open the adapter of `if_index` asking for the lowest version we support of each major:
    /// in NDKPI the requested minor is the minimum acceptable and the provider answers with its
    /// highest minor of that major, so a 2.1 provider gives 2.1 (the disconnect reason) and a
    /// 2.0 provider 2.0 (asking for 2.1 would fail, and 1.x would then get it down-level).
    ///
    /// # Errors
    /// The provider's failure to open it (at 1.1, the last tried).
    pub(crate) fn open_adapter(&self, if_index: u32) -> Result<ndkpi::Adapter, Error> {
        let wsk = self.platform.wsk();
        wsk.open_adapter(if_index, NDK_VERSION { Major: 2, Minor: 0 })
            .or_else(|_| wsk.open_adapter(if_index, NDK_VERSION { Major: 1, Minor: 1 }))
            .map_err(Error::Provider)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{COUNTER_SLOTS, Counters};

    #[test]
    fn counts_from_every_processor_are_summed_and_kept_apart() {
        let c = Counters::default();
        // Processors beyond the slots share one (modulo): still counted.
        for p in [
            0,
            1,
            7,
            COUNTER_SLOTS - 1,
            COUNTER_SLOTS,
            3 * COUNTER_SLOTS + 5,
        ] {
            c.add(p, |s| &s.events);
        }
        c.add(2, |s| &s.disconnect_callbacks);
        assert_eq!(c.total(|s| &s.events), 6);
        assert_eq!(c.total(|s| &s.disconnect_callbacks), 1);
        assert_eq!(c.total(|s| &s.connections), 0);
        // Each processor's counters sit on a cache line of their own.
        assert_eq!(core::mem::align_of::<super::CounterSlot>(), 64);
    }
}
