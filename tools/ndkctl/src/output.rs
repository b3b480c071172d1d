//! How results look: a readable form, and `--json` (one JSON object per line).

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use ndkdisc_abi::{AdapterEntry, InfoReply, ObjectEntry, ObjectKind};
use std::time::SystemTime;

use ndkdisc_client::{Cause, ClockBase, ConnState, ConnectionInfo, Event, EventKind, NtStatus};
use serde_json::{Value, json};

use crate::error::CliError;

/// An event kind's name (a kind from a newer driver: `kind-N`).
pub fn kind_name(k: EventKind) -> Cow<'static, str> {
    Cow::Borrowed(match k {
        EventKind::Connected => "connected",
        EventKind::Accepted => "accepted",
        EventKind::ConnectFailed => "connect-failed",
        EventKind::Disconnected => "disconnected",
        EventKind::Flushed => "flushed",
        EventKind::Closed => "closed",
        EventKind::Unknown(v) => return Cow::Owned(format!("kind-{v}")),
    })
}

/// A cause's name (`none` for an event without one; a cause from a newer driver: `cause-N`).
pub fn cause_name(c: Option<Cause>) -> Cow<'static, str> {
    Cow::Borrowed(match c {
        None => "none",
        Some(Cause::Peer) => "peer",
        Some(Cause::Local) => "local",
        Some(Cause::LocalAbortive) => "local-abortive",
        Some(Cause::Aborted) => "aborted",
        Some(Cause::AdapterRemoved) => "adapter-removed",
        Some(Cause::HandleClosed) => "handle-closed",
        Some(Cause::TransportError) => "transport-error",
        Some(Cause::Unknown(v)) => return Cow::Owned(format!("cause-{v}")),
    })
}

/// A state's name (a state from a newer driver: `state-N`).
pub fn state_name(s: ConnState) -> Cow<'static, str> {
    Cow::Borrowed(match s {
        ConnState::Connecting => "connecting",
        ConnState::Connected => "connected",
        ConnState::Disconnecting => "disconnecting",
        ConnState::Disconnected => "disconnected",
        ConnState::Failed => "failed",
        ConnState::Closed => "closed",
        ConnState::Unknown(v) => return Cow::Owned(format!("state-{v}")),
    })
}

/// An NTSTATUS as JSON fields: hex code and name.
fn status_json(s: NtStatus) -> (String, Value) {
    (
        format!("{:#010X}", s.code()),
        s.name().map_or(Value::Null, |n| Value::String(n.into())),
    )
}

/// A provider reason, with softndk's name for it when it has one.
pub fn reason_text(r: Option<u32>) -> String {
    match r {
        None => "-".into(),
        // softndk's own reason codes have names; a real provider's are provider-specific
        // numbers, printed as such (a real provider's 1 is not "graceful").
        Some(r) => match sim_reason_name(r).filter(|_| SIMULATED.load(Ordering::Relaxed)) {
            Some(n) => format!("{r} ({n})"),
            None => format!("{r} (provider-specific)"),
        },
    }
}

/// softndk's name for reason `r`.
#[cfg(feature = "sim")]
fn sim_reason_name(r: u32) -> Option<&'static str> {
    ndkdisc_client::sim::reason_name(r)
}

/// Without the simulator no reason has a name.
#[cfg(not(feature = "sim"))]
fn sim_reason_name(_: u32) -> Option<&'static str> {
    None
}

/// Set when this process talks to the simulator (softndk), whose reason codes have names.
static SIMULATED: AtomicBool = AtomicBool::new(false);

/// Say whether the backend is the simulator (see [`reason_text`]).
#[cfg(feature = "sim")]
pub fn set_simulated(simulated: bool) {
    SIMULATED.store(simulated, Ordering::Relaxed);
}

