//! The fabric: hosts and their adapters, the delivery machinery, and the test-facing API
//! (fault injection, counters, live objects, violations).

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndkpi_sys::{
    NDK_ADAPTER, NDK_ADAPTER_FLAG_IN_ORDER_DMA_SUPPORTED,
    NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_SUPPORTED, NDK_ADAPTER_INFO, NDK_CONNECTOR, NDK_CQ,
    NDK_OBJECT_HEADER, NDK_QP, NDK_VERSION, NTSTATUS, NdkRoCEv2, NtStatus, PWSK_CLIENT,
    WSK_PROVIDER_NDK_DISPATCH,
};

use crate::conn::{ConnectorState, Ending};
use crate::misuse::{MisusePolicy, Queue, Violation};
use crate::object::{self, Entry, ObjId, ObjectPtr};
use crate::qp::QpStats;
use crate::world::{Body, Call, CloseState, Counters, Delivery, Host, Out, Route, Timer, World};
use crate::{ObjectKind, abi};

/// How completions and events reach the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Requests that can finish at once return `STATUS_SUCCESS` with no callback; everything
    /// else is delivered inline.
    Synchronous,
    /// Every request returns `STATUS_PENDING`; its callback runs on the calling thread before
    /// the call returns. Events run on the thread whose action caused them.
    Inline,
    /// Every request returns `STATUS_PENDING`; callbacks run on the fabric's worker thread,
    /// racing with the initiating call's return.
    Thread,
    /// Every request returns `STATUS_PENDING`; callbacks wait until [`Fabric::deliver`].
    Manual,
    /// A seeded mix: some requests finish synchronously, callbacks go inline or to the worker.
    /// The same seed and the same sequence of consumer calls give the same
    /// synchronous-or-pending choices, whatever the callback timing; which thread runs a
    /// given callback may vary with timing.
    Random {
        /// The seed.
        seed: u64,
    },
    /// What an RDMA adapter does, and the default: a seeded mix of synchronous completions
    /// (`STATUS_SUCCESS`, no callback), callbacks made on the calling thread before the call
    /// returns, and callbacks on `threads` provider threads at once — so callbacks for
    /// different objects (and the disconnect callback racing a completion of the same
    /// connection) truly run concurrently, as on a multi-core machine where every CPU
    /// services its own interrupt queue (NDKPI object lifetime requirements, "Consumer-Provider
    /// Interaction": a completion may run before the initiating call returns, on any thread).
    /// The synchronous-or-pending choices follow the seed; which thread runs what does not.
    Hardware {
        /// The seed.
        seed: u64,
        /// Provider threads delivering callbacks (at least 1).
        threads: usize,
    },
}

impl Completion {
    /// The hardware-like mode with as many provider threads as this machine has cores (at
    /// least two, so concurrency exists even on one core).
    pub fn hardware(seed: u64) -> Self {
        Self::Hardware {
            seed,
            threads: default_threads(),
        }
    }

    /// Provider threads this mode delivers on.
    pub(crate) fn threads(self) -> usize {
        match self {
            Self::Hardware { threads, .. } => threads.max(1),
            _ => 1,
        }
    }
}

/// Cores of this machine, at least two.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .max(2)
}

/// How long the provider waits before it gives up, as an adapter's firmware and connection
/// manager do. Scaled down from hardware (seconds) so tests stay fast; each can be set per
/// fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `NdkDisconnect` completes with `STATUS_IO_TIMEOUT` when the peer does not answer the
    /// disconnect (by its own `NdkDisconnect` or by closing its connector) within this time
    /// (`NetworkDirect` disconnect scheme; `NDK_FN_DISCONNECT`: "`STATUS_IO_TIMEOUT`").
    pub disconnect_timeout: Duration,
    /// A send the peer does not take (the peer is gone, its QP is dead, or the link is down)
    /// fails after this long with `STATUS_IO_TIMEOUT` and a provider error code; the QP goes to
    /// the error state and the provider flushes every other request on it (transport retry
    /// exceeded on RoCE/InfiniBand; a TCP retransmission timeout on iWARP).
    pub retry_timeout: Duration,
    /// `NdkConnect` / `NdkAccept` fail with `STATUS_IO_TIMEOUT` when the other side does not
    /// accept, reject or complete within this long (`NDK_FN_CONNECT`, `NDK_FN_ACCEPT`:
    /// "`STATUS_IO_TIMEOUT`").
    pub handshake_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            disconnect_timeout: Duration::from_secs(2),
            retry_timeout: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(2),
        }
    }
}

