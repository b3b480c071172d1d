//! loom models of the event path's lock protocol: the NDK disconnect callback latching an
//! event, racing a WAIT that arrives, a cancellation (`CancelIoEx` and the cancel routine) and
//! handle cleanup; of an object's passive-level serialisation (the `step` module, compiled
//! here over loom implementations of the ports it uses); of a connection's teardown racing a
//! completion and the disconnect callback that use its NDK objects (the `users` module, over
//! the same ports); and of a connection's teardown racing a POST and a completion (the
//! protocol of `Conn::post`, `Conn::reap` and `Conn::teardown` over the `step` and `users`
//! modules). Run with `RUSTFLAGS="--cfg loom" cargo test -p ndkdisc-core --test loom_events
//! --release`.
//!
//! Invariants checked over every interleaving: each request completes exactly once; an event
//! is either delivered (to exactly one wait) or still queued — never lost, never duplicated.
//! Two step sessions are never open at once, and the second opens only after the first has
//! closed; a step's completion is never lost, whether it comes before its start returns or
//! while it waits, and a completion of one step never ends the next. Teardown closes an object
//! only once every callback that entered has left (holding its only reference), no callback
//! enters after teardown began or uses a closed object, and nobody waits for ever. A POST racing
//! teardown either happens wholly before teardown takes the objects or is refused and counts
//! nothing; it never reaches a closed QP; posted = completed + still outstanding, never
//! negative; and every MR it registered is closed by teardown.
#![cfg(loom)]
#![allow(clippy::pedantic, reason = "model scaffolding")]

use loom::sync::{Arc, Mutex};
use loom::thread;
use ndkdisc_abi::{Cause, Event, EventKind, NtStatus};
use ndkdisc_core::events::{ConnIndex, EventQueue, Limits, Ready, WaitOutcome};
use ndkdisc_core::ports::{Cancelled, PendedRequest};

#[derive(Default)]
struct Fate {
    completions: u32,
    status: NtStatus,
    events: usize,
    cancel_requested: bool,
    cancelable: bool,
    routine_running: bool,
}

/// A request with WDF's cancel semantics, its state under a loom mutex.
struct Req {
    token: u64,
    out: Vec<u8>,
    fate: Arc<Mutex<Fate>>,
}

