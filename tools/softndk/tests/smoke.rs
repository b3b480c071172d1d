//! A full connection through the raw tables in every completion mode, leaving nothing behind.
mod common;
use common::*;

fn connect_and_teardown_in_every_mode_leaves_no_live_object(mode: Completion) {
    let net = Net::new(mode);
    let pair = Pair::connect(&net, V21, V21);
    assert!(net.fabric.live_objects() > 0);
    pair.finish(&net, &format!("mode {mode:?}"));
}

per_mode!(connect_and_teardown_in_every_mode_leaves_no_live_object);
