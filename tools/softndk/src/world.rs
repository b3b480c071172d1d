//! The provider's state, guarded by one lock (`Shared::world`), and the rules that do not
//! depend on the kind of object: creation, close ordering, deliveries, CQs.
//!
//! Nothing here calls the consumer. Every consumer callback becomes a [`Delivery`] collected in
//! an [`Out`] and run by `Shared::dispatch` after the lock is released, so a callback can call
//! straight back into the provider.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;

use ndkpi_sys::{
    NDK_ADAPTER_INFO, NDK_CQ_NOTIFY_ANY, NDK_CQ_NOTIFY_ERRORS, NDK_CQ_NOTIFY_SOLICITED,
    NDK_FN_CLOSE_COMPLETION, NDK_FN_CONNECT_EVENT_CALLBACK, NDK_FN_CQ_NOTIFICATION_CALLBACK,
    NDK_FN_CREATE_COMPLETION, NDK_FN_DISCONNECT_EVENT_CALLBACK,
    NDK_FN_DISCONNECT_EVENT_CALLBACK_EX, NDK_FN_REQUEST_COMPLETION, NDK_VERSION, NTSTATUS,
    NtStatus, PVOID,
};

use crate::ObjectKind;
use crate::conn::{Conn, Listener};
use crate::fabric::{Completion, FabricConfig, HostConfig, Misbehaviour, Shared};
use crate::mem::BytePtr;
use crate::misuse::Violation;
use crate::object::{self, Entry, ObjId, ObjectPtr};
use crate::qp::Qp;
use crate::rng::SplitMix64;

/// A consumer context pointer, passed back unchanged and never dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ctx(pub(crate) PVOID);

// SAFETY: softndk never dereferences a context; it only hands it back to the consumer, which
// is what NDK requires of any provider (callbacks may run on any thread).
unsafe impl Send for Ctx {}

/// Where a delivery runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// On the thread whose call caused it, before that call returns.
    Inline,
    /// On one of the fabric's provider threads.
    Thread(usize),
    /// Queued until the test calls `Fabric::deliver`.
    Manual,
}

/// A disconnect callback as registered by CompleteConnect(Ex) / Accept(Ex).
#[derive(Clone, Copy, Debug)]
pub(crate) enum DisconnectCb {
    Plain(NDK_FN_DISCONNECT_EVENT_CALLBACK, Ctx),
    Ex(NDK_FN_DISCONNECT_EVENT_CALLBACK_EX, Ctx),
}

/// A consumer callback to make.
#[derive(Debug)]
pub(crate) enum Call {
    Request {
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
        status: NTSTATUS,
    },
    Create {
        f: NDK_FN_CREATE_COMPLETION,
        ctx: Ctx,
        status: NTSTATUS,
        object: Option<ObjectPtr>,
    },
    Close {
        f: NDK_FN_CLOSE_COMPLETION,
        ctx: Ctx,
    },
    ConnectEvent {
        f: NDK_FN_CONNECT_EVENT_CALLBACK,
        ctx: Ctx,
        connector: ObjId,
        block: ObjectPtr,
    },
    Disconnect {
        cb: DisconnectCb,
        reason: u32,
    },
    CqNotify {
        f: NDK_FN_CQ_NOTIFICATION_CALLBACK,
        ctx: Ctx,
        status: NTSTATUS,
    },
    /// Not a callback: the provider's own work, done later on a provider thread.
    Provider(Action),
}

/// Work the provider starts in one call and finishes later, as an adapter does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Complete the requests an `NdkFlush` cancelled (the target is the QP).
    Flush,
}

/// Something the provider does when a time limit runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The connector's `NdkDisconnect` got no answer.
    Disconnect(ObjId),
    /// The connector's handshake step (connect or accept) got no answer.
    Handshake(ObjId),
    /// The QP's oldest send was not acknowledged.
    Retry(ObjId),
}

impl Call {
    /// Event callbacks are suppressed once their object's close has started; completions are
    /// owed and always delivered.
    fn is_event(&self) -> bool {
        matches!(
            self,
            Self::ConnectEvent { .. } | Self::Disconnect { .. } | Self::CqNotify { .. }
        )
    }
}

/// A callback bound to the object it belongs to (for close ordering).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) target: ObjId,
    pub(crate) call: Call,
}

