//! The provider side of the NDKPI tables: every `extern "system"` entry point softndk puts in
//! a dispatch table, and the tables themselves (one set per NDKPI version).
//!
//! Each entry point validates its object pointer through the registry before touching it,
//! decodes its arguments, and calls the world with the lock held; callbacks run after the
//! lock is released (`Shared::dispatch`).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

#[allow(
    clippy::wildcard_imports,
    reason = "this module implements the whole ABI"
)]
use ndkpi_sys::*;

use crate::conn::{AcceptArgs, ConnectArgs, Listener};
use crate::fabric::{Shared, in_provider_callback};
use crate::mem::{BytePtr, resolve_mdl};
use crate::misuse::{Queue, Violation};
use crate::qp::{Qp, Sge};
use crate::shell::{self, Busy, ObjId, ShellPtr};
use crate::world::{Body, Call, CloseState, Ctx, DisconnectCb, Lam, Mr, Out, Region, World};
use crate::{ObjectKind, negotiate};

// --- object lookup ----------------------------------------------------------------------------

/// A validated object pointer.
struct Target {
    shared: Arc<Shared>,
    id: ObjId,
    shell: ShellPtr,
    function: &'static str,
}

/// Validate `ptr` as a live object of `kind`. On failure the violation is reported and `None`
/// returned. A pointer that belongs to no fabric cannot be recorded anywhere, so it always
/// panics.
fn enter<T>(ptr: *mut T, kind: ObjectKind, function: &'static str) -> Option<Target> {
    let Some((shared, entry)) = shell::lookup(ptr.addr()) else {
        panic!("softndk: {}", Violation::UnknownObject { function });
    };
    if entry.kind != kind {
        shared.report(Violation::WrongObjectKind {
            function,
            expected: kind,
            found: entry.kind,
        });
        return None;
    }
    if crate::consumer_lock::held() {
        shared.report(Violation::CalledUnderConsumerLock { function });
    }
    Some(Target {
        shared,
        id: entry.id,
        shell: entry.shell,
        function,
    })
}

impl Target {
    /// Run `op` on the open object with the lock held, then deliver. A violation is reported
    /// and turns into `STATUS_INVALID_PARAMETER`.
    fn with(
        &self,
        op: impl FnOnce(&mut World, &mut Out) -> Result<NTSTATUS, Violation>,
    ) -> NTSTATUS {
        let mut out = Out::default();
        let result = {
            let mut world = self.shared.world();
            world
                .open(self.id, self.function)
                .map(|_| ())
                .and_then(|()| op(&mut world, &mut out))
        };
        self.shared.dispatch(out);
        result.unwrap_or_else(|v| {
            self.shared.report(v);
            NtStatus::INVALID_PARAMETER
        })
    }

    fn violation(&self, what: &'static str) -> NTSTATUS {
        self.shared.report(Violation::BadArgument {
            function: self.function,
            what,
        });
        NtStatus::INVALID_PARAMETER
    }

    /// `NdkClose*`.
    fn close(&self, f: NDK_FN_CLOSE_COMPLETION, ctx: PVOID) -> NTSTATUS {
        let mut out = Out::default();
        let result = {
            let mut world = self.shared.world();
            match world.objects.get(&self.id).map(|o| (o.close, o.kind)) {
                Some((CloseState::Open, _)) => {
                    Ok(world.begin_close(&mut out, self.id, f, Ctx(ctx)))
                }
                Some((_, kind)) => Err(Violation::DoubleClose {
                    function: self.function,
                    kind,
                }),
                None => Err(Violation::UnknownObject {
                    function: self.function,
                }),
            }
        };
        self.shared.dispatch(out);
        result.unwrap_or_else(|v| {
            self.shared.report(v);
            NtStatus::INVALID_PARAMETER
        })
    }

    /// Enter one of the object's serialised paths (a QP queue, a CQ).
    fn serialise(&self, which: Busy) -> Option<shell::BusyGuard> {
        let guard = self.shell.enter(which);
        if guard.is_none() {
            let v = match which {
                Busy::Queue(queue) => Violation::ConcurrentPost {
                    function: self.function,
                    queue,
                },
                Busy::Cq => Violation::ConcurrentCqAccess {
                    function: self.function,
                },
            };
            self.shared.report(v);
        }
        guard
    }

    /// A create: fault injection, validation by `build`, then the object is returned inline
    /// (`STATUS_SUCCESS`) or through the create completion (`STATUS_PENDING`).
    fn create<T>(
        &self,
        kind: ObjectKind,
        completion: NDK_FN_CREATE_COMPLETION,
        ctx: PVOID,
        out_object: *mut *mut T,
        build: impl FnOnce(&mut World) -> Result<(Vec<ObjId>, Body), NTSTATUS>,
    ) -> NTSTATUS {
        if out_object.is_null() {
            return self.violation("null object out-pointer");
        }
        let mut created = None;
        let status = self.with(|world, out| {
            if world.adapter_removed(self.id) {
                return Ok(NtStatus::DEVICE_REMOVED);
            }
            let (host, adapter, version) = {
                let parent = &world.objects[&self.id];
                (parent.host, parent.adapter, parent.version)
            };
            if world.take_create_failure(host, kind) {
                if world.complete_now() {
                    return Ok(NtStatus::INSUFFICIENT_RESOURCES);
                }
                let call = Call::Create {
                    f: completion,
                    ctx: Ctx(ctx),
                    status: NtStatus::INSUFFICIENT_RESOURCES,
                    object: None,
                };
                world.emit(out, self.id, call);
                return Ok(NtStatus::PENDING);
            }
            let (antecedents, body) = match build(world) {
                Ok(parts) => parts,
                Err(status) => return Ok(status),
            };
            let (id, shell) = world.create_object(kind, adapter, host, version, antecedents, body);
            if world.complete_now() {
                created = Some(shell);
                Ok(NtStatus::SUCCESS)
            } else {
                world.emit(
                    out,
                    id,
                    Call::Create {
                        f: completion,
                        ctx: Ctx(ctx),
                        status: NtStatus::SUCCESS,
                        object: Some(shell),
                    },
                );
                Ok(NtStatus::PENDING)
            }
        });
        if let Some(shell) = created {
            // SAFETY: `out_object` is non-null and, per the NDK contract, points to writable
            // storage for one object pointer.
            unsafe { out_object.write(shell.as_ndk::<T>()) };
        }
        status
    }
}

// --- argument decoding --------------------------------------------------------------------

