//! The atomics the engine uses, from one place: `core`'s in every real build, loom's when built
//! with `--cfg loom`, so a loom model that runs engine code explores every ordering those
//! atomics allow. No module names `core::sync::atomic` itself.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
