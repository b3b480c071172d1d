//! # ndkdisc-core — the driver's brain
//!
//! Everything ndkdisc decides, written once in host-testable Rust (`no_std` + `alloc`, no
//! `unsafe`) and driven by the KMDF shell on Windows or by the host platform in tests.
//!
//! The **event path** ([`events`]) is how a fact about a connection (connected,
//! disconnected by the peer, flushed, closed) becomes an event that user mode receives through a
//! pended WAIT. It runs at `DISPATCH_LEVEL` in provider callbacks, so it never blocks, allocates
//! or calls NDK, under these guarantees:
//!
//! - **No allocation, no drop.** Each connection owns a fixed set of event records, allocated
//!   when it is created; a handle's queue has room for every record of every connection it may
//!   hold, reserved up front. Latching an event never allocates and can never overflow.
//! - **Exactly one terminal event.** `ConnectFailed` or `Disconnected` is latched once per
//!   connection; a late, duplicated or racing fact is counted and otherwise ignored.
//! - **Level-triggered.** A WAIT that arrives after the event completes at once; so does a WAIT
//!   on one connection whose terminal event was already delivered (say, to an any-connection
//!   WAIT) and that has nothing else queued: it gets a copy of the terminal record, still held
//!   in the connection's slots, flagged `EVENT_ALREADY_DELIVERED`. Once its `Closed` event was
//!   delivered the connection's id is gone (`STATUS_NOT_FOUND`).
//! - **Ordered batches.** One WAIT returns up to as many events as its buffer holds, in latch
//!   order (sequence numbers strictly increase per handle).
//! - **Cancellation loses nothing.** A pended WAIT is cancelable; whoever takes it from the
//!   queue first under the handle's lock — the event path, ABORT, handle cleanup, or the
//!   cancel routine — completes it. The event path takes a wait only after
//!   `unmark_cancelable` succeeded, so an event racing a cancel stays queued for the next wait.
//!   Cleanup marks the queue first, under its lock: a WAIT that raced `CloseHandle` and arrives
//!   afterwards completes with `STATUS_CANCELLED` instead of pending forever.
//!
//! The **engine** ([`Engine`], one [`Owner`] per file handle) parses each IOCTL once
//! (`ndkdisc-abi`), checks output sizes before any effect, and drives NDK through `ndkpi`:
//!
//! - CONNECT: adapter (asking for NDKPI 2.0, then 1.1: the lowest minor of each major we
//!   support, so the provider answers with its highest — 2.1 brings the disconnect reason),
//!   PD, CQ, QP, connector, created and waited for at
//!   `PASSIVE_LEVEL`; then `NdkConnect` -> `NdkCompleteConnect(Ex)` from the callbacks, with the
//!   disconnect callback registered. LISTEN: incoming connect events go through a preallocated
//!   backlog to a passive work item that creates the connection and calls `NdkAccept(Ex)` (again
//!   with the callback); requests beyond the backlog or the handle's connection quota, and
//!   those reaching a closing listener, are refused with `NdkReject` and then closed (overflow
//!   and quota refusals are counted). The backlog and the listener's closing flag share one
//!   lock, so no request lands in the backlog after CLOSE emptied it (and a listener dropped
//!   with requests queued refuses them).
//! - CLOSE of a listener never waits: NDK completes a listener's close only once every
//!   connection accepted through it is closed. Its close completion defers to the listener's
//!   work item, which releases the adapter at `PASSIVE_LEVEL`; the adapter is shared with the
//!   accepted connections, and whichever releases it last closes it. Handle cleanup, which
//!   closes the connections first, waits for the listener's close.
//! - No NDK call is made with an engine lock held (a provider may hold its own lock while it
//!   calls our disconnect callback, which takes ours); the host platform's lock tells softndk,
//!   which reports such a call as a misuse.
//! - Every error path of LISTEN and CONNECT releases what it opened before the IOCTL completes.
//! - The disconnect callback only latches `Disconnected`/`Peer` (with the provider reason and
//!   the work still posted) and completes a wait. **Nothing is flushed on a peer disconnect**:
//!   the only `NdkFlush` ndkdisc makes is FLUSH's.
//! - DISCONNECT (graceful or abortive), ABORT, FLUSH, POST, QUERY, CLOSE and handle cleanup; each
//!   connection releases every NDK object it created (softndk's live-object count returns to
//!   zero), adapters last, at `PASSIVE_LEVEL`.
//!
//! - A pended CONNECT is cancelable: the cancel routine (at <= `DISPATCH_LEVEL`) completes it
//!   with `STATUS_CANCELLED`, latches `ConnectFailed` if still connecting, and defers the
//!   release of the connection to a work item allocated with it.
//! - Every passive-level sequence on an object (create, POST's registrations, teardown) holds
//!   that object's step session (its platform wait lock, `ports::WaitLock`: a WDF wait lock on
//!   Windows), so CLOSE racing ABORT or cleanup returns only once every NDK
//!   object of the connection is released. Object clones live only inside such a session or
//!   inside `with_objects`, so teardown never misses one; a session that would create objects
//!   after teardown does not.
//! - Every state change latches its event in the connection's lock, so events follow states;
//!   nothing is latched after `Closed`, and a fact through a reused record is refused.
//! - Deferral to `PASSIVE_LEVEL` never refuses work: each work item holds a reserved slot of
//!   the engine's own queue; the platform holds only the engine's drainer, given once, and is
//!   only ever kicked to run it.
//! - What hardware does is handled (softndk does it by default): a graceful DISCONNECT pends
//!   until `NdkDisconnect` completes — when the peer answered, or with the timeout or abort
//!   status — and reports that outcome in its completion and in the `Local` event; after a peer
//!   disconnect it answers the peer's `NdkDisconnect`. Error completions and dead CQs (overrun,
//!   fatal) end the connection once with `TransportError`; QUERY counts failed completions, keeps
//!   the last one's status and provider code, and says when the provider flushed on its own.
//!   FLUSH reports `Flushed` when the (asynchronous) flush has drained, or at once if the CQ is
//!   dead. An adapter removal the platform reports ([`Engine::adapter_removed`]) ends the
//!   connections on it with `AdapterRemoved`.
//! - After handle cleanup nothing joins the handle: a CONNECT or an accept still in flight
//!   releases its connection, and every pended request is answered.
//! - Limits: at most [`Config::max_handles`] handles are open at once ([`Engine::open`]
//!   refuses one more with `STATUS_QUOTA_EXCEEDED`; a handle's place comes back when its
//!   [`Owner`] is dropped, and an open that fails takes none), and each handle has its quotas
//!   (connections, pended waits, listeners, backlog). A handle is opened with an [`Access`]:
//!   `GET_INFO` gives the engine-wide counters, which tell of every handle's traffic, only to a
//!   handle opened for writing; to a read-only one they read zero.
//!
//! Tests: `events` unit tests; end-to-end `tests/flows.rs`, `tests/contract.rs` (the
//! guarantees above, each with a test that failed before it held), `tests/limits.rs` (the handle
//! cap and the counters a read-only handle sees) and `tests/races.rs` (cancelled
//! CONNECT, cancel racing establishment, CLOSE racing ABORT, peer disconnect before connect or
//! accept completes, link loss) through softndk in every completion mode; loom models of the
//! lock protocol (`tests/loom_events.rs`, `--cfg loom`).
//! Benchmarks of the event path against the engine's targets (on a 2-core host: the disconnect
//! callback under 100 ns with no allocation however many waits are pended, at least 10 million
//! events per second to a waiter in batches, at most 768 bytes of engine memory per established
//! connection, a one-million-connection disconnect storm delivered in under a second):
//! `benches/event_path.rs`, results in `BENCHMARKS.md`.
//!
//! ## The modules, in the order a fact travels
//!
//! A provider callback (through `ndkpi`'s trampolines) lands in a **connection** (`conn`: its
//! NDK objects, its state and the flows that drive it) or a **listener** (`listener`: the
//! backlog of incoming requests and the work item that accepts them). Either reports to the
//! **handle** that owns it (`owner`) only through a narrow interface it defines itself
//! (`ConnOwner`, `ListenerOwner`): latch a fact in the handle's queue ([`events`]) and complete
//! the wait it satisfies, register a request that pends, join or leave the handle. An IOCTL
//! comes in the other way: `dispatch` parses it and hands it to the handle ([`Owner`]), one of
//! its connections or listeners; the [`Engine`] opens handles and tells them of an adapter's
//! removal. Under them all: the engine's shared `runtime` (platform, settings, counters, ids,
//! deferral), the deferral queue (`defer`), each object's passive-level steps (`step`), the
//! teardown's count of object users (`users`), the atomics (`sync`: loom's under `--cfg loom`)
//! and the platform's [`ports`]. Imports run one way: dispatch and engine -> owner -> listener
//! -> conn -> runtime -> events -> ports, step, users, defer, sync.
//!
//! Every fallible step returns an [`Error`]; it becomes an NTSTATUS in one place,
//! [`Error::ntstatus`], when dispatch completes the request (or a failed CONNECT reports its
//! outcome).
//!
//! ## Its place among the crates
//!
//! This crate depends only on `ndkpi` (the NDK calls) and `ndkdisc-abi` (the IOCTL records).
//! The ports it needs from its platform are in [`ports`]: the KMDF shell (`ndkdisc.sys`)
//! implements them on Windows, and the `ndkdisc-host` crate (std locks, a simulated IRQL, a
//! softndk fabric) on any host, for the tests, the benchmarks and the client's simulation
//! backend.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod conn;
mod defer;
mod dispatch;
mod engine;
mod error;
pub mod etw;
pub mod events;
pub mod ids;
mod listener;
mod owner;
pub mod ports;
mod runtime;
mod step;
mod sync;
mod users;

pub use dispatch::DRIVER_VERSION;
pub use engine::Engine;
pub use error::Error;
/// The fallible allocation the engine uses (its `Arc` is what [`Engine::new`] takes the
/// platform in, and what [`ports::SharedPassive`] is).
pub use kalloc;
pub use owner::{Access, Owner};
pub use runtime::Config;
