use std::fs;
use std::os::unix::fs::PermissionsExt;

use plugboard_loader::library::open_with;
use plugboard_loader::trust::{digest, parse_allowlist};
use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, LoadPath, TrustPolicy};

use crate::support::{lib, temp_dir};

#[test]
fn writable_libraries_and_directories_are_refused_unless_allowed() {
    let dir = temp_dir("writable");
    let bacon = dir.path().join("libbacon.so");
    fs::copy(lib("plugboard_bacon"), &bacon).unwrap();
    fs::set_permissions(&bacon, fs::Permissions::from_mode(0o777)).unwrap();
    let err = open_with(&bacon, &TrustPolicy::default()).err().unwrap();
    assert!(matches!(err.kind, LoadErrorKind::Untrusted(_)));
    assert!(
        err.to_string()
            .contains("refused: writable by other users (mode 777)"),
        "{err}"
    );
    let lax = TrustPolicy {
        allow_writable: true,
        ..TrustPolicy::default()
    };
    assert!(open_with(&bacon, &lax).is_ok());

    fs::set_permissions(&bacon, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let engine = Engine::builder(EngineConfig::default())
        .load_path(&LoadPath::new([dir.path()]))
        .start()
        .unwrap();
    assert!(
        engine.report().loaded.is_empty(),
        "nothing loads from a writable directory"
    );
    let line = engine.report().failures[0].to_string();
    assert!(
        line.starts_with(&format!(
            "{}: refused: writable by other users",
            dir.path().display()
        )),
        "{line}"
    );
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_allowlist_admits_exactly_the_listed_builds() {
    let bacon = lib("plugboard_bacon");
    let bacon_digest = digest(&mut fs::File::open(&bacon).unwrap()).unwrap();
    let listed = format!(
        "{}  libplugboard_bacon.so\n",
        plugboard_loader::trust::hex(&bacon_digest)
    );
    let policy = TrustPolicy {
        allowlist: Some(parse_allowlist(&listed).unwrap()),
        ..TrustPolicy::default()
    };
    assert!(open_with(&bacon, &policy).is_ok(), "listed digest loads");
    let err = open_with(&lib("plugboard_discord"), &policy).err().unwrap();
    assert!(err.to_string().contains("is not in the allowlist"), "{err}");
}
