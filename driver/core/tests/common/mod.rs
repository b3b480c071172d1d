//! Shared scaffolding of the engine's end-to-end tests: a two-host softndk world, one engine,
//! and helpers that speak the IOCTL ABI.
#![allow(
    dead_code,
    unused_imports,
    unused_macros,
    reason = "each test binary uses a subset"
)]
#![allow(clippy::pedantic, reason = "test scaffolding")]

pub use std::net::{IpAddr, Ipv4Addr, SocketAddr};
pub use std::sync::Arc;
pub use std::time::Duration;

pub use ndkdisc_abi::*;
pub use ndkdisc_core::ports::AdapterDesc;
pub use ndkdisc_core::{Access, Config, Engine};
pub use ndkdisc_host::{HostHandle, HostPlatform, Pending};
pub use softndk::{Completion, Fabric, FabricConfig, HostConfig, HostId, Misbehaviour, reason};

// The simulated IRQL's "no allocation" rule: counted in every engine test binary.
#[global_allocator]
static ALLOC: softndk::alloc_check::CheckingAllocator = softndk::alloc_check::CheckingAllocator;

// The world and the request helpers the model-based test uses too.
pub use ndkdisc_model::io::{
    A, B, WAIT, World, abort, adapters, bytes, decode_events, done, flush, post, simple, world_of,
};

pub fn world(completion: Completion) -> World {
    world_with(completion, Config::default())
}

/// [`world`] with engine settings of the test's own.
pub fn world_with(completion: Completion, config: Config) -> World {
    world_on(
        FabricConfig {
            completion,
            ..Default::default()
        },
        config,
    )
}

/// A world on a fabric configured by the test (timeouts, kindness).
pub fn world_on(fabric: FabricConfig, config: Config) -> World {
    let w = world_unwatched(fabric, config);
    ndkdisc_host::watch_adapter_removal(&w.engine);
    w
}

/// A world whose provider gives up on an unanswered graceful disconnect after
/// `disconnect_timeout` and on an unacknowledged send after 50 ms; otherwise hardware-like.
pub fn timed_world(completion: Completion, disconnect_timeout: Duration) -> World {
    world_on(
        FabricConfig {
            completion,
            timing: softndk::Timing {
                disconnect_timeout,
                retry_timeout: Duration::from_millis(50),
                handshake_timeout: Duration::from_secs(30),
            },
            ..Default::default()
        },
        Config::default(),
    )
}

/// [`world`] whose engine is not told of adapter removals (only the provider's callbacks).
pub fn world_without_removal_notice(completion: Completion) -> World {
    world_unwatched(
        FabricConfig {
            completion,
            ..Default::default()
        },
        Config::default(),
    )
}

fn world_unwatched(fabric: FabricConfig, config: Config) -> World {
    world_of(
        Arc::new(Fabric::new(fabric)),
        [HostConfig::new(1, [A]), HostConfig::new(2, [B])],
        config,
    )
}

/// Every way softndk completes requests, by name: inline in the call, before the call returns
/// (`Synchronous`), on a thread, at random, and like hardware (several provider threads).
pub fn modes() -> Vec<Completion> {
    vec![
        Completion::Synchronous,
        Completion::Inline,
        Completion::Thread,
        Completion::Random { seed: 11 },
        Completion::hardware(11),
    ]
}

