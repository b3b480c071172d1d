//! Enumerations and flag constants of `ndkpi.h` / `ndkinfo.h`.

use crate::types::{NDK_OBJECT_TYPE, NDK_OPERATION_TYPE, NDK_RDMA_TECHNOLOGY, ULONG};

// --- NDK_OBJECT_TYPE (page ne-ndkpi-_ndk_object_type) -------------------------------------

/// Invalid object type.
pub const NdkObjectTypeUndefined: NDK_OBJECT_TYPE = 0;
/// `NDK_ADAPTER`.
pub const NdkObjectTypeAdapter: NDK_OBJECT_TYPE = 1;
/// `NDK_QP`.
pub const NdkObjectTypeQp: NDK_OBJECT_TYPE = 2;
/// `NDK_CQ`.
pub const NdkObjectTypeCq: NDK_OBJECT_TYPE = 3;
/// `NDK_MR`.
pub const NdkObjectTypeMr: NDK_OBJECT_TYPE = 4;
/// `NDK_MW`.
pub const NdkObjectTypeMw: NDK_OBJECT_TYPE = 5;
/// `NDK_PD`.
pub const NdkObjectTypePd: NDK_OBJECT_TYPE = 6;
/// `NDK_SHARED_ENDPOINT`.
pub const NdkObjectTypeSharedEndpoint: NDK_OBJECT_TYPE = 7;
/// `NDK_CONNECTOR`.
pub const NdkObjectTypeConnector: NDK_OBJECT_TYPE = 8;
/// `NDK_LISTENER`.
pub const NdkObjectTypeListener: NDK_OBJECT_TYPE = 9;
/// `NDK_SRQ`.
pub const NdkObjectTypeSrq: NDK_OBJECT_TYPE = 10;
/// One past the last object type (may change in future headers).
pub const NdkObjectTypeMax: NDK_OBJECT_TYPE = 11;

// --- NDK_OPERATION_TYPE (page ne-ndkpi-_ndk_operation_type, NDKPI 1.2) ---------------------

/// A receive completed.
pub const NdkOperationTypeReceive: NDK_OPERATION_TYPE = 0x1;
/// A send completed.
pub const NdkOperationTypeSend: NDK_OPERATION_TYPE = 0x2;
/// A fast-register completed.
pub const NdkOperationTypeFastRegister: NDK_OPERATION_TYPE = 0x4;
/// A bind completed.
pub const NdkOperationTypeBind: NDK_OPERATION_TYPE = 0x8;
/// An invalidate completed.
pub const NdkOperationTypeInvalidate: NDK_OPERATION_TYPE = 0x10;
/// An RDMA read completed.
pub const NdkOperationTypeRead: NDK_OPERATION_TYPE = 0x20;
/// An RDMA write completed.
pub const NdkOperationTypeWrite: NDK_OPERATION_TYPE = 0x40;
/// A receive completed for a peer's `NdkSendAndInvalidate` (receive bit + 0x8000).
pub const NdkOperationTypeReceiveAndInvalidate: NDK_OPERATION_TYPE = 0x8001;

// --- NDK_RDMA_TECHNOLOGY (ndkinfo.h) --------------------------------------------------------

/// Unknown technology.
pub const NdkUndefined: NDK_RDMA_TECHNOLOGY = 0;
/// iWARP.
pub const NdkiWarp: NDK_RDMA_TECHNOLOGY = 1;
/// `InfiniBand`.
pub const NdkInfiniBand: NDK_RDMA_TECHNOLOGY = 2;
/// `RoCE` v1.
pub const NdkRoCE: NDK_RDMA_TECHNOLOGY = 3;
/// `RoCE` v2.
pub const NdkRoCEv2: NDK_RDMA_TECHNOLOGY = 4;
/// One past the last technology.
pub const NdkMaxTechnology: NDK_RDMA_TECHNOLOGY = 5;

// --- NdkArmCq Type (page nc-ndkpi-ndk_fn_arm_cq; values from the header copy) ---------------

/// Notify only on CQ errors (overrun, catastrophic failure).
pub const NDK_CQ_NOTIFY_ERRORS: ULONG = 0;
/// Notify on the next completion.
pub const NDK_CQ_NOTIFY_ANY: ULONG = 1;
/// Notify on a receive completion for a send carrying `NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT`;
/// error completions always count as solicited.
pub const NDK_CQ_NOTIFY_SOLICITED: ULONG = 2;

