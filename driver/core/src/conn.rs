//! One connection: its NDK objects, its facts, and the flows that drive it. The connection is
//! the [`ndkpi::Sink`] of every NDK object it owns, so every provider callback for it lands
//! here.
//!
//! Creates and closes are waited for synchronously at `PASSIVE_LEVEL` (the CONNECT and CLOSE
//! IOCTLs and the accept work item run there); the establishment steps and the disconnect
//! callback run from provider callbacks at <= `DISPATCH_LEVEL` and never wait, allocate or
//! close anything.

use alloc::boxed::Box;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use alloc::vec::Vec;
use ndkdisc_abi::{Cause, ConnState, ConnectReply, Event, EventKind, NtStatus, QueryReply, Record};

use kalloc::{Arc, Weak};
use ndkdisc_abi::PostKind;
use ndkpi::{Buffer, Connector, Cq, Created, Mr, Op, Pd, QueuePair, Sink};

use crate::error::Error;
use crate::events::{ConnIndex, Ready};
use crate::owner::HandleState;
use crate::ports::{Lock, NdkCallback, PendedRequest, Platform, Trace};
use crate::runtime::Runtime;
use crate::step::Stepper;
use crate::sync::{AtomicBool, Ordering};
use crate::users::{Count, Counted, Users};

/// What a connection reports to the handle that owns it: the facts it latches, the requests
/// it pends (so their cancel routine finds it), and that it leaves. The handle implements it
/// (in the `owner` module); a connection sees nothing else of the handle, neither its tables nor its
/// other connections.
pub(crate) trait ConnOwner<P: Platform>: Send + Sync {
    /// The engine's shared services.
    fn runtime(&self) -> &Arc<Runtime<P>>;

    /// Latch a fact, returning the wait it satisfies for the caller to complete once it holds
    /// no lock: for latching inside a connection's lock, in step with its state change.
    fn latch_in(&self, index: ConnIndex, fact: Event) -> Option<Ready<P::Request>>;

    /// After latching connection `id`'s terminal event (and completing the wait it satisfied):
    /// complete the WAITs pended on `id` that are left without it because it went to an older
    /// any-connection WAIT, each with the flagged copy (level-triggered per connection).
    /// `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    fn complete_level_triggered(&self, id: u64);

    /// Register a CONNECT or graceful DISCONNECT about to pend (before it is made cancelable).
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` if the reserved room is used up.
    fn register_pended(&self, token: u64, conn: &Arc<Conn<P>>) -> Result<(), Error>;

    /// The CONNECT or DISCONNECT `token` no longer pends (completed, or taken by its cancel
    /// routine).
    fn unregister_pended(&self, token: u64) -> Option<Arc<Conn<P>>>;

    /// Take connection `id` out of the handle's table (it is being released).
    fn forget(&self, id: u64) -> Option<Arc<Conn<P>>>;

    /// Connection `id`'s CONNECT was cancelled: release it at `PASSIVE_LEVEL` (the handle's
    /// work item takes it out of the table, ends it and latches `Closed`). At most once per
    /// connection. `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    fn abandon(&self, id: u64);

    /// The protection domain the handle's connections on `adapter` share, if one is open.
    fn shared_pd(&self, adapter: &Arc<ndkpi::Adapter>) -> Option<Arc<SharedPd>>;

    /// Offer a new protection domain (on interface `if_index`) for the handle's next
    /// connections on its adapter to share. Not kept when the handle's room for them is full.
    fn offer_pd(&self, if_index: u32, pd: &Arc<SharedPd>);
}

/// A protection domain that a handle's connections on one adapter share (NDKPI: a PD holds any
/// number of QPs and MRs). It is created and closed through a sink of its own, never through
/// a connection: NDK holds a reference to the sink an object was created with until the
/// object's close completes, so a PD created by one connection cannot be closed by another.
/// It keeps its adapter open; the last connection to let go closes the PD, then the adapter
/// if nothing else holds it.
pub(crate) struct SharedPd {
    pd: Pd,
    adapter: Arc<ndkpi::Adapter>,
    /// Its sink (a `kalloc::Arc<PdSink<P>>`), boxed: the PD is the same for every platform.
    owner: Box<dyn PdOwner>,
}

/// What creates and closes a [`SharedPd`]'s provider object.
trait PdOwner: Send + Sync {
    /// Close `pd` (created through this owner) and wait for its close. `// IRQL: PASSIVE_LEVEL`.
    fn close_pd(&self, pd: Pd);
}

/// The sink a shared PD's create and close complete to: a stepper of its own.
struct PdSink<P: Platform> {
    stepper: Stepper<P>,
}

impl<P: Platform> Sink for PdSink<P> {
    // IRQL: <= DISPATCH_LEVEL.
    fn completed(&self, op: Op, st: NtStatus, created: Option<Created>) {
        self.stepper.finish(op, st, created);
    }

    // IRQL: <= DISPATCH_LEVEL.
    fn closed(&self, op: Op) {
        self.stepper.finish(op, NtStatus::SUCCESS, None);
    }
}

impl<P: Platform> PdOwner for Arc<PdSink<P>> {
    fn close_pd(&self, pd: Pd) {
        self.stepper.run(|| pd.close(self));
    }
}

impl SharedPd {
    /// Create a PD on `adapter`. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`Error::NoResources`] without a wait lock or memory for its sink, or memory for
    /// itself (the PD is closed then); the provider's failure.
    fn create<P: Platform>(
        platform: &P,
        adapter: &Arc<ndkpi::Adapter>,
    ) -> Result<Arc<Self>, Error> {
        let stepper = Stepper::new(platform).ok_or(Error::NoResources)?;
        let sink = Arc::try_new(PdSink { stepper })?;
        let owner: Box<dyn PdOwner> = kalloc::try_box(Arc::clone(&sink))?;
        let (st, created) = sink.stepper.run(|| adapter.create_pd(&sink));
        let Some(Created::Pd(pd)) = created else {
            return Err(Error::provider(st));
        };
        Arc::try_new_returning(Self {
            pd,
            adapter: Arc::clone(adapter),
            owner,
        })
        .map_err(|pd| {
            // Never shared: closed now (the adapter stays with its other holders).
            pd.owner.close_pd(pd.pd);
            Error::NoResources
        })
    }

    /// Close the PD, then the adapter if this held its last reference.
    /// `// IRQL: PASSIVE_LEVEL`.
    fn close(self, wsk: &ndkpi::Wsk) {
        let Self { pd, adapter, owner } = self;
        owner.close_pd(pd);
        if let Some(adapter) = Arc::into_inner(adapter) {
            wsk.close_adapter(adapter);
        }
    }

    /// Whether it lives on `adapter`.
    pub(crate) fn on(&self, adapter: &Arc<ndkpi::Adapter>) -> bool {
        Arc::ptr_eq(&self.adapter, adapter)
    }

    /// Its adapter.
    pub(crate) fn adapter(&self) -> &Arc<ndkpi::Adapter> {
        &self.adapter
    }
}

/// The NDK objects of a connection, each shared while in use and taken back for closing.
#[derive(Clone, Default)]
struct Objects {
    adapter: Option<Arc<ndkpi::Adapter>>,
    pd: Option<Arc<SharedPd>>,
    cq: Option<Arc<Cq>>,
    qp: Option<Arc<QueuePair>>,
    connector: Option<Arc<Connector>>,
}