impl PendedRequest for Req {
    fn token(&self) -> u64 {
        self.token
    }
    fn output(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn mark_cancelable(&mut self) -> Result<(), Cancelled> {
        let mut f = self.fate.lock().unwrap();
        if f.cancel_requested {
            return Err(Cancelled);
        }
        f.cancelable = true;
        Ok(())
    }
    fn unmark_cancelable(&mut self) -> Result<(), Cancelled> {
        let mut f = self.fate.lock().unwrap();
        if f.cancel_requested && f.cancelable {
            return Err(Cancelled);
        }
        f.cancelable = false;
        Ok(())
    }
    fn complete(self, status: NtStatus, information: usize) {
        let mut f = self.fate.lock().unwrap();
        // WDF: once cancellation began on a cancelable request, its cancel routine will be
        // called with it; completing it anywhere else is a use-after-free in the framework.
        assert!(
            !(f.cancel_requested && f.cancelable && !f.routine_running),
            "completed while its cancel routine is owed"
        );
        f.completions += 1;
        f.status = status;
        f.events = information.saturating_sub(16) / 48;
    }
}

type Queue = Arc<Mutex<EventQueue<Req>>>;

/// A WAIT on any connection arrives: it completes at once if an event is queued (after the
/// queue's lock is released), else it pends.
fn arrive(q: &Queue, r: Req) {
    let outcome = q.lock().unwrap().wait(r, None, false);
    if let WaitOutcome::Complete(ready) = outcome {
        ready.complete();
    }
}

/// Take and complete every pended wait, as ABORT and handle cleanup do: each completed after
/// the queue's lock is released.
fn cancel_all(q: &Queue) {
    loop {
        let ready = q.lock().unwrap().take_wait_to_cancel(None);
        match ready {
            Some(r) => r.complete(),
            None => break,
        }
    }
}

fn setup() -> (Queue, ConnIndex) {
    let mut q = EventQueue::new(Limits {
        max_connections: 2,
        max_waits: 2,
    })
    .unwrap();
    let c = q.add_connection(7).unwrap();
    (Arc::new(Mutex::new(q)), c)
}

fn request(token: u64) -> (Req, Arc<Mutex<Fate>>) {
    let fate = Arc::new(Mutex::new(Fate::default()));
    (
        Req {
            token,
            out: vec![0; 16 + 4 * 48],
            fate: fate.clone(),
        },
        fate,
    )
}

fn complete(ready: Option<Ready<Req>>) {
    if let Some(r) = ready {
        r.complete();
    }
}

/// The disconnect callback: latch under the lock, complete outside it.
fn callback(q: &Queue, c: ConnIndex) {
    let fact = Event {
        cause: Some(Cause::Peer),
        ..Event::new(EventKind::Disconnected, 0, 1)
    };
    let ready = q.lock().unwrap().latch(c, fact).1;
    complete(ready);
}

/// `CancelIoEx`: mark cancellation; the cancel routine runs if the request was cancelable.
fn cancel_io(q: &Queue, fate: &Arc<Mutex<Fate>>, token: u64) {
    let run = {
        let mut f = fate.lock().unwrap();
        f.cancel_requested = true;
        f.cancelable && f.completions == 0
    };
    if run {
        // The cancel routine: it alone may complete the request now.
        let ready = q.lock().unwrap().cancel(token);
        if let Some(r) = ready {
            fate.lock().unwrap().routine_running = true;
            r.complete();
        }
    }
}

fn pend(q: &Queue, req: Req) {
    let outcome = q.lock().unwrap().wait(req, None, false);
    assert!(matches!(outcome, WaitOutcome::Pended));
}

#[test]
fn callback_racing_a_cancel_loses_nothing() {
    loom::model(|| {
        let (q, c) = setup();
        let (req, fate) = request(1);
        pend(&q, req);
        let (q1, q2, f2) = (q.clone(), q.clone(), fate.clone());
        let a = thread::spawn(move || callback(&q1, c));
        let b = thread::spawn(move || cancel_io(&q2, &f2, 1));
        a.join().unwrap();
        b.join().unwrap();
        let f = fate.lock().unwrap();
        let queued = q.lock().unwrap().queued();
        assert_eq!(f.completions, 1, "completed exactly once");
        match f.status {
            NtStatus::SUCCESS => assert_eq!((f.events, queued), (1, 0), "delivered once"),
            NtStatus::CANCELLED => assert_eq!(queued, 1, "the event stayed queued"),
            s => panic!("unexpected status {s:#x}"),
        }
    });
}

#[test]
fn callback_racing_an_arriving_wait_is_level_triggered() {
    loom::model(|| {
        let (q, c) = setup();
        let (req, fate) = request(1);
        let (q1, q2) = (q.clone(), q.clone());
        let a = thread::spawn(move || callback(&q1, c));
        let b = thread::spawn(move || {
            arrive(&q2, req);
        });
        a.join().unwrap();
        b.join().unwrap();
        let f = fate.lock().unwrap();
        assert_eq!(f.completions, 1, "whichever came first, the wait completed");
        assert_eq!((f.status, f.events), (NtStatus::SUCCESS, 1));
        assert_eq!(q.lock().unwrap().queued(), 0);
    });
}

#[test]
fn callback_racing_handle_cleanup_completes_every_wait_once() {
    loom::model(|| {
        let (q, c) = setup();
        let (r1, f1) = request(1);
        let (r2, f2) = request(2);
        pend(&q, r1);
        pend(&q, r2);
        let (q1, q2) = (q.clone(), q.clone());
        let a = thread::spawn(move || callback(&q1, c));
        let b = thread::spawn(move || {
            cancel_all(&q2);
        });
        a.join().unwrap();
        b.join().unwrap();
        let (a, b) = (f1.lock().unwrap(), f2.lock().unwrap());
        assert_eq!(
            (a.completions, b.completions),
            (1, 1),
            "every wait completed exactly once"
        );
        let delivered = a.events + b.events;
        let queued = q.lock().unwrap().queued();
        assert_eq!(
            delivered + queued,
            1,
            "the event is delivered once or still queued"
        );
    });
}

/// A WAIT racing handle cleanup (an IOCTL that raced `CloseHandle`): cleanup marks the queue
/// first, then takes the pended waits. Whichever comes first, the WAIT completes with
/// `STATUS_CANCELLED` exactly once and is never left pended.
#[test]
fn a_wait_racing_handle_cleanup_is_cancelled_never_stranded() {
    loom::model(|| {
        let (q, _c) = setup();
        let (r, f) = request(1);
        let (q1, q2) = (q.clone(), q.clone());
        let a = thread::spawn(move || {
            arrive(&q1, r);
        });
        let b = thread::spawn(move || {
            q2.lock().unwrap().begin_cleanup();
            cancel_all(&q2);
        });
        a.join().unwrap();
        b.join().unwrap();
        let f = f.lock().unwrap();
        assert_eq!(
            (f.completions, f.status),
            (1, NtStatus::CANCELLED),
            "completed once, cancelled"
        );
        assert_eq!(q.lock().unwrap().pended_waits(), 0, "nothing left pended");
    });
}

// The passive-level serialisation: the engine's own `step` module, whose `crate::ports` is the
// shim below, over loom implementations of the ports.

#[path = "../src/step.rs"]
mod step;

/// What `step` uses of the ports, as it names them (`crate::ports`): the core's `Lock`,
/// `Signal` and `WaitLock`, and the engine's `Platform` reduced to their constructors.
mod ports {
    pub(crate) use ndkdisc_core::ports::{Lock, Signal, WaitLock};

