use super::{lib_file, lines, load_path_with, plugboard, run};

fn data_dir(tag: &str) -> super::TempDir {
    let dir =
        std::env::temp_dir().join(format!("plugboard-demo-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    super::TempDir(dir)
}

#[test]
fn a_corrupted_switches_file_is_one_clear_line() {
    let dir = super::load_path();
    let data = data_dir("corrupt");
    let file = data.0.join("switches.json");
    std::fs::write(&file, "{\"disabled\": [[\n").unwrap();
    let data_arg = data.0.to_str().unwrap();
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--data-dir", data_arg],
        &[],
        b"irc !bacon\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = lines(&out.stderr);
    let errors: Vec<&String> = stderr.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr:#?}");
    assert_eq!(
        errors[0].matches(&file.display().to_string()).count(),
        1,
        "said once: {stderr:#?}"
    );
    assert!(
        errors[0].contains(&format!(
            "{}:2:0: EOF while parsing a list; fix or remove the file",
            file.display()
        )),
        "{stderr:#?}"
    );
}

#[test]
fn switches_of_plugins_not_loaded_are_kept_and_reported() {
    let dir = super::load_path();
    let data = data_dir("ghost");
    let file = data.0.join("switches.json");
    std::fs::write(&file, r#"{"disabled":[["ghost","everywhere"]]}"#).unwrap();
    let out = run(
        &[
            "-L",
            dir.0.to_str().unwrap(),
            "--data-dir",
            data.0.to_str().unwrap(),
            "--admin",
            "irc:root",
        ],
        &[],
        b"irc@root !disable bacon everywhere\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        lines(&out.stderr).iter().any(|l| l.contains(
            "the saved switches name plugin `ghost`, which is not loaded; kept for when it is"
        )),
        "{out:?}"
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("ghost") && saved.contains("bacon"),
        "{saved}"
    );
}

#[test]
fn help_and_plugins_answer_in_the_repl() {
    let dir = load_path_with(&["plugboard_quote"]);
    let data = data_dir("help");
    let out = run(
        &[
            "-L",
            dir.0.to_str().unwrap(),
            "--data-dir",
            data.0.to_str().unwrap(),
        ],
        &[],
        b"irc !help\nirc !help bacon\nirc !plugins\nirc !help nope\n".to_vec(),
    );
    assert!(out.status.success());
    // The irc adapter sends a multi-line reply as one message per line.
    let stdout = lines(&out.stdout);
    let expected = [
        "[irc] built-in: !help [plugin], !plugins; admins: !stats, !enable/!disable <plugin> [here|adapter|everywhere]",
        "[irc] bacon: hands out strips of delicious bacon (!bacon, !bacon <nick>)",
        "[irc] quote: a quote book per room (!quote add <text>, !quote <n>, !quote)",
        "[irc] bacon 0.1.0: hands out strips of delicious bacon",
        "[irc] `!bacon` gives you a strip of bacon; `!bacon <nick>` gives one to <nick> as a gift from you.",
        "[irc]   !bacon  (bacon)",
        "[irc]   !bacon <nick>  (gift)",
        "[irc] bacon 0.1.0 active",
        "[irc] quote 0.1.0 active",
        "[irc] no plugin named `nope`; `!help` lists them",
    ];
    assert_eq!(stdout, expected);
}

#[test]
fn admins_disable_and_enable_plugins_and_it_survives_a_restart() {
    let dir = load_path_with(&[]);
    let data = data_dir("switch");
    let args = [
        "-L",
        dir.0.to_str().unwrap(),
        "--data-dir",
        data.0.to_str().unwrap(),
        "--admin",
        "discord:alice",
    ];
    // Different users are different conversations, which run in
    // parallel: only each user's own replies are ordered.
    let first = run(
        &args,
        &[],
        b"discord#general@bob !disable bacon\n\
          discord#general@alice !disable bacon\n\
          discord#general@alice !bacon\n"
            .to_vec(),
    );
    let stdout = lines(&first.stdout);
    assert!(stdout.contains(&"[discord/#general] `!disable bacon` is for admins only".to_owned()));
    let alice: Vec<&String> = stdout
        .iter()
        .filter(|l| !l.contains("admins only"))
        .collect();
    assert_eq!(
        alice,
        [
            "[discord/#general] `bacon` disabled in discord/#general",
            "[discord/#general] `bacon` is disabled in discord/#general",
        ]
    );
    // A new process reads the switch back from the data dir; other
    // rooms were never affected.
    let second = run(
        &args,
        &[],
        b"discord#general@bob !bacon\ndiscord#random@bob !bacon\n".to_vec(),
    );
    let mut stdout = lines(&second.stdout);
    stdout.sort();
    assert_eq!(
        stdout,
        [
            "[discord/#general] `bacon` is disabled in discord/#general",
            "[discord/#random] gives bob a strip of delicious bacon.",
        ]
    );
    let third = run(
        &args,
        &[],
        b"discord#general@alice !enable bacon\n\
          discord#general@alice !bacon\n\
          discord#general@alice !stats\n"
            .to_vec(),
    );
    let stdout = lines(&third.stdout);
    assert_eq!(
        stdout[0],
        "[discord/#general] `bacon` enabled in discord/#general"
    );
    assert_eq!(
        stdout[1],
        "[discord/#general] gives alice a strip of delicious bacon."
    );
    assert!(
        stdout[2].starts_with("[discord/#general] plugin        calls"),
        "{stdout:?}"
    );
    // Every line of a multi-line reply carries its adapter and room.
    assert!(
        stdout[3].starts_with("[discord/#general] bacon             1"),
        "{stdout:?}"
    );
}

#[test]
fn stats_at_shutdown_show_counts_and_latency() {
    let dir = load_path_with(&[]);
    let data = data_dir("stats");
    let out = run(
        &[
            "-L",
            dir.0.to_str().unwrap(),
            "--data-dir",
            data.0.to_str().unwrap(),
            "--stats",
        ],
        &[],
        b"irc !bacon\nirc !bacon x\n".to_vec(),
    );
    let stderr = lines(&out.stderr);
    let row = stderr
        .iter()
        .find(|l| l.starts_with("bacon "))
        .expect("a stats row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..5], ["bacon", "2", "0", "0", "0"], "{row}");
    assert!(cells[5].ends_with('s'), "p50 is a duration: {row}");
    assert_eq!(cells.last(), Some(&"active"));
}

#[test]
fn check_describes_libraries_and_fails_on_bad_ones() {
    let dir = load_path_with(&["plugboard_fixture_bad_pattern"]);
    let bacon = dir.0.join(lib_file("plugboard_bacon"));
    let out = plugboard().arg("check").arg(&bacon).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!(
            "{}: plugin `bacon` 0.1.0 (interface 0.1.0)",
            bacon.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("command `gift`: !bacon <nick>  (pattern bacon\\s+(\\S+))"),
        "{stdout}"
    );

    let bad = dir.0.join(lib_file("plugboard_fixture_bad_pattern"));
    let out = plugboard()
        .arg("check")
        .arg(&bacon)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: invalid manifest: command `open`: invalid pattern `bacon(`: unclosed group",
            bad.display()
        )
    );
}

