//! The engine's ports over std: locks that stand in for spin locks, auto-reset signals, wait
//! locks, a passive-level worker thread that runs the engine's drainer, pended requests with
//! WDF's cancel semantics, and a file handle.

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

use ndkdisc_abi::NtStatus;
use ndkdisc_core::kalloc::Arc as KArc;
use ndkdisc_core::ports::{
    AdapterDesc, Cancelled, Lock, PendedRequest, Platform, SharedPassive, Signal, Trace, WaitLock,
};
use ndkdisc_core::{Access, Engine, Owner};

use crate::memory::SoftMemory;

std::thread_local! {
    static LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
    static CALLBACK_LOCK_HOOK: RefCell<Option<CallbackLockHook>> = const { RefCell::new(None) };
}

/// See [`on_callback_lock`].
pub type CallbackLockHook = Box<dyn FnMut()>;

/// Test hook: on the current thread, run `hook` just before each engine lock that an NDK
/// callback takes when it holds no other (`None` removes it). A test can stop a callback at each
/// point where it is about to take a lock and land another thread's action exactly there —
/// a systematic, sleep-free way to stage a race between a callback and an IOCTL. The hook runs
/// outside every engine lock; it must not take one itself.
pub fn on_callback_lock(hook: Option<CallbackLockHook>) {
    CALLBACK_LOCK_HOOK.with(|h| *h.borrow_mut() = hook);
}

fn run_callback_lock_hook() {
    if LOCKS_HELD.with(Cell::get) != 0 || !softndk::in_provider_callback() {
        return;
    }
    let _ = CALLBACK_LOCK_HOOK.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut()
            && let Some(hook) = h.as_mut()
        {
            hook();
        }
    });
}

/// A spin lock stand-in that records that the thread is at raised IRQL while it is held.
pub struct HostLock<T>(Mutex<T>);

impl<T: Send> Lock<T> for HostLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        run_callback_lock_hook();
        LOCKS_HELD.with(|n| n.set(n.get() + 1));
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A spin lock's body runs at DISPATCH_LEVEL: it must not allocate, and it must not call
        // NDK (softndk reports a call made while the consumer holds its lock).
        let scope = softndk::alloc_check::forbid();
        let held = softndk::consumer_lock::enter();
        let result = f(&mut guard);
        drop(held);
        drop(scope);
        drop(guard);
        LOCKS_HELD.with(|n| n.set(n.get() - 1));
        result
    }
}

/// An auto-reset event.
#[derive(Default)]
pub struct HostSignal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal for HostSignal {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        assert_passive("waiting");
        let mut set = wait_until(&self.set, &self.cv, true);
        *set = false;
    }
}

/// Panic, as a bugcheck would, unless the thread may block (`PASSIVE_LEVEL`): not inside an NDK
/// callback (`DISPATCH_LEVEL`), not holding an engine lock (a spin lock).
fn assert_passive(what: &str) {
    assert!(
        !softndk::in_provider_callback(),
        "IRQL violation: {what} at PASSIVE_LEVEL from inside an NDK callback (DISPATCH_LEVEL)"
    );
    assert!(
        LOCKS_HELD.with(Cell::get) == 0,
        "IRQL violation: {what} while holding a spin lock"
    );
}

/// Block until `*flag == value`, returning with `flag` locked. A wait that lasts 5 s is
/// reported (once) with what the provider is waiting for: a step that takes seconds is stuck.
fn wait_until<'a>(flag: &'a Mutex<bool>, cv: &Condvar, value: bool) -> MutexGuard<'a, bool> {
    let mut guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
    let mut reported = false;
    while *guard != value {
        let (next, timeout) = cv
            .wait_timeout(guard, Duration::from_secs(5))
            .unwrap_or_else(PoisonError::into_inner);
        guard = next;
        if timeout.timed_out() && *guard != value && !reported {
            reported = true;
            eprintln!(
                "ndkdisc host: a passive-level wait on thread {:?} has lasted 5 s; provider state:\n{}",
                std::thread::current().name(),
                softndk::describe_stuck()
            );
        }
    }
    guard
}

