//! The engine: a builder that loads and starts extensions, and the running
//! pipeline `adapters -> ingress -> router -> execution -> workers -> egress -> adapters`.
//!
//! Channels (all bounded, capacities from [`EngineConfig`]):
//!
//! - **ingress**: every adapter's sink (and each [`Handle`]) -> the router.
//! - **execution**: router -> worker pool, one batch per conversation at a
//!   time (see `engine/router.rs` for the ordering invariant).
//! - **egress**: one per adapter, workers -> that adapter's egress thread,
//!   which calls its `send`.
//! - **done** (unbounded by type, bounded by construction: at most one
//!   message per batch in flight): workers -> router.
//! - **resume** (unbounded by type, bounded the same way): batches that
//!   waited for a plugin's call slot (`engine/bulkhead.rs`) or lost their
//!   worker to a hung call -> the workers, which take them before new
//!   batches.

mod builder;
mod builtins;
mod bulkhead;
mod handle;
mod health;
mod host;
mod router;
pub mod routes;
pub mod shutdown;
mod stopping;
mod supervisor;
mod switches;
mod worker;

pub(crate) use builder::standalone_host;
pub use builder::EngineBuilder;
pub use builtins::stats_table;
use handle::stop_adapter;
pub use handle::{AdapterStatus, Handle, PluginStatus, SubmitError};
pub use switches::Scope;

use health::{Health, Outcome};
pub use health::{PluginCounters, PluginState};
pub use shutdown::ShutdownReport;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use abi_stable::std_types::RString;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use plugboard_interface::adapter::{Adapter, AdapterBox, AdapterManifest};
use plugboard_interface::host::ClientBox;
use plugboard_interface::message::RawMessage;
use plugboard_interface::plugin::Plugin;

use crate::error::{Kind, LoadError, LoadErrorKind, Source};
use crate::library::{AdapterCandidate, Candidate, PluginCandidate};
use crate::path::LoadPath;
use crate::preflight::{self, Preflight};
use crate::trust::TrustPolicy;
use host::{Gate, Inbound};
use router::Router;
use routes::Routes;
use shutdown::{Refuser, Tally};
use supervisor::Supervisor;
use switches::Switches;
use worker::{Links, LivePlugin, Shared, Slot, SlotState, Worker};

/// What to do with a command no plugin pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Log it at debug level and send nothing (chat etiquette: other bots
    /// may share the `!` prefix).
    #[default]
    Ignore,
    /// Reply "no command matches `!...`".
    Reply,
}

