//! Primitive types, versions, object headers, the ten object structs, and the plain data
//! structures of `ndkpi.h` / `ndkinfo.h`.

use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

use crate::dispatch::{
    NDK_ADAPTER_DISPATCH, NDK_CONNECTOR_DISPATCH, NDK_CQ_DISPATCH, NDK_LISTENER_DISPATCH,
    NDK_MR_DISPATCH, NDK_MW_DISPATCH, NDK_PD_DISPATCH, NDK_QP_DISPATCH,
    NDK_SHARED_ENDPOINT_DISPATCH, NDK_SRQ_DISPATCH,
};

/// `NTSTATUS`: the one status newtype ([`NtStatus`], `#[repr(transparent)]` over `i32`), so
/// every provider return and completion status is typed. `STATUS_PENDING` (0x103) is a
/// success code, so test for it before [`NtStatus::is_success`].
pub type NTSTATUS = NtStatus;
pub use ntstatus::NtStatus;
/// `ULONG` (4 bytes on LLP64 Windows).
pub type ULONG = u32;
/// `USHORT`.
pub type USHORT = u16;
/// `BOOLEAN`: `TRUE` = 1, `FALSE` = 0.
pub type BOOLEAN = u8;
/// `SIZE_T`.
pub type SIZE_T = usize;
/// `ULONG_PTR`.
pub type ULONG_PTR = usize;
/// `KAFFINITY`.
pub type KAFFINITY = usize;
/// `KSPIN_LOCK`.
pub type KSPIN_LOCK = usize;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `NET_IFINDEX` (ifdef.h: `typedef ULONG NET_IFINDEX`).
pub type NET_IFINDEX = u32;
/// `NDK_LOGICAL_ADDRESS`: a `PHYSICAL_ADDRESS` (`LARGE_INTEGER`) as seen by the adapter.
pub type NDK_LOGICAL_ADDRESS = i64;
/// `TRUE` for [`BOOLEAN`].
pub const TRUE: BOOLEAN = 1;
/// `FALSE` for [`BOOLEAN`].
pub const FALSE: BOOLEAN = 0;

/// `MDL`: a kernel memory descriptor list. Opaque to NDKPI: consumers pass `MDL*` to
/// `NdkRegisterMr` and `NdkBuildLAM` and the provider interprets it.
#[repr(C)]
pub struct MDL {
    _opaque: [u8; 0],
}

/// `GUID` (guiddef.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GUID {
    /// First 32 bits.
    pub Data1: u32,
    /// Next 16 bits.
    pub Data2: u16,
    /// Next 16 bits.
    pub Data3: u16,
    /// Last 64 bits, as bytes.
    pub Data4: [u8; 8],
}
layout!(GUID, size 16, align 4);

/// `GROUP_AFFINITY` (winnt.h): the processor group and mask a CQ or SRQ should interrupt on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GROUP_AFFINITY {
    /// Processor mask within the group.
    pub Mask: KAFFINITY,
    /// Processor group number.
    pub Group: u16,
    /// Must be zero.
    pub Reserved: [u16; 3],
}
layout!(GROUP_AFFINITY, size 16; Group @ 8);

/// `NDK_VERSION` (ndkinfo.h; page `ns-ndkpi-_ndk_version` / `NDK_VERSION`). Passed by value to
/// `NdkQueryExtension` and `WskOpenNdkAdapter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NDK_VERSION {
    /// Major version.
    pub Major: USHORT,
    /// Minor version.
    pub Minor: USHORT,
}
layout!(NDK_VERSION, size 4, align 2; Minor @ 2);

/// `NDK_OBJECT_HEADER_RESERVED_BLOCK` (page `ns-ndkpi-_ndk_object_header_reserved_block`):
/// scratch space for the NDK framework. The provider zeroes it at creation and must not touch
/// it until the object is closed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDK_OBJECT_HEADER_RESERVED_BLOCK {
    /// Four reserved pointers.
    pub rf: [PVOID; 4],
}
layout!(NDK_OBJECT_HEADER_RESERVED_BLOCK, size 0x20);

