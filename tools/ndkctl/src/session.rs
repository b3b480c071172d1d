//! `ndkctl session`: commands from a file or stdin, one per line, run on handles that stay open
//! for the whole session; each command is answered with one JSON line on stdout, so a script or
//! another program can drive the driver for as long as it likes.
//!
//! A line is either a scenario step (the language of [`crate::scenario`]) or the same step as a
//! JSON object:
//!
//! ```text
//! {"op": "listen", "host": "b", "addr": "10.0.0.2:4791", "as": "L"}
//! b: listen 10.0.0.2:4791 -> L
//! ```
//!
//! In the object, `op` is the step's command, `host` its `HOST:` prefix, `as` its `-> VAR`,
//! `tag` any value echoed in the reply; the positional arguments are named (`addr` for listen and
//! connect; `id` for wait, query, abort, flush, close and watch, `"any"` for any connection;
//! `id`, `what`, `count` for post; `id` and `abortive: true` for disconnect; `id` and `fault` for
//! inject; `name`, `value`
//! for set; `name` for host and join; `duration` for sleep; `text` for print and say) or given
//! as an `args` array; every other key is an option or expectation (`timeout`, `kind`,
//! `recv`, ...): strings, numbers and booleans (`yes`/`no`) are accepted.
//!
//! The session starts with handles open: on the simulator, hosts `a` (interface 1, 10.0.0.1) and
//! `b` (interface 2, 10.0.0.2) of one fabric; on the device, host `a`. A step without a host
//! runs on `a`. `host NAME ...` adds hosts (the device: more handles).
//!
//! The reply: `{"schema", "type": "reply", "request": N, "tag", "op", "ok": true, "results":
//! [...], "bound": {"VAR": "ID"}}`, where `results` are the records the step produced (the JSON
//! lines `ndkctl --json` prints), or `"ok": false` with `"error": {"kind", "exit_code",
//! "status", "status_name", "message"}`. A failed command changes nothing else: the session goes
//! on. Blank lines and comments get no reply. At the end of the input every handle is closed
//! (its connections and listeners with it) and a last line `{"type": "end", "requests": N,
//! "failed": K}` follows; the exit code is 0. Ctrl-C ends the session the same way, with exit
//! code 130.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::Backend;
use crate::error::CliError;
use crate::output::{Out, with_schema};
use crate::scenario::{self, Runner, Step};

/// The names of each command's positional arguments in the JSON form, in order.
fn positional(op: &str) -> &'static [&'static str] {
    match op {
        "set" => &["name", "value"],
        "host" | "join" => &["name"],
        "sleep" => &["duration"],
        "print" | "say" => &["text"],
        "listen" | "connect" => &["addr"],
        "wait" | "query" | "abort" | "flush" | "close" | "watch" => &["id"],
        "post" => &["id", "what", "count"],
        "disconnect" => &["id", "abortive"],
        "inject" => &["id", "fault"],
        _ => &[],
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// A JSON value as a step's word: strings as they are, numbers, booleans as `yes`/`no`.
fn word(key: &str, v: &Value) -> Result<String, CliError> {
    let w = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => (if *b { "yes" } else { "no" }).to_owned(),
        _ => {
            return Err(usage(format!(
                "`{key}`: a string, number or boolean expected"
            )));
        }
    };
    Ok(w)
}

/// One JSON command as the scenario line it stands for.
fn json_to_line(obj: &Map<String, Value>) -> Result<String, CliError> {
    let op = obj
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| usage("a command needs \"op\" (e.g. {\"op\": \"info\"})"))?;
    if op.is_empty() {
        return Err(usage("\"op\" is empty"));
    }
    let mut words = Vec::new();
    if let Some(h) = obj.get("host") {
        words.push(format!("{}:", word("host", h)?));
    }
    words.push(op.to_owned());
    let names = positional(op);
    for name in names {
        match (obj.get(*name), *name) {
            (None, _) | (Some(Value::Bool(false)), "abortive") => {}
            (Some(Value::Bool(true)), "abortive") => words.push("abortive".into()),
            (Some(_), "abortive") => return Err(usage("`abortive`: true or false")),
            (Some(v), n) => words.push(word(n, v)?),
        }
    }
    if let Some(args) = obj.get("args") {
        let list = args
            .as_array()
            .ok_or_else(|| usage("`args`: an array expected"))?;
        for a in list {
            words.push(word("args", a)?);
        }
    }
    let free_text = matches!(op, "print" | "say");
    for (k, v) in obj {
        if matches!(k.as_str(), "op" | "host" | "as" | "tag" | "args")
            || names.contains(&k.as_str())
        {
            continue;
        }
        words.push(format!("{k}={}", word(k, v)?));
    }
    if let Some(b) = obj.get("as") {
        words.push(format!("-> {}", word("as", b)?));
    }
    // The line is split on whitespace, `#` starts a comment and `->` binds: no value may hold
    // them (free text may hold spaces), nor a line break or another control character.
    for w in &words {
        let body = w.strip_prefix("-> ").unwrap_or(w);
        let spaces = !free_text && body.contains(char::is_whitespace);
        if body.contains(char::is_control) || body.contains('#') || body.contains("->") || spaces {
            return Err(usage(format!(
                "`{w}`: a value cannot contain `#`, `->`, control characters or (but in print and say) spaces"
            )));
        }
    }
    Ok(words.join(" "))
}