/// `t` in UTC as RFC 3339 with microseconds (`2026-12-02T08:07:25.123456Z`); times before
/// 1970 show as 1970.
pub fn utc_text(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The time of day of `t` in UTC, to the microsecond (`08:07:25.123456`), for text lines.
pub fn time_of_day(t: SystemTime) -> String {
    let full = utc_text(t);
    full.get(11..26).unwrap_or(&full).to_owned()
}

/// Add the event's wall-clock time (`"time"`, UTC, RFC 3339) to its JSON, when the handle's
/// clock base is known.
pub fn add_time(v: &mut Value, e: &Event, clock: Option<&ClockBase>) {
    if let Some(c) = clock {
        v["time"] = json!(utc_text(c.wall_time(e.timestamp)));
    }
}

// One set of names. An event and a QUERY answer are shown through the records below: their
// field names are the JSON keys, the `key=value` names of the text lines, and the expectation
// keys of scenario files (which are checked against the JSON form of these records, so a name
// cannot differ between the three).

/// An NTSTATUS as JSON: hex code (the name is a sibling field `<key>_name`).
fn hex(s: NtStatus) -> String {
    format!("{:#010X}", s.code())
}

/// An event as ndkctl shows it.
#[derive(Debug, serde::Serialize)]
pub struct EventRecord {
    /// `"event"`.
    #[serde(rename = "type")]
    pub record: &'static str,
    /// Sequence number, per handle.
    pub seq: u64,
    /// The connection.
    pub conn: u64,
    /// What happened: connected, accepted, connect-failed, disconnected, flushed, closed.
    pub kind: String,
    /// How the connection ended (`none` for other events).
    pub cause: String,
    /// The status of the fact, in hex.
    pub status: String,
    /// Its symbolic name.
    pub status_name: Option<&'static str>,
    /// Whether the NDK disconnect callback had fired.
    pub callback: bool,
    /// The provider's reason (provider-specific), if it gave one.
    pub reason: Option<u32>,
    /// Receives still posted.
    pub recv: u32,
    /// Sends still posted.
    pub send: u32,
    /// The provider flushes what is still posted (its QP or CQ is in the error state).
    pub provider_flushes: bool,
    /// A copy of a terminal event delivered before.
    pub already_delivered: bool,
    /// The driver's clock when the event was latched (100 ns units).
    pub timestamp: u64,
}

impl From<&Event> for EventRecord {
    fn from(e: &Event) -> Self {
        Self {
            record: "event",
            seq: e.seq,
            conn: e.connection_id,
            kind: kind_name(e.kind).into_owned(),
            cause: cause_name(e.cause).into_owned(),
            status: hex(e.status),
            status_name: e.status.name(),
            callback: e.callback_fired,
            reason: e.provider_reason,
            recv: e.outstanding_receives,
            send: e.outstanding_sends,
            provider_flushes: e.provider_flushes,
            already_delivered: e.already_delivered,
            timestamp: e.timestamp,
        }
    }
}

/// A record as a JSON object (the records here always serialize).
fn to_json(record: &impl serde::Serialize) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// One event as a JSON object.
pub fn event_json(e: &Event) -> Value {
    to_json(&EventRecord::from(e))
}

/// The header of the event table.
pub const EVENT_HEADER: &str = "  SEQ      CONN  KIND            CAUSE           STATUS                     CALLBACK  REASON          RECV  SEND  TIME (UTC)";

/// One event as a table row, with its time of day when the handle's clock base is known.
pub fn event_row_at(e: &Event, clock: Option<&ClockBase>) -> String {
    match clock {
        Some(c) => format!(
            "{}  {}",
            event_row(e),
            time_of_day(c.wall_time(e.timestamp))
        ),
        None => event_row(e),
    }
}

/// One event as JSON, with its wall-clock time when the handle's clock base is known.
pub fn event_json_at(e: &Event, clock: Option<&ClockBase>) -> Value {
    let mut v = event_json(e);
    add_time(&mut v, e, clock);
    v
}

/// One event as a table row.
pub fn event_row(e: &Event) -> String {
    format!(
        "{:>5} {:>9}  {:<15} {:<15} {:<26} {:<9} {:<15} {:>4} {:>5}",
        e.seq,
        e.connection_id,
        kind_name(e.kind),
        if e.cause.is_none() {
            "-".into()
        } else {
            cause_name(e.cause)
        },
        e.status
            .name()
            .map_or_else(|| format!("{:#010X}", e.status.code()), str::to_owned),
        if e.callback_fired { "fired" } else { "-" },
        reason_text(e.provider_reason),
        e.outstanding_receives,
        e.outstanding_sends,
    )
}

/// One event in a sentence (demo and scenario logs).
pub fn event_line(e: &Event) -> String {
    let cause = if e.cause.is_none() {
        String::new()
    } else {
        format!(" cause={}", cause_name(e.cause))
    };
    format!(
        "#{} conn {} {}{cause} status={} callback={} reason={} recv={} send={}{}",
        e.seq,
        e.connection_id,
        kind_name(e.kind),
        e.status.name().unwrap_or("?"),
        if e.callback_fired { "fired" } else { "no" },
        reason_text(e.provider_reason),
        e.outstanding_receives,
        e.outstanding_sends,
        if e.already_delivered {
            " (already delivered)"
        } else {
            ""
        }
    )
}

/// A `LIST_OBJECTS` entry as JSON (the names of QUERY's record where they say the same).
pub fn object_json(o: &ObjectEntry) -> Value {
    json!({
        "type": "object",
        "id": o.id,
        "kind": object_kind_name(o.kind),
        "state": o.state.map(state_name),
        "recv": o.outstanding_receives,
        "send": o.outstanding_sends,
        "local": o.local.map(|a| a.to_string()),
        "remote": o.remote.map(|a| a.to_string()),
    })
}

/// An object kind's name (a kind from a newer driver: `kind-N`).
pub fn object_kind_name(k: ObjectKind) -> Cow<'static, str> {
    match k {
        ObjectKind::Connection => Cow::Borrowed("connection"),
        ObjectKind::Listener => Cow::Borrowed("listener"),
        ObjectKind::Unknown(v) => Cow::Owned(format!("kind-{v}")),
    }
}

