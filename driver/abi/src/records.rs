//! The records: a common header, requests, replies and the event record.
//!
//! Every record is little-endian with an explicit byte layout (the tables below); there is no
//! implicit padding anywhere, so nothing uninitialised can be copied to user mode. A request is
//! accepted only if the input buffer is exactly the record's size, the header says version
//! [`ABI_VERSION`] and that size, every reserved field is zero, every flag is defined and
//! every enumerated value is in range: [`Request::parse`] checks all of it once.
//!
//! Header (8 bytes): `version: u16` @0, `size: u16` @2 (the record's fixed size), `reserved:
//! u32` @4 (zero).
//!
//! Address (24 bytes): `family: u16` @0 (0 none, 2 IPv4, 23 IPv6 — Windows values), `port: u16`
//! @2 (host order), `scope_id: u32` @4 (IPv6 only, else zero), `addr: [u8; 16]` @8 (IPv4 in the
//! first 4 bytes, the rest zero).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use crate::error::AbiError;
use crate::wire::{Reader, Writer};

/// The record version this crate speaks.
pub const ABI_VERSION: u16 = 1;
/// Size of the common header.
pub const HEADER_SIZE: usize = 8;
/// Size of an address record.
pub const ADDRESS_SIZE: usize = 24;
/// `AF_INET` (Windows).
pub const AF_INET: u16 = 2;
/// `AF_INET6` (Windows value, not Linux's 10).
pub const AF_INET6: u16 = 23;
/// Most work requests one POST may add.
pub const MAX_POST_COUNT: u32 = 1024;
/// Largest buffer one posted work request may have.
pub const MAX_POST_LENGTH: u32 = 64 * 1024;

/// Check a header against the record's size.
fn read_header(r: &mut Reader<'_>, size: usize) -> Result<(), AbiError> {
    let version = r.u16()?;
    if version != ABI_VERSION {
        return Err(AbiError::UnsupportedVersion(version));
    }
    let actual = r.u16()?;
    let expected = u16::try_from(size).map_err(|_| AbiError::OutOfRange("size"))?;
    if actual != expected {
        return Err(AbiError::WrongSize { expected, actual });
    }
    r.reserved32("header.reserved")
}

fn write_header(w: &mut Writer<'_>, size: usize) -> Result<(), AbiError> {
    w.u16(ABI_VERSION)?;
    w.u16(u16::try_from(size).map_err(|_| AbiError::OutOfRange("size"))?)?;
    w.u32(0)
}

/// Read an address record; family 0 is `None`.
pub(crate) fn read_address(r: &mut Reader<'_>) -> Result<Option<SocketAddr>, AbiError> {
    let family = r.u16()?;
    let port = r.u16()?;
    let scope = r.u32()?;
    let bytes: [u8; 16] = r.bytes()?;
    match family {
        0 if port == 0 && scope == 0 && bytes == [0; 16] => Ok(None),
        0 => Err(AbiError::BadAddress("family 0 with non-zero fields")),
        AF_INET => {
            if scope != 0 || bytes[4..] != [0; 12] {
                return Err(AbiError::BadAddress("IPv4 with scope id or trailing bytes"));
            }
            let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        AF_INET6 => Ok(Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(bytes),
            port,
            0,
            scope,
        )))),
        _ => Err(AbiError::BadAddress("unknown family")),
    }
}

pub(crate) fn write_address(w: &mut Writer<'_>, addr: Option<SocketAddr>) -> Result<(), AbiError> {
    let mut bytes = [0u8; 16];
    let (family, port, scope) = match addr {
        None => (0, 0, 0),
        Some(SocketAddr::V4(a)) => {
            bytes[..4].copy_from_slice(&a.ip().octets());
            (AF_INET, a.port(), 0)
        }
        Some(SocketAddr::V6(a)) => {
            bytes.copy_from_slice(&a.ip().octets());
            (AF_INET6, a.port(), a.scope_id())
        }
    };
    w.u16(family)?;
    w.u16(port)?;
    w.u32(scope)?;
    w.bytes(&bytes)
}

fn nonzero_id(v: u64, field: &'static str) -> Result<u64, AbiError> {
    if v == 0 {
        Err(AbiError::OutOfRange(field))
    } else {
        Ok(v)
    }
}

/// A fixed-size record with the common header.
pub trait Record: Sized {
    /// The record's size in bytes, header included.
    const SIZE: usize;

    /// Decode the fields after the header.
    ///
    /// # Errors
    /// Any field that breaks the record's rules.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError>;

    /// Encode the fields after the header.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`].
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError>;