/// Behaviour kinder than an RDMA adapter's, each off by default. A test that turns one on
/// must say why at the use: a result that holds only with one of these is not a result about
/// hardware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, each documented"
)]
pub struct Kindness {
    /// `NdkDisconnect` completes at once with success and flushes, without waiting for the
    /// peer's answer.
    pub instant_disconnect: bool,
    /// `NdkFlush` completes every flushed request before it returns, and leaves the QP usable.
    pub synchronous_flush: bool,
    /// Event callbacks (disconnect, connect event, CQ notification) stop as soon as the
    /// object's close starts, instead of at its close completion.
    pub events_stop_at_close: bool,
    /// Sends to a peer that went away wait for ever instead of failing after the retry
    /// timeout.
    pub sends_to_dead_peer_wait: bool,
    /// Error completions carry clean fields (`Type` = the operation, `BytesTransferred` = 0,
    /// no provider error code) instead of undefined ones.
    pub clean_error_completions: bool,
}

impl Kindness {
    /// Every kindness at once: softndk as it behaved before it followed hardware.
    pub const ALL: Self = Self {
        instant_disconnect: true,
        synchronous_flush: true,
        events_stop_at_close: true,
        sends_to_dead_peer_wait: true,
        clean_error_completions: true,
    };
}

/// Fabric-wide settings. The default is hardware-like: [`Completion::hardware`], the default
/// [`Timing`], no [`Kindness`].
#[derive(Clone, Copy, Debug)]
pub struct FabricConfig {
    /// Completion routing.
    pub completion: Completion,
    /// What a detected misuse does.
    pub misuse: MisusePolicy,
    /// The provider's timeouts.
    pub timing: Timing,
    /// Kinder-than-hardware switches (all off by default).
    pub kindness: Kindness,
    /// Hold the provider's connection lock while calling a disconnect callback, and take it
    /// in the connector functions (`NdkGetLocalAddress`, `NdkGetPeerAddress`, `NdkDisconnect`,
    /// `NdkReject`), as a provider may (NDKPI lets callbacks run at `DISPATCH_LEVEL` under the
    /// provider's own locks). A consumer that calls one of those functions while holding the
    /// spin lock its disconnect callback takes deadlocks against it. On by default.
    pub provider_lock: bool,
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self {
            completion: Completion::hardware(0),
            misuse: MisusePolicy::Panic,
            timing: Timing::default(),
            kindness: Kindness::default(),
            provider_lock: true,
        }
    }
}

impl FabricConfig {
    /// The default settings with another completion routing.
    pub fn with_completion(completion: Completion) -> Self {
        Self {
            completion,
            ..Self::default()
        }
    }
}

/// Deliberate provider bugs, so a consumer can be shown to survive them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Fire the disconnect callback twice for one connection.
    pub duplicate_disconnect_callback: bool,
    /// Flush the QP when indicating a peer disconnect (NDK says providers should not).
    pub flush_on_peer_disconnect: bool,
}

/// One simulated host: an interface index, its addresses, and its adapter's capabilities.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The `NET_IFINDEX` passed to `WskOpenNdkAdapter`.
    pub if_index: u32,
    /// The host's IP addresses (IPv4 and/or IPv6).
    pub addresses: Vec<IpAddr>,
    /// The highest NDKPI version the adapter speaks (1.1, 1.2, 2.0 or 2.1).
    pub max_version: NDK_VERSION,
    /// What `NdkQueryAdapterInfo` reports (`Version` is filled per adapter).
    pub info: NDK_ADAPTER_INFO,
    /// Deliberate provider bugs.
    pub misbehaviour: Misbehaviour,
}

impl HostConfig {
    /// A host with one interface, NDKPI 2.1 and the default limits.
    pub fn new(if_index: u32, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            if_index,
            addresses: addresses.into_iter().collect(),
            max_version: NDK_VERSION { Major: 2, Minor: 1 },
            info: default_info(),
            misbehaviour: Misbehaviour::default(),
        }
    }

    /// Set the highest NDKPI version.
    #[must_use]
    pub fn max_version(mut self, major: u16, minor: u16) -> Self {
        self.max_version = NDK_VERSION {
            Major: major,
            Minor: minor,
        };
        self
    }

    /// Set deliberate provider bugs.
    #[must_use]
    pub fn misbehaviour(mut self, misbehaviour: Misbehaviour) -> Self {
        self.misbehaviour = misbehaviour;
        self
    }
}

/// The limits a softndk adapter reports by default.
pub fn default_info() -> NDK_ADAPTER_INFO {
    NDK_ADAPTER_INFO {
        Version: NDK_VERSION::default(),
        VendorId: 0,
        DeviceId: 0x50F7,
        MaxRegistrationSize: 1 << 30,
        MaxWindowSize: 1 << 30,
        FRMRPageCount: 256,
        MaxInitiatorRequestSge: 4,
        MaxReceiveRequestSge: 4,
        MaxReadRequestSge: 4,
        MaxTransferLength: 1 << 20,
        MaxInlineDataSize: 256,
        MaxInboundReadLimit: 16,
        MaxOutboundReadLimit: 16,
        MaxReceiveQueueDepth: 1024,
        MaxInitiatorQueueDepth: 1024,
        MaxSrqDepth: 0,
        MaxCqDepth: 4096,
        LargeRequestThreshold: 64 * 1024,
        MaxCallerData: 56,
        MaxCalleeData: 148,
        AdapterFlags: NDK_ADAPTER_FLAG_IN_ORDER_DMA_SUPPORTED
            | NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_SUPPORTED,
        RdmaTechnology: NdkRoCEv2,
    }
}

