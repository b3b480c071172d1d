//! Shrinking a diverging run by delta debugging.

use std::time::{Duration, Instant};

use softndk::Completion;

use crate::{Check, Divergence, Op, run};

/// Replays of the original list before a shrink gives up on reproducing its divergence.
const REPRODUCE_TRIES: usize = 3;

/// How much a shrink may spend.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Replays at most.
    pub replays: usize,
    /// Time at most (a replay in progress finishes).
    pub time: Duration,
}

impl Default for Budget {
    /// 300 replays or 60 s.
    fn default() -> Self {
        Self {
            replays: 300,
            time: Duration::from_secs(60),
        }
    }
}

/// What a shrink found.
#[derive(Debug)]
pub struct Shrunk {
    /// The shortest list found that still diverges (the original one, cut after its diverging
    /// operation, when nothing shorter did, or when the divergence did not reproduce).
    pub ops: Vec<Op>,
    /// Its divergence (the original one when the divergence did not reproduce).
    pub divergence: Divergence,
    /// Whether the original list diverged again when replayed (up to 3 tries). With provider
    /// threads a run is not deterministic, and a divergence that depends on a race may not
    /// reproduce; a candidate is kept only if it diverged in its one replay.
    pub reproduced: bool,
    /// Replays made.
    pub replays: usize,
}

/// Shrink `ops`, which diverged with `first`, in `mode`: cut the list after the diverging
/// operation, then drop chunks of halving size (down to single operations), keeping every
/// candidate that still diverges (with any divergence), until no single operation can be
/// dropped or the budget is spent.
pub fn shrink(
    ops: &[Op],
    first: Divergence,
    mode: Completion,
    extra: Option<Check<'_>>,
    budget: Budget,
) -> Shrunk {
    // Replays that diverge panic: keep them quiet (no message, no backtrace) while shrinking.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let shrunk = shrink_quietly(ops, first, mode, extra, budget);
    std::panic::set_hook(hook);
    shrunk
}

fn shrink_quietly(
    ops: &[Op],
    first: Divergence,
    mode: Completion,
    extra: Option<Check<'_>>,
    budget: Budget,
) -> Shrunk {
    let start = Instant::now();
    let replays = std::cell::Cell::new(0);
    let cut = |ops: &[Op], d: &Divergence| ops[..(d.index + 1).min(ops.len())].to_vec();
    let mut best = cut(ops, &first);
    let mut divergence = first;
    let try_run = |candidate: &[Op]| {
        replays.set(replays.get() + 1);
        run(candidate, mode, extra).err()
    };
    // Does it reproduce at all? (With provider threads a race may need a few tries.)
    match (0..REPRODUCE_TRIES).find_map(|_| try_run(&best)) {
        Some(d) => {
            best = cut(&best, &d);
            divergence = d;
        }
        None => {
            return Shrunk {
                ops: best,
                divergence,
                reproduced: false,
                replays: replays.get(),
            };
        }
    }
    let spent = || replays.get() >= budget.replays || start.elapsed() >= budget.time;
    let mut chunk = best.len().div_ceil(2).max(1);
    'sizes: loop {
        let mut progress = false;
        let mut at = 0;
        while at < best.len() {
            if spent() {
                break 'sizes;
            }
            let end = (at + chunk).min(best.len());
            let candidate: Vec<Op> = best[..at].iter().chain(&best[end..]).copied().collect();
            if let Some(d) = try_run(&candidate) {
                best = cut(&candidate, &d);
                divergence = d;
                progress = true;
                // The same position now holds what followed the dropped chunk.
            } else {
                at = end;
            }
        }
        if chunk == 1 && !progress {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    Shrunk {
        ops: best,
        divergence,
        reproduced: true,
        replays: replays.get(),
    }
}
