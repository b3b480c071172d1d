//! The on-target PowerShell scripts (`tests/windows/*.ps1`) against the real CLI: every ndkctl
//! command line they run names a real subcommand and only flags that subcommand accepts, runs
//! on the device backend (never `--sim`), and every scenario file they name is shipped.
//!
//! The real subcommands and flags come from the built binary's `--help` (not from the source),
//! so a renamed subcommand or flag fails here. The scripts are read, not run (no PowerShell
//! here): ndkctl command lines are the inline `@(...)` arrays passed to `Invoke-NdkCtl`, or the
//! words after `& $NdkCtl`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ndkctl");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn help(args: &[&str]) -> String {
    let o = Command::new(BIN)
        .env_remove("NDKCTL_BACKEND")
        .args(args)
        .arg("--help")
        .output()
        .expect("ndkctl runs");
    assert!(o.status.success(), "ndkctl {args:?} --help fails");
    String::from_utf8(o.stdout).expect("utf-8 help")
}

/// The entries of a `--help` section (`Commands:` or `Options:`): the first word of each
/// indented line until the next unindented line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The CLI as the binary describes itself: subcommand -> the long flags it accepts (its own and
/// the global ones).
struct Cli {
    subcommands: Vec<(String, BTreeSet<String>)>,
}

impl Cli {
    fn from_binary() -> Self {
        let top = help(&[]);
        let names: Vec<String> = section(&top, "Commands:")
            .into_iter()
            .filter(|n| *n != "help")
            .map(str::to_owned)
            .collect();
        assert!(names.len() >= 10, "subcommands from --help: {names:?}");
        let subcommands = names
            .into_iter()
            .map(|name| {
                let text = help(&[&name]);
                let flags = text
                    .lines()
                    .flat_map(str::split_whitespace)
                    .filter(|w| w.starts_with("--"))
                    .map(|w| w.trim_end_matches([',', '.', ')', '`']).to_owned())
                    .filter(|w| {
                        w.len() > 2 && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    })
                    .collect();
                (name, flags)
            })
            .collect();
        Self { subcommands }
    }

    fn flags(&self, subcommand: &str) -> Option<&BTreeSet<String>> {
        self.subcommands
            .iter()
            .find(|(n, _)| n == subcommand)
            .map(|(_, f)| f)
    }
}

/// One ndkctl command line found in a script: its arguments, `None` where an element is not a
/// literal (a variable or an expression).
#[derive(Debug)]
struct Invocation {
    line: usize,
    args: Vec<Option<String>>,
}

/// A PowerShell literal: `'text'`, or `"text"` without `$` (no interpolation), or a bare word.
fn literal(item: &str) -> Option<String> {
    let item = item.trim();
    if let Some(s) = item.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Some(s.to_owned());
    }
    if let Some(s) = item.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return (!s.contains('$')).then(|| s.to_owned());
    }
    (!item.is_empty() && !item.starts_with(['$', '(', '@'])).then(|| item.to_owned())
}

