//! Workers: run plugin commands and hand their replies to egress.
//!
//! A worker owns a [`Slot`]: the rest of the batch it is running and the
//! call in progress. The slot is what makes hung commands survivable: when a
//! call misses its deadline the [supervisor](super::supervisor) takes the
//! slot's remaining work (and its channel senders) away, answers the hung
//! command with a timeout reply, and gives the rest to a replacement worker.
//! The stuck thread cannot be killed; if its call ever returns, it finds
//! its slot abandoned, drops the result and exits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RSlice, RStr, RString};
use crossbeam_channel::{Receiver, Sender};
use plugboard_interface::message::{Egress, Invocation, Originator, Span};
use plugboard_interface::plugin::PluginBox;
use plugboard_interface::ExtError;
use regex::CaptureLocations;

use super::builtins::{self, Builtin};
use super::health::{Health, Outcome, PluginState};
use super::host::Inbound;
use super::router::Batch;
use super::routes::Routes;
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
    pub obj: PluginBox,
    pub deadline: Duration,
    pub health: Health,
}

/// What every worker shares, read-only (plugin health is atomics).
pub(crate) struct Shared {
    pub plugins: Vec<LivePlugin>,
    pub routes: Routes,
    pub adapter_names: Vec<RString>,
    pub unmatched: Unmatched,
    pub quarantine_after: u32,
    /// Worker threads abandoned in a plugin call that has not returned.
    pub abandoned: AtomicUsize,
    pub switches: Switches,
    pub admins: Vec<String>,
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
}

#[derive(Clone, Copy)]
pub(crate) enum Action {
    Call(usize),
    Builtin(Builtin),
    Unmatched,
}

/// The senders a worker needs. They live in the slot so that abandoning a
/// stuck worker also takes them from it: a thread stuck in a plugin call
/// must not keep the egress channels (and so shutdown) alive.
pub(crate) struct Links {
    pub egress: Vec<Sender<Egress>>,
    pub done: Sender<u64>,
}

pub(crate) struct Running {
    pub message: Arc<Inbound>,
    pub route: usize,
    pub deadline: Instant,
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

pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    pub execution: Receiver<Batch>,
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
        // A replacement worker starts with the rest of a batch.
        if self.drain(&mut captures, &mut spans).is_err() {
            return;
        }
        for batch in &self.execution {
            {
                let mut slot = self.slot.lock();
                slot.key = batch.key;
                slot.active = true;
                for item in batch.items {
                    self.expand(item, &mut slot.queue);
                }
            }
            if self.drain(&mut captures, &mut spans).is_err() {
                return;
            }
        }
        // Execution closed and drained: release the senders, so the next
        // stage can see the end.
        self.slot.lock().links = None;
    }

    /// Turns a message into its steps: one per matching route, in route
    /// order, or one "unmatched" step.
    fn expand(&self, item: Inbound, queue: &mut VecDeque<Step>) {
        let message = Arc::new(item);
        if let Some(builtin) = builtins::parse(command_text(&message)) {
            queue.push_back(Step {
                message,
                action: Action::Builtin(builtin),
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
                action: Action::Call(index),
            });
        }
        if queue.len() == before {
            queue.push_back(Step {
                message,
                action: Action::Unmatched,
            });
        }
    }

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
            let reply = match step.action {
                Action::Call(route) => self.call(&step.message, route, captures, spans)?,
                Action::Unmatched => self.unmatched(&step.message),
                Action::Builtin(builtin) => Some(
                    builtins::run(
                        &self.shared,
                        builtin,
                        &step.message,
                        command_text(&step.message),
                    )
                    .into(),
                ),
            };
            if let Some(text) = reply {
                let egress = egress(&self.shared, &step.message, text);
                if !send_reply(&self.slot, step.message.adapter, egress) {
                    return Err(Abandoned);
                }
            }
        }
    }

    fn unmatched(&self, message: &Inbound) -> Option<RString> {
        let text = command_text(message);
        log::debug!(target: "plugboard::router", "no command matches `{text}`");
        match self.shared.unmatched {
            Unmatched::Reply => Some(format!("no command matches `!{text}`").into()),
            Unmatched::Ignore => None,
        }
    }

    /// Calls one route. `Err` means the call outlived its deadline and the
    /// slot was abandoned meanwhile.
    fn call(
        &self,
        message: &Arc<Inbound>,
        route_index: usize,
        captures: &mut [CaptureLocations],
        spans: &mut Vec<Span>,
    ) -> Result<Option<RString>, Abandoned> {
        let shared = &*self.shared;
        let route = &shared.routes.routes[route_index];
        let plugin = &shared.plugins[route.plugin];
        match plugin.health.state() {
            PluginState::Active => {}
            state => {
                return Ok(Some(
                    format!(
                        "`{}` is {state}; ask an operator to re-enable it",
                        plugin.name
                    )
                    .into(),
                ))
            }
        }
        let adapter_name = shared.adapter_names[message.adapter as usize].as_str();
        let room = message.room();
        if let Some(scope) = shared.switches.disabled(&plugin.name, adapter_name, room) {
            return Ok(Some(
                format!("`{}` is disabled {scope}", plugin.name).into(),
            ));
        }
        let text = command_text(message);
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
            adapter: RStr::from_str(&shared.adapter_names[message.adapter as usize]),
            room: inner.room.as_ref().map(|r| r.as_rstr()),
            identity: inner.identity.as_rstr(),
            text: RStr::from_str(text),
            captures: RSlice::from_slice(spans),
        };

        let started = Instant::now();
        self.slot.lock().running = Some(Running {
            message: Arc::clone(message),
            route: route_index,
            deadline: started + plugin.deadline,
        });
        let result = plugin.obj.call(&invocation).into_result();
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
                return Err(Abandoned);
            }
            slot.running = None;
        }
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
        if plugin.health.record(outcome, shared.quarantine_after) {
            log::warn!(
                "plugin `{}` quarantined after {} consecutive failures",
                plugin.name,
                shared.quarantine_after
            );
        }
        Ok(reply)
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
