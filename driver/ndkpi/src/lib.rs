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
//!
//! ## What the types rule out
//!
//! Each of these compiled once and let safe code cause undefined behaviour; now it does not
//! compile (each `compile_fail` example is a test, next to the form that does compile).
//!
//! **Memory freed under an MR.** [`Mr::register`] takes (a counted reference to) the memory
//! and the MR keeps it until its close completes, so the caller can neither lend it nor use
//! what it handed over:
//!
//! ```
//! # use kalloc::Arc;
//! # use ndkpi::{Mr, SharedMemory, Sink};
//! fn register<T: Sink>(mr: &mut Mr, sink: &Arc<T>, memory: SharedMemory) {
//!     mr.register(sink, memory);
//! }
//! ```
//! ```compile_fail,E0308
//! # use kalloc::Arc;
//! # use ndkpi::{Mr, RegisteredMemory, Sink};
//! fn register<T: Sink>(mr: &mut Mr, sink: &Arc<T>, memory: Box<dyn RegisteredMemory>) {
//!     mr.register(sink, &*memory); // lent, not given
//!     drop(memory); // would free it while the provider may still write into it
//! }
//! ```
//! ```compile_fail,E0382
//! # use kalloc::Arc;
//! # use ndkpi::{Mr, SharedMemory, Sink};
//! fn register<T: Sink>(mr: &mut Mr, sink: &Arc<T>, memory: SharedMemory) {
//!     mr.register(sink, memory);
//!     let _ = memory.len(); // handed over to the MR
//! }
//! ```
//!
//! **A CQ reaped or armed by two contexts at once.** NDK requires `NdkGetCqResults(Ex)` and
//! `NdkArmCq` to be serialised per CQ: they are methods of the CQ's one [`Reaper`], taking
//! `&mut self`, not of the shareable [`Cq`]:
//!
//! ```
//! # use ndkpi::{Completion, Cq, sys::NDK_CQ_NOTIFY_ANY};
//! fn reap(cq: &Cq, out: &mut [Completion]) {
//!     let Some(mut reaper) = cq.reaper() else { return }; // another context reaps
//!     loop {
//!         while reaper.results(out) == out.len() {}
//!         reaper.arm(NDK_CQ_NOTIFY_ANY);
//!         match reaper.release() {
//!             Ok(()) => return,
//!             Err(again) => reaper = again, // refused to someone meanwhile: go round again
//!         }
//!     }
//! }
//! ```
//! ```compile_fail,E0599
//! # use ndkpi::{Cq, sys::NDK_CQ_NOTIFY_ANY};
//! fn arm(cq: &Cq) {
//!     cq.arm(NDK_CQ_NOTIFY_ANY); // no reaper
//! }
//! ```
//! ```compile_fail,E0599
//! # use ndkpi::{Completion, Cq};
//! fn results(cq: &Cq, out: &mut [Completion]) -> usize {
//!     cq.results(out) // no reaper
//! }
//! ```
//! ```compile_fail,E0499
//! # use ndkpi::{Cq, sys::NDK_CQ_NOTIFY_ANY};
//! fn race(cq: &Cq) {
//!     let Some(mut reaper) = cq.reaper() else { return };
//!     std::thread::scope(|s| {
//!         s.spawn(|| reaper.arm(NDK_CQ_NOTIFY_ANY));
//!         s.spawn(|| reaper.arm(NDK_CQ_NOTIFY_ANY)); // one reaper, two threads
//!     });
//! }
//! ```
//!
//! **Two posts to one queue at once.** NDK requires posts to be serialised per queue: a
//! [`QueuePair`] posts only through its queue's one guard ([`ReceiveQueue`],
//! [`InitiatorQueue`]), taking `&mut self`:
//!
//! ```
//! # use ndkpi::{NtStatus, QueuePair};
//! fn post(qp: &QueuePair) -> Option<NtStatus> {
//!     let receive = qp.receive_queue()?.post_receive(0, 0, 16, 1);
//!     let send = qp.initiator_queue()?.post_send(0, 0, 16, 2);
//!     Some(if receive == NtStatus::SUCCESS { send } else { receive })
//! }
//! ```
//! ```compile_fail,E0599
//! # use ndkpi::{NtStatus, QueuePair};
//! fn post(qp: &QueuePair) -> NtStatus {
//!     qp.post_receive(0, 0, 16, 1) // no guard
//! }
//! ```
//! ```compile_fail,E0599
//! # use ndkpi::{NtStatus, QueuePair};
//! fn post(qp: &QueuePair) -> NtStatus {
//!     qp.post_send(0, 0, 16, 1) // no guard
//! }
//! ```
//! ```compile_fail,E0499
//! # use ndkpi::QueuePair;
//! fn race(qp: &QueuePair) {
//!     let Some(mut queue) = qp.receive_queue() else { return };
//!     std::thread::scope(|s| {
//!         s.spawn(|| queue.post_receive(0, 0, 16, 1));
//!         s.spawn(|| queue.post_receive(0, 16, 16, 2)); // one guard, two threads
//!     });
//! }
//! ```
//!
//! **A handle forged from a pointer.** A handle is the only owner of its provider object, so
//! making one from a raw pointer is `unsafe`: the caller vouches for the object.
//!
//! ```
//! # use core::ptr::NonNull;
//! # use ndkpi::{Cq, sys::NDK_CQ};
//! /// # Safety
//! /// `raw` is a live CQ nothing else uses or closes.
//! unsafe fn adopt(raw: NonNull<NDK_CQ>) -> Cq {
//!     // SAFETY: the caller's contract is `from_raw`'s.
//!     unsafe { Cq::from_raw(raw) }
//! }
//! ```
//! ```compile_fail,E0133
//! # use core::ptr::NonNull;
//! # use ndkpi::{Cq, sys::NDK_CQ};
//! fn adopt(raw: NonNull<NDK_CQ>) -> Cq {
//!     Cq::from_raw(raw)
//! }
//! ```
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
pub use handles::{
    Adapter, Completion, Connector, Cq, InitiatorQueue, Listener, Mr, Pd, Qp, QueuePair, Reaper,
    ReceiveQueue, Sge,
};
pub use memory::{Buffer, RegisteredMemory, SharedMemory};
pub use ndkpi_sys as sys;
pub use sink::{Created, Op, Sink};
pub use wsk::Wsk;

pub use ndkpi_sys::NtStatus;
