//! The checking allocator charges every block to the owner that made it (softndk or the
//! consumer), whoever frees it, and keeps the caller's alignment.

use softndk::alloc_check::{self, CheckingAllocator, Owner};

#[global_allocator]
static ALLOC: CheckingAllocator = CheckingAllocator;

/// (allocated, freed) bytes of `owner` so far.
fn bytes(owner: Owner) -> (u64, u64) {
    let (_, allocated, freed) = alloc_check::usage_by(owner);
    (allocated, freed)
}

/// A type aligned above the allocator's 16-byte prefix.
#[repr(align(256))]
struct Wide([u8; 256]);

#[test]
#[cfg_attr(
    miri,
    ignore = "blocks carry no owner under Miri (Stacked Borrows forbids reaching the prefix)"
)]
fn a_block_is_charged_to_its_maker_whoever_frees_it() {
    // One test function: the counters are process-wide, and other tests would run beside it.
    let (p0, pf0) = bytes(Owner::Provider);
    let made = {
        let _provider = alloc_check::provider_scope();
        let v: Vec<u8> = Vec::with_capacity(1000);
        {
            // The provider calls the consumer back: the consumer's allocation is its own.
            let _consumer = alloc_check::consumer_scope();
            let (c0, _) = bytes(Owner::Consumer);
            let c = Box::new([0u8; 300]);
            assert!(bytes(Owner::Consumer).0 >= c0 + 300);
            drop(c);
        }
        v
    };
    let (p1, pf1) = bytes(Owner::Provider);
    assert_eq!(p1 - p0, 1000, "exactly the provider's vector");
    assert_eq!(pf1, pf0, "nothing of the provider's freed yet");
    // Freed by the consumer, charged to the provider.
    drop(made);
    assert_eq!(bytes(Owner::Provider).1 - pf0, 1000);
    assert_eq!(
        bytes(Owner::Provider).0,
        p1,
        "the consumer's frees made nothing"
    );

    // Reallocation keeps the contents and moves the charge to the reallocating owner.
    let mut grown: Vec<u64> = (0..100).collect();
    let (c_alloc, c_freed) = bytes(Owner::Consumer);
    {
        let _provider = alloc_check::provider_scope();
        grown.reserve_exact(10_000);
    }
    assert!(grown.iter().copied().eq(0..100), "contents survive");
    assert!(
        bytes(Owner::Consumer).1 >= c_freed + 800,
        "the old block freed as the consumer's"
    );
    assert!(
        bytes(Owner::Provider).0 >= p1 + 80_800,
        "the new block is the provider's"
    );
    assert_eq!(bytes(Owner::Consumer).0, c_alloc);
    drop(grown);

    // Alignment above the prefix is kept.
    let w = Box::new(Wide([7; 256]));
    assert_eq!(std::ptr::from_ref(&*w).addr() % 256, 0);
    assert_eq!(w.0[255], 7);
    drop(w);

    thread_usage_counts_only_the_calling_threads_blocks();
}

/// Part of the one test above: run beside it, this check's blocks would land in its exact
/// process-wide counts.
fn thread_usage_counts_only_the_calling_threads_blocks() {
    let (n0, a0, f0) = alloc_check::thread_usage();
    let (_, all0, _) = alloc_check::usage();
    // Another thread's block: in the process-wide count, not in this thread's.
    std::thread::spawn(|| drop(std::hint::black_box(vec![0u8; 5000])))
        .join()
        .expect("the helper thread ran");
    let (n1, a1, f1) = alloc_check::thread_usage();
    let (_, all1, _) = alloc_check::usage();
    assert!(all1 >= all0 + 5000, "the process-wide count saw it");
    assert!(a1 - a0 < 5000, "this thread's count did not: {}", a1 - a0);
    // This thread's own block, allocated and freed here.
    let v = std::hint::black_box(vec![0u8; 7000]);
    let (n2, a2, _) = alloc_check::thread_usage();
    assert!(n2 > n1 && a2 >= a1 + 7000);
    drop(v);
    let (_, _, f3) = alloc_check::thread_usage();
    assert!(f3 >= f1 + 7000);
    assert!(n1 >= n0 && f1 >= f0);
}
