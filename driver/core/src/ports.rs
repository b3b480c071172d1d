//! What the engine needs from its platform (the KMDF shell, or the host platform in tests).

use ndkdisc_abi::{Cause, EventKind, NtStatus};

/// The request's cancellation has begun (its cancel routine has run or will run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

/// A request that can pend: a WDFREQUEST on Windows.
///
/// The engine holds the request while it pends, and completes it exactly once. Cancellation
/// follows WDF's `WdfRequestMarkCancelableEx` / `WdfRequestUnmarkCancelable` rules, which the
/// engine resolves under its lock.
pub trait PendedRequest: Send + 'static {
    /// Identity used to find the request when its cancel routine runs.
    fn token(&self) -> u64;

    /// The output buffer (`METHOD_BUFFERED`: the system buffer, valid at `DISPATCH_LEVEL`).
    fn output(&mut self) -> &mut [u8];

    /// Make the request cancelable. `Err(Cancelled)` if it was already cancelled: the caller must
    /// then complete it with `STATUS_CANCELLED`.
    ///
    /// # Errors
    /// The request was cancelled before it could be made cancelable.
    fn mark_cancelable(&mut self) -> Result<(), Cancelled>;

    /// Make the request not cancelable, to complete it. `Err(Cancelled)` if its cancel routine has
    /// run or will run: the caller must leave it alone (the cancel routine completes it).
    ///
    /// # Errors
    /// Cancellation is in progress.
    fn unmark_cancelable(&mut self) -> Result<(), Cancelled>;

    /// Complete the request with `status`, `information` bytes of output being valid.
    fn complete(self, status: NtStatus, information: usize);
}

/// A lock the engine keeps its state in: a spin lock (raising IRQL to `DISPATCH_LEVEL`) on
/// Windows, so the NDK callbacks can take it.
pub trait Lock<T>: Send + Sync {
    /// Run `f` with the lock held. `f` must not block, allocate, or call into NDK.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// An auto-reset signal (a `SynchronizationEvent` `KEVENT`): set from any IRQL, waited for at
/// `PASSIVE_LEVEL` only. A wait consumes the set and releases one waiter; a set with nobody
/// waiting stays until the next wait.
pub trait Signal: Send + Sync {
    /// Set it.
    fn set(&self);
    /// Wait until it is set. `// IRQL: PASSIVE_LEVEL` (never from a callback).
    fn wait(&self);
}

/// A passive-level mutex (a WDF wait lock): held across a sequence of NDK calls and the waits
/// for their completions, so a second caller waits until the first sequence has ended instead
/// of interleaving with it. Acquired at `PASSIVE_LEVEL` only (never in a callback, never under
/// a [`Lock`]); the holder stays at `PASSIVE_LEVEL` and may wait on a [`Signal`].
pub trait WaitLock: Send + Sync {
    /// Proof of holding it; dropping it releases the lock (at <= `DISPATCH_LEVEL`).
    type Guard<'a>
    where
        Self: 'a;

    /// Wait until nobody holds it, then hold it. Not re-entrant. `// IRQL: PASSIVE_LEVEL`.
    fn acquire(&self) -> Self::Guard<'_>;
}

/// A [`Passive`] work the engine and the platform share: boxed once and counted by a
/// [`kalloc::Arc`], whose constructor fails instead of aborting.
pub type SharedPassive = kalloc::Arc<alloc::boxed::Box<dyn Passive>>;

/// Work to run at `PASSIVE_LEVEL`: the engine's drainer, which a kick runs (a WDF work item's
/// routine).
pub trait Passive: Send + Sync {
    /// Run it.
    fn run(&self);
}

/// An NDK-capable interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterDesc {
    /// Its interface index.
    pub if_index: u32,
    /// One of its addresses.
    pub address: core::net::SocketAddr,
}

/// An NDK callback the engine received, as traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdkCallback {
    /// A request completion (`NDK_FN_REQUEST_COMPLETION` / `NDK_FN_CREATE_COMPLETION`) of
    /// this operation.
    Completion(ndkpi::Op),
    /// An object's close completion.
    Closed(ndkpi::Op),
    /// The connector's `NdkDisconnectEventCallback`.
    Disconnect,
    /// The CQ's notification callback.
    CqNotification,
    /// A listener's `NDK_FN_CONNECT_EVENT_CALLBACK` (an incoming connection request).
    ConnectionRequest,
}

