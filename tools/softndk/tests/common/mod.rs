//! Test harness: a consumer written directly against the raw ndkpi-sys tables, as a C
//! consumer would be, with small helpers so each test reads like its scenario.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the harness"
)]
#![allow(
    clippy::pedantic,
    reason = "test harness: casts between ABI integer types are intended"
)]

use std::collections::VecDeque;
use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use ndkpi_sys::*;
pub use softndk::Completion;
use softndk::{Fabric, FabricConfig, HostConfig, HostId, MisusePolicy, SoftMdl};

pub const WAIT: Duration = Duration::from_secs(10);
pub const V11: NDK_VERSION = NDK_VERSION { Major: 1, Minor: 1 };
pub const V12: NDK_VERSION = NDK_VERSION { Major: 1, Minor: 2 };
pub const V21: NDK_VERSION = NDK_VERSION { Major: 2, Minor: 1 };

/// Access an object's dispatch table.
pub trait Obj: Sized {
    type D: 'static;
    fn table(ptr: *mut Self) -> &'static Self::D;
}

macro_rules! obj {
    ($t:ty, $d:ty) => {
        impl Obj for $t {
            type D = $d;
            fn table(ptr: *mut Self) -> &'static $d {
                // SAFETY: `ptr` is a live object the provider returned; it set Dispatch first.
                let table = unsafe { (*ptr).Dispatch };
                // SAFETY: softndk's dispatch tables are statics.
                unsafe { &*table }
            }
        }
    };
}
obj!(NDK_ADAPTER, NDK_ADAPTER_DISPATCH);
obj!(NDK_PD, NDK_PD_DISPATCH);
obj!(NDK_CQ, NDK_CQ_DISPATCH);
obj!(NDK_QP, NDK_QP_DISPATCH);
obj!(NDK_CONNECTOR, NDK_CONNECTOR_DISPATCH);
obj!(NDK_LISTENER, NDK_LISTENER_DISPATCH);
obj!(NDK_MR, NDK_MR_DISPATCH);

pub fn d<T: Obj>(ptr: *mut T) -> &'static T::D {
    T::table(ptr)
}

/// The header of an object (for the close functions).
pub fn hdr<T>(ptr: *mut T) -> *mut NDK_OBJECT_HEADER {
    ptr.cast()
}

/// The version written in an object's header.
pub fn header_version<T>(ptr: *mut T) -> NDK_VERSION {
    // SAFETY: live object; the header is at offset 0.
    unsafe { (*hdr(ptr)).Version }
}

// --- completion slots -----------------------------------------------------------------------

/// An object pointer carried between the provider's threads and the test thread, keeping its
/// provenance (so Miri checks every access through it).
#[derive(Clone, Copy, Debug)]
pub struct SendPtr(pub *mut c_void);

// SAFETY: softndk objects may be used from any thread (NDK callbacks run on arbitrary
// threads); the wrapper only moves the pointer, never dereferences it.
unsafe impl Send for SendPtr {}
// SAFETY: as above; shared access only copies the pointer.
unsafe impl Sync for SendPtr {}

impl Default for SendPtr {
    fn default() -> Self {
        Self(std::ptr::null_mut())
    }
}

#[derive(Default, Debug)]
pub struct SlotState {
    pub calls: u32,
    pub status: Option<NTSTATUS>,
    pub object: usize,
    pub object_ptr: SendPtr,
    pub thread: Option<ThreadId>,
    /// Set by the test after the initiating call returned; the callback records its value.
    pub returned: bool,
    pub ran_before_return: bool,
}

/// Captures one completion (request, create or close).
#[derive(Default)]
pub struct Slot {
    pub state: Mutex<SlotState>,
    cv: Condvar,
}

/// Every slot ever made. A completion callback may still be inside `Slot::record` (on the
/// worker thread) when the waiting test thread wakes up and drops its handle: NDK requires a
/// context to outlive the callback's *return*, not just its signal, so slots are never freed.
static KEEP_ALIVE: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// A recorder the provider calls back with the recorder's address as the context: made
/// shared, and passed as that context (it must outlive every callback to it).
pub trait Recorder: Default {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn ctx(self: &Arc<Self>) -> PVOID {
        Arc::as_ptr(self).cast_mut().cast()
    }
}

impl Recorder for Slot {
    fn new() -> Arc<Self> {
        let slot = Arc::new(Self::default());
        KEEP_ALIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::clone(&slot));
        slot
    }
}
impl Recorder for Events {}
impl Recorder for Incoming {}
impl Recorder for Notes {}

/// Wait on `cv` until `ready` holds for the value `m` guards; panics with `what` when
/// [`WAIT`] passes without it.
#[track_caller]
fn wait_for<'a, T>(
    m: &'a Mutex<T>,
    cv: &Condvar,
    ready: impl Fn(&T) -> bool,
    what: &str,
) -> std::sync::MutexGuard<'a, T> {
    let mut g = m.lock().unwrap();
    while !ready(&g) {
        let (next, t) = cv.wait_timeout(g, WAIT).unwrap();
        g = next;
        assert!(!t.timed_out() || ready(&g), "{what}");
    }
    g
}

impl Slot {
    fn record(&self, status: NTSTATUS, object: *mut c_void) {
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        s.status = Some(status);
        s.object = object.addr();
        s.object_ptr = SendPtr(object);
        s.thread = Some(std::thread::current().id());
        s.ran_before_return = !s.returned;
        self.cv.notify_all();
    }

    pub fn mark_returned(&self) {
        self.state.lock().unwrap().returned = true;
    }

