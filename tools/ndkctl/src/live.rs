//! `ndkctl serve` and `ndkctl connect`: the two ends of a connection that stay up on one handle
//! and print what happens as it happens, like `rping -s` / `rping -c`.
//!
//! `serve` listens, pre-posts receives on every connection it accepts, answers a peer's
//! disconnect (after showing, with QUERY, that the receives are still outstanding: ndkdisc does
//! not flush them), and goes on until Ctrl-C, `--count` events, `--connections` closed
//! connections or `--for` has passed. `connect` connects, posts, optionally disconnects after a
//! delay, and ends when its connection is closed. Both print a summary at the end.
//!
//! On the simulator every invocation is a fresh fabric that nobody else can reach, so
//! `--sim-peer` runs the other end in the same process on the other simulated host: a `connect`
//! from host `b` for `serve`, a `serve` on host `b` for `connect`. Its lines are prefixed
//! `b:` (JSON: `"host": "b"`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ndkdisc_abi::PostKind;
#[cfg(feature = "sim")]
use ndkdisc_client::sim::ConnectionFault;
use ndkdisc_client::{
    Cause, Client, ClockBase, ConnectParams, ConnectionId, ConnectionInfo, DisconnectMode, Error,
    ErrorKind, Event, EventKind, Timeout, WaitOn,
};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::output::{self, Out};

/// How long answering a peer's disconnect may take: the peer already disconnected, so
/// `NdkDisconnect` completes at once on a working provider.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// What `serve` does when a peer disconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnPeerDisconnect {
    /// Show the connection (QUERY), answer with a graceful disconnect, close it.
    Answer,
    /// Show it, FLUSH its posted work (the receives complete cancelled), answer, close it.
    Flush,
    /// Show it and keep it: its receives stay outstanding until ndkctl ends.
    Hold,
}

/// Where one end's lines go: the output, tagged with the end's host when two ends share it.
#[derive(Clone, Copy)]
pub struct Voice<'a> {
    out: &'a Out,
    host: Option<&'a str>,
    clock: Option<ClockBase>,
}

impl<'a> Voice<'a> {
    /// The lines of the only end, untagged.
    pub fn plain(out: &'a Out) -> Self {
        Self {
            out,
            host: None,
            clock: None,
        }
    }

    /// The same, with events dated by `clock` (the handle's [`ClockBase`]).
    fn with_clock(self, clock: Option<ClockBase>) -> Self {
        Self { clock, ..self }
    }

    /// The lines of the end on `host`.
    pub fn of(out: &'a Out, host: &'a str) -> Self {
        Self {
            out,
            host: Some(host),
            clock: None,
        }
    }

    fn say(&self, text: &str, value: Value) -> Result<(), CliError> {
        let mut value = value;
        match self.host {
            None => self.out.emit(text, &value),
            Some(h) => {
                value["host"] = json!(h);
                self.out.emit(&format!("{h}: {text}"), &value)
            }
        }
    }

    fn event(&self, e: &Event) -> Result<(), CliError> {
        let mut v = output::event_json(e);
        output::add_time(&mut v, e, self.clock.as_ref());
        let text = match &self.clock {
            Some(c) => format!(
                "{} {}",
                output::time_of_day(c.wall_time(e.timestamp)),
                output::event_line(e)
            ),
            None => output::event_line(e),
        };
        self.say(&text, v)
    }

    fn query(&self, q: &ConnectionInfo) -> Result<(), CliError> {
        self.say(&output::query_line(q), output::query_json(q))
    }

    fn did(&self, what: &str, connection_id: ConnectionId, text: &str) -> Result<(), CliError> {
        self.say(
            text,
            json!({"type": "ok", "op": what, "conn": connection_id.raw(), "what": text}),
        )
    }
}

/// What one end saw, printed when it ends.
#[derive(Default)]
pub struct Summary {
    events: BTreeMap<String, usize>,
    connections: BTreeMap<u64, Option<ConnectionInfo>>,
}

impl Summary {
    /// Count `e`.
    pub fn saw(&mut self, e: &Event) {
        *self
            .events
            .entry(output::kind_name(e.kind).into_owned())
            .or_default() += 1;
        self.connections.entry(e.connection_id).or_default();
    }

    fn queried(&mut self, q: ConnectionInfo) {
        self.connections.insert(q.connection_id, Some(q));
    }