/// Read an address argument. Errors: null or too short -> `STATUS_INVALID_PARAMETER`; a family
/// other than `AF_INET`/`AF_INET6` -> `STATUS_INVALID_ADDRESS`.
fn read_sockaddr(ptr: *const SOCKADDR, len: u32) -> Result<SocketAddr, NTSTATUS> {
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
fn write_sockaddr(
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
fn read_sges(t: &Target, sgl: *const NDK_SGE, n: u32) -> Result<Vec<Sge>, NTSTATUS> {
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
fn read_private_data(t: &Target, data: *const c_void, len: u32) -> Result<Vec<u8>, NTSTATUS> {
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
fn arg_object<T>(t: &Target, ptr: *mut T, kind: ObjectKind) -> Result<ObjId, NTSTATUS> {
    match shell::lookup(ptr.addr()) {
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

// --- generic ----------------------------------------------------------------------------------

fn kind_of_header(ptr: *mut NDK_OBJECT_HEADER) -> Option<ObjectKind> {
    shell::lookup(ptr.addr()).map(|(_, e)| e.kind)
}

unsafe extern "system" fn close_object(
    obj: *mut NDK_OBJECT_HEADER,
    f: NDK_FN_CLOSE_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let kind = kind_of_header(obj).unwrap_or(ObjectKind::Pd);
    let Some(t) = enter(obj, kind, kind.close_name()) else {
        return NtStatus::INVALID_PARAMETER;
    };
    if t.shared
        .world()
        .objects
        .get(&t.id)
        .is_some_and(|o| o.kind == ObjectKind::Adapter)
    {
        return t.violation("adapters are closed with WskCloseNdkAdapter");
    }
    t.close(f, ctx)
}

unsafe extern "system" fn query_extension(
    obj: *mut NDK_OBJECT_HEADER,
    _id: *const GUID,
    _version: NDK_VERSION,
    _iface: *mut NDK_EXTENSION_INTERFACE,
) -> NTSTATUS {
    let kind = kind_of_header(obj).unwrap_or(ObjectKind::Pd);
    let Some(t) = enter(obj, kind, "NdkQueryExtension") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

// --- adapter ---------------------------------------------------------------------------------

unsafe extern "system" fn query_adapter_info(
    adapter: *mut NDK_ADAPTER,
    info: *mut NDK_ADAPTER_INFO,
    size: *mut u32,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkQueryAdapterInfo") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if in_provider_callback() {
        t.shared.report(Violation::PassiveOnlyInCallback {
            function: "NdkQueryAdapterInfo",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    if size.is_null() {
        return t.violation("null pBufferSize");
    }
    let mut value = None;
    let status = t.with(|world, _| {
        value = Some(world.adapter_info(t.id));
        Ok(NtStatus::SUCCESS)
    });
    let Some(value) = value else { return status };
    // SAFETY: non-null in/out size.
    let have = unsafe { size.read() };
    let full = ADAPTER_INFO_LEN;
    if info.is_null() || have < NDK_ADAPTER_INFO_V1_SIZE {
        // SAFETY: as above.
        unsafe { size.write(full) };
        return NtStatus::BUFFER_TOO_SMALL;
    }
    let n = have.min(full);
    let bytes = adapter_info_bytes(&value);
    // SAFETY: the consumer's buffer holds `have >= n` bytes; `bytes` is a local of `full >= n`
    // fully initialised bytes (padding zeroed); they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), info.cast::<u8>(), n as usize) };
    // SAFETY: as above.
    unsafe { size.write(n) };
    NtStatus::SUCCESS
}

/// `NDK_ADAPTER_INFO` as bytes, field by field: its padding (0x0C..0x10, 0x64..0x68) is
/// zero, never uninitialised memory copied to the consumer.
fn adapter_info_bytes(info: &NDK_ADAPTER_INFO) -> [u8; ADAPTER_INFO_LEN as usize] {
    use std::mem::offset_of;
    let mut b = [0u8; ADAPTER_INFO_LEN as usize];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(
        offset_of!(NDK_ADAPTER_INFO, Version),
        &info.Version.Major.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, Version) + 2,
        &info.Version.Minor.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, VendorId),
        &info.VendorId.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, DeviceId),
        &info.DeviceId.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, MaxRegistrationSize),
        &info.MaxRegistrationSize.to_ne_bytes(),
    );
    put(
        offset_of!(NDK_ADAPTER_INFO, MaxWindowSize),
        &info.MaxWindowSize.to_ne_bytes(),
    );
    let u32s = [
        (
            offset_of!(NDK_ADAPTER_INFO, FRMRPageCount),
            info.FRMRPageCount,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInitiatorRequestSge),
            info.MaxInitiatorRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReceiveRequestSge),
            info.MaxReceiveRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReadRequestSge),
            info.MaxReadRequestSge,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxTransferLength),
            info.MaxTransferLength,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInlineDataSize),
            info.MaxInlineDataSize,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInboundReadLimit),
            info.MaxInboundReadLimit,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxOutboundReadLimit),
            info.MaxOutboundReadLimit,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxReceiveQueueDepth),
            info.MaxReceiveQueueDepth,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxInitiatorQueueDepth),
            info.MaxInitiatorQueueDepth,
        ),
        (offset_of!(NDK_ADAPTER_INFO, MaxSrqDepth), info.MaxSrqDepth),
        (offset_of!(NDK_ADAPTER_INFO, MaxCqDepth), info.MaxCqDepth),
        (
            offset_of!(NDK_ADAPTER_INFO, LargeRequestThreshold),
            info.LargeRequestThreshold,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxCallerData),
            info.MaxCallerData,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, MaxCalleeData),
            info.MaxCalleeData,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, AdapterFlags),
            info.AdapterFlags,
        ),
        (
            offset_of!(NDK_ADAPTER_INFO, RdmaTechnology),
            info.RdmaTechnology,
        ),
    ];
    for (at, v) in u32s {
        put(at, &v.to_ne_bytes());
    }
    b
}

unsafe extern "system" fn create_cq(
    adapter: *mut NDK_ADAPTER,
    depth: u32,
    notify: NDK_FN_CQ_NOTIFICATION_CALLBACK,
    notify_ctx: PVOID,
    _affinity: *mut GROUP_AFFINITY,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_CQ,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkCreateCq") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.create(ObjectKind::Cq, cc, ctx, pp, |world| {
        if depth == 0 || depth > world.adapter_info(t.id).MaxCqDepth {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        Ok((
            vec![t.id],
            Body::Cq(Box::new(World::new_cq(depth, notify, Ctx(notify_ctx)))),
        ))
    })
}

unsafe extern "system" fn create_pd(
    adapter: *mut NDK_ADAPTER,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_PD,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkCreatePd") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.create(ObjectKind::Pd, cc, ctx, pp, |world| {
        let token = world.next_token();
        Ok((
            vec![t.id],
            Body::Pd {
                privileged_token: token,
            },
        ))
    })
}