/// Deliveries produced while the lock was held.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) list: Vec<(Route, Delivery)>,
    pub(crate) violations: Vec<Violation>,
    /// Timers to arm: (after, what).
    pub(crate) timers: Vec<(std::time::Duration, Timer)>,
}

/// An object's close progress.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CloseState {
    Open,
    /// The consumer asked; the completion is owed once successors and callbacks are done.
    Closing {
        f: NDK_FN_CLOSE_COMPLETION,
        ctx: Ctx,
        issued: bool,
    },
    Closed,
}

/// A completion-queue entry (an `NDK_RESULT_EX` in provider form).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CqEntry {
    pub(crate) status: NTSTATUS,
    pub(crate) bytes: u32,
    pub(crate) qp_context: Ctx,
    pub(crate) request_context: Ctx,
    pub(crate) op: u32,
    pub(crate) solicited: bool,
    /// `NDK_RESULT_EX.ProviderErrorCode` (reported from NDKPI 2.1; 0 on success).
    pub(crate) provider_code: u32,
}

#[expect(
    clippy::struct_excessive_bools,
    reason = "independent CQ notification flags of the NDK arm rules"
)]
pub(crate) struct Cq {
    pub(crate) depth: u32,
    notify: NDK_FN_CQ_NOTIFICATION_CALLBACK,
    notify_ctx: Ctx,
    pub(crate) entries: VecDeque<CqEntry>,
    armed: Option<u32>,
    arrived_any: bool,
    arrived_solicited: bool,
    notifying: bool,
    deferred: Option<NTSTATUS>,
    /// Set once the CQ is dead (overrun or fatal error): the status its notification reports.
    pub(crate) dead: Option<NTSTATUS>,
    error_reported: bool,
}

pub(crate) struct Mr {
    pub(crate) pd: ObjId,
    pub(crate) region: Option<Region>,
    pub(crate) local_token: u32,
    pub(crate) remote_token: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) base: BytePtr,
    pub(crate) len: usize,
    pub(crate) flags: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Lam {
    pub(crate) base: BytePtr,
    pub(crate) len: usize,
}

pub(crate) enum Body {
    Adapter {
        removed: bool,
        lams: BTreeMap<usize, Lam>,
        /// Its descendants not yet closed: what its close checks, without scanning the world.
        live: BTreeSet<ObjId>,
    },
    Pd {
        privileged_token: u32,
    },
    Cq(Box<Cq>),
    Qp(Box<Qp>),
    Connector(Box<Conn>),
    Listener(Box<Listener>),
    Mr(Mr),
}

pub(crate) struct Object {
    pub(crate) kind: ObjectKind,
    pub(crate) adapter: ObjId,
    pub(crate) host: usize,
    pub(crate) version: NDK_VERSION,
    pub(crate) block: ObjectPtr,
    antecedents: Vec<ObjId>,
    successors: u32,
    pub(crate) close: CloseState,
    inflight: u32,
    pub(crate) body: Body,
}

/// Every object a world ever created, closed ones included (their entries are the tombstones
/// that let a stale pointer be recognised), indexed by id.
///
/// Ids are handed out in order from 1, one per object, so an object's entry is at `id - 1`: a
/// lookup is one index, with no hashing and no probing, and the entries of objects created
/// together (one connection's connector, QP, CQ and MRs; their larger bodies are boxed apart)
/// sit side by side in memory. A hash map keyed by id scattered them over the whole table, which
/// made every lookup of a large world a cache and TLB miss (the peer-disconnect storm through
/// 100,000 connections spent two fifths of its time probing it).
#[derive(Default)]
pub(crate) struct Objects {
    entries: Vec<Object>,
}

impl Objects {
    fn index(id: ObjId) -> Option<usize> {
        usize::try_from(id.checked_sub(1)?).ok()
    }

    /// The id the next [`Objects::push`] will give.
    pub(crate) fn next_id(&self) -> ObjId {
        self.entries.len() as ObjId + 1
    }

    /// Add an object under [`Objects::next_id`]; returns that id.
    fn push(&mut self, object: Object) -> ObjId {
        self.entries.push(object);
        self.entries.len() as ObjId
    }

    pub(crate) fn get(&self, id: ObjId) -> Option<&Object> {
        self.entries.get(Self::index(id)?)
    }

    pub(crate) fn get_mut(&mut self, id: ObjId) -> Option<&mut Object> {
        let index = Self::index(id)?;
        self.entries.get_mut(index)
    }