    /// How many events, of all kinds.
    pub fn total(&self) -> usize {
        self.events.values().sum()
    }

    fn kind(&self, kind: &str) -> usize {
        self.events.get(kind).copied().unwrap_or(0)
    }

    /// Print the summary, saying why the run ended.
    ///
    /// # Errors
    /// The output's.
    pub fn show(&self, voice: Voice<'_>, why: &str) -> Result<(), CliError> {
        let kinds: Vec<String> = self
            .events
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let text = format!(
            "summary ({why}): {} events ({}), connections: {}",
            self.total(),
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            },
            self.connections.len()
        );
        let last: Vec<Value> = self
            .connections
            .values()
            .flatten()
            .map(output::query_json)
            .collect();
        voice.say(
            &text,
            json!({"type": "summary", "ended_by": why, "events": self.events, "total_events": self.total(), "connections": self.connections.len(), "last_queries": last}),
        )?;
        for q in self.connections.values().flatten() {
            voice.say(
                &format!(
                    "  conn {}: last seen {} with recv={} send={} outstanding; completed: recv ok={} cancelled={} failed={}, send ok={} cancelled={} failed={}; {} bytes received, {} bytes of sends posted",
                    q.connection_id,
                    output::state_name(q.state),
                    q.outstanding_receives,
                    q.outstanding_sends,
                    q.receives_succeeded,
                    q.receives_cancelled,
                    q.receives_failed,
                    q.sends_succeeded,
                    q.sends_cancelled,
                    q.sends_failed,
                    q.received_bytes,
                    q.send_bytes_posted
                ),
                json!({"type": "summary-connection", "conn": q.connection_id}),
            )?;
        }
        Ok(())
    }
}

/// When an end stops on its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// After this many events.
    pub count: Option<usize>,
    /// After this long.
    pub duration: Option<Duration>,
}

impl Limits {
    /// Time left before `duration` from `start`; `None` when there is no limit; zero when
    /// it has passed.
    fn left(&self, start: Instant) -> Option<Duration> {
        self.duration.map(|d| d.saturating_sub(start.elapsed()))
    }
}

/// What `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeParams {
    /// Interface of the listener.
    pub if_index: u32,
    /// Where to listen.
    pub local: SocketAddr,
    /// LISTEN backlog (0: the driver's default).
    pub backlog: u32,
    /// Receives to post on each accepted connection.
    pub receives: u32,
    /// Bytes per receive.
    pub length: u32,
    /// What to do at a peer disconnect.
    pub on_peer_disconnect: OnPeerDisconnect,
    /// Stop after this many connections have been closed.
    pub connections: Option<usize>,
    /// Which events to print (all are acted on and counted).
    pub filter: crate::cli::EventFilter,
    /// Stop after this many events or this long.
    pub limits: Limits,
}

/// Answer a peer's disconnect: graceful `NdkDisconnect` (it completes at once, the peer being
/// gone), then CLOSE.
fn answer(client: &Client, voice: Voice<'_>, id: ConnectionId) -> Result<(), CliError> {
    let pending = client.start_disconnect(id)?;
    match client.finish_disconnect(pending, Timeout::After(ANSWER_LIMIT)) {
        Ok(()) => voice.did(
            "disconnect",
            id,
            &format!("answered the peer on connection {id}"),
        )?,
        // The peer's own disconnect may have ended it already; the close still releases it.
        Err(e) if !matches!(e, Error::Interrupted { .. }) => voice.did(
            "disconnect",
            id,
            &format!("answering the peer on connection {id} failed: {e}"),
        )?,
        Err(e) => return Err(e.into()),
    }
    client.close_connection(id)?;
    voice.did("close", id, &format!("closed connection {id}"))
}

