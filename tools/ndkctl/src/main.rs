//! `ndkctl`: the ndkdisc test tool. Every operation of the driver's IOCTL interface as a
//! subcommand, an event watcher, a self-contained simulated demo, and scripted scenarios that
//! run on the simulator and on real hardware. Exit codes: see [`error::exit`].
//!
//! In the event path it is the user at the end: it issues IOCTLs and prints the events the
//! driver delivers, through `ndkdisc-client` (the device on Windows, or the simulation backend:
//! the real engine over `softndk`).
#![forbid(unsafe_code)]

mod cli;
#[cfg(feature = "sim")]
mod demo;
mod error;
mod live;
mod output;
mod scenario;
mod session;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use ndkdisc_abi::PostKind;
#[cfg(feature = "sim")]
use ndkdisc_client::sim::{Faults, OpenAs, Quotas, SimFabric, SimOptions};
use ndkdisc_client::{
    Client, ConnectParams, DisconnectMode, Error, ErrorKind, Timeout, WaitOn, parse_socket_addr,
};
use serde_json::json;

use crate::cli::{BackendKind, Cli, Command, PostWhat};
#[cfg(feature = "sim")]
use crate::cli::{SimFault, SimUser};
use crate::error::CliError;
use crate::output::Out;

/// Where handles come from.
pub enum Backend {
    /// The driver on this machine.
    Device {
        /// A path to open instead of the device interface.
        path: Option<String>,
        /// Open for writing too.
        write: bool,
    },
    /// A simulated fabric.
    #[cfg(feature = "sim")]
    Sim {
        /// The fabric.
        fabric: Arc<SimFabric>,
        /// Who opens handles.
        who: OpenAs,
    },
}

impl Backend {
    #[cfg_attr(
        feature = "sim",
        expect(
            clippy::unnecessary_wraps,
            reason = "it fails only in an ndkctl built without the simulator"
        )
    )]
    fn from_cli(cli: &Cli) -> Result<Self, CliError> {
        if cli.sim || cli.backend == BackendKind::Sim {
            #[cfg(feature = "sim")]
            {
                output::set_simulated(true);
                Ok(Self::Sim {
                    fabric: SimFabric::new(sim_options_of(cli)),
                    who: OpenAs {
                        administrator: cli.sim_user == SimUser::Admin,
                        write: !cli.read_only,
                    },
                })
            }
            #[cfg(not(feature = "sim"))]
            Err(CliError::Usage(WITHOUT_SIMULATOR.into()))
        } else {
            Ok(Self::Device {
                path: cli.device.clone(),
                write: !cli.read_only,
            })
        }
    }

    /// The default simulated world of single commands: hosts `a` and `b`.
    #[cfg_attr(
        not(feature = "sim"),
        expect(
            clippy::unnecessary_wraps,
            reason = "only simulated hosts can fail to be added"
        )
    )]
    fn with_default_hosts(self) -> Result<Self, CliError> {
        #[cfg(feature = "sim")]
        if let Self::Sim { fabric, .. } = &self {
            fabric.add_host("a", 1, IpAddr::from([10, 0, 0, 1]))?;
            fabric.add_host("b", 2, IpAddr::from([10, 0, 0, 2]))?;
        }
        Ok(self)
    }

    /// Open a handle: on the device, or on the simulated host `host`.
    ///
    /// # Errors
    /// Device missing, access denied, an unknown simulated host.
    #[cfg_attr(
        not(feature = "sim"),
        expect(unused_variables, reason = "hosts are the simulator's")
    )]
    pub fn open(&self, host: &str) -> Result<Client, CliError> {
        match self {
            Self::Device { path, write } => Ok(Client::open_device(path.as_deref(), *write)?),
            #[cfg(feature = "sim")]
            Self::Sim { fabric, who } => {
                let h = fabric
                    .host(host)
                    .ok_or_else(|| CliError::Usage(format!("no simulated host `{host}`")))?;
                Ok(h.open(*who)?)
            }
        }
    }
}

/// What the simulator's commands and options say in an ndkctl built without it.
#[cfg(not(feature = "sim"))]
const WITHOUT_SIMULATOR: &str = "this ndkctl was built without the simulator (cargo feature `sim`): \
     --sim, demo and the simulator's options are not available; the device backend is";