    /// Every object with its id, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ObjId, &Object)> {
        (1..).zip(&self.entries)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Object> {
        self.entries.iter()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Object> {
        self.entries.iter_mut()
    }
}

impl std::ops::Index<ObjId> for Objects {
    type Output = Object;

    /// The object `id`, which the caller knows exists (like a map's index, panics otherwise).
    fn index(&self, id: ObjId) -> &Object {
        self.get(id).expect("softndk: no object with this id")
    }
}

pub(crate) struct Host {
    pub(crate) config: HostConfig,
    pub(crate) removed: bool,
}

/// Counters the tests read through `Fabric::stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Disconnect callbacks made (plain and Ex).
    pub disconnect_callbacks: u64,
    /// Connect-event callbacks made.
    pub connect_events: u64,
    /// `NdkFlush` calls, all QPs.
    pub flush_calls: u64,
    /// Callbacks of any kind made.
    pub callbacks: u64,
    /// Event callbacks not made because their object's close had started.
    pub suppressed_events: u64,
    /// Connection requests refused (no listener, paused, closing, rejected).
    pub refused_connects: u64,
    /// `NdkReject` calls by a consumer.
    pub rejects: u64,
    /// Incoming connection requests refused by closing the passive connector unaccepted
    /// (without `NdkReject`).
    pub closed_unaccepted: u64,
    /// Creates failed by fault injection.
    pub injected_create_failures: u64,
    /// `NdkDisconnect` calls that timed out (no answer from the peer).
    pub disconnect_timeouts: u64,
    /// Connect / accept handshakes that timed out.
    pub handshake_timeouts: u64,
    /// Sends that failed because the peer did not acknowledge them (retry exceeded); each
    /// put its QP in the error state.
    pub retry_failures: u64,
    /// Flushes the provider did on its own (a QP in the error state, a dead CQ's QPs).
    pub provider_flushes: u64,
}

pub(crate) struct World {
    pub(crate) fabric: Weak<Shared>,
    pub(crate) config: FabricConfig,
    /// Draws for "complete this request synchronously?", made only inside consumer calls.
    sync_rng: SplitMix64,
    /// Draws for inline-or-worker routing, also made on the worker thread; kept apart so that
    /// callback timing cannot shift the synchronous/pending choices.
    route_rng: SplitMix64,
    next_token: u32,
    pub(crate) hosts: Vec<Host>,
    pub(crate) objects: Objects,
    pub(crate) listeners: HashMap<SocketAddr, ObjId>,
    pub(crate) ports: HashSet<SocketAddr>,
    next_ephemeral: u16,
    pub(crate) tokens: HashMap<u32, ObjId>,
    pub(crate) counters: Counters,
    pub(crate) queued: usize,
    pub(crate) create_failures: Vec<(usize, ObjectKind, u32)>,
}

/// First and last ephemeral port (RFC 6335 dynamic range, as NDK documents).
pub(crate) const EPHEMERAL_FIRST: u16 = 49152;

impl World {
    pub(crate) fn new(config: FabricConfig) -> Self {
        let seed = match config.completion {
            Completion::Random { seed } | Completion::Hardware { seed, .. } => seed,
            _ => 0,
        };
        Self {
            fabric: Weak::new(),
            config,
            sync_rng: SplitMix64::new(seed),
            route_rng: SplitMix64::new(seed ^ 0x5EED_0F00_D0D0),
            next_token: 0x100,
            hosts: Vec::new(),
            objects: Objects::default(),
            listeners: HashMap::new(),
            ports: HashSet::new(),
            next_ephemeral: EPHEMERAL_FIRST,
            tokens: HashMap::new(),
            counters: Counters::default(),
            queued: 0,
            create_failures: Vec::new(),
        }
    }

    // --- routing ------------------------------------------------------------------------

    fn route(&mut self) -> Route {
        match self.config.completion {
            Completion::Synchronous | Completion::Inline => Route::Inline,
            Completion::Thread => Route::Thread(0),
            Completion::Manual => Route::Manual,
            Completion::Random { .. } => {
                if self.route_rng.one_in(2) {
                    Route::Inline
                } else {
                    Route::Thread(0)
                }
            }
            Completion::Hardware { threads, .. } => {
                if self.route_rng.one_in(4) {
                    Route::Inline
                } else {
                    self.any_thread(threads)
                }
            }
        }
    }

