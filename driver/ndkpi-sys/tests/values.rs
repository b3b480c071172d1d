//! Runtime checks of the few computed items in ndkpi-sys. Layout is proven at compile time by
//! the `const` asserts beside each struct; these cover the helpers and well-known values.

use ndkpi_sys::*;

#[test]
fn nt_success_treats_pending_as_success_and_errors_as_failure() {
    assert!(NT_SUCCESS(STATUS_SUCCESS));
    assert!(NT_SUCCESS(STATUS_PENDING));
    assert!(!NT_SUCCESS(STATUS_CANCELLED));
    assert!(!NT_SUCCESS(STATUS_CONNECTION_REFUSED));
    // STATUS_BUFFER_OVERFLOW is a warning (0x8...), i.e. not a success.
    assert!(!NT_SUCCESS(STATUS_BUFFER_OVERFLOW));
}

#[test]
fn error_statuses_have_their_ntstatus_bit_patterns() {
    assert_eq!(STATUS_CANCELLED.cast_unsigned(), 0xC000_0120);
    assert_eq!(STATUS_CONNECTION_INVALID.cast_unsigned(), 0xC000_023A);
    assert_eq!(STATUS_CONNECTION_REFUSED.cast_unsigned(), 0xC000_0236);
    assert_eq!(STATUS_INSUFFICIENT_RESOURCES.cast_unsigned(), 0xC000_009A);
    assert_eq!(STATUS_PENDING, 0x103);
}

#[test]
fn lam_size_is_header_plus_eight_bytes_per_page_and_rejects_overflow() {
    assert_eq!(NDK_LAM_SIZE(1), Some(0x18));
    assert_eq!(NDK_LAM_SIZE(4), Some(0x30));
    assert_eq!(NDK_LAM_SIZE(0), Some(0x10));
    assert_eq!(NDK_LAM_SIZE(u32::MAX), None);
}

#[test]
fn wsk_constants_match_the_header() {
    assert_eq!(MAKE_WSK_VERSION(1, 0), 0x0100);
    assert_eq!(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH.to_be_bytes(), *b"NDKD");
    assert_eq!(AF_INET6, 23, "Windows value, not Linux's 10");
}
