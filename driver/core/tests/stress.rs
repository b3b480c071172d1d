//! A multi-threaded stress test: several OS threads drive the engine at once through the IOCTL
//! ABI over softndk, whose provider threads deliver callbacks concurrently, while another
//! thread injects peer disconnects and resets on random live connectors.
//!
//! Each worker owns a handle that listens on host B and connects (from host A) to the listener
//! of the next worker, so every handle has active and accepted connections whose peers are
//! driven by other threads. Workers POST receives and sends, disconnect (graceful and
//! abortive), ABORT, FLUSH, CLOSE, QUERY and WAIT: non-blocking WAITs, filtered WAITs, and one
//! pended any-connection WAIT at a time, which events caused on other threads complete (or which
//! the worker cancels). After the run each worker aborts what is still open, CLOSEs everything
//! and drains until every connection's `Closed` arrived.
//!
//! Checked while running, per handle: sequence numbers strictly increase across its
//! any-connection WAITs and per connection (copies flagged `already_delivered` excepted); no
//! event for a connection the handle does not own (a connection is the handle's if its CONNECT
//! created it or its first event is `Accepted`/`ConnectFailed` on this listening handle); at most
//! one terminal event per connection, nothing after `Closed`, `Closed` only after the terminal
//! event; QUERY's succeeded + cancelled + failed + outstanding = posted, per queue. At the end:
//! exactly one terminal event and a `Closed` per connection; no connection owned by two handles;
//! every WAIT and graceful DISCONNECT completed; `NdkFlush` called no more often than FLUSH
//! succeeded; no provider misuse; nothing allocated where it must not be; every NDK object
//! released.
//!
//! `stress_*` run a second each (debug builds); `stress_long` (ignored, for a release build)
//! runs for `NDKDISC_STRESS_SECONDS` (default 20) in rounds alternating the completion modes.
#![allow(clippy::pedantic, reason = "test scaffolding")]

#[macro_use]
mod common;
use common::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use softndk::Fault;

const WORKERS: usize = 4;
const BASE_PORT: u16 = 6100;
/// Connections a worker keeps open at most (its own CONNECTs; accepted ones come on top).
const MAX_ACTIVE: usize = 3;

/// A small deterministic generator (xorshift64*), seeded per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the run did, summed over the workers.
#[derive(Default, Debug, Clone, Copy)]
struct Figures {
    connections: u64,
    /// Connections established (`Connected` or `Accepted` delivered).
    established: u64,
    /// Requests POSTed (POSTs that succeeded).
    posted: u64,
    events: u64,
    operations: u64,
    /// Pended any-connection WAITs that completed with events.
    pended_waits_with_events: u64,
    /// Faults the injector placed on a live connector.
    injected: u64,
}

impl std::ops::AddAssign for Figures {
    fn add_assign(&mut self, o: Self) {
        self.connections += o.connections;
        self.established += o.established;
        self.posted += o.posted;
        self.events += o.events;
        self.operations += o.operations;
        self.pended_waits_with_events += o.pended_waits_with_events;
        self.injected += o.injected;
    }
}

/// What a worker knows of one of its connections.
#[derive(Default, Debug)]
struct Conn {
    kinds: Vec<EventKind>,
    last_seq: u64,
    terminal: u32,
    closed_delivered: bool,
    close_called: bool,
    aborted_in_sweep: bool,
    /// Requests posted for sure (POSTs that succeeded) and at most (failed POSTs may have
    /// posted part of their count), receives then sends.
    posted_ok: [u64; 2],
    posted_max: [u64; 2],
}

struct Worker {
    index: usize,
    h: HostHandle,
    listener: u64,
    rng: Rng,
    conns: BTreeMap<u64, Conn>,
    /// The one pended any-connection WAIT, if any.
    pended: Option<Pending>,
    /// Every WAIT issued: checked to have completed at the end.
    waits: Vec<Pending>,
    gracefuls: Vec<(u64, Pending)>,
    last_any_seq: u64,
    /// Sequence numbers of delivered (not copied) events: never repeated.
    seen_seqs: HashSet<u64>,
    figures: Figures,
    flushes_ok: Arc<AtomicU64>,
}