/// A WDF wait lock stand-in over a std mutex: acquiring blocks, so it asserts `PASSIVE_LEVEL`
/// as [`HostSignal::wait`] does; holding it does not raise the (simulated) IRQL.
#[derive(Default)]
pub struct HostWaitLock {
    held: Mutex<bool>,
    cv: Condvar,
}

/// Holds a [`HostWaitLock`] until dropped.
pub struct HostWaitGuard<'a>(&'a HostWaitLock);

impl WaitLock for HostWaitLock {
    type Guard<'a> = HostWaitGuard<'a>;

    fn acquire(&self) -> HostWaitGuard<'_> {
        assert_passive("acquiring a wait lock");
        let mut held = wait_until(&self.held, &self.cv, false);
        *held = true;
        HostWaitGuard(self)
    }
}

impl Drop for HostWaitGuard<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.0.cv.notify_one();
    }
}

/// Tell `engine` when softndk removes an adapter ([`softndk::Fabric::on_adapter_removal`]): the
/// host platform's stand-in for the removal notification the KMDF shell gets on Windows. The
/// engine ends and releases what it has on that interface before the provider ends what is left.
pub fn watch_adapter_removal(engine: &Arc<Engine<HostPlatform>>) {
    let weak = Arc::downgrade(engine);
    engine
        .platform()
        .fabric()
        .on_adapter_removal(move |if_index| {
            if let Some(engine) = weak.upgrade() {
                engine.adapter_removed(if_index);
            }
        });
}

/// What the passive-level worker is asked to do, in order.
enum PassiveJob {
    /// Run the engine's drainer (a kick).
    Drain,
    /// A test's own work ([`HostPlatform::on_passive_worker`]).
    Test(Box<dyn FnOnce() + Send>),
}

/// The host platform.
pub struct HostPlatform {
    fabric: Arc<softndk::Fabric>,
    wsk: ndkpi::Wsk,
    adapters: Vec<AdapterDesc>,
    passive: Mutex<Option<Sender<PassiveJob>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// The engine's drainer, run by the worker once per kick (kicks do not coalesce here,
    /// which the port allows: a drainer run finding nothing to do is harmless).
    drainer: Arc<Mutex<Option<SharedPassive>>>,
    /// How many drainers the platform was given, for tests of the deferral contract.
    drainers: AtomicUsize,
    start: Instant,
    /// The engine's trace, while a test captures it ([`HostPlatform::capture_traces`]).
    traces: Mutex<TraceLog>,
    /// A capture was started: until then `trace` returns without taking `traces`' lock (it is
    /// on every callback path).
    capturing: AtomicBool,
}

/// Captured traces: room reserved up front (the trace port must not allocate), and how many
/// did not fit.
#[derive(Default)]
struct TraceLog {
    capturing: bool,
    traces: Vec<Trace>,
    dropped: u64,
}

impl HostPlatform {
    /// A platform over `fabric`, reporting `adapters`, with one passive-level worker thread.
    ///
    /// # Panics
    /// If the worker thread cannot be spawned, or memory runs out.
    ///
    /// The result is the engine's own `Arc` ([`ndkdisc_core::kalloc::Arc`]), which
    /// [`Engine::new`] takes.
    pub fn new(fabric: Arc<softndk::Fabric>, adapters: Vec<AdapterDesc>) -> KArc<Self> {
        let wsk = crate::fabric_wsk(Arc::clone(&fabric));
        Self::with_wsk(fabric, adapters, wsk)
    }

