//! NTSTATUS values with their names and what they mean to a user of ndkdisc.

use core::fmt;

/// An NTSTATUS as the driver (or the I/O manager) completed a request with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NtStatus(pub i32);

const fn s(v: u32) -> NtStatus {
    NtStatus(v.cast_signed())
}

impl NtStatus {
    /// `STATUS_SUCCESS`.
    pub const SUCCESS: Self = s(0);
    /// `STATUS_PENDING`.
    pub const PENDING: Self = s(0x103);
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: Self = s(0xC000_000D);
    /// `STATUS_NO_SUCH_DEVICE`.
    pub const NO_SUCH_DEVICE: Self = s(0xC000_000E);
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub const INVALID_DEVICE_REQUEST: Self = s(0xC000_0010);
    /// `STATUS_ACCESS_DENIED`.
    pub const ACCESS_DENIED: Self = s(0xC000_0022);
    /// `STATUS_BUFFER_TOO_SMALL`.
    pub const BUFFER_TOO_SMALL: Self = s(0xC000_0023);
    /// `STATUS_OBJECT_NAME_NOT_FOUND`.
    pub const OBJECT_NAME_NOT_FOUND: Self = s(0xC000_0034);
    /// `STATUS_QUOTA_EXCEEDED`.
    pub const QUOTA_EXCEEDED: Self = s(0xC000_0044);
    /// `STATUS_REVISION_MISMATCH`.
    pub const REVISION_MISMATCH: Self = s(0xC000_0059);
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: Self = s(0xC000_009A);
    /// `STATUS_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Self = s(0xC000_00BB);
    /// `STATUS_CANCELLED`.
    pub const CANCELLED: Self = s(0xC000_0120);
    /// `STATUS_INVALID_ADDRESS`.
    pub const INVALID_ADDRESS: Self = s(0xC000_0141);
    /// `STATUS_INVALID_DEVICE_STATE`.
    pub const INVALID_DEVICE_STATE: Self = s(0xC000_0184);
    /// `STATUS_ADDRESS_ALREADY_EXISTS`.
    pub const ADDRESS_ALREADY_EXISTS: Self = s(0xC000_020A);
    /// `STATUS_CONNECTION_RESET`.
    pub const CONNECTION_RESET: Self = s(0xC000_020D);
    /// `STATUS_NOT_FOUND`.
    pub const NOT_FOUND: Self = s(0xC000_0225);
    /// `STATUS_CONNECTION_REFUSED`.
    pub const CONNECTION_REFUSED: Self = s(0xC000_0236);
    /// `STATUS_NETWORK_UNREACHABLE`.
    pub const NETWORK_UNREACHABLE: Self = s(0xC000_023C);
    /// `STATUS_HOST_UNREACHABLE`.
    pub const HOST_UNREACHABLE: Self = s(0xC000_023D);
    /// `STATUS_CONNECTION_ABORTED`.
    pub const CONNECTION_ABORTED: Self = s(0xC000_0241);
    /// `STATUS_SHARING_VIOLATION`.
    pub const SHARING_VIOLATION: Self = s(0xC000_0043);
    /// `STATUS_DEVICE_REMOVED`.
    pub const DEVICE_REMOVED: Self = s(0xC000_02B6);
    /// `STATUS_IO_TIMEOUT`.
    pub const IO_TIMEOUT: Self = s(0xC000_00B5);
    /// `STATUS_DATA_OVERRUN`.
    pub const DATA_OVERRUN: Self = s(0xC000_003C);
    /// `STATUS_NDIS_BAD_VERSION`.
    pub const NDIS_BAD_VERSION: Self = s(0xC023_0004);

