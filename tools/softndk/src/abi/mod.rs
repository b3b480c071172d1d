//! The provider side of the NDKPI tables: every `extern "system"` entry point softndk puts in
//! a dispatch table, and the tables themselves (one set per NDKPI version), one module per NDK
//! object.
//!
//! Each entry point validates its object pointer through the registry before touching it
//! ([`enter`]), decodes its arguments ([`args`]), and calls the world with the lock held
//! ([`Target::with`]); callbacks run after the lock is released (`Shared::dispatch`). This
//! module holds that shared plumbing, the entry points every object has (close, query
//! extension) and [`dispatch_table`].

#![allow(
    clippy::wildcard_imports,
    reason = "each module implements part of the NDKPI ABI and names its types and status values throughout"
)]

/// Validate an entry point's object argument ([`enter`]), or return from the entry point:
/// with `STATUS_INVALID_PARAMETER`, or with the value after `else` for an entry point that
/// returns something other than a status.
macro_rules! target {
    ($ptr:expr, $kind:ident, $function:expr) => {
        target!($ptr, $kind, $function, else NtStatus::INVALID_PARAMETER)
    };
    ($ptr:expr, $kind:ident, $function:expr, else ()) => {
        match $crate::abi::enter($ptr, $crate::ObjectKind::$kind, $function) {
            Some(t) => t,
            None => return,
        }
    };
    ($ptr:expr, $kind:ident, $function:expr, else $failed:expr) => {
        match $crate::abi::enter($ptr, $crate::ObjectKind::$kind, $function) {
            Some(t) => t,
            None => return $failed,
        }
    };
}

/// Entry points softndk does not emulate ([`not_supported`]): each with its C prototype's
/// parameters in order (the object first), the object's kind and the NDKPI function's name.
macro_rules! unsupported {
    ($(
        fn $name:ident($obj:ident: *mut $ty:ty $(, $arg:ident: $argty:ty)* $(,)?)
            = $kind:ident, $function:literal;
    )*) => {
        $(
            unsafe extern "system" fn $name($obj: *mut $ty $(, $arg: $argty)*) -> NTSTATUS {
                $crate::abi::not_supported($obj, $crate::ObjectKind::$kind, $function)
            }
        )*
    };
}

/// The two dispatch tables of an object whose table grew in a later NDKPI version (built by
/// the module's `const fn table(newer: bool)`), and `dispatch(newer)`, which picks the one for
/// the negotiated version; `$since` names the version that added the members.
macro_rules! versioned_tables {
    ($table:ty, $newer:ident, $since:literal) => {
        static OLDER: $table = table(false);
        static NEWER: $table = table(true);

        #[doc = concat!(
                                    "The table for the negotiated version: `", stringify!($newer),
                                    "` when it is at least ", $since, "."
                                )]
        pub(super) fn dispatch($newer: bool) -> &'static $table {
            if $newer { &NEWER } else { &OLDER }
        }
    };
}

mod adapter;
mod args;
mod connector;
mod cq;
mod listener;
mod mr;
mod pd;
mod qp;
mod wsk;

use std::ffi::c_void;
use std::sync::Arc;

use ndkpi_sys::*;

use crate::ObjectKind;
use crate::fabric::Shared;
use crate::misuse::Violation;
use crate::object::{self, Busy, ObjId, ObjectPtr};
use crate::world::{Body, Call, CloseState, Ctx, Out, World};

pub(crate) use wsk::{WSK_NDK_DISPATCH, register_client, unregister_client};

// --- object lookup ----------------------------------------------------------------------------

/// A validated object pointer.
struct Target {
    shared: Arc<Shared>,
    id: ObjId,
    block: ObjectPtr,
    function: &'static str,
    /// What the entry point allocates is softndk's (see `alloc_check::Owner`).
    _owner: crate::alloc_check::OwnerScope,
}

/// Validate `ptr` as a live object of `kind`. On failure the violation is reported and `None`
/// returned. A pointer that belongs to no fabric cannot be recorded anywhere, so it always
/// panics.
fn enter<T>(ptr: *mut T, kind: ObjectKind, function: &'static str) -> Option<Target> {
    let owner = crate::alloc_check::provider_scope();
    let Some((shared, entry)) = object::lookup(ptr.addr()) else {
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
        block: entry.block,
        function,
        _owner: owner,
    })
}

/// [`enter`] for an entry point that returns a status: an invalid object pointer is
/// `STATUS_INVALID_PARAMETER`.
fn entered<T>(ptr: *mut T, kind: ObjectKind, function: &'static str) -> Result<Target, NTSTATUS> {
    enter(ptr, kind, function).ok_or(NtStatus::INVALID_PARAMETER)
}

/// The status an entry point returns, from a body that returns early (`?`) with a failure
/// status.
fn status_of(body: impl FnOnce() -> Result<NTSTATUS, NTSTATUS>) -> NTSTATUS {
    body().unwrap_or_else(|status| status)
}