unsafe extern "system" fn create_shared_endpoint(
    adapter: *mut NDK_ADAPTER,
    _addr: *const SOCKADDR,
    _len: u32,
    _cc: NDK_FN_CREATE_COMPLETION,
    _ctx: PVOID,
    _pp: *mut *mut NDK_SHARED_ENDPOINT,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkCreateSharedEndpoint") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn create_connector(
    adapter: *mut NDK_ADAPTER,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_CONNECTOR,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkCreateConnector") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.create(ObjectKind::Connector, cc, ctx, pp, |_| {
        Ok((
            vec![t.id],
            Body::Connector(Box::new(crate::conn::Conn::new())),
        ))
    })
}

unsafe extern "system" fn create_listener(
    adapter: *mut NDK_ADAPTER,
    event: NDK_FN_CONNECT_EVENT_CALLBACK,
    event_ctx: PVOID,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_LISTENER,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkCreateListener") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if event.is_none() {
        return t.violation("null ConnectEvent callback");
    }
    t.create(ObjectKind::Listener, cc, ctx, pp, |_| {
        let listener = Listener {
            callback: event,
            ctx: Ctx(event_ctx),
            addr: None,
            paused: false,
        };
        Ok((vec![t.id], Body::Listener(Box::new(listener))))
    })
}

const PAGE_SIZE: usize = 4096;
const SOCKADDR_IN_LEN: u32 = 16;
const SOCKADDR_IN6_LEN: u32 = 28;
const ADAPTER_INFO_LEN: u32 = 0x68;
const _: () = assert!(size_of::<SOCKADDR_IN>() == SOCKADDR_IN_LEN as usize);
const _: () = assert!(size_of::<SOCKADDR_IN6>() == SOCKADDR_IN6_LEN as usize);
const _: () = assert!(size_of::<NDK_ADAPTER_INFO>() == ADAPTER_INFO_LEN as usize);

unsafe extern "system" fn build_lam(
    adapter: *mut NDK_ADAPTER,
    mdl: *mut MDL,
    length: usize,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    lam: *mut NDK_LOGICAL_ADDRESS_MAPPING,
    lam_size: *mut u32,
    fbo: *mut u32,
) -> NTSTATUS {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkBuildLAM") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if lam_size.is_null() || fbo.is_null() {
        return t.violation("null pLAMSize or pFBO");
    }
    let Some((va, count)) = resolve_mdl(mdl) else {
        return t.violation("MDL not created by softndk::SoftMdl::new");
    };
    if length == 0 || length > count {
        return NtStatus::INVALID_PARAMETER;
    }
    let offset = va.addr() % PAGE_SIZE;
    let pages = (offset + length).div_ceil(PAGE_SIZE);
    let Some(required) = u32::try_from(pages).ok().and_then(NDK_LAM_SIZE) else {
        return NtStatus::INVALID_PARAMETER;
    };
    // SAFETY: non-null in/out size.
    let have = unsafe { lam_size.read() };
    // SAFETY: as above.
    unsafe { lam_size.write(required) };
    if lam.is_null() || have < required {
        return NtStatus::BUFFER_TOO_SMALL;
    }
    let first_page = va.addr() - offset;
    // SAFETY: `lam` is non-null and points to `required` bytes the consumer provides for the
    // LAM; this only computes field addresses (no read).
    let context = unsafe { &raw mut (*lam).AdapterContext };
    // SAFETY: as above.
    let count = unsafe { &raw mut (*lam).AdapterPageCount };
    // SAFETY: as above; the declared one-element array is the start of `pages` entries.
    let array = unsafe { &raw mut (*lam).AdapterPageArray }.cast::<NDK_LOGICAL_ADDRESS>();
    // SAFETY: `lam` holds `required` bytes (checked above), which covers the header fields;
    // the consumer allocated it for a LAM, so it is suitably aligned.
    unsafe { context.write(std::ptr::null_mut()) };
    // SAFETY: as above.
    unsafe { count.write(u32::try_from(pages).unwrap_or(u32::MAX)) };
    for i in 0..pages {
        let logical = i64::try_from(first_page + i * PAGE_SIZE).unwrap_or(i64::MAX);
        // SAFETY: `required` covers `pages` entries and `i < pages`.
        unsafe { array.wrapping_add(i).write(logical) };
    }
    // SAFETY: non-null out-pointer.
    unsafe { fbo.write(u32::try_from(offset).unwrap_or(0)) };
    t.with(|world, out| {
        if let Some(Body::Adapter { lams, .. }) = world.objects.get_mut(&t.id).map(|o| &mut o.body)
        {
            lams.insert(
                lam.addr(),
                Lam {
                    base: va,
                    len: length,
                },
            );
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsafe extern "system" fn release_lam(
    adapter: *mut NDK_ADAPTER,
    lam: *mut NDK_LOGICAL_ADDRESS_MAPPING,
) {
    let Some(t) = enter(adapter, ObjectKind::Adapter, "NdkReleaseLAM") else {
        return;
    };
    t.with(|world, _| {
        let removed = match world.objects.get_mut(&t.id).map(|o| &mut o.body) {
            Some(Body::Adapter { lams, .. }) => lams.remove(&lam.addr()).is_some(),
            _ => false,
        };
        if removed {
            Ok(NtStatus::SUCCESS)
        } else {
            Err(Violation::BadArgument {
                function: "NdkReleaseLAM",
                what: "LAM not built by this adapter (or released twice)",
            })
        }
    });
}

// --- PD ---------------------------------------------------------------------------------------

unsafe extern "system" fn create_mr(
    pd: *mut NDK_PD,
    fast: BOOLEAN,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_MR,
) -> NTSTATUS {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkCreateMr") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if fast != FALSE {
        return t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED));
    }
    t.create(ObjectKind::Mr, cc, ctx, pp, |world| {
        let (local_token, remote_token) = (world.next_token(), world.next_token());
        Ok((
            vec![t.id],
            Body::Mr(Mr {
                pd: t.id,
                region: None,
                local_token,
                remote_token,
            }),
        ))
    })
}

