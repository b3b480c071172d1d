//! The command line end to end, on the simulation backend (the real engine over softndk): every
//! subcommand, every documented error path with its exit code, the `--json` format field by
//! field, scenarios, and `demo` failing when the provider misbehaves.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ndkctl");

fn ndkctl() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("NDKCTL_BACKEND")
        .timeout(Duration::from_secs(120));
    c
}

fn sim(args: &[&str]) -> Command {
    let mut c = ndkctl();
    c.arg("--sim").args(args);
    c
}

/// `ndkctl ARGS` on the default backend, the device (on the simulator: `demo`).
fn device(args: &[&str]) -> Run {
    let mut c = ndkctl();
    c.args(args);
    run(c)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The exit code must be `code` (the output is shown otherwise).
    #[track_caller]
    fn exits(&self, code: i32) {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
    }
}

/// `text` must contain `needle` (it is shown whole otherwise).
#[track_caller]
fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "missing {needle:?} in\n{text}");
}

fn run(mut c: Command) -> Run {
    let o = c.output().expect("ndkctl runs");
    Run {
        code: o.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(o.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(o.stderr).expect("utf-8 stderr"),
    }
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn scenario_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ndkctl-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `ndkctl --sim scenario FILE ARGS...` of a scenario written to a file named `name`.
fn scenario(name: &str, text: &str, args: &[&str]) -> Run {
    let f = scenario_file(name, text);
    let mut all = vec!["scenario", f.to_str().unwrap()];
    all.extend(args);
    run(sim(&all))
}

fn shipped(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The error JSON line on stderr of a `--json` run.
fn json_error(r: &Run) -> Value {
    let v = json_lines(&r.stderr);
    assert_eq!(v.len(), 1, "one error line: {}", r.stderr);
    assert_eq!(v[0]["type"], "error");
    v[0].clone()
}

// --- demo -----------------------------------------------------------------------------------

/// `ndkctl demo ARGS...` (always on the simulator).
fn demo(args: &[&str]) -> Run {
    let mut all = vec!["demo"];
    all.extend(args);
    device(&all)
}

/// The step of peer-disconnect.ndk that sees whether a peer disconnect flushed anything.
const NOTHING_FLUSHED_LINE: &str = "peer-disconnect.ndk:39:";

#[test]
fn demo_runs_the_shipped_scenarios() {
    let r = demo(&[]);
    r.exits(0);
    for needle in [
        "=== peer-disconnect.ndk --set PEER_REASON=1",
        // The server's connection: the engine's second id (sequence number 2), record index 0
        // (ids hold their handle's record index in their low 20 bits).
        "server: #2 conn 2097152 disconnected cause=peer status=STATUS_SUCCESS callback=fired reason=1 (graceful) recv=4",
        "nothing was flushed: all 4 receives are still posted",
        "provider: disconnect_callbacks=1 flush_calls=0",
        "recv=0 send=0 recv_ok=0 recv_cancelled=4 recv_failed=0 send_ok=0 send_cancelled=0 send_failed=0 local_disconnect=no aborted=no flushed=yes",
        "scenario peer-disconnect.ndk: ok",
        "=== sends-at-peer-disconnect.ndk",
        "send_failed=1 last_error=STATUS_IO_TIMEOUT",
        "scenario sends-at-peer-disconnect.ndk: ok",
        "demo: ok",
    ] {
        assert_contains(&r.stdout, needle);
    }
    assert!(!r.stdout.contains("DEVIATION"));
}

#[test]
fn demo_fails_when_the_provider_flushes_on_peer_disconnect() {
    let r = demo(&["--sim-fault", "flush-on-peer-disconnect"]);
    assert_eq!(r.code, 1, "a deviation exits 1: {}{}", r.stdout, r.stderr);
    let deviation = format!("DEVIATION: {NOTHING_FLUSHED_LINE}");
    assert_contains(&r.stdout, &deviation);
    assert_contains(&r.stdout, "expected recv=4 (got 0)");
    assert_contains(&r.stderr, NOTHING_FLUSHED_LINE);
    assert_contains(&r.stderr, "deviation: expected recv=4 (got 0)");
    assert!(!r.stdout.contains("demo: ok"));
}

#[test]
fn demo_passes_when_the_provider_fires_the_callback_twice() {
    // ndkdisc latches one terminal event per connection however often the provider calls back.
    let r = demo(&["--sim-fault", "duplicate-callback"]);
    r.exits(0);
    assert_contains(&r.stdout, "provider: disconnect_callbacks=2");
    // No second terminal event: after `closed`, the server waits for another event in vain.
    assert_contains(
        &r.stdout,
        "server: wait any timeout=100ms fails=timeout\n    failed as expected: wait timed out",
    );
}

#[test]
fn demo_json_reports_each_step_event_and_result() {
    let r = demo(&["--json"]);
    r.exits(0);
    let lines = json_lines(&r.stdout);
    let peer = lines
        .iter()
        .find(|v| v["type"] == "event" && v["host"] == "server" && v["kind"] == "disconnected")
        .expect("the server's disconnect event");
    assert_eq!(peer["cause"], "peer");
    assert_eq!(peer["callback"], true);
    assert_eq!(peer["reason"], 1);
    assert_eq!(peer["recv"], 4);
    assert_eq!(peer["send"], 0);
    assert_eq!(peer["status"], "0x00000000");
    assert_eq!(peer["status_name"], "STATUS_SUCCESS");
    assert!(peer["seq"].as_u64().is_some() && peer["conn"].as_u64().is_some());
    assert!(lines.iter().any(|v| v["type"] == "say"));
    let results: Vec<&Value> = lines.iter().filter(|v| v["type"] == "result").collect();
    assert_eq!(results.len(), 3, "two scenarios, then the demo");
    assert!(results.iter().all(|v| v["ok"] == true));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["ok"], true);
}

#[test]
fn demo_json_names_the_deviation() {
    let r = demo(&["--json", "--sim-fault", "flush-on-peer-disconnect"]);
    r.exits(1);
    let lines = json_lines(&r.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["ok"], false);
    let deviation = last["deviations"][0].as_str().unwrap();
    assert!(deviation.contains(NOTHING_FLUSHED_LINE) && deviation.contains("recv=4 (got 0)"));
    assert_eq!(json_error(&r)["kind"], "deviation");
}

// --- backends and the documented error paths ------------------------------------------------

#[cfg(not(windows))]
#[test]
fn the_device_backend_reports_the_driver_missing() {
    let r = device(&["info"]);
    r.exits(3);
    assert_contains(&r.stderr, "driver is not installed");
    let r = device(&["--json", "query", "1"]);
    r.exits(3);
    let e = json_error(&r);
    assert_eq!(e["kind"], "device-missing");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["status"], Value::Null);
}

#[test]
fn the_backend_can_be_chosen_by_environment() {
    let mut c = ndkctl();
    c.env("NDKCTL_BACKEND", "sim").arg("info");
    let r = run(c);
    r.exits(0);
    assert!(r.stdout.starts_with("abi 1 driver 0.1"), "{}", r.stdout);
    let mut c = ndkctl();
    c.env("NDKCTL_BACKEND", "bogus").arg("info");
    assert_eq!(run(c).code, 2, "an unknown backend is a usage error");
}

#[test]
fn access_denied_for_a_standard_user_and_for_changes_on_a_read_only_handle() {
    let r = run(sim(&["--sim-user", "standard", "info"]));
    r.exits(4);
    assert_contains(&r.stderr, "STATUS_ACCESS_DENIED (0xC0000022)");
    assert_contains(&r.stderr, "Administrators");
    // Queries need only read access; changes need write access.
    assert_eq!(run(sim(&["--read-only", "adapters"])).code, 0);
    let r = run(sim(&["--read-only", "--json", "listen", "10.0.0.1:4791"]));
    r.exits(4);
    let e = json_error(&r);
    assert_eq!(e["kind"], "access-denied");
    assert_eq!(e["status_name"], "STATUS_ACCESS_DENIED");
}

#[test]
fn bad_addresses() {
    for args in [
        ["connect", "10.0.0.999:1"],
        ["connect", "10.0.0.2"],
        ["listen", "not-an-address"],
        ["listen", "10.0.0.9:4791"], // no adapter has it
    ] {
        let r = run(sim(&args));
        assert_eq!(r.code, 5, "{args:?}: {}", r.stderr);
        assert_contains(&r.stderr, "bad address");
    }
    let e = json_error(&run(sim(&["--json", "connect", "[::1]:x"])));
    assert_eq!(e["kind"], "bad-address");
    assert_eq!(e["exit_code"], 5);
}

#[test]
fn unknown_ids_are_not_found_for_every_operation_on_an_id() {
    for args in [
        vec!["query", "5"],
        vec!["post", "5", "recv", "2"],
        vec!["disconnect", "5"],
        vec!["disconnect", "5", "--abortive"],
        vec!["abort", "5"],
        vec!["flush", "5"],
        vec!["close", "5"],
        vec!["wait", "5", "--timeout", "5s"],
    ] {
        let r = run(sim(&args));
        assert_eq!(r.code, 6, "{args:?}: {}", r.stderr);
        assert_contains(&r.stderr, "STATUS_NOT_FOUND (0xC0000225)");
    }
    let e = json_error(&run(sim(&["--json", "query", "7"])));
    assert_eq!(e["kind"], "unknown-id");
    assert_eq!(e["status"], "0xC0000225");
    assert_eq!(e["status_name"], "STATUS_NOT_FOUND");
    assert!(e["message"].as_str().unwrap().contains("no such id"));
}

#[test]
fn a_wait_times_out_and_is_cancelled() {
    let start = Instant::now();
    let r = run(sim(&["wait", "--any", "--timeout", "300ms"]));
    r.exits(7);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_contains(&r.stderr, "timed out after 300ms");
    let e = json_error(&run(sim(&[
        "--json",
        "wait",
        "--any",
        "--timeout",
        "100ms",
    ])));
    assert_eq!(e["kind"], "timeout");
    assert_eq!(e["status_name"], "STATUS_CANCELLED");
}

#[test]
fn a_refused_connect_is_a_driver_failure_with_the_ndk_status() {
    let r = run(sim(&["connect", "10.0.0.2:4791"]));
    r.exits(9);
    assert_contains(&r.stderr, "STATUS_CONNECTION_REFUSED");
}

#[test]
fn usage_errors_exit_2_and_help_documents_the_exit_codes() {
    assert_eq!(run(sim(&["frobnicate"])).code, 2);
    assert_eq!(run(sim(&["wait", "--any", "--timeout", "soon"])).code, 2);
    let r = device(&["--help"]);
    r.exits(0);
    for needle in [
        "Exit codes:",
        "3  driver not installed / device missing",
        "4  access denied",
        "5  bad address",
        "6  unknown id (STATUS_NOT_FOUND)",
        "7  timeout",
        "8  cancelled",
    ] {
        assert!(r.stdout.contains(needle), "--help lacks {needle:?}");
    }
}

#[cfg(unix)]
fn interrupt_after_waiting(args: &[&str]) -> (i32, String, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = std::process::Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .arg("--sim")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("waiting for events"), "{first}");
    std::thread::sleep(Duration::from_millis(200));
    ctrl_c(child.id());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().expect("exited, not killed by the signal"),
        String::from_utf8(out.stdout).unwrap(),
        rest,
    )
}

