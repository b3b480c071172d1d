//! # softndk — a software NDK provider
//!
//! softndk implements the **provider** side of NDKPI (Network Direct Kernel Provider
//! Interface) in Rust, over an in-process fabric. A consumer gets an `*mut NDK_ADAPTER`
//! exactly as from `WskOpenNdkAdapter` (through [`Fabric::wsk_dispatch`], a real
//! `WSK_PROVIDER_NDK_DISPATCH`) and from then on calls only through the `ndkpi-sys` dispatch
//! tables, as a kernel consumer does on Windows. It exists so that NDK consumers — ndkdisc
//! first — can be tested without RDMA hardware and without Windows.
//!
//! ## Where it sits in the event path
//!
//! On Windows, ndkdisc's event path runs from the NDK provider (the RDMA adapter's driver) up:
//! the provider calls the callbacks `ndkpi` registered (connect completions, disconnect, CQ
//! notifications), the engine in `ndkdisc-core` turns them into facts about a connection and
//! latches events, and user mode takes them with a pended WAIT. softndk stands in for the
//! bottom of that path, the provider, everywhere the driver is not on Windows with an
//! adapter:
//!
//! - **`ndkpi`'s tests** drive the consumer-side wrappers against softndk's dispatch tables;
//! - **the host platform** of `ndkdisc-core` (its `host` feature) runs the real engine over a
//!   softndk fabric, which is what the engine's tests and the client's **simulation backend**
//!   use (one engine per simulated host, all hosts on one fabric);
//! - **the demo** (`ndkctl demo`) runs on that simulation backend.
//!
//! softndk itself depends only on `ndkpi-sys` (the NDKPI types and tables); nothing in it
//! knows about ndkdisc.
//!
//! ```no_run
//! use std::net::{IpAddr, Ipv4Addr};
//! use softndk::{Fabric, FabricConfig, HostConfig};
//! let fabric = Fabric::new(FabricConfig::default());
//! fabric.add_host(HostConfig::new(7, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]));
//! let adapter = fabric.open_adapter(7, ndkpi_sys::NDK_VERSION { Major: 2, Minor: 1 }).unwrap();
//! // ... use (*adapter).Dispatch as any NDK consumer would ...
//! fabric.close_adapter(adapter);
//! ```
//!
//! ## What it implements
//!
//! Adapter (query info, CQ, PD, connector, listener, `NdkBuildLAM`/`NdkReleaseLAM`), PD (MR,
//! QP, `NdkGetPrivilegedMemoryRegionToken`), CQ (arm, `NdkGetCqResults(Ex)`), QP (flush,
//! send, receive, read, write), connector (connect, complete-connect(Ex), accept(Ex), reject,
//! connection data, addresses, disconnect), listener (listen, local address, pause), MR
//! (register, deregister, tokens), on IPv4 and IPv6.
//!
//! Not emulated, returning `STATUS_NOT_SUPPORTED` (and documented as such by the adapter
//! info: `MaxSrqDepth` = 0, no resize or moderation flags): SRQs, memory windows and bind,
//! fast-register MRs and `NdkInvalidate`/`NdkSendAndInvalidate`, shared endpoints,
//! `NdkResizeCq`, `NdkControlCqInterruptModeration`, extension interfaces.
//!
//! ## No kinder than hardware
//!
//! By default softndk does what an RDMA adapter does, in every test, the demo and the
//! simulation backend ([`FabricConfig::default`]); each behaviour names the NDKPI page it
//! follows and has its conformance test:
//!
//! | behaviour | NDKPI page | test |
//! |---|---|---|
//! | Requests complete synchronously, on the calling thread before the call returns, or on one of several provider threads at once ([`Completion::Hardware`], as many threads as cores) | NDKPI object lifetime requirements ("Consumer-Provider Interaction") | `hardware::the_hardware_mode_runs_callbacks_concurrently`, `completion::*` |
//! | `NdkDisconnect` completes only when the peer answers (its own `NdkDisconnect` or its connector's close), with `STATUS_IO_TIMEOUT` when it never does ([`Timing::disconnect_timeout`]), `STATUS_CONNECTION_ABORTED` when the connection aborts; only then is the QP flushed | `NDK_FN_DISCONNECT`; `NetworkDirect` disconnect scheme | `hardware::ndk_disconnect_completes_only_when_the_peer_answers`, `closing_the_peer_connector_answers_a_disconnect`, `an_unanswered_disconnect_times_out` |
//! | The disconnect callback flushes nothing; a send the departed peer never takes fails after the retry timeout (`STATUS_IO_TIMEOUT`, provider code [`provider_error::RETRY_EXCEEDED`]), the QP enters the error state and the provider flushes every other request, receives included | `NDK_FN_DISCONNECT_EVENT_CALLBACK`; NDKPI completion handling requirements | `hardware::a_send_to_a_peer_that_went_away_fails_and_the_provider_flushes_the_qp` |
//! | iWARP adapters have no receiver-not-ready retry: a send that finds no receive posted makes the peer terminate the connection (both QPs flushed, both callbacks [`reason::TERMINATED`]) | iWARP RDMAP/DDP terminate | `hardware::on_iwarp_a_send_without_a_posted_receive_terminates_the_connection` |
//! | Any error completion puts the QP in the error state and flushes the rest; on error completions `Type` and `BytesTransferred` are undefined and `ProviderErrorCode` (2.1) is set | `NDK_RESULT_EX` | `data::*` (access violations, data overrun), `hardware::*` |
//! | `NdkFlush` only initiates: the flushed requests complete later, on a provider thread, and the QP carries no more data | `NDK_FN_FLUSH`; NDKPI completion handling requirements | `hardware::ndk_flush_only_initiates` |
//! | Event callbacks (disconnect, connect event, CQ notification) may come until the object's close completion, never after it | NDKPI object lifetime requirements | `close::no_callback_arrives_after_a_close_completion`, `disconnect::no_disconnect_callback_after_the_connector_close_completed` |
//! | Link loss ([`Fault::LinkLoss`]) is noticed only by an end whose send is not acknowledged (its callback: [`reason::LINK_DOWN`]); an idle end never learns of it | `NetworkDirect` disconnect scheme ("the provider detects that the connection was aborted") | `hardware::link_loss_is_noticed_only_by_an_end_that_sends` |
//! | A CQ overrun or fatal error ([`Fabric::inject_cq_error`]) notifies `STATUS_BUFFER_OVERFLOW` / `STATUS_INTERNAL_ERROR` once; the CQ and its QPs complete nothing more | `NDK_FN_CQ_NOTIFICATION_CALLBACK` | `hardware::a_dead_cq_reports_its_error_and_its_qps_are_dead`, `cq::*` |
//! | A connect nobody accepts, or an accept the active side never completes, fails with `STATUS_IO_TIMEOUT` ([`Timing::handshake_timeout`]) | `NDK_FN_CONNECT`, `NDK_FN_ACCEPT` | `hardware::a_connect_nobody_accepts_times_out` |
//! | NDKPI 1.1, 1.2, 2.0 and 2.1 providers (members of later versions are NULL below them; the plain disconnect callback and `NdkGetCqResults` below 2.1 / 1.2) | `NDK_VERSION`; `OPEN_NDK_ADAPTER_HANDLER` | `version::*` |
//!
//! Each kinder variant is an explicit switch of [`Kindness`] (or the fault
//! [`Fault::LinkLossNoticedAtOnce`]), off by default; a test that turns one on says why.
//!
//! The other rules it keeps, each with its conformance test in `tests/`:
//!
//! | rule | test |
//! |---|---|
//! | A request returns `STATUS_SUCCESS` (no callback) or `STATUS_PENDING` and then exactly one completion | `completion::*` |
//! | Creates return the object inline, or through the create completion; a failed create (fault injection: `STATUS_INSUFFICIENT_RESOURCES`) yields no object | `completion::create_*` |
//! | Listener connect events; connect / accept / reject / complete-connect (plain and Ex); `STATUS_CONNECTION_REFUSED` when nobody listens; `NdkGetConnectionData` size protocol | `handshake::*` |
//! | Disconnect callback at most once per connection, only for peer-initiated or abnormal termination, never for the local `NdkDisconnect` or close; the Ex form carries a provider reason at 2.1 | `disconnect::*` |
//! | No flush of outstanding work on a peer disconnect; implicit flush after `NdkDisconnect`; flushed requests complete with `STATUS_CANCELLED` | `flush::*` |
//! | Sends and receives move real bytes between registered buffers (MR or LAM + privileged token); CQ arm / notify rules; `NdkGetCqResults(Ex)` | `data::*`, `cq::*` |
//! | Close ordering: an antecedent's close pends until its successors close; a closing listener refuses new connections | `close::*` |
//! | Fault injection: peer disconnect at any point (before connect completes, during accept), reset, link loss, adapter removal, duplicate callbacks, flush on peer disconnect, create failure | `faults::*` |
//! | Misuse detection: PASSIVE-only call in a callback, double close, use after close, concurrent posts to one queue, an NDK call while the consumer holds its spin lock ([`consumer_lock`]) | `misuse::*` |
//!
//! Choices where NDKPI is silent, made here and tested:
//! - Version negotiation: a provider whose highest version is M.m accepts a request for major M
//!   with minor <= m (and gets M.m), or major 1 when M = 2 (and gets 1.2); anything else fails with
//!   `STATUS_NDIS_BAD_VERSION`. See [`negotiate`].
//! - Peer went away during the handshake: the owed connect / accept completes (and a later
//!   complete-connect or accept returns) `STATUS_CONNECTION_ABORTED`.
//! - `NdkDisconnect` after the peer ended the connection completes at once with `STATUS_SUCCESS`
//!   if the peer disconnected gracefully (it is the answer the peer waits for) and
//!   `STATUS_CONNECTION_ABORTED` if it reset or the link was lost; a second `NdkDisconnect`
//!   while the first waits fails with `STATUS_INVALID_DEVICE_STATE`.
//! - Closing an established connector without disconnecting resets the connection: the peer's
//!   callback carries [`reason::RESET`]. Closing it does not flush its QP; closing the QP does.
//! - Receives may be pre-posted before connecting and after the peer disconnected; a receive
//!   posted on a torn-down or flushed QP completes at once with `STATUS_CANCELLED`; initiator
//!   posts on a QP that is not connected fail with `STATUS_CONNECTION_INVALID`.
//! - A send waits in the initiator queue while the peer is connected but has no receive posted
//!   (infinite RNR retry, as RoCE adapters are usually configured) — except on iWARP adapters
//!   (`RdmaTechnology` = `NdkiWarp`), which have no such retry: the peer terminates the
//!   connection, the send fails with `STATUS_CONNECTION_ABORTED` (provider code
//!   [`provider_error::RNR_TERMINATED`]), both QPs are flushed and both ends get the disconnect
//!   callback ([`reason::TERMINATED`]). A receive too small for the message completes with
//!   `STATUS_DATA_OVERRUN`.
//! - The status of a send killed by a broken connection is `STATUS_IO_TIMEOUT` with provider
//!   code [`provider_error::RETRY_EXCEEDED`] (NDKPI names none); flushed requests carry
//!   [`provider_error::FLUSHED`] at 2.1.
//! - Creates on a removed adapter, and `WskOpenNdkAdapter` on a removed host, return
//!   `STATUS_DEVICE_REMOVED`; an unknown interface index returns `STATUS_NOT_FOUND`.
//!
//! ## Test hooks
//!
//! [`Fabric::qp_stats`] (`NdkFlush` calls per QP, outstanding receives and sends),
//! [`Fabric::stats`] (disconnect callbacks fired, connect events, ...),
//! [`Fabric::live_objects`] (prove a consumer leaked nothing), [`Fabric::connector`],
//! [`Fabric::inject`], [`Fabric::inject_cq_error`], [`Fabric::connectors`], [`Fabric::cqs`],
//! [`Fabric::qps`], [`Fabric::deliver_one`], [`Fabric::remove_adapters`], [`Fabric::fail_creates`],
//! [`HostConfig::misbehaviour`], [`Fabric::violations`] and [`Fabric::hold_next_post`].
//!
//! Misuse is reported per [`MisusePolicy`]: by default a panic whose message names the rule
//! (inside an `extern "system"` entry point it cannot unwind, so the process aborts — the
//! emulator's bugcheck); with [`MisusePolicy::Record`] the call fails and the violation is
//! recorded. A pointer that belongs to no live fabric always panics.