/// One `#[test]` per completion mode of [`modes`], so a failure names its mode: for each `fn
/// name(mode: Completion)` listed, `per_mode!(name)` makes the tests `name::synchronous`,
/// `name::inline`, `name::thread`, `name::random` and `name::hardware`;
/// `per_mode!(name in { inline: Completion::Inline, .. })` names the modes itself.
macro_rules! per_mode {
    ($name:ident in { $($test:ident: $mode:expr),+ $(,)? }) => {
        mod $name {
            use softndk::Completion;

            $(
                #[test]
                fn $test() {
                    super::$name($mode);
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {$(
        per_mode!($name in {
            synchronous: Completion::Synchronous,
            inline: Completion::Inline,
            thread: Completion::Thread,
            random: Completion::Random { seed: 11 },
            hardware: Completion::hardware(11),
        });
    )+};
}

pub fn listen(h: &HostHandle, port: u16) -> ListenReply {
    let req = ListenRequest {
        if_index: 2,
        backlog: 0,
        local: SocketAddr::new(B, port),
    };
    let (st, out) = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&req), ListenReply::SIZE));
    assert_eq!(st, NtStatus::SUCCESS, "listen");
    ListenReply::parse(&out).unwrap()
}

/// A CONNECT from A's interface to B's `port`, as bytes.
pub fn connect_request(port: u16) -> Vec<u8> {
    bytes(&ConnectRequest {
        if_index: 1,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(B, port),
    })
}

/// Issue a CONNECT to B's `port` (it pends until established or failed).
pub fn connect_pending(h: &HostHandle, port: u16) -> Pending {
    h.ioctl(
        Ioctl::Connect.code(),
        &connect_request(port),
        ConnectReply::SIZE,
    )
}

pub fn connect(h: &HostHandle, port: u16) -> ConnectReply {
    let (st, out) = done(&connect_pending(h, port));
    assert_eq!(
        st,
        NtStatus::SUCCESS,
        "CONNECT completes with SUCCESS and the outcome in its reply"
    );
    ConnectReply::parse(&out).unwrap()
}

pub fn wait_pending(h: &HostHandle, conn: Option<u64>, room: usize) -> Pending {
    let req = WaitRequest {
        connection: conn,
        nonblocking: false,
    };
    h.ioctl(
        Ioctl::Wait.code(),
        &bytes(&req),
        BATCH_HEADER_SIZE + room * Event::SIZE,
    )
}

/// Wait for the next batch of events (any connection).
pub fn events(h: &HostHandle) -> Vec<Event> {
    let (st, out) = done(&wait_pending(h, None, 16));
    assert_eq!(st, NtStatus::SUCCESS);
    decode_events(&out)
}

/// A non-blocking WAIT (on one connection or any) with room for `room` events: what it
/// returned.
pub fn wait_now(h: &HostHandle, connection: Option<u64>, room: usize) -> Vec<Event> {
    let req = WaitRequest {
        connection,
        nonblocking: true,
    };
    let (st, out) = done(&h.ioctl(
        Ioctl::Wait.code(),
        &bytes(&req),
        BATCH_HEADER_SIZE + room * Event::SIZE,
    ));
    assert_eq!(st, NtStatus::SUCCESS, "non-blocking WAIT");
    decode_events(&out)
}

/// Drain without blocking.
pub fn drain(h: &HostHandle) -> Vec<Event> {
    wait_now(h, None, 32)
}

pub fn next_event(h: &HostHandle, kind: EventKind) -> Event {
    for _ in 0..20 {
        for e in events(h) {
            if e.kind == kind {
                return e;
            }
        }
    }
    panic!("no {kind:?} event");
}

/// The next `Disconnected` event on `h`, which must have `cause`.
pub fn disconnected(h: &HostHandle, cause: Cause) -> Event {
    let e = next_event(h, EventKind::Disconnected);
    assert_eq!(
        e.cause,
        Some(cause),
        "the Disconnected event's cause: {e:?}"
    );
    e
}

/// Poll QUERY until `f` holds (or the hang limit).
pub fn query_until(h: &HostHandle, id: u64, f: impl Fn(&QueryReply) -> bool) -> QueryReply {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let q = query(h, id);
        if f(&q) || std::time::Instant::now() > deadline {
            return q;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// CLOSE of a connection or listener: its status.
pub fn close_status(h: &HostHandle, id: u64) -> NtStatus {
    simple(h, Ioctl::Close, &bytes(&CloseRequest { id }))
}

/// CLOSE, which must succeed.
pub fn close(h: &HostHandle, id: u64) {
    assert_eq!(close_status(h, id), NtStatus::SUCCESS, "CLOSE of {id}");
}

/// An abortive DISCONNECT: its status.
pub fn abortive(h: &HostHandle, id: u64) -> NtStatus {
    simple(
        h,
        Ioctl::Disconnect,
        &bytes(&DisconnectRequest {
            connection_id: id,
            abortive: true,
        }),
    )
}

pub fn query(h: &HostHandle, id: u64) -> QueryReply {
    let (st, out) = done(&h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest { connection_id: id }),
        QueryReply::SIZE,
    ));
    assert_eq!(st, NtStatus::SUCCESS);
    QueryReply::parse(&out).unwrap()
}

/// GET_INFO on `h`, which must succeed.
pub fn info(h: &HostHandle) -> InfoReply {
    let (st, out) = done(&h.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    assert_eq!(st, NtStatus::SUCCESS);
    InfoReply::parse(&out).unwrap()
}

/// Make host `B`'s provider misbehave as `m` says.
pub fn misbehave_b(w: &World, m: Misbehaviour) {
    w.fabric.set_misbehaviour(w.hosts[1], m);
}

/// A connected pair: (active handle, its connection id, passive handle, its connection id).
pub fn pair(w: &World) -> (HostHandle, u64, HostHandle, u64) {
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    let r = connect(&ha, 4791);
    assert_eq!(r.status, NtStatus::SUCCESS, "connected");
    let accepted = next_event(&hb, EventKind::Accepted);
    let connected = next_event(&ha, EventKind::Connected);
    assert_eq!(connected.connection_id, r.connection_id);
    (ha, r.connection_id, hb, accepted.connection_id)
}

/// Two handles on the engine, the second listening on port 4791 of `B`: (A, B).
pub fn listening(w: &World) -> (HostHandle, HostHandle) {
    let hb = HostHandle::open(&w.engine).unwrap();
    let ha = HostHandle::open(&w.engine).unwrap();
    listen(&hb, 4791);
    (ha, hb)
}

/// Close both handles; then every NDK object is released, no kernel rule was broken and
/// nothing allocated where it must not.
/// A connected [`pair`] with `receives` receives posted on B's end.
pub fn pair_with_receives(w: &World, receives: u32) -> (HostHandle, u64, HostHandle, u64) {
    let (ha, ca, hb, cb) = pair(w);
    assert_eq!(
        post(&hb, cb, PostKind::Receive, receives),
        NtStatus::SUCCESS,
        "POST of {receives} receives"
    );
    (ha, ca, hb, cb)
}

/// CLOSE the connection on `first`, then the one on `second`, then [`finish`].
pub fn close_pair_and_finish(w: &World, first: (HostHandle, u64), second: (HostHandle, u64)) {
    close(&first.0, first.1);
    close(&second.0, second.1);
    finish(w, first.0, second.0);
}

pub fn finish(w: &World, ha: HostHandle, hb: HostHandle) {
    ha.close();
    hb.close();
    assert_released(w);
    assert!(w.fabric.violations().is_empty());
    assert_eq!(
        softndk::alloc_check::violations(),
        0,
        "allocated under an engine lock or in the disconnect callback: {}",
        softndk::alloc_check::first_violation().unwrap_or_default()
    );
}

/// Once the fabric is idle, every NDK object is released (the listener's adapter by the
/// passive worker after its close, so allow it a moment).
pub fn assert_released(w: &World) {
    assert_fabric_released(&w.fabric);
}

/// [`assert_released`] for a fabric of the test's own.
pub fn assert_fabric_released(fabric: &Fabric) {
    assert!(fabric.wait_idle(WAIT));
    for _ in 0..500 {
        if fabric.live_objects() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        fabric.live_objects(),
        0,
        "every NDK object released: {:?}",
        fabric.live_by_kind()
    );
}

pub fn terminal(evs: &[Event]) -> Vec<&Event> {
    evs.iter()
        .filter(|e| matches!(e.kind, EventKind::Disconnected | EventKind::ConnectFailed))
        .collect()
}

/// Start a graceful DISCONNECT: it pends until the peer answers (its own DISCONNECT or its
/// close), or the provider's disconnect timeout.
pub fn disconnect_pending(h: &HostHandle, id: u64) -> Pending {
    h.ioctl(
        Ioctl::Disconnect.code(),
        &bytes(&DisconnectRequest {
            connection_id: id,
            abortive: false,
        }),
        0,
    )
}

/// A graceful DISCONNECT, waited for: its status.
pub fn graceful(h: &HostHandle, id: u64) -> NtStatus {
    done(&disconnect_pending(h, id)).0
}

/// POST `count` requests of 256 bytes.
/// Block the engine's passive-level worker until the returned sender sends (or is dropped), so
/// the listener's accept work (and so the active side's CONNECT) waits.
pub fn block_passive(w: &World) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    w.engine.platform().on_passive_worker(move || {
        let _ = rx.recv_timeout(WAIT);
    });
    tx
}