    /// Parse and validate a whole record, once.
    ///
    /// # Errors
    /// The first rule the bytes break.
    fn parse(bytes: &[u8]) -> Result<Self, AbiError> {
        if bytes.len() != Self::SIZE {
            return Err(AbiError::WrongLength {
                expected: Self::SIZE,
                actual: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        read_header(&mut r, Self::SIZE)?;
        let value = Self::decode_body(&mut r)?;
        debug_assert_eq!(r.position(), Self::SIZE, "a record decodes every byte");
        Ok(value)
    }

    /// Encode the whole record at the start of `out`; returns the bytes written.
    ///
    /// # Errors
    /// [`AbiError::OutputTooSmall`] when `out` is shorter than [`Record::SIZE`] (nothing is
    /// written then).
    fn encode(&self, out: &mut [u8]) -> Result<usize, AbiError> {
        let out = out.get_mut(..Self::SIZE).ok_or(AbiError::OutputTooSmall)?;
        let mut w = Writer::new(out);
        write_header(&mut w, Self::SIZE)?;
        self.encode_body(&mut w)?;
        Ok(Self::SIZE)
    }
}

// --- requests ---------------------------------------------------------------------------------

/// A request that is the header only.
macro_rules! header_only_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl Record for $name {
            const SIZE: usize = HEADER_SIZE;
            fn decode_body(_: &mut Reader<'_>) -> Result<Self, AbiError> {
                Ok(Self)
            }
            fn encode_body(&self, _: &mut Writer<'_>) -> Result<(), AbiError> {
                Ok(())
            }
        }
    };
}

header_only_request!(
    /// `GET_INFO` input: the header only.
    GetInfoRequest
);
header_only_request!(
    /// `LIST_ADAPTERS` input: the header only.
    ListAdaptersRequest
);
header_only_request!(
    /// `LIST_OBJECTS` input: the header only.
    ListObjectsRequest
);

/// LISTEN input (48 bytes): header, `if_index: u32` @8, `backlog: u32` @12 (0 = the driver's
/// default; at most the per-handle limit), `flags: u32` @16 (none defined: zero), `reserved:
/// u32` @20, `local: Address` @24 (required; port 0 picks an ephemeral port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenRequest {
    /// The interface whose NDK adapter listens.
    pub if_index: u32,
    /// Preallocated connect-event backlog; 0 = default.
    pub backlog: u32,
    /// Where to listen.
    pub local: SocketAddr,
}

impl Record for ListenRequest {
    const SIZE: usize = 48;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let if_index = r.u32()?;
        let backlog = r.u32()?;
        r.reserved32("flags")?;
        r.reserved32("reserved")?;
        let local = read_address(r)?.ok_or(AbiError::BadAddress("local address required"))?;
        Ok(Self {
            if_index,
            backlog,
            local,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u32(self.if_index)?;
        w.u32(self.backlog)?;
        w.u32(0)?;
        w.u32(0)?;
        write_address(w, Some(self.local))
    }
}

/// CONNECT input (72 bytes): header, `if_index: u32` @8, `flags: u32` @12 (zero),
/// `receive_depth: u32` @16 and `send_depth: u32` @20 (0 = defaults), `local: Address` @24
/// (family 0 = any address of the interface, port 0 = ephemeral), `remote: Address` @48
/// (required, same family as `local` when given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The interface whose NDK adapter connects.
    pub if_index: u32,
    /// QP receive-queue depth; 0 = default.
    pub receive_depth: u32,
    /// QP initiator-queue depth; 0 = default.
    pub send_depth: u32,
    /// Local address, if one is required.
    pub local: Option<SocketAddr>,
    /// The peer.
    pub remote: SocketAddr,
}

impl Record for ConnectRequest {
    const SIZE: usize = 72;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let if_index = r.u32()?;
        r.reserved32("flags")?;
        let receive_depth = r.u32()?;
        let send_depth = r.u32()?;
        let local = read_address(r)?;
        let remote = read_address(r)?.ok_or(AbiError::BadAddress("remote address required"))?;
        if local.is_some_and(|l| l.is_ipv4() != remote.is_ipv4()) {
            return Err(AbiError::BadAddress("local and remote families differ"));
        }
        if remote.port() == 0 {
            return Err(AbiError::BadAddress("remote port 0"));
        }
        Ok(Self {
            if_index,
            receive_depth,
            send_depth,
            local,
            remote,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u32(self.if_index)?;
        w.u32(0)?;
        w.u32(self.receive_depth)?;
        w.u32(self.send_depth)?;
        write_address(w, self.local)?;
        write_address(w, Some(self.remote))
    }
}

/// WAIT flag: do not pend; return what is queued (possibly nothing) at once.
pub const WAIT_NONBLOCKING: u32 = 0x1;

/// WAIT input (24 bytes): header, `connection_id: u64` @8 (0 = any connection of the handle),
/// `flags: u32` @16 ([`WAIT_NONBLOCKING`]), `reserved: u32` @20.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitRequest {
    /// `None`: events of any connection of the handle.
    pub connection: Option<u64>,
    /// Return at once even if nothing is queued.
    pub nonblocking: bool,
}

