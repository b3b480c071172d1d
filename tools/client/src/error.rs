//! What can go wrong, each variant carrying the NTSTATUS (where there is one) and its meaning.

use core::time::Duration;

use ndkdisc_abi::AbiError;

use crate::NtStatus;

/// The operation an error came from.
pub type Op = &'static str;

/// An error of the client API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device could not be opened because it does not exist.
    #[error(
        "the ndkdisc device is missing ({path}): the driver is not installed or its device is not present; {detail}"
    )]
    DeviceMissing {
        /// What was tried.
        path: String,
        /// Why it failed, and what to do.
        detail: String,
    },
    /// The device opened is not ndkdisc's: it does not answer `GET_INFO`, which the ndkdisc
    /// driver answers on every open handle (the client asks it right after opening).
    #[error(
        r"{path} is not the ndkdisc device: it does not answer ndkdisc's GET_INFO ({status}); give --device the ndkdisc device (\\.\NdkDisc) or leave it out"
    )]
    NotNdkDisc {
        /// The device opened.
        path: String,
        /// What it answered.
        status: NtStatus,
    },
    /// The device refused access (opening it, or an operation the handle's access does not
    /// allow).
    #[error("{op}: {status}: {}", crate::status::meaning(*status))]
    AccessDenied {
        /// The operation.
        op: Op,
        /// The status (`STATUS_ACCESS_DENIED`).
        status: NtStatus,
    },
    /// An address given by the caller is malformed, or the driver said it is unusable.
    #[error("bad address `{text}`: {why}")]
    BadAddress {
        /// The address as given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The driver completed the request with a failure status.
    #[error("{op} failed: {status}: {}", crate::status::meaning(*status))]
    Failed {
        /// The operation.
        op: Op,
        /// The status.
        status: NtStatus,
    },
    /// CONNECT completed but the connection failed; the id still names it (close it).
    #[error("connect failed on connection {connection_id}: {status}: {}", crate::status::meaning(*status))]
    ConnectFailed {
        /// The connection's id.
        connection_id: crate::ConnectionId,
        /// The NDK outcome.
        status: NtStatus,
    },
    /// The request did not complete in time; it was cancelled (`CancelIoEx`) and completed
    /// with `STATUS_CANCELLED`.
    #[error("{op} timed out after {after:?}; the request was cancelled")]
    Timeout {
        /// The operation.
        op: Op,
        /// The limit.
        after: Duration,
    },
    /// The caller interrupted the request (e.g. Ctrl-C); it was cancelled and completed with
    /// `STATUS_CANCELLED`.
    #[error("{op} was interrupted; the request was cancelled (STATUS_CANCELLED)")]
    Interrupted {
        /// The operation.
        op: Op,
    },
    /// The driver's reply could not be decoded (a driver of another version?).
    #[error("{op}: malformed reply from the driver: {why}")]
    BadReply {
        /// The operation.
        op: Op,
        /// The decode error.
        why: AbiError,
    },
    /// A request could not be encoded (a value out of the ABI's range).
    #[error("{op}: invalid request: {why}")]
    BadRequest {
        /// The operation.
        op: Op,
        /// The encode error.
        why: AbiError,
    },
    /// A cancelled request never completed (a driver bug: cancellation must be prompt).
    #[error("{op}: the request did not complete within {after:?} of being cancelled")]
    Stuck {
        /// The operation.
        op: Op,
        /// How long we waited after cancelling.
        after: Duration,
    },
    /// An operating-system failure outside the driver (creating an event, ...).
    #[error("{op}: system error {code}")]
    System {
        /// What was being done.
        op: Op,
        /// The Win32 error code.
        code: u32,
    },
}

/// The classes of error a tool tells apart (and maps to exit codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The driver is not installed or its device is missing.
    DeviceMissing,
    /// Access denied.
    AccessDenied,
    /// A bad address.
    BadAddress,
    /// An id (or interface) the handle does not know: `STATUS_NOT_FOUND`.
    UnknownId,
    /// A timeout.
    Timeout,
    /// Cancelled: interrupted, or the driver cancelled the request (ABORT, handle close).
    Cancelled,
    /// The connection attempt failed.
    ConnectFailed,
    /// Any other failure status from the driver.
    Driver,
    /// A reply or request outside the ABI, or a system failure.
    Internal,
}

impl Error {
    /// A failure of `op` with `status`, classified.
    pub fn from_status(op: Op, status: NtStatus) -> Self {
        if status == NtStatus::ACCESS_DENIED {
            Self::AccessDenied { op, status }
        } else {
            Self::Failed { op, status }
        }
    }

    /// Which class of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::DeviceMissing { .. } | Self::NotNdkDisc { .. } => ErrorKind::DeviceMissing,
            Self::AccessDenied { .. } => ErrorKind::AccessDenied,
            Self::BadAddress { .. } => ErrorKind::BadAddress,
            Self::Failed { status, .. } => match *status {
                NtStatus::NOT_FOUND => ErrorKind::UnknownId,
                NtStatus::CANCELLED => ErrorKind::Cancelled,
                NtStatus::ACCESS_DENIED => ErrorKind::AccessDenied,
                NtStatus::INVALID_ADDRESS => ErrorKind::BadAddress,
                NtStatus::IO_TIMEOUT => ErrorKind::Timeout,
                NtStatus::NO_SUCH_DEVICE | NtStatus::OBJECT_NAME_NOT_FOUND => {
                    ErrorKind::DeviceMissing
                }
                _ => ErrorKind::Driver,
            },
            Self::ConnectFailed { .. } => ErrorKind::ConnectFailed,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Interrupted { .. } => ErrorKind::Cancelled,
            Self::BadReply { .. }
            | Self::BadRequest { .. }
            | Self::Stuck { .. }
            | Self::System { .. } => ErrorKind::Internal,
        }
    }

    /// The NTSTATUS the failing request completed with, where there is one.
    pub fn status(&self) -> Option<NtStatus> {
        match self {
            Self::AccessDenied { status, .. }
            | Self::Failed { status, .. }
            | Self::ConnectFailed { status, .. }
            | Self::NotNdkDisc { status, .. } => Some(*status),
            Self::Timeout { .. } | Self::Interrupted { .. } => Some(NtStatus::CANCELLED),
            Self::DeviceMissing { .. }
            | Self::BadAddress { .. }
            | Self::BadReply { .. }
            | Self::BadRequest { .. }
            | Self::Stuck { .. }
            | Self::System { .. } => None,
        }
    }
}
