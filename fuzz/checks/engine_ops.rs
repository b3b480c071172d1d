// The checks of the `engine_ops` fuzz target, shared by the target (fuzz/fuzz_targets) and the
// stable replay of its corpus (tools/model/tests/fuzz_corpus.rs), both by `include!`.
//
// Input, decoded with `arbitrary::Unstructured`: a `bool` choosing the completion mode
// (`Inline` when true, else `Synchronous`), then `ndkdisc_model::Op`s (their derived
// `Arbitrary`: a `u32` choosing the variant, then its fields in order) until the bytes run out
// or `MAX_OPS` are read. Every list of operations is a valid run (indices resolve modulo what
// exists), so every input reaches the engine.
//
// Only the two modes without provider threads for callbacks: `Synchronous` and `Inline` make
// every NDK callback on the calling thread, so an input replays the same way. (`Random`,
// `Thread` and `Hardware` deliver callbacks on worker threads. softndk still runs its timers
// (retry, disconnect and handshake timeouts) and a requested QP flush on its own threads in
// every mode, so a run that depends on one of those can take another course when replayed.)
//
// Invariants: every guarantee `ndkdisc_model::run` checks, after every operation and at the
// end (per-connection order, exactly one terminal event with an allowed cause, no event to a
// handle that does not own the connection, outstanding counts, no flush by ndkdisc, no
// provider misuse, every NDK object released), and that nothing panics. A divergence panics
// with its message, the mode and the operations as Rust source (the fuzzer's crash).

/// The most operations one input is read as: a run stays short (the fuzzer's executions per
/// second), and longer lists are the model test's job.
pub const MAX_OPS: usize = 64;

/// The completion mode and the operations `data` stands for.
pub fn decode_engine_ops(data: &[u8]) -> (softndk::Completion, Vec<ndkdisc_model::Op>) {
    let mut u = arbitrary::Unstructured::new(data);
    // An exhausted `Unstructured` reads as zeros: the empty input is `Synchronous`, no ops.
    let inline: bool = u.arbitrary().unwrap_or(false);
    let mode = if inline {
        softndk::Completion::Inline
    } else {
        softndk::Completion::Synchronous
    };
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        match u.arbitrary::<ndkdisc_model::Op>() {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (mode, ops)
}

/// Run the operations `data` stands for through the model.
///
/// # Panics
/// On a divergence (the fuzzer's crash): its message, the mode, the operations as Rust source
/// and the log of the run.
pub fn check_engine_ops(data: &[u8]) {
    let (mode, ops) = decode_engine_ops(data);
    if let Err(d) = ndkdisc_model::run(&ops, mode, None) {
        panic!(
            "engine_ops: model divergence (Completion::{mode:?}), {d}\noperations:\n{}\nlog:\n{}",
            ndkdisc_model::rust_source(&ops),
            d.log.join("\n")
        );
    }
}
