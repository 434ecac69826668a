use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use plugboard_loader::library::{open, open_with};
use plugboard_loader::trust::{digest, hex, parse_allowlist};
use plugboard_loader::{
    Engine, EngineConfig, Kind, LoadError, LoadErrorKind, LoadPath, TrustPolicy,
};

use crate::support::{lib, start, temp_dir};

fn line(err: &LoadError) -> String {
    let line = err.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(!line.contains("/proc/self/fd/"), "{line}");
    line
}

fn mkdir(path: &Path, mode: u32) -> PathBuf {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    fs::canonicalize(path).unwrap()
}

/// A copy of a built library, mode 0755, in `dir`.
fn copy(name: &str, dir: &Path, file: &str) -> PathBuf {
    let to = dir.join(file);
    fs::copy(lib(name), &to).unwrap();
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    to
}

#[test]
fn an_allowlist_opens_each_library_not_the_first_one_again() {
    let names = [
        "plugboard_bacon",
        "plugboard_discord",
        "plugboard_fixture_panics",
        "plugboard_fixture_sleeps",
    ];
    let listed: String = names
        .iter()
        .map(|n| {
            let d = digest(&mut fs::File::open(lib(n)).unwrap()).unwrap();
            format!("{}  lib{n}.so\n", hex(&d))
        })
        .collect();
    let policy = TrustPolicy {
        allowlist: Some(parse_allowlist(&listed).unwrap()),
        ..TrustPolicy::default()
    };
    let opened: Vec<(Kind, String)> = names
        .iter()
        .map(|n| {
            let c = open_with(&lib(n), &policy).unwrap();
            assert_eq!(c.source().to_string(), lib(n).display().to_string());
            (c.kind(), c.name().to_owned())
        })
        .collect();
    assert_eq!(
        opened,
        [
            (Kind::Plugin, "bacon".to_owned()),
            (Kind::Adapter, "discord".to_owned()),
            (Kind::Plugin, "panics".to_owned()),
            (Kind::Plugin, "sleeps".to_owned()),
        ]
    );
}

#[test]
fn rewriting_or_truncating_a_loaded_library_does_not_touch_the_engine() {
    let dir = temp_dir("rewrite");
    let bacon = copy("plugboard_bacon", dir.path(), "libbacon.so");
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_discord"))
            .library(&bacon),
    );
    let answers = |who: &str| {
        feed.say(who, "!bacon");
        assert_eq!(
            replies.wait_for(1),
            [format!("gives {who} a strip of delicious bacon.")]
        );
    };
    answers("before");
    // `cp new.so loaded.so`: the same inode, truncated and rewritten.
    let original = fs::read(&bacon).unwrap();
    fs::write(&bacon, &original).unwrap();
    answers("same-bytes");
    fs::write(&bacon, fs::read(lib("plugboard_fixture_sleeps")).unwrap()).unwrap();
    answers("other-bytes");
    fs::OpenOptions::new()
        .write(true)
        .open(&bacon)
        .unwrap()
        .set_len(0)
        .unwrap();
    answers("truncated");
    drop(feed);
    assert!(engine.shutdown().clean);
}

#[test]
fn an_undefined_symbol_is_refused_at_load_time_not_at_the_first_call() {
    let path = lib("plugboard_fixture_unresolved");
    let err = open(&path).err().expect("it cannot be linked");
    assert!(
        matches!(&err.kind, LoadErrorKind::Unresolved { symbol } if symbol == "plugboard_fixture_nowhere"),
        "{err:?}"
    );
    assert_eq!(
        line(&err),
        format!(
            "{}: cannot be linked: undefined symbol plugboard_fixture_nowhere",
            path.display()
        )
    );
}

#[test]
fn a_symlink_into_a_world_writable_directory_is_refused() {
    let dir = temp_dir("symlink");
    let root = mkdir(&dir.path().join("root"), 0o755);
    let open_dir = mkdir(&root.join("open"), 0o777);
    let target = copy("plugboard_bacon", &open_dir, "libbacon.so");
    let plugins = mkdir(&root.join("plugins"), 0o755);
    let link = plugins.join("libbacon.so");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let expected = format!(
        "{}: refused: it resolves to {}, whose directory {} is writable by other users \
         (mode 777); fix the permissions or pass --allow-writable",
        link.display(),
        target.display(),
        open_dir.display()
    );
    let err = open_with(&link, &TrustPolicy::default()).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::Untrusted(_)), "{err:?}");
    assert_eq!(line(&err), expected);
    // The same through the load path; --allow-writable lets it in.
    let engine = Engine::builder(EngineConfig::default())
        .load_path(&LoadPath::new([&plugins]))
        .start()
        .unwrap();
    assert!(engine.report().loaded.is_empty());
    assert_eq!(engine.report().failures[0].to_string(), expected);
    engine.shutdown();
    let lax = TrustPolicy {
        allow_writable: true,
        ..TrustPolicy::default()
    };
    assert!(open_with(&link, &lax).is_ok());
}

