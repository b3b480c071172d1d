//! # ntstatus — the one NTSTATUS type of ndkdisc
//!
//! Every status that crosses a boundary in ndkdisc is an [`NtStatus`]: what an NDK provider
//! returns or completes a request with (the bindings in `ndkpi-sys` use it as their `NTSTATUS`),
//! what the driver completes an IOCTL with, what an event or a QUERY reply carries
//! (`ndkdisc-abi`), and what the user-mode client and `ndkctl` print. The values are defined
//! here and nowhere else, each with its `ntstatus.h` name and where NDK or ndkdisc uses it.
//!
//! `NtStatus` is `#[repr(transparent)]` over `i32`, so it is the C `NTSTATUS` in function
//! pointer signatures and `#[repr(C)]` structs. `no_std`, no `unsafe`, no dependencies.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// An NTSTATUS: success and informational values are `>= 0` (`STATUS_PENDING` among them),
/// warnings have severity 2 and errors severity 3 (the top two bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct NtStatus(pub i32);

impl NtStatus {
    /// The status whose 32-bit pattern is `code` (as Windows prints it: `0xC0000225`).
    pub const fn from_code(code: u32) -> Self {
        Self(code.cast_signed())
    }

    /// The 32-bit pattern as Windows prints it (`0xC0000225`).
    pub const fn code(self) -> u32 {
        self.0.cast_unsigned()
    }

    /// `NT_SUCCESS`: a success or informational value, which includes `STATUS_PENDING`.
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// `NT_ERROR`: severity 3.
    pub const fn is_error(self) -> bool {
        self.code() >> 30 == 3
    }

    /// The `ntstatus.h` name (`STATUS_NOT_FOUND`), if the value is one defined here.
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(s, _)| *s == self).map(|&(_, n)| n)
    }
}

impl From<i32> for NtStatus {
    fn from(raw: i32) -> Self {
        Self(raw)
    }
}

impl From<NtStatus> for i32 {
    fn from(s: NtStatus) -> Self {
        s.0
    }
}

impl fmt::Display for NtStatus {
    /// `STATUS_NOT_FOUND (0xC0000225)`, or `NTSTATUS 0x12345678` for a value not defined here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({:#010X})", self.code()),
            None => write!(f, "NTSTATUS {:#010X}", self.code()),
        }
    }
}

impl fmt::LowerHex for NtStatus {
    /// The 32-bit pattern (`{:#x}` prints `0xc0000225`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.code(), f)
    }
}

