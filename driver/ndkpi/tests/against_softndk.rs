//! ndkpi driven against softndk through the real tables, in every completion mode.
#![allow(clippy::pedantic, reason = "test scaffolding")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use kalloc::Arc as KArc;
use std::time::Duration;

use ndkpi::sys::{NDK_VERSION, NtStatus};
use ndkpi::{
    Adapter, Buffer, Completion as CqResult, Connector, Cq, Created, Op, Pd, Qp, QueuePair,
    RegisteredMemory, Sink, Wsk,
};
use softndk::{Completion, Fabric, FabricConfig, Fault, HostConfig, reason};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Rec {
    done: Mutex<Vec<(Op, NtStatus)>>,
    created: Mutex<Vec<Created>>,
    disconnects: Mutex<Vec<Option<u32>>>,
    incoming: Mutex<Vec<Connector>>,
    closed_ops: Mutex<Vec<Op>>,
    cv: Condvar,
}

impl Sink for Rec {
    fn completed(&self, op: Op, status: NtStatus, created: Option<Created>) {
        if let Some(c) = created {
            self.created.lock().unwrap().push(c);
        }
        self.done.lock().unwrap().push((op, status));
        self.cv.notify_all();
    }
    fn closed(&self, op: Op) {
        self.closed_ops.lock().unwrap().push(op);
        self.cv.notify_all();
    }
    fn disconnected(&self, reason: Option<u32>) {
        self.disconnects.lock().unwrap().push(reason);
        self.cv.notify_all();
    }
    fn connection_requested(&self, connector: Connector) {
        self.incoming.lock().unwrap().push(connector);
        self.cv.notify_all();
    }
}

impl Rec {
    fn new() -> KArc<Self> {
        KArc::try_new(Self::default()).unwrap()
    }

    /// Wait for `op` to complete; returns its status.
    fn status_of(&self, op: Op) -> NtStatus {
        let mut done = self.done.lock().unwrap();
        loop {
            if let Some(&(_, s)) = done.iter().find(|(o, _)| *o == op) {
                return s;
            }
            let (g, t) = self.cv.wait_timeout(done, WAIT).unwrap();
            done = g;
            assert!(!t.timed_out(), "{op:?} never completed");
        }
    }

    fn take_created(&self, op: Op) -> Created {
        assert_eq!(self.status_of(op), NtStatus::SUCCESS, "{op:?}");
        self.created.lock().unwrap().remove(0)
    }

    fn wait_closed(&self, n: usize) {
        let mut c = self.closed_ops.lock().unwrap();
        while c.len() < n {
            let (g, t) = self.cv.wait_timeout(c, WAIT).unwrap();
            c = g;
            assert!(!t.timed_out(), "closes never completed");
        }
    }

    fn wait_until(&self, f: impl Fn(&Self) -> bool) {
        for _ in 0..1000 {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("condition never held");
    }
}

struct End {
    pd: Pd,
    cq: Cq,
    qp: Qp,
}

fn resources(adapter: &ndkpi::Adapter, sink: &KArc<Rec>) -> End {
    adapter.create_pd(sink);
    let Created::Pd(pd) = sink.take_created(Op::CreatePd) else {
        panic!("not a PD")
    };
    adapter.create_cq(sink, 64);
    let Created::Cq(cq) = sink.take_created(Op::CreateCq) else {
        panic!("not a CQ")
    };
    pd.create_qp(sink, &cq, 7, 16, 16);
    let Created::Qp(qp) = sink.take_created(Op::CreateQp) else {
        panic!("not a QP")
    };
    End { pd, cq, qp }
}

/// One `#[test]` per completion mode, so a failure names its mode: for each `fn name(mode:
/// Completion)` listed, `name::synchronous`, `name::inline`, `name::thread` and `name::random`.
/// Under Miri only `inline` and `random` run (threads and timing make the rest too slow there).
macro_rules! per_mode {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use softndk::Completion;

            #[test]
            #[cfg_attr(miri, ignore = "slow under Miri; inline and random cover the paths")]
            fn synchronous() {
                super::$name(Completion::Synchronous);
            }

            #[test]
            fn inline() {
                super::$name(Completion::Inline);
            }

            #[test]
            #[cfg_attr(miri, ignore = "slow under Miri; inline and random cover the paths")]
            fn thread() {
                super::$name(Completion::Thread);
            }

            #[test]
            fn random() {
                super::$name(Completion::Random { seed: 3 });
            }
        }
    )+};
}

