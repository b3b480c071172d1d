//! Precise decode errors, and the one table that maps them to NTSTATUS.

use core::fmt;

use ntstatus::NtStatus;

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
    pub const fn ntstatus(self) -> NtStatus {
        match self {
            Self::Truncated
            | Self::WrongLength { .. }
            | Self::WrongSize { .. }
            | Self::ReservedNotZero(_)
            | Self::UnknownFlags { .. }
            | Self::BadEnum { .. }
            | Self::BadAddress(_)
            | Self::OutOfRange(_) => NtStatus::INVALID_PARAMETER,
            Self::UnsupportedVersion(_) => NtStatus::REVISION_MISMATCH,
            Self::OutputTooSmall => NtStatus::BUFFER_TOO_SMALL,
            Self::UnknownIoctl(_) => NtStatus::INVALID_DEVICE_REQUEST,
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
