//! Replies and the event record. Fixed-size replies implement [`Record`]; the two batch
//! replies (`LIST_ADAPTERS`, WAIT) are a 16-byte fixed part (header with `size` 16, `count: u32`
//! @8, a `u32` @12) followed by `count` fixed-size entries.

use core::net::SocketAddr;

use ntstatus::NtStatus;

use crate::error::AbiError;
use crate::records::{Record, read_address, write_address};
use crate::wire::{Reader, Writer};

/// Size of the fixed part of a batch reply.
pub const BATCH_HEADER_SIZE: usize = 16;

/// `GET_INFO` output (88 bytes): header; `abi_version: u32` @8; `driver_version: u32` @12
/// (major << 16 | minor); per-handle limits `max_connections` @16, `max_listeners` @20,
/// `max_waits` @24, `default_backlog` @28, `events_per_connection` @32 (all `u32`);
/// `ndk_status: i32` @36 (an NTSTATUS: success, or why the driver has no NDK); driver-wide counters (`u64`): `connections_opened` @40, `events_latched` @48,
/// `disconnect_callbacks` @56, `backlog_rejects` @64, `duplicate_callbacks` @72; `clock: u64`
/// @80 (the driver's clock when it answered, in the units of [`Event::timestamp`]). The
/// driver-wide counters tell of every handle's traffic, so only a handle opened
/// for writing sees them: to a handle without write access the driver reports them as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InfoReply {
    /// [`crate::ABI_VERSION`] of the driver.
    pub abi_version: u32,
    /// Driver version, major << 16 | minor.
    pub driver_version: u32,
    /// Connections a handle may have open.
    pub max_connections: u32,
    /// Listeners a handle may have open.
    pub max_listeners: u32,
    /// WAIT requests a handle may have pended.
    pub max_waits: u32,
    /// Backlog of a LISTEN that asks for 0.
    pub default_backlog: u32,
    /// Event records preallocated per connection.
    pub events_per_connection: u32,
    /// Whether the driver can use NDK: `STATUS_SUCCESS` if it obtained the WSK NDK extension
    /// when it loaded; otherwise why not (the status of `WskRegister`, of capturing the WSK
    /// provider, or of asking it for the NDK extension: `STATUS_NOT_SUPPORTED` on a system
    /// without NDK). Without it the driver still loads and answers every IOCTL, and each
    /// operation that needs an adapter fails with `STATUS_NOT_SUPPORTED`. Until 2026-12-02 (the
    /// same ABI version) these bytes were reserved as zero: a client from before then rejects a
    /// `GET_INFO` reply of a driver without NDK (`ReservedNotZero`); the driver and ndkctl ship
    /// together in one package.
    pub ndk_status: NtStatus,
    /// Connections opened since load.
    pub connections_opened: u64,
    /// Events latched since load.
    pub events_latched: u64,
    /// NDK disconnect callbacks received since load.
    pub disconnect_callbacks: u64,
    /// Incoming connections rejected because a listener's backlog was full or its handle was
    /// at its connection quota.
    pub backlog_rejects: u64,
    /// Disconnect callbacks received for a connection that had already had one.
    pub duplicate_callbacks: u64,
    /// The driver's clock when it answered, in the units of [`Event::timestamp`] (100 ns; on
    /// Windows `KeQueryUnbiasedInterruptTime`: since boot, not counting sleep). Paired with the
    /// wall-clock time the reply arrived, it turns event timestamps into wall-clock times. Until
    /// 2026-12-02 (the same ABI version) these bytes were reserved as zero: an older client
    /// rejects the reply (`ReservedNotZero`); the driver and ndkctl ship together.
    pub clock: u64,
}

impl InfoReply {
    /// The reply a handle without write access gets: the same, with the engine-wide counters
    /// (which tell of every handle's traffic) zeroed.
    #[must_use]
    pub const fn without_engine_counters(self) -> Self {
        Self {
            connections_opened: 0,
            events_latched: 0,
            disconnect_callbacks: 0,
            backlog_rejects: 0,
            duplicate_callbacks: 0,
            ..self
        }
    }
}