/// What the engine does once `max_pending` commands wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Wait for room (backpressure: the adapters' `push`, and in the demo
    /// stdin reading, slow down; nothing is lost).
    #[default]
    Block,
    /// Never wait for the plugins: answer "busy" to the commands of the
    /// conversations holding more than their fair share of the backlog
    /// (`max_pending` divided by the conversations with commands in flight
    /// or waiting), while conversations under their share (one command,
    /// say) are still admitted: up to `2 * max_pending` commands in all,
    /// and past that in place of a waiting command of the heaviest
    /// conversation while it holds more than its share (that command is
    /// answered "busy" instead).
    /// A busy reply names the command (``busy: too many of your commands
    /// are queued; `!cmd` was dropped``) and comes in the conversation's
    /// order, like every other reply: after the replies to its earlier
    /// commands, before those to its later ones. Past `max_pending` busy
    /// replies waiting (and the conversation's share of them), its
    /// consecutive refused commands share one reply (``... `!cmd` and 41
    /// more were dropped``), which bounds memory. An adapter's `push`
    /// waits only for the router to read the messages ahead of it (it never
    /// answers `PushError::Busy`).
    Reject,
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads running plugin commands; 0 means one per available core.
    pub workers: usize,
    /// Capacity of the ingress channel (messages).
    pub ingress_capacity: usize,
    /// Capacity of the execution channel (batches).
    pub execution_capacity: usize,
    /// Capacity of each adapter's egress channel (replies).
    pub egress_capacity: usize,
    /// Commands that may wait behind busy conversations (the router's
    /// backlog); see `when_full` for what happens past it.
    pub max_pending: usize,
    /// How long shutdown waits for adapters' `listen` to return after
    /// `stop` (never past the end of the shutdown); then intake closes, and
    /// a listener still running is abandoned. Meanwhile what they push is
    /// accepted (and refused, once `shutdown_grace` is over).
    pub listen_grace: Duration,
    /// How long a shutdown lets accepted commands run: until then the
    /// pipeline drains normally. Past it, for `refusal_window`, every
    /// command not yet run is answered ``the bot is shutting down; `!x` was
    /// not run`` instead (see [`shutdown`]).
    pub shutdown_grace: Duration,
    /// How long refusals have to reach the adapters once `shutdown_grace`
    /// is over. A shutdown ends `shutdown_grace + refusal_window` after it
    /// began (the *hard deadline*), whatever the extensions do: what is
    /// still busy then (an adapter stuck in `send` or `listen`, a plugin
    /// stuck in a call or in its `Drop`) is abandoned with a log line, and
    /// the commands still inside are counted as abandoned.
    pub refusal_window: Duration,
    /// What to do with unmatched commands.
    pub unmatched: Unmatched,
    /// What happens when the engine is full: once `max_pending` commands
    /// wait, the router stops reading (and adapters' `push` waits), or
    /// answers "busy", in order, to the conversations over their fair share
    /// (see [`WhenFull`]). (Once a command is dispatched it runs.)
    pub when_full: WhenFull,
    /// Deadline of one command call, unless the plugin has its own
    /// ([`EngineBuilder::plugin_deadline`]).
    pub command_deadline: Duration,
    /// Calls one plugin may have in flight at once (its bulkhead), unless
    /// it has its own limit in `plugin_max_in_flight`; 0 means the worker
    /// count. A command for a plugin at its limit waits in that plugin's
    /// queue without holding a worker (up to the plugin's deadline, then it
    /// is answered "busy"), so a hung plugin holds at most this many
    /// threads. At most `max_pending` commands wait per plugin.
    pub max_in_flight: usize,
    /// Per-plugin limits of calls in flight, by plugin name (see
    /// `max_in_flight`; [`EngineBuilder::plugin_max_in_flight`] adds one).
    pub plugin_max_in_flight: BTreeMap<String, usize>,
    /// A call running longer than this is *slow*: the engine adds a worker
    /// in its place, so that `workers` threads stay free for other plugins'
    /// users (the extra one retires when the call returns).
    pub slow_call: Duration,
    /// Consecutive panics or timeouts after which a plugin is quarantined
    /// (0: never).
    pub quarantine_after: u32,
    /// How long a quarantine lasts before one trial call may end it (a
    /// failed trial doubles it, up to an hour); zero: until reinstated.
    pub quarantine_cooldown: Duration,
    /// Bounds the worker threads: at most `workers + max_abandoned` exist,
    /// live or stuck in plugin calls past their deadline. Once
    /// `max_abandoned` threads are stuck, a plugin that leaves one more is
    /// quarantined whatever `quarantine_after` says (see the supervisor
    /// docs).
    pub max_abandoned: usize,
    /// How long an extension's `manifest` (when its library is opened or
    /// it is registered) and its `init` (at [`EngineBuilder::start`]) may
    /// run. Past it the extension fails (`init did not return within 5 s`)
    /// and the thread running it is abandoned (see [`crate::deadline`]).
    /// An adapter's `init` may connect to its platform: allow for that.
    pub load_deadline: Duration,
    /// Longest reply, in bytes, a plugin may send (0: no limit); longer
    /// replies are cut at a character boundary, with a note saying so.
    pub max_reply_bytes: usize,
    /// Most lines a plugin reply may have (0: no limit); longer replies are
    /// cut after that line, with a note saying so.
    pub max_reply_lines: usize,
    /// Where extensions keep state (each gets `<data_dir>/<plugins|adapters>/<name>`)
    /// and the engine its enable/disable switches (`<data_dir>/switches.json`).
    /// `None`: nothing persists.
    pub data_dir: Option<PathBuf>,
    /// Identities allowed to use the admin commands, as `<adapter>:<identity>`.
    pub admins: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            ingress_capacity: 1024,
            execution_capacity: 256,
            egress_capacity: 1024,
            max_pending: 4096,
            listen_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            refusal_window: Duration::from_secs(1),
            unmatched: Unmatched::Ignore,
            when_full: WhenFull::Block,
            command_deadline: Duration::from_secs(5),
            max_in_flight: 0,
            plugin_max_in_flight: BTreeMap::new(),
            slow_call: Duration::from_millis(100),
            quarantine_after: 3,
            quarantine_cooldown: Duration::from_secs(60),
            max_abandoned: 16,
            load_deadline: crate::deadline::DEFAULT_LOAD_DEADLINE,
            max_reply_bytes: 16 * 1024,
            max_reply_lines: 50,
            data_dir: None,
            admins: Vec::new(),
        }
    }
}

