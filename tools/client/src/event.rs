//! Typed events and connection facts, decoded from the ABI records.

use core::net::SocketAddr;

use ndkdisc_abi::{
    Cause, ConnState, EVENT_ALREADY_DELIVERED, EVENT_CALLBACK_FIRED, EVENT_PROVIDER_FLUSHES,
    EVENT_REASON_VALID, EventKind, QUERY_ABORTED, QUERY_CALLBACK_FIRED, QUERY_CQ_FAILED,
    QUERY_FLUSHED, QUERY_LOCAL_DISCONNECT, QUERY_PROVIDER_FLUSHED, QUERY_REASON_VALID, QueryReply,
};

use crate::NtStatus;

/// One event of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Sequence number (strictly increasing per handle).
    pub seq: u64,
    /// The connection.
    pub connection_id: u64,
    /// When the driver latched it (100 ns units of the driver's clock).
    pub timestamp: u64,
    /// What happened.
    pub kind: EventKind,
    /// How the connection ended (`Disconnected` only; else [`Cause::None`]).
    pub cause: Cause,
    /// The status of the fact (connect failure, disconnect completion, ...).
    pub status: NtStatus,
    /// Whether the NDK disconnect callback had fired when the event was latched.
    pub callback_fired: bool,
    /// The provider's disconnect reason (NDKPI 2.1 `Ex` callback), when it gave one.
    pub provider_reason: Option<u32>,
    /// Receives still posted when the event was latched.
    pub outstanding_receives: u32,
    /// Sends still posted.
    pub outstanding_sends: u32,
    /// The provider put the QP (or CQ) in the error state: it flushes what is still posted
    /// (or, with a dead CQ, it never completes). ndkdisc never flushes on its own.
    pub provider_flushes: bool,
    /// A copy of the connection's terminal record that was already delivered (flag
    /// `EVENT_ALREADY_DELIVERED`): a WAIT on one connection whose `Disconnected` or
    /// `ConnectFailed` was delivered, with nothing else queued, returns it at once instead of
    /// pending (level-triggered). It is not a new event; [`crate::Client::wait_new`] skips it.
    pub already_delivered: bool,
}

impl From<ndkdisc_abi::Event> for Event {
    fn from(e: ndkdisc_abi::Event) -> Self {
        Self {
            seq: e.seq,
            connection_id: e.connection_id,
            timestamp: e.timestamp,
            kind: e.kind,
            cause: e.cause,
            status: NtStatus(e.status),
            callback_fired: e.flags & EVENT_CALLBACK_FIRED != 0,
            provider_reason: (e.flags & EVENT_REASON_VALID != 0).then_some(e.provider_reason),
            outstanding_receives: e.outstanding_receives,
            outstanding_sends: e.outstanding_sends,
            provider_flushes: e.flags & EVENT_PROVIDER_FLUSHES != 0,
            already_delivered: e.flags & EVENT_ALREADY_DELIVERED != 0,
        }
    }
}

/// What QUERY reports about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one QUERY flag of the ABI"
)]
pub struct ConnectionInfo {
    /// The connection.
    pub connection_id: u64,
    /// Its state.
    pub state: ConnState,
    /// The NDK disconnect callback has fired.
    pub callback_fired: bool,
    /// The provider's reason, when the 2.1 callback gave one.
    pub provider_reason: Option<u32>,
    /// We called `NdkDisconnect`.
    pub local_disconnect: bool,
    /// ABORT or an abortive DISCONNECT happened.
    pub aborted: bool,
    /// A FLUSH was requested.
    pub flushed: bool,
    /// Receives posted and not completed.
    pub outstanding_receives: u32,
    /// Sends posted and not completed.
    pub outstanding_sends: u32,
    /// Receive completions with `STATUS_SUCCESS`.
    pub receives_succeeded: u32,
    /// Receive completions with `STATUS_CANCELLED` (flushed).
    pub receives_cancelled: u32,
    /// Send completions with `STATUS_SUCCESS`.
    pub sends_succeeded: u32,
    /// Send completions with `STATUS_CANCELLED` (flushed).
    pub sends_cancelled: u32,
    /// Receive completions with any other status.
    pub receives_failed: u32,
    /// Send completions with any other status.
    pub sends_failed: u32,
    /// The last failed completion's status (success while none).
    pub last_error_status: NtStatus,
    /// The last failed completion's provider error code (NDKPI 2.1; provider-specific; 0 when
    /// not provided).
    pub last_provider_error: u32,
    /// Requests completed as flushed that ndkdisc never asked to flush: the provider flushed.
    pub provider_flushed: bool,
    /// The CQ reported a fatal error or an overrun.
    pub cq_failed: bool,
    /// The adapter's NDKPI version (major, minor).
    pub ndk_version: (u16, u16),
    /// Status of the terminal event (success while none).
    pub terminal_status: NtStatus,
    /// Local address.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
}

impl From<QueryReply> for ConnectionInfo {
    fn from(q: QueryReply) -> Self {
        Self {
            connection_id: q.connection_id,
            state: q.state,
            callback_fired: q.flags & QUERY_CALLBACK_FIRED != 0,
            provider_reason: (q.flags & QUERY_REASON_VALID != 0).then_some(q.provider_reason),
            local_disconnect: q.flags & QUERY_LOCAL_DISCONNECT != 0,
            aborted: q.flags & QUERY_ABORTED != 0,
            flushed: q.flags & QUERY_FLUSHED != 0,
            outstanding_receives: q.outstanding_receives,
            outstanding_sends: q.outstanding_sends,
            receives_succeeded: q.receives_succeeded,
            receives_cancelled: q.receives_cancelled,
            sends_succeeded: q.sends_succeeded,
            sends_cancelled: q.sends_cancelled,
            receives_failed: q.receives_failed,
            sends_failed: q.sends_failed,
            last_error_status: NtStatus(q.last_error_status),
            last_provider_error: q.last_provider_error,
            provider_flushed: q.flags & QUERY_PROVIDER_FLUSHED != 0,
            cq_failed: q.flags & QUERY_CQ_FAILED != 0,
            ndk_version: (q.ndk_major, q.ndk_minor),
            terminal_status: NtStatus(q.terminal_status),
            local: q.local,
            remote: q.remote,
        }
    }
}
