//! The supervisor: command deadlines, the pool's capacity, and commands
//! waiting for a plugin.
//!
//! A thread stuck in a plugin call cannot be killed in-process, so the
//! engine works around it. Every `tick` the supervisor looks at each
//! worker's slot and each plugin's waiting commands:
//!
//! - **A call past the slow threshold** (`EngineConfig::slow_call`) marks
//!   its worker slow, and the supervisor adds a worker, so that `workers`
//!   threads not stuck in slow calls are always there for everyone else.
//!   When the slow call returns, the pool is one too many and a worker
//!   retires after its current work.
//! - **A call past its deadline** is *abandoned*: the supervisor marks the
//!   slot abandoned and takes its remaining work and senders, sends the user
//!   a timeout reply (after the replies the stuck worker already sent,
//!   before any of the rest: conversation order holds), counts a timeout
//!   against the plugin (which may quarantine it), and hands the rest of the
//!   batch to the other workers as a continuation. The abandoned thread
//!   still holds its plugin's call slot until its call returns (see
//!   `bulkhead.rs`); if it ever does, it drops the result and exits.
//! - **Waiting commands** of a plugin that is quarantined or disabled are
//!   resumed at once (to be answered so); those that waited past the
//!   plugin's deadline are answered "busy". Once the shutdown grace is
//!   over, every waiting command is resumed at each tick, to be refused
//!   (see [`shutdown`](super::shutdown)).
//!
//! **Threads are bounded, and `workers` of them stay free.** Up to
//! `workers + max_abandoned` worker threads exist, live or stuck (added
//! workers and abandoned threads count). Once `max_abandoned` threads are
//! abandoned, every plugin that has left one stuck (and each that leaves
//! one more) is quarantined at once, whatever `quarantine_after` says,
//! until an operator re-enables it (no cooldown trial), and the log says
//! so; workers are still added so that `workers` are free, since what can
//! get stuck from then on is bounded by the calls in flight of the plugins
//! still active (a plugin never has more stuck threads than its limit of
//! calls in flight).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::bulkhead::Continuation;
use super::health::Outcome;
use super::human;
use super::router::Batch;
use super::worker::{self, Links, Running, Shared, Slot, SlotState, Worker};

pub(crate) struct Supervisor {
    pub shared: Arc<Shared>,
    pub execution: Receiver<Batch>,
    pub resume: Receiver<Continuation>,
    /// Disconnected by the engine once every worker has finished.
    pub control: Receiver<()>,
    pub workers: Vec<(Arc<Slot>, JoinHandle<()>)>,
    pub tick: Duration,
    pub max_abandoned: usize,
    pub spawned: usize,
    /// The bound kept the pool from growing (logged once per episode).
    pub short: bool,
}