impl Record for InfoReply {
    const SIZE: usize = 88;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let v = Self {
            abi_version: r.u32()?,
            driver_version: r.u32()?,
            max_connections: r.u32()?,
            max_listeners: r.u32()?,
            max_waits: r.u32()?,
            default_backlog: r.u32()?,
            events_per_connection: r.u32()?,
            ndk_status: r.status()?,
            connections_opened: r.u64()?,
            events_latched: r.u64()?,
            disconnect_callbacks: r.u64()?,
            backlog_rejects: r.u64()?,
            duplicate_callbacks: r.u64()?,
            clock: r.u64()?,
        };
        Ok(v)
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        for v in [
            self.abi_version,
            self.driver_version,
            self.max_connections,
            self.max_listeners,
            self.max_waits,
            self.default_backlog,
            self.events_per_connection,
        ] {
            w.u32(v)?;
        }
        w.status(self.ndk_status)?;
        for v in [
            self.connections_opened,
            self.events_latched,
            self.disconnect_callbacks,
            self.backlog_rejects,
            self.duplicate_callbacks,
            self.clock,
        ] {
            w.u64(v)?;
        }
        Ok(())
    }
}

/// LISTEN output (40 bytes): header, `listener_id: u64` @8, `bound: Address` @16 (the address
/// and port actually bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenReply {
    /// The new listener's id.
    pub listener_id: u64,
    /// The bound address.
    pub bound: SocketAddr,
}

impl Record for ListenReply {
    const SIZE: usize = 40;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let listener_id = r.u64()?;
        let bound = read_address(r)?.ok_or(AbiError::BadAddress("bound address missing"))?;
        Ok(Self { listener_id, bound })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.listener_id)?;
        write_address(w, Some(self.bound))
    }
}

/// CONNECT output (72 bytes): header, `connection_id: u64` @8, `status: i32` @16 (the
/// outcome: `STATUS_SUCCESS` when connected, else the NDK failure, e.g.
/// `STATUS_CONNECTION_REFUSED`), `reserved: u32` @20, `local: Address` @24, `remote: Address`
/// @48. The IOCTL itself completes with `STATUS_SUCCESS` whenever this reply is written, so
/// the connection id reaches user mode for failures too (a `ConnectFailed` event is queued).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectReply {
    /// The connection's id (valid until CLOSE).
    pub connection_id: u64,
    /// The connect outcome.
    pub status: NtStatus,
    /// Local address, once bound.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
}

impl Record for ConnectReply {
    const SIZE: usize = 72;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let connection_id = r.u64()?;
        let status = r.status()?;
        r.reserved32("reserved")?;
        Ok(Self {
            connection_id,
            status,
            local: read_address(r)?,
            remote: read_address(r)?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.connection_id)?;
        w.status(self.status)?;
        w.u32(0)?;
        write_address(w, self.local)?;
        write_address(w, self.remote)
    }
}

/// A reply enumeration that tolerates values it does not know: a newer driver may add kinds,
/// causes or states, and an older tool must still read the rest of the record (and the other
/// events of the batch). Such a value decodes to `Unknown` carrying the number.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A value this version of the ABI does not define (sent by a newer driver).
            Unknown(u16),
        }

        impl $name {
            /// The wire value.
            pub const fn to_wire(self) -> u16 {
                match self {
                    $(Self::$variant => $value,)*
                    Self::Unknown(v) => v,
                }
            }

            /// Decode a wire value; one this version does not define is [`Self::Unknown`].
            pub const fn from_wire(v: u16) -> Self {
                match v {
                    $($value => Self::$variant,)*
                    _ => Self::Unknown(v),
                }
            }
        }
    };
}

wire_enum!(
    /// What happened to a connection.
    EventKind {
        /// The active side is established (CONNECT succeeded).
        Connected = 1,
        /// A listener produced a connection (passive side established).
        Accepted = 2,
        /// CONNECT failed; `status` says why. Terminal.
        ConnectFailed = 3,
        /// The connection ended; `cause` says how. Terminal, exactly once per connection.
        Disconnected = 4,
        /// A FLUSH finished: the posted requests completed with `STATUS_CANCELLED`.
        Flushed = 5,
        /// CLOSE released the NDK objects.
        Closed = 6,
    }
);

