//! The machinery itself: a synthetic divergence (an extra check that fails once receives were
//! posted and a peer reset hit a connector) is found in a seed's run and shrunk to a few
//! operations that still diverge.

use ndkdisc_model::{Budget, Facts, FaultKind, Op, generate, run, rust_source, shrink};
use softndk::Completion;

fn synthetic(f: &Facts) -> Result<(), String> {
    let received = f.posted.values().any(|&(receives, _)| receives > 0);
    let reset = f.faults.get(&FaultKind::PeerReset).is_some_and(|&n| n > 0);
    if received && reset {
        Err("synthetic: receives posted and a peer reset injected".to_owned())
    } else {
        Ok(())
    }
}

#[test]
fn a_synthetic_divergence_shrinks_to_a_few_operations() {
    let mode = Completion::Synchronous;
    let ops = generate(7, 300);
    let first = run(&ops, mode, Some(&synthetic)).expect_err("the synthetic check fires");
    let shrunk = shrink(
        &ops,
        first.clone(),
        mode,
        Some(&synthetic),
        Budget::default(),
    );
    eprintln!(
        "shrunk {} (diverging at {}) to {} in {} replays:\n{}",
        ops.len(),
        first.index,
        shrunk.ops.len(),
        shrunk.replays,
        rust_source(&shrunk.ops)
    );
    assert!(shrunk.reproduced, "Synchronous runs replay exactly");
    assert!(
        shrunk.ops.len() <= 6 && shrunk.ops.len() < first.index,
        "shrunk to {} operations: {:?}",
        shrunk.ops.len(),
        shrunk.ops
    );
    // The shrunk list still diverges, and as the synthetic check says.
    let again = run(&shrunk.ops, mode, Some(&synthetic)).expect_err("the shrunk list diverges");
    assert!(again.message.starts_with("synthetic"), "{again}");
    // Without the synthetic check it is a run like any other: it passes.
    run(&shrunk.ops, mode, None).expect("the shrunk list passes the model's own checks");
    // It needs a POST of receives and a peer reset.
    assert!(
        shrunk
            .ops
            .iter()
            .any(|op| matches!(op, Op::Post { send: false, .. }))
    );
    assert!(shrunk.ops.iter().any(|op| matches!(
        op,
        Op::Fault {
            fault: FaultKind::PeerReset,
            ..
        }
    )));
}

#[test]
fn a_run_that_passes_does_not_shrink_into_a_divergence() {
    // A list that does not diverge is reported as not reproduced, and kept whole.
    let mode = Completion::Synchronous;
    let ops = generate(3, 40);
    run(&ops, mode, None).expect("seed 3 passes");
    let fake = ndkdisc_model::Divergence {
        index: 39,
        message: "not real".to_owned(),
        log: Vec::new(),
    };
    let shrunk = shrink(&ops, fake, mode, None, Budget::default());
    assert!(!shrunk.reproduced);
    assert_eq!(shrunk.ops, ops);
    assert_eq!(shrunk.replays, 3, "three tries to reproduce it");
}
