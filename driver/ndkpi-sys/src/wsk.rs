//! How a kernel consumer obtains an [`NDK_ADAPTER`]: the WSK NDK extension (`wskndk.h`), the
//! parts of `wsk.h` it needs, and the NDIS-side open (`ndisndk.h`).
//!
//! `wskndk.h` is not documented on learn.microsoft.com; its layout comes from copies of the header
//! published with the WDK. The sequence a consumer follows: `WskRegister` ->
//! `WskCaptureProviderNPI` -> `WskControlClient(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH)` to fill a
//! [`WSK_PROVIDER_NDK_DISPATCH`] -> `WskOpenNdkAdapter(client, version, ifindex, &adapter)`;
//! teardown closes every NDK object, then `WskCloseNdkAdapter`, `WskReleaseProviderNPI`,
//! `WskDeregister`.

use core::ffi::c_void;

use crate::types::{
    KSPIN_LOCK, NDK_ADAPTER, NDK_VERSION, NET_IFINDEX, NTSTATUS, PVOID, SIZE_T, ULONG,
};

/// `PWSK_CLIENT`: an opaque handle to the WSK client, from [`WSK_PROVIDER_NPI::Client`].
pub type PWSK_CLIENT = *mut c_void;
/// `PIRP`: opaque here.
pub type PIRP = *mut c_void;
/// `NDIS_HANDLE`.
pub type NDIS_HANDLE = *mut c_void;
/// `NDIS_STATUS` (an NTSTATUS-sized code).
pub type NDIS_STATUS = i32;

/// `MAKE_WSK_VERSION(major, minor)`.
pub const fn MAKE_WSK_VERSION(major: u8, minor: u8) -> u16 {
    ((major as u16) << 8) | minor as u16
}
/// `WSK_NO_WAIT`: `WskCaptureProviderNPI` returns at once (callable at <= DISPATCH).
pub const WSK_NO_WAIT: ULONG = 0;
/// `WSK_INFINITE_WAIT`.
pub const WSK_INFINITE_WAIT: ULONG = 0xFFFF_FFFF;
/// `WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH`: the `WskControlClient` code `(ULONG)'NDKD'` that
/// returns a [`WSK_PROVIDER_NDK_DISPATCH`].
pub const WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH: ULONG = 0x4E44_4B44;

ndk_fn!(
    /// `PFN_WSK_NDK_OPEN_ADAPTER` (`WskOpenNdkAdapter`): open the NDK adapter of the interface
    /// `IfIndex` at the requested NDKPI version. `PASSIVE_LEVEL`.
    PFN_WSK_NDK_OPEN_ADAPTER = fn(Client: PWSK_CLIENT, NdkVersion: NDK_VERSION, IfIndex: NET_IFINDEX, ppNdkAdapter: *mut *mut NDK_ADAPTER) -> NTSTATUS
);
ndk_fn!(
    /// `PFN_WSK_NDK_CLOSE_ADAPTER` (`WskCloseNdkAdapter`): blocking close of the adapter;
    /// every callback of every descendant object has returned when it returns. `PASSIVE_LEVEL`;
    /// never from a callback.
    PFN_WSK_NDK_CLOSE_ADAPTER = fn(Client: PWSK_CLIENT, pNdkAdapter: *mut NDK_ADAPTER)
);

/// `WSK_PROVIDER_NDK_DISPATCH` (`wskndk.h`): the two entry points of the WSK NDK extension.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_NDK_DISPATCH {
    /// Opens an adapter.
    pub WskOpenNdkAdapter: PFN_WSK_NDK_OPEN_ADAPTER,
    /// Closes an adapter.
    pub WskCloseNdkAdapter: PFN_WSK_NDK_CLOSE_ADAPTER,
}
layout!(WSK_PROVIDER_NDK_DISPATCH, size 0x10; WskCloseNdkAdapter @ 0x08);

ndk_fn!(
    /// `PFN_WSK_CLIENT_EVENT` (`nc-wsk-pfn_wsk_client_event`).
    PFN_WSK_CLIENT_EVENT = fn(ClientContext: PVOID, EventType: ULONG, Information: PVOID, InformationLength: SIZE_T) -> NTSTATUS
);