impl Worker {
    fn fail(&self, what: &str) -> ! {
        panic!("worker {}: {what}", self.index);
    }

    /// Events that arrived through a WAIT (`any`: an any-connection WAIT).
    fn record(&mut self, evs: &[Event], any: bool) {
        let mut batch_seq = 0;
        for e in evs {
            self.figures.events += 1;
            if !e.already_delivered {
                if e.seq <= batch_seq {
                    self.fail(&format!(
                        "sequence numbers not increasing in a batch: {evs:?}"
                    ));
                }
                batch_seq = e.seq;
                if any {
                    if e.seq <= self.last_any_seq {
                        self.fail(&format!(
                            "any-connection WAITs: seq {} after {}: {e:?}",
                            e.seq, self.last_any_seq
                        ));
                    }
                    self.last_any_seq = e.seq;
                }
                if !self.seen_seqs.insert(e.seq) {
                    self.fail(&format!("sequence number delivered twice: {e:?}"));
                }
            }
            let id = e.connection_id;
            let conn = match self.conns.get_mut(&id) {
                Some(c) => c,
                None => {
                    // Not created by this handle's CONNECT: only a connection its listener
                    // produced may start here.
                    if !matches!(e.kind, EventKind::Accepted | EventKind::ConnectFailed)
                        || e.already_delivered
                    {
                        self.fail(&format!("event for a connection it does not own: {e:?}"));
                    }
                    self.figures.connections += 1;
                    self.conns.entry(id).or_default()
                }
            };
            if conn.closed_delivered {
                panic!("worker {}: event after Closed: {e:?}", self.index);
            }
            if e.already_delivered {
                // A copy of the terminal record, with the original's seq.
                if conn.terminal != 1
                    || !matches!(e.kind, EventKind::Disconnected | EventKind::ConnectFailed)
                {
                    panic!(
                        "worker {}: a copy of a terminal event not delivered: {e:?} after {:?}",
                        self.index, conn.kinds
                    );
                }
                continue;
            }
            if e.seq <= conn.last_seq {
                panic!(
                    "worker {}: seq not increasing on {id}: {e:?} after {:?}",
                    self.index, conn.kinds
                );
            }
            conn.last_seq = e.seq;
            conn.kinds.push(e.kind);
            match e.kind {
                EventKind::Connected | EventKind::Accepted => self.figures.established += 1,
                EventKind::Disconnected | EventKind::ConnectFailed => {
                    conn.terminal += 1;
                    if conn.terminal > 1 {
                        panic!(
                            "worker {}: a second terminal event on {id}: {:?}",
                            self.index, conn.kinds
                        );
                    }
                }
                EventKind::Closed => {
                    if conn.terminal != 1 || !conn.close_called {
                        panic!(
                            "worker {}: Closed of {id} before its terminal event or without CLOSE: {:?}",
                            self.index, conn.kinds
                        );
                    }
                    conn.closed_delivered = true;
                }
                _ => {}
            }
        }
    }

    /// Take the pended any-connection WAIT's events if it completed; pend a new one if `renew`.
    fn pump(&mut self, renew: bool) {
        if let Some(p) = &self.pended {
            if !p.is_done() {
                return;
            }
            let (st, out) = p.wait(WAIT).unwrap();
            self.pended = None;
            match st {
                NtStatus::SUCCESS => {
                    let evs = decode_events(&out);
                    if evs.is_empty() {
                        self.fail("a blocking WAIT completed with no event");
                    }
                    self.figures.pended_waits_with_events += 1;
                    self.record(&evs, true);
                }
                NtStatus::CANCELLED => {}
                st => self.fail(&format!("pended WAIT completed with {st:?}")),
            }
        }
        if renew && self.pended.is_none() {
            let p = wait_pending(&self.h, None, 1 + self.rng.below(8));
            self.waits.push(p.clone());
            self.pended = Some(p);
        }
    }