wire_enum!(
    /// How a connection ended (the `cause` of a `Disconnected` event; on the wire 0 means "no
    /// cause", which decodes to `None` of an `Option<Cause>`).
    Cause {
        /// The peer disconnected or the provider saw the connection abort: the NDK disconnect
        /// callback fired (the provider reason, if any, is in `provider_reason`).
        Peer = 1,
        /// Our graceful `NdkDisconnect` completed.
        Local = 2,
        /// DISCONNECT with the abortive flag: the connection was closed at once.
        LocalAbortive = 3,
        /// ABORT.
        Aborted = 4,
        /// The adapter went away.
        AdapterRemoved = 5,
        /// The owning handle was closed.
        HandleClosed = 6,
        /// The provider made the connection unusable: a work request completed with an error
        /// (other than a flush), or the CQ reported a fatal error or an overrun. `status` is
        /// that error; the provider flushes what is still posted (`EVENT_PROVIDER_FLUSHES`).
        TransportError = 7,
    }
);

/// Event flag: the NDK disconnect callback had fired when the event was latched
/// ([`Event::callback_fired`]).
pub const EVENT_CALLBACK_FIRED: u32 = 0x1;
/// Event flag: `provider_reason` came from the NDKPI 2.1 `Ex` callback
/// ([`Event::provider_reason`] is `Some`).
pub const EVENT_REASON_VALID: u32 = 0x2;
/// Event flag: a copy of the connection's terminal record, already delivered
/// ([`Event::already_delivered`]).
pub const EVENT_ALREADY_DELIVERED: u32 = 0x4;
/// Event flag: the provider flushes what is still posted ([`Event::provider_flushes`]).
pub const EVENT_PROVIDER_FLUSHES: u32 = 0x8;
const EVENT_FLAGS: u32 =
    EVENT_CALLBACK_FIRED | EVENT_REASON_VALID | EVENT_ALREADY_DELIVERED | EVENT_PROVIDER_FLUSHES;

/// One event, decoded. On the wire (48 bytes): `seq: u64` @0 (strictly increasing per handle),
/// `connection_id: u64` @8, `timestamp: u64` @16 (100 ns units of the driver's clock), `kind:
/// u16` @24, `cause: u16` @26 (0: none), `status: i32` @28, `provider_reason: u32` @32,
/// `outstanding_receives: u32` @36, `outstanding_sends: u32` @40 (work requests still posted
/// when the event was latched), `flags: u32` @44 (`EVENT_*`).
///
/// The driver builds these and encodes them; the client decodes them; both use this one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Sequence number (strictly increasing per handle).
    pub seq: u64,
    /// The connection.
    pub connection_id: u64,
    /// When the driver latched it (100 ns units of the driver's clock).
    pub timestamp: u64,
    /// What happened.
    pub kind: EventKind,
    /// How the connection ended (`Disconnected` only).
    pub cause: Option<Cause>,
    /// The status of the fact (connect failure, disconnect completion, transport error, ...).
    pub status: NtStatus,
    /// The provider's disconnect reason (NDKPI 2.1 `Ex` callback), when it gave one.
    pub provider_reason: Option<u32>,
    /// Receives still posted when the event was latched.
    pub outstanding_receives: u32,
    /// Sends still posted.
    pub outstanding_sends: u32,
    /// Whether the NDK disconnect callback had fired when the event was latched.
    pub callback_fired: bool,
    /// The provider put the connection's QP (or its CQ) in the error state, so the provider —
    /// never ndkdisc — flushes the requests still posted (or, with a dead CQ, they never
    /// complete). Set on `Disconnected` with cause `TransportError`.
    pub provider_flushes: bool,
    /// A copy of the connection's terminal record (`Disconnected` or `ConnectFailed`), which
    /// was already delivered (e.g. to an any-connection WAIT). A WAIT filtered on a connection
    /// whose terminal event was delivered and that has no other event queued completes at once
    /// with this copy instead of pending (level-triggered, like `HttpWaitForDisconnect` on a
    /// closed connection); its `seq` is the original's. Once the connection's `Closed` event is
    /// delivered its id is gone and such a WAIT fails with `STATUS_NOT_FOUND`.
    pub already_delivered: bool,
}

impl Event {
    /// Size of one event record.
    pub const SIZE: usize = 48;

    /// An event of `kind` on `connection_id` at `timestamp`, every other field empty (the
    /// event queue assigns `seq`).
    pub const fn new(kind: EventKind, connection_id: u64, timestamp: u64) -> Self {
        Self {
            seq: 0,
            connection_id,
            timestamp,
            kind,
            cause: None,
            status: NtStatus::SUCCESS,
            provider_reason: None,
            outstanding_receives: 0,
            outstanding_sends: 0,
            callback_fired: false,
            provider_flushes: false,
            already_delivered: false,
        }
    }

