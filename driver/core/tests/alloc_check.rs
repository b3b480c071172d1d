//! The allocation check itself: it must catch an allocation under an engine lock, or the
//! `violations() == 0` assertions of the other test binaries prove nothing. (Its own binary:
//! the violation it provokes is process-wide.)
#![allow(clippy::pedantic, reason = "test scaffolding")]

mod common;
use common::*;

use ndkdisc_core::ports::{Lock, Platform};

#[test]
fn an_allocation_under_an_engine_lock_is_counted() {
    let w = world(Completion::Synchronous);
    let lock = w.engine.platform().lock(Vec::<u64>::new());
    assert_eq!(softndk::alloc_check::violations(), 0);
    lock.with(|v| v.push(1));
    assert_eq!(
        softndk::alloc_check::violations(),
        1,
        "the push allocated under the lock"
    );
    assert!(softndk::alloc_check::first_violation().is_some());
    // Outside the lock, allocating is fine.
    let v = vec![0u8; 64];
    drop(v);
    assert_eq!(softndk::alloc_check::violations(), 1);
}