    /// Wait for the callback; panics after [`WAIT`].
    pub fn wait(&self) -> NTSTATUS {
        let s = wait_for(
            &self.state,
            &self.cv,
            |s| s.calls > 0,
            "completion callback never came",
        );
        s.status.unwrap()
    }

    pub fn calls(&self) -> u32 {
        self.state.lock().unwrap().calls
    }

    pub fn object(&self) -> usize {
        self.state.lock().unwrap().object
    }

    pub fn object_ptr<T>(&self) -> *mut T {
        self.state.lock().unwrap().object_ptr.0.cast()
    }

    /// The request's final status: the inline status, or the callback's if it pended.
    pub fn resolve(&self, returned: NTSTATUS) -> NTSTATUS {
        self.mark_returned();
        if returned == NtStatus::PENDING {
            self.wait()
        } else {
            returned
        }
    }
}

fn slot<'a>(ctx: PVOID) -> &'a Slot {
    // SAFETY: every ctx given with these callbacks is `Slot::ctx` of an Arc the test keeps
    // alive until the completion arrived.
    unsafe { &*ctx.cast::<Slot>() }
}

pub unsafe extern "system" fn on_request(ctx: PVOID, status: NTSTATUS) {
    slot(ctx).record(status, std::ptr::null_mut());
}

pub unsafe extern "system" fn on_create(ctx: PVOID, status: NTSTATUS, obj: *mut NDK_OBJECT_HEADER) {
    slot(ctx).record(status, obj.cast());
}

pub unsafe extern "system" fn on_close(ctx: PVOID) {
    slot(ctx).record(NtStatus::SUCCESS, std::ptr::null_mut());
}

// --- event recorders --------------------------------------------------------------------------

/// Records disconnect callbacks: `None` for the plain form, `Some(reason)` for Ex.
#[derive(Default)]
pub struct Events {
    pub disconnects: Mutex<Vec<Option<u32>>>,
    cv: Condvar,
    /// Run inside the disconnect callback, before it is recorded.
    pub hook: Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl Events {
    pub fn count(&self) -> usize {
        self.disconnects.lock().unwrap().len()
    }
    pub fn all(&self) -> Vec<Option<u32>> {
        self.disconnects.lock().unwrap().clone()
    }
    pub fn wait_count(&self, n: usize) {
        let what = format!("expected {n} disconnect callbacks");
        drop(wait_for(
            &self.disconnects,
            &self.cv,
            |v| v.len() >= n,
            &what,
        ));
    }
}

fn events<'a>(ctx: PVOID) -> &'a Events {
    // SAFETY: ctx is `Events::ctx` of an Arc the test keeps alive longer than the connector.
    unsafe { &*ctx.cast::<Events>() }
}

pub unsafe extern "system" fn on_disconnect(ctx: PVOID) {
    let e = events(ctx);
    e.disconnects.lock().unwrap().push(None);
    e.cv.notify_all();
}

pub unsafe extern "system" fn on_disconnect_ex(ctx: PVOID, reason: u32) {
    let e = events(ctx);
    if let Some(hook) = e.hook.lock().unwrap().as_ref() {
        hook();
    }
    e.disconnects.lock().unwrap().push(Some(reason));
    e.cv.notify_all();
}

/// Only `told` got disconnect callbacks, exactly `reasons` (`None` for the plain form,
/// `Some(reason)` for the Ex form); `quiet` got none.
#[track_caller]
pub fn assert_only_told(told: &Events, reasons: &[Option<u32>], quiet: &Events, what: &str) {
    assert_eq!(told.all(), reasons, "{what}: the callbacks of the end told");
    assert_eq!(quiet.count(), 0, "{what}: the end not called back");
}

/// Records connect events (the new connectors).
#[derive(Default)]
pub struct Incoming {
    pub conns: Mutex<VecDeque<SendPtr>>,
    cv: Condvar,
}

impl Incoming {
    pub fn len(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
    pub fn next(&self) -> *mut NDK_CONNECTOR {
        let mut q = wait_for(&self.conns, &self.cv, |q| !q.is_empty(), "no connect event");
        q.pop_front().unwrap().0.cast()
    }
}

pub unsafe extern "system" fn on_connect_event(ctx: PVOID, conn: *mut NDK_CONNECTOR) {
    // SAFETY: ctx is `Incoming::ctx` of an Arc the test keeps alive.
    let inc = unsafe { &*ctx.cast::<Incoming>() };
    inc.conns.lock().unwrap().push_back(SendPtr(conn.cast()));
    inc.cv.notify_all();
}

/// Records CQ notifications.
#[derive(Default)]
pub struct Notes {
    pub statuses: Mutex<Vec<NTSTATUS>>,
}

impl Notes {
    pub fn all(&self) -> Vec<NTSTATUS> {
        self.statuses.lock().unwrap().clone()
    }
}

pub unsafe extern "system" fn on_cq(ctx: PVOID, status: NTSTATUS) {
    // SAFETY: ctx is `Notes::ctx` of an Arc the test keeps alive.
    let notes = unsafe { &*ctx.cast::<Notes>() };
    notes.statuses.lock().unwrap().push(status);
}

// --- the network ------------------------------------------------------------------------------

/// The provider's timeouts for tests that answer in time: long enough never to race a test on a
/// loaded machine or under Miri (whose clock runs with the instructions it executes); the tests
/// of the timeouts themselves set short ones.
pub fn patient() -> softndk::Timing {
    softndk::Timing {
        disconnect_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(60),
        ..softndk::Timing::default()
    }
}

pub struct Net {
    pub fabric: Fabric,
    pub hosts: [HostId; 2],
    pub v4: [IpAddr; 2],
    pub v6: [IpAddr; 2],
}

impl Net {
    pub fn new(completion: Completion) -> Self {
        Self::with(completion, MisusePolicy::Panic, V21, V21)
    }