/// A connection's address as it keeps it: what the ABI reports of a socket address (family,
/// port, scope id, IP; no IPv6 flow label), in 24 bytes instead of `Option<SocketAddr>`'s 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addr {
    ip: [u8; 16],
    scope_id: u32,
    port: u16,
    /// 0: none, 4, 6.
    family: u8,
}

impl Addr {
    const NONE: Self = Self {
        ip: [0; 16],
        scope_id: 0,
        port: 0,
        family: 0,
    };

    fn new(addr: Option<SocketAddr>) -> Self {
        let mut ip = [0; 16];
        match addr {
            None => Self::NONE,
            Some(SocketAddr::V4(a)) => {
                ip[..4].copy_from_slice(&a.ip().octets());
                Self {
                    ip,
                    scope_id: 0,
                    port: a.port(),
                    family: 4,
                }
            }
            Some(SocketAddr::V6(a)) => Self {
                ip: a.ip().octets(),
                scope_id: a.scope_id(),
                port: a.port(),
                family: 6,
            },
        }
    }

    fn get(self) -> Option<SocketAddr> {
        match self.family {
            4 => {
                let [a, b, c, d, ..] = self.ip;
                Some(SocketAddr::from((Ipv4Addr::new(a, b, c, d), self.port)))
            }
            6 => Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(self.ip),
                self.port,
                0,
                self.scope_id,
            ))),
            _ => None,
        }
    }
}

/// The connection's mutable facts (under its own lock; never held while calling NDK).
struct Ctl<R> {
    phase: ConnState,
    /// Independent facts, one bit each ([`Facts`]): the disconnect callback fired, the
    /// provider gave a reason, the connection was disconnected locally, aborted, flushed, its
    /// terminal event set, a DISCONNECT answering the peer, requests flushed by the provider
    /// alone, the adapter gone, the objects released, a FLUSH pending, the pended request a
    /// DISCONNECT.
    facts: Facts,
    objects: Objects,
    /// Holders of object clones outside the lock; teardown waits for zero.
    users: Count,
    /// The provider's disconnect reason (NDKPI 2.1), if `has_reason`.
    reason: u32,
    /// The status of the terminal event, set once, when it is latched.
    terminal_status: NtStatus,
    /// Work requests posted and not yet completed.
    outstanding_receives: u32,
    outstanding_sends: u32,
    /// Completions reaped, by status: [receive, send] x [succeeded, cancelled, failed].
    reaped: [[u32; 3]; 2],
    /// Bytes the provider reported received, over the successful receives.
    received_bytes: u64,
    /// Bytes of the sends posted.
    send_bytes_posted: u64,
    /// The last failed completion: (status, NDKPI 2.1 provider error code).
    last_error: (NtStatus, u32),
    /// The CQ reported a fatal error or an overrun (its notification status, never success):
    /// nothing posted will complete. `SUCCESS`: none.
    cq_error: NtStatus,
    /// The posted buffers with their MRs (each buffer kept until its MR is closed).
    posted: Vec<(Mr, Arc<Buffer>)>,
    /// The pended CONNECT, or the graceful DISCONNECT waiting for `NdkDisconnect` to complete
    /// (`pending_is_disconnect`): one slot, as the two never pend at once (a DISCONNECT is
    /// refused while a CONNECT is stored, even one whose cancel routine is about to take it).
    pending: Option<R>,
    local: Addr,
    remote: Addr,
    ndk_version: (u16, u16),
}

/// A connection's independent facts, one bit each (they were twelve `bool`s: 10 B of a
/// record that every established connection carries).
#[derive(Clone, Copy, Default)]
struct Facts(u16);

impl Facts {
    const CALLBACK_FIRED: u16 = 1 << 0;
    const HAS_REASON: u16 = 1 << 1;
    const LOCAL_DISCONNECT: u16 = 1 << 2;
    const ABORTED: u16 = 1 << 3;
    const FLUSHED: u16 = 1 << 4;
    const TERMINAL_SET: u16 = 1 << 5;
    const ANSWERING_PEER: u16 = 1 << 6;
    const PROVIDER_FLUSHED: u16 = 1 << 7;
    const ADAPTER_GONE: u16 = 1 << 8;
    const RELEASED: u16 = 1 << 9;
    const FLUSH_PENDING: u16 = 1 << 10;
    const PENDING_IS_DISCONNECT: u16 = 1 << 11;

    fn get(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u16, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }

    /// Set `bit` to `on`; whether it was set.
    fn replace(&mut self, bit: u16, on: bool) -> bool {
        let was = self.get(bit);
        self.set(bit, on);
        was
    }
}

/// `name()` and `set_name(bool)` for each fact of [`Facts`].
macro_rules! facts {
    ($($get:ident, $set:ident = $bit:ident;)*) => {
        impl<R> Ctl<R> {
            $(
                #[allow(dead_code, reason = "some facts are only replaced")]
                fn $get(&self) -> bool {
                    self.facts.get(Facts::$bit)
                }

                #[allow(dead_code, reason = "some facts are only replaced")]
                fn $set(&mut self, on: bool) {
                    self.facts.set(Facts::$bit, on);
                }
            )*
        }
    };
}

facts! {
    callback_fired, set_callback_fired = CALLBACK_FIRED;
    has_reason, set_has_reason = HAS_REASON;
    local_disconnect, set_local_disconnect = LOCAL_DISCONNECT;
    aborted, set_aborted = ABORTED;
    flushed, set_flushed = FLUSHED;
    terminal_set, set_terminal_set = TERMINAL_SET;
    answering_peer, set_answering_peer = ANSWERING_PEER;
    provider_flushed, set_provider_flushed = PROVIDER_FLUSHED;
    adapter_gone, set_adapter_gone = ADAPTER_GONE;
    objects_released, set_objects_released = RELEASED;
    flush_pending, set_flush_pending = FLUSH_PENDING;
    pending_is_disconnect, set_pending_is_disconnect = PENDING_IS_DISCONNECT;
}

impl<R> Ctl<R> {
    /// The provider's disconnect reason, if it gave one.
    fn reason(&self) -> Option<u32> {
        self.has_reason().then_some(self.reason)
    }

    /// The CQ's fatal status, if it reported one.
    fn cq_error(&self) -> Option<NtStatus> {
        (self.cq_error != NtStatus::SUCCESS).then_some(self.cq_error)
    }

    /// Count reaped completions by queue and outcome. Returns the first failure (neither a
    /// success nor a flush), which means the provider put the QP in the error state.
    fn count_completions(&mut self, done: &[ndkpi::Completion]) -> Option<NtStatus> {
        // Flushes ndkdisc caused: FLUSH, its own NdkDisconnect, its own close.
        let ours = self.flushed() || self.local_disconnect() || self.users.tearing_down();
        let mut failure = None;
        for done in done {
            // The request context, never `kind`: NDKPI leaves the operation type undefined on
            // error completions.
            let queue = match done.request_context {
                CTX_RECEIVE => {
                    self.outstanding_receives = self.outstanding_receives.saturating_sub(1);
                    0
                }
                CTX_SEND => {
                    self.outstanding_sends = self.outstanding_sends.saturating_sub(1);
                    1
                }
                _ => continue,
            };
            let outcome = match done.status {
                NtStatus::SUCCESS => {
                    // BytesTransferred means something for receives only (NDK_RESULT).
                    if queue == 0 {
                        self.received_bytes =
                            self.received_bytes.saturating_add(u64::from(done.bytes));
                    }
                    0
                }
                NtStatus::CANCELLED => {
                    self.set_provider_flushed(self.provider_flushed() || !ours);
                    1
                }
                st => {
                    self.last_error = (st, done.provider_error);
                    failure.get_or_insert(st);
                    2
                }
            };
            let count = &mut self.reaped[queue][outcome];
            *count = count.saturating_add(1);
        }
        failure
    }

