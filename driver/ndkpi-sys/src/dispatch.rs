//! Every `NDK_FN_*` function-pointer type and the ten dispatch tables, members in header order
//! Each type names the documentation page it comes from
//! (`wdk-ddi-src/content/ndkpi/nc-ndkpi-ndk_fn_<name>.md`).
//!
//! IRQL: every function is callable at IRQL <= `DISPATCH_LEVEL` except `NdkQueryAdapterInfo`,
//! which requires `PASSIVE_LEVEL` and may block. Consumer callbacks run at <= `DISPATCH_LEVEL`.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

use crate::sockaddr::SOCKADDR;
use crate::types::{
    BOOLEAN, GROUP_AFFINITY, GUID, MDL, NDK_ADAPTER, NDK_ADAPTER_INFO, NDK_CONNECTOR, NDK_CQ,
    NDK_EXTENSION_INTERFACE, NDK_LISTENER, NDK_LOGICAL_ADDRESS, NDK_LOGICAL_ADDRESS_MAPPING,
    NDK_MR, NDK_MW, NDK_OBJECT_HEADER, NDK_PD, NDK_QP, NDK_RESULT, NDK_RESULT_EX, NDK_SGE,
    NDK_SHARED_ENDPOINT, NDK_SRQ, NDK_VERSION, NTSTATUS, PVOID, SIZE_T, ULONG,
};

// --- consumer-implemented callbacks ---------------------------------------

ndk_fn!(
    /// `NDK_FN_REQUEST_COMPLETION` (`nc-ndkpi-ndk_fn_request_completion`): completes a request
    /// that returned `STATUS_PENDING`, exactly once.
    NDK_FN_REQUEST_COMPLETION = fn(Context: PVOID, Status: NTSTATUS)
);
ndk_fn!(
    /// `NDK_FN_CREATE_COMPLETION` (`nc-ndkpi-ndk_fn_create_completion`): completes a pending
    /// create; the new object (or null on failure) arrives here.
    NDK_FN_CREATE_COMPLETION = fn(Context: PVOID, Status: NTSTATUS, pNdkObject: *mut NDK_OBJECT_HEADER)
);
ndk_fn!(
    /// `NDK_FN_CLOSE_COMPLETION` (`nc-ndkpi-ndk_fn_close_completion`): completes a pending
    /// close; the last callback ever made for that object.
    NDK_FN_CLOSE_COMPLETION = fn(Context: PVOID)
);
ndk_fn!(
    /// `NDK_FN_CQ_NOTIFICATION_CALLBACK` (`nc-ndkpi-ndk_fn_cq_notification_callback`): an armed
    /// CQ fired. `CqStatus` is `STATUS_SUCCESS`, `STATUS_BUFFER_OVERFLOW` (overrun: the CQ and
    /// its QPs are dead) or `STATUS_INTERNAL_ERROR` (fatal).
    NDK_FN_CQ_NOTIFICATION_CALLBACK = fn(CqNotificationContext: PVOID, CqStatus: NTSTATUS)
);
ndk_fn!(
    /// `NDK_FN_SRQ_NOTIFICATION_CALLBACK` (`nc-ndkpi-ndk_fn_srq_notification_callback`): queued
    /// SRQ receives dropped below the notify threshold, or the SRQ failed.
    NDK_FN_SRQ_NOTIFICATION_CALLBACK = fn(SrqNotificationContext: PVOID, SrqStatus: NTSTATUS)
);
ndk_fn!(
    /// `NDK_FN_CONNECT_EVENT_CALLBACK` (`nc-ndkpi-ndk_fn_connect_event_callback`): one call per
    /// incoming connection request; the connector is a new object owned by the consumer.
    NDK_FN_CONNECT_EVENT_CALLBACK = fn(ConnectEventContext: PVOID, pNdkConnector: *mut NDK_CONNECTOR)
);
ndk_fn!(
    /// `NDK_FN_DISCONNECT_EVENT_CALLBACK` (`nc-ndkpi-ndk_fn_disconnect_event_callback`): the peer
    /// disconnected or the connection was aborted; at most once per connection, never for the
    /// local side's own `NdkDisconnect` or close.
    NDK_FN_DISCONNECT_EVENT_CALLBACK = fn(DisconnectEventContext: PVOID)
);
ndk_fn!(
    /// `NDK_FN_DISCONNECT_EVENT_CALLBACK_EX` (`nc-ndkpi-ndk_fn_disconnect_event_callback_ex`,
    /// NDKPI 2.1): as the plain form, with a provider-specific reason (0 = not provided).
    NDK_FN_DISCONNECT_EVENT_CALLBACK_EX = fn(DisconnectEventContext: PVOID, ProviderDisconnectReason: ULONG)
);