    pub fn with(
        completion: Completion,
        misuse: MisusePolicy,
        max_a: NDK_VERSION,
        max_b: NDK_VERSION,
    ) -> Self {
        Self::with_config(
            FabricConfig {
                completion,
                misuse,
                timing: patient(),
                ..FabricConfig::default()
            },
            max_a,
            max_b,
        )
    }

    /// A network in `mode` with kinder-than-hardware behaviour switched on: the caller says why.
    pub fn kind(mode: Completion, kindness: softndk::Kindness) -> Self {
        Self::with_config(
            FabricConfig {
                completion: mode,
                kindness,
                timing: patient(),
                ..FabricConfig::default()
            },
            V21,
            V21,
        )
    }

    /// [`Net::kind`] with `Kindness::instant_disconnect`, for tests about what follows a
    /// disconnect rather than when `NdkDisconnect` completes (each says so at its use).
    pub fn instant_disconnect(mode: Completion) -> Self {
        Self::kind(
            mode,
            softndk::Kindness {
                instant_disconnect: true,
                ..softndk::Kindness::default()
            },
        )
    }

    /// A network with every fabric setting chosen by the test (timeouts, kindness).
    pub fn with_config(config: FabricConfig, max_a: NDK_VERSION, max_b: NDK_VERSION) -> Self {
        Self::with_hosts(config, |h| {
            let max = if h.if_index == 1 { max_a } else { max_b };
            h.max_version(max.Major, max.Minor)
        })
    }

    /// A network whose two hosts the test adjusts (`shape` gets each default host config).
    pub fn with_hosts(config: FabricConfig, shape: impl Fn(HostConfig) -> HostConfig) -> Self {
        let fabric = Fabric::new(config);
        let v4 = [
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        ];
        let v6 = [
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        ];
        let a = fabric.add_host(shape(HostConfig::new(1, [v4[0], v6[0]])));
        let b = fabric.add_host(shape(HostConfig::new(2, [v4[1], v6[1]])));
        Self {
            fabric,
            hosts: [a, b],
            v4,
            v6,
        }
    }

    pub fn open(&self, if_index: u32, version: NDK_VERSION) -> *mut NDK_ADAPTER {
        self.fabric
            .open_adapter(if_index, version)
            .expect("open adapter")
    }

    /// Wait until no callback is owed (worker-thread mode).
    pub fn settle(&self) {
        assert!(self.fabric.wait_idle(WAIT), "fabric did not become idle");
    }
}

/// A Windows-layout SOCKADDR for `addr` (AF_INET6 = 23), as bytes plus length.
pub struct Sock {
    storage: SOCKADDR_STORAGE,
    pub len: u32,
}

impl Sock {
    pub fn new(addr: SocketAddr) -> Self {
        let mut storage = SOCKADDR_STORAGE::default();
        let p = std::ptr::from_mut(&mut storage);
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = SOCKADDR_IN {
                    sin_family: AF_INET,
                    sin_port: a.port().to_be(),
                    sin_addr: IN_ADDR {
                        S_un: a.ip().octets(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: SOCKADDR_STORAGE is larger and more aligned than SOCKADDR_IN.
                unsafe { p.cast::<SOCKADDR_IN>().write(sin) };
                size_of::<SOCKADDR_IN>()
            }
            SocketAddr::V6(a) => {
                let sin6 = SOCKADDR_IN6 {
                    sin6_family: AF_INET6,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: IN6_ADDR { u: a.ip().octets() },
                    sin6_scope_id: 0,
                };
                // SAFETY: SOCKADDR_STORAGE is larger and more aligned than SOCKADDR_IN6.
                unsafe { p.cast::<SOCKADDR_IN6>().write(sin6) };
                size_of::<SOCKADDR_IN6>()
            }
        };
        Self {
            storage,
            len: len as u32,
        }
    }

    pub fn ptr(&self) -> *const SOCKADDR {
        std::ptr::from_ref(&self.storage).cast()
    }

    pub fn empty() -> Self {
        Self {
            storage: SOCKADDR_STORAGE::default(),
            len: 128,
        }
    }

    pub fn ptr_mut(&mut self) -> *mut SOCKADDR {
        std::ptr::from_mut(&mut self.storage).cast()
    }

    /// Decode what a provider wrote.
    pub fn decode(&self) -> SocketAddr {
        let p = std::ptr::from_ref(&self.storage);
        match self.storage.ss_family {
            AF_INET => {
                // SAFETY: the family says a SOCKADDR_IN was written.
                let sin = unsafe { p.cast::<SOCKADDR_IN>().read() };
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(sin.sin_addr.S_un)),
                    u16::from_be(sin.sin_port),
                )
            }
            AF_INET6 => {
                // SAFETY: the family says a SOCKADDR_IN6 was written.
                let sin6 = unsafe { p.cast::<SOCKADDR_IN6>().read() };
                SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.u)),
                    u16::from_be(sin6.sin6_port),
                )
            }
            f => panic!("unexpected family {f}"),
        }
    }
}

/// A 128-byte, 8-aligned out-buffer filled with 0xA5, to see what a provider wrote into it.
#[repr(C, align(8))]
pub struct Scribble(pub [u8; 128]);

impl Scribble {
    pub fn new() -> Self {
        Self([0xA5; 128])
    }

    /// The buffer as the out-pointer a call takes, or null when `null`.
    pub fn ptr<T>(&mut self, null: bool) -> *mut T {
        if null {
            std::ptr::null_mut()
        } else {
            std::ptr::from_mut(self).cast()
        }
    }

