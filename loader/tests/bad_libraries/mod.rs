use std::fs;

use plugboard_interface::ExtError;
use plugboard_loader::library::open;
use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, LoadPath};

use crate::support::{future_plugin, lib, temp_dir, FUTURE_VERSION};

fn one_line(err: &plugboard_loader::LoadError) -> String {
    let line = err.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with(&format!("{}: ", err.source)), "{line}");
    line
}

#[test]
fn random_bytes_and_an_executable_are_not_libraries() {
    let dir = temp_dir("bytes");
    let ext = std::env::consts::DLL_EXTENSION;
    let random = dir.path().join(format!("random.{ext}"));
    // Deterministic noise, long enough to be taken for a header.
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&random, bytes).unwrap();
    let err = open(&random).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::NotElf { .. }), "{err:?}");
    one_line(&err);

    let exe = dir.path().join(format!("exe.{ext}"));
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let err = open(&exe).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::Open(_)), "{err:?}");
    one_line(&err);
}

#[test]
fn a_system_library_has_no_root_module() {
    // Whichever of the usual places has the C math library.
    let Some(libm) = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib64/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
    ]
    .iter()
    .map(std::path::Path::new)
    .find(|p| p.exists()) else {
        // The no-root fixture covers the same failure everywhere.
        return;
    };
    let err = open(libm).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::NoRootModule), "{err:?}");
}

#[test]
fn another_applications_abi_stable_library_is_the_wrong_kind() {
    let path = lib("plugboard_fixture_foreign_root");
    let err = open(&path).err().unwrap();
    assert!(
        matches!(&err.kind, LoadErrorKind::UnknownRootModule(n) if n == "some_other_app"),
        "{err:?}"
    );
    assert!(
        one_line(&err).contains("not a plugboard extension: its root module is `some_other_app`")
    );
}

#[test]
fn an_incompatible_interface_version_says_what_to_rebuild_against() {
    let path = future_plugin();
    let err = open(&path).err().unwrap();
    assert!(
        matches!(&err.kind, LoadErrorKind::InterfaceVersion { found, .. } if found == FUTURE_VERSION),
        "{err:?}"
    );
    let line = one_line(&err);
    assert!(
        line.contains(&format!(
            "built against plugboard-interface {FUTURE_VERSION}, but this engine speaks 0.1.x"
        )),
        "{line}"
    );
}

#[test]
fn an_invalid_command_pattern_is_named() {
    let err = open(&lib("plugboard_fixture_bad_pattern")).err().unwrap();
    assert_eq!(
        one_line(&err),
        format!(
            "{}: invalid manifest: command `open`: invalid pattern `bacon(`: unclosed group",
            err.source
        )
    );
}

#[test]
fn init_errors_and_init_panics_are_reported_and_skipped() {
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_fixture_init_fails"))
        .library(&lib("plugboard_fixture_init_panics"))
        .library(&lib("plugboard_bacon"))
        .start()
        .unwrap();
    let report = engine.report();
    assert_eq!(report.loaded.len(), 1, "bacon still loads");
    let lines: Vec<String> = report.failures.iter().map(one_line).collect();
    assert!(
        matches!(&report.failures[0].kind, LoadErrorKind::Init(ExtError::Failed(m)) if m == "database unreachable")
    );
    assert!(
        lines[0].ends_with("init failed: database unreachable"),
        "{}",
        lines[0]
    );
    assert!(matches!(
        &report.failures[1].kind,
        LoadErrorKind::Init(ExtError::Panicked(_))
    ));
    assert!(
        lines[1].ends_with("init failed: panicked: fixture init panic"),
        "{}",
        lines[1]
    );
}

#[test]
fn unreadable_and_missing_directories_are_reported() {
    let dir = temp_dir("loop");
    let looping = dir.path().join("loop");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let scan = LoadPath::new([looping.clone(), dir.path().join("absent")]).scan();
    assert_eq!(scan.failures.len(), 2);
    assert!(
        matches!(scan.failures[0].kind, LoadErrorKind::ReadDir(_)),
        "{:?}",
        scan.failures[0]
    );
    assert!(one_line(&scan.failures[0]).contains("cannot list directory"));
    assert!(matches!(scan.failures[1].kind, LoadErrorKind::DirNotFound));

    // Permission bits only bind non-root users.
    use std::os::unix::fs::PermissionsExt;
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read_dir(&locked).is_err() {
        let scan = LoadPath::new([locked.clone()]).scan();
        assert!(matches!(scan.failures[0].kind, LoadErrorKind::ReadDir(_)));
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}
