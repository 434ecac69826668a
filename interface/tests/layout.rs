//! The interface version must change when a root module's layout does.
//!
//! abi_stable checks layouts when a library is loaded, but only against the
//! engine it is loaded into: if a type that crosses the boundary changes and
//! the version stays (the `Host` vtable grew once while the interface stayed
//! 0.1.0), libraries built before and after claim the same interface and
//! fail with a layout dump instead of "rebuild against 0.2.x". So the layout
//! of each root module, with every type reachable from it, is fingerprinted
//! (SHA-256 of a canonical description) and compared with the fingerprints
//! recorded per interface version in `interface/layout.lock`: within one
//! generation (the compatibility policy in `src/lib.rs`) the layout must not
//! change.
//!
//! Layout sizes are those of 64-bit targets; 32-bit targets are not checked.
#![cfg(target_pointer_width = "64")]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use abi_stable::{type_layout::TypeLayout, StableAbi};
use plugboard_interface::adapter::AdapterRoot_Ref;
use plugboard_interface::plugin::PluginRoot_Ref;
use plugboard_interface::INTERFACE_VERSION;
use sha2::{Digest, Sha256};

const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/layout.lock");
const UPDATE: &str = "UPDATE_LAYOUT=1 cargo test -p plugboard-interface --test layout";

/// Each root module, by the name `layout.lock` records it under.
fn roots() -> [(&'static str, &'static TypeLayout); 2] {
    [
        ("plugin", <PluginRoot_Ref as StableAbi>::LAYOUT),
        ("adapter", <AdapterRoot_Ref as StableAbi>::LAYOUT),
    ]
}

/// Every type reachable from `root`, depth first in declaration order:
/// name with generics, package, size, alignment, representation, fields
/// (names, types, function signatures), variants, tags, extra checks.
///
/// Package *versions* are left out: the interface's own is the key of the
/// lock file, and abi_stable's or std's change with releases that keep the
/// ABI (abi_stable accepts semver-compatible versions). Nothing in it
/// depends on the build (no type ids, addresses or source lines), so debug
/// and release builds agree.
fn describe(root: &'static TypeLayout) -> String {
    let mut out = String::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(layout) = stack.pop() {
        // Type ids only deduplicate within this process; they are not printed.
        if !seen.insert(layout.get_utypeid()) {
            continue;
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "== {} package={} size={} align={} nonzero={} repr={:?} reflection={:?}\n\
             data: {}\ntag: {}",
            layout.full_type(),
            layout.package(),
            layout.size(),
            layout.alignment(),
            layout.is_nonzero(),
            layout.repr_attr(),
            layout.mod_refl_mode(),
            layout.data(),
            layout.tag(),
        );
        for field in layout.phantom_fields().iter() {
            let _ = writeln!(out, "phantom: {field}");
        }
        let mut nested: Vec<&'static TypeLayout> = Vec::new();
        if let Some(checks) = layout.extra_checks() {
            let _ = writeln!(out, "extra checks: {checks}");
            nested.extend(checks.nested_type_layouts().iter().copied());
        }
        nested.extend(layout.shared_vars().type_layouts().iter().map(|f| f()));
        stack.extend(nested.into_iter().rev());
    }
    without_versions(&out)
}