/// Simulator options from `--sim-fault`.
#[cfg(feature = "sim")]
pub fn sim_options(faults: &[SimFault]) -> SimOptions {
    SimOptions {
        faults: Faults {
            flush_on_peer_disconnect: faults.contains(&SimFault::FlushOnPeerDisconnect),
            duplicate_disconnect_callback: faults.contains(&SimFault::DuplicateCallback),
        },
        ..SimOptions::default()
    }
}

/// Simulator options from the command line: `--sim-fault` and the quotas.
#[cfg(feature = "sim")]
fn sim_options_of(cli: &Cli) -> SimOptions {
    SimOptions {
        quotas: Quotas {
            max_connections: cli.sim_max_connections,
            max_listeners: cli.sim_max_listeners,
            max_waits: cli.sim_max_waits,
            ..Quotas::default()
        },
        ..sim_options(&cli.sim_fault)
    }
}

/// Parse `500ms`, `2s`, `1m`, or a bare number of seconds.
///
/// # Errors
/// [`CliError::Usage`].
pub fn parse_duration(text: &str) -> Result<Duration, CliError> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v * scale < 1.0e9)
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| CliError::Usage(format!("bad duration `{text}`: try 500ms, 2s or 1m")))
}

fn timeout_arg(t: Option<&String>) -> Result<Timeout, CliError> {
    t.map(|s| parse_duration(s))
        .transpose()
        .map(|d| d.map_or(Timeout::Forever, Timeout::After))
}

/// The interface whose adapter has `ip` (or, for an unspecified address, the first of its
/// family).
///
/// # Errors
/// [`Error::BadAddress`] when no adapter fits.
pub fn interface_for(client: &Client, ip: IpAddr, exact: bool) -> Result<u32, CliError> {
    let adapters = client.adapters()?;
    let same_family = |a: &&ndkdisc_abi::AdapterEntry| a.address.is_ipv4() == ip.is_ipv4();
    let found = if exact && !ip.is_unspecified() {
        adapters.iter().find(|a| a.address.ip() == ip)
    } else {
        adapters.iter().find(same_family)
    };
    found.map(|a| a.if_index).ok_or_else(|| {
        CliError::Client(Error::BadAddress {
            text: ip.to_string(),
            why: if exact {
                "no NDK adapter has this address (see `ndkctl adapters`)".into()
            } else {
                "no NDK adapter of this address family (see `ndkctl adapters`)".into()
            },
        })
    })
}

/// The interface for a CONNECT to `remote` from `local`.
///
/// # Errors
/// [`Error::BadAddress`].
pub fn connect_params(
    client: &Client,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    if_index: Option<u32>,
) -> Result<ConnectParams, CliError> {
    let if_index = match (if_index, local) {
        (Some(i), _) => i,
        (None, Some(l)) => interface_for(client, l.ip(), true)?,
        (None, None) => interface_for(client, remote.ip(), false)?,
    };
    Ok(ConnectParams {
        if_index,
        remote,
        local,
        receive_depth: 0,
        send_depth: 0,
    })
}

/// The Ctrl-C flag of the commands that can block, once installed.
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Set on Ctrl-C; blocked operations cancel their request (`CancelIoEx`) when they see it. A
/// second Ctrl-C ends the process at once. Installed only for the commands that can block.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    // If no handler can be installed, Ctrl-C simply ends the process as usual.
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(error::exit::INTERRUPTED));
        }
    });
    let _ = INTERRUPT.set(Arc::clone(&flag));
    flag
}

