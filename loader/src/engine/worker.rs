//! Workers: run plugin commands and hand their replies to egress.
//!
//! A worker owns a [`Slot`]: the rest of the batch it is running and the
//! call in progress. The slot is what makes hung commands survivable: when a
//! call misses its deadline the [supervisor](super::supervisor) takes the
//! slot's remaining work (and its channel senders) away, answers the hung
//! command with a timeout reply, and hands the rest to the other workers.
//! The stuck thread cannot be killed; if its call ever returns, it finds
//! its slot abandoned, drops the result and exits.
//!
//! Workers take work from two places: continuations to resume (first: they
//! are older), and new batches from the router. A continuation is the rest
//! of a batch that waited for a plugin's call slot ([`bulkhead`](super::bulkhead)),
//! or whose worker was abandoned.
//!
//! **Once the shutdown grace is over, workers refuse.** Before each step
//! a worker reads the shared `refusing` flag (one relaxed load); once it is
//! set, the rest of that command is answered with the shutting-down reply
//! instead of running (see [`shutdown`](super::shutdown)), and so is every
//! later command of the batch. A permit or trial call the command held is
//! given back.
//!
//! **The pool keeps its capacity.** The supervisor adds a worker for each
//! one that has been inside a single call longer than the slow threshold,
//! so that `workers` threads are always free for everyone else; a worker
//! that finds the pool above that (a slow call returned) retires after its
//! current work. Each check is two atomic loads per piece of work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RSlice, RStr, RString};
use crossbeam_channel::{select, Receiver, Sender, TryRecvError};
use plugboard_interface::message::{Egress, Invocation, Originator, Span};
use plugboard_interface::ExtError;
use regex::CaptureLocations;

use super::builtins::{self, Builtin};
use super::bulkhead::{Bulkhead, Continuation, Parked};
use super::health::{Admit, Breaker, Health, Outcome};
use super::host::Inbound;
use super::router::{Batch, Item};
use super::routes::Routes;
use super::shutdown::{self, Tally};
use super::switches::Switches;
use super::PluginStatus;
use super::Unmatched;

/// A running plugin as the workers see it.
pub(crate) struct LivePlugin {
    pub name: String,
    pub version: String,
    pub description: String,
    pub help: String,
    pub commands: Vec<String>,
    pub usages: Vec<String>,
    /// The plugin object, behind its limit of calls in flight.
    pub obj: Bulkhead,
    pub deadline: Duration,
    pub health: Health,
    /// Per command, what a fatal signal during its call blames
    /// (`plugin `x`, command `y``; see `crate::fatal`): formatted here, as
    /// the signal handler may not allocate.
    pub marks: Vec<Box<[u8]>>,
}

/// The worker pool's size, kept by the supervisor (which adds workers) and
/// the workers (which retire).
#[derive(Default)]
pub(crate) struct Pool {
    /// The configured number of workers.
    pub target: usize,
    /// Worker threads in the pool (not abandoned, not retired).
    pub live: AtomicUsize,
    /// Of those, the ones inside a call longer than the slow threshold.
    pub slow: AtomicUsize,
    /// The execution channel is closed: the pool only shrinks from now on.
    pub closed: AtomicBool,
}

impl Pool {
    /// Asked by a worker between two pieces of work: whether it is one too
    /// many (more free workers than the target), in which case it is
    /// counted out and must exit.
    fn try_retire(&self) -> bool {
        let mut live = self.live.load(Ordering::SeqCst);
        loop {
            if live <= self.target + self.slow.load(Ordering::SeqCst) {
                return false;
            }
            match self.live.compare_exchange_weak(
                live,
                live - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => live = now,
            }
        }
    }
}

