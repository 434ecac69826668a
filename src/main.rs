//! The `plugboard` binary: the demo REPL (default), `check` and `list`.
//! All logic lives in the libraries; this file parses flags, merges them
//! with the environment and the config file, sets up logging, and maps
//! outcomes to exit codes.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use plugboard::config::FileConfig;
use plugboard::{build_info, EngineConfig, LoadPath, TrustPolicy, Unmatched, WhenFull, PATH_ENV};

/// A chat-bot engine whose plugins and adapters are shared libraries.
///
/// Without a subcommand, runs the demo REPL: reads lines
/// `<adapter>[#<room>][@<user>] <content>` from stdin, e.g. `irc !bacon nelsk`,
/// routes commands to plugins through the named adapter, and prints replies
/// as `[<adapter>] <reply>` on stdout. Diagnostics and logs go to stderr
/// (`RUST_LOG=debug` for more). At end of input or on SIGINT/SIGTERM,
/// accepted commands run for up to the grace period and the rest are
/// refused, saying so; exits 0 once every command is answered, 3 if any
/// had to be abandoned.
///
/// Settings come from flags, then the environment, then the config file,
/// then defaults.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    common: Common,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate libraries without running the engine: print kind, name,
    /// version, interface version and commands; exit 1 if any is invalid.
    /// Each invalid library gets one line; `RUST_LOG=debug` adds the long
    /// form where there is one (abi_stable's full layout report).
    Check {
        /// Library files to check.
        #[arg(required = true, value_name = "LIB")]
        libraries: Vec<PathBuf>,
    },
    /// Show every library on the load path and whether it would load.
    List,
    /// Drive the real engine and libraries with the standard mixed workload
    /// (through the same path as the REPL) and report lines/s, replies/s,
    /// latency p50/p99/max, peak RSS, reorders and losses.
    Bench {
        /// Input lines to generate.
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        /// Offered load in lines per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// The flood workload instead: one user sends 9 lines in 10, and
        /// every 10th line is a new user's only command; reports the share
        /// of each class that was shed (see `--when-full`).
        #[arg(long)]
        flood: bool,
        /// What happens when the engine is full [default: block].
        #[arg(long, value_enum)]
        when_full: Option<Full>,
    },
}

/// Options every subcommand understands.
#[derive(Debug, clap::Args)]
struct Common {
    /// Config file (TOML). Default: $PLUGBOARD_CONFIG, else
    /// $XDG_CONFIG_HOME/plugboard/plugboard.toml (~/.config/...) if it exists.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    /// Directory to load plugins and adapters from; repeat to search several,
    /// in order. Replaces $PLUGBOARD_PATH (`:`-separated), which replaces the
    /// config file's `plugin_path`, which replaces the default: the directory
    /// of this executable.
    #[arg(long = "plugin-path", short = 'L', value_name = "DIR", global = true)]
    plugin_path: Vec<PathBuf>,

    /// Load libraries and directories even if other users can write to them.
    #[arg(long, global = true)]
    allow_writable: bool,

    /// Only load libraries whose SHA-256 is listed in FILE (`sha256sum` format).
    #[arg(long, value_name = "FILE", global = true)]
    allowlist: Option<PathBuf>,

    /// Open libraries only in this process, without first opening each in a
    /// short-lived child process (the pre-flight, which turns a library
    /// that crashes, exits or hangs while loading into one failure line).
    /// For trusted set-ups that want the last millisecond of startup.
    #[arg(long, global = true)]
    no_preflight: bool,

    /// Seconds an extension may take to load (its initialisers and
    /// `manifest`) and to `init` before it fails (a thread stuck in it is
    /// abandoned); adapters may connect to their platform in `init`
    /// [default: 5].
    #[arg(long, value_name = "SECS", global = true)]
    load_deadline: Option<f64>,
}

