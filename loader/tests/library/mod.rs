use std::fs;

use plugboard_loader::library::{open, Candidate};
use plugboard_loader::{Engine, EngineConfig, Kind, LoadErrorKind, LoadPath, Source};

use crate::support::{lib, temp_dir};

#[test]
fn opens_a_good_plugin_and_a_good_adapter() {
    let Candidate::Plugin(bacon) = open(&lib("plugboard_bacon")).unwrap() else {
        panic!("bacon is a plugin");
    };
    assert_eq!(bacon.manifest.name.as_str(), "bacon");
    let patterns: Vec<&str> = bacon
        .manifest
        .commands
        .iter()
        .map(|c| c.pattern.as_str())
        .collect();
    assert_eq!(patterns, [r"bacon$", r"bacon\s+(\S+)"]);

    let adapter = open(&lib("plugboard_discord")).unwrap();
    assert_eq!(adapter.kind(), Kind::Adapter);
    assert_eq!(adapter.name(), "discord");
    assert_eq!(adapter.source(), &Source::Library(lib("plugboard_discord")));
}

#[test]
fn a_text_file_named_like_a_library_is_one_line() {
    let dir = temp_dir("text");
    let path = dir
        .path()
        .join(format!("notes.{}", std::env::consts::DLL_EXTENSION));
    fs::write(&path, "this is not ELF\n").unwrap();
    let err = open(&path).err().expect("a text file is not a library");
    assert!(matches!(err.kind, LoadErrorKind::NotElf { .. }), "{err:?}");
    let line = err.to_string();
    assert!(
        line.starts_with(&format!(
            "{}: not a loadable shared library",
            path.display()
        )),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    // dlerror() repeats the path; it is stripped from the cause.
    assert_eq!(
        line.matches(&path.display().to_string()).count(),
        1,
        "{line}"
    );
}

#[test]
fn a_library_without_a_root_module_is_refused() {
    let path = lib("plugboard_fixture_no_root");
    let err = open(&path).err().expect("no root module");
    assert!(matches!(err.kind, LoadErrorKind::NoRootModule), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a plugboard extension: the library exports no abi_stable root module",
            path.display()
        )
    );
}

#[test]
fn an_incompatible_layout_is_summarised_on_one_line() {
    let path = crate::support::drift_plugin();
    let err = open(&path).err().expect("the layout differs");
    let LoadErrorKind::Layout { summary, detail } = &err.kind else {
        panic!("expected a layout error, got {err:?}");
    };
    // The summary names the type that differs; the full dump is kept.
    assert!(summary.contains("Invocation"), "{summary}\n{detail}");
    assert!(
        detail.len() > summary.len() * 4,
        "detail keeps abi_stable's report"
    );
    let line = err.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.len() < 400, "one readable line, not a dump: {line}");
    assert!(line.contains("incompatible interface layout"), "{line}");
}

#[test]
fn zero_byte_files_and_broken_symlinks_are_reported() {
    let dir = temp_dir("empty");
    let ext = std::env::consts::DLL_EXTENSION;
    let empty = dir.path().join(format!("empty.{ext}"));
    fs::write(&empty, b"").unwrap();
    assert!(matches!(
        open(&empty).err().unwrap().kind,
        LoadErrorKind::Empty
    ));
    let link = dir.path().join(format!("dangling.{ext}"));
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    assert!(matches!(
        open(&link).err().unwrap().kind,
        LoadErrorKind::BrokenSymlink
    ));
    let missing = dir.path().join(format!("missing.{ext}"));
    assert!(matches!(
        open(&missing).err().unwrap().kind,
        LoadErrorKind::NotFound
    ));
}

/// One directory holding every kind of library at once: every failure is
/// reported, one line each, and every good library still loads.
#[test]
fn bad_libraries_never_stop_the_good_ones() {
    let dir = temp_dir("mixed");
    let ext = std::env::consts::DLL_EXTENSION;
    let put = |name: &str, from: &std::path::Path| {
        let to = dir.path().join(format!("{name}.{ext}"));
        fs::copy(from, &to).unwrap();
        to
    };
    // File names sort in this order, which is the load order.
    let bacon = put("a-bacon", &lib("plugboard_bacon"));
    let bacon_again = put("b-bacon-copy", &lib("plugboard_bacon"));
    put("c-discord", &lib("plugboard_discord"));
    let no_root = put("d-no-root", &lib("plugboard_fixture_no_root"));
    let text = dir.path().join(format!("e-text.{ext}"));
    fs::write(&text, "not a library").unwrap();
    let drift = put("f-drift", &crate::support::drift_plugin());

    let missing_dir = dir.path().join("no-such-dir");
    let engine = Engine::builder(EngineConfig::default())
        .load_path(&LoadPath::new([dir.path().to_owned(), missing_dir.clone()]))
        .clients(|_| Some(crate::support::TestClient::pair().1))
        .start()
        .unwrap();
    let report = engine.report();
    let loaded: Vec<(&str, Kind)> = report
        .loaded
        .iter()
        .map(|l| (l.name.as_str(), l.kind))
        .collect();
    assert_eq!(
        loaded,
        [("bacon", Kind::Plugin), ("discord", Kind::Adapter)]
    );
    assert_eq!(report.loaded[0].source, Source::Library(bacon.clone()));

    let failures: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(failures.len(), 5, "{failures:#?}");
    for line in &failures {
        assert_eq!(line.lines().count(), 1, "{line}");
    }
    let starts = |path: &std::path::Path| {
        failures
            .iter()
            .any(|f| f.starts_with(&format!("{}: ", path.display())))
    };
    assert!(starts(&missing_dir));
    assert!(starts(&no_root));
    assert!(starts(&text));
    assert!(starts(&drift));
    assert!(failures.iter().any(|f| f
        == &format!(
            "{}: duplicate plugin name `bacon` (already loaded from {}); skipped",
            bacon_again.display(),
            bacon.display()
        )));
    engine.shutdown();
}