/// A panicking `manifest` runs before the library's logging bridge (and
/// its quiet panic hook) used to exist: its std's default hook printed
/// the panic on stderr around the one failure line.
#[test]
fn check_reports_a_panicking_manifest_in_one_line_and_nothing_else() {
    let dir = load_path_with(&["plugboard_fixture_manifest_panics"]);
    let lib = dir.0.join(lib_file("plugboard_fixture_manifest_panics"));
    let out = plugboard().arg("check").arg(&lib).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut printed = lines(&out.stdout);
    printed.extend(lines(&out.stderr));
    assert_eq!(
        printed,
        [format!(
            "error: {}: describing itself failed: panicked: fixture manifest panic",
            lib.display()
        )]
    );
}

/// The layout error's hint, "RUST_LOG=debug shows abi_stable's full
/// report", holds for `check` too.
#[test]
fn check_with_rust_log_debug_shows_the_full_layout_report() {
    let drift = super::other_interface::drift_plugin();
    let out = plugboard().arg("check").arg(&drift).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = lines(&out.stderr);
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with(&format!(
            "error: {}: incompatible interface layout (",
            drift.display()
        )),
        "{}",
        stderr[0]
    );
    assert!(stderr[0].ends_with("(RUST_LOG=debug shows abi_stable's full report)"));

    let out = plugboard()
        .arg("check")
        .arg(&drift)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let report = stderr
        .split_once(&format!("{}: abi_stable's report:\n", drift.display()))
        .map(|(_, report)| report)
        .unwrap_or_else(|| panic!("no report in:\n{stderr}"));
    // abi_stable's report: many lines, naming the type that differs.
    assert!(report.lines().count() > 10, "{report}");
    assert!(report.contains("Invocation"), "{report}");
}

#[test]
fn list_shows_the_load_path() {
    let dir = load_path_with(&["plugboard_fixture_no_root"]);
    let out = plugboard()
        .args(["list", "-L", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one library would fail");
    let stdout = lines(&out.stdout);
    assert!(stdout
        .iter()
        .any(|l| l.starts_with("ok    plugin bacon 0.1.0 (interface 0.1.0): ")));
    assert!(stdout
        .iter()
        .any(|l| l.starts_with("ok    adapter discord 0.1.0")));
    assert!(stdout
        .iter()
        .any(|l| l.starts_with("FAIL  ") && l.ends_with("exports no abi_stable root module")));
}

#[test]
fn the_config_file_sets_the_load_path_and_extension_options() {
    let dir = load_path_with(&["plugboard_quote"]);
    let data = data_dir("config");
    let config = data.0.join("plugboard.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_path = [{:?}]\ndata_dir = \"state\"\n\n[engine]\nunmatched = \"ignore\"\n\n[plugins.quote]\nmax_quotes = 1\n",
            dir.0
        ),
    )
    .unwrap();
    let out = run(
        &["--config", config.to_str().unwrap()],
        &[],
        b"irc !quote add one\nirc !quote add two\nirc !nothing\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "[irc] quote #1 added",
            "[irc] `quote` failed: this room's book is full (1 quotes)"
        ]
    );
    assert!(
        data.0.join("state/plugins/quote/quotes.json").exists(),
        "data_dir is relative to the file"
    );

    // An extension that rejects its options is not loaded, and says why.
    std::fs::write(
        &config,
        format!(
            "plugin_path = [{:?}]\n[plugins.quote]\nmax_quotes = 0\n",
            dir.0
        ),
    )
    .unwrap();
    let out = run(
        &["--config", config.to_str().unwrap()],
        &[],
        b"irc !quote\n".to_vec(),
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("rejected its configuration: max_quotes and max_length must be at least 1"),
        "{stderr}"
    );

    // Unknown keys are errors naming the key and the line.
    std::fs::write(&config, "data_dir = \"x\"\n[engine]\nworkerz = 2\n").unwrap();
    let out = run(&["--config", config.to_str().unwrap()], &[], Vec::new());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: {}:3:1: unknown field `workerz`",
            config.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/plugboard.example.toml");
    plugboard::config::FileConfig::load(std::path::Path::new(example)).unwrap();
}