    /// Nothing was written.
    pub fn untouched(&self) -> bool {
        self.0.iter().all(|b| *b == 0xA5)
    }
}

// --- creates ----------------------------------------------------------------------------------

/// Start a create call (given the completion context and the out-pointer, it returns the inline
/// status): the slot its completion goes to, the inline status, and `*ppObject`.
pub fn start_create<T>(
    call: impl FnOnce(PVOID, *mut *mut T) -> NTSTATUS,
) -> (Arc<Slot>, NTSTATUS, *mut T) {
    let s = Slot::new();
    let mut obj: *mut T = std::ptr::null_mut();
    let st = call(s.ctx(), &raw mut obj);
    s.mark_returned();
    (s, st, obj)
}

/// Run a create call and return the object, whichever way it completes.
pub fn created<T>(call: impl FnOnce(PVOID, *mut *mut T) -> NTSTATUS) -> Result<*mut T, NTSTATUS> {
    let (s, st, obj) = start_create(call);
    match st {
        NtStatus::SUCCESS => Ok(obj),
        NtStatus::PENDING => {
            let status = s.wait();
            if status == NtStatus::SUCCESS {
                Ok(s.object_ptr())
            } else {
                Err(status)
            }
        }
        other => Err(other),
    }
}

// The create calls, for `created`, `start_create` and the tests' own ways of running them. Each
// completes to `on_create` with the context it is given; the caller keeps the objects it passes
// (and any context, such as `notes` or `incoming`) alive as long as the new object.

/// The create-side callbacks, as the NDK function-pointer types.
const ON_CREATE: NDK_FN_CREATE_COMPLETION = Some(on_create);
const ON_CQ: NDK_FN_CQ_NOTIFICATION_CALLBACK = Some(on_cq);
const ON_CONNECT_EVENT: NDK_FN_CONNECT_EVENT_CALLBACK = Some(on_connect_event);

/// `NdkCreatePd` on `adapter`.
pub fn pd_create(adapter: *mut NDK_ADAPTER) -> impl FnOnce(PVOID, *mut *mut NDK_PD) -> NTSTATUS {
    let f = d(adapter).NdkCreatePd.unwrap();
    // SAFETY: live adapter; valid callback, context and out-pointer.
    move |ctx, pp| unsafe { f(adapter, Some(on_create), ctx, pp) }
}

/// `NdkCreateCq` of `depth` entries on `adapter`, notifying `notes`.
pub fn cq_create(
    adapter: *mut NDK_ADAPTER,
    depth: u32,
    notes: &Arc<Notes>,
) -> impl FnOnce(PVOID, *mut *mut NDK_CQ) -> NTSTATUS + use<> {
    let f = d(adapter).NdkCreateCq.unwrap();
    let (notes, affinity) = (notes.ctx(), std::ptr::null_mut());
    // SAFETY: live adapter; valid callbacks, contexts (`notes` outlives the CQ) and out-pointer.
    move |ctx, pp| unsafe { f(adapter, depth, ON_CQ, notes, affinity, ON_CREATE, ctx, pp) }
}

/// `NdkCreateQp` on `pd` with `cq` for both queues, `QPContext` `qp_ctx`, queues `depth` deep,
/// `sge` SGEs per request on each and `inline` bytes of inline data.
pub fn qp_create(
    pd: *mut NDK_PD,
    cq: *mut NDK_CQ,
    qp_ctx: usize,
    (depth, sge, inline): (u32, u32, u32),
) -> impl FnOnce(PVOID, *mut *mut NDK_QP) -> NTSTATUS {
    let f = d(pd).NdkCreateQp.unwrap();
    let qctx = std::ptr::without_provenance_mut(qp_ctx);
    // SAFETY: live PD and CQ; valid callback, context and out-pointer.
    move |ctx, pp| unsafe {
        f(
            pd,
            cq,
            cq,
            qctx,
            depth,
            depth,
            sge,
            sge,
            inline,
            Some(on_create),
            ctx,
            pp,
        )
    }
}

/// `NdkCreateConnector` on `adapter`.
pub fn connector_create(
    adapter: *mut NDK_ADAPTER,
) -> impl FnOnce(PVOID, *mut *mut NDK_CONNECTOR) -> NTSTATUS {
    let f = d(adapter).NdkCreateConnector.unwrap();
    // SAFETY: live adapter; valid callback, context and out-pointer.
    move |ctx, pp| unsafe { f(adapter, Some(on_create), ctx, pp) }
}

/// `NdkCreateListener` on `adapter`, its connect events going to `incoming`.
pub fn listener_create(
    adapter: *mut NDK_ADAPTER,
    incoming: &Arc<Incoming>,
) -> impl FnOnce(PVOID, *mut *mut NDK_LISTENER) -> NTSTATUS + use<> {
    let f = d(adapter).NdkCreateListener.unwrap();
    let incoming = incoming.ctx();
    // SAFETY: live adapter; valid callbacks, contexts (`incoming` outlives the listener) and
    // out-pointer.
    move |ctx, pp| unsafe { f(adapter, ON_CONNECT_EVENT, incoming, ON_CREATE, ctx, pp) }
}

/// `NdkCreateMr` (not fast-register) on `pd`.
pub fn mr_create(pd: *mut NDK_PD) -> impl FnOnce(PVOID, *mut *mut NDK_MR) -> NTSTATUS {
    let f = d(pd).NdkCreateMr.unwrap();
    // SAFETY: live PD; valid callback, context and out-pointer.
    move |ctx, pp| unsafe { f(pd, FALSE, Some(on_create), ctx, pp) }
}