/// Listen and serve until a limit, Ctrl-C (the client's interrupt), or a failure. `ready` is
/// told the bound address once listening.
///
/// # Errors
/// LISTEN's failure; a failure of WAIT or of an operation on a connection.
pub fn serve(
    client: &Client,
    p: &ServeParams,
    voice: Voice<'_>,
    ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
) -> Result<Summary, CliError> {
    let voice = voice.with_clock(client.clock_base().ok());
    let l = client.listen(p.if_index, p.local, p.backlog)?;
    voice.say(
        &format!(
            "listening on {} (listener {}, interface {}); posting {} receives of {} bytes per connection",
            l.bound, l.listener_id, p.if_index, p.receives, p.length
        ),
        json!({"type": "listener", "listener_id": l.listener_id, "bound": l.bound.to_string(), "if_index": p.if_index}),
    )?;
    if let Some(r) = ready {
        let _ = r.send(l.bound);
    }
    let start = Instant::now();
    let mut summary = Summary::default();
    let why = loop {
        if p.limits.count.is_some_and(|c| summary.total() >= c) {
            break "count";
        }
        if p.connections.is_some_and(|c| summary.kind("closed") >= c) {
            break "connections";
        }
        let timeout = match p.limits.left(start) {
            None => Timeout::Forever,
            Some(left) if left.is_zero() => break "time",
            Some(left) => Timeout::After(left),
        };
        let room = p.limits.count.map_or(64, |c| c - summary.total());
        let events = match client.wait_new(WaitOn::Any, room, timeout) {
            Ok(events) => events,
            Err(e) if e.kind() == ErrorKind::Timeout => break "time",
            Err(Error::Interrupted { .. }) => break "interrupted",
            Err(e) => return Err(e.into()),
        };
        for e in &events {
            if p.filter.shows(e) {
                voice.event(e)?;
            }
            summary.saw(e);
            let id = ConnectionId::of(e);
            match (e.kind, e.cause) {
                (EventKind::Accepted, _) if p.receives > 0 => {
                    client.post(id, PostKind::Receive, p.receives, p.length)?;
                    voice.did(
                        "post",
                        id,
                        &format!("posted {} receives on connection {id}", p.receives),
                    )?;
                }
                (EventKind::Disconnected, Some(Cause::Peer)) => {
                    let q = client.query(id)?;
                    voice.query(&q)?;
                    summary.queried(q);
                    match p.on_peer_disconnect {
                        OnPeerDisconnect::Hold => {}
                        OnPeerDisconnect::Flush => {
                            client.flush(id)?;
                            voice.did("flush", id, &format!("flushed connection {id}"))?;
                            answer(client, voice, id)?;
                        }
                        OnPeerDisconnect::Answer => answer(client, voice, id)?,
                    }
                }
                // Any other end of a connection: release it.
                (EventKind::Disconnected | EventKind::ConnectFailed, _) => {
                    if let Ok(q) = client.query(id) {
                        summary.queried(q);
                    }
                    client.close_connection(id)?;
                    voice.did("close", id, &format!("closed connection {id}"))?;
                }
                _ => {}
            }
        }
    };
    summary.show(voice, why)?;
    Ok(summary)
}

/// What `connect` does once connected.
#[derive(Clone, Debug, Default)]
pub struct ConnectPlan {
    /// Receives to post.
    pub receives: u32,
    /// Sends to post.
    pub sends: u32,
    /// Bytes each.
    pub length: u32,
    /// Disconnect after this long (else stay until the peer disconnects or a limit).
    pub disconnect_after: Option<Duration>,
    /// Disconnect abortively (a reset) rather than gracefully.
    pub abortive: bool,
    /// Stop after this many events or this long (the connection is then closed).
    pub limits: Limits,
    /// On the simulator: inject this fault on the connection after this long (the sends are
    /// then posted after it, so that a link loss is noticed).
    pub fault: Option<PlannedFault>,
}

/// A fault to inject on a simulated connection: on which host, what, and after how long.
#[cfg(feature = "sim")]
pub type PlannedFault = (ndkdisc_client::sim::SimHost, ConnectionFault, Duration);
/// Without the simulator there is nothing to inject: no value of this type exists.
#[cfg(not(feature = "sim"))]
#[derive(Clone, Debug)]
pub enum PlannedFault {}

/// When `fault` is due.
#[cfg(feature = "sim")]
fn fault_after(fault: &PlannedFault) -> Duration {
    fault.2
}

#[cfg(not(feature = "sim"))]
fn fault_after(fault: &PlannedFault) -> Duration {
    match *fault {}
}

/// Inject the planned fault on connection `id`.
#[cfg(feature = "sim")]
fn inject(
    client: &Client,
    voice: Voice<'_>,
    id: ConnectionId,
    fault: PlannedFault,
) -> Result<(), CliError> {
    let (host, what, _) = fault;
    host.inject(client, id, what)?;
    voice.did(
        "inject",
        id,
        &format!("injected {} on connection {id}", what.name()),
    )
}