impl EngineConfig {
    fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// The longest a shutdown takes: `shutdown_grace + refusal_window`.
    pub fn shutdown_bound(&self) -> Duration {
        self.shutdown_grace.saturating_add(self.refusal_window)
    }

    /// The limit of calls in flight of plugin `name`.
    fn max_in_flight_of(&self, name: &str) -> usize {
        match self.plugin_max_in_flight.get(name) {
            Some(&n) if n > 0 => n,
            _ if self.max_in_flight > 0 => self.max_in_flight,
            _ => self.worker_count(),
        }
    }
}

/// `t + d`, or, for a `d` too long to represent, a time that never comes.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(u64::from(u32::MAX)))
}

/// `200 ms`, `5 s`, `2.5 s`: durations in replies and log lines.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// One extension that started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Plugin or adapter.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// Where it came from.
    pub source: Source,
}

/// What loaded and what did not, in load order.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Extensions that are running.
    pub loaded: Vec<Loaded>,
    /// Everything that failed, one entry each.
    pub failures: Vec<LoadError>,
    /// Adapters that took the platform client injected for them (see
    /// [`EngineBuilder::clients`]); the others talk to their platform
    /// themselves.
    pub took_client: Vec<String>,
}

/// The engine could not start at all (as opposed to one extension failing,
/// which is reported in the [`LoadReport`]).
#[derive(Debug)]
pub enum EngineError {
    /// A thread could not be spawned.
    Spawn {
        /// The thread's name.
        thread: String,
        /// The OS error.
        source: io::Error,
    },
    /// The saved plugin switches could not be read.
    Switches(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Spawn { thread, source } => {
                write!(f, "cannot spawn thread `{thread}`: {source}")
            }
            EngineError::Switches(e) => write!(f, "cannot read the plugin switches: {e}"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Spawn { source, .. } => Some(source),
            EngineError::Switches(_) => None,
        }
    }
}

struct RunningAdapter {
    name: String,
    obj: Arc<AdapterBox>,
    gate: Arc<Gate>,
}

/// One adapter's egress thread: delivers its replies, in order.
struct Egress {
    adapter: Arc<AdapterBox>,
    name: String,
    health: Arc<Health>,
    quarantine_after: u32,
    /// Counts the replies this adapter did not deliver, for the shutdown
    /// report (`undelivered`).
    failed: Arc<std::sync::atomic::AtomicU64>,
}

impl Egress {
    fn run(self, replies: Receiver<plugboard_interface::message::Egress>) {
        for reply in replies {
            if self.health.state() != PluginState::Active {
                log::debug!(
                    "adapter `{}` is quarantined; reply to {} dropped",
                    self.name,
                    reply.originator.identity
                );
                self.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let outcome = match self.adapter.send(&reply).into_result() {
                Ok(()) => Outcome::Ok,
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "adapter `{}` could not deliver a reply to {}: {e}",
                        self.name,
                        reply.originator.identity
                    );
                    if e.is_panic() {
                        Outcome::Panic
                    } else {
                        Outcome::Error
                    }
                }
            };
            let breaker = health::Breaker {
                quarantine_after: self.quarantine_after,
                cooldown: None,
            };
            if let health::Transition::Quarantined(_) = self.health.record(outcome, &breaker, false)
            {
                log::error!(
                    "adapter `{}` quarantined after {} consecutive panics in send; its replies are dropped until it is reinstated",
                    self.name,
                    self.quarantine_after
                );
            }
        }
    }
}

/// A running engine. Stop it with [`Engine::shutdown`] (dropping it does
/// the same).
pub struct Engine {
    config: EngineConfig,
    report: LoadReport,
    adapters: Vec<RunningAdapter>,
    handle_gate: Arc<Gate>,
    handle: Handle,
    listeners: Vec<(usize, JoinHandle<()>)>,
    listeners_done: Receiver<usize>,
    /// Which adapters' `listen` has returned.
    returned: Vec<bool>,
    /// Router and egress threads, which end by disconnection.
    pipeline: Vec<(String, JoinHandle<()>)>,
    /// Each pipeline thread drops its clone when it ends.
    pipeline_done: Receiver<()>,
    supervisor: Option<(Sender<()>, JoinHandle<()>)>,
    /// Dropped when the shutdown grace ends (the router refuses from then on).
    refuse: Option<Sender<()>>,
    /// Each adapter's egress channel, to count the replies left undelivered.
    egress_queues: Vec<Receiver<plugboard_interface::message::Egress>>,
    /// Replies an adapter failed to send (or dropped while quarantined).
    failed_sends: Arc<std::sync::atomic::AtomicU64>,
    stopped: bool,
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, EngineError> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|source| EngineError::Spawn {
            thread: name,
            source,
        })
}

