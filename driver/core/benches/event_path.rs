//! Benchmarks of the event path against the engine's design targets (host, 2 cores): callback
//! cost, events per second to a waiter in batches beside the one-request-per-connection
//! baseline, memory per connection, and a disconnect storm. Results and how to read them: `driver/core/BENCHMARKS.md`.
//!
//! What is measured where:
//!
//! - `disconnect_callback/*` — the public pieces of `Conn::disconnected`'s event path: the
//!   handle's queue lock (`HostLock`, a `std::sync::Mutex`, as the host engine uses), then
//!   `EventQueue::latch` of a `Disconnected` fact, unlock, then `Ready::complete` of the wait it
//!   satisfied (if any). Not included: `Conn`'s own lock and the clock read (`Conn` is
//!   crate-private); `e2e_peer_disconnect` covers the whole path through softndk.
//! - `events_to_waiter/*` — events per second delivered to one any-connection waiter whose WAIT
//!   takes a batch of 64 or 256, versus the baseline: one pended WAIT per connection
//!   (`HttpWaitForDisconnect` style), issued and completed in the same timed region.
//! - `disconnect_storm/*` — N connections on one queue, a `Disconnected` latched for each, then
//!   drained by batched WAITs until every event is delivered.
//! - `e2e_peer_disconnect` — the real callback through softndk: the peer's graceful DISCONNECT
//!   IOCTL makes softndk call our connector's disconnect callback (`Conn::disconnected`), which
//!   latches and completes the pended per-connection WAIT (a `HostRequest`).
//! - Memory (printed before the timed benches; no timing): bytes allocated per connection by
//!   `EventQueue::new` and `add_connection`, and live bytes per established connection through
//!   the whole engine over softndk.
//!
//! Requests in the queue benches are `BenchRequest`: a preallocated output buffer, no-op cancel
//! marking, completion recorded in a preallocated thread-local list — so the figures are of
//! the engine, not of a request's own locking (WDF's cancel marking and `WdfRequestComplete`
//! are not modelled).
#![allow(clippy::pedantic, reason = "benchmark scaffolding")]

use std::cell::RefCell;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ndkdisc_abi::{
    BATCH_HEADER_SIZE, Cause, ConnectReply, ConnectRequest, DisconnectRequest, Event, EventKind,
    Ioctl, ListenReply, ListenRequest, NtStatus, Record, WaitRequest, decode_wait_reply,
};
use ndkdisc_core::Config;
use ndkdisc_core::events::{ConnIndex, EventQueue, Latch, Limits, WaitOutcome};
use ndkdisc_core::kalloc::Arc as KArc;
use ndkdisc_core::ports::{AdapterDesc, Cancelled, Lock, PendedRequest, Platform};
use ndkdisc_host::{HostHandle, HostLock, HostPlatform, Pending};
use softndk::{Completion, Fabric, FabricConfig, HostConfig, HostId};

// --- a counting allocator -------------------------------------------------------------------

// softndk's allocator counts every allocation (all threads, and per thread: the zero-allocation
// checks look only at the thread running the event path, so the host platform's passive worker
// finishing earlier work cannot fail them) and the bytes allocated and freed.
#[global_allocator]
static GLOBAL: softndk::alloc_check::CheckingAllocator = softndk::alloc_check::CheckingAllocator;

#[derive(Clone, Copy, Debug)]
struct Usage {
    allocations: u64,
    allocated: u64,
    freed: u64,
}

use softndk::alloc_check::Owner;

impl From<(u64, u64, u64)> for Usage {
    /// softndk's counts: (allocations, bytes allocated, bytes freed).
    fn from((allocations, allocated, freed): (u64, u64, u64)) -> Self {
        Self {
            allocations,
            allocated,
            freed,
        }
    }
}

/// The process's counts so far.
fn usage() -> Usage {
    softndk::alloc_check::usage().into()
}

/// This thread's counts so far.
fn thread_usage() -> Usage {
    softndk::alloc_check::thread_usage().into()
}

/// One owner's counts so far (the engine is the consumer; softndk the provider).
fn usage_of(owner: softndk::alloc_check::Owner) -> Usage {
    softndk::alloc_check::usage_by(owner).into()
}

impl Usage {
    /// What happened since `before`: (allocations, bytes allocated, live bytes gained).
    fn since(self, before: Usage) -> (u64, u64, i64) {
        let allocated = self.allocated - before.allocated;
        let freed = self.freed - before.freed;
        (
            self.allocations - before.allocations,
            allocated,
            allocated as i64 - freed as i64,
        )
    }
}

/// Run `f`; panic if this thread allocated meanwhile.
fn assert_no_allocation<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let before = softndk::alloc_check::thread_allocations();
    let out = f();
    let n = softndk::alloc_check::thread_allocations() - before;
    assert_eq!(
        n, 0,
        "{what}: the event path allocated {n} times; it must never allocate"
    );
    out
}

// --- a request that costs nothing ------------------------------------------------------------

/// What became of a `BenchRequest`.
struct Done {
    status: NtStatus,
    information: usize,
    _out: Box<[u8]>,
}

std::thread_local! {
    /// Completions, reserved before each timed run so recording one never allocates.
    static DONE: RefCell<Vec<Done>> = const { RefCell::new(Vec::new()) };
}