mod abi;
pub mod alloc_check;
mod conn;
pub mod consumer_lock;
mod fabric;
mod mem;
mod misuse;
mod object;
mod qp;
mod rng;
mod thread_depth;
mod world;

pub use conn::{ConnectorState, Ending};
pub use fabric::{
    Completion, ConnectorInfo, CqError, Fabric, FabricConfig, Fault, HostConfig, HostId, Kindness,
    Misbehaviour, PostGate, Timing, default_info, default_threads, describe_stuck,
    in_provider_callback,
};
pub use mem::SoftMdl;
pub use misuse::{MisusePolicy, Queue, Violation};
pub use qp::{QpState, QpStats, provider_error};
pub use world::Counters;

use ndkpi_sys::{NDK_OBJECT_TYPE, NDK_VERSION};

/// The ten NDK object types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// `NDK_ADAPTER`.
    Adapter,
    /// `NDK_PD`.
    Pd,
    /// `NDK_CQ`.
    Cq,
    /// `NDK_QP`.
    Qp,
    /// `NDK_SRQ` (not emulated).
    Srq,
    /// `NDK_CONNECTOR`.
    Connector,
    /// `NDK_LISTENER`.
    Listener,
    /// `NDK_SHARED_ENDPOINT` (not emulated).
    SharedEndpoint,
    /// `NDK_MR`.
    Mr,
    /// `NDK_MW` (not emulated).
    Mw,
}