/// What every worker shares, read-only (plugin health and the pool are
/// atomics).
pub(crate) struct Shared {
    pub plugins: Vec<LivePlugin>,
    pub routes: Routes,
    pub adapter_names: Vec<RString>,
    pub unmatched: Unmatched,
    pub breaker: Breaker,
    /// Worker threads abandoned in a plugin call that has not returned.
    pub abandoned: AtomicUsize,
    pub pool: Pool,
    /// A call running longer than this gets a worker added in its place.
    pub slow_call: Duration,
    /// Replies are cut to these (0: no limit).
    pub max_reply_bytes: usize,
    pub max_reply_lines: usize,
    pub switches: Switches,
    pub admins: Vec<String>,
    /// The shutdown grace is over: commands not yet run are refused.
    pub refusing: AtomicBool,
    /// Commands answered and refused, for the shutdown report.
    pub tally: Tally,
}

impl Shared {
    pub fn plugin_index(&self, name: &str) -> Option<usize> {
        self.plugins.iter().position(|p| p.name == name)
    }

    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.plugins
            .iter()
            .map(|p| PluginStatus {
                name: p.name.clone(),
                version: p.version.clone(),
                state: p.health.state(),
                counters: p.health.counters(),
            })
            .collect()
    }
}

/// One thing to do for one message: call a matched route, or answer that
/// nothing matched.
pub(crate) struct Step {
    pub message: Arc<Inbound>,
    pub action: Action,
    /// The last step of its message: completing it answers the command.
    pub last: bool,
}

#[derive(Clone, Copy)]
pub(crate) enum Action {
    /// Call a route. `held`: a call slot was handed to it while it waited;
    /// `trial`: it is its plugin's trial call (see `health.rs`).
    Call {
        route: usize,
        held: bool,
        trial: bool,
    },
    /// It waited for a call slot past the plugin's deadline: answer "busy".
    Expired {
        route: usize,
        trial: bool,
    },
    Builtin(Builtin),
    Unmatched,
    /// Refused for overload by the router: answer "busy" (for this command
    /// and `more` refused after it), in its place in the conversation.
    Busy {
        more: u64,
    },
}

/// The senders a worker needs. They live in the slot so that abandoning a
/// stuck worker also takes them from it: a thread stuck in a plugin call
/// must not keep the egress channels (and so shutdown) alive.
#[derive(Clone)]
pub(crate) struct Links {
    pub egress: Vec<Sender<Egress>>,
    pub done: Sender<u64>,
}

pub(crate) struct Running {
    pub message: Arc<Inbound>,
    pub route: usize,
    pub deadline: Instant,
    /// When the call counts as slow (a worker is added in its place).
    pub slow_at: Instant,
    pub trial: bool,
    /// The call is its command's last step.
    pub last: bool,
}

#[derive(Default)]
pub(crate) struct SlotState {
    /// The conversation of the batch in progress.
    pub key: u64,
    /// Whether a batch is in progress (its `done` is owed to the router).
    pub active: bool,
    pub queue: VecDeque<Step>,
    pub running: Option<Running>,
    pub links: Option<Links>,
    pub abandoned: bool,
    /// The running call was counted in `Pool::slow`.
    pub slow: bool,
}

#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    pub fn new(state: SlotState) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(state),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Nothing panics while holding a slot lock (plugin calls happen
        // outside it, and their panics are caught at the boundary anyway).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The slot was abandoned by the supervisor: the thread must exit.
struct Abandoned;

/// Sends `egress` to its adapter's egress thread through the slot's links.
/// Returns false if the slot has no links (abandoned).
pub(crate) fn send_reply(slot: &Slot, adapter: u32, egress: Egress) -> bool {
    // Clone the sender out of the lock: a full egress channel must block
    // this worker only, never the supervisor that may want the slot.
    let tx = match &slot.lock().links {
        Some(links) => links.egress[adapter as usize].clone(),
        None => return false,
    };
    if tx.send(egress).is_err() {
        // Egress threads outlive every worker by construction.
        log::error!("egress for adapter #{adapter} is gone; reply dropped");
    }
    true
}

pub(crate) fn egress(shared: &Shared, message: &Inbound, text: RString) -> Egress {
    Egress {
        originator: Originator {
            adapter: shared.adapter_names[message.adapter as usize].clone(),
            room: message.message.room.clone(),
            identity: message.message.identity.clone(),
        },
        text,
    }
}

