//! Runtime checks of the few computed items in ndkpi-sys. Layout is proven at compile time by
//! the `const` asserts beside each struct; these cover the helpers and well-known values.

use ndkpi_sys::*;

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