    pub(crate) trait Platform {
        type Lock<T: Send + 'static>: Lock<T>;
        type Signal: Signal;
        type WaitLock: WaitLock;
        fn lock<T: Send + 'static>(&self, value: T) -> Self::Lock<T>;
        fn signal(&self) -> Option<Self::Signal>;
        fn wait_lock(&self) -> Option<Self::WaitLock>;
    }
}

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Condvar, MutexGuard};
use ndkdisc_core::ports::{Lock, Signal, WaitLock};
use ndkpi::Op;

/// The spin lock port: a loom mutex.
struct LoomLock<T>(Mutex<T>);

impl<T: Send> Lock<T> for LoomLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

/// The signal port: an auto-reset event (a wait consumes the set; a set with nobody waiting
/// stays for the next wait).
#[derive(Default)]
struct LoomSignal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal for LoomSignal {
    fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_all();
    }
    fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.cv.wait(set).unwrap();
        }
        *set = false;
    }
}

/// The wait lock port: a loom mutex, held by its guard.
struct LoomWaitLock(Mutex<()>);

impl WaitLock for LoomWaitLock {
    type Guard<'a> = MutexGuard<'a, ()>;
    fn acquire(&self) -> MutexGuard<'_, ()> {
        self.0.lock().unwrap()
    }
}

struct LoomPlatform;

impl ports::Platform for LoomPlatform {
    type Lock<T: Send + 'static> = LoomLock<T>;
    type Signal = LoomSignal;
    type WaitLock = LoomWaitLock;
    fn lock<T: Send + 'static>(&self, value: T) -> LoomLock<T> {
        LoomLock(Mutex::new(value))
    }
    fn signal(&self) -> Option<LoomSignal> {
        Some(LoomSignal::default())
    }
    fn wait_lock(&self) -> Option<LoomWaitLock> {
        Some(LoomWaitLock(Mutex::new(())))
    }
}

type Stepper = step::Stepper<LoomPlatform>;

fn stepper() -> Arc<Stepper> {
    Arc::new(Stepper::new(&LoomPlatform).expect("a loom wait lock"))
}

/// The provider completing a step on a thread of its own (as an NDK callback would), racing
/// the session that started it.
fn complete_on_a_thread(
    s: &Arc<Stepper>,
    op: Op,
    status: NtStatus,
) -> loom::thread::JoinHandle<()> {
    let s = Arc::clone(s);
    thread::spawn(move || s.finish(op, status, None))
}

/// Two sessions race (CLOSE racing ABORT): the first's step completes on a provider thread,
/// the second's before its start returns. They are never both open, the second opens only once
/// the first has closed, and each gets its own step's result.
#[test]
fn two_sessions_never_overlap_and_the_second_opens_after_the_first_closes() {
    loom::model(|| {
        let s = stepper();
        let log = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let session = |who: u8, status: NtStatus, on_a_thread: bool| {
            let (s, log, open) = (Arc::clone(&s), Arc::clone(&log), Arc::clone(&open));
            thread::spawn(move || {
                let session = s.session();
                assert_eq!(open.fetch_add(1, Ordering::SeqCst), 0, "never both open");
                log.lock().unwrap().push(who);
                let mut provider = None;
                let (st, created) = session.run(|| {
                    if on_a_thread {
                        provider = Some(complete_on_a_thread(&s, Op::CreatePd, status));
                    } else {
                        s.finish(Op::CreateCq, status, None);
                    }
                });
                assert_eq!(st, status, "session {who} got its own step's result");
                assert!(created.is_none());
                log.lock().unwrap().push(who);
                open.fetch_sub(1, Ordering::SeqCst);
                drop(session);
                if let Some(p) = provider {
                    p.join().unwrap();
                }
            })
        };
        let a = session(1, NtStatus::SUCCESS, true);
        let b = session(2, NtStatus::CANCELLED, false);
        a.join().unwrap();
        b.join().unwrap();
        let log = log.lock().unwrap();
        assert!(
            *log == [1, 1, 2, 2] || *log == [2, 2, 1, 1],
            "one session opened after the other closed: {log:?}"
        );
    });
}