/// `NDK_OBJECT_HEADER` (page `ns-ndkpi-_ndk_object_header`): the first member of every NDK
/// object, so an object pointer and its header pointer have the same address.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDK_OBJECT_HEADER {
    /// The negotiated NDKPI version; the provider writes it.
    pub Version: NDK_VERSION,
    /// One of the `NdkObjectType*` values; never zero.
    pub ObjectType: NDK_OBJECT_TYPE,
    /// Reserved for the NDK framework.
    pub NdkReserved: NDK_OBJECT_HEADER_RESERVED_BLOCK,
}
layout!(NDK_OBJECT_HEADER, size 0x28, align 8; Version @ 0x00, ObjectType @ 0x04,
    NdkReserved @ 0x08);

/// `NDK_OBJECT_TYPE` (page `ne-ndkpi-_ndk_object_type`); values are the `NdkObjectType*`
/// constants in [`crate::consts`].
pub type NDK_OBJECT_TYPE = u32;
/// `NDK_OPERATION_TYPE` (page `ne-ndkpi-_ndk_operation_type`, NDKPI 1.2); values are the
/// `NdkOperationType*` constants.
pub type NDK_OPERATION_TYPE = u32;
/// `NDK_RDMA_TECHNOLOGY` (ndkinfo.h); values are `NdkUndefined` .. `NdkMaxTechnology`.
pub type NDK_RDMA_TECHNOLOGY = u32;

macro_rules! ndk_object {
    ($(#[$doc:meta])* $name:ident, $dispatch:ident) => {
        $(#[$doc])*
        ///
        /// Layout: `Header` at 0x00, `Dispatch` at 0x28, 0x30 bytes. The provider sets
        /// `Dispatch` before returning the object and never reads it afterwards: the consumer
        /// may overwrite it.
        #[repr(C)]
        #[derive(Debug)]
        pub struct $name {
            /// The common object header.
            pub Header: NDK_OBJECT_HEADER,
            /// The provider's dispatch table for this object.
            pub Dispatch: *const $dispatch,
        }
        const _: () = assert!(size_of::<$name>() == 0x30);
        const _: () = assert!(align_of::<$name>() == 8);
        const _: () = assert!(offset_of!($name, Header) == 0x00);
        const _: () = assert!(offset_of!($name, Dispatch) == 0x28);
    };
}

ndk_object!(
    /// `NDK_ADAPTER` (page `ns-ndkpi-_ndk_adapter`): an NDK-capable adapter instance, obtained
    /// from `WskOpenNdkAdapter` (or the NDIS `OPEN_NDK_ADAPTER_HANDLER`).
    NDK_ADAPTER, NDK_ADAPTER_DISPATCH
);
ndk_object!(
    /// `NDK_PD` (page `ns-ndkpi-_ndk_pd`): a protection domain.
    NDK_PD, NDK_PD_DISPATCH
);
ndk_object!(
    /// `NDK_CQ` (page `ns-ndkpi-_ndk_cq`): a completion queue.
    NDK_CQ, NDK_CQ_DISPATCH
);
ndk_object!(
    /// `NDK_QP` (page `ns-ndkpi-_ndk_qp`): a queue pair.
    NDK_QP, NDK_QP_DISPATCH
);
ndk_object!(
    /// `NDK_SRQ` (page `ns-ndkpi-_ndk_srq`): a shared receive queue.
    NDK_SRQ, NDK_SRQ_DISPATCH
);
ndk_object!(
    /// `NDK_CONNECTOR` (page `ns-ndkpi-_ndk_connector`): establishes and tears down one
    /// connection.
    NDK_CONNECTOR, NDK_CONNECTOR_DISPATCH
);
ndk_object!(
    /// `NDK_LISTENER` (page `ns-ndkpi-_ndk_listener`): listens for incoming connection
    /// requests.
    NDK_LISTENER, NDK_LISTENER_DISPATCH
);
ndk_object!(
    /// `NDK_SHARED_ENDPOINT` (page `ns-ndkpi-_ndk_shared_endpoint`): a local address shared by
    /// several connectors.
    NDK_SHARED_ENDPOINT, NDK_SHARED_ENDPOINT_DISPATCH
);
ndk_object!(
    /// `NDK_MR` (page `ns-ndkpi-_ndk_mr`): a memory region.
    NDK_MR, NDK_MR_DISPATCH
);
ndk_object!(
    /// `NDK_MW` (page `ns-ndkpi-_ndk_mw`): a memory window.
    NDK_MW, NDK_MW_DISPATCH
);

/// The address member of [`NDK_SGE`]: a virtual address inside a registered MR, or a logical
/// address (from a LAM) when the token is the privileged token.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NDK_SGE_ADDRESS {
    /// Used with a memory-region token.
    pub VirtualAddress: PVOID,
    /// Used with the privileged token from `NdkGetPrivilegedMemoryRegionToken`.
    pub LogicalAddress: NDK_LOGICAL_ADDRESS,
}
layout!(NDK_SGE_ADDRESS, size 8);

impl core::fmt::Debug for NDK_SGE_ADDRESS {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NDK_SGE_ADDRESS { .. }")
    }
}

