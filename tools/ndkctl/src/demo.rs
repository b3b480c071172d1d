//! `ndkctl demo`: the main job, self-contained on the simulator. Two hosts; the server listens,
//! the client connects; both pre-post receives; the client (the server's peer) disconnects.
//! The server's event shows the NDK disconnect callback fired with the provider's reason and
//! that its receives are still posted; QUERY and the provider's counters confirm that nothing was
//! flushed. An explicit FLUSH completes them; the server's own DISCONNECT answers the client's,
//! whose DISCONNECT completes only then, as on hardware. A second connection shows a send
//! outstanding at the peer disconnect failing and the provider, not ndkdisc, flushing the
//! receives. Every expectation is checked; any deviation is reported and makes the exit code 1.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::sim::{OpenAs, REASON_GRACEFUL, SimFabric};
use ndkdisc_client::{Cause, Client, ConnState, DisconnectMode, Event, EventKind, Timeout, WaitOn};
use serde_json::json;

use crate::cli::SimFault;
use crate::error::CliError;
use crate::output::{self, Out};

const STEP_LIMIT: Duration = Duration::from_secs(10);
const PORT: u16 = 4791;
const RECEIVES: u32 = 4;

struct Demo<'a> {
    out: &'a Out,
    step: usize,
    deviations: Vec<String>,
}

impl Demo<'_> {
    fn step(&mut self, what: &str) -> Result<(), CliError> {
        self.step += 1;
        self.out.emit(
            &format!("\n[{}] {what}", self.step),
            &json!({"type": "step", "step": self.step, "what": what}),
        )
    }

    fn say(&self, text: &str) -> Result<(), CliError> {
        self.out.emit(
            &format!("    {text}"),
            &json!({"type": "info", "step": self.step, "text": text}),
        )
    }

    fn event(&self, side: &str, e: &Event) -> Result<(), CliError> {
        let mut v = output::event_json(e);
        v["side"] = json!(side);
        self.out.emit(
            &format!("    {side:<6} event {}", output::event_line(e)),
            &v,
        )
    }

    /// Record an expectation; a failed one is a deviation.
    fn check(&mut self, ok: bool, what: &str) -> Result<(), CliError> {
        let v = json!({"type": "check", "step": self.step, "ok": ok, "what": what});
        if ok {
            self.out.emit(&format!("    ok    {what}"), &v)
        } else {
            self.deviations.push(format!("step {}: {what}", self.step));
            self.out
                .emit(&format!("    DEVIATION: expected {what}"), &v)
        }
    }
}

