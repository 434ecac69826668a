use super::*;

const FAULTY: [&str; 3] = [
    "plugboard_fixture_ctor_crashes",
    "plugboard_fixture_ctor_exits",
    "plugboard_fixture_ctor_hangs",
];

/// A load path with the example extensions, the faulty fixtures and a
/// truncated copy of bacon (`libzz_truncated.so`, last in scan order).
fn faulty_load_path() -> (TempDir, [String; 4]) {
    let dir = load_path_with(&FAULTY);
    let bacon = std::fs::read(dir.0.join(lib_file("plugboard_bacon"))).unwrap();
    let truncated = dir.0.join(lib_file("zz_truncated"));
    // Headers intact, segments cut short: the dynamic linker maps past
    // the end of the file.
    std::fs::write(&truncated, &bacon[..16 * 1024]).unwrap();
    let at = |name: &str| dir.0.join(lib_file(name)).display().to_string();
    let expected = [
        format!("{}: killed by SIGSEGV while loading", at(FAULTY[0])),
        format!("{}: exited with status 0 while loading", at(FAULTY[1])),
        format!(
            "{}: did not finish loading within 500 ms (its initialisers or manifest() hang)",
            at(FAULTY[2])
        ),
        format!("{}: killed by SIGBUS while loading", truncated.display()),
    ];
    (dir, expected)
}

#[test]
fn the_repl_reports_each_faulty_library_in_one_line_and_serves() {
    let (dir, expected) = faulty_load_path();
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--load-deadline", "0.5"],
        &[],
        b"irc !bacon\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        ["[irc] gives irc-user a strip of delicious bacon."]
    );
    let stderr = lines(&out.stderr);
    let failed: Vec<&str> = stderr
        .iter()
        .filter_map(|l| l.strip_prefix("failed: "))
        .collect();
    assert_eq!(failed, expected, "{stderr:#?}");
    assert!(stderr
        .iter()
        .any(|l| l.starts_with("ready: 1 plugin(s), 2 adapter(s), 4 failure(s)")));
}

#[test]
fn check_and_list_survive_them_too() {
    let (dir, expected) = faulty_load_path();
    let at = |name: &str| dir.0.join(name);
    let out = plugboard()
        .args(["check", "--load-deadline", "0.5"])
        .args(FAULTY.map(|f| at(&lib_file(f))))
        .arg(at(&lib_file("zz_truncated")))
        .arg(at(&lib_file("plugboard_bacon")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let errors: Vec<String> = expected.iter().map(|e| format!("error: {e}")).collect();
    assert_eq!(lines(&out.stderr), errors);
    assert!(String::from_utf8_lossy(&out.stdout).contains("plugin `bacon`"));

    let out = plugboard()
        .args([
            "list",
            "--load-deadline",
            "0.5",
            "-L",
            dir.0.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = lines(&out.stdout);
    let fails: Vec<&str> = stdout
        .iter()
        .filter_map(|l| l.strip_prefix("FAIL  "))
        .collect();
    assert_eq!(fails, expected, "{stdout:#?}");
    assert_eq!(stdout.iter().filter(|l| l.starts_with("ok ")).count(), 3);
}

#[test]
fn strict_fails_before_any_init() {
    let (dir, expected) = faulty_load_path();
    let out = run(
        &[
            "-L",
            dir.0.to_str().unwrap(),
            "--load-deadline",
            "0.5",
            "--strict",
        ],
        &[],
        b"irc !bacon\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = lines(&out.stderr);
    assert!(
        !stderr
            .iter()
            .any(|l| l.starts_with("ready:") || l.starts_with("loaded ")),
        "{stderr:#?}"
    );
    for line in expected {
        assert!(stderr.contains(&format!("failed: {line}")), "{stderr:#?}");
    }
}
