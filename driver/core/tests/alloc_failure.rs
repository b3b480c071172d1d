//! Driver Verifier's low-resources simulation, on the host: for every IOCTL and every NDK flow
//! (listen, connect, accept, post, disconnect, flush, close, handle cleanup), fail the k-th
//! allocation the engine makes (ndkdisc-core and ndkpi; not the host platform's, the test's or
//! softndk's, as Verifier fails only the verified driver's), for every k the operation makes.
//! Each run must end with a clean status (success, or `STATUS_INSUFFICIENT_RESOURCES` where the
//! allocation mattered), no abort (an aborting allocation kills this process), and, once the
//! handles are closed, no NDK object left and not one byte of the engine's (or the host
//! platform's, or the test's) memory. The platform's own fallible allocations (a signal, a wait
//! lock, posted memory: a `KEVENT`, a WDF object, pool on Windows) are failed too.
//!
//! To chase what it finds: `NDKDISC_SHOW_FAILED_ALLOCATION=1` prints where each failed
//! allocation was made; `NDKDISC_TRACK_LEAKS=1 NDKDISC_TRACK_SIZE=<bytes>` prints where each
//! block of that size left behind was allocated.
#![allow(clippy::pedantic, reason = "test scaffolding")]

mod common;
use common::*;

use std::sync::Mutex;

use softndk::alloc_check::{FailureInjection, Injected, Owner, fail_allocation, usage_by};

/// The crates whose allocations are failed: the engine and its NDK wrappers (the code that runs
/// in the driver; `kalloc` is the mechanism, its callers are charged).
const ENGINE: &[&str] = &["ndkdisc_core", "ndkpi"];

/// One sweep at a time: each arms a thread of its own, but the passive worker is per world.
static SERIAL: Mutex<()> = Mutex::new(());

/// A status an operation may end with when one of its allocations failed.
fn clean(st: NtStatus) -> Result<(), String> {
    if st == NtStatus::SUCCESS || st == NtStatus::INSUFFICIENT_RESOURCES {
        Ok(())
    } else {
        Err(format!("status {st}"))
    }
}

/// Where the failure is injected: the test's thread, or the engine's passive worker (where the
/// accept work and other deferred work run).
#[derive(Clone, Copy, PartialEq)]
enum On {
    Caller,
    Worker,
}

/// The injection armed on the passive worker, from one job to the next.
static WORKER_ARMED: Mutex<Option<FailureInjection>> = Mutex::new(None);

fn arm(w: &World, on: On, k: u64) -> Option<FailureInjection> {
    match on {
        On::Caller => Some(fail_allocation(k, ENGINE)),
        On::Worker => {
            let (tx, rx) = std::sync::mpsc::channel();
            w.engine.platform().on_passive_worker(move || {
                *WORKER_ARMED.lock().unwrap() = Some(fail_allocation(k, ENGINE));
                let _ = tx.send(());
            });
            rx.recv_timeout(WAIT).expect("worker armed");
            None
        }
    }
}