    /// A platform as the driver's on a system without the WSK NDK extension (the driver loads
    /// anyway and reports `status`, why it has none): every adapter open fails with
    /// `STATUS_NOT_SUPPORTED`. `fabric` only gives the platform its clock and its worker.
    ///
    /// # Panics
    /// If the worker thread cannot be spawned, or memory runs out.
    pub fn without_ndk(
        fabric: Arc<softndk::Fabric>,
        adapters: Vec<AdapterDesc>,
        status: ndkpi::NtStatus,
    ) -> KArc<Self> {
        Self::with_wsk(fabric, adapters, ndkpi::Wsk::unavailable(status))
    }

    fn with_wsk(
        fabric: Arc<softndk::Fabric>,
        adapters: Vec<AdapterDesc>,
        wsk: ndkpi::Wsk,
    ) -> KArc<Self> {
        let (tx, rx) = channel::<PassiveJob>();
        let drainer: Arc<Mutex<Option<SharedPassive>>> = Arc::default();
        let worker = {
            let drainer = Arc::clone(&drainer);
            std::thread::Builder::new()
                .name("ndkdisc-passive".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        match job {
                            PassiveJob::Drain => {
                                let work = drainer
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .clone();
                                if let Some(work) = work {
                                    work.run();
                                }
                            }
                            PassiveJob::Test(f) => f(),
                        }
                    }
                })
                .expect("spawn passive worker")
        };
        KArc::try_new(Self {
            wsk,
            fabric,
            adapters,
            passive: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            drainer,
            drainers: AtomicUsize::new(0),
            start: Instant::now(),
            traces: Mutex::default(),
            capturing: AtomicBool::new(false),
        })
        .expect("memory for the host platform")
    }

    /// Start capturing the engine's trace (what the driver writes to ETW), with room for
    /// `capacity` records; past that they are counted as dropped, as an ETW session's full
    /// buffers drop events. Restarts an ongoing capture.
    pub fn capture_traces(&self, capacity: usize) {
        let mut log = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        *log = TraceLog {
            capturing: true,
            traces: Vec::with_capacity(capacity),
            dropped: 0,
        };
        self.capturing.store(true, Ordering::Release);
    }

    /// The traces captured so far and how many were dropped; the capture goes on.
    pub fn take_traces(&self) -> (Vec<Trace>, u64) {
        let mut log = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        let capacity = log.traces.capacity();
        let traces = std::mem::replace(&mut log.traces, Vec::with_capacity(capacity));
        (traces, std::mem::take(&mut log.dropped))
    }

    /// How many drainers the platform was given: the engine gives one, at its creation, and
    /// every deferral after that is a kick of it.
    pub fn drainers(&self) -> usize {
        self.drainers.load(Ordering::Relaxed)
    }

    /// Test hook: run `f` on the passive-level worker after everything already asked of it
    /// (the worker is a FIFO, as a single WDF work item is). A test blocks the worker with it
    /// (so deferred work waits), or waits for `f` to know that every run of the drainer kicked
    /// before it has happened.
    pub fn on_passive_worker(&self, f: impl FnOnce() + Send + 'static) {
        self.send(PassiveJob::Test(Box::new(f)));
    }

    fn send(&self, job: PassiveJob) {
        let tx = self
            .passive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(tx) = tx {
            let _ = tx.send(job);
        }
    }

    /// The fabric underneath.
    pub fn fabric(&self) -> &Arc<softndk::Fabric> {
        &self.fabric
    }
}

impl Drop for HostPlatform {
    fn drop(&mut self) {
        self.passive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // The worker itself may drop the last reference (a work item held the engine): it
            // then ends on its own once this returns, as the channel is closed.
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

impl Platform for HostPlatform {
    type Request = HostRequest;
    type Lock<T: Send + 'static> = HostLock<T>;
    type Signal = HostSignal;
    type WaitLock = HostWaitLock;

    fn lock<T: Send + 'static>(&self, value: T) -> HostLock<T> {
        HostLock(Mutex::new(value))
    }

    // The driver's signal is a KEVENT in nonpaged pool and its wait lock a WDF object: both
    // can fail, and the low-resources sweep makes them (softndk's failure injection).
    fn signal(&self) -> Option<HostSignal> {
        (!softndk::alloc_check::port_allocation_fails()).then(HostSignal::default)
    }

    fn wait_lock(&self) -> Option<HostWaitLock> {
        (!softndk::alloc_check::port_allocation_fails()).then(HostWaitLock::default)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos() / 100).unwrap_or(u64::MAX)
    }

