//! Misuse detection: each broken NDKPI consumer rule is recorded as its `Violation` under
//! `MisusePolicy::Record` (and the call fails), legal concurrency is not flagged, and the
//! default `MisusePolicy::Panic` aborts the process with a message naming the rule.
mod common;
use common::*;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndkpi_sys::*;
use softndk::{Completion, MisusePolicy, ObjectKind, Queue, Violation};

/// A fabric that records violations instead of panicking.
fn recording() -> Net {
    Net::with(Completion::Inline, MisusePolicy::Record, V21, V21)
}

fn info_size() -> u32 {
    u32::try_from(size_of::<NDK_ADAPTER_INFO>()).unwrap()
}

fn query_info(adapter: *mut NDK_ADAPTER) -> NTSTATUS {
    let mut info = NDK_ADAPTER_INFO::default();
    let mut size = info_size();
    // SAFETY: live adapter; valid info buffer and size.
    unsafe { d(adapter).NdkQueryAdapterInfo.unwrap()(adapter, &raw mut info, &raw mut size) }
}

// --- PASSIVE-only call from a callback -------------------------------------------------------

/// The context of a create completion that calls `NdkQueryAdapterInfo`.
struct Probe {
    adapter: *mut NDK_ADAPTER,
    status: Mutex<Option<NTSTATUS>>,
    object: AtomicUsize,
}

unsafe extern "system" fn query_info_from_create_completion(
    ctx: PVOID,
    status: NTSTATUS,
    obj: *mut NDK_OBJECT_HEADER,
) {
    // SAFETY: ctx is the Probe the test keeps alive until this completion ran.
    let probe = unsafe { &*ctx.cast::<Probe>() };
    if status == NtStatus::SUCCESS {
        probe
            .object
            .store(obj.expose_provenance(), Ordering::SeqCst);
    }
    // The misuse under test: a PASSIVE_LEVEL-only function inside a provider callback.
    let st = query_info(probe.adapter);
    *probe.status.lock().unwrap() = Some(st);
}

#[test]
fn query_adapter_info_inside_a_callback_records_passive_only_in_callback() {
    let net = recording();
    let adapter = net.open(1, V21);
    assert_eq!(
        query_info(adapter),
        NtStatus::SUCCESS,
        "outside a callback it is legal"
    );
    assert!(net.fabric.violations().is_empty());

    let probe = Probe {
        adapter,
        status: Mutex::new(None),
        object: AtomicUsize::new(0),
    };
    let ctx: PVOID = std::ptr::from_ref(&probe).cast_mut().cast();
    let mut pd: *mut NDK_PD = std::ptr::null_mut();
    // SAFETY: live adapter; valid callback, context (alive past the call: Inline mode runs the
    // completion before the call returns) and out-pointer.
    let st = unsafe {
        d(adapter).NdkCreatePd.unwrap()(
            adapter,
            Some(query_info_from_create_completion),
            ctx,
            &raw mut pd,
        )
    };
    assert_eq!(
        st,
        NtStatus::PENDING,
        "Inline: the create completes through its callback"
    );
    assert_eq!(
        *probe.status.lock().unwrap(),
        Some(NtStatus::INVALID_PARAMETER),
        "the call made inside the callback fails"
    );
    assert_eq!(
        net.fabric.violations(),
        [Violation::PassiveOnlyInCallback {
            function: "NdkQueryAdapterInfo"
        }]
    );

    let pd: *mut NDK_PD =
        std::ptr::with_exposed_provenance_mut(probe.object.load(Ordering::SeqCst));
    assert!(!pd.is_null(), "the create still succeeded");
    close(pd, d(pd).NdkClosePd);
    net.fabric.close_adapter(adapter);
    assert_eq!(net.fabric.violations().len(), 1, "nothing else was misuse");
    assert_eq!(net.fabric.live_objects(), 0);
}

// --- double close ------------------------------------------------------------------------------