    /// Decode one event.
    ///
    /// # Errors
    /// Truncation, undefined flags. An unknown kind or cause decodes to its `Unknown` value.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        let mut r = Reader::new(bytes.get(..Self::SIZE).ok_or(AbiError::Truncated)?);
        let seq = r.u64()?;
        let connection_id = r.u64()?;
        let timestamp = r.u64()?;
        let kind = EventKind::from_wire(r.u16()?);
        let cause = match r.u16()? {
            0 => None,
            v => Some(Cause::from_wire(v)),
        };
        let status = r.status()?;
        let provider_reason = r.u32()?;
        let outstanding_receives = r.u32()?;
        let outstanding_sends = r.u32()?;
        let flags = r.u32()?;
        if flags & !EVENT_FLAGS != 0 {
            return Err(AbiError::UnknownFlags {
                field: "flags",
                bits: flags & !EVENT_FLAGS,
            });
        }
        Ok(Self {
            seq,
            connection_id,
            timestamp,
            kind,
            cause,
            status,
            provider_reason: (flags & EVENT_REASON_VALID != 0).then_some(provider_reason),
            outstanding_receives,
            outstanding_sends,
            callback_fired: flags & EVENT_CALLBACK_FIRED != 0,
            provider_flushes: flags & EVENT_PROVIDER_FLUSHES != 0,
            already_delivered: flags & EVENT_ALREADY_DELIVERED != 0,
        })
    }

    /// The `EVENT_*` flags of the wire record.
    pub const fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.callback_fired {
            flags |= EVENT_CALLBACK_FIRED;
        }
        if self.provider_reason.is_some() {
            flags |= EVENT_REASON_VALID;
        }
        if self.already_delivered {
            flags |= EVENT_ALREADY_DELIVERED;
        }
        if self.provider_flushes {
            flags |= EVENT_PROVIDER_FLUSHES;
        }
        flags
    }

    /// Encode one event into the first [`Event::SIZE`] bytes of `out`.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, AbiError> {
        let mut w = Writer::new(out.get_mut(..Self::SIZE).ok_or(AbiError::OutputTooSmall)?);
        w.u64(self.seq)?;
        w.u64(self.connection_id)?;
        w.u64(self.timestamp)?;
        w.u16(self.kind.to_wire())?;
        w.u16(self.cause.map_or(0, Cause::to_wire))?;
        w.status(self.status)?;
        w.u32(self.provider_reason.unwrap_or(0))?;
        w.u32(self.outstanding_receives)?;
        w.u32(self.outstanding_sends)?;
        w.u32(self.flags())?;
        Ok(Self::SIZE)
    }
}

/// How many entries of `entry_size` bytes fit after a batch header in `out_len` bytes; `None`
/// when not even the header and one entry fit.
pub const fn batch_capacity(out_len: usize, entry_size: usize) -> Option<usize> {
    if out_len < BATCH_HEADER_SIZE + entry_size {
        None
    } else {
        Some((out_len - BATCH_HEADER_SIZE) / entry_size)
    }
}

/// Write a batch reply's 16-byte fixed part: `count` entries follow; `extra` is the `u32` at
/// offset 12 (`total` for `LIST_ADAPTERS`, zero for WAIT).
///
/// # Errors
/// [`AbiError::OutputTooSmall`], or a count beyond `u32`.
pub fn encode_batch_header(out: &mut [u8], count: usize, extra: u32) -> Result<(), AbiError> {
    let mut w = Writer::new(
        out.get_mut(..BATCH_HEADER_SIZE)
            .ok_or(AbiError::OutputTooSmall)?,
    );
    w.u16(crate::ABI_VERSION)?;
    w.u16(16)?;
    w.u32(0)?;
    w.u32(u32::try_from(count).map_err(|_| AbiError::OutOfRange("count"))?)?;
    w.u32(extra)
}

fn read_batch_header(bytes: &[u8]) -> Result<(usize, u32), AbiError> {
    let mut r = Reader::new(bytes);
    let version = r.u16()?;
    if version != crate::ABI_VERSION {
        return Err(AbiError::UnsupportedVersion(version));
    }
    let size = r.u16()?;
    if size != 16 {
        return Err(AbiError::WrongSize {
            expected: 16,
            actual: size,
        });
    }
    r.reserved32("header.reserved")?;
    let count = r.u32()? as usize;
    Ok((count, r.u32()?))
}