/// A host added to a fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(pub(crate) usize);

/// A fault to inject on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The peer disconnects gracefully (at any point: before the connect completes, during
    /// accept, or established).
    PeerDisconnect,
    /// The peer resets the connection.
    PeerReset,
    /// The link fails. As on hardware, neither end is told: an end notices only when a send
    /// it posted (now or later) is not acknowledged within the retry timeout — the send
    /// fails, the provider flushes the QP and makes the disconnect callback (reason
    /// [`crate::reason::LINK_DOWN`]). An idle end never notices; its `NdkDisconnect` times out.
    LinkLoss,
    /// The link fails and both ends are told at once through their disconnect callbacks —
    /// kinder than hardware (a test using it must say why).
    LinkLossNoticedAtOnce,
}

/// A CQ-level fault ([`Fabric::inject_cq_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqError {
    /// The CQ overran: the notification reports `STATUS_BUFFER_OVERFLOW`; the CQ and every QP
    /// using it are dead and complete nothing more (`NDK_FN_CQ_NOTIFICATION_CALLBACK`).
    Overrun,
    /// A fatal adapter error: the notification reports `STATUS_INTERNAL_ERROR`; the CQ and
    /// every QP using it are dead (`NDK_FN_CQ_NOTIFICATION_CALLBACK`).
    Fatal,
}

/// What `Fabric::connector` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectorInfo {
    /// Handshake / connection state.
    pub state: ConnectorState,
    /// How the connection ended, if it did.
    pub ending: Option<Ending>,
    /// Disconnect callbacks made for this connector.
    pub disconnect_callbacks: u32,
}