/// A step whose completion races its start and its wait (before `start` returns, between the
/// start and the wait, or during the wait) always returns that completion.
#[test]
fn a_completion_racing_its_start_is_not_lost() {
    loom::model(|| {
        let s = stepper();
        let mut provider = None;
        let (st, created) = s.run(|| {
            provider = Some(complete_on_a_thread(&s, Op::CreateQp, NtStatus::CANCELLED));
        });
        assert_eq!(st, NtStatus::CANCELLED, "the completion was seen");
        assert!(created.is_none());
        provider.unwrap().join().unwrap();
    });
}

/// Two steps in one session, each completed on a provider thread: the first's signal may still
/// be set when the second starts (its result was read before its set). The second step still
/// waits for its own completion and returns it.
#[test]
fn a_late_set_from_one_step_never_ends_the_next() {
    loom::model(|| {
        let s = stepper();
        let session = s.session();
        let mut providers = Vec::new();
        for (op, status) in [
            (Op::CreatePd, NtStatus::SUCCESS),
            (Op::CreateCq, NtStatus::CANCELLED),
        ] {
            let (st, _) = session.run(|| providers.push(complete_on_a_thread(&s, op, status)));
            assert_eq!(st, status, "{op:?} returned its own completion");
        }
        drop(session);
        for p in providers {
            p.join().unwrap();
        }
    });
}

// Connection teardown racing the users of its NDK objects: the engine's own `users` module
// (what `with_objects` and teardown in conn.rs run), over the same loom ports.

#[path = "../src/users.rs"]
mod users;

/// An NDK object of the model connection: used by the callbacks' sessions, closed by teardown.
struct Object {
    closed: AtomicBool,
}

/// What the connection's lock guards, as far as the count is concerned: the count, the object
/// and what the callbacks recorded under the lock (as the completion path counts reaped work).
struct Guarded {
    count: users::Count,
    object: Option<Arc<Object>>,
    used: u32,
}

impl users::Counted for Guarded {
    fn count(&mut self) -> &mut users::Count {
        &mut self.count
    }
}

struct ModelConn {
    ctl: LoomLock<Guarded>,
    /// The step signal teardown's wait shares (conn.rs: the stepper's).
    stepper: Stepper,
}

impl ModelConn {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            ctl: LoomLock(Mutex::new(Guarded {
                count: users::Count::default(),
                object: Some(Arc::new(Object {
                    closed: AtomicBool::new(false),
                })),
                used: 0,
            })),
            stepper: Stepper::new(&LoomPlatform).expect("a loom wait lock"),
        })
    }

    fn users(&self) -> users::Users<'_, LoomSignal> {
        users::Users::new(self.stepper.signal())
    }

    /// A provider callback using the object outside the lock (a completion reaping the CQ, the
    /// disconnect callback reading the connector), then recording under the lock again, as the
    /// reap path does. Whether it ran: it must not once teardown has begun.
    fn callback(&self) -> bool {
        self.users()
            .with(
                &self.ctl,
                |g| g.object.clone(),
                |object| {
                    let object = object
                        .as_ref()
                        .expect("a session never sees teardown's take");
                    assert!(
                        !object.closed.load(Ordering::SeqCst),
                        "an object used after teardown closed it"
                    );
                    self.ctl.with(|g| g.used += 1);
                },
            )
            .is_some()
    }

    /// Teardown: wait out the users, then take the object and close it. Returns the callbacks
    /// recorded under the lock when it took the object.
    fn teardown(&self) -> u32 {
        let _session = self.stepper.session();
        self.users().wait_out(&self.ctl);
        let (object, used) = self.ctl.with(|g| (g.object.take(), g.used));
        // conn.rs's `sole` (`Arc::into_inner`): teardown must hold the only reference, or the
        // object would never be closed and every close after it would wait.
        let Ok(object) = Arc::try_unwrap(object.expect("the object is taken once")) else {
            panic!("teardown holds the only reference to the object");
        };
        object.closed.store(true, Ordering::SeqCst);
        used
    }
}

