//! The demo REPL, run as a process with piped stdin.
//!
//! The example extensions are dev-dependencies of this package, so their
//! cdylibs are in `target/<profile>/deps`; each test links the ones it needs
//! into a temporary load-path directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const EXTENSIONS: [&str; 3] = ["plugboard_bacon", "plugboard_discord", "plugboard_irc"];

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A load-path directory holding symlinks to the example extensions.
fn load_path() -> TempDir {
    load_path_with(&[])
}

fn lib_file(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A load-path directory with the example extensions and `extra` built
/// libraries (crate names).
fn load_path_with(extra: &[&str]) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "plugboard-demo-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    for name in EXTENSIONS.iter().chain(extra) {
        let file = lib_file(name);
        let built = deps.join(&file);
        assert!(built.exists(), "{} was not built", built.display());
        std::os::unix::fs::symlink(&built, dir.join(&file)).unwrap();
    }
    TempDir(dir)
}

/// The loader tests' nested builds of plugins against a different
/// interface (the incompatible-layout fixture), shared with them.
#[path = "../loader/tests/support/other_interface.rs"]
#[allow(dead_code)]
mod other_interface;

/// `target/<profile>/deps`, beside which `other_interface` builds.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .expect("test binary has a directory")
        .to_owned()
}

/// The binary, isolated from the user's environment: its own empty home
/// (so no config file or data directory of the user is read or written).
fn plugboard() -> Command {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("plugboard-demo-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        home
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    command
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("PLUGBOARD_CONFIG")
        .env_remove("PLUGBOARD_DATA_DIR")
        .env_remove("PLUGBOARD_PATH")
        .env_remove("RUST_LOG");
    command
}

/// Runs the demo on `input`; fails the test if it has not exited on its own
/// within a minute (the POC never exits at EOF).
fn run(args: &[&str], env: &[(&str, &Path)], input: Vec<u8>) -> Output {
    let mut command = plugboard();
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn plugboard");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("plugboard did not exit by itself after end of input")
        .unwrap();
    writer.join().unwrap().unwrap();
    output
}

/// Spawns `command` with stdin, stdout and stderr piped.
fn spawn_piped(command: &mut Command) -> std::process::Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the process under test")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The REPL's last line: `done: <n> lines read; <n> commands: <n>
/// answered, <n> refused at shutdown, <n> abandoned`.
#[derive(Debug, PartialEq, Eq)]
struct Done {
    lines: usize,
    commands: usize,
    answered: usize,
    refused: usize,
    abandoned: usize,
}

fn done(stderr: &str) -> Done {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("done: "))
        .unwrap_or_else(|| panic!("no `done:` line in {stderr}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 5, "{line}");
    assert!(
        line.ends_with(&format!(
            "answered, {} refused at shutdown, {} abandoned",
            n[3], n[4]
        )),
        "{line}"
    );
    Done {
        lines: n[0],
        commands: n[1],
        answered: n[2],
        refused: n[3],
        abandoned: n[4],
    }
}

/// The slow plugin's answer, and the refusal of its command.
const SLEPT: &str = "[irc] slept 10 ms";
const REFUSED: &str = "[irc] the bot is shutting down; `!sleep` was not run";

/// Issue 10, item 2: at end of input, commands still waiting when the
/// grace period ends used to be dropped without a word (exit 0). Now each
/// gets the shutting-down reply, the last line counts them, and the counts
/// add up to what was sent, every line of stdout accounted for.
#[test]
fn past_the_grace_period_every_command_is_answered_or_refused_and_counted() {
    const N: usize = 2000;
    let dir = load_path_with(&["plugboard_fixture_sleeps"]);
    // 20 users, 10 ms each on 2 workers: 10 s of work for a 1 s grace.
    let input: String = (0..N)
        .map(|i| format!("irc@u{} !sleep 10\n", i % 20))
        .collect();
    let mut child = spawn_piped(plugboard().args([
        "-L",
        dir.0.to_str().unwrap(),
        "--workers",
        "2",
        "--grace-period",
        "1",
    ]));
    // The engine holds all of it (queues and backlog), so the write ends
    // and end of input reaches the REPL at once.
    let mut stdin = child.stdin.take().unwrap();
    let output = std::thread::spawn(move || child.wait_with_output());
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let eof = std::time::Instant::now();
    let out = output.join().unwrap().unwrap();
    // A guard against the old behaviour (10 s of work done to the end),
    // not a timing assertion: the exit is bounded by grace + 1 s.
    assert!(
        eof.elapsed() < Duration::from_secs(1 + 5),
        "took {:?}",
        eof.elapsed()
    );
    assert!(out.status.success(), "nothing was abandoned: {out:?}");
    let stdout = lines(&out.stdout);
    let answered = stdout.iter().filter(|l| *l == SLEPT).count();
    let refused = stdout.iter().filter(|l| *l == REFUSED).count();
    assert_eq!(answered + refused, stdout.len(), "{stdout:?}");
    assert!(refused > 0, "the grace period ended first: {stdout:?}");
    assert_eq!(
        done(&String::from_utf8_lossy(&out.stderr)),
        Done {
            lines: N,
            commands: N,
            answered,
            refused,
            abandoned: 0
        }
    );
}

#[test]
fn the_korecomm_session() {
    let dir = load_path();
    let out = run(
        &["--plugin-path", dir.0.to_str().unwrap()],
        &[],
        b"test\ndiscord !bacon\nirc !bacon nelsk\nnulladapter !bacon\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    let mut stdout = lines(&out.stdout);
    // Two conversations run in parallel: their relative order is free.
    stdout.sort();
    assert_eq!(
        stdout,
        [
            "[discord] gives discord-user a strip of delicious bacon.",
            "[irc] gives nelsk a strip of delicious bacon as a gift from irc-user",
        ]
    );
    let stderr = lines(&out.stderr);
    assert!(
        stderr.contains(&"error: stdin:1: a line must be `<adapter> <content>`".to_owned()),
        "{stderr:#?}"
    );
    assert!(
        stderr.contains(
            &"error: stdin:4: no adapter named `nulladapter` (known: discord, irc); skipped"
                .to_owned()
        ),
        "{stderr:#?}"
    );
    // The startup summary says what loaded, from where.
    let bacon = dir.0.join(format!(
        "{}plugboard_bacon{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        stderr.contains(&format!(
            "loaded plugin `bacon` 0.1.0 from {}",
            bacon.display()
        )),
        "{stderr:#?}"
    );
    assert!(stderr
        .iter()
        .any(|l| l.starts_with("ready: 1 plugin(s), 2 adapter(s), 0 failure(s)")));
}

/// The standard mixed workload (the shape of shared/bench/workload.py), with
/// numbered nicks so that order within the irc conversation is checkable.
#[test]
fn a_hundred_thousand_mixed_lines_one_reply_each_in_order() {
    const N: usize = 100_000;
    let garbage = ["test", "discord hello world", "irc !unknowncmd foo"];
    let mut input = String::new();
    let (mut discord, mut irc, mut unmatched) = (0, 0, 0);
    for i in 0..N {
        match i % 10 {
            4 => {
                let g = garbage[(i / 10) % 3];
                unmatched += usize::from(g.starts_with("irc !"));
                input.push_str(g);
            }
            5 => input.push_str("nulladapter !bacon"),
            k if k % 2 == 0 => {
                discord += 1;
                input.push_str("discord !bacon");
            }
            _ => {
                input.push_str(&format!("irc !bacon nick{irc}"));
                irc += 1;
            }
        }
        input.push('\n');
    }
    let dir = load_path();
    let path = dir.0.clone();
    let out = run(
        &["--workers", "2"],
        &[("PLUGBOARD_PATH", &path)],
        input.into_bytes(),
    );
    assert!(out.status.success());
    let stdout = lines(&out.stdout);
    let discord_replies = stdout
        .iter()
        .filter(|l| *l == "[discord] gives discord-user a strip of delicious bacon.")
        .count();
    let irc_replies: Vec<&String> = stdout
        .iter()
        .filter(|l| l.starts_with("[irc] gives nick"))
        .collect();
    assert_eq!(discord_replies, discord);
    assert_eq!(irc_replies.len(), irc);
    for (i, line) in irc_replies.iter().enumerate() {
        assert_eq!(
            **line,
            format!("[irc] gives nick{i} a strip of delicious bacon as a gift from irc-user"),
            "irc replies out of order"
        );
    }
    assert_eq!(
        stdout.len(),
        discord + irc + unmatched,
        "nothing else on stdout"
    );
}

#[test]
fn empty_input_exits_cleanly() {
    let dir = load_path();
    let out = run(&["-L", dir.0.to_str().unwrap()], &[], Vec::new());
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_load_path_is_reported_not_fatal() {
    let out = run(
        &["-L", "/nonexistent/plugboard"],
        &[],
        b"irc !bacon\n".to_vec(),
    );
    assert!(out.status.success());
    let stderr = lines(&out.stderr);
    assert!(
        stderr.contains(
            &"failed: /nonexistent/plugboard: load-path directory does not exist".to_owned()
        ),
        "{stderr:#?}"
    );
    assert!(stderr
        .iter()
        .any(|l| l.starts_with("error: stdin:1: no adapter named `irc`")));
}

#[test]
fn version_names_the_interface() {
    let out = plugboard().arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("plugboard 0.1.0 (interface 0.1.0, "),
        "{text}"
    );
}

const BAD_LIBRARIES: [&str; 6] = [
    "plugboard_fixture_bad_pattern",
    "plugboard_fixture_foreign_root",
    "plugboard_fixture_init_fails",
    "plugboard_fixture_init_panics",
    "plugboard_fixture_no_root",
    "plugboard_fixture_panics",
];

/// A load path full of bad libraries: one line per bad one, and the bot
/// still answers.
fn bad_load_path() -> (TempDir, Vec<PathBuf>) {
    let dir = load_path_with(&BAD_LIBRARIES);
    let ext = std::env::consts::DLL_EXTENSION;
    let text = dir.0.join(format!("readme.{ext}"));
    std::fs::write(&text, "not a library\n").unwrap();
    let empty = dir.0.join(format!("empty.{ext}"));
    std::fs::write(&empty, b"").unwrap();
    let dangling = dir.0.join(format!("dangling.{ext}"));
    std::os::unix::fs::symlink(dir.0.join("gone"), &dangling).unwrap();
    let duplicate = dir.0.join(format!("zz-bacon-again.{ext}"));
    std::fs::copy(dir.0.join(lib_file("plugboard_bacon")), &duplicate).unwrap();
    let mut bad: Vec<PathBuf> = BAD_LIBRARIES
        .iter()
        .filter(|n| **n != "plugboard_fixture_panics") // loads fine; fails at run time
        .map(|n| dir.0.join(lib_file(n)))
        .collect();
    bad.extend([text, empty, dangling, duplicate]);
    (dir, bad)
}

#[test]
fn bad_libraries_get_one_line_each_and_the_bot_still_answers() {
    let (dir, bad) = bad_load_path();
    let out = run(
        &["-L", dir.0.to_str().unwrap()],
        &[],
        b"discord !bacon\n".to_vec(),
    );
    assert!(out.status.success());
    assert_eq!(
        lines(&out.stdout),
        ["[discord] gives discord-user a strip of delicious bacon."]
    );
    let stderr = lines(&out.stderr);
    let failed: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    assert_eq!(failed.len(), bad.len(), "{failed:#?}");
    for path in &bad {
        let prefix = format!("failed: {}: ", path.display());
        assert_eq!(
            failed.iter().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "{prefix}\n{failed:#?}"
        );
    }
}

/// `--strict` stops before any extension's `init` runs when a library does
/// not load, and after the inits (listing their failures, with no `ready:`)
/// when only an `init` fails.
#[test]
fn strict_makes_any_load_failure_fatal() {
    let (dir, bad) = bad_load_path();
    let out = run(
        &["--strict", "-L", dir.0.to_str().unwrap()],
        &[],
        b"discord !bacon\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing runs");
    let stderr = lines(&out.stderr);
    // Failures found at init (and duplicates, found when names are
    // registered at init) are not reached: no init runs.
    let at_init = ["init_fails", "init_panics", "zz-bacon-again"];
    let before_init: Vec<&PathBuf> = bad
        .iter()
        .filter(|p| !at_init.iter().any(|n| p.to_str().unwrap().contains(n)))
        .collect();
    let failed: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    assert_eq!(failed.len(), before_init.len(), "{stderr:#?}");
    assert!(
        !stderr
            .iter()
            .any(|l| l.starts_with("loaded ") || l.starts_with("ready:")),
        "{stderr:#?}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {} libraries failed to load (--strict)",
            before_init.len()
        )),
        "{stderr:#?}"
    );

    let dir = load_path_with(&["plugboard_fixture_init_fails"]);
    let out = run(
        &["--strict", "-L", dir.0.to_str().unwrap()],
        &[],
        b"discord !bacon\n".to_vec(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing runs");
    let stderr = lines(&out.stderr);
    assert_eq!(
        stderr.iter().filter(|l| l.starts_with("failed: ")).count(),
        1,
        "{stderr:#?}"
    );
    assert!(
        !stderr.iter().any(|l| l.starts_with("ready:")),
        "{stderr:#?}"
    );
    assert!(stderr.contains(&"error: 1 library failed to load (--strict)".to_owned()));
}

/// `--max-line-bytes` counts the line, not its CRLF ending; 0 is refused.
#[test]
fn the_line_limit_excludes_the_line_ending_and_cannot_be_zero() {
    let dir = load_path();
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--max-line-bytes", "10"],
        &[],
        b"irc !bacon\r\nirc !bacon\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout).len(), 2, "{out:?}");
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--max-line-bytes", "0"],
        &[],
        Vec::new(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be at least 1"));
}

#[test]
fn every_kind_of_bad_input_gets_a_message_and_the_repl_goes_on() {
    let dir = load_path();
    let mut input = Vec::new();
    input.extend_from_slice(b"\n"); // 1 empty
    input.extend_from_slice(b"   \t \n"); // 2 whitespace only
    input.extend_from_slice(b"irc\n"); // 3 adapter only
    input.extend_from_slice(b"slack !bacon\n"); // 4 unknown adapter
    input.extend_from_slice(b"irc hello there\n"); // 5 no `!`
    input.extend_from_slice(b"irc !\n"); // 6 `!` alone
    input.extend_from_slice(b"irc !bacon \xff\xfe\n"); // 7 invalid UTF-8
    input.extend_from_slice(b"irc !bac\0on\n"); // 8 NUL
    input.extend_from_slice(b"irc !bacon\x1b[31m\n"); // 9 escape sequence
    input.extend_from_slice(b"irc !bacon crlf\r\n"); // 10 CRLF: fine
    input.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024)); // 11 a 10 MB line
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"@alice !bacon\n"); // 12 no adapter name
    input.extend_from_slice(b"irc@alice#room !bacon\n"); // 13 room after user
    input.extend_from_slice(b"irc !bacon last"); // 14 no final newline: fine
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--max-line-bytes", "4096"],
        &[],
        input,
    );
    assert!(out.status.success());
    let stderr = lines(&out.stderr);
    let expect = [
        "error: stdin:1: empty line; a line must be `<adapter> <content>`",
        "error: stdin:2: empty line; a line must be `<adapter> <content>`",
        "error: stdin:3: a line must be `<adapter> <content>`",
        "error: stdin:4: no adapter named `slack` (known: discord, irc); skipped",
        "note: stdin:5: not a command (commands start with `!`); `irc` sees it as chat",
        "error: stdin:6: `!` needs a command name, e.g. `!bacon`; skipped",
        "error: stdin:7: the line is not valid UTF-8; skipped",
        "error: stdin:8: the line contains control character U+0000; skipped",
        "error: stdin:9: the line contains control character U+001B; skipped",
        "error: stdin:11: the line is longer than 4096 bytes; skipped",
        "error: stdin:12: the adapter name is missing (`<adapter>[#<room>][@<user>] <content>`)",
        "error: stdin:13: unexpected `#` in the address (`<adapter>[#<room>][@<user>] <content>`)",
    ];
    for line in expect {
        assert!(
            stderr.contains(&line.to_owned()),
            "missing `{line}` in {stderr:#?}"
        );
    }
    assert_eq!(
        lines(&out.stdout),
        [
            "[irc] gives crlf a strip of delicious bacon as a gift from irc-user",
            "[irc] gives last a strip of delicious bacon as a gift from irc-user",
        ]
    );
}

