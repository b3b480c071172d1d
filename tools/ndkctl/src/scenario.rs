//! Scenario files: scripted steps that run the same way on the simulator and on real hardware.
//!
//! One step per line; `#` starts a comment. A step is
//!
//! ```text
//! [HOST:] COMMAND [ARG ...] [KEY=VALUE ...] [-> VAR]
//! ```
//!
//! `$NAME` / `${NAME}` are replaced by variables: those set with `set NAME VALUE` (a default,
//! overridden by `ndkctl scenario --set NAME=VALUE`), ids bound with `-> NAME`, and
//! `${HOST.addr}` / `${HOST.if}` of each host. Commands:
//!
//! | step | what it does |
//! |---|---|
//! | `set NAME VALUE` | a default for `${NAME}` |
//! | `host NAME if=N addr=IP` | sim: add a simulated host with its own engine on the fabric; device: open a handle on this machine's driver (`if`/`addr` name the local adapter to use) |
//! | `H: info` / `H: adapters [count=N]` | `GET_INFO` / `LIST_ADAPTERS` |
//! | `H: list [count=N]` | `LIST_OBJECTS`: the handle's connections and listeners |
//! | `H: listen IP:PORT [if=N] [backlog=N] -> L` | LISTEN; binds the listener id |
//! | `H: connect IP:PORT [if=N] [local=IP:PORT] [timeout=D] -> C` | CONNECT; binds the connection id (also when it fails, with `fails=`) |
//! | `H: wait any\|ID [timeout=D] [EXPECT...] [async=W] -> V` | the next new event (of any connection, or of one) must match the expectations; binds its connection id. A copy of a terminal event already delivered (the driver returns it at once to a WAIT on that connection) is not a new event: it is skipped and the wait goes on. `async=W` starts the wait in the background; `join W [EXPECT...]` collects it |
//! | `H: query ID [within=D] [EXPECT...]` | QUERY, checked; with `within=D` asked again until the expectations hold or D has passed |
//! | `H: post ID recv\|send COUNT [len=N]` | POST |
//! | `H: disconnect ID [abortive] [async=W]`, `H: abort ID`, `H: flush ID`, `H: close ID` | the operations; a graceful disconnect completes only when the peer answers (its own disconnect or close) or the provider times out, so `async=W` runs it in the background and `join W [status=...]` collects its outcome |
//! | `H: watch [ID] [count=N] [for=D]` | print events as `ndkctl watch` does |
//! | `H: close-handle` | close the host's handle (its waits are cancelled, its objects torn down) |
//! | `H: inject ID link-loss\|peer-reset\|peer-disconnect\|cq-overrun\|cq-fatal` | sim only: break the connection (link loss is silent, as on hardware: only a send notices it; a peer reset or disconnect means the peer's host went away; a CQ error kills the connection's completion queue) |
//! | `H: remove-adapter` | sim only: the host's adapter goes away (its connections end with cause `adapter-removed`, their peers see a reset) |
//! | `provider [flush_calls=N] [disconnect_callbacks=N] [live_objects=N]` | sim only: the provider's counters (skipped on the device backend) |
//! | `sleep D`, `print TEXT` | pause, say something |
//! | `say TEXT` | narrate: a heading that tells what the next steps show (not echoed as a step) |
//!
//! Event expectations: `kind=` (connected, accepted, connect-failed, disconnected, flushed,
//! closed), `cause=` (peer, local, local-abortive, aborted, adapter-removed, handle-closed,
//! transport-error, none), `status=` (a name like `STATUS_CANCELLED` or hex), `callback=fired|no`,
//! `reason=N|none`, `recv=N`, `send=N`, `conn=ID`. Query expectations (every field of the QUERY
//! line, by the same name): `state=`, `callback=`,
//! `reason=`, `recv=`, `send=` (outstanding), `recv_ok=`, `recv_cancelled=`, `send_ok=`,
//! `send_cancelled=`, `recv_failed=`, `send_failed=` (completions by status), `last_error=`
//! (status of the last failed completion), `flushed=yes|no` (FLUSH asked),
//! `provider_flushed=yes|no` (the provider flushed on its own), `aborted=yes|no`. Any operation may say
//! `fails=KIND` (device-missing, access-denied, bad-address, unknown-id, timeout, cancelled,
//! driver) or `fails=STATUS_NAME`: it must fail that way. An expectation `KEY=any` checks
//! nothing (the default of a variable whose value is provider-specific, like a reason). A
//! mismatch is a deviation (exit 1); an unexpected failure exits with that failure's code.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use ndkdisc_abi::PostKind;
use ndkdisc_client::{
    Client, ConnectionId, ConnectionInfo, DisconnectMode, Error, Event, EventKind, NtStatus,
    Timeout, WaitOn, parse_socket_addr,
};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::output::{self, Out};
use crate::{Backend, parse_duration};

const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// One parsed line.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) line: usize,
    pub(crate) text: String,
    host: Option<String>,
    pub(crate) command: String,
    args: Vec<String>,
    opts: Vec<(String, String)>,
    pub(crate) bind: Option<String>,
}

