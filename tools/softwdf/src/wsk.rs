//! The netio exports the shell imports: the WSK registration (`WskRegister`,
//! `WskCaptureProviderNPI`, `WskReleaseProviderNPI`, `WskDeregister`), the provider's
//! `WskControlClient` that gives the WSK NDK extension — softndk's, so every adapter the shell
//! opens is a softndk adapter on this machine's interface — and the unicast address table.
//!
//! WSK's documented rules checked (learn.microsoft.com, `nf-wsk-wskregister`,
//! `nf-wsk-wskcaptureprovidernpi`, `nf-wsk-wskreleaseprovidernpi`, `nf-wsk-wskderegister`):
//! capture only after register; every capture released before deregister (which otherwise
//! waits for ever); a registration left at unload. The address table must be freed with
//! `FreeMibTable` (`nf-netioapi-getunicastipaddresstable`).

use std::alloc::Layout;
use std::net::IpAddr;

use ndkpi_sys::{
    AF_INET, AF_INET6, MIB_UNICASTIPADDRESS_ROW, MIB_UNICASTIPADDRESS_TABLE, NtStatus, PIRP,
    PWSK_CLIENT, SIZE_T, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_INET, ULONG, WSK_CLIENT_NPI,
    WSK_PROVIDER_DISPATCH, WSK_PROVIDER_NDK_DISPATCH, WSK_PROVIDER_NPI, WSK_REGISTRATION,
    WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH,
};

use crate::kernel::{
    DISPATCH_LEVEL, PASSIVE_LEVEL, Rule, SendPtr, lock, require_irql, violation, violation_locked,
};
use crate::objects::{STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED};

/// The WSK registration.
#[derive(Default)]
pub(crate) struct WskState {
    registration: Option<usize>,
    captures: usize,
}

/// `WskRegister`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskRegister(
    client: *mut WSK_CLIENT_NPI,
    registration: *mut WSK_REGISTRATION,
) -> NtStatus {
    require_irql(PASSIVE_LEVEL, "WskRegister");
    if client.is_null() || registration.is_null() {
        return NtStatus(STATUS_INVALID_PARAMETER);
    }
    let mut k = lock();
    if k.wsk.registration.is_some() {
        violation_locked(
            &mut k,
            Rule::Registration,
            "WskRegister: already registered".into(),
        );
        return NtStatus(STATUS_INVALID_PARAMETER);
    }
    k.wsk.registration = Some(registration.addr());
    NtStatus::SUCCESS
}

/// The provider's dispatch table, in a static the captured NPI points at.
struct ProviderDispatch(WSK_PROVIDER_DISPATCH);

// SAFETY: never written; its pointers are null or functions.
unsafe impl Sync for ProviderDispatch {}

static PROVIDER_DISPATCH: ProviderDispatch = ProviderDispatch({
    let mut d = WSK_PROVIDER_DISPATCH {
        Version: 0x0100,
        Reserved: 0,
        WskSocket: std::ptr::null(),
        WskSocketConnect: std::ptr::null(),
        WskControlClient: Some(wsk_control_client),
        WskGetAddressInfo: std::ptr::null(),
        WskFreeAddressInfo: std::ptr::null(),
        WskGetNameInfo: std::ptr::null(),
    };
    d.Reserved = 0;
    d
});

/// `WskCaptureProviderNPI`: the provider (softwdf's dispatch, softndk's client).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskCaptureProviderNPI(
    registration: *mut WSK_REGISTRATION,
    wait: ULONG,
    provider: *mut WSK_PROVIDER_NPI,
) -> NtStatus {
    require_irql(
        if wait == 0 {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        },
        "WskCaptureProviderNPI",
    );
    let mut k = lock();
    if k.wsk.registration != Some(registration.addr()) || provider.is_null() {
        violation_locked(
            &mut k,
            Rule::Registration,
            "WskCaptureProviderNPI: not registered".into(),
        );
        return NtStatus(STATUS_INVALID_PARAMETER);
    }
    let Some(machine) = &k.machine else {
        return NtStatus(STATUS_NOT_SUPPORTED);
    };
    let client = machine.fabric.wsk_client();
    k.wsk.captures += 1;
    // SAFETY: valid for writes (contract).
    unsafe {
        provider.write(WSK_PROVIDER_NPI {
            Client: client,
            Dispatch: &raw const PROVIDER_DISPATCH.0,
        });
    }
    NtStatus::SUCCESS
}

