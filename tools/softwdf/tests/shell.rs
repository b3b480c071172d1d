//! The KMDF shell (`driver/kmdf`, the `ndkdisc` crate built with its `host` feature) run end to
//! end against softwdf and softndk: its `DriverEntry`, device add, file callbacks,
//! `EvtIoDeviceControl`, cancel routine and work item, with the engine and softndk under them.
//! Host `a` (interface 1, 10.0.0.1) runs the shell; host `b` (interface 2, 10.0.0.2) is the
//! peer, driven through the host platform's engine on the same fabric.
#![allow(clippy::pedantic, reason = "test scaffolding")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ndkdisc_abi::*;
use ndkdisc_core::Config;
use ndkdisc_host::{HostHandle, HostPlatform};
use softndk::{Completion, Fabric, FabricConfig, HostConfig};
use softwdf::{Access, Completion as Done, Machine, Report, System};

// The shell's image: linked for its exported `DriverEntry`.
use ndkdisc as _;

unsafe extern "system" {
    /// The shell's `DriverEntry` (`#[export_name = "DriverEntry"]` in `driver/kmdf`).
    fn DriverEntry(
        driver: *mut wdk_sys::DRIVER_OBJECT,
        registry_path: *const wdk_sys::UNICODE_STRING,
    ) -> wdk_sys::NTSTATUS;
}

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// A fabric with the two hosts, the kernel booted on `a` with the shell loaded and its device
/// added, and the peer's engine on `b`.
struct Bench {
    system: System,
    device: Option<softwdf::Device>,
    fabric: Arc<Fabric>,
    peer: Arc<ndkdisc_core::Engine<HostPlatform>>,
}

fn bench(completion: Completion) -> Bench {
    let fabric = Arc::new(Fabric::new(FabricConfig {
        completion,
        ..Default::default()
    }));
    fabric.add_host(HostConfig::new(1, [A]));
    fabric.add_host(HostConfig::new(2, [B]));
    let mut system = System::boot(Machine {
        fabric: Arc::clone(&fabric),
        if_index: 1,
        addresses: vec![A],
        ndk: true,
    });
    // SAFETY: the shell's DriverEntry, linked into this test; one kernel at a time (System).
    unsafe { system.load(DriverEntry) }.expect("DriverEntry");
    let device = system.add_device().expect("EvtDriverDeviceAdd");
    let platform = HostPlatform::new(
        Arc::clone(&fabric),
        vec![ndkdisc_core::ports::AdapterDesc {
            if_index: 2,
            address: SocketAddr::new(B, 0),
        }],
    );
    let peer = ndkdisc_host::engine(platform, Config::default());
    Bench {
        system,
        device: Some(device),
        fabric,
        peer,
    }
}

impl Bench {
    fn open(&self) -> softwdf::Handle {
        self.system
            .open(self.device.as_ref().expect("device"), Access::ReadWrite)
            .expect("open")
    }

    /// Remove the device, unload the driver, and return what the rules saw; softndk's
    /// violations must be none, and no NDK object of either side may be left.
    fn finish(mut self) -> Report {
        if let Some(d) = self.device.take() {
            self.system.remove_device(d).expect("remove the device");
        }
        let report = self.system.unload();
        drop(self.peer);
        assert!(
            self.fabric.violations().is_empty(),
            "softndk saw misuse: {:?}",
            self.fabric.violations()
        );
        assert!(self.fabric.wait_idle(LIMIT), "the fabric goes idle");
        for _ in 0..500 {
            if self.fabric.live_objects() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            self.fabric.live_objects(),
            0,
            "every NDK object of both hosts is closed: left {:?}",
            self.fabric.live_by_kind()
        );
        report
    }

