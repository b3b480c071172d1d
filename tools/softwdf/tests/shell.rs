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
        report
    }
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

#[test]
fn a_read_only_handle_is_refused_what_needs_write_access() {
    let b = bench(Completion::Inline);
    let h = b
        .system
        .open(b.device.as_ref().expect("device"), Access::Read)
        .expect("open");
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