/// Forget previous completions and make room for `n` more (outside the timed region).
fn reset_done(n: usize) {
    DONE.with(|d| {
        let mut d = d.borrow_mut();
        d.clear();
        d.reserve(n);
    });
}

/// (completions, events they carried); asserts each succeeded.
fn done_summary() -> (usize, usize) {
    DONE.with(|d| {
        let d = d.borrow();
        let events = d
            .iter()
            .map(|c| {
                assert_eq!(c.status, NtStatus::SUCCESS);
                (c.information - BATCH_HEADER_SIZE) / Event::SIZE
            })
            .sum();
        (d.len(), events)
    })
}

/// A pended request with a preallocated output buffer; cancel marking always succeeds and
/// completion is pushed onto `DONE` (the buffer is kept, not freed, so completion neither
/// allocates nor frees).
struct BenchRequest {
    token: u64,
    out: Box<[u8]>,
}

impl BenchRequest {
    fn new(token: u64, events: usize) -> Self {
        Self {
            token,
            out: vec![0; BATCH_HEADER_SIZE + events * Event::SIZE].into_boxed_slice(),
        }
    }
}

impl PendedRequest for BenchRequest {
    fn token(&self) -> u64 {
        self.token
    }

    fn output(&mut self) -> &mut [u8] {
        &mut self.out
    }

    fn mark_cancelable(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }

    fn unmark_cancelable(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }

    fn complete(self, status: NtStatus, information: usize) {
        DONE.with(|d| {
            d.borrow_mut().push(Done {
                status,
                information,
                _out: self.out,
            });
        });
    }
}

// --- fixtures ----------------------------------------------------------------------------------

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// Host a's addresses: `A` and more, because softndk (like TCP/IP) has 16,384 ephemeral ports
/// per address, and the real-connection cycle needs more connections from a than that.
const A_ADDRESSES: usize = 8;

fn a_address(k: usize) -> IpAddr {
    if k == 0 {
        A
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, u8::try_from(k).unwrap_or(u8::MAX)))
    }
}

fn fabric_and_platform(completion: Completion) -> (Arc<Fabric>, KArc<HostPlatform>) {
    let (fabric, platform, _) = fabric_platform_hosts(completion);
    (fabric, platform)
}

/// [`fabric_and_platform`], with the two hosts' ids (A's, B's).
fn fabric_platform_hosts(completion: Completion) -> (Arc<Fabric>, KArc<HostPlatform>, [HostId; 2]) {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion,
        ..Default::default()
    }));
    let hosts = [
        fabric.add_host(HostConfig::new(1, (0..A_ADDRESSES).map(a_address))),
        fabric.add_host(HostConfig::new(2, [B])),
    ];
    let adapters = vec![
        AdapterDesc {
            if_index: 1,
            address: SocketAddr::new(A, 0),
        },
        AdapterDesc {
            if_index: 2,
            address: SocketAddr::new(B, 0),
        },
    ];
    let platform = HostPlatform::new(Arc::clone(&fabric), adapters);
    (fabric, platform, hosts)
}

type Queue = HostLock<EventQueue<BenchRequest>>;

/// A queue (under the host engine's lock type) holding `connections` connections (sequence
/// numbers 1..=n).
fn queue_with(
    platform: &HostPlatform,
    connections: usize,
    waits: usize,
) -> (Queue, Vec<ConnIndex>) {
    let mut q = EventQueue::new(Limits {
        max_connections: connections,
        max_waits: waits,
    })
    .expect("reserve the queue");
    let indices = (1..=connections as u64)
        .map(|id| q.add_connection(id).expect("within quota"))
        .collect();
    (platform.lock(q), indices)
}

fn disconnected(ts: u64) -> Event {
    Event {
        cause: Some(Cause::Peer),
        ..Event::new(EventKind::Disconnected, 0, ts)
    }
}

/// The disconnect-callback path minus `Conn`'s own lock: lock, latch, unlock, complete.
#[inline]
fn callback(q: &Queue, index: ConnIndex, ts: u64) -> Latch {
    let (latch, ready) = q.with(|q| q.latch(index, disconnected(ts)));
    if let Some(ready) = ready {
        ready.complete();
    }
    latch
}

/// A WAIT as the engine's dispatch does it: lock, wait, unlock, complete if it did not pend.
#[inline]
fn wait(q: &Queue, request: BenchRequest, connection: Option<u64>, nonblocking: bool) -> bool {
    let outcome = q.with(|q| q.wait(request, connection, nonblocking));
    match outcome {
        WaitOutcome::Complete(ready) => {
            ready.complete();
            true
        }
        WaitOutcome::Pended => false,
    }
}

/// A deterministic permutation of `0..n` (xorshift Fisher–Yates): disconnects arrive in an
/// order unrelated to the order connections (and their waits) were made.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

// --- (a) the disconnect-callback path --------------------------------------------------------

/// Connections per timed batch in the callback bench (each takes one terminal event, ever).
const CALLBACK_BATCH: usize = 1024;

/// Per-connection WAITs pended in the HttpWaitForDisconnect-style callback benches.
const OWN_WAITS: [usize; 4] = [16, 1024, 16_384, 65_536];