#[test]
fn closing_an_object_twice_records_double_close_and_the_first_close_still_completes() {
    let net = recording();
    let adapter = net.open(1, V21);

    // Closed and completed, then closed again.
    let notes = Notes::new();
    let cq = create_cq(adapter, 16, &notes);
    assert_eq!(close(cq, d(cq).NdkCloseCq), NtStatus::SUCCESS);
    let again = Slot::new();
    // SAFETY: the CQ is closed; softndk keeps its memory as a tombstone, and closing it again
    // is the misuse under test.
    let st = unsafe { d(cq).NdkCloseCq.unwrap()(hdr(cq), Some(on_close), again.ctx()) };
    assert_eq!(st, NtStatus::INVALID_PARAMETER, "the second close fails");
    assert_eq!(
        net.fabric.violations(),
        [Violation::DoubleClose {
            function: "NdkCloseCq",
            kind: ObjectKind::Cq
        }]
    );

    // Closed again while the first close still pends (the PD waits for its MR).
    let pd = create_pd(adapter);
    let buf = Buf::new(pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let first = Slot::new();
    // SAFETY: live PD; valid callback and context.
    let st1 = unsafe { d(pd).NdkClosePd.unwrap()(hdr(pd), Some(on_close), first.ctx()) };
    assert_eq!(st1, NtStatus::PENDING, "the PD's close waits for its MR");
    first.mark_returned();
    let second = Slot::new();
    // SAFETY: the PD is closing; closing it again is the misuse under test.
    let st2 = unsafe { d(pd).NdkClosePd.unwrap()(hdr(pd), Some(on_close), second.ctx()) };
    assert_eq!(st2, NtStatus::INVALID_PARAMETER);
    assert_eq!(
        net.fabric.violations().last(),
        Some(&Violation::DoubleClose {
            function: "NdkClosePd",
            kind: ObjectKind::Pd
        })
    );
    assert_eq!(net.fabric.violations().len(), 2);

    buf.close();
    assert_eq!(
        first.wait(),
        NtStatus::SUCCESS,
        "the first close still completes"
    );
    net.settle();
    assert_eq!(
        (first.calls(), second.calls(), again.calls()),
        (1, 0, 0),
        "one close completion per object, none for the rejected closes"
    );
    net.fabric.close_adapter(adapter);
    assert_eq!(net.fabric.live_objects(), 0);
    assert_eq!(net.fabric.violations().len(), 2);
}

// --- use after close --------------------------------------------------------------------------

#[test]
fn flush_or_receive_on_a_closed_qp_records_use_after_close() {
    let net = recording();
    let end = End::new(&net, 1, V21);
    let mut buf = Buf::new(end.pd, 16, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    assert_eq!(close(end.qp, d(end.qp).NdkCloseQp), NtStatus::SUCCESS);

    flush(end.qp);
    assert_eq!(
        net.fabric.violations(),
        [Violation::UseAfterClose {
            function: "NdkFlush",
            kind: ObjectKind::Qp
        }]
    );
    let after_close = |function| Violation::UseAfterClose {
        function,
        kind: ObjectKind::Qp,
    };
    assert_post_refused(
        &net,
        post_receive(end.qp, &buf.sge(0, 16), 1),
        &[after_close("NdkFlush"), after_close("NdkReceive")],
        "the post fails",
    );
    net.settle();
    assert_eq!(
        net.fabric.cq_len(end.cq),
        Some(0),
        "a rejected post produces no completion"
    );

    buf.close();
    close(end.cq, d(end.cq).NdkCloseCq);
    close(end.pd, d(end.pd).NdkClosePd);
    net.fabric.close_adapter(end.adapter);
    assert_eq!(net.fabric.live_objects(), 0);
    assert_eq!(net.fabric.violations().len(), 2);
}

// --- concurrent posts ------------------------------------------------------------------------

/// Post one receive (`Queue::Receive`) or send (`Queue::Initiator`) from another thread. The
/// pointers cross the thread boundary as exposed addresses.
fn post_from_thread(
    qp: *mut NDK_QP,
    queue: Queue,
    sge: NDK_SGE,
    ctx: usize,
) -> std::thread::JoinHandle<NTSTATUS> {
    let qp = qp.expose_provenance();
    // SAFETY: reading the pointer view of the union is valid for an SGE built by `Buf::sge`.
    let va = unsafe { sge.Address.VirtualAddress }.expose_provenance();
    let (len, token) = (sge.Length, sge.MemoryRegionToken);
    std::thread::spawn(move || {
        let qp: *mut NDK_QP = std::ptr::with_exposed_provenance_mut(qp);
        let sge = NDK_SGE {
            Address: NDK_SGE_ADDRESS {
                VirtualAddress: std::ptr::with_exposed_provenance_mut(va),
            },
            Length: len,
            MemoryRegionToken: token,
        };
        match queue {
            Queue::Receive => post_receive(qp, &sge, ctx),
            Queue::Initiator => post_send(qp, &sge, ctx, 0),
        }
    })
}

/// A post returned `STATUS_INVALID_PARAMETER` (`what` says why it must) and the violations the
/// fabric recorded so far are exactly `violations`.
#[track_caller]
fn assert_post_refused(net: &Net, status: NTSTATUS, violations: &[Violation], what: &str) {
    assert_eq!(status, NtStatus::INVALID_PARAMETER, "{what}");
    assert_eq!(net.fabric.violations(), violations);
}

/// A post on `queue` made from another thread ([`post_from_thread`]) and held inside the
/// provider until the returned gate is released; `what` names it for the message.
fn held_post(
    net: &Net,
    qp: *mut NDK_QP,
    queue: Queue,
    sge: NDK_SGE,
    ctx: usize,
    what: &str,
) -> (softndk::PostGate, std::thread::JoinHandle<NTSTATUS>) {
    let gate = net.fabric.hold_next_post(qp, queue);
    let held = post_from_thread(qp, queue, sge, ctx);
    assert!(
        gate.wait_entered(WAIT),
        "{what} never got inside the provider"
    );
    (gate, held)
}

#[test]
fn two_concurrent_posts_to_one_receive_queue_record_concurrent_post() {
    let net = recording();
    let end = End::new(&net, 1, V21);
    let mut buf = Buf::new(end.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);

    let (gate, held) = held_post(
        &net,
        end.qp,
        Queue::Receive,
        buf.sge(0, 32),
        1,
        "the first receive",
    );

    let concurrent = Violation::ConcurrentPost {
        function: "NdkReceive",
        queue: Queue::Receive,
    };
    assert_post_refused(
        &net,
        post_receive(end.qp, &buf.sge(32, 32), 2),
        &[concurrent],
        "the overlapping post fails",
    );

    gate.release();
    assert_eq!(
        held.join().unwrap(),
        NtStatus::SUCCESS,
        "the held post itself is fine"
    );
    assert_eq!(
        end.qp_stats(&net).outstanding_receives,
        1,
        "only the held receive was queued"
    );

    // Serialised again: a further post is legal.
    receive_ok(end.qp, &buf.sge(32, 32), 3);
    assert_eq!(net.fabric.violations().len(), 1);
    buf.close();
    end.teardown(&net);
    assert_eq!(net.fabric.live_objects(), 0);
    assert_eq!(net.fabric.violations().len(), 1);
}

#[test]
fn a_receive_and_a_send_at_the_same_time_on_one_qp_are_not_a_violation() {
    let net = recording();
    let pair = Pair::connect(&net, V21, V21);
    let qp = pair.a.qp;
    let mut rbuf = Buf::new(pair.a.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
    let mut sbuf = Buf::new(pair.a.pd, 64, NDK_MR_FLAG_ALLOW_LOCAL_READ);

    // A receive held inside the provider while the test thread sends.
    let (gate, held) = held_post(&net, qp, Queue::Receive, rbuf.sge(0, 32), 1, "the receive");
    assert_eq!(
        post_send(qp, &sbuf.sge(0, 8), 2, 0),
        NtStatus::SUCCESS,
        "the initiator queue is free"
    );
    gate.release();
    assert_eq!(held.join().unwrap(), NtStatus::SUCCESS);

    // A send held inside the provider while the test thread posts a receive.
    let (gate, held) = held_post(&net, qp, Queue::Initiator, sbuf.sge(8, 8), 3, "the send");
    assert_eq!(
        post_receive(qp, &rbuf.sge(32, 32), 4),
        NtStatus::SUCCESS,
        "the receive queue is free"
    );
    gate.release();
    assert_eq!(held.join().unwrap(), NtStatus::SUCCESS);

    assert!(
        net.fabric.violations().is_empty(),
        "{:?}",
        net.fabric.violations()
    );
    let stats = pair.a.qp_stats(&net);
    assert_eq!(
        (stats.receives_posted, stats.initiator_posted),
        (2, 2),
        "all four posts were accepted"
    );
    rbuf.close();
    sbuf.close();
    pair.teardown(&net);
    assert_eq!(net.fabric.live_objects(), 0);
    assert!(
        net.fabric.violations().is_empty(),
        "{:?}",
        net.fabric.violations()
    );
}

// --- adapter closed with live objects ----------------------------------------------------------

#[test]
fn closing_the_adapter_with_an_object_open_records_adapter_closed_with_live_objects() {
    let net = recording();
    let adapter = net.open(1, V21);
    let pd = create_pd(adapter);
    net.fabric.close_adapter(adapter);
    assert_eq!(
        net.fabric.violations(),
        [Violation::AdapterClosedWithLiveObjects { live: 1 }]
    );
    assert_eq!(
        net.fabric.live_objects(),
        2,
        "the adapter stays open with its PD"
    );

    close(pd, d(pd).NdkClosePd);
    net.fabric.close_adapter(adapter);
    assert_eq!(net.fabric.live_objects(), 0);
    assert_eq!(
        net.fabric.violations().len(),
        1,
        "closing it properly is not misuse"
    );
}

// --- the default policy ---------------------------------------------------------------------------

const CHILD_ENV: &str = "SOFTNDK_MISUSE_PANIC_CHILD";
const CHILD_TEST: &str = "panic_policy_child_closes_an_object_twice";

/// Runs only as the child of `default_panic_policy_aborts_the_process_naming_the_rule`.
#[test]
fn panic_policy_child_closes_an_object_twice() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let net = Net::new(Completion::Inline);
    let adapter = net.open(1, V21);
    let notes = Notes::new();
    let cq = create_cq(adapter, 16, &notes);
    close(cq, d(cq).NdkCloseCq);
    eprintln!("child: closing the CQ a second time");
    close(cq, d(cq).NdkCloseCq);
    panic!("softndk let a double close pass under MisusePolicy::Panic");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn default_panic_policy_aborts_the_process_naming_the_rule() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("child: closing the CQ a second time"),
        "the child did not reach the double close:\n{stderr}"
    );
    assert!(
        !out.status.success(),
        "the child survived a double close:\n{stderr}"
    );
    assert!(
        stderr.contains("object closed twice"),
        "the abort message does not name the rule:\n{stderr}"
    );
    assert!(
        !stderr.contains("softndk let a double close pass"),
        "{stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "expected an abort (SIGABRT), got {:?}:\n{stderr}",
            out.status
        );
    }
}