/// The header of the object table.
pub const OBJECT_HEADER: &str =
    "                  ID  KIND        STATE          RECV  SEND  LOCAL                  REMOTE";

/// A `LIST_OBJECTS` entry as a table row.
pub fn object_row(o: &ObjectEntry) -> String {
    let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".into(), |a| a.to_string());
    format!(
        "{:>20}  {:<10}  {:<13} {:>5} {:>5}  {:<21}  {}",
        o.id,
        object_kind_name(o.kind),
        o.state.map_or(Cow::Borrowed("-"), state_name),
        o.outstanding_receives,
        o.outstanding_sends,
        show(o.local),
        show(o.remote),
    )
}

/// QUERY's answer as ndkctl shows it.
#[derive(Debug, serde::Serialize)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one QUERY flag, shown as such"
)]
pub struct QueryRecord {
    /// `"connection"`.
    #[serde(rename = "type")]
    pub record: &'static str,
    /// The connection.
    pub conn: u64,
    /// connecting, connected, disconnecting, disconnected, failed, closed.
    pub state: String,
    /// Whether the NDK disconnect callback fired.
    pub callback: bool,
    /// The provider's reason, if it gave one.
    pub reason: Option<u32>,
    /// Receives still posted.
    pub recv: u32,
    /// Sends still posted.
    pub send: u32,
    /// Receives completed with success.
    pub recv_ok: u32,
    /// Receives completed cancelled (flushed).
    pub recv_cancelled: u32,
    /// Receives completed with another error.
    pub recv_failed: u32,
    /// Sends completed with success.
    pub send_ok: u32,
    /// Sends completed cancelled.
    pub send_cancelled: u32,
    /// Sends completed with another error.
    pub send_failed: u32,
    /// The status of the last failed completion, in hex (success: none failed).
    pub last_error: String,
    /// Its name.
    pub last_error_name: Option<&'static str>,
    /// The provider's own code for that failure.
    pub provider_code: u32,
    /// This side asked for the disconnect.
    pub local_disconnect: bool,
    /// ABORT ended it.
    pub aborted: bool,
    /// FLUSH was asked.
    pub flushed: bool,
    /// The provider flushed on its own (its QP went to the error state).
    pub provider_flushed: bool,
    /// The completion queue failed.
    pub cq_failed: bool,
    /// The NDKPI version of the adapter, `major.minor`.
    pub ndk: String,
    /// The status the connection ended with, in hex.
    pub terminal_status: String,
    /// Its name.
    pub terminal_status_name: Option<&'static str>,
    /// The local address.
    pub local: Option<String>,
    /// The peer's address.
    pub remote: Option<String>,
    /// Bytes the provider reported received (successful receives).
    pub recv_bytes: u64,
    /// Bytes of the sends posted.
    pub send_bytes_posted: u64,
}