unsafe extern "system" fn create_mw(
    pd: *mut NDK_PD,
    _cc: NDK_FN_CREATE_COMPLETION,
    _ctx: PVOID,
    _pp: *mut *mut NDK_MW,
) -> NTSTATUS {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkCreateMw") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn create_srq(
    pd: *mut NDK_PD,
    _depth: u32,
    _sge: u32,
    _threshold: u32,
    _notify: NDK_FN_SRQ_NOTIFICATION_CALLBACK,
    _notify_ctx: PVOID,
    _affinity: *mut GROUP_AFFINITY,
    _cc: NDK_FN_CREATE_COMPLETION,
    _ctx: PVOID,
    _pp: *mut *mut NDK_SRQ,
) -> NTSTATUS {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkCreateSrq") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn create_qp(
    pd: *mut NDK_PD,
    rcq: *mut NDK_CQ,
    icq: *mut NDK_CQ,
    qp_ctx: PVOID,
    rq_depth: u32,
    iq_depth: u32,
    max_rsge: u32,
    max_isge: u32,
    inline: u32,
    cc: NDK_FN_CREATE_COMPLETION,
    ctx: PVOID,
    pp: *mut *mut NDK_QP,
) -> NTSTATUS {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkCreateQp") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let (rcq, icq) = match (
        arg_object(&t, rcq, ObjectKind::Cq),
        arg_object(&t, icq, ObjectKind::Cq),
    ) {
        (Ok(r), Ok(i)) => (r, i),
        (Err(s), _) | (_, Err(s)) => return s,
    };
    t.create(ObjectKind::Qp, cc, ctx, pp, |world| {
        let info = world.adapter_info(world.objects[&t.id].adapter);
        let adapter = world.objects[&t.id].adapter;
        let cqs_ok = [rcq, icq]
            .iter()
            .all(|cq| world.is_open(*cq) && world.objects[cq].adapter == adapter);
        let limits_ok = (1..=info.MaxReceiveQueueDepth).contains(&rq_depth)
            && (1..=info.MaxInitiatorQueueDepth).contains(&iq_depth)
            && max_rsge <= info.MaxReceiveRequestSge
            && max_isge <= info.MaxInitiatorRequestSge
            && inline <= info.MaxInlineDataSize;
        if !cqs_ok || !limits_ok {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let qp = Qp::new(
            t.id,
            rcq,
            icq,
            Ctx(qp_ctx),
            rq_depth,
            iq_depth,
            max_rsge,
            max_isge,
            inline,
        );
        Ok((vec![t.id, rcq, icq], Body::Qp(Box::new(qp))))
    })
}

unsafe extern "system" fn create_qp_with_srq(
    pd: *mut NDK_PD,
    _rcq: *mut NDK_CQ,
    _icq: *mut NDK_CQ,
    _srq: *mut NDK_SRQ,
    _qp_ctx: PVOID,
    _iq_depth: u32,
    _max_isge: u32,
    _inline: u32,
    _cc: NDK_FN_CREATE_COMPLETION,
    _ctx: PVOID,
    _pp: *mut *mut NDK_QP,
) -> NTSTATUS {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkCreateQpWithSrq") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn privileged_token(pd: *mut NDK_PD, token: *mut u32) {
    let Some(t) = enter(pd, ObjectKind::Pd, "NdkGetPrivilegedMemoryRegionToken") else {
        return;
    };
    if token.is_null() {
        t.violation("null pToken");
        return;
    }
    let mut value = 0;
    t.with(|world, _| {
        if let Some(Body::Pd { privileged_token }) = world.objects.get(&t.id).map(|o| &o.body) {
            value = *privileged_token;
        }
        Ok(NtStatus::SUCCESS)
    });
    // SAFETY: non-null out-pointer.
    unsafe { token.write(value) };
}

// --- CQ ---------------------------------------------------------------------------------------

unsafe extern "system" fn resize_cq(
    cq: *mut NDK_CQ,
    _depth: u32,
    _f: NDK_FN_REQUEST_COMPLETION,
    _ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(cq, ObjectKind::Cq, "NdkResizeCq") else {
        return NtStatus::INVALID_PARAMETER;
    };
    // NDK_ADAPTER_FLAG_CQ_RESIZE_SUPPORTED is clear.
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn arm_cq(cq: *mut NDK_CQ, kind: u32) {
    let Some(t) = enter(cq, ObjectKind::Cq, "NdkArmCq") else {
        return;
    };
    let Some(_serial) = t.serialise(Busy::Cq) else {
        return;
    };
    if kind > NDK_CQ_NOTIFY_SOLICITED {
        t.violation("NdkArmCq type is not an NDK_CQ_NOTIFY_* value");
        return;
    }
    t.with(|world, out| {
        world.arm_cq(out, t.id, kind);
        Ok(NtStatus::SUCCESS)
    });
}

/// What softndk writes into a result field NDKPI leaves undefined on error completions
/// (`BytesTransferred`, `Type`): a value no consumer can mistake for a real one.
const UNDEFINED_FIELD: u32 = 0xDEAD_BEEF;

fn take_results(t: &Target, n: u32) -> Vec<crate::world::CqEntry> {
    let mut taken = Vec::new();
    t.with(|world, _| {
        if let Some(Body::Cq(cq)) = world.objects.get_mut(&t.id).map(|o| &mut o.body) {
            let k = (n as usize).min(cq.entries.len());
            taken.extend(cq.entries.drain(..k));
        }
        Ok(NtStatus::SUCCESS)
    });
    taken
}

unsafe extern "system" fn get_cq_results(cq: *mut NDK_CQ, results: *mut NDK_RESULT, n: u32) -> u32 {
    let Some(t) = enter(cq, ObjectKind::Cq, "NdkGetCqResults") else {
        return 0;
    };
    let Some(_serial) = t.serialise(Busy::Cq) else {
        return 0;
    };
    if results.is_null() && n > 0 {
        t.violation("null Results array");
        return 0;
    }
    let taken = take_results(&t, n);
    let clean = t.shared.world().config.kindness.clean_error_completions;
    for (i, e) in taken.iter().enumerate() {
        let failed = e.status != NtStatus::SUCCESS && !clean;
        let r = NDK_RESULT {
            Status: e.status,
            BytesTransferred: if failed { UNDEFINED_FIELD } else { e.bytes },
            QPContext: e.qp_context.0,
            RequestContext: e.request_context.0,
        };
        // SAFETY: the consumer's array holds `n` results and `i < taken.len() <= n`.
        unsafe { results.wrapping_add(i).write(r) };
    }
    u32::try_from(taken.len()).unwrap_or(0)
}

unsafe extern "system" fn get_cq_results_ex(
    cq: *mut NDK_CQ,
    results: *mut NDK_RESULT_EX,
    n: u32,
) -> u32 {
    let Some(t) = enter(cq, ObjectKind::Cq, "NdkGetCqResultsEx") else {
        return 0;
    };
    let Some(_serial) = t.serialise(Busy::Cq) else {
        return 0;
    };
    if results.is_null() && n > 0 {
        t.violation("null Results array");
        return 0;
    }
    let taken = take_results(&t, n);
    let (v21, clean) = {
        let world = t.shared.world();
        let v = world.objects.get(&t.id).map(|o| o.version);
        (
            v.is_some_and(|v| (v.Major, v.Minor) >= (2, 1)),
            world.config.kindness.clean_error_completions,
        )
    };
    for (i, e) in taken.iter().enumerate() {
        // NDK_RESULT_EX: on an error completion only Status and the contexts are defined;
        // ProviderErrorCode (2.1) carries the provider's diagnostic, zero below 2.1.
        let failed = e.status != NtStatus::SUCCESS && !clean;
        let r = NDK_RESULT_EX {
            Status: e.status,
            BytesTransferred: if failed { UNDEFINED_FIELD } else { e.bytes },
            QPContext: e.qp_context.0,
            RequestContext: e.request_context.0,
            Type: if failed { UNDEFINED_FIELD } else { e.op },
            ProviderErrorCode: if v21 && !clean { e.provider_code } else { 0 },
            TypeSpecificCompletionOutput: 0,
        };
        // SAFETY: the consumer's array holds `n` results and `i < taken.len() <= n`.
        unsafe { results.wrapping_add(i).write(r) };
    }
    u32::try_from(taken.len()).unwrap_or(0)
}

unsafe extern "system" fn control_moderation(
    cq: *mut NDK_CQ,
    _interval: u32,
    _count: u32,
) -> NTSTATUS {
    let Some(t) = enter(cq, ObjectKind::Cq, "NdkControlCqInterruptModeration") else {
        return NtStatus::INVALID_PARAMETER;
    };
    // NDK_ADAPTER_FLAG_CQ_INTERRUPT_MODERATION_SUPPORTED is clear, so NOT_SUPPORTED is required.
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

// --- QP ---------------------------------------------------------------------------------------

unsafe extern "system" fn flush(qp: *mut NDK_QP) {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkFlush") else {
        return;
    };
    t.with(|world, out| {
        world.start_flush(out, t.id);
        Ok(NtStatus::SUCCESS)
    });
}

fn post(t: &Target, queue: Queue, op: impl FnOnce(&mut World, &mut Out) -> NTSTATUS) -> NTSTATUS {
    let Some(_serial) = t.serialise(Busy::Queue(queue)) else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.shared.gate_point(t.shell.addr(), queue);
    t.with(|world, out| Ok(op(world, out)))
}

unsafe extern "system" fn send(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
    flags: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkSend") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let sges = match read_sges(&t, sgl, n) {
        Ok(s) => s,
        Err(status) => return status,
    };
    post(&t, Queue::Initiator, |world, out| {
        world.post_send(out, t.id, Ctx(ctx), &sges, flags)
    })
}