/// A fabric whose callbacks come in `mode`, every other setting the default.
fn fabric_in(mode: Completion) -> Arc<Fabric> {
    Arc::new(Fabric::new(FabricConfig {
        completion: mode,
        ..Default::default()
    }))
}

/// Once `closes` closes of `sink`'s objects completed and the fabric is idle: the sink's only
/// reference is the test's, and closing `adapter` leaves nothing live.
fn all_released(fabric: &Fabric, wsk: &Wsk, sink: &KArc<Rec>, closes: usize, adapter: Adapter) {
    sink.wait_closed(closes);
    assert!(fabric.wait_idle(WAIT));
    assert_eq!(
        KArc::strong_count(sink),
        1,
        "no sink reference leaked or lost"
    );
    wsk.close_adapter(adapter);
    assert_eq!(fabric.live_objects(), 0);
}

fn run_connection(mode: Completion, version: NDK_VERSION) {
    let fabric = fabric_in(mode);
    let ip_a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let ip_b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    fabric.add_host(HostConfig::new(1, [ip_a]));
    fabric.add_host(HostConfig::new(2, [ip_b]));
    let wsk = ndkdisc_host::fabric_wsk(Arc::clone(&fabric));
    let aa = wsk.open_adapter(1, version).expect("open A");
    let ab = wsk.open_adapter(2, version).expect("open B");
    assert_eq!(aa.version(), version);

    // Each side: PD, CQ, QP, connector (listener on B) => closes to count.
    let a = Rec::new();
    let b = Rec::new();
    let l = Rec::new();
    let ea = resources(&aa, &a);
    let eb = resources(&ab, &b);
    ab.create_listener(&l);
    let Created::Listener(listener) = l.take_created(Op::CreateListener) else {
        panic!()
    };
    let dst = SocketAddr::new(ip_b, 4791);
    listener.listen(&l, dst);
    assert_eq!(l.status_of(Op::Listen), NtStatus::SUCCESS);
    assert_eq!(listener.local_address(), Some(dst));

    aa.create_connector(&a);
    let Created::Connector(ca) = a.take_created(Op::CreateConnector) else {
        panic!()
    };
    ca.connect(&a, &ea.qp, None, dst, 4, 4);
    l.wait_until(|l| !l.incoming.lock().unwrap().is_empty());
    let cb = l.incoming.lock().unwrap().remove(0);
    assert_eq!(cb.has_ex(), version >= NDK_VERSION { Major: 2, Minor: 1 });
    cb.accept(&b, &eb.qp, 4, 4);
    assert_eq!(a.status_of(Op::Connect), NtStatus::SUCCESS);
    ca.complete_connect(&a);
    assert_eq!(a.status_of(Op::CompleteConnect), NtStatus::SUCCESS);
    assert_eq!(b.status_of(Op::Accept), NtStatus::SUCCESS);
    assert_eq!(ca.peer_address(), Some(dst));
    assert_eq!(cb.peer_address(), ca.local_address());
    assert!(
        KArc::strong_count(&a) > 1 && KArc::strong_count(&b) > 1,
        "live objects hold their sinks"
    );

    // The peer resets: B's sink hears it once, with the reason when the adapter speaks 2.1.
    assert!(fabric.inject(cb.as_ptr(), Fault::PeerReset));
    b.wait_until(|b| !b.disconnects.lock().unwrap().is_empty());
    let expected = if version >= (NDK_VERSION { Major: 2, Minor: 1 }) {
        Some(reason::RESET)
    } else {
        None
    };
    assert_eq!(*b.disconnects.lock().unwrap(), vec![expected]);
    assert!(a.disconnects.lock().unwrap().is_empty());

    // Close everything; NDK's references are released after each sink's last close.
    for (sink, end, conn) in [(&a, ea, ca), (&b, eb, cb)] {
        conn.close(sink);
        end.qp.close(sink);
        end.cq.close(sink);
        end.pd.close(sink);
        sink.wait_closed(4);
    }
    listener.close(&l);
    l.wait_closed(1);
    assert!(fabric.wait_idle(WAIT));
    for s in [&a, &b, &l] {
        assert_eq!(KArc::strong_count(s), 1, "no reference leaked or lost");
    }
    wsk.close_adapter(aa);
    wsk.close_adapter(ab);
    assert_eq!(fabric.live_objects(), 0);
    assert!(fabric.violations().is_empty());
}

fn connection_lifecycle_at_2_1_uses_the_ex_callback_with_the_reason(mode: Completion) {
    run_connection(mode, NDK_VERSION { Major: 2, Minor: 1 });
}

