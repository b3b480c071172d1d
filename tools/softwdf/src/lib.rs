//! # softwdf — an emulated KMDF for the KMDF shell's host build
//!
//! `ndkdisc.sys`'s shell (`driver/kmdf`) is the code of ndkdisc that never ran: it needs WDF,
//! WSK and the kernel. softwdf is those, in-process, over softndk, so the shell's own functions
//! — `DriverEntry`, device add, file create/cleanup/close, `EvtIoDeviceControl`, the cancel
//! routine, the work item, the ports over spin locks, events and wait locks — run on Linux,
//! natively and under Miri:
//!
//! - the WDF function table (`wdk_sys::WdfFunctions`, KMDF 1.31's indexes): every function the
//!   shell calls ([`wdf`]), with KMDF's semantics, each citing the KMDF source
//!   (microsoft/Windows-Driver-Frameworks, MIT) it follows;
//! - the ntoskrnl imports (pool, MDLs, spin locks, events, waits, time, ETW: `nt`) and the
//!   netio ones (WSK, whose NDK extension is softndk's; the address table: `wsk`), as
//!   `#[no_mangle]` functions the shell's calls link to;
//! - the I/O manager and PnP ([`System`], [`Handle`], [`Io`]): load, add the device, open,
//!   `DeviceIoControl`, `CancelIoEx`, `CloseHandle`, remove, unload, in any order a test asks;
//! - the rules KMDF Verifier and Driver Verifier check, where softwdf can see them
//!   ([`Rule`]): a request completed twice or while still cancelable, a wait under a spin lock
//!   or above its IRQL, a callback returning at another IRQL, a flush from the work item
//!   itself, objects, pool, MDLs and registrations left at unload. Each is recorded as a
//!   [`Violation`] and printed; a test asserts there are none.
//!
//! What it is not: KMDF. It is our reading of KMDF's source and documentation, and only of the
//! parts the shell uses (parallel queues, `METHOD_BUFFERED`, one device). A behaviour softwdf
//! gets wrong the real framework does not forgive; a test passing here proves the shell right
//! against this reading, not against Windows.
//!
//! Where KMDF's verifier is silent and softwdf is not: an object the driver parented to the
//! driver object and never deleted is reported at unload (KMDF disposes of it silently, but in
//! this driver each belongs to one connection or listener, so one left at unload leaked for the
//! driver's whole life); a recursive wait-lock acquire is a violation (KMDF asserts it only on
//! checked builds; it deadlocks), and so is deleting a wait lock while it is held (KMDF does not
//! detect it; the holder's release then uses a deleted object).
//!
//! Where softwdf is kinder than Windows, known: request handles are never reused within a boot
//! (KMDF reuses request memory, so a stale token could match a new request there); the shell's
//! host build allocates from std's allocator, so its own `Box`/`Arc` allocations are neither
//! pool-tracked nor failed on purpose (the engine's are, in `driver/core/tests/alloc_failure.rs`);
//! object cleanup and destroy callbacks always run at `PASSIVE_LEVEL`.

#![expect(
    clippy::doc_markdown,
    reason = "KMDF, WDM and WSK names (DriverEntry, WdfRequestComplete, IRP_MJ_CLOSE) are prose here"
)]

mod io;
mod kernel;
mod nt;
mod objects;
mod request;
mod wdf;
mod wsk;

pub use io::{Access, Device, DriverEntry, Handle, Io, Machine, Report, System};
pub use kernel::{Rule, Violation};
pub use nt::EtwEvent;
pub use request::Completion;
