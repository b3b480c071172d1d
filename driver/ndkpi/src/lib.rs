//! # ndkpi — safe consumer-side wrappers over the NDKPI tables
//!
//! The kernel-consumer half of NDK as safe Rust: owned handles for each NDK object that close
//! exactly once (`close(self)` consumes the handle), completion trampolines that route every
//! provider callback to a [`Sink`], and version-aware registration of the disconnect callback
//! (`NdkCompleteConnectEx` / `NdkAcceptEx` with the provider's reason when the adapter speaks
//! NDKPI 2.1, the plain forms otherwise).
//!
//! In the event path it sits between the provider and the driver core: the provider's
//! disconnect, connect-event, CQ and completion callbacks enter through its trampolines and
//! reach the core's connection or listener as [`Sink`] calls; the core's requests leave through
//! its handles as calls into the provider's dispatch tables (`ndkpi-sys`). On the host the
//! provider is `softndk`, reached through the same tables.
//!
//! ## The callback contract
//!
//! - Every asynchronous operation reports **exactly once** through its sink: inline (before the
//!   method returns) when the provider finished synchronously or failed at once, otherwise from
//!   the provider's completion callback — which may also run before the method returns, or on
//!   another thread. A sink must tolerate all three.
//! - NDK holds **one reference to a sink per live object** whose callbacks go to it (taken when
//!   the create starts, or when an incoming connector is first registered with a sink), and one
//!   per create in flight. The trampoline releases it *after* the object's last callback — its
//!   close completion, or a failed create's completion — has returned, never while it runs, so a
//!   sink always outlives the provider's last use of it. Dropping a handle without closing it
//!   leaks the object and its reference (never a use-after-free).
//! - `// IRQL:` every method here may be called at <= `DISPATCH_LEVEL`, except
//!   [`Wsk::open_adapter`], [`Adapter::query_info`] and [`Wsk::close_adapter`] (`PASSIVE_LEVEL`).
//!   Sinks are called at <= `DISPATCH_LEVEL` and must not block.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

extern crate alloc;

mod address;
mod handles;
mod memory;
mod sink;
mod wsk;

pub use address::SockAddrBuf;
/// Windows socket addresses as `core::net` ones.
pub mod sockaddr {
    pub use crate::address::{v4, v6};
}
pub use handles::{Adapter, Completion, Connector, Cq, Listener, Mr, Pd, Qp, QueuePair, Sge};
pub use memory::{Buffer, RegisteredMemory};
pub use ndkpi_sys as sys;
pub use sink::{Created, Op, Sink};
pub use wsk::Wsk;

pub use ndkpi_sys::NtStatus;