    /// Teardown closed every NDK object: nothing posted can complete any more. What the CQ did
    /// not report (it died, or the adapter went) counts as failed with the reason, so nothing
    /// stays outstanding for ever.
    fn released(&mut self) {
        let lost = [self.outstanding_receives, self.outstanding_sends];
        if lost != [0, 0] {
            let st = if self.adapter_gone() {
                NtStatus::DEVICE_REMOVED
            } else {
                // A live CQ reports every request a QP's close flushed; one that did not
                // broke that rule, and its requests were cancelled all the same.
                self.cq_error().unwrap_or(NtStatus::CANCELLED)
            };
            for (queue, n) in lost.into_iter().enumerate() {
                self.reaped[queue][2] = self.reaped[queue][2].saturating_add(n);
            }
            self.last_error = (st, 0);
        }
        self.outstanding_receives = 0;
        self.outstanding_sends = 0;
        self.set_objects_released(true);
    }
}

impl<R> Counted for Ctl<R> {
    fn count(&mut self) -> &mut Count {
        &mut self.users
    }
}

impl<R: PendedRequest> Ctl<R> {
    /// Take the pended CONNECT to complete it, unless its cancel routine owns it (then the
    /// cancel routine completes it: WDF's `WdfRequestUnmarkCancelable` rule).
    /// The caller then calls [`Conn::completing`].
    fn take_connect_request(&mut self) -> Option<R> {
        let request = self.connect_request()?;
        if request.unmark_cancelable().is_err() {
            return None;
        }
        self.pending.take()
    }

    /// The pended CONNECT, if the slot holds one.
    fn connect_request(&mut self) -> Option<&mut R> {
        let disconnect = self.pending_is_disconnect();
        self.pending.as_mut().filter(|_| !disconnect)
    }

    /// The pended graceful DISCONNECT, if the slot holds one.
    fn disconnect_request(&mut self) -> Option<&mut R> {
        let disconnect = self.pending_is_disconnect();
        self.pending.as_mut().filter(|_| disconnect)
    }

    /// Why a graceful DISCONNECT cannot start now (the status it completes with), or `None`.
    fn disconnect_refusal(&self) -> Option<NtStatus> {
        if self.pending.is_some() && !self.pending_is_disconnect() {
            // Established as its CONNECT was cancelled: the cancel routine is about to take the
            // CONNECT and abandon the connection.
            return Some(NtStatus::INVALID_DEVICE_STATE);
        }
        let start = match self.phase {
            ConnState::Connected => true,
            ConnState::Disconnected => {
                self.callback_fired()
                    && !self.local_disconnect()
                    && !self.aborted()
                    && self.pending.is_none()
            }
            _ => false,
        };
        if start {
            return None;
        }
        Some(match self.phase {
            ConnState::Connecting | ConnState::Failed => NtStatus::INVALID_DEVICE_STATE,
            _ => NtStatus::SUCCESS,
        })
    }

    /// Take the pended request if it is the one with `token` and of the kind asked for.
    fn take_pended(&mut self, token: u64, disconnect: bool) -> Option<R> {
        if self.pending_is_disconnect() == disconnect && self.pending.as_ref()?.token() == token {
            self.pending.take()
        } else {
            None
        }
    }
}

/// A connection.
pub(crate) struct Conn<P: Platform> {
    /// Its id and record index.
    pub(crate) index: ConnIndex,
    /// The interface of its adapter.
    pub(crate) if_index: u32,
    /// `Engine::adapter_removed` has handled it.
    removal_seen: AtomicBool,
    /// The handle, seen only through [`ConnOwner`] (its other items are private to the
    /// `owner` module).
    owner: Arc<HandleState<P>>,
    me: Weak<Self>,
    ctl: P::Lock<Ctl<P::Request>>,
    stepper: Stepper<P>,
    /// Its CONNECT was cancelled and the handle was asked to release it.
    abandoned: AtomicBool,
}

/// Release a connection whose CONNECT was cancelled: take it out of its handle's table, end it
/// and latch `Closed`. Nothing if CLOSE or handle cleanup took it first.
/// `// IRQL: PASSIVE_LEVEL` (the handle's abandon work item).
pub(crate) fn release_abandoned<P: Platform>(owner: &dyn ConnOwner<P>, id: u64) {
    if let Some(conn) = owner.forget(id) {
        Conn::end(&conn, Cause::LocalAbortive);
        conn.closed_event();
    }
}

impl<P: Platform> Conn<P> {
    pub(crate) fn new(
        owner: Arc<HandleState<P>>,
        index: ConnIndex,
        adapter: Arc<ndkpi::Adapter>,
        if_index: u32,
    ) -> Result<Arc<Self>, Error> {
        // The step session's wait lock. On failure the adapter is closed if this was its only
        // reference (a listener's shared adapter stays with the listener).
        let runtime = Arc::clone(owner.runtime());
        let platform = runtime.platform();
        let Some(stepper) = Stepper::<P>::new(platform) else {
            if let Some(a) = Arc::into_inner(adapter) {
                platform.wsk().close_adapter(a);
            }
            return Err(Error::NoResources);
        };
        let v = adapter.version();
        let ctl = Ctl {
            facts: Facts::default(),
            phase: ConnState::Connecting,
            objects: Objects {
                adapter: Some(adapter),
                ..Objects::default()
            },
            users: Count::default(),
            reason: 0,
            terminal_status: NtStatus::SUCCESS,
            outstanding_receives: 0,
            outstanding_sends: 0,
            reaped: [[0; 3]; 2],
            received_bytes: 0,
            send_bytes_posted: 0,
            last_error: (NtStatus::SUCCESS, 0),
            cq_error: NtStatus::SUCCESS,
            posted: Vec::new(),
            pending: None,
            local: Addr::NONE,
            remote: Addr::NONE,
            ndk_version: (v.Major, v.Minor),
        };
        // Kept to close the adapter if the connection cannot be allocated.
        let adapter = ctl.objects.adapter.clone();
        let lock = platform.lock(ctl);
        let made = Arc::try_new_cyclic(|me| Self {
            index,
            if_index,
            removal_seen: AtomicBool::new(false),
            owner,
            me: me.clone(),
            ctl: lock,
            stepper,
            abandoned: AtomicBool::new(false),
        });
        if made.is_err() {
            // The closure (with the objects' other reference) is gone: close the adapter if
            // this was its only reference, as above.
            if let Some(a) = adapter.and_then(Arc::into_inner) {
                platform.wsk().close_adapter(a);
            }
        }
        made.map_err(Error::from)
    }

    /// Trace `t` (to the platform's trace: ETW on Windows).
    fn trace(&self, t: &Trace) {
        self.runtime().platform().trace(t);
    }