/// Whether Ctrl-C was pressed (a watch it ended still exits 130).
fn interrupted() -> bool {
    INTERRUPT.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

fn ok_json(op: &str, id: impl Into<u64>) -> serde_json::Value {
    json!({"type": "ok", "op": op, "id": id.into()})
}

#[expect(clippy::too_many_lines, reason = "one arm per subcommand, each short")]
fn run(cli: &Cli, out: &Out) -> Result<(), CliError> {
    let blocks = matches!(
        cli.command,
        Command::Wait { .. }
            | Command::Watch { .. }
            | Command::Connect { .. }
            | Command::Serve { .. }
            | Command::Session { .. }
            | Command::Disconnect { .. }
            | Command::Demo
            | Command::Scenario { .. }
    );
    let interrupt = if blocks {
        interrupt_flag()
    } else {
        Arc::new(AtomicBool::new(false))
    };
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            cmd.set_bin_name("ndkctl");
            cmd.build();
            let mut o = std::io::stdout().lock();
            // `try_generate`: `generate` panics when the output cannot be written.
            clap_complete::Generator::try_generate(shell, &cmd, &mut o)?;
            std::io::Write::flush(&mut o)?;
            return Ok(());
        }
        Command::Man => {
            let mut o = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut o)?;
            return Ok(());
        }
        Command::Demo => {
            #[cfg(feature = "sim")]
            {
                output::set_simulated(true);
                return demo::run(&cli.sim_fault, out, &interrupt);
            }
            #[cfg(not(feature = "sim"))]
            return Err(CliError::Usage(WITHOUT_SIMULATOR.into()));
        }
        Command::Session { file } => {
            let backend = Backend::from_cli(cli)?;
            return session::run(file, &backend, &interrupt);
        }
        Command::Scenario { file, vars } => {
            let backend = Backend::from_cli(cli)?;
            let (shown, text) = scenario::read_file(file)?;
            return scenario::run(&shown, &text, vars, &backend, out, &interrupt);
        }
        _ => {}
    }
    let backend = Backend::from_cli(cli)?;
    #[cfg_attr(
        not(feature = "sim"),
        expect(
            irrefutable_let_patterns,
            reason = "without the simulator every backend is the device"
        )
    )]
    if let Backend::Device { .. } = backend {
        match &cli.command {
            Command::Connect {
                sim_inject: Some(_),
                ..
            } => {
                return Err(CliError::Usage(
                    "--sim-inject breaks a simulated connection: add --sim".into(),
                ));
            }
            Command::Serve { sim_peer: true, .. } | Command::Connect { sim_peer: true, .. } => {
                return Err(CliError::Usage(
                    "--sim-peer runs the other end on the simulator: add --sim".into(),
                ));
            }
            _ => {}
        }
    }
    let backend = backend.with_default_hosts()?;
    let mut client = backend.open("a")?;
    client.set_interrupt(Arc::clone(&interrupt));
    match &cli.command {
        Command::Info => {
            let i = client.info()?;
            out.emit(
                &format!(
                    "abi {} driver {}.{}; {}; per handle: {} connections, {} listeners, {} waits, backlog {}, {} events per connection; since load: {} connections, {} events, {} disconnect callbacks ({} duplicate), {} backlog rejects; ETW provider {} {}",
                    i.abi_version,
                    i.driver_version >> 16,
                    i.driver_version & 0xffff,
                    output::ndk_text(i.ndk_status),
                    i.max_connections,
                    i.max_listeners,
                    i.max_waits,
                    i.default_backlog,
                    i.events_per_connection,
                    i.connections_opened,
                    i.events_latched,
                    i.disconnect_callbacks,
                    i.duplicate_callbacks,
                    i.backlog_rejects,
                    ndkdisc_abi::device::ETW_PROVIDER_NAME,
                    ndkdisc_abi::device::ETW_PROVIDER_GUID_TEXT
                ),
                &output::info_json(&i),
            )?;
        }
        Command::Adapters => {
            for a in client.adapters()? {
                out.emit(
                    &format!(
                        "if {:<4} ndk {}.{}  {}",
                        a.if_index,
                        a.ndk_major,
                        a.ndk_minor,
                        a.address.ip()
                    ),
                    &output::adapter_json(&a),
                )?;
            }
        }
        Command::Listen {
            addr,
            if_index,
            backlog,
        } => {
            let local = parse_socket_addr(addr)?;
            let if_index = match if_index {
                Some(i) => *i,
                None => interface_for(&client, local.ip(), true)?,
            };
            let l = client.listen(if_index, local, *backlog)?;
            out.emit(
                &format!("listener {} on {} (interface {if_index})", l.listener_id, l.bound),
                &json!({"type": "listener", "listener_id": l.listener_id, "bound": l.bound.to_string(), "if_index": if_index}),
            )?;
        }
        Command::Serve {
            addr,
            if_index,
            backlog,
            recv,
            len,
            on_peer_disconnect,
            connections,
            count,
            for_,
            filter,
            sim_peer,
        } => {
            let local = parse_socket_addr(addr)?;
            let params = live::ServeParams {
                if_index: match if_index {
                    Some(i) => *i,
                    None => interface_for(&client, local.ip(), true)?,
                },
                local,
                backlog: *backlog,
                receives: *recv,
                length: *len,
                on_peer_disconnect: *on_peer_disconnect,
                connections: *connections,
                filter: filter.clone(),
                limits: live::Limits {
                    count: *count,
                    duration: for_.as_deref().map(parse_duration).transpose()?,
                },
            };
            let voice = if *sim_peer {
                live::Voice::of(out, "a")
            } else {
                live::Voice::plain(out)
            };
            let (ready, bound) = std::sync::mpsc::channel();
            let peer = if *sim_peer {
                let peer_client = backend.open("b")?;
                let p_out = Out::new(out.is_json());
                Some(live::Peer::spawn(peer_client, move |c, _| {
                    // Connect once the listener is up, to the address it bound.
                    let remote = bound
                        .recv()
                        .map_err(|_| CliError::Usage("the server never listened".into()))?;
                    let params = connect_params(c, remote, None, None)?;
                    let plan = live::ConnectPlan {
                        disconnect_after: Some(Duration::from_millis(500)),
                        ..live::ConnectPlan::default()
                    };
                    live::connect(
                        c,
                        &params,
                        Timeout::After(Duration::from_secs(10)),
                        &plan,
                        live::Voice::of(&p_out, "b"),
                    )
                })?)
            } else {
                drop(bound);
                None
            };
            let served = live::serve(&client, &params, voice, Some(ready));
            return live::end_with_peer(client, served, peer);
        }
        Command::Connect {
            addr,
            if_index,
            local,
            timeout,
            recv,
            send,
            len,
            disconnect_after,
            abortive,
            count,
            for_,
            sim_peer,
            sim_inject,
            sim_inject_after,
        } => {
            let remote = parse_socket_addr(addr)?;
            // (On the device backend --sim-inject was refused before the device was opened.)
            // (--sim-inject on the device backend was refused before the device was opened.)
            #[cfg(not(feature = "sim"))]
            let fault: Option<live::PlannedFault> = {
                let _ = (sim_inject, sim_inject_after);
                None
            };
            #[cfg(feature = "sim")]
            let fault = match (sim_inject, &backend) {
                (Some(f), Backend::Sim { fabric, .. }) => Some((
                    fabric
                        .host("a")
                        .ok_or_else(|| CliError::Usage("no simulated host `a`".into()))?,
                    f.fault(),
                    parse_duration(sim_inject_after)?,
                )),
                _ => None,
            };
            let local = local.as_deref().map(parse_socket_addr).transpose()?;
            let params = connect_params(&client, remote, local, *if_index)?;
            let plan = live::ConnectPlan {
                receives: *recv,
                sends: *send,
                length: *len,
                disconnect_after: disconnect_after
                    .as_deref()
                    .map(parse_duration)
                    .transpose()?,
                abortive: *abortive,
                limits: live::Limits {
                    count: *count,
                    duration: for_.as_deref().map(parse_duration).transpose()?,
                },
                fault,
            };
            let peer = if *sim_peer {
                let peer_client = backend.open("b")?;
                let if_index = interface_for(&peer_client, remote.ip(), true).map_err(|_| {
                    CliError::Usage(format!(
                        "--sim-peer serves on simulated host b (10.0.0.2): connect to 10.0.0.2:PORT, not {remote}"
                    ))
                })?;
                let serve = live::ServeParams {
                    if_index,
                    local: remote,
                    backlog: 0,
                    receives: 4,
                    length: *len,
                    on_peer_disconnect: live::OnPeerDisconnect::Answer,
                    connections: Some(1),
                    filter: cli::EventFilter::default(),
                    limits: live::Limits::default(),
                };
                let (ready, listening) = std::sync::mpsc::channel();
                let p_out = Out::new(out.is_json());
                let peer = live::Peer::spawn(peer_client, move |c, _| {
                    live::serve(c, &serve, live::Voice::of(&p_out, "b"), Some(ready))
                })?;
                // Connect only once b listens (or has failed to).
                let _ = listening.recv();
                Some(peer)
            } else {
                None
            };
            let voice = if *sim_peer {
                live::Voice::of(out, "a")
            } else {
                live::Voice::plain(out)
            };
            let connected = live::connect(
                &client,
                &params,
                timeout_arg(timeout.as_ref())?,
                &plan,
                voice,
            );
            return live::end_with_peer(client, connected, peer);
        }
        Command::Wait {
            id,
            any,
            max,
            timeout,
        } => {
            // clap requires one of them: `--any`, or the connection.
            let on = match (id, any) {
                (Some(id), false) => WaitOn::Connection(*id),
                _ => WaitOn::Any,
            };
            waiting_note(out);
            let events = {
                let _progress = Progress::start(out, waited_for(on));
                client.wait(on, *max, timeout_arg(timeout.as_ref())?)?
            };
            let clock = client.clock_base().ok();
            out.note(output::EVENT_HEADER)?;
            for e in &events {
                out.emit(
                    &output::event_row_at(e, clock.as_ref()),
                    &output::event_json_at(e, clock.as_ref()),
                )?;
            }
        }
        Command::List => {
            out.note(output::OBJECT_HEADER)?;
            for o in client.objects()? {
                out.emit(&output::object_row(&o), &output::object_json(&o))?;
            }
        }
        Command::Query { id } => {
            let q = client.query(*id)?;
            out.emit(&output::query_line(&q), &output::query_json(&q))?;
        }
        Command::Post {
            id,
            what,
            count,
            len,
        } => {
            let kind = match what {
                PostWhat::Recv => PostKind::Receive,
                PostWhat::Send => PostKind::Send,
            };
            client.post(*id, kind, *count, *len)?;
            out.emit(
                &format!("posted {count} {what:?} of {len} bytes on connection {id}")
                    .to_lowercase(),
                &ok_json("post", *id),
            )?;
        }
        Command::Disconnect { id, abortive } => {
            let mode = if *abortive {
                DisconnectMode::Abortive
            } else {
                DisconnectMode::Graceful
            };
            {
                let _progress = Progress::start(out, format!("connection {id} to disconnect"));
                client.disconnect(*id, mode)?;
            }
            out.emit(
                &format!("disconnect ({mode:?}) requested on connection {id}").to_lowercase(),
                &ok_json("disconnect", *id),
            )?;
        }
        Command::Abort { id } => {
            client.abort(*id)?;
            out.emit(&format!("connection {id} aborted"), &ok_json("abort", *id))?;
        }
        Command::Flush { id } => {
            client.flush(*id)?;
            out.emit(
                &format!("flush requested on connection {id}"),
                &ok_json("flush", *id),
            )?;
        }
        Command::Close { id } => {
            client.close_object(*id)?;
            out.emit(&format!("{id} closed"), &ok_json("close", *id))?;
        }
        Command::Watch {
            id,
            count,
            for_,
            filter,
        } => {
            let limit = for_.as_deref().map(parse_duration).transpose()?;
            waiting_note(out);
            let (shown, why) = watch(
                &client,
                id.map_or(WaitOn::Any, WaitOn::Connection),
                *count,
                limit,
                filter,
                out,
            )?;
            shown.show(live::Voice::plain(out), why)?;
        }
        Command::Demo
        | Command::Scenario { .. }
        | Command::Session { .. }
        | Command::Completions { .. }
        | Command::Man => {}
    }
    client.close();
    Ok(())
}