#[cfg(not(feature = "sim"))]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature of the simulator's variant; no value exists"
)]
fn inject(_: &Client, _: Voice<'_>, _: ConnectionId, fault: PlannedFault) -> Result<(), CliError> {
    match fault {}
}

/// Connect, post, print the connection's events until it is closed (after a peer disconnect,
/// the planned disconnect, or a limit), then print a summary.
///
/// # Errors
/// CONNECT's failure ([`Error::ConnectFailed`] with the NDK status); a failure of WAIT or of an
/// operation on the connection.
pub fn connect(
    client: &Client,
    params: &ConnectParams,
    timeout: Timeout,
    plan: &ConnectPlan,
    voice: Voice<'_>,
) -> Result<Summary, CliError> {
    let voice = voice.with_clock(client.clock_base().ok());
    let id = connected(client, params, timeout, voice)?;
    let post = |kind, n: u32, name: &str| -> Result<(), CliError> {
        if n > 0 {
            client.post(id, kind, n, plan.length)?;
            voice.did("post", id, &format!("posted {n} {name} on connection {id}"))?;
        }
        Ok(())
    };
    post(PostKind::Receive, plan.receives, "receives")?;
    if plan.fault.is_none() {
        post(PostKind::Send, plan.sends, "sends")?;
    }
    let start = Instant::now();
    let mut summary = Summary::default();
    let mut fault = plan.fault.clone();
    let mut disconnecting = false;
    let mut closing = false;
    let mut why = "closed";
    loop {
        if !closing {
            let stop = if plan.limits.count.is_some_and(|n| summary.total() >= n) {
                Some("count")
            } else if plan.limits.left(start).is_some_and(|d| d.is_zero()) {
                Some("time")
            } else {
                None
            };
            if let Some(w) = stop {
                why = w;
                close(client, voice, id, &mut summary)?;
                closing = true;
            }
        }
        let fault_due = fault
            .as_ref()
            .filter(|_| !closing)
            .map(|f| fault_after(f).saturating_sub(start.elapsed()));
        if fault_due.is_some_and(|d| d.is_zero())
            && let Some(f) = fault.take()
        {
            inject(client, voice, id, f)?;
            post(PostKind::Send, plan.sends, "sends").or_else(|e| refused(voice, id, &e))?;
            continue;
        }
        let due = plan
            .disconnect_after
            .filter(|_| !disconnecting && !closing)
            .map(|d| d.saturating_sub(start.elapsed()));
        if due.is_some_and(|d| d.is_zero()) {
            disconnecting = true;
            disconnect(client, voice, id, plan.abortive)?;
            continue;
        }
        let limit = [due, fault_due, plan.limits.left(start).filter(|_| !closing)]
            .into_iter()
            .flatten()
            .min();
        let events = match client.wait_new(
            WaitOn::Connection(id),
            64,
            limit.map_or(Timeout::Forever, Timeout::After),
        ) {
            Ok(events) => events,
            Err(e) if e.kind() == ErrorKind::Timeout => continue,
            Err(Error::Interrupted { .. }) => {
                summary.show(voice, "interrupted")?;
                return Ok(summary);
            }
            Err(e) => return Err(e.into()),
        };
        for e in &events {
            voice.event(e)?;
            summary.saw(e);
            match (e.kind, e.cause) {
                (EventKind::Closed, _) => {
                    summary.show(voice, why)?;
                    return Ok(summary);
                }
                (EventKind::Disconnected, Some(Cause::Peer)) if !closing => {
                    why = "peer";
                    let q = client.query(id)?;
                    voice.query(&q)?;
                    summary.queried(q);
                    closing = true;
                    answer(client, voice, id)?;
                }
                (EventKind::Disconnected, _) if !closing => {
                    closing = true;
                    close(client, voice, id, &mut summary)?;
                }
                _ => {}
            }
        }
    }
}

/// After a fault the connection may be over already: a refused POST is told, and the
/// connection's events say the rest.
fn refused(voice: Voice<'_>, id: ConnectionId, e: &CliError) -> Result<(), CliError> {
    voice.did(
        "post",
        id,
        &format!("posting sends on connection {id} failed: {e}"),
    )
}