/// Teardown (CLOSE, ABORT, cleanup) races a completion and the disconnect callback, each using
/// the connection's objects outside its lock. Whatever the interleaving: teardown waits for
/// every callback that entered (it sees their records and holds the sole reference to the
/// object when it closes it), none enters after teardown began, no callback uses a closed
/// object, and nobody waits for ever (loom reports a deadlock).
#[test]
fn teardown_racing_a_completion_and_the_disconnect_callback_waits_them_out() {
    loom::model(|| {
        let conn = ModelConn::new();
        let callbacks: Vec<_> = (0..2)
            .map(|_| {
                let conn = Arc::clone(&conn);
                thread::spawn(move || conn.callback())
            })
            .collect();
        let seen = conn.teardown();
        let ran = callbacks
            .into_iter()
            .map(|c| u32::from(c.join().unwrap()))
            .sum::<u32>();
        assert_eq!(
            seen, ran,
            "teardown took the object only after every callback that entered had left"
        );
        assert!(conn.ctl.with(|g| g.count.tearing_down()));
        assert!(
            !conn.callback(),
            "no session enters once teardown has begun"
        );
    });
}

/// The step signal is shared with teardown's wait for the users (conn.rs): a late completion
/// of an earlier step sets it while teardown waits for a callback to leave. Teardown must not
/// take the object while the callback holds it (the set was not the callback's), nor miss the
/// callback's set, nor wait for ever.
#[test]
fn a_late_step_completion_does_not_end_teardowns_wait_early() {
    loom::model(|| {
        let conn = ModelConn::new();
        let callback = {
            let conn = Arc::clone(&conn);
            thread::spawn(move || conn.callback())
        };
        let late = {
            let conn = Arc::clone(&conn);
            thread::spawn(move || conn.stepper.finish(Op::CloseCq, NtStatus::SUCCESS, None))
        };
        let seen = conn.teardown();
        let ran = u32::from(callback.join().unwrap());
        late.join().unwrap();
        assert_eq!(
            seen, ran,
            "teardown took the object after the callback left"
        );
    });
}

// Teardown racing a POST and a completion: the protocol of `Conn::post`, `Conn::reap` and
// `Conn::teardown`, over the engine's `step` and `users` modules.

/// A queue pair of the model connection: what was posted to it and not yet completed.
struct ModelQp {
    closed: AtomicBool,
    queued: AtomicUsize,
}

/// A memory registration a POST made for its buffer: closed by teardown once stored.
struct ModelMr {
    closed: AtomicBool,
}

/// The connection's locked state, as far as POST, the completion and teardown use it.
struct PostGuarded {
    count: users::Count,
    qp: Option<Arc<ModelQp>>,
    /// The MRs POSTs stored (conn.rs's `mrs`), closed by teardown after the QP.
    mrs: Vec<Arc<ModelMr>>,
    /// Counted up by a POST before it posts (and back down if the post fails), down by a
    /// completion: `outstanding_receives`.
    outstanding: u32,
    /// Every request that reached the QP, and every one reaped (the QUERY counters).
    posted: u32,
    completed: u32,
}

impl users::Counted for PostGuarded {
    fn count(&mut self) -> &mut users::Count {
        &mut self.count
    }
}

struct PostConn {
    stepper: Stepper,
    ctl: LoomLock<PostGuarded>,
}

/// What teardown saw when it took the QP and closed it.
struct TornDown {
    /// Requests posted (counted) by then.
    posted: u32,
    /// Requests still on the QP when it was closed (flushed by the close).
    on_qp: usize,
}

