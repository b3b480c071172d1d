//! `SOCKADDR` buffers with Windows values (`AF_INET6` = 23), from and to `SocketAddr`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use ndkpi_sys::{
    AF_INET, AF_INET6, IN_ADDR, IN6_ADDR, NtStatus, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6,
};

/// An address in the form NDK takes it: a `SOCKADDR_IN` or `SOCKADDR_IN6` and its length.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct SockAddrBuf {
    storage: SockStorage,
    len: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
union SockStorage {
    v4: SOCKADDR_IN,
    v6: SOCKADDR_IN6,
}

impl core::fmt::Debug for SockStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SockStorage")
    }
}

impl SockAddrBuf {
    /// Encode `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Self {
                storage: SockStorage {
                    v4: SOCKADDR_IN {
                        sin_family: AF_INET,
                        sin_port: a.port().to_be(),
                        sin_addr: IN_ADDR {
                            S_un: a.ip().octets(),
                        },
                        sin_zero: [0; 8],
                    },
                },
                len: 16,
            },
            SocketAddr::V6(a) => Self {
                storage: SockStorage {
                    v6: SOCKADDR_IN6 {
                        sin6_family: AF_INET6,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: IN6_ADDR { u: a.ip().octets() },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                len: 28,
            },
        }
    }

    /// The unspecified address of `addr`'s family, port 0 (let the provider choose).
    pub fn any_like(addr: SocketAddr) -> Self {
        Self::new(match addr {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        })
    }

    /// An empty buffer for a provider to write into.
    pub fn empty() -> Self {
        Self {
            storage: SockStorage {
                v6: SOCKADDR_IN6::default(),
            },
            len: 28,
        }
    }

    /// Pointer for NDK input parameters.
    pub fn as_ptr(&self) -> *const SOCKADDR {
        core::ptr::from_ref(&self.storage).cast()
    }

    /// Pointer and length for NDK output parameters.
    /// Ask an address getter (`NdkGetLocalAddress`, `NdkGetPeerAddress`) for its address:
    /// `get` calls it with this buffer's pointer and length; success decodes the answer.
    pub(crate) fn ask(get: impl FnOnce(*mut SOCKADDR, *mut u32) -> NtStatus) -> Option<SocketAddr> {
        let mut buf = Self::empty();
        let (p, len) = buf.as_out();
        if get(p, len) == NtStatus::SUCCESS {
            buf.decode()
        } else {
            None
        }
    }

    pub(crate) fn as_out(&mut self) -> (*mut SOCKADDR, *mut u32) {
        (
            core::ptr::from_mut(&mut self.storage).cast(),
            &raw mut self.len,
        )
    }

    /// Length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decode what a provider wrote.
    pub fn decode(&self) -> Option<SocketAddr> {
        // SAFETY: both union members begin with the family field at offset 0, and every bit
        // pattern is a valid u16.
        let family = unsafe { self.storage.v4.sin_family };
        match family {
            // SAFETY: the family says the IPv4 member was written; all its bit patterns are
            // valid.
            AF_INET if self.len >= 16 => Some(SocketAddr::V4(v4(&unsafe { self.storage.v4 }))),
            // SAFETY: the family says the IPv6 member was written; all its bit patterns are
            // valid.
            AF_INET6 if self.len >= 28 => Some(SocketAddr::V6(v6(&unsafe { self.storage.v6 }))),
            _ => None,
        }
    }
}

/// A `SOCKADDR_IN` as a [`SocketAddrV4`] (port in network order on the wire).
pub fn v4(a: &SOCKADDR_IN) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a.sin_addr.S_un), u16::from_be(a.sin_port))
}

/// A `SOCKADDR_IN6` as a [`SocketAddrV6`] (port in network order on the wire).
pub fn v6(a: &SOCKADDR_IN6) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::from(a.sin6_addr.u),
        u16::from_be(a.sin6_port),
        a.sin6_flowinfo,
        a.sin6_scope_id,
    )
}
