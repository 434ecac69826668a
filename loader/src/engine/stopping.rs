//! The engine's side of the shutdown sequence documented in
//! [`shutdown`](super::shutdown): stopping the adapters, closing intake,
//! the refusal window, the accounting, and dropping the extensions, every
//! wait bounded.

use super::*;

impl Engine {
    /// Once the grace is over: commands not yet run are refused.
    fn start_refusing(&mut self) {
        if let Some(signal) = self.refuse.take() {
            self.handle.shared.refusing.store(true, Ordering::Relaxed);
            // Wakes the router.
            drop(signal);
            log::warn!(
                "the {} shutdown grace is over: refusing the commands not yet run",
                human(self.config.shutdown_grace)
            );
        }
    }

    /// Waits on `rx` until `until`, starting to refuse at `grace_end` if
    /// that comes first.
    fn recv_until<T>(
        &mut self,
        rx: &Receiver<T>,
        grace_end: Instant,
        until: Instant,
    ) -> Result<T, RecvTimeoutError> {
        if self.refuse.is_some() && grace_end < until {
            match rx.recv_deadline(grace_end) {
                Err(RecvTimeoutError::Timeout) => self.start_refusing(),
                other => return other,
            }
        }
        rx.recv_deadline(until)
    }

    pub(super) fn stop(&mut self) -> ShutdownReport {
        if std::mem::replace(&mut self.stopped, true) {
            return ShutdownReport {
                clean: true,
                ..ShutdownReport::default()
            };
        }
        let mut clean = true;
        let started = Instant::now();
        let grace_end = later(started, self.config.shutdown_grace);
        // Every wait below ends by this.
        let deadline = later(started, self.config.shutdown_bound());
        // 1. Stop listening.
        for adapter in &self.adapters {
            stop_adapter(&adapter.name, Arc::clone(&adapter.obj));
        }
        let listen_deadline = later(started, self.config.listen_grace).min(deadline);
        let listeners_done = self.listeners_done.clone();
        while self.returned.iter().any(|r| !r) {
            match self.recv_until(&listeners_done, grace_end, listen_deadline) {
                Ok(index) => self.returned[index] = true,
                Err(_) => break,
            }
        }
        let returned = self.returned.clone();
        for (index, thread) in self.listeners.drain(..) {
            if returned[index] {
                // It has sent its last message, so it is about to return.
                let _ = thread.join();
            } else {
                clean = false;
                log::warn!(
                    "adapter `{}` did not return from listen within {} of stop; abandoning its listener thread",
                    self.adapters[index].name,
                    human(listen_deadline - started)
                );
            }
        }
        // 2. Close intake: the last ingress senders go away.
        for adapter in &self.adapters {
            adapter.gate.close();
        }
        self.handle_gate.close();
        // 3-5. The pipeline drains stage by stage: wait for the router and
        // the egress threads (which end after every worker), refusing once
        // the grace is over.
        let pipeline_done = self.pipeline_done.clone();
        let drained = loop {
            match self.recv_until(&pipeline_done, grace_end, deadline) {
                // Never sent: each thread signals by dropping its sender.
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        let report = self.accounting(clean);
        if drained {
            for (_, thread) in self.pipeline.drain(..) {
                if thread.join().is_err() {
                    log::error!("an engine thread panicked");
                }
            }
            if let Some((control, supervisor)) = self.supervisor.take() {
                drop(control);
                let _ = supervisor.join();
            }
        } else {
            clean = false;
            let busy: Vec<&str> = self
                .pipeline
                .iter()
                .filter(|(_, t)| !t.is_finished())
                .map(|(n, _)| n.as_str())
                .collect();
            log::error!(
                "shutdown did not finish within {} ({} grace, then {} refusing) with {} still busy; abandoning them and {} command(s) still inside",
                human(deadline - started),
                human(self.config.shutdown_grace),
                human(self.config.refusal_window),
                busy.join(", "),
                report.abandoned
            );
        }
        // 6. Drop the extensions, each on a thread of its own, within what
        // is left: a destructor that never returns must not hold the
        // process.
        clean &= self.drop_extensions(started, deadline);
        ShutdownReport { clean, ..report }
    }

    /// The accounting so far (see [`ShutdownReport`]), with `clean`.
    fn accounting(&self, clean: bool) -> ShutdownReport {
        let shared = &self.handle.shared;
        let (mut accepted, mut closed) = (self.handle_gate.accepted(), 0);
        for adapter in &self.adapters {
            accepted += adapter.gate.accepted();
            closed += adapter.gate.turned_away();
        }
        // Read after the gates: nothing is accepted any more, and whatever
        // the engine answered was accepted before.
        let answered = shared.tally.answered.load(Ordering::Relaxed);
        let refused = shared.tally.refused.load(Ordering::Relaxed);
        ShutdownReport {
            answered,
            refused: refused + closed,
            abandoned: accepted.saturating_sub(answered + refused),
            undelivered: self
                .egress_queues
                .iter()
                .map(|q| q.len() as u64)
                .sum::<u64>()
                + self.failed_sends.load(Ordering::Relaxed),
            clean,
        }
    }

    /// Drops every plugin and adapter instance on threads of their own and
    /// waits for them until `deadline`; the ones still dropping then are
    /// abandoned with a log line. A plugin with a call still in flight (a
    /// thread stuck in it) is not dropped at all. Returns whether every
    /// extension that could be dropped was dropped in time.
    fn drop_extensions(&mut self, started: Instant, deadline: Instant) -> bool {
        let mut clean = true;
        let mut doomed: Vec<(String, Box<dyn Send>)> = Vec::new();
        for plugin in &self.handle.shared.plugins {
            match plugin.obj.take() {
                Some(obj) => doomed.push((format!("plugin `{}`", plugin.name), Box::new(obj))),
                None => {
                    // Not a failure of the shutdown: its stuck thread was
                    // abandoned (and reported) already.
                    log::warn!(
                        "plugin `{}` is not dropped: a thread is still inside it ({} calls in flight)",
                        plugin.name,
                        plugin.obj.in_flight()
                    );
                }
            }
        }
        for adapter in self.adapters.drain(..) {
            // The last reference, unless a listener thread was abandoned.
            doomed.push((format!("adapter `{}`", adapter.name), Box::new(adapter.obj)));
        }
        let (done_tx, done_rx) = unbounded::<usize>();
        let mut pending = vec![false; doomed.len()];
        let mut names = Vec::with_capacity(doomed.len());
        for (index, (name, obj)) in doomed.into_iter().enumerate() {
            let done = done_tx.clone();
            // Handed over once the thread exists: if it cannot be spawned,
            // the object must not be dropped here instead.
            let (hand_tx, hand_rx) = bounded::<Box<dyn Send>>(1);
            let spawned = thread::Builder::new()
                .name(format!("drop-{index}"))
                .spawn(move || {
                    if let Ok(obj) = hand_rx.recv() {
                        drop(obj);
                        let _ = done.send(index);
                    }
                });
            match spawned {
                Ok(_) => {
                    // The thread holds the receiver until it has the object.
                    let _ = hand_tx.send(obj);
                    pending[index] = true;
                }
                Err(e) => {
                    clean = false;
                    log::error!("{name} is not dropped (it is leaked): cannot spawn a thread: {e}");
                    std::mem::forget(obj);
                }
            }
            names.push(name);
        }
        drop(done_tx);
        if pending.iter().any(|p| *p) && Instant::now() >= deadline {
            log::warn!(
                "the shutdown's {} are over: extensions are dropped in the background, not waited for",
                human(deadline - started)
            );
            return false;
        }
        while pending.iter().any(|p| *p) {
            match done_rx.recv_deadline(deadline) {
                Ok(index) => pending[index] = false,
                Err(_) => break,
            }
        }
        for (name, _) in names.iter().zip(&pending).filter(|(_, p)| **p) {
            clean = false;
            log::warn!(
                "{name} did not finish dropping within the shutdown's {}; abandoning its thread",
                human(deadline - started)
            );
        }
        clean
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
