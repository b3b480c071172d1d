//! loom models of the event path's lock protocol: the NDK disconnect callback latching an
//! event, racing a WAIT that arrives, a cancellation (`CancelIoEx` and the cancel routine) and
//! handle cleanup. Run with `RUSTFLAGS="--cfg loom" cargo test -p ndkdisc-core --test
//! loom_events --release`.
//!
//! Invariants checked over every interleaving: each request completes exactly once; an event
//! is either delivered (to exactly one wait) or still queued — never lost, never duplicated.
#![cfg(loom)]
#![allow(clippy::pedantic, reason = "model scaffolding")]

use loom::sync::{Arc, Mutex};
use loom::thread;
use ndkdisc_abi::{Cause, EventKind, NtStatus};
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
            let outcome = q2.lock().unwrap().wait(req, None, false);
            if let WaitOutcome::Complete(r) = outcome {
                r.complete();
            }
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
            loop {
                let ready = q2.lock().unwrap().take_wait_to_cancel(None);
                match ready {
                    Some(r) => r.complete(),
                    None => break,
                }
            }
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
            let outcome = q1.lock().unwrap().wait(r, None, false);
            if let WaitOutcome::Complete(ready) = outcome {
                ready.complete();
            }
        });
        let b = thread::spawn(move || {
            q2.lock().unwrap().begin_cleanup();
            loop {
                let ready = q2.lock().unwrap().take_wait_to_cancel(None);
                match ready {
                    Some(r) => r.complete(),
                    None => break,
                }
            }
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