impl From<&ConnectionInfo> for QueryRecord {
    fn from(q: &ConnectionInfo) -> Self {
        Self {
            record: "connection",
            conn: q.connection_id,
            state: state_name(q.state).into_owned(),
            callback: q.callback_fired,
            reason: q.provider_reason,
            recv: q.outstanding_receives,
            send: q.outstanding_sends,
            recv_ok: q.receives_succeeded,
            recv_cancelled: q.receives_cancelled,
            recv_failed: q.receives_failed,
            send_ok: q.sends_succeeded,
            send_cancelled: q.sends_cancelled,
            send_failed: q.sends_failed,
            last_error: hex(q.last_error_status),
            last_error_name: q.last_error_status.name(),
            provider_code: q.last_provider_error,
            local_disconnect: q.local_disconnect,
            aborted: q.aborted,
            flushed: q.flushed,
            provider_flushed: q.provider_flushed,
            cq_failed: q.cq_failed,
            ndk: format!("{}.{}", q.ndk_version.0, q.ndk_version.1),
            terminal_status: hex(q.terminal_status),
            terminal_status_name: q.terminal_status.name(),
            local: q.local.map(|a| a.to_string()),
            remote: q.remote.map(|a| a.to_string()),
            recv_bytes: q.received_bytes,
            send_bytes_posted: q.send_bytes_posted,
        }
    }
}

/// QUERY's answer as JSON.
pub fn query_json(q: &ConnectionInfo) -> Value {
    to_json(&QueryRecord::from(q))
}