    fn live(&self) -> Vec<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.close_called)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick(&mut self) -> Option<u64> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.rng.below(live.len())])
    }

    fn check_query(&mut self, id: u64) {
        let (st, out) = done(&self.h.ioctl(
            Ioctl::Query.code(),
            &bytes(&QueryRequest { connection_id: id }),
            QueryReply::SIZE,
        ));
        if st != NtStatus::SUCCESS {
            self.fail(&format!("QUERY of its own open connection {id}: {st:?}"));
        }
        let q = QueryReply::parse(&out).unwrap();
        let c = &self.conns[&id];
        let (receives, sends) = q.accounted();
        if !(c.posted_ok[0]..=c.posted_max[0]).contains(&receives)
            || !(c.posted_ok[1]..=c.posted_max[1]).contains(&sends)
        {
            self.fail(&format!(
                "QUERY of {id}: completed + outstanding ({receives} receives, {sends} sends) is not \
                 what was posted ({:?}..={:?}): {q:?}",
                c.posted_ok, c.posted_max
            ));
        }
    }

    fn step(&mut self, target_port: u16) {
        self.figures.operations += 1;
        self.pump(false);
        match self.rng.below(20) {
            0 | 1 => {
                let active = self.live().len();
                if active < MAX_ACTIVE * 2 {
                    let r = connect_reply(&self.h, target_port);
                    if r.connection_id != 0 {
                        self.figures.connections += 1;
                        self.conns.entry(r.connection_id).or_default();
                    }
                }
            }
            2..=4 => {
                if let Some(id) = self.pick() {
                    let kind = if self.rng.below(3) == 0 {
                        PostKind::Send
                    } else {
                        PostKind::Receive
                    };
                    let n = 1 + self.rng.below(3) as u32;
                    let st = post(&self.h, id, kind, n);
                    let q = usize::from(matches!(kind, PostKind::Send));
                    let c = self.conns.get_mut(&id).unwrap();
                    c.posted_max[q] += u64::from(n);
                    if st == NtStatus::SUCCESS {
                        c.posted_ok[q] += u64::from(n);
                        self.figures.posted += u64::from(n);
                    }
                }
            }
            5 => {
                if let Some(id) = self.pick() {
                    let p = disconnect_pending(&self.h, id);
                    self.gracefuls.push((id, p));
                }
            }
            6 => {
                if let Some(id) = self.pick() {
                    abortive(&self.h, id);
                }
            }
            7 => {
                if let Some(id) = self.pick() {
                    abort(&self.h, id);
                }
            }
            8 => {
                if let Some(id) = self.pick()
                    && flush(&self.h, id) == NtStatus::SUCCESS
                {
                    self.flushes_ok.fetch_add(1, Ordering::SeqCst);
                }
            }
            9 => {
                if let Some(id) = self.pick() {
                    self.conns.get_mut(&id).unwrap().close_called = true;
                    let st = close_status(&self.h, id);
                    if st != NtStatus::SUCCESS {
                        self.fail(&format!("CLOSE of its own connection {id}: {st:?}"));
                    }
                }
            }
            10..=12 => {
                if let Some(id) = self.pick() {
                    self.check_query(id);
                }
            }
            13 => {
                // A filtered non-blocking WAIT (it may overtake other connections' events).
                if let Some(id) = self.pick()
                    && self.pended.is_none()
                {
                    let evs = wait_now(&self.h, Some(id), 1 + self.rng.below(4));
                    if evs.iter().any(|e| e.connection_id != id) {
                        self.fail(&format!("a WAIT on {id} returned {evs:?}"));
                    }
                    self.record(&evs, false);
                }
            }
            14 => {
                if let Some(p) = &self.pended {
                    // CancelIoEx: it completes cancelled (or with the events that beat it).
                    p.cancel();
                }
            }
            15 | 16 => {
                if self.pended.is_none() {
                    let evs = wait_now(&self.h, None, 1 + self.rng.below(8));
                    self.record(&evs, true);
                }
            }
            _ => self.pump(true),
        }
    }

    /// After the run: abort what has no terminal event yet, CLOSE everything, drain until every
    /// connection's `Closed` arrived.
    fn sweep(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump(true);
            let mut waiting = false;
            let ids: Vec<u64> = self.conns.keys().copied().collect();
            for id in ids {
                let c = &self.conns[&id];
                if c.terminal == 0 && !c.close_called && !c.aborted_in_sweep {
                    self.conns.get_mut(&id).unwrap().aborted_in_sweep = true;
                    abort(&self.h, id);
                }
                let c = &self.conns[&id];
                if c.terminal == 0 {
                    waiting = true;
                } else if !c.close_called {
                    self.conns.get_mut(&id).unwrap().close_called = true;
                    let st = close_status(&self.h, id);
                    if st != NtStatus::SUCCESS {
                        self.fail(&format!("final CLOSE of {id}: {st:?}"));
                    }
                    waiting = true;
                } else if !c.closed_delivered {
                    waiting = true;
                }
            }
            if !waiting {
                break;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.closed_delivered)
                    .map(|(id, c)| (*id, &c.kinds))
                    .collect();
                self.fail(&format!(
                    "terminal or Closed events never came: {missing:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for (id, c) in &self.conns {
            if c.terminal != 1 || c.kinds.last() != Some(&EventKind::Closed) {
                self.fail(&format!("connection {id} ended with {:?}", c.kinds));
            }
        }
    }
}

