//! # ndkdisc-core — the driver's brain
//!
//! Everything ndkdisc decides, written once in host-testable Rust (`no_std` + `alloc`, no
//! `unsafe`) and driven by the KMDF shell on Windows or by the host platform in tests.
//!
//! This first part is the **event path** ([`events`]): how a fact about a connection (connected,
//! disconnected by the peer, flushed, closed) becomes an event that user mode receives through a
//! pended WAIT, under the guarantees of `DESIGN.md` §3–4:
//!
//! - **No allocation, no drop.** Each connection owns a fixed set of event records, allocated
//!   when it is created; a handle's queue has room for every record of every connection it may
//!   hold, reserved up front. Latching an event never allocates and can never overflow.
//! - **Exactly one terminal event.** `ConnectFailed` or `Disconnected` is latched once per
//!   connection; a late, duplicated or racing fact is counted and otherwise ignored.
//! - **Level-triggered.** A WAIT that arrives after the event completes at once.
//! - **Ordered batches.** One WAIT returns up to as many events as its buffer holds, in latch
//!   order (sequence numbers strictly increase per handle).
//! - **Cancellation loses nothing.** A pended WAIT is cancelable; whoever takes it from the
//!   queue first under the handle's lock — the event path, ABORT, handle cleanup, or the
//!   cancel routine — completes it. The event path takes a wait only after
//!   `unmark_cancelable` succeeded, so an event racing a cancel stays queued for the next wait.
//!
//! The ports the engine needs from its platform are in [`ports`].
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod conn;
mod engine;
pub mod events;
#[cfg(feature = "host")]
pub mod host;
pub mod ports;
mod step;

pub use engine::{Config, DRIVER_VERSION, Engine, Owner};