/// The command text of a message (the sink only accepts commands, so the
/// prefix is there).
fn command_text(message: &Inbound) -> &str {
    let content = message.message.content.as_str();
    content
        .strip_prefix(plugboard_interface::COMMAND_PREFIX)
        .unwrap_or(content)
}

/// Cuts a reply to at most `max_lines` lines and `max_bytes` bytes (0: no
/// limit), at a line and a UTF-8 boundary, and says so at its end. `None`
/// if it fits.
pub(crate) fn cap_reply(text: &str, max_bytes: usize, max_lines: usize) -> Option<String> {
    // Cheap rejection first: more than `max_lines` lines need at least
    // `max_lines` bytes.
    let line_cut = if max_lines > 0 && text.len() > max_lines {
        text.match_indices('\n')
            .nth(max_lines - 1)
            .map(|(i, _)| i)
            // A final newline does not start another line.
            .filter(|&i| i + 1 < text.len())
    } else {
        None
    };
    let kept = line_cut.unwrap_or(text.len());
    if max_bytes == 0 || kept <= max_bytes {
        let cut = line_cut?;
        let lines = text.trim_end_matches('\n').split('\n').count();
        return Some(format!(
            "{} [… reply truncated: {lines} lines, {max_lines} shown]",
            &text[..cut]
        ));
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let shown = &text[..end];
    let sep = if shown.is_empty() { "" } else { " " };
    Some(format!(
        "{shown}{sep}[… reply truncated: {} bytes, {end} shown]",
        text.len()
    ))
}

/// Where a call went.
enum Flow {
    /// Answered (or silent): deliver this, go on with the batch.
    Reply(Arc<Inbound>, Option<RString>),
    /// Parked in the plugin's queue, with the rest of the batch.
    Parked,
}

/// A worker's next piece of work.
enum Work {
    Batch(Batch),
    Resume(Continuation),
}

pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub execution: Receiver<Batch>,
    pub resume: Receiver<Continuation>,
    pub slot: Arc<Slot>,
    /// Scratch for `RegexSet` matching, reused for every message.
    pub matched: std::cell::RefCell<Vec<bool>>,
}

impl Worker {
    pub fn run(self) {
        // Per-worker scratch space, reused for every call: a command call
        // allocates nothing on the engine side but its reply.
        let mut captures = self.shared.routes.capture_buffers();
        let mut spans: Vec<Span> = Vec::new();
        loop {
            let Some(work) = self.next() else {
                // Execution closed and drained: the pool only shrinks now.
                self.shared.pool.closed.store(true, Ordering::SeqCst);
                break;
            };
            {
                let mut slot = self.slot.lock();
                slot.active = true;
                match work {
                    Work::Batch(batch) => {
                        slot.key = batch.key;
                        for item in batch.items {
                            self.expand(item, &mut slot.queue);
                        }
                    }
                    Work::Resume(continuation) => {
                        slot.key = continuation.key;
                        slot.queue = continuation.steps;
                    }
                }
            }
            if self.drain(&mut captures, &mut spans).is_err() {
                return;
            }
            if self.shared.pool.try_retire() {
                log::debug!("a worker retires: the pool has its capacity back");
                break;
            }
        }
        // Release the senders, so the next stage can see the end.
        self.slot.lock().links = None;
    }

    /// Continuations first (they are older), then the router's batches.
    /// `None` once the execution channel is closed and drained: the router
    /// only closes it when no batch is in flight, so no continuation can
    /// exist any more either.
    fn next(&self) -> Option<Work> {
        if let Ok(continuation) = self.resume.try_recv() {
            return Some(Work::Resume(continuation));
        }
        match self.execution.try_recv() {
            Ok(batch) => return Some(Work::Batch(batch)),
            Err(TryRecvError::Disconnected) => {
                return self.resume.try_recv().ok().map(Work::Resume)
            }
            Err(TryRecvError::Empty) => {}
        }
        select! {
            recv(self.resume) -> continuation => continuation.ok().map(Work::Resume),
            recv(self.execution) -> batch => match batch {
                Ok(batch) => Some(Work::Batch(batch)),
                Err(_) => self.resume.try_recv().ok().map(Work::Resume),
            },
        }
    }