/// Options of the REPL.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where extensions keep state and the engine its enable/disable
    /// switches. Default: $PLUGBOARD_DATA_DIR, else the config file's
    /// `data_dir`, else $XDG_DATA_HOME/plugboard (~/.local/share/plugboard).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// An identity allowed to use admin commands, as ADAPTER:IDENTITY
    /// (repeatable; adds to the config file's `admins`).
    #[arg(long, value_name = "ADAPTER:IDENTITY")]
    admin: Vec<String>,

    /// Worker threads running plugin commands [default: one per core].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// Capacity of each engine channel and client queue (backpressure bound)
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    channel_capacity: Option<usize>,

    /// Longest accepted input line, in bytes, without its line ending;
    /// longer lines are skipped [default: 65536].
    #[arg(long, value_name = "BYTES", value_parser = at_least_one)]
    max_line_bytes: Option<usize>,

    /// Stay silent on commands that no plugin matches instead of replying
    /// "no command matches".
    #[arg(long)]
    ignore_unmatched: bool,

    /// Exit with an error (status 2), listing every failure, if any library
    /// fails to load.
    #[arg(long)]
    strict: bool,

    /// Seconds a plugin command may run before its user gets a timeout
    /// reply [default: 5].
    #[arg(long, value_name = "SECS")]
    command_deadline: Option<f64>,

    /// A plugin's own command deadline, as NAME=SECS (repeatable).
    #[arg(long, value_name = "NAME=SECS", value_parser = parse_plugin_deadline)]
    plugin_deadline: Vec<(String, Duration)>,

    /// Calls one plugin may have in flight at once; more wait without
    /// holding a worker (0: the worker count) [default: 0].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,

    /// A plugin's own limit of calls in flight, as NAME=N (repeatable).
    #[arg(long, value_name = "NAME=N", value_parser = parse_plugin_limit)]
    plugin_max_in_flight: Vec<(String, usize)>,

    /// Consecutive panics or timeouts after which a plugin is quarantined
    /// (0: never) [default: 3].
    #[arg(long, value_name = "N")]
    quarantine_after: Option<u32>,

    /// Seconds a quarantine lasts before one trial call may end it; a failed
    /// trial doubles it, up to an hour (0: until re-enabled) [default: 60].
    #[arg(long, value_name = "SECS")]
    quarantine_cooldown: Option<f64>,

    /// Longest plugin reply, in bytes; longer ones are cut, saying so
    /// (0: no limit) [default: 16384].
    #[arg(long, value_name = "BYTES")]
    max_reply_bytes: Option<usize>,

    /// Most lines of a plugin reply; longer ones are cut, saying so
    /// (0: no limit) [default: 50].
    #[arg(long, value_name = "N")]
    max_reply_lines: Option<usize>,

    /// Seconds accepted commands may still run at end of input or on
    /// SIGINT/SIGTERM; then the rest are answered "the bot is shutting
    /// down", and what is still stuck 1 s later is abandoned (exit status
    /// 3; a second interrupt exits at once) [default: 10].
    #[arg(long, value_name = "SECS")]
    grace_period: Option<f64>,

    /// What happens when the engine is full: wait (nothing is lost, input
    /// slows down) or reject (users over their fair share of the backlog get
    /// "busy" replies, in order) [default: block].
    #[arg(long, value_enum)]
    when_full: Option<Full>,

    /// Print each plugin's counters and latency percentiles at shutdown.
    #[arg(long)]
    stats: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Full {
    Block,
    Reject,
}

impl From<Full> for WhenFull {
    fn from(full: Full) -> Self {
        match full {
            Full::Block => WhenFull::Block,
            Full::Reject => WhenFull::Reject,
        }
    }
}