const COMMANDS: &[(&str, bool)] = &[
    // (command, needs a host)
    ("set", false),
    ("host", false),
    ("provider", false),
    ("sleep", false),
    ("print", false),
    ("say", false),
    ("join", false),
    ("info", true),
    ("adapters", true),
    ("list", true),
    ("listen", true),
    ("connect", true),
    ("wait", true),
    ("query", true),
    ("post", true),
    ("disconnect", true),
    ("abort", true),
    ("flush", true),
    ("close", true),
    ("watch", true),
    ("close-handle", true),
    ("inject", true),
    ("remove-adapter", true),
];

pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Step>, CliError> {
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let bad = |msg: String| CliError::Script {
            file: file.to_owned(),
            line,
            msg,
        };
        let (host, rest) = match body.split_once(':') {
            Some((h, r))
                if !h.contains(char::is_whitespace)
                    && !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-') =>
            {
                (Some(h.to_owned()), r.trim())
            }
            _ => (None, body),
        };
        let (rest, bind) = match rest.split_once("->") {
            Some((r, v)) => {
                let v = v.trim();
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(bad(format!("`-> {v}`: one variable name expected")));
                }
                (r.trim(), Some(v.to_owned()))
            }
            None => (rest, None),
        };
        let mut words = rest.split_whitespace();
        let command = words.next().unwrap_or_default().to_owned();
        let Some(&(_, needs_host)) = COMMANDS.iter().find(|c| c.0 == command) else {
            return Err(bad(format!("unknown step `{command}`")));
        };
        if !needs_host && host.is_some() {
            return Err(bad(format!("`{command}` takes no host prefix")));
        }
        let mut args = Vec::new();
        let mut opts = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) if !matches!(command.as_str(), "print" | "say" | "set") => {
                    opts.push((k.to_owned(), v.to_owned()));
                }
                _ => args.push(w.to_owned()),
            }
        }
        steps.push(Step {
            line,
            text: body.to_owned(),
            host,
            command,
            args,
            opts,
            bind,
        });
    }
    Ok(steps)
}

/// A host of the running scenario.
struct Host {
    client: Arc<Client>,
    buffered: VecDeque<Event>,
    /// Dates the handle's events (JSON `time`).
    clock: Option<ndkdisc_client::ClockBase>,
}

impl Host {
    fn new(client: Client) -> Self {
        let clock = client.clock_base().ok();
        Self {
            client: Arc::new(client),
            buffered: VecDeque::new(),
            clock,
        }
    }
}

/// A WAIT running in the background: its host and its thread.
type Background = (String, JoinHandle<Result<Vec<Event>, Error>>);

/// A graceful DISCONNECT running in the background (it completes when the peer answers).
type BackgroundOp = JoinHandle<Result<(), Error>>;

pub(crate) struct Runner<'a> {
    backend: &'a Backend,
    /// The host of a step without `HOST:` when several are declared (a session's `a`).
    default_host: Option<String>,
    /// What the last step bound, for a session's reply.
    last_bound: Option<(String, String)>,
    out: &'a Out,
    interrupt: &'a Arc<AtomicBool>,
    vars: HashMap<String, String>,
    overrides: HashMap<String, String>,
    hosts: HashMap<String, Host>,
    order: Vec<String>,
    pending: HashMap<String, Background>,
    ops: HashMap<String, BackgroundOp>,
}

/// The value of option `key` of a step.
fn option<'a>(opts: &'a [(String, String)], key: &str) -> Option<&'a str> {
    opts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A declared host that the step runs on (`close-handle` removes it).
fn host_mut<'a>(
    hosts: &'a mut HashMap<String, Host>,
    name: &str,
) -> Result<&'a mut Host, CliError> {
    hosts.get_mut(name).ok_or_else(|| usage("host gone"))
}

