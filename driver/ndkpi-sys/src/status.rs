//! NTSTATUS values used by NDKPI and by ndkdisc (fact sheet §9; hex values from
//! `ntstatus.h`). The "where" note says which NDK calls document each code.

#![expect(
    clippy::unreadable_literal,
    reason = "hex values exactly as printed in ntstatus.h"
)]

use crate::types::NTSTATUS;

/// `STATUS_SUCCESS` (0x00000000): everywhere.
pub const STATUS_SUCCESS: NTSTATUS = 0x00000000;
/// `STATUS_TIMEOUT` (0x00000102): (success code; not NDK).
pub const STATUS_TIMEOUT: NTSTATUS = 0x00000102;
/// `STATUS_PENDING` (0x00000103): async start.
pub const STATUS_PENDING: NTSTATUS = 0x00000103;
/// `STATUS_BUFFER_OVERFLOW` (0x80000005): `CqStatus`: CQ overrun; `WskControlClient` output too small.
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = 0x80000005_u32.cast_signed();
/// `STATUS_UNSUCCESSFUL` (0xC0000001): generic.
pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC0000001_u32.cast_signed();
/// `STATUS_NOT_IMPLEMENTED` (0xC0000002): generic.
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = 0xC0000002_u32.cast_signed();
/// `STATUS_ACCESS_VIOLATION` (0xC0000005): Bind, `FastRegister`.
pub const STATUS_ACCESS_VIOLATION: NTSTATUS = 0xC0000005_u32.cast_signed();
/// `STATUS_INVALID_HANDLE` (0xC0000008): generic.
pub const STATUS_INVALID_HANDLE: NTSTATUS = 0xC0000008_u32.cast_signed();
/// `STATUS_INVALID_PARAMETER` (0xC000000D): `CreateCq`/Qp/Srq, `ModifySrq`, `ResizeCq`, `RegisterMr`, `BuildLam`.
pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000000D_u32.cast_signed();
/// `STATUS_INVALID_DEVICE_REQUEST` (0xC0000010): generic.
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC0000010_u32.cast_signed();
/// `STATUS_NO_MEMORY` (0xC0000017): generic.
pub const STATUS_NO_MEMORY: NTSTATUS = 0xC0000017_u32.cast_signed();
/// `STATUS_ACCESS_DENIED` (0xC0000022): generic.
pub const STATUS_ACCESS_DENIED: NTSTATUS = 0xC0000022_u32.cast_signed();
/// `STATUS_BUFFER_TOO_SMALL` (0xC0000023): `QueryAdapterInfo`, `GetConnectionData`, address getters, `BuildLam`.
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC0000023_u32.cast_signed();
/// `STATUS_INVALID_PARAMETER_MIX` (0xC0000030): `ControlCqInterruptModeration`.
pub const STATUS_INVALID_PARAMETER_MIX: NTSTATUS = 0xC0000030_u32.cast_signed();
/// `STATUS_DATA_OVERRUN` (0xC000003C): not named by NDK docs (user-mode `ND_DATA_OVERRUN` = receive buffer too small; plausible CQ status, I).
pub const STATUS_DATA_OVERRUN: NTSTATUS = 0xC000003C_u32.cast_signed();
/// `STATUS_DATA_ERROR` (0xC000003E): generic.
pub const STATUS_DATA_ERROR: NTSTATUS = 0xC000003E_u32.cast_signed();
/// `STATUS_SHARING_VIOLATION` (0xC0000043): Listen, Connect, `CreateSharedEndpoint`.
pub const STATUS_SHARING_VIOLATION: NTSTATUS = 0xC0000043_u32.cast_signed();
/// `STATUS_INSUFFICIENT_RESOURCES` (0xC000009A): most creates/requests (= `NDIS_STATUS_RESOURCES`).
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000009A_u32.cast_signed();
/// `STATUS_DEVICE_NOT_READY` (0xC00000A3): `WskCaptureProviderNPI`.
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = 0xC00000A3_u32.cast_signed();
/// `STATUS_IO_TIMEOUT` (0xC00000B5): Connect, `CompleteConnect`, Accept, Disconnect.
pub const STATUS_IO_TIMEOUT: NTSTATUS = 0xC00000B5_u32.cast_signed();
/// `STATUS_NOT_SUPPORTED` (0xC00000BB): `QueryExtension`, `ControlCqInterruptModeration`.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC00000BB_u32.cast_signed();
/// `STATUS_ADAPTER_HARDWARE_ERROR` (0xC00000C2): generic.
pub const STATUS_ADAPTER_HARDWARE_ERROR: NTSTATUS = 0xC00000C2_u32.cast_signed();
/// `STATUS_INTERNAL_ERROR` (0xC00000E5): `CqStatus` / `SrqStatus` fatal.
pub const STATUS_INTERNAL_ERROR: NTSTATUS = 0xC00000E5_u32.cast_signed();
/// `STATUS_CANCELLED` (0xC0000120): flushed WRs.
pub const STATUS_CANCELLED: NTSTATUS = 0xC0000120_u32.cast_signed();
/// `STATUS_LOCAL_DISCONNECT` (0xC000013B): not NDK.
pub const STATUS_LOCAL_DISCONNECT: NTSTATUS = 0xC000013B_u32.cast_signed();
/// `STATUS_REMOTE_DISCONNECT` (0xC000013C): not NDK.
pub const STATUS_REMOTE_DISCONNECT: NTSTATUS = 0xC000013C_u32.cast_signed();
/// `STATUS_REMOTE_RESOURCES` (0xC000013D): Read beyond remote region.
pub const STATUS_REMOTE_RESOURCES: NTSTATUS = 0xC000013D_u32.cast_signed();
/// `STATUS_LINK_FAILED` (0xC000013E): not NDK.
pub const STATUS_LINK_FAILED: NTSTATUS = 0xC000013E_u32.cast_signed();
/// `STATUS_LINK_TIMEOUT` (0xC000013F): not NDK.
pub const STATUS_LINK_TIMEOUT: NTSTATUS = 0xC000013F_u32.cast_signed();
/// `STATUS_INVALID_CONNECTION` (0xC0000140): not NDK (different from `CONNECTION_INVALID`).
pub const STATUS_INVALID_CONNECTION: NTSTATUS = 0xC0000140_u32.cast_signed();
/// `STATUS_INVALID_ADDRESS` (0xC0000141): Listen, Connect, `CreateSharedEndpoint`.
pub const STATUS_INVALID_ADDRESS: NTSTATUS = 0xC0000141_u32.cast_signed();
/// `STATUS_INVALID_DEVICE_STATE` (0xC0000184): not named by NDK docs (S returns it from its own socket layer).
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = 0xC0000184_u32.cast_signed();
/// `STATUS_INVALID_BUFFER_SIZE` (0xC0000206): generic.
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = 0xC0000206_u32.cast_signed();
/// `STATUS_TOO_MANY_ADDRESSES` (0xC0000209): Listen, Connect, `CreateSharedEndpoint`.
pub const STATUS_TOO_MANY_ADDRESSES: NTSTATUS = 0xC0000209_u32.cast_signed();
/// `STATUS_ADDRESS_ALREADY_EXISTS` (0xC000020A): Connect.
pub const STATUS_ADDRESS_ALREADY_EXISTS: NTSTATUS = 0xC000020A_u32.cast_signed();
/// `STATUS_CONNECTION_DISCONNECTED` (0xC000020C): not named by NDK docs (see §8.4 #14).
pub const STATUS_CONNECTION_DISCONNECTED: NTSTATUS = 0xC000020C_u32.cast_signed();
/// `STATUS_CONNECTION_RESET` (0xC000020D): not named by NDK docs.
pub const STATUS_CONNECTION_RESET: NTSTATUS = 0xC000020D_u32.cast_signed();
/// `STATUS_NOT_FOUND` (0xC0000225): generic.
pub const STATUS_NOT_FOUND: NTSTATUS = 0xC0000225_u32.cast_signed();
/// `STATUS_RETRY` (0xC000022D): generic.
pub const STATUS_RETRY: NTSTATUS = 0xC000022D_u32.cast_signed();
/// `STATUS_CONNECTION_REFUSED` (0xC0000236): Connect.
pub const STATUS_CONNECTION_REFUSED: NTSTATUS = 0xC0000236_u32.cast_signed();
/// `STATUS_GRACEFUL_DISCONNECT` (0xC0000237): not NDK.
pub const STATUS_GRACEFUL_DISCONNECT: NTSTATUS = 0xC0000237_u32.cast_signed();
/// `STATUS_ADDRESS_ALREADY_ASSOCIATED` (0xC0000238): not NDK.
pub const STATUS_ADDRESS_ALREADY_ASSOCIATED: NTSTATUS = 0xC0000238_u32.cast_signed();
/// `STATUS_CONNECTION_INVALID` (0xC000023A): `CompleteConnect`; WR posts on unconnected QP.
pub const STATUS_CONNECTION_INVALID: NTSTATUS = 0xC000023A_u32.cast_signed();
/// `STATUS_CONNECTION_ACTIVE` (0xC000023B): not named by NDK docs.
pub const STATUS_CONNECTION_ACTIVE: NTSTATUS = 0xC000023B_u32.cast_signed();
/// `STATUS_NETWORK_UNREACHABLE` (0xC000023C): Connect.
pub const STATUS_NETWORK_UNREACHABLE: NTSTATUS = 0xC000023C_u32.cast_signed();
/// `STATUS_HOST_UNREACHABLE` (0xC000023D): Connect.
pub const STATUS_HOST_UNREACHABLE: NTSTATUS = 0xC000023D_u32.cast_signed();
/// `STATUS_PROTOCOL_UNREACHABLE` (0xC000023E): not NDK.
pub const STATUS_PROTOCOL_UNREACHABLE: NTSTATUS = 0xC000023E_u32.cast_signed();
/// `STATUS_PORT_UNREACHABLE` (0xC000023F): not NDK.
pub const STATUS_PORT_UNREACHABLE: NTSTATUS = 0xC000023F_u32.cast_signed();
/// `STATUS_REQUEST_ABORTED` (0xC0000240): not NDK.
pub const STATUS_REQUEST_ABORTED: NTSTATUS = 0xC0000240_u32.cast_signed();
/// `STATUS_CONNECTION_ABORTED` (0xC0000241): `CompleteConnect`, Accept, Reject.
pub const STATUS_CONNECTION_ABORTED: NTSTATUS = 0xC0000241_u32.cast_signed();
/// `STATUS_DEVICE_REMOVED` (0xC00002B6): not named by NDK docs (user-mode `ND_DEVICE_REMOVED`).
pub const STATUS_DEVICE_REMOVED: NTSTATUS = 0xC00002B6_u32.cast_signed();
/// `STATUS_NOINTERFACE` (0xC00002B9): `WskCaptureProviderNPI` (version).
pub const STATUS_NOINTERFACE: NTSTATUS = 0xC00002B9_u32.cast_signed();
/// `STATUS_IMPLEMENTATION_LIMIT` (0xC000042B): `InitializeFastRegisterMr`.
pub const STATUS_IMPLEMENTATION_LIMIT: NTSTATUS = 0xC000042B_u32.cast_signed();
/// `STATUS_NDIS_BAD_VERSION` (0xC0230004): NTSTATUS form.
pub const STATUS_NDIS_BAD_VERSION: NTSTATUS = 0xC0230004_u32.cast_signed();
/// `STATUS_NDIS_ADAPTER_NOT_READY` (0xC0230011): NTSTATUS form.
pub const STATUS_NDIS_ADAPTER_NOT_READY: NTSTATUS = 0xC0230011_u32.cast_signed();
/// `NDIS_STATUS_SUCCESS` (0x00000000): `OPEN_NDK_ADAPTER_HANDLER`.
pub const NDIS_STATUS_SUCCESS: NTSTATUS = 0x00000000;
/// `NDIS_STATUS_RESOURCES` (0xC000009A): `OPEN_NDK_ADAPTER_HANDLER`.
pub const NDIS_STATUS_RESOURCES: NTSTATUS = 0xC000009A_u32.cast_signed();
/// `NDIS_STATUS_BAD_VERSION` (0xC0010004): value from mingw `ddk/ndis.h`; a modern WDK may use the `STATUS_NDIS_`* form (unconfirmed).
pub const NDIS_STATUS_BAD_VERSION: NTSTATUS = 0xC0010004_u32.cast_signed();
/// `NDIS_STATUS_ADAPTER_NOT_READY` (0xC0010011): value from mingw `ddk/ndis.h`; a modern WDK may use the `STATUS_NDIS_`* form (unconfirmed).
pub const NDIS_STATUS_ADAPTER_NOT_READY: NTSTATUS = 0xC0010011_u32.cast_signed();