unsafe extern "system" fn receive(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkReceive") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let sges = match read_sges(&t, sgl, n) {
        Ok(s) => s,
        Err(status) => return status,
    };
    post(&t, Queue::Receive, |world, out| {
        world.post_receive(out, t.id, Ctx(ctx), sges)
    })
}

unsafe extern "system" fn bind(
    qp: *mut NDK_QP,
    _ctx: PVOID,
    _mr: *mut NDK_MR,
    _mw: *mut NDK_MW,
    _va: PVOID,
    _len: usize,
    _flags: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkBind") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn fast_register(
    qp: *mut NDK_QP,
    _ctx: PVOID,
    _mr: *mut NDK_MR,
    _pages: u32,
    _array: *const NDK_LOGICAL_ADDRESS,
    _fbo: u32,
    _len: usize,
    _base: PVOID,
    _flags: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkFastRegister") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

unsafe extern "system" fn invalidate(
    qp: *mut NDK_QP,
    _ctx: PVOID,
    _obj: *mut NDK_OBJECT_HEADER,
    _flags: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkInvalidate") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

#[expect(
    clippy::too_many_arguments,
    reason = "NdkRead/NdkWrite's parameters plus the direction"
)]
fn rdma(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
    remote: u64,
    token: u32,
    flags: u32,
    write: bool,
) -> NTSTATUS {
    let name = if write { "NdkWrite" } else { "NdkRead" };
    let Some(t) = enter(qp, ObjectKind::Qp, name) else {
        return NtStatus::INVALID_PARAMETER;
    };
    let sges = match read_sges(&t, sgl, n) {
        Ok(s) => s,
        Err(status) => return status,
    };
    post(&t, Queue::Initiator, |world, out| {
        world.post_rdma(out, t.id, Ctx(ctx), &sges, remote, token, flags, write)
    })
}

unsafe extern "system" fn read(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
    remote: u64,
    token: u32,
    flags: u32,
) -> NTSTATUS {
    rdma(qp, ctx, sgl, n, remote, token, flags, false)
}

unsafe extern "system" fn write(
    qp: *mut NDK_QP,
    ctx: PVOID,
    sgl: *const NDK_SGE,
    n: u32,
    remote: u64,
    token: u32,
    flags: u32,
) -> NTSTATUS {
    rdma(qp, ctx, sgl, n, remote, token, flags, true)
}