fn disarm(w: &World, armed: Option<FailureInjection>) -> Injected {
    if let Some(a) = armed {
        return a.finish();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    w.engine.platform().on_passive_worker(move || {
        let a = WORKER_ARMED.lock().unwrap().take().expect("armed");
        let _ = tx.send(a.finish());
    });
    rx.recv_timeout(WAIT).expect("worker disarmed")
}

/// Bytes the consumer side (engine, host platform, test) holds now.
fn consumer_live() -> i128 {
    let (_, allocated, freed) = usage_by(Owner::Consumer);
    i128::from(allocated) - i128::from(freed)
}

/// Run `op` once per allocation it makes, failing that one: `setup` builds its starting point
/// (nothing failed), `op` returns whether it ended cleanly, `teardown` closes what is left.
/// Returns how many allocations the operation makes.
fn sweep<S>(
    name: &str,
    on: On,
    setup: impl Fn(&World) -> S,
    op: impl Fn(&World, &S) -> Result<(), String>,
    teardown: impl Fn(&World, S),
) -> u64 {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for k in 1..=500 {
        // k = 1 also warms what a first run allocates for good (the backtrace resolver's
        // cache): the balance is checked from k = 2.
        let before = consumer_live();
        let tracking = k > 1 && std::env::var_os("NDKDISC_TRACK_LEAKS").is_some();
        softndk::alloc_check::track_live(tracking);
        let w = world(Completion::Inline);
        let s = setup(&w);
        let armed = arm(&w, on, k);
        let outcome = op(&w, &s);
        let seen = disarm(&w, armed);
        if let Err(why) = outcome {
            panic!("{name}: allocation {k} of the engine failed: {why}");
        }
        teardown(&w, s);
        assert_released(&w);
        assert!(
            w.fabric.violations().is_empty(),
            "{name}, allocation {k} failed: {:?}",
            w.fabric.violations()
        );
        drop(w);
        // softndk's threads end (and drop what they held) after the world is dropped: give
        // them a moment, then nothing of the consumer's may be left.
        let mut left = consumer_live() - before;
        for _ in 0..200 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let now = consumer_live() - before;
            // Settled: balanced, or (the first run, which also warms lasting caches) still.
            if now == left && (now == 0 || k == 1) {
                break;
            }
            left = now;
        }
        if tracking && left != 0 {
            for (size, trace) in softndk::alloc_check::live_blocks() {
                eprintln!("left behind: {size} bytes from\n{trace}");
            }
        }
        softndk::alloc_check::track_live(false);
        if k > 1 {
            assert_eq!(
                left, 0,
                "{name}, allocation {k} failed: memory left behind once everything was closed"
            );
        }
        assert_eq!(
            softndk::alloc_check::unclassified(),
            0,
            "allocations without a symbol to attribute them by"
        );
        if !seen.failed {
            // Fewer than k: every one of the k - 1 was failed in a run of its own.
            assert_eq!(seen.counted, k - 1, "{name}: the same allocations each run");
            eprintln!("{name}: {} engine allocations, each failed once", k - 1);
            return k - 1;
        }
    }
    panic!("{name}: more than 500 allocations");
}

fn two_handles(w: &World) -> (HostHandle, HostHandle) {
    (
        HostHandle::open(&w.engine).unwrap(),
        HostHandle::open(&w.engine).unwrap(),
    )
}

fn close_both(_: &World, (a, b): (HostHandle, HostHandle)) {
    a.close();
    b.close();
}

fn close_pair(_: &World, (ha, _, hb, _): (HostHandle, u64, HostHandle, u64)) {
    ha.close();
    hb.close();
}

fn creating_the_engine() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut made = 0;
    for k in 1..=100 {
        let fabric = Arc::new(Fabric::new(FabricConfig {
            completion: Completion::Inline,
            ..Default::default()
        }));
        let platform = HostPlatform::new(Arc::clone(&fabric), Vec::new());
        let armed = fail_allocation(k, ENGINE);
        let engine = Engine::new(platform, Config::default());
        let seen = armed.finish();
        match &engine {
            Ok(_) => assert!(
                !seen.failed,
                "allocation {k} failed, yet the engine was made"
            ),
            Err(st) => assert_eq!(*st, NtStatus::INSUFFICIENT_RESOURCES, "allocation {k}"),
        }
        drop(engine);
        if !seen.failed {
            made = k - 1;
            break;
        }
    }
    eprintln!("Engine::new: {made} engine allocations, each failed once");
    assert!(made > 0, "the engine allocates its runtime and drainer");
}

fn opening_a_handle() {
    let n = sweep(
        "open",
        On::Caller,
        |_| (),
        |w, _| match HostHandle::open(&w.engine) {
            Ok(h) => {
                h.close();
                Ok(())
            }
            Err(st) => clean(st),
        },
        |_, ()| {},
    );
    assert!(n > 0, "a handle's open allocates its tables");
}

