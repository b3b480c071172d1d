//! # ndkdisc-host — the host platform of ndkdisc-core
//!
//! `ndkdisc-core` decides everything and reaches its platform only through its ports
//! ([`ndkdisc_core::ports`]); on Windows the KMDF shell implements them over WDF and WSK. This
//! crate implements them on any host, over std and a softndk fabric, for the core's tests and
//! benchmarks, ndkpi's tests and the client's simulation backend:
//!
//! - [`HostPlatform`]: spin locks as mutexes ([`HostLock`]), `KEVENT`s as condition variables
//!   ([`HostSignal`]), WDF wait locks as a std mutex-guarded flag ([`HostWaitLock`]), one
//!   worker thread standing in for the WDF work item (each kick runs the engine's drainer
//!   there; tests queue their own work behind it with [`HostPlatform::on_passive_worker`]), the
//!   WSK NDK extension of a softndk fabric ([`fabric_wsk`]), and registered memory described
//!   by a soft MDL ([`SoftMemory`]).
//! - [`HostRequest`] and [`Pending`]: a pended request with WDF's cancel rules, and the caller's
//!   side of it (wait, `CancelIoEx`); [`HostHandle`]: a file handle that issues IOCTLs to the
//!   engine's [`ndkdisc_core::Owner`].
//! - [`watch_adapter_removal`]: softndk's adapter removal, reported to the engine as the KMDF
//!   shell reports a plug-and-play removal.
//!
//! In the event path it sits where the KMDF shell does: a fact starts in softndk (a provider
//! callback, on softndk's threads), reaches the engine through ndkpi's trampolines, is latched
//! under a [`HostLock`] and completes a [`HostRequest`] that a [`Pending`] waits on.
//!
//! It checks the kernel's rules as it goes: waiting on a signal or acquiring a wait lock inside
//! an NDK callback (`DISPATCH_LEVEL`) or while holding an engine lock panics, as would a
//! bugcheck; allocating while holding an engine lock, or inside the disconnect callback, is
//! counted by [`softndk::alloc_check`] in test binaries that install its allocator; calling NDK
//! while holding an engine lock is a softndk misuse violation ([`softndk::consumer_lock`]).

use std::sync::Arc;

mod memory;
mod platform;

pub use memory::SoftMemory;
pub use platform::{
    CallbackLockHook, HostHandle, HostLock, HostPlatform, HostRequest, HostSignal, HostWaitGuard,
    HostWaitLock, Pending, on_callback_lock, watch_adapter_removal,
};

/// The WSK NDK extension of a softndk fabric, as `WskControlClient` gives it on Windows; the
/// `Wsk` keeps the fabric alive.
pub fn fabric_wsk(fabric: Arc<softndk::Fabric>) -> ndkpi::Wsk {
    let dispatch = *fabric.wsk_dispatch();
    let client = fabric.wsk_client();
    // SAFETY: softndk's WSK dispatch is `'static`, and its client names the fabric's shared
    // state, valid while the fabric lives: the `Wsk` keeps it alive, and an adapter is opened
    // and closed only through the `Wsk` (softndk reports any other use of a stale client).
    unsafe { ndkpi::Wsk::with_provider(dispatch, client, fabric) }
}

/// An engine over `platform`, shared as the tools and tests hold it.
///
/// # Panics
/// If memory runs out (`Engine::new` fails only then).
#[must_use]
pub fn engine(
    platform: ndkdisc_core::kalloc::Arc<HostPlatform>,
    config: ndkdisc_core::Config,
) -> Arc<ndkdisc_core::Engine<HostPlatform>> {
    Arc::new(ndkdisc_core::Engine::new(platform, config).expect("memory for the engine"))
}
