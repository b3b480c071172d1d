//! The fabric: hosts and their adapters, the delivery machinery, and the test-facing API
//! (fault injection, counters, live objects, violations).

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use ndkpi_sys::{
    NDK_ADAPTER, NDK_ADAPTER_FLAG_IN_ORDER_DMA_SUPPORTED,
    NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_SUPPORTED, NDK_ADAPTER_INFO, NDK_CONNECTOR, NDK_CQ,
    NDK_OBJECT_HEADER, NDK_QP, NDK_VERSION, NTSTATUS, NdkRoCEv2, PWSK_CLIENT,
    WSK_PROVIDER_NDK_DISPATCH,
};

use crate::conn::{ConnectorState, Ending};
use crate::misuse::{MisusePolicy, Queue, Violation};
use crate::qp::QpStats;
use crate::shell::{self, Entry, ObjId, ShellPtr};
use crate::world::{Body, Call, CloseState, Counters, Delivery, Host, Out, Route, World};
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
}

/// Fabric-wide settings.
#[derive(Clone, Copy, Debug)]
pub struct FabricConfig {
    /// Completion routing.
    pub completion: Completion,
    /// What a detected misuse does.
    pub misuse: MisusePolicy,
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self {
            completion: Completion::Inline,
            misuse: MisusePolicy::Panic,
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
    /// The link fails: both ends learn of it.
    LinkLoss,
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
    for shared in crate::shell::fabrics() {
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
    worker: Mutex<Option<Sender<Delivery>>>,
    violations: Mutex<Vec<Violation>>,
    policy: MisusePolicy,
    client: Box<u64>,
    gate: Mutex<Gate>,
    gate_cv: Condvar,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn client_addr(&self) -> usize {
        std::ptr::from_ref::<u64>(&self.client).addr()
    }

    /// Report a violation per the fabric's policy.
    pub(crate) fn report(&self, v: Violation) {
        match self.policy {
            MisusePolicy::Panic => panic!("softndk: {v}"),
            MisusePolicy::Record => {
                self.violations
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(v);
            }
        }
    }

    /// Run or queue the deliveries collected under the lock (which must be released).
    pub(crate) fn dispatch(self: &Arc<Self>, out: Out) {
        for v in out.violations {
            self.report(v);
        }
        for (route, d) in out.list {
            match route {
                Route::Inline => self.run(&d),
                Route::Thread => {
                    let sender = self
                        .worker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
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
                    self.manual
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_back(d);
                }
            }
        }
    }

    fn run(self: &Arc<Self>, d: &Delivery) {
        let ran = self.world().begin_delivery(d);
        if ran {
            invoke(&d.call);
        }
        let mut out = Out::default();
        self.world().end_delivery(&mut out, d, ran);
        self.idle.notify_all();
        self.dispatch(out);
    }

    /// Test hook: block a post inside its queue when a gate is set for it.
    pub(crate) fn gate_point(&self, qp_addr: usize, queue: Queue) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
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
        let deadline = std::time::Instant::now() + limit;
        let mut world = self.world();
        while world.adapter_busy(adapter) {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            world = self
                .idle
                .wait_timeout(world, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        abi::unregister_client(self.client_addr());
        let world = self.world.get_mut().unwrap_or_else(PoisonError::into_inner);
        for obj in world.objects.values() {
            shell::unregister(obj.shell.addr());
        }
        for obj in world.objects.values() {
            // SAFETY: the registry entries are gone and the fabric (the only owner of the
            // shells) is being dropped, so nothing can reach them any more; each shell is in
            // exactly one object.
            unsafe { obj.shell.free() };
        }
    }
}

/// Call the consumer.
fn invoke(call: &Call) {
    let _scope = CallbackScope::enter();
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
            let ptr = object.map_or(std::ptr::null_mut(), ShellPtr::as_ndk::<NDK_OBJECT_HEADER>);
            // SAFETY: the consumer supplied this create-completion routine and context; the
            // object (or null on failure) is a live shell.
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
            shell,
            ..
        } => {
            // SAFETY: the listener's connect-event routine and context, with a new live
            // connector now owned by the consumer.
            unsafe { f(ctx.0, shell.as_ndk::<NDK_CONNECTOR>()) }
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
    worker: Option<JoinHandle<()>>,
}

impl Fabric {
    /// A fabric with the given settings and no hosts.
    ///
    /// # Panics
    /// If the worker thread cannot be spawned.
    pub fn new(config: FabricConfig) -> Self {
        let (tx, rx) = channel::<Delivery>();
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let mut world = World::new(config);
            world.fabric = weak.clone();
            Shared {
                world: Mutex::new(world),
                idle: Condvar::new(),
                manual: Mutex::new(VecDeque::new()),
                worker: Mutex::new(Some(tx)),
                violations: Mutex::new(Vec::new()),
                policy: config.misuse,
                client: Box::new(0),
                gate: Mutex::new(Gate::default()),
                gate_cv: Condvar::new(),
            }
        });
        abi::register_client(shared.client_addr(), Arc::downgrade(&shared));
        let weak = Arc::downgrade(&shared);
        let worker = std::thread::Builder::new()
            .name("softndk-worker".into())
            .spawn(move || {
                while let Ok(d) = rx.recv() {
                    let Some(shared) = weak.upgrade() else { break };
                    shared.run(&d);
                }
            })
            .expect("spawn softndk worker thread");
        Self {
            shared,
            worker: Some(worker),
        }
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
            .ok_or(ndkpi_sys::STATUS_NOT_SUPPORTED)?;
        // SAFETY: our own WskOpenNdkAdapter, called with our client and a valid out-pointer.
        let status = unsafe { open(self.wsk_client(), version, if_index, &raw mut adapter) };
        if status == ndkpi_sys::STATUS_SUCCESS {
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
        loop {
            let next = self
                .shared
                .manual
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(d) = next else { return n };
            self.shared.run(&d);
            n += 1;
        }
    }

    /// Callbacks queued for [`Fabric::deliver`].
    pub fn queued(&self) -> usize {
        self.shared
            .manual
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Wait (up to `limit`) until no callback is owed anywhere except in the manual queue.
    /// Returns whether the fabric became idle.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut world = self.shared.world();
        loop {
            let manual = self.queued();
            if world.queued <= manual {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            world = self
                .shared
                .idle
                .wait_timeout(world, (deadline - now).min(Duration::from_millis(10)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn entry<T>(&self, ptr: *mut T, kind: ObjectKind) -> Option<Entry> {
        let (shared, entry) = shell::lookup(ptr.addr())?;
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
        let world = self.shared.world();
        let mut found: Vec<_> = world
            .objects
            .iter()
            .filter(|(_, o)| {
                o.kind == ObjectKind::Connector
                    && o.host == host.0
                    && matches!(o.close, CloseState::Open)
            })
            .map(|(id, o)| (*id, o.shell.as_ndk()))
            .collect();
        found.sort_unstable_by_key(|(id, _)| *id);
        found.into_iter().map(|(_, p)| p).collect()
    }

    /// Surprise-remove every adapter of `host`: its connections end, creates fail with
    /// `STATUS_DEVICE_REMOVED`, its listeners stop accepting.
    pub fn remove_adapters(&self, host: HostId) {
        let mut out = Out::default();
        self.shared.world().remove_host(&mut out, host.0);
        self.shared.dispatch(out);
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
        match self.shared.world().objects.get(&entry.id).map(|o| &o.body) {
            Some(Body::Cq(cq)) => Some(cq.entries.len()),
            _ => None,
        }
    }

    /// Violations recorded under [`MisusePolicy::Record`].
    pub fn violations(&self) -> Vec<Violation> {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Hold the next post to `queue` of `qp` inside the provider (with the queue marked busy)
    /// until the returned gate is released, so a test can make two posts overlap
    /// deterministically.
    pub fn hold_next_post(&self, qp: *mut NDK_QP, queue: Queue) -> PostGate {
        let mut gate = self
            .shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        self.shared
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(worker) = self.worker.take() {
            // A consumer callback that panicked on the worker already aborted the process;
            // nothing useful remains to report here.
            let _ = worker.join();
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
        let deadline = std::time::Instant::now() + limit;
        let mut gate = self
            .shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !gate.entered {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            gate = self
                .shared
                .gate_cv
                .wait_timeout(gate, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Let the held post finish.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for PostGate {
    fn drop(&mut self) {
        let mut gate = self
            .shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gate.released = true;
        gate.target = None;
        self.shared.gate_cv.notify_all();
    }
}