fn connect_reply(h: &HostHandle, port: u16) -> ConnectReply {
    let (st, out) = done(&connect_pending(h, port));
    assert_eq!(
        st,
        NtStatus::SUCCESS,
        "CONNECT completes with its outcome in the reply"
    );
    ConnectReply::parse(&out).unwrap()
}

fn listen_on(h: &HostHandle, port: u16) -> u64 {
    listen(h, port).listener_id
}

/// One run of `length` over a fresh two-host world completing as `mode`: what it did.
fn run(mode: Completion, seed: u64, length: Duration) -> Figures {
    let w = timed_world(mode, Duration::from_millis(200));
    let flushes_ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let injected = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(WORKERS));
    let listening = Arc::new(Barrier::new(WORKERS));
    let deadline = Instant::now() + length;
    let injector = {
        let (fabric, hosts, stop, injected) = (
            Arc::clone(&w.fabric),
            w.hosts,
            Arc::clone(&stop),
            Arc::clone(&injected),
        );
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0xFA17);
            while !stop.load(Ordering::SeqCst) {
                let host = hosts[rng.below(2)];
                let live = fabric.connectors(host);
                if !live.is_empty() {
                    let fault = if rng.below(2) == 0 {
                        Fault::PeerDisconnect
                    } else {
                        Fault::PeerReset
                    };
                    if fabric.inject(live[rng.below(live.len())], fault) {
                        injected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(1 + rng.below(5) as u64));
            }
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let engine = Arc::clone(&w.engine);
            let (flushes_ok, barrier, listening) = (
                Arc::clone(&flushes_ok),
                Arc::clone(&barrier),
                Arc::clone(&listening),
            );
            std::thread::spawn(move || {
                let h = HostHandle::open(&engine).unwrap();
                let listener = listen_on(&h, BASE_PORT + i as u16);
                let mut me = Worker {
                    index: i,
                    h,
                    listener,
                    rng: Rng::new(seed.wrapping_add(i as u64 * 7919)),
                    conns: BTreeMap::new(),
                    pended: None,
                    waits: Vec::new(),
                    gracefuls: Vec::new(),
                    last_any_seq: 0,
                    seen_seqs: HashSet::new(),
                    figures: Figures::default(),
                    flushes_ok,
                };
                listening.wait();
                let target = BASE_PORT + ((i + 1) % WORKERS) as u16;
                while Instant::now() < deadline {
                    me.step(target);
                }
                // Nobody connects any more; then no listener produces connections any more.
                barrier.wait();
                assert_eq!(
                    close_status(&me.h, me.listener),
                    NtStatus::SUCCESS,
                    "CLOSE listener"
                );
                barrier.wait();
                me.sweep();
                for (id, p) in std::mem::take(&mut me.gracefuls) {
                    assert!(
                        p.wait(WAIT).is_some(),
                        "a graceful DISCONNECT of {id} never completed"
                    );
                }
                let Worker {
                    h,
                    waits,
                    conns,
                    figures,
                    ..
                } = me;
                h.close();
                for p in &waits {
                    assert!(p.wait(WAIT).is_some(), "worker {i}: a WAIT never completed");
                }
                (conns.into_keys().collect::<Vec<_>>(), figures)
            })
        })
        .collect();
    let mut figures = Figures::default();
    let mut owners: HashMap<u64, usize> = HashMap::new();
    let mut results = Vec::new();
    for (i, wkr) in workers.into_iter().enumerate() {
        results.push((i, wkr.join()));
    }
    stop.store(true, Ordering::SeqCst);
    injector.join().unwrap();
    for (i, r) in results {
        let (ids, f) = match r {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        };
        figures += f;
        for id in ids {
            if let Some(other) = owners.insert(id, i) {
                panic!("connection {id} seen by handles {other} and {i}");
            }
        }
    }
    figures.injected = injected.load(Ordering::Relaxed);
    let flush_calls = w.fabric.stats().flush_calls;
    let flushes = flushes_ok.load(Ordering::SeqCst);
    assert!(
        flush_calls <= flushes,
        "NdkFlush called {flush_calls} times, FLUSH succeeded {flushes} times"
    );
    assert_released(&w);
    assert!(
        w.fabric.violations().is_empty(),
        "provider misuse: {:?}",
        w.fabric.violations()
    );
    assert_eq!(
        softndk::alloc_check::violations(),
        0,
        "allocated under an engine lock or in the disconnect callback: {}",
        softndk::alloc_check::first_violation().unwrap_or_default()
    );
    figures
}