    /// Trace an NDK callback of this connection.
    fn trace_callback(&self, callback: NdkCallback, status: NtStatus, reason: Option<u32>) {
        self.trace(&Trace::NdkCallback {
            id: self.id(),
            callback,
            status,
            reason,
        });
    }

    /// Its CONNECT was cancelled and its handle asked to release it.
    pub(crate) fn abandoning(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Its id.
    pub(crate) fn id(&self) -> u64 {
        self.index.id()
    }

    fn arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    fn runtime(&self) -> &Runtime<P> {
        self.owner.runtime()
    }

    /// An event of `kind` now (the queue fills in its sequence number).
    fn fact(&self, kind: EventKind) -> Event {
        Event::new(kind, self.id(), self.runtime().platform().now())
    }

    /// Create PD, CQ and QP on the connection's adapter. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn create_queue_pair(
        this: &Arc<Self>,
        receive_depth: u32,
        send_depth: u32,
    ) -> Result<(), Error> {
        // First: every object clone below is dropped before the session ends (see teardown).
        let session = this.stepper.session();
        if this.torn_down() {
            return Err(Error::Cancelled);
        }
        let adapter = this
            .ctl
            .with(|c| c.objects.adapter.clone())
            .ok_or(Error::InvalidState)?;
        let pd = if let Some(pd) = this.owner.shared_pd(&adapter) {
            pd
        } else {
            let pd = SharedPd::create(this.runtime().platform().as_ref(), &adapter)?;
            this.owner.offer_pd(this.if_index, &pd);
            pd
        };
        this.ctl.with(|c| c.objects.pd = Some(Arc::clone(&pd)));
        let depth = receive_depth.saturating_add(send_depth).max(1);
        let (st, cq) = session.run(|| adapter.create_cq(this, depth));
        let Some(Created::Cq(cq)) = cq else {
            return Err(Error::provider(st));
        };
        let cq = match Arc::try_new_returning(cq) {
            Ok(cq) => cq,
            Err(cq) => {
                session.run(|| cq.close(this));
                return Err(Error::NoResources);
            }
        };
        this.ctl.with(|c| c.objects.cq = Some(Arc::clone(&cq)));
        let qp_context = usize::try_from(this.id()).unwrap_or(0);
        let (st, qp) = session.run(|| {
            pd.pd.create_qp(
                this,
                &cq,
                qp_context,
                receive_depth.max(1),
                send_depth.max(1),
            );
        });
        let Some(Created::Qp(qp)) = qp else {
            return Err(Error::provider(st));
        };
        let qp = match Arc::try_new_returning(QueuePair::new(qp)) {
            Ok(pair) => pair,
            Err(pair) => {
                // Nothing attached yet: the QP comes back out.
                if let Ok(qp) = pair.into_qp() {
                    session.run(|| qp.close(this));
                }
                return Err(Error::NoResources);
            }
        };
        this.ctl.with(|c| c.objects.qp = Some(qp));
        // Completions are reaped from the CQ notification (the counts QUERY reports), which
        // cannot fire before this first arm: the reaper is free.
        this.reap_with(&cq, true, |_| {});
        Ok(())
    }