impl PostConn {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            stepper: Stepper::new(&LoomPlatform).expect("a loom wait lock"),
            ctl: LoomLock(Mutex::new(PostGuarded {
                count: users::Count::default(),
                qp: Some(Arc::new(ModelQp {
                    closed: AtomicBool::new(false),
                    queued: AtomicUsize::new(0),
                })),
                mrs: Vec::new(),
                outstanding: 0,
                posted: 0,
                completed: 0,
            })),
        })
    }

    /// Users sessions, waited out on the step signal (as conn.rs shares it).
    fn users(&self) -> users::Users<'_, LoomSignal> {
        users::Users::new(self.stepper.signal())
    }

    /// POST of one receive, as `Conn::post` does it: in a step session, find the objects (none
    /// after teardown: refused), register an MR, then in a users session count the request
    /// outstanding under the lock and post it to the QP outside the lock; finally store the MR
    /// under the lock for teardown to close. Whether the request reached the QP.
    fn post(&self) -> bool {
        let _session = self.stepper.session();
        if self.ctl.with(|g| g.qp.is_none()) {
            return false;
        }
        let mr = Arc::new(ModelMr {
            closed: AtomicBool::new(false),
        });
        let posted = self
            .users()
            .with(
                &self.ctl,
                |g| g.qp.clone(),
                |qp| {
                    let qp = qp.as_ref()?;
                    self.ctl.with(|g| {
                        g.outstanding += 1;
                        g.posted += 1;
                    });
                    assert!(
                        !qp.closed.load(Ordering::SeqCst),
                        "a post reached a closed QP"
                    );
                    qp.queued.fetch_add(1, Ordering::SeqCst);
                    Some(())
                },
            )
            .flatten()
            .is_some();
        self.ctl.with(|g| g.mrs.push(mr));
        posted
    }

    /// A completion, as `Conn::reap` does it: in a users session, take what the QP completed
    /// and count it down under the lock. Whether it ran.
    fn reap(&self) -> bool {
        self.users()
            .with(
                &self.ctl,
                |g| g.qp.clone(),
                |qp| {
                    let Some(qp) = qp.as_ref() else { return };
                    assert!(
                        !qp.closed.load(Ordering::SeqCst),
                        "a completion reaped a closed QP"
                    );
                    let n = qp.queued.swap(0, Ordering::SeqCst) as u32;
                    self.ctl.with(|g| {
                        g.outstanding = g
                            .outstanding
                            .checked_sub(n)
                            .expect("outstanding never goes negative");
                        g.completed += n;
                    });
                },
            )
            .is_some()
    }

    /// Teardown, as `Conn::teardown` does it: a step session, wait out the users, take the QP
    /// and close it (holding its only reference), then take the MRs and close them.
    fn teardown(&self) -> TornDown {
        let _session = self.stepper.session();
        self.users().wait_out(&self.ctl);
        let (qp, posted) = self.ctl.with(|g| (g.qp.take(), g.posted));
        let Ok(qp) = Arc::try_unwrap(qp.expect("the QP is taken once")) else {
            panic!("teardown holds the only reference to the QP");
        };
        qp.closed.store(true, Ordering::SeqCst);
        let on_qp = qp.queued.load(Ordering::SeqCst);
        let mrs = self.ctl.with(|g| core::mem::take(&mut g.mrs));
        for mr in mrs {
            mr.closed.store(true, Ordering::SeqCst);
        }
        TornDown { posted, on_qp }
    }
}

/// Teardown (CLOSE, ABORT, cleanup) races a POST and a completion reaping the CQ. Whatever the
/// interleaving: the post never reaches a closed QP; it happens wholly before teardown takes
/// the objects (teardown sees it counted) or is refused and counts nothing; what was posted is
/// completed or still outstanding (what the close flushed), the count never negative; every MR
/// the POST registered is closed by teardown; no users session enters once teardown began; and
/// nobody waits for ever (loom reports a deadlock).
#[test]
fn teardown_racing_a_post_and_a_completion_loses_and_leaks_nothing() {
    loom::model(|| {
        let conn = PostConn::new();
        let poster = {
            let conn = Arc::clone(&conn);
            thread::spawn(move || conn.post())
        };
        let completion = {
            let conn = Arc::clone(&conn);
            thread::spawn(move || conn.reap())
        };
        let torn = conn.teardown();
        let posted = poster.join().unwrap();
        completion.join().unwrap();
        let (count_posted, completed, outstanding, mrs_left) = conn
            .ctl
            .with(|g| (g.posted, g.completed, g.outstanding, g.mrs.len()));
        assert_eq!(
            count_posted,
            u32::from(posted),
            "a refused post counts nothing; a post that reached the QP counts once"
        );
        assert_eq!(
            torn.posted, count_posted,
            "a post happened wholly before teardown took the objects, or not at all"
        );
        assert_eq!(
            count_posted,
            completed + outstanding,
            "posted = completed + still outstanding"
        );
        assert_eq!(
            outstanding as usize, torn.on_qp,
            "what is still outstanding is what the close found on the QP"
        );
        assert_eq!(
            mrs_left, 0,
            "no MR stored after teardown took them (leaked)"
        );
        assert!(conn.ctl.with(|g| g.count.tearing_down()));
        assert!(!conn.reap(), "no session enters once teardown has begun");
    });
}
