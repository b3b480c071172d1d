//! The part of `netioapi.h` (kernel mode, exported by `netio.sys`, import library `netio.lib`)
//! the driver uses to list the machine's interfaces and addresses: the unicast address table.
//! wdk-sys binds `ntifs.h`/`ntddk.h`/`wdf.h` only, so these are declared here beside WSK.
//!
//! Layout: field order from Microsoft's Win32 metadata (`windows-sys`
//! `Win32::NetworkManagement::IpHelper::MIB_UNICASTIPADDRESS_ROW`), sizes and offsets from the
//! x64/ARM64 C layout rules. The same asserts were checked against `windows-sys` 0.61.2's
//! definition for both Windows targets; `cargo check --target x86_64-pc-windows-msvc` and
//! `aarch64-pc-windows-msvc` prove them here. Pass `AF_UNSPEC` for both families.

use core::mem::offset_of;

use crate::sockaddr::SOCKADDR_INET;
use crate::types::{NET_IFINDEX, ULONG};

/// `MIB_UNICASTIPADDRESS_ROW` (`nf-netioapi` docs: one unicast IP address of an interface).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MIB_UNICASTIPADDRESS_ROW {
    /// The address (port 0).
    pub Address: SOCKADDR_INET,
    /// `NET_LUID` of the interface.
    pub InterfaceLuid: u64,
    /// Interface index (the `IfIndex` `WskOpenNdkAdapter` takes).
    pub InterfaceIndex: NET_IFINDEX,
    /// `NL_PREFIX_ORIGIN`.
    pub PrefixOrigin: i32,
    /// `NL_SUFFIX_ORIGIN`.
    pub SuffixOrigin: i32,
    /// Seconds.
    pub ValidLifetime: ULONG,
    /// Seconds.
    pub PreferredLifetime: ULONG,
    /// Prefix length.
    pub OnLinkPrefixLength: u8,
    /// `BOOLEAN`.
    pub SkipAsSource: u8,
    /// `NL_DAD_STATE`.
    pub DadState: i32,
    /// `SCOPE_ID`.
    pub ScopeId: ULONG,
    /// `LARGE_INTEGER`.
    pub CreationTimeStamp: i64,
}
layout!(MIB_UNICASTIPADDRESS_ROW, size 80, align 8; InterfaceLuid @ 32, InterfaceIndex @ 40,
    PrefixOrigin @ 44, OnLinkPrefixLength @ 60, SkipAsSource @ 61, DadState @ 64, ScopeId @ 68,
    CreationTimeStamp @ 72);

/// `MIB_UNICASTIPADDRESS_TABLE`: `NumEntries` rows follow at `Table` (declared `[1]`).
#[repr(C)]
pub struct MIB_UNICASTIPADDRESS_TABLE {
    /// Number of rows.
    pub NumEntries: ULONG,
    /// The first row; the others follow contiguously.
    pub Table: [MIB_UNICASTIPADDRESS_ROW; 1],
}
const _: () = assert!(offset_of!(MIB_UNICASTIPADDRESS_TABLE, Table) == 8);

// Exported by `netio.sys`; the driver crate links `netio.lib` on Windows. Declared for every
// target, like the WSK functions (softwdf defines them for the shell's host build).
unsafe extern "system" {
    /// `GetUnicastIpAddressTable` (kernel mode: returns an NTSTATUS), `PASSIVE_LEVEL`. The
    /// table is allocated by the callee and released with [`FreeMibTable`].
    pub fn GetUnicastIpAddressTable(
        Family: crate::sockaddr::ADDRESS_FAMILY,
        Table: *mut *mut MIB_UNICASTIPADDRESS_TABLE,
    ) -> crate::types::NTSTATUS;
    /// `FreeMibTable`: release a table returned by a `Get*Table` function.
    pub fn FreeMibTable(Memory: *mut core::ffi::c_void);
}