/// Encode a WAIT reply with `events` (all of which must fit); returns the bytes written.
///
/// # Errors
/// [`AbiError::OutputTooSmall`] if they do not fit.
pub fn encode_wait_reply(events: &[Event], out: &mut [u8]) -> Result<usize, AbiError> {
    let total = BATCH_HEADER_SIZE + events.len() * Event::SIZE;
    let out = out.get_mut(..total).ok_or(AbiError::OutputTooSmall)?;
    encode_batch_header(out, events.len(), 0)?;
    for (i, e) in events.iter().enumerate() {
        e.encode(&mut out[BATCH_HEADER_SIZE + i * Event::SIZE..])?;
    }
    Ok(total)
}

/// Decode a WAIT reply into `into`; returns the number of events.
///
/// # Errors
/// Truncation, a bad header, a bad event.
pub fn decode_wait_reply(bytes: &[u8], into: &mut [Option<Event>]) -> Result<usize, AbiError> {
    let (count, reserved) = read_batch_header(bytes)?;
    if reserved != 0 {
        return Err(AbiError::ReservedNotZero("reserved"));
    }
    if count > into.len() {
        return Err(AbiError::OutputTooSmall);
    }
    for (i, slot) in into.iter_mut().take(count).enumerate() {
        let start = BATCH_HEADER_SIZE + i * Event::SIZE;
        *slot = Some(Event::decode(
            bytes.get(start..).ok_or(AbiError::Truncated)?,
        )?);
    }
    Ok(count)
}

/// One `LIST_ADAPTERS` entry (32 bytes): `if_index: u32` @0, `ndk_major: u16` @4, `ndk_minor:
/// u16` @6, `address: Address` @8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterEntry {
    /// Interface index (`NET_IFINDEX`).
    pub if_index: u32,
    /// NDKPI major version the adapter speaks.
    pub ndk_major: u16,
    /// NDKPI minor version.
    pub ndk_minor: u16,
    /// One address of the interface (an interface with several appears once per address).
    pub address: SocketAddr,
}

impl AdapterEntry {
    /// Size of one entry.
    pub const SIZE: usize = 32;

    /// Decode one entry.
    ///
    /// # Errors
    /// Truncation or a bad address.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        let mut r = Reader::new(bytes.get(..Self::SIZE).ok_or(AbiError::Truncated)?);
        let if_index = r.u32()?;
        let ndk_major = r.u16()?;
        let ndk_minor = r.u16()?;
        let address =
            read_address(&mut r)?.ok_or(AbiError::BadAddress("adapter address missing"))?;
        Ok(Self {
            if_index,
            ndk_major,
            ndk_minor,
            address,
        })
    }

    /// Encode one entry.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, AbiError> {
        let mut w = Writer::new(out.get_mut(..Self::SIZE).ok_or(AbiError::OutputTooSmall)?);
        w.u32(self.if_index)?;
        w.u16(self.ndk_major)?;
        w.u16(self.ndk_minor)?;
        write_address(&mut w, Some(self.address))?;
        Ok(Self::SIZE)
    }
}

/// Encode a `LIST_ADAPTERS` reply: as many of `entries` as fit in `out`, with `total` =
/// `entries.len()` so the caller learns a bigger buffer is needed. Returns the bytes written.
///
/// # Errors
/// [`AbiError::OutputTooSmall`] if not even the header fits.
pub fn encode_adapters_reply(entries: &[AdapterEntry], out: &mut [u8]) -> Result<usize, AbiError> {
    if out.len() < BATCH_HEADER_SIZE {
        return Err(AbiError::OutputTooSmall);
    }
    let fit = (out.len() - BATCH_HEADER_SIZE) / AdapterEntry::SIZE;
    let n = fit.min(entries.len());
    let total = u32::try_from(entries.len()).map_err(|_| AbiError::OutOfRange("total"))?;
    encode_batch_header(out, n, total)?;
    for (i, e) in entries.iter().take(n).enumerate() {
        e.encode(&mut out[BATCH_HEADER_SIZE + i * AdapterEntry::SIZE..])?;
    }
    Ok(BATCH_HEADER_SIZE + n * AdapterEntry::SIZE)
}

/// Decode a `LIST_ADAPTERS` reply's header: `(count, total)`.
///
/// # Errors
/// Truncation or a bad header.
pub fn decode_adapters_header(bytes: &[u8]) -> Result<(usize, u32), AbiError> {
    read_batch_header(bytes)
}