/// A million piped commands would take a while in a debug build; a burst of
/// 200,000 shows the same accounting (the README reports the 1M run).
#[test]
fn a_burst_gets_exactly_one_reply_or_error_per_command() {
    const N: usize = 200_000;
    let dir = load_path_with(&["plugboard_fixture_panics"]);
    let mut input = String::with_capacity(N * 20);
    for i in 0..N {
        input.push_str(match i % 4 {
            0 => "irc !bacon\n",
            1 => "discord !bacon someone\n",
            2 => "irc !nosuchcommand\n",
            _ => "discord !calm\n",
        });
    }
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--channel-capacity", "64"],
        &[],
        input.into_bytes(),
    );
    assert!(out.status.success());
    assert_eq!(
        lines(&out.stdout).len(),
        N,
        "one reply (or error reply) per command"
    );
}

mod signals;

#[test]
fn a_per_plugin_deadline_answers_a_hung_command_and_the_session_ends() {
    let dir = load_path_with(&["plugboard_fixture_hangs"]);
    let out = run(
        &[
            "-L",
            dir.0.to_str().unwrap(),
            "--plugin-deadline",
            "hangs=0.2",
        ],
        &[],
        b"irc !hang\nirc !bacon after\n".to_vec(),
    );
    assert!(out.status.success());
    let stdout = lines(&out.stdout);
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    assert_eq!(stdout[0], "[irc] `hangs` timed out after 200 ms");
    assert_eq!(
        stdout[1],
        "[irc] gives after a strip of delicious bacon as a gift from irc-user"
    );
}

