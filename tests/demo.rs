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
    let mut child = plugboard()
        .args([
            "-L",
            dir.0.to_str().unwrap(),
            "--workers",
            "2",
            "--grace-period",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

mod signals {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::Duration;

    /// Waits for `child` to exit; fails the test if it has not within a
    /// minute (a guard against a hung process, not a timing assertion).
    fn exit_status(mut child: Child) -> ExitStatus {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait()));
        rx.recv_timeout(Duration::from_secs(60))
            .expect("plugboard did not exit after the interrupt")
            .unwrap()
    }

    fn signal(pid: u32, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_line(reader: &mut impl BufRead, wanted: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "stream ended before `{wanted}`"
            );
            if line.contains(wanted) {
                return;
            }
        }
    }

    #[test]
    fn sigterm_drains_and_exits_zero() {
        let dir = super::load_path();
        let mut child = super::plugboard()
            .args(["-L", dir.0.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        writeln!(stdin, "irc !bacon first").unwrap();
        stdin.flush().unwrap();
        wait_line(&mut stdout, "gives first");
        // stdin stays open: only the signal can end this session.
        signal(child.id(), "-TERM");
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains(
                "plugboard: interrupted: finishing accepted commands for up to 10 s, then refusing the rest (interrupt again to quit now)"
            ),
            "{stderr}"
        );
        drop(stdin);
    }

    /// Issue 9, item 5: the first interrupt is announced at once, even
    /// while the REPL is waiting to hand a line to a full engine (a user's
    /// backlog behind a hung command), and the grace period bounds the rest.
    #[test]
    fn the_first_interrupt_is_announced_at_once_and_the_grace_bounds_the_rest() {
        let dir = super::load_path_with(&["plugboard_fixture_hangs"]);
        let mut child = super::plugboard()
            .args([
                "-L",
                dir.0.to_str().unwrap(),
                "--command-deadline",
                "600",
                "--grace-period",
                "1",
                "--channel-capacity",
                "1",
            ])
            .env("RUST_LOG", "plugboard_demo=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        wait_line(&mut stderr, "ready:");
        // One hung command, then more of the same user's commands than the
        // engine holds (a 4096-command backlog, queues of 1). stdin stays
        // open: only the signal ends this session.
        let writer = std::thread::spawn(move || {
            let mut input = String::from("irc !hang\n");
            for _ in 0..6000 {
                input.push_str("irc !bacon\n");
            }
            stdin.write_all(input.as_bytes()).unwrap();
            stdin
        });
        // The REPL says (at debug level) when it starts waiting for room.
        // With one command in flight, 4096 in the backlog, and one each in
        // the ingress channel, the client's queue and the listener's hands,
        // room for line 4101 never comes.
        const STUCK: usize = 4101;
        let (line_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let _ = line_tx.send(line.unwrap());
            }
        });
        let next = || lines.recv_timeout(Duration::from_secs(60));
        loop {
            let line = next().expect("the REPL never waited for room");
            let waiting = line
                .strip_suffix(": the engine is full; waiting to hand the line over")
                .and_then(|l| l.rsplit_once("stdin:"))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match waiting {
                Some(STUCK) => break,
                Some(n) => assert!(n < STUCK, "the engine holds more than expected"),
                None => {}
            }
        }
        signal(child.id(), "-TERM");
        let status = exit_status(child);
        // The hung command was abandoned.
        assert_eq!(status.code(), Some(3), "{status:?}");
        drop(writer.join().unwrap());
        let rest: Vec<String> = lines.iter().collect();
        let rest = rest.join("\n");
        assert!(
            rest.contains(
                "plugboard: interrupted: finishing accepted commands for up to 1 s, then refusing the rest (interrupt again to quit now)"
            ),
            "{rest}"
        );
        assert!(
            rest.contains(&format!(
                "note: stdin:{STUCK}: not delivered: interrupted while the engine was full"
            )),
            "{rest}"
        );
        assert!(
            rest.contains(
                "plugboard: abandoned what was still stuck at the end of the shutdown (grace period + 1 s)"
            ),
            "{rest}"
        );
        // Every command but the hung one is refused, saying so.
        assert_eq!(
            super::done(&rest),
            super::Done {
                lines: STUCK,
                commands: STUCK - 1,
                answered: 0,
                refused: STUCK - 2,
                abandoned: 1
            }
        );
    }

    /// Issue 9, item 4, on SIGTERM: a plugin whose `Drop` never returns
    /// cannot hold the exit past the grace period.
    #[test]
    fn sigterm_exits_within_the_grace_despite_a_destructor_that_never_returns() {
        let dir = super::load_path_with(&["plugboard_fixture_drop_hangs"]);
        let mut child = super::plugboard()
            .args(["-L", dir.0.to_str().unwrap(), "--grace-period", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        wait_line(&mut stderr, "ready:");
        signal(child.id(), "-TERM");
        let status = exit_status(child);
        assert!(status.success(), "{status:?}");
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        assert!(
            rest.contains("plugboard: interrupted: finishing accepted commands for up to 1 s,"),
            "{rest}"
        );
        assert!(
            rest.contains("plugin `drop-hangs` did not finish dropping within the shutdown's 2 s"),
            "{rest}"
        );
        drop(stdin);
    }

    /// Issue 10, item 3: with a slow plugin, SIGTERM used to take 3-13 s
    /// to be noticed while thousands more lines were read, and the exit came
    /// 12-25 s after it with `--grace-period 2`. Now no line is taken after
    /// the signal, the exit comes within grace + 1 s, and every line read
    /// is accounted for: answered, refused (saying so) or abandoned.
    #[test]
    fn sigterm_with_a_slow_plugin_stops_intake_and_accounts_for_every_line() {
        const N: usize = 40_000;
        const GRACE: u64 = 1;
        let dir = super::load_path_with(&["plugboard_fixture_sleeps"]);
        let mut child = super::plugboard()
            .args([
                "-L",
                dir.0.to_str().unwrap(),
                "--workers",
                "2",
                "--grace-period",
                &GRACE.to_string(),
                "--channel-capacity",
                "64",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Far more than the engine holds: the REPL waits for room.
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let input: String = (0..N)
                .map(|i| format!("irc@u{} !sleep 10\n", i % 20))
                .collect();
            // Fails (broken pipe) once plugboard has exited: expected.
            let _ = stdin.write_all(input.as_bytes());
        });
        // Read both streams as they come: a full pipe would stall the bot.
        let (first_tx, first) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in stdout.lines() {
                let line = line.unwrap();
                if all.is_empty() {
                    let _ = first_tx.send(line.clone());
                }
                all.push(line);
            }
            all
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            stderr.read_to_string(&mut all).unwrap();
            all
        });
        // The bot is busy answering.
        let first = first.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(first, super::SLEPT);
        signal(child.id(), "-TERM");
        let signalled = std::time::Instant::now();
        let status = exit_status(child);
        let took = signalled.elapsed();
        // A failure guard, not a timing assertion.
        assert!(took < Duration::from_secs(GRACE + 5), "took {took:?}");
        assert!(status.success(), "nothing was abandoned: {status:?}");
        writer.join().unwrap();
        let stdout = stdout.join().unwrap();
        let stderr = stderr.join().unwrap();
        let done = super::done(&stderr);
        assert!(done.lines < N, "intake stopped at the signal: {done:?}");
        // A line the REPL was waiting to hand over when the signal came is
        // read but not delivered, and says so.
        let undelivered = stderr
            .matches("not delivered: interrupted while the engine was full")
            .count();
        assert_eq!(done.commands + undelivered, done.lines, "{stderr}");
        let answered = stdout.iter().filter(|l| *l == super::SLEPT).count();
        let refused = stdout.iter().filter(|l| *l == super::REFUSED).count();
        assert_eq!(answered + refused, stdout.len(), "{stdout:?}");
        assert_eq!(
            done,
            super::Done {
                answered,
                refused,
                abandoned: 0,
                ..done
            }
        );
        assert!(refused > 0, "the grace period ended first");
    }

    /// Issue 10, item 3: nothing an extension does can hold the exit. A
    /// library destructor that never returns runs in `exit` itself, after
    /// the engine is done and beyond its bounds: the watchdog ends the
    /// process (status 3), on SIGTERM as at end of input.
    #[test]
    fn a_library_that_hangs_the_exit_meets_the_watchdog() {
        const GRACE: u64 = 1;
        let dir = super::load_path_with(&["plugboard_fixture_exit_hangs"]);
        for interrupt in [true, false] {
            let mut child = super::plugboard()
                .args([
                    "-L",
                    dir.0.to_str().unwrap(),
                    "--grace-period",
                    &GRACE.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            writeln!(stdin, "irc !bye").unwrap();
            stdin.flush().unwrap();
            wait_line(&mut stdout, "[irc] see you");
            if interrupt {
                signal(child.id(), "-TERM");
            } else {
                drop(stdin);
            }
            let stopping = std::time::Instant::now();
            let mut stderr = child.stderr.take().unwrap();
            let status = exit_status(child);
            let took = stopping.elapsed();
            assert!(took < Duration::from_secs(GRACE + 5), "took {took:?}");
            assert_eq!(status.code(), Some(3), "interrupt: {interrupt}");
            let mut rest = String::new();
            stderr.read_to_string(&mut rest).unwrap();
            assert!(
                rest.contains(
                    "done: 1 line read; 1 command: 1 answered, 0 refused at shutdown, 0 abandoned"
                ),
                "{rest}"
            );
            assert!(rest.contains("; exiting now (status 3)"), "{rest}");
        }
    }

    /// The REPL with a command that hangs for 600 s (and a 600 s grace):
    /// only a second interrupt can end it soon.
    fn hung_repl() -> (
        super::TempDir,
        std::process::Child,
        std::process::ChildStdin,
        BufReader<std::process::ChildStderr>,
    ) {
        let dir = super::load_path_with(&["plugboard_fixture_hangs"]);
        let mut child = super::plugboard()
            .args([
                "-L",
                dir.0.to_str().unwrap(),
                "--command-deadline",
                "600",
                "--grace-period",
                "600",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        wait_line(&mut stderr, "ready:");
        writeln!(stdin, "irc !hang").unwrap();
        stdin.flush().unwrap();
        (dir, child, stdin, stderr)
    }

    #[test]
    fn a_second_interrupt_exits_at_once() {
        let (_dir, mut child, stdin, mut stderr) = hung_repl();
        signal(child.id(), "-INT");
        // The first interrupt waits for the hung command (for up to 600 s)...
        wait_line(
            &mut stderr,
            "interrupted: finishing accepted commands for up to 600 s,",
        );
        // ...the second one does not.
        signal(child.id(), "-INT");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130));
        drop(stdin);
    }

    /// Two interrupts back to back (the second as soon as the kernel has
    /// delivered the first, without waiting for it to be announced) are
    /// two, not one. (Two signals sent before the first is delivered are
    /// one for the kernel already: standard signals do not queue.)
    #[test]
    fn two_interrupts_back_to_back_both_count() {
        let (_dir, mut child, stdin, _stderr) = hung_repl();
        signal(child.id(), "-INT");
        // Delivered (no longer pending for the process) = its handler ran.
        let status_file = format!("/proc/{}/status", child.id());
        let pending = |line: &str, field: &str| {
            line.strip_prefix(field)
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
        };
        for _ in 0..10_000 {
            let status = std::fs::read_to_string(&status_file).unwrap_or_default();
            if !status
                .lines()
                .any(|l| pending(l, "ShdPnd:") || pending(l, "SigPnd:"))
            {
                break;
            }
            std::thread::yield_now();
        }
        signal(child.id(), "-INT");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130));
        drop(stdin);
    }
}

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
mod kit {
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
        assert!(
            stdout.contains(&"[discord/#general] `!disable bacon` is for admins only".to_owned())
        );
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
            format!("error: {}: invalid manifest: command `open`: invalid pattern `bacon(`: unclosed group", bad.display())
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
            stderr.contains(
                "rejected its configuration: max_quotes and max_length must be at least 1"
            ),
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
}

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
    let mut child = Command::new(&example)
        .arg(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
mod preflight {
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
}

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