    const TABLE: &'static [(Self, &'static str, &'static str)] = &[
        (Self::SUCCESS, "STATUS_SUCCESS", "success"),
        (
            Self::PENDING,
            "STATUS_PENDING",
            "the request is still in progress",
        ),
        (
            Self::INVALID_PARAMETER,
            "STATUS_INVALID_PARAMETER",
            "the driver rejected the request record (size, version, reserved field, flag or range)",
        ),
        (
            Self::NO_SUCH_DEVICE,
            "STATUS_NO_SUCH_DEVICE",
            "the ndkdisc device does not exist: the driver is not installed",
        ),
        (
            Self::INVALID_DEVICE_REQUEST,
            "STATUS_INVALID_DEVICE_REQUEST",
            "not an ndkdisc control code (a client and driver of different versions?)",
        ),
        (
            Self::ACCESS_DENIED,
            "STATUS_ACCESS_DENIED",
            "access denied: the device admits only SYSTEM and Administrators, and changes need a handle opened for writing",
        ),
        (
            Self::BUFFER_TOO_SMALL,
            "STATUS_BUFFER_TOO_SMALL",
            "the output buffer is too small for the reply",
        ),
        (
            Self::OBJECT_NAME_NOT_FOUND,
            "STATUS_OBJECT_NAME_NOT_FOUND",
            "the ndkdisc device does not exist: the driver is not installed",
        ),
        (
            Self::QUOTA_EXCEEDED,
            "STATUS_QUOTA_EXCEEDED",
            "a per-handle limit (connections, listeners, pended waits, queue depth or backlog) was reached",
        ),
        (
            Self::REVISION_MISMATCH,
            "STATUS_REVISION_MISMATCH",
            "the driver speaks another ABI version than this client",
        ),
        (
            Self::INSUFFICIENT_RESOURCES,
            "STATUS_INSUFFICIENT_RESOURCES",
            "the driver or the NDK provider ran out of resources",
        ),
        (
            Self::NOT_SUPPORTED,
            "STATUS_NOT_SUPPORTED",
            "the operation is not supported",
        ),
        (
            Self::CANCELLED,
            "STATUS_CANCELLED",
            "the request was cancelled (CancelIoEx, handle close or ABORT); flushed work requests complete with it too",
        ),
        (
            Self::INVALID_ADDRESS,
            "STATUS_INVALID_ADDRESS",
            "the address is not usable on that interface",
        ),
        (
            Self::INVALID_DEVICE_STATE,
            "STATUS_INVALID_DEVICE_STATE",
            "the connection is in a state where this operation is invalid",
        ),
        (
            Self::ADDRESS_ALREADY_EXISTS,
            "STATUS_ADDRESS_ALREADY_EXISTS",
            "the address is already in use",
        ),
        (
            Self::CONNECTION_RESET,
            "STATUS_CONNECTION_RESET",
            "the peer reset the connection",
        ),
        (
            Self::NOT_FOUND,
            "STATUS_NOT_FOUND",
            "no such id on this handle (or no such interface)",
        ),
        (
            Self::CONNECTION_REFUSED,
            "STATUS_CONNECTION_REFUSED",
            "nobody listens at the remote address",
        ),
        (
            Self::NETWORK_UNREACHABLE,
            "STATUS_NETWORK_UNREACHABLE",
            "the network is unreachable",
        ),
        (
            Self::HOST_UNREACHABLE,
            "STATUS_HOST_UNREACHABLE",
            "the remote host is unreachable",
        ),
        (
            Self::CONNECTION_ABORTED,
            "STATUS_CONNECTION_ABORTED",
            "the connection was aborted (reset or link loss)",
        ),
        (
            Self::SHARING_VIOLATION,
            "STATUS_SHARING_VIOLATION",
            "the address is already in use",
        ),
        (
            Self::DEVICE_REMOVED,
            "STATUS_DEVICE_REMOVED",
            "the NDK adapter was removed",
        ),
        (
            Self::IO_TIMEOUT,
            "STATUS_IO_TIMEOUT",
            "the operation timed out",
        ),
        (
            Self::DATA_OVERRUN,
            "STATUS_DATA_OVERRUN",
            "a receive buffer was too small for the message",
        ),
        (
            Self::NDIS_BAD_VERSION,
            "STATUS_NDIS_BAD_VERSION",
            "the adapter does not speak a usable NDKPI version",
        ),
    ];

    /// The symbolic name (`STATUS_NOT_FOUND`), if ndkdisc or NDK uses the value.
    pub fn name(self) -> Option<&'static str> {
        Self::TABLE.iter().find(|e| e.0 == self).map(|e| e.1)
    }

    /// What the status means here.
    pub fn meaning(self) -> &'static str {
        match Self::TABLE.iter().find(|e| e.0 == self) {
            Some(e) => e.2,
            None if self.is_success() => "a success or informational status",
            None => "an error status ndkdisc does not document",
        }
    }

    /// Whether the status is a success or informational value (`NT_SUCCESS`).
    pub fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// The value as the unsigned hex Windows prints (`0xC0000225`).
    pub fn code(self) -> u32 {
        self.0.cast_unsigned()
    }
}

impl fmt::Display for NtStatus {
    /// `STATUS_NOT_FOUND (0xC0000225)`, or just the hex value for an unknown status.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({:#010X})", self.code()),
            None => write!(f, "NTSTATUS {:#010X}", self.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_agree_with_the_abi() {
        use ndkdisc_abi::status as abi;
        for (v, name) in [
            (abi::NOT_FOUND, "STATUS_NOT_FOUND"),
            (abi::CANCELLED, "STATUS_CANCELLED"),
            (abi::ACCESS_DENIED, "STATUS_ACCESS_DENIED"),
            (abi::INVALID_DEVICE_STATE, "STATUS_INVALID_DEVICE_STATE"),
            (abi::QUOTA_EXCEEDED, "STATUS_QUOTA_EXCEEDED"),
            (abi::REVISION_MISMATCH, "STATUS_REVISION_MISMATCH"),
        ] {
            assert_eq!(NtStatus(v).name(), Some(name));
        }
        assert_eq!(
            NtStatus::NOT_FOUND.to_string(),
            "STATUS_NOT_FOUND (0xC0000225)"
        );
        assert_eq!(NtStatus(0x1234_5678).name(), None);
        assert_eq!(NtStatus(-1).to_string(), "NTSTATUS 0xFFFFFFFF");
    }
}