/// Run a create call in `Completion::Manual`: it pends, nothing is called back before
/// `deliver()`, and then exactly one successful completion brings the object.
pub fn manual_create<T>(net: &Net, call: impl FnOnce(PVOID, *mut *mut T) -> NTSTATUS) -> *mut T {
    let (s, st, _) = start_create(call);
    assert_eq!(st, NtStatus::PENDING, "Manual mode: every create pends");
    assert_eq!(s.calls(), 0, "Manual mode: no callback before deliver()");
    assert!(
        net.fabric.deliver() >= 1,
        "deliver() ran the create completion"
    );
    assert_eq!(s.calls(), 1);
    assert_eq!(s.wait(), NtStatus::SUCCESS);
    s.object_ptr()
}

pub fn create_pd(adapter: *mut NDK_ADAPTER) -> *mut NDK_PD {
    created(pd_create(adapter)).expect("create PD")
}

pub fn try_create_cq(
    adapter: *mut NDK_ADAPTER,
    depth: u32,
    notes: &Arc<Notes>,
) -> Result<*mut NDK_CQ, NTSTATUS> {
    created(cq_create(adapter, depth, notes))
}

pub fn create_cq(adapter: *mut NDK_ADAPTER, depth: u32, notes: &Arc<Notes>) -> *mut NDK_CQ {
    try_create_cq(adapter, depth, notes).expect("create CQ")
}

pub fn create_qp(pd: *mut NDK_PD, cq: *mut NDK_CQ, qp_ctx: usize) -> *mut NDK_QP {
    created(qp_create(pd, cq, qp_ctx, (64, 4, 64))).expect("create QP")
}

pub fn create_connector(adapter: *mut NDK_ADAPTER) -> *mut NDK_CONNECTOR {
    created(connector_create(adapter)).expect("create connector")
}

pub fn create_listener(adapter: *mut NDK_ADAPTER, incoming: &Arc<Incoming>) -> *mut NDK_LISTENER {
    created(listener_create(adapter, incoming)).expect("create listener")
}

pub fn listen(listener: *mut NDK_LISTENER, addr: SocketAddr) -> NTSTATUS {
    let sock = Sock::new(addr);
    let s = Slot::new();
    let f = d(listener).NdkListen.unwrap();
    // SAFETY: live listener; the address buffer outlives the call; valid callback/context.
    let st = unsafe { f(listener, sock.ptr(), sock.len, Some(on_request), s.ctx()) };
    s.resolve(st)
}

/// Close any object (not the adapter) and return when its close has completed.
pub fn close<T>(obj: *mut T, close_fn: NDK_FN_CLOSE_OBJECT) -> NTSTATUS {
    let s = Slot::new();
    // SAFETY: live object; valid callback and context.
    let st = unsafe { close_fn.unwrap()(hdr(obj), Some(on_close), s.ctx()) };
    s.resolve(st)
}

// --- one end of a connection --------------------------------------------------------------------

pub struct End {
    pub adapter: *mut NDK_ADAPTER,
    pub pd: *mut NDK_PD,
    pub cq: *mut NDK_CQ,
    pub qp: *mut NDK_QP,
    pub conn: *mut NDK_CONNECTOR,
    pub events: Arc<Events>,
    pub notes: Arc<Notes>,
}

impl End {
    /// Adapter, PD, CQ (depth 256) and QP; the connector comes later.
    pub fn new(net: &Net, if_index: u32, version: NDK_VERSION) -> Self {
        let adapter = net.open(if_index, version);
        let pd = create_pd(adapter);
        let notes = Notes::new();
        let cq = create_cq(adapter, 256, &notes);
        let qp = create_qp(pd, cq, 0x1000 + if_index as usize);
        Self::of(adapter, pd, (cq, notes), qp)
    }

    /// An end of objects the test made itself (the CQ with the notes it notifies); the
    /// connector comes later.
    pub fn of(
        adapter: *mut NDK_ADAPTER,
        pd: *mut NDK_PD,
        (cq, notes): (*mut NDK_CQ, Arc<Notes>),
        qp: *mut NDK_QP,
    ) -> Self {
        Self {
            adapter,
            pd,
            cq,
            qp,
            conn: std::ptr::null_mut(),
            events: Events::new(),
            notes,
        }
    }

    pub fn version(&self) -> NDK_VERSION {
        header_version(self.adapter)
    }

    /// Close everything, connector first, adapter last, waiting for each close. A null
    /// connector or QP (never made, or already closed by the test) is skipped.
    pub fn teardown(self, net: &Net) {
        self.teardown_with_listener(net, None);
    }

    /// [`End::teardown`], closing `listener` (if any) right after the connector.
    pub fn teardown_with_listener(self, net: &Net, listener: Option<*mut NDK_LISTENER>) {
        if !self.conn.is_null() {
            close(self.conn, d(self.conn).NdkCloseConnector);
        }
        if let Some(listener) = listener {
            close(listener, d(listener).NdkCloseListener);
        }
        if !self.qp.is_null() {
            close(self.qp, d(self.qp).NdkCloseQp);
        }
        close(self.cq, d(self.cq).NdkCloseCq);
        close(self.pd, d(self.pd).NdkClosePd);
        net.settle();
        net.fabric.close_adapter(self.adapter);
    }

    pub fn qp_stats(&self, net: &Net) -> softndk::QpStats {
        net.fabric.qp_stats(self.qp).expect("qp stats")
    }
}

/// The callbacks the test ends register, as the NDK function-pointer types.
const ON_REQUEST: NDK_FN_REQUEST_COMPLETION = Some(on_request);
const ON_DISCONNECT: NDK_FN_DISCONNECT_EVENT_CALLBACK = Some(on_disconnect);
const ON_DISCONNECT_EX: NDK_FN_DISCONNECT_EVENT_CALLBACK_EX = Some(on_disconnect_ex);

