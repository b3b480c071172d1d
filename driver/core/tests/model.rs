//! Model-based randomized testing of the engine: the machinery (operations, checks, shrinking)
//! is the `ndkdisc-model` crate; this binary runs it with the checking allocator installed, so
//! allocations under an engine lock or in the disconnect callback are counted.
//!
//! The CI size runs in `model_ci`; `model_long` (ignored) takes `NDKDISC_MODEL_SEEDS` (a count,
//! or `first..end`) and `NDKDISC_MODEL_OPS`.

// The simulated IRQL's "no allocation" rule: counted by the model's end-of-run check.
#[global_allocator]
static ALLOC: softndk::alloc_check::CheckingAllocator = softndk::alloc_check::CheckingAllocator;

/// Seeds and operations per seed of the CI run.
const CI_SEEDS: u64 = 200;
const CI_OPS: usize = 500;

#[test]
fn model_ci() {
    ndkdisc_model::run_seeds(0..CI_SEEDS, CI_OPS);
}

/// The long run: `NDKDISC_MODEL_SEEDS` (a count, or `first..end`; default 20000) seeds of
/// `NDKDISC_MODEL_OPS` (default 500) operations.
#[test]
#[ignore = "long run: NDKDISC_MODEL_SEEDS / NDKDISC_MODEL_OPS"]
fn model_long() {
    let seeds = std::env::var("NDKDISC_MODEL_SEEDS").unwrap_or_else(|_| "20000".to_owned());
    let seeds = match seeds.split_once("..") {
        Some((a, b)) => a.parse().unwrap()..b.parse().unwrap(),
        None => 0..seeds.parse().unwrap(),
    };
    let ops = std::env::var("NDKDISC_MODEL_OPS").map_or(CI_OPS, |s| s.parse().unwrap());
    ndkdisc_model::run_seeds(seeds, ops);
}

/// Replay a list a failure printed: paste its operations and mode here, then run
/// `cargo test -p ndkdisc-core --test model -- --ignored replay --nocapture`. As committed it
/// replays a short run that must pass.
#[test]
#[ignore = "replays a pasted operation list"]
fn replay() {
    use ndkdisc_model::{FaultKind, Op};
    use softndk::Completion;
    let ops = vec![
        Op::Connect {
            slot: 2,
            port: 0,
            refused: false,
        },
        Op::Post {
            slot: 2,
            conn: 0,
            send: false,
            count: 1,
        },
        Op::Fault {
            host: 0,
            connector: 0,
            fault: FaultKind::PeerReset,
        },
        Op::Drain,
    ];
    let o = ndkdisc_model::replay(&ops, Completion::Synchronous);
    eprintln!("replay: {o:?}");
}