    /// Threads stand in for processors: each thread gets the next number when it first asks.
    fn processor(&self) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        MINE.try_with(|n| *n).unwrap_or(0)
    }

    fn set_drainer(&self, drainer: SharedPassive) {
        self.drainers.fetch_add(1, Ordering::Relaxed);
        let old = self
            .drainer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(drainer);
        drop(old);
    }

    fn kick(&self) {
        self.send(PassiveJob::Drain);
    }

    fn wsk(&self) -> &ndkpi::Wsk {
        &self.wsk
    }

    fn adapters(&self) -> Vec<AdapterDesc> {
        self.adapters.clone()
    }

    fn memory(&self, len: usize) -> Option<Box<dyn ndkpi::RegisteredMemory>> {
        // The driver's pool allocation and MDL can fail (see `signal`).
        if softndk::alloc_check::port_allocation_fails() {
            return None;
        }
        SoftMemory::new(len).map(|m| Box::new(m) as Box<dyn ndkpi::RegisteredMemory>)
    }

    // Never allocates: the capture's room was reserved when it started.
    fn trace(&self, trace: &Trace) {
        if !self.capturing.load(Ordering::Acquire) {
            return;
        }
        let mut log = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        if !log.capturing {
            return;
        }
        if log.traces.len() < log.traces.capacity() {
            log.traces.push(*trace);
        } else {
            log.dropped += 1;
        }
    }
}

type CancelRoutine = Box<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct ReqState {
    cancelable: bool,
    cancel_requested: bool,
    done: Option<(NtStatus, Vec<u8>)>,
    /// Who to wake at the completion (an async caller, [`Pending::poll_done`]).
    waker: Option<core::task::Waker>,
}

struct ReqShared {
    state: Mutex<ReqState>,
    cv: Condvar,
    cancel: CancelRoutine,
}

/// A pended request with WDF's cancel semantics.
pub struct HostRequest {
    token: u64,
    output: Vec<u8>,
    shared: Arc<ReqShared>,
}

/// The caller's side of a request: wait for it, or cancel it (`CancelIoEx`).
#[derive(Clone)]
pub struct Pending {
    token: u64,
    shared: Arc<ReqShared>,
}

impl HostRequest {
    /// A request with `output_len` bytes of output whose cancel routine is `cancel`.
    pub fn new(token: u64, output_len: usize, cancel: CancelRoutine) -> (Self, Pending) {
        let shared = Arc::new(ReqShared {
            state: Mutex::new(ReqState::default()),
            cv: Condvar::new(),
            cancel,
        });
        (
            Self {
                token,
                output: vec![0; output_len],
                shared: Arc::clone(&shared),
            },
            Pending { token, shared },
        )
    }
}

impl HostRequest {
    /// The request's shared state, whoever panicked while holding it.
    fn state(&self) -> std::sync::MutexGuard<'_, ReqState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl PendedRequest for HostRequest {
    fn token(&self) -> u64 {
        self.token
    }

    fn output(&mut self) -> &mut [u8] {
        &mut self.output
    }

    fn mark_cancelable(&mut self) -> Result<(), Cancelled> {
        let mut s = self.state();
        if s.cancel_requested {
            return Err(Cancelled);
        }
        s.cancelable = true;
        Ok(())
    }

    fn unmark_cancelable(&mut self) -> Result<(), Cancelled> {
        let mut s = self.state();
        if s.cancel_requested && s.cancelable {
            return Err(Cancelled);
        }
        s.cancelable = false;
        Ok(())
    }