// --- generic object functions --------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_CLOSE_OBJECT` (`nc-ndkpi-ndk_fn_close_object`): every `NdkClose*` slot.
    /// `STATUS_SUCCESS` = closed, no callback; `STATUS_PENDING` = `CloseCompletion` later.
    NDK_FN_CLOSE_OBJECT = fn(pNdkObject: *mut NDK_OBJECT_HEADER, CloseCompletion: NDK_FN_CLOSE_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_QUERY_EXTENSION_INTERFACE` (`nc-ndkpi-ndk_fn_query_extension_interface`). The
    /// version is passed by value.
    NDK_FN_QUERY_EXTENSION_INTERFACE = fn(pNdkObject: *mut NDK_OBJECT_HEADER, ExtensionInterfaceID: *const GUID, ExtensionInterfaceVersion: NDK_VERSION, pExtensionInterface: *mut NDK_EXTENSION_INTERFACE) -> NTSTATUS
);

// --- adapter functions ---------------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_QUERY_ADAPTER_INFO` (`nc-ndkpi-ndk_fn_query_adapter_info`). `PASSIVE_LEVEL` only;
    /// may block. `STATUS_BUFFER_TOO_SMALL` writes the required size to `*pBufferSize`.
    NDK_FN_QUERY_ADAPTER_INFO = fn(pNdkAdapter: *mut NDK_ADAPTER, pInfo: *mut NDK_ADAPTER_INFO, pBufferSize: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_CQ` (`nc-ndkpi-ndk_fn_create_cq`).
    NDK_FN_CREATE_CQ = fn(pNdkAdapter: *mut NDK_ADAPTER, CqDepth: ULONG, CqNotification: NDK_FN_CQ_NOTIFICATION_CALLBACK, CqNotificationContext: PVOID, Affinity: *mut GROUP_AFFINITY, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkCq: *mut *mut NDK_CQ) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_PD` (`nc-ndkpi-ndk_fn_create_pd`).
    NDK_FN_CREATE_PD = fn(pNdkAdapter: *mut NDK_ADAPTER, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkPd: *mut *mut NDK_PD) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_SHARED_ENDPOINT` (`nc-ndkpi-ndk_fn_create_shared_endpoint`).
    NDK_FN_CREATE_SHARED_ENDPOINT = fn(pNdkAdapter: *mut NDK_ADAPTER, pAddress: *const SOCKADDR, AddressLength: ULONG, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkSharedEndpoint: *mut *mut NDK_SHARED_ENDPOINT) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_CONNECTOR` (`nc-ndkpi-ndk_fn_create_connector`).
    NDK_FN_CREATE_CONNECTOR = fn(pNdkAdapter: *mut NDK_ADAPTER, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkConnector: *mut *mut NDK_CONNECTOR) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_LISTENER` (`nc-ndkpi-ndk_fn_create_listener`).
    NDK_FN_CREATE_LISTENER = fn(pNdkAdapter: *mut NDK_ADAPTER, ConnectEvent: NDK_FN_CONNECT_EVENT_CALLBACK, ConnectEventContext: PVOID, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkListener: *mut *mut NDK_LISTENER) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_BUILD_LAM` (`nc-ndkpi-ndk_fn_build_lam`): map a locked MDL to adapter logical
    /// addresses. `STATUS_BUFFER_TOO_SMALL` writes the required size to `*pLAMSize`.
    NDK_FN_BUILD_LAM = fn(pNdkAdapter: *mut NDK_ADAPTER, Mdl: *mut MDL, Length: SIZE_T, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID, pNdkLAM: *mut NDK_LOGICAL_ADDRESS_MAPPING, pLAMSize: *mut ULONG, pFBO: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_RELEASE_LAM` (`nc-ndkpi-ndk_fn_release_lam`): only after every request using the
    /// LAM completed.
    NDK_FN_RELEASE_LAM = fn(pNdkAdapter: *mut NDK_ADAPTER, pNdkLAM: *mut NDK_LOGICAL_ADDRESS_MAPPING)
);

// --- PD functions --------------------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_CREATE_MR` (`nc-ndkpi-ndk_fn_create_mr`).
    NDK_FN_CREATE_MR = fn(pNdkPd: *mut NDK_PD, FastRegister: BOOLEAN, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkMr: *mut *mut NDK_MR) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_MW` (`nc-ndkpi-ndk_fn_create_mw`).
    NDK_FN_CREATE_MW = fn(pNdkPd: *mut NDK_PD, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkMw: *mut *mut NDK_MW) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_SRQ` (`nc-ndkpi-ndk_fn_create_srq`).
    NDK_FN_CREATE_SRQ = fn(pNdkPd: *mut NDK_PD, SrqDepth: ULONG, MaxReceiveRequestSge: ULONG, NotifyThreshold: ULONG, SrqNotification: NDK_FN_SRQ_NOTIFICATION_CALLBACK, SrqNotificationContext: PVOID, Affinity: *mut GROUP_AFFINITY, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkSrq: *mut *mut NDK_SRQ) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_QP` (`nc-ndkpi-ndk_fn_create_qp`). The two CQs may be the same.
    NDK_FN_CREATE_QP = fn(pNdkPd: *mut NDK_PD, pReceiveCq: *mut NDK_CQ, pInitiatorCq: *mut NDK_CQ, QPContext: PVOID, ReceiveQueueDepth: ULONG, InitiatorQueueDepth: ULONG, MaxReceiveRequestSge: ULONG, MaxInitiatorRequestSge: ULONG, InlineDataSize: ULONG, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkQp: *mut *mut NDK_QP) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CREATE_QP_WITH_SRQ` (`nc-ndkpi-ndk_fn_create_qp_with_srq`).
    NDK_FN_CREATE_QP_WITH_SRQ = fn(pNdkPd: *mut NDK_PD, pReceiveCq: *mut NDK_CQ, pInitiatorCq: *mut NDK_CQ, pSrq: *mut NDK_SRQ, QPContext: PVOID, InitiatorQueueDepth: ULONG, MaxInitiatorRequestSge: ULONG, InlineDataSize: ULONG, CreateCompletion: NDK_FN_CREATE_COMPLETION, RequestContext: PVOID, ppNdkQp: *mut *mut NDK_QP) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_PRIVILEGED_MEMORY_REGION_TOKEN`
    /// (`nc-ndkpi-ndk_fn_get_privileged_memory_region_token`): a token granting local access to
    /// logical addresses (from a LAM); never remote access.
    NDK_FN_GET_PRIVILEGED_MEMORY_REGION_TOKEN = fn(pNdkPd: *mut NDK_PD, pToken: *mut u32)
);

// --- CQ functions --------------------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_RESIZE_CQ` (`nc-ndkpi-ndk_fn_resize_cq`); only with `CQ_RESIZE_SUPPORTED`.
    NDK_FN_RESIZE_CQ = fn(pNdkCq: *mut NDK_CQ, CqDepth: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_ARM_CQ` (`nc-ndkpi-ndk_fn_arm_cq`): `Type` is an `NDK_CQ_NOTIFY_*` value.
    NDK_FN_ARM_CQ = fn(pNdkCq: *mut NDK_CQ, Type: ULONG)
);
ndk_fn!(
    /// `NDK_FN_GET_CQ_RESULTS` (`nc-ndkpi-ndk_fn_get_cq_results`): returns the number of
    /// results dequeued (0 = empty).
    NDK_FN_GET_CQ_RESULTS = fn(pNdkCq: *mut NDK_CQ, Results: *mut NDK_RESULT, nResults: ULONG) -> ULONG
);
ndk_fn!(
    /// `NDK_FN_CONTROL_CQ_INTERRUPT_MODERATION`
    /// (`nc-ndkpi-ndk_fn_control_cq_interrupt_moderation`): never returns `STATUS_PENDING`.
    NDK_FN_CONTROL_CQ_INTERRUPT_MODERATION = fn(pNdkCq: *mut NDK_CQ, ModerationInterval: ULONG, ModerationCount: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_CQ_RESULTS_EX` (`nc-ndkpi-ndk_fn_get_cq_results_ex`, NDKPI 1.2).
    NDK_FN_GET_CQ_RESULTS_EX = fn(pNdkCq: *mut NDK_CQ, Results: *mut NDK_RESULT_EX, nResults: ULONG) -> ULONG
);

// --- QP functions: never STATUS_PENDING; results arrive as CQ entries ------------------

ndk_fn!(
    /// `NDK_FN_FLUSH` (`nc-ndkpi-ndk_fn_flush`): cancel everything pending on both queues; the
    /// requests complete with `STATUS_CANCELLED`.
    NDK_FN_FLUSH = fn(pNdkQp: *mut NDK_QP)
);
ndk_fn!(
    /// `NDK_FN_SEND` (`nc-ndkpi-ndk_fn_send`).
    NDK_FN_SEND = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_RECEIVE` (`nc-ndkpi-ndk_fn_receive`).
    NDK_FN_RECEIVE = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_BIND` (`nc-ndkpi-ndk_fn_bind`).
    NDK_FN_BIND = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pMr: *mut NDK_MR, pMw: *mut NDK_MW, VirtualAddress: PVOID, Length: SIZE_T, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_FAST_REGISTER` (`nc-ndkpi-ndk_fn_fast_register`).
    NDK_FN_FAST_REGISTER = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pMr: *mut NDK_MR, AdapterPageCount: ULONG, AdapterPageArray: *const NDK_LOGICAL_ADDRESS, FBO: ULONG, Length: SIZE_T, BaseVirtualAddress: PVOID, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_INVALIDATE` (`nc-ndkpi-ndk_fn_invalidate`).
    NDK_FN_INVALIDATE = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pNdkMrOrMw: *mut NDK_OBJECT_HEADER, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_READ` (`nc-ndkpi-ndk_fn_read`). `RemoteAddress` is in local host byte order.
    NDK_FN_READ = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG, RemoteAddress: u64, RemoteToken: u32, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_WRITE` (`nc-ndkpi-ndk_fn_write`). `RemoteAddress` is in local host byte order.
    NDK_FN_WRITE = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG, RemoteAddress: u64, RemoteToken: u32, Flags: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_SEND_AND_INVALIDATE` (`nc-ndkpi-ndk_fn_send_and_invalidate`, NDKPI 1.2). Note
    /// that `Flags` comes before `RemoteToken`.
    NDK_FN_SEND_AND_INVALIDATE = fn(pNdkQp: *mut NDK_QP, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG, Flags: ULONG, RemoteToken: u32) -> NTSTATUS
);

// --- SRQ, MR, MW and shared-endpoint functions ----------------------------------------

ndk_fn!(
    /// `NDK_FN_MODIFY_SRQ` (`nc-ndkpi-ndk_fn_modify_srq`): 0 keeps a value.
    NDK_FN_MODIFY_SRQ = fn(pNdkSrq: *mut NDK_SRQ, SrqDepth: ULONG, NotifyThreshold: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_SRQ_RECEIVE` (`nc-ndkpi-ndk_fn_srq_receive`).
    NDK_FN_SRQ_RECEIVE = fn(pNdkSrq: *mut NDK_SRQ, RequestContext: PVOID, pSgl: *const NDK_SGE, nSge: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_REGISTER_MR` (`nc-ndkpi-ndk_fn_register_mr`): `Flags` are `NDK_MR_FLAG_*`.
    NDK_FN_REGISTER_MR = fn(pNdkMr: *mut NDK_MR, Mdl: *mut MDL, Length: SIZE_T, Flags: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_DEREGISTER_MR` (`nc-ndkpi-ndk_fn_deregister_mr`).
    NDK_FN_DEREGISTER_MR = fn(pNdkMr: *mut NDK_MR, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_INITIALIZE_FAST_REGISTER_MR` (`nc-ndkpi-ndk_fn_initialize_fast_register_mr`).
    NDK_FN_INITIALIZE_FAST_REGISTER_MR = fn(pNdkMr: *mut NDK_MR, AdapterPageCount: ULONG, RemoteAccess: BOOLEAN, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_REMOTE_TOKEN_FROM_MR` (`nc-ndkpi-ndk_fn_get_remote_token_from_mr`).
    NDK_FN_GET_REMOTE_TOKEN_FROM_MR = fn(pNdkMr: *mut NDK_MR) -> u32
);
ndk_fn!(
    /// `NDK_FN_GET_LOCAL_TOKEN_FROM_MR` (`nc-ndkpi-ndk_fn_get_local_token_from_mr`).
    NDK_FN_GET_LOCAL_TOKEN_FROM_MR = fn(pNdkMr: *mut NDK_MR) -> u32
);
ndk_fn!(
    /// `NDK_FN_GET_REMOTE_TOKEN_FROM_MW` (`nc-ndkpi-ndk_fn_get_remote_token_from_mw`).
    NDK_FN_GET_REMOTE_TOKEN_FROM_MW = fn(pNdkMw: *mut NDK_MW) -> u32
);
ndk_fn!(
    /// `NDK_FN_GET_SHARED_ENDPOINT_LOCAL_ADDRESS`
    /// (`nc-ndkpi-ndk_fn_get_shared_endpoint_local_address`).
    NDK_FN_GET_SHARED_ENDPOINT_LOCAL_ADDRESS = fn(pNdkSharedEndpoint: *mut NDK_SHARED_ENDPOINT, pAddress: *mut SOCKADDR, pAddressLength: *mut ULONG) -> NTSTATUS
);

// --- connector functions -------------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_CONNECT` (`nc-ndkpi-ndk_fn_connect`): completes when the peer accepted (or
    /// failed / rejected: `STATUS_CONNECTION_REFUSED`).
    NDK_FN_CONNECT = fn(pNdkConnector: *mut NDK_CONNECTOR, pNdkQp: *mut NDK_QP, pSrcAddress: *const SOCKADDR, SrcAddressLength: ULONG, pDestAddress: *const SOCKADDR, DestAddressLength: ULONG, InboundReadLimit: ULONG, OutboundReadLimit: ULONG, pPrivateData: *const c_void, PrivateDataLength: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CONNECT_WITH_SHARED_ENDPOINT` (`nc-ndkpi-ndk_fn_connect_with_shared_endpoint`).
    NDK_FN_CONNECT_WITH_SHARED_ENDPOINT = fn(pNdkConnector: *mut NDK_CONNECTOR, pNdkQp: *mut NDK_QP, pNdkSharedEndpoint: *mut NDK_SHARED_ENDPOINT, pDestAddress: *const SOCKADDR, DestAddressLength: ULONG, InboundReadLimit: ULONG, OutboundReadLimit: ULONG, pPrivateData: *const c_void, PrivateDataLength: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_COMPLETE_CONNECT` (`nc-ndkpi-ndk_fn_complete_connect`): the active side's last
    /// step; registers the disconnect callback.
    NDK_FN_COMPLETE_CONNECT = fn(pNdkConnector: *mut NDK_CONNECTOR, DisconnectEvent: NDK_FN_DISCONNECT_EVENT_CALLBACK, DisconnectEventContext: PVOID, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_COMPLETE_CONNECT_EX` (`nc-ndkpi-ndk_fn_complete_connect_ex`, NDKPI 2.1).
    NDK_FN_COMPLETE_CONNECT_EX = fn(pNdkConnector: *mut NDK_CONNECTOR, DisconnectEvent: NDK_FN_DISCONNECT_EVENT_CALLBACK_EX, DisconnectEventContext: PVOID, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_ACCEPT` (`nc-ndkpi-ndk_fn_accept`): the passive side's step; registers the
    /// disconnect callback; completes after the active side's `NdkCompleteConnect`.
    NDK_FN_ACCEPT = fn(pNdkConnector: *mut NDK_CONNECTOR, pNdkQp: *mut NDK_QP, InboundReadLimit: ULONG, OutboundReadLimit: ULONG, pPrivateData: *const c_void, PrivateDataLength: ULONG, DisconnectEvent: NDK_FN_DISCONNECT_EVENT_CALLBACK, DisconnectEventContext: PVOID, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_ACCEPT_EX` (`nc-ndkpi-ndk_fn_accept_ex`, NDKPI 2.1).
    NDK_FN_ACCEPT_EX = fn(pNdkConnector: *mut NDK_CONNECTOR, pNdkQp: *mut NDK_QP, InboundReadLimit: ULONG, OutboundReadLimit: ULONG, pPrivateData: *const c_void, PrivateDataLength: ULONG, DisconnectEvent: NDK_FN_DISCONNECT_EVENT_CALLBACK_EX, DisconnectEventContext: PVOID, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_REJECT` (`nc-ndkpi-ndk_fn_reject`): synchronous.
    NDK_FN_REJECT = fn(pNdkConnector: *mut NDK_CONNECTOR, pPrivateData: *const c_void, PrivateDataLength: ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_CONNECTION_DATA` (`nc-ndkpi-ndk_fn_get_connection_data`): synchronous.
    NDK_FN_GET_CONNECTION_DATA = fn(pNdkConnector: *mut NDK_CONNECTOR, pInboundReadLimit: *mut ULONG, pOutboundReadLimit: *mut ULONG, pPrivateData: *mut c_void, pPrivateDataLength: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_LOCAL_ADDRESS` (`nc-ndkpi-ndk_fn_get_local_address`): synchronous.
    NDK_FN_GET_LOCAL_ADDRESS = fn(pNdkConnector: *mut NDK_CONNECTOR, pAddress: *mut SOCKADDR, pAddressLength: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_PEER_ADDRESS` (`nc-ndkpi-ndk_fn_get_peer_address`): synchronous.
    NDK_FN_GET_PEER_ADDRESS = fn(pNdkConnector: *mut NDK_CONNECTOR, pAddress: *mut SOCKADDR, pAddressLength: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_DISCONNECT` (`nc-ndkpi-ndk_fn_disconnect`): graceful disconnect; the provider
    /// flushes the QP implicitly once the transport completes it.
    NDK_FN_DISCONNECT = fn(pNdkConnector: *mut NDK_CONNECTOR, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);

// --- listener functions --------------------------------------------------------------

ndk_fn!(
    /// `NDK_FN_LISTEN` (`nc-ndkpi-ndk_fn_listen`).
    NDK_FN_LISTEN = fn(pNdkListener: *mut NDK_LISTENER, pAddress: *const SOCKADDR, AddressLength: ULONG, RequestCompletion: NDK_FN_REQUEST_COMPLETION, RequestContext: PVOID) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_GET_LISTENER_LOCAL_ADDRESS` (`nc-ndkpi-ndk_fn_get_listener_local_address`).
    NDK_FN_GET_LISTENER_LOCAL_ADDRESS = fn(pNdkListener: *mut NDK_LISTENER, pAddress: *mut SOCKADDR, pAddressLength: *mut ULONG) -> NTSTATUS
);
ndk_fn!(
    /// `NDK_FN_CONTROL_CONNECT_EVENTS` (`nc-ndkpi-ndk_fn_control_connect_events`): `Pause` =
    /// TRUE handles new requests as if nobody listened.
    NDK_FN_CONTROL_CONNECT_EVENTS = fn(pNdkListener: *mut NDK_LISTENER, Pause: BOOLEAN)
);

// --- dispatch tables -------------------------------------------------------------------

macro_rules! dispatch_table {
    ($(#[$doc:meta])* $name:ident, size = $size:expr, { $($(#[$fdoc:meta])* $field:ident: $ty:ty = $off:expr),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
        const _: () = assert!(size_of::<$name>() == $size);
        $(const _: () = assert!(offset_of!($name, $field) == $off);)*
    };
}

dispatch_table!(
    /// `NDK_ADAPTER_DISPATCH` (`ns-ndkpi-_ndk_adapter_dispatch`). There is no close entry: the
    /// adapter is closed by `WskCloseNdkAdapter` (or the NDIS close handler).
    NDK_ADAPTER_DISPATCH, size = 0x48, {
        /// Slot 0.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x00,
        /// Slot 1 (`PASSIVE_LEVEL`).
        NdkQueryAdapterInfo: NDK_FN_QUERY_ADAPTER_INFO = 0x08,
        /// Slot 2.
        NdkCreateCq: NDK_FN_CREATE_CQ = 0x10,
        /// Slot 3.
        NdkCreatePd: NDK_FN_CREATE_PD = 0x18,
        /// Slot 4.
        NdkCreateSharedEndpoint: NDK_FN_CREATE_SHARED_ENDPOINT = 0x20,
        /// Slot 5.
        NdkCreateConnector: NDK_FN_CREATE_CONNECTOR = 0x28,
        /// Slot 6.
        NdkCreateListener: NDK_FN_CREATE_LISTENER = 0x30,
        /// Slot 7.
        NdkBuildLAM: NDK_FN_BUILD_LAM = 0x38,
        /// Slot 8.
        NdkReleaseLAM: NDK_FN_RELEASE_LAM = 0x40,
    }
);

dispatch_table!(
    /// `NDK_PD_DISPATCH` (`ns-ndkpi-_ndk_pd_dispatch`).
    NDK_PD_DISPATCH, size = 0x40, {
        /// Slot 0.
        NdkClosePd: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkCreateMr: NDK_FN_CREATE_MR = 0x10,
        /// Slot 3.
        NdkCreateMw: NDK_FN_CREATE_MW = 0x18,
        /// Slot 4.
        NdkCreateSrq: NDK_FN_CREATE_SRQ = 0x20,
        /// Slot 5.
        NdkCreateQp: NDK_FN_CREATE_QP = 0x28,
        /// Slot 6.
        NdkCreateQpWithSrq: NDK_FN_CREATE_QP_WITH_SRQ = 0x30,
        /// Slot 7.
        NdkGetPrivilegedMemoryRegionToken: NDK_FN_GET_PRIVILEGED_MEMORY_REGION_TOKEN = 0x38,
    }
);

dispatch_table!(
    /// `NDK_CQ_DISPATCH` (`ns-ndkpi-_ndk_cq_dispatch`). Slot 6 exists from NDKPI 1.2 on.
    NDK_CQ_DISPATCH, size = 0x38, {
        /// Slot 0.
        NdkCloseCq: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkResizeCq: NDK_FN_RESIZE_CQ = 0x10,
        /// Slot 3.
        NdkArmCq: NDK_FN_ARM_CQ = 0x18,
        /// Slot 4.
        NdkGetCqResults: NDK_FN_GET_CQ_RESULTS = 0x20,
        /// Slot 5.
        NdkControlCqInterruptModeration: NDK_FN_CONTROL_CQ_INTERRUPT_MODERATION = 0x28,
        /// Slot 6 (NDKPI 1.2).
        NdkGetCqResultsEx: NDK_FN_GET_CQ_RESULTS_EX = 0x30,
    }
);

dispatch_table!(
    /// `NDK_QP_DISPATCH` (`ns-ndkpi-_ndk_qp_dispatch`). Slot 10 exists from NDKPI 1.2 on.
    NDK_QP_DISPATCH, size = 0x58, {
        /// Slot 0.
        NdkCloseQp: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkFlush: NDK_FN_FLUSH = 0x10,
        /// Slot 3.
        NdkSend: NDK_FN_SEND = 0x18,
        /// Slot 4.
        NdkReceive: NDK_FN_RECEIVE = 0x20,
        /// Slot 5.
        NdkBind: NDK_FN_BIND = 0x28,
        /// Slot 6.
        NdkFastRegister: NDK_FN_FAST_REGISTER = 0x30,
        /// Slot 7.
        NdkInvalidate: NDK_FN_INVALIDATE = 0x38,
        /// Slot 8.
        NdkRead: NDK_FN_READ = 0x40,
        /// Slot 9.
        NdkWrite: NDK_FN_WRITE = 0x48,
        /// Slot 10 (NDKPI 1.2).
        NdkSendAndInvalidate: NDK_FN_SEND_AND_INVALIDATE = 0x50,
    }
);

dispatch_table!(
    /// `NDK_SRQ_DISPATCH` (`ns-ndkpi-_ndk_srq_dispatch`).
    NDK_SRQ_DISPATCH, size = 0x20, {
        /// Slot 0.
        NdkCloseSrq: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkModifySrq: NDK_FN_MODIFY_SRQ = 0x10,
        /// Slot 3.
        NdkSrqReceive: NDK_FN_SRQ_RECEIVE = 0x18,
    }
);

dispatch_table!(
    /// `NDK_CONNECTOR_DISPATCH` (`ns-ndkpi-_ndk_connector_dispatch`): 0x58 bytes up to NDKPI
    /// 2.0; the two `Ex` members (slots 11, 12) exist from 2.1 on. This struct has the 2.1
    /// layout; read the `Ex` slots only when the adapter reports version >= 2.1.
    NDK_CONNECTOR_DISPATCH, size = 0x68, {
        /// Slot 0.
        NdkCloseConnector: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkConnect: NDK_FN_CONNECT = 0x10,
        /// Slot 3.
        NdkConnectWithSharedEndpoint: NDK_FN_CONNECT_WITH_SHARED_ENDPOINT = 0x18,
        /// Slot 4.
        NdkCompleteConnect: NDK_FN_COMPLETE_CONNECT = 0x20,
        /// Slot 5.
        NdkAccept: NDK_FN_ACCEPT = 0x28,
        /// Slot 6.
        NdkReject: NDK_FN_REJECT = 0x30,
        /// Slot 7.
        NdkGetConnectionData: NDK_FN_GET_CONNECTION_DATA = 0x38,
        /// Slot 8.
        NdkGetLocalAddress: NDK_FN_GET_LOCAL_ADDRESS = 0x40,
        /// Slot 9.
        NdkGetPeerAddress: NDK_FN_GET_PEER_ADDRESS = 0x48,
        /// Slot 10.
        NdkDisconnect: NDK_FN_DISCONNECT = 0x50,
        /// Slot 11 (NDKPI 2.1).
        NdkCompleteConnectEx: NDK_FN_COMPLETE_CONNECT_EX = 0x58,
        /// Slot 12 (NDKPI 2.1).
        NdkAcceptEx: NDK_FN_ACCEPT_EX = 0x60,
    }
);

/// Size of `NDK_CONNECTOR_DISPATCH` before NDKPI 2.1 (11 members).
pub const NDK_CONNECTOR_DISPATCH_V1_SIZE: usize = 0x58;

dispatch_table!(
    /// `NDK_LISTENER_DISPATCH` (`ns-ndkpi-_ndk_listener_dispatch`).
    NDK_LISTENER_DISPATCH, size = 0x28, {
        /// Slot 0.
        NdkCloseListener: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkListen: NDK_FN_LISTEN = 0x10,
        /// Slot 3.
        NdkGetLocalAddress: NDK_FN_GET_LISTENER_LOCAL_ADDRESS = 0x18,
        /// Slot 4.
        NdkControlConnectEvents: NDK_FN_CONTROL_CONNECT_EVENTS = 0x20,
    }
);

dispatch_table!(
    /// `NDK_SHARED_ENDPOINT_DISPATCH` (`ns-ndkpi-_ndk_shared_endpoint_dispatch`).
    NDK_SHARED_ENDPOINT_DISPATCH, size = 0x18, {
        /// Slot 0.
        NdkCloseSharedEndpoint: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkGetLocalAddress: NDK_FN_GET_SHARED_ENDPOINT_LOCAL_ADDRESS = 0x10,
    }
);

dispatch_table!(
    /// `NDK_MR_DISPATCH` (`ns-ndkpi-_ndk_mr_dispatch`).
    NDK_MR_DISPATCH, size = 0x38, {
        /// Slot 0.
        NdkCloseMr: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkRegisterMr: NDK_FN_REGISTER_MR = 0x10,
        /// Slot 3.
        NdkDeregisterMr: NDK_FN_DEREGISTER_MR = 0x18,
        /// Slot 4.
        NdkInitializeFastRegisterMr: NDK_FN_INITIALIZE_FAST_REGISTER_MR = 0x20,
        /// Slot 5.
        NdkGetRemoteTokenFromMr: NDK_FN_GET_REMOTE_TOKEN_FROM_MR = 0x28,
        /// Slot 6.
        NdkGetLocalTokenFromMr: NDK_FN_GET_LOCAL_TOKEN_FROM_MR = 0x30,
    }
);

dispatch_table!(
    /// `NDK_MW_DISPATCH` (`ns-ndkpi-_ndk_mw_dispatch`).
    NDK_MW_DISPATCH, size = 0x18, {
        /// Slot 0.
        NdkCloseMw: NDK_FN_CLOSE_OBJECT = 0x00,
        /// Slot 1.
        NdkQueryExtension: NDK_FN_QUERY_EXTENSION_INTERFACE = 0x08,
        /// Slot 2.
        NdkGetRemoteTokenFromMw: NDK_FN_GET_REMOTE_TOKEN_FROM_MW = 0x10,
    }
);
