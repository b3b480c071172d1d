//! The simulation backend: the real ndkdisc engine on its host platform, over one in-process
//! softndk fabric shared by several simulated hosts.
//!
//! Each simulated host has its own engine (its own "driver") that lists only its own adapter;
//! the hosts reach each other through the fabric, as machines do through an RDMA network. A
//! [`Client`] opened on a host sends the same request bytes through the same dispatch code as
//! the driver on Windows (`Owner::dispatch`), so what the simulator shows is what the engine
//! does. The I/O manager's checks that happen before a driver sees a request are emulated: the
//! device's security descriptor admits only administrators ([`OpenAs::standard_user`]), and a
//! handle opened without write access gets `STATUS_ACCESS_DENIED` for every control code that
//! needs `FILE_WRITE_ACCESS`; the engine is told the handle's access too (its `GET_INFO` then
//! reports the engine-wide counters as zero).

use core::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ndkdisc_abi::Ioctl;
use ndkdisc_abi::ioctl::FILE_WRITE_ACCESS;
use ndkdisc_core::ports::AdapterDesc;
pub use ndkdisc_core::ports::{NdkCallback, Trace};
use ndkdisc_core::{Access, Config, Engine};
use ndkdisc_host::{HostHandle, HostPlatform, Pending};
use softndk::{Completion, CqError, Fabric, FabricConfig, Fault, HostConfig, HostId, Misbehaviour};

use crate::{
    Client, Completed, ConnectionId, Error, InFlight, NtStatus, OpenHandle, Ready, Transport,
};

/// Deliberate provider bugs a simulation can be run with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The provider flushes a QP when it indicates a peer disconnect (NDK says it must not):
    /// posted receives complete with `STATUS_CANCELLED` although nobody asked.
    pub flush_on_peer_disconnect: bool,
    /// The provider fires the disconnect callback twice for one connection.
    pub duplicate_disconnect_callback: bool,
}

/// Per-handle and per-driver limits of every simulated host's driver (`None`: the driver's
/// default, as `GET_INFO` reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Connections a handle may have open.
    pub max_connections: Option<usize>,
    /// Listeners a handle may have open.
    pub max_listeners: Option<usize>,
    /// WAIT requests a handle may have pended.
    pub max_waits: Option<usize>,
    /// Handles open at once on a host.
    pub max_handles: Option<usize>,
    /// Backlog of a LISTEN that asks for 0.
    pub default_backlog: Option<u32>,
}

impl Quotas {
    /// The engine configuration these quotas make.
    fn config(&self) -> Config {
        let mut c = Config::default();
        if let Some(n) = self.max_connections {
            c.limits.max_connections = n;
        }
        if let Some(n) = self.max_waits {
            c.limits.max_waits = n;
        }
        if let Some(n) = self.max_listeners {
            c.max_listeners = n;
        }
        if let Some(n) = self.max_handles {
            c.max_handles = n;
        }
        if let Some(n) = self.default_backlog {
            c.default_backlog = n;
        }
        c
    }
}

/// A fault of the network or of the peer, injected on one connection ([`SimHost::inject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionFault {
    /// The link fails. As on hardware nobody is told: an end notices only when a send it posts
    /// is not acknowledged within the provider's retry timeout (the send fails, the provider
    /// flushes the QP and makes the disconnect callback); an idle end never notices, and its
    /// graceful disconnect times out.
    LinkLoss,
    /// The peer resets the connection (its host went away abruptly): this end's disconnect
    /// callback fires with the provider's reset reason.
    PeerReset,
    /// The peer's provider ends the connection gracefully on its own (its host went away
    /// cleanly): this end's disconnect callback fires with the graceful reason. The peer's
    /// consumer is not told.
    PeerDisconnect,
    /// The connection's completion queue overruns: the adapter reports
    /// `STATUS_BUFFER_OVERFLOW` and the CQ, and every QP using it, complete nothing more.
    CqOverrun,
    /// The adapter hits a fatal error on the connection's completion queue
    /// (`STATUS_INTERNAL_ERROR`); the CQ and its QPs are dead.
    CqFatal,
}

