//! The command line.
#![expect(
    clippy::doc_markdown,
    reason = "doc comments here are the --help text, read in a terminal without markdown"
)]

use clap::{Parser, Subcommand, ValueEnum};
use ndkdisc_client::ConnectionId;

use crate::error::EXIT_CODES_HELP;

const BACKENDS_HELP: &str = "\
Backends:
  device  the ndkdisc driver on this machine (Windows; opened by its device interface GUID,
          else \\\\.\\NdkDisc, or --device PATH). Elsewhere it reports 'device missing' (exit 3).
  sim     the real ndkdisc engine over softndk, in-process: hosts `a` (interface 1, 10.0.0.1)
          and `b` (interface 2, 10.0.0.2) on one simulated fabric; commands run on host `a`.
          Each invocation starts a fresh simulator: `serve`/`connect --sim-peer` run both ends,
          and `session` and `scenario` keep one simulator for many commands.";

/// ndkctl: drive the ndkdisc NDK disconnect driver — or its simulation — from the command line.
#[derive(Debug, Parser)]
#[command(name = "ndkctl", version, about, after_help = format!("{BACKENDS_HELP}\n\n{EXIT_CODES_HELP}"))]
pub struct Cli {
    /// Use the simulation backend (shorthand for `--backend sim`).
    #[arg(long, global = true, help_heading = "Simulator")]
    pub sim: bool,
    /// Which backend runs the operations.
    #[arg(long, env = "NDKCTL_BACKEND", value_enum, default_value_t = BackendKind::Device, global = true)]
    pub backend: BackendKind,
    /// Device path to open instead of the device interface (device backend).
    #[arg(long, global = true, value_name = "PATH")]
    pub device: Option<String>,
    /// Open the handle for reading only: queries work, changes are denied (exit 4).
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Make the simulated provider misbehave (sim backend and demo).
    #[arg(
        long,
        value_enum,
        global = true,
        value_name = "FAULT",
        help_heading = "Simulator"
    )]
    pub sim_fault: Vec<SimFault>,
    /// Connections each simulated handle may have (default: the driver's).
    #[arg(long, global = true, value_name = "N", help_heading = "Simulator")]
    pub sim_max_connections: Option<usize>,
    /// Listeners each simulated handle may have.
    #[arg(long, global = true, value_name = "N", help_heading = "Simulator")]
    pub sim_max_listeners: Option<usize>,
    /// WAITs each simulated handle may have pended.
    #[arg(long, global = true, value_name = "N", help_heading = "Simulator")]
    pub sim_max_waits: Option<usize>,
    /// Who opens the simulated device: `standard` is a user who is not an administrator.
    #[arg(long, value_enum, default_value_t = SimUser::Admin, global = true, help_heading = "Simulator")]
    pub sim_user: SimUser,
    /// Print results as JSON lines (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The driver on this machine.
    Device,
    /// The in-process simulator.
    Sim,
}

/// Provider misbehaviours the simulator can be run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimFault {
    /// The provider flushes outstanding work when it indicates a peer disconnect.
    FlushOnPeerDisconnect,
    /// The provider fires the disconnect callback twice.
    DuplicateCallback,
}

/// A fault to inject on a simulated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InjectFault {
    /// The link fails silently (hardware-like).
    LinkLoss,
    /// The peer resets the connection.
    PeerReset,
    /// The peer's provider disconnects gracefully on its own.
    PeerDisconnect,
    /// The connection's completion queue overruns (the adapter's fault).
    CqOverrun,
    /// A fatal adapter error on the connection's completion queue.
    CqFatal,
}

#[cfg(feature = "sim")]
impl InjectFault {
    /// The client's fault.
    pub fn fault(self) -> ndkdisc_client::sim::ConnectionFault {
        use ndkdisc_client::sim::ConnectionFault as F;
        match self {
            Self::LinkLoss => F::LinkLoss,
            Self::PeerReset => F::PeerReset,
            Self::PeerDisconnect => F::PeerDisconnect,
            Self::CqOverrun => F::CqOverrun,
            Self::CqFatal => F::CqFatal,
        }
    }
}

/// Who opens the simulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimUser {
    /// An administrator.
    Admin,
    /// A user who is not an administrator.
    Standard,
}