impl fmt::UpperHex for NtStatus {
    /// The 32-bit pattern (`{:#010X}` prints `0xC0000225`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(&self.code(), f)
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Defines each status once: the constant, its doc (where it is used) and its name.
macro_rules! statuses {
    ($($(#[doc = $doc:literal])+ $name:ident = $code:literal;)+) => {
        impl NtStatus {
            $($(#[doc = $doc])+ pub const $name: Self = Self::from_code($code);)+
        }

        /// Every value defined here with its `ntstatus.h` name.
        const NAMES: &[(NtStatus, &str)] = &[
            $((NtStatus::$name, concat!("STATUS_", stringify!($name))),)+
            (NtStatus::NDIS_STATUS_BAD_VERSION, "NDIS_STATUS_BAD_VERSION"),
            (NtStatus::NDIS_STATUS_ADAPTER_NOT_READY, "NDIS_STATUS_ADAPTER_NOT_READY"),
        ];
    };
}

statuses! {
    /// `STATUS_SUCCESS`: everywhere.
    SUCCESS = 0x0000_0000;
    /// `STATUS_TIMEOUT`: a wait timed out (a success code; not NDK).
    TIMEOUT = 0x0000_0102;
    /// `STATUS_PENDING`: an asynchronous operation started and completes later; also a
    /// pended IOCTL.
    PENDING = 0x0000_0103;
    /// `STATUS_BUFFER_OVERFLOW`: `NdkGetCqResults`' CQ status on an overrun; `WskControlClient`
    /// output too small.
    BUFFER_OVERFLOW = 0x8000_0005;
    /// `STATUS_UNSUCCESSFUL`: generic failure.
    UNSUCCESSFUL = 0xC000_0001;
    /// `STATUS_NOT_IMPLEMENTED`: generic.
    NOT_IMPLEMENTED = 0xC000_0002;
    /// `STATUS_ACCESS_VIOLATION`: NDK Bind and `FastRegister` access errors.
    ACCESS_VIOLATION = 0xC000_0005;
    /// `STATUS_INVALID_HANDLE`: generic.
    INVALID_HANDLE = 0xC000_0008;
    /// `STATUS_INVALID_PARAMETER`: NDK creates, `ModifySrq`, `ResizeCq`, `RegisterMr`,
    /// `BuildLam`; an IOCTL record the driver rejects (size, version, reserved field, flag,
    /// range).
    INVALID_PARAMETER = 0xC000_000D;
    /// `STATUS_NO_SUCH_DEVICE`: opening a device that does not exist.
    NO_SUCH_DEVICE = 0xC000_000E;
    /// `STATUS_INVALID_DEVICE_REQUEST`: not one of the driver's control codes.
    INVALID_DEVICE_REQUEST = 0xC000_0010;
    /// `STATUS_NO_MEMORY`: generic.
    NO_MEMORY = 0xC000_0017;
    /// `STATUS_ACCESS_DENIED`: generic; a handle without the access a control code needs.
    ACCESS_DENIED = 0xC000_0022;
    /// `STATUS_BUFFER_TOO_SMALL`: `QueryAdapterInfo`, `GetConnectionData`, the address
    /// getters, `BuildLam`; an IOCTL output buffer smaller than its reply.
    BUFFER_TOO_SMALL = 0xC000_0023;
    /// `STATUS_INVALID_PARAMETER_MIX`: `ControlCqInterruptModeration`.
    INVALID_PARAMETER_MIX = 0xC000_0030;
    /// `STATUS_OBJECT_NAME_NOT_FOUND`: opening a device name that does not exist.
    OBJECT_NAME_NOT_FOUND = 0xC000_0034;
    /// `STATUS_DATA_OVERRUN`: not named by the NDK pages; a receive buffer too small for the
    /// message (user-mode `ND_DATA_OVERRUN`).
    DATA_OVERRUN = 0xC000_003C;
    /// `STATUS_DATA_ERROR`: generic.
    DATA_ERROR = 0xC000_003E;
    /// `STATUS_SHARING_VIOLATION`: `NdkListen`, `NdkConnect`, `NdkCreateSharedEndpoint`
    /// (address in use).
    SHARING_VIOLATION = 0xC000_0043;
    /// `STATUS_QUOTA_EXCEEDED`: a limit of the driver was reached: its open handles (a
    /// `CreateFile` refused), or a per-handle limit.
    QUOTA_EXCEEDED = 0xC000_0044;
    /// `STATUS_REVISION_MISMATCH`: an IOCTL record's version is not one the driver speaks.
    REVISION_MISMATCH = 0xC000_0059;
    /// `STATUS_INSUFFICIENT_RESOURCES`: most NDK creates and requests (the same value as
    /// `NDIS_STATUS_RESOURCES`).
    INSUFFICIENT_RESOURCES = 0xC000_009A;
    /// `STATUS_DEVICE_NOT_READY`: `WskCaptureProviderNPI`.
    DEVICE_NOT_READY = 0xC000_00A3;
    /// `STATUS_IO_TIMEOUT`: `NdkConnect`, `NdkCompleteConnect`, `NdkAccept`, `NdkDisconnect`
    /// (the peer never answered); a send whose retries ran out.
    IO_TIMEOUT = 0xC000_00B5;
    /// `STATUS_NOT_SUPPORTED`: `NdkQueryExtension`, `ControlCqInterruptModeration`.
    NOT_SUPPORTED = 0xC000_00BB;
    /// `STATUS_ADAPTER_HARDWARE_ERROR`: generic.
    ADAPTER_HARDWARE_ERROR = 0xC000_00C2;
    /// `STATUS_INTERNAL_ERROR`: `NdkGetCqResults`' CQ status when the CQ is fatally broken.
    INTERNAL_ERROR = 0xC000_00E5;
    /// `STATUS_CANCELLED`: flushed work requests; a cancelled IOCTL.
    CANCELLED = 0xC000_0120;
    /// `STATUS_LOCAL_DISCONNECT`: not used by NDK.
    LOCAL_DISCONNECT = 0xC000_013B;
    /// `STATUS_REMOTE_DISCONNECT`: not used by NDK.
    REMOTE_DISCONNECT = 0xC000_013C;
    /// `STATUS_REMOTE_RESOURCES`: a read beyond the remote region.
    REMOTE_RESOURCES = 0xC000_013D;
    /// `STATUS_LINK_FAILED`: not used by NDK.
    LINK_FAILED = 0xC000_013E;
    /// `STATUS_LINK_TIMEOUT`: not used by NDK.
    LINK_TIMEOUT = 0xC000_013F;
    /// `STATUS_INVALID_CONNECTION`: not used by NDK (not `CONNECTION_INVALID`).
    INVALID_CONNECTION = 0xC000_0140;
    /// `STATUS_INVALID_ADDRESS`: `NdkListen`, `NdkConnect`, `NdkCreateSharedEndpoint`.
    INVALID_ADDRESS = 0xC000_0141;
    /// `STATUS_INVALID_DEVICE_STATE`: an object in a state where the operation is invalid.
    INVALID_DEVICE_STATE = 0xC000_0184;
    /// `STATUS_INVALID_BUFFER_SIZE`: generic.
    INVALID_BUFFER_SIZE = 0xC000_0206;
    /// `STATUS_TOO_MANY_ADDRESSES`: `NdkListen`, `NdkConnect`, `NdkCreateSharedEndpoint`.
    TOO_MANY_ADDRESSES = 0xC000_0209;
    /// `STATUS_ADDRESS_ALREADY_EXISTS`: `NdkConnect`.
    ADDRESS_ALREADY_EXISTS = 0xC000_020A;
    /// `STATUS_CONNECTION_DISCONNECTED`: not named by the NDK pages; the driver fails a
    /// CONNECT with it when the peer disconnects before the connection is established.
    CONNECTION_DISCONNECTED = 0xC000_020C;
    /// `STATUS_CONNECTION_RESET`: not named by the NDK pages.
    CONNECTION_RESET = 0xC000_020D;
    /// `STATUS_NOT_FOUND`: generic; an IOCTL id that names no live object of the handle.
    NOT_FOUND = 0xC000_0225;
    /// `STATUS_RETRY`: generic.
    RETRY = 0xC000_022D;
    /// `STATUS_CONNECTION_REFUSED`: `NdkConnect` (nobody listens, or the peer rejected).
    CONNECTION_REFUSED = 0xC000_0236;
    /// `STATUS_GRACEFUL_DISCONNECT`: not used by NDK.
    GRACEFUL_DISCONNECT = 0xC000_0237;
    /// `STATUS_ADDRESS_ALREADY_ASSOCIATED`: not used by NDK.
    ADDRESS_ALREADY_ASSOCIATED = 0xC000_0238;
    /// `STATUS_CONNECTION_INVALID`: `NdkCompleteConnect`; work posted on an unconnected QP.
    CONNECTION_INVALID = 0xC000_023A;
    /// `STATUS_CONNECTION_ACTIVE`: not named by the NDK pages.
    CONNECTION_ACTIVE = 0xC000_023B;
    /// `STATUS_NETWORK_UNREACHABLE`: `NdkConnect`.
    NETWORK_UNREACHABLE = 0xC000_023C;
    /// `STATUS_HOST_UNREACHABLE`: `NdkConnect`.
    HOST_UNREACHABLE = 0xC000_023D;
    /// `STATUS_PROTOCOL_UNREACHABLE`: not used by NDK.
    PROTOCOL_UNREACHABLE = 0xC000_023E;
    /// `STATUS_PORT_UNREACHABLE`: not used by NDK.
    PORT_UNREACHABLE = 0xC000_023F;
    /// `STATUS_REQUEST_ABORTED`: not used by NDK.
    REQUEST_ABORTED = 0xC000_0240;
    /// `STATUS_CONNECTION_ABORTED`: `NdkCompleteConnect`, `NdkAccept`, `NdkReject`,
    /// `NdkDisconnect` (the connection aborted).
    CONNECTION_ABORTED = 0xC000_0241;
    /// `STATUS_DEVICE_REMOVED`: not named by the NDK pages (user-mode `ND_DEVICE_REMOVED`);
    /// the driver ends a connection with it when its adapter goes away.
    DEVICE_REMOVED = 0xC000_02B6;
    /// `STATUS_NOINTERFACE`: `WskCaptureProviderNPI` (version).
    NOINTERFACE = 0xC000_02B9;
    /// `STATUS_IMPLEMENTATION_LIMIT`: `NdkInitializeFastRegisterMr`.
    IMPLEMENTATION_LIMIT = 0xC000_042B;
    /// `STATUS_NDIS_BAD_VERSION`: an adapter that does not speak the requested NDKPI
    /// version (NTSTATUS form of `NDIS_STATUS_BAD_VERSION`).
    NDIS_BAD_VERSION = 0xC023_0004;
    /// `STATUS_NDIS_ADAPTER_NOT_READY`: NTSTATUS form of `NDIS_STATUS_ADAPTER_NOT_READY`.
    NDIS_ADAPTER_NOT_READY = 0xC023_0011;
}

impl NtStatus {
    /// `NDIS_STATUS_SUCCESS` (`OPEN_NDK_ADAPTER_HANDLER`): the same value as `STATUS_SUCCESS`.
    pub const NDIS_STATUS_SUCCESS: Self = Self::SUCCESS;
    /// `NDIS_STATUS_RESOURCES` (`OPEN_NDK_ADAPTER_HANDLER`): the same value as
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const NDIS_STATUS_RESOURCES: Self = Self::INSUFFICIENT_RESOURCES;
    /// `NDIS_STATUS_BAD_VERSION` as the mingw-w64 `ddk/ndis.h` defines it; a current WDK may
    /// use the [`NtStatus::NDIS_BAD_VERSION`] form instead (unconfirmed), so accept both.
    pub const NDIS_STATUS_BAD_VERSION: Self = Self::from_code(0xC001_0004);
    /// `NDIS_STATUS_ADAPTER_NOT_READY` as the mingw-w64 `ddk/ndis.h` defines it; see
    /// [`NtStatus::NDIS_STATUS_BAD_VERSION`].
    pub const NDIS_STATUS_ADAPTER_NOT_READY: Self = Self::from_code(0xC001_0011);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::NtStatus;

    #[test]
    fn values_print_with_their_ntstatus_h_names() {
        assert_eq!(NtStatus::NOT_FOUND.code(), 0xC000_0225);
        assert_eq!(
            NtStatus::NOT_FOUND.to_string(),
            "STATUS_NOT_FOUND (0xC0000225)"
        );
        assert_eq!(NtStatus::CANCELLED.name(), Some("STATUS_CANCELLED"));
        assert_eq!(
            NtStatus::NDIS_STATUS_BAD_VERSION.name(),
            Some("NDIS_STATUS_BAD_VERSION")
        );
        assert_eq!(NtStatus(0x1234_5678).name(), None);
        assert_eq!(NtStatus(-1).to_string(), "NTSTATUS 0xFFFFFFFF");
    }

    #[test]
    fn success_error_and_pending_follow_the_severity_bits() {
        assert!(NtStatus::SUCCESS.is_success());
        assert!(NtStatus::PENDING.is_success(), "PENDING is a success code");
        assert!(!NtStatus::PENDING.is_error());
        assert!(!NtStatus::BUFFER_OVERFLOW.is_success(), "a warning");
        assert!(!NtStatus::BUFFER_OVERFLOW.is_error(), "a warning");
        assert!(NtStatus::CANCELLED.is_error());
        assert!(!NtStatus::CANCELLED.is_success());
        assert!(!NtStatus::CONNECTION_REFUSED.is_success());
    }

    #[test]
    fn values_have_their_ntstatus_h_bit_patterns() {
        assert_eq!(NtStatus::CANCELLED.code(), 0xC000_0120);
        assert_eq!(NtStatus::CONNECTION_INVALID.code(), 0xC000_023A);
        assert_eq!(NtStatus::CONNECTION_REFUSED.code(), 0xC000_0236);
        assert_eq!(NtStatus::INSUFFICIENT_RESOURCES.code(), 0xC000_009A);
        assert_eq!(
            NtStatus::NDIS_STATUS_RESOURCES,
            NtStatus::INSUFFICIENT_RESOURCES
        );
        assert_eq!(NtStatus::PENDING, NtStatus(0x103));
    }

    #[test]
    fn every_name_is_unique_and_every_value_named_once() {
        for (i, (s, n)) in super::NAMES.iter().enumerate() {
            for (t, m) in &super::NAMES[i + 1..] {
                assert_ne!(n, m);
                assert_ne!(s, t, "{n} and {m} have the same value");
            }
        }
    }
}