/// Register the disconnect callback the way the version allows.
pub fn complete_connect(end: &End) -> NTSTATUS {
    let s = Slot::new();
    let t = d(end.conn);
    let (conn, ev, done) = (end.conn, end.events.ctx(), s.ctx());
    let st = if end.version() >= V21 {
        let f = t.NdkCompleteConnectEx.unwrap();
        // SAFETY: live connector; valid callbacks and contexts.
        unsafe { f(conn, ON_DISCONNECT_EX, ev, ON_REQUEST, done) }
    } else {
        let f = t.NdkCompleteConnect.unwrap();
        // SAFETY: as above.
        unsafe { f(conn, ON_DISCONNECT, ev, ON_REQUEST, done) }
    };
    s.resolve(st)
}

/// Start an accept; returns the slot (accept completes only after the active side's
/// complete-connect) and the inline status.
pub fn start_accept(end: &End, data: &[u8]) -> (Arc<Slot>, NTSTATUS) {
    let s = Slot::new();
    let t = d(end.conn);
    let (p, n) = (data.as_ptr().cast::<c_void>(), data.len() as u32);
    let (conn, qp, ev, done) = (end.conn, end.qp, end.events.ctx(), s.ctx());
    let st = if end.version() >= V21 {
        let f = t.NdkAcceptEx.unwrap();
        // SAFETY: live connector and QP; data outlives the call; valid callbacks and contexts.
        unsafe { f(conn, qp, 8, 8, p, n, ON_DISCONNECT_EX, ev, ON_REQUEST, done) }
    } else {
        let f = t.NdkAccept.unwrap();
        // SAFETY: as above.
        unsafe { f(conn, qp, 8, 8, p, n, ON_DISCONNECT, ev, ON_REQUEST, done) }
    };
    s.mark_returned();
    (s, st)
}

/// Start a connect; returns the slot and the inline status.
pub fn start_connect(end: &End, dst: SocketAddr, data: &[u8]) -> (Arc<Slot>, NTSTATUS) {
    let s = Slot::new();
    let src = Sock::new(SocketAddr::new(
        if dst.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        },
        0,
    ));
    let dst = Sock::new(dst);
    let (p, n) = (data.as_ptr().cast::<c_void>(), data.len() as u32);
    // SAFETY: live connector and QP; the addresses and data outlive the call; valid callback.
    let st = unsafe {
        d(end.conn).NdkConnect.unwrap()(
            end.conn,
            end.qp,
            src.ptr(),
            src.len,
            dst.ptr(),
            dst.len,
            8,
            8,
            p,
            n,
            Some(on_request),
            s.ctx(),
        )
    };
    s.mark_returned();
    (s, st)
}

/// A listener on host B and an established connection A -> B.
pub struct Pair {
    pub a: End,
    pub b: End,
    pub listener: *mut NDK_LISTENER,
    pub incoming: Arc<Incoming>,
}

impl Pair {
    pub fn connect(net: &Net, va: NDK_VERSION, vb: NDK_VERSION) -> Self {
        Self::connect_to(net, va, vb, SocketAddr::new(net.v4[1], 4791))
    }

    pub fn connect_to(net: &Net, va: NDK_VERSION, vb: NDK_VERSION, dst: SocketAddr) -> Self {
        let a = End::new(net, 1, va);
        let b = End::new(net, 2, vb);
        Self::establish(a, b, dst, (b"hello", b"welcome"))
    }

    /// Connect `a` to a listener of `b` on `dst`, with the private data `(connect, accept)`:
    /// listen, connect, accept, complete-connect, each of which must succeed.
    pub fn establish(mut a: End, mut b: End, dst: SocketAddr, data: (&[u8], &[u8])) -> Self {
        let incoming = Incoming::new();
        let listener = create_listener(b.adapter, &incoming);
        assert_eq!(listen(listener, dst), NtStatus::SUCCESS);
        a.conn = create_connector(a.adapter);
        let (cs, cst) = start_connect(&a, dst, data.0);
        b.conn = incoming.next();
        let (acc, ast) = start_accept(&b, data.1);
        assert_eq!(cs.resolve(cst), NtStatus::SUCCESS, "connect");
        assert_eq!(complete_connect(&a), NtStatus::SUCCESS, "complete connect");
        assert_eq!(acc.resolve(ast), NtStatus::SUCCESS, "accept");
        Self {
            a,
            b,
            listener,
            incoming,
        }
    }

    /// Tear down and prove nothing is left ([`assert_no_leak`]).
    pub fn finish(self, net: &Net, what: &str) {
        self.teardown(net);
        assert_no_leak(net, what);
    }

    /// The fabric made `callbacks` disconnect callbacks in all; then [`Pair::finish`].
    #[track_caller]
    pub fn finish_after_callbacks(self, net: &Net, callbacks: u64, what: &str) {
        let made = net.fabric.stats().disconnect_callbacks;
        assert_eq!(made, callbacks, "{what}");
        self.finish(net, what);
    }

    /// Nobody was called back: no disconnect callback on the fabric, none recorded by either
    /// end.
    #[track_caller]
    pub fn assert_nobody_told(&self, net: &Net, what: &str) {
        assert_eq!(
            net.fabric.stats().disconnect_callbacks,
            0,
            "{what}: no disconnect callback"
        );
        assert_eq!(
            self.a.events.count() + self.b.events.count(),
            0,
            "{what}: neither end called back"
        );
    }