unsafe extern "system" fn send_and_invalidate(
    qp: *mut NDK_QP,
    _ctx: PVOID,
    _sgl: *const NDK_SGE,
    _n: u32,
    _flags: u32,
    _token: u32,
) -> NTSTATUS {
    let Some(t) = enter(qp, ObjectKind::Qp, "NdkSendAndInvalidate") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

// --- MR ---------------------------------------------------------------------------------------

unsafe extern "system" fn register_mr(
    mr: *mut NDK_MR,
    mdl: *mut MDL,
    length: usize,
    flags: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(mr, ObjectKind::Mr, "NdkRegisterMr") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let Some((base, count)) = resolve_mdl(mdl) else {
        return t.violation("MDL not created by softndk::SoftMdl::new");
    };
    t.with(|world, out| {
        let Some(Body::Mr(region_owner)) = world.objects.get_mut(&t.id).map(|o| &mut o.body) else {
            return Ok(NtStatus::INVALID_PARAMETER);
        };
        if length == 0 || length > count || flags & !0xF != 0 {
            return Ok(NtStatus::INVALID_PARAMETER);
        }
        if region_owner.region.is_some() {
            return Ok(NtStatus::INVALID_DEVICE_STATE);
        }
        region_owner.region = Some(Region {
            base,
            len: length,
            flags,
        });
        let tokens = [region_owner.local_token, region_owner.remote_token];
        for token in tokens {
            world.tokens.insert(token, t.id);
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsafe extern "system" fn deregister_mr(
    mr: *mut NDK_MR,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(mr, ObjectKind::Mr, "NdkDeregisterMr") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|world, out| {
        let Some(Body::Mr(m)) = world.objects.get_mut(&t.id).map(|o| &mut o.body) else {
            return Ok(NtStatus::INVALID_PARAMETER);
        };
        if m.region.take().is_none() {
            return Ok(NtStatus::INVALID_DEVICE_STATE);
        }
        Ok(world.finish_request(out, t.id, f, Ctx(ctx), NtStatus::SUCCESS))
    })
}

unsafe extern "system" fn init_fast_register(
    mr: *mut NDK_MR,
    _pages: u32,
    _remote: BOOLEAN,
    _f: NDK_FN_REQUEST_COMPLETION,
    _ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(mr, ObjectKind::Mr, "NdkInitializeFastRegisterMr") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

fn mr_token(mr: *mut NDK_MR, remote: bool) -> u32 {
    let name = if remote {
        "NdkGetRemoteTokenFromMr"
    } else {
        "NdkGetLocalTokenFromMr"
    };
    let Some(t) = enter(mr, ObjectKind::Mr, name) else {
        return 0;
    };
    let mut token = 0;
    t.with(|world, _| {
        if let Some(Body::Mr(m)) = world.objects.get(&t.id).map(|o| &o.body) {
            token = if remote {
                m.remote_token
            } else {
                m.local_token
            };
        }
        Ok(NtStatus::SUCCESS)
    });
    token
}

unsafe extern "system" fn remote_token(mr: *mut NDK_MR) -> u32 {
    mr_token(mr, true)
}

unsafe extern "system" fn local_token(mr: *mut NDK_MR) -> u32 {
    mr_token(mr, false)
}

// --- connector --------------------------------------------------------------------------------

unsafe extern "system" fn connect(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    src: *const SOCKADDR,
    src_len: u32,
    dst: *const SOCKADDR,
    dst_len: u32,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkConnect") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let qp = match arg_object(&t, qp, ObjectKind::Qp) {
        Ok(qp) => qp,
        Err(s) => return s,
    };
    let (src, dst) = match (read_sockaddr(src, src_len), read_sockaddr(dst, dst_len)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(s), _) | (_, Err(s)) => return s,
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return NtStatus::INVALID_ADDRESS;
    }
    let private_data = match read_private_data(&t, data, data_len) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let args = ConnectArgs {
        qp,
        src,
        dst,
        ird,
        ord,
        private_data,
        f,
        ctx: Ctx(ctx),
    };
    t.with(|world, out| Ok(world.connect(out, t.id, args)))
}

unsafe extern "system" fn connect_with_shared_endpoint(
    conn: *mut NDK_CONNECTOR,
    _qp: *mut NDK_QP,
    _se: *mut NDK_SHARED_ENDPOINT,
    _dst: *const SOCKADDR,
    _dst_len: u32,
    _ird: u32,
    _ord: u32,
    _data: *const c_void,
    _data_len: u32,
    _f: NDK_FN_REQUEST_COMPLETION,
    _ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkConnectWithSharedEndpoint") else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
}

fn complete_connect_common(
    conn: *mut NDK_CONNECTOR,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    name: &'static str,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, name) else {
        return NtStatus::INVALID_PARAMETER;
    };
    t.with(|world, out| Ok(world.complete_connect(out, t.id, disc, f, Ctx(ctx))))
}

unsafe extern "system" fn complete_connect(
    conn: *mut NDK_CONNECTOR,
    cb: NDK_FN_DISCONNECT_EVENT_CALLBACK,
    cb_ctx: PVOID,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let disc = cb.map(|cb| DisconnectCb::Plain(Some(cb), Ctx(cb_ctx)));
    complete_connect_common(conn, disc, f, ctx, "NdkCompleteConnect")
}

unsafe extern "system" fn complete_connect_ex(
    conn: *mut NDK_CONNECTOR,
    cb: NDK_FN_DISCONNECT_EVENT_CALLBACK_EX,
    cb_ctx: PVOID,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let disc = cb.map(|cb| DisconnectCb::Ex(Some(cb), Ctx(cb_ctx)));
    complete_connect_common(conn, disc, f, ctx, "NdkCompleteConnectEx")
}

#[expect(clippy::too_many_arguments, reason = "mirrors NdkAccept")]
fn accept_common(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    disc: Option<DisconnectCb>,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
    name: &'static str,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, name) else {
        return NtStatus::INVALID_PARAMETER;
    };
    let qp = match arg_object(&t, qp, ObjectKind::Qp) {
        Ok(qp) => qp,
        Err(s) => return s,
    };
    let private_data = match read_private_data(&t, data, data_len) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let args = AcceptArgs {
        qp,
        ird,
        ord,
        private_data,
        disc,
        f,
        ctx: Ctx(ctx),
    };
    t.with(|world, out| Ok(world.accept(out, t.id, args)))
}

unsafe extern "system" fn accept(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    cb: NDK_FN_DISCONNECT_EVENT_CALLBACK,
    cb_ctx: PVOID,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let disc = cb.map(|cb| DisconnectCb::Plain(Some(cb), Ctx(cb_ctx)));
    accept_common(
        conn,
        qp,
        ird,
        ord,
        data,
        data_len,
        disc,
        f,
        ctx,
        "NdkAccept",
    )
}

unsafe extern "system" fn accept_ex(
    conn: *mut NDK_CONNECTOR,
    qp: *mut NDK_QP,
    ird: u32,
    ord: u32,
    data: *const c_void,
    data_len: u32,
    cb: NDK_FN_DISCONNECT_EVENT_CALLBACK_EX,
    cb_ctx: PVOID,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let disc = cb.map(|cb| DisconnectCb::Ex(Some(cb), Ctx(cb_ctx)));
    accept_common(
        conn,
        qp,
        ird,
        ord,
        data,
        data_len,
        disc,
        f,
        ctx,
        "NdkAcceptEx",
    )
}

unsafe extern "system" fn reject(
    conn: *mut NDK_CONNECTOR,
    data: *const c_void,
    data_len: u32,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkReject") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let _held = t.shared.connection_lock();
    let private_data = match read_private_data(&t, data, data_len) {
        Ok(d) => d,
        Err(s) => return s,
    };
    t.with(|world, out| Ok(world.reject(out, t.id, private_data)))
}

unsafe extern "system" fn get_connection_data(
    conn: *mut NDK_CONNECTOR,
    ird: *mut u32,
    ord: *mut u32,
    data: *mut c_void,
    len: *mut u32,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkGetConnectionData") else {
        return NtStatus::INVALID_PARAMETER;
    };
    if len.is_null() {
        return t.violation("null pPrivateDataLength");
    }
    // SAFETY: non-null in/out length.
    let have = unsafe { len.read() };
    if data.is_null() && have > 0 {
        return t.violation("null pPrivateData with a non-zero *pPrivateDataLength");
    }
    let mut found = None;
    let status = t.with(|world, _| {
        Ok(match world.connection_data(t.id) {
            Ok((inbound, outbound, bytes)) => {
                found = Some((inbound, outbound, bytes.to_vec()));
                NtStatus::SUCCESS
            }
            Err(status) => status,
        })
    });
    let Some((inbound, outbound, bytes)) = found else {
        return status;
    };
    if !ird.is_null() {
        // SAFETY: non-null optional out-pointer.
        unsafe { ird.write(inbound) };
    }
    if !ord.is_null() {
        // SAFETY: non-null optional out-pointer.
        unsafe { ord.write(outbound) };
    }
    let rds = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    // SAFETY: non-null in/out length.
    unsafe { len.write(rds) };
    if data.is_null() {
        return NtStatus::SUCCESS;
    }
    let n = bytes.len().min(have as usize);
    // SAFETY: the consumer's buffer holds `have >= n` bytes; `bytes` is ours.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), n) };
    if have >= rds {
        NtStatus::SUCCESS
    } else {
        NtStatus::BUFFER_TOO_SMALL
    }
}