    /// The shell listens on `a`'s `port` (its listener id).
    fn listen(&self, h: &softwdf::Handle, port: u16) -> u64 {
        let listen = ListenRequest {
            if_index: 1,
            backlog: 0,
            local: SocketAddr::new(A, port),
        };
        let d = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&listen), ListenReply::SIZE));
        assert_eq!(status(&d), NtStatus::SUCCESS, "LISTEN");
        ListenReply::parse(&d.output)
            .expect("LISTEN reply")
            .listener_id
    }

    /// The peer connects from `b` to `a`'s `port`, where the shell listens; returns (the peer's
    /// connection, the shell's, as its `Accepted` event names it).
    fn accept_from_peer(&self, h: &softwdf::Handle, peer: &HostHandle, port: u16) -> (u64, u64) {
        let connect = ConnectRequest {
            if_index: 2,
            receive_depth: 0,
            send_depth: 0,
            local: None,
            remote: SocketAddr::new(A, port),
        };
        let (st, out) = peer
            .ioctl(Ioctl::Connect.code(), &bytes(&connect), ConnectReply::SIZE)
            .wait(LIMIT)
            .expect("peer CONNECT completes");
        assert_eq!(st, NtStatus::SUCCESS);
        let reply = ConnectReply::parse(&out).expect("CONNECT reply");
        assert_eq!(reply.status, NtStatus::SUCCESS, "the peer is connected");
        loop {
            let got = events(&done(&h.ioctl(
                Ioctl::Wait.code(),
                &wait_request(None),
                ROOM,
            )));
            if let Some(e) = got.iter().find(|e| e.kind == EventKind::Accepted) {
                return (reply.connection_id, e.connection_id);
            }
        }
    }
}

/// The peer resets its connection `id`.
fn peer_reset(peer: &HostHandle, id: u64) {
    let reset = DisconnectRequest {
        connection_id: id,
        abortive: true,
    };
    let (st, _) = peer
        .ioctl(Ioctl::Disconnect.code(), &bytes(&reset), 0)
        .wait(LIMIT)
        .expect("peer DISCONNECT completes");
    assert_eq!(st, NtStatus::SUCCESS, "peer DISCONNECT");
}

fn ioctl_status(h: &softwdf::Handle, ioctl: Ioctl, input: &[u8]) -> NtStatus {
    status(&done(&h.ioctl(ioctl.code(), input, 0)))
}

fn bytes<R: Record>(r: &R) -> Vec<u8> {
    let mut v = vec![0; R::SIZE];
    r.encode(&mut v).expect("a record encodes into its size");
    v
}

fn status(d: &Done) -> NtStatus {
    NtStatus(d.status)
}

fn events(d: &Done) -> Vec<Event> {
    let mut slots = [None; 64];
    let n = decode_wait_reply(&d.output, &mut slots).expect("a WAIT reply");
    slots[..n].iter().flatten().copied().collect()
}

fn wait_request(connection: Option<u64>) -> Vec<u8> {
    bytes(&WaitRequest {
        connection,
        nonblocking: false,
    })
}

const ROOM: usize = BATCH_HEADER_SIZE + 8 * Event::SIZE;
const LIMIT: Duration = Duration::from_secs(20);

fn done(io: &softwdf::Io) -> Done {
    io.wait_for(LIMIT).expect("the request completes")
}

fn assert_clean(report: &Report) {
    assert!(
        report.violations.is_empty(),
        "the shell broke the framework's rules: {:#?}",
        report.violations
    );
}