    /// Turns a backlog item into its steps: one per matching route, in
    /// route order, or one "unmatched" step, or its busy reply.
    fn expand(&self, item: Item, queue: &mut VecDeque<Step>) {
        let message = match item {
            Item::Command(message) => Arc::new(message),
            Item::Busy { message, more } => {
                queue.push_back(Step {
                    message: Arc::new(message),
                    action: Action::Busy { more },
                    last: true,
                });
                return;
            }
        };
        if let Some(builtin) = builtins::parse(command_text(&message)) {
            queue.push_back(Step {
                message,
                action: Action::Builtin(builtin),
                last: true,
            });
            return;
        }
        let before = queue.len();
        let mut matched = self.matched.borrow_mut();
        self.shared
            .routes
            .matching_into(command_text(&message), &mut matched);
        for (index, _) in matched.iter().enumerate().filter(|(_, m)| **m) {
            queue.push_back(Step {
                message: Arc::clone(&message),
                action: Action::Call {
                    route: index,
                    held: false,
                    trial: false,
                },
                last: false,
            });
        }
        if queue.len() > before {
            if let Some(step) = queue.back_mut() {
                step.last = true;
            }
        } else {
            queue.push_back(Step {
                message,
                action: Action::Unmatched,
                last: true,
            });
        }
    }

    /// Runs the slot's steps until its queue is empty (the batch is done)
    /// or the batch was parked.
    fn drain(
        &self,
        captures: &mut [CaptureLocations],
        spans: &mut Vec<Span>,
    ) -> Result<(), Abandoned> {
        loop {
            let step = {
                let mut slot = self.slot.lock();
                if slot.abandoned {
                    return Err(Abandoned);
                }
                match slot.queue.pop_front() {
                    Some(step) => step,
                    None => {
                        if std::mem::take(&mut slot.active) {
                            // After the batch's replies: the router may now
                            // release this conversation's next batch. It
                            // only fails if the router is gone, which it
                            // never is while a batch is in flight.
                            if let Some(links) = &slot.links {
                                let _ = links.done.send(slot.key);
                            }
                        }
                        return Ok(());
                    }
                }
            };
            // One relaxed load per step: the flag changes once, at the end
            // of the shutdown grace.
            if self.shared.refusing.load(Ordering::Relaxed) {
                self.refuse(step)?;
                continue;
            }
            let last = step.last;
            let (message, reply) = match step.action {
                Action::Call { route, held, trial } => {
                    match self.call(step.message, route, held, trial, last, captures, spans)? {
                        Flow::Reply(message, reply) => (message, reply),
                        Flow::Parked => return Ok(()),
                    }
                }
                Action::Expired { route, trial } => {
                    let reply = self.expired(&step.message, route, trial);
                    (step.message, Some(reply))
                }
                Action::Unmatched => {
                    let reply = self.unmatched(&step.message);
                    (step.message, reply)
                }
                Action::Busy { more } => {
                    // Its reply answers `more` later commands too.
                    self.shared.tally.answered_many(more);
                    let reply = busy_reply(&step.message, more);
                    (step.message, Some(reply))
                }
                Action::Builtin(builtin) => {
                    let reply = builtins::run(
                        &self.shared,
                        builtin,
                        &step.message,
                        command_text(&step.message),
                    );
                    (step.message, Some(reply.into()))
                }
            };
            if let Some(text) = reply {
                let egress = egress(&self.shared, &message, text);
                if !send_reply(&self.slot, message.adapter, egress) {
                    return Err(Abandoned);
                }
            }
            if last {
                self.shared.tally.answered();
            }
        }
    }