impl ObjectKind {
    /// The `NDK_OBJECT_TYPE` written in the object header.
    pub fn object_type(self) -> NDK_OBJECT_TYPE {
        use ndkpi_sys as s;
        match self {
            Self::Adapter => s::NdkObjectTypeAdapter,
            Self::Pd => s::NdkObjectTypePd,
            Self::Cq => s::NdkObjectTypeCq,
            Self::Qp => s::NdkObjectTypeQp,
            Self::Srq => s::NdkObjectTypeSrq,
            Self::Connector => s::NdkObjectTypeConnector,
            Self::Listener => s::NdkObjectTypeListener,
            Self::SharedEndpoint => s::NdkObjectTypeSharedEndpoint,
            Self::Mr => s::NdkObjectTypeMr,
            Self::Mw => s::NdkObjectTypeMw,
        }
    }

    fn close_name(self) -> &'static str {
        match self {
            Self::Adapter => "WskCloseNdkAdapter",
            Self::Pd => "NdkClosePd",
            Self::Cq => "NdkCloseCq",
            Self::Qp => "NdkCloseQp",
            Self::Srq => "NdkCloseSrq",
            Self::Connector => "NdkCloseConnector",
            Self::Listener => "NdkCloseListener",
            Self::SharedEndpoint => "NdkCloseSharedEndpoint",
            Self::Mr => "NdkCloseMr",
            Self::Mw => "NdkCloseMw",
        }
    }
}