fn connection_lifecycle_at_1_2_uses_the_plain_callback(mode: Completion) {
    run_connection(mode, NDK_VERSION { Major: 1, Minor: 2 });
}

fn a_refused_connect_reports_once_and_unclaimed_incoming_requests_are_rejected(mode: Completion) {
    let fabric = fabric_in(mode);
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    fabric.add_host(HostConfig::new(1, [ip]));
    let wsk = ndkdisc_host::fabric_wsk(Arc::clone(&fabric));
    let ad = wsk
        .open_adapter(1, NDK_VERSION { Major: 2, Minor: 1 })
        .unwrap();
    let a = Rec::new();
    let e = resources(&ad, &a);
    ad.create_connector(&a);
    let Created::Connector(c) = a.take_created(Op::CreateConnector) else {
        panic!()
    };
    c.connect(&a, &e.qp, None, SocketAddr::new(ip, 9), 1, 1);
    assert_eq!(a.status_of(Op::Connect), NtStatus::CONNECTION_REFUSED);
    assert!(fabric.wait_idle(WAIT));
    assert_eq!(
        a.done
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == Op::Connect)
            .count(),
        1,
        "exactly once"
    );
    c.close(&a);
    e.qp.close(&a);
    e.cq.close(&a);
    e.pd.close(&a);
    all_released(&fabric, &wsk, &a, 4, ad);
}

fn a_failed_create_leaves_no_reference_behind(mode: Completion) {
    let fabric = fabric_in(mode);
    let host = fabric.add_host(HostConfig::new(1, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]));
    let wsk = ndkdisc_host::fabric_wsk(Arc::clone(&fabric));
    let ad = wsk
        .open_adapter(1, NDK_VERSION { Major: 2, Minor: 1 })
        .unwrap();
    let a = Rec::new();
    fabric.fail_creates(host, softndk::ObjectKind::Pd, 1);
    ad.create_pd(&a);
    assert_eq!(
        a.status_of(Op::CreatePd),
        NtStatus::INSUFFICIENT_RESOURCES,
        "{mode:?}"
    );
    assert!(fabric.wait_idle(WAIT));
    assert!(a.created.lock().unwrap().is_empty());
    assert_eq!(
        KArc::strong_count(&a),
        1,
        "{mode:?}: the failed create released its reference"
    );
    // A successful create holds one until the object is closed.
    a.done.lock().unwrap().clear();
    ad.create_pd(&a);
    let Created::Pd(pd) = a.take_created(Op::CreatePd) else {
        panic!()
    };
    assert_eq!(
        KArc::strong_count(&a),
        2,
        "{mode:?}: the live PD holds its sink"
    );
    pd.close(&a);
    all_released(&fabric, &wsk, &a, 1, ad);
}

/// Registered memory that records when it is freed.
struct Tracked {
    memory: ndkdisc_host::SoftMemory,
    freed: Arc<AtomicBool>,
}