    /// The active side: create the connector and connect; the CONNECT request pends until
    /// established or failed. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn start_connect(
        this: &Arc<Self>,
        request: P::Request,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) {
        // First: the clones below are dropped before the session ends (see teardown).
        let session = this.stepper.session();
        if this.torn_down() {
            return this.fail_connect(Some(request), NtStatus::CANCELLED);
        }
        let adapter = this.ctl.with(|c| c.objects.adapter.clone());
        let Some(adapter) = adapter else {
            return this.fail_connect(Some(request), NtStatus::INVALID_DEVICE_STATE);
        };
        let (st, connector) = session.run(|| adapter.create_connector(this));
        let Some(Created::Connector(connector)) = connector else {
            // Release what the CONNECT opened now (teardown needs the session and the only
            // reference to each object), as when the QP cannot be created.
            drop(adapter);
            drop(session);
            this.fail_connect(Some(request), Error::provider(st).ntstatus());
            return Self::teardown(this);
        };
        let token = request.token();
        let registered = match Arc::try_new_returning(connector) {
            Ok(connector) => match this.owner.register_pended(token, this) {
                Ok(()) => Ok(connector),
                Err(e) => Err((Arc::into_inner(connector), e)),
            },
            Err(connector) => Err((Some(connector), Error::NoResources)),
        };
        let connector = match registered {
            Ok(connector) => connector,
            Err((connector, e)) => {
                // The connector was never stored: closed here, the rest by teardown.
                if let Some(connector) = connector {
                    session.run(|| connector.close(this));
                }
                drop(adapter);
                drop(session);
                this.fail_connect(Some(request), e.ntstatus());
                return Self::teardown(this);
            }
        };
        // Made cancelable where it is stored, under the lock its cancel routine takes.
        let stored = this.ctl.with(|c| {
            c.objects.connector = Some(Arc::clone(&connector));
            c.remote = Addr::new(Some(remote));
            // Ended meanwhile (handle cleanup, CLOSE, ABORT found nothing to complete yet):
            // the request is answered here and nothing is connected.
            if !matches!(c.phase, ConnState::Connecting) {
                return Err((request, false));
            }
            let mut request = request;
            if request.mark_cancelable().is_err() {
                return Err((request, true));
            }
            // INVARIANT: connecting, so no DISCONNECT was stored: the slot is free.
            c.pending = Some(request);
            c.set_pending_is_disconnect(false);
            Ok(c.objects.qp.clone())
        });
        match stored {
            // Completes in `completed(Op::Connect)`, possibly before this returns.
            Ok(Some(qp)) => connector.connect(this, qp.qp(), local, remote, 16, 16),
            Ok(None) => this.fail_connect(None, NtStatus::INVALID_DEVICE_STATE),
            Err((request, false)) => this.reply_connect(request, NtStatus::CANCELLED),
            // Cancelled while the objects were being created.
            Err((request, true)) => {
                this.owner.unregister_pended(token);
                request.complete(NtStatus::CANCELLED, 0);
                this.cancelled();
            }
        }
    }

    /// The passive side: accept the incoming connector with the connection's QP.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn start_accept(this: &Arc<Self>, connector: Connector) {
        // First: the clones below are dropped before the session ends (see teardown).
        let _session = this.stepper.session();
        if this.torn_down() {
            connector.close_detached();
            return this.fail_connect(None, NtStatus::CANCELLED);
        }
        let connector = match Arc::try_new_returning(connector) {
            Ok(connector) => connector,
            Err(connector) => {
                // Not registered with a sink yet: refused as the listener refuses.
                let _ = connector.reject();
                connector.close_detached();
                return this.fail_connect(None, NtStatus::INSUFFICIENT_RESOURCES);
            }
        };
        // NDK is never called under the connection's lock: a provider may hold its own lock
        // while it calls our disconnect callback, which takes ours.
        let (remote, local) = (connector.peer_address(), connector.local_address());
        let qp = this.ctl.with(|c| {
            c.remote = Addr::new(remote);
            c.local = Addr::new(local);
            c.objects.connector = Some(Arc::clone(&connector));
            c.objects.qp.clone()
        });
        match qp {
            Some(qp) => connector.accept(this, qp.qp(), 16, 16),
            None => this.fail_connect(None, NtStatus::INVALID_DEVICE_STATE),
        }
    }

    /// Connection failed before it was established: `ConnectFailed` (once), and the CONNECT
    /// request (if any) completes with the failure in its reply.
    pub(crate) fn fail_connect(&self, request: Option<P::Request>, st: NtStatus) {
        self.conclude(request, st, None, |_| {});
    }

    /// How the connection ends, decided and latched in one critical section so events follow
    /// states: still connecting -> `ConnectFailed` with `failure`; otherwise, when `otherwise`
    /// is given and the connection is not closed -> `Disconnected` with that cause and status.
    /// `first` runs in the same section (to record the NDK callback, or ABORT). A pended
    /// CONNECT (`request`, or the one stored) is answered with `failure`. Returns whether the
    /// connection failed here. `// IRQL: <= DISPATCH_LEVEL`; the lock is taken once.
    fn conclude(
        &self,
        request: Option<P::Request>,
        failure: NtStatus,
        otherwise: Option<(Cause, NtStatus)>,
        first: impl FnOnce(&mut Ctl<P::Request>),
    ) -> bool {
        // The terminal event's trace, written once the lock is released.
        let mut terminal = None;
        let (request, failed, ready) = self.ctl.with(|c| {
            first(c);
            let failed = matches!(c.phase, ConnState::Connecting);
            let fact = if failed {
                c.phase = ConnState::Failed;
                if !c.facts.replace(Facts::TERMINAL_SET, true) {
                    c.terminal_status = failure;
                    terminal = Some(Trace::Terminal {
                        id: self.id(),
                        kind: EventKind::ConnectFailed,
                        cause: None,
                        status: failure,
                    });
                }
                Some(Event {
                    status: failure,
                    ..self.fact(EventKind::ConnectFailed)
                })
            } else if let Some((cause, st)) =
                otherwise.filter(|_| !matches!(c.phase, ConnState::Closed))
            {
                // After `Closed` nothing more is latched: the record may serve another id.
                if !matches!(c.phase, ConnState::Failed) {
                    c.phase = ConnState::Disconnected;
                }
                if !c.facts.replace(Facts::TERMINAL_SET, true) {
                    c.terminal_status = st;
                    terminal = Some(Trace::Terminal {
                        id: self.id(),
                        kind: EventKind::Disconnected,
                        cause: Some(cause),
                        status: st,
                    });
                }
                // The work still posted when the connection ended: nothing was flushed for it.
                Some(Event {
                    cause: Some(cause),
                    status: st,
                    outstanding_receives: c.outstanding_receives,
                    outstanding_sends: c.outstanding_sends,
                    ..self.fact(EventKind::Disconnected)
                })
            } else {
                None
            };
            let ready = fact.and_then(|mut fact| {
                fact.callback_fired = c.callback_fired();
                // The provider put the QP (or CQ) in the error state: it flushes (or lost)
                // what is still posted; ndkdisc flushed nothing.
                fact.provider_flushes = matches!(otherwise, Some((Cause::TransportError, _)));
                fact.provider_reason = c.reason();
                self.owner.latch_in(self.index, fact)
            });
            (request.or_else(|| c.take_connect_request()), failed, ready)
        });
        if let Some(t) = terminal {
            self.trace(&t);
        }
        if let Some(ready) = ready {
            ready.complete();
            // The terminal record may have gone to an older any-connection WAIT.
            self.owner.complete_level_triggered(self.id());
        }
        if let Some(request) = request {
            self.reply_connect(request, failure);
        }
        failed
    }

    /// A pended CONNECT taken with `take_connect_request` is about to complete: it no longer
    /// needs finding by its cancel routine.
    fn completing(&self, request: &P::Request) {
        self.owner.unregister_pended(request.token());
    }

    fn reply_connect(&self, mut request: P::Request, st: NtStatus) {
        self.completing(&request);
        let (local, remote) = self.ctl.with(|c| (c.local.get(), c.remote.get()));
        let reply = ConnectReply {
            connection_id: self.id(),
            status: st,
            local,
            remote,
        };
        match reply.encode(request.output()) {
            Ok(n) => request.complete(NtStatus::SUCCESS, n),
            Err(e) => request.complete(e.ntstatus(), 0),
        }
    }

    fn established(&self, kind: EventKind) {
        let transition = self.ctl.with(|c| {
            if !matches!(c.phase, ConnState::Connecting) {
                return None;
            }
            c.phase = ConnState::Connected;
            // Latched with the transition: a disconnect racing it is latched after it.
            let ready = self.owner.latch_in(self.index, self.fact(kind));
            Some((c.take_connect_request(), c.local.get(), ready))
        });
        // Failed or abandoned first (a cancelled CONNECT, an abortive disconnect): the terminal
        // event is latched, and a late success is not an event.
        let Some((request, local, ready)) = transition else {
            // Backstop: a CONNECT still stored on it is answered (no latch: not connecting).
            return self.fail_connect(None, NtStatus::CANCELLED);
        };
        if let Some(ready) = ready {
            ready.complete();
        }
        if local.is_none() {
            let l = self
                .with_objects(|o| o.connector.as_ref().and_then(|c| c.local_address()))
                .flatten();
            self.ctl.with(|c| c.local = Addr::new(l));
        }
        if let Some(request) = request {
            self.reply_connect(request, NtStatus::SUCCESS);
        }
    }

    /// Teardown has run or is running. Checked at the start of every session that creates or
    /// stores objects: teardown needs the session too, so an object stored in a session that
    /// began before teardown is closed by it, and none is stored after.
    fn torn_down(&self) -> bool {
        self.ctl.with(|c| c.users.tearing_down())
    }

    /// Use the objects outside the lock, unless teardown has begun.
    fn with_objects<R>(&self, f: impl FnOnce(&Objects) -> R) -> Option<R> {
        Users::new(self.stepper.signal()).with(&self.ctl, |c| c.objects.clone(), f)
    }

    /// Latch the terminal `Disconnected` (a no-op if one was latched).
    fn disconnected_event(&self, cause: Cause, st: NtStatus) {
        // Only called once established (never connecting): `failure` is not used.
        self.conclude(None, NtStatus::CANCELLED, Some((cause, st)), |_| {});
    }

    /// DISCONNECT, graceful: `NdkDisconnect`. The request pends (cancelable) until the
    /// provider completes it — when the peer answered, or with `STATUS_IO_TIMEOUT` or an abort
    /// status — and completes with that status; on an established connection the terminal
    /// `Disconnected`/`Local` event carries it too. After a peer disconnect (the callback fired)
    /// the same call answers the peer's disconnect, completing the handshake the peer's
    /// `NdkDisconnect` waits for; the terminal event was already the peer's. Otherwise
    /// (connecting, or established just as its CONNECT was cancelled, which abandons it:
    /// `STATUS_INVALID_DEVICE_STATE`; already disconnecting or ended: success)
    /// it completes at once. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn disconnect(this: &Arc<Self>, request: P::Request) {
        // Refused before it is registered, so a DISCONNECT that will not pend takes no room in
        // the handle's registry (only one racing another on the same connection still does,
        // for a moment: the check is repeated under the lock).
        if let Some(st) = this.ctl.with(|c| c.disconnect_refusal()) {
            return request.complete(st, 0);
        }
        let token = request.token();
        if let Err(e) = this.owner.register_pended(token, this) {
            return request.complete(e.ntstatus(), 0);
        }
        let stored = this.ctl.with(|c| {
            if let Some(st) = c.disconnect_refusal() {
                return Err((request, st));
            }
            let mut request = request;
            if request.mark_cancelable().is_err() {
                return Err((request, NtStatus::CANCELLED));
            }
            // After the peer ended it, `NdkDisconnect` only answers the peer (its own outcome
            // may be the abort of a connection already gone).
            c.set_answering_peer(matches!(c.phase, ConnState::Disconnected));
            if matches!(c.phase, ConnState::Connected) {
                c.phase = ConnState::Disconnecting;
            }
            c.set_local_disconnect(true);
            // INVARIANT: checked above: the slot is free.
            c.pending = Some(request);
            c.set_pending_is_disconnect(true);
            Ok(())
        });
        if let Err((request, st)) = stored {
            this.owner.unregister_pended(token);
            return request.complete(st, 0);
        }
        let started = this
            .with_objects(|o| o.connector.as_ref().map(|c| c.disconnect(this)))
            .flatten();
        if started.is_none() {
            // Torn down meanwhile: nothing to disconnect.
            this.disconnect_done(NtStatus::CANCELLED);
        }
    }

    /// `NdkDisconnect` completed with `st`: latch `Disconnected`/`Local` (a no-op if the
    /// connection already ended) and answer the pended DISCONNECT with `st`.
    /// `// IRQL: <= DISPATCH_LEVEL`.
    fn disconnect_done(&self, st: NtStatus) {
        self.disconnected_event(Cause::Local, st);
        let request = self.ctl.with(|c| {
            let request = c.disconnect_request()?;
            if request.unmark_cancelable().is_err() {
                // Its cancel routine completes it.
                return None;
            }
            let st = if c.answering_peer() {
                NtStatus::SUCCESS
            } else {
                st
            };
            c.pending.take().map(|r| (r, st))
        });
        if let Some((request, st)) = request {
            self.owner.unregister_pended(request.token());
            request.complete(st, 0);
        }
    }

    /// The cancel routine's half of DISCONNECT cancellation: take the pended DISCONNECT if it
    /// is the request `token`. `NdkDisconnect` itself goes on. `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn take_cancelled_disconnect(&self, token: u64) -> Option<P::Request> {
        self.ctl.with(|c| c.take_pended(token, true))
    }

    /// The provider made the connection unusable (an error completion, a dead CQ): end it with
    /// `TransportError` and that status, once. `// IRQL: <= DISPATCH_LEVEL`.
    fn transport_error(&self, st: NtStatus) {
        self.conclude(None, st, Some((Cause::TransportError, st)), |_| {});
    }

    /// Whether `Engine::adapter_removed` has handled it (and mark it handled).
    pub(crate) fn removal_seen(&self) -> bool {
        self.removal_seen.swap(true, Ordering::AcqRel)
    }

    /// Its adapter went away: end it (`AdapterRemoved`, `STATUS_DEVICE_REMOVED`; a pending
    /// CONNECT fails with that status) and release its NDK objects so the adapter can close.
    /// The id stays until CLOSE. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn adapter_removed(this: &Arc<Self>) {
        // The terminal event keeps the counts as they were when the adapter went; teardown
        // then accounts for what was still posted.
        this.conclude(
            None,
            NtStatus::DEVICE_REMOVED,
            Some((Cause::AdapterRemoved, NtStatus::DEVICE_REMOVED)),
            |c| c.set_adapter_gone(true),
        );
        Self::teardown(this);
    }

    /// DISCONNECT abortive, ABORT, CLOSE and handle cleanup: latch the terminal event (if none
    /// yet) and release the NDK objects now. `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn end(this: &Arc<Self>, cause: Cause) {
        // Fails it if still connecting, else `Disconnected`; a pending CONNECT is answered with
        // STATUS_CANCELLED either way.
        this.conclude(
            None,
            NtStatus::CANCELLED,
            Some((cause, NtStatus::SUCCESS)),
            |c| c.set_aborted(c.aborted() || matches!(cause, Cause::Aborted)),
        );
        Self::teardown(this);
    }

    /// Close every NDK object, connector first, adapter last, waiting for each close. A second
    /// caller (CLOSE racing ABORT) waits for the first to finish, then finds nothing to close:
    /// when any teardown returns, every object of the connection is released.
    /// `// IRQL: PASSIVE_LEVEL`.
    pub(crate) fn teardown(this: &Arc<Self>) {
        let session = this.stepper.session();
        Users::new(this.stepper.signal()).wait_out(&this.ctl);
        let objects = this.ctl.with(|c| core::mem::take(&mut c.objects));
        // INVARIANT: object clones live only inside `with_objects` (users == 0 now) or inside a
        // session (we hold it), so each `into_inner` yields the object. A clone held elsewhere
        // would leave its object unclosed and every close after it waiting.
        if let Some(c) = sole(objects.connector) {
            session.run(|| c.close(this));
        }
        if let Some(q) = objects.qp.filter(|q| {
            let sole = Arc::is_unique(q);
            debug_assert!(
                sole,
                "the QP is still shared at teardown: it would never be closed"
            );
            sole
        }) {
            // INVARIANT: unique (checked just above, and nothing can clone it meanwhile), so
            // the close starts and its completion ends the session's step.
            session.run(|| {
                let _ = QueuePair::close(q, this);
            });
        }
        // The QP is closed, so no request uses the buffers: close their MRs, then free them.
        for (mr, buffer) in this.ctl.with(|c| core::mem::take(&mut c.posted)) {
            session.run(|| mr.close(this));
            drop(buffer);
        }
        if let Some(q) = sole(objects.cq) {
            // A QP's close stays pending while any of its requests is, and flushes them: what
            // was still posted has completed into the CQ by now. Count it before the CQ goes,
            // or it would stay outstanding for ever. The failure of a request flushed here
            // does not end the connection (teardown follows its end, or ends it).
            this.reap_with(&q, false, |done| {
                this.ctl.with(|c| {
                    let _ = c.count_completions(done);
                });
            });
            session.run(|| q.close(this));
        }
        // The PD may be shared with the handle's other connections on the adapter: the last
        // one closes it (and the adapter reference it kept).
        if let Some(pd) = objects.pd.and_then(Arc::into_inner) {
            pd.close(this.runtime().platform().wsk());
        }
        // The adapter alone may be shared: a listener and the connections it accepted hold it,
        // and the last of them closes it.
        if let Some(adapter) = objects.adapter.and_then(Arc::into_inner) {
            this.runtime().platform().wsk().close_adapter(adapter);
        }
        this.ctl.with(Ctl::released);
        // A FLUSH waiting for the requests teardown accounted for is done.
        this.flush_done_if_drained();
    }

    /// FLUSH: `NdkFlush` on the QP (the only flush ndkdisc ever makes). `Flushed` is latched
    /// when every request posted before it has completed (reaped from the CQ).
    ///
    /// # Errors
    /// [`Error::InvalidState`] while teardown is releasing the QP (afterwards FLUSH reports at once).
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.ctl.with(|c| {
            c.set_flushed(true);
            c.set_flush_pending(true);
        });
        let flushed = self
            .with_objects(|o| o.qp.as_ref().map(|qp| qp.qp().flush()))
            .flatten();
        if flushed.is_none() {
            // Without a QP there is nothing to flush: once teardown released the objects that
            // is done (nothing is outstanding); otherwise teardown is under way.
            // Decided in one critical section: teardown marks `released` and then answers a
            // pending FLUSH, so this FLUSH either sees `released` (and succeeds, with one
            // `Flushed`) or withdraws before teardown can answer it (and fails, with none).
            let released = self.ctl.with(|c| {
                if !c.objects_released() {
                    c.set_flush_pending(false);
                }
                c.objects_released()
            });
            if released {
                self.flush_done_if_drained();
                return Ok(());
            }
            return Err(Error::InvalidState);
        }
        // Done now if nothing is outstanding, or if the CQ died (nothing will complete).
        self.flush_done_if_drained();
        Ok(())
    }

    fn flush_done_if_drained(&self) {
        let ready = self.ctl.with(|c| {
            // A dead CQ completes nothing more: what it held is lost, and waiting would hang.
            let drained =
                c.cq_error().is_some() || (c.outstanding_receives == 0 && c.outstanding_sends == 0);
            let done = c.flush_pending() && drained;
            if !done || matches!(c.phase, ConnState::Closed) {
                return None;
            }
            c.set_flush_pending(false);
            // Latched with the state it reports (and never after `Closed`).
            self.owner
                .latch_in(self.index, self.fact(EventKind::Flushed))
        });
        if let Some(ready) = ready {
            ready.complete();
        }
    }

    /// POST: `count` receives or sends of `length` bytes, each in its own registered buffer.
    /// Receives may be posted in any state but after CLOSE (they stay posted across a peer
    /// disconnect); sends only when connected. `// IRQL: PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`Error::InvalidState`] (sends when not connected; anything after CLOSE),
    /// [`Error::NoResources`], or the provider's failure to register or post.
    pub(crate) fn post(
        this: &Arc<Self>,
        kind: PostKind,
        count: u32,
        length: u32,
    ) -> Result<(), Error> {
        // Teardown cannot begin while the MRs are being registered: it waits for the session.
        let session = this.stepper.session();
        let (phase, pd) = this.ctl.with(|c| (c.phase, c.objects.pd.clone()));
        let Some(pd) = pd else {
            return Err(Error::InvalidState);
        };
        if matches!(kind, PostKind::Send) && !matches!(phase, ConnState::Connected) {
            return Err(Error::InvalidState);
        }
        for _ in 0..count {
            // Room to keep this buffer, made first: past the post nothing may fail. Grown
            // outside the lock (the session keeps teardown away from it meanwhile).
            let mut posted = this.ctl.with(|c| core::mem::take(&mut c.posted));
            let room = posted.try_reserve(1);
            this.ctl.with(|c| c.posted = posted);
            if room.is_err() {
                return Err(Error::NoResources);
            }
            let Some(memory) = this.runtime().platform().memory(length as usize) else {
                return Err(Error::NoResources);
            };
            let (st, mr) = session.run(|| pd.pd.create_mr(this));
            let Some(Created::Mr(mut mr)) = mr else {
                return Err(Error::provider(st));
            };
            let Ok(memory) = Arc::try_new(memory) else {
                session.run(|| mr.close(this));
                return Err(Error::NoResources);
            };
            // The MR keeps the memory until its close completes.
            let (st, _) = session.run(|| mr.register(this, Arc::clone(&memory)));
            if st != NtStatus::SUCCESS {
                session.run(|| mr.close(this));
                return Err(Error::Provider(st));
            }
            let Ok(buffer) = Arc::try_new(Buffer::new(memory, mr.local_token())) else {
                session.run(|| mr.close(this));
                return Err(Error::NoResources);
            };
            let ctx = match kind {
                PostKind::Receive => CTX_RECEIVE,
                PostKind::Send => CTX_SEND,
            };
            let posted = this.with_objects(|o| {
                let qp = o.qp.as_ref()?;
                let Some(index) = qp.attach(Arc::clone(&buffer)) else {
                    // No memory to keep the buffer with the QP: nothing posted.
                    return Some(NtStatus::INSUFFICIENT_RESOURCES);
                };
                this.ctl.with(|c| match kind {
                    PostKind::Receive => c.outstanding_receives += 1,
                    PostKind::Send => c.outstanding_sends += 1,
                });
                // Posts run in the step session, so the queue is never held by another.
                let st = match kind {
                    PostKind::Receive => qp
                        .receive_queue()
                        .map(|mut q| q.post_receive(index, 0, length, ctx)),
                    PostKind::Send => qp
                        .initiator_queue()
                        .map(|mut q| q.post_send(index, 0, length, ctx)),
                }
                .unwrap_or(NtStatus::INVALID_DEVICE_STATE);
                if st != NtStatus::SUCCESS {
                    this.ctl.with(|c| match kind {
                        PostKind::Receive => c.outstanding_receives -= 1,
                        PostKind::Send => c.outstanding_sends -= 1,
                    });
                } else if matches!(kind, PostKind::Send) {
                    this.ctl.with(|c| {
                        c.send_bytes_posted = c.send_bytes_posted.saturating_add(u64::from(length));
                    });
                }
                Some(st)
            });
            // INVARIANT: room for one was reserved above, in this session: no allocation.
            this.ctl.with(|c| c.posted.push((mr, buffer)));
            match posted.flatten() {
                Some(NtStatus::SUCCESS) => {}
                Some(st) => return Err(Error::Provider(st)),
                None => return Err(Error::InvalidState),
            }
        }
        Ok(())
    }

    /// Reap completions and re-arm. `// IRQL: <= DISPATCH_LEVEL` (the CQ notification, which
    /// the provider serialises per CQ). Counts completions by status; a flushed completion
    /// nobody here asked for is the provider's flush; any other failure means the provider put
    /// the QP in the error state, which ends the connection (`TransportError`).
    fn reap(&self) {
        let mut failure = None;
        let _ = self.with_objects(|o| {
            let Some(cq) = o.cq.as_ref() else { return };
            self.reap_with(cq, true, |done| {
                self.ctl.with(|c| {
                    if let Some(st) = c.count_completions(done) {
                        failure.get_or_insert(st);
                    }
                });
            });
        });
        if let Some(st) = failure {
            self.transport_error(st);
        }
        self.flush_done_if_drained();
    }

    /// Take every completion from `cq`, a batch at a time through `each`, and with `arm` re-arm
    /// it unless it failed (teardown, about to close it, does not). Another context reaping it
    /// (a notification firing on another thread as the holder re-arms) makes this return at
    /// once, and the holder goes round again. `// IRQL: <= DISPATCH_LEVEL`.
    fn reap_with(&self, cq: &Cq, arm: bool, mut each: impl FnMut(&[ndkpi::Completion])) {
        let Some(mut reaper) = cq.reaper() else {
            return;
        };
        loop {
            let mut buf = [ndkpi::Completion::default(); 16];
            loop {
                let n = reaper.results(&mut buf);
                each(&buf[..n]);
                if n < buf.len() {
                    break;
                }
            }
            // A dead CQ reports nothing more: arming it again is pointless.
            if arm && self.ctl.with(|c| c.cq_error().is_none()) {
                reaper.arm(ndkpi::sys::NDK_CQ_NOTIFY_ANY);
            }
            match reaper.release() {
                Ok(()) => break,
                Err(again) => reaper = again,
            }
        }
    }

    /// The cancel routine's half of CONNECT cancellation: take the pended CONNECT if it is the
    /// request `token` (the request is completed by the caller). `// IRQL: <= DISPATCH_LEVEL`.
    pub(crate) fn take_cancelled_connect(&self, token: u64) -> Option<P::Request> {
        self.ctl.with(|c| c.take_pended(token, false))
    }

    /// The CONNECT was cancelled: latch `ConnectFailed`/`STATUS_CANCELLED` if it was still
    /// connecting, and release the connection at `PASSIVE_LEVEL` (its id is gone once `Closed`
    /// is queued). `// IRQL: <= DISPATCH_LEVEL`; never allocates.
    pub(crate) fn cancelled(&self) {
        self.fail_connect(None, NtStatus::CANCELLED);
        if !self.abandoned.swap(true, Ordering::AcqRel) {
            self.owner.abandon(self.id());
        }
    }

    /// Mark closed (after teardown) and latch `Closed`.
    pub(crate) fn closed_event(&self) {
        self.trace(&Trace::ConnectionClosed { id: self.id() });
        let ready = self.ctl.with(|c| {
            c.phase = ConnState::Closed;
            self.owner
                .latch_in(self.index, self.fact(EventKind::Closed))
        });
        if let Some(ready) = ready {
            ready.complete();
        }
    }

    /// QUERY.
    pub(crate) fn query(&self) -> QueryReply {
        self.ctl.with(|c| QueryReply {
            connection_id: self.id(),
            state: c.phase,
            callback_fired: c.callback_fired(),
            provider_reason: c.reason(),
            local_disconnect: c.local_disconnect(),
            aborted: c.aborted(),
            flushed: c.flushed(),
            provider_flushed: c.provider_flushed(),
            cq_failed: c.cq_error().is_some(),
            outstanding_receives: c.outstanding_receives,
            outstanding_sends: c.outstanding_sends,
            ndk_version: c.ndk_version,
            terminal_status: c.terminal_status,
            local: c.local.get(),
            remote: c.remote.get(),
            receives_succeeded: c.reaped[0][0],
            receives_cancelled: c.reaped[0][1],
            sends_succeeded: c.reaped[1][0],
            sends_cancelled: c.reaped[1][1],
            receives_failed: c.reaped[0][2],
            sends_failed: c.reaped[1][2],
            last_error_status: c.last_error.0,
            last_provider_error: c.last_error.1,
            received_bytes: c.received_bytes,
            send_bytes_posted: c.send_bytes_posted,
        })
    }
}

