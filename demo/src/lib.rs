//! The plugboard demo REPL: the korecomm stdin demultiplexer, done right.
//!
//! Each input line is `<adapter> <content>`. The demultiplexer hands the
//! content to the named adapter's *mock platform client*; the adapter (a
//! real extension library) receives it as platform traffic and pushes it
//! into the engine, and replies come back through the adapter's `send` to
//! the client, which prints `[<adapter>] <reply>` on stdout. Diagnostics go
//! to stderr.
//!
//! # Layout
//!
//! - [`line`]: bounded line reading and `<adapter> <content>` parsing.
//! - [`client`]: the mock clients and the stdout printer thread.
//! - [`input`]: stdin read by a thread in blocks, interruptible by signals.
//! - [`inspect`]: `plugboard check` and `plugboard list`.
//! - [`loadgen`]: `plugboard bench`, the load generator.
//! - [`output`]: replies kept apart from what extensions print, and made
//!   printable.
//! - [`run`]: load, print the startup summary, demultiplex, shut down.
//!
//! # Key design decision: nothing typed is lost
//!
//! Every adapter's client exists, with a bounded queue, before the first
//! line is read, so lines typed while adapters start simply wait; a full
//! queue blocks reading stdin (backpressure) instead of dropping lines. At
//! end of input (or at the first interrupt, after which no line is taken)
//! the engine shuts down gracefully: every command handed to an adapter is
//! answered, or, once the grace period is over, answered that the bot is
//! shutting down, before the process exits; the last line on stderr counts
//! them (`done: ...`), and what nobody answered (a call stuck past the
//! end) is counted as abandoned.

pub mod client;
pub mod input;
pub mod inspect;
pub mod line;
pub mod loadgen;
pub mod output;

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{select, TrySendError};

use plugboard_interface::host::ClientMessage;
use plugboard_loader::{
    Engine, EngineConfig, EngineError, LoadPath, LoadReport, Preflight, ShutdownReport, TrustPolicy,
};

use client::{Feed, Unread};
use input::Input;
use line::Read;

/// REPL settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to look for extension libraries.
    pub load_path: LoadPath,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Longest accepted input line, in bytes.
    pub max_line_bytes: usize,
    /// Capacity of each mock client's inbound queue and of the printer queue.
    pub client_capacity: usize,
    /// What libraries to trust.
    pub trust: TrustPolicy,
    /// Treat any load failure as fatal.
    pub strict: bool,
    /// Per-plugin command deadlines, overriding the engine's.
    pub plugin_deadlines: Vec<(String, std::time::Duration)>,
    /// Each extension's configuration, as JSON.
    pub extension_configs: Vec<(plugboard_loader::Kind, String, String)>,
    /// Print the plugin stats table at shutdown.
    pub stats: bool,
    /// Open every library in a pre-flight child process first (see
    /// `plugboard_loader::preflight`); `None` opens them in-process only.
    pub preflight: Option<Preflight>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            load_path: LoadPath::default(),
            engine: EngineConfig::default(),
            max_line_bytes: 64 * 1024,
            client_capacity: 1024,
            trust: TrustPolicy::default(),
            strict: false,
            plugin_deadlines: Vec::new(),
            extension_configs: Vec::new(),
            stats: false,
            preflight: None,
        }
    }
}

/// What a session did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Input lines read.
    pub lines: u64,
    /// Lines handed to an adapter.
    pub delivered: u64,
    /// Of those, commands (starting with `!`).
    pub commands: u64,
    /// Lines rejected with a diagnostic.
    pub rejected: u64,
    /// Replies printed.
    pub replies: u64,
    /// Extensions that failed to load.
    pub load_failures: usize,
    /// Whether the session ended by an interrupt rather than end of input.
    pub interrupted: bool,
    /// What became of every command the engine was offered (the engine's
    /// report; commands an adapter never read from its client count as
    /// abandoned).
    pub shutdown: ShutdownReport,
    /// Whether the engine drained within its bounds, and every reply was
    /// printed.
    pub drained: bool,
}