fn deviation(msg: impl Into<String>) -> CliError {
    CliError::Deviation(msg.into())
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

impl<'a> Runner<'a> {
    fn substitute(&self, s: &str) -> Result<String, CliError> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, tail) = if let Some(inner) = after.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| usage(format!("unclosed `${{` in `{s}`")))?;
                (&inner[..end], &inner[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            let value = self
                .overrides
                .get(name)
                .or_else(|| self.vars.get(name))
                .ok_or_else(|| usage(format!("undefined variable `{name}`")))?;
            out.push_str(value);
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }

    fn host_name(&self, step: &Step) -> Result<String, CliError> {
        match &step.host {
            Some(h) if self.hosts.contains_key(h) => Ok(h.clone()),
            Some(h) => Err(usage(format!(
                "no host `{h}` (declare it with `host {h} ...`)"
            ))),
            None if self.order.len() == 1 => Ok(self.order[0].clone()),
            None if self
                .default_host
                .as_ref()
                .is_some_and(|h| self.hosts.contains_key(h)) =>
            {
                Ok(self.default_host.clone().unwrap_or_default())
            }
            None => Err(usage("which host? prefix the step with `HOST:`")),
        }
    }

    /// Argument `i`: a connection's id.
    fn id_arg(&self, step: &Step, i: usize) -> Result<ConnectionId, CliError> {
        self.raw_id_arg(step, i).map(ConnectionId::from_raw)
    }

    /// Argument `i`: an id, of a connection or a listener.
    fn raw_id_arg(&self, step: &Step, i: usize) -> Result<u64, CliError> {
        let raw = step
            .args
            .get(i)
            .ok_or_else(|| usage(format!("`{}` needs an id", step.command)))?;
        let v = self.substitute(raw)?;
        v.parse().map_err(|_| usage(format!("`{v}` is not an id")))
    }

    fn bind(&mut self, step: &Step, value: u64) {
        if let Some(v) = &step.bind {
            self.vars.insert(v.clone(), value.to_string());
            self.last_bound = Some((v.clone(), value.to_string()));
        }
    }

    /// What the last step bound (`-> VAR`), taken: `None` if it bound nothing.
    pub(crate) fn take_bound(&mut self) -> Option<(String, String)> {
        self.last_bound.take()
    }

    fn opts(&self, step: &Step) -> Result<Vec<(String, String)>, CliError> {
        step.opts
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.substitute(v)?)))
            .collect()
    }

    /// A runner with no hosts yet; `--set` style `overrides`.
    pub(crate) fn new(
        backend: &'a Backend,
        out: &'a Out,
        interrupt: &'a Arc<AtomicBool>,
        overrides: HashMap<String, String>,
    ) -> Self {
        Runner {
            backend,
            default_host: None,
            last_bound: None,
            out,
            interrupt,
            vars: HashMap::new(),
            overrides,
            hosts: HashMap::new(),
            order: Vec::new(),
            pending: HashMap::new(),
            ops: HashMap::new(),
        }
    }

    /// Steps without `HOST:` run on `host` when several hosts are declared.
    pub(crate) fn set_default_host(&mut self, host: &str) {
        self.default_host = Some(host.to_owned());
    }

    /// Open a handle for host `name` without declaring an adapter (a session's handle on the
    /// device, whose adapters `LIST_ADAPTERS` tells).
    pub(crate) fn adopt_host(&mut self, name: &str) -> Result<(), CliError> {
        let mut client = self.backend.open(name)?;
        client.set_interrupt(Arc::clone(self.interrupt));
        self.hosts.insert(name.to_owned(), Host::new(client));
        self.order.push(name.to_owned());
        Ok(())
    }

    /// Wait for what runs in the background, and close every handle.
    pub(crate) fn finish(&mut self) {
        for (_, (_, handle)) in self.pending.drain() {
            let _ = handle.join();
        }
        for (_, handle) in self.ops.drain() {
            let _ = handle.join();
        }
        for (_, host) in self.hosts.drain() {
            if let Ok(c) = Arc::try_unwrap(host.client) {
                c.close();
            }
        }
        self.order.clear();
    }

    pub(crate) fn run(&mut self, step: &Step) -> Result<(), CliError> {
        let opts = self.opts(step)?;
        let fails = option(&opts, "fails").map(str::to_owned);
        let result = self.run_inner(step, &opts);
        match (result, fails) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(f)) => Err(deviation(format!(
                "expected it to fail with {f}, it succeeded"
            ))),
            (Err(CliError::Client(e)), Some(f)) => {
                let c = CliError::Client(e);
                let matches = c.kind_name() == f
                    || c.status().and_then(NtStatus::name) == Some(f.as_str())
                    || c.status()
                        .is_some_and(|s| format!("{:#010X}", s.code()).eq_ignore_ascii_case(&f));
                if matches {
                    // Bind the failed connect's id too, so it can be closed.
                    if let CliError::Client(Error::ConnectFailed { connection_id, .. }) = &c {
                        self.bind(step, connection_id.raw());
                    }
                    self.out.emit(
                        &format!("    failed as expected: {c}"),
                        &json!({"type": "expected-failure", "line": step.line, "kind": c.kind_name(), "status_name": c.status().and_then(NtStatus::name)}),
                    )
                } else {
                    Err(deviation(format!("expected failure {f}, got: {c}")))
                }
            }
            (Err(e), _) => Err(e),
        }
    }

    #[expect(clippy::too_many_lines, reason = "one arm per step kind")]
    fn run_inner(&mut self, step: &Step, opts: &[(String, String)]) -> Result<(), CliError> {
        let opt = |k: &str| option(opts, k);
        let timeout = opt("timeout")
            .map(parse_duration)
            .transpose()?
            .unwrap_or(DEFAULT_WAIT);
        match step.command.as_str() {
            "set" => {
                let [name, value] = step.args.as_slice() else {
                    return Err(usage("`set NAME VALUE`"));
                };
                let value = self.substitute(value)?;
                self.vars.insert(name.clone(), value);
            }
            "print" | "say" => {
                let text = self.substitute(&step.args.join(" "))?;
                // A narration is a heading; a print, a line of the step's output.
                let shown = if step.command == "say" {
                    format!("\n== {text}")
                } else {
                    format!("    {text}")
                };
                self.out.emit(
                    &shown,
                    &json!({"type": step.command, "line": step.line, "text": text}),
                )?;
            }
            "sleep" => {
                let d = parse_duration(
                    &self.substitute(step.args.first().map_or("", String::as_str))?,
                )?;
                // In slices, so that Ctrl-C ends the scenario or session at once.
                let end = std::time::Instant::now() + d;
                while !self.interrupt.load(std::sync::atomic::Ordering::SeqCst) {
                    let left = end.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
            "host" => {
                let name = step
                    .args
                    .first()
                    .ok_or_else(|| usage("`host NAME if=N addr=IP`"))?;
                if self.hosts.contains_key(name) {
                    return Err(usage(format!("host `{name}` declared twice")));
                }
                let if_index: u32 = opt("if")
                    .ok_or_else(|| usage("`host` needs if=N"))?
                    .parse()
                    .map_err(|_| usage("if= must be a number"))?;
                let addr_text = opt("addr").ok_or_else(|| usage("`host` needs addr=IP"))?;
                let addr: IpAddr = addr_text.parse().map_err(|_| {
                    CliError::Client(Error::BadAddress {
                        text: addr_text.to_owned(),
                        why: "not an IP address".into(),
                    })
                })?;
                #[cfg(feature = "sim")]
                if let Backend::Sim { fabric, .. } = self.backend {
                    fabric.add_host(name, if_index, addr)?;
                }
                let mut client = self.backend.open(name)?;
                client.set_interrupt(Arc::clone(self.interrupt));
                self.vars.insert(format!("{name}.if"), if_index.to_string());
                self.vars.insert(format!("{name}.addr"), addr.to_string());
                self.hosts.insert(name.clone(), Host::new(client));
                self.order.push(name.clone());
            }
            "provider" => match self.backend {
                #[cfg(feature = "sim")]
                Backend::Sim { fabric, .. } => self.provider(fabric, step, opts)?,
                Backend::Device { .. } => {
                    return self.out.emit(
                        "    skipped: provider counters exist only on the simulator",
                        &json!({"type": "skipped", "line": step.line}),
                    );
                }
            },
            "join" if step.args.first().is_some_and(|w| self.ops.contains_key(w)) => {
                let name = step.args.first().ok_or_else(|| usage("`join W`"))?;
                let handle = self
                    .ops
                    .remove(name)
                    .ok_or_else(|| usage(format!("no background operation `{name}`")))?;
                let result = handle
                    .join()
                    .map_err(|_| usage("the background operation panicked"))?;
                let st = match &result {
                    Ok(()) => NtStatus::SUCCESS,
                    Err(e) => e.status().unwrap_or(NtStatus(-1)),
                };
                let what = format!("`{name}` completed: {st}");
                self.out.emit(
                    &format!("    {what}"),
                    &json!({"type": "ok", "line": step.line, "what": what}),
                )?;
                check_fields(opts, "join", &[("status", Actual::Status(st))])?;
            }
            "join" => {
                let name = step.args.first().ok_or_else(|| usage("`join W`"))?;
                let (host, handle) = self
                    .pending
                    .remove(name)
                    .ok_or_else(|| usage(format!("no background wait `{name}`")))?;
                let events = handle
                    .join()
                    .map_err(|_| usage("the background wait panicked"))??;
                let h = host_mut(&mut self.hosts, &host)?;
                h.buffered.extend(events);
                let e = h
                    .buffered
                    .pop_front()
                    .ok_or_else(|| deviation("the wait returned no event"))?;
                self.show_event(step, &host, &e)?;
                check_event(&e, opts)?;
                self.bind(step, e.connection_id);
            }
            _ => return self.run_host_step(step, opts, timeout),
        }
        Ok(())
    }

    #[expect(clippy::too_many_lines, reason = "one arm per operation")]
    fn run_host_step(
        &mut self,
        step: &Step,
        opts: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CliError> {
        let opt = |k: &str| option(opts, k);
        let name = self.host_name(step)?;
        let client = Arc::clone(&self.hosts[&name].client);
        let ok = |out: &Out, what: String| {
            out.emit(
                &format!("    {what}"),
                &json!({"type": "ok", "line": step.line, "what": what}),
            )
        };
        match step.command.as_str() {
            "info" => {
                let i = client.info()?;
                self.out.emit(
                    &format!("    abi {} driver {:#x}", i.abi_version, i.driver_version),
                    &output::info_json(&i),
                )?;
            }
            "adapters" => {
                let list = client.adapters()?;
                for a in &list {
                    self.out.emit(
                        &format!(
                            "    if {} ndk {}.{} {}",
                            a.if_index,
                            a.ndk_major,
                            a.ndk_minor,
                            a.address.ip()
                        ),
                        &output::adapter_json(a),
                    )?;
                }
                if let Some(n) = opt("count")
                    && n.parse::<usize>().ok() != Some(list.len())
                {
                    return Err(deviation(format!("expected count={n}, got {}", list.len())));
                }
            }
            "list" => {
                let objects = client.objects()?;
                for o in &objects {
                    let mut v = output::object_json(o);
                    v["line"] = json!(step.line);
                    self.out
                        .emit(&format!("    {}", output::object_row(o)), &v)?;
                }
                if let Some(n) = opt("count")
                    && n.parse::<usize>().ok() != Some(objects.len())
                {
                    return Err(deviation(format!(
                        "expected count={n}, got {}",
                        objects.len()
                    )));
                }
            }
            "listen" => {
                let addr = parse_socket_addr(
                    &self
                        .substitute(step.args.first().ok_or_else(|| usage("`listen IP:PORT`"))?)?,
                )?;
                let if_index = match opt("if") {
                    Some(i) => i.parse().map_err(|_| usage("if= must be a number"))?,
                    None => crate::interface_for(&client, addr.ip(), true)?,
                };
                let backlog = opt("backlog")
                    .map_or(Ok(0), str::parse)
                    .map_err(|_| usage("backlog= must be a number"))?;
                let l = client.listen(if_index, addr, backlog)?;
                ok(
                    self.out,
                    format!("listener {} on {}", l.listener_id, l.bound),
                )?;
                self.bind(step, l.listener_id);
            }
            "connect" => {
                let remote = parse_socket_addr(
                    &self.substitute(
                        step.args
                            .first()
                            .ok_or_else(|| usage("`connect IP:PORT`"))?,
                    )?,
                )?;
                let local = opt("local").map(parse_socket_addr).transpose()?;
                let if_index = opt("if")
                    .map(str::parse)
                    .transpose()
                    .map_err(|_| usage("if= must be a number"))?;
                let params = crate::connect_params(&client, remote, local, if_index)?;
                let c = {
                    let _progress = crate::Progress::start(
                        self.out,
                        format!("line {}: the connection to {remote}", step.line),
                    );
                    client.connect(&params, Timeout::After(timeout))?
                };
                ok(
                    self.out,
                    format!("connection {} connected to {remote}", c.id),
                )?;
                self.bind(step, c.id.raw());
            }
            "wait" => {
                let on = match step.args.first().map(String::as_str) {
                    None | Some("any") => WaitOn::Any,
                    Some(_) => WaitOn::Connection(self.id_arg(step, 0)?),
                };
                if let Some(w) = opt("async") {
                    let c = Arc::clone(&client);
                    let handle =
                        std::thread::spawn(move || c.wait_new(on, 1, Timeout::After(timeout)));
                    self.pending.insert(w.to_owned(), (name.clone(), handle));
                    return ok(self.out, format!("wait `{w}` started in the background"));
                }
                let host = host_mut(&mut self.hosts, &name)?;
                let found = match on {
                    WaitOn::Any => host.buffered.pop_front(),
                    WaitOn::Connection(id) => host
                        .buffered
                        .iter()
                        .position(|e| ConnectionId::of(e) == id)
                        .and_then(|i| host.buffered.remove(i)),
                };
                let e = if let Some(e) = found {
                    e
                } else {
                    let _progress = crate::Progress::start(
                        self.out,
                        format!("line {}: {}", step.line, crate::waited_for(on)),
                    );
                    let mut events: VecDeque<Event> =
                        client.wait_new(on, 16, Timeout::After(timeout))?.into();
                    let first = events
                        .pop_front()
                        .ok_or_else(|| deviation("WAIT returned no event"))?;
                    host.buffered.extend(events);
                    first
                };
                self.show_event(step, &name, &e)?;
                check_event(&e, opts)?;
                self.bind(step, e.connection_id);
            }
            "query" => {
                let id = self.id_arg(step, 0)?;
                // `within=D`: ask again until the expectations hold or D has passed (what the
                // provider does on its own, like a retry timeout, takes its time).
                let within = opt("within").map(parse_duration).transpose()?;
                let deadline = within.map(|d| std::time::Instant::now() + d);
                let q = loop {
                    let q = client.query(id)?;
                    let again = deadline.is_some_and(|d| std::time::Instant::now() < d)
                        && check_query(&q, opts).is_err();
                    if !again {
                        break q;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let mut v = output::query_json(&q);
                v["line"] = json!(step.line);
                self.out
                    .emit(&format!("    {}", output::query_line(&q)), &v)?;
                check_query(&q, opts)?;
            }
            "post" => {
                let id = self.id_arg(step, 0)?;
                let kind = match step.args.get(1).map(String::as_str) {
                    Some("recv") => PostKind::Receive,
                    Some("send") => PostKind::Send,
                    _ => return Err(usage("`post ID recv|send COUNT`")),
                };
                let count: u32 = step
                    .args
                    .get(2)
                    .map_or(Ok(1), |c| c.parse())
                    .map_err(|_| usage("COUNT must be a number"))?;
                let len: u32 = opt("len")
                    .map_or(Ok(4096), str::parse)
                    .map_err(|_| usage("len= must be a number"))?;
                client.post(id, kind, count, len)?;
                ok(self.out, format!("posted {count} on connection {id}"))?;
            }
            "disconnect" => {
                let id = self.id_arg(step, 0)?;
                let mode = match step.args.get(1).map(String::as_str) {
                    None => DisconnectMode::Graceful,
                    Some("abortive") => DisconnectMode::Abortive,
                    Some(other) => {
                        return Err(usage(format!(
                            "`disconnect ID [abortive]`: `{other}` is not `abortive`"
                        )));
                    }
                };
                if let Some(w) = opt("async") {
                    // Graceful completes when the peer answers: run it in the background.
                    let c = Arc::clone(&client);
                    let handle = std::thread::spawn(move || c.disconnect(id, mode));
                    self.ops.insert(w.to_owned(), handle);
                    return ok(
                        self.out,
                        format!("disconnect `{w}` on connection {id} started in the background"),
                    );
                }
                {
                    let _progress = crate::Progress::start(
                        self.out,
                        format!("line {}: connection {id} to disconnect", step.line),
                    );
                    client.disconnect(id, mode)?;
                }
                ok(
                    self.out,
                    format!("disconnect ({mode:?}) on connection {id}").to_lowercase(),
                )?;
            }
            "abort" => {
                let id = self.id_arg(step, 0)?;
                client.abort(id)?;
                ok(self.out, format!("connection {id} aborted"))?;
            }
            "flush" => {
                let id = self.id_arg(step, 0)?;
                client.flush(id)?;
                ok(self.out, format!("flush on connection {id}"))?;
            }
            "close" => {
                let id = self.raw_id_arg(step, 0)?;
                client.close_object(id)?;
                ok(self.out, format!("{id} closed"))?;
            }
            "watch" => {
                let on = match step.args.first() {
                    None => WaitOn::Any,
                    Some(_) => WaitOn::Connection(self.id_arg(step, 0)?),
                };
                let count = opt("count")
                    .map(str::parse)
                    .transpose()
                    .map_err(|_| usage("count= must be a number"))?;
                let limit = opt("for").map(parse_duration).transpose()?;
                let host = host_mut(&mut self.hosts, &name)?;
                // Events already taken from the driver come first: those of the watched
                // connection (the others stay buffered, in order).
                let mut seen = 0usize;
                let mut closed = false;
                let mut kept = VecDeque::new();
                while let Some(e) = host.buffered.pop_front() {
                    let wanted = match on {
                        WaitOn::Any => true,
                        WaitOn::Connection(id) => ConnectionId::of(&e) == id,
                    };
                    if !wanted || closed || count.is_some_and(|c| seen >= c) {
                        kept.push_back(e);
                        continue;
                    }
                    self.out.emit(
                        &output::event_row_at(&e, host.clock.as_ref()),
                        &output::event_json_at(&e, host.clock.as_ref()),
                    )?;
                    seen += 1;
                    // Nothing follows a watched connection's Closed: the watch is over.
                    closed = matches!(on, WaitOn::Connection(_)) && e.kind == EventKind::Closed;
                }
                host.buffered = kept;
                let left = count.map(|c| c - seen);
                if left != Some(0) && !closed {
                    seen += crate::watch(
                        &client,
                        on,
                        left,
                        limit.or(Some(timeout)),
                        &crate::cli::EventFilter::default(),
                        self.out,
                    )?
                    .0
                    .total();
                }
                if let Some(c) = count
                    && seen < c
                    && !self.interrupt.load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(deviation(format!(
                        "watch expected {c} events, saw {seen} before its limit"
                    )));
                }
            }
            "inject" | "remove-adapter" => self.break_things(step, &name, &client)?,
            "close-handle" => {
                let host = self.hosts.remove(&name).ok_or_else(|| usage("host gone"))?;
                self.order.retain(|h| *h != name);
                if let Ok(c) = Arc::try_unwrap(host.client) {
                    c.close();
                }
                ok(self.out, format!("handle of `{name}` closed"))?;
            }
            other => return Err(usage(format!("unknown step `{other}`"))),
        }
        Ok(())
    }

    /// `provider`: the simulated provider's counters, checked.
    #[cfg(feature = "sim")]
    fn provider(
        &self,
        fabric: &ndkdisc_client::sim::SimFabric,
        step: &Step,
        opts: &[(String, String)],
    ) -> Result<(), CliError> {
        let opt = |k: &str| option(opts, k);
        fabric.settle(DEFAULT_WAIT);
        let mut s = fabric.stats();
        if opt("live_objects").is_some() {
            s.live_objects = fabric.wait_released(Duration::from_secs(2));
        }
        self.out.emit(
                &format!(
                    "    provider: disconnect_callbacks={} flush_calls={} live_objects={}",
                    s.disconnect_callbacks, s.flush_calls, s.live_objects
                ),
                &json!({"type": "provider", "line": step.line, "disconnect_callbacks": s.disconnect_callbacks, "flush_calls": s.flush_calls, "live_objects": s.live_objects}),
            )?;
        let values = [
            ("flush_calls", s.flush_calls),
            ("disconnect_callbacks", s.disconnect_callbacks),
            ("live_objects", s.live_objects as u64),
        ];
        check_all(opts, |k, v| {
            let Some(&(_, actual)) = values.iter().find(|(n, _)| *n == k) else {
                return Err(usage(format!("unknown provider counter `{k}`")));
            };
            Ok((v.parse::<u64>().ok() == Some(actual), actual.to_string()))
        })?;
        Ok(())
    }

    /// `inject` and `remove-adapter`: break something on the simulator.
    #[cfg(feature = "sim")]
    fn break_things(&self, step: &Step, name: &str, client: &Client) -> Result<(), CliError> {
        let ok = |what: String| {
            self.out.emit(
                &format!("    {what}"),
                &json!({"type": "ok", "line": step.line, "what": what}),
            )
        };
        match step.command.as_str() {
            "inject" => {
                let id = self.id_arg(step, 0)?;
                let what = step
                    .args
                    .get(1)
                    .and_then(|f| ndkdisc_client::sim::ConnectionFault::from_name(f))
                    .ok_or_else(|| {
                        usage(
                            "`inject ID link-loss|peer-reset|peer-disconnect|cq-overrun|cq-fatal`",
                        )
                    })?;
                self.sim_host(name)?.inject(client, id, what)?;
                ok(format!("injected {} on connection {id}", what.name()))?;
            }
            "remove-adapter" => {
                self.sim_host(name)?.remove_adapter();
                ok(format!("the adapter of `{name}` was removed"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Without the simulator there is nothing to break.
    #[cfg(not(feature = "sim"))]
    #[expect(
        clippy::unused_self,
        reason = "the signature of the simulator's variant"
    )]
    fn break_things(&self, _: &Step, _: &str, _: &Client) -> Result<(), CliError> {
        Err(usage(
            "fault injection exists only on the simulator (this ndkctl was built without it)",
        ))
    }

    /// The simulated host `name`, for the steps that break things (simulator only).
    #[cfg(feature = "sim")]
    fn sim_host(&self, name: &str) -> Result<ndkdisc_client::sim::SimHost, CliError> {
        match self.backend {
            Backend::Sim { fabric, .. } => fabric
                .host(name)
                .ok_or_else(|| usage(format!("no simulated host `{name}`"))),
            Backend::Device { .. } => Err(usage(
                "fault injection exists only on the simulator (run with --sim)",
            )),
        }
    }

    fn show_event(&self, step: &Step, host: &str, e: &Event) -> Result<(), CliError> {
        let clock = self.hosts.get(host).and_then(|h| h.clock);
        let mut v = output::event_json_at(e, clock.as_ref());
        v["line"] = json!(step.line);
        v["host"] = json!(host);
        self.out
            .emit(&format!("    {host}: {}", output::event_line(e)), &v)
    }
}

/// Check every expectation `k=v` with `f(k, v) -> (matches, actual)`; skip the options of the
/// steps that check expectations (`fails`, `timeout`, `async`, `within`). `k=any` names a known
/// `k` and checks nothing. Every other key is an expectation: one that names nothing known is a
/// usage error, never ignored.
fn check_all(
    opts: &[(String, String)],
    mut f: impl FnMut(&str, &str) -> Result<(bool, String), CliError>,
) -> Result<(), CliError> {
    let mut wrong = Vec::new();
    for (k, v) in opts {
        if matches!(k.as_str(), "fails" | "timeout" | "async" | "within") {
            continue;
        }
        let (good, actual) = f(k, v)?;
        if !good && v != "any" {
            wrong.push(format!("{k}={v} (got {actual})"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(deviation(format!("expected {}", wrong.join(", "))))
    }
}

/// What an expectation compares with.
enum Actual {
    /// Written as the scenario writes it (`fired`, `yes`, `4`, `peer`).
    Text(String),
    /// A status: by name or hex.
    Status(NtStatus),
}

impl From<&str> for Actual {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for Actual {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<std::borrow::Cow<'_, str>> for Actual {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        Self::Text(s.into_owned())
    }
}

impl From<u32> for Actual {
    fn from(n: u32) -> Self {
        Self::Text(n.to_string())
    }
}

/// Check the expectations against `fields`, the actual value of each key a `what` knows.
fn check_fields(
    opts: &[(String, String)],
    what: &str,
    fields: &[(&str, Actual)],
) -> Result<(), CliError> {
    check_all(opts, |k, v| {
        let (_, actual) = fields
            .iter()
            .find(|(name, _)| *name == k)
            .ok_or_else(|| usage(format!("unknown {what} expectation `{k}`")))?;
        Ok(match actual {
            Actual::Text(t) => (t == v, t.clone()),
            Actual::Status(s) => (status_matches(*s, v), s.to_string()),
        })
    })
}

/// A boolean expectation: `yes`/`true`/`fired` or `no`/`false`.
fn boolean(want: &str) -> Option<bool> {
    match want {
        "yes" | "true" | "fired" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// Whether `actual`, a record's field `key`, is what `want` says, and how to show `actual`. A
/// status (a hex string with a `<key>_name` sibling) matches its name or its hex code.
fn field_matches(key: &str, actual: &Value, name: Option<&str>, want: &str) -> (bool, String) {
    match actual {
        Value::Bool(b) => {
            let shown = match (key, b) {
                ("callback", true) => "fired",
                (_, true) => "yes",
                (_, false) => "no",
            };
            (boolean(want) == Some(*b), shown.to_owned())
        }
        Value::Null => (want == "none", "none".into()),
        Value::Number(n) => (want.parse::<u64>().ok() == n.as_u64(), n.to_string()),
        Value::String(text) => match name {
            Some(n) => (
                n.eq_ignore_ascii_case(want) || text.eq_ignore_ascii_case(want),
                format!("{n} ({text})"),
            ),
            None => (text == want, text.clone()),
        },
        other => (false, other.to_string()),
    }
}

/// Check the expectations against `record`, the JSON form of an output record: its keys are
/// the expectation names (one set of names for text, JSON and scenarios).
fn check_record(opts: &[(String, String)], what: &str, record: &Value) -> Result<(), CliError> {
    check_all(opts, |k, v| {
        let actual = record
            .get(k)
            .filter(|_| !k.ends_with("_name") && k != "type")
            .ok_or_else(|| usage(format!("unknown {what} expectation `{k}`")))?;
        let name = record
            .get(format!("{k}_name"))
            .map(|n| n.as_str().unwrap_or("?"));
        Ok(field_matches(k, actual, name, v))
    })
}

fn status_matches(s: NtStatus, want: &str) -> bool {
    s.name().is_some_and(|n| n.eq_ignore_ascii_case(want))
        || format!("{:#010X}", s.code()).eq_ignore_ascii_case(want)
}

fn check_event(e: &Event, opts: &[(String, String)]) -> Result<(), CliError> {
    check_record(opts, "event", &output::event_json(e))
}

fn check_query(q: &ConnectionInfo, opts: &[(String, String)]) -> Result<(), CliError> {
    check_record(opts, "query", &output::query_json(q))
}

/// The scenario in `file`: the name it is shown by, and its text.
///
/// # Errors
/// Usage: the file cannot be read.
pub fn read_file(file: &Path) -> Result<(String, String), CliError> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| usage(format!("cannot read scenario `{shown}`: {e}")))?;
    Ok((shown, text))
}

/// Run the scenario `text`, named `shown` in what it prints, on `backend`, with the `NAME=VALUE`
/// overrides `vars`.
///
/// # Errors
/// Usage (a malformed file), a deviation, or an operation's unexpected failure — each naming
/// the line.
pub fn run(
    shown: &str,
    text: &str,
    vars: &[String],
    backend: &Backend,
    out: &Out,
    interrupt: &Arc<AtomicBool>,
) -> Result<(), CliError> {
    let steps = parse(shown, text)?;
    let mut overrides = HashMap::new();
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| usage(format!("--set `{v}`: expected NAME=VALUE")))?;
        overrides.insert(k.to_owned(), val.to_owned());
    }
    let mut runner = Runner::new(backend, out, interrupt, overrides);
    for step in &steps {
        // Ctrl-C ends the scenario before its next step (the one running was cancelled).
        if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CliError::Client(ndkdisc_client::Error::Interrupted {
                op: "scenario",
            }));
        }
        // A narration prints itself.
        if step.command != "say" {
            out.emit(
                &format!("{:>4}: {}", step.line, step.text),
                &json!({"type": "step", "line": step.line, "text": step.text}),
            )?;
        }
        runner.run(step).map_err(|e| CliError::Step {
            file: shown.to_owned(),
            line: step.line,
            text: step.text.clone(),
            source: Box::new(e),
        })?;
    }
    runner.finish();
    out.emit(
        &format!("scenario {shown}: ok ({} steps)", steps.len()),
        &json!({"type": "result", "ok": true, "steps": steps.len()}),
    )
}

#[cfg(test)]
mod tests {
    use ndkdisc_client::{Cause, ConnState, EventKind};

    use super::*;

    /// The `key=value` words of a text line, as scenario expectations.
    fn pairs(line: &str) -> Vec<(String, String)> {
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn sample_query() -> ConnectionInfo {
        ConnectionInfo {
            connection_id: 2_097_152,
            state: ConnState::Disconnected,
            callback_fired: true,
            provider_reason: Some(7),
            local_disconnect: false,
            aborted: false,
            flushed: true,
            provider_flushed: true,
            cq_failed: true,
            outstanding_receives: 3,
            outstanding_sends: 1,
            ndk_version: (2, 1),
            terminal_status: NtStatus::SUCCESS,
            local: Some("10.0.0.2:4791".parse().unwrap()),
            remote: Some("10.0.0.1:49152".parse().unwrap()),
            receives_succeeded: 5,
            receives_cancelled: 4,
            sends_succeeded: 6,
            sends_cancelled: 2,
            receives_failed: 9,
            sends_failed: 1,
            last_error_status: NtStatus::IO_TIMEOUT,
            last_provider_error: 12,
            received_bytes: 1536,
            send_bytes_posted: 512,
        }
    }

    #[test]
    fn a_query_line_is_its_own_scenario_expectation_and_names_json_keys() {
        let q = sample_query();
        let line = output::query_line(&q);
        let p = pairs(&line);
        assert!(p.len() >= 20, "{line}");
        // Every name of the text is a JSON key and an expectation that holds.
        let json = output::query_json(&q);
        for (k, _) in &p {
            assert!(
                json.get(k).is_some(),
                "text name `{k}` is not a JSON key: {json}"
            );
        }
        check_query(&q, &p).unwrap();
        // And each would catch a different value.
        for (k, v) in &p {
            let wrong = if v == "yes" || v == "fired" {
                "no".to_owned()
            } else {
                format!("{v}9")
            };
            let one = [(k.clone(), wrong)];
            assert!(check_query(&q, &one).is_err(), "{k} accepted a wrong value");
        }
        // Every JSON field but the record type and the status names is an expectation.
        for k in json.as_object().unwrap().keys() {
            if k == "type" || k.ends_with("_name") {
                continue;
            }
            let v = &json[k];
            let want = match v {
                Value::Bool(b) => (if *b { "yes" } else { "no" }).to_owned(),
                Value::Null => "none".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            check_query(&q, &[(k.clone(), want)]).unwrap();
        }
    }

    #[test]
    fn an_event_line_is_its_own_scenario_expectation() {
        let mut e = Event::new(EventKind::Disconnected, 2_097_152, 99);
        e.cause = Some(Cause::Peer);
        e.callback_fired = true;
        e.provider_reason = Some(1);
        e.outstanding_receives = 4;
        e.seq = 2;
        let line = output::event_line(&e);
        let mut p = pairs(&line);
        p.push(("kind".into(), "disconnected".into()));
        p.push(("conn".into(), "2097152".into()));
        assert!(p.len() >= 8, "{line}");
        let json = output::event_json(&e);
        for (k, _) in &p {
            assert!(
                json.get(k).is_some(),
                "text name `{k}` is not a JSON key: {json}"
            );
        }
        check_event(&e, &p).unwrap();
        assert!(check_event(&e, &[("recv".into(), "3".into())]).is_err());
        assert!(check_event(&e, &[("callback".into(), "no".into())]).is_err());
        assert!(check_event(&e, &[("status".into(), "STATUS_CANCELLED".into())]).is_err());
        check_event(&e, &[("status".into(), "0x00000000".into())]).unwrap();
        assert!(check_event(&e, &[("outstanding_receives".into(), "4".into())]).is_err());
    }
}
