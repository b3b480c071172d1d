//! The ndkdisc scenario at the provider level: a peer disconnects while receives are posted.
//!
//! Two simulated hosts connect through the raw NDK dispatch tables (NDKPI 2.1, callbacks on
//! the provider's worker thread), pre-post receives, and host A disconnects. Host B gets the
//! disconnect callback with the provider's reason, and its receives stay posted: nothing was
//! flushed. An explicit `NdkFlush` then completes them with `STATUS_CANCELLED`. Each step is
//! printed; any deviation exits with status 1.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Buf, Net, Pair, V21, disconnect, flush, poll, post_receive};
use ndkpi_sys::{NDK_MR_FLAG_ALLOW_LOCAL_WRITE, NdkOperationTypeReceive, NtStatus};
use softndk::{Completion, reason};

const RECEIVES: usize = 4;

fn check(ok: bool, what: &str) {
    if ok {
        println!("  ok: {what}");
    } else {
        println!("  DEVIATION: {what}");
        std::process::exit(1);
    }
}

fn main() {
    let net = Net::new(Completion::Thread);
    println!("1. connect host A (10.0.0.1) to a listener on host B (10.0.0.2:4791), NDKPI 2.1");
    let pair = Pair::connect(&net, V21, V21);
    check(
        pair.a.version() == V21 && pair.b.version() == V21,
        "both adapters negotiated NDKPI 2.1",
    );

    println!("2. both sides pre-post {RECEIVES} receives");
    let mut bufs = Vec::new();
    for end in [&pair.a, &pair.b] {
        for i in 0..RECEIVES {
            let mut buf = Buf::new(end.pd, 256, NDK_MR_FLAG_ALLOW_LOCAL_WRITE);
            let status = post_receive(end.qp, &buf.sge(0, 256), 100 + i);
            check(status == NtStatus::SUCCESS, &format!("receive {i} posted"));
            bufs.push(buf);
        }
    }

    println!("3. host A disconnects gracefully (NdkDisconnect)");
    check(
        disconnect(pair.a.conn) == NtStatus::SUCCESS,
        "A's NdkDisconnect completed",
    );
    net.settle();

    println!("4. host B learns of it from the NDK disconnect callback");
    let events = pair.b.events.all();
    check(
        events == vec![Some(reason::GRACEFUL)],
        &format!(
            "B got exactly one NdkDisconnectEventCallbackEx, reason {events:?} (1 = graceful)"
        ),
    );
    check(
        pair.a.events.count() == 0,
        "A (the side that disconnected) got no callback",
    );

    println!("5. host B's posted receives are still outstanding: nothing was flushed");
    let stats = pair.b.qp_stats(&net);
    check(
        stats.outstanding_receives == RECEIVES,
        &format!("{} receives outstanding on B", stats.outstanding_receives),
    );
    check(
        stats.flush_calls == 0 && stats.provider_flushes == 0,
        "no flush of B's QP by anyone",
    );
    check(poll(pair.b.cq).is_empty(), "B's completion queue is empty");

    println!(
        "6. host A's own NdkDisconnect flushed A's receives (the NDK rule for the local side)"
    );
    let a_results = poll(pair.a.cq);
    check(
        a_results.len() == RECEIVES && a_results.iter().all(|r| r.Status == NtStatus::CANCELLED),
        "A's receives completed with STATUS_CANCELLED",
    );

    println!("7. host B flushes explicitly when it decides to (NdkFlush)");
    flush(pair.b.qp);
    let b_results = poll(pair.b.cq);
    check(
        b_results.len() == RECEIVES,
        &format!("{} completions on B", b_results.len()),
    );
    check(
        b_results
            .iter()
            .all(|r| r.Status == NtStatus::CANCELLED && r.Type == NdkOperationTypeReceive),
        "every one is a receive completed with STATUS_CANCELLED (0xC0000120)",
    );
    check(
        pair.b.qp_stats(&net).flush_calls == 1,
        "exactly one NdkFlush call on B's QP",
    );

    println!("8. close everything");
    for buf in bufs {
        buf.close();
    }
    pair.teardown(&net);
    net.settle();
    check(net.fabric.live_objects() == 0, "no NDK object left open");
    println!("scenario completed as expected");
}
