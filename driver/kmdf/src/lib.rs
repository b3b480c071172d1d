//! # ndkdisc.sys — the KMDF shell over ndkdisc-core
//!
//! The driver binary: `DriverEntry`, a root-enumerated device (`Root\NdkDisc`), its default
//! queue, file objects and work item, the WSK registration that yields the NDK extension, and
//! the core's ports (`ndkdisc_core::ports`) implemented over WDM and WDF. Nothing here decides
//! anything: every decision — IOCTL validation, the event path, cancellation races, ownership,
//! the NDK flows — is in `ndkdisc-core`, tested on any host against softndk.
//!
//! The crate builds only on Windows with the WDK (wdk-build cannot run elsewhere), through the
//! packaging flow (`cargo make`, see the README). On other hosts it is empty, so
//! `cargo test --workspace` works there; on a Windows host test the rest of the workspace with
//! `cargo test --workspace --exclude ndkdisc` (what CI runs under Wine).
//!
//! ## Its place in the event path
//!
//! The path runs provider → `ndkpi` → `ndkdisc-core` → request completion → the client →
//! `ndkctl`. This crate is the two ends of it that touch the kernel:
//!
//! - **In:** an IOCTL from `ndkdisc-client` reaches the default queue's `EvtIoDeviceControl`,
//!   which wraps the `WDFREQUEST` (`request::Request`), copies its input, and hands the core's
//!   `Owner` of the file handle the code, the input and the request as a `KmRequest`. The core
//!   completes it at once or pends it (a WAIT, a CONNECT), marking it cancelable with this
//!   crate's cancel routine, which hands the cancel back to the same owner.
//! - **Middle:** the NDK provider's completions reach the core through `ndkpi`'s trampolines
//!   (each provider callback is an `extern "system"` function there that forwards to the
//!   core's `Sink`), so the shell adds no callback of its own; what the core must do at
//!   `PASSIVE_LEVEL` it defers to the device's work item (`platform`).
//! - **Out:** the core completes a pended request through `KmRequest::complete`
//!   (`WdfRequestCompleteWithInformation`), and the client's `DeviceIoControl` returns with its
//!   output (for a WAIT, the event records).
//!
//! ## Layout
//!
//! The modules' imports run one way: `driver` → `device` → `platform` → `request`, with `wsk`
//! and `wdf` below them. Callbacks a lower module needs (the cancel routine) are passed down
//! as values.
//!
//! - `driver`: `DriverEntry` and `EvtDriverUnload`, around the WSK registration.
//! - `wsk`: the driver's WSK client (`WskRegister`, `WskCaptureProviderNPI`,
//!   `WskControlClient(WSKNDK_GET_WSK_PROVIDER_NDK_DISPATCH)`, release and deregistration)
//!   and the NDK extension it yields to each device.
//! - `device`: `EvtDriverDeviceAdd` and every device, file, queue, cancel and work-item
//!   callback, each a short trampoline: recover the context, call the core, complete.
//! - `platform`: the ports — `KmLock` (`KSPIN_LOCK`), `KmSignal` (`KEVENT`), `KmWaitLock`
//!   (`WDFWAITLOCK`), the drainer's kick over one `WDFWORKITEM`, pool + MDL memory, the address table.
//! - `request`: every `WDFREQUEST` call — `Request` (a presented request: file object, input
//!   copy, completion), `KmRequest` (the pended-request port: output, cancelability,
//!   completion with information) and `RequestRef` (the cancel routine's view).
//! - `wdf`: structure sizes, context types, constant `UNICODE_STRING`s.
//!
//! ## Every KMDF, WDM and NDK call, its IRQL, and why it is allowed there
//!
//! | call | where | IRQL there | allowed because |
//! |---|---|---|---|
//! | `WskRegister`, `WskCaptureProviderNPI` (10 s wait), `WskControlClient` (no IRP) | `DriverEntry` | PASSIVE | all three allow PASSIVE; a bounded capture wait needs PASSIVE |
//! | `WdfDriverCreate` | `DriverEntry` | PASSIVE | PASSIVE only |
//! | `WskReleaseProviderNPI`, `WskDeregister` | `EvtDriverUnload`, or a failed `DriverEntry` | PASSIVE | release <= DISPATCH; deregister PASSIVE (blocks until WSK lets go) |
//! | `WdfDeviceInitSetFileObjectConfig`, `WdfDeviceInitSetPnpPowerEventCallbacks`, `WdfDeviceInitAssignName`, `WdfDeviceInitAssignSDDLString`, `WdfDeviceCreate` | `EvtDriverDeviceAdd` | PASSIVE | PASSIVE only |
//! | `WdfWorkItemCreate`, `WdfIoQueueCreate`, `WdfDeviceCreateSymbolicLink`, `WdfDeviceCreateDeviceInterface` | `EvtDriverDeviceAdd` | PASSIVE | work item and queue creation allow <= DISPATCH; the link and the interface need PASSIVE |
//! | `WdfObjectGetTypedContextWorker` | every callback | <= DISPATCH | <= DISPATCH |
//! | `WdfRequestComplete` | `EvtDeviceFileCreate`, `EvtIoDeviceControl` | PASSIVE | <= DISPATCH |
//! | `WdfRequestGetParameters` (the create's security context: was write access asked for) | `EvtDeviceFileCreate` | PASSIVE | <= DISPATCH |
//! | `WdfRequestGetFileObject` | `EvtIoDeviceControl`, `EvtRequestCancel` | PASSIVE, <= DISPATCH | <= DISPATCH |
//! | `WdfRequestRetrieveInputBuffer`, `WdfRequestRetrieveOutputBuffer` | `EvtIoDeviceControl` | PASSIVE (queue execution level) | <= DISPATCH; `METHOD_BUFFERED` gives the nonpaged system buffer |
//! | `WdfRequestMarkCancelableEx`, `WdfRequestUnmarkCancelable`, `WdfRequestCompleteWithInformation` | the core, through `KmRequest`, from dispatch or from an NDK callback | <= DISPATCH | <= DISPATCH; the output is nonpaged |
//! | `KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock` | every `KmLock::with` | <= DISPATCH, raised to DISPATCH | <= DISPATCH; the lock word is in nonpaged memory |
//! | `KeInitializeEvent`, `KeSetEvent` (Wait = FALSE) | `KmSignal` | <= DISPATCH | <= DISPATCH; the event is in nonpaged pool |
//! | `KeWaitForSingleObject` (no timeout) | `KmSignal::wait`, called by the core at PASSIVE only | PASSIVE | a wait without a zero timeout requires < DISPATCH |
//! | `WdfWaitLockCreate` (no attributes: the driver is the parent) | `Platform::wait_lock` (a connection's or listener's creation) | PASSIVE | <= DISPATCH |
//! | `WdfWaitLockAcquire` (Timeout = NULL) | `KmWaitLock::acquire`, called by the core at PASSIVE only (a step session) | PASSIVE | NULL timeout requires PASSIVE; the holder stays at PASSIVE in a critical region, so it may call NDK and wait |
//! | `WdfWaitLockRelease` | dropping the session's guard | PASSIVE | <= DISPATCH |
//! | `WdfObjectDelete` (the wait lock) | dropping a connection or listener | <= DISPATCH | <= DISPATCH; the lock is not held (its guards borrow it) |
//! | `KeQueryUnbiasedInterruptTime` | `Platform::now` | any | any |
//! | `WdfWorkItemEnqueue` | `Platform::kick`, from NDK callbacks and cancel routines | <= DISPATCH | <= DISPATCH |
//! | `WdfWorkItemGetParentObject` | `EvtWorkItem` | PASSIVE | <= DISPATCH |
//! | `WdfWorkItemFlush` | `EvtDeviceSelfManagedIoCleanup` | PASSIVE | PASSIVE, not from the work item itself |
//! | `ExAllocatePool2` (nonpaged), `IoAllocateMdl`, `MmBuildMdlForNonPagedPool` | `Platform::memory` (POST) | PASSIVE | <= DISPATCH each |
//! | `IoFreeMdl`, `ExFreePool` | dropping posted memory, after the QP's close completed | <= DISPATCH | <= DISPATCH |
//! | `GetUnicastIpAddressTable`, `FreeMibTable` | `Platform::adapters` (`LIST_ADAPTERS`) | PASSIVE | PASSIVE |
//! | `WskOpenNdkAdapter`, `WskCloseNdkAdapter` | the core through `ndkpi::Wsk` (`CONNECT`, `LISTEN`, `LIST_ADAPTERS`, teardown) | PASSIVE | PASSIVE only; the core never calls them from a callback |
//! | NDK dispatch calls (`NdkCreate*`, `NdkConnect`, `NdkAccept`, `NdkDisconnect`, `NdkFlush`, `NdkCloseObject`, …) | the core through `ndkpi` | PASSIVE for creates and closes it waits for; <= DISPATCH otherwise | per NDKPI; the core waits (`KmSignal`) only at PASSIVE |
//!
//! ## Lifetimes
//!
//! - A file handle's core `Owner` is written into the file object's context in
//!   `EvtDeviceFileCreate` and dropped in `EvtFileClose`. `EvtFileCleanup` calls
//!   `Owner::cleanup`, which cancels the handle's waits and closes its connections and
//!   listeners, waiting for every NDK close. A cancel routine finds the owner through the
//!   request's file object; no request is outstanding at close, so none can race the drop.
//! - The engine and platform live in the device context, from `EvtDriverDeviceAdd` to the
//!   device's `EvtDestroyCallback`, which WDF runs after every child (file objects, the queue,
//!   the work item) is gone.
//! - Deferral never allocates and holds no queue: the engine gives the platform its drainer
//!   once (`Platform::set_drainer`, at engine creation) and afterwards only kicks it
//!   (`Platform::kick`), which enqueues the device's one `WDFWORKITEM`; the item's routine
//!   runs the drainer, which runs the core's own queue of deferred work (room reserved per
//!   handle, `ndkdisc-core`'s `defer` module). A kick while the item is queued adds nothing
//!   (`WdfWorkItemEnqueue` does not enqueue twice) and the drainer's run covers it.
//!   `EvtDeviceSelfManagedIoCleanup` (every handle is closed by then) first lets the engine
//!   finish what NDK callbacks still owe it (`Engine::quiesce`: a listener closed by `CLOSE`
//!   just before has its adapter released by deferred work once NDK completes its close), then
//!   stops the kicks: flush, close the gate (checked with each enqueue under one spin lock),
//!   flush again, so no engine work runs once the cleanup has returned. The shell's host build
//!   runs this removal in every softwdf test (`tools/softwdf`).
//! - A `KmWaitLock` (a connection's or listener's step session) is a `WDFWAITLOCK` whose parent
//!   is the driver object, which outlives every device and so every object of an engine; it
//!   is deleted when the connection or listener drops, never while held.
//! - The WSK registration is global (`driver`): made before `WdfDriverCreate` and released in
//!   `EvtDriverUnload`, which WDF calls only when every device — so every handle, and every NDK
//!   object the core opened for it — is gone. `WskDeregister` then waits for WSK itself.
//!
//! ## How the wdk-sys names were checked
//!
//! wdk-sys 0.5.2 generates its bindings at build time from the installed WDK, so there is no
//! generated file to read off Windows. Each name was checked against: the wdk-sys 0.5.2 and
//! wdk 0.5.0 sources from crates.io (`src/constants.rs` for `WDF_NO_HANDLE`,
//! `WDF_NO_OBJECT_ATTRIBUTES`, `POOL_FLAG_NON_PAGED`; `src/lib.rs` for the `ntddk`/`wdf`
//! modules; wdk-build 0.6.0 for the headers bound: `ntifs.h`, `ntddk.h`, `ntstrsafe.h`,
//! `wdf.h`, no inline functions); the macro `call_unsafe_wdf_function_binding!`, which
//! accepts exactly the `Wdf*` names of the WDF function table; and the
//! microsoft/windows-drivers-rs and Windows-rust-driver-samples sources and other public
//! wdk-sys drivers that use the same names. `PFN_WDF_REQUEST_CANCEL` (the cancel routine a
//! `KmRequest` carries) is `wdfrequest.h`'s typedef, which bindgen binds under its C name.
//!
//! ## Known gaps
//!
//! - Allocation cannot abort in the shell's or the engine's code: every `Arc` and `Box` is made
//!   through `kalloc` (fallible constructors; stable Rust has no `Box::try_new`) and every
//!   table grows with `try_reserve`, so a failed allocation is `STATUS_INSUFFICIENT_RESOURCES`.
//!   The host's sweep (`driver/core/tests/alloc_failure.rs`) proves it for the engine; the
//!   shell's few allocations (the platform, `KEVENT`s, posted buffers' boxes, the adapter
//!   list) are checked by review only.
//! - `Platform::adapters` reports every unicast address; the core keeps those whose interface
//!   opens as an NDK adapter.
#![cfg(any(windows, feature = "host"))]
#![no_std]

extern crate alloc;
// The host build (feature `host`, softwdf's tests) takes std's panic handler and allocator;
// the .sys takes the kernel's.
#[cfg(all(not(windows), feature = "host"))]
extern crate std;
#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

mod device;
mod driver;
mod etw;
mod platform;
mod request;
mod wdf;
mod wsk;

/// Every allocation of the driver comes from nonpaged pool, usable at <= `DISPATCH_LEVEL`.
#[cfg(all(windows, not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// WSK and the IP helper table functions are exported by netio.sys (import library netio.lib,
// in the WDK's kernel library directory that wdk-build puts on the link path).
#[cfg(windows)]
#[link(name = "netio")]
unsafe extern "system" {}