wire_enum!(
    /// A connection's state as QUERY reports it.
    ConnState {
        /// CONNECT pending (or an accepted connection completing).
        Connecting = 1,
        /// Established.
        Connected = 2,
        /// Our graceful `NdkDisconnect` is in progress.
        Disconnecting = 3,
        /// Ended (terminal event latched); NDK objects still held until CLOSE.
        Disconnected = 4,
        /// CONNECT failed.
        Failed = 5,
        /// CLOSE released the NDK objects.
        Closed = 6,
    }
);

/// QUERY flag: the NDK disconnect callback has fired ([`QueryReply::callback_fired`]).
pub const QUERY_CALLBACK_FIRED: u16 = 0x1;
/// QUERY flag: `provider_reason` is valid ([`QueryReply::provider_reason`] is `Some`).
pub const QUERY_REASON_VALID: u16 = 0x2;
/// QUERY flag: we called `NdkDisconnect` ([`QueryReply::local_disconnect`]).
pub const QUERY_LOCAL_DISCONNECT: u16 = 0x4;
/// QUERY flag: aborted ([`QueryReply::aborted`]).
pub const QUERY_ABORTED: u16 = 0x8;
/// QUERY flag: a FLUSH was requested ([`QueryReply::flushed`]).
pub const QUERY_FLUSHED: u16 = 0x10;
/// QUERY flag: the provider flushed on its own ([`QueryReply::provider_flushed`]).
pub const QUERY_PROVIDER_FLUSHED: u16 = 0x20;
/// QUERY flag: the CQ failed ([`QueryReply::cq_failed`]).
pub const QUERY_CQ_FAILED: u16 = 0x40;
const QUERY_FLAGS: u16 = QUERY_CALLBACK_FIRED
    | QUERY_REASON_VALID
    | QUERY_LOCAL_DISCONNECT
    | QUERY_ABORTED
    | QUERY_FLUSHED
    | QUERY_PROVIDER_FLUSHED
    | QUERY_CQ_FAILED;

/// What QUERY reports about a connection, decoded. On the wire (136 bytes): header,
/// `connection_id: u64` @8, `state: u16` @16, `flags: u16` @18 (`QUERY_*`), `provider_reason:
/// u32` @20, `outstanding_receives: u32` @24, `outstanding_sends: u32` @28, `ndk_major: u16`
/// @32, `ndk_minor: u16` @34, `terminal_status: i32` @36, `local: Address` @40, `remote:
/// Address` @64, `receives_succeeded: u32` @88, `receives_cancelled: u32` @92,
/// `sends_succeeded: u32` @96, `sends_cancelled: u32` @100, `receives_failed: u32` @104,
/// `sends_failed: u32` @108, `last_error_status: i32` @112, `last_provider_error: u32` @116,
/// `received_bytes: u64` @120, `send_bytes_posted: u64` @128. (Until 2026-12-02, the same ABI
/// version, the record ended at @120: the driver and its client ship together.)
///
/// The counts are completions reaped from the connection's CQ by status: `STATUS_SUCCESS`,
/// `STATUS_CANCELLED` (flushed: by FLUSH, by our own `NdkDisconnect`, or by the provider on its
/// own — then `provider_flushed`), and any other status (failed: the last one and its NDKPI 2.1
/// provider error code are kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one QUERY_* flag of the ABI"
)]
pub struct QueryReply {
    /// The connection.
    pub connection_id: u64,
    /// Its state.
    pub state: ConnState,
    /// The NDK disconnect callback has fired.
    pub callback_fired: bool,
    /// The provider's disconnect reason, when the NDKPI 2.1 callback gave one.
    pub provider_reason: Option<u32>,
    /// We called `NdkDisconnect`.
    pub local_disconnect: bool,
    /// ABORT or an abortive DISCONNECT happened.
    pub aborted: bool,
    /// A FLUSH was requested.
    pub flushed: bool,
    /// Requests completed as flushed (`STATUS_CANCELLED`) that ndkdisc never asked to flush
    /// (no FLUSH, no graceful DISCONNECT, no close): the provider flushed them.
    pub provider_flushed: bool,
    /// The connection's CQ reported a fatal error or an overrun: nothing posted will complete
    /// any more.
    pub cq_failed: bool,
    /// Receives posted and not completed.
    pub outstanding_receives: u32,
    /// Sends posted and not completed.
    pub outstanding_sends: u32,
    /// The NDKPI version (major, minor) of the connection's adapter.
    pub ndk_version: (u16, u16),
    /// Status of the terminal event (success while none).
    pub terminal_status: NtStatus,
    /// Local address.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
    /// Receive completions with `STATUS_SUCCESS`.
    pub receives_succeeded: u32,
    /// Receive completions with `STATUS_CANCELLED` (flushed).
    pub receives_cancelled: u32,
    /// Send completions with `STATUS_SUCCESS`.
    pub sends_succeeded: u32,
    /// Send completions with `STATUS_CANCELLED` (flushed).
    pub sends_cancelled: u32,
    /// Receive completions with any other status.
    pub receives_failed: u32,
    /// Send completions with any other status.
    pub sends_failed: u32,
    /// Status of the last failed completion (success while none).
    pub last_error_status: NtStatus,
    /// Provider error code of the last failed completion (NDKPI 2.1; provider-specific; 0
    /// when not provided).
    pub last_provider_error: u32,
    /// Bytes the provider reported received, over the receives that succeeded
    /// (`NDK_RESULT::BytesTransferred`, meaningful for receives only).
    pub received_bytes: u64,
    /// Bytes of the sends posted (NDK reports no byte count for a send's completion).
    pub send_bytes_posted: u64,
}