    /// Tear down A, then B with the listener.
    pub fn teardown(self, net: &Net) {
        let Pair { a, b, listener, .. } = self;
        a.teardown(net);
        b.teardown_with_listener(net, Some(listener));
    }
}

/// Assert that every NDK object (and LAM) of the fabric has been closed.
pub fn assert_no_leak(net: &Net, what: &str) {
    net.settle();
    assert_eq!(
        net.fabric.live_objects(),
        0,
        "{what}: {:?}",
        net.fabric.live_by_kind()
    );
}

/// The final status of a request that returned `returned`, asserting it completed inline (no
/// callback) or through exactly one callback.
#[track_caller]
pub fn resolved_once(net: &Net, slot: &Slot, returned: NTSTATUS, what: &str) -> NTSTATUS {
    let status = slot.resolve(returned);
    net.settle();
    assert_eq!(
        slot.calls(),
        u32::from(returned == NtStatus::PENDING),
        "{what}: returned {returned:#x}; it must complete inline or through exactly one callback"
    );
    status
}

/// `NdkDisconnect`, resolved, asserting it completed inline or through exactly one callback.
pub fn disconnect_once(net: &Net, conn: *mut NDK_CONNECTOR) -> NTSTATUS {
    let s = Slot::new();
    // SAFETY: live connector; valid callback, and the slot outlives its completion.
    let st = unsafe { d(conn).NdkDisconnect.unwrap()(conn, Some(on_request), s.ctx()) };
    resolved_once(net, &s, st, "NdkDisconnect")
}

/// [`disconnect_once`] on `conn` ends with `expected`.
#[track_caller]
pub fn assert_disconnect(net: &Net, conn: *mut NDK_CONNECTOR, expected: NTSTATUS, what: &str) {
    assert_eq!(disconnect_once(net, conn), expected, "{what}");
}

/// `NdkDisconnect`, resolved.
pub fn disconnect(conn: *mut NDK_CONNECTOR) -> NTSTATUS {
    let s = Slot::new();
    // SAFETY: live connector; valid callback and context.
    let st = unsafe { d(conn).NdkDisconnect.unwrap()(conn, Some(on_request), s.ctx()) };
    s.resolve(st)
}

// --- buffers ------------------------------------------------------------------------------------

/// Test-owned memory that a provider may also read and write through the pointer registered
/// in an MDL. Every view (`&[u8]`, `&mut [u8]`, SGE addresses, the MDL) is derived from one raw
/// root pointer, so taking a view never invalidates the provider's pointer (as a `Box<[u8]>`,
/// which asserts uniqueness when moved or mutably borrowed, would).
pub struct Mem {
    root: std::ptr::NonNull<u8>,
    len: usize,
}

impl Mem {
    pub fn zeroed(len: usize) -> Self {
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let root = std::ptr::NonNull::new(Box::into_raw(boxed).cast::<u8>()).expect("non-null box");
        Self { root, len }
    }

    /// The root pointer; every access derives from it.
    pub fn root(&self) -> *mut u8 {
        self.root.as_ptr()
    }
}