/// The REPL failed as a whole.
#[derive(Debug)]
pub enum Error {
    /// The engine could not start.
    Engine(EngineError),
    /// Reading input or writing output failed.
    Io(io::Error),
    /// `strict` was set and libraries failed to load (listed on `diag`).
    Strict(usize),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The cause is the source: printers of the chain (anyhow's
            // `{:#}`) show it once.
            Error::Engine(_) => f.write_str("starting the engine"),
            Error::Io(_) => f.write_str("i/o"),
            Error::Strict(n) => write!(f, "{n} load failure(s), and --strict makes them fatal"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Strict(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Runs a whole REPL session: load, summarise, read `input` to its end (or
/// its interrupt), shut down gracefully. Replies go to `output`,
/// diagnostics to `diag` (buffered, flushed whenever input would block).
pub fn run(
    options: &Options,
    mut input: Input,
    output: impl Write + Send + 'static,
    diag: impl Write,
) -> Result<Summary, Error> {
    let mut diag = io::BufWriter::new(diag);
    // Said (and flushed) before any library is opened: if one takes the
    // process down while loading or in `init`, the operator knows where.
    write_load_path(&mut diag, &options.load_path)?;
    diag.flush()?;
    let (printer, printer_thread) = client::printer(output, options.client_capacity)?;
    let created: Arc<Mutex<HashMap<String, Feed>>> = Arc::default();
    let capacity = options.client_capacity;
    let engine = {
        let created = Arc::clone(&created);
        let mut builder = Engine::builder(options.engine.clone());
        for (plugin, deadline) in &options.plugin_deadlines {
            builder = builder.plugin_deadline(plugin, *deadline);
        }
        for (kind, name, json) in &options.extension_configs {
            builder = builder.extension_config(*kind, name, json.clone());
        }
        let builder = builder
            .trust(options.trust.clone())
            .preflight(options.preflight.clone())
            .load_path(&options.load_path);
        if options.strict && !builder.failures().is_empty() {
            // Fail before any extension's `init` runs (an adapter's init
            // may connect to its platform).
            for failure in builder.failures() {
                writeln!(diag, "failed: {}", output::one_line(&failure.to_string()))?;
            }
            diag.flush()?;
            return Err(Error::Strict(builder.failures().len()));
        }
        builder
            .clients(move |manifest| {
                let (feed, client) = client::mock(&manifest.name, capacity, printer.clone());
                lock(&created).insert(manifest.name.to_string(), feed);
                Some(client)
            })
            .start()
            .map_err(Error::Engine)?
        // The factory, and with it the last printer sender outside the mock
        // clients, is dropped here: the printer stops when the clients do.
    };
    // Feeds of adapters that failed init are useless; keep the running ones.
    let mut feeds = std::mem::take(&mut *lock(&created));
    // Only adapters that took their mock client read the REPL's input; the
    // others (a real IRC adapter, say) talk to their own platform.
    let reading = &engine.report().took_client;
    let elsewhere: Vec<String> = engine
        .adapter_names()
        .filter(|a| !reading.iter().any(|r| r == a))
        .map(str::to_owned)
        .collect();
    feeds.retain(|name, _| reading.contains(name));
    let fatal = options.strict && !engine.report().failures.is_empty();
    write_summary(&mut diag, engine.report(), &engine, !fatal)?;
    diag.flush()?;
    if fatal {
        let failures = engine.report().failures.len();
        drop(feeds);
        engine.shutdown();
        return Err(Error::Strict(failures));
    }

    let mut known: Vec<&str> = feeds.keys().map(String::as_str).collect();
    known.sort_unstable();
    let known = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };

    let mut summary = Summary {
        load_failures: engine.report().failures.len(),
        ..Summary::default()
    };
    let mut buf = Vec::new();
    let interrupt = input.interrupt();
    loop {
        // No line is taken after an interrupt, not even one already read
        // from stdin.
        if input.interrupted() {
            summary.interrupted = true;
            break;
        }
        if !input.has_buffered() {
            // About to wait for input: show what we have to say first.
            diag.flush()?;
        }
        let read = match line::read_line(&mut input, &mut buf, options.max_line_bytes) {
            Ok(read) => read,
            Err(e) if input::is_stopped(&e) => {
                summary.interrupted = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if read == Read::Eof {
            break;
        }
        summary.lines += 1;
        let n = summary.lines;
        let parsed = match read {
            Read::TooLong => Err(line::LineError::TooLong {
                max: options.max_line_bytes,
            }),
            _ => std::str::from_utf8(&buf)
                .map_err(|_| line::LineError::NotUtf8)
                .and_then(line::parse),
        };
        let line = match parsed {
            Ok(line) => line,
            Err(e) => {
                summary.rejected += 1;
                writeln!(diag, "error: stdin:{n}: {e}")?;
                continue;
            }
        };
        if line.content == "!" {
            summary.rejected += 1;
            writeln!(
                diag,
                "error: stdin:{n}: `!` needs a command name, e.g. `!bacon`; skipped"
            )?;
            continue;
        }
        if elsewhere.iter().any(|a| a == line.adapter) {
            summary.rejected += 1;
            writeln!(
                diag,
                "error: stdin:{n}: adapter `{}` talks to its own platform, not to this REPL; skipped",
                line.adapter
            )?;
            continue;
        }
        let Some(feed) = feeds.get(line.adapter) else {
            summary.rejected += 1;
            writeln!(
                diag,
                "error: stdin:{n}: no adapter named `{}` (known: {known}); skipped",
                line.adapter
            )?;
            continue;
        };
        let message = ClientMessage {
            room: line.room.map(Into::into).into(),
            user: line.user.map(Into::into).into(),
            text: line.content.into(),
        };
        // A full queue waits (backpressure), but an interrupt ends the wait:
        // the grace period must start even while the engine is stuck.
        let sent = match feed.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(()),
            Err(TrySendError::Full(message)) => {
                log::debug!("stdin:{n}: the engine is full; waiting to hand the line over");
                select! {
                send(feed.tx, message) -> sent => sent.map_err(|_| ()),
                recv(interrupt) -> _ => {
                    summary.interrupted = true;
                    writeln!(diag, "note: stdin:{n}: not delivered: interrupted while the engine was full")?;
                    break;
                }
                }
            }
        };
        if sent.is_err() {
            summary.rejected += 1;
            writeln!(
                diag,
                "error: stdin:{n}: adapter `{}` stopped listening; skipped",
                line.adapter
            )?;
            continue;
        }
        summary.delivered += 1;
        if line
            .content
            .starts_with(plugboard_interface::COMMAND_PREFIX)
        {
            summary.commands += 1;
        } else {
            writeln!(
                diag,
                "note: stdin:{n}: not a command (commands start with `!`); `{}` sees it as chat",
                line.adapter
            )?;
        }
    }

    // End of input (or an interrupt, announced at once by whoever sent it:
    // see `interrupted_line`): the clients drain what is queued, then report
    // closed, and the engine answers everything it accepted (refusing what
    // is left once the grace is over) before it stops.
    diag.flush()?;
    let unread: Vec<Unread> = feeds.values().map(Feed::unread).collect();
    drop(feeds);
    let handle = engine.handle();
    let stopping = std::time::Instant::now();
    let report = engine.shutdown();
    summary.drained = report.clean;
    if options.stats {
        writeln!(diag, "{}", plugboard_loader::stats_table(&handle.plugins()))?;
    }
    // The same bound as the engine's ends the wait for the last replies.
    let bound = options.engine.shutdown_bound();
    let end = stopping
        .checked_add(bound)
        .unwrap_or_else(|| stopping + Duration::from_secs(u64::from(u32::MAX)));
    summary.replies = match printer_thread.finish(end)? {
        Ok(printed) => printed,
        Err(printed) => {
            summary.drained = false;
            writeln!(
                diag,
                "plugboard: an adapter the engine abandoned still holds its client; not waiting for its replies"
            )?;
            printed
        }
    };
    // Left in a client by an adapter that never returned: nobody answers them.
    let unread: u64 = unread.iter().map(Unread::commands).sum();
    summary.shutdown = ShutdownReport {
        abandoned: report.abandoned + unread,
        ..report
    };
    writeln!(diag, "{}", done_line(&summary))?;
    diag.flush()?;
    Ok(summary)
}

/// The REPL's last line on stderr: what became of the input.
pub fn done_line(summary: &Summary) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let commands = summary.shutdown.commands();
    format!(
        "done: {} line{} read; {commands} command{}: {}",
        summary.lines,
        plural(summary.lines),
        plural(commands),
        summary.shutdown
    )
}

/// The line the binary prints on stderr the moment the first SIGINT or
/// SIGTERM arrives, before anything else happens: the user must see that
/// the interrupt acted, and how long the rest may take.
pub fn interrupted_line(grace: Duration) -> String {
    let grace = if grace < Duration::from_secs(1) {
        format!("{} ms", grace.as_millis())
    } else if grace.subsec_millis() == 0 {
        format!("{} s", grace.as_secs())
    } else {
        format!("{:.1} s", grace.as_secs_f64())
    };
    format!(
        "plugboard: interrupted: finishing accepted commands for up to {grace}, then refusing the rest (interrupt again to quit now)"
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only this thread and the builder (on this thread) touch the map.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_load_path(diag: &mut impl Write, load_path: &LoadPath) -> io::Result<()> {
    let dirs: Vec<String> = load_path
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    writeln!(
        diag,
        "load path: {}",
        if dirs.is_empty() {
            "(empty)".to_owned()
        } else {
            dirs.join(":")
        }
    )
}

/// The startup summary, after the load path line; `ready` is false when the session will not run
/// (`--strict` with an `init` failure).
fn write_summary(
    diag: &mut impl Write,
    report: &LoadReport,
    engine: &Engine,
    ready: bool,
) -> io::Result<()> {
    for loaded in &report.loaded {
        writeln!(
            diag,
            "loaded {} `{}` {} from {}",
            loaded.kind, loaded.name, loaded.version, loaded.source
        )?;
    }
    for failure in &report.failures {
        writeln!(diag, "failed: {}", output::one_line(&failure.to_string()))?;
    }
    if !ready {
        return Ok(());
    }
    let plugins = engine.plugin_names().count();
    let adapters = engine.adapter_names().count();
    writeln!(
        diag,
        "ready: {plugins} plugin(s), {adapters} adapter(s), {} failure(s); \
         type `<adapter> !<command>`, end with Ctrl-D",
        report.failures.len()
    )?;
    if adapters == 0 {
        writeln!(
            diag,
            "warning: no adapter loaded; every line will be skipped"
        )?;
    }
    Ok(())
}