    /// The grace is over: answers `first`'s command with the shutting-down
    /// reply instead of running the rest of it, and gives back what its
    /// steps held (a call slot handed over while it waited, a trial call).
    fn refuse(&self, first: Step) -> Result<(), Abandoned> {
        if let Action::Busy { more } = first.action {
            // Already refused for overload: it gets its busy reply (which
            // answers `more` later commands too), not a second refusal.
            let reply = egress(
                &self.shared,
                &first.message,
                busy_reply(&first.message, more),
            );
            if !send_reply(&self.slot, first.message.adapter, reply) {
                return Err(Abandoned);
            }
            self.shared.tally.answered_many(1 + more);
            return Ok(());
        }
        let message = Arc::clone(&first.message);
        let unmatched = matches!(first.action, Action::Unmatched);
        let mut step = Some(first);
        while let Some(current) = step.take() {
            let shared = &*self.shared;
            match current.action {
                Action::Call { route, held, trial } => {
                    let plugin = &shared.plugins[shared.routes.routes[route].plugin];
                    if held {
                        drop(plugin.obj.adopt());
                    }
                    if trial {
                        plugin.health.abandon_trial();
                    }
                }
                Action::Expired { route, trial: true } => {
                    shared.plugins[shared.routes.routes[route].plugin]
                        .health
                        .abandon_trial();
                }
                _ => {}
            }
            if !current.last {
                // The command's other steps follow it in the batch.
                step = self.slot.lock().queue.pop_front();
            }
        }
        if let Some(text) = shutdown::refusal(&self.shared, &message, Some(!unmatched)) {
            let egress = egress(&self.shared, &message, text);
            if !send_reply(&self.slot, message.adapter, egress) {
                return Err(Abandoned);
            }
        }
        self.shared.tally.refused();
        Ok(())
    }

    fn unmatched(&self, message: &Inbound) -> Option<RString> {
        let text = command_text(message);
        log::debug!(target: "plugboard::router", "no command matches `{text}`");
        match self.shared.unmatched {
            Unmatched::Reply => Some(format!("no command matches `!{text}`").into()),
            Unmatched::Ignore => None,
        }
    }

    /// A command that waited for a call slot past its plugin's deadline.
    /// It counts as a timeout: the plugin's calls did not finish.
    fn expired(&self, message: &Inbound, route: usize, trial: bool) -> RString {
        let shared = &*self.shared;
        let plugin = &shared.plugins[shared.routes.routes[route].plugin];
        let deadline = super::human(plugin.deadline);
        let limit = plugin.obj.limit();
        // Slow but progressing (a call returned meanwhile): too much load,
        // not a fault of the plugin's, so it does not count toward its
        // quarantine. Only a plugin none of whose calls returned within the
        // deadline (all stuck) is failing.
        if plugin.obj.returned_within(plugin.deadline) {
            log::warn!(
                "plugin `{}`: a command from {} waited {deadline} for one of its {limit} call slots; answered busy",
                plugin.name,
                message.message.identity,
            );
            if trial {
                // The trial never ran: the next command may try.
                plugin.health.abandon_trial();
            }
            return format!(
                "`{}` is busy: this command waited {deadline} for one of its {limit} call slots; try again later",
                plugin.name
            )
            .into();
        }
        log::warn!(
            "plugin `{}`: a command from {} waited {deadline} and none of its {limit} calls in flight returned; answered busy",
            plugin.name,
            message.message.identity,
        );
        plugin
            .health
            .record(Outcome::Timeout, &shared.breaker, trial)
            .log("plugin", &plugin.name, &shared.breaker);
        format!(
            "`{}` is busy: none of its calls finished within {deadline} (it runs {limit} at most at once); try again later",
            plugin.name
        )
        .into()
    }

    /// The rest of this worker's batch, `first` in front, to wait in a
    /// plugin's queue; the worker no longer owes its `done`.
    fn continuation(&self, first: Step) -> Continuation {
        let mut slot = self.slot.lock();
        slot.active = false;
        let mut steps = std::mem::take(&mut slot.queue);
        steps.push_front(first);
        Continuation {
            key: slot.key,
            steps,
            since: Instant::now(),
        }
    }