#[test]
fn the_driver_loads_answers_get_info_cancels_a_wait_and_unloads_cleanly() {
    let b = bench(Completion::Inline);
    let h = b.open();
    let info = done(&h.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    assert_eq!(status(&info), NtStatus::SUCCESS);
    let reply = InfoReply::parse(&info.output).expect("a GET_INFO reply");
    assert_eq!(reply.abi_version, u32::from(ABI_VERSION));
    assert_eq!(
        reply.ndk_status,
        NtStatus::SUCCESS,
        "WSK gave the NDK extension"
    );

    let wait = h.ioctl(Ioctl::Wait.code(), &wait_request(None), ROOM);
    if let Some(early) = wait.wait_for(Duration::from_millis(50)) {
        panic!("a WAIT with nothing queued pends, but it completed: {early:?}");
    }
    wait.cancel();
    assert_eq!(status(&done(&wait)), NtStatus::CANCELLED);
    h.close();
    assert_clean(&b.finish());
}

/// A handle opened for reading reaches the shell with queries (GET_INFO), and the I/O manager
/// refuses it a control code that needs write access (LISTEN) before the shell sees it.
#[test]
fn a_read_only_handle_gets_queries_and_is_refused_what_needs_write_access() {
    let b = bench(Completion::Inline);
    let h = b
        .system
        .open(b.device.as_ref().expect("device"), Access::Read)
        .expect("open");
    let info = done(&h.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    assert_eq!(
        status(&info),
        NtStatus::SUCCESS,
        "GET_INFO on a read-only handle"
    );
    let listen = ListenRequest {
        if_index: 1,
        backlog: 0,
        local: SocketAddr::new(A, 4791),
    };
    let d = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&listen), ListenReply::SIZE));
    assert_eq!(status(&d), NtStatus::ACCESS_DENIED);
    drop(h);
    assert_clean(&b.finish());
}

/// The shell listens on `a`; the peer connects from `b`, then resets the connection: the reset
/// reaches the shell's pended per-connection WAIT through softndk, the engine and the shell's
/// request completion.
fn a_peer_disconnect_reaches_a_pended_wait_through_the_shell(completion: Completion) {
    let b = bench(completion);
    let h = b.open();
    let listen = ListenRequest {
        if_index: 1,
        backlog: 0,
        local: SocketAddr::new(A, 4791),
    };
    let d = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&listen), ListenReply::SIZE));
    assert_eq!(status(&d), NtStatus::SUCCESS);
    let listener = ListenReply::parse(&d.output)
        .expect("LISTEN reply")
        .listener_id;

    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let connect = ConnectRequest {
        if_index: 2,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(A, 4791),
    };
    let (st, out) = peer
        .ioctl(Ioctl::Connect.code(), &bytes(&connect), ConnectReply::SIZE)
        .wait(LIMIT)
        .expect("peer CONNECT completes");
    assert_eq!(st, NtStatus::SUCCESS);
    let peer_conn = ConnectReply::parse(&out).expect("CONNECT reply");
    assert_eq!(peer_conn.status, NtStatus::SUCCESS);

    let accepted = events(&done(&h.ioctl(
        Ioctl::Wait.code(),
        &wait_request(None),
        ROOM,
    )));
    let conn = accepted
        .iter()
        .find(|e| e.kind == EventKind::Accepted)
        .unwrap_or_else(|| panic!("the shell reports the accept: {accepted:?}"))
        .connection_id;

    let wait = h.ioctl(Ioctl::Wait.code(), &wait_request(Some(conn)), ROOM);
    assert!(
        wait.wait_for(Duration::from_millis(20)).is_none(),
        "nothing yet"
    );
    let reset = DisconnectRequest {
        connection_id: peer_conn.connection_id,
        abortive: true,
    };
    let (st, _) = peer
        .ioctl(Ioctl::Disconnect.code(), &bytes(&reset), 0)
        .wait(LIMIT)
        .expect("peer DISCONNECT completes");
    assert_eq!(st, NtStatus::SUCCESS);
    let got = done(&wait);
    assert_eq!(status(&got), NtStatus::SUCCESS);
    let evs = events(&got);
    assert!(
        evs.iter()
            .any(|e| e.connection_id == conn && e.kind == EventKind::Disconnected),
        "the peer's reset as the shell delivered it: {evs:?}"
    );

    let q = done(&h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest {
            connection_id: conn,
        }),
        QueryReply::SIZE,
    ));
    assert_eq!(status(&q), NtStatus::SUCCESS);
    let q = QueryReply::parse(&q.output).expect("QUERY reply");
    assert!(
        q.callback_fired,
        "QUERY says the provider's disconnect callback fired"
    );

    let c = done(&h.ioctl(Ioctl::Close.code(), &bytes(&CloseRequest { id: conn }), 0));
    assert_eq!(status(&c), NtStatus::SUCCESS);
    let c = done(&h.ioctl(
        Ioctl::Close.code(),
        &bytes(&CloseRequest { id: listener }),
        0,
    ));
    assert_eq!(status(&c), NtStatus::SUCCESS);
    peer.close();
    h.close();
    assert_clean(&b.finish());
}