fn get_info_and_list_adapters() {
    sweep(
        "GET_INFO",
        On::Caller,
        two_handles,
        |_, (a, _)| {
            let (st, _) = done(&a.ioctl(
                Ioctl::GetInfo.code(),
                &bytes(&GetInfoRequest),
                InfoReply::SIZE,
            ));
            clean(st)
        },
        close_both,
    );
    let n = sweep(
        "LIST_ADAPTERS",
        On::Caller,
        two_handles,
        |_, (a, _)| {
            let (st, _) = done(&a.ioctl(
                Ioctl::ListAdapters.code(),
                &bytes(&ListAdaptersRequest),
                16 + 32 * 4,
            ));
            clean(st)
        },
        close_both,
    );
    assert!(n > 0, "LIST_ADAPTERS reserves its entries");
}

fn listening_and_closing_the_listener() {
    let n = sweep(
        "LISTEN",
        On::Caller,
        two_handles,
        |_, (_, b)| {
            let req = ListenRequest {
                if_index: 2,
                backlog: 0,
                local: SocketAddr::new(B, 4791),
            };
            let (st, _) = done(&b.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE));
            clean(st)
        },
        close_both,
    );
    assert!(n > 0, "a listener allocates its work item and state");
    sweep(
        "CLOSE of a listener",
        On::Caller,
        |w| {
            let (a, b) = two_handles(w);
            let l = listen(&b, 4791);
            (a, b, l.listener_id)
        },
        |_, (_, b, l)| clean(close_status(b, *l)),
        |w, (a, b, _)| close_both(w, (a, b)),
    );
}

fn connecting() {
    let n = sweep(
        "CONNECT (active side)",
        On::Caller,
        listening,
        |_, (a, _)| {
            let (st, out) = done(&connect_pending(a, 4791));
            clean(st)?;
            if st == NtStatus::SUCCESS {
                let r = ConnectReply::parse(&out).map_err(|e| format!("{e:?}"))?;
                clean(r.status).map_err(|e| format!("reply: {e}"))?;
            }
            Ok(())
        },
        close_both,
    );
    assert!(n > 0, "a connection allocates its state and NDK wrappers");
}

fn accepting() {
    let n = sweep(
        "accept (the listener's work item)",
        On::Worker,
        listening,
        |_, (a, b)| {
            // The active side completes whatever the passive side did: connected, or refused.
            let (st, out) = done(&connect_pending(a, 4791));
            if st != NtStatus::SUCCESS {
                return Err(format!("CONNECT {st}"));
            }
            let r = ConnectReply::parse(&out).map_err(|e| format!("{e:?}"))?;
            if r.status == NtStatus::SUCCESS {
                // Accepted: B reported it (or the connection failed after and says so).
                let evs = drain(b);
                if !evs
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::Accepted | EventKind::ConnectFailed))
                {
                    return Err(format!("connected, but B reported {evs:?}"));
                }
            }
            Ok(())
        },
        close_both,
    );
    assert!(n > 0, "an accepted connection allocates its state");
}

fn posting() {
    let n = sweep(
        "POST",
        On::Caller,
        pair,
        |_, (_, _, hb, cb)| clean(post(hb, *cb, PostKind::Receive, 2)),
        close_pair,
    );
    assert!(n > 0, "a posted buffer allocates its memory and MR");
}

