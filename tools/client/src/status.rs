//! What each NTSTATUS means to a user of ndkdisc. The values and their `ntstatus.h` names are
//! defined once, in the `ntstatus` crate ([`NtStatus`]); this is only the user-facing text.

use ndkdisc_abi::NtStatus;

/// The statuses ndkdisc's IOCTLs document, with what each means here.
const MEANINGS: &[(NtStatus, &str)] = &[
    (NtStatus::SUCCESS, "success"),
    (NtStatus::PENDING, "the request is still in progress"),
    (
        NtStatus::INVALID_PARAMETER,
        "the driver rejected the request record (size, version, reserved field, flag or range)",
    ),
    (
        NtStatus::NO_SUCH_DEVICE,
        "the ndkdisc device does not exist: the driver is not installed",
    ),
    (
        NtStatus::INVALID_DEVICE_REQUEST,
        "not an ndkdisc control code (a client and driver of different versions?)",
    ),
    (
        NtStatus::ACCESS_DENIED,
        "access denied: the device admits only SYSTEM and Administrators, and changes need a handle opened for writing",
    ),
    (
        NtStatus::BUFFER_TOO_SMALL,
        "the output buffer is too small for the reply",
    ),
    (
        NtStatus::OBJECT_NAME_NOT_FOUND,
        "the ndkdisc device does not exist: the driver is not installed",
    ),
    (
        NtStatus::QUOTA_EXCEEDED,
        "a limit of the driver was reached: its open handles, or a per-handle limit (connections, listeners, pended waits, queue depth or backlog)",
    ),
    (
        NtStatus::REVISION_MISMATCH,
        "the driver speaks another ABI version than this client",
    ),
    (
        NtStatus::INSUFFICIENT_RESOURCES,
        "the driver or the NDK provider ran out of resources",
    ),
    (NtStatus::NOT_SUPPORTED, "the operation is not supported"),
    (
        NtStatus::CANCELLED,
        "the request was cancelled (CancelIoEx, handle close or ABORT); flushed work requests complete with it too",
    ),
    (
        NtStatus::INVALID_ADDRESS,
        "the address is not usable on that interface",
    ),
    (
        NtStatus::INVALID_DEVICE_STATE,
        "the connection is in a state where this operation is invalid",
    ),
    (
        NtStatus::ADDRESS_ALREADY_EXISTS,
        "the address is already in use",
    ),
    (NtStatus::CONNECTION_RESET, "the peer reset the connection"),
    (
        NtStatus::NOT_FOUND,
        "no such id on this handle (or no such interface)",
    ),
    (
        NtStatus::CONNECTION_REFUSED,
        "nobody listens at the remote address",
    ),
    (NtStatus::NETWORK_UNREACHABLE, "the network is unreachable"),
    (NtStatus::HOST_UNREACHABLE, "the remote host is unreachable"),
    (
        NtStatus::CONNECTION_ABORTED,
        "the connection was aborted (reset or link loss)",
    ),
    (NtStatus::SHARING_VIOLATION, "the address is already in use"),
    (NtStatus::DEVICE_REMOVED, "the NDK adapter was removed"),
    (NtStatus::IO_TIMEOUT, "the operation timed out"),
    (
        NtStatus::DATA_OVERRUN,
        "a receive buffer was too small for the message",
    ),
    (
        NtStatus::NDIS_BAD_VERSION,
        "the adapter does not speak a usable NDKPI version",
    ),
];

/// What `status` means to a user of ndkdisc: the documented meaning, or what kind of status it
/// is when ndkdisc does not document it.
pub fn meaning(status: NtStatus) -> &'static str {
    match MEANINGS.iter().find(|e| e.0 == status) {
        Some(e) => e.1,
        None if status.is_success() => "a success or informational status",
        None => "an error status ndkdisc does not document",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_the_abi_documents_has_a_meaning_and_its_name() {
        for (v, name) in [
            (NtStatus::NOT_FOUND, "STATUS_NOT_FOUND"),
            (NtStatus::CANCELLED, "STATUS_CANCELLED"),
            (NtStatus::ACCESS_DENIED, "STATUS_ACCESS_DENIED"),
            (
                NtStatus::INVALID_DEVICE_STATE,
                "STATUS_INVALID_DEVICE_STATE",
            ),
            (NtStatus::QUOTA_EXCEEDED, "STATUS_QUOTA_EXCEEDED"),
            (NtStatus::REVISION_MISMATCH, "STATUS_REVISION_MISMATCH"),
        ] {
            assert_eq!(v.name(), Some(name));
            assert!(MEANINGS.iter().any(|e| e.0 == v), "{name} has no meaning");
        }
        assert_eq!(
            NtStatus::NOT_FOUND.to_string(),
            "STATUS_NOT_FOUND (0xC0000225)"
        );
        assert_eq!(NtStatus(0x1234_5678).name(), None);
        assert_eq!(NtStatus(-1).to_string(), "NTSTATUS 0xFFFFFFFF");
        assert_eq!(
            meaning(NtStatus(0x1234_5678)),
            "a success or informational status"
        );
        assert_eq!(
            meaning(NtStatus(-1)),
            "an error status ndkdisc does not document"
        );
    }
}