/// An entry point softndk does not emulate: the object is validated, then
/// `STATUS_NOT_SUPPORTED`.
fn not_supported<T>(ptr: *mut T, kind: ObjectKind, function: &'static str) -> NTSTATUS {
    status_of(|| Ok(entered(ptr, kind, function)?.not_supported()))
}

/// What a call did with the world lock held: its result and the callbacks it owes.
struct Ran {
    result: Result<NTSTATUS, Violation>,
    out: Out,
}

impl Target {
    /// Run `op` on the open object with the lock held, then deliver. A violation is reported
    /// and turns into `STATUS_INVALID_PARAMETER`.
    fn with(
        &self,
        op: impl FnOnce(&mut World, &mut Out) -> Result<NTSTATUS, Violation>,
    ) -> NTSTATUS {
        let ran = self.run(op);
        self.deliver(ran)
    }

    /// Run `op` on the open object with the lock held; the callbacks it produced are not
    /// delivered yet (see [`Target::deliver`]).
    fn run(&self, op: impl FnOnce(&mut World, &mut Out) -> Result<NTSTATUS, Violation>) -> Ran {
        let mut out = Out::default();
        let result = {
            let mut world = self.shared.world();
            world
                .open(self.id, self.function)
                .map(|_| ())
                .and_then(|()| op(&mut world, &mut out))
        };
        Ran { result, out }
    }

    /// Deliver the callbacks a call produced (the caller holds no provider lock); a violation
    /// is reported and turns into `STATUS_INVALID_PARAMETER`.
    fn deliver(&self, ran: Ran) -> NTSTATUS {
        self.shared.dispatch(ran.out);
        ran.result.unwrap_or_else(|v| {
            self.shared.report(v);
            NtStatus::INVALID_PARAMETER
        })
    }

    /// `STATUS_NOT_SUPPORTED`, once the object is known to be open.
    fn not_supported(&self) -> NTSTATUS {
        self.with(|_, _| Ok(NtStatus::NOT_SUPPORTED))
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
            match world.objects.get(self.id).map(|o| (o.close, o.kind)) {
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
        self.deliver(Ran { result, out })
    }

    /// Enter one of the object's serialised paths (a QP queue, a CQ).
    fn serialise(&self, which: Busy) -> Option<object::BusyGuard> {
        let guard = self.block.enter(which);
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
                let parent = &world.objects[self.id];
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
            let (id, block) = world.create_object(kind, adapter, host, version, antecedents, body);
            if world.complete_now() {
                created = Some(block);
                Ok(NtStatus::SUCCESS)
            } else {
                world.emit(
                    out,
                    id,
                    Call::Create {
                        f: completion,
                        ctx: Ctx(ctx),
                        status: NtStatus::SUCCESS,
                        object: Some(block),
                    },
                );
                Ok(NtStatus::PENDING)
            }
        });
        if let Some(block) = created {
            // SAFETY: `out_object` is non-null and, per the NDK contract, points to writable
            // storage for one object pointer.
            unsafe { out_object.write(block.as_ndk::<T>()) };
        }
        status
    }
}

// --- generic ----------------------------------------------------------------------------------

fn kind_of_header(ptr: *mut NDK_OBJECT_HEADER) -> Option<ObjectKind> {
    object::lookup(ptr.addr()).map(|(_, e)| e.kind)
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
        .get(t.id)
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
    not_supported(obj, kind, "NdkQueryExtension")
}

/// The dispatch table for an object of `kind` at the negotiated `version`: members added in a
/// later version are NULL below it.
pub(crate) fn dispatch_table(kind: ObjectKind, version: NDK_VERSION) -> *const c_void {
    let v12 = version >= NDK_VERSION { Major: 1, Minor: 2 };
    let v21 = version >= NDK_VERSION { Major: 2, Minor: 1 };
    match kind {
        ObjectKind::Adapter => std::ptr::from_ref(&adapter::DISPATCH).cast(),
        ObjectKind::Pd => std::ptr::from_ref(&pd::DISPATCH).cast(),
        ObjectKind::Cq => std::ptr::from_ref(cq::dispatch(v12)).cast(),
        ObjectKind::Qp => std::ptr::from_ref(qp::dispatch(v12)).cast(),
        ObjectKind::Connector => std::ptr::from_ref(connector::dispatch(v21)).cast(),
        ObjectKind::Listener => std::ptr::from_ref(&listener::DISPATCH).cast(),
        ObjectKind::Mr => std::ptr::from_ref(&mr::DISPATCH).cast(),
        // Never created: their create functions return STATUS_NOT_SUPPORTED.
        ObjectKind::Mw | ObjectKind::Srq | ObjectKind::SharedEndpoint => std::ptr::null(),
    }
}