/// Request contexts of posted work (the QP context carries the connection).
const CTX_RECEIVE: usize = 1;
const CTX_SEND: usize = 2;

/// The object out of its last `Arc` (see the invariant in `Conn::teardown`).
fn sole<T>(object: Option<Arc<T>>) -> Option<T> {
    let object = Arc::into_inner(object?);
    debug_assert!(
        object.is_some(),
        "an NDK object is still shared at teardown: it would never be closed"
    );
    object
}

impl<P: Platform> Sink for Conn<P> {
    // IRQL: <= DISPATCH_LEVEL. Drives establishment; never waits or closes.
    fn completed(&self, op: Op, st: NtStatus, created: Option<Created>) {
        self.trace_callback(NdkCallback::Completion(op), st, None);
        match op {
            Op::Connect => {
                let Some(me) = self.arc() else { return };
                if st != NtStatus::SUCCESS {
                    return self.fail_connect(None, st);
                }
                // Abandoned meanwhile (cancelled, closed): teardown closes the connector.
                if !self.ctl.with(|c| matches!(c.phase, ConnState::Connecting)) {
                    // Backstop: a CONNECT still stored on it is answered (no latch: not connecting).
                    return self.fail_connect(None, NtStatus::CANCELLED);
                }
                let started = self
                    .with_objects(|o| o.connector.as_ref().map(|c| c.complete_connect(&me)))
                    .flatten();
                if started.is_none() {
                    self.fail_connect(None, NtStatus::CANCELLED);
                }
            }
            Op::CompleteConnect => {
                if st == NtStatus::SUCCESS {
                    self.established(EventKind::Connected);
                } else {
                    self.fail_connect(None, st);
                }
            }
            Op::Accept => {
                if st == NtStatus::SUCCESS {
                    self.established(EventKind::Accepted);
                } else {
                    self.fail_connect(None, st);
                }
            }
            Op::Disconnect => self.disconnect_done(st),
            _ => self.stepper.finish(op, st, created),
        }
    }

