//! Operation sequences through the engine over softndk, checked by the model after every
//! operation: see `checks/engine_ops.rs`.
#![no_main]

use std::sync::OnceLock;
use std::thread::ThreadId;

// The simulated IRQL's "no allocation" rule: counted by the model's end-of-run check.
#[global_allocator]
static ALLOC: softndk::alloc_check::CheckingAllocator = softndk::alloc_check::CheckingAllocator;

include!("../checks/engine_ops.rs");

/// The thread libFuzzer runs inputs on.
static FUZZ_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// libfuzzer-sys's panic hook aborts at once, so the model could not catch a panic of its own
/// checks (or of the engine) and report it as a divergence with the operation list. This hook
/// prints the panic and lets it unwind on the fuzzing thread (the model catches it; the check
/// then panics with the whole report, and the target aborts); a panic on any other thread (a
/// softndk worker or timer) still aborts at once.
fn unwind_on_the_fuzzing_thread() {
    FUZZ_THREAD.get_or_init(|| std::thread::current().id());
    // The hook registered now is libfuzzer-sys's; taking it leaves the standard one, which
    // prints the panic.
    drop(std::panic::take_hook());
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        if FUZZ_THREAD.get() != Some(&std::thread::current().id()) {
            std::process::abort();
        }
    }));
}

libfuzzer_sys::fuzz_target!(init: unwind_on_the_fuzzing_thread(), |data: &[u8]| {
    // The report is printed by the hook; abort here rather than unwind into libFuzzer.
    if std::panic::catch_unwind(|| check_engine_ops(data)).is_err() {
        std::process::abort();
    }
});
