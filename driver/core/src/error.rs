//! Why the engine refuses or fails a request, as a type; NTSTATUS only at the boundary.
//!
//! Inside the engine every fallible step returns an [`Error`]. The one table that turns it
//! into the NTSTATUS a request completes with is [`Error::ntstatus`], used where dispatch
//! completes the request (and where a connection reports a failed CONNECT's outcome).

use ndkdisc_abi::{AbiError, NtStatus};

use crate::events::QueueError;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The request record is malformed, or the output buffer cannot hold the reply.
    Abi(AbiError),
    /// No live connection or listener with that id on this handle (or no such interface).
    NotFound,
    /// A limit: the engine's open handles (`Config::max_handles`), or a per-handle one
    /// (connections, listeners, pended waits, backlog, queue depth).
    Quota,
    /// Memory, or a resource the provider did not name, could not be had.
    NoResources,
    /// The object's state forbids the operation (sends before connected, FLUSH without a QP,
    /// anything after CLOSE).
    InvalidState,
    /// The operation was cut short: the handle is being cleaned up, or the request was
    /// cancelled.
    Cancelled,
    /// The NDK provider failed the call with this (error) status; passed through unchanged.
    Provider(NtStatus),
}

impl Error {
    /// What a provider's completion status means: its own error, or — a create that reported
    /// success but gave no object — a lack of resources.
    pub const fn provider(status: NtStatus) -> Self {
        if status.is_success() {
            Self::NoResources
        } else {
            Self::Provider(status)
        }
    }

    /// The NTSTATUS a request failing this way completes with: the one table.
    pub const fn ntstatus(self) -> NtStatus {
        match self {
            Self::Abi(e) => e.ntstatus(),
            Self::NotFound => NtStatus::NOT_FOUND,
            Self::Quota => NtStatus::QUOTA_EXCEEDED,
            Self::NoResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::InvalidState => NtStatus::INVALID_DEVICE_STATE,
            Self::Cancelled => NtStatus::CANCELLED,
            Self::Provider(status) => status,
        }
    }
}

impl From<kalloc::AllocError> for Error {
    fn from(_: kalloc::AllocError) -> Self {
        Self::NoResources
    }
}

impl From<AbiError> for Error {
    fn from(e: AbiError) -> Self {
        Self::Abi(e)
    }
}

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        match e {
            // No id left (after 2^44) is a resource the driver ran out of, like memory.
            QueueError::NoMemory | QueueError::IdsExhausted => Self::NoResources,
            QueueError::Quota => Self::Quota,
            QueueError::NotFound => Self::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_documented_status() {
        for (e, st) in [
            (Error::Abi(AbiError::Truncated), NtStatus::INVALID_PARAMETER),
            (
                Error::Abi(AbiError::OutputTooSmall),
                NtStatus::BUFFER_TOO_SMALL,
            ),
            (Error::NotFound, NtStatus::NOT_FOUND),
            (Error::Quota, NtStatus::QUOTA_EXCEEDED),
            (Error::NoResources, NtStatus::INSUFFICIENT_RESOURCES),
            (Error::InvalidState, NtStatus::INVALID_DEVICE_STATE),
            (Error::Cancelled, NtStatus::CANCELLED),
            (
                Error::Provider(NtStatus::SHARING_VIOLATION),
                NtStatus::SHARING_VIOLATION,
            ),
        ] {
            assert_eq!(e.ntstatus(), st, "{e:?}");
        }
        assert_eq!(Error::provider(NtStatus::SUCCESS), Error::NoResources);
        assert_eq!(
            Error::provider(NtStatus::CONNECTION_REFUSED),
            Error::Provider(NtStatus::CONNECTION_REFUSED)
        );
    }
}