impl Engine {
    /// A builder with these settings.
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            candidates: Vec::new(),
            failures: Vec::new(),
            extension_configs: HashMap::new(),
            deadlines: HashMap::new(),
            clients: None,
            trust: TrustPolicy::default(),
            preflight: None,
        }
    }

    fn spawn(
        config: EngineConfig,
        mut plugins: Vec<LivePlugin>,
        routes: Routes,
        adapters: Vec<(AdapterManifest, AdapterBox)>,
        report: LoadReport,
    ) -> Result<Engine, EngineError> {
        let (ingress_tx, ingress_rx) = bounded::<Inbound>(config.ingress_capacity.max(1));
        let (execution_tx, execution_rx) = bounded(config.execution_capacity.max(1));
        let (done_tx, done_rx) = unbounded();
        // Unbounded by type, bounded by construction: at most one
        // continuation per batch in flight.
        let (resume_tx, resume_rx) = unbounded();
        for plugin in &mut plugins {
            let limit = config.max_in_flight_of(&plugin.name);
            plugin
                .obj
                .configure(limit, config.max_pending, resume_tx.clone());
        }
        drop(resume_tx);
        let (pipeline_done_tx, pipeline_done) = bounded::<()>(0);
        let adapter_names: Vec<String> = adapters.iter().map(|(m, _)| m.name.to_string()).collect();
        let min_deadline = plugins
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(config.command_deadline);

        let mut pipeline = Vec::new();
        let mut running = Vec::new();
        let mut egress_txs = Vec::new();
        let mut egress_queues = Vec::new();
        let failed_sends = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut adapter_health = Vec::new();
        for (manifest, obj) in adapters {
            let name = manifest.name.to_string();
            let obj = Arc::new(obj);
            let (egress_tx, egress_rx) = bounded(config.egress_capacity.max(1));
            egress_txs.push(egress_tx);
            egress_queues.push(egress_rx.clone());
            let health = Arc::new(Health::default());
            adapter_health.push((name.clone(), Arc::clone(&health), Arc::downgrade(&obj)));
            let egress = Egress {
                adapter: Arc::clone(&obj),
                name: name.clone(),
                health,
                quarantine_after: config.quarantine_after,
                failed: Arc::clone(&failed_sends),
            };
            let finished = pipeline_done_tx.clone();
            let thread = format!("egress-{name}");
            pipeline.push((
                thread.clone(),
                spawn(thread, move || {
                    egress.run(egress_rx);
                    drop(finished);
                })?,
            ));
            running.push(RunningAdapter {
                name,
                obj,
                gate: Arc::new(Gate::new(ingress_tx.clone())),
            });
        }

        let shared = Arc::new(Shared {
            plugins,
            routes,
            adapter_names: adapter_names
                .iter()
                .map(|n| RString::from(n.as_str()))
                .collect(),
            unmatched: config.unmatched,
            breaker: health::Breaker {
                quarantine_after: config.quarantine_after,
                cooldown: (!config.quarantine_cooldown.is_zero())
                    .then_some(config.quarantine_cooldown),
            },
            abandoned: AtomicUsize::new(0),
            pool: worker::Pool {
                target: config.worker_count(),
                live: AtomicUsize::new(config.worker_count()),
                ..worker::Pool::default()
            },
            slow_call: config.slow_call,
            max_reply_bytes: config.max_reply_bytes,
            max_reply_lines: config.max_reply_lines,
            switches: Switches::load(config.data_dir.as_deref()).map_err(EngineError::Switches)?,
            admins: config.admins.clone(),
            refusing: AtomicBool::new(false),
            tally: Tally::default(),
        });
        for name in shared.switches.plugins() {
            if shared.plugin_index(&name).is_none() {
                log::warn!(
                    "the saved switches name plugin `{name}`, which is not loaded; kept for when it is"
                );
            }
        }
        let mut workers = Vec::new();
        for i in 0..config.worker_count() {
            let slot = Slot::new(SlotState {
                links: Some(Links {
                    egress: egress_txs.clone(),
                    done: done_tx.clone(),
                }),
                ..SlotState::default()
            });
            let worker = Worker {
                shared: Arc::clone(&shared),
                execution: execution_rx.clone(),
                resume: resume_rx.clone(),
                slot: Arc::clone(&slot),
                matched: Default::default(),
            };
            workers.push((slot, spawn(format!("worker-{i}"), move || worker.run())?));
        }
        // Disconnected when the shutdown grace ends: the router refuses.
        let (refuse, refuse_signal) = bounded::<()>(0);
        let refuser = Refuser {
            shared: Arc::clone(&shared),
            egress: egress_txs.clone(),
            signal: refuse_signal,
        };
        // Only the workers' slots may hold these: dropping them is what ends
        // each stage.
        drop((done_tx, egress_txs));

        let (control_tx, control_rx) = bounded(0);
        let supervisor = Supervisor {
            shared: Arc::clone(&shared),
            execution: execution_rx,
            resume: resume_rx,
            control: control_rx,
            workers,
            // Fine enough to answer a hung command near its deadline and to
            // add a worker soon after a call turns slow, coarse enough to
            // cost nothing.
            tick: (min_deadline / 20)
                .min(config.slow_call / 4)
                .clamp(Duration::from_millis(5), Duration::from_millis(100)),
            max_abandoned: config.max_abandoned,
            spawned: 0,
            short: false,
        };
        let supervisor = spawn("supervisor".to_owned(), move || supervisor.run())?;

        let router = Router {
            ingress: ingress_rx,
            done: done_rx,
            execution: execution_tx,
            max_pending: config.max_pending.max(1),
            reject: config.when_full == WhenFull::Reject,
            refuser: Some(refuser),
        };
        let finished = pipeline_done_tx;
        pipeline.push((
            "router".to_owned(),
            spawn("router".to_owned(), move || {
                router.run();
                drop(finished);
            })?,
        ));

        let handle_gate = Arc::new(Gate::new(ingress_tx));
        let handle = Handle {
            gate: Arc::clone(&handle_gate),
            adapters: adapter_health.into(),
            shared,
        };

        let (listen_done_tx, listeners_done) = unbounded();
        let mut listeners = Vec::new();
        for (index, adapter) in running.iter().enumerate() {
            let obj = Arc::clone(&adapter.obj);
            // Bounded by the adapter count, far below 2^32.
            let sink = host::sink(
                index as u32,
                adapter.name.as_str().into(),
                Arc::clone(&adapter.gate),
            );
            let name = adapter.name.clone();
            let done = listen_done_tx.clone();
            listeners.push((
                index,
                spawn(format!("listen-{name}"), move || {
                    if let Err(e) = obj.listen(sink).into_result() {
                        log::error!("adapter `{name}` stopped listening with an error: {e}");
                    }
                    let _ = done.send(index);
                })?,
            ));
        }

        Ok(Engine {
            config,
            report,
            adapters: running,
            handle_gate,
            handle,
            returned: vec![false; listeners.len()],
            listeners,
            listeners_done,
            pipeline,
            pipeline_done,
            supervisor: Some((control_tx, supervisor)),
            refuse: Some(refuse),
            egress_queues,
            failed_sends,
            stopped: false,
        })
    }

    /// What loaded and what failed.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Names of the running adapters, in load order.
    pub fn adapter_names(&self) -> impl Iterator<Item = &str> {
        self.adapters.iter().map(|a| a.name.as_str())
    }

    /// Names of the running plugins, in load order (the routing order).
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        self.handle.shared.plugins.iter().map(|p| p.name.as_str())
    }

    /// A handle to submit messages and manage plugins.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops gracefully: stop intake, finish every accepted command (until
    /// `shutdown_grace`; then refuse the rest, saying so), deliver every
    /// reply, stop the adapters, join every thread; all of it by
    /// `shutdown_grace + refusal_window`. See [`shutdown`]. Returns what
    /// became of the commands, and whether it all ended cleanly.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    /// Runs until every adapter's `listen` has returned by itself (its
    /// platform closed), then shuts down gracefully: the main loop of a bot
    /// whose adapters end on their own. Returns what [`Engine::shutdown`]
    /// returns.
    pub fn serve(mut self) -> ShutdownReport {
        while self.returned.iter().any(|r| !r) {
            match self.listeners_done.recv() {
                Ok(index) => self.returned[index] = true,
                // Every listener thread is gone.
                Err(_) => break,
            }
        }
        self.stop()
    }
}