#[test]
fn a_peer_disconnect_reaches_a_pended_wait_through_the_shell_inline() {
    a_peer_disconnect_reaches_a_pended_wait_through_the_shell(Completion::Inline);
}

#[test]
fn a_peer_disconnect_reaches_a_pended_wait_through_the_shell_hardware() {
    a_peer_disconnect_reaches_a_pended_wait_through_the_shell(Completion::hardware(7));
}

/// CancelIoEx of a pended per-connection WAIT races the peer's reset that completes it: each
/// WAIT completes exactly once (cancelled, or with the event), the framework sees one completion
/// (a second is a verifier violation), and a cancelled WAIT loses nothing: the next WAIT gets
/// the event.
#[test]
fn cancel_io_ex_racing_the_completion_completes_each_wait_once_and_loses_nothing() {
    let b = bench(Completion::hardware(3));
    let h = b.open();
    let listener = b.listen(&h, 4792);
    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let (mut cancelled, mut delivered) = (0, 0);
    // Fewer rounds under Miri, which runs each about a thousand times slower.
    let rounds = if cfg!(miri) { 6 } else { 24 };
    for _ in 0..rounds {
        let (peer_conn, conn) = b.accept_from_peer(&h, &peer, 4792);
        let wait = h.ioctl(Ioctl::Wait.code(), &wait_request(Some(conn)), ROOM);
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                wait.cancel();
            });
            start.wait();
            peer_reset(&peer, peer_conn);
        });
        let first = done(&wait);
        let evs = if status(&first) == NtStatus::CANCELLED {
            cancelled += 1;
            // Still queued, for the next WAIT to take (an any-connection WAIT: a per-connection
            // one on an ended connection would report its terminal event again anyway).
            vec![wait_for_kind(&h, conn, EventKind::Disconnected)]
        } else {
            assert_eq!(status(&first), NtStatus::SUCCESS);
            delivered += 1;
            events(&first)
        };
        assert!(
            evs.iter()
                .any(|e| e.connection_id == conn && e.kind == EventKind::Disconnected),
            "the reset is delivered, cancelled WAIT or not: {evs:?}"
        );
        assert_eq!(
            ioctl_status(&h, Ioctl::Close, &bytes(&CloseRequest { id: conn })),
            NtStatus::SUCCESS
        );
        assert_eq!(
            ioctl_status_peer(&peer, Ioctl::Close, &bytes(&CloseRequest { id: peer_conn })),
            NtStatus::SUCCESS
        );
    }
    eprintln!("cancel won {cancelled} times, the completion {delivered} times");
    assert_eq!(
        ioctl_status(&h, Ioctl::Close, &bytes(&CloseRequest { id: listener })),
        NtStatus::SUCCESS
    );
    peer.close();
    h.close();
    assert_clean(&b.finish());
}

fn ioctl_status_peer(peer: &HostHandle, ioctl: Ioctl, input: &[u8]) -> NtStatus {
    peer.ioctl(ioctl.code(), input, 0)
        .wait(LIMIT)
        .expect("peer request completes")
        .0
}