impl std::ops::Deref for Mem {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `root` owns `len` initialised bytes until drop; the view is derived from it.
        unsafe { std::slice::from_raw_parts(self.root.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Mem {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` excludes other views from safe code.
        unsafe { std::slice::from_raw_parts_mut(self.root.as_ptr(), self.len) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.root.as_ptr(), self.len);
        // SAFETY: allocated by `Box::into_raw` in `zeroed` with this length; dropped once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// A buffer registered in an MR of `pd`.
pub struct Buf {
    pub data: Mem,
    pub mdl: Box<SoftMdl>,
    pub mr: *mut NDK_MR,
    pub token: u32,
    pub remote_token: u32,
}

impl Buf {
    pub fn new(pd: *mut NDK_PD, len: usize, flags: u32) -> Self {
        let data = Mem::zeroed(len);
        let mdl = SoftMdl::new(data.root(), len as u32);
        let mr = created(mr_create(pd)).expect("create MR");
        let s = Slot::new();
        // SAFETY: live MR; the MDL describes `data`, which lives as long as the Buf.
        let st = unsafe {
            d(mr).NdkRegisterMr.unwrap()(mr, mdl.as_mdl(), len, flags, Some(on_request), s.ctx())
        };
        assert_eq!(s.resolve(st), NtStatus::SUCCESS, "register MR");
        // SAFETY: live, registered MR.
        let token = unsafe { d(mr).NdkGetLocalTokenFromMr.unwrap()(mr) };
        // SAFETY: as above.
        let remote_token = unsafe { d(mr).NdkGetRemoteTokenFromMr.unwrap()(mr) };
        Self {
            data,
            mdl,
            mr,
            token,
            remote_token,
        }
    }

    pub fn sge(&mut self, offset: usize, len: u32) -> NDK_SGE {
        NDK_SGE {
            Address: NDK_SGE_ADDRESS {
                VirtualAddress: self.data.root().wrapping_add(offset).cast(),
            },
            Length: len,
            MemoryRegionToken: self.token,
        }
    }

    pub fn close(self) {
        close(self.mr, d(self.mr).NdkCloseMr);
    }
}

pub fn post_receive(qp: *mut NDK_QP, sge: &NDK_SGE, ctx: usize) -> NTSTATUS {
    // SAFETY: live QP; one valid SGE.
    unsafe { d(qp).NdkReceive.unwrap()(qp, std::ptr::without_provenance_mut(ctx), sge, 1) }
}

pub fn post_send(qp: *mut NDK_QP, sge: &NDK_SGE, ctx: usize, flags: u32) -> NTSTATUS {
    // SAFETY: live QP; one valid SGE.
    unsafe { d(qp).NdkSend.unwrap()(qp, std::ptr::without_provenance_mut(ctx), sge, 1, flags) }
}

/// `NdkReceive` of one SGE, which the provider must accept.
#[track_caller]
pub fn receive_ok(qp: *mut NDK_QP, sge: &NDK_SGE, ctx: usize) {
    assert_eq!(
        post_receive(qp, sge, ctx),
        NtStatus::SUCCESS,
        "NdkReceive {ctx:#x}"
    );
}

/// `NdkSend` of one SGE, which the provider must accept.
#[track_caller]
pub fn send_ok(qp: *mut NDK_QP, sge: &NDK_SGE, ctx: usize, flags: u32) {
    assert_eq!(
        post_send(qp, sge, ctx, flags),
        NtStatus::SUCCESS,
        "NdkSend {ctx:#x}"
    );
}

/// Drain `cq`, which must hold exactly one completion, and return it.
#[track_caller]
pub fn poll_one(cq: *mut NDK_CQ, what: &str) -> NDK_RESULT_EX {
    let got = poll(cq);
    assert_eq!(got.len(), 1, "{what}: exactly one completion, got {got:?}");
    got[0]
}

/// Assert a completion's status and request context.
#[track_caller]
pub fn assert_completion(r: &NDK_RESULT_EX, status: NTSTATUS, ctx: usize, what: &str) {
    assert_eq!(
        (r.Status, r.RequestContext.addr()),
        (status, ctx),
        "{what}: (status, request context)"
    );
}

pub fn flush(qp: *mut NDK_QP) {
    // SAFETY: live QP.
    unsafe { d(qp).NdkFlush.unwrap()(qp) }
}

/// Drain a CQ with NdkGetCqResultsEx.
pub fn poll(cq: *mut NDK_CQ) -> Vec<NDK_RESULT_EX> {
    let mut out = Vec::new();
    loop {
        let mut buf = [NDK_RESULT_EX {
            Status: NtStatus::SUCCESS,
            BytesTransferred: 0,
            QPContext: std::ptr::null_mut(),
            RequestContext: std::ptr::null_mut(),
            Type: 0,
            ProviderErrorCode: 0,
            TypeSpecificCompletionOutput: 0,
        }; 8];
        // SAFETY: live CQ; the array holds 8 results.
        let n = unsafe { d(cq).NdkGetCqResultsEx.unwrap()(cq, buf.as_mut_ptr(), 8) };
        out.extend_from_slice(&buf[..n as usize]);
        if n < 8 {
            return out;
        }
    }
}

pub fn arm(cq: *mut NDK_CQ, kind: u32) {
    // SAFETY: live CQ.
    unsafe { d(cq).NdkArmCq.unwrap()(cq, kind) }
}

/// The seeded mix of completion modes the tests use.
pub const RANDOM: Completion = Completion::Random { seed: 7 };

/// The hardware-like mode the tests use: callbacks on several provider threads at once.
pub const HARDWARE: Completion = Completion::Hardware {
    seed: 7,
    threads: 2,
};

/// Every completion mode a semantic test should hold in.
#[cfg(not(miri))]
pub const MODES: [Completion; 5] = [
    Completion::Synchronous,
    Completion::Inline,
    Completion::Thread,
    RANDOM,
    HARDWARE,
];

/// Under Miri (about 100x slower) a smaller set: inline, and the seeded mix, which itself
/// completes synchronously, inline and on the worker thread.
#[cfg(miri)]
pub const MODES: [Completion; 2] = [Completion::Inline, RANDOM];

/// One `#[test]` per completion mode of [`MODES`] for each named `fn(Completion)`: the test
/// `name::thread` runs `name(Completion::Thread)`, so a failure names its mode. The form
/// `per_mode!(name = body(args))` names the tests `name::*` and runs `body(mode, args)`; the
/// form `per_mode!(name in { test: mode, .. })` runs `name` in the modes listed, one test
/// each. Under Miri only the modes of its smaller [`MODES`] run; the others are ignored.
#[allow(unused_macros, reason = "some test binaries run in one mode only")]
macro_rules! per_mode {
    ($name:ident = $body:ident($($arg:expr),*)) => {
        per_mode!(@tests $name = $body ($($arg),*) {
            #[cfg_attr(miri, ignore = "Miri runs the inline and seeded-mix modes only")]
            synchronous: Completion::Synchronous,
            inline: Completion::Inline,
            #[cfg_attr(miri, ignore = "Miri runs the inline and seeded-mix modes only")]
            thread: Completion::Thread,
            random: $crate::common::RANDOM,
            #[cfg_attr(miri, ignore = "Miri runs the inline and seeded-mix modes only")]
            hardware: $crate::common::HARDWARE,
        });
    };
    ($name:ident in { $($modes:tt)* }) => {
        per_mode!(@tests $name = $name () { $($modes)* });
    };
    (@tests $name:ident = $body:ident $args:tt {
        $($(#[$attr:meta])* $test:ident: $mode:expr),+ $(,)?
    }) => {
        mod $name {
            #[allow(unused_imports, reason = "not every list of modes names one")]
            use softndk::Completion;
            $(
                #[test]
                $(#[$attr])*
                fn $test() {
                    $crate::common::per_mode!(@call super::$body, $mode, $args);
                }
            )+
        }
    };
    (@call $body:path, $mode:expr, ($($arg:expr),*)) => {
        $body($mode $(, $arg)*)
    };
    ($($name:ident),+ $(,)?) => {$(
        per_mode!($name = $name());
    )+};
}
#[allow(unused_imports, reason = "some test binaries run in one mode only")]
pub(crate) use per_mode;