// --- NDK called under the consumer's spin lock ---------------------------------------------

#[test]
fn an_ndk_call_under_the_consumers_lock_records_called_under_consumer_lock() {
    let net = recording();
    let adapter = net.open(1, V21);
    assert_eq!(query_info(adapter), NtStatus::SUCCESS);
    assert!(
        net.fabric.violations().is_empty(),
        "without the lock it is legal"
    );
    let guard = softndk::consumer_lock::enter();
    // The call still proceeds (it is recorded, not failed): the deadlock is only a risk.
    assert_eq!(query_info(adapter), NtStatus::SUCCESS);
    drop(guard);
    assert_eq!(
        net.fabric.violations(),
        vec![Violation::CalledUnderConsumerLock {
            function: "NdkQueryAdapterInfo"
        }]
    );
    assert!(
        Violation::CalledUnderConsumerLock { function: "x" }
            .rule()
            .contains("disconnect callback"),
        "the rule says why"
    );
    // Released: legal again; nested guards count as one lock held until the outer is dropped.
    assert_eq!(query_info(adapter), NtStatus::SUCCESS);
    let outer = softndk::consumer_lock::enter();
    drop(softndk::consumer_lock::enter());
    assert!(softndk::consumer_lock::held());
    drop(outer);
    assert!(!softndk::consumer_lock::held());
    assert_eq!(net.fabric.violations().len(), 1);
    net.fabric.close_adapter(adapter);
}