/// `WSK_CLIENT_DISPATCH` (`ns-wsk-_wsk_client_dispatch`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_DISPATCH {
    /// `MAKE_WSK_VERSION(major, minor)`.
    pub Version: u16,
    /// Must be zero.
    pub Reserved: u16,
    /// Optional event callback.
    pub WskClientEvent: PFN_WSK_CLIENT_EVENT,
}
layout!(WSK_CLIENT_DISPATCH, size 16; WskClientEvent @ 8);

/// `WSK_CLIENT_NPI` (`ns-wsk-_wsk_client_npi`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_NPI {
    /// Passed back to the client's event callback.
    pub ClientContext: PVOID,
    /// The client's dispatch table.
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}
layout!(WSK_CLIENT_NPI, size 16; Dispatch @ 8);

/// `WSK_REGISTRATION` (`ns-wsk-_wsk_registration`): opaque; must stay allocated until
/// `WskDeregister` returns.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_REGISTRATION {
    /// Reserved.
    pub ReservedRegistrationState: u64,
    /// Reserved.
    pub ReservedRegistrationContext: PVOID,
    /// Reserved.
    pub ReservedRegistrationLock: KSPIN_LOCK,
}
layout!(WSK_REGISTRATION, size 24; ReservedRegistrationContext @ 8, ReservedRegistrationLock @ 16);

/// A `WSK_PROVIDER_DISPATCH` member whose signature ndkdisc does not bind. It is a raw pointer,
/// not a function type, so it cannot be called by mistake.
pub type WSK_UNBOUND_FN = *const c_void;

ndk_fn!(
    /// `PFN_WSK_CONTROL_CLIENT` (`nc-wsk-pfn_wsk_control_client`). Synchronous when `Irp` is
    /// NULL.
    PFN_WSK_CONTROL_CLIENT = fn(Client: PWSK_CLIENT, ControlCode: ULONG, InputSize: SIZE_T, InputBuffer: PVOID, OutputSize: SIZE_T, OutputBuffer: PVOID, OutputSizeReturned: *mut SIZE_T, Irp: PIRP) -> NTSTATUS
);

/// `WSK_PROVIDER_DISPATCH` (`ns-wsk-_wsk_provider_dispatch`). Function pointers start at
/// offset 8.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_DISPATCH {
    /// WSK version of the provider.
    pub Version: u16,
    /// Reserved.
    pub Reserved: u16,
    /// `WskSocket` (not bound).
    pub WskSocket: WSK_UNBOUND_FN,
    /// `WskSocketConnect` (not bound).
    pub WskSocketConnect: WSK_UNBOUND_FN,
    /// `WskControlClient`.
    pub WskControlClient: PFN_WSK_CONTROL_CLIENT,
    /// `WskGetAddressInfo` (not bound; Windows 7 and later).
    pub WskGetAddressInfo: WSK_UNBOUND_FN,
    /// `WskFreeAddressInfo` (not bound; Windows 7 and later).
    pub WskFreeAddressInfo: WSK_UNBOUND_FN,
    /// `WskGetNameInfo` (not bound; Windows 7 and later).
    pub WskGetNameInfo: WSK_UNBOUND_FN,
}
layout!(WSK_PROVIDER_DISPATCH, size 0x38; WskSocket @ 0x08, WskSocketConnect @ 0x10,
    WskControlClient @ 0x18, WskGetAddressInfo @ 0x20, WskFreeAddressInfo @ 0x28,
    WskGetNameInfo @ 0x30);

/// `WSK_PROVIDER_NPI` (`ns-wsk-_wsk_provider_npi`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_NPI {
    /// The client handle to pass to provider functions.
    pub Client: PWSK_CLIENT,
    /// The provider's dispatch table.
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}
layout!(WSK_PROVIDER_NPI, size 16; Dispatch @ 8);