/// While alive, says on stderr (readable mode only) every `NDKCTL_PROGRESS_SECONDS` seconds
/// (default 10) what is still being waited for, so a long wait is never silent.
pub struct Progress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Start saying that `what` is awaited.
    pub fn start(out: &Out, what: String) -> Self {
        if out.is_json() {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let every = std::env::var("NDKCTL_PROGRESS_SECONDS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map_or(Duration::from_secs(10), |d| {
                d.max(Duration::from_millis(50))
            });
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let start = Instant::now();
        let thread = std::thread::Builder::new()
            .name("ndkctl-progress".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let mut e = std::io::stderr().lock();
                    let _ = std::io::Write::write_fmt(
                        &mut e,
                        format_args!(
                            "ndkctl: still waiting for {what} ({}s; Ctrl-C cancels)\n",
                            start.elapsed().as_secs()
                        ),
                    );
                }
            })
            .ok();
        Self {
            stop: Some(tx),
            thread,
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a WAIT on `on` waits for, in words.
pub fn waited_for(on: WaitOn) -> String {
    match on {
        WaitOn::Any => "events on any connection".into(),
        WaitOn::Connection(id) => format!("events on connection {id}"),
    }
}

/// Tell a person at the terminal (stderr, readable mode only) that a wait is under way and how
/// to end it.
fn waiting_note(out: &Out) {
    if !out.is_json() {
        say_err(format_args!("ndkctl: waiting for events (Ctrl-C cancels)"));
    }
}

/// A line on stderr; a closed stderr is ignored (`eprintln!` would panic).
fn say_err(line: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = std::io::Write::write_fmt(&mut e, format_args!("{line}\n"));
}

/// Stream events until interrupted, `count` events, or `limit` elapsed; what was shown, and
/// why it ended (`count`, `time`, `closed`, `interrupted`). Interruption is the normal end of
/// a watch.
///
/// # Errors
/// Failures of WAIT other than the timeout or interruption that end the watch.
pub fn watch(
    client: &Client,
    on: WaitOn,
    count: Option<usize>,
    limit: Option<Duration>,
    filter: &cli::EventFilter,
    out: &Out,
) -> Result<(live::Summary, &'static str), CliError> {
    let start = Instant::now();
    let mut shown = live::Summary::default();
    let clock = client.clock_base().ok();
    out.note(output::EVENT_HEADER)?;
    loop {
        if count.is_some_and(|c| shown.total() >= c) {
            return Ok((shown, "count"));
        }
        let timeout = match limit {
            None => Timeout::Forever,
            Some(l) => {
                let left = l.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Ok((shown, "time"));
                }
                Timeout::After(left)
            }
        };
        let room = count.map_or(64, |c| c - shown.total());
        // New events only: a copy of a terminal record already delivered is not shown again.
        match client.wait_new(on, room, timeout) {
            Ok(events) => {
                for e in &events {
                    if filter.shows(e) {
                        out.emit(
                            &output::event_row_at(e, clock.as_ref()),
                            &output::event_json_at(e, clock.as_ref()),
                        )?;
                        shown.saw(e);
                    }
                    if matches!(on, WaitOn::Connection(_))
                        && e.kind == ndkdisc_client::EventKind::Closed
                    {
                        // Nothing follows a connection's Closed.
                        return Ok((shown, "closed"));
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::Timeout) => return Ok((shown, "time")),
            Err(Error::Interrupted { .. }) => return Ok((shown, "interrupted")),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Report `e` on stderr, with the exit code the process ends with (`code`: an interruption's
/// 130 over the error's own).
fn report(e: &CliError, code: u8, json: bool) {
    if json {
        say_err(format_args!("{}", output::with_schema(&e.record(code))));
    } else {
        say_err(format_args!("ndkctl: error: {e}"));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.json);
    match run(&cli, &out) {
        // A watch ends normally on Ctrl-C, and still says it was interrupted.
        Ok(()) if interrupted() => ExitCode::from(error::exit::INTERRUPTED),
        Ok(()) => ExitCode::from(error::exit::OK),
        // The reader went away (`| head`): nothing more to say, and nobody to say it to; the
        // code says the run was cut short, as a tool killed by SIGPIPE would.
        Err(e) if e.is_broken_pipe() => ExitCode::from(error::exit::BROKEN_PIPE),
        Err(e) => {
            // Whatever the interruption made fail, it was an interruption.
            let code = if interrupted() {
                error::exit::INTERRUPTED
            } else {
                e.exit_code()
            };
            report(&e, code, cli.json);
            ExitCode::from(code)
        }
    }
}
