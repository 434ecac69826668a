//! The `plugboard` binary: the demo REPL. All logic lives in the libraries;
//! this file parses flags, sets up logging and maps errors to exit codes.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use plugboard::{build_info, EngineConfig, LoadPath, Unmatched, PATH_ENV};

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
            ..EngineConfig::default()
        },
        max_line_bytes: cli.max_line_bytes,
        client_capacity: cli.channel_capacity,
    };
    if io::stdin().is_terminal() {
        eprintln!(
            "plugboard {} (interface {}, {})",
            env!("CARGO_PKG_VERSION"),
            build_info::INTERFACE_VERSION,
            build_info::TARGET
        );
    }
    let stdin = io::stdin().lock();
    plugboard_demo::run(&options, stdin, io::stdout(), io::stderr()).context("demo REPL")?;
    Ok(ExitCode::SUCCESS)
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
