//! The supervisor: enforces command deadlines.
//!
//! A thread stuck in a plugin call cannot be killed in-process, so a missed
//! deadline is handled by *abandoning* the thread, not stopping it. Every
//! `tick` the supervisor looks at each worker's slot; for a call past its
//! deadline it:
//!
//! 1. marks the slot abandoned and takes its remaining work and senders,
//! 2. sends the user a timeout reply (after the replies the stuck worker
//!    already sent, before any of the rest: conversation order holds),
//! 3. counts a timeout against the plugin (which may quarantine it),
//! 4. starts a replacement worker with the rest of the batch, so the pool
//!    keeps its capacity.
//!
//! **Abandoned threads are bounded by `max_abandoned`.** Past it the
//! supervisor stops replacing workers: the rest of such a batch gets error
//! replies and the pool shrinks, except that the last live worker is always
//! replaced. Quarantine (after `quarantine_after` consecutive timeouts)
//! normally stops a hanging plugin long before that.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::health::Outcome;
use super::router::Batch;
use super::worker::{self, Action, Links, Running, Shared, Slot, SlotState, Step, Worker};

pub(crate) struct Supervisor {
    pub shared: Arc<Shared>,
    pub execution: Receiver<Batch>,
    /// Disconnected by the engine once every worker has finished.
    pub control: Receiver<()>,
    pub workers: Vec<(Arc<Slot>, JoinHandle<()>)>,
    pub tick: Duration,
    pub max_abandoned: usize,
    pub spawned: usize,
}

struct Taken {
    running: Running,
    links: Option<Links>,
    rest: SlotState,
}

impl Supervisor {
    pub fn run(mut self) {
        // Anything but a timeout (the engine drops the control sender)
        // means stop.
        while let Err(RecvTimeoutError::Timeout) = self.control.recv_timeout(self.tick) {
            self.check(Instant::now());
        }
        // The engine stops the supervisor after the egress threads ended,
        // which needs every live worker to have dropped its senders, i.e.
        // to have returned.
        for (_, thread) in self.workers {
            let _ = thread.join();
        }
    }

    fn check(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.workers.len() {
            match take_if_overdue(&self.workers[index].0, now) {
                Some(taken) => {
                    // Detach the stuck thread; it exits by itself if its call
                    // ever returns.
                    let (_slot, _thread) = self.workers.swap_remove(index);
                    self.abandon(taken);
                }
                None => index += 1,
            }
        }
    }

    fn abandon(&mut self, taken: Taken) {
        let Taken {
            running,
            links,
            mut rest,
        } = taken;
        let shared = &*self.shared;
        let route = &shared.routes.routes[running.route];
        let plugin = &shared.plugins[route.plugin];
        let abandoned = shared.abandoned.fetch_add(1, Ordering::AcqRel) + 1;
        log::warn!(
            "plugin `{}` command `{}` (from {}) missed its {:?} deadline; abandoning its worker thread ({abandoned} abandoned)",
            plugin.name,
            plugin.commands[route.command as usize],
            running.message.message.identity,
            plugin.deadline,
        );
        if plugin
            .health
            .record(Outcome::Timeout, shared.quarantine_after)
        {
            log::warn!(
                "plugin `{}` quarantined after {} consecutive failures",
                plugin.name,
                shared.quarantine_after
            );
        }
        let reply = worker::egress(
            shared,
            &running.message,
            format!(
                "`{}` timed out after {}",
                plugin.name,
                human(plugin.deadline)
            )
            .into(),
        );
        rest.links = links;
        let slot = Slot::new(rest);
        worker::send_reply(&slot, running.message.adapter, reply);

        if abandoned > self.max_abandoned && !self.workers.is_empty() {
            log::error!(
                "{abandoned} worker threads are stuck in plugin calls (limit {}); not replacing this one",
                self.max_abandoned
            );
            fail_rest(shared, &slot);
            return;
        }
        self.spawn(slot);
    }

    fn spawn(&mut self, slot: Arc<Slot>) {
        let worker = Worker {
            shared: Arc::clone(&self.shared),
            execution: self.execution.clone(),
            slot: Arc::clone(&slot),
            matched: Default::default(),
        };
        self.spawned += 1;
        let name = format!("worker-r{}", self.spawned);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())
        {
            Ok(thread) => self.workers.push((slot, thread)),
            Err(e) => {
                log::error!("cannot start a replacement worker: {e}");
                fail_rest(&self.shared, &slot);
            }
        }
    }
}

/// `200 ms`, `5 s`, `2.5 s`.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn take_if_overdue(slot: &Slot, now: Instant) -> Option<Taken> {
    let mut state = slot.lock();
    if state.running.as_ref().is_none_or(|r| r.deadline > now) {
        return None;
    }
    state.abandoned = true;
    let running = state.running.take()?;
    let links = state.links.take();
    let rest = SlotState {
        key: state.key,
        active: std::mem::take(&mut state.active),
        queue: std::mem::take(&mut state.queue),
        ..SlotState::default()
    };
    Some(Taken {
        running,
        links,
        rest,
    })
}

/// Answers every remaining step of a slot nobody will run, and releases the
/// conversation.
fn fail_rest(shared: &Shared, slot: &Slot) {
    let steps: Vec<Step> = slot.lock().queue.drain(..).collect();
    for step in steps {
        let text = match step.action {
            Action::Call(route) => format!(
                "`{}` could not run: too many commands are stuck",
                shared.plugins[shared.routes.routes[route].plugin].name
            ),
            Action::Unmatched | Action::Builtin(_) => continue,
        };
        worker::send_reply(
            slot,
            step.message.adapter,
            worker::egress(shared, &step.message, text.into()),
        );
    }
    let mut state = slot.lock();
    if std::mem::take(&mut state.active) {
        if let Some(links) = &state.links {
            let _ = links.done.send(state.key);
        }
    }
    state.links = None;
}