/// Provider disconnect reasons softndk passes to `NDK_FN_DISCONNECT_EVENT_CALLBACK_EX`
/// (provider-specific values; 0 means "not provided").
pub mod reason {
    /// The peer disconnected gracefully.
    pub const GRACEFUL: u32 = 1;
    /// The peer reset the connection (or closed its connector while connected).
    pub const RESET: u32 = 2;
    /// The link was lost.
    pub const LINK_DOWN: u32 = 3;
    /// The local adapter was removed.
    pub const ADAPTER_REMOVED: u32 = 4;
    /// The provider gave up on a send nobody acknowledged (the peer's QP is dead).
    pub const RETRY_EXCEEDED: u32 = 5;
    /// iWARP: a send found no receive posted at the peer, which terminated the connection.
    pub const TERMINATED: u32 = 6;
}

/// NDKPI version negotiation as softndk does it (NDKPI documents only the same-major rule):
/// the provider supports 1.1 and 1.2, and 2.0 and 2.1, up to `provider_max`.
/// - same major, requested minor <= provider's: the provider's version;
/// - major 1 requested of a major-2 provider: 1.2 (minor must be <= 2);
/// - otherwise `None` (`STATUS_NDIS_BAD_VERSION`).
pub fn negotiate(requested: NDK_VERSION, provider_max: NDK_VERSION) -> Option<NDK_VERSION> {
    let v = |major, minor| NDK_VERSION {
        Major: major,
        Minor: minor,
    };
    if requested.Major == provider_max.Major && requested.Major >= 1 {
        (requested.Minor <= provider_max.Minor).then_some(provider_max)
    } else if requested.Major == 1 && provider_max.Major == 2 {
        (requested.Minor <= 2).then_some(v(1, 2))
    } else {
        None
    }
}