// --- NDK_OP_FLAG_* (initiator work-request flags; pages of each NDK_FN_* post function) -----

/// No CQ entry on success; an entry on failure.
pub const NDK_OP_FLAG_SILENT_SUCCESS: ULONG = 0x001;
/// Wait for prior reads to finish before starting.
pub const NDK_OP_FLAG_READ_FENCE: ULONG = 0x002;
/// The receiver's CQ fires a solicited notification (Send, `SendAndInvalidate`).
pub const NDK_OP_FLAG_SEND_AND_SOLICIT_EVENT: ULONG = 0x004;
/// Allow remote reads (Bind, `FastRegister`).
pub const NDK_OP_FLAG_ALLOW_REMOTE_READ: ULONG = 0x008;
/// Allow local writes (`FastRegister`).
pub const NDK_OP_FLAG_ALLOW_LOCAL_WRITE: ULONG = 0x010;
/// Allow remote writes; includes local write (Bind, `FastRegister`).
pub const NDK_OP_FLAG_ALLOW_REMOTE_WRITE: ULONG = 0x030;
/// Data is copied at post time; the SGE tokens are ignored (Send, `SendAndInvalidate`, Write).
pub const NDK_OP_FLAG_INLINE: ULONG = 0x040;
/// The region may be the sink of an RDMA read (`FastRegister`; value from the header copy).
pub const NDK_OP_FLAG_RDMA_READ_SINK: ULONG = 0x080;
/// NDKPI 1.2: invalidate the local region when a read completes. The documentation page prints
/// 0x200, which collides with `NDK_OP_FLAG_DEFER`; the header copy's 0x100 is used here.
pub const NDK_OP_FLAG_RDMA_READ_LOCAL_INVALIDATE: ULONG = 0x100;
/// NDKPI 1.2: a hint that more requests follow; the provider may delay ringing the doorbell.
pub const NDK_OP_FLAG_DEFER: ULONG = 0x200;

// --- NDK_MR_FLAG_* (page nc-ndkpi-ndk_fn_register_mr) ---------------------------------------

/// Local read access (always granted).
pub const NDK_MR_FLAG_ALLOW_LOCAL_READ: ULONG = 0x0;
/// Local write access.
pub const NDK_MR_FLAG_ALLOW_LOCAL_WRITE: ULONG = 0x1;
/// Remote read access.
pub const NDK_MR_FLAG_ALLOW_REMOTE_READ: ULONG = 0x2;
/// Remote write access (implies local write).
pub const NDK_MR_FLAG_ALLOW_REMOTE_WRITE: ULONG = 0x5;
/// The region may be the sink of an RDMA read.
pub const NDK_MR_FLAG_RDMA_READ_SINK: ULONG = 0x8;

// --- NDK_ADAPTER_FLAG_* (NDK_ADAPTER_INFO.AdapterFlags) -------------------------------------

/// DMA is performed in order.
pub const NDK_ADAPTER_FLAG_IN_ORDER_DMA_SUPPORTED: ULONG = 0x1;
/// `NDK_OP_FLAG_RDMA_READ_SINK` is not needed.
pub const NDK_ADAPTER_FLAG_RDMA_READ_SINK_NOT_REQUIRED: ULONG = 0x2;
/// `NdkControlCqInterruptModeration` is supported.
pub const NDK_ADAPTER_FLAG_CQ_INTERRUPT_MODERATION_SUPPORTED: ULONG = 0x4;
/// The adapter has several engines.
pub const NDK_ADAPTER_FLAG_MULTI_ENGINE_SUPPORTED: ULONG = 0x8;
/// NDKPI 1.2: `NDK_OP_FLAG_RDMA_READ_LOCAL_INVALIDATE` is supported.
pub const NDK_ADAPTER_FLAG_RDMA_READ_LOCAL_INVALIDATE_SUPPORTED: ULONG = 0x10;
/// `NdkResizeCq` is supported.
pub const NDK_ADAPTER_FLAG_CQ_RESIZE_SUPPORTED: ULONG = 0x100;
/// Connections to an address of the same adapter are supported.
pub const NDK_ADAPTER_FLAG_LOOPBACK_CONNECTIONS_SUPPORTED: ULONG = 0x10000;