struct Taken {
    running: Running,
    links: Option<Links>,
    slow: bool,
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
        self.reap();
        // Senders taken from abandoned slots: a new worker may need them
        // (when no live worker is left to clone them from).
        let mut spare = None;
        let mut index = 0;
        while index < self.workers.len() {
            match inspect(&self.shared, &self.workers[index].0, now) {
                Some(taken) => {
                    // Detach the stuck thread; it exits by itself if its call
                    // ever returns.
                    let (_slot, _thread) = self.workers.swap_remove(index);
                    spare = self.abandon(taken, now).or(spare);
                }
                None => index += 1,
            }
        }
        self.waiters(now);
        self.grow(spare);
    }

    /// Joins the workers that retired.
    fn reap(&mut self) {
        let mut index = 0;
        while index < self.workers.len() {
            if self.workers[index].1.is_finished() {
                let (_, thread) = self.workers.swap_remove(index);
                let _ = thread.join();
            } else {
                index += 1;
            }
        }
    }

    /// Abandons a stuck call; returns the senders it took from the slot.
    fn abandon(&mut self, taken: Taken, now: Instant) -> Option<Links> {
        let Taken {
            running,
            links,
            slow,
            rest,
        } = taken;
        let shared = &*self.shared;
        let pool = &shared.pool;
        pool.live.fetch_sub(1, Ordering::SeqCst);
        if slow {
            pool.slow.fetch_sub(1, Ordering::SeqCst);
        }
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
        plugin
            .health
            .record(Outcome::Timeout, &shared.breaker, running.trial)
            .log("plugin", &plugin.name, &shared.breaker);
        if abandoned >= self.max_abandoned {
            // From here on no plugin that left a thread stuck may run again
            // (no cooldown trial either), until an operator re-enables it.
            for other in &shared.plugins {
                let stuck = std::ptr::eq(other, plugin)
                    || other.health.state() == super::PluginState::Quarantined;
                if stuck && other.health.force_quarantine() {
                    log::error!(
                        "plugin `{}` quarantined until re-enabled: {abandoned} threads are stuck in plugin calls (max_abandoned = {}), and it may not leave more",
                        other.name,
                        self.max_abandoned
                    );
                }
            }
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
        // A slot that runs a call always has its senders.
        let slot = Slot::new(SlotState {
            links,
            ..SlotState::default()
        });
        worker::send_reply(&slot, running.message.adapter, reply);
        if running.last {
            shared.tally.answered();
        }
        let links = slot.lock().links.take();
        if !rest.queue.is_empty() {
            // The other workers finish the batch, in order.
            plugin.obj.send(Continuation {
                key: rest.key,
                steps: rest.queue,
                since: now,
            });
        } else if rest.active {
            if let Some(links) = &links {
                let _ = links.done.send(rest.key);
            }
        }
        links
    }

    /// Answers waiting commands of stopped plugins, and those that waited
    /// too long; once the grace is over, all of them (to be refused).
    fn waiters(&self, now: Instant) {
        let refusing = self.shared.refusing.load(Ordering::Relaxed);
        for plugin in &self.shared.plugins {
            if plugin.obj.waiting() == 0 {
                continue;
            }
            let ready = if refusing || plugin.health.stopped() {
                plugin.obj.wake_all()
            } else {
                plugin.obj.expired(now, plugin.deadline)
            };
            for continuation in ready {
                plugin.obj.send(continuation);
            }
        }
    }

    /// Adds workers while fewer than `workers` are free of slow calls, within
    /// the thread bound.
    fn grow(&mut self, mut spare: Option<Links>) {
        let shared = Arc::clone(&self.shared);
        let pool = &shared.pool;
        loop {
            if pool.closed.load(Ordering::SeqCst) {
                return;
            }
            let live = pool.live.load(Ordering::SeqCst);
            let slow = pool.slow.load(Ordering::SeqCst);
            if live.saturating_sub(slow) >= pool.target {
                self.short = false;
                return;
            }
            let abandoned = shared.abandoned.load(Ordering::SeqCst);
            if live + abandoned >= pool.target + self.max_abandoned
                && !std::mem::replace(&mut self.short, true)
            {
                // Past the bound, keeping `workers` threads free still comes
                // first: every plugin that left a thread stuck is quarantined
                // until re-enabled (see `abandon`), so what can still get
                // stuck is the calls in flight of the plugins still active.
                log::error!(
                    "{abandoned} threads are stuck in plugin calls (max_abandoned = {}) and {slow} workers in slow calls; adding a worker anyway so that {} are free: every plugin that leaves a thread stuck is quarantined until re-enabled",
                    self.max_abandoned,
                    pool.target
                );
            }
            // Senders for the new worker: from any worker that has them, or
            // taken from an abandoned one.
            let Some(links) = self
                .workers
                .iter()
                .find_map(|(slot, _)| slot.lock().links.clone())
                .or_else(|| spare.take())
            else {
                return;
            };
            if !self.spawn(links) {
                return;
            }
            log::info!("added a worker: {slow} are in slow calls");
        }
    }

    fn spawn(&mut self, links: Links) -> bool {
        let slot = Slot::new(SlotState {
            links: Some(links),
            ..SlotState::default()
        });
        let worker = Worker {
            shared: Arc::clone(&self.shared),
            execution: self.execution.clone(),
            resume: self.resume.clone(),
            slot: Arc::clone(&slot),
            matched: Default::default(),
        };
        self.spawned += 1;
        let name = format!("worker-x{}", self.spawned);
        self.shared.pool.live.fetch_add(1, Ordering::SeqCst);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())
        {
            Ok(thread) => {
                self.workers.push((slot, thread));
                true
            }
            Err(e) => {
                self.shared.pool.live.fetch_sub(1, Ordering::SeqCst);
                log::error!("cannot start a worker: {e}");
                false
            }
        }
    }
}

/// Marks a slow call, or takes a slot whose call is past its deadline.
fn inspect(shared: &Shared, slot: &Slot, now: Instant) -> Option<Taken> {
    let mut state = slot.lock();
    let running = state.running.as_ref()?;
    if running.deadline > now {
        if running.slow_at <= now && !state.slow {
            state.slow = true;
            shared.pool.slow.fetch_add(1, Ordering::SeqCst);
        }
        return None;
    }
    state.abandoned = true;
    let running = state.running.take()?;
    let links = state.links.take();
    let slow = std::mem::take(&mut state.slow);
    let rest = SlotState {
        key: state.key,
        active: std::mem::take(&mut state.active),
        queue: std::mem::take(&mut state.queue),
        ..SlotState::default()
    };
    Some(Taken {
        running,
        links,
        slow,
        rest,
    })
}