#[test]
fn a_directory_whose_ancestor_is_writable_is_refused_naming_the_ancestor() {
    let dir = temp_dir("ancestor");
    let shared = mkdir(&dir.path().join("shared"), 0o777);
    let plugins = mkdir(&shared.join("plugins"), 0o755);
    let bacon = copy("plugboard_bacon", &plugins, "libbacon.so");
    let cause = format!(
        "refused: ancestor directory {} is writable by other users (mode 777) and not a \
         root-owned sticky directory; fix the permissions or pass --allow-writable",
        shared.display()
    );
    let err = open_with(&bacon, &TrustPolicy::default()).err().unwrap();
    assert_eq!(line(&err), format!("{}: {cause}", bacon.display()));
    let scan = LoadPath::new([&plugins]).scan();
    assert!(scan.libraries.is_empty());
    assert_eq!(
        scan.failures[0].to_string(),
        format!("{}: {cause}", plugins.display())
    );
    // Sticky and root-owned, like /tmp, an ancestor is fine.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(open_with(&bacon, &TrustPolicy::default()).is_ok());
    }
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_bare_name_is_a_file_in_the_current_directory_never_a_search() {
    // The dynamic linker would find this in the system library path.
    let err = open(Path::new("libm.so.6")).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::NotFound), "{err:?}");
    assert_eq!(line(&err), "libm.so.6: no such file");
    // Cargo runs tests in the package directory: `Cargo.toml` is a
    // relative file there, and that file is what gets examined (the
    // dynamic linker, given the bare name, would search its path and
    // report "cannot open shared object file").
    assert!(Path::new("Cargo.toml").is_file());
    let err = open(Path::new("Cargo.toml")).err().unwrap();
    assert_eq!(
        line(&err),
        "Cargo.toml: not a loadable shared library: not an ELF file (it looks like text)"
    );
}

/// A copy of bacon with its ELF header patched by `patch`.
fn patched(dir: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs::read(lib("plugboard_bacon")).unwrap();
    patch(&mut bytes);
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The ELF check is Linux's (elsewhere the dynamic linker speaks).
#[cfg(target_os = "linux")]
#[test]
fn a_library_for_another_cpu_says_so() {
    let dir = temp_dir("machine");
    let (other, name, host) = match std::env::consts::ARCH {
        "aarch64" => (62u16, "x86_64", "aarch64"),
        host => (183u16, "aarch64", host),
    };
    let foreign = patched(dir.path(), "libforeign.so", |b| {
        b[18..20].copy_from_slice(&other.to_le_bytes())
    });
    let err = open(&foreign).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::Machine { .. }), "{err:?}");
    assert_eq!(
        line(&err),
        format!(
            "{}: built for {name}; this engine is {host}",
            foreign.display()
        )
    );
    // Word size: a 32-bit build of the same CPU.
    let narrow = patched(dir.path(), "libnarrow.so", |b| b[4] = 1);
    assert_eq!(
        line(&open(&narrow).err().unwrap()),
        format!(
            "{}: built for {host} (32-bit); this engine is {host} (64-bit)",
            narrow.display()
        )
    );
}

#[test]
fn a_garbage_root_module_symbol_is_not_taken_for_an_abi_version() {
    let path = lib("plugboard_fixture_garbage_root");
    let err = open(&path).err().unwrap();
    assert!(
        matches!(err.kind, LoadErrorKind::NotRootModule { .. }),
        "{err:?}"
    );
    assert_eq!(
        line(&err),
        format!(
            "{}: exports abi_stable's root-module symbol, but it is not an abi_stable root \
             module (header reads ABI 4022250974.3737138963)",
            path.display()
        )
    );
}

/// All of them at once, in one directory: one line each, in load order,
/// and the good libraries load and answer.
#[test]
fn hostile_libraries_are_one_line_each_and_the_rest_still_load() {
    let dir = temp_dir("hostile");
    let plugins = mkdir(&dir.path().join("plugins"), 0o755);
    copy("plugboard_bacon", &plugins, "a-bacon.so");
    let bacon_again = copy("plugboard_bacon", &plugins, "b-bacon.so");
    let garbage = copy("plugboard_fixture_garbage_root", &plugins, "c-garbage.so");
    let unresolved = copy("plugboard_fixture_unresolved", &plugins, "d-unresolved.so");
    let foreign = patched(&plugins, "e-foreign.so", |b| b[4] = 1);
    let (feed, client, replies) = crate::support::TestClient::triple();
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_discord"))
        .load_path(&LoadPath::new([&plugins]))
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
    let failures: Vec<String> = engine.report().failures.iter().map(line).collect();
    let arch = std::env::consts::ARCH;
    let expected = [
        (
            &garbage,
            "exports abi_stable's root-module symbol, but it is not an abi_stable root \
             module (header reads ABI 4022250974.3737138963)"
                .to_owned(),
        ),
        (
            &unresolved,
            "cannot be linked: undefined symbol plugboard_fixture_nowhere".to_owned(),
        ),
        (
            &foreign,
            format!("built for {arch} (32-bit); this engine is {arch} (64-bit)"),
        ),
        (
            &bacon_again,
            format!(
                "duplicate plugin name `bacon` (already loaded from {}); skipped",
                plugins.join("a-bacon.so").display()
            ),
        ),
    ]
    .map(|(path, cause)| format!("{}: {cause}", path.display()));
    assert_eq!(failures, expected);
    feed.say("ann", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives ann a strip of delicious bacon."]
    );
    drop(feed);
    engine.shutdown();
}