/// `NDK_SGE` (page `ns-ndkpi-_ndk_sge`): one scatter/gather element of a work request.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDK_SGE {
    /// `VirtualAddress` or `LogicalAddress` (an anonymous union in C).
    pub Address: NDK_SGE_ADDRESS,
    /// Length of the buffer in bytes.
    pub Length: ULONG,
    /// A memory-region token, or the privileged token; ignored with `NDK_OP_FLAG_INLINE`.
    pub MemoryRegionToken: u32,
}
layout!(NDK_SGE, size 0x10; Address @ 0x00, Length @ 0x08, MemoryRegionToken @ 0x0C);

/// `NDK_RESULT` (page `ns-ndkpi-_ndk_result`): one completion from `NdkGetCqResults`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDK_RESULT {
    /// Completion status of the work request.
    pub Status: NTSTATUS,
    /// Bytes received (meaningful for receive completions only).
    pub BytesTransferred: ULONG,
    /// The `QPContext` given to `NdkCreateQp(WithSrq)`.
    pub QPContext: PVOID,
    /// The `RequestContext` given when the request was posted.
    pub RequestContext: PVOID,
}
layout!(NDK_RESULT, size 0x18; Status @ 0x00, BytesTransferred @ 0x04, QPContext @ 0x08,
    RequestContext @ 0x10);

/// `NDK_RESULT_EX` (page `ns-ndkpi-_ndk_result_ex`, NDKPI 1.2; `ProviderErrorCode` 2.1): one
/// completion from `NdkGetCqResultsEx`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDK_RESULT_EX {
    /// Completion status of the work request.
    pub Status: NTSTATUS,
    /// Bytes received (meaningful for receive completions only).
    pub BytesTransferred: ULONG,
    /// The `QPContext` given to `NdkCreateQp(WithSrq)`.
    pub QPContext: PVOID,
    /// The `RequestContext` given when the request was posted.
    pub RequestContext: PVOID,
    /// The kind of operation that completed (`NdkOperationType*`).
    pub Type: NDK_OPERATION_TYPE,
    /// NDKPI 2.1: provider diagnostic; zero on success and when not provided. Before 2.1 this
    /// was padding (x64 layout unchanged).
    pub ProviderErrorCode: ULONG,
    /// For `NdkOperationTypeReceiveAndInvalidate`: the invalidated token; otherwise undefined.
    pub TypeSpecificCompletionOutput: ULONG_PTR,
}
layout!(NDK_RESULT_EX, size 0x28; Status @ 0x00, BytesTransferred @ 0x04, QPContext @ 0x08,
    RequestContext @ 0x10, Type @ 0x18, ProviderErrorCode @ 0x1C,
    TypeSpecificCompletionOutput @ 0x20);

/// `NDK_LOGICAL_ADDRESS_MAPPING` (page `ns-ndkpi-_ndk_logical_address_mapping`): the result of
/// `NdkBuildLAM`. Variable length: `AdapterPageArray` is declared with one element but holds
/// `AdapterPageCount`; the bytes needed for `n` pages are [`NDK_LAM_SIZE`]`(n)`.
#[repr(C)]
#[derive(Debug)]
pub struct NDK_LOGICAL_ADDRESS_MAPPING {
    /// Provider-private; the consumer must not modify it.
    pub AdapterContext: PVOID,
    /// Number of entries in `AdapterPageArray`.
    pub AdapterPageCount: ULONG,
    /// One logical address per `PAGE_SIZE`-aligned page (not necessarily contiguous).
    pub AdapterPageArray: [NDK_LOGICAL_ADDRESS; 1],
}
layout!(NDK_LOGICAL_ADDRESS_MAPPING, size 0x18; AdapterContext @ 0x00, AdapterPageCount @ 0x08,
    AdapterPageArray @ 0x10);