impl QueryReply {
    /// Every request accounted for, `(receives, sends)`: completed (succeeded, cancelled or
    /// failed) plus still outstanding. Equals what was posted: a request that completed is
    /// counted once, by its status, and no longer outstanding.
    pub fn accounted(&self) -> (u64, u64) {
        let sum = |counts: [u32; 4]| counts.iter().map(|&n| u64::from(n)).sum();
        (
            sum([
                self.receives_succeeded,
                self.receives_cancelled,
                self.receives_failed,
                self.outstanding_receives,
            ]),
            sum([
                self.sends_succeeded,
                self.sends_cancelled,
                self.sends_failed,
                self.outstanding_sends,
            ]),
        )
    }

    /// The `QUERY_*` flags of the wire record.
    pub const fn flags(&self) -> u16 {
        let mut flags = 0;
        let bits = [
            (self.callback_fired, QUERY_CALLBACK_FIRED),
            (self.provider_reason.is_some(), QUERY_REASON_VALID),
            (self.local_disconnect, QUERY_LOCAL_DISCONNECT),
            (self.aborted, QUERY_ABORTED),
            (self.flushed, QUERY_FLUSHED),
            (self.provider_flushed, QUERY_PROVIDER_FLUSHED),
            (self.cq_failed, QUERY_CQ_FAILED),
        ];
        let mut i = 0;
        while i < bits.len() {
            if bits[i].0 {
                flags |= bits[i].1;
            }
            i += 1;
        }
        flags
    }
}

impl Record for QueryReply {
    const SIZE: usize = 136;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let connection_id = r.u64()?;
        let state = ConnState::from_wire(r.u16()?);
        let flags = r.u16()?;
        if flags & !QUERY_FLAGS != 0 {
            return Err(AbiError::UnknownFlags {
                field: "flags",
                bits: u32::from(flags & !QUERY_FLAGS),
            });
        }
        let has = |bit: u16| flags & bit != 0;
        let provider_reason = r.u32()?;
        Ok(Self {
            connection_id,
            state,
            callback_fired: has(QUERY_CALLBACK_FIRED),
            provider_reason: has(QUERY_REASON_VALID).then_some(provider_reason),
            local_disconnect: has(QUERY_LOCAL_DISCONNECT),
            aborted: has(QUERY_ABORTED),
            flushed: has(QUERY_FLUSHED),
            provider_flushed: has(QUERY_PROVIDER_FLUSHED),
            cq_failed: has(QUERY_CQ_FAILED),
            outstanding_receives: r.u32()?,
            outstanding_sends: r.u32()?,
            ndk_version: (r.u16()?, r.u16()?),
            terminal_status: r.status()?,
            local: read_address(r)?,
            remote: read_address(r)?,
            receives_succeeded: r.u32()?,
            receives_cancelled: r.u32()?,
            sends_succeeded: r.u32()?,
            sends_cancelled: r.u32()?,
            receives_failed: r.u32()?,
            sends_failed: r.u32()?,
            last_error_status: r.status()?,
            last_provider_error: r.u32()?,
            received_bytes: r.u64()?,
            send_bytes_posted: r.u64()?,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.connection_id)?;
        w.u16(self.state.to_wire())?;
        w.u16(self.flags())?;
        w.u32(self.provider_reason.unwrap_or(0))?;
        w.u32(self.outstanding_receives)?;
        w.u32(self.outstanding_sends)?;
        w.u16(self.ndk_version.0)?;
        w.u16(self.ndk_version.1)?;
        w.status(self.terminal_status)?;
        write_address(w, self.local)?;
        write_address(w, self.remote)?;
        w.u32(self.receives_succeeded)?;
        w.u32(self.receives_cancelled)?;
        w.u32(self.sends_succeeded)?;
        w.u32(self.sends_cancelled)?;
        w.u32(self.receives_failed)?;
        w.u32(self.sends_failed)?;
        w.status(self.last_error_status)?;
        w.u32(self.last_provider_error)?;
        w.u64(self.received_bytes)?;
        w.u64(self.send_bytes_posted)
    }
}