/// CONNECT and say so; the new connection's id.
fn connected(
    client: &Client,
    params: &ConnectParams,
    timeout: Timeout,
    voice: Voice<'_>,
) -> Result<ConnectionId, CliError> {
    let c = {
        let _progress =
            crate::Progress::start(voice.out, format!("the connection to {}", params.remote));
        client.connect(params, timeout)?
    };
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".into(), |a| a.to_string());
    voice.say(
        &format!(
            "connection {} connected {} -> {}",
            c.id,
            show(c.local),
            show(c.remote)
        ),
        json!({"type": "connection", "conn": c.id.raw(), "state": "connected", "local": c.local.map(|a| a.to_string()), "remote": c.remote.map(|a| a.to_string())}),
    )?;
    Ok(c.id)
}

/// QUERY the connection (for the summary) and CLOSE it.
fn close(
    client: &Client,
    voice: Voice<'_>,
    id: ConnectionId,
    s: &mut Summary,
) -> Result<(), CliError> {
    if let Ok(q) = client.query(id) {
        s.queried(q);
    }
    client.close_connection(id)?;
    voice.did("close", id, &format!("closed connection {id}"))
}

/// The planned disconnect: abortive at once; graceful until the peer answers.
fn disconnect(
    client: &Client,
    voice: Voice<'_>,
    id: ConnectionId,
    abortive: bool,
) -> Result<(), CliError> {
    let mode = if abortive {
        DisconnectMode::Abortive
    } else {
        DisconnectMode::Graceful
    };
    voice.did(
        "disconnect",
        id,
        &format!("disconnecting connection {id} ({mode:?})").to_lowercase(),
    )?;
    let _progress = crate::Progress::start(
        voice.out,
        format!("the peer to answer the disconnect of connection {id}"),
    );
    match client.disconnect(id, mode) {
        Ok(()) => voice.did("disconnect", id, &format!("connection {id} disconnected")),
        // The provider's outcome (e.g. STATUS_IO_TIMEOUT: the peer never answered) is told;
        // the connection's events say the rest.
        Err(e) if e.status().is_some() && !matches!(e, Error::Interrupted { .. }) => voice.did(
            "disconnect",
            id,
            &format!("the disconnect of connection {id} failed: {e}"),
        ),
        Err(e) => Err(e.into()),
    }
}

/// End a `serve` or `connect` run with `outcome` and the simulated `peer`: close this end's
/// handle first (the peer's connection ends with it, then the peer ends too), then collect
/// the peer; this end's failure comes first.
///
/// # Errors
/// This end's failure, else the peer's.
pub fn end_with_peer(
    client: Client,
    outcome: Result<Summary, CliError>,
    peer: Option<Peer>,
) -> Result<(), CliError> {
    client.close();
    let peer = peer.map(Peer::finish).transpose();
    outcome?;
    peer.map(drop)
}

/// The other end, run in this process on another simulated host (`--sim-peer`). It stops when
/// `stop` is set (then its thread ends and prints its own summary).
pub struct Peer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Summary, CliError>>>,
}

impl Peer {
    /// Run `body` on `client` in a thread; `body` sees `stop` as the client's interrupt.
    pub fn spawn(
        mut client: Client,
        body: impl FnOnce(&Client, &Arc<AtomicBool>) -> Result<Summary, CliError> + Send + 'static,
    ) -> Result<Self, CliError> {
        let stop = Arc::new(AtomicBool::new(false));
        client.set_interrupt(Arc::clone(&stop));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ndkctl-peer".into())
            .spawn(move || {
                let r = body(&client, &s);
                client.close();
                r
            })
            .map_err(|e| CliError::Usage(format!("cannot start the simulated peer: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Collect the peer's outcome: call it once this end's handle is closed, so that the peer
    /// sees its connection end and finishes on its own; after [`PEER_GRACE`] it is stopped (a
    /// request it is blocked in is cancelled, and that is not a failure).
    ///
    /// # Errors
    /// The peer's failure.
    pub fn finish(mut self) -> Result<(), CliError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + PEER_GRACE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopped = !thread.is_finished();
        self.stop.store(true, Ordering::SeqCst);
        match thread.join() {
            Ok(Err(CliError::Client(Error::Interrupted { .. }))) if stopped => Ok(()),
            Ok(r) => r.map(drop),
            Err(_) => Err(CliError::Usage("the simulated peer panicked".into())),
        }
    }
}

/// How long [`Peer::finish`] lets the peer end on its own.
const PEER_GRACE: Duration = Duration::from_secs(2);

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