fn address_of(
    conn: *mut NDK_CONNECTOR,
    addr: *mut SOCKADDR,
    len: *mut u32,
    peer: bool,
) -> NTSTATUS {
    let name = if peer {
        "NdkGetPeerAddress"
    } else {
        "NdkGetLocalAddress"
    };
    let Some(t) = enter(conn, ObjectKind::Connector, name) else {
        return NtStatus::INVALID_PARAMETER;
    };
    let _held = t.shared.connection_lock();
    let mut found = None;
    let status = t.with(|world, _| {
        found = if peer {
            world.peer_address(t.id)
        } else {
            world.local_address(t.id)
        };
        Ok(NtStatus::SUCCESS)
    });
    if status != NtStatus::SUCCESS {
        return status;
    }
    write_sockaddr(&t, found, addr, len)
}

unsafe extern "system" fn get_local_address(
    conn: *mut NDK_CONNECTOR,
    addr: *mut SOCKADDR,
    len: *mut u32,
) -> NTSTATUS {
    address_of(conn, addr, len, false)
}

unsafe extern "system" fn get_peer_address(
    conn: *mut NDK_CONNECTOR,
    addr: *mut SOCKADDR,
    len: *mut u32,
) -> NTSTATUS {
    address_of(conn, addr, len, true)
}

unsafe extern "system" fn disconnect(
    conn: *mut NDK_CONNECTOR,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(conn, ObjectKind::Connector, "NdkDisconnect") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let status = {
        let _held = t.shared.connection_lock();
        let mut out = Out::default();
        let result = {
            let mut world = t.shared.world();
            world
                .open(t.id, t.function)
                .map(|_| ())
                .map(|()| world.disconnect(&mut out, t.id, f, Ctx(ctx)))
        };
        (result, out)
    };
    // Callbacks run after the provider's lock is released (the peer's disconnect callback
    // takes it).
    let (result, out) = status;
    t.shared.dispatch(out);
    result.unwrap_or_else(|v| {
        t.shared.report(v);
        NtStatus::INVALID_PARAMETER
    })
}

// --- listener ---------------------------------------------------------------------------------

unsafe extern "system" fn listen(
    listener: *mut NDK_LISTENER,
    addr: *const SOCKADDR,
    len: u32,
    f: NDK_FN_REQUEST_COMPLETION,
    ctx: PVOID,
) -> NTSTATUS {
    let Some(t) = enter(listener, ObjectKind::Listener, "NdkListen") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let addr = match read_sockaddr(addr, len) {
        Ok(a) => a,
        Err(s) => return s,
    };
    t.with(|world, out| Ok(world.listen(out, t.id, addr, f, Ctx(ctx))))
}

unsafe extern "system" fn listener_local_address(
    listener: *mut NDK_LISTENER,
    addr: *mut SOCKADDR,
    len: *mut u32,
) -> NTSTATUS {
    let Some(t) = enter(listener, ObjectKind::Listener, "NdkGetLocalAddress") else {
        return NtStatus::INVALID_PARAMETER;
    };
    let mut found = None;
    let status = t.with(|world, _| {
        found = world.listener_address(t.id);
        Ok(NtStatus::SUCCESS)
    });
    if status != NtStatus::SUCCESS {
        return status;
    }
    write_sockaddr(&t, found, addr, len)
}

unsafe extern "system" fn control_connect_events(listener: *mut NDK_LISTENER, pause: BOOLEAN) {
    let Some(t) = enter(listener, ObjectKind::Listener, "NdkControlConnectEvents") else {
        return;
    };
    t.with(|world, _| {
        world.pause_listener(t.id, pause != FALSE);
        Ok(NtStatus::SUCCESS)
    });
}

// --- WSK ----------------------------------------------------------------------------------------

static CLIENTS: Mutex<BTreeMap<usize, Weak<Shared>>> = Mutex::new(BTreeMap::new());

pub(crate) fn register_client(addr: usize, shared: Weak<Shared>) {
    CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr, shared);
}

pub(crate) fn unregister_client(addr: usize) {
    CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&addr);
}

fn client(client: PWSK_CLIENT, function: &'static str) -> Arc<Shared> {
    let found = CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&client.addr())
        .and_then(Weak::upgrade);
    found.unwrap_or_else(|| {
        panic!(
            "softndk: {} ({function}: not a softndk WSK client)",
            Violation::UnknownObject { function }.rule()
        )
    })
}