fn waiting_querying_flushing() {
    sweep(
        "WAIT (pended, then completed by a peer abort)",
        On::Caller,
        pair,
        |_, (ha, ca, hb, cb)| {
            let p = wait_pending(ha, Some(*ca), 4);
            clean(abort(hb, *cb))?;
            clean(done(&p).0)
        },
        close_pair,
    );
    sweep(
        "QUERY",
        On::Caller,
        pair,
        |_, (ha, ca, _, _)| {
            let (st, _) = done(&ha.ioctl(
                Ioctl::Query.code(),
                &bytes(&QueryRequest { connection_id: *ca }),
                QueryReply::SIZE,
            ));
            clean(st)
        },
        close_pair,
    );
    sweep(
        "FLUSH",
        On::Caller,
        |w| pair_with_receives(w, 2),
        |_, (_, _, hb, cb)| clean(flush(hb, *cb)),
        close_pair,
    );
    sweep(
        "LIST_OBJECTS",
        On::Caller,
        |w| {
            let (ha, ca, hb, cb) = pair(w);
            let _listener = listen(&hb, 4792);
            (ha, ca, hb, cb)
        },
        |_, (_, _, hb, _)| {
            let (st, _) = done(&hb.ioctl(
                Ioctl::ListObjects.code(),
                &bytes(&ListObjectsRequest),
                BATCH_HEADER_SIZE + 4 * ObjectEntry::SIZE,
            ));
            clean(st)
        },
        close_pair,
    );
}

fn disconnecting() {
    sweep(
        "DISCONNECT (abortive)",
        On::Caller,
        pair,
        |_, (ha, ca, _, _)| clean(abortive(ha, *ca)),
        close_pair,
    );
    sweep(
        "DISCONNECT (graceful, both sides)",
        On::Caller,
        pair,
        |_, (ha, ca, hb, cb)| {
            let p = disconnect_pending(ha, *ca);
            let q = disconnect_pending(hb, *cb);
            clean(done(&p).0)?;
            clean(done(&q).0)
        },
        close_pair,
    );
    sweep(
        "ABORT",
        On::Caller,
        pair,
        |_, (ha, ca, _, _)| clean(abort(ha, *ca)),
        close_pair,
    );
}

fn closing_connections_and_handles() {
    sweep(
        "CLOSE of a connection with receives posted",
        On::Caller,
        |w| pair_with_receives(w, 2),
        |_, (ha, ca, hb, cb)| {
            clean(close_status(hb, *cb))?;
            clean(close_status(ha, *ca))
        },
        close_pair,
    );
    sweep(
        "handle cleanup with a connection, a listener and a pended WAIT",
        On::Caller,
        |w| {
            let (ha, ca, hb, cb) = pair_with_receives(w, 2);
            let p = wait_pending(&hb, Some(cb), 4);
            (ha, ca, std::cell::RefCell::new(Some(hb)), p)
        },
        |_, (_, _, hb, p)| {
            // The handle's cleanup and close, as the I/O manager's last CloseHandle causes.
            hb.borrow_mut().take().expect("open").close();
            let st = done(p).0;
            if st != NtStatus::CANCELLED {
                return Err(format!(
                    "the pended WAIT completed with {st}, not cancelled"
                ));
            }
            Ok(())
        },
        |_, (ha, _, _, _)| ha.close(),
    );
}

/// The IOCTLs the sweeps above issue, each through its own sweep: a new control code must get
/// a sweep of its own (and a line here) before this test passes again.
const SWEPT: &[Ioctl] = &[
    Ioctl::GetInfo,
    Ioctl::ListAdapters,
    Ioctl::Listen,
    Ioctl::Connect,
    Ioctl::Wait,
    Ioctl::Query,
    Ioctl::Post,
    Ioctl::Disconnect,
    Ioctl::Abort,
    Ioctl::Flush,
    Ioctl::Close,
    Ioctl::ListObjects,
];

/// One test: the memory balance each run checks is process-wide, so nothing else of the
/// harness may run meanwhile (its other test threads start and end with allocations).
#[test]
fn every_operation_survives_each_of_its_allocations_failing() {
    for op in Ioctl::ALL {
        assert!(SWEPT.contains(op), "{op:?} has no low-resources sweep");
    }
    creating_the_engine();
    opening_a_handle();
    get_info_and_list_adapters();
    listening_and_closing_the_listener();
    connecting();
    accepting();
    posting();
    waiting_querying_flushing();
    disconnecting();
    closing_connections_and_handles();
}