/// `WskControlClient` (the provider's): `WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH` gives softndk's
/// WSK NDK dispatch, unless the machine has no NDK (`STATUS_NOT_SUPPORTED`). Synchronous only.
unsafe extern "system" fn wsk_control_client(
    _client: PWSK_CLIENT,
    code: ULONG,
    _input_size: SIZE_T,
    _input: *mut std::ffi::c_void,
    output_size: SIZE_T,
    output: *mut std::ffi::c_void,
    _returned: *mut SIZE_T,
    irp: PIRP,
) -> NtStatus {
    if !irp.is_null() {
        violation(Rule::Unimplemented, "WskControlClient with an IRP".into());
        return NtStatus(STATUS_NOT_SUPPORTED);
    }
    if code != WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH {
        return NtStatus(STATUS_NOT_SUPPORTED);
    }
    let dispatch = {
        let k = lock();
        match &k.machine {
            Some(m) if m.ndk => *m.fabric.wsk_dispatch(),
            _ => return NtStatus(STATUS_NOT_SUPPORTED),
        }
    };
    if output.is_null() || output_size < size_of::<WSK_PROVIDER_NDK_DISPATCH>() {
        return NtStatus(STATUS_BUFFER_TOO_SMALL);
    }
    // SAFETY: `output_size` writable bytes at `output` (contract), enough for the dispatch.
    unsafe {
        output
            .cast::<WSK_PROVIDER_NDK_DISPATCH>()
            .write_unaligned(dispatch);
    };
    NtStatus::SUCCESS
}

/// `WskReleaseProviderNPI`: <= DISPATCH_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION) {
    require_irql(DISPATCH_LEVEL, "WskReleaseProviderNPI");
    let mut k = lock();
    if k.wsk.registration != Some(registration.addr()) || k.wsk.captures == 0 {
        violation_locked(
            &mut k,
            Rule::Registration,
            "WskReleaseProviderNPI: nothing captured".into(),
        );
        return;
    }
    k.wsk.captures -= 1;
}

/// `WskDeregister`: waits for every capture to be released (here: a capture left is a
/// violation, as the real call would never return).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WskDeregister(registration: *mut WSK_REGISTRATION) {
    require_irql(PASSIVE_LEVEL, "WskDeregister");
    let mut k = lock();
    if k.wsk.registration != Some(registration.addr()) {
        violation_locked(
            &mut k,
            Rule::Registration,
            "WskDeregister: not registered".into(),
        );
        return;
    }
    if k.wsk.captures != 0 {
        let n = k.wsk.captures;
        violation_locked(
            &mut k,
            Rule::Registration,
            format!("WskDeregister with {n} capture(s) not released: it would wait for ever"),
        );
    }
    k.wsk = WskState::default();
}

/// A unicast address as the table's `SOCKADDR_INET`.
fn inet(address: IpAddr) -> SOCKADDR_INET {
    match address {
        IpAddr::V4(a) => SOCKADDR_INET {
            Ipv4: SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: 0,
                sin_addr: ndkpi_sys::IN_ADDR { S_un: a.octets() },
                sin_zero: [0; 8],
            },
        },
        IpAddr::V6(a) => SOCKADDR_INET {
            Ipv6: SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: ndkpi_sys::IN6_ADDR { u: a.octets() },
                sin6_scope_id: 0,
            },
        },
    }
}

