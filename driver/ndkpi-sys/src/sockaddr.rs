//! Winsock address layouts as Windows defines them (`ws2def.h`, `ws2ipdef.h`).
//!
//! NDK passes every address as a `SOCKADDR*` plus an explicit byte length. On Windows
//! `AF_INET6` is 23 (Linux uses 10): these structs always carry the Windows values, on every
//! host. Ports are in network byte order, as Winsock stores them.

/// `ADDRESS_FAMILY`.
pub type ADDRESS_FAMILY = u16;
/// Unspecified family.
pub const AF_UNSPEC: ADDRESS_FAMILY = 0;
/// IPv4.
pub const AF_INET: ADDRESS_FAMILY = 2;
/// IPv6 (Windows value; Linux uses 10).
pub const AF_INET6: ADDRESS_FAMILY = 23;

/// `SOCKADDR`: the generic address header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SOCKADDR {
    /// Address family.
    pub sa_family: ADDRESS_FAMILY,
    /// Family-specific bytes.
    pub sa_data: [u8; 14],
}
layout!(SOCKADDR, size 16);

/// `IN_ADDR`. Windows declares a union of byte, word and `ULONG` views; its bytes are the IPv4
/// address in network order.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IN_ADDR {
    /// The address bytes, most significant first.
    pub S_un: [u8; 4],
}
layout!(IN_ADDR, size 4, align 4);

/// `IN6_ADDR`. Windows declares a union of byte and word views; its bytes are the IPv6
/// address in network order.
#[repr(C, align(2))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IN6_ADDR {
    /// The address bytes, most significant first.
    pub u: [u8; 16],
}
layout!(IN6_ADDR, size 16, align 2);

/// `SOCKADDR_IN`: an IPv4 address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SOCKADDR_IN {
    /// `AF_INET`.
    pub sin_family: ADDRESS_FAMILY,
    /// Port in network byte order (the "ND port").
    pub sin_port: u16,
    /// IPv4 address.
    pub sin_addr: IN_ADDR,
    /// Must be zero.
    pub sin_zero: [u8; 8],
}
layout!(SOCKADDR_IN, size 16, align 4; sin_port @ 2, sin_addr @ 4, sin_zero @ 8);

/// `SOCKADDR_IN6`: an IPv6 address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SOCKADDR_IN6 {
    /// `AF_INET6` (23).
    pub sin6_family: ADDRESS_FAMILY,
    /// Port in network byte order.
    pub sin6_port: u16,
    /// Flow information.
    pub sin6_flowinfo: u32,
    /// IPv6 address.
    pub sin6_addr: IN6_ADDR,
    /// Scope id (a union with `SCOPE_ID` in C).
    pub sin6_scope_id: u32,
}
layout!(SOCKADDR_IN6, size 28, align 4; sin6_port @ 2, sin6_flowinfo @ 4, sin6_addr @ 8,
    sin6_scope_id @ 24);

/// `SOCKADDR_INET`: either address family, discriminated by `si_family`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union SOCKADDR_INET {
    /// IPv4 view.
    pub Ipv4: SOCKADDR_IN,
    /// IPv6 view.
    pub Ipv6: SOCKADDR_IN6,
    /// The family, shared by both views.
    pub si_family: ADDRESS_FAMILY,
}
layout!(SOCKADDR_INET, size 28, align 4);

impl core::fmt::Debug for SOCKADDR_INET {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SOCKADDR_INET { .. }")
    }
}

/// `SOCKADDR_STORAGE`: big enough and aligned for any address; what output getters are given.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR_STORAGE {
    /// Address family.
    pub ss_family: ADDRESS_FAMILY,
    /// Padding (`__ss_pad1` in C).
    pub ss_pad1: [u8; 6],
    /// Forces 8-byte alignment (`__ss_align` in C).
    pub ss_align: i64,
    /// Padding (`__ss_pad2` in C).
    pub ss_pad2: [u8; 112],
}
layout!(SOCKADDR_STORAGE, size 128, align 8);

impl Default for SOCKADDR_STORAGE {
    fn default() -> Self {
        Self {
            ss_family: AF_UNSPEC,
            ss_pad1: [0; 6],
            ss_align: 0,
            ss_pad2: [0; 112],
        }
    }
}