// The WSK registration functions exported by `netio.sys` (import library `netio.lib`; the
// driver crate links it on Windows). Declared for every target: only the KMDF shell calls them,
// and its host build (softwdf's tests) links softwdf's definitions instead.
unsafe extern "system" {
    /// `WskRegister` (`nf-wsk-wskregister`), `PASSIVE_LEVEL`.
    pub fn WskRegister(
        WskClientNpi: *mut WSK_CLIENT_NPI,
        WskRegistration: *mut WSK_REGISTRATION,
    ) -> NTSTATUS;
    /// `WskCaptureProviderNPI` (`nf-wsk-wskcaptureprovidernpi`): `PASSIVE_LEVEL` unless
    /// `WaitTimeout` is `WSK_NO_WAIT`.
    pub fn WskCaptureProviderNPI(
        WskRegistration: *mut WSK_REGISTRATION,
        WaitTimeout: ULONG,
        WskProviderNpi: *mut WSK_PROVIDER_NPI,
    ) -> NTSTATUS;
    /// `WskReleaseProviderNPI` (`nf-wsk-wskreleaseprovidernpi`), <= `DISPATCH_LEVEL`.
    pub fn WskReleaseProviderNPI(WskRegistration: *mut WSK_REGISTRATION);
    /// `WskDeregister` (`nf-wsk-wskderegister`), `PASSIVE_LEVEL`.
    pub fn WskDeregister(WskRegistration: *mut WSK_REGISTRATION);
}

/// `NDIS_OPEN_NDK_ADAPTER_PARAMETERS` (`ns-ndisndk-_ndis_open_ndk_adapter_parameters`);
/// `SwitchId` and `VPortId` only from NDIS 6.50.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NDIS_OPEN_NDK_ADAPTER_PARAMETERS {
    /// Requested NDKPI version.
    pub Version: NDK_VERSION,
    /// Hyper-V switch id (NDIS 6.50).
    pub SwitchId: ULONG,
    /// Virtual port id (NDIS 6.50).
    pub VPortId: ULONG,
}
layout!(NDIS_OPEN_NDK_ADAPTER_PARAMETERS, size 12; SwitchId @ 4, VPortId @ 8);

ndk_fn!(
    /// `OPEN_NDK_ADAPTER_HANDLER` (`nc-ndisndk-open_ndk_adapter_handler`), `PASSIVE_LEVEL`.
    OPEN_NDK_ADAPTER_HANDLER = fn(MiniportAdapterContext: NDIS_HANDLE, Parameters: *mut NDIS_OPEN_NDK_ADAPTER_PARAMETERS, ppNdkAdapter: *mut *mut NDK_ADAPTER) -> NDIS_STATUS
);
ndk_fn!(
    /// `CLOSE_NDK_ADAPTER_HANDLER` (`nc-ndisndk-close_ndk_adapter_handler`), `PASSIVE_LEVEL`.
    CLOSE_NDK_ADAPTER_HANDLER = fn(MiniportAdapterContext: NDIS_HANDLE, pNdkAdapter: *mut NDK_ADAPTER)
);

/// `NDIS_OBJECT_HEADER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NDIS_OBJECT_HEADER {
    /// Object type.
    pub Type: u8,
    /// Revision.
    pub Revision: u8,
    /// Size in bytes.
    pub Size: u16,
}
layout!(NDIS_OBJECT_HEADER, size 4);

/// `NDIS_NDK_PROVIDER_CHARACTERISTICS` (`ns-ndisndk-_ndis_ndk_provider_characteristics`),
/// revision 1.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NDIS_NDK_PROVIDER_CHARACTERISTICS {
    /// Type, revision and size.
    pub Header: NDIS_OBJECT_HEADER,
    /// Must be zero.
    pub Flags: ULONG,
    /// Opens an adapter.
    pub OpenNDKAdapterHandler: OPEN_NDK_ADAPTER_HANDLER,
    /// Closes an adapter.
    pub CloseNDKAdapterHandler: CLOSE_NDK_ADAPTER_HANDLER,
}
layout!(NDIS_NDK_PROVIDER_CHARACTERISTICS, size 24; Flags @ 4, OpenNDKAdapterHandler @ 8,
    CloseNDKAdapterHandler @ 16);