/// What a `LIST` entry describes ([`ObjectEntry::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A connection (`1`).
    Connection,
    /// A listener (`2`).
    Listener,
    /// A kind from a newer driver.
    Unknown(u16),
}

impl ObjectKind {
    /// The wire value.
    pub const fn to_wire(self) -> u16 {
        match self {
            Self::Connection => 1,
            Self::Listener => 2,
            Self::Unknown(v) => v,
        }
    }

    /// From the wire value.
    pub const fn from_wire(v: u16) -> Self {
        match v {
            1 => Self::Connection,
            2 => Self::Listener,
            v => Self::Unknown(v),
        }
    }
}

/// One `LIST` entry (72 bytes): `id: u64` @0, `kind: u16` @8 ([`ObjectKind`]), `state: u16` @10
/// (a connection's [`ConnState`], as QUERY reports it; 0 for a listener), `outstanding_receives:
/// u32` @12, `outstanding_sends: u32` @16 (connections; 0 for a listener), `reserved: u32` @20,
/// `local: Address` @24 (a listener's bound address, a connection's local one), `remote:
/// Address` @48 (a connection's peer; empty for a listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The id.
    pub id: u64,
    /// Connection or listener.
    pub kind: ObjectKind,
    /// A connection's state (`None` for a listener).
    pub state: Option<ConnState>,
    /// Receives still posted.
    pub outstanding_receives: u32,
    /// Sends still posted.
    pub outstanding_sends: u32,
    /// The local (or bound) address, once known.
    pub local: Option<SocketAddr>,
    /// The peer's address, once known.
    pub remote: Option<SocketAddr>,
}

impl ObjectEntry {
    /// Size of one entry.
    pub const SIZE: usize = 72;

    /// Decode one entry.
    ///
    /// # Errors
    /// Truncation, a reserved field not zero, a bad address.
    pub fn decode(bytes: &[u8]) -> Result<Self, AbiError> {
        let mut r = Reader::new(bytes.get(..Self::SIZE).ok_or(AbiError::Truncated)?);
        let id = r.u64()?;
        let kind = ObjectKind::from_wire(r.u16()?);
        let state = r.u16()?;
        let outstanding_receives = r.u32()?;
        let outstanding_sends = r.u32()?;
        r.reserved32("reserved")?;
        Ok(Self {
            id,
            kind,
            state: (kind != ObjectKind::Listener).then(|| ConnState::from_wire(state)),
            outstanding_receives,
            outstanding_sends,
            local: read_address(&mut r)?,
            remote: read_address(&mut r)?,
        })
    }

    /// Encode one entry.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, AbiError> {
        let mut w = Writer::new(out.get_mut(..Self::SIZE).ok_or(AbiError::OutputTooSmall)?);
        w.u64(self.id)?;
        w.u16(self.kind.to_wire())?;
        w.u16(self.state.map_or(0, ConnState::to_wire))?;
        w.u32(self.outstanding_receives)?;
        w.u32(self.outstanding_sends)?;
        w.u32(0)?;
        write_address(&mut w, self.local)?;
        write_address(&mut w, self.remote)?;
        Ok(Self::SIZE)
    }
}

/// Decode a `LIST` reply's header: (entries present, entries that exist). A reply whose
/// `count` is below `total` was cut short by the output buffer: ask again with room for
/// `total`.
///
/// # Errors
/// A malformed header.
pub fn decode_objects_header(bytes: &[u8]) -> Result<(usize, u32), AbiError> {
    read_batch_header(bytes)
}