impl ConnectionFault {
    /// Its name as the tools write it: `link-loss`, `peer-reset`, `peer-disconnect`.
    pub fn name(self) -> &'static str {
        match self {
            Self::LinkLoss => "link-loss",
            Self::PeerReset => "peer-reset",
            Self::PeerDisconnect => "peer-disconnect",
            Self::CqOverrun => "cq-overrun",
            Self::CqFatal => "cq-fatal",
        }
    }

    /// The fault named `name` ([`ConnectionFault::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::LinkLoss,
            Self::PeerReset,
            Self::PeerDisconnect,
            Self::CqOverrun,
            Self::CqFatal,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// How a simulated fabric behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// softndk's completion routing (default: callbacks on the fabric's worker thread, racing
    /// the calls that caused them, as on hardware).
    pub completion: Completion,
    /// Provider bugs, applied to every host.
    pub faults: Faults,
    /// Every host is a system without the WSK NDK extension, whose driver loaded anyway and
    /// reports this status (why it has none) in `GET_INFO`'s `ndk_status`: every operation that
    /// needs an adapter fails with `STATUS_NOT_SUPPORTED`. `None` (the default): NDK works.
    pub without_ndk: Option<NtStatus>,
    /// The drivers' limits.
    pub quotas: Quotas,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            completion: Completion::Thread,
            faults: Faults::default(),
            without_ndk: None,
            quotas: Quotas::default(),
        }
    }
}

/// Counters of the simulated provider, for checking what the consumer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Disconnect callbacks the provider made.
    pub disconnect_callbacks: u64,
    /// `NdkFlush` calls the consumer made, all QPs.
    pub flush_calls: u64,
    /// NDK objects alive.
    pub live_objects: usize,
}

/// One fabric of simulated hosts.
pub struct SimFabric {
    fabric: Arc<Fabric>,
    options: SimOptions,
    hosts: Mutex<Vec<SimHost>>,
}

/// `Debug` showing the listed fields only (the engine and the fabric have none).
macro_rules! debug_fields {
    ($ty:ident { $($field:ident),* }) => {
        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}

debug_fields!(SimFabric { options });

/// A simulated host: one interface with one address, and its own engine.
#[derive(Clone)]
pub struct SimHost {
    name: String,
    if_index: u32,
    address: IpAddr,
    engine: Arc<Engine<HostPlatform>>,
    fabric: Arc<Fabric>,
    id: HostId,
}

debug_fields!(SimHost {
    name,
    if_index,
    address
});

/// Who opens a handle, with what access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenAs {
    /// The caller is an administrator (the device admits only SYSTEM and Administrators).
    pub administrator: bool,
    /// `GENERIC_WRITE` too (needed by every operation that changes state).
    pub write: bool,
}

impl Default for OpenAs {
    fn default() -> Self {
        Self {
            administrator: true,
            write: true,
        }
    }
}

impl OpenAs {
    /// A user who is not an administrator: opening the device is denied.
    pub fn standard_user() -> Self {
        Self {
            administrator: false,
            write: true,
        }
    }

    /// An administrator's handle opened for reading only: queries work, changes are denied.
    pub fn read_only() -> Self {
        Self {
            administrator: true,
            write: false,
        }
    }
}

impl SimFabric {
    /// An empty fabric.
    pub fn new(options: SimOptions) -> Arc<Self> {
        Arc::new(Self {
            fabric: Arc::new(Fabric::new(FabricConfig {
                completion: options.completion,
                ..Default::default()
            })),
            options,
            hosts: Mutex::new(Vec::new()),
        })
    }