/// The contents of the first `@( ... )` in `text` (parentheses balanced, quotes respected).
fn array_literal(text: &str) -> Option<&str> {
    let start = text.find("@(")? + 2;
    let mut depth = 1;
    let mut quote: Option<char> = None;
    for (i, c) in text[start..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every ndkctl command line in a script's text.
fn invocations(script: &str) -> Result<Vec<Invocation>, String> {
    let mut found = Vec::new();
    let mut in_block_comment = false;
    for (i, raw) in script.lines().enumerate() {
        let line = i + 1;
        let code = raw.trim_start();
        if code.starts_with("<#") {
            in_block_comment = true;
        }
        if in_block_comment {
            in_block_comment = !code.contains("#>");
            continue;
        }
        if code.starts_with('#') || code.starts_with("function ") {
            continue;
        }
        if let Some(at) = code.find("Invoke-NdkCtl") {
            let rest = &code[at..];
            let items = array_literal(rest).ok_or_else(|| {
                format!("line {line}: Invoke-NdkCtl without an inline @(...) argument array")
            })?;
            found.push(Invocation {
                line,
                args: items.split(',').map(literal).collect(),
            });
        }
        for call in ["& $NdkCtl", "&$NdkCtl"] {
            if let Some(at) = code.find(call) {
                let rest = code[at + call.len()..]
                    .split(['|', ';', '}'])
                    .next()
                    .unwrap_or_default();
                found.push(Invocation {
                    line,
                    args: rest
                        .split_whitespace()
                        .take_while(|w| !w.starts_with(['2', '*', '>']))
                        .map(literal)
                        .collect(),
                });
            }
        }
    }
    Ok(found)
}

/// Check one script's ndkctl command lines against the CLI; the subcommands they use.
fn check_script(cli: &Cli, script: &str) -> Result<Vec<String>, String> {
    // A command line this scan cannot see (say, an array in a table handed to Start-Process)
    // would go unchecked: the only Start-Process of ndkctl is the one in Invoke-NdkCtl.
    let started = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("Start-Process"))
        .filter(|l| l.contains("$NdkCtl"))
        .count();
    if started > 1 || (started == 1 && !script.contains("function Invoke-NdkCtl")) {
        return Err(
            "ndkctl is started other than through Invoke-NdkCtl or `& $NdkCtl`: this check cannot read those command lines"
                .into(),
        );
    }
    let mut used = Vec::new();
    for inv in invocations(script)? {
        let line = inv.line;
        let Some(sub_at) = inv
            .args
            .iter()
            .position(|a| a.as_deref().is_none_or(|a| !a.starts_with('-')))
        else {
            return Err(format!("line {line}: no subcommand in {:?}", inv.args));
        };
        let sub = inv.args[sub_at]
            .as_deref()
            .ok_or_else(|| format!("line {line}: the subcommand must be a literal"))?;
        let flags = cli
            .flags(sub)
            .ok_or_else(|| format!("line {line}: `ndkctl {sub}` is not a subcommand of ndkctl"))?;
        for flag in inv.args.iter().flatten().filter(|a| a.starts_with("--")) {
            let name = flag.split('=').next().unwrap_or_default();
            if name == "--sim" || name == "--backend" || name.starts_with("--sim-") {
                return Err(format!(
                    "line {line}: `{flag}`: the on-target scripts run the device backend"
                ));
            }
            if !flags.contains(name) {
                return Err(format!("line {line}: `ndkctl {sub}` has no flag `{name}`"));
            }
        }
        used.push(sub.to_owned());
    }
    Ok(used)
}

fn scripts() -> Vec<(String, String)> {
    let dir = repo().join("tests/windows");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/windows")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ps1"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("script readable");
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_cli_is_read_from_the_binary() {
    let cli = Cli::from_binary();
    let scenario = cli.flags("scenario").expect("scenario subcommand");
    for flag in ["--set", "--json", "--device", "--read-only"] {
        assert!(scenario.contains(flag), "{flag} in {scenario:?}");
    }
    assert!(cli.flags("wait").expect("wait").contains("--timeout"));
    assert!(cli.flags("frobnicate").is_none());
}

#[test]
fn the_windows_scripts_run_real_ndkctl_subcommands_and_flags() {
    let cli = Cli::from_binary();
    let mut used = BTreeSet::new();
    for (name, text) in scripts() {
        match check_script(&cli, &text) {
            Ok(subs) => used.extend(subs),
            Err(e) => panic!("tests/windows/{name}: {e}"),
        }
    }
    // The scenario runner does its work through these; if none is found, the scan is broken.
    for sub in ["info", "adapters", "scenario"] {
        assert!(
            used.contains(sub),
            "no `ndkctl {sub}` found in the scripts: {used:?}"
        );
    }
}

#[test]
fn made_up_subcommands_flags_and_the_simulator_are_rejected() {
    let cli = Cli::from_binary();
    let ok =
        "$r = Invoke-NdkCtl -Name 'x' -Arguments (@('--json', 'scenario', $file) + $sets) `\r\n";
    assert_eq!(check_script(&cli, ok), Ok(vec!["scenario".to_owned()]));
    assert_eq!(
        check_script(&cli, "Save-Output 'i' { & $NdkCtl --json info 2>&1 }"),
        Ok(vec!["info".to_owned()])
    );
    assert_eq!(
        check_script(&cli, "<#\n.DESCRIPTION\nInvoke-NdkCtl runs ndkctl\n#>\n"),
        Ok(vec![])
    );
    for bad in [
        "Invoke-NdkCtl -Name 'x' -Arguments @('--json', 'frobnicate', '1')",
        "Invoke-NdkCtl -Name 'x' -Arguments @('listen', '--address', '10.0.0.1:1')",
        "Invoke-NdkCtl -Name 'x' -Arguments @('--sim', 'info')",
        "Invoke-NdkCtl -Name 'x' -Arguments @($sub, '1')",
        "Invoke-NdkCtl -Name 'x' -Arguments $args",
        "& $NdkCtl connect-local-close 1",
        "& $NdkCtl --json wait --wait-events",
    ] {
        assert!(check_script(&cli, bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn the_scenario_files_the_scripts_name_are_shipped() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut named = 0;
    for (name, text) in scripts() {
        for piece in text.split(['\'', '"']) {
            if Path::new(piece).extension().is_some_and(|e| e == "ndk")
                && !piece.contains(['*', ' ', '$', '\\', '/'])
            {
                named += 1;
                assert!(
                    shipped.join(piece).is_file(),
                    "tests/windows/{name} names {piece}, not in tools/ndkctl/scenarios"
                );
            }
        }
    }
    assert!(named >= 3, "the scenario runner names the files it runs");
}
