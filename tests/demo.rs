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
    for name in EXTENSIONS {
        let file = format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let built = deps.join(&file);
        assert!(built.exists(), "{} was not built", built.display());
        std::os::unix::fs::symlink(&built, dir.join(&file)).unwrap();
    }
    TempDir(dir)
}

/// Runs the demo on `input`; fails the test if it has not exited on its own
/// within a minute (the POC never exits at EOF).
fn run(args: &[&str], env: &[(&str, &Path)], input: Vec<u8>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    command
        .args(args)
        .env_remove("PLUGBOARD_PATH")
        .env_remove("RUST_LOG")
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
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("plugboard 0.1.0 (interface 0.1.0, "),
        "{text}"
    );
}