/// Removes abi_stable's ` version:'...'` annotations.
fn without_versions(text: &str) -> String {
    const MARK: &str = " version:'";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        rest = after.find('\'').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn fingerprint(description: &str) -> String {
    Sha256::digest(description.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `0.MINOR.x` before 1.0, `MAJOR.x` after (the compatibility policy).
fn generation(version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match parts.as_slice() {
        ["0", minor, ..] => format!("0.{minor}.x"),
        [major, ..] => format!("{major}.x"),
        [] => version.to_owned(),
    }
}

/// The first version of the next generation.
fn next_generation(version: &str) -> String {
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let mut parts = version.split('.');
    let (major, minor) = (num(parts.next()), num(parts.next()));
    if major == 0 {
        format!("0.{}.0", minor + 1)
    } else {
        format!("{}.0.0", major + 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    version: String,
    root: String,
    fingerprint: String,
}

const HEADER: &str = "\
# Layout fingerprints of plugboard-interface's root modules (each with every
# type reachable from it), per interface version: `<version> <root> <sha256>`.
# Checked by interface/tests/layout.rs, which explains when to add a line.
# Lines of earlier versions stay: they are the history of the ABI.
";

fn read_lock(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let [version, root, fingerprint] = fields[..] else {
                panic!("{}: malformed line `{l}`", path.display());
            };
            Entry {
                version: version.to_owned(),
                root: root.to_owned(),
                fingerprint: fingerprint.to_owned(),
            }
        })
        .collect()
}

fn write_lock(path: &Path, entries: &[Entry]) {
    let mut text = HEADER.to_owned();
    for e in entries {
        let _ = writeln!(text, "{} {} {}", e.version, e.root, e.fingerprint);
    }
    std::fs::write(path, text).unwrap();
}

/// Where the current description of `root` is written when it does not
/// match, for the developer to read.
fn dump(root: &str, description: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("layout-{root}.txt"));
    std::fs::write(&path, description).unwrap();
    path
}

#[test]
fn root_module_layouts_change_only_with_the_interface_generation() {
    let lock = Path::new(LOCK);
    let mut entries = read_lock(lock);
    let update = std::env::var("UPDATE_LAYOUT").unwrap_or_default();
    let (version, gen) = (INTERFACE_VERSION, generation(INTERFACE_VERSION));
    let mut problems = Vec::new();
    let mut changed = false;
    for (root, layout) in roots() {
        let description = describe(layout);
        let current = fingerprint(&description);
        let differing: Vec<Entry> = entries
            .iter()
            .filter(|e| e.root == root && generation(&e.version) == gen)
            .filter(|e| e.fingerprint != current)
            .cloned()
            .collect();
        let replacing = update == "replace" && differing.iter().all(|e| e.version == version);
        if !differing.is_empty() && !replacing {
            let recorded: Vec<&str> = differing.iter().map(|e| e.version.as_str()).collect();
            problems.push(format!(
                "the layout of the {root} root module (or of a type reachable from it) \
                 differs from the one recorded for interface {} in {LOCK}, and interface \
                 {version} is of the same generation ({gen}). A change to any type that \
                 crosses the boundary needs a new generation (see \"Compatibility policy\" \
                 in interface/src/lib.rs): set `version = \"{}\"` in interface/Cargo.toml, \
                 then record the new layout with `{UPDATE}` and commit interface/layout.lock. \
                 The current description is in {}. (Only if the ABI did not change, say \
                 abi_stable now describes the same types differently, rewrite this \
                 version's line with UPDATE_LAYOUT=replace.)",
                recorded.join(", "),
                next_generation(version),
                dump(root, &description).display(),
            ));
            continue;
        }
        let here = entries
            .iter()
            .position(|e| e.root == root && e.version == version);
        match (here, update.is_empty()) {
            (Some(i), _) if entries[i].fingerprint == current => {}
            (Some(i), false) => {
                entries[i].fingerprint = current;
                changed = true;
            }
            (None, false) => {
                entries.push(Entry {
                    version: version.to_owned(),
                    root: root.to_owned(),
                    fingerprint: current,
                });
                changed = true;
            }
            (_, true) => problems.push(format!(
                "no layout of the {root} root module is recorded for interface {version} in \
                 {LOCK}: if this version is new, record it with `{UPDATE}` and commit \
                 interface/layout.lock"
            )),
        }
    }
    if changed {
        write_lock(lock, &entries);
        eprintln!("recorded the layouts of interface {version} in {LOCK}");
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

/// The description reaches nested types and ignores what is not layout.
mod sensitivity {
    use super::*;

    mod v1 {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Inner {
            pub a: u32,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Outer {
            pub inner: Inner,
        }
    }

    mod v2 {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Inner {
            pub a: u32,
            pub b: u32,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Outer {
            pub inner: Inner,
        }
    }

    // The same types as v1, on other source lines, in another module.
    mod v1_moved {
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Inner {
            pub a: u32,
        }
        #[repr(C)]
        #[derive(abi_stable::StableAbi)]
        pub struct Outer {
            pub inner: Inner,
        }
    }

    #[test]
    fn a_field_added_to_a_nested_type_changes_the_fingerprint() {
        let v1 = describe(<v1::Outer as StableAbi>::LAYOUT);
        let v2 = describe(<v2::Outer as StableAbi>::LAYOUT);
        assert_ne!(fingerprint(&v1), fingerprint(&v2));
        assert!(v2.contains("field_name:b"), "{v2}");
        // Source lines and module paths are not part of it.
        let moved = describe(<v1_moved::Outer as StableAbi>::LAYOUT);
        assert_eq!(v1, moved);
    }

    #[test]
    fn versions_are_left_out_and_generations_follow_the_policy() {
        assert_eq!(
            without_versions("type:RString package:'abi_stable' version:'0.11.3'\nnext"),
            "type:RString package:'abi_stable'\nnext"
        );
        assert_eq!(generation("0.1.7"), "0.1.x");
        assert_eq!(generation("2.3.4"), "2.x");
        assert_eq!(next_generation("0.1.7"), "0.2.0");
        assert_eq!(next_generation("2.3.4"), "3.0.0");
    }
}
