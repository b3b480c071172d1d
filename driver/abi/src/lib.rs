//! # ndkdisc-abi — the IOCTL interface between `ndkctl` and `ndkdisc.sys`
//!
//! Control codes ([`Ioctl`]), versioned padding-free records, and validation that parses each
//! input once into a typed [`Request`]. Shared by the driver core (which decodes requests and
//! encodes replies and events) and the user-mode client (which does the reverse). `no_std`,
//! no `unsafe`; its one dependency is `ntstatus` ([`NtStatus`]).
//!
//! In the event path this is the last step out of the kernel: the core latches an [`Event`]
//! (this crate's typed value) when a connection's fact happens, encodes it into a pended WAIT's
//! output, and the client decodes the bytes back into the same [`Event`]. Every record has one
//! typed form, built by the driver and decoded by the client; nothing decodes the bytes a
//! second time.
//!
//! Replies are forward compatible: a kind, cause or state that a newer driver adds decodes to
//! `Unknown(n)` ([`EventKind::Unknown`], [`Cause::Unknown`], [`ConnState::Unknown`]) instead of
//! failing the whole reply. Requests are strict: the driver rejects any value it does not
//! define.
//!
//! Every control code is `CTL_CODE(0x8A4D, 0x800 + n, METHOD_BUFFERED, access)`: queries need
//! `FILE_READ_ACCESS`, anything that changes state `FILE_WRITE_ACCESS`. Every input record
//! starts with the 8-byte header (`version` 1, `size` = the record's size, reserved zero) and
//! must be exactly its size. Records are little-endian; layouts are in [`records`] and
//! [`replies`].
//!
//! ## Opening a handle
//!
//! `CreateFile` on the device admits only SYSTEM and Administrators (`STATUS_ACCESS_DENIED`
//! otherwise). The driver holds at most its configured number of handles open at once (1024 by
//! default); one more is refused with `STATUS_QUOTA_EXCEEDED` (Win32 `ERROR_NOT_ENOUGH_QUOTA`).
//! A handle keeps its place until it is closed and its last request has completed; a refused
//! open takes none. A handle opened without write access (no `FILE_WRITE_DATA`, e.g.
//! `GENERIC_READ` only) may use the query codes only, and its `GET_INFO` reports the driver-wide
//! counters as zero: they describe every handle's traffic.
//!
//! ## Statuses common to every IOCTL
//!
//! - `STATUS_INVALID_DEVICE_REQUEST`: not an ndkdisc control code.
//! - `STATUS_ACCESS_DENIED`: the handle lacks the access the code requires (checked by the I/O
//!   manager from the code's access bits).
//! - `STATUS_INVALID_PARAMETER`: input length not the record's size, header `size` wrong, a
//!   reserved field non-zero, an undefined flag, an enumerated value out of range, a malformed
//!   address, an id of 0 ([`AbiError`] says which).
//! - `STATUS_REVISION_MISMATCH`: header `version` is not [`ABI_VERSION`].
//! - `STATUS_BUFFER_TOO_SMALL`: the output buffer is smaller than the reply; checked before the
//!   request has any effect.
//! - `STATUS_NOT_FOUND`: the id does not name a live object of *this* handle (ids of other
//!   handles are indistinguishable from ids that never existed). Ids are 64-bit, never reused
//!   while the driver is loaded, and carry no kernel address: an engine-wide sequence number
//!   in the high 44 bits above, for a connection, its record index in its handle (for a
//!   listener, all 20 low bits set). Callers treat them as opaque.
//!
//! ## The operations
//!
//! | IOCTL | input → output | pends | effect, by state | its own statuses |
//! |---|---|---|---|---|
//! | `GET_INFO` | [`GetInfoRequest`] (8) → [`InfoReply`] (88) | no | versions, whether the driver has NDK (`ndk_status`), per-handle limits, driver counters (zero unless the handle was opened for writing) | — |
//! | `LIST_ADAPTERS` | [`ListAdaptersRequest`] (8) → batch of [`AdapterEntry`] (16 + 32 n) | no | one entry per NDK-capable interface address; `count` entries fit, `total` exist | — |
//! | LISTEN | [`ListenRequest`] (48) → [`ListenReply`] (40) | no | creates a listener; each incoming connection is accepted (disconnect callback registered) and reported as an `Accepted` event on a new connection id; requests beyond the preallocated backlog or the handle's connection quota are refused with `NdkReject` (then closed) and counted | `STATUS_NOT_FOUND` (no such interface), `STATUS_QUOTA_EXCEEDED` (listener quota, or backlog above the limit), NDK failures of `NdkListen` (e.g. `STATUS_SHARING_VIOLATION`, `STATUS_INVALID_ADDRESS`) |
//! | CONNECT | [`ConnectRequest`] (72) → [`ConnectReply`] (72) | yes | creates a connection and connects it; completes with `STATUS_SUCCESS` and the reply once connected *or failed* (`reply.status`), queuing `Connected` or `ConnectFailed` | `STATUS_NOT_FOUND` (interface), `STATUS_QUOTA_EXCEEDED`, `STATUS_INSUFFICIENT_RESOURCES`, `STATUS_CANCELLED` (`CancelIoEx`: no reply; the attempt is abandoned and the connection released — its events are `ConnectFailed` with `STATUS_CANCELLED` then `Closed`, or, if it was established just before the cancel won, `Connected`, `Disconnected`/`LocalAbortive`, `Closed`); a peer disconnect before establishment fails the attempt with `STATUS_CONNECTION_DISCONNECTED` |
//! | WAIT | [`WaitRequest`] (24) → batch of [`Event`] (16 + 48 n) | yes | returns up to as many queued events as fit (of one connection, or of any), in latch order; pends if none (unless non-blocking: then `count` 0); level-triggered per connection: a WAIT on a connection whose terminal event was already delivered and that has nothing else queued completes at once with a copy of that record flagged [`EVENT_ALREADY_DELIVERED`]; a connection's id stays valid until its `Closed` event has been delivered, then `STATUS_NOT_FOUND` | `STATUS_BUFFER_TOO_SMALL` (room for fewer than one event), `STATUS_QUOTA_EXCEEDED` (pended-wait quota), `STATUS_CANCELLED` (`CancelIoEx`, handle close — also a WAIT that arrives after the handle's cleanup began, which never pends — ABORT of that connection); an event racing a cancel stays queued |
//! | QUERY | [`QueryRequest`] (16) → [`QueryReply`] (136) | no | state, outstanding work, completions by status (succeeded, cancelled, failed — with the last failure's status and NDKPI 2.1 provider code), bytes received (the provider's count over successful receives) and bytes of the sends posted, whether the NDK callback fired, provider reason (once ABORT, an abortive DISCONNECT or an adapter removal has released the NDK objects, nothing is outstanding: what the QP's close flushed counts as cancelled, what the provider can no longer report — a dead CQ, a removed adapter — as failed with the CQ's status or `STATUS_DEVICE_REMOVED`), who flushed (`QUERY_FLUSHED`: FLUSH asked; `QUERY_PROVIDER_FLUSHED`: the provider flushed on its own), a dead CQ, addresses | — |
//! | POST | [`PostRequest`] (32) → nothing | no | posts `count` receives (any state but Closed; they stay posted across a peer disconnect) or sends (Connected only) | `STATUS_INVALID_DEVICE_STATE` (sends when not connected; anything after CLOSE), `STATUS_QUOTA_EXCEEDED` (queue depth), `STATUS_INSUFFICIENT_RESOURCES` |
//! | DISCONNECT | [`DisconnectRequest`] (24) → nothing | graceful: yes | graceful on an established connection: `NdkDisconnect` (Connected → Disconnecting → `Disconnected`/`Local`); the request pends until the provider completes it — when the peer answered (its own disconnect or close) — and completes with that outcome, which the `Local` event carries too (`STATUS_IO_TIMEOUT` when the peer never answered, `STATUS_CONNECTION_ABORTED`, ...). Graceful after a peer disconnect (the callback fired): `NdkDisconnect` answers the peer's disconnect (no new event; QUERY says local disconnect, and its terminal status stays the peer event's) and the request completes with `STATUS_SUCCESS` once it has, whatever `NdkDisconnect` says of the connection already gone (after a reset, `STATUS_CONNECTION_ABORTED`). Abortive: the connection is closed now (`Disconnected`/`LocalAbortive`, from any state but Closed; a pending CONNECT or DISCONNECT completes with `STATUS_CANCELLED`). While disconnecting or after the end: success at once, no effect | `STATUS_INVALID_DEVICE_STATE` (graceful while connecting or after a failed connect), `STATUS_CANCELLED` (`CancelIoEx` of a pended graceful DISCONNECT: `NdkDisconnect` goes on and its outcome reaches the `Local` event) |
//! | ABORT | [`AbortRequest`] (16) → nothing | no | completes every pended WAIT on the connection with `STATUS_CANCELLED`, marks it aborted, latches `Disconnected`/`Aborted` unless a terminal event exists, tears the connection down; cannot fail for lack of resources; idempotent | — |
//! | FLUSH | [`FlushRequest`] (16) → nothing | no | `NdkFlush` on the connection's QP (the only flush ndkdisc ever makes); `Flushed` is queued when every request posted before it has completed — at once when nothing more can complete (a dead CQ, or the objects released by ABORT, an abortive DISCONNECT, a failed connect or an adapter removal) | `STATUS_INVALID_DEVICE_STATE` (the QP is being torn down) |
//! | CLOSE | [`CloseRequest`] (16) → nothing | no | connection: latches `Disconnected`/`LocalAbortive` if it has no terminal event, releases every NDK object, queues `Closed`; the id is then gone (`STATUS_NOT_FOUND`). Listener: stops accepting (requests still in its backlog are refused) and starts the NDK listener's close; returns at once — NDK completes that close only after every connection accepted through it is closed, and the listener's adapter is released by whichever of them goes last | — |
//! | `LIST_OBJECTS` | [`ListObjectsRequest`] (8) → batch of [`ObjectEntry`] (16 + 72 n) | no | the handle's connections (id, state, outstanding receives and sends, addresses; counters by QUERY) and listeners (id, bound address), connections first in record order; `count` entries fit, `total` exist; an object created or closed meanwhile may or may not be listed | — |
//!
//! Exactly one terminal event (`ConnectFailed` or `Disconnected`) is queued per connection;
//! facts learned later (say, a peer callback after our own disconnect, or a send failing after
//! the peer disconnect) are visible through QUERY, not as a second terminal event. When the
//! provider makes the connection unusable first (an error completion, a dead CQ), the terminal
//! event is `Disconnected`/`TransportError` with that status and `EVENT_PROVIDER_FLUSHES`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod device;
pub mod error;
pub mod ioctl;
pub mod records;
pub mod replies;
pub mod wire;

pub use device::{DEVICE_INTERFACE_GUID, DOS_DEVICE_PATH, Guid};
pub use error::AbiError;
pub use ioctl::Ioctl;
pub use ntstatus::NtStatus;
pub use records::*;
pub use replies::*;