    /// One of `threads` provider threads, drawn from the routing generator.
    fn any_thread(&mut self, threads: usize) -> Route {
        let n = threads.max(1) as u64;
        Route::Thread(usize::try_from(self.route_rng.next_u64() % n).unwrap_or(0))
    }

    /// Where the provider's own deferred work runs: never on the calling thread (it is what
    /// the call only started), in `Manual` mode when the test delivers.
    fn provider_route(&mut self) -> Route {
        match self.config.completion {
            Completion::Manual => Route::Manual,
            Completion::Hardware { threads, .. } => self.any_thread(threads),
            _ => Route::Thread(0),
        }
    }

    /// Queue provider work for `target` (counted like a callback owed on it, so its close
    /// waits for the work).
    pub(crate) fn defer_action(&mut self, out: &mut Out, target: ObjId, action: Action) {
        if let Some(obj) = self.objects.get_mut(target) {
            obj.inflight += 1;
        }
        self.queued += 1;
        let route = self.provider_route();
        out.list.push((
            route,
            Delivery {
                target,
                call: Call::Provider(action),
            },
        ));
    }

    /// Arm `timer` on the fabric's provider clock, due after its kind's timeout in
    /// [`crate::Timing`].
    pub(crate) fn arm(&self, out: &mut Out, timer: Timer) {
        let timing = &self.config.timing;
        let after = match timer {
            Timer::Disconnect(_) => timing.disconnect_timeout,
            Timer::Handshake(_) => timing.handshake_timeout,
            Timer::Retry(_) => timing.retry_timeout,
        };
        out.timers.push((after, timer));
    }

    /// Run provider work queued by [`World::defer_action`].
    pub(crate) fn run_action(&mut self, out: &mut Out, target: ObjId, action: Action) {
        match action {
            Action::Flush => self.finish_flush(out, target),
        }
    }

    /// A timer ran out.
    pub(crate) fn fire(&mut self, out: &mut Out, timer: Timer) {
        match timer {
            Timer::Disconnect(x) => self.disconnect_timed_out(out, x),
            Timer::Handshake(x) => self.handshake_timed_out(out, x),
            Timer::Retry(qp) => self.retry_expired(out, qp),
        }
    }

    /// May the request being made right now complete synchronously (return `STATUS_SUCCESS`
    /// with no callback)?
    pub(crate) fn complete_now(&mut self) -> bool {
        match self.config.completion {
            Completion::Synchronous => true,
            Completion::Random { .. } | Completion::Hardware { .. } => self.sync_rng.one_in(3),
            _ => false,
        }
    }

    /// Queue a callback for `target`.
    pub(crate) fn emit(&mut self, out: &mut Out, target: ObjId, call: Call) {
        if let Some(obj) = self.objects.get_mut(target) {
            obj.inflight += 1;
        }
        self.queued += 1;
        let route = self.route();
        out.list.push((route, Delivery { target, call }));
    }

    /// Finish a request: synchronously (`STATUS_SUCCESS`/the failure, no callback) when the
    /// completion mode allows, otherwise `STATUS_PENDING` and a completion callback.
    pub(crate) fn finish_request(
        &mut self,
        out: &mut Out,
        target: ObjId,
        f: NDK_FN_REQUEST_COMPLETION,
        ctx: Ctx,
        status: NTSTATUS,
    ) -> NTSTATUS {
        if self.complete_now() {
            status
        } else {
            self.emit(out, target, Call::Request { f, ctx, status });
            NtStatus::PENDING
        }
    }

    // --- objects ------------------------------------------------------------------------

    pub(crate) fn next_token(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(0x11).max(0x100);
        self.next_token
    }

