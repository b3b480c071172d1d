//! The INF template `inf/ndkdisc.inx`, checked on any host: every section, key and placeholder
//! the packaging flow (stampinf, infverif, inf2cat) and a root-enumerated KMDF install need,
//! and that the driver, the scripts and the workflow name the same things.
//!
//! It lives here, as an integration test of the driver crate that only reads files, because
//! the driver is a `cdylib` that is empty off Windows: nothing can import it, but
//! `cargo test --workspace` runs this file on every host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `[section]`: its `key = value` entries and its bare lines, in order.
#[derive(Debug, Default)]
struct Section {
    entries: Vec<(String, String)>,
    lines: Vec<String>,
}

impl Section {
    /// The value of `key` (INF keys are case-insensitive); exactly one occurrence.
    fn get(&self, key: &str) -> &str {
        let found: Vec<&str> = self
            .entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(found.len(), 1, "key `{key}` must appear exactly once");
        found[0]
    }
}

/// An INF file: sections by lower-cased name.
struct Inf {
    sections: BTreeMap<String, Section>,
}

impl Inf {
    fn parse(text: &str) -> Self {
        let mut sections: BTreeMap<String, Section> = BTreeMap::new();
        let mut current: Option<String> = None;
        for raw in text.lines() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name.strip_suffix(']').expect("section header ends with ]");
                let key = name.to_ascii_lowercase();
                assert!(
                    !sections.contains_key(&key),
                    "section [{name}] is declared twice"
                );
                sections.insert(key.clone(), Section::default());
                current = Some(key);
                continue;
            }
            let section = sections
                .get_mut(current.as_ref().expect("a line before the first section"))
                .expect("current section exists");
            match line.split_once('=') {
                Some((k, v)) => section
                    .entries
                    .push((k.trim().to_owned(), v.trim().to_owned())),
                None => section.lines.push(line.to_owned()),
            }
        }
        Self { sections }
    }

    fn section(&self, name: &str) -> &Section {
        self.sections
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("section [{name}] is missing"))
    }
}

