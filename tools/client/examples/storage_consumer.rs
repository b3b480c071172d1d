//! A storage-style consumer of ndkdisc, on the simulator: what an SMB Direct or NVMe-oF target
//! does with a connection when its initiator goes away.
//!
//! The target listens and pre-posts receives (its receive credits) on the connection it
//! accepts; the initiator sends a few requests into them, then disconnects. The target is told
//! by the disconnect event — with the provider's callback and reason — and finds its remaining
//! receives still posted: ndkdisc flushes nothing on its own. It then decides: here it drains
//! them with FLUSH (a target that expects the initiator back could keep them for a reconnect
//! window instead), answers the disconnect, and closes. Every step is checked; the example
//! exits 1 if anything is not as described.
//!
//! Run it: `cargo run -p ndkdisc-client --example storage_consumer` (CI does).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ndkdisc_client::sim::{OpenAs, SimFabric, SimOptions, reason_name};
use ndkdisc_client::{
    Cause, ConnectParams, ConnectionId, Event, EventKind, PostKind, Timeout, WaitOn,
};

const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const INITIATOR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const CREDITS: u32 = 8;
const REQUESTS: u32 = 3;
const LIMIT: Timeout = Timeout::After(Duration::from_secs(10));

/// Something that went differently from the story, or an operation's error.
type Failure = Box<dyn std::error::Error>;

/// The first event of `kind` (skipping others); an error of the iteration ends the search.
fn first(
    mut events: impl Iterator<Item = Result<Event, ndkdisc_client::Error>>,
    kind: EventKind,
) -> Result<Event, Failure> {
    match events.find(|e| e.as_ref().map_or(true, |e| e.kind == kind)) {
        Some(found) => Ok(found?),
        None => Err(format!("the events ended before a {kind:?} one").into()),
    }
}

fn run() -> Result<(), Failure> {
    let fabric = SimFabric::new(SimOptions::default());
    let target = fabric
        .add_host("target", 2, TARGET)?
        .open(OpenAs::default())?;
    let initiator = fabric
        .add_host("initiator", 1, INITIATOR)?
        .open(OpenAs::default())?;

    let listener = target.open_listener(2, SocketAddr::new(TARGET, 445), 0)?;
    println!("target: listening on {}", listener.bound());
    let session = initiator.open_connection(
        &ConnectParams {
            if_index: 1,
            remote: listener.bound(),
            local: None,
            receive_depth: 0,
            send_depth: 0,
        },
        LIMIT,
    )?;
    println!("initiator: connected (connection {})", session.id());

    // The target takes the connection and posts its receive credits.
    let accepted = first(target.events(WaitOn::Any, LIMIT), EventKind::Accepted)?;
    let conn = target.adopt_connection(ConnectionId::of(&accepted));
    conn.post(PostKind::Receive, CREDITS, 4096)?;
    println!(
        "target: accepted connection {}, posted {CREDITS} receives",
        conn.id()
    );

    // The initiator sends a few requests, which land in the target's receives.
    session.post(PostKind::Send, REQUESTS, 512)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let q = loop {
        let q = conn.query()?;
        if q.receives_succeeded == REQUESTS {
            break q;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the requests did not arrive: {q:?}").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    println!(
        "target: {} requests received, {} receives still posted",
        q.receives_succeeded, q.outstanding_receives
    );

    // The initiator goes away: a graceful disconnect, which completes when the target answers.
    let leaving = session.start_disconnect()?;

    // The target watches its connection for the disconnect.
    let event = first(conn.events(LIMIT), EventKind::Disconnected)?;
    if event.cause != Some(Cause::Peer) || !event.callback_fired {
        return Err(format!("not a peer disconnect: {event:?}").into());
    }
    let reason = event.provider_reason.map_or_else(
        || "none".into(),
        |r| format!("{r} ({})", reason_name(r).unwrap_or("?")),
    );
    println!(
        "target: the initiator disconnected (callback fired, provider reason {reason}); {} receives still posted",
        event.outstanding_receives
    );
    let remaining = CREDITS - REQUESTS;
    if event.outstanding_receives != remaining || conn.query()?.flushed {
        return Err(format!("expected {remaining} receives kept and no flush: {event:?}").into());
    }

    // Its decision: drain them now, then answer and close.
    conn.flush()?;
    let flushed = first(conn.events(LIMIT), EventKind::Flushed)?;
    let q = conn.query()?;
    println!(
        "target: flushed: {} receives completed cancelled, {} outstanding (event #{})",
        q.receives_cancelled, q.outstanding_receives, flushed.seq
    );
    if q.receives_cancelled != remaining || q.outstanding_receives != 0 {
        return Err(format!("the flush left {q:?}").into());
    }
    conn.disconnect(ndkdisc_client::DisconnectMode::Graceful)?;
    conn.close()?;
    initiator.finish_disconnect(leaving, LIMIT)?;
    println!("initiator: its disconnect completed once the target answered");
    session.close()?;
    listener.close()?;
    initiator.close();
    target.close();
    let left = fabric.wait_released(Duration::from_secs(5));
    if left != 0 {
        return Err(format!("{left} NDK objects not released").into());
    }
    println!("storage_consumer: ok");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage_consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