/// `GetUnicastIpAddressTable`: this machine's addresses on its interface. PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetUnicastIpAddressTable(
    _family: u16,
    table: *mut *mut MIB_UNICASTIPADDRESS_TABLE,
) -> NtStatus {
    if !require_irql(PASSIVE_LEVEL, "GetUnicastIpAddressTable") || table.is_null() {
        return NtStatus(STATUS_INVALID_PARAMETER);
    }
    let mut k = lock();
    let (if_index, addresses) = match &k.machine {
        Some(m) => (m.if_index, m.addresses.clone()),
        None => (0, Vec::new()),
    };
    let rows = addresses.len().max(1);
    let size = std::mem::offset_of!(MIB_UNICASTIPADDRESS_TABLE, Table)
        + rows * size_of::<MIB_UNICASTIPADDRESS_ROW>();
    let layout = Layout::from_size_align(size, 8).expect("a table layout");
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!p.is_null(), "softwdf: out of memory for an address table");
    let count = u32::try_from(addresses.len()).unwrap_or(0);
    // SAFETY: the allocation starts with the table's ULONG count (aligned to 8).
    unsafe { p.cast::<u32>().write_unaligned(count) };
    let table_at = std::mem::offset_of!(MIB_UNICASTIPADDRESS_TABLE, Table);
    for (i, a) in addresses.iter().enumerate() {
        let row = MIB_UNICASTIPADDRESS_ROW {
            Address: inet(*a),
            InterfaceLuid: 0,
            InterfaceIndex: if_index,
            PrefixOrigin: 0,
            SuffixOrigin: 0,
            ValidLifetime: u32::MAX,
            PreferredLifetime: u32::MAX,
            OnLinkPrefixLength: 24,
            SkipAsSource: 0,
            DadState: 4,
            ScopeId: 0,
            CreationTimeStamp: 0,
        };
        // SAFETY: row `i` < `rows` lies inside the allocation, whose rows start at `Table`.
        let at = unsafe { p.add(table_at + i * size_of::<MIB_UNICASTIPADDRESS_ROW>()) };
        // SAFETY: in bounds (above); written whole.
        unsafe { at.cast::<MIB_UNICASTIPADDRESS_ROW>().write_unaligned(row) };
    }
    k.tables.insert(p.addr(), (SendPtr(p), layout));
    // SAFETY: valid for writes (contract).
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "allocated with the table's alignment (8)"
    )]
    let t = p.cast::<MIB_UNICASTIPADDRESS_TABLE>();
    // SAFETY: as above.
    unsafe { table.write(t) };
    NtStatus::SUCCESS
}

/// `FreeMibTable`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FreeMibTable(memory: *mut std::ffi::c_void) {
    let mut k = lock();
    match k.tables.remove(&memory.addr()) {
        Some((p, layout)) => {
            // SAFETY: allocated by GetUnicastIpAddressTable with this layout, freed once.
            unsafe { std::alloc::dealloc(p.0, layout) };
        }
        None => violation_locked(
            &mut k,
            Rule::BadFree,
            format!(
                "FreeMibTable({:#x}): not a table of GetUnicastIpAddressTable",
                memory.addr()
            ),
        ),
    }
}

/// Tables and a WSK registration left when the driver unloaded.
pub(crate) fn leak_check_at_unload() {
    let mut k = lock();
    for (a, (p, layout)) in std::mem::take(&mut k.tables) {
        violation_locked(
            &mut k,
            Rule::MemoryLeaked,
            format!("address table {a:#x} never freed (FreeMibTable)"),
        );
        // SAFETY: allocated with this layout, freed once (taken).
        unsafe { std::alloc::dealloc(p.0, layout) };
    }
    if k.wsk.registration.is_some() {
        violation_locked(
            &mut k,
            Rule::Registration,
            "WSK still registered at unload".into(),
        );
    }
    k.wsk = WskState::default();
}
