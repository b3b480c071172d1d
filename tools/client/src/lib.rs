//! # ndkdisc-client — the user-mode API of ndkdisc
//!
//! Typed operations over the IOCTL ABI of `ndkdisc-abi`: the client encodes each request
//! record, issues the control code, waits for the completion and decodes the reply — the reverse
//! of what the driver core does. Errors carry the NTSTATUS and say what it means
//! ([`Error`], [`NtStatus`]).
//!
//! In the event path this is the far end: a fact the driver latched as an event reaches user
//! mode as the bytes of a completed WAIT, which the client decodes into the ABI's own typed
//! [`Event`] (re-exported here, with [`ConnectionInfo`], the decoded QUERY reply); there is no
//! second decoder. `ndkctl` is built on this crate.
//!
//! Two backends behind one interface:
//!
//! - **device** ([`Client::open_device`], Windows only): the device is opened by its interface
//!   GUID (or `\\.\NdkDisc`, or a path you give) for overlapped I/O; each operation is a
//!   `DeviceIoControl` with an `OVERLAPPED`, waited for with `GetOverlappedResultEx` so that
//!   timeouts hold, and cancelled with `CancelIoEx`. Elsewhere `open_device` fails with
//!   [`Error::DeviceMissing`].
//! - **simulation** ([`sim`]): the real engine (`ndkdisc-core` on its host platform) over an
//!   in-process `softndk` fabric, one engine per simulated host, all hosts on one fabric. The
//!   same request bytes go through the same dispatch code the driver runs.
//!
//! WAIT has no timeout in the ABI; the client implements it once for both backends: it waits
//! for the completion up to the limit, then cancels the request and collects its completion. An
//! event that races the cancel is not lost: the driver keeps it queued for the next WAIT, and a
//! request that completed with events despite the cancel returns them.
//!
//! ```no_run
//! use std::time::Duration;
//! use ndkdisc_client::{sim, Timeout, WaitOn};
//! let fabric = sim::SimFabric::new(sim::SimOptions::default());
//! let host = fabric.add_host("a", 1, "10.0.0.1".parse().unwrap()).unwrap();
//! let client = host.open(sim::OpenAs::default()).unwrap();
//! let events = client.wait(WaitOn::Any, 16, Timeout::After(Duration::from_millis(10)));
//! ```

#![deny(unsafe_code)]

pub mod asynchronous;
mod error;
mod ids;
mod objects;
#[cfg(feature = "sim")]
pub mod sim;
mod status;
#[cfg(windows)]
#[expect(
    unsafe_code,
    reason = "the device backend calls Win32; every unsafe block there has its SAFETY comment"
)]
mod windows;

use core::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ndkdisc_abi::{
    AbortRequest, BATCH_HEADER_SIZE, CloseRequest, ConnectReply, ConnectRequest, DisconnectRequest,
    FlushRequest, GetInfoRequest, Ioctl, ListAdaptersRequest, ListObjectsRequest, ListenRequest,
    PostRequest, QueryReply, QueryRequest, Record, WaitRequest, decode_adapters_header,
    decode_objects_header, decode_wait_reply,
};

pub use error::{Error, ErrorKind, Op};
pub use ids::{ConnectionId, ListenerId};
/// What QUERY reports about a connection (the ABI's decoded QUERY reply).
pub use ndkdisc_abi::QueryReply as ConnectionInfo;
/// The records are the ABI's own typed values: decoded once, in `ndkdisc-abi`.
pub use ndkdisc_abi::{
    AdapterEntry, Cause, ConnState, Event, EventKind, InfoReply, ListenReply, NtStatus,
    ObjectEntry, ObjectKind, PostKind,
};
pub use objects::{Connection, Events, Listener};

/// A request's completion: its status and the output bytes the driver wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Completed {
    /// The completion status.
    pub status: NtStatus,
    /// The output (`Information` bytes).
    pub output: Vec<u8>,
}