    /// Insert a new object whose block is already allocated, under the id
    /// [`Objects::next_id`] gave it, counting it as a successor of each antecedent.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per object kind, all named"
    )]
    fn insert(
        &mut self,
        id: ObjId,
        kind: ObjectKind,
        adapter: ObjId,
        host: usize,
        version: NDK_VERSION,
        block: ObjectPtr,
        antecedents: Vec<ObjId>,
        body: Body,
    ) {
        for a in &antecedents {
            if let Some(obj) = self.objects.get_mut(*a) {
                obj.successors += 1;
            }
        }
        if id != adapter
            && let Some(Object {
                body: Body::Adapter { live, .. },
                ..
            }) = self.objects.get_mut(adapter)
        {
            live.insert(id);
        }
        let pushed = self.objects.push(Object {
            kind,
            adapter,
            host,
            version,
            block,
            antecedents,
            successors: 0,
            close: CloseState::Open,
            inflight: 0,
            body,
        });
        debug_assert_eq!(
            pushed, id,
            "an object is inserted under the id it was given"
        );
    }

    /// Allocate, register and insert a new object; returns its id and block.
    pub(crate) fn create_object(
        &mut self,
        kind: ObjectKind,
        adapter: ObjId,
        host: usize,
        version: NDK_VERSION,
        antecedents: Vec<ObjId>,
        body: Body,
    ) -> (ObjId, ObjectPtr) {
        let id = self.objects.next_id();
        let block =
            ObjectPtr::allocate(id, kind, version, crate::abi::dispatch_table(kind, version));
        object::register(Entry {
            fabric: self.fabric.clone(),
            id,
            kind,
            block,
        });
        let adapter = if kind == ObjectKind::Adapter {
            id
        } else {
            adapter
        };
        if let Body::Pd { privileged_token } = &body {
            self.tokens.insert(*privileged_token, id);
        }
        self.insert(id, kind, adapter, host, version, block, antecedents, body);
        (id, block)
    }

    /// Close now, whatever is owed (the adapter, whose close is blocking and was waited for).
    pub(crate) fn force_closed(&mut self, out: &mut Out, id: ObjId) {
        if self
            .objects
            .get(id)
            .is_some_and(|o| !matches!(o.close, CloseState::Closed))
        {
            self.closed(out, id);
        }
    }

    /// Make `antecedent`'s close wait for `successor`'s (QP -> connector, listener ->
    /// connector).
    pub(crate) fn add_antecedent(&mut self, successor: ObjId, antecedent: ObjId) {
        if let Some(obj) = self.objects.get_mut(successor) {
            obj.antecedents.push(antecedent);
        }
        if let Some(obj) = self.objects.get_mut(antecedent) {
            obj.successors += 1;
        }
    }

    /// The object, if it exists and the consumer has not started closing it.
    pub(crate) fn open(&self, id: ObjId, function: &'static str) -> Result<&Object, Violation> {
        let obj = self
            .objects
            .get(id)
            .ok_or(Violation::UnknownObject { function })?;
        if matches!(obj.close, CloseState::Open) {
            Ok(obj)
        } else {
            Err(Violation::UseAfterClose {
                function,
                kind: obj.kind,
            })
        }
    }

    pub(crate) fn is_open(&self, id: ObjId) -> bool {
        self.objects
            .get(id)
            .is_some_and(|o| matches!(o.close, CloseState::Open))
    }

    pub(crate) fn host_of(&self, id: ObjId) -> Option<&Host> {
        self.objects.get(id).and_then(|o| self.hosts.get(o.host))
    }

    pub(crate) fn misbehaviour(&self, id: ObjId) -> Misbehaviour {
        self.host_of(id)
            .map(|h| h.config.misbehaviour)
            .unwrap_or_default()
    }

    pub(crate) fn adapter_removed(&self, id: ObjId) -> bool {
        let Some(obj) = self.objects.get(id) else {
            return true;
        };
        matches!(
            self.objects.get(obj.adapter),
            Some(Object {
                body: Body::Adapter { removed: true, .. },
                ..
            })
        )
    }

    /// Should this create fail by fault injection?
    pub(crate) fn take_create_failure(&mut self, host: usize, kind: ObjectKind) -> bool {
        let hit = self
            .create_failures
            .iter_mut()
            .find(|(h, k, n)| *h == host && *k == kind && *n > 0);
        match hit {
            Some(entry) => {
                entry.2 -= 1;
                self.counters.injected_create_failures += 1;
                true
            }
            None => false,
        }
    }

    /// Objects (and LAMs) of `adapter` that are not closed, the adapter excluded.
    pub(crate) fn live_children(&self, adapter: ObjId) -> usize {
        match self.objects.get(adapter) {
            Some(Object {
                body: Body::Adapter { lams, live, .. },
                ..
            }) => live.len() + lams.len(),
            _ => 0,
        }
    }

    /// Is any descendant of `adapter` closing, or any callback owed on it or one of its
    /// objects? Looks at its live descendants only: a closed object is owed nothing (its close
    /// finished only once nothing was in flight).
    pub(crate) fn adapter_busy(&self, adapter: ObjId) -> bool {
        let Some(a) = self.objects.get(adapter) else {
            return false;
        };
        let busy = |o: &Object| o.inflight > 0 || matches!(o.close, CloseState::Closing { .. });
        let Body::Adapter { live, .. } = &a.body else {
            return busy(a);
        };
        busy(a) || live.iter().filter_map(|id| self.objects.get(*id)).any(busy)
    }

    /// Objects being closed or owed callbacks, described (for [`crate::describe_stuck`]).
    pub(crate) fn stuck(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter_map(|(id, o)| {
                let closing = matches!(o.close, CloseState::Closing { .. });
                let open = matches!(o.close, CloseState::Open);
                (closing || open || o.inflight > 0).then(|| {
                    let state = match &o.body {
                        Body::Connector(c) => format!(" connector state {:?}", c.state),
                        _ => String::new(),
                    };
                    format!(
                        "softndk object {id} {:?} host {}: open={open} closing={closing} successors={} inflight={} queued={}{state}",
                        o.kind, o.host, o.successors, o.inflight, self.queued
                    )
                })
            })
            .collect()
    }

    // --- close ----------------------------------------------------------------------------

    /// Start closing `id` on the consumer's request. Returns `STATUS_SUCCESS` when the close
    /// finished inside this call (no callback will come), `STATUS_PENDING` otherwise.
    pub(crate) fn begin_close(
        &mut self,
        out: &mut Out,
        id: ObjId,
        f: NDK_FN_CLOSE_COMPLETION,
        ctx: Ctx,
    ) -> NTSTATUS {
        let Some(obj) = self.objects.get_mut(id) else {
            return NtStatus::INVALID_PARAMETER;
        };
        obj.close = CloseState::Closing {
            f,
            ctx,
            issued: false,
        };
        // Kind-specific teardown: cancel owed requests, stop events, flush.
        match obj.kind {
            ObjectKind::Connector => self.connector_closing(out, id),
            ObjectKind::Listener => self.listener_closing(out, id),
            ObjectKind::Qp => self.qp_closing(out, id),
            ObjectKind::Mr => {
                if let Some(Object {
                    body: Body::Mr(mr), ..
                }) = self.objects.get_mut(id)
                {
                    mr.region = None;
                }
            }
            _ => {}
        }
        let sync = self.complete_now();
        if self.try_finish_close(out, id, sync) {
            NtStatus::SUCCESS
        } else {
            NtStatus::PENDING
        }
    }

    /// Finish a close whose conditions are met. With `sync` the object is closed right now
    /// (the caller returns `STATUS_SUCCESS`); otherwise the close completion is queued.
    /// Returns true only when closed synchronously.
    fn try_finish_close(&mut self, out: &mut Out, id: ObjId, sync: bool) -> bool {
        let Some(obj) = self.objects.get_mut(id) else {
            return false;
        };
        let CloseState::Closing {
            f,
            ctx,
            issued: false,
        } = obj.close
        else {
            return false;
        };
        if obj.successors > 0 || obj.inflight > 0 {
            return false;
        }
        if sync {
            self.closed(out, id);
            true
        } else {
            obj.close = CloseState::Closing {
                f,
                ctx,
                issued: true,
            };
            // The close is done as far as resources go: its address, port and tokens are free
            // before the consumer's close completion runs (which may reuse them).
            self.release_resources(id);
            self.emit(out, id, Call::Close { f, ctx });
            false
        }
    }

    /// Free what an object holds in the fabric's shared namespaces (tokens, ports, listener
    /// addresses). Idempotent.
    fn release_resources(&mut self, id: ObjId) {
        let Some(obj) = self.objects.get_mut(id) else {
            return;
        };
        match &mut obj.body {
            Body::Mr(mr) => {
                let (l, r) = (mr.local_token, mr.remote_token);
                self.tokens.remove(&l);
                self.tokens.remove(&r);
            }
            Body::Pd { privileged_token } => {
                let t = *privileged_token;
                self.tokens.remove(&t);
            }
            Body::Connector(conn) => {
                if let Some(local) = conn.local.take() {
                    self.ports.remove(&local);
                }
            }
            Body::Listener(listener) => {
                if let Some(addr) = listener.addr.take() {
                    self.ports.remove(&addr);
                    self.listeners.remove(&addr);
                }
            }
            _ => {}
        }
    }

    /// The object is closed: release its resources and its antecedents.
    fn closed(&mut self, out: &mut Out, id: ObjId) {
        self.release_resources(id);
        let Some(obj) = self.objects.get_mut(id) else {
            return;
        };
        obj.close = CloseState::Closed;
        let antecedents = std::mem::take(&mut obj.antecedents);
        let adapter = obj.adapter;
        if let Some(Object {
            body: Body::Adapter { live, .. },
            ..
        }) = self.objects.get_mut(adapter)
        {
            live.remove(&id);
        }
        for a in antecedents {
            if let Some(ante) = self.objects.get_mut(a) {
                ante.successors = ante.successors.saturating_sub(1);
            }
            self.try_finish_close(out, a, false);
        }
    }

    /// Close an object the consumer never received (a connector whose connect event was
    /// suppressed): no callback, just release.
    pub(crate) fn discard(&mut self, out: &mut Out, id: ObjId) {
        self.closed(out, id);
    }

    // --- deliveries -----------------------------------------------------------------------

    /// Decide, just before running it, whether a delivery is still wanted.
    pub(crate) fn begin_delivery(&mut self, d: &Delivery) -> bool {
        let closing = self
            .objects
            .get(d.target)
            .is_some_and(|o| !matches!(o.close, CloseState::Open));
        // NDKPI object lifetime requirements: no callback after the close completion — and
        // until it, event callbacks may still come.
        let run = !(d.call.is_event() && closing && self.config.kindness.events_stop_at_close);
        if run {
            self.counters.callbacks += 1;
            match d.call {
                Call::Disconnect { .. } => self.counters.disconnect_callbacks += 1,
                Call::ConnectEvent { .. } => self.counters.connect_events += 1,
                _ => {}
            }
        } else {
            self.counters.suppressed_events += 1;
        }
        run
    }

    /// A delivery has run (or was suppressed): account for it and apply what follows.
    pub(crate) fn end_delivery(&mut self, out: &mut Out, d: &Delivery, ran: bool) {
        self.queued = self.queued.saturating_sub(1);
        if let Some(obj) = self.objects.get_mut(d.target) {
            obj.inflight = obj.inflight.saturating_sub(1);
        }
        match d.call {
            Call::Close { .. } => self.closed(out, d.target),
            Call::CqNotify { .. } => {
                let deferred = match self.objects.get_mut(d.target) {
                    Some(Object {
                        body: Body::Cq(cq), ..
                    }) => {
                        cq.notifying = false;
                        cq.deferred.take()
                    }
                    _ => None,
                };
                if let Some(status) = deferred {
                    self.fire_cq(out, d.target, status);
                }
            }
            Call::ConnectEvent { connector, .. } if !ran => {
                // The listener is closing: the request is refused as if nobody listened.
                self.refuse_incoming(out, connector);
            }
            _ => {}
        }
        self.try_finish_close(out, d.target, false);
    }

    // --- CQs ------------------------------------------------------------------------------

    pub(crate) fn new_cq(depth: u32, notify: NDK_FN_CQ_NOTIFICATION_CALLBACK, ctx: Ctx) -> Cq {
        Cq {
            depth,
            notify,
            notify_ctx: ctx,
            entries: VecDeque::new(),
            armed: None,
            arrived_any: false,
            arrived_solicited: false,
            notifying: false,
            deferred: None,
            dead: None,
            error_reported: false,
        }
    }

    fn cq_mut(&mut self, id: ObjId) -> Option<&mut Cq> {
        match self.objects.get_mut(id) {
            Some(Object {
                body: Body::Cq(cq), ..
            }) => Some(cq),
            _ => None,
        }
    }

    /// Add a completion to a CQ, firing its notification if armed for it.
    pub(crate) fn push_cq(&mut self, out: &mut Out, cq_id: ObjId, entry: CqEntry) {
        let Some(cq) = self.cq_mut(cq_id) else { return };
        if cq.dead.is_some() {
            return;
        }
        if cq.entries.len() >= cq.depth as usize {
            // Overrun: the CQ and every QP using it are dead; errors always notify.
            self.cq_failed(out, cq_id, NtStatus::BUFFER_OVERFLOW);
            return;
        }
        let solicited = entry.solicited || entry.status != NtStatus::SUCCESS;
        cq.entries.push_back(entry);
        cq.arrived_any = true;
        cq.arrived_solicited |= solicited;
        let fire = match cq.armed {
            Some(NDK_CQ_NOTIFY_ANY) => true,
            Some(NDK_CQ_NOTIFY_SOLICITED) => solicited,
            _ => false,
        };
        if fire {
            cq.armed = None;
            self.fire_cq(out, cq_id, NtStatus::SUCCESS);
        }
    }

    /// The CQ is dead (overrun or fatal error, `NDK_FN_CQ_NOTIFICATION_CALLBACK`): nothing more
    /// is completed through it, every QP using it is dead, and the armed notification (any
    /// type: errors always notify) reports `status`.
    pub(crate) fn cq_failed(&mut self, out: &mut Out, cq_id: ObjId, status: NTSTATUS) {
        let Some(cq) = self.cq_mut(cq_id) else { return };
        if cq.dead.is_some() {
            return;
        }
        cq.dead = Some(status);
        let fire = cq.armed.take().is_some();
        cq.error_reported = fire;
        let qps: Vec<ObjId> = self
            .objects
            .iter()
            .filter_map(|(id, o)| match &o.body {
                Body::Qp(q) if q.rcq == cq_id || q.icq == cq_id => Some(id),
                _ => None,
            })
            .collect();
        for qp in qps {
            self.qp_died(out, qp);
        }
        if fire {
            self.fire_cq(out, cq_id, status);
        }
    }

    /// `NdkArmCq`: merge the request with any pending arm; fire at once if something
    /// qualifying arrived since the last notification.
    pub(crate) fn arm_cq(&mut self, out: &mut Out, cq_id: ObjId, kind: u32) {
        let Some(cq) = self.cq_mut(cq_id) else { return };
        if let Some(status) = cq.dead {
            // A dead CQ reports its error once: to the arm pending when it died, or else to the
            // next arm (errors notify whatever the arm type). Later arms never fire.
            if !cq.error_reported {
                cq.error_reported = true;
                self.fire_cq(out, cq_id, status);
            }
            return;
        }
        let merged = match (cq.armed, kind) {
            (Some(NDK_CQ_NOTIFY_ANY), _) | (_, NDK_CQ_NOTIFY_ANY) => NDK_CQ_NOTIFY_ANY,
            (Some(NDK_CQ_NOTIFY_SOLICITED), _) | (_, NDK_CQ_NOTIFY_SOLICITED) => {
                NDK_CQ_NOTIFY_SOLICITED
            }
            _ => NDK_CQ_NOTIFY_ERRORS,
        };
        let fire_now = !cq.entries.is_empty()
            && match merged {
                NDK_CQ_NOTIFY_ANY => cq.arrived_any,
                NDK_CQ_NOTIFY_SOLICITED => cq.arrived_solicited,
                _ => false,
            };
        if fire_now {
            cq.armed = None;
            self.fire_cq(out, cq_id, NtStatus::SUCCESS);
        } else {
            cq.armed = Some(merged);
        }
    }

    /// Notify a CQ, never two notifications at once for one CQ.
    fn fire_cq(&mut self, out: &mut Out, cq_id: ObjId, status: NTSTATUS) {
        let Some(cq) = self.cq_mut(cq_id) else { return };
        cq.arrived_any = false;
        cq.arrived_solicited = false;
        if cq.notifying {
            cq.deferred = Some(status);
            return;
        }
        cq.notifying = true;
        let (f, ctx) = (cq.notify, cq.notify_ctx);
        self.emit(out, cq_id, Call::CqNotify { f, ctx, status });
    }

    // --- hosts and addresses ----------------------------------------------------------------

    pub(crate) fn host_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.config.addresses.contains(&ip))
    }

    /// Pick a free ephemeral port for `ip`, or `None` when all are taken.
    pub(crate) fn ephemeral(&mut self, ip: IpAddr) -> Option<SocketAddr> {
        let span = u32::from(u16::MAX - EPHEMERAL_FIRST) + 1;
        for _ in 0..span {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let addr = SocketAddr::new(ip, port);
            if !self.ports.contains(&addr) {
                return Some(addr);
            }
        }
        None
    }

    pub(crate) fn adapter_info(&self, id: ObjId) -> NDK_ADAPTER_INFO {
        let obj = &self.objects[id];
        let mut info = self.hosts[obj.host].config.info;
        info.Version = obj.version;
        info
    }
}