#[test]
fn stress_thread() {
    let f = run(Completion::Thread, 1, Duration::from_millis(1000));
    assert!(
        f.connections > 0 && f.events > 0,
        "the run did something: {f:?}"
    );
    eprintln!("stress_thread: {f:?}");
}

#[test]
fn stress_hardware() {
    let f = run(Completion::hardware(2), 2, Duration::from_millis(1000));
    assert!(
        f.connections > 0 && f.events > 0,
        "the run did something: {f:?}"
    );
    eprintln!("stress_hardware: {f:?}");
}

/// The long run: `NDKDISC_STRESS_SECONDS` (default 20) in rounds of up to 5 s, each a fresh
/// world, alternating the provider's thread and hardware-like completion.
#[test]
#[ignore = "long; run in a release build"]
fn stress_long() {
    let seconds: u64 = std::env::var("NDKDISC_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut total = Figures::default();
    let mut rounds = 0u64;
    while Instant::now() < end {
        let left = end - Instant::now();
        let length = left.min(Duration::from_secs(5));
        let seed = 1000 + rounds;
        let mode = if rounds.is_multiple_of(2) {
            Completion::hardware(seed)
        } else {
            Completion::Thread
        };
        let f = run(mode, seed, length);
        eprintln!("round {rounds} ({mode:?}, seed {seed}): {f:?}");
        total += f;
        rounds += 1;
    }
    println!(
        "stress: {rounds} rounds in {:.1} s, {} connections ({} established), {} events, {} \
         operations ({} requests posted), {} pended WAITs completed by events, {} faults injected",
        start.elapsed().as_secs_f64(),
        total.connections,
        total.established,
        total.events,
        total.operations,
        total.posted,
        total.pended_waits_with_events,
        total.injected
    );
    assert!(total.connections > 0 && total.events > 0);
}