fn disconnect_callback(c: &mut Criterion) {
    let (_fabric, platform) = fabric_and_platform(Completion::Inline);

    // Zero allocations, checked once before anything is timed (fails the bench loudly).
    {
        let (q, idx) = queue_with(&platform, CALLBACK_BATCH, CALLBACK_BATCH);
        let requests: Vec<_> = (0..CALLBACK_BATCH as u64)
            .map(|t| BenchRequest::new(t, 1))
            .collect();
        for r in requests {
            assert!(!wait(&q, r, None, false), "pends: nothing queued yet");
        }
        reset_done(CALLBACK_BATCH);
        assert_no_allocation("latch + complete a pended wait", || {
            for (i, &ix) in idx.iter().enumerate() {
                assert_eq!(callback(&q, ix, i as u64), Latch::Queued);
            }
        });
        assert_eq!(done_summary(), (CALLBACK_BATCH, CALLBACK_BATCH));
        let (q, idx) = queue_with(&platform, CALLBACK_BATCH, 1);
        assert_no_allocation("latch, no wait pended", || {
            for (i, &ix) in idx.iter().enumerate() {
                assert_eq!(callback(&q, ix, i as u64), Latch::Queued);
            }
        });
        assert_no_allocation("duplicate terminal fact", || {
            assert_eq!(callback(&q, idx[0], 0), Latch::Duplicate);
        });
        // Each connection with its own WAIT pended, the most waits benched: the callback
        // completes the connection's own WAIT, allocating nothing.
        let pended = OWN_WAITS[OWN_WAITS.len() - 1];
        let (q, idx) = queue_with(&platform, pended, pended);
        for (token, ix) in (1..).zip(&idx) {
            assert!(!wait(&q, BenchRequest::new(token, 1), Some(ix.id()), false));
        }
        reset_done(pended);
        let order = shuffled(pended, 3);
        assert_no_allocation("latch + complete the connection's own wait", || {
            for (k, &i) in order.iter().enumerate() {
                assert_eq!(callback(&q, idx[i], k as u64), Latch::Queued);
            }
        });
        assert_eq!(
            done_summary(),
            (pended, pended),
            "each own WAIT got its event"
        );
    }

    let mut g = c.benchmark_group("disconnect_callback");
    g.throughput(Throughput::Elements(CALLBACK_BATCH as u64));
    g.sample_size(30);
    g.bench_function("latch_queue_only", |b| {
        b.iter_batched(
            || queue_with(&platform, CALLBACK_BATCH, 1),
            |(q, idx)| {
                for (i, &ix) in idx.iter().enumerate() {
                    black_box(callback(&q, ix, i as u64));
                }
                (q, idx)
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("latch_and_complete_pended_wait", |b| {
        b.iter_batched(
            || {
                let (q, idx) = queue_with(&platform, CALLBACK_BATCH, CALLBACK_BATCH);
                for t in 0..CALLBACK_BATCH as u64 {
                    assert!(!wait(&q, BenchRequest::new(t, 1), None, false));
                }
                reset_done(CALLBACK_BATCH);
                (q, idx)
            },
            |(q, idx)| {
                for (i, &ix) in idx.iter().enumerate() {
                    black_box(callback(&q, ix, i as u64));
                }
                (q, idx)
            },
            BatchSize::PerIteration,
        );
    });
    // HttpWaitForDisconnect style: every connection has its own WAIT pended (set up untimed);
    // disconnects arrive in an unrelated order. The callback serves the connection's own WAIT
    // from its records, so the cost must not grow with the waits pended: timed over the first
    // `CALLBACK_BATCH` disconnects of W connections, W = 16 .. 65,536.
    // Shuffled, and in the order the waits were pended: the two tell the algorithm's cost (the
    // same in both) from the cache misses of visiting W records at random.
    for pended in OWN_WAITS {
        let batch = pended.min(CALLBACK_BATCH);
        for (name, order) in [
            ("shuffled", shuffled(pended, 3)),
            ("in_order", (0..pended).collect()),
        ] {
            let order: Vec<usize> = order.into_iter().take(batch).collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(
                format!("latch_and_complete_own_wait_{name}/{pended}_pended"),
                |b| {
                    b.iter_batched(
                        || {
                            let (q, idx) = queue_with(&platform, pended, pended);
                            for (token, ix) in (1..).zip(&idx) {
                                let r = BenchRequest::new(token, 1);
                                assert!(!wait(&q, r, Some(ix.id()), false));
                            }
                            reset_done(batch);
                            (q, idx)
                        },
                        |(q, idx)| {
                            for (k, &i) in order.iter().enumerate() {
                                black_box(callback(&q, idx[i], k as u64));
                            }
                            (q, idx)
                        },
                        BatchSize::PerIteration,
                    );
                },
            );
        }
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("duplicate_terminal_fact", |b| {
        let (q, idx) = queue_with(&platform, 1, 1);
        callback(&q, idx[0], 0);
        b.iter(|| black_box(callback(&q, idx[0], 1)));
    });
    g.finish();
}

/// Connections of the lookup benches: a full handle of the largest size benched.
const LOOKUP_CONNECTIONS: usize = 65_536;

/// Per-connection lookups at `LOOKUP_CONNECTIONS` connections: finding a connection by id (what
/// every per-connection IOCTL does first) and issuing a WAIT on one connection (non-blocking,
/// nothing queued: the lookup, the checks for queued events and a delivered terminal record,
/// the empty batch). Ids are visited in an order unrelated to their creation.
fn per_connection_lookup(c: &mut Criterion) {
    let (_fabric, platform) = fabric_and_platform(Completion::Inline);
    let (q, idx) = queue_with(&platform, LOOKUP_CONNECTIONS, 1);
    let ids: Vec<u64> = shuffled(LOOKUP_CONNECTIONS, 5)
        .into_iter()
        .map(|i| idx[i].id())
        .collect();
    reset_done(ids.len());
    assert_no_allocation("find and a non-blocking WAIT on one connection", || {
        for &id in &ids {
            assert!(q.with(|q| q.find(id)).is_some());
        }
    });
    let mut g = c.benchmark_group("per_connection");
    g.throughput(Throughput::Elements(1));
    let mut k = 0;
    g.bench_function(format!("find/{LOOKUP_CONNECTIONS}"), |b| {
        b.iter(|| {
            k = (k + 1) % ids.len();
            black_box(q.with(|q| q.find(ids[k])))
        });
    });
    // One request goes round: `wait` hands it back in its outcome, so nothing is allocated or
    // freed in the loop and only the engine's path is timed (a completed request's status is
    // the platform's to report, outside this).
    let mut request = Some(BenchRequest::new(0, 1));
    g.bench_function(
        format!("wait_issue_nonblocking/{LOOKUP_CONNECTIONS}"),
        |b| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                let r = request.take().expect("the request came back");
                match q.with(|q| q.wait(r, Some(ids[k]), true)) {
                    WaitOutcome::Complete(ready) => {
                        black_box(ready.information);
                        request = Some(ready.request);
                    }
                    WaitOutcome::Pended => unreachable!("a non-blocking WAIT never pends"),
                }
            });
        },
    );
    // The same WAIT with a fresh request each time, made and dropped by criterion's batching:
    // the harness's allocation and bookkeeping are inside this figure, so it bounds the one
    // above from above.
    g.bench_function(
        format!("wait_issue_nonblocking_fresh_request/{LOOKUP_CONNECTIONS}"),
        |b| {
            b.iter_batched(
                || {
                    k = (k + 1) % ids.len();
                    (BenchRequest::new(ids[k], 1), ids[k])
                },
                |(request, id)| q.with(|q| q.wait(request, Some(id), true)),
                BatchSize::SmallInput,
            );
        },
    );
    g.finish();
}

// --- (b) events per second to a waiter -------------------------------------------------------

/// Connections (one terminal event each) per timed run in the throughput bench.
const THROUGHPUT_CONNECTIONS: usize = 4096;

/// Latch a `Disconnected` for every connection (in `order`), and after every `batch` latches
/// the waiter's WAIT takes them all.
fn batched_run(q: &Queue, idx: &[ConnIndex], order: &[usize], requests: Vec<BenchRequest>) {
    let batch = order.len() / requests.len();
    let mut requests = requests.into_iter();
    for (n, &i) in order.iter().enumerate() {
        callback(q, idx[i], n as u64);
        if (n + 1) % batch == 0 {
            let r = requests.next().expect("one request per batch");
            assert!(
                wait(q, r, None, false),
                "events are queued: completes at once"
            );
        }
    }
}

/// The baseline: one WAIT per connection, issued up front (pends), then each connection's
/// disconnect completes its own request.
fn per_connection_run(q: &Queue, idx: &[ConnIndex], order: &[usize], requests: Vec<BenchRequest>) {
    for (ix, r) in idx.iter().zip(requests) {
        assert!(!wait(q, r, Some(ix.id()), false), "pends");
    }
    for (n, &i) in order.iter().enumerate() {
        callback(q, idx[i], n as u64);
    }
}

fn events_to_waiter(c: &mut Criterion) {
    let (_fabric, platform) = fabric_and_platform(Completion::Inline);
    let mut g = c.benchmark_group("events_to_waiter");
    g.sample_size(20);
    // The baseline's cost per event grows with the connections on the handle (see
    // BENCHMARKS.md), so it is measured at two sizes.
    for (n, batches) in [
        (THROUGHPUT_CONNECTIONS, &[64usize, 256][..]),
        (SMALL_HANDLE, &[64][..]),
    ] {
        throughput_at(&mut g, &platform, n, batches);
    }
    g.finish();
}

/// Connections on the small handle of the throughput bench.
const SMALL_HANDLE: usize = 256;

fn throughput_at(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    platform: &HostPlatform,
    n: usize,
    batches: &[usize],
) {
    let order = shuffled(n, 0x9E37_79B9_7F4A_7C15);
    let in_order: Vec<usize> = (0..n).collect();

    // Correctness of each run, once: every event delivered, the right number of completions.
    for &batch in batches {
        let (q, idx) = queue_with(platform, n, 1);
        let requests = (0..(n / batch) as u64)
            .map(|t| BenchRequest::new(t, batch))
            .collect();
        reset_done(n);
        assert_no_allocation("batched delivery", || {
            batched_run(&q, &idx, &order, requests);
        });
        assert_eq!(done_summary(), (n / batch, n));
    }
    {
        let (q, idx) = queue_with(platform, n, n);
        let requests = (0..n as u64).map(|t| BenchRequest::new(t, 1)).collect();
        reset_done(n);
        assert_no_allocation("one request per connection", || {
            per_connection_run(&q, &idx, &order, requests);
        });
        assert_eq!(done_summary(), (n, n));
    }

    g.throughput(Throughput::Elements(n as u64));
    for &batch in batches {
        g.bench_function(format!("batched_{batch}/{n}"), |b| {
            b.iter_batched(
                || {
                    let (q, idx) = queue_with(platform, n, 1);
                    let requests: Vec<_> = (0..(n / batch) as u64)
                        .map(|t| BenchRequest::new(t, batch))
                        .collect();
                    reset_done(n);
                    (q, idx, requests)
                },
                |(q, idx, requests)| {
                    batched_run(&q, &idx, &order, requests);
                    (q, idx)
                },
                BatchSize::PerIteration,
            );
        });
    }
    for (name, order) in [
        ("baseline_request_per_connection_shuffled", &order),
        ("baseline_request_per_connection_in_order", &in_order),
    ] {
        g.bench_function(format!("{name}/{n}"), |b| {
            b.iter_batched(
                || {
                    let (q, idx) = queue_with(platform, n, n);
                    let requests: Vec<_> = (0..n as u64).map(|t| BenchRequest::new(t, 1)).collect();
                    reset_done(n);
                    (q, idx, requests)
                },
                |(q, idx, requests)| {
                    per_connection_run(&q, &idx, order, requests);
                    (q, idx)
                },
                BatchSize::PerIteration,
            );
        });
    }
}

// --- (d) the disconnect storm -----------------------------------------------------------------

/// Connections in the criterion storm bench (repeated per sample, so its O(N²) setup — see
/// BENCHMARKS.md — has to stay affordable).
const STORM_CONNECTIONS: usize = 16_384;

/// Latch every connection's `Disconnected`, then drain with WAITs of `batch` events; returns
/// the events delivered.
fn storm(q: &Queue, idx: &[ConnIndex], batch: usize) -> usize {
    for (n, &ix) in idx.iter().enumerate() {
        callback(q, ix, n as u64);
    }
    let mut token = 0;
    let mut delivered = 0;
    loop {
        token += 1;
        let r = BenchRequest::new(token, batch);
        let outcome = q.with(|q| q.wait(r, None, true));
        let WaitOutcome::Complete(ready) = outcome else {
            unreachable!("non-blocking WAITs never pend")
        };
        let events = (ready.information - BATCH_HEADER_SIZE) / Event::SIZE;
        ready.complete();
        if events == 0 {
            return delivered;
        }
        delivered += events;
    }
}

/// One storm of `n` connections, timed once with `Instant` (too large to repeat per sample):
/// set `NDKDISC_STORM=<n>`. Prints setup, latch and drain times separately.
fn storm_once(platform: &HostPlatform, n: usize) {
    let start = Instant::now();
    let mut q = EventQueue::new(Limits {
        max_connections: n,
        max_waits: 1,
    })
    .expect("reserve the queue");
    let mut idx = Vec::with_capacity(n);
    let mut last = Instant::now();
    for id in 1..=n as u64 {
        idx.push(q.add_connection(id).expect("within quota"));
        if id.is_power_of_two() && id >= 1024 {
            println!(
                "  add_connection: {id} connections after {:?} (last doubling {:?})",
                start.elapsed(),
                last.elapsed()
            );
            last = Instant::now();
        }
    }
    let setup = start.elapsed();
    let q = platform.lock(q);
    reset_done(n / 256 + 2);
    // The WAITs' requests are made before the timed region, their buffers written once: a
    // million events fill 55 MB of batches, and fresh heap pages would put the page faults of
    // this harness's allocations in the figure (a driver's output buffers are the I/O
    // manager's, from a pool it reuses).
    let mut requests: Vec<BenchRequest> = (1..=n as u64 / 256 + 2)
        .rev()
        .map(|token| {
            let mut r = BenchRequest::new(token, 256);
            r.out.fill(1);
            r
        })
        .collect();
    let start = Instant::now();
    for (k, &ix) in idx.iter().enumerate() {
        callback(&q, ix, k as u64);
    }
    let latched = start.elapsed();
    let mut delivered = 0;
    loop {
        let Some(r) = requests.pop() else {
            unreachable!("one request per 256 events, one for the rest and one that finds none")
        };
        let outcome = q.with(|q| q.wait(r, None, true));
        let WaitOutcome::Complete(ready) = outcome else {
            unreachable!("non-blocking WAITs never pend")
        };
        let events = (ready.information - BATCH_HEADER_SIZE) / Event::SIZE;
        ready.complete();
        if events == 0 {
            break;
        }
        delivered += events;
    }
    let total = start.elapsed();
    assert_eq!(delivered, n, "every event delivered");
    println!(
        "storm of {n} (one-shot): setup {setup:?}; latch {latched:?}; latch + drain in 256-event \
         WAITs {total:?} ({:.1} M events/s)",
        n as f64 / total.as_secs_f64() / 1e6
    );
}

fn disconnect_storm(c: &mut Criterion) {
    let (_fabric, platform) = fabric_and_platform(Completion::Inline);
    if let Some(n) = std::env::var("NDKDISC_STORM")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        storm_once(&platform, n);
    }
    let n = STORM_CONNECTIONS;
    let mut g = c.benchmark_group("disconnect_storm");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function(format!("batched_256/{n}"), |b| {
        b.iter_batched(
            || {
                reset_done(n / 256 + 2);
                queue_with(&platform, n, 1)
            },
            |(q, idx)| {
                assert_eq!(storm(&q, &idx, 256), n);
                (q, idx)
            },
            BatchSize::PerIteration,
        );
    });
    let order = shuffled(n, 7);
    g.bench_function(format!("baseline_request_per_connection/{n}"), |b| {
        b.iter_batched(
            || {
                let (q, idx) = queue_with(&platform, n, n);
                let requests: Vec<_> = (0..n as u64).map(|t| BenchRequest::new(t, 1)).collect();
                reset_done(n);
                (q, idx, requests)
            },
            |(q, idx, requests)| {
                per_connection_run(&q, &idx, &order, requests);
                (q, idx)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

// --- the end-to-end path through softndk ------------------------------------------------------

fn bytes<R: Record>(r: &R) -> Vec<u8> {
    let mut v = vec![0; R::SIZE];
    r.encode(&mut v).expect("encode");
    v
}

fn done(p: &Pending) -> (NtStatus, Vec<u8>) {
    p.wait(Duration::from_secs(10)).expect("request completed")
}

fn drain_events(h: &HostHandle) -> Vec<Event> {
    drain_events_batch(h, 64)
}

/// Two handles on one engine: `a` connects to `b`'s listener.
struct Pair {
    fabric: Arc<Fabric>,
    hosts: [HostId; 2],
    a: HostHandle,
    b: HostHandle,
}

fn pair_world(max_connections: usize, max_waits: usize) -> Pair {
    let (fabric, platform, hosts) = fabric_platform_hosts(Completion::Inline);
    let engine = ndkdisc_host::engine(
        platform,
        Config {
            limits: Limits {
                max_connections,
                max_waits,
            },
            max_backlog: 128,
            ..Config::default()
        },
    );
    let a = HostHandle::open(&engine).expect("open a");
    let b = HostHandle::open(&engine).expect("open b");
    let req = ListenRequest {
        if_index: 2,
        backlog: 128,
        local: SocketAddr::new(B, 4791),
    };
    let (st, _) = done(&b.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE));
    assert_eq!(st, NtStatus::SUCCESS, "listen");
    Pair {
        fabric,
        hosts,
        a,
        b,
    }
}

/// Connect once: (a's connection id, b's connection id), each side's first event drained.
fn connect(p: &Pair) -> (u64, u64) {
    connect_from(p, None)
}

/// Connect once from a chosen local address (`None`: the provider picks).
fn connect_from(p: &Pair, local: Option<SocketAddr>) -> (u64, u64) {
    let req = ConnectRequest {
        if_index: 1,
        receive_depth: 0,
        send_depth: 0,
        local,
        remote: SocketAddr::new(B, 4791),
    };
    let (st, out) = done(&p.a.ioctl(Ioctl::Connect.code(), &bytes(&req), ConnectReply::SIZE));
    assert_eq!(st, NtStatus::SUCCESS);
    let reply = ConnectReply::parse(&out).expect("reply");
    assert_eq!(reply.status, NtStatus::SUCCESS, "connected");
    // The accept runs on the passive worker: a blocking WAIT on b takes its Accepted (a user
    // would block too; polling would take the CPU from the worker on a small machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    let b_id = loop {
        if let Some(e) = wait_events(&p.b)
            .into_iter()
            .find(|e| e.kind == EventKind::Accepted)
        {
            break e.connection_id;
        }
        assert!(Instant::now() < deadline, "accepted");
    };
    drain_events(&p.a);
    (reply.connection_id, b_id)
}

fn close(h: &HostHandle, id: u64) {
    let req = ndkdisc_abi::CloseRequest { id };
    assert_eq!(
        done(&h.ioctl(Ioctl::Close.code(), &bytes(&req), 0)).0,
        NtStatus::SUCCESS
    );
}

/// Rounds and connections per round of the end-to-end measurement.
const E2E_ROUNDS: usize = 16;
const E2E_PER_ROUND: usize = 64;

/// Not a criterion timing loop: each sample needs a fresh connected pair through softndk,
/// which costs far more than the disconnect it measures, and criterion sizes its iteration
/// count from the measured part only (a first version under `iter_custom` ran for over ten
/// minutes). So: `E2E_ROUNDS` rounds of `E2E_PER_ROUND` pairs, each disconnect timed with
/// `Instant`, and the distribution printed. Disconnects go in the order the waits were pended
/// (the per-connection wait is first in the queue: the engine's best case).
fn e2e_peer_disconnect(_c: &mut Criterion) {
    let p = pair_world(2 * E2E_PER_ROUND, 2 * E2E_PER_ROUND);
    let mut samples = Vec::with_capacity(E2E_ROUNDS * E2E_PER_ROUND);
    let mut connecting = Duration::ZERO;
    for _ in 0..E2E_ROUNDS {
        let start = Instant::now();
        let pairs: Vec<_> = (0..E2E_PER_ROUND).map(|_| connect(&p)).collect();
        connecting += start.elapsed();
        let waits: Vec<Pending> = pairs
            .iter()
            .map(|&(_, b_id)| {
                let req = WaitRequest {
                    connection: Some(b_id),
                    nonblocking: false,
                };
                p.b.ioctl(
                    Ioctl::Wait.code(),
                    &bytes(&req),
                    BATCH_HEADER_SIZE + Event::SIZE,
                )
            })
            .collect();
        let mut disconnects = Vec::with_capacity(pairs.len());
        for (&(a_id, _), waiting) in pairs.iter().zip(&waits) {
            assert!(!waiting.is_done(), "pends until the peer goes");
            let disconnect = bytes(&DisconnectRequest {
                connection_id: a_id,
                abortive: false,
            });
            let start = Instant::now();
            let st = p.a.ioctl(Ioctl::Disconnect.code(), &disconnect, 0);
            // Completion::Inline: the peer's callback ran on this thread, inside the IOCTL
            // (which itself pends until the peer answers, as on hardware).
            let delivered = waiting.is_done();
            samples.push(start.elapsed());
            assert!(delivered, "the peer's wait completed inside the DISCONNECT");
            disconnects.push(st);
        }
        for ((a_id, b_id), st) in pairs.into_iter().zip(disconnects) {
            // B's close answers A's graceful disconnect, which then completes.
            close(&p.b, b_id);
            assert_eq!(done(&st).0, NtStatus::SUCCESS);
            close(&p.a, a_id);
        }
        // Deliver every `Closed`, which frees the connections' records for the next round.
        while !drain_events(&p.a).is_empty() {}
        while !drain_events(&p.b).is_empty() {}
    }
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    println!(
        "\n== e2e_peer_disconnect (one-shot, {n} disconnects through softndk, Completion::Inline) ==\n\
         DISCONNECT IOCTL on a -> softndk -> b's disconnect callback -> latch -> b's WAIT completed: \
         mean {mean:?}, median {:?}, p99 {:?}, min {:?} (connecting the pairs took {connecting:?})",
        samples[n / 2],
        samples[n * 99 / 100],
        samples[0]
    );
    finish(p);
}

/// Connection counts of the real-connection cycle (`NDKDISC_REAL`, comma-separated, overrides).
/// softndk (like a real stack) has 16,384 ephemeral ports per address, so the active host has
/// `A_ADDRESSES` addresses and the CONNECTs rotate over them.
const REAL_CONNECTIONS: [usize; 3] = [1_000, 10_000, 100_000];

/// Real connections through softndk, one-shot per phase (setup dominates, so not criterion):
/// for each N, `a` CONNECTs N times to `b`'s listener (setup: both sides' events drained); a
/// peer-disconnect storm resets every one of `b`'s connections from the fabric (each is `b`'s
/// NDK disconnect callback, latching its event; no WAIT pended); `b` takes the N events in
/// batched WAITs of 256 (delivery); then both sides CLOSE every connection and take the
/// `Closed` events (teardown). Each phase is printed per connection, beside the smallest N's,
/// with the whole cycle's time.
fn real_connections(_c: &mut Criterion) {
    let counts: Vec<usize> = std::env::var("NDKDISC_REAL").map_or_else(
        |_| REAL_CONNECTIONS.to_vec(),
        |v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    );
    println!("\n== real connections through softndk (one-shot; per connection in brackets) ==");
    for n in counts {
        let cycle = Instant::now();
        let p = pair_world(n, 16);
        let start = Instant::now();
        // Spread over a's addresses (ephemeral ports are per address).
        let pairs: Vec<(u64, u64)> = (0..n)
            .map(|i| connect_from(&p, Some(SocketAddr::new(a_address(i % A_ADDRESSES), 0))))
            .collect();
        let setup = start.elapsed();
        let b_connectors = p.fabric.connectors(p.hosts[1]);
        assert_eq!(
            b_connectors.len(),
            n,
            "b holds one connector per connection"
        );
        let start = Instant::now();
        for &c in &b_connectors {
            assert!(p.fabric.inject(c, softndk::Fault::PeerReset));
        }
        let storm = start.elapsed();
        let start = Instant::now();
        let mut delivered = 0;
        while delivered < n {
            let got = drain_events_batch(&p.b, 256);
            assert!(!got.is_empty(), "every disconnect was latched");
            delivered += got.len();
        }
        let delivery = start.elapsed();
        assert_eq!(delivered, n, "one Disconnected per connection");
        let start = Instant::now();
        for &(a_id, b_id) in &pairs {
            close(&p.b, b_id);
            close(&p.a, a_id);
        }
        while !drain_events_batch(&p.a, 256).is_empty() {}
        while !drain_events_batch(&p.b, 256).is_empty() {}
        let teardown = start.elapsed();
        finish(p);
        let per = |d: Duration| d / u32::try_from(n).unwrap_or(u32::MAX);
        println!(
            "N = {n}: setup {setup:?} [{:?}], storm {storm:?} [{:?}], delivery {delivery:?} [{:?}], \
             teardown {teardown:?} [{:?}]; whole cycle {:?}",
            per(setup),
            per(storm),
            per(delivery),
            per(teardown),
            cycle.elapsed()
        );
    }
}

/// A non-blocking WAIT on any connection with room for `room` events: what it returned.
fn drain_events_batch(h: &HostHandle, room: usize) -> Vec<Event> {
    any_wait(h, room, true)
}

/// A blocking WAIT on any connection with room for 64 events: what it returned.
fn wait_events(h: &HostHandle) -> Vec<Event> {
    any_wait(h, 64, false)
}

fn any_wait(h: &HostHandle, room: usize, nonblocking: bool) -> Vec<Event> {
    let req = WaitRequest {
        connection: None,
        nonblocking,
    };
    let (st, out) = done(&h.ioctl(
        Ioctl::Wait.code(),
        &bytes(&req),
        BATCH_HEADER_SIZE + room * Event::SIZE,
    ));
    assert_eq!(st, NtStatus::SUCCESS);
    let mut slots = vec![None; room];
    let n = decode_wait_reply(&out, &mut slots).expect("valid reply");
    slots[..n].iter().map(|e| e.expect("event")).collect()
}

fn finish(p: Pair) {
    let Pair { fabric, a, b, .. } = p;
    a.close();
    b.close();
    assert!(fabric.wait_idle(Duration::from_secs(10)));
}

// --- (c) memory per connection (printed; nothing timed) --------------------------------------

fn memory_per_connection(_c: &mut Criterion) {
    // The zero-allocation checks below cannot pass vacuously: the counter does count.
    let before = softndk::alloc_check::thread_allocations();
    black_box(Box::new(0u64));
    assert_eq!(
        softndk::alloc_check::thread_allocations(),
        before + 1,
        "counting allocator"
    );
    println!("\n== memory per connection ==");
    println!(
        "size_of: Event {} B, Option<Event> {} B, Event {} B, EventQueue<BenchRequest> (header) {} B",
        size_of::<Event>(),
        size_of::<Option<Event>>(),
        size_of::<Event>(),
        size_of::<EventQueue<BenchRequest>>()
    );
    for (connections, waits) in [(1024usize, 0usize), (65_536, 0), (1024, 1024)] {
        let before = usage();
        let mut q: EventQueue<BenchRequest> = EventQueue::new(Limits {
            max_connections: connections,
            max_waits: waits,
        })
        .expect("reserve");
        let (n_new, bytes_new, _) = usage().since(before);
        let before = usage();
        for seq in 1..=connections as u64 {
            q.add_connection(seq).expect("quota");
        }
        let (n_add, _, _) = usage().since(before);
        println!(
            "EventQueue::new(max_connections {connections}, max_waits {waits}): {n_new} allocations, \
             {bytes_new} B = {:.1} B per connection; add_connection x{connections}: {n_add} allocations",
            bytes_new as f64 / connections as f64
        );
        drop(q);
    }

    // A handle's reservation at open (its queue and connection table), per connection it may
    // hold: what the engine keeps per connection before any NDK object exists.
    {
        let (_fabric, platform) = fabric_and_platform(Completion::Inline);
        let config = Config::default();
        let engine = ndkdisc_host::engine(platform, config);
        // This thread's counts: the open allocates on the calling thread only, while the
        // fabric's and the platform's worker threads, started just above, may still be making
        // their own start-up allocations (one run in three counted three such blocks).
        let before = thread_usage();
        let h = HostHandle::open(&engine).expect("open");
        let (n, _, live) = thread_usage().since(before);
        println!(
            "HostHandle::open, Config::default() (max_connections {}, max_waits {}): {n} allocations, \
             {live} B live = {:.1} B per connection it may hold",
            config.limits.max_connections,
            config.limits.max_waits,
            live as f64 / config.limits.max_connections as f64
        );
        h.close();
    }

    // The whole engine over softndk: live bytes per established connection. Each CONNECT makes
    // two engine connections (a's active one, b's accepted one) and their softndk objects.
    let p = pair_world(256, 16);
    connect(&p); // warm up lazily built state (adapters, first-use tables)
    let k = 64;
    let mut ids = Vec::with_capacity(k); // the test's own bookkeeping, outside the window
    let before = usage();
    let (engine_before, softndk_before) = (usage_of(Owner::Consumer), usage_of(Owner::Provider));
    ids.extend((0..k).map(|_| connect(&p)));
    assert!(p.fabric.wait_idle(Duration::from_secs(10)));
    let (n, _, live) = usage().since(before);
    let (n_engine, _, live_engine) = usage_of(Owner::Consumer).since(engine_before);
    let (n_softndk, _, live_softndk) = usage_of(Owner::Provider).since(softndk_before);
    assert_eq!(
        live,
        live_engine + live_softndk,
        "every block has one owner"
    );
    println!(
        "engine + softndk, {k} CONNECTs (each: one active + one accepted connection): \
         {n} allocations, {live} B live = {:.0} B per CONNECT, {:.0} B per engine connection",
        live as f64 / k as f64,
        live as f64 / (2 * k) as f64
    );
    println!(
        "  of which the engine's (ndkdisc-core, ndkpi wrappers, the host platform, the test's \
         bookkeeping): {n_engine} allocations, {:.0} B per engine connection; softndk's own: \
         {n_softndk} allocations, {:.0} B per engine connection",
        live_engine as f64 / (2 * k) as f64,
        live_softndk as f64 / (2 * k) as f64
    );
    for (a_id, b_id) in ids {
        close(&p.a, a_id);
        close(&p.b, b_id);
    }
    finish(p);
}

criterion_group!(
    benches,
    memory_per_connection,
    disconnect_callback,
    per_connection_lookup,
    events_to_waiter,
    disconnect_storm,
    e2e_peer_disconnect,
    real_connections
);
criterion_main!(benches);