fn main() -> ExitCode {
    // A pre-flight child (this binary, started by itself to open libraries
    // at arm's length) never gets further than this.
    plugboard::preflight::run_if_child();
    // A fatal signal in an extension still ends the process, but names it.
    plugboard::fatal::install();
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
    // Records may quote extensions' text (or come from them): escaped, and
    // multi-line ones indented, so that none can pass for another record.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|buf, record| {
            use plugboard_demo::output::{log_text, one_line};
            writeln!(
                buf,
                "[{:<5} {}] {}",
                record.level(),
                one_line(record.target()),
                log_text(&record.args().to_string())
            )
        })
        .init();
    let file = load_config(cli.common.config.as_deref())?;
    let trust = trust(&cli.common, &file)?;
    let load_path = load_path(&cli.common.plugin_path, &file)?;
    let preflight = if cli.common.no_preflight || file.trust.preflight == Some(false) {
        None
    } else {
        Some(plugboard::Preflight::current_exe().context("locating the plugboard executable")?)
    };
    // The flag, else the file's `[engine] load_deadline`, else the default.
    let load_deadline = match cli.common.load_deadline {
        Some(secs) => seconds("--load-deadline", secs)?,
        None => {
            let mut engine = EngineConfig::default();
            file.apply(&mut engine);
            engine.load_deadline
        }
    };
    // From here on, descriptor 1 is stderr: whatever an extension prints
    // cannot mix with replies and reports, which go to `stdout` only.
    let mut stdout =
        plugboard_demo::output::reserve_stdout().context("setting up standard output")?;
    match cli.command {
        Some(Command::Check { libraries }) => {
            let invalid = plugboard_demo::inspect::check(
                &libraries,
                &trust,
                preflight.as_ref(),
                load_deadline,
                &mut stdout,
                &mut io::stderr(),
            )?;
            Ok(if invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::List) => {
            let failed = plugboard_demo::inspect::list(
                &load_path,
                &trust,
                preflight.as_ref(),
                load_deadline,
                &mut stdout,
            )?;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::Bench {
            lines,
            rate,
            flood,
            when_full,
        }) => {
            let options = plugboard_demo::Options {
                load_path,
                trust,
                preflight,
                // Replies to unmatched commands count as output like in the REPL.
                engine: EngineConfig {
                    unmatched: Unmatched::Reply,
                    load_deadline,
                    when_full: when_full.map_or(WhenFull::Block, WhenFull::from),
                    ..EngineConfig::default()
                },
                ..plugboard_demo::Options::default()
            };
            let workload = if flood {
                plugboard_demo::loadgen::Workload::Flood
            } else {
                plugboard_demo::loadgen::Workload::Standard
            };
            let report = plugboard_demo::loadgen::run(
                &options,
                plugboard_demo::loadgen::Load {
                    lines,
                    rate,
                    workload,
                },
            )
            .context("load generator")?;
            writeln!(stdout, "{report}")?;
            Ok(if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        None => repl(
            cli.run,
            file,
            trust,
            load_path,
            (preflight, load_deadline),
            stdout,
        ),
    }
}

fn repl(
    args: RunArgs,
    file: FileConfig,
    trust: TrustPolicy,
    load_path: LoadPath,
    (preflight, load_deadline): (Option<plugboard::Preflight>, Duration),
    stdout: std::fs::File,
) -> anyhow::Result<ExitCode> {
    // Defaults, then the file, then the environment, then flags.
    let mut engine = EngineConfig {
        unmatched: Unmatched::Reply,
        data_dir: default_data_dir(),
        ..EngineConfig::default()
    };
    file.apply(&mut engine);
    if let Some(dir) = std::env::var_os("PLUGBOARD_DATA_DIR").filter(|d| !d.is_empty()) {
        engine.data_dir = Some(dir.into());
    }
    if let Some(dir) = args.data_dir {
        engine.data_dir = Some(dir);
    }
    engine.admins.extend(args.admin);
    if let Some(n) = args.workers {
        engine.workers = n;
    }
    if let Some(n) = args.channel_capacity {
        engine.ingress_capacity = n;
        engine.execution_capacity = n;
        engine.egress_capacity = n;
    }
    if args.ignore_unmatched {
        engine.unmatched = Unmatched::Ignore;
    }
    if let Some(full) = args.when_full {
        engine.when_full = full.into();
    }
    if let Some(secs) = args.command_deadline {
        engine.command_deadline = seconds("--command-deadline", secs)?;
    }
    engine.load_deadline = load_deadline;
    if let Some(n) = args.quarantine_after {
        engine.quarantine_after = n;
    }
    if let Some(secs) = args.quarantine_cooldown {
        engine.quarantine_cooldown = seconds("--quarantine-cooldown", secs)?;
    }
    if let Some(n) = args.max_in_flight {
        engine.max_in_flight = n;
    }
    engine
        .plugin_max_in_flight
        .extend(args.plugin_max_in_flight);
    if let Some(n) = args.max_reply_bytes {
        engine.max_reply_bytes = n;
    }
    if let Some(n) = args.max_reply_lines {
        engine.max_reply_lines = n;
    }
    if let Some(secs) = args.grace_period {
        engine.shutdown_grace = seconds("--grace-period", secs)?;
    }
    // The mock clients' adapters relay everything queued for them, refused
    // past the grace: they may listen until the very end.
    engine.listen_grace = engine.shutdown_bound();
    let mut plugin_deadlines: Vec<(String, Duration)> =
        file.deadlines().map(|(n, d)| (n.to_owned(), d)).collect();
    plugin_deadlines.extend(args.plugin_deadline);
    let defaults = plugboard_demo::Options::default();
    let options = plugboard_demo::Options {
        load_path,
        client_capacity: args
            .channel_capacity
            .or(file.repl.client_capacity)
            .unwrap_or(defaults.client_capacity),
        max_line_bytes: args
            .max_line_bytes
            .or(file.repl.max_line_bytes)
            .unwrap_or(defaults.max_line_bytes),
        engine,
        trust,
        strict: args.strict,
        plugin_deadlines,
        extension_configs: file
            .extension_configs()
            .map(|(kind, name, json)| (kind, name.to_owned(), json))
            .collect(),
        stats: args.stats,
        preflight,
    };
    if io::stdin().is_terminal() {
        eprintln!("plugboard {}", version());
    }
    let interrupted = plugboard_demo::interrupted_line(options.engine.shutdown_grace);
    // The orderly exit takes the grace and the refusal window at most.
    let bound = options
        .engine
        .shutdown_bound()
        .saturating_add(WATCHDOG_SLACK);
    let input =
        plugboard_demo::input::Input::spawn(io::stdin(), Some(interrupts(interrupted, bound)?))
            .context("starting the stdin reader")?;
    let summary = match plugboard_demo::run(&options, input, stdout, io::stderr()) {
        Err(plugboard_demo::Error::Strict(n)) => {
            eprintln!(
                "error: {n} librar{} failed to load (--strict)",
                if n == 1 { "y" } else { "ies" }
            );
            return Ok(ExitCode::from(2));
        }
        other => other.context("demo REPL")?,
    };
    // From here on only the exit itself (library destructors) can hold
    // the process.
    watchdog(
        EXIT_BOUND,
        format!(
            "plugboard: the exit did not finish within {} ms; exiting now (status 3)",
            EXIT_BOUND.as_millis()
        ),
    );
    if !summary.drained {
        eprintln!(
            "plugboard: abandoned what was still stuck at the end of the shutdown (grace period + 1 s)"
        );
    }
    Ok(if summary.shutdown.nothing_lost() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ABANDONED)
    })
}