/// A request in flight.
pub(crate) trait InFlight: Send {
    /// Wait up to `limit` for the completion; `None` if it has not completed yet. Once it has
    /// returned `Some`, it is not called again.
    fn wait(&mut self, limit: Duration) -> Option<Completed>;
    /// The completion if it has come; otherwise arrange for `cx`'s waker to be woken when it
    /// comes. Once it has returned `Ready`, it is not called again.
    fn poll_done(&mut self, cx: &mut core::task::Context<'_>) -> core::task::Poll<Completed>;
    /// Ask for cancellation (`CancelIoEx`); the request still completes, promptly.
    fn cancel(&mut self);
}

/// How requests reach a driver: the device or the simulator.
pub(crate) trait Transport: Send + Sync {
    /// Issue `ioctl` with `input` and room for `output_len` bytes of output.
    ///
    /// # Errors
    /// A failure to issue it at all (a request the driver completes with an error status is a
    /// [`Completed`], not an error).
    fn start(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn InFlight>, Error>;

    /// `CloseHandle`: the driver cancels this handle's waits and tears its objects down.
    fn close(&self);
}

/// A request that completed when it was issued (e.g. refused by the I/O manager).
#[cfg(any(windows, feature = "sim"))]
pub(crate) struct Ready(pub Option<Completed>);

#[cfg(any(windows, feature = "sim"))]
impl Ready {
    /// A request completed at once with `status` and no output.
    fn with_status(status: NtStatus) -> Box<dyn InFlight> {
        Box::new(Self(Some(Completed {
            status,
            output: Vec::new(),
        })))
    }

    /// What Windows says for a request on a closed handle (`STATUS_INVALID_HANDLE`).
    fn closed_handle() -> Box<dyn InFlight> {
        Self::with_status(NtStatus::INVALID_HANDLE)
    }
}

#[cfg(any(windows, feature = "sim"))]
impl InFlight for Ready {
    fn wait(&mut self, _: Duration) -> Option<Completed> {
        self.0.take()
    }
    fn poll_done(&mut self, _: &mut core::task::Context<'_>) -> core::task::Poll<Completed> {
        // Completed when issued: ready at the first poll (there is no second).
        self.0
            .take()
            .map_or(core::task::Poll::Pending, core::task::Poll::Ready)
    }
    fn cancel(&mut self) {}
}

/// A transport's handle: open until the first `close` takes it.
#[cfg(any(windows, feature = "sim"))]
struct OpenHandle<T>(std::sync::Mutex<Option<T>>);

#[cfg(any(windows, feature = "sim"))]
impl<T> OpenHandle<T> {
    fn new(handle: T) -> Self {
        Self(std::sync::Mutex::new(Some(handle)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<T>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `f` of the handle, `None` once closed (the handle stays locked meanwhile).
    #[cfg(feature = "sim")]
    fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        f(self.lock().as_ref())
    }

    /// A copy of the handle (a reference to share), `None` once closed.
    #[cfg(windows)]
    fn cloned(&self) -> Option<T>
    where
        T: Clone,
    {
        self.lock().clone()
    }

    /// The handle, taken: the first call gets it, later ones `None`.
    fn take(&self) -> Option<T> {
        self.lock().take()
    }
}

/// Decodes a batch reply's header: (entries present, entries that exist).
type BatchHeader = fn(&[u8]) -> Result<(usize, u32), ndkdisc_abi::AbiError>;

/// A graceful DISCONNECT in flight ([`Client::start_disconnect`]).
pub struct PendingDisconnect {
    request: Box<dyn InFlight>,
}

impl core::fmt::Debug for PendingDisconnect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingDisconnect").finish_non_exhaustive()
    }
}

/// How long a pending operation may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Until it completes (or the client is interrupted).
    Forever,
    /// At most this long, then cancel.
    After(Duration),
}

/// What a WAIT waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// Any connection of the handle (an event stream).
    Any,
    /// One connection.
    Connection(ConnectionId),
}

/// How to end a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectMode {
    /// `NdkDisconnect`: the peer's disconnect callback fires with a graceful reason, and the
    /// request completes when the peer answers (its own graceful disconnect, or closing the
    /// connection) — with `STATUS_IO_TIMEOUT` when it never does. After a peer disconnect, it
    /// is the answer the peer's `NdkDisconnect` waits for.
    Graceful,
    /// Close the connection now (a reset).
    Abortive,
}