thread_local! {
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// A diagnostic for a consumer stuck waiting: every object of every live fabric that is being
/// closed or still owed a callback, with what its close waits for.
pub fn describe_stuck() -> String {
    let mut text = String::new();
    for shared in crate::object::fabrics() {
        let world = shared.world();
        for line in world.stuck() {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// True while the current thread is inside a softndk callback — the emulator's
/// `KeGetCurrentIrql() == DISPATCH_LEVEL`.
pub fn in_provider_callback() -> bool {
    CALLBACK_DEPTH.with(|d| d.get() > 0)
}

struct CallbackScope;

impl CallbackScope {
    fn enter() -> Self {
        CALLBACK_DEPTH.with(|d| d.set(d.get() + 1));
        Self
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CALLBACK_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[derive(Default)]
struct Gate {
    target: Option<(usize, Queue)>,
    entered: bool,
    released: bool,
}

pub(crate) struct Shared {
    world: Mutex<World>,
    idle: Condvar,
    manual: Mutex<VecDeque<Delivery>>,
    workers: Mutex<Vec<Sender<Delivery>>>,
    timers: Mutex<Timers>,
    timers_cv: Condvar,
    violations: Mutex<Vec<Violation>>,
    policy: MisusePolicy,
    client: Box<u64>,
    gate: Mutex<Gate>,
    gate_cv: Condvar,
    /// The provider's connection lock ([`FabricConfig::provider_lock`]).
    conn_lock: ProviderLock,
    /// Told of adapter removals ([`Fabric::on_adapter_removal`]).
    removal_hooks: Mutex<Vec<RemovalHook>>,
    provider_lock: bool,
}

/// A consumer's notice of an adapter removal.
type RemovalHook = Arc<dyn Fn(u32) + Send + Sync>;

/// A lock the provider holds across a disconnect callback: re-entrant on its own thread (the
/// callback may call the provider), exclusive across threads.
#[derive(Default)]
pub(crate) struct ProviderLock {
    owner: Mutex<(Option<std::thread::ThreadId>, u32)>,
    free: Condvar,
}

/// Holds the [`ProviderLock`] until dropped.
pub(crate) struct ProviderGuard<'a>(Option<&'a ProviderLock>);

impl ProviderLock {
    fn enter(&self) -> ProviderGuard<'_> {
        let me = std::thread::current().id();
        let mut o = lock(&self.owner);
        while o.0.is_some_and(|t| t != me) {
            o = self.free.wait(o).unwrap_or_else(PoisonError::into_inner);
        }
        o.0 = Some(me);
        o.1 += 1;
        ProviderGuard(Some(self))
    }
}

impl Drop for ProviderGuard<'_> {
    fn drop(&mut self) {
        if let Some(provider) = self.0 {
            let mut o = lock(&provider.owner);
            o.1 -= 1;
            if o.1 == 0 {
                o.0 = None;
                provider.free.notify_all();
            }
        }
    }
}

impl Shared {
    /// Take the provider's connection lock, if this fabric uses one.
    pub(crate) fn connection_lock(&self) -> ProviderGuard<'_> {
        if self.provider_lock {
            self.conn_lock.enter()
        } else {
            ProviderGuard(None)
        }
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub(crate) fn client_addr(&self) -> usize {
        std::ptr::from_ref::<u64>(&self.client).addr()
    }

    /// Report a violation per the fabric's policy.
    pub(crate) fn report(&self, v: Violation) {
        match self.policy {
            MisusePolicy::Panic => panic!("softndk: {v}"),
            MisusePolicy::Record => {
                lock(&self.violations).push(v);
            }
        }
    }

    /// Run or queue the deliveries collected under the lock (which must be released).
    pub(crate) fn dispatch(self: &Arc<Self>, out: Out) {
        self.arm(out.timers);
        for v in out.violations {
            self.report(v);
        }
        for (route, d) in out.list {
            match route {
                Route::Inline => self.run(&d),
                Route::Thread(i) => {
                    let sender = {
                        let workers = lock(&self.workers);
                        workers.get(i % workers.len().max(1)).cloned()
                    };
                    match sender {
                        Some(tx) => {
                            if let Err(e) = tx.send(d) {
                                self.run(&e.0);
                            }
                        }
                        None => self.run(&d),
                    }
                }
                Route::Manual => {
                    lock(&self.manual).push_back(d);
                }
            }
        }
    }

    fn run(self: &Arc<Self>, d: &Delivery) {
        let _owner = crate::alloc_check::provider_scope();
        let mut out = Out::default();
        if let Call::Provider(action) = d.call {
            // The provider's own deferred work (an initiated flush): no consumer callback.
            let mut world = self.world();
            world.run_action(&mut out, d.target, action);
            world.end_delivery(&mut out, d, true);
        } else {
            let ran = self.world().begin_delivery(d);
            if ran {
                // A provider may hold its own lock while it indicates a disconnect.
                let _held =
                    matches!(d.call, Call::Disconnect { .. }).then(|| self.connection_lock());
                invoke(&d.call);
            }
            self.world().end_delivery(&mut out, d, ran);
        }
        self.idle.notify_all();
        self.dispatch(out);
    }

    /// Arm the timers collected in `out`.
    fn arm(&self, timers: Vec<(Duration, Timer)>) {
        if timers.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut t = lock(&self.timers);
        let earliest = t.heap.peek().map(|std::cmp::Reverse((at, _, _))| *at);
        let mut sooner = false;
        for (after, timer) in timers {
            t.seq += 1;
            let seq = t.seq;
            let at = now + after;
            sooner |= earliest.is_none_or(|e| at < e);
            t.heap.push(std::cmp::Reverse((at, seq, TimerSlot(timer))));
        }
        // The timer thread sleeps until the earliest timer: wake it only when that changed.
        if sooner {
            self.timers_cv.notify_all();
        }
    }

    /// A timer expired: apply it.
    fn fire(self: &Arc<Self>, timer: Timer) {
        let mut out = Out::default();
        self.world().fire(&mut out, timer);
        self.idle.notify_all();
        self.dispatch(out);
    }

    /// Test hook: block a post inside its queue when a gate is set for it.
    pub(crate) fn gate_point(&self, qp_addr: usize, queue: Queue) {
        let mut gate = lock(&self.gate);
        if gate.target != Some((qp_addr, queue)) || gate.entered {
            return;
        }
        gate.entered = true;
        self.gate_cv.notify_all();
        while !gate.released {
            gate = self
                .gate_cv
                .wait(gate)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Wait until no delivery for `adapter`'s objects is owed and no close is in progress,
    /// at most `limit`. Returns whether it got there.
    pub(crate) fn wait_adapter_quiet(&self, adapter: ObjId, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        wait_until(deadline, &self.idle, self.world(), Duration::MAX, |world| {
            !world.adapter_busy(adapter)
        })
    }
}

/// Lock `mutex`, also when a panicking thread poisoned it: the fabric's state stays usable
/// (and inspectable) by the other threads of a test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wait on `cv` until `ready` holds for the value `guard` guards, at most until `deadline`,
/// waking at least every `slice` to look again (for state `cv` is not signalled for). Returns
/// whether `ready` held.
fn wait_until<T>(
    deadline: Instant,
    cv: &Condvar,
    mut guard: MutexGuard<'_, T>,
    slice: Duration,
    mut ready: impl FnMut(&mut T) -> bool,
) -> bool {
    while !ready(&mut guard) {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        guard = cv
            .wait_timeout(guard, (deadline - now).min(slice))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

impl Drop for Shared {
    fn drop(&mut self) {
        abi::unregister_client(self.client_addr());
        let world = self.world.get_mut().unwrap_or_else(PoisonError::into_inner);
        for obj in world.objects.values() {
            object::unregister(obj.block.addr());
        }
        for obj in world.objects.values() {
            // SAFETY: the registry entries are gone and the fabric (the only owner of the
            // object blocks) is being dropped, so nothing can reach them any more; each block
            // belongs to exactly one object.
            unsafe { obj.block.free() };
        }
    }
}

/// Call the consumer.
fn invoke(call: &Call) {
    let _scope = CallbackScope::enter();
    let _owner = crate::alloc_check::consumer_scope();
    match *call {
        Call::Request {
            f: Some(f),
            ctx,
            status,
        } => {
            // SAFETY: the consumer supplied this completion routine and context for this
            // request; NDK calls it exactly once with the request's status.
            unsafe { f(ctx.0, status) }
        }
        Call::Create {
            f: Some(f),
            ctx,
            status,
            object,
        } => {
            let ptr = object.map_or(std::ptr::null_mut(), ObjectPtr::as_ndk::<NDK_OBJECT_HEADER>);
            // SAFETY: the consumer supplied this create-completion routine and context; the
            // object (or null on failure) is a live object block.
            unsafe { f(ctx.0, status, ptr) }
        }
        Call::Close { f: Some(f), ctx } => {
            // SAFETY: the consumer supplied this close-completion routine and context; this
            // is the object's last callback.
            unsafe { f(ctx.0) }
        }
        Call::ConnectEvent {
            f: Some(f),
            ctx,
            block,
            ..
        } => {
            // SAFETY: the listener's connect-event routine and context, with a new live
            // connector now owned by the consumer.
            unsafe { f(ctx.0, block.as_ndk::<NDK_CONNECTOR>()) }
        }
        Call::Disconnect { cb, reason } => match cb {
            // The consumer's event path must not allocate (checked by `alloc_check`).
            crate::world::DisconnectCb::Plain(Some(f), ctx) => {
                let _scope = crate::alloc_check::forbid();
                // SAFETY: the disconnect routine and context registered by CompleteConnect or
                // Accept for this connector.
                unsafe { f(ctx.0) }
            }
            crate::world::DisconnectCb::Ex(Some(f), ctx) => {
                let _scope = crate::alloc_check::forbid();
                // SAFETY: the Ex disconnect routine and context registered by
                // CompleteConnectEx or AcceptEx for this connector.
                unsafe { f(ctx.0, reason) }
            }
            _ => {}
        },
        Call::CqNotify {
            f: Some(f),
            ctx,
            status,
        } => {
            // SAFETY: the CQ's notification routine and context from NdkCreateCq.
            unsafe { f(ctx.0, status) }
        }
        _ => {}
    }
}

/// A software RDMA fabric: hosts, their NDK adapters, and the wire between them.
///
/// Dropping the fabric frees every object's memory: the consumer must not use any pointer it
/// got from the fabric afterwards.
pub struct Fabric {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Armed timers, soonest first.
#[derive(Default)]
struct Timers {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64, TimerSlot)>>,
    seq: u64,
    stop: bool,
}

/// A timer in the heap (ordered by deadline and arming order only).
#[derive(Clone, Copy, Debug)]
struct TimerSlot(Timer);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// The provider's clock: fires each armed timer at its deadline, until the fabric is dropped.
fn timer_thread(weak: &Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let due = {
            let mut t = lock(&shared.timers);
            loop {
                if t.stop {
                    return;
                }
                let now = Instant::now();
                match t.heap.peek() {
                    Some(std::cmp::Reverse((at, _, _))) if *at <= now => {
                        break t.heap.pop().map(|std::cmp::Reverse((_, _, slot))| slot.0);
                    }
                    Some(std::cmp::Reverse((at, _, _))) => {
                        let wait = *at - now;
                        t = shared
                            .timers_cv
                            .wait_timeout(t, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    None => {
                        // Wake now and then so a dropped fabric ends this thread.
                        t = shared
                            .timers_cv
                            .wait_timeout(t, Duration::from_millis(200))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        break None;
                    }
                }
            }
        };
        if let Some(timer) = due {
            shared.fire(timer);
        }
    }
}

impl Fabric {
    /// A fabric with the given settings and no hosts.
    ///
    /// # Panics
    /// If the worker thread cannot be spawned.
    pub fn new(config: FabricConfig) -> Self {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..config.completion.threads() {
            let (tx, rx) = channel::<Delivery>();
            senders.push(tx);
            receivers.push(rx);
        }
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let mut world = World::new(config);
            world.fabric = weak.clone();
            Shared {
                world: Mutex::new(world),
                idle: Condvar::new(),
                manual: Mutex::new(VecDeque::new()),
                workers: Mutex::new(senders),
                timers: Mutex::new(Timers::default()),
                timers_cv: Condvar::new(),
                violations: Mutex::new(Vec::new()),
                policy: config.misuse,
                client: Box::new(0),
                gate: Mutex::new(Gate::default()),
                gate_cv: Condvar::new(),
                conn_lock: ProviderLock::default(),
                removal_hooks: Mutex::new(Vec::new()),
                provider_lock: config.provider_lock,
            }
        });
        abi::register_client(shared.client_addr(), Arc::downgrade(&shared));
        let mut threads = Vec::new();
        for (i, rx) in receivers.into_iter().enumerate() {
            let weak = Arc::downgrade(&shared);
            let worker = std::thread::Builder::new()
                .name(format!("softndk-worker-{i}"))
                .spawn(move || {
                    let _owner = crate::alloc_check::provider_scope();
                    while let Ok(d) = rx.recv() {
                        let Some(shared) = weak.upgrade() else { break };
                        shared.run(&d);
                    }
                })
                .expect("spawn softndk worker thread");
            threads.push(worker);
        }
        let weak = Arc::downgrade(&shared);
        let timer = std::thread::Builder::new()
            .name("softndk-timer".into())
            .spawn(move || {
                let _owner = crate::alloc_check::provider_scope();
                timer_thread(&weak);
            })
            .expect("spawn softndk timer thread");
        threads.push(timer);
        Self { shared, threads }
    }

    /// Add a host.
    pub fn add_host(&self, config: HostConfig) -> HostId {
        let mut world = self.shared.world();
        world.hosts.push(Host {
            config,
            removed: false,
        });
        HostId(world.hosts.len() - 1)
    }

    /// The `PWSK_CLIENT` to pass to [`Fabric::wsk_dispatch`]'s functions.
    pub fn wsk_client(&self) -> PWSK_CLIENT {
        std::ptr::from_ref::<u64>(&self.shared.client)
            .cast_mut()
            .cast()
    }

    /// The WSK NDK dispatch, as `WskControlClient(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH)`
    /// returns it on Windows.
    pub fn wsk_dispatch(&self) -> &'static WSK_PROVIDER_NDK_DISPATCH {
        &abi::WSK_NDK_DISPATCH
    }

    /// Open an adapter through the WSK NDK dispatch (`WskOpenNdkAdapter`).
    ///
    /// # Errors
    /// The NTSTATUS `WskOpenNdkAdapter` returned.
    pub fn open_adapter(
        &self,
        if_index: u32,
        version: NDK_VERSION,
    ) -> Result<*mut NDK_ADAPTER, NTSTATUS> {
        let mut adapter = std::ptr::null_mut();
        let open = self
            .wsk_dispatch()
            .WskOpenNdkAdapter
            .ok_or(NtStatus::NOT_SUPPORTED)?;
        // SAFETY: our own WskOpenNdkAdapter, called with our client and a valid out-pointer.
        let status = unsafe { open(self.wsk_client(), version, if_index, &raw mut adapter) };
        if status == NtStatus::SUCCESS {
            Ok(adapter)
        } else {
            Err(status)
        }
    }

    /// Close an adapter through the WSK NDK dispatch (`WskCloseNdkAdapter`). The pointer is
    /// validated through the registry before anything reads it.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the pointer is only looked up, never dereferenced unvalidated"
    )]
    pub fn close_adapter(&self, adapter: *mut NDK_ADAPTER) {
        if let Some(close) = self.wsk_dispatch().WskCloseNdkAdapter {
            // SAFETY: our own WskCloseNdkAdapter; it validates the adapter pointer.
            unsafe { close(self.wsk_client(), adapter) };
        }
    }

    /// Run every queued callback (for [`Completion::Manual`]), including those queued while
    /// running; returns how many ran.
    pub fn deliver(&self) -> usize {
        let mut n = 0;
        while self.deliver_one() {
            n += 1;
        }
        n
    }

    /// Run the oldest queued callback or provider work (for [`Completion::Manual`]); returns
    /// whether there was one. What it queues in turn waits for the next call.
    pub fn deliver_one(&self) -> bool {
        let next = lock(&self.shared.manual).pop_front();
        match next {
            Some(d) => {
                self.shared.run(&d);
                true
            }
            None => false,
        }
    }

    /// Callbacks queued for [`Fabric::deliver`].
    pub fn queued(&self) -> usize {
        lock(&self.shared.manual).len()
    }

    /// Wait (up to `limit`) until no callback is owed anywhere except in the manual queue.
    /// Returns whether the fabric became idle.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let slice = Duration::from_millis(10);
        wait_until(
            deadline,
            &self.shared.idle,
            self.shared.world(),
            slice,
            |world| world.queued <= self.queued(),
        )
    }

    fn entry<T>(&self, ptr: *mut T, kind: ObjectKind) -> Option<Entry> {
        let (shared, entry) = object::lookup(ptr.addr())?;
        (Arc::ptr_eq(&shared, &self.shared) && entry.kind == kind).then_some(entry)
    }

    /// Inject a fault on the connection of `connector`. Returns false if the connector is
    /// not (or no longer) part of a connection or handshake.
    pub fn inject(&self, connector: *mut NDK_CONNECTOR, fault: Fault) -> bool {
        let Some(entry) = self.entry(connector, ObjectKind::Connector) else {
            return false;
        };
        let mut out = Out::default();
        let done = self.shared.world().inject(&mut out, entry.id, fault);
        self.shared.dispatch(out);
        done
    }

    /// The live (not closed) connectors of `host`, oldest first: how a test reaches the
    /// connectors a consumer created, to [`Fabric::inject`] faults or inspect them.
    pub fn connectors(&self, host: HostId) -> Vec<*mut NDK_CONNECTOR> {
        self.live_of(host, ObjectKind::Connector)
    }

    /// The live connector of `host` whose local and peer addresses (`NdkGetLocalAddress`,
    /// `NdkGetPeerAddress`) are `local` and `peer`: how a test reaches the connector behind a
    /// consumer's connection from the addresses the consumer reports, to [`Fabric::inject`] a
    /// fault on it. (Connections accepted by one listener share its local address; the pair
    /// names one connection.)
    pub fn connector_between(
        &self,
        host: HostId,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<*mut NDK_CONNECTOR> {
        let world = self.shared.world();
        // The oldest match (the table iterates oldest first).
        world
            .objects
            .iter()
            .find(|&(id, o)| {
                o.kind == ObjectKind::Connector
                    && o.host == host.0
                    && matches!(o.close, CloseState::Open)
                    && world.local_address(id) == Some(local)
                    && world.peer_address(id) == Some(peer)
            })
            .map(|(_, o)| o.block.as_ndk())
    }

    /// Kill a CQ as an adapter does on overrun or a fatal error: its armed notification (or
    /// the next arm) reports `STATUS_BUFFER_OVERFLOW` / `STATUS_INTERNAL_ERROR`, and it and every
    /// QP using it complete nothing more. Returns false if `cq` is not a live CQ of this fabric.
    pub fn inject_cq_error(&self, cq: *mut NDK_CQ, error: CqError) -> bool {
        let Some(entry) = self.entry(cq, ObjectKind::Cq) else {
            return false;
        };
        let status = match error {
            CqError::Overrun => NtStatus::BUFFER_OVERFLOW,
            CqError::Fatal => NtStatus::INTERNAL_ERROR,
        };
        let mut out = Out::default();
        self.shared.world().cq_failed(&mut out, entry.id, status);
        self.shared.dispatch(out);
        true
    }

    /// The CQ that `connector`'s QP reports its receives to (the QP bound by its connect or
    /// accept), if it has a live one: how a test reaches a consumer's CQ to
    /// [`Fabric::inject_cq_error`] on it.
    pub fn receive_cq_of(&self, connector: *mut NDK_CONNECTOR) -> Option<*mut NDK_CQ> {
        let entry = self.entry(connector, ObjectKind::Connector)?;
        let world = self.shared.world();
        let qp = world.conn(entry.id)?.qp?;
        let cq = world.qp(qp)?.rcq;
        world
            .objects
            .get(cq)
            .filter(|o| o.kind == ObjectKind::Cq && matches!(o.close, CloseState::Open))
            .map(|o| o.block.as_ndk())
    }

    /// The live (not closed) CQs of `host`, oldest first.
    pub fn cqs(&self, host: HostId) -> Vec<*mut NDK_CQ> {
        self.live_of(host, ObjectKind::Cq)
    }

    /// The live (not closed) QPs of `host`, oldest first.
    pub fn qps(&self, host: HostId) -> Vec<*mut NDK_QP> {
        self.live_of(host, ObjectKind::Qp)
    }

    fn live_of<T>(&self, host: HostId, kind: ObjectKind) -> Vec<*mut T> {
        let world = self.shared.world();
        // Oldest first: the table's order.
        world
            .objects
            .values()
            .filter(|o| o.kind == kind && o.host == host.0 && matches!(o.close, CloseState::Open))
            .map(|o| o.block.as_ndk())
            .collect()
    }

    /// Remove every adapter of `host`, as when NDK is disabled on it or the NIC goes away
    /// ("Enabling and Disabling NDK Functionality": the `NetEventNDKDisable` plug-and-play event makes
    /// NDIS and the upper layers close the NDK adapters opened over it). First opens and creates
    /// fail with `STATUS_DEVICE_REMOVED`; then every hook registered with
    /// [`Fabric::on_adapter_removal`] is called with the host's interface index (the consumer's
    /// notice, on the calling thread, at `PASSIVE_LEVEL`), so a consumer can end and close what
    /// it has there; then what is still connected through the host ends — the local end's
    /// callback carries [`crate::reason::ADAPTER_REMOVED`], a remote peer's
    /// [`crate::reason::RESET`] — and its listeners stop accepting.
    pub fn remove_adapters(&self, host: HostId) {
        let if_index = self.shared.world().mark_host_removed(host.0);
        if let Some(if_index) = if_index {
            let hooks = lock(&self.shared.removal_hooks).clone();
            for hook in hooks {
                hook(if_index);
            }
        }
        let mut out = Out::default();
        self.shared.world().remove_host(&mut out, host.0);
        self.shared.dispatch(out);
    }

    /// Be told when an adapter goes away ([`Fabric::remove_adapters`]): `hook` receives the
    /// interface index. How an NDK consumer learns of it on Windows is the platform's business
    /// (a plug-and-play or IP-interface notification); this is that notice for a consumer on softndk.
    pub fn on_adapter_removal(&self, hook: impl Fn(u32) + Send + Sync + 'static) {
        lock(&self.shared.removal_hooks).push(Arc::new(hook));
    }

    /// Make the next `count` creates of `kind` on `host` fail with
    /// `STATUS_INSUFFICIENT_RESOURCES` (inline or through the completion, per the mode).
    pub fn fail_creates(&self, host: HostId, kind: ObjectKind, count: u32) {
        self.shared
            .world()
            .create_failures
            .push((host.0, kind, count));
    }

    /// Change a host's deliberate bugs.
    pub fn set_misbehaviour(&self, host: HostId, misbehaviour: Misbehaviour) {
        if let Some(h) = self.shared.world().hosts.get_mut(host.0) {
            h.config.misbehaviour = misbehaviour;
        }
    }

    /// Fabric-wide counters.
    pub fn stats(&self) -> Counters {
        self.shared.world().counters
    }

    /// Objects not yet closed (adapters included) plus LAMs not yet released.
    pub fn live_objects(&self) -> usize {
        self.live_by_kind().values().sum()
    }

    /// Live objects by kind; LAMs are counted under [`ObjectKind::Adapter`]'s neighbour key
    /// `None`.
    pub fn live_by_kind(&self) -> BTreeMap<Option<ObjectKind>, usize> {
        let world = self.shared.world();
        let mut map = BTreeMap::new();
        for obj in world.objects.values() {
            if !matches!(obj.close, CloseState::Closed) {
                *map.entry(Some(obj.kind)).or_insert(0) += 1;
            }
            if let Body::Adapter { lams, .. } = &obj.body
                && !lams.is_empty()
            {
                *map.entry(None).or_insert(0) += lams.len();
            }
        }
        map
    }

    /// Counters and queue depths of a QP.
    pub fn qp_stats(&self, qp: *mut NDK_QP) -> Option<QpStats> {
        let entry = self.entry(qp, ObjectKind::Qp)?;
        self.shared
            .world()
            .qp(entry.id)
            .map(crate::qp::Qp::snapshot)
    }

    /// State of a connector.
    pub fn connector(&self, connector: *mut NDK_CONNECTOR) -> Option<ConnectorInfo> {
        let entry = self.entry(connector, ObjectKind::Connector)?;
        self.shared.world().conn(entry.id).map(|c| ConnectorInfo {
            state: c.state,
            ending: c.ending,
            disconnect_callbacks: c.disconnect_callbacks,
        })
    }

    /// Completions waiting in a CQ.
    pub fn cq_len(&self, cq: *mut NDK_CQ) -> Option<usize> {
        let entry = self.entry(cq, ObjectKind::Cq)?;
        match self.shared.world().objects.get(entry.id).map(|o| &o.body) {
            Some(Body::Cq(cq)) => Some(cq.entries.len()),
            _ => None,
        }
    }

    /// Violations recorded under [`MisusePolicy::Record`].
    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.shared.violations).clone()
    }

    /// Hold the next post to `queue` of `qp` inside the provider (with the queue marked busy)
    /// until the returned gate is released, so a test can make two posts overlap
    /// deterministically.
    pub fn hold_next_post(&self, qp: *mut NDK_QP, queue: Queue) -> PostGate {
        let mut gate = lock(&self.shared.gate);
        *gate = Gate {
            target: Some((qp.addr(), queue)),
            entered: false,
            released: false,
        };
        PostGate {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        lock(&self.shared.workers).clear();
        {
            let mut t = lock(&self.shared.timers);
            t.stop = true;
            self.shared.timers_cv.notify_all();
        }
        for thread in self.threads.drain(..) {
            // A consumer callback that panicked on a worker already aborted the process;
            // nothing useful remains to report here. A thread dropping the last fabric
            // reference (inside a callback) must not join itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A post held inside the provider by [`Fabric::hold_next_post`].
pub struct PostGate {
    shared: Arc<Shared>,
}

impl PostGate {
    /// Wait (up to `limit`) until the held post is inside the provider.
    pub fn wait_entered(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let gate = lock(&self.shared.gate);
        wait_until(
            deadline,
            &self.shared.gate_cv,
            gate,
            Duration::MAX,
            |gate| gate.entered,
        )
    }

    /// Let the held post finish.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for PostGate {
    fn drop(&mut self) {
        let mut gate = lock(&self.shared.gate);
        gate.released = true;
        gate.target = None;
        self.shared.gate_cv.notify_all();
    }
}