/// Press Ctrl-C for process `pid` (SIGINT).
#[cfg(unix)]
fn ctrl_c(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_a_wait_and_exits_130() {
    let (code, _, err) = interrupt_after_waiting(&["wait", "--any"]);
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains("interrupted; the request was cancelled (STATUS_CANCELLED)"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_watch_quietly_with_130() {
    let (code, out, err) = interrupt_after_waiting(&["watch"]);
    assert_eq!(code, 130, "{err}");
    assert!(
        !err.contains("error"),
        "a watch ends normally on Ctrl-C: {err}"
    );
    assert!(out.starts_with("  SEQ      CONN  KIND"), "{out}");
    // In JSON mode (no waiting note to wait for: give it time to block), the error record of
    // an interrupted wait names it.
    let child = std::process::Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .args(["--sim", "--json", "wait", "--any"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ctrl_c(child.id());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{err}");
    let e: Value = serde_json::from_str(err.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(e["kind"], "interrupted");
    assert_eq!(e["exit_code"], 130);
    assert_eq!(e["schema"], 2);
}

#[test]
fn a_long_wait_says_what_it_is_waiting_for() {
    let mut c = sim(&["wait", "--any", "--timeout", "900ms"]);
    c.env("NDKCTL_PROGRESS_SECONDS", "0.2");
    let r = run(c);
    r.exits(7);
    assert_contains(
        &r.stderr,
        "ndkctl: still waiting for events on any connection (0s; Ctrl-C cancels)",
    );
    // A scenario's step says its line; JSON mode keeps stderr for error records.
    let f = scenario_file(
        "slow.ndk",
        "host a if=1 addr=10.0.0.1\na: wait any timeout=900ms fails=timeout\n",
    );
    let mut c = sim(&["scenario", f.to_str().unwrap()]);
    c.env("NDKCTL_PROGRESS_SECONDS", "0.2");
    let r = run(c);
    r.exits(0);
    assert_contains(
        &r.stderr,
        "still waiting for line 2: events on any connection",
    );
    let mut c = sim(&["--json", "wait", "--any", "--timeout", "600ms"]);
    c.env("NDKCTL_PROGRESS_SECONDS", "0.2");
    let r = run(c);
    assert!(!r.stderr.contains("still waiting"), "{}", r.stderr);
}

#[test]
fn wait_needs_a_connection_or_any() {
    let r = run(sim(&["wait", "--timeout", "0"]));
    r.exits(2);
    assert_contains(&r.stderr, "--any");
    run(sim(&["wait", "5", "--any"])).exits(2);
}

/// Run ndkctl with `args`, its output pipe closed before it writes (every write fails with
/// EPIPE): its exit code and stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    // The pipe's read end is closed before the child starts, so its first write fails however
    // little it writes (closing it after the spawn raced a short output into the pipe's buffer).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = std::process::Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_closed_output_pipe_ends_quietly() {
    let (code, err) = with_closed_stdout(&["--sim", "demo"]);
    assert_eq!(code, Some(141), "{err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("error"),
        "{err}"
    );
    // Generated output too (clap_complete's `generate` would panic), a session's replies, and
    // both ends of a served connection.
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["--sim", "session"],
        &[
            "--sim",
            "serve",
            "10.0.0.1:0",
            "--sim-peer",
            "--connections",
            "1",
        ],
    ] {
        let (code, err) = with_closed_stdout(args);
        assert_eq!(code, Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn every_json_line_carries_the_schema_version() {
    let r = run(sim(&["--json", "demo"]));
    r.exits(0);
    for v in json_lines(&r.stdout) {
        assert_eq!(v["schema"], 2, "{v}");
    }
    let e = json_error(&run(sim(&["--json", "query", "77"])));
    assert_eq!(e["schema"], 2);
}

#[test]
fn completions_and_the_man_page_come_from_the_cli() {
    let r = run(ndkctl_args(&["completions", "bash"]));
    r.exits(0);
    assert_contains(&r.stdout, "ndkctl");
    assert_contains(&r.stdout, "--sim-fault");
    let r = run(ndkctl_args(&["man"]));
    r.exits(0);
    assert_contains(&r.stdout, ".TH ndkctl");
    assert_contains(&r.stdout, "completions");
    run(ndkctl_args(&["completions", "tcsh"])).exits(2);
}

fn ndkctl_args(args: &[&str]) -> Command {
    let mut c = ndkctl();
    c.args(args);
    c
}

// --- the other subcommands ------------------------------------------------------------------

#[test]
fn info_and_adapters_in_both_formats() {
    let r = run(sim(&["--json", "info"]));
    r.exits(0);
    let v = &json_lines(&r.stdout)[0];
    assert_eq!(v["type"], "info");
    assert_eq!(v["abi_version"], 1);
    assert_eq!(v["driver_version"], "0.1");
    assert_eq!(v["ndk_available"], true);
    assert_eq!(v["ndk_status_name"], "STATUS_SUCCESS");
    assert_eq!(v["etw_provider"], "NdkDisc");
    assert_eq!(
        v["etw_provider_guid"],
        "{c44c20f9-d09e-5f77-b7b6-789dee93b8da}"
    );
    assert!(v["max_connections"].as_u64().unwrap() > 0);
    assert_eq!(v["disconnect_callbacks"], 0);

    let r = run(sim(&["adapters"]));
    assert_eq!(r.stdout.trim(), "if 1    ndk 2.1  10.0.0.1");
    let v = json_lines(&run(sim(&["--json", "adapters"])).stdout);
    assert_eq!(v.len(), 1, "host a's engine lists only its own adapter");
    assert_eq!(v[0]["if_index"], 1);
    assert_eq!(v[0]["ndk_version"], "2.1");
    assert_eq!(v[0]["address"], "10.0.0.1");
}

#[test]
fn listen_reports_the_listener() {
    let r = run(sim(&["listen", "10.0.0.1:4791"]));
    r.exits(0);
    // The engine's first id (sequence number 1) with the listener index (the low 20 bits all
    // set).
    assert_eq!(
        r.stdout.trim(),
        "listener 2097151 on 10.0.0.1:4791 (interface 1)"
    );
    let v = &json_lines(&run(sim(&["--json", "listen", "10.0.0.1:0", "--backlog", "4"])).stdout)[0];
    assert_eq!(v["type"], "listener");
    assert_eq!(v["listener_id"], (1 << 20) | 0xF_FFFF);
    assert_eq!(v["if_index"], 1);
    let bound = v["bound"].as_str().unwrap();
    assert!(
        bound.starts_with("10.0.0.1:") && !bound.ends_with(":0"),
        "port 0 picks one: {bound}"
    );
}

#[test]
fn wait_with_a_zero_timeout_drains_nothing_and_watch_for_ends_quietly() {
    let r = run(sim(&["wait", "--any", "--timeout", "0"]));
    r.exits(0);
    assert_eq!(r.stdout.lines().count(), 1, "just the header: {}", r.stdout);
    let r = run(sim(&["--json", "watch", "--for", "100ms"]));
    r.exits(0);
    // No header in JSON mode: only the closing summary record.
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert_eq!(lines[0]["type"], "summary");
}

// --- scenarios ----------------------------------------------------------------------------

/// The halves of a two-host scenario: on the simulator they have no peer (each invocation is a
/// fresh simulated fabric with only the hosts the file declares), so they run up to the step that
/// needs the other host and fail there, as their headers say. Everything before that step ran,
/// and the whole file parsed (a parse error is exit 2 before any step).
const HALVES: &[(&str, &[&str], i32, &str)] = &[
    (
        "peer-disconnect-server.ndk",
        &["--set", "ACCEPT_TIMEOUT=200ms"],
        7,
        "kind=accepted",
    ),
    (
        "peer-disconnect-client.ndk",
        &["--set", "CONNECT_TIMEOUT=2s"],
        9,
        "STATUS_HOST_UNREACHABLE",
    ),
];

#[test]
fn every_shipped_scenario_runs_on_the_simulator() {
    let dir = format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "ndk")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let half = HALVES.iter().find(|h| h.0 == f);
        let mut args = vec!["--json", "scenario", f.as_str()];
        args.extend(half.map_or(&[][..], |h| h.1));
        let mut c = sim(&args);
        c.current_dir(&dir);
        let r = run(c);
        let steps = json_lines(&r.stdout);
        match half {
            None => {
                assert_eq!(r.code, 0, "{f}: {}{}", r.stdout, r.stderr);
                assert_eq!(steps.last().unwrap()["type"], "result", "{f}");
            }
            Some(&(_, _, code, needle)) => {
                let e = json_error(&r);
                assert_eq!(r.code, code, "{f}: {}{}", r.stdout, r.stderr);
                let message = e["message"].as_str().unwrap();
                assert!(message.contains(needle), "{f}: {message}");
                // It got as far as the step that needs the peer: a host was declared and used.
                assert!(
                    steps.iter().filter(|s| s["type"] == "step").count() > 5,
                    "{f}: {}",
                    r.stdout
                );
            }
        }
    }
    for h in HALVES {
        assert!(files.iter().any(|f| f == h.0), "{} is shipped", h.0);
    }
}

/// The file split at its `# sync N: ...` lines.
fn sync_parts(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for line in text.lines() {
        let marker = line
            .strip_prefix("# sync ")
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(n, _)| n.parse::<u32>().is_ok());
        if marker {
            parts.push(String::new());
        }
        let part = parts.last_mut().unwrap();
        part.push_str(line);
        part.push('\n');
    }
    parts
}

/// The two-host halves fit together: interleaved at their `# sync` lines (server part 0, client
/// part 0, server part 1, ...) they run as one scenario on one simulated fabric and every
/// expectation of both holds — the same steps and checks as peer-disconnect.ndk.
#[test]
fn the_two_host_halves_interleaved_pass_on_the_simulator() {
    let read = |f: &str| std::fs::read_to_string(shipped(f)).unwrap();
    let server = sync_parts(&read("peer-disconnect-server.ndk"));
    let client = sync_parts(&read("peer-disconnect-client.ndk"));
    assert_eq!(server.len(), 3, "two sync lines in the server half");
    assert_eq!(
        server.len(),
        client.len(),
        "the halves have the same sync lines"
    );
    let merged: String = server
        .iter()
        .zip(&client)
        .flat_map(|(s, c)| [s.as_str(), c.as_str()])
        .collect();
    let r = scenario(
        "two-host-interleaved.ndk",
        &merged,
        &["--set", "HOLD=100ms", "--set", "ACCEPT_TIMEOUT=10s"],
    );
    assert_eq!(r.code, 0, "{merged}\n{}{}", r.stdout, r.stderr);
    assert_contains(&r.stdout, ": ok (");
    // (Not repeated with --sim-fault flush-on-peer-disconnect: in this interleaving the
    // provider's own flush races the server's checks, so the fault is caught only usually;
    // peer-disconnect.ndk catches it deterministically, see the next test.)
}

#[test]
fn the_peer_disconnect_scenario_fails_on_a_flushing_provider() {
    let r = run(sim(&[
        "--sim-fault",
        "flush-on-peer-disconnect",
        "scenario",
        &shipped("peer-disconnect.ndk"),
    ]));
    r.exits(1);
    assert_contains(&r.stderr, NOTHING_FLUSHED_LINE);
    assert_contains(&r.stderr, "recv=4 (got 0)");
}

#[test]
fn a_scenario_narrates_with_say_and_an_any_expectation_checks_nothing() {
    let f = scenario_file(
        "say.ndk",
        "set REASON any\n\
         host a if=1 addr=10.0.0.1\nhost b if=2 addr=10.0.0.2\n\
         say b listens on ${b.addr}, a connects: k=v stays text\n\
         b: listen ${b.addr}:5000 -> L\n\
         a: connect ${b.addr}:5000 -> C\n\
         a: wait $C kind=connected reason=${REASON}\n\
         a: wait $C timeout=100ms fails=timeout\n",
    );
    let path = f.to_str().unwrap();
    let r = run(sim(&["scenario", path]));
    r.exits(0);
    assert_contains(
        &r.stdout,
        "\n== b listens on 10.0.0.2, a connects: k=v stays text\n",
    );
    assert!(!r.stdout.contains("say b listens"), "not echoed as a step");
    assert_contains(&r.stdout, "wait timed out after 100ms"); // the limit as given

    let r = run(sim(&["--json", "scenario", path]));
    let say = json_lines(&r.stdout)
        .into_iter()
        .find(|v| v["type"] == "say")
        .expect("a say line");
    assert_eq!(say["line"], 4);
    assert_eq!(
        say["text"],
        "b listens on 10.0.0.2, a connects: k=v stays text"
    );

    let r = run(sim(&["scenario", path, "--set", "REASON=7"]));
    r.exits(1);
    assert_contains(&r.stderr, "reason=7 (got none)");
}

#[test]
fn every_operation_through_a_scenario_with_json_events() {
    let r = scenario(
        "ops.ndk",
        "host a if=1 addr=10.0.0.1\nhost b if=2 addr=10.0.0.2\n\
         a: info\na: adapters count=1\n\
         b: listen ${b.addr}:5000 backlog=2 -> L\n\
         a: connect ${b.addr}:5000 timeout=5s -> C\n\
         a: wait any kind=connected conn=$C\n\
         b: wait any kind=accepted -> S\n\
         b: post $S recv 3 len=512\n\
         a: post $C send 2 len=256\n\
         a: watch $C count=0\n\
         b: disconnect $S abortive\n\
         b: wait $S kind=disconnected cause=local-abortive\n\
         a: wait $C kind=disconnected cause=peer callback=fired reason=2\n\
         a: flush $C\n\
         a: wait $C kind=flushed\n\
         a: abort $C\n\
         a: close $C\n\
         a: watch $C count=1\n\
         b: close $S\n\
         b: close $L\n\
         b: close-handle\n\
         a: close-handle\n\
         provider live_objects=0\n",
        &["--json"],
    );
    r.exits(0);
    let lines = json_lines(&r.stdout);
    let ev = lines
        .iter()
        .find(|v| v["type"] == "event" && v["cause"] == "peer")
        .expect("the peer event");
    assert_eq!(ev["host"], "a");
    assert_eq!(ev["kind"], "disconnected");
    assert_eq!(ev["callback"], true);
    assert_eq!(ev["reason"], 2);
    assert_eq!(ev["status_name"], "STATUS_SUCCESS");
    assert!(ev["line"].as_u64().is_some());
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "event" && v["kind"] == "closed"),
        "watch printed the closed event"
    );
    let p = lines.iter().find(|v| v["type"] == "provider").unwrap();
    assert_eq!(p["live_objects"], 0);
    assert_eq!(lines.last().unwrap()["ok"], true);
}

#[test]
fn a_scenario_watch_with_a_count_deviates_when_fewer_events_come() {
    // One event (connected) on a's connection: a count of 2 cannot be met within the limit.
    let text = "host a if=1 addr=10.0.0.1\nhost b if=2 addr=10.0.0.2\n\
                b: listen ${b.addr}:5000 -> L\n\
                a: connect ${b.addr}:5000 -> C\n\
                a: watch $C count=COUNT for=300ms\n";
    let r = scenario("watch2.ndk", &text.replace("COUNT", "2"), &[]);
    r.exits(1);
    assert_contains(&r.stderr, "watch2.ndk:5:");
    assert_contains(&r.stderr, "watch expected 2 events, saw 1 before its limit");
    // Met: ok.
    scenario("watch1.ndk", &text.replace("COUNT", "1"), &[]).exits(0);
}

#[test]
fn a_scenario_deviation_names_the_line_and_exits_1() {
    let r = scenario(
        "deviates.ndk",
        "host a if=1 addr=10.0.0.1\na: query 3 fails=timeout\n",
        &[],
    );
    r.exits(1);
    assert_contains(&r.stderr, "deviates.ndk:2:");
    assert_contains(&r.stderr, "expected failure timeout");
    // An unexpected failure keeps its own exit code.
    scenario(
        "unexpected.ndk",
        "host a if=1 addr=10.0.0.1\na: abort 3\n",
        &[],
    )
    .exits(6);
}

#[test]
fn malformed_or_missing_scenarios_are_usage_errors() {
    let r = scenario("bad.ndk", "host a if=1 addr=10.0.0.1\na: teleport 3\n", &[]);
    r.exits(2);
    assert_contains(&r.stderr, "bad.ndk:2: unknown step `teleport`");
    scenario(
        "undef.ndk",
        "host a if=1 addr=10.0.0.1\na: query $NOPE\n",
        &[],
    )
    .exits(2);
    assert_eq!(run(sim(&["scenario", "/nonexistent/x.ndk"])).code, 2);
}

#[test]
fn scenario_variables_can_be_overridden() {
    let vars = "set ADDR 10.0.0.1\nhost a if=1 addr=${ADDR}\na: listen ${ADDR}:6000\n";
    scenario("vars.ndk", vars, &[]).exits(0);
    scenario("vars.ndk", vars, &["--set", "ADDR=10.0.0.300"]).exits(5);
}

#[cfg(not(windows))]
#[test]
fn a_scenario_on_the_device_backend_reports_the_driver_missing() {
    device(&["scenario", &shipped("peer-disconnect.ndk")]).exits(3);
}

// --- serve, connect, session ----------------------------------------------------------------

/// The lines of `out` that host `h` printed (`h: ...`), without the prefix.
fn lines_of<'a>(out: &'a str, h: &str) -> Vec<&'a str> {
    let prefix = format!("{h}: ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

/// `needles` must appear in `lines` in this order.
#[track_caller]
fn in_order(lines: &[&str], needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match lines[at..].iter().position(|l| l.contains(n)) {
            Some(i) => at += i + 1,
            None => panic!("{n:?} missing (in this order) in\n{}", lines.join("\n")),
        }
    }
}

#[test]
fn connect_with_a_simulated_peer_tells_both_ends_of_a_disconnect() {
    let r = run(sim(&[
        "connect",
        "10.0.0.2:4791",
        "--sim-peer",
        "--recv",
        "2",
        "--disconnect-after",
        "200ms",
    ]));
    r.exits(0);
    // The server (b): receives posted, the peer disconnect with the callback and the
    // receives still outstanding (nothing flushed), answered, closed; then its summary.
    in_order(
        &lines_of(&r.stdout, "b"),
        &[
            "listening on 10.0.0.2:4791",
            "accepted status=STATUS_SUCCESS",
            "posted 4 receives on connection",
            "disconnected cause=peer status=STATUS_SUCCESS callback=fired reason=1 (graceful) recv=4",
            "state=disconnected callback=fired reason=1 (graceful) recv=4 send=0 recv_ok=0 recv_cancelled=0 recv_failed=0 send_ok=0 send_cancelled=0 send_failed=0 local_disconnect=no aborted=no flushed=no provider_flushed=no",
            "answered the peer on connection",
            "closed status=STATUS_SUCCESS",
            "summary (connections): 3 events (1 accepted, 1 closed, 1 disconnected)",
            "last seen disconnected with recv=4 send=0 outstanding",
        ],
    );
    // The client (a): its own disconnect completes once b answers; its 2 receives are then
    // cancelled by the close.
    in_order(
        &lines_of(&r.stdout, "a"),
        &[
            "connected 10.0.0.1:49152 -> 10.0.0.2:4791",
            "posted 2 receives on connection",
            "disconnecting connection",
            "disconnected cause=local status=STATUS_SUCCESS callback=no reason=- recv=2",
            "closed status=STATUS_SUCCESS",
            "summary (closed): 3 events (1 closed, 1 connected, 1 disconnected)",
        ],
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn serve_with_a_simulated_peer_in_json_tags_each_end() {
    let r = run(sim(&[
        "--json",
        "serve",
        "10.0.0.1:4791",
        "--sim-peer",
        "--connections",
        "1",
        "--on-peer-disconnect",
        "flush",
    ]));
    r.exits(0);
    let lines = json_lines(&r.stdout);
    assert!(lines.iter().all(|l| l["schema"] == 2));
    let of = |h: &str| -> Vec<&Value> { lines.iter().filter(|l| l["host"] == h).collect() };
    assert_eq!(
        lines.len(),
        of("a").len() + of("b").len(),
        "every line names its end"
    );
    let kinds = |h: &str| -> Vec<String> {
        of(h)
            .iter()
            .filter(|l| l["type"] == "event")
            .map(|l| l["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // The flush asked for shows as its own event before the close.
    assert_eq!(
        kinds("a"),
        ["accepted", "disconnected", "flushed", "closed"]
    );
    assert_eq!(kinds("b"), ["connected", "disconnected", "closed"]);
    let peer = of("a")
        .into_iter()
        .find(|l| l["type"] == "event" && l["kind"] == "disconnected")
        .unwrap();
    assert_eq!(peer["cause"], "peer");
    assert_eq!(peer["callback"], true);
    assert_eq!(peer["recv"], 4);
    let summary = of("a")
        .into_iter()
        .find(|l| l["type"] == "summary")
        .unwrap();
    assert_eq!(summary["ended_by"], "connections");
    // Every event has its wall-clock time, from the driver's timestamp and GET_INFO's clock:
    // within the run, and in the order of the driver's timestamps.
    let now = std::time::SystemTime::now();
    let times: Vec<(u64, std::time::SystemTime)> = of("a")
        .iter()
        .filter(|l| l["type"] == "event")
        .map(|l| {
            (
                l["timestamp"].as_u64().unwrap(),
                rfc3339(l["time"].as_str().unwrap()),
            )
        })
        .collect();
    for (_, t) in &times {
        let off = now.duration_since(*t).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(60), "{t:?} vs {now:?}");
    }
    for w in times.windows(2) {
        // Printed to the microsecond: equal to the timestamps' difference within 1 µs.
        let ticks = Duration::from_nanos((w[1].0 - w[0].0) * 100);
        let shown = w[1].1.duration_since(w[0].1).unwrap();
        assert!(
            shown.abs_diff(ticks) <= Duration::from_micros(1),
            "{shown:?} vs {ticks:?}"
        );
    }
}

#[test]
fn serve_can_hold_a_disconnected_connection_and_stops_after_its_time() {
    let start = Instant::now();
    let r = run(sim(&[
        "serve",
        "10.0.0.1:4791",
        "--sim-peer",
        "--for",
        "1500ms",
        "--on-peer-disconnect",
        "hold",
    ]));
    r.exits(0);
    assert!(start.elapsed() >= Duration::from_millis(1500));
    let a = lines_of(&r.stdout, "a");
    assert!(!a.iter().any(|l| l.contains("answered")), "held: {a:?}");
    in_order(
        &a,
        &[
            "disconnected cause=peer",
            "summary (time): 2 events (1 accepted, 1 disconnected)",
            "last seen disconnected with recv=4 send=0 outstanding",
        ],
    );
    // The peer's disconnect is answered by the server's handle closing.
    in_order(
        &lines_of(&r.stdout, "b"),
        &["disconnected cause=local", "closed status=STATUS_SUCCESS"],
    );
    // Without a peer, serve ends quietly at its limit too.
    let r = run(sim(&["serve", "10.0.0.1:0", "--for", "200ms"]));
    r.exits(0);
    assert_contains(&r.stdout, "summary (time): 0 events (none), connections: 0");
}

#[test]
fn sim_peer_needs_the_simulator_and_the_peer_address() {
    let r = device(&["connect", "10.0.0.2:4791", "--sim-peer"]);
    r.exits(2);
    assert_contains(&r.stderr, "--sim-peer runs the other end on the simulator");
    let r = run(sim(&["connect", "10.0.0.1:4791", "--sim-peer"]));
    r.exits(2);
    assert_contains(&r.stderr, "connect to 10.0.0.2:PORT");
    let r = run(sim(&["connect", "10.0.0.2:4791", "--abortive"]));
    r.exits(2);
}

/// `2026-12-02T08:07:25.123456Z` as a time (what ndkctl writes).
fn rfc3339(text: &str) -> std::time::SystemTime {
    let n = |r: std::ops::Range<usize>| text[r].parse::<u64>().unwrap();
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 (months of the Gregorian calendar, leap years by the 4/100/400 rule).
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut days: u64 = (1970..y).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..usize::try_from(mo - 1).unwrap()]
        .iter()
        .sum::<u64>()
        + d
        - 1;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    assert!(text.ends_with('Z'), "{text}");
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(n(20..26))
}

/// `ndkctl --sim session` with `input` on stdin: its exit code and reply lines.
fn session(input: &str) -> (i32, Vec<Value>) {
    let mut c = sim(&["session"]);
    c.write_stdin(input.to_owned());
    let r = run(c);
    (r.code, json_lines(&r.stdout))
}

#[test]
fn a_session_drives_two_hosts_on_one_simulator_one_reply_per_command() {
    let input = r#"{"op":"info","tag":"first"}
{"op":"listen","host":"b","addr":"10.0.0.2:4791","as":"L"}
a: connect 10.0.0.2:4791 -> C
{"op":"wait","host":"b","id":"any","kind":"accepted","as":"S"}
{"op":"post","host":"b","id":"$S","what":"recv","count":3}

# the client disconnects; the server keeps its receives
{"op":"disconnect","id":"$C","async":"D"}
{"op":"wait","host":"b","id":"$S","kind":"disconnected","cause":"peer","recv":3}
{"op":"query","id":"$S"}
{"op":"query","host":"b","id":"$S","recv":3,"flushed":false}
{"op":"disconnect","host":"b","id":"$S"}
{"op":"join","name":"D","status":"STATUS_SUCCESS"}
not a step
{"op":"query","host":"b","id":"$S","recv":3}
{"op":"provider","flush_calls":0}
{"op":"list","host":"b","count":2}
"#;
    let (code, replies) = session(input);
    assert_eq!(code, 0, "{replies:?}");
    let end = replies.last().unwrap();
    assert_eq!(end["type"], "end");
    let replies = &replies[..replies.len() - 1];
    // One reply per command: blank lines and comments get none.
    let requests: Vec<u64> = replies
        .iter()
        .map(|r| r["request"].as_u64().unwrap())
        .collect();
    assert_eq!(
        requests,
        [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    );
    assert_eq!(end["requests"], 15);
    assert_eq!(end["failed"], 3);
    assert!(
        replies
            .iter()
            .all(|r| r["type"] == "reply" && r["schema"] == 2)
    );
    let by = |n: u64| replies.iter().find(|r| r["request"] == n).unwrap();
    assert_eq!(by(1)["tag"], "first");
    assert_eq!(by(1)["results"][0]["type"], "info");
    assert_eq!(by(2)["bound"]["L"], "2097151");
    assert_eq!(by(3)["bound"]["C"], "1048576");
    assert_eq!(by(4)["results"][0]["kind"], "accepted");
    let s = by(4)["bound"]["S"].as_str().unwrap().to_owned();
    let peer = &by(9)["results"][0];
    assert_eq!(peer["cause"], "peer");
    assert_eq!(peer["callback"], true);
    assert_eq!(peer["recv"], 3);
    assert_eq!(peer["conn"].to_string(), s);
    // The server's connection belongs to b's handle: a cannot see it.
    assert_eq!(by(10)["ok"], false);
    assert_eq!(by(10)["error"]["kind"], "unknown-id");
    assert_eq!(by(10)["error"]["exit_code"], 6);
    assert_eq!(by(11)["ok"], true);
    assert_eq!(by(11)["results"][0]["recv"], 3);
    assert_eq!(by(13)["ok"], true, "{:?}", by(13));
    // A malformed line and a deviation are answered and the session goes on.
    assert_eq!(by(14)["error"]["kind"], "usage");
    assert_contains(by(14)["error"]["message"].as_str().unwrap(), "session:14:");
    assert_eq!(by(15)["ok"], false);
    assert_eq!(by(15)["error"]["kind"], "deviation");
    assert_eq!(by(16)["ok"], true);
    assert_eq!(by(16)["results"][0]["flush_calls"], 0);
    // LIST_OBJECTS: b's connection (disconnected, its receives flushed by its own disconnect)
    // and its listener.
    let objects = &by(17)["results"];
    assert_eq!(by(17)["ok"], true, "{:?}", by(17));
    assert_eq!(objects[0]["kind"], "connection");
    assert_eq!(objects[0]["id"].to_string(), s);
    assert_eq!(objects[0]["state"], "disconnected");
    assert_eq!(objects[0]["remote"], "10.0.0.1:49152");
    assert_eq!(objects[1]["kind"], "listener");
    assert_eq!(objects[1]["local"], "10.0.0.2:4791");
}

#[test]
fn a_session_rejects_malformed_json_and_keeps_going() {
    let (code, replies) = session(
        "{\"op\":\n[1]\n{\"host\":\"a\"}\n{\"op\":\"frob\"}\n{\"op\":\"print\",\"text\":\"still here\"}\n",
    );
    assert_eq!(code, 0);
    let errors: Vec<&str> = replies[..4]
        .iter()
        .map(|r| r["error"]["message"].as_str().unwrap())
        .collect();
    assert_contains(errors[0], "not a JSON object");
    assert_contains(errors[1], "not a JSON object");
    assert_contains(errors[2], "a command needs \"op\"");
    assert_contains(errors[3], "unknown step `frob`");
    assert_eq!(replies[4]["results"][0]["text"], "still here");
    assert_eq!(replies[5]["type"], "end");
    assert_eq!(replies[5]["failed"], 4);
    // Values cannot smuggle a second step (a line break), a comment or a binding; an empty op,
    // a non-boolean `abortive` and a line that is not UTF-8 are answered as errors too; a step
    // that binds nothing reports no binding.
    let mut input = [
        r#"{"op":"wait","id":"any","as":"X\nb: close-handle"}"#,
        r#"{"op":"print","text":"a -> b"}"#,
        r#"{"op":"print","text":"cut # here"}"#,
        r#"{"op":""}"#,
        r#"{"op":"disconnect","id":1,"abortive":"yes"}"#,
        r#"{"op":"info","as":"X"}"#,
    ]
    .join("\n")
    .into_bytes();
    input.extend_from_slice(b"\n\xff\xfe\n{\"op\":\"print\",\"text\":\"after\"}\n");
    let mut c = sim(&["session"]);
    c.write_stdin(input);
    let r = run(c);
    r.exits(0);
    let replies = json_lines(&r.stdout);
    let ok: Vec<bool> = replies[..8].iter().map(|r| r["ok"] == true).collect();
    assert_eq!(
        ok,
        [false, false, false, false, false, true, false, true],
        "{replies:?}"
    );
    assert!(replies[5].get("bound").is_none(), "{:?}", replies[5]);
    assert_contains(
        replies[6]["error"]["message"].as_str().unwrap(),
        "not UTF-8",
    );
    assert_eq!(replies[7]["results"][0]["text"], "after");
    assert_eq!(replies[8]["requests"], 8);
}

#[test]
fn a_session_on_the_device_backend_reports_the_driver_missing() {
    let mut c = ndkctl();
    c.args(["session"]).write_stdin("{\"op\":\"info\"}\n");
    let r = run(c);
    r.exits(3);
    assert_contains(&r.stderr, "device is missing");
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_session_and_serve_with_130() {
    use std::io::Read;
    use std::process::Stdio;

    // A session waiting for its next command, with a connection open.
    let mut child = std::process::Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .args(["--sim", "session"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"b: listen 10.0.0.2:4791\n").unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap(); // the reply has begun: the session is running
    std::thread::sleep(Duration::from_millis(200));
    ctrl_c(child.id());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(130), "{rest}");
    let last: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "end", "the session still says it ended");
    assert_eq!(last["requests"], 1);

    // serve, interrupted, prints its summary and exits 130.
    let mut child = std::process::Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .args(["--sim", "serve", "10.0.0.1:4791"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    out.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ctrl_c(child.id());
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{text}");
    assert_contains(&text, "summary (interrupted): 0 events");
}

#[test]
fn filters_choose_the_events_shown_by_kind_and_cause() {
    let shown = |filter: &[&str]| -> Vec<(String, String)> {
        let mut args = vec![
            "--json",
            "serve",
            "10.0.0.1:4791",
            "--sim-peer",
            "--connections",
            "1",
        ];
        args.extend(filter);
        let r = run(sim(&args));
        r.exits(0);
        json_lines(&r.stdout)
            .into_iter()
            .filter(|l| l["host"] == "a" && l["type"] == "event")
            .map(|l| {
                (
                    l["kind"].as_str().unwrap().to_owned(),
                    l["cause"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |k: &str, c: &str| (k.to_owned(), c.to_owned());
    assert_eq!(
        shown(&[]),
        [
            pair("accepted", "none"),
            pair("disconnected", "peer"),
            pair("closed", "none")
        ]
    );
    assert_eq!(shown(&["--cause", "peer"]), [pair("disconnected", "peer")]);
    assert_eq!(
        shown(&["--kind", "accepted", "--kind", "closed"]),
        [pair("accepted", "none"), pair("closed", "none")]
    );
    assert!(shown(&["--kind", "accepted", "--cause", "peer"]).is_empty());
    // A kind or cause that does not exist is a usage error that names the choices.
    let r = run(sim(&["watch", "--kind", "disconected"]));
    r.exits(2);
    assert_contains(&r.stderr, "possible values: connected, accepted");
}

#[test]
fn faults_and_quotas_from_the_command_line_and_a_session() {
    // A silent link loss, noticed by the send posted after it.
    let r = run(sim(&[
        "connect",
        "10.0.0.2:4791",
        "--sim-peer",
        "--sim-inject",
        "link-loss",
        "--sim-inject-after",
        "100ms",
        "--send",
        "1",
    ]));
    r.exits(0);
    in_order(
        &lines_of(&r.stdout, "a"),
        &[
            "injected link-loss on connection",
            "posted 1 sends",
            "disconnected cause=transport-error status=STATUS_IO_TIMEOUT",
            "closed status=STATUS_SUCCESS",
            "summary (closed)",
            "send ok=0 cancelled=0 failed=1",
        ],
    );
    // A peer reset, with the provider's reset reason.
    let r = run(sim(&[
        "connect",
        "10.0.0.2:4791",
        "--sim-peer",
        "--sim-inject",
        "peer-reset",
    ]));
    r.exits(0);
    in_order(
        &lines_of(&r.stdout, "a"),
        &[
            "injected peer-reset",
            "disconnected cause=peer status=STATUS_SUCCESS callback=fired reason=2 (reset)",
            "summary (peer)",
        ],
    );
    // Sends planned after a fault that ended the connection: the refused POST is told and
    // the connection still ends normally.
    let r = run(sim(&[
        "connect",
        "10.0.0.2:4791",
        "--sim-peer",
        "--sim-inject",
        "cq-fatal",
        "--send",
        "1",
    ]));
    r.exits(0);
    in_order(
        &lines_of(&r.stdout, "a"),
        &[
            "injected cq-fatal",
            "disconnected cause=transport-error status=STATUS_INTERNAL_ERROR",
            "summary (",
        ],
    );
    let r = device(&["connect", "10.0.0.2:4791", "--sim-inject", "peer-reset"]);
    r.exits(2);
    assert_contains(&r.stderr, "--sim-inject breaks a simulated connection");
    // Quotas: one listener per handle.
    let r = run(sim(&[
        "--sim-max-listeners",
        "1",
        "scenario",
        scenario_file(
            "quota.ndk",
            "host a if=1 addr=10.0.0.1\na: info\na: listen 10.0.0.1:1\na: listen 10.0.0.1:2 fails=STATUS_QUOTA_EXCEEDED\n",
        )
        .to_str()
        .unwrap(),
    ]));
    r.exits(0);
    assert_contains(&r.stdout, "failed as expected");
    // In a session: inject and remove-adapter as JSON commands.
    let (code, replies) = session(
        r#"{"op":"listen","host":"b","addr":"10.0.0.2:4791"}
{"op":"connect","addr":"10.0.0.2:4791","as":"C"}
{"op":"wait","host":"b","id":"any","kind":"accepted","as":"S"}
{"op":"inject","host":"b","id":"$S","fault":"peer-disconnect"}
{"op":"wait","host":"b","id":"$S","kind":"disconnected","cause":"peer","reason":1}
{"op":"remove-adapter","host":"a"}
{"op":"inject","id":"$C","fault":"cosmic-ray"}
"#,
    );
    assert_eq!(code, 0);
    let ok: Vec<bool> = replies[..7].iter().map(|r| r["ok"] == true).collect();
    assert_eq!(
        ok,
        [true, true, true, true, true, true, false],
        "{replies:?}"
    );
    assert_contains(
        replies[6]["error"]["message"].as_str().unwrap(),
        "link-loss|peer-reset|peer-disconnect|cq-overrun|cq-fatal",
    );
}

#[test]
fn byte_counters_reach_query_and_the_summaries() {
    let r = run(sim(&[
        "connect",
        "10.0.0.2:4791",
        "--sim-peer",
        "--send",
        "2",
        "--len",
        "512",
        "--disconnect-after",
        "200ms",
    ]));
    r.exits(0);
    // The server's receives took the two sends: the provider's byte count, in QUERY's line
    // (a scenario can expect recv_bytes=1024) and in the summary.
    in_order(
        &lines_of(&r.stdout, "b"),
        &["recv_ok=2", "1024 bytes received, 0 bytes of sends posted"],
    );
    assert!(
        lines_of(&r.stdout, "b")
            .iter()
            .any(|l| l.contains("recv_ok=2") && l.ends_with("recv_bytes=1024 send_bytes_posted=0")),
        "{}",
        r.stdout
    );
    in_order(
        &lines_of(&r.stdout, "a"),
        &["send ok=2 cancelled=0 failed=0; 0 bytes received, 1024 bytes of sends posted"],
    );
}

#[test]
fn a_watch_ends_at_a_buffered_closed_and_says_why_it_ended() {
    // The server's WAIT takes Disconnected and Closed in one batch; the watch that follows
    // shows the buffered Closed and ends there, without waiting out its 20 s.
    let start = Instant::now();
    let r = scenario(
        "watch-closed.ndk",
        "host server if=2 addr=10.0.0.2
host client if=1 addr=10.0.0.1
server: listen 10.0.0.2:4821
client: connect 10.0.0.2:4821 -> C
server: wait any kind=accepted -> S
server: close $S
server: wait $S kind=disconnected cause=local-abortive
server: watch $S for=20s
",
        &[],
    );
    r.exits(0);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_contains(&r.stdout, "closed");
    // A single watch ends with a summary of what it showed and why it ended.
    let r = run(sim(&["watch", "--for", "200ms"]));
    r.exits(0);
    assert_contains(&r.stdout, "summary (time): 0 events (none), connections: 0");
    let r = run(sim(&["--json", "watch", "--for", "100ms"]));
    let last = json_lines(&r.stdout).pop().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["ended_by"].as_str()),
        (Some("summary"), Some("time"))
    );
}