/// What CONNECT needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectParams {
    /// The interface whose adapter connects.
    pub if_index: u32,
    /// The peer.
    pub remote: SocketAddr,
    /// A local address, if one is required.
    pub local: Option<SocketAddr>,
    /// Receive-queue depth (0 = the driver's default).
    pub receive_depth: u32,
    /// Send-queue depth (0 = the driver's default).
    pub send_depth: u32,
}

/// An established connection, as CONNECT reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Established {
    /// Its id.
    pub id: ConnectionId,
    /// Local address.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
}

/// Turns the driver's event timestamps ([`Event::timestamp`]) into wall-clock times: a reading
/// of the driver's clock (`GET_INFO`'s [`InfoReply::clock`]) paired with the wall-clock time it
/// was taken ([`Client::clock_base`]).
///
/// The driver's clock on Windows does not count time the machine slept: an event from before
/// a sleep converts to a time later than it was by the sleep's length; take a new base after
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockBase {
    driver: u64,
    wall: SystemTime,
}

impl ClockBase {
    /// The base: the driver's clock read `driver` at wall-clock time `wall`.
    pub fn new(driver: u64, wall: SystemTime) -> Self {
        Self { driver, wall }
    }

    /// The wall-clock time of driver timestamp `timestamp` (100 ns units).
    pub fn wall_time(&self, timestamp: u64) -> SystemTime {
        let ticks = |d: u64| Duration::from_nanos(d.saturating_mul(100));
        if timestamp >= self.driver {
            self.wall
                .checked_add(ticks(timestamp - self.driver))
                .unwrap_or(self.wall)
        } else {
            self.wall
                .checked_sub(ticks(self.driver - timestamp))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
}

/// How long a cancelled request may take to complete before the client calls it stuck.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// How often a blocked call looks at the interrupt flag.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// Parse `IP:PORT` (IPv6 in brackets) as the tools and scenarios write addresses.
///
/// # Errors
/// [`Error::BadAddress`] naming what is wrong.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, Error> {
    text.trim()
        .parse::<SocketAddr>()
        .map_err(|_| Error::BadAddress {
            text: text.to_owned(),
            why: if text.contains(':') {
                "expected IPv4:PORT or [IPv6]:PORT with a valid address and a port 0-65535".into()
            } else {
                "a port is missing: expected IP:PORT".into()
            },
        })
}

/// An open handle on ndkdisc (a device handle, or one on a simulated host).
pub struct Client {
    transport: Box<dyn Transport>,
    interrupt: Option<Arc<AtomicBool>>,
    closed: bool,
    /// Events an async WAIT took from the driver as it was dropped: the next WAIT returns them
    /// (so dropping a future loses no event).
    stash: std::sync::Mutex<std::collections::VecDeque<Event>>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn encode<R: Record>(op: Op, record: &R) -> Result<Vec<u8>, Error> {
    let mut v = vec![0; R::SIZE];
    record
        .encode(&mut v)
        .map_err(|why| Error::BadRequest { op, why })?;
    Ok(v)
}

fn op_name(ioctl: Ioctl) -> Op {
    match ioctl {
        Ioctl::GetInfo => "info",
        Ioctl::ListAdapters => "adapters",
        Ioctl::Listen => "listen",
        Ioctl::Connect => "connect",
        Ioctl::Wait => "wait",
        Ioctl::Query => "query",
        Ioctl::Post => "post",
        Ioctl::Disconnect => "disconnect",
        Ioctl::Abort => "abort",
        Ioctl::Flush => "flush",
        Ioctl::Close => "close",
        Ioctl::ListObjects => "list",
    }
}

impl Client {
    /// A client over a transport.
    #[cfg(any(windows, feature = "sim"))]
    pub(crate) fn new(transport: Box<dyn Transport>) -> Self {
        Self {
            transport,
            interrupt: None,
            closed: false,
            stash: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Open the ndkdisc device: `path` if given, else the first present interface of
    /// [`ndkdisc_abi::DEVICE_INTERFACE_GUID`], else `\\.\NdkDisc`. `write` asks for
    /// `GENERIC_WRITE` too (every operation that changes state needs it).
    ///
    /// The device is asked `GET_INFO` once opened: the ndkdisc driver answers it on every open
    /// handle, so a device that does not (a wrong `path`, such as `\\.\NUL`) is reported as
    /// not ndkdisc's rather than by what it happened to answer.
    ///
    /// # Errors
    /// [`Error::DeviceMissing`] (always, off Windows), [`Error::AccessDenied`],
    /// [`Error::NotNdkDisc`].
    pub fn open_device(path: Option<&str>, write: bool) -> Result<Self, Error> {
        #[cfg(windows)]
        {
            let (device, shown) = windows::Device::open(path, write)?;
            let client = Self::new(Box::new(device));
            client.identify(&shown)?;
            Ok(client)
        }
        #[cfg(not(windows))]
        {
            let _ = write;
            Err(Error::DeviceMissing {
                path: path.unwrap_or(ndkdisc_abi::DOS_DEVICE_PATH).to_owned(),
                detail:
                    "the device backend exists only on Windows; use the simulation backend here"
                        .into(),
            })
        }
    }

    /// Blocked operations watch `flag`: once it is set they cancel their request and fail with
    /// [`Error::Interrupted`] (a Ctrl-C handler sets it).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Issue one request and wait for its completion within `timeout`.
    fn call(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        output_len: usize,
        timeout: Timeout,
    ) -> Result<Completed, Error> {
        let req = self.transport.start(ioctl, input, output_len)?;
        self.finish(ioctl, req, timeout)
    }

    /// Wait for a request in flight within `timeout` (then cancel it).
    fn finish(
        &self,
        ioctl: Ioctl,
        mut req: Box<dyn InFlight>,
        timeout: Timeout,
    ) -> Result<Completed, Error> {
        let op = op_name(ioctl);
        let start = Instant::now();
        let why = loop {
            let slice = match timeout {
                Timeout::Forever => POLL_SLICE,
                Timeout::After(limit) => {
                    let left = limit.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        break Error::Timeout { op, after: limit };
                    }
                    left.min(POLL_SLICE)
                }
            };
            if let Some(done) = req.wait(slice) {
                return Ok(done);
            }
            if self.interrupted() {
                break Error::Interrupted { op };
            }
        };
        req.cancel();
        match req.wait(CANCEL_GRACE) {
            // Cancelled as asked: report the timeout or the interruption.
            Some(done) if done.status == NtStatus::CANCELLED => Err(why),
            // It completed while we cancelled: keep the result (events are not lost).
            Some(done) => Ok(done),
            None => Err(Error::Stuck {
                op,
                after: CANCEL_GRACE,
            }),
        }
    }

    /// A request whose success has no output.
    fn simple(&self, ioctl: Ioctl, input: &[u8]) -> Result<(), Error> {
        let done = self.call(ioctl, input, 0, Timeout::Forever)?;
        if done.status.is_success() {
            Ok(())
        } else {
            Err(Error::from_status(op_name(ioctl), done.status))
        }
    }

    /// A request with a fixed-size reply record.
    fn fixed<R: Record>(&self, ioctl: Ioctl, input: &[u8], timeout: Timeout) -> Result<R, Error> {
        let op = op_name(ioctl);
        let done = self.call(ioctl, input, R::SIZE, timeout)?;
        if !done.status.is_success() {
            return Err(Error::from_status(op, done.status));
        }
        R::parse(&done.output).map_err(|why| Error::BadReply { op, why })
    }

    /// `GET_INFO`: versions, per-handle limits and driver counters (zero on a handle opened
    /// without write access).
    ///
    /// # Errors
    /// The driver's status.
    pub fn info(&self) -> Result<InfoReply, Error> {
        self.info_within(Timeout::Forever)
    }

    /// A [`ClockBase`] for this handle's events: `GET_INFO`'s clock, paired with the wall-clock
    /// time halfway through the request.
    ///
    /// # Errors
    /// As [`Client::info`].
    pub fn clock_base(&self) -> Result<ClockBase, Error> {
        let before = SystemTime::now();
        let info = self.info()?;
        let after = SystemTime::now();
        let half = after.duration_since(before).unwrap_or_default() / 2;
        Ok(ClockBase::new(info.clock, before + half))
    }

    /// `GET_INFO`, cancelled after `timeout`.
    fn info_within(&self, timeout: Timeout) -> Result<InfoReply, Error> {
        let input = encode("info", &GetInfoRequest)?;
        self.fixed(Ioctl::GetInfo, &input, timeout)
    }

    /// Check that the device just opened at `path` answers as ndkdisc. `GET_INFO` succeeds on
    /// every handle of the ndkdisc driver; a driver of another ABI version answers
    /// `STATUS_REVISION_MISMATCH`, and a busy one may run out of resources, and those are told
    /// as they are; any other failure means it is some other device.
    #[cfg(windows)]
    fn identify(&self, path: &str) -> Result<(), Error> {
        const BOUND: Duration = Duration::from_secs(10);
        match self.info_within(Timeout::After(BOUND)) {
            Ok(_) => Ok(()),
            Err(Error::Failed { status, .. } | Error::AccessDenied { status, .. })
                if !matches!(
                    status,
                    NtStatus::REVISION_MISMATCH | NtStatus::INSUFFICIENT_RESOURCES
                ) =>
            {
                Err(Error::NotNdkDisc {
                    path: path.to_owned(),
                    status,
                })
            }
            Err(Error::BadReply { .. }) => Err(Error::NotNdkDisc {
                path: path.to_owned(),
                status: NtStatus::SUCCESS,
            }),
            Err(e) => Err(e),
        }
    }

    /// `LIST_ADAPTERS`: every NDK-capable interface address.
    ///
    /// # Errors
    /// The driver's status; a malformed reply.
    pub fn adapters(&self) -> Result<Vec<AdapterEntry>, Error> {
        let input = encode("adapters", &ListAdaptersRequest)?;
        self.batch(
            Ioctl::ListAdapters,
            &input,
            16,
            AdapterEntry::SIZE,
            decode_adapters_header,
            AdapterEntry::decode,
        )
    }

    /// `LIST_OBJECTS`: the handle's connections (state, outstanding work, addresses; QUERY
    /// each for its counters) and listeners (bound address).
    ///
    /// # Errors
    /// The driver's status; a malformed reply.
    pub fn objects(&self) -> Result<Vec<ObjectEntry>, Error> {
        let input = encode("list", &ListObjectsRequest)?;
        self.batch(
            Ioctl::ListObjects,
            &input,
            64,
            ObjectEntry::SIZE,
            decode_objects_header,
            ObjectEntry::decode,
        )
    }

    /// A batch reply of `size`-byte entries: asked with room for `room`, and again with room
    /// for all when more exist than fitted.
    fn batch<T>(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        mut room: usize,
        size: usize,
        header: BatchHeader,
        entry: fn(&[u8]) -> Result<T, ndkdisc_abi::AbiError>,
    ) -> Result<Vec<T>, Error> {
        let op = op_name(ioctl);
        loop {
            let len = BATCH_HEADER_SIZE + room * size;
            let done = self.call(ioctl, input, len, Timeout::Forever)?;
            if !done.status.is_success() {
                return Err(Error::from_status(op, done.status));
            }
            let bad = |why| Error::BadReply { op, why };
            let (count, total) = header(&done.output).map_err(bad)?;
            let total = total as usize;
            // More exist than fitted: ask again with room for them.
            if count < total && room < total {
                room = total;
                continue;
            }
            return (0..count)
                .map(|i| {
                    let at = BATCH_HEADER_SIZE + i * size;
                    done.output
                        .get(at..)
                        .ok_or(ndkdisc_abi::AbiError::Truncated)
                        .and_then(entry)
                        .map_err(bad)
                })
                .collect();
        }
    }

    /// LISTEN on `local` through interface `if_index`; incoming connections arrive as
    /// `Accepted` events.
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND` (no such interface), quota, NDK failures; a rejected address is
    /// [`Error::BadAddress`].
    pub fn listen(
        &self,
        if_index: u32,
        local: SocketAddr,
        backlog: u32,
    ) -> Result<ListenReply, Error> {
        let input = encode(
            "listen",
            &ListenRequest {
                if_index,
                backlog,
                local,
            },
        )?;
        self.fixed(Ioctl::Listen, &input, Timeout::Forever)
            .map_err(|e| address_error(e, local))
    }

    /// CONNECT, waiting at most `timeout` (then the attempt is cancelled).
    ///
    /// # Errors
    /// [`Error::ConnectFailed`] with the connection id and NDK status when the connection
    /// could not be made; [`Error::Timeout`]; the driver's status.
    pub fn connect(&self, params: &ConnectParams, timeout: Timeout) -> Result<Established, Error> {
        let input = connect_input(params)?;
        let done = self.call(Ioctl::Connect, &input, ConnectReply::SIZE, timeout)?;
        connect_outcome(&done, params)
    }

    /// WAIT for up to `max_events` events (at least 1) on `on`. [`Timeout::After`] with a zero
    /// duration drains what is queued without pending (possibly nothing).
    ///
    /// Events that an async WAIT took from the driver just as it was dropped
    /// ([`crate::asynchronous`]) come first.
    ///
    /// # Errors
    /// [`Error::Timeout`] when nothing arrived in time, [`Error::Interrupted`],
    /// `STATUS_CANCELLED` (ABORT of the connection, handle close), `STATUS_NOT_FOUND`.
    pub fn wait(
        &self,
        on: WaitOn,
        max_events: usize,
        timeout: Timeout,
    ) -> Result<Vec<Event>, Error> {
        let room = max_events.clamp(1, 4096);
        let stashed = self.take_stashed(on, room);
        if !stashed.is_empty() {
            return Ok(stashed);
        }
        let nonblocking = timeout == Timeout::After(Duration::ZERO);
        let input = wait_input(on, nonblocking)?;
        let timeout = if nonblocking {
            Timeout::Forever
        } else {
            timeout
        };
        let done = self.call(Ioctl::Wait, &input, wait_output_len(room), timeout)?;
        wait_outcome(&done, room)
    }

    /// Up to `room` events kept from async WAITs dropped as they completed, of `on`, in order.
    pub(crate) fn take_stashed(&self, on: WaitOn, room: usize) -> Vec<Event> {
        let mut stash = self
            .stash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut taken = Vec::new();
        let mut kept = std::collections::VecDeque::new();
        while let Some(e) = stash.pop_front() {
            let wanted = match on {
                WaitOn::Any => true,
                WaitOn::Connection(id) => ConnectionId::of(&e) == id,
            };
            if wanted && taken.len() < room {
                taken.push(e);
            } else {
                kept.push_back(e);
            }
        }
        *stash = kept;
        taken
    }

    /// Keep `events`, taken from the driver by a WAIT nobody will read, for the next WAIT.
    pub(crate) fn stash(&self, events: Vec<Event>) {
        self.stash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(events);
    }

    /// Issue a request without waiting for it (the async API).
    pub(crate) fn start(
        &self,
        ioctl: Ioctl,
        input: &[u8],
        output_len: usize,
    ) -> Result<Box<dyn InFlight>, Error> {
        self.transport.start(ioctl, input, output_len)
    }
}

/// CONNECT's input record.
pub(crate) fn connect_input(params: &ConnectParams) -> Result<Vec<u8>, Error> {
    encode(
        "connect",
        &ConnectRequest {
            if_index: params.if_index,
            receive_depth: params.receive_depth,
            send_depth: params.send_depth,
            local: params.local,
            remote: params.remote,
        },
    )
}

/// CONNECT's completion as its outcome.
pub(crate) fn connect_outcome(
    done: &Completed,
    params: &ConnectParams,
) -> Result<Established, Error> {
    let op = "connect";
    if !done.status.is_success() {
        return Err(address_error(
            Error::from_status(op, done.status),
            params.remote,
        ));
    }
    let reply = ConnectReply::parse(&done.output).map_err(|why| Error::BadReply { op, why })?;
    {
        let status = reply.status;
        if status.is_success() {
            Ok(Established {
                id: ConnectionId::from_raw(reply.connection_id),
                local: reply.local,
                remote: reply.remote,
            })
        } else {
            Err(Error::ConnectFailed {
                connection_id: ConnectionId::from_raw(reply.connection_id),
                status,
            })
        }
    }
}

/// WAIT's input record.
pub(crate) fn wait_input(on: WaitOn, nonblocking: bool) -> Result<Vec<u8>, Error> {
    encode(
        "wait",
        &WaitRequest {
            connection: match on {
                WaitOn::Any => None,
                WaitOn::Connection(id) => Some(id.raw()),
            },
            nonblocking,
        },
    )
}

/// The output room of a WAIT for `room` events.
pub(crate) fn wait_output_len(room: usize) -> usize {
    BATCH_HEADER_SIZE + room * ndkdisc_abi::Event::SIZE
}

/// WAIT's completion as its events.
pub(crate) fn wait_outcome(done: &Completed, room: usize) -> Result<Vec<Event>, Error> {
    let op = "wait";
    if !done.status.is_success() {
        return Err(Error::from_status(op, done.status));
    }
    let mut slots = vec![None; room];
    let n =
        decode_wait_reply(&done.output, &mut slots).map_err(|why| Error::BadReply { op, why })?;
    Ok(slots.into_iter().take(n).flatten().collect())
}

impl Client {
    /// WAIT for events not delivered before: like [`Client::wait`], but copies of a terminal
    /// record already delivered ([`Event::already_delivered`]) are skipped, and the wait goes
    /// on until a new event arrives or `timeout` passes. A WAIT on a connection whose terminal
    /// event was delivered never pends (it returns the copy at once), so while that copy is all
    /// there is this polls, 1 ms apart.
    ///
    /// # Errors
    /// As [`Client::wait`]; [`Error::Timeout`] when no new event arrived in time.
    pub fn wait_new(
        &self,
        on: WaitOn,
        max_events: usize,
        timeout: Timeout,
    ) -> Result<Vec<Event>, Error> {
        let deadline = match timeout {
            Timeout::Forever => None,
            Timeout::After(limit) => Some((Instant::now() + limit, limit)),
        };
        loop {
            let left = match deadline {
                None => Timeout::Forever,
                Some((at, _)) => Timeout::After(at.saturating_duration_since(Instant::now())),
            };
            let nonblocking = left == Timeout::After(Duration::ZERO);
            // A timeout is reported with the limit the caller gave, not the time left of it.
            let mut events = self
                .wait(on, max_events, left)
                .map_err(|e| match (e, deadline) {
                    (Error::Timeout { op, .. }, Some((_, limit))) => {
                        Error::Timeout { op, after: limit }
                    }
                    (e, _) => e,
                })?;
            events.retain(|e| !e.already_delivered);
            if !events.is_empty() || (nonblocking && timeout == left) {
                return Ok(events);
            }
            if let Some((at, limit)) = deadline
                && Instant::now() >= at
            {
                return Err(Error::Timeout {
                    op: "wait",
                    after: limit,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// QUERY a connection.
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND` for an id this handle does not own.
    pub fn query(&self, connection: ConnectionId) -> Result<ConnectionInfo, Error> {
        let input = encode(
            "query",
            &QueryRequest {
                connection_id: connection.raw(),
            },
        )?;
        let reply: QueryReply = self.fixed(Ioctl::Query, &input, Timeout::Forever)?;
        Ok(reply)
    }

    /// POST `count` receives or sends of `length` bytes each.
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE`, quota, `STATUS_NOT_FOUND`.
    pub fn post(
        &self,
        connection: ConnectionId,
        kind: PostKind,
        count: u32,
        length: u32,
    ) -> Result<(), Error> {
        let input = encode(
            "post",
            &PostRequest {
                connection_id: connection.raw(),
                kind,
                count,
                length,
            },
        )?;
        self.simple(Ioctl::Post, &input)
    }

    /// DISCONNECT gracefully or abortively. Graceful waits for the outcome: until the peer
    /// answers (see [`DisconnectMode::Graceful`]; [`Client::start_disconnect`] does not wait).
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE` (graceful while connecting), `STATUS_NOT_FOUND`,
    /// `STATUS_IO_TIMEOUT` (the peer never answered), `STATUS_CONNECTION_ABORTED`.
    pub fn disconnect(&self, connection: ConnectionId, mode: DisconnectMode) -> Result<(), Error> {
        let input = encode(
            "disconnect",
            &DisconnectRequest {
                connection_id: connection.raw(),
                abortive: mode == DisconnectMode::Abortive,
            },
        )?;
        self.simple(Ioctl::Disconnect, &input)
    }

    /// Start a graceful DISCONNECT without waiting for it: `NdkDisconnect` completes only when
    /// the peer answers (its own graceful DISCONNECT, or closing the connection), so a program
    /// that drives both ends starts one side here and answers on the other, then calls
    /// [`Client::finish_disconnect`].
    ///
    /// # Errors
    /// A failure to issue the request.
    pub fn start_disconnect(&self, connection: ConnectionId) -> Result<PendingDisconnect, Error> {
        let input = encode(
            "disconnect",
            &DisconnectRequest {
                connection_id: connection.raw(),
                abortive: false,
            },
        )?;
        Ok(PendingDisconnect {
            request: self.transport.start(Ioctl::Disconnect, &input, 0)?,
        })
    }

    /// Wait for a DISCONNECT started with [`Client::start_disconnect`].
    ///
    /// # Errors
    /// The disconnect's outcome when it failed (`STATUS_IO_TIMEOUT`: the peer never answered;
    /// `STATUS_CONNECTION_ABORTED`); [`Error::Timeout`] (the request is then cancelled;
    /// `NdkDisconnect` itself goes on and its outcome reaches the `Local` event).
    pub fn finish_disconnect(
        &self,
        pending: PendingDisconnect,
        timeout: Timeout,
    ) -> Result<(), Error> {
        let done = self.finish(Ioctl::Disconnect, pending.request, timeout)?;
        if done.status.is_success() {
            Ok(())
        } else {
            Err(Error::from_status("disconnect", done.status))
        }
    }

    /// ABORT: cancel the connection's pended waits and end it.
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND`.
    pub fn abort(&self, connection: ConnectionId) -> Result<(), Error> {
        let input = encode(
            "abort",
            &AbortRequest {
                connection_id: connection.raw(),
            },
        )?;
        self.simple(Ioctl::Abort, &input)
    }

    /// FLUSH: `NdkFlush` the connection's QP; posted requests complete with
    /// `STATUS_CANCELLED`, then a `Flushed` event arrives.
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE` (no QP), `STATUS_NOT_FOUND`.
    pub fn flush(&self, connection: ConnectionId) -> Result<(), Error> {
        let input = encode(
            "flush",
            &FlushRequest {
                connection_id: connection.raw(),
            },
        )?;
        self.simple(Ioctl::Flush, &input)
    }

    /// CLOSE a connection: release its NDK objects (a `Closed` event follows).
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND`.
    pub fn close_connection(&self, connection: ConnectionId) -> Result<(), Error> {
        self.close_object(connection.raw())
    }

    /// CLOSE a listener: stop accepting and release its NDK objects.
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND`.
    pub fn close_listener(&self, listener: ListenerId) -> Result<(), Error> {
        self.close_object(listener.raw())
    }

    /// CLOSE a connection or a listener by its number, for a caller that does not know which
    /// it is (a tool given an id on its command line).
    ///
    /// # Errors
    /// `STATUS_NOT_FOUND`.
    pub fn close_object(&self, id: u64) -> Result<(), Error> {
        let input = encode("close", &CloseRequest { id })?;
        self.simple(Ioctl::Close, &input)
    }

    /// Close the handle: the driver cancels its waits and tears down its objects.
    pub fn close(mut self) {
        self.closed = true;
        self.transport.close();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.closed {
            self.transport.close();
        }
    }
}

/// The driver's verdict on an address is a bad-address error, naming the address.
fn address_error(e: Error, addr: SocketAddr) -> Error {
    match e {
        Error::Failed { status, .. } if status == NtStatus::INVALID_ADDRESS => Error::BadAddress {
            text: addr.to_string(),
            why: format!("{status}: {}", status::meaning(status)),
        },
        other => other,
    }
}