impl Record for WaitRequest {
    const SIZE: usize = 24;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let id = r.u64()?;
        let flags = r.u32()?;
        if flags & !WAIT_NONBLOCKING != 0 {
            return Err(AbiError::UnknownFlags {
                field: "flags",
                bits: flags & !WAIT_NONBLOCKING,
            });
        }
        r.reserved32("reserved")?;
        Ok(Self {
            connection: (id != 0).then_some(id),
            nonblocking: flags & WAIT_NONBLOCKING != 0,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.connection.unwrap_or(0))?;
        w.u32(if self.nonblocking {
            WAIT_NONBLOCKING
        } else {
            0
        })?;
        w.u32(0)
    }
}

macro_rules! id_request {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            /// The object, non-zero.
            pub $field: u64,
        }

        impl Record for $name {
            const SIZE: usize = 16;
            fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
                Ok(Self { $field: nonzero_id(r.u64()?, stringify!($field))? })
            }
            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
                w.u64(self.$field)
            }
        }
    };
}

id_request!(
    /// QUERY input (16 bytes): header, `connection_id: u64` @8.
    QueryRequest, connection_id
);
id_request!(
    /// ABORT input (16 bytes): header, `connection_id: u64` @8.
    AbortRequest, connection_id
);
id_request!(
    /// FLUSH input (16 bytes): header, `connection_id: u64` @8.
    FlushRequest, connection_id
);
id_request!(
    /// CLOSE input (16 bytes): header, `id: u64` @8 (a connection or a listener).
    CloseRequest, id
);

/// What a POST adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostKind {
    /// Receives (1).
    Receive,
    /// Sends (2), each carrying a test pattern.
    Send,
}

/// POST input (32 bytes): header, `connection_id: u64` @8, `kind: u16` @16 (1 receive, 2 send),
/// `reserved: u16` @18, `count: u32` @20 (1..=[`MAX_POST_COUNT`]), `length: u32` @24
/// (1..=[`MAX_POST_LENGTH`]), `reserved2: u32` @28.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostRequest {
    /// The connection.
    pub connection_id: u64,
    /// Receives or sends.
    pub kind: PostKind,
    /// How many work requests.
    pub count: u32,
    /// Bytes per work request.
    pub length: u32,
}

impl Record for PostRequest {
    const SIZE: usize = 32;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let connection_id = nonzero_id(r.u64()?, "connection_id")?;
        let kind = match r.u16()? {
            1 => PostKind::Receive,
            2 => PostKind::Send,
            v => {
                return Err(AbiError::BadEnum {
                    field: "kind",
                    value: u32::from(v),
                });
            }
        };
        r.reserved16("reserved")?;
        let count = r.u32()?;
        let length = r.u32()?;
        r.reserved32("reserved2")?;
        if !(1..=MAX_POST_COUNT).contains(&count) {
            return Err(AbiError::OutOfRange("count"));
        }
        if !(1..=MAX_POST_LENGTH).contains(&length) {
            return Err(AbiError::OutOfRange("length"));
        }
        Ok(Self {
            connection_id,
            kind,
            count,
            length,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.connection_id)?;
        w.u16(match self.kind {
            PostKind::Receive => 1,
            PostKind::Send => 2,
        })?;
        w.u16(0)?;
        w.u32(self.count)?;
        w.u32(self.length)?;
        w.u32(0)
    }
}

/// DISCONNECT flag: abortive — close the connection now (the reset analogue) instead of
/// `NdkDisconnect`.
pub const DISCONNECT_ABORTIVE: u32 = 0x1;

/// DISCONNECT input (24 bytes): header, `connection_id: u64` @8, `flags: u32` @16
/// ([`DISCONNECT_ABORTIVE`]), `reserved: u32` @20.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisconnectRequest {
    /// The connection.
    pub connection_id: u64,
    /// Abortive instead of graceful.
    pub abortive: bool,
}