unsafe extern "system" fn wsk_open(
    client_ptr: PWSK_CLIENT,
    version: NDK_VERSION,
    if_index: NET_IFINDEX,
    pp: *mut *mut NDK_ADAPTER,
) -> NTSTATUS {
    let shared = client(client_ptr, "WskOpenNdkAdapter");
    if in_provider_callback() {
        shared.report(Violation::PassiveOnlyInCallback {
            function: "WskOpenNdkAdapter",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    if pp.is_null() {
        shared.report(Violation::BadArgument {
            function: "WskOpenNdkAdapter",
            what: "null ppNdkAdapter",
        });
        return NtStatus::INVALID_PARAMETER;
    }
    let created = {
        let mut world = shared.world();
        let Some(host) = world
            .hosts
            .iter()
            .position(|h| h.config.if_index == if_index)
        else {
            return NtStatus::NOT_FOUND;
        };
        if world.hosts[host].removed {
            return NtStatus::DEVICE_REMOVED;
        }
        let Some(negotiated) = negotiate(version, world.hosts[host].config.max_version) else {
            return NtStatus::NDIS_BAD_VERSION;
        };
        let body = Body::Adapter {
            removed: false,
            lams: BTreeMap::new(),
        };
        world
            .create_object(ObjectKind::Adapter, 0, host, negotiated, Vec::new(), body)
            .1
    };
    // SAFETY: non-null out-pointer for the adapter.
    unsafe { pp.write(created.as_ndk()) };
    NtStatus::SUCCESS
}

unsafe extern "system" fn wsk_close(client_ptr: PWSK_CLIENT, adapter: *mut NDK_ADAPTER) {
    let shared = client(client_ptr, "WskCloseNdkAdapter");
    let Some(t) = enter(adapter, ObjectKind::Adapter, "WskCloseNdkAdapter") else {
        return;
    };
    if in_provider_callback() {
        shared.report(Violation::PassiveOnlyInCallback {
            function: "WskCloseNdkAdapter",
        });
        return;
    }
    if !t.shared.world().is_open(t.id) {
        let v = Violation::DoubleClose {
            function: "WskCloseNdkAdapter",
            kind: ObjectKind::Adapter,
        };
        t.shared.report(v);
        return;
    }
    // Blocking: wait for closes in progress and callbacks still owed on descendants.
    t.shared.wait_adapter_quiet(t.id, Duration::from_secs(10));
    let mut out = Out::default();
    let live = {
        let mut world = t.shared.world();
        let live = world.live_children(t.id);
        if live == 0 {
            // The adapter close is blocking and has no completion callback: it is closed now.
            world.force_closed(&mut out, t.id);
        }
        live
    };
    t.shared.dispatch(out);
    if live > 0 {
        t.shared
            .report(Violation::AdapterClosedWithLiveObjects { live });
    }
}

/// The WSK NDK extension dispatch softndk hands out.
pub(crate) static WSK_NDK_DISPATCH: WSK_PROVIDER_NDK_DISPATCH = WSK_PROVIDER_NDK_DISPATCH {
    WskOpenNdkAdapter: Some(wsk_open),
    WskCloseNdkAdapter: Some(wsk_close),
};

// --- dispatch tables ------------------------------------------------------------------------

static ADAPTER_DISPATCH: NDK_ADAPTER_DISPATCH = NDK_ADAPTER_DISPATCH {
    NdkQueryExtension: Some(query_extension),
    NdkQueryAdapterInfo: Some(query_adapter_info),
    NdkCreateCq: Some(create_cq),
    NdkCreatePd: Some(create_pd),
    NdkCreateSharedEndpoint: Some(create_shared_endpoint),
    NdkCreateConnector: Some(create_connector),
    NdkCreateListener: Some(create_listener),
    NdkBuildLAM: Some(build_lam),
    NdkReleaseLAM: Some(release_lam),
};

static PD_DISPATCH: NDK_PD_DISPATCH = NDK_PD_DISPATCH {
    NdkClosePd: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkCreateMr: Some(create_mr),
    NdkCreateMw: Some(create_mw),
    NdkCreateSrq: Some(create_srq),
    NdkCreateQp: Some(create_qp),
    NdkCreateQpWithSrq: Some(create_qp_with_srq),
    NdkGetPrivilegedMemoryRegionToken: Some(privileged_token),
};

const fn cq_dispatch(v12: bool) -> NDK_CQ_DISPATCH {
    NDK_CQ_DISPATCH {
        NdkCloseCq: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkResizeCq: Some(resize_cq),
        NdkArmCq: Some(arm_cq),
        NdkGetCqResults: Some(get_cq_results),
        NdkControlCqInterruptModeration: Some(control_moderation),
        NdkGetCqResultsEx: if v12 { Some(get_cq_results_ex) } else { None },
    }
}
static CQ_DISPATCH_V11: NDK_CQ_DISPATCH = cq_dispatch(false);
static CQ_DISPATCH_V12: NDK_CQ_DISPATCH = cq_dispatch(true);

const fn qp_dispatch(v12: bool) -> NDK_QP_DISPATCH {
    NDK_QP_DISPATCH {
        NdkCloseQp: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkFlush: Some(flush),
        NdkSend: Some(send),
        NdkReceive: Some(receive),
        NdkBind: Some(bind),
        NdkFastRegister: Some(fast_register),
        NdkInvalidate: Some(invalidate),
        NdkRead: Some(read),
        NdkWrite: Some(write),
        NdkSendAndInvalidate: if v12 { Some(send_and_invalidate) } else { None },
    }
}
static QP_DISPATCH_V11: NDK_QP_DISPATCH = qp_dispatch(false);
static QP_DISPATCH_V12: NDK_QP_DISPATCH = qp_dispatch(true);

const fn connector_dispatch(v21: bool) -> NDK_CONNECTOR_DISPATCH {
    NDK_CONNECTOR_DISPATCH {
        NdkCloseConnector: Some(close_object),
        NdkQueryExtension: Some(query_extension),
        NdkConnect: Some(connect),
        NdkConnectWithSharedEndpoint: Some(connect_with_shared_endpoint),
        NdkCompleteConnect: Some(complete_connect),
        NdkAccept: Some(accept),
        NdkReject: Some(reject),
        NdkGetConnectionData: Some(get_connection_data),
        NdkGetLocalAddress: Some(get_local_address),
        NdkGetPeerAddress: Some(get_peer_address),
        NdkDisconnect: Some(disconnect),
        NdkCompleteConnectEx: if v21 { Some(complete_connect_ex) } else { None },
        NdkAcceptEx: if v21 { Some(accept_ex) } else { None },
    }
}
static CONNECTOR_DISPATCH_V1: NDK_CONNECTOR_DISPATCH = connector_dispatch(false);
static CONNECTOR_DISPATCH_V21: NDK_CONNECTOR_DISPATCH = connector_dispatch(true);

static LISTENER_DISPATCH: NDK_LISTENER_DISPATCH = NDK_LISTENER_DISPATCH {
    NdkCloseListener: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkListen: Some(listen),
    NdkGetLocalAddress: Some(listener_local_address),
    NdkControlConnectEvents: Some(control_connect_events),
};

static MR_DISPATCH: NDK_MR_DISPATCH = NDK_MR_DISPATCH {
    NdkCloseMr: Some(close_object),
    NdkQueryExtension: Some(query_extension),
    NdkRegisterMr: Some(register_mr),
    NdkDeregisterMr: Some(deregister_mr),
    NdkInitializeFastRegisterMr: Some(init_fast_register),
    NdkGetRemoteTokenFromMr: Some(remote_token),
    NdkGetLocalTokenFromMr: Some(local_token),
};

/// The dispatch table for an object of `kind` at the negotiated `version`: members added in a
/// later version are NULL below it.
pub(crate) fn dispatch_table(kind: ObjectKind, version: NDK_VERSION) -> *const c_void {
    let v12 = version >= NDK_VERSION { Major: 1, Minor: 2 };
    let v21 = version >= NDK_VERSION { Major: 2, Minor: 1 };
    match kind {
        ObjectKind::Adapter => std::ptr::from_ref(&ADAPTER_DISPATCH).cast(),
        ObjectKind::Pd => std::ptr::from_ref(&PD_DISPATCH).cast(),
        ObjectKind::Cq => std::ptr::from_ref(if v12 {
            &CQ_DISPATCH_V12
        } else {
            &CQ_DISPATCH_V11
        })
        .cast(),
        ObjectKind::Qp => std::ptr::from_ref(if v12 {
            &QP_DISPATCH_V12
        } else {
            &QP_DISPATCH_V11
        })
        .cast(),
        ObjectKind::Connector => std::ptr::from_ref(if v21 {
            &CONNECTOR_DISPATCH_V21
        } else {
            &CONNECTOR_DISPATCH_V1
        })
        .cast(),
        ObjectKind::Listener => std::ptr::from_ref(&LISTENER_DISPATCH).cast(),
        ObjectKind::Mr => std::ptr::from_ref(&MR_DISPATCH).cast(),
        // Never created: their create functions return STATUS_NOT_SUPPORTED.
        ObjectKind::Mw | ObjectKind::Srq | ObjectKind::SharedEndpoint => std::ptr::null(),
    }
}
