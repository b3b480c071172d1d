//! The engine's trace as ETW `TraceLogging` events: the bytes the driver hands to
//! `EtwWriteTransfer` for each [`Trace`], encoded here (host code, tested on any machine) so
//! the KMDF shell only points ETW at them.
//!
//! The format is `TraceLogging`'s (`TraceLoggingProvider.h`), which ETW consumers decode
//! without a manifest (WPA, `tracerpt`, `tracefmt`, `PerfView`). The driver registers the
//! provider, then gives it its traits ([`PROVIDER_METADATA`], with `EtwSetInformation(...,
//! EventProviderSetTraits, ...)`): without them ETW ignores the descriptor types below. Each
//! event is written with
//! three data descriptors: the provider metadata ([`PROVIDER_METADATA`], descriptor type 2),
//! the event metadata ([`EtwEvent::metadata`], type 1) and the payload ([`EtwEvent::payload`],
//! type 0), with an event descriptor of channel [`CHANNEL_TRACELOGGING`], the event's level and
//! keyword, and id, version, opcode and task zero.
//!
//! - Provider metadata: `u16` total size (little-endian, itself included), the name, a NUL.
//! - Event metadata: `u16` total size, a tag byte (0: none), the event name and a NUL, then per
//!   field its name, a NUL and its input type byte; an input type with bit 7 set is followed by
//!   an output type byte (here: `NTSTATUS` formatting of a 32-bit hex integer).
//! - Payload: the fields' values in order, little-endian; strings NUL-terminated.
//!
//! The provider is named [`PROVIDER_NAME`]; its GUID ([`PROVIDER_GUID`]) is the one `ETW`
//! derives from that name (`EventSource`'s algorithm), so tools may enable it by name or GUID.

use core::fmt::Write as _;

use ndkdisc_abi::NtStatus;

use crate::ports::{NdkCallback, Trace};

/// The ETW provider's name ([`ndkdisc_abi::device::ETW_PROVIDER_NAME`]).
pub const PROVIDER_NAME: &str = ndkdisc_abi::device::ETW_PROVIDER_NAME;

/// The provider's GUID ([`ndkdisc_abi::device::ETW_PROVIDER_GUID`]): derived from
/// [`PROVIDER_NAME`] as `TraceLogging` and `EventSource` do (SHA-1 over a fixed namespace and
/// the upper-cased name in big-endian UTF-16, first 16 bytes, version nibble 5).
pub const PROVIDER_GUID: ndkdisc_abi::device::Guid = ndkdisc_abi::device::ETW_PROVIDER_GUID;

/// The provider metadata every event carries: size 10, "`NdkDisc`", NUL.
pub const PROVIDER_METADATA: &[u8] = b"\x0a\x00NdkDisc\x00";

/// The event channel `TraceLogging` events are written on.
pub const CHANNEL_TRACELOGGING: u8 = 11;

/// `TRACE_LEVEL_WARNING`: IOCTLs refused.
pub const LEVEL_WARNING: u8 = 3;
/// `TRACE_LEVEL_INFORMATION`: everything else.
pub const LEVEL_INFORMATION: u8 = 4;

/// Keywords, to enable part of the trace.
pub mod keyword {
    /// Connections created and released.
    pub const LIFECYCLE: u64 = 0x1;
    /// NDK callbacks.
    pub const NDK_CALLBACK: u64 = 0x2;
    /// Terminal events.
    pub const TERMINAL: u64 = 0x4;
    /// IOCTLs refused.
    pub const IOCTL: u64 = 0x8;
}

/// `TraceLogging` input types used here.
mod intype {
    pub const ANSISTRING: u8 = 2;
    pub const UINT32: u8 = 8;
    pub const UINT64: u8 = 10;
    pub const BOOL32: u8 = 13;
    pub const HEXINT32: u8 = 20;
    /// An output type byte follows.
    pub const CHAIN: u8 = 0x80;
}

/// `TraceLogging` output type: format as an NTSTATUS.
const OUT_NTSTATUS: u8 = 14;

/// Room for an event's metadata and payload; every [`Trace`] fits (tested).
const METADATA_ROOM: usize = 192;
const PAYLOAD_ROOM: usize = 96;

/// One trace record, encoded.
#[derive(Clone, Debug)]
pub struct EtwEvent {
    /// Its level.
    pub level: u8,
    /// Its keyword.
    pub keyword: u64,
    metadata: [u8; METADATA_ROOM],
    metadata_len: usize,
    payload: [u8; PAYLOAD_ROOM],
    payload_len: usize,
    complete: bool,
}

impl EtwEvent {
    /// The event metadata (data descriptor type 1).
    #[must_use]
    pub fn metadata(&self) -> &[u8] {
        self.metadata.get(..self.metadata_len).unwrap_or_default()
    }

    /// The payload (data descriptor type 0).
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        self.payload.get(..self.payload_len).unwrap_or_default()
    }

    /// Everything fitted (always, for the traces the engine makes: tested); an incomplete
    /// event is not written.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

/// Bytes appended to a fixed buffer; what does not fit is dropped and remembered.
struct Buf<'a> {
    bytes: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Buf<'a> {
    fn new(bytes: &'a mut [u8]) -> Self {
        Self {
            bytes,
            len: 0,
            overflow: false,
        }
    }

    fn put(&mut self, data: &[u8]) {
        let end = self.len.saturating_add(data.len());
        match self.bytes.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.len = end;
            }
            None => self.overflow = true,
        }
    }

    /// `s` and a NUL.
    fn cstr(&mut self, s: &str) {
        self.put(s.as_bytes());
        self.put(&[0]);
    }
}