    fn closed(&self, op: Op) {
        self.trace_callback(NdkCallback::Closed(op), NtStatus::SUCCESS, None);
        self.stepper.finish(op, NtStatus::SUCCESS, None);
    }

    // IRQL: <= DISPATCH_LEVEL. STATUS_BUFFER_OVERFLOW (overrun) or STATUS_INTERNAL_ERROR
    // (fatal): the CQ and its QP are dead (NDK_FN_CQ_NOTIFICATION_CALLBACK).
    fn cq_notified(&self, st: NtStatus) {
        self.trace_callback(NdkCallback::CqNotification, st, None);
        if st != NtStatus::SUCCESS {
            // Recorded in the same critical section that ends the connection.
            self.conclude(None, st, Some((Cause::TransportError, st)), |c| {
                if c.cq_error().is_none() {
                    c.cq_error = st;
                }
            });
        }
        self.reap();
    }

    // IRQL: <= DISPATCH_LEVEL. The event path: latch, complete a wait; nothing else.
    fn disconnected(&self, reason: Option<u32>) {
        self.trace_callback(NdkCallback::Disconnect, NtStatus::SUCCESS, reason);
        let mut first = false;
        // One critical section: record the callback, and end the connection — failed if the
        // callback raced the CompleteConnect or Accept completion, else `Disconnected`/`Peer`.
        self.conclude(
            None,
            NtStatus::CONNECTION_DISCONNECTED,
            Some((Cause::Peer, NtStatus::SUCCESS)),
            |c| {
                first = !c.callback_fired();
                c.set_callback_fired(true);
                if first {
                    c.reason = reason.unwrap_or(0);
                    c.set_has_reason(reason.is_some());
                }
            },
        );
        let runtime = self.runtime();
        if !first {
            runtime.count(|c| &c.duplicate_callbacks);
        }
        runtime.count(|c| &c.disconnect_callbacks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_what_the_abi_reports_in_24_bytes() {
        assert_eq!(size_of::<Addr>(), 24);
        let v6 = SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4), 4791, 0, 9);
        for addr in [
            None,
            Some(SocketAddr::from(([192, 0, 2, 255], 65535))),
            Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            Some(SocketAddr::V6(v6)),
            Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 1))),
        ] {
            assert_eq!(Addr::new(addr).get(), addr);
        }
        // The flow label is not kept (the ABI has no field for it).
        let labelled = SocketAddrV6::new(*v6.ip(), v6.port(), 77, v6.scope_id());
        assert_eq!(
            Addr::new(Some(SocketAddr::V6(labelled))).get(),
            Some(SocketAddr::V6(v6))
        );
    }
}
