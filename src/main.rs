//! The `plugboard` binary: the demo REPL. All logic lives in the libraries;
//! this file parses flags, sets up logging and maps errors to exit codes.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use plugboard::{build_info, EngineConfig, LoadPath, TrustPolicy, Unmatched, WhenFull, PATH_ENV};

/// A chat-bot engine whose plugins and adapters are shared libraries.
///
/// Reads lines `<adapter> <content>` from stdin, e.g. `irc !bacon nelsk`,
/// routes commands to plugins through the named adapter, and prints replies
/// as `[<adapter>] <reply>` on stdout. Diagnostics and logs go to stderr
/// (`RUST_LOG=debug` for more). Exits 0 at end of input, once every reply
/// has been printed.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version)]
struct Cli {
    /// Directory to load plugins and adapters from; repeat to search several,
    /// in order. Replaces $PLUGBOARD_PATH (`:`-separated), which replaces the
    /// default: the directory of this executable.
    #[arg(long = "plugin-path", short = 'L', value_name = "DIR")]
    plugin_path: Vec<PathBuf>,

    /// Worker threads running plugin commands [default: one per core].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// Capacity of each engine channel and client queue (backpressure bound).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    channel_capacity: usize,

    /// Longest accepted input line, in bytes; longer lines are skipped.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_line_bytes: usize,

    /// Stay silent on commands that no plugin matches instead of replying
    /// "no command matches".
    #[arg(long)]
    ignore_unmatched: bool,

    /// Exit with an error, listing every failure, if any library fails to load.
    #[arg(long)]
    strict: bool,

    /// Seconds a plugin command may run before its user gets a timeout reply.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    command_deadline: f64,

    /// A plugin's own command deadline, as NAME=SECS (repeatable).
    #[arg(long, value_name = "NAME=SECS", value_parser = parse_plugin_deadline)]
    plugin_deadline: Vec<(String, Duration)>,

    /// Consecutive panics or timeouts after which a plugin is quarantined (0: never).
    #[arg(long, value_name = "N", default_value_t = 3)]
    quarantine_after: u32,

    /// Seconds to finish accepted work at end of input or on SIGINT/SIGTERM
    /// before giving up on what is still stuck (a second interrupt exits at once).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    grace_period: f64,

    /// What happens when the engine's input queue is full: wait (nothing is
    /// lost, input slows down) or reject (the user gets a "busy" reply).
    #[arg(long, value_enum, default_value_t = Full::Block)]
    when_full: Full,

    /// Load libraries and directories even if other users can write to them.
    #[arg(long)]
    allow_writable: bool,

    /// Only load libraries whose SHA-256 is listed in FILE (`sha256sum` format).
    #[arg(long, value_name = "FILE")]
    allowlist: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Full {
    Block,
    Reject,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = parse_cli();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let allowlist = match &cli.allowlist {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the allowlist {}", file.display()))?;
            let set = plugboard::trust::parse_allowlist(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Some(set)
        }
        None => None,
    };
    let grace = seconds("--grace-period", cli.grace_period)?;
    let options = plugboard_demo::Options {
        load_path: load_path(&cli.plugin_path)?,
        engine: EngineConfig {
            workers: cli.workers.unwrap_or(0),
            ingress_capacity: cli.channel_capacity,
            execution_capacity: cli.channel_capacity,
            egress_capacity: cli.channel_capacity,
            unmatched: if cli.ignore_unmatched {
                Unmatched::Ignore
            } else {
                Unmatched::Reply
            },
            when_full: match cli.when_full {
                Full::Block => WhenFull::Block,
                Full::Reject => WhenFull::Reject,
            },
            command_deadline: seconds("--command-deadline", cli.command_deadline)?,
            quarantine_after: cli.quarantine_after,
            listen_grace: grace,
            shutdown_grace: grace,
            ..EngineConfig::default()
        },
        max_line_bytes: cli.max_line_bytes,
        client_capacity: cli.channel_capacity,
        trust: TrustPolicy {
            allow_writable: cli.allow_writable,
            allowlist,
        },
        strict: cli.strict,
        plugin_deadlines: cli.plugin_deadline,
    };
    if io::stdin().is_terminal() {
        eprintln!(
            "plugboard {} (interface {}, {})",
            env!("CARGO_PKG_VERSION"),
            build_info::INTERFACE_VERSION,
            build_info::TARGET
        );
    }
    let input = plugboard_demo::input::Input::spawn(io::stdin(), Some(interrupts()?))
        .context("starting the stdin reader")?;
    let summary = match plugboard_demo::run(&options, input, io::stdout(), io::stderr()) {
        Err(plugboard_demo::Error::Strict(n)) => {
            eprintln!(
                "error: {n} librar{} failed to load (--strict)",
                if n == 1 { "y" } else { "ies" }
            );
            return Ok(ExitCode::from(2));
        }
        other => other.context("demo REPL")?,
    };
    if !summary.drained {
        eprintln!("plugboard: grace period over; abandoned work that was still stuck");
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT/SIGTERM: the first one asks for a graceful stop (through the
/// returned channel); a second one exits at once with status 130.
fn interrupts() -> anyhow::Result<crossbeam_channel::Receiver<()>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen == 1 {
                    let _ = tx.try_send(());
                } else {
                    eprintln!("plugboard: interrupted again; exiting now");
                    std::process::exit(130);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(rx)
}

fn parse_plugin_deadline(value: &str) -> Result<(String, Duration), String> {
    let (name, secs) = value
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SECS, got `{value}`"))?;
    let secs: f64 = secs
        .parse()
        .map_err(|_| format!("`{secs}` is not a number of seconds"))?;
    let deadline = Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{secs}` is not a non-negative number of seconds"))?;
    Ok((name.to_owned(), deadline))
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        anyhow::anyhow!("{flag} must be a non-negative number of seconds, not {value}")
    })
}

/// Parses the command line; `--version` also names the interface version
/// and target, which decide what libraries this build can load.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let version = format!(
        "{} (interface {}, {}, {})",
        env!("CARGO_PKG_VERSION"),
        build_info::INTERFACE_VERSION,
        build_info::TARGET,
        build_info::PROFILE,
    );
    // clap keeps `&'static str`s; this one string lives for the whole run anyway.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Flags, else `$PLUGBOARD_PATH`, else the executable's directory (where
/// `cargo run` puts the example extensions).
fn load_path(flags: &[PathBuf]) -> anyhow::Result<LoadPath> {
    if !flags.is_empty() {
        return Ok(LoadPath::new(flags.iter().cloned()));
    }
    if let Some(value) = std::env::var_os(PATH_ENV) {
        let mut path = LoadPath::default();
        path.extend_from_env_value(&value);
        if !path.is_empty() {
            return Ok(path);
        }
    }
    let exe = std::env::current_exe().context("locating the plugboard executable")?;
    let dir = exe
        .parent()
        .context("the executable has no parent directory")?;
    Ok(LoadPath::new([dir]))
}