/// CloseHandle with WAITs pended on a live connection: cleanup (EvtFileCleanup) cancels them
/// and closes the connection; the file object's close (EvtFileClose) comes only once they have
/// completed; the peer sees the connection end.
#[test]
fn close_handle_with_waits_pended_cancels_them_and_ends_the_connection() {
    let b = bench(Completion::hardware(5));
    let h = b.open();
    let _listener = b.listen(&h, 4793);
    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let (peer_conn, conn) = b.accept_from_peer(&h, &peer, 4793);
    let any = h.ioctl(Ioctl::Wait.code(), &wait_request(None), ROOM);
    let own = h.ioctl(Ioctl::Wait.code(), &wait_request(Some(conn)), ROOM);
    h.close();
    assert_eq!(status(&done(&any)), NtStatus::CANCELLED);
    assert_eq!(status(&done(&own)), NtStatus::CANCELLED);
    // The peer's connection ends (after its own Connected event).
    let mut seen: Vec<Event> = Vec::new();
    while !seen.iter().any(|e| e.kind == EventKind::Disconnected) {
        let (st, out) = peer
            .ioctl(Ioctl::Wait.code(), &wait_request(Some(peer_conn)), ROOM)
            .wait(LIMIT)
            .expect("the peer's WAIT completes");
        assert_eq!(st, NtStatus::SUCCESS);
        let mut slots = [None; 8];
        let n = decode_wait_reply(&out, &mut slots).expect("a WAIT reply");
        seen.extend(slots[..n].iter().flatten().copied());
        assert!(
            seen.len() < 8,
            "the peer sees the shell's side go: {seen:?}"
        );
    }
    peer.close();
    assert_clean(&b.finish());
}

/// A process exits with connections open both ways (one accepted, one the shell connected
/// out, with receives posted), then the device is removed and the driver unloaded: every NDK
/// object is closed, every request completed, nothing leaked.
#[test]
fn process_exit_with_connections_open_then_unload_leaves_nothing() {
    let b = bench(Completion::hardware(9));
    let h = b.open();
    let _listener = b.listen(&h, 4794);
    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let (_peer_in, _accepted) = b.accept_from_peer(&h, &peer, 4794);
    // The peer listens on b; the shell connects out to it.
    let listen = ListenRequest {
        if_index: 2,
        backlog: 0,
        local: SocketAddr::new(B, 4795),
    };
    let (st, _) = peer
        .ioctl(Ioctl::Listen.code(), &bytes(&listen), ListenReply::SIZE)
        .wait(LIMIT)
        .expect("peer LISTEN");
    assert_eq!(st, NtStatus::SUCCESS);
    let connect = ConnectRequest {
        if_index: 1,
        receive_depth: 0,
        send_depth: 0,
        local: None,
        remote: SocketAddr::new(B, 4795),
    };
    let c = done(&h.ioctl(Ioctl::Connect.code(), &bytes(&connect), ConnectReply::SIZE));
    assert_eq!(status(&c), NtStatus::SUCCESS);
    let out = ConnectReply::parse(&c.output).expect("CONNECT reply");
    assert_eq!(out.status, NtStatus::SUCCESS, "the shell connected out");
    let post = PostRequest {
        connection_id: out.connection_id,
        kind: PostKind::Receive,
        count: 4,
        length: 256,
    };
    assert_eq!(
        ioctl_status(&h, Ioctl::Post, &bytes(&post)),
        NtStatus::SUCCESS
    );
    // Its Connected event first; then a WAIT that pends.
    let connected = events(&done(&h.ioctl(
        Ioctl::Wait.code(),
        &wait_request(Some(out.connection_id)),
        ROOM,
    )));
    assert!(connected.iter().any(|e| e.kind == EventKind::Connected));
    let pended = h.ioctl(
        Ioctl::Wait.code(),
        &wait_request(Some(out.connection_id)),
        ROOM,
    );
    // The process exits: Windows cancels its threads' pending requests, then closes its
    // handle.
    pended.cancel();
    drop(h);
    assert_eq!(status(&done(&pended)), NtStatus::CANCELLED);
    peer.close();
    assert_clean(&b.finish());
}