/// Parse request `n` (one input line) into its step and the tag to echo; `None` for a blank
/// line or a comment.
fn request(n: usize, line: &str) -> Result<Option<(Step, Value)>, (Value, CliError)> {
    let trimmed = line.trim();
    let (text, tag) = if trimmed.starts_with(['{', '[']) {
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| (Value::Null, usage(format!("not a JSON object: {e}"))))?;
        let obj = v
            .as_object()
            .ok_or_else(|| (Value::Null, usage("not a JSON object")))?;
        let tag = obj.get("tag").cloned().unwrap_or(Value::Null);
        (json_to_line(obj).map_err(|e| (tag.clone(), e))?, tag)
    } else {
        (trimmed.to_owned(), Value::Null)
    };
    // Errors name the request's line of the input.
    let mut steps = scenario::parse("session", &text).map_err(|e| {
        let e = match e {
            CliError::Script { file, msg, .. } => CliError::Script { file, line: n, msg },
            other => other,
        };
        (tag.clone(), e)
    })?;
    // A JSON command is exactly one step; a scenario line at most one (none: a comment).
    match (
        steps.pop(),
        steps.is_empty(),
        trimmed.starts_with(['{', '[']),
    ) {
        (Some(mut s), true, _) => {
            s.line = n;
            Ok(Some((s, tag)))
        }
        (None, _, false) => Ok(None),
        _ => Err((tag, usage("a command must be exactly one step"))),
    }
}

/// The error record of a reply.
fn error_json(e: &CliError) -> Value {
    e.record(e.exit_code())
}

/// Lines of the input, read on their own thread so that Ctrl-C is seen while waiting for one.
fn lines(file: &str) -> Result<Receiver<std::io::Result<String>>, CliError> {
    let reader: Box<dyn BufRead + Send> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| usage(format!("cannot read session file `{file}`: {e}")))?;
        Box::new(std::io::BufReader::new(f))
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("ndkctl-session-input".into())
        .spawn(move || {
            for line in reader.lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| usage(format!("cannot read the input: {e}")))?;
    Ok(rx)
}

/// Run a session reading `file` (`-`: stdin) on `backend`.
///
/// # Errors
/// Usage (an unreadable file, a handle that cannot be opened at the start); a closed output
/// pipe; [`ndkdisc_client::Error::Interrupted`] on Ctrl-C (after closing everything).
pub fn run(file: &str, backend: &Backend, interrupt: &Arc<AtomicBool>) -> Result<(), CliError> {
    let input = lines(file)?;
    // Replies are always JSON lines; the records of each step are gathered into its reply.
    let out = Out::new(true);
    let mut runner = Runner::new(backend, &out, interrupt, HashMap::new());
    match backend {
        #[cfg(feature = "sim")]
        Backend::Sim { .. } => {
            for host in ["host a if=1 addr=10.0.0.1", "host b if=2 addr=10.0.0.2"] {
                let steps = scenario::parse("session", host)?;
                for s in &steps {
                    out.start_capture();
                    let r = runner.run(s);
                    out.take_capture();
                    r.map_err(|e| usage(format!("opening the simulated hosts: {e}")))?;
                }
            }
        }
        Backend::Device { .. } => runner.adopt_host("a")?,
    }
    runner.set_default_host("a");
    let (mut requests, mut failed) = (0usize, 0usize);
    let mut n = 0usize;
    let ended = loop {
        let line = match input.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(line)) => line,
            // A line that is not UTF-8 is a bad command, answered as such.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                n += 1;
                requests += 1;
                failed += 1;
                let e = usage(format!("line {n} is not UTF-8 text"));
                out.line(
                    &with_schema(&json!({"type": "reply", "request": n, "tag": null, "ok": false, "results": [], "error": error_json(&e)}))
                        .to_string(),
                )?;
                continue;
            }
            Ok(Err(e)) => break Err(usage(format!("reading the session input: {e}"))),
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                if interrupt.load(Ordering::SeqCst) {
                    break Err(ndkdisc_client::Error::Interrupted { op: "session" }.into());
                }
                continue;
            }
        };
        n += 1;
        let (step, tag) = match request(n, &line) {
            Ok(None) => continue,
            Ok(Some(r)) => r,
            Err((tag, e)) => {
                requests += 1;
                failed += 1;
                out.line(
                    &with_schema(&json!({"type": "reply", "request": n, "tag": tag, "ok": false, "results": [], "error": error_json(&e)}))
                        .to_string(),
                )?;
                continue;
            }
        };
        requests += 1;
        out.start_capture();
        let result = runner.run(&step);
        let results = out.take_capture();
        let mut reply = json!({
            "type": "reply",
            "request": n,
            "tag": tag,
            "op": step.command,
            "ok": result.is_ok(),
            "results": results,
        });
        // Only what this step bound (a step that binds nothing reports nothing).
        if let Some((var, value)) = runner.take_bound()
            && result.is_ok()
        {
            reply["bound"] = json!({ var: value });
        }
        if let Err(e) = &result {
            failed += 1;
            reply["error"] = error_json(e);
        }
        out.line(&with_schema(&reply).to_string())?;
        if interrupt.load(Ordering::SeqCst) {
            break Err(ndkdisc_client::Error::Interrupted { op: "session" }.into());
        }
    };
    runner.finish();
    out.line(
        &with_schema(&json!({"type": "end", "requests": requests, "failed": failed})).to_string(),
    )?;
    ended
}