/// The next event of `kind` for connection `id` from an any-connection WAIT (other events are
/// shown and skipped).
fn next_of(
    d: &Demo<'_>,
    side: &str,
    c: &Client,
    id: u64,
    kind: EventKind,
) -> Result<Option<Event>, CliError> {
    for _ in 0..16 {
        for e in c.wait(WaitOn::Any, 1, Timeout::After(STEP_LIMIT))? {
            d.event(side, &e)?;
            if e.kind == kind && e.connection_id == id {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// The next event of `kind` on `on` (earlier events of other kinds are shown and skipped).
fn next(
    d: &Demo<'_>,
    side: &str,
    c: &Client,
    on: WaitOn,
    kind: EventKind,
) -> Result<Option<Event>, CliError> {
    for _ in 0..16 {
        // Copies of a terminal record already delivered are not new events: skipped.
        for e in c.wait_new(on, 1, Timeout::After(STEP_LIMIT))? {
            d.event(side, &e)?;
            if e.kind == kind {
                return Ok(Some(e));
            }
        }
    }
    Ok(None)
}

/// The client's CONNECT to the server's listener.
fn connect(client: &Client, server_ip: IpAddr) -> Result<ndkdisc_client::Connection, CliError> {
    Ok(client.connect(
        &ndkdisc_client::ConnectParams {
            if_index: 1,
            remote: SocketAddr::new(server_ip, PORT),
            local: None,
            receive_depth: 0,
            send_depth: 0,
        },
        Timeout::After(STEP_LIMIT),
    )?)
}

/// The step with sends outstanding at a peer disconnect, on a second connection: the send fails
/// after the provider's retry timeout and the provider — not ndkdisc — flushes the receives.
fn sends_at_peer_disconnect(
    d: &mut Demo<'_>,
    fabric: &SimFabric,
    server: &Client,
    client: &Client,
    server_ip: IpAddr,
) -> Result<(), CliError> {
    d.step("a second connection: the server posts receives and a send the client never takes, then the client disconnects")?;
    let conn = connect(client, server_ip)?;
    let accepted = next(d, "server", server, WaitOn::Any, EventKind::Accepted)?;
    let _ = next_of(d, "client", client, conn.id, EventKind::Connected)?;
    let Some(cb) = accepted.map(|e| e.connection_id) else {
        d.check(false, "server: `accepted` event")?;
        return Ok(());
    };
    server.post(cb, PostKind::Receive, RECEIVES, 4096)?;
    // The client posted no receive: the server's send waits for one (the adapter retries).
    server.post(cb, PostKind::Send, 1, 512)?;
    let flushes_before = fabric.stats().flush_calls;
    let client_disconnect = client.start_disconnect(conn.id)?;
    let sd = next(d, "server", server, WaitOn::Any, EventKind::Disconnected)?;
    d.check(
        sd.is_some_and(|e| e.cause == Some(Cause::Peer) && e.outstanding_sends == 1),
        "server: `disconnected` (peer) with the send still outstanding",
    )?;
    let mut q = server.query(cb)?;
    for _ in 0..200 {
        if q.sends_failed > 0 && q.outstanding_receives == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        q = server.query(cb)?;
    }
    d.say(&format!("server: {}", output::query_line(&q)))?;
    d.check(
        q.sends_failed == 1,
        "server: the send to the departed peer failed after the provider's retry timeout",
    )?;
    d.check(
        !q.last_error_status.is_success(),
        &format!(
            "server: QUERY reports its status ({})",
            q.last_error_status.name().unwrap_or("?")
        ),
    )?;
    d.check(
        q.receives_cancelled == RECEIVES && q.outstanding_receives == 0,
        &format!("server: the QP went to the error state and its {RECEIVES} receives were flushed"),
    )?;
    d.check(
        q.provider_flushed && !q.flushed,
        "server: QUERY says the provider flushed them, not ndkdisc",
    )?;
    d.check(
        fabric.stats().flush_calls == flushes_before,
        "no NdkFlush call by ndkdisc",
    )?;
    server.disconnect(cb, DisconnectMode::Graceful)?;
    let outcome = client.finish_disconnect(client_disconnect, Timeout::After(STEP_LIMIT));
    d.check(
        outcome.is_ok(),
        "client: its DISCONNECT completed once the server answered",
    )?;
    let cd = next_of(d, "client", client, conn.id, EventKind::Disconnected)?;
    d.check(
        cd.is_some_and(|e| e.cause == Some(Cause::Local) && e.status.is_success()),
        "client: `disconnected` (local) with STATUS_SUCCESS",
    )?;
    server.close_object(cb)?;
    client.close_object(conn.id)?;
    let sc = next_of(d, "server", server, cb, EventKind::Closed)?;
    let _ = next_of(d, "client", client, conn.id, EventKind::Closed)?;
    d.check(sc.is_some(), "server: `closed`")?;
    let extra = server.wait(WaitOn::Any, 16, Timeout::After(Duration::ZERO))?;
    for e in &extra {
        d.event("server", e)?;
    }
    d.check(
        extra
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Disconnected | EventKind::ConnectFailed)),
        "server: exactly one terminal event for the second connection",
    )?;
    Ok(())
}

/// Run the demo.
///
/// # Errors
/// [`CliError::Deviation`] listing every deviation; an operation's failure.
#[expect(
    clippy::too_many_lines,
    reason = "the demo reads as one script, step by step"
)]
pub fn run(faults: &[SimFault], out: &Out) -> Result<(), CliError> {
    let mut d = Demo {
        out,
        step: 0,
        deviations: Vec::new(),
    };
    let server_ip = IpAddr::from([10, 0, 0, 2]);
    let client_ip = IpAddr::from([10, 0, 0, 1]);

    d.step("two simulated hosts on one softndk fabric, each with its own ndkdisc engine")?;
    let fabric = SimFabric::new(crate::sim_options(faults));
    if !faults.is_empty() {
        d.say(&format!("the provider misbehaves: {faults:?}"))?;
    }
    let server_host = fabric.add_host("server", 2, server_ip)?;
    let client_host = fabric.add_host("client", 1, client_ip)?;
    let server = server_host.open(OpenAs::default())?;
    let client = client_host.open(OpenAs::default())?;
    d.say(&format!(
        "server: interface 2, {server_ip}; client: interface 1, {client_ip}"
    ))?;

    d.step("server listens")?;
    let l = server.listen(2, SocketAddr::new(server_ip, PORT), 0)?;
    d.say(&format!("listener {} on {}", l.listener_id, l.bound))?;

    d.step("client connects (the disconnect callback is registered on connect and on accept)")?;
    let conn = connect(&client, server_ip)?;
    let ca = conn.id;
    let connected = next(&d, "client", &client, WaitOn::Any, EventKind::Connected)?;
    d.check(
        connected.is_some_and(|e| e.connection_id == ca),
        "client: `connected` event",
    )?;
    let accepted = next(&d, "server", &server, WaitOn::Any, EventKind::Accepted)?;
    d.check(accepted.is_some(), "server: `accepted` event")?;
    let Some(accepted) = accepted else {
        return Err(CliError::Deviation(d.deviations.join("; ")));
    };
    let cb = accepted.connection_id;

    d.step(&format!("both sides pre-post {RECEIVES} receives"))?;
    server.post(cb, PostKind::Receive, RECEIVES, 4096)?;
    client.post(ca, PostKind::Receive, RECEIVES, 4096)?;
    let q = server.query(cb)?;
    d.say(&format!("server: {}", output::query_line(&q)))?;
    d.check(
        q.outstanding_receives == RECEIVES,
        &format!("server: {RECEIVES} receives outstanding"),
    )?;
    let q = client.query(ca)?;
    d.say(&format!("client: {}", output::query_line(&q)))?;
    d.check(
        q.outstanding_receives == RECEIVES,
        &format!("client: {RECEIVES} receives outstanding"),
    )?;

    d.step("the peer disconnects: the client starts a graceful DISCONNECT (NdkDisconnect), which completes only when the server answers")?;
    let client_disconnect = client.start_disconnect(ca)?;
    let sd = next(&d, "server", &server, WaitOn::Any, EventKind::Disconnected)?;
    d.check(
        sd.is_some_and(|e| e.connection_id == cb && e.cause == Some(Cause::Peer)),
        "server: `disconnected` with cause peer",
    )?;
    d.check(
        sd.is_some_and(|e| e.callback_fired),
        "server: the NDK disconnect callback fired",
    )?;
    d.check(
        sd.is_some_and(|e| e.provider_reason == Some(REASON_GRACEFUL)),
        "server: the provider's reason is graceful (NDKPI 2.1 Ex callback)",
    )?;
    d.check(
        sd.is_some_and(|e| e.outstanding_receives == RECEIVES),
        &format!("server: the event says {RECEIVES} receives are still posted"),
    )?;
    let q = client.query(ca)?;
    d.say(&format!("client: {}", output::query_line(&q)))?;
    d.check(
        q.state == ConnState::Disconnecting,
        "client: its DISCONNECT is still waiting for the server's answer",
    )?;

    d.step("after the peer disconnect, nothing was flushed")?;
    fabric.settle(STEP_LIMIT);
    // Look a few times: a provider that flushes on its own completes the receives shortly
    // after indicating the disconnect.
    let mut q = server.query(cb)?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(10));
        fabric.settle(STEP_LIMIT);
        q = server.query(cb)?;
        if q.outstanding_receives != RECEIVES {
            break;
        }
    }
    d.say(&format!("server: {}", output::query_line(&q)))?;
    d.check(
        q.state == ConnState::Disconnected,
        "server: state disconnected",
    )?;
    d.check(q.callback_fired, "server: QUERY says the callback fired")?;
    d.check(
        q.provider_reason == Some(REASON_GRACEFUL),
        "server: QUERY reports the provider reason",
    )?;
    d.check(
        q.outstanding_receives == RECEIVES,
        &format!("server: all {RECEIVES} posted receives still outstanding"),
    )?;
    let stats = fabric.stats();
    d.say(&format!(
        "provider: {} disconnect callback(s), {} NdkFlush call(s)",
        stats.disconnect_callbacks, stats.flush_calls
    ))?;
    d.check(stats.flush_calls == 0, "no NdkFlush call by ndkdisc")?;
    d.check(!q.flushed, "server: no flush requested")?;
    d.check(
        q.receives_cancelled == 0,
        "server: no receive completed as cancelled (flushed)",
    )?;

    d.step("explicit FLUSH on the server: NdkFlush only starts the flush; the posted receives complete later with STATUS_CANCELLED, then `flushed`")?;
    server.flush(cb)?;
    let f = next(&d, "server", &server, WaitOn::Any, EventKind::Flushed)?;
    d.check(
        f.is_some_and(|e| e.connection_id == cb),
        "server: `flushed` event (every posted request completed)",
    )?;
    let q = server.query(cb)?;
    d.say(&format!("server: {}", output::query_line(&q)))?;
    d.check(
        q.outstanding_receives == 0,
        "server: no receive outstanding",
    )?;
    d.check(
        q.receives_cancelled == RECEIVES,
        &format!("server: all {RECEIVES} receives completed with STATUS_CANCELLED"),
    )?;
    d.check(q.flushed, "server: QUERY says flushed")?;
    d.check(
        fabric.stats().flush_calls == 1,
        "exactly one NdkFlush call: the one asked for",
    )?;

    d.step("the server answers with its own graceful DISCONNECT: the client's DISCONNECT completes with the real outcome")?;
    server.disconnect(cb, DisconnectMode::Graceful)?;
    let outcome = client.finish_disconnect(client_disconnect, Timeout::After(STEP_LIMIT));
    d.check(
        outcome.is_ok(),
        "client: DISCONNECT completed with STATUS_SUCCESS once the server answered",
    )?;
    let cd = next(&d, "client", &client, WaitOn::Any, EventKind::Disconnected)?;
    d.check(
        cd.is_some_and(|e| e.connection_id == ca && e.cause == Some(Cause::Local)),
        "client: `disconnected` with cause local",
    )?;
    d.check(
        cd.is_some_and(|e| e.status.is_success()),
        "client: the event carries NdkDisconnect's outcome, STATUS_SUCCESS",
    )?;
    d.check(
        cd.is_some_and(|e| !e.callback_fired),
        "client: no disconnect callback for its own disconnect",
    )?;
    d.say("client: once NdkDisconnect completed, the provider flushed its QP implicitly (NDK), so its receives completed there; the server's are the ones a peer disconnect must not touch")?;

    sends_at_peer_disconnect(&mut d, &fabric, &server, &client, server_ip)?;

    d.step("close the connections, the listener and the handles")?;
    server.close_object(cb)?;
    client.close_object(ca)?;
    let sc = next_of(&d, "server", &server, cb, EventKind::Closed)?;
    let cc = next_of(&d, "client", &client, ca, EventKind::Closed)?;
    d.check(
        sc.is_some() && cc.is_some(),
        "`closed` events on both sides",
    )?;
    let extra = server.wait(WaitOn::Any, 16, Timeout::After(Duration::ZERO))?;
    for e in &extra {
        d.event("server", e)?;
    }
    d.check(
        extra
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Disconnected | EventKind::ConnectFailed)),
        "no second terminal event",
    )?;
    server.close_object(l.listener_id)?;
    server.close();
    client.close();
    let live = fabric.wait_released(STEP_LIMIT);
    d.check(live == 0, "every NDK object released")?;

    if d.deviations.is_empty() {
        d.out.emit(
            "\ndemo: ok — the peer disconnect was reported with the provider's reason, and the posted receives stayed outstanding until the explicit flush",
            &json!({"type": "result", "ok": true, "deviations": []}),
        )?;
        Ok(())
    } else {
        d.out.emit(
            &format!("\ndemo: {} deviation(s)", d.deviations.len()),
            &json!({"type": "result", "ok": false, "deviations": d.deviations}),
        )?;
        Err(CliError::Deviation(d.deviations.join("; ")))
    }
}
