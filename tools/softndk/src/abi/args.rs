//! Decoding the consumer's arguments: addresses, scatter/gather lists, private data and
//! object arguments, and writing address results with the NDK size protocol.

use std::ffi::c_void;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use ndkpi_sys::*;

use super::Target;
use crate::ObjectKind;
use crate::mem::BytePtr;
use crate::misuse::Violation;
use crate::object::{self, ObjId};
use crate::qp::Sge;

/// Read an address argument. Errors: null or too short -> `STATUS_INVALID_PARAMETER`; a family
/// other than `AF_INET`/`AF_INET6` -> `STATUS_INVALID_ADDRESS`.
pub(super) fn read_sockaddr(ptr: *const SOCKADDR, len: u32) -> Result<SocketAddr, NTSTATUS> {
    if ptr.is_null() || (len as usize) < size_of::<u16>() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes; we read two.
    let family = unsafe { ptr.cast::<u16>().read_unaligned() };
    match family {
        AF_INET if len as usize >= size_of::<SOCKADDR_IN>() => {
            // SAFETY: `len` covers a SOCKADDR_IN; unaligned read because the consumer's buffer
            // need not be aligned.
            let sin = unsafe { ptr.cast::<SOCKADDR_IN>().read_unaligned() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.S_un),
                u16::from_be(sin.sin_port),
            )))
        }
        AF_INET6 if len as usize >= size_of::<SOCKADDR_IN6>() => {
            // SAFETY: `len` covers a SOCKADDR_IN6.
            let sin6 = unsafe { ptr.cast::<SOCKADDR_IN6>().read_unaligned() };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.u),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        AF_INET | AF_INET6 => Err(NtStatus::INVALID_PARAMETER),
        _ => Err(NtStatus::INVALID_ADDRESS),
    }
}

/// Write an address result with the NDK size protocol: too small (or no buffer) ->
/// `STATUS_BUFFER_TOO_SMALL` with the required size in `*len`.
pub(super) fn write_sockaddr(
    t: &Target,
    addr: Option<SocketAddr>,
    ptr: *mut SOCKADDR,
    len: *mut u32,
) -> NTSTATUS {
    if len.is_null() {
        return t.violation("null address-length pointer");
    }
    let Some(addr) = addr else {
        return NtStatus::INVALID_DEVICE_STATE;
    };
    let required = match addr {
        SocketAddr::V4(_) => SOCKADDR_IN_LEN,
        SocketAddr::V6(_) => SOCKADDR_IN6_LEN,
    };
    // SAFETY: `len` is non-null and points to the consumer's in/out length.
    let have = unsafe { len.read() };
    // SAFETY: as above.
    unsafe { len.write(required) };
    if ptr.is_null() || have < required {
        return NtStatus::BUFFER_TOO_SMALL;
    }
    match addr {
        SocketAddr::V4(a) => {
            let sin = SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: a.port().to_be(),
                sin_addr: IN_ADDR {
                    S_un: a.ip().octets(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the consumer's buffer holds at least `required` bytes (checked above).
            unsafe { ptr.cast::<SOCKADDR_IN>().write_unaligned(sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: IN6_ADDR { u: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: the consumer's buffer holds at least `required` bytes (checked above).
            unsafe { ptr.cast::<SOCKADDR_IN6>().write_unaligned(sin6) };
        }
    }
    NtStatus::SUCCESS
}

/// Copy the consumer's scatter/gather list.
pub(super) fn read_sges(t: &Target, sgl: *const NDK_SGE, n: u32) -> Result<Vec<Sge>, NTSTATUS> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if sgl.is_null() {
        return Err(t.violation("null SGE list with a non-zero count"));
    }
    let mut sges = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: the consumer passes `n` readable elements at `sgl`; `i < n`.
        let sge = unsafe { sgl.wrapping_add(i).read_unaligned() };
        // SAFETY: both union members are 8 bytes; reading the pointer view keeps whatever
        // provenance the consumer gave and the bits of a logical address alike.
        let addr = unsafe { sge.Address.VirtualAddress };
        sges.push(Sge {
            addr: BytePtr(addr.cast()),
            len: sge.Length,
            token: sge.MemoryRegionToken,
        });
    }
    Ok(sges)
}

/// Copy private data supplied with connect / accept / reject.
pub(super) fn read_private_data(
    t: &Target,
    data: *const c_void,
    len: u32,
) -> Result<Vec<u8>, NTSTATUS> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if data.is_null() {
        return Err(t.violation("null private data with a non-zero length"));
    }
    let mut v = vec![0; len as usize];
    // SAFETY: the consumer passes `len` readable bytes at `data`; `v` is a fresh buffer.
    unsafe { std::ptr::copy_nonoverlapping(data.cast::<u8>(), v.as_mut_ptr(), v.len()) };
    Ok(v)
}

/// Resolve another object argument (a QP or CQ passed to a connector or PD function).
pub(super) fn arg_object<T>(t: &Target, ptr: *mut T, kind: ObjectKind) -> Result<ObjId, NTSTATUS> {
    match object::lookup(ptr.addr()) {
        Some((shared, entry)) if Arc::ptr_eq(&shared, &t.shared) && entry.kind == kind => {
            Ok(entry.id)
        }
        Some((_, entry)) if entry.kind != kind => {
            t.shared.report(Violation::WrongObjectKind {
                function: t.function,
                expected: kind,
                found: entry.kind,
            });
            Err(NtStatus::INVALID_PARAMETER)
        }
        _ => Err(t.violation("object argument is not a live object of this adapter's fabric")),
    }
}

const SOCKADDR_IN_LEN: u32 = 16;
const SOCKADDR_IN6_LEN: u32 = 28;

const _: () = assert!(size_of::<SOCKADDR_IN>() == SOCKADDR_IN_LEN as usize);
const _: () = assert!(size_of::<SOCKADDR_IN6>() == SOCKADDR_IN6_LEN as usize);