    fn complete(self, status: NtStatus, information: usize) {
        let mut s = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        assert!(s.done.is_none(), "request completed twice");
        // Completing never allocates (it may run in the event path): the output moves.
        let mut output = self.output;
        output.truncate(information);
        s.done = Some((status, output));
        let waker = s.waker.take();
        drop(s);
        self.shared.cv.notify_all();
        // As the I/O manager signals an overlapped request's event: the caller's side runs
        // whatever waiting on it means (an async executor's wake-up), not the driver.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Pending {
    /// Wait up to `limit` for the completion: `(status, output)`.
    pub fn wait(&self, limit: Duration) -> Option<(NtStatus, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        let mut s = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while s.done.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = self
                .shared
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.done.clone()
    }

    /// The completion if it has come; otherwise `cx`'s waker is woken when it does (an async
    /// caller's wait).
    pub fn poll_done(
        &self,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<(NtStatus, Vec<u8>)> {
        let mut s = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = &s.done {
            return core::task::Poll::Ready(done.clone());
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        core::task::Poll::Pending
    }

    /// Whether it has completed.
    pub fn is_done(&self) -> bool {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .done
            .is_some()
    }

    /// `CancelIoEx`: request cancellation; if the request is cancelable its cancel routine
    /// runs now.
    pub fn cancel(&self) {
        let run = {
            let mut s = self
                .shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let first = !s.cancel_requested;
            s.cancel_requested = true;
            first && s.cancelable && s.done.is_none()
        };
        if run {
            (self.shared.cancel)(self.token);
        }
    }

    /// Begin cancellation without running the cancel routine yet (to stage a race); call
    /// [`Pending::run_cancel_routine`] to finish it.
    pub fn begin_cancel(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel_requested = true;
    }

    /// Run the cancel routine of a cancellation begun with [`Pending::begin_cancel`].
    pub fn run_cancel_routine(&self) {
        (self.shared.cancel)(self.token);
    }
}

/// A file handle on the simulated driver: an owner plus request plumbing.
pub struct HostHandle {
    owner: Arc<Owner<HostPlatform>>,
    next_token: core::sync::atomic::AtomicU64,
}

impl HostHandle {
    /// Open a handle for reading and writing (`CreateFile` on the device with
    /// `GENERIC_READ | GENERIC_WRITE`).
    ///
    /// # Errors
    /// The engine's status (`STATUS_QUOTA_EXCEEDED` when `Config::max_handles` are open).
    pub fn open(engine: &Arc<Engine<HostPlatform>>) -> Result<Self, NtStatus> {
        Self::open_as(engine, Access::ReadWrite)
    }

    /// Open a handle with `access` ([`Access::Read`]: `CreateFile` with `GENERIC_READ` only).
    /// Only the engine's own view of the access is simulated: the I/O manager's refusal of
    /// control codes that need `FILE_WRITE_ACCESS` is the caller's to emulate.
    ///
    /// # Errors
    /// The engine's status (`STATUS_QUOTA_EXCEEDED` when `Config::max_handles` are open).
    pub fn open_as(engine: &Arc<Engine<HostPlatform>>, access: Access) -> Result<Self, NtStatus> {
        Ok(Self {
            owner: Arc::new(engine.open(access)?),
            next_token: core::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Issue an IOCTL with `output_len` bytes of output; returns its pending handle
    /// (already completed unless it pends).
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize) -> Pending {
        let token = self
            .next_token
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let owner: Weak<Owner<HostPlatform>> = Arc::downgrade(&self.owner);
        let (request, pending) = HostRequest::new(
            token,
            output_len,
            Box::new(move |t| {
                if let Some(o) = owner.upgrade() {
                    o.cancel(t);
                }
            }),
        );
        self.owner.dispatch(code, input, request);
        pending
    }

    /// Events queued on the handle.
    pub fn queued_events(&self) -> usize {
        self.owner.queued_events()
    }

    /// `CloseHandle`: cleanup.
    pub fn close(self) {
        self.owner.cleanup();
    }
}