/// Issue 9, item 4: a plugin whose `Drop` never returns cannot hold the
/// exit at end of input past the grace period.
#[test]
fn a_destructor_that_never_returns_cannot_hold_the_exit() {
    let dir = load_path_with(&["plugboard_fixture_drop_hangs"]);
    let out = run(
        &["-L", dir.0.to_str().unwrap(), "--grace-period", "1"],
        &[],
        b"irc !linger\n".to_vec(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines(&out.stdout), ["[irc] still here"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin `drop-hangs` did not finish dropping within the shutdown's 2 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "plugboard: abandoned what was still stuck at the end of the shutdown (grace period + 1 s)"
        ),
        "{stderr}"
    );
}

/// The operator kit: built-in commands, persisted switches, stats, the
/// config file and the `check` / `list` subcommands.
mod kit;

/// The load generator runs the real path and accounts for every reply.
#[test]
fn the_load_generator_reports_no_reorders_and_no_losses() {
    let dir = load_path();
    let out = plugboard()
        .args(["bench", "--lines", "20000", "-L", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("replies:    16000 = "), "{stdout}");
    assert!(stdout.contains("reorders:   0\nlosses:     0"), "{stdout}");
    assert!(stdout.contains("latency:    p50 "), "{stdout}");
}

/// With `--when-full reject`, a flooding user absorbs the refusals: the load
/// generator's flood workload (one user sending 9 lines in 10, a new user's
/// only command every 10th) serves every light user, and every reply to the
/// flooder, busy ones included, comes in command order (the bench fails
/// otherwise).
#[test]
fn with_reject_the_load_generator_serves_every_light_user_in_order() {
    let dir = load_path();
    let out = plugboard()
        .args([
            "bench",
            "--flood",
            "--when-full",
            "reject",
            "--lines",
            "20000",
        ])
        .args(["-L", dir.0.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reorders:   0\n"), "{stdout}");
    // 2000 light users, fewer than `max_pending`: none is ever refused.
    assert!(
        stdout.contains("light:      2000 commands: 2000 served, 0 answered busy, 0.0% shed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("busy (anonymous): 0\nlosses:     0"),
        "{stdout}"
    );
}

/// `examples/embed.rs`: a bot embedding the engine, with its own adapter and
/// plugins from a directory, ends cleanly at end of input. (`cargo test`
/// builds the examples; the test runs the built one.)
#[test]
fn the_embedding_example_answers_and_shuts_down_cleanly() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("embed");
    assert!(
        example.exists(),
        "{} was not built (run the whole `cargo test`)",
        example.display()
    );
    let dir = load_path_with(&[]);
    let mut child = spawn_piped(Command::new(&example).arg(&dir.0));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"!bacon\n!bacon friend\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "bot> gives you a strip of delicious bacon.",
            "bot> gives friend a strip of delicious bacon as a gift from you",
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugins: bacon"), "{stderr}");
    assert!(
        stderr.contains("done: 2 answered, 0 refused at shutdown, 0 abandoned"),
        "{stderr}"
    );
}

/// Libraries whose load-time code kills, ends or hangs the process that
/// opens them, each met by the pre-flight child: one line each, the rest
/// of the session unharmed.
mod preflight;

/// A plugin cannot pass its output off as a reply of another adapter, or
/// its log records as the engine's.
#[test]
fn replies_and_logs_cannot_be_forged() {
    let dir = load_path_with(&["plugboard_fixture_forger"]);
    let mut command = plugboard();
    command
        .args(["-L", dir.0.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"irc !forge\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Each line of the reply carries its adapter; CR and ESC are shown, not obeyed.
    assert_eq!(
        lines(&out.stdout),
        ["[irc] ok", "[irc] [discord] forged\\r\\u{1b}[2Jcleared"]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What the plugin printed went to stderr, among the diagnostics.
    assert!(stderr.contains("[discord] printed by forger"), "{stderr}");
    // Its log record is filed under its own name.
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("logged by forger"))
        .collect();
    assert_eq!(logged.len(), 1, "{stderr}");
    assert!(
        logged[0].contains("plugin::forger::plugboard_loader::engine"),
        "{stderr}"
    );
}

/// A plugin that takes the whole process down (it runs in-process) is named
/// in the last line on stderr, and the exit status is the signal's.
#[test]
fn a_fatal_signal_in_a_plugin_names_it() {
    use std::os::unix::process::ExitStatusExt;
    let dir = load_path_with(&["plugboard_fixture_crashes"]);
    for (command, signal, name) in [
        ("segv", 11, "SIGSEGV"),
        ("abort", 6, "SIGABRT"),
        ("overflow", 11, "SIGSEGV"),
    ] {
        let out = run(
            &["-L", dir.0.to_str().unwrap()],
            &[],
            format!("irc !{command}\n").into_bytes(),
        );
        assert_eq!(out.status.signal(), Some(signal), "{command}: {out:?}");
        let stderr = lines(&out.stderr);
        assert_eq!(
            stderr.last().map(String::as_str),
            Some(
                format!("plugboard: killed by {name} in plugin `crashes`, command `{command}`")
                    .as_str()
            ),
            "{command}: {stderr:#?}"
        );
    }
}