/// POST, FLUSH and QUERY through the shell: the receives posted on a connection the shell
/// accepted are flushed on request, and QUERY counts them.
#[test]
fn post_flush_and_query_through_the_shell() {
    let b = bench(Completion::Inline);
    let h = b.open();
    let _listener = b.listen(&h, 4796);
    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let (_peer_conn, conn) = b.accept_from_peer(&h, &peer, 4796);
    let post = PostRequest {
        connection_id: conn,
        kind: PostKind::Receive,
        count: 3,
        length: 128,
    };
    assert_eq!(
        ioctl_status(&h, Ioctl::Post, &bytes(&post)),
        NtStatus::SUCCESS
    );
    let q = done(&h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest {
            connection_id: conn,
        }),
        QueryReply::SIZE,
    ));
    let q = QueryReply::parse(&q.output).expect("QUERY");
    assert_eq!(q.outstanding_receives, 3, "three receives outstanding");
    assert_eq!(
        ioctl_status(
            &h,
            Ioctl::Flush,
            &bytes(&FlushRequest {
                connection_id: conn
            })
        ),
        NtStatus::SUCCESS
    );
    // The flushed receives complete through the CQ (reaped after FLUSH returned).
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let q = done(&h.ioctl(
            Ioctl::Query.code(),
            &bytes(&QueryRequest {
                connection_id: conn,
            }),
            QueryReply::SIZE,
        ));
        let q = QueryReply::parse(&q.output).expect("QUERY");
        if q.outstanding_receives == 0 {
            assert_eq!(q.receives_cancelled, 3, "flushed, as QUERY counts them");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flush completes the receives: {q:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    peer.close();
    h.close();
    assert_clean(&b.finish());
}

/// LIST_ADAPTERS goes through GetUnicastIpAddressTable and the WSK NDK extension: the shell
/// lists this machine's address on its interface (and frees the table).
#[test]
fn list_adapters_reports_this_machines_interface() {
    let b = bench(Completion::Inline);
    let h = b.open();
    let d = done(&h.ioctl(
        Ioctl::ListAdapters.code(),
        &bytes(&ListAdaptersRequest),
        BATCH_HEADER_SIZE + 4 * AdapterEntry::SIZE,
    ));
    assert_eq!(status(&d), NtStatus::SUCCESS);
    let (count, _) = decode_adapters_header(&d.output).expect("LIST_ADAPTERS reply");
    assert_eq!(count, 1, "one address on interface 1");
    let entry = AdapterEntry::decode(&d.output[BATCH_HEADER_SIZE..]).expect("an entry");
    assert_eq!(entry.if_index, 1);
    assert_eq!(entry.address.ip(), A);
    h.close();
    assert_clean(&b.finish());
}

/// A machine whose WSK has no NDK extension: the driver loads anyway (no Code 37), GET_INFO
/// says why, and LISTEN is refused with STATUS_NOT_SUPPORTED.
#[test]
fn a_machine_without_ndk_loads_the_driver_and_refuses_listen() {
    let fabric = Arc::new(Fabric::new(FabricConfig::default()));
    fabric.add_host(HostConfig::new(1, [A]));
    let mut system = System::boot(Machine {
        fabric: Arc::clone(&fabric),
        if_index: 1,
        addresses: vec![A],
        ndk: false,
    });
    // SAFETY: the shell's DriverEntry; one kernel at a time.
    unsafe { system.load(DriverEntry) }.expect("DriverEntry succeeds without NDK");
    let device = system.add_device().expect("device");
    let h = system.open(&device, Access::ReadWrite).expect("open");
    let info = done(&h.ioctl(
        Ioctl::GetInfo.code(),
        &bytes(&GetInfoRequest),
        InfoReply::SIZE,
    ));
    let info = InfoReply::parse(&info.output).expect("GET_INFO");
    assert_eq!(info.ndk_status, NtStatus::NOT_SUPPORTED);
    let listen = ListenRequest {
        if_index: 1,
        backlog: 0,
        local: SocketAddr::new(A, 4797),
    };
    let d = done(&h.ioctl(Ioctl::Listen.code(), &bytes(&listen), ListenReply::SIZE));
    assert_eq!(status(&d), NtStatus::NOT_SUPPORTED);
    h.close();
    system.remove_device(device).expect("remove");
    assert_clean(&system.unload());
}

/// The driver's ETW provider through softwdf's ETW: registered at DriverEntry with its
/// traits, its events written while a session listens, unregistered at unload.
#[test]
fn the_driver_traces_to_etw_while_a_session_listens() {
    let b = bench(Completion::Inline);
    b.system.capture_etw();
    let h = b.open();
    let _listener = b.listen(&h, 4798);
    let peer = HostHandle::open(&b.peer).expect("peer handle");
    let (peer_conn, _conn) = b.accept_from_peer(&h, &peer, 4798);
    peer_reset(&peer, peer_conn);
    peer.close();
    h.close();
    let events = b.system.take_etw();
    assert!(!events.is_empty(), "the driver wrote events");
    for e in &events {
        assert_eq!(e.data.len(), 3, "provider traits, event metadata, payload");
        assert_eq!(e.data[0].0, 2, "the provider's traits first");
        assert_eq!(e.data[0].1, ndkdisc_core::etw::PROVIDER_METADATA);
    }
    assert_clean(&b.finish());
}

/// A listener CLOSEd just before the handle closes and the device is removed: CLOSE returns
/// before NDK completes the listener's close, and the listener's adapter is released later by
/// deferred work. Removing the device right after the last handle closed must still see that
/// adapter closed (`Engine::quiesce` before the deferral stops; without it the close
/// completion could come after the deferral stopped, leaving the adapter open and the
/// listener leaked). When the provider's thread delivers the close decides whether the race is
/// hit, so the scenario runs several times, on asynchronous completions.
#[test]
fn a_listener_closed_just_before_removal_still_releases_its_adapter() {
    let rounds = if cfg!(miri) { 4 } else { 16 };
    for seed in 0..rounds {
        let b = bench(if seed % 2 == 0 {
            Completion::Thread
        } else {
            Completion::hardware(seed)
        });
        let h = b.open();
        let listener = b.listen(&h, 4799);
        let peer = HostHandle::open(&b.peer).expect("peer handle");
        let (peer_conn, conn) = b.accept_from_peer(&h, &peer, 4799);
        assert_eq!(
            ioctl_status(&h, Ioctl::Close, &bytes(&CloseRequest { id: conn })),
            NtStatus::SUCCESS
        );
        assert_eq!(
            ioctl_status_peer(&peer, Ioctl::Close, &bytes(&CloseRequest { id: peer_conn })),
            NtStatus::SUCCESS
        );
        assert_eq!(
            ioctl_status(&h, Ioctl::Close, &bytes(&CloseRequest { id: listener })),
            NtStatus::SUCCESS
        );
        h.close();
        peer.close();
        assert_clean(&b.finish());
    }
}

fn query(h: &softwdf::Handle, conn: u64) -> QueryReply {
    let q = done(&h.ioctl(
        Ioctl::Query.code(),
        &bytes(&QueryRequest {
            connection_id: conn,
        }),
        QueryReply::SIZE,
    ));
    assert_eq!(status(&q), NtStatus::SUCCESS, "QUERY");
    QueryReply::parse(&q.output).expect("QUERY reply")
}

/// The handle's next events until one of `kind` for `conn` (any-connection WAITs, which take
/// events off the queue: a per-connection WAIT on an ended connection gives its terminal event
/// again, level-triggered).
fn wait_for_kind(h: &softwdf::Handle, conn: u64, kind: EventKind) -> Event {
    let mut seen = Vec::new();
    for _ in 0..8 {
        let d = done(&h.ioctl(Ioctl::Wait.code(), &wait_request(None), ROOM));
        assert_eq!(status(&d), NtStatus::SUCCESS, "WAIT for {kind:?}: {seen:?}");
        let got = events(&d);
        if let Some(e) = got
            .iter()
            .find(|e| e.connection_id == conn && e.kind == kind)
        {
            return *e;
        }
        seen.extend(got);
    }
    panic!("no {kind:?} event for connection {conn}: {seen:?}");
}

/// The demo's main scenario (`tools/ndkctl/scenarios/peer-disconnect.ndk`, which `ndkctl demo`
/// runs on the simulator) with the shell as the server: after the peer's graceful disconnect
/// the shell reports the NDK callback with the provider's reason and flushes nothing — its four
/// posted receives stay outstanding, and no `NdkFlush` is called — until the explicit FLUSH,
/// which completes them as cancelled (one `NdkFlush`); then both sides close and nothing is
/// left.
fn the_demo_scenario_through_the_shell(completion: Completion) {
    let b = bench(completion);
    let server = b.open();
    let listener = b.listen(&server, 4800);
    let client = HostHandle::open(&b.peer).expect("the client's handle");
    let (c, s) = b.accept_from_peer(&server, &client, 4800);

    let post = PostRequest {
        connection_id: s,
        kind: PostKind::Receive,
        count: 4,
        length: 256,
    };
    assert_eq!(
        ioctl_status(&server, Ioctl::Post, &bytes(&post)),
        NtStatus::SUCCESS
    );
    let post = PostRequest {
        connection_id: c,
        ..post
    };
    assert_eq!(
        ioctl_status_peer(&client, Ioctl::Post, &bytes(&post)),
        NtStatus::SUCCESS
    );
    assert_eq!(query(&server, s).outstanding_receives, 4);

    // The client's graceful DISCONNECT completes only once the server answers.
    let graceful = DisconnectRequest {
        connection_id: c,
        abortive: false,
    };
    let client_disconnect = client.ioctl(Ioctl::Disconnect.code(), &bytes(&graceful), 0);
    let e = wait_for_kind(&server, s, EventKind::Disconnected);
    assert_eq!(e.cause, Some(Cause::Peer));
    assert!(
        e.callback_fired,
        "the shell's NDK disconnect callback fired"
    );
    assert_eq!(
        e.provider_reason,
        Some(softndk::reason::GRACEFUL),
        "the provider's reason"
    );
    assert_eq!(e.outstanding_receives, 4);

    // Nothing flushed: give a flushing provider time to show itself, then look again.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.fabric.stats().flush_calls, 0, "no NdkFlush was called");
    let q = query(&server, s);
    assert_eq!(q.state, ConnState::Disconnected);
    assert_eq!(q.outstanding_receives, 4, "the receives stay posted");
    assert_eq!(q.receives_cancelled, 0);
    assert!(!q.flushed && !q.provider_flushed);

    // The explicit FLUSH: the receives complete as cancelled, then `Flushed`.
    assert_eq!(
        ioctl_status(
            &server,
            Ioctl::Flush,
            &bytes(&FlushRequest { connection_id: s })
        ),
        NtStatus::SUCCESS
    );
    wait_for_kind(&server, s, EventKind::Flushed);
    let q = query(&server, s);
    assert_eq!(
        (q.outstanding_receives, q.receives_cancelled, q.flushed),
        (0, 4, true)
    );
    assert_eq!(
        b.fabric.stats().flush_calls,
        1,
        "exactly the NdkFlush asked for"
    );

    // The server answers; the client's DISCONNECT completes with the real outcome.
    let answer = DisconnectRequest {
        connection_id: s,
        abortive: false,
    };
    assert_eq!(
        status(&done(&server.ioctl(
            Ioctl::Disconnect.code(),
            &bytes(&answer),
            0
        ))),
        NtStatus::SUCCESS
    );
    let (st, _) = client_disconnect
        .wait(LIMIT)
        .expect("the client's DISCONNECT completes");
    assert_eq!(st, NtStatus::SUCCESS);

    assert_eq!(
        ioctl_status(&server, Ioctl::Close, &bytes(&CloseRequest { id: s })),
        NtStatus::SUCCESS
    );
    wait_for_kind(&server, s, EventKind::Closed);
    assert_eq!(
        ioctl_status_peer(&client, Ioctl::Close, &bytes(&CloseRequest { id: c })),
        NtStatus::SUCCESS
    );
    assert_eq!(
        ioctl_status(
            &server,
            Ioctl::Close,
            &bytes(&CloseRequest { id: listener })
        ),
        NtStatus::SUCCESS
    );
    server.close();
    client.close();
    assert_clean(&b.finish());
}

#[test]
fn the_demo_scenario_through_the_shell_inline() {
    the_demo_scenario_through_the_shell(Completion::Inline);
}

#[test]
fn the_demo_scenario_through_the_shell_hardware() {
    the_demo_scenario_through_the_shell(Completion::hardware(13));
}