impl core::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// An event being encoded: its metadata and payload side by side.
struct Encoder<'a> {
    meta: Buf<'a>,
    data: Buf<'a>,
}

impl Encoder<'_> {
    fn u32(&mut self, name: &str, v: u32) {
        self.meta.cstr(name);
        self.meta.put(&[intype::UINT32]);
        self.data.put(&v.to_le_bytes());
    }

    fn u64(&mut self, name: &str, v: u64) {
        self.meta.cstr(name);
        self.meta.put(&[intype::UINT64]);
        self.data.put(&v.to_le_bytes());
    }

    fn bool(&mut self, name: &str, v: bool) {
        self.meta.cstr(name);
        self.meta.put(&[intype::BOOL32]);
        self.data.put(&u32::from(v).to_le_bytes());
    }

    fn status(&mut self, name: &str, v: NtStatus) {
        self.meta.cstr(name);
        self.meta
            .put(&[intype::HEXINT32 | intype::CHAIN, OUT_NTSTATUS]);
        self.data.put(&v.code().to_le_bytes());
    }

    fn hex32(&mut self, name: &str, v: u32) {
        self.meta.cstr(name);
        self.meta.put(&[intype::HEXINT32]);
        self.data.put(&v.to_le_bytes());
    }

    /// A string field whose value is written by `value` (`Debug` of a value, or a literal).
    fn text(&mut self, name: &str, value: impl FnOnce(&mut Buf<'_>)) {
        self.meta.cstr(name);
        self.meta.put(&[intype::ANSISTRING]);
        value(&mut self.data);
        self.data.put(&[0]);
    }
}

/// The name of `callback`, and of its operation (empty when it has none).
fn callback_names(callback: NdkCallback) -> (&'static str, Option<ndkpi::Op>) {
    match callback {
        NdkCallback::Completion(op) => ("Completion", Some(op)),
        NdkCallback::Closed(op) => ("Closed", Some(op)),
        NdkCallback::Disconnect => ("Disconnect", None),
        NdkCallback::CqNotification => ("CqNotification", None),
        NdkCallback::ConnectionRequest => ("ConnectionRequest", None),
    }
}

/// The level and keyword of `trace`'s event: what the driver asks ETW about (is any session
/// enabled for them?) before encoding it.
#[must_use]
pub const fn level_and_keyword(trace: &Trace) -> (u8, u64) {
    match trace {
        Trace::ConnectionCreated { .. } | Trace::ConnectionClosed { .. } => {
            (LEVEL_INFORMATION, keyword::LIFECYCLE)
        }
        Trace::NdkCallback { .. } => (LEVEL_INFORMATION, keyword::NDK_CALLBACK),
        Trace::Terminal { .. } => (LEVEL_INFORMATION, keyword::TERMINAL),
        Trace::IoctlFailed { .. } => (LEVEL_WARNING, keyword::IOCTL),
    }
}

/// Encode `trace`. Never allocates.
#[must_use]
pub fn event(trace: &Trace) -> EtwEvent {
    let mut metadata = [0u8; METADATA_ROOM];
    let mut payload = [0u8; PAYLOAD_ROOM];
    let (level, keyword) = level_and_keyword(trace);
    let (metadata_len, payload_len, complete) = {
        let mut e = Encoder {
            meta: Buf::new(&mut metadata),
            data: Buf::new(&mut payload),
        };
        // The size, filled in below; no tags.
        e.meta.put(&[0, 0, 0]);
        match *trace {
            Trace::ConnectionCreated {
                id,
                if_index,
                active,
            } => {
                e.meta.cstr("ConnectionCreated");
                e.u64("id", id);
                e.u32("if_index", if_index);
                e.bool("active", active);
            }
            Trace::NdkCallback {
                id,
                callback,
                status,
                reason,
            } => {
                let (name, op) = callback_names(callback);
                e.meta.cstr("NdkCallback");
                e.u64("id", id);
                e.text("callback", |b| b.put(name.as_bytes()));
                e.text("operation", |b| {
                    if let Some(op) = op {
                        let _ = write!(b, "{op:?}");
                    }
                });
                e.status("status", status);
                e.bool("has_reason", reason.is_some());
                e.u32("reason", reason.unwrap_or(0));
            }
            Trace::Terminal {
                id,
                kind,
                cause,
                status,
            } => {
                e.meta.cstr("TerminalEvent");
                e.u64("id", id);
                e.text("kind", |b| {
                    let _ = write!(b, "{kind:?}");
                });
                e.text("cause", |b| {
                    if let Some(cause) = cause {
                        let _ = write!(b, "{cause:?}");
                    }
                });
                e.status("status", status);
            }
            Trace::ConnectionClosed { id } => {
                e.meta.cstr("ConnectionClosed");
                e.u64("id", id);
            }
            Trace::IoctlFailed { code, status } => {
                e.meta.cstr("IoctlFailed");
                e.hex32("code", code);
                e.status("status", status);
            }
        }
        let complete = !e.meta.overflow && !e.data.overflow;
        (e.meta.len, e.data.len, complete)
    };
    let size = u16::try_from(metadata_len)
        .unwrap_or(u16::MAX)
        .to_le_bytes();
    metadata[..2].copy_from_slice(&size);
    EtwEvent {
        level,
        keyword,
        metadata,
        metadata_len,
        payload,
        payload_len,
        complete,
    }
}