/// The line without its `;` comment (a `;` inside double quotes is text).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Comma-separated fields, trimmed.
fn fields(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let p = repo().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn inx() -> Inf {
    Inf::parse(&read("inf/ndkdisc.inx"))
}

const HARDWARE_ID: &str = r"Root\NdkDisc";
const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

#[test]
fn version_section() {
    let inf = inx();
    let v = inf.section("Version");
    assert_eq!(v.get("Signature"), "\"$WINDOWS NT$\"");
    assert!(!v.get("Class").is_empty());
    let guid = v.get("ClassGuid");
    assert!(
        guid.len() == 38 && guid.starts_with('{') && guid.ends_with('}'),
        "ClassGuid {guid} is a braced GUID"
    );
    assert_eq!(v.get("Provider"), "%ManufacturerName%");
    assert_eq!(v.get("CatalogFile"), "ndkdisc.cat");
    // stampinf writes the value; the key must be there for it.
    let _ = v.get("DriverVer");
    assert_eq!(v.get("PnpLockdown"), "1");
}

#[test]
fn models_for_amd64_and_arm64_with_the_root_hardware_id() {
    let inf = inx();
    let m = inf.section("Manufacturer");
    assert_eq!(m.entries.len(), 1);
    let (name, value) = &m.entries[0];
    assert_eq!(name, "%ManufacturerName%");
    let f = fields(value);
    let models = f[0];
    let decorations = &f[1..];
    for arch in ["NTamd64", "NTarm64"] {
        let decoration = decorations
            .iter()
            .find(|d| d.starts_with(arch))
            .unwrap_or_else(|| panic!("no {arch} decoration in [Manufacturer]"));
        let section = inf.section(&format!("{models}.{decoration}"));
        assert_eq!(section.entries.len(), 1);
        let (desc, model) = &section.entries[0];
        assert_eq!(desc, "%NdkDisc.DeviceDesc%");
        assert_eq!(fields(model), ["NdkDisc_Device", HARDWARE_ID]);
    }
}

#[test]
fn install_copies_the_sys_to_the_driver_store() {
    let inf = inx();
    assert_eq!(inf.section("DestinationDirs").get("DefaultDestDir"), "13");
    let copy = inf.section("NdkDisc_Device.NT").get("CopyFiles");
    assert_eq!(inf.section(copy).lines, ["ndkdisc.sys"]);
    assert_eq!(
        fields(inf.section("SourceDisksFiles").get("ndkdisc.sys"))[0],
        "1"
    );
    assert!(
        inf.section("SourceDisksNames")
            .entries
            .iter()
            .any(|(k, _)| k == "1")
    );
}

#[test]
fn kernel_service_demand_start() {
    let inf = inx();
    let add = fields(inf.section("NdkDisc_Device.NT.Services").get("AddService"));
    assert_eq!(add[0], "ndkdisc", "service name = driver binary name");
    assert_eq!(add[1], "%SPSVCINST_ASSOCSERVICE%");
    let service = inf.section(add[2]);
    assert_eq!(service.get("ServiceType"), "1", "SERVICE_KERNEL_DRIVER");
    assert_eq!(service.get("StartType"), "3", "SERVICE_DEMAND_START");
    assert_eq!(service.get("ErrorControl"), "1");
    assert_eq!(service.get("ServiceBinary"), r"%13%\ndkdisc.sys");
    assert_eq!(
        inf.section("Strings").get("SPSVCINST_ASSOCSERVICE"),
        "0x00000002"
    );
}

#[test]
fn kmdf_section_with_the_stampinf_placeholder() {
    let inf = inx();
    let kmdf = fields(inf.section("NdkDisc_Device.NT.Wdf").get("KmdfService"));
    assert_eq!(kmdf[0], "ndkdisc");
    assert_eq!(
        inf.section(kmdf[1]).get("KmdfLibraryVersion"),
        "$KMDFVERSION$"
    );
}

#[test]
fn device_security_is_system_and_administrators() {
    let inf = inx();
    let add_reg = inf.section("NdkDisc_Device.NT.HW").get("AddReg");
    let line = &inf.section(add_reg).lines;
    assert_eq!(line.len(), 1);
    assert_eq!(
        fields(&line[0]),
        ["HKR", "", "Security", "", &format!("\"{SDDL}\"")]
    );
    // The driver assigns the same SDDL to its named device object.
    assert!(read("driver/kmdf/src/device.rs").contains(SDDL));
}

#[test]
fn only_stampinf_placeholders_and_every_string_defined() {
    let text = read("inf/ndkdisc.inx");
    let body: String = text
        .lines()
        .map(strip_comment)
        .collect::<Vec<_>>()
        .join("\n");
    let dollars: Vec<&str> = body.split('$').skip(1).step_by(2).collect();
    assert_eq!(dollars, ["WINDOWS NT", "KMDFVERSION"]);
    let inf = Inf::parse(&text);
    let strings = inf.section("Strings");
    for token in body.split('%').skip(1).step_by(2) {
        if token == "13" {
            continue; // DIRID
        }
        assert!(
            strings.entries.iter().any(|(k, _)| k == token),
            "%{token}% is not defined in [Strings]"
        );
    }
}

#[test]
fn scripts_workflow_and_readme_agree_with_the_inf() {
    let install = read("tests/windows/Install-NdkDisc.ps1");
    assert!(
        install.contains(HARDWARE_ID),
        "install script uses the hardware id"
    );
    assert!(install.contains("ndkdisc.inf"));
    let workflow = read(".github/workflows/windows.yml");
    assert!(
        workflow.contains("ndkdisc_package"),
        "workflow uploads the package"
    );
    let readme = read("README.md");
    assert!(readme.contains("## On a real Windows machine"));
    for script in [
        "Enable-TestSigning.ps1",
        "Install-NdkDisc.ps1",
        "Invoke-NdkDiscScenarios.ps1",
        "Uninstall-NdkDisc.ps1",
    ] {
        assert!(
            repo().join("tests/windows").join(script).is_file(),
            "{script} exists"
        );
        assert!(readme.contains(script), "README walks through {script}");
    }
}

/// The package the workflow uploads has what `Invoke-NdkDiscScenarios.ps1` looks for by
/// default: `ndkctl.exe` in the package folder, the scenario files in `scenarios\`, the scripts in
/// `scripts\`, and the README names the scenario files the script runs. That every ndkctl command
/// line of the scripts is a real subcommand with real flags is checked against the built binary
/// in `tools/ndkctl/tests/scripts.rs`.
#[test]
fn the_package_has_ndkctl_and_the_scenarios_where_the_script_looks() {
    let workflow = read(".github/workflows/windows.yml");
    for needle in [
        "cargo build --locked --release -p ndkctl --target ${{ matrix.target.triple }}",
        "Copy-Item \"target/${{ matrix.target.triple }}/release/ndkctl.exe\" $package",
        "Copy-Item tools/ndkctl/scenarios/*.ndk \"$package/scenarios\"",
        "Copy-Item -Recurse -Force tests/windows \"$package/scripts\"",
    ] {
        assert!(workflow.contains(needle), "workflow: `{needle}`");
    }
    let script = read("tests/windows/Invoke-NdkDiscScenarios.ps1");
    for needle in [
        "(Join-Path (Split-Path -Parent $PSScriptRoot) 'ndkctl.exe')",
        "(Join-Path $packageRoot 'scenarios')",
    ] {
        assert!(
            script.contains(needle),
            "Invoke-NdkDiscScenarios.ps1: `{needle}`"
        );
    }
    let readme = read("README.md");
    let mut named = 0;
    for piece in script.split('\'') {
        if Path::new(piece).extension().is_some_and(|e| e == "ndk")
            && !piece.contains(char::is_whitespace)
        {
            named += 1;
            assert!(
                repo().join("tools/ndkctl/scenarios").join(piece).is_file(),
                "{piece} is shipped"
            );
            assert!(readme.contains(piece), "README names {piece}");
        }
    }
    assert!(named >= 4, "the script names the scenario files it runs");
}
