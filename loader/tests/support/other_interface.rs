//! Fixtures built against a *different* interface crate:
//!
//! - `drift`: a copy of the interface whose `Invocation` has one more field
//!   than the engine's, as a plugin built against a forked interface would
//!   (incompatible layout);
//! - `future`: a copy whose version is 0.9.0 (incompatible version).
//!
//! They cannot live in the workspace (two packages named
//! `plugboard-interface`), so it is generated and built here with a nested
//! `cargo build --offline` into `target/nested`, which persists between
//! runs: only the first run pays for compiling abi_stable again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The text the mutation inserts after; the test fails loudly if the
/// interface no longer has it.
const ANCHOR: &str = "pub struct Invocation<'a> {\n";
const ADDED_FIELD: &str =
    "    /// Fixture drift: a field the engine does not know.\n    pub network: RStr<'a>,\n";

/// The plugin; `NAME` is replaced by the variant's name.
const PLUGIN_SRC: &str = r#"
use plugboard_interface::prelude::*;

pub struct Fixture;

impl Plugin for Fixture {
    fn manifest() -> Manifest<Self> {
        Manifest::new("NAME", "0.0.0").command("NAME", "NAME$", "!NAME", |_, _| Ok("NAME".into()))
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Fixture)
    }
}

export_plugin!(Fixture);
"#;

/// The version the `future` variant claims.
pub const FUTURE_VERSION: &str = "0.9.0";

/// The workspace root: this file is included by the loader's tests
/// (`loader/`) and by the root package's (`tests/demo.rs`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("interface/Cargo.toml").is_file())
        .expect("the package is inside the workspace")
        .to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(contents) {
        fs::write(path, contents).unwrap();
    }
}

/// The lines of `table` in a TOML text (up to the next table header).
fn toml_table<'a>(text: &'a str, table: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .skip_while(move |line| line.trim() != table)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
}

/// The "Write a plugin" example of the README, built exactly as written
/// (its `Cargo.toml` and `src/lib.rs` blocks), against the real interface.
pub fn readme_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_readme_plugin).clone()
}

fn build_readme_plugin() -> PathBuf {
    let root = workspace_root();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("## Write a plugin")
        .nth(1)
        .expect("the README has a `Write a plugin` section");
    let block = |lang: &str| {
        let start = section
            .find(&format!("```{lang}\n"))
            .unwrap_or_else(|| panic!("a {lang} block"))
            + lang.len()
            + 4;
        let len = section[start..].find("```").unwrap();
        section[start..start + len].to_owned()
    };
    let manifest = block("toml");
    let lib_rs = block("rust");
    assert!(
        manifest.lines().count() + lib_rs.lines().count() <= 25,
        "the README promises 25 lines"
    );
    let interface = root.join("interface");
    let manifest = manifest.replace(
        "\"../plugboard/interface\"",
        &format!("{:?}", interface.display().to_string()),
    );
    assert!(
        manifest.contains(&interface.display().to_string()),
        "the path dependency was rewritten"
    );

    let nested = nested_dir();
    let krate = nested.join("readme-hello");
    fs::create_dir_all(krate.join("src")).unwrap();
    // Its own workspace: it lives under this repository's target dir.
    write_if_changed(
        &krate.join("Cargo.toml"),
        &format!("{manifest}\n[workspace]\n"),
    );
    write_if_changed(&krate.join("src/lib.rs"), &lib_rs);
    fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    cargo_build(&krate.join("Cargo.toml"), &nested, true, "hello")
}

/// Builds the workspace of `manifest` into `<nested>/target`, offline, and
/// returns the path of its library `name`.
fn cargo_build(manifest: &Path, nested: &Path, release: bool, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--offline", "--quiet"]);
    if release {
        command.arg("--release");
    }
    let status = command
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", nested.join("target"))
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running the nested cargo build");
    assert!(status.success(), "building {} failed", manifest.display());
    let lib = nested
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join(format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// `target/nested`, beside this profile's output.
fn nested_dir() -> PathBuf {
    super::deps_dir()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("nested")
}

/// The `drift` plugin library (built once per test run, incrementally
/// across runs).
pub fn drift_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build("drift", |interface| {
                let message_rs = interface.join("src/message.rs");
                let source = fs::read_to_string(&message_rs).unwrap();
                assert!(
                    source.contains(ANCHOR),
                    "interface/src/message.rs no longer has `{ANCHOR}`"
                );
                fs::write(
                    &message_rs,
                    source.replacen(ANCHOR, &format!("{ANCHOR}{ADDED_FIELD}"), 1),
                )
                .unwrap();
            })
        })
        .clone()
}

/// The `future` plugin library, built against interface [`FUTURE_VERSION`].
pub fn future_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build("future", |interface| {
                let manifest = interface.join("Cargo.toml");
                let text = fs::read_to_string(&manifest).unwrap();
                let line = format!("version = \"{}\"", plugboard_interface::INTERFACE_VERSION);
                assert!(
                    text.contains(&line),
                    "interface/Cargo.toml no longer has `{line}`"
                );
                fs::write(
                    &manifest,
                    text.replacen(&line, &format!("version = \"{FUTURE_VERSION}\""), 1),
                )
                .unwrap();
            })
        })
        .clone()
}

fn build(name: &str, mutate: impl FnOnce(&Path)) -> PathBuf {
    let root = workspace_root();
    let nested = nested_dir();
    let ws = nested.join(format!("{name}-ws"));

    // The interface, copied and mutated.
    let interface = ws.join("interface");
    let _ = fs::remove_dir_all(interface.join("src"));
    copy_dir(&root.join("interface/src"), &interface.join("src"));
    fs::copy(
        root.join("interface/Cargo.toml"),
        interface.join("Cargo.toml"),
    )
    .unwrap();
    mutate(&interface);

    // The plugin.
    let plugin = ws.join(name);
    fs::create_dir_all(plugin.join("src")).unwrap();
    write_if_changed(
        &plugin.join("src/lib.rs"),
        &PLUGIN_SRC.replace("NAME", name),
    );
    write_if_changed(
        &plugin.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nplugboard-interface = {{ path = \"../interface\" }}\n"
        ),
    );
    // The copied interface manifest inherits from the workspace: give the
    // nested workspace the real one's shared sections (minus our own crates).
    let root_manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut ws_manifest =
        format!("[workspace]\nresolver = \"2\"\nmembers = [\"interface\", \"{name}\"]\n");
    for table in ["[workspace.package]", "[workspace.dependencies]"] {
        ws_manifest.push_str(&format!("\n{table}\n"));
        ws_manifest.extend(
            toml_table(&root_manifest, table)
                .filter(|line| !line.starts_with("plugboard-"))
                .map(|line| format!("{line}\n")),
        );
    }
    write_if_changed(&ws.join("Cargo.toml"), &ws_manifest);
    // The workspace's lock file pins the same dependency versions, already
    // downloaded by the outer build: the nested build needs no network.
    fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();

    cargo_build(&ws.join("Cargo.toml"), &nested, false, name)
}
