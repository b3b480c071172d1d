//! The world the model runs in and the IOCTLs it issues: a two-host softndk fabric (host 0 at
//! interface 1, address 10.0.0.1; host 1 at interface 2, address 10.0.0.2), one engine told of
//! adapter removals, and one helper per request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ndkdisc_abi::{
    AbortRequest, BATCH_HEADER_SIZE, CloseRequest, ConnectReply, ConnectRequest, DisconnectRequest,
    Event, FlushRequest, Ioctl, NtStatus, PostKind, PostRequest, Record, WaitRequest,
    decode_wait_reply,
};
use ndkdisc_core::ports::AdapterDesc;
use ndkdisc_core::{Config, Engine};
use ndkdisc_host::{HostHandle, HostPlatform, Pending};
use softndk::{Completion, Fabric, FabricConfig, HostConfig, HostId, Timing};

/// How long any one request may take before the run calls it a hang.
pub const WAIT: Duration = Duration::from_secs(10);
/// Host 0's address.
pub const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// Host 1's address.
pub const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// A fabric of two hosts and the engine over it.
pub struct World {
    /// The provider.
    pub fabric: Arc<Fabric>,
    /// Host 0 (interface 1, 10.0.0.1) and host 1 (interface 2, 10.0.0.2).
    pub hosts: [HostId; 2],
    /// The engine under test, told of adapter removals.
    pub engine: Arc<Engine<HostPlatform>>,
}

/// A hardware-like world (the default `FabricConfig`, no kindness) completing as `completion`,
/// whose provider gives up on an unanswered graceful disconnect after 300 ms instead of 2 s: a
/// link loss leaves every graceful DISCONNECT on it unanswered, and a run must not wait 2 s
/// for each (what happens, and in what order, is the same).
pub fn world(completion: Completion) -> World {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion,
        timing: Timing {
            disconnect_timeout: Duration::from_millis(300),
            ..Timing::default()
        },
        ..FabricConfig::default()
    }));
    let w = world_of(
        fabric,
        [HostConfig::new(1, [A]), HostConfig::new(2, [B])],
        Config::default(),
    );
    ndkdisc_host::watch_adapter_removal(&w.engine);
    w
}

/// A world over `fabric` whose two hosts (interface 1 at [`A`], 2 at [`B`]) the caller
/// configures; its engine is not told of adapter removals.
pub fn world_of(fabric: Arc<Fabric>, hosts: [HostConfig; 2], config: Config) -> World {
    let [a, b] = hosts;
    let ha = fabric.add_host(a);
    let hb = fabric.add_host(b);
    let platform = HostPlatform::new(Arc::clone(&fabric), adapters(&[(1, A), (2, B)]));
    let engine = ndkdisc_host::engine(platform, config);
    World {
        fabric,
        hosts: [ha, hb],
        engine,
    }
}

/// The interfaces the platform reports to the engine: `(if_index, address)`.
pub fn adapters(list: &[(u32, IpAddr)]) -> Vec<AdapterDesc> {
    list.iter()
        .map(|&(if_index, ip)| AdapterDesc {
            if_index,
            address: SocketAddr::new(ip, 0),
        })
        .collect()
}

/// A record's bytes.
pub fn bytes<R: Record>(r: &R) -> Vec<u8> {
    let mut v = vec![0; R::SIZE];
    r.encode(&mut v)
        .expect("a record encodes into its own size");
    v
}

/// Wait for a request to complete (a hang panics).
pub fn done(p: &Pending) -> (NtStatus, Vec<u8>) {
    p.wait(WAIT).expect("request completed")
}

/// Issue a CONNECT from host 0's interface to host 1's `port`.
pub fn connect_pending(h: &HostHandle, port: u16) -> Pending {
    let req = ConnectRequest {
        if_index: 1,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(B, port),
    };
    h.ioctl(Ioctl::Connect.code(), &bytes(&req), ConnectReply::SIZE)
}

/// Issue a WAIT (blocking or not) with room for `room` events.
pub fn wait_request(
    h: &HostHandle,
    connection: Option<u64>,
    room: usize,
    nonblocking: bool,
) -> Pending {
    let req = WaitRequest {
        connection,
        nonblocking,
    };
    h.ioctl(
        Ioctl::Wait.code(),
        &bytes(&req),
        BATCH_HEADER_SIZE + room * Event::SIZE,
    )
}

/// The events of a WAIT reply.
pub fn decode_events(out: &[u8]) -> Vec<Event> {
    let mut slots = [None; 64];
    let n = decode_wait_reply(out, &mut slots).expect("a WAIT reply decodes");
    slots[..n].iter().flatten().copied().collect()
}

/// Issue a request without output and wait for its status.
pub fn simple(h: &HostHandle, ioctl: Ioctl, input: &[u8]) -> NtStatus {
    done(&h.ioctl(ioctl.code(), input, 0)).0
}

/// CLOSE of a connection: its status.
pub fn close(h: &HostHandle, id: u64) -> NtStatus {
    simple(h, Ioctl::Close, &bytes(&CloseRequest { id }))
}

/// ABORT of a connection: its status.
pub fn abort(h: &HostHandle, id: u64) -> NtStatus {
    simple(h, Ioctl::Abort, &bytes(&AbortRequest { connection_id: id }))
}

/// FLUSH of a connection: its status.
pub fn flush(h: &HostHandle, id: u64) -> NtStatus {
    simple(h, Ioctl::Flush, &bytes(&FlushRequest { connection_id: id }))
}

/// A DISCONNECT, graceful (it pends until the peer answers or the provider's disconnect
/// timeout) or abortive.
pub fn disconnect_pending(h: &HostHandle, id: u64, abortive: bool) -> Pending {
    let req = DisconnectRequest {
        connection_id: id,
        abortive,
    };
    h.ioctl(Ioctl::Disconnect.code(), &bytes(&req), 0)
}

/// POST `count` requests of 256 bytes: its status.
pub fn post(h: &HostHandle, id: u64, kind: PostKind, count: u32) -> NtStatus {
    let req = PostRequest {
        connection_id: id,
        kind,
        count,
        length: 256,
    };
    simple(h, Ioctl::Post, &bytes(&req))
}

/// Once the fabric is idle, whether every NDK object is released (the listener's adapter by the
/// passive worker after its close, so allow it a moment).
///
/// # Errors
/// What is left, or that the fabric never became idle.
pub fn released(fabric: &Fabric) -> Result<(), String> {
    if !fabric.wait_idle(WAIT) {
        return Err("the fabric never became idle".to_owned());
    }
    for _ in 0..500 {
        if fabric.live_objects() == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!(
        "NDK objects not released: {:?}",
        fabric.live_by_kind()
    ))
}