/// What the engine traces (to ETW on Windows, as `TraceLogging` events): the connection
/// lifecycle, every NDK callback, every terminal event, and every IOCTL the engine fails
/// synchronously. Emitted at `<= DISPATCH_LEVEL`, possibly under the engine's locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// A connection was created: by CONNECT (`active`), or for an incoming request.
    ConnectionCreated {
        /// Its id.
        id: u64,
        /// Its interface.
        if_index: u32,
        /// Made by CONNECT (else accepted by a listener).
        active: bool,
    },
    /// An NDK callback for connection or listener `id`.
    NdkCallback {
        /// The connection's or listener's id.
        id: u64,
        /// Which callback.
        callback: NdkCallback,
        /// Its status (success for callbacks that carry none).
        status: NtStatus,
        /// The provider's disconnect reason (NDKPI 2.1), if the callback gave one.
        reason: Option<u32>,
    },
    /// Connection `id`'s terminal event was latched (`ConnectFailed` or `Disconnected`).
    Terminal {
        /// The connection.
        id: u64,
        /// `ConnectFailed` or `Disconnected`.
        kind: EventKind,
        /// How it ended (`Disconnected` only).
        cause: Option<Cause>,
        /// The event's status.
        status: NtStatus,
    },
    /// Connection `id` was released: its `Closed` event was latched.
    ConnectionClosed {
        /// The connection.
        id: u64,
    },
    /// The engine failed an IOCTL before it could pend (bad input, unknown id, quota, ...).
    IoctlFailed {
        /// The control code.
        code: u32,
        /// The status it completed with.
        status: NtStatus,
    },
}

/// Everything the engine needs from its platform.
pub trait Platform: Send + Sync + Sized + 'static {
    /// The pended request type.
    type Request: PendedRequest;
    /// The lock type.
    type Lock<T: Send + 'static>: Lock<T>;
    /// The signal type.
    type Signal: Signal;
    /// The passive-level mutex type.
    type WaitLock: WaitLock;

    /// A new lock. `// IRQL: PASSIVE_LEVEL`.
    fn lock<T: Send + 'static>(&self, value: T) -> Self::Lock<T>;
    /// A new, unset signal, or `None` if it cannot be created (no memory: a `KEVENT` lives in
    /// nonpaged pool). `// IRQL: PASSIVE_LEVEL`.
    fn signal(&self) -> Option<Self::Signal>;
    /// A new, free wait lock, or `None` if it cannot be created (no memory: a WDF wait lock is
    /// a framework object). `// IRQL: PASSIVE_LEVEL`.
    fn wait_lock(&self) -> Option<Self::WaitLock>;
    /// The clock, in 100 ns units.
    fn now(&self) -> u64;
    /// The number of the processor the caller runs on (any small number that differs between
    /// processors running at once: the engine uses it only to spread its counters, so one
    /// that changes under the caller is harmless). `// IRQL: any`; never allocates.
    fn processor(&self) -> usize;
    /// Take the engine's drainer: the one work [`Platform::kick`] runs. Called once, by
    /// [`Engine::new`](crate::Engine::new), before any kick; a platform serves one engine.
    /// `// IRQL: PASSIVE_LEVEL`.
    ///
    /// The engine keeps its own queue of deferred work (a listener's accept work, a cancelled
    /// CONNECT's release), with room reserved per handle; the drainer runs that queue. So the
    /// platform holds one work per engine, never more, and never queues anything itself.
    fn set_drainer(&self, drainer: SharedPassive);
    /// Run the drainer at `PASSIVE_LEVEL` soon. Callable at `DISPATCH_LEVEL`; never allocates.
    /// A kick while one is pending may coalesce with it (`WdfWorkItemEnqueue` semantics), but
    /// every kick is followed by a run of the drainer that starts after it. After the platform
    /// stops deferring (its device is going away) kicks may be ignored.
    fn kick(&self);
    /// The WSK NDK extension.
    fn wsk(&self) -> &ndkpi::Wsk;
    /// The NDK-capable interfaces and their addresses. `// IRQL: PASSIVE_LEVEL`.
    fn adapters(&self) -> alloc::vec::Vec<AdapterDesc>;
    /// `len` bytes of pinned memory with an MDL, for posted buffers. `// IRQL: PASSIVE_LEVEL`.
    fn memory(&self, len: usize) -> Option<alloc::boxed::Box<dyn ndkpi::RegisteredMemory>>;
    /// Record `trace` (ETW on Windows). `// IRQL: <= DISPATCH_LEVEL`, possibly under the
    /// engine's locks: it must not block, allocate, or call the engine. The default drops it.
    fn trace(&self, trace: &Trace) {
        let _ = trace;
    }
}
