//! The async API through the public client, on the simulator: futures woken by the engine's
//! completions (not by polling), cancellation on drop that loses no event and leaves nothing
//! open, and the event stream. The executor here is the smallest there is (a thread parked
//! until woken), to show the futures need no particular runtime.
#![cfg(feature = "sim")]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::SimOptions;
use ndkdisc_client::{Cause, ConnectionId, DisconnectMode, ErrorKind, EventKind, Timeout, WaitOn};

mod common;
use common::{LIMIT, pair_on, params};

/// Wakes the thread that waits for it, and counts the wake-ups.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Run `f` to completion on this thread; (its output, how many times it was polled).
fn block_on<F: Future>(f: F) -> (F::Output, usize) {
    let waker = Arc::new(ThreadWaker {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let w = Waker::from(Arc::clone(&waker));
    let mut cx = Context::from_waker(&w);
    let mut f = pin!(f);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        // Parked until woken (a spurious unpark just polls again). A future whose completion
        // never wakes it fails here rather than being found by a later poll.
        let before = waker.wakes.load(Ordering::SeqCst);
        let start = std::time::Instant::now();
        while waker.wakes.load(Ordering::SeqCst) == before {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "pending for 20 s and never woken"
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

/// Poll `f` once, with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_pending_wait_is_woken_by_the_engine_not_by_polling() {
    let p = pair_on(SimOptions::default(), 4811);
    p.b.post(p.cb, PostKind::Receive, 2, 1024).unwrap();
    let a = &p.a;
    let ca = p.ca;
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            a.disconnect(ca, DisconnectMode::Abortive).unwrap();
        });
        let (events, polls) = block_on(p.b.wait_async(WaitOn::Connection(p.cb), 8));
        let e = events.unwrap()[0];
        assert_eq!(
            (e.kind, e.cause),
            (EventKind::Disconnected, Some(Cause::Peer))
        );
        assert_eq!(e.outstanding_receives, 2);
        // Pending once, then woken by the completion: a poll per wake-up, not a spin.
        assert!(polls <= 3, "polled {polls} times");
    });
}

#[test]
fn dropping_a_wait_cancels_it_and_loses_no_event() {
    let p = pair_on(SimOptions::default(), 4812);
    let quota = p.b.info().unwrap().max_waits as usize;
    // More dropped WAITs than the handle may have pended: each drop cancelled its request.
    for _ in 0..=quota {
        let mut f = p.b.wait_async(WaitOn::Connection(p.cb), 8);
        assert!(poll_once(&mut f).is_pending());
    }
    let e =
        p.b.wait(
            WaitOn::Connection(p.cb),
            8,
            Timeout::After(Duration::from_millis(50)),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "no QUOTA_EXCEEDED: {e}");
    // An event that completes a WAIT nobody polls again: dropping the future keeps it.
    let mut f = p.b.wait_async(WaitOn::Any, 8);
    assert!(poll_once(&mut f).is_pending());
    p.a.disconnect(p.ca, DisconnectMode::Abortive).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(f);
    let e = p.b.wait(WaitOn::Connection(p.cb), 8, LIMIT).unwrap()[0];
    assert_eq!(
        (e.kind, e.cause),
        (EventKind::Disconnected, Some(Cause::Peer))
    );
    assert!(!e.already_delivered, "the original, kept for the next WAIT");
}

#[test]
fn connect_disconnect_and_the_event_stream() {
    let p = pair_on(SimOptions::default(), 4813);
    // A second connection, made with a future.
    let (c, _) = block_on(p.a.connect_async(&params(4813)));
    let c = c.unwrap();
    let mut stream = p.b.event_stream();
    let (accepted, _) = block_on(stream.next_event());
    let accepted = accepted.unwrap().unwrap();
    assert_eq!(accepted.kind, EventKind::Accepted);
    let cb2 = ConnectionId::of(&accepted);
    // A graceful disconnect pends until the peer answers: drive both futures on one thread.
    let mut leaving = pin!(p.a.disconnect_async(c.id));
    let mut next = pin!(stream.next_event());
    let w = Waker::noop();
    let mut cx = Context::from_waker(w);
    assert!(leaving.as_mut().poll(&mut cx).is_pending());
    let seen = loop {
        if let Poll::Ready(e) = next.as_mut().poll(&mut cx) {
            break e.unwrap().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        (ConnectionId::of(&seen), seen.kind, seen.cause),
        (cb2, EventKind::Disconnected, Some(Cause::Peer))
    );
    assert!(
        leaving.as_mut().poll(&mut cx).is_pending(),
        "not answered yet"
    );
    p.b.disconnect(cb2, DisconnectMode::Graceful).unwrap();
    let (answered, _) = block_on(leaving);
    answered.unwrap();
    // Closing the handle ends the stream with the cancellation, once.
    let mut stream = p.b.event_stream();
    let pending = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            p.b.close_connection(cb2).unwrap();
        });
        block_on(stream.next_event()).0
    });
    assert_eq!(pending.unwrap().unwrap().kind, EventKind::Closed);
}

#[test]
fn a_dropped_connect_leaves_no_connection_open() {
    let p = pair_on(SimOptions::default(), 4814);
    let before = p.a.objects().unwrap().len();
    // Polled once (issued), then dropped: whether the cancel or the connect won, nothing of
    // it stays open on A. (A future that completed at its first poll handed its connection to
    // the caller, who closes it.)
    for _ in 0..10 {
        let mut f = p.a.connect_async(&params(4814));
        if let Poll::Ready(Ok(c)) = poll_once(&mut f) {
            p.a.close_connection(c.id).unwrap();
        }
        drop(f);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let _ = p.a.wait(WaitOn::Any, 16, Timeout::After(Duration::ZERO));
        let now = p.a.objects().unwrap().len();
        if now == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now} objects, {before} before: {:?}",
            p.a.objects().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