/// The exit status when accepted work was abandoned (a command nobody
/// answered, a reply not delivered), or the watchdog ended the process.
const ABANDONED: u8 = 3;

/// How long past its own bound the orderly exit may take before the
/// watchdog ends the process.
const WATCHDOG_SLACK: Duration = Duration::from_millis(500);

/// How long the exit itself may take once the REPL is done (flushing,
/// library destructors run by `exit`).
const EXIT_BOUND: Duration = Duration::from_millis(1000);

/// The belt to the braces: unless the process has exited `after` from now,
/// print `why` and end it with status 3 at once (`_exit`: no destructor,
/// no `atexit` handler runs). The engine bounds its own shutdown; this
/// bounds what nothing else does, such as a library destructor that hangs
/// the exit.
fn watchdog(after: Duration, why: String) {
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            // A stuck stderr must not hold the exit either.
            let (said, saying) = crossbeam_channel::bounded::<()>(0);
            let _ = std::thread::Builder::new().spawn(move || {
                eprintln!("{why}");
                drop(said);
            });
            let _ = saying.recv_timeout(Duration::from_millis(100));
            // SAFETY: `_exit` only ends the process; nothing runs after it.
            unsafe { libc::_exit(i32::from(ABANDONED)) }
        });
    if let Err(e) = spawned {
        eprintln!("plugboard: cannot start the exit watchdog: {e}");
    }
}

fn version() -> String {
    format!(
        "{} (interface {}, {}, {})",
        env!("CARGO_PKG_VERSION"),
        build_info::INTERFACE_VERSION,
        build_info::TARGET,
        build_info::PROFILE,
    )
}

