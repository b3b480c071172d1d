//! Precise decode errors, and the one table that maps them to NTSTATUS.

use core::fmt;

/// The NTSTATUS values the ABI documents (same values as `ntstatus.h`).
pub mod status {
    /// `STATUS_SUCCESS`.
    pub const SUCCESS: i32 = 0;
    /// `STATUS_PENDING`: the request was queued and completes later.
    pub const PENDING: i32 = 0x103;
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: i32 = 0xC000_000D_u32.cast_signed();
    /// `STATUS_INVALID_DEVICE_REQUEST`: not an ndkdisc control code.
    pub const INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32.cast_signed();
    /// `STATUS_ACCESS_DENIED`.
    pub const ACCESS_DENIED: i32 = 0xC000_0022_u32.cast_signed();
    /// `STATUS_BUFFER_TOO_SMALL`: the output buffer cannot hold the reply.
    pub const BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32.cast_signed();
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: i32 = 0xC000_009A_u32.cast_signed();
    /// `STATUS_CANCELLED`: a pended request was cancelled (`CancelIoEx`, handle close, ABORT).
    pub const CANCELLED: i32 = 0xC000_0120_u32.cast_signed();
    /// `STATUS_NOT_SUPPORTED`: the operation is not implemented by this driver version.
    pub const NOT_SUPPORTED: i32 = 0xC000_00BB_u32.cast_signed();
    /// `STATUS_INVALID_DEVICE_STATE`: the object is in a state where the operation is invalid.
    pub const INVALID_DEVICE_STATE: i32 = 0xC000_0184_u32.cast_signed();
    /// `STATUS_NOT_FOUND`: no such id on this handle.
    pub const NOT_FOUND: i32 = 0xC000_0225_u32.cast_signed();
    /// `STATUS_QUOTA_EXCEEDED`: a per-handle limit was reached.
    pub const QUOTA_EXCEEDED: i32 = 0xC000_0044_u32.cast_signed();
    /// `STATUS_REVISION_MISMATCH`: the record's version is not one this driver speaks.
    pub const REVISION_MISMATCH: i32 = 0xC000_0059_u32.cast_signed();
    /// `STATUS_CONNECTION_DISCONNECTED`: the peer ended the connection before it was
    /// established (the NDK disconnect callback fired while connecting).
    pub const CONNECTION_DISCONNECTED: i32 = 0xC000_020C_u32.cast_signed();
    /// `STATUS_DEVICE_REMOVED`: the connection's adapter went away (cause `AdapterRemoved`).
    pub const DEVICE_REMOVED: i32 = 0xC000_02B6_u32.cast_signed();
}

/// Why a record could not be decoded or encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// The input is shorter than its fields.
    Truncated,
    /// The input buffer's length is not the record's size.
    WrongLength {
        /// The size the record has.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The header's `size` field does not match the record.
    WrongSize {
        /// The size the record has.
        expected: u16,
        /// The header's value.
        actual: u16,
    },
    /// The header's `version` is not [`crate::ABI_VERSION`].
    UnsupportedVersion(u16),
    /// A reserved field is not zero.
    ReservedNotZero(&'static str),
    /// A flags field has bits this version does not define.
    UnknownFlags {
        /// The field.
        field: &'static str,
        /// The undefined bits.
        bits: u32,
    },
    /// An enumerated field holds a value outside its range.
    BadEnum {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
    },
    /// An address record is malformed (family, padding, scope).
    BadAddress(&'static str),
    /// A field's value is out of its documented range.
    OutOfRange(&'static str),
    /// The output buffer cannot hold the reply.
    OutputTooSmall,
    /// The control code is not one of ndkdisc's.
    UnknownIoctl(u32),
}

impl AbiError {
    /// The NTSTATUS a request failing this way completes with.
    pub fn ntstatus(self) -> i32 {
        match self {
            Self::Truncated
            | Self::WrongLength { .. }
            | Self::WrongSize { .. }
            | Self::ReservedNotZero(_)
            | Self::UnknownFlags { .. }
            | Self::BadEnum { .. }
            | Self::BadAddress(_)
            | Self::OutOfRange(_) => status::INVALID_PARAMETER,
            Self::UnsupportedVersion(_) => status::REVISION_MISMATCH,
            Self::OutputTooSmall => status::BUFFER_TOO_SMALL,
            Self::UnknownIoctl(_) => status::INVALID_DEVICE_REQUEST,
        }
    }
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("record truncated"),
            Self::WrongLength { expected, actual } => {
                write!(f, "input is {actual} bytes, the record is {expected}")
            }
            Self::WrongSize { expected, actual } => {
                write!(f, "header size field is {actual}, the record is {expected}")
            }
            Self::UnsupportedVersion(v) => write!(f, "record version {v} is not supported"),
            Self::ReservedNotZero(field) => write!(f, "reserved field `{field}` is not zero"),
            Self::UnknownFlags { field, bits } => {
                write!(f, "`{field}` has undefined bits {bits:#x}")
            }
            Self::BadEnum { field, value } => write!(f, "`{field}` has no value {value}"),
            Self::BadAddress(why) => write!(f, "bad address: {why}"),
            Self::OutOfRange(field) => write!(f, "`{field}` is out of range"),
            Self::OutputTooSmall => f.write_str("output buffer too small for the reply"),
            Self::UnknownIoctl(code) => write!(f, "control code {code:#x} is not ndkdisc's"),
        }
    }
}