/// Receives or sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PostWhat {
    /// Receives.
    Recv,
    /// Sends.
    Send,
}

/// Which events to show (the others are taken from the driver all the same).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EventFilter {
    /// Show only events of this kind (repeat for several).
    #[arg(long, value_name = "KIND", value_parser = ["connected", "accepted", "connect-failed", "disconnected", "flushed", "closed"])]
    pub kind: Vec<String>,
    /// Show only events with this cause (repeat for several; `none`: events without one).
    #[arg(long, value_name = "CAUSE", value_parser = ["peer", "local", "local-abortive", "aborted", "adapter-removed", "handle-closed", "transport-error", "none"])]
    pub cause: Vec<String>,
}

impl EventFilter {
    /// Whether `e` is shown.
    pub fn shows(&self, e: &ndkdisc_client::Event) -> bool {
        (self.kind.is_empty()
            || self
                .kind
                .iter()
                .any(|k| *k == crate::output::kind_name(e.kind)))
            && (self.cause.is_empty()
                || self
                    .cause
                    .iter()
                    .any(|c| *c == crate::output::cause_name(e.cause)))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Driver and ABI versions, per-handle limits, driver counters (GET_INFO; the counters read
    /// zero with --read-only).
    Info,
    /// NDK-capable adapters: interface index, NDKPI version, address (LIST_ADAPTERS).
    Adapters,
    /// Listen on IP:PORT; incoming connections become `accepted` events (LISTEN).
    Listen {
        /// Where to listen, IP:PORT (port 0 picks one).
        addr: String,
        /// Interface index (default: the adapter that has the address).
        #[arg(long = "if", value_name = "IF_INDEX")]
        if_index: Option<u32>,
        /// Connect-event backlog (0 = the driver's default).
        #[arg(long, default_value_t = 0)]
        backlog: u32,
    },
    /// Listen on IP:PORT and serve, printing every event as it happens, until Ctrl-C or a
    /// limit: receives are pre-posted on each accepted connection, and a peer's disconnect is
    /// shown (QUERY: the receives are still outstanding) and answered. Like `rping -s`.
    Serve {
        /// Where to listen, IP:PORT (port 0 picks one).
        addr: String,
        /// Interface index (default: the adapter that has the address).
        #[arg(long = "if", value_name = "IF_INDEX")]
        if_index: Option<u32>,
        /// Connect-event backlog (0 = the driver's default).
        #[arg(long, default_value_t = 0)]
        backlog: u32,
        /// Receives to post on each accepted connection.
        #[arg(long, default_value_t = 4, value_name = "N")]
        recv: u32,
        /// Bytes per receive.
        #[arg(long, default_value_t = 4096)]
        len: u32,
        /// What to do when a peer disconnects.
        #[arg(long, value_enum, default_value_t = crate::live::OnPeerDisconnect::Answer)]
        on_peer_disconnect: crate::live::OnPeerDisconnect,
        /// Stop after this many connections have been closed.
        #[arg(long, value_name = "N")]
        connections: Option<usize>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Stop after this long, e.g. 30s.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        #[command(flatten)]
        filter: EventFilter,
        /// Run a client in this process on simulated host `b`: it connects, waits 500ms and
        /// disconnects gracefully (the simulator has nobody else to connect).
        #[arg(long, help_heading = "Simulator")]
        sim_peer: bool,
    },
    /// Connect to IP:PORT, post, and print the connection's events until it is closed: after
    /// the peer disconnects (answered), --disconnect-after, a limit or Ctrl-C. Like `rping -c`.
    Connect {
        /// The peer, IP:PORT.
        addr: String,
        /// Interface index (default: the adapter of `--local`, else the first of the family).
        #[arg(long = "if", value_name = "IF_INDEX")]
        if_index: Option<u32>,
        /// Local address IP:PORT.
        #[arg(long)]
        local: Option<String>,
        /// Give up connecting (and cancel) after this long, e.g. 500ms, 5s.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Receives to post once connected.
        #[arg(long, default_value_t = 0, value_name = "N")]
        recv: u32,
        /// Sends to post once connected.
        #[arg(long, default_value_t = 0, value_name = "N")]
        send: u32,
        /// Bytes per receive or send.
        #[arg(long, default_value_t = 4096)]
        len: u32,
        /// Disconnect after this long (graceful: waits for the peer's answer).
        #[arg(long, value_name = "DURATION")]
        disconnect_after: Option<String>,
        /// Make that disconnect abortive (a reset).
        #[arg(long, requires = "disconnect_after")]
        abortive: bool,
        /// Close the connection after this many events.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Close the connection after this long.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        /// Run `serve` for it in this process on simulated host `b` (the simulator has nobody
        /// else listening); connect to b's address, 10.0.0.2.
        #[arg(long, help_heading = "Simulator")]
        sim_peer: bool,
        /// Break the connection on the simulator: link-loss (silent: noticed only by a send,
        /// so --send N posts after it), peer-reset or peer-disconnect (the peer's host goes
        /// away), cq-overrun or cq-fatal (the adapter's completion queue dies).
        #[arg(long, value_enum, value_name = "FAULT", help_heading = "Simulator")]
        sim_inject: Option<InjectFault>,
        /// When to inject it, after connecting.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "200ms",
            help_heading = "Simulator"
        )]
        sim_inject_after: String,
    },
    /// Read commands from FILE (or stdin: `-`, the default), one per line, as JSON objects or
    /// scenario steps, and run them on handles that stay open; each is answered with one JSON
    /// line on stdout. See the README ("Sessions") for the commands.
    Session {
        /// The command file, `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Wait for the next batch of events on one connection, or on any with --any (WAIT).
    #[command(group = clap::ArgGroup::new("on").required(true).args(["id", "any"]))]
    Wait {
        /// The connection (or --any).
        id: Option<ConnectionId>,
        /// Any connection of the handle.
        #[arg(long)]
        any: bool,
        /// Most events to return at once.
        #[arg(long, default_value_t = 64)]
        max: usize,
        /// Give up (and cancel) after this long; `0` drains without waiting.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// The handle's connections and listeners: state, outstanding work, addresses
    /// (LIST_OBJECTS). A single command's handle is new and owns nothing: use it in a session
    /// or a scenario, where the handle lives on.
    List,
    /// A connection's state, outstanding work, callback and provider reason (QUERY).
    Query {
        /// The connection.
        id: ConnectionId,
    },
    /// Post receives or sends on a connection (POST).
    Post {
        /// The connection.
        id: ConnectionId,
        /// `recv` or `send`.
        #[arg(value_enum)]
        what: PostWhat,
        /// How many.
        #[arg(default_value_t = 1)]
        count: u32,
        /// Bytes each.
        #[arg(long, default_value_t = 4096)]
        len: u32,
    },
    /// Disconnect gracefully (NdkDisconnect) or abortively (DISCONNECT).
    Disconnect {
        /// The connection.
        id: ConnectionId,
        /// Close at once (a reset) instead of NdkDisconnect.
        #[arg(long)]
        abortive: bool,
    },
    /// Cancel the connection's pended waits and end it (ABORT).
    Abort {
        /// The connection.
        id: ConnectionId,
    },
    /// NdkFlush the connection's queue pair: posted requests complete with STATUS_CANCELLED (FLUSH).
    Flush {
        /// The connection.
        id: ConnectionId,
    },
    /// Release a connection's or a listener's NDK objects (CLOSE).
    Close {
        /// The connection or listener.
        id: u64,
    },
    /// Stream events until interrupted (Ctrl-C), as a table or --json lines.
    Watch {
        /// One connection (default: any).
        id: Option<ConnectionId>,
        /// Stop after this many events (of those shown).
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this long, e.g. 10s.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        #[command(flatten)]
        filter: EventFilter,
    },
    /// The main job on the simulator: the shipped scenarios peer-disconnect.ndk and
    /// sends-at-peer-disconnect.ndk (built in) show that a peer disconnect leaves posted receives
    /// outstanding until an explicit flush. Exits 1 if any step deviates.
    Demo,
    /// Print a shell completion script for SHELL (bash, zsh, fish, powershell, elvish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `ndkctl man | man -l -`).
    Man,
    /// Run a scenario file on the chosen backend (see the README for the format).
    Scenario {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Set a variable: NAME=VALUE (overrides the file's `set` defaults).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
}