/// Parses the command line; `--version` also names the interface version
/// and target, which decide what libraries this build can load.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    // clap keeps `&'static str`s; this one string lives for the whole run anyway.
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `$<var>/plugboard`, else `~/<fallback>/plugboard` (the XDG base
/// directory convention).
fn xdg(var: &str, fallback: &str) -> Option<PathBuf> {
    let base = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(fallback))
        })?;
    Some(base.join("plugboard"))
}

fn default_data_dir() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// The file named by the flag or `$PLUGBOARD_CONFIG` must exist; the
/// default location is optional.
fn load_config(flag: Option<&Path>) -> anyhow::Result<FileConfig> {
    let explicit = flag.map(Path::to_owned).or_else(|| {
        std::env::var_os("PLUGBOARD_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let path = match explicit {
        Some(path) => path,
        None => match xdg("XDG_CONFIG_HOME", ".config").map(|d| d.join("plugboard.toml")) {
            Some(path) if path.exists() => path,
            _ => return Ok(FileConfig::default()),
        },
    };
    Ok(FileConfig::load(&path)?)
}

fn trust(common: &Common, file: &FileConfig) -> anyhow::Result<TrustPolicy> {
    let allowlist = match common.allowlist.as_ref().or(file.trust.allowlist.as_ref()) {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the allowlist {}", path.display()))?;
            let set = plugboard::trust::parse_allowlist(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(set)
        }
        None => None,
    };
    Ok(TrustPolicy {
        allow_writable: common.allow_writable || file.trust.allow_writable.unwrap_or(false),
        allowlist,
    })
}

/// Flags, else `$PLUGBOARD_PATH`, else the config file, else the
/// executable's directory (where `cargo run` puts the example extensions).
fn load_path(flags: &[PathBuf], file: &FileConfig) -> anyhow::Result<LoadPath> {
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
    if let Some(dirs) = &file.plugin_path {
        return Ok(LoadPath::new(dirs.iter().cloned()));
    }
    let exe = std::env::current_exe().context("locating the plugboard executable")?;
    let dir = exe
        .parent()
        .context("the executable has no parent directory")?;
    Ok(LoadPath::new([dir]))
}

/// SIGINT/SIGTERM: the first one prints `announce` at once (whatever the
/// REPL is waiting for), asks for a graceful stop by disconnecting the
/// returned channel, which every wait of the REPL watches, and starts the
/// watchdog: the process ends (status 3) if it is still running `bound`
/// later. A second one exits at once with status 130.
fn interrupts(
    announce: String,
    bound: Duration,
) -> anyhow::Result<crossbeam_channel::Receiver<()>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // The second interrupt is counted in the handler itself: a thread
    // reading signal-hook's flags would see two signals in quick
    // succession as one, and the operator's second Ctrl-C would be lost.
    static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for signal in [SIGINT, SIGTERM] {
        let second = || {
            if INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
                const LINE: &[u8] = b"plugboard: interrupted again; exiting now\n";
                // SAFETY: `write` and `_exit` are async-signal-safe, and
                // the buffer is a static.
                unsafe {
                    libc::write(2, LINE.as_ptr().cast(), LINE.len());
                    libc::_exit(130);
                }
            }
        };
        // SAFETY: the action only touches an atomic and calls
        // async-signal-safe functions (see above).
        unsafe { signal_hook::low_level::register(signal, second) }
            .context("installing signal handlers")?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen == 1 {
                    eprintln!("{announce}");
                    drop(tx.take());
                    watchdog(
                        bound,
                        format!(
                            "plugboard: still running {:.1} s after the interrupt; exiting now (status 3)",
                            bound.as_secs_f64()
                        ),
                    );
                } else {
                    // Normally reached only if the handler above could not
                    // count (it exits the process itself).
                    eprintln!("plugboard: interrupted again; exiting now");
                    std::process::exit(130);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(rx)
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (no line could be read)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
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

fn parse_plugin_limit(value: &str) -> Result<(String, usize), String> {
    let (name, n) = value
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=N, got `{value}`"))?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("`{n}` is not a number of calls"))?;
    Ok((name.to_owned(), n))
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        anyhow::anyhow!("{flag} must be a non-negative number of seconds, not {value}")
    })
}