/// QUERY's answer in a line of `key=value` (the record's names).
pub fn query_line(q: &ConnectionInfo) -> String {
    let r = QueryRecord::from(q);
    let last_error = if q.last_error_status.is_success() {
        String::new()
    } else {
        format!(
            " last_error={} provider_code={}",
            r.last_error_name.unwrap_or(&r.last_error),
            r.provider_code
        )
    };
    format!(
        "conn {} state={} callback={} reason={} recv={} send={} recv_ok={} recv_cancelled={} recv_failed={} send_ok={} send_cancelled={} send_failed={}{last_error} local_disconnect={} aborted={} flushed={} provider_flushed={}{} ndk={} local={} remote={} recv_bytes={} send_bytes_posted={}",
        r.conn,
        r.state,
        if r.callback { "fired" } else { "no" },
        reason_text(r.reason),
        r.recv,
        r.send,
        r.recv_ok,
        r.recv_cancelled,
        r.recv_failed,
        r.send_ok,
        r.send_cancelled,
        r.send_failed,
        yes(r.local_disconnect),
        yes(r.aborted),
        yes(r.flushed),
        yes(r.provider_flushed),
        if r.cq_failed { " cq_failed=yes" } else { "" },
        r.ndk,
        r.local.as_deref().unwrap_or("-"),
        r.remote.as_deref().unwrap_or("-"),
        r.recv_bytes,
        r.send_bytes_posted,
    )
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `GET_INFO` as JSON.
pub fn info_json(i: &InfoReply) -> Value {
    json!({
        "type": "info",
        "abi_version": i.abi_version,
        "driver_version": format!("{}.{}", i.driver_version >> 16, i.driver_version & 0xffff),
        "max_connections": i.max_connections,
        "max_listeners": i.max_listeners,
        "max_waits": i.max_waits,
        "default_backlog": i.default_backlog,
        "events_per_connection": i.events_per_connection,
        "ndk_available": i.ndk_status == NtStatus::SUCCESS,
        "ndk_status": status_json(i.ndk_status).0,
        "ndk_status_name": status_json(i.ndk_status).1,
        "etw_provider": ndkdisc_abi::device::ETW_PROVIDER_NAME,
        "etw_provider_guid": ndkdisc_abi::device::ETW_PROVIDER_GUID_TEXT,
        "connections_opened": i.connections_opened,
        "events_latched": i.events_latched,
        "disconnect_callbacks": i.disconnect_callbacks,
        "backlog_rejects": i.backlog_rejects,
        "duplicate_callbacks": i.duplicate_callbacks,
        "clock": i.clock,
    })
}

/// Whether the driver has NDK, for `info`'s text: it loads without it (and then says why).
pub fn ndk_text(status: NtStatus) -> String {
    if status == NtStatus::SUCCESS {
        "NDK available".into()
    } else {
        format!(
            "NDK UNAVAILABLE: {status}; the driver loaded without the WSK NDK extension, so every \
             CONNECT and LISTEN fails with STATUS_NOT_SUPPORTED (does this system have an \
             NDK-capable adapter and driver?)"
        )
    }
}

/// An adapter as JSON.
pub fn adapter_json(a: &AdapterEntry) -> Value {
    json!({
        "type": "adapter",
        "if_index": a.if_index,
        "ndk_version": format!("{}.{}", a.ndk_major, a.ndk_minor),
        "address": a.address.ip().to_string(),
    })
}

/// The version of the JSON lines' format, in every line as `"schema"`: raised when a field
/// changes meaning or goes away (adding a field does not raise it). 2 (2026-12-02): events and
/// QUERY answers use the names of the text output and the scenario language ([`EventRecord`],
/// [`QueryRecord`]: `conn`, `callback`, `reason`, `recv`, `send`, `recv_ok`, ...).
pub const JSON_SCHEMA: u32 = 2;

/// `value` with the schema version, if it is an object (every line is).
pub fn with_schema(value: &Value) -> Value {
    let mut v = value.clone();
    if let Value::Object(map) = &mut v {
        map.insert("schema".into(), JSON_SCHEMA.into());
    }
    v
}

/// Where results go, in the chosen format.
pub struct Out {
    json: bool,
    /// While set, results are collected here instead of printed (a session's reply gathers
    /// what one command produced).
    capture: std::sync::Mutex<Option<Vec<Value>>>,
}

impl Out {
    /// Results in JSON lines (`json`) or readable text.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            capture: std::sync::Mutex::new(None),
        }
    }

    /// Whether the output is JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn captured(&self) -> std::sync::MutexGuard<'_, Option<Vec<Value>>> {
        self.capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Collect results (their JSON form) from now on instead of printing them.
    pub fn start_capture(&self) {
        *self.captured() = Some(Vec::new());
    }

    /// Stop collecting; what was collected since [`Out::start_capture`].
    pub fn take_capture(&self) -> Vec<Value> {
        self.captured().take().unwrap_or_default()
    }

    /// Print `text` (readable mode) or `value` (JSON mode, with the [`JSON_SCHEMA`] version).
    pub fn emit(&self, text: &str, value: &Value) -> Result<(), CliError> {
        if let Some(c) = self.captured().as_mut() {
            c.push(value.clone());
            return Ok(());
        }
        self.line(&if self.json {
            with_schema(value).to_string()
        } else {
            text.to_owned()
        })
    }

    /// Print one line as it is, flushed (a session's reply).
    #[expect(
        clippy::unused_self,
        reason = "a method, so that every line of a run goes through its Out"
    )]
    pub fn line(&self, line: &str) -> Result<(), CliError> {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{line}")?;
        o.flush()?;
        Ok(())
    }

    /// Print a readable line only (progress, headers); nothing in JSON mode or while capturing.
    pub fn note(&self, text: &str) -> Result<(), CliError> {
        if !self.json && self.captured().is_none() {
            self.line(text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_times_are_utc_rfc_3339() {
        let at = |secs: u64, micros: u64| {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_micros(micros)
        };
        assert_eq!(
            utc_text(at(1_796_198_845, 123_456)),
            "2026-12-02T08:07:25.123456Z"
        );
        assert_eq!(utc_text(at(951_868_799, 0)), "2000-02-29T23:59:59.000000Z");
        assert_eq!(utc_text(at(0, 1)), "1970-01-01T00:00:00.000001Z");
        assert_eq!(time_of_day(at(1_796_198_845, 7)), "08:07:25.000007");
        // A driver timestamp 1.5 s (15,000,000 ticks of 100 ns) before the base's reading.
        let base = ClockBase::new(20_000_000, at(1_796_198_845, 0));
        let e = Event::new(EventKind::Connected, 1, 5_000_000);
        let mut v = event_json(&e);
        add_time(&mut v, &e, Some(&base));
        assert_eq!(v["time"], "2026-12-02T08:07:23.500000Z");
        let mut v = event_json(&e);
        add_time(&mut v, &e, None);
        assert!(v.get("time").is_none());
    }

    #[test]
    fn info_says_when_the_driver_has_no_ndk_and_why() {
        let info = InfoReply {
            ndk_status: NtStatus::NOT_SUPPORTED,
            ..InfoReply::default()
        };
        let v = info_json(&info);
        assert_eq!(v["ndk_available"], false);
        assert_eq!(v["ndk_status"], "0xC00000BB");
        assert_eq!(v["ndk_status_name"], "STATUS_NOT_SUPPORTED");
        let text = ndk_text(info.ndk_status);
        assert!(
            text.starts_with("NDK UNAVAILABLE: STATUS_NOT_SUPPORTED (0xC00000BB)"),
            "{text}"
        );
        assert_eq!(ndk_text(NtStatus::SUCCESS), "NDK available");
    }
}