/// Bytes needed for a [`NDK_LOGICAL_ADDRESS_MAPPING`] with `pages` entries
/// (`FIELD_OFFSET(AdapterPageArray) + 8 * pages`), or `None` on overflow.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the sum is checked to fit in u32 first"
)]
pub const fn NDK_LAM_SIZE(pages: u32) -> Option<u32> {
    match (pages as u64).checked_mul(8) {
        Some(bytes) if bytes + 0x10 <= u32::MAX as u64 => Some((bytes + 0x10) as u32),
        _ => None,
    }
}

/// `NDK_EXTENSION_INTERFACE` (page `ns-ndkpi-_ndk_extension_interface`): returned by
/// `NdkQueryExtension`. No standard extensions are defined.
#[repr(C)]
#[derive(Debug)]
pub struct NDK_EXTENSION_INTERFACE {
    /// The extension's dispatch table.
    pub Dispatch: *const c_void,
}
layout!(NDK_EXTENSION_INTERFACE, size 8);

/// `NDK_ADAPTER_INFO` (ndkinfo.h; sdk-api page `ns-ndkinfo-ndk_adapter_info`): capabilities
/// and limits returned by `NdkQueryAdapterInfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDK_ADAPTER_INFO {
    /// The NDKPI version in use.
    pub Version: NDK_VERSION,
    /// Vendor OUI.
    pub VendorId: u32,
    /// Vendor device id.
    pub DeviceId: u32,
    /// Largest single memory region.
    pub MaxRegistrationSize: SIZE_T,
    /// Largest memory window.
    pub MaxWindowSize: SIZE_T,
    /// Preferred fast-register MR size in pages (at least 16).
    pub FRMRPageCount: ULONG,
    /// Maximum SGEs per initiator request.
    pub MaxInitiatorRequestSge: ULONG,
    /// Maximum SGEs per receive request.
    pub MaxReceiveRequestSge: ULONG,
    /// Maximum SGEs per read request (overrides the initiator limit for reads).
    pub MaxReadRequestSge: ULONG,
    /// Maximum bytes per send/receive/read/write.
    pub MaxTransferLength: ULONG,
    /// Maximum inline data per request.
    pub MaxInlineDataSize: ULONG,
    /// Inbound read limit (IRD) per QP.
    pub MaxInboundReadLimit: ULONG,
    /// Outbound read limit (ORD) per QP.
    pub MaxOutboundReadLimit: ULONG,
    /// Maximum receive queue depth.
    pub MaxReceiveQueueDepth: ULONG,
    /// Maximum initiator queue depth.
    pub MaxInitiatorQueueDepth: ULONG,
    /// Maximum SRQ depth; zero means no SRQ support.
    pub MaxSrqDepth: ULONG,
    /// Maximum CQ depth.
    pub MaxCqDepth: ULONG,
    /// Size above which read/write is preferred to send/receive.
    pub LargeRequestThreshold: ULONG,
    /// Maximum private data on connect.
    pub MaxCallerData: ULONG,
    /// Maximum private data on accept/reject.
    pub MaxCalleeData: ULONG,
    /// `NDK_ADAPTER_FLAG_*` bits.
    pub AdapterFlags: ULONG,
    /// The RDMA technology (`NdkiWarp`, `NdkRoCEv2`, ...); absent in 8.1-era headers.
    pub RdmaTechnology: NDK_RDMA_TECHNOLOGY,
}
layout!(NDK_ADAPTER_INFO, size 0x68; Version @ 0x00, VendorId @ 0x04, DeviceId @ 0x08,
    MaxRegistrationSize @ 0x10, MaxWindowSize @ 0x18, FRMRPageCount @ 0x20,
    MaxInitiatorRequestSge @ 0x24, MaxReceiveRequestSge @ 0x28, MaxReadRequestSge @ 0x2C,
    MaxTransferLength @ 0x30, MaxInlineDataSize @ 0x34, MaxInboundReadLimit @ 0x38,
    MaxOutboundReadLimit @ 0x3C, MaxReceiveQueueDepth @ 0x40, MaxInitiatorQueueDepth @ 0x44,
    MaxSrqDepth @ 0x48, MaxCqDepth @ 0x4C, LargeRequestThreshold @ 0x50, MaxCallerData @ 0x54,
    MaxCalleeData @ 0x58, AdapterFlags @ 0x5C, RdmaTechnology @ 0x60);

/// Size of `NDK_ADAPTER_INFO` in 8.1-era headers, which lack `RdmaTechnology`. A provider
/// should accept a buffer of at least this size.
pub const NDK_ADAPTER_INFO_V1_SIZE: u32 = 0x60;