    /// Add a host named `name` with interface `if_index` and `address`.
    ///
    /// # Errors
    /// [`Error::BadAddress`] when the interface index or the address is already taken on this
    /// fabric.
    pub fn add_host(&self, name: &str, if_index: u32, address: IpAddr) -> Result<SimHost, Error> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = hosts
            .iter()
            .find(|h| h.if_index == if_index || h.address == address || h.name == name)
        {
            return Err(Error::BadAddress {
                text: address.to_string(),
                why: format!(
                    "host `{}` already has interface {} / address {}",
                    h.name, h.if_index, h.address
                ),
            });
        }
        let faults = self.options.faults;
        let id =
            self.fabric.add_host(
                HostConfig::new(if_index, [address]).misbehaviour(Misbehaviour {
                    duplicate_disconnect_callback: faults.duplicate_disconnect_callback,
                    flush_on_peer_disconnect: faults.flush_on_peer_disconnect,
                }),
            );
        let adapters = vec![AdapterDesc {
            if_index,
            address: SocketAddr::new(address, 0),
        }];
        let platform = match self.options.without_ndk {
            None => HostPlatform::new(Arc::clone(&self.fabric), adapters),
            Some(status) => HostPlatform::without_ndk(Arc::clone(&self.fabric), adapters, status),
        };
        let engine = Engine::new(platform, self.options.quotas.config()).map_err(|status| {
            Error::Failed {
                op: "add host",
                status,
            }
        })?;
        let engine = Arc::new(engine);
        ndkdisc_host::watch_adapter_removal(&engine);
        let host = SimHost {
            name: name.to_owned(),
            if_index,
            address,
            engine,
            fabric: Arc::clone(&self.fabric),
            id,
        };
        hosts.push(host.clone());
        Ok(host)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<SimHost> {
        self.hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|h| h.name == name)
            .cloned()
    }

    /// The provider's counters now.
    pub fn stats(&self) -> ProviderStats {
        let c = self.fabric.stats();
        ProviderStats {
            disconnect_callbacks: c.disconnect_callbacks,
            flush_calls: c.flush_calls,
            live_objects: self.fabric.live_objects(),
        }
    }

    /// Wait until the provider has no callback in flight (up to `limit`).
    pub fn settle(&self, limit: Duration) -> bool {
        self.fabric.wait_idle(limit)
    }

    /// Wait until every NDK object is released (up to `limit`); the count left.
    pub fn wait_released(&self, limit: Duration) -> usize {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let live = self.fabric.live_objects();
            if live == 0 || std::time::Instant::now() >= deadline {
                return live;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl SimHost {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its interface index.
    pub fn if_index(&self) -> u32 {
        self.if_index
    }

    /// Its address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Start capturing this host's driver trace (what the driver writes to ETW on Windows),
    /// with room for `capacity` records; past that they are counted as dropped.
    pub fn capture_trace(&self, capacity: usize) {
        self.engine.platform().capture_traces(capacity);
    }

    /// The trace captured since [`SimHost::capture_trace`] or the last call, and how many
    /// records did not fit.
    pub fn take_trace(&self) -> (Vec<Trace>, u64) {
        self.engine.platform().take_traces()
    }

    /// Inject `fault` on connection `connection` of `client` (a handle on this host): the
    /// provider's connector behind it is found by the addresses QUERY reports.
    ///
    /// # Errors
    /// QUERY's failure (`STATUS_NOT_FOUND`: not a connection of `client`);
    /// `STATUS_INVALID_DEVICE_STATE` when the connection has no live connector (not yet
    /// connected, or already ended: there is nothing left to break).
    pub fn inject(
        &self,
        client: &Client,
        connection: ConnectionId,
        fault: ConnectionFault,
    ) -> Result<(), Error> {
        let q = client.query(connection)?;
        let gone = || Error::from_status("inject", NtStatus::INVALID_DEVICE_STATE);
        let (Some(local), Some(remote)) = (q.local, q.remote) else {
            return Err(gone());
        };
        let connector = self
            .fabric
            .connector_between(self.id, local, remote)
            .ok_or_else(gone)?;
        let done = match fault {
            ConnectionFault::LinkLoss => self.fabric.inject(connector, Fault::LinkLoss),
            ConnectionFault::PeerReset => self.fabric.inject(connector, Fault::PeerReset),
            ConnectionFault::PeerDisconnect => self.fabric.inject(connector, Fault::PeerDisconnect),
            ConnectionFault::CqOverrun | ConnectionFault::CqFatal => {
                let error = if fault == ConnectionFault::CqOverrun {
                    CqError::Overrun
                } else {
                    CqError::Fatal
                };
                self.fabric
                    .receive_cq_of(connector)
                    .is_some_and(|cq| self.fabric.inject_cq_error(cq, error))
            }
        };
        if done { Ok(()) } else { Err(gone()) }
    }

    /// Remove this host's adapter, as when its NIC goes away or NDK is disabled on it: the
    /// driver is told (its connections there end with cause `adapter-removed`, its listeners
    /// stop), peers elsewhere see a reset, and later operations on the interface fail.
    pub fn remove_adapter(&self) {
        self.fabric.remove_adapters(self.id);
    }

    /// Open a handle on this host's driver (`CreateFile`).
    ///
    /// # Errors
    /// [`Error::AccessDenied`] for a user who is not an administrator; the engine's status.
    pub fn open(&self, who: OpenAs) -> Result<Client, Error> {
        if !who.administrator {
            return Err(Error::AccessDenied {
                op: "open",
                status: NtStatus::ACCESS_DENIED,
            });
        }
        let access = if who.write {
            Access::ReadWrite
        } else {
            Access::Read
        };
        let handle =
            HostHandle::open_as(&self.engine, access).map_err(|s| Error::from_status("open", s))?;
        Ok(Client::new(Box::new(SimTransport {
            handle: OpenHandle::new(handle),
            write: who.write,
        })))
    }
}

struct SimTransport {
    handle: OpenHandle<HostHandle>,
    write: bool,
}

struct SimInFlight(Pending);

impl InFlight for SimInFlight {
    fn wait(&mut self, limit: Duration) -> Option<Completed> {
        self.0
            .wait(limit)
            .map(|(status, output)| Completed { status, output })
    }
    fn poll_done(&mut self, cx: &mut core::task::Context<'_>) -> core::task::Poll<Completed> {
        self.0
            .poll_done(cx)
            .map(|(status, output)| Completed { status, output })
    }
    fn cancel(&mut self) {
        self.0.cancel();
    }
}

impl Transport for SimTransport {
    fn start(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn InFlight>, Error> {
        // The I/O manager checks the handle's access against the code's access bits before
        // the driver sees the request.
        if !self.write && ioctl.access() & FILE_WRITE_ACCESS != 0 {
            return Ok(Ready::with_status(NtStatus::ACCESS_DENIED));
        }
        Ok(self.handle.with(|h| -> Box<dyn InFlight> {
            match h {
                Some(h) => Box::new(SimInFlight(h.ioctl(ioctl.code(), input, output_len))),
                None => Ready::closed_handle(),
            }
        }))
    }

    fn close(&self) {
        if let Some(h) = self.handle.take() {
            h.close();
        }
    }
}

/// softndk's provider reasons by name (on hardware, reasons are provider-specific).
pub fn reason_name(reason: u32) -> Option<&'static str> {
    match reason {
        softndk::reason::GRACEFUL => Some("graceful"),
        softndk::reason::RESET => Some("reset"),
        softndk::reason::LINK_DOWN => Some("link-down"),
        softndk::reason::ADAPTER_REMOVED => Some("adapter-removed"),
        softndk::reason::RETRY_EXCEEDED => Some("retry-exceeded"),
        softndk::reason::TERMINATED => Some("terminated"),
        _ => None,
    }
}

/// softndk's graceful-disconnect reason value.
pub const REASON_GRACEFUL: u32 = softndk::reason::GRACEFUL;