    /// Calls one route (`last`: the command's last step). `Err` means the
    /// call outlived its deadline and the slot was abandoned meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        message: Arc<Inbound>,
        route_index: usize,
        held: bool,
        trial: bool,
        last: bool,
        captures: &mut [CaptureLocations],
        spans: &mut Vec<Span>,
    ) -> Result<Flow, Abandoned> {
        let shared = &*self.shared;
        let route = &shared.routes.routes[route_index];
        let plugin = &shared.plugins[route.plugin];
        // A slot handed over while the command waited; released on drop.
        let permit = held.then(|| plugin.obj.adopt());
        let adapter_name = shared.adapter_names[message.adapter as usize].as_str();
        // The room's switches first: a disabled command never becomes a
        // trial call.
        if let Some(scope) = shared
            .switches
            .disabled(&plugin.name, adapter_name, message.room())
        {
            if trial {
                plugin.health.abandon_trial();
            }
            let text = format!("`{}` is disabled {scope}", plugin.name);
            return Ok(Flow::Reply(message, Some(text.into())));
        }
        // Admitted as the trial before it waited: still the trial, unless
        // the state changed meanwhile.
        let trial = if trial && plugin.health.in_trial() {
            true
        } else {
            match plugin.health.admit() {
                Admit::Call => false,
                Admit::Trial => true,
                Admit::Refuse(state) => {
                    let text = format!(
                        "`{}` is {state}; ask an operator to re-enable it",
                        plugin.name
                    );
                    return Ok(Flow::Reply(message, Some(text.into())));
                }
            }
        };
        let permit = match permit.or_else(|| plugin.obj.try_acquire()) {
            Some(permit) => permit,
            None => {
                let first = Step {
                    message: Arc::clone(&message),
                    action: Action::Call {
                        route: route_index,
                        held: false,
                        trial,
                    },
                    last,
                };
                match plugin.obj.park(|| self.continuation(first)) {
                    Parked::Waiting => return Ok(Flow::Parked),
                    Parked::Go(permit) => permit,
                    Parked::Full(waiting) => {
                        if trial {
                            plugin.health.abandon_trial();
                        }
                        let text = format!(
                            "`{}` is busy: {waiting} commands are already waiting for it; try again later",
                            plugin.name
                        );
                        return Ok(Flow::Reply(message, Some(text.into())));
                    }
                }
            }
        };

        let text = command_text(&message);
        let locs = &mut captures[route_index];
        spans.clear();
        if route.regex.captures_read(locs, text).is_some() {
            spans.extend((0..locs.len()).map(|g| {
                match locs
                    .get(g)
                    .map(|(s, e)| (u32::try_from(s), u32::try_from(e)))
                {
                    Some((Ok(start), Ok(end))) => Span { start, end },
                    // Absent group, or a text beyond 4 GiB: no span.
                    _ => Span::NONE,
                }
            }));
        }
        let inner = &message.message;
        let invocation = Invocation {
            command: route.command,
            adapter: RStr::from_str(adapter_name),
            room: inner.room.as_ref().map(|r| r.as_rstr()),
            identity: inner.identity.as_rstr(),
            text: RStr::from_str(text),
            captures: RSlice::from_slice(spans),
        };

        let started = Instant::now();
        self.slot.lock().running = Some(Running {
            message: Arc::clone(&message),
            route: route_index,
            deadline: started + plugin.deadline,
            slow_at: started + shared.slow_call.min(plugin.deadline),
            trial,
            last,
        });
        let running = crate::fatal::mark(&plugin.marks[route.command as usize]);
        let result = permit.plugin().call(&invocation).into_result();
        drop(running);
        {
            let mut slot = self.slot.lock();
            if slot.abandoned {
                drop(slot);
                shared.abandoned.fetch_sub(1, Ordering::AcqRel);
                plugin.health.record_late();
                log::warn!(
                    "plugin `{}` command `{}` returned after {:.1?}, past its deadline; result dropped",
                    plugin.name,
                    plugin.commands[route.command as usize],
                    started.elapsed()
                );
                drop(permit);
                return Err(Abandoned);
            }
            slot.running = None;
            if std::mem::take(&mut slot.slow) {
                shared.pool.slow.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // Outside the slot lock: this may hand the slot to a waiter.
        drop(permit);
        plugin.health.record_latency(started.elapsed());

        let command = &plugin.commands[route.command as usize];
        let (outcome, reply) = match result {
            Ok(ROption::RSome(text)) => (Outcome::Ok, Some(text)),
            Ok(ROption::RNone) => (Outcome::Ok, None),
            Err(err) => {
                let outcome = if err.is_panic() {
                    Outcome::Panic
                } else {
                    Outcome::Error
                };
                (
                    outcome,
                    Some(error_reply(
                        &plugin.name,
                        command,
                        inner.identity.as_str(),
                        err,
                    )),
                )
            }
        };
        plugin.health.record(outcome, &shared.breaker, trial).log(
            "plugin",
            &plugin.name,
            &shared.breaker,
        );
        let reply = reply.map(|text| {
            match cap_reply(&text, shared.max_reply_bytes, shared.max_reply_lines) {
                None => text,
                Some(cut) => {
                    log::debug!(
                        "plugin `{}` command `{command}` replied {} bytes in {} lines; cut to {} bytes",
                        plugin.name,
                        text.len(),
                        text.lines().count(),
                        cut.len()
                    );
                    cut.into()
                }
            }
        });
        Ok(Flow::Reply(message, reply))
    }
}

/// The reply to a command the router refused for overload (and to `more`
/// refused after it), naming it.
pub(crate) fn busy_reply(message: &Inbound, more: u64) -> RString {
    let name = message.message.content.as_str();
    if more == 0 {
        format!("busy: too many of your commands are queued; `{name}` was dropped").into()
    } else {
        format!("busy: too many of your commands are queued; `{name}` and {more} more were dropped")
            .into()
    }
}

/// The user sees a short reply; the log gets the detail.
fn error_reply(plugin: &str, command: &str, identity: &str, err: ExtError) -> RString {
    match &err {
        ExtError::Panicked(msg) => {
            log::error!(
                "plugin `{plugin}` panicked in command `{command}` (from {identity}): {msg}"
            );
            format!("sorry, `{plugin}` hit an internal error").into()
        }
        other => {
            log::warn!("plugin `{plugin}` command `{command}` failed (from {identity}): {other}");
            format!("`{plugin}` failed: {}", other.message()).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cap_reply;

    #[test]
    fn replies_are_cut_at_line_and_character_boundaries_and_say_so() {
        assert_eq!(cap_reply("short", 16, 2), None);
        assert_eq!(
            cap_reply("a\nb\n", 16, 2),
            None,
            "a final newline is no line"
        );
        assert_eq!(
            cap_reply("a\nb\nc\nd", 0, 2).as_deref(),
            Some("a\nb [… reply truncated: 4 lines, 2 shown]")
        );
        assert_eq!(
            cap_reply(&"x".repeat(100), 10, 0).as_deref(),
            Some("xxxxxxxxxx [… reply truncated: 100 bytes, 10 shown]")
        );
        // `é` is two bytes: a cut in its middle moves back before it.
        assert_eq!(
            cap_reply("aéé", 2, 0).as_deref(),
            Some("a [… reply truncated: 5 bytes, 1 shown]")
        );
        assert_eq!(
            cap_reply("éé", 1, 0).as_deref(),
            Some("[… reply truncated: 4 bytes, 0 shown]")
        );
        // Both limits: the lines first, then the bytes of what is left.
        assert_eq!(
            cap_reply("aaaa\nbbbb\ncccc", 7, 2).as_deref(),
            Some("aaaa\nbb [… reply truncated: 14 bytes, 7 shown]")
        );
        assert_eq!(cap_reply(&"y".repeat(1000), 0, 0), None, "0: no limits");
    }
}