impl Tracked {
    fn shared(len: usize) -> (ndkpi::SharedMemory, Arc<AtomicBool>) {
        let freed = Arc::new(AtomicBool::new(false));
        let memory = ndkdisc_host::SoftMemory::new(len).expect("memory");
        let tracked = Self {
            memory,
            freed: Arc::clone(&freed),
        };
        let boxed: Box<dyn RegisteredMemory> = Box::new(tracked);
        (KArc::try_new(boxed).unwrap(), freed)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

// SAFETY: the soft memory's own contract, which this wrapper only forwards.
unsafe impl RegisteredMemory for Tracked {
    fn mdl(&self) -> *mut ndkpi::sys::MDL {
        self.memory.mdl()
    }
    fn base(&self) -> *mut u8 {
        self.memory.base()
    }
    fn len(&self) -> usize {
        self.memory.len()
    }
}

fn an_mr_owns_its_memory_until_its_close_completes_and_posts_and_reaps_take_their_guards(
    mode: Completion,
) {
    let fabric = fabric_in(mode);
    fabric.add_host(HostConfig::new(1, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]));
    let wsk = ndkdisc_host::fabric_wsk(Arc::clone(&fabric));
    let ad = wsk
        .open_adapter(1, NDK_VERSION { Major: 2, Minor: 1 })
        .unwrap();
    let a = Rec::new();
    let End { pd, cq, qp } = resources(&ad, &a);
    pd.create_mr(&a);
    let Created::Mr(mut mr) = a.take_created(Op::CreateMr) else {
        panic!("not an MR")
    };
    let (memory, freed) = Tracked::shared(64);
    mr.register(&a, KArc::clone(&memory));
    assert_eq!(a.status_of(Op::RegisterMr), NtStatus::SUCCESS, "{mode:?}");
    // A second registration is refused at once, and the first memory stays.
    a.done.lock().unwrap().clear();
    let (other, other_freed) = Tracked::shared(64);
    mr.register(&a, other);
    assert_eq!(
        a.status_of(Op::RegisterMr),
        NtStatus::INVALID_DEVICE_STATE,
        "{mode:?}"
    );
    assert!(
        other_freed.load(Ordering::SeqCst),
        "the refused memory is not kept"
    );

    // The test's own reference goes with the buffer: the QP and the MR hold the memory now.
    let qp = KArc::try_new(QueuePair::new(qp)).unwrap();
    let index = qp
        .attach(KArc::try_new(Buffer::new(memory, mr.local_token())).unwrap())
        .expect("memory to attach a buffer");
    {
        let mut receives = qp.receive_queue().expect("receive queue free");
        assert!(qp.receive_queue().is_none(), "one receive poster at a time");
        assert!(
            qp.initiator_queue().is_some(),
            "the initiator queue is separate"
        );
        assert_eq!(receives.post_receive(index, 0, 64, 0x11), NtStatus::SUCCESS);
        assert_eq!(
            receives.post_receive(index, 60, 8, 0x12),
            NtStatus::INVALID_PARAMETER,
            "outside the buffer"
        );
    }
    assert!(
        qp.receive_queue().is_some(),
        "a dropped guard frees its queue"
    );

    // The flushed receive is taken through the CQ's one reaper.
    qp.qp().flush();
    let mut reaper = cq.reaper().expect("CQ free");
    assert!(cq.reaper().is_none(), "one reaper at a time");
    let mut out = [CqResult::default(); 4];
    let mut n = 0;
    for _ in 0..1000 {
        n = reaper.results(&mut out);
        if n > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(n, 1, "{mode:?}: the flushed receive");
    assert_eq!(out[0].status, NtStatus::CANCELLED);
    assert_eq!(out[0].request_context, 0x11);
    // Refused once while held: the release hands the reaper back for another round.
    let reaper = reaper.release().expect_err("refused meanwhile");
    reaper.release().expect("nobody refused since");
    assert!(cq.reaper().is_some(), "released");

    // The QP's close releases its buffers; the MR still holds the memory.
    QueuePair::close(qp, &a).expect("the pair's only reference");
    a.wait_closed(1);
    assert!(fabric.wait_idle(WAIT));
    assert!(!freed.load(Ordering::SeqCst), "{mode:?}: the MR holds it");
    mr.close(&a);
    a.wait_closed(2);
    assert!(fabric.wait_idle(WAIT));
    assert!(
        freed.load(Ordering::SeqCst),
        "{mode:?}: freed after the MR's close"
    );
    cq.close(&a);
    pd.close(&a);
    all_released(&fabric, &wsk, &a, 4, ad);
    assert!(fabric.violations().is_empty(), "{:?}", fabric.violations());
}

per_mode!(
    connection_lifecycle_at_2_1_uses_the_ex_callback_with_the_reason,
    connection_lifecycle_at_1_2_uses_the_plain_callback,
    a_refused_connect_reports_once_and_unclaimed_incoming_requests_are_rejected,
    a_failed_create_leaves_no_reference_behind,
    an_mr_owns_its_memory_until_its_close_completes_and_posts_and_reaps_take_their_guards,
);

/// NDK holds a reference to the sink an object was created with until the object's close
/// completes, and the close completion releases it on the closing sink: closing through
/// another sink would release a reference that sink never gave (and free it early). ndkpi
/// refuses that in debug builds (in release builds it leaks the creator's reference instead).
#[test]
#[should_panic(expected = "closed through another sink")]
#[cfg_attr(
    miri,
    ignore = "leaks by design: the refused close leaves the PD and its creator's reference behind"
)]
fn closing_an_object_through_another_sink_than_its_creator_is_refused() {
    let fabric = fabric_in(Completion::Synchronous);
    fabric.add_host(HostConfig::new(1, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]));
    let wsk = ndkdisc_host::fabric_wsk(Arc::clone(&fabric));
    let ad = wsk
        .open_adapter(1, NDK_VERSION { Major: 2, Minor: 1 })
        .unwrap();
    let (creator, other) = (Rec::new(), Rec::new());
    ad.create_pd(&creator);
    let Created::Pd(pd) = creator.take_created(Op::CreatePd) else {
        panic!("a PD")
    };
    pd.close(&other);
}