impl Record for DisconnectRequest {
    const SIZE: usize = 24;
    fn decode_body(r: &mut Reader<'_>) -> Result<Self, AbiError> {
        let connection_id = nonzero_id(r.u64()?, "connection_id")?;
        let flags = r.u32()?;
        if flags & !DISCONNECT_ABORTIVE != 0 {
            return Err(AbiError::UnknownFlags {
                field: "flags",
                bits: flags & !DISCONNECT_ABORTIVE,
            });
        }
        r.reserved32("reserved")?;
        Ok(Self {
            connection_id,
            abortive: flags & DISCONNECT_ABORTIVE != 0,
        })
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), AbiError> {
        w.u64(self.connection_id)?;
        w.u32(if self.abortive {
            DISCONNECT_ABORTIVE
        } else {
            0
        })?;
        w.u32(0)
    }
}

/// The size of the longest request record: no operation accepts a longer input, so a driver can
/// copy any input it may accept into a buffer of this size (plus one byte, to stand for an
/// input longer than every record, which [`Request::parse`] refuses whatever its bytes).
pub const MAX_REQUEST_SIZE: usize = max_of(&[
    GetInfoRequest::SIZE,
    ListAdaptersRequest::SIZE,
    ListenRequest::SIZE,
    ConnectRequest::SIZE,
    WaitRequest::SIZE,
    QueryRequest::SIZE,
    PostRequest::SIZE,
    DisconnectRequest::SIZE,
    AbortRequest::SIZE,
    FlushRequest::SIZE,
    CloseRequest::SIZE,
    ListObjectsRequest::SIZE,
]);

const fn max_of(sizes: &[usize]) -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > max {
            max = sizes[i];
        }
        i += 1;
    }
    max
}

/// Any ndkdisc request, parsed and validated once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET_INFO`.
    GetInfo(GetInfoRequest),
    /// `LIST_ADAPTERS`.
    ListAdapters(ListAdaptersRequest),
    /// LISTEN.
    Listen(ListenRequest),
    /// CONNECT.
    Connect(ConnectRequest),
    /// WAIT.
    Wait(WaitRequest),
    /// QUERY.
    Query(QueryRequest),
    /// POST.
    Post(PostRequest),
    /// DISCONNECT.
    Disconnect(DisconnectRequest),
    /// ABORT.
    Abort(AbortRequest),
    /// FLUSH.
    Flush(FlushRequest),
    /// CLOSE.
    Close(CloseRequest),
    /// `LIST_OBJECTS`.
    ListObjects(ListObjectsRequest),
}

impl Request {
    /// Decode the input of control code `code`.
    ///
    /// # Errors
    /// [`AbiError::UnknownIoctl`] for a foreign code; otherwise the record's first broken rule.
    pub fn parse(code: u32, input: &[u8]) -> Result<Self, AbiError> {
        use crate::ioctl::Ioctl;
        let ioctl = Ioctl::from_code(code).ok_or(AbiError::UnknownIoctl(code))?;
        Ok(match ioctl {
            Ioctl::GetInfo => Self::GetInfo(GetInfoRequest::parse(input)?),
            Ioctl::ListAdapters => Self::ListAdapters(ListAdaptersRequest::parse(input)?),
            Ioctl::Listen => Self::Listen(ListenRequest::parse(input)?),
            Ioctl::Connect => Self::Connect(ConnectRequest::parse(input)?),
            Ioctl::Wait => Self::Wait(WaitRequest::parse(input)?),
            Ioctl::Query => Self::Query(QueryRequest::parse(input)?),
            Ioctl::Post => Self::Post(PostRequest::parse(input)?),
            Ioctl::Disconnect => Self::Disconnect(DisconnectRequest::parse(input)?),
            Ioctl::Abort => Self::Abort(AbortRequest::parse(input)?),
            Ioctl::Flush => Self::Flush(FlushRequest::parse(input)?),
            Ioctl::Close => Self::Close(CloseRequest::parse(input)?),
            Ioctl::ListObjects => Self::ListObjects(ListObjectsRequest::parse(input)?),
        })
    }

    /// The operation.
    pub fn ioctl(&self) -> crate::ioctl::Ioctl {
        use crate::ioctl::Ioctl;
        match self {
            Self::GetInfo(_) => Ioctl::GetInfo,
            Self::ListAdapters(_) => Ioctl::ListAdapters,
            Self::Listen(_) => Ioctl::Listen,
            Self::Connect(_) => Ioctl::Connect,
            Self::Wait(_) => Ioctl::Wait,
            Self::Query(_) => Ioctl::Query,
            Self::Post(_) => Ioctl::Post,
            Self::Disconnect(_) => Ioctl::Disconnect,
            Self::Abort(_) => Ioctl::Abort,
            Self::Flush(_) => Ioctl::Flush,
            Self::Close(_) => Ioctl::Close,
            Self::ListObjects(_) => Ioctl::ListObjects,
        }
    }
}
