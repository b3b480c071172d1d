//! `ndkctl demo`: the main job, self-contained on the simulator. It runs the shipped scenarios
//! `peer-disconnect.ndk` and `sends-at-peer-disconnect.ndk` (embedded in the binary, so it works
//! from any directory) through the scenario interpreter, each on a fresh simulated fabric of two
//! hosts, with the provider's graceful reason checked (softndk's own).
//!
//! The story they tell: the server listens, the client connects; both pre-post receives; the
//! client (the server's peer) disconnects. The server's event shows the NDK disconnect callback
//! fired with the provider's reason and that its receives are still posted; QUERY and the
//! provider's counters confirm that nothing was flushed. An explicit FLUSH completes them; the
//! server's own DISCONNECT answers the client's, whose DISCONNECT completes only then, as on
//! hardware. A second connection shows a send outstanding at the peer disconnect failing and
//! the provider, not ndkdisc, flushing the receives. Every expectation is checked; the first
//! deviation ends the demo with exit code 1.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ndkdisc_client::sim::{OpenAs, REASON_GRACEFUL, SimFabric};
use serde_json::json;

use crate::cli::SimFault;
use crate::error::{CliError, exit};
use crate::output::Out;
use crate::{Backend, scenario, sim_options};

/// The shipped scenarios the demo runs, in order: file name and text.
const SCENARIOS: [(&str, &str); 2] = [
    (
        "peer-disconnect.ndk",
        include_str!("../scenarios/peer-disconnect.ndk"),
    ),
    (
        "sends-at-peer-disconnect.ndk",
        include_str!("../scenarios/sends-at-peer-disconnect.ndk"),
    ),
];

/// Run the demo.
///
/// # Errors
/// The first step that deviates ([`CliError::Step`] around a [`CliError::Deviation`]) or fails.
pub fn run(faults: &[SimFault], out: &Out, interrupt: &Arc<AtomicBool>) -> Result<(), CliError> {
    let intro = "the shipped scenarios (tools/ndkctl/scenarios/), each on two simulated hosts on a fresh softndk fabric, each host with its own ndkdisc engine";
    out.emit(intro, &json!({"type": "info", "text": intro}))?;
    if !faults.is_empty() {
        let text = format!("the provider misbehaves: {faults:?}");
        out.emit(&text, &json!({"type": "info", "text": text}))?;
    }
    let vars = [format!("PEER_REASON={REASON_GRACEFUL}")];
    for (name, text) in SCENARIOS {
        out.emit(
            &format!("\n=== {name} --set {}", vars.join(" --set ")),
            &json!({"type": "scenario", "file": name, "vars": vars}),
        )?;
        let backend = Backend::Sim {
            fabric: SimFabric::new(sim_options(faults)),
            who: OpenAs::default(),
        };
        if let Err(e) = scenario::run(name, text, &vars, &backend, out, interrupt) {
            let deviation = e.exit_code() == exit::DEVIATION;
            let what = if deviation { "DEVIATION" } else { "failed" };
            // The run's own error wins over one writing this line (a closed pipe).
            let _ = out.emit(
                &format!("\ndemo: {what}: {e}"),
                &json!({"type": "result", "ok": false, "deviations": if deviation { vec![e.to_string()] } else { vec![] }, "error": e.to_string()}),
            );
            return Err(e);
        }
    }
    out.emit(
        "\ndemo: ok — the peer disconnect was reported with the provider's reason, and the posted receives stayed outstanding until the explicit flush",
        &json!({"type": "result", "ok": true, "deviations": []}),
    )
}
