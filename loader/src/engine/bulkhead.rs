//! Bulkheads: a limit on each plugin's calls in flight.
//!
//! Why: a plugin that hangs (or is merely slow) must not take the worker
//! pool with it. Each plugin may have at most `limit` calls running at once.
//! A command for a plugin at its limit does **not** wait on a worker
//! thread: the rest of its batch (that command first) is *parked* in the
//! plugin's queue as a [`Continuation`] and the worker goes on with other
//! conversations. When one of the plugin's calls returns, its permit is
//! handed straight to the oldest waiting continuation, which the next free
//! worker resumes (through the engine's `resume` channel). The
//! conversation's batch stays in flight for the router meanwhile, so
//! per-conversation order holds. A stuck call keeps its permit until it
//! returns, so N hung calls of one plugin hold at most `limit` threads.
//!
//! The queue is bounded (`max_waiting`): past it a command is answered
//! "busy" at once. Waiting continuations are answered by the
//! [supervisor](super::supervisor) when they outlive the plugin's deadline,
//! or at once when the plugin is quarantined or disabled.
//!
//! The bulkhead also **owns the plugin object**: a permit is what entitles
//! a thread to call it. At shutdown the engine closes the bulkhead (which
//! only succeeds when no call is in flight) and takes the object out to drop
//! it on a thread of its own, bounded by the shutdown grace; an object with
//! a call still in flight (a thread stuck in it) is never freed.
//!
//! Cost on the hot path: one load and one CAS to acquire, one `fetch_sub`
//! and one load to release; the queue's mutex is only taken when someone
//! waits.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use plugboard_interface::plugin::PluginBox;

use super::worker::{Action, Step};

/// The rest of a conversation's batch, waiting for a plugin's permit.
pub(crate) struct Continuation {
    /// The conversation (its `done` is owed by whoever finishes this).
    pub key: u64,
    /// The remaining steps; the first is the call that waits.
    pub steps: VecDeque<Step>,
    /// When it started waiting: its deadline runs from here.
    pub since: Instant,
}

impl Continuation {
    /// The first step now holds a permit handed over by a returning call.
    fn hold(&mut self) {
        if let Some(Step {
            action: Action::Call { held, .. },
            ..
        }) = self.steps.front_mut()
        {
            *held = true;
        }
    }

    /// The first step waited too long: it is to be answered, not called.
    fn expire(&mut self) {
        if let Some(step) = self.steps.front_mut() {
            if let Action::Call { route, trial, .. } = step.action {
                step.action = Action::Expired { route, trial };
            }
        }
    }
}

/// `in_flight` once the bulkhead is closed: above any limit, so no permit
/// can be acquired any more.
const CLOSED: usize = usize::MAX / 2 + 1;

/// The process's own zero for [`Bulkhead`]'s timestamps.
fn since_epoch_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
}

/// What happens to the plugin object when the bulkhead is dropped.
const LIVE: u8 = 0;
const TAKEN: u8 = 1;
const LEAK: u8 = 2;

pub(crate) struct Bulkhead {
    in_flight: AtomicUsize,
    /// When a call last returned: milliseconds since [`epoch`], plus one
    /// (0: never). Tells a plugin that is slow but progressing from one
    /// whose calls are all stuck.
    last_return: AtomicU64,
    waiting: AtomicUsize,
    limit: usize,
    max_waiting: usize,
    queue: Mutex<VecDeque<Continuation>>,
    resume: Option<Sender<Continuation>>,
    object: UnsafeCell<ManuallyDrop<PluginBox>>,
    fate: AtomicU8,
}

// SAFETY: the only field that is not `Sync` is the `UnsafeCell` around the
// plugin object (itself `Send + Sync`). Shared access to it (`&PluginBox`)
// happens only through a `Permit`; the one exclusive access (`take`) happens
// only after `in_flight` went from 0 to `CLOSED`, when no permit exists and
// none can be acquired (acquiring needs `in_flight < limit < CLOSED`).
unsafe impl Sync for Bulkhead {}

impl From<PluginBox> for Bulkhead {
    fn from(object: PluginBox) -> Self {
        Bulkhead {
            in_flight: AtomicUsize::new(0),
            last_return: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            limit: 1,
            max_waiting: 1,
            queue: Mutex::new(VecDeque::new()),
            resume: None,
            object: UnsafeCell::new(ManuallyDrop::new(object)),
            fate: AtomicU8::new(LIVE),
        }
    }
}

/// The right to call the plugin once. Dropping it releases the call slot
/// (and hands it to the oldest waiter, if any).
pub(crate) struct Permit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Permit<'_> {
    pub fn plugin(&self) -> &PluginBox {
        // SAFETY: a permit is held, so `in_flight > 0` and the bulkhead
        // cannot be closed (nor the object taken) until it is released,
        // which needs this permit to be dropped, ending the borrow.
        unsafe { &*self.bulkhead.object.get() }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

/// The outcome of [`Bulkhead::park`].
pub(crate) enum Parked<'a> {
    /// Queued; a returning call or the supervisor will resume it.
    Waiting,
    /// A permit came free meanwhile: call now.
    Go(Permit<'a>),
    /// The queue is full: answer the step "busy" at once.
    Full(usize),
}

impl Bulkhead {
    /// Sets the limits and the channel resumed continuations go to.
    pub fn configure(&mut self, limit: usize, max_waiting: usize, resume: Sender<Continuation>) {
        self.limit = limit.clamp(1, CLOSED - 1);
        self.max_waiting = max_waiting.max(1);
        self.resume = Some(resume);
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Calls in flight now (including calls stuck past their deadline).
    pub fn in_flight(&self) -> usize {
        match self.in_flight.load(SeqCst) {
            n if n >= CLOSED => 0,
            n => n,
        }
    }

    /// Continuations waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }

    /// The fast path: a permit if one is free and nobody waits (waiters
    /// are served first, in order).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        if self.waiting.load(SeqCst) > 0 || !self.acquire_raw() {
            return None;
        }
        Some(Permit { bulkhead: self })
    }

    /// Adopts the permit handed to a resumed continuation (its first step is
    /// `held`).
    pub fn adopt(&self) -> Permit<'_> {
        Permit { bulkhead: self }
    }

    fn acquire_raw(&self) -> bool {
        let mut n = self.in_flight.load(SeqCst);
        while n < self.limit {
            match self
                .in_flight
                .compare_exchange_weak(n, n + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// The slow path: queue the continuation `build` makes, unless a permit
    /// is free by now. `build` runs under the queue's lock.
    pub fn park(&self, build: impl FnOnce() -> Continuation) -> Parked<'_> {
        let mut queue = self.lock();
        // Announce the waiter before looking at `in_flight` again: a call
        // returning meanwhile either sees it (and hands its permit over, once
        // it gets the lock) or has already lowered `in_flight` (and the
        // acquire below succeeds). Both sides use SeqCst.
        self.waiting.fetch_add(1, SeqCst);
        if queue.is_empty() && self.acquire_raw() {
            self.waiting.fetch_sub(1, SeqCst);
            return Parked::Go(Permit { bulkhead: self });
        }
        if queue.len() >= self.max_waiting {
            self.waiting.fetch_sub(1, SeqCst);
            return Parked::Full(queue.len());
        }
        queue.push_back(build());
        Parked::Waiting
    }

    /// Whether one of its calls returned within the last `window`.
    pub fn returned_within(&self, window: Duration) -> bool {
        match self.last_return.load(Relaxed) {
            0 => false,
            at => since_epoch_ms().saturating_sub(at - 1) <= window.as_millis() as u64,
        }
    }

    fn release(&self) {
        self.last_return.store(since_epoch_ms() + 1, Relaxed);
        self.in_flight.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) == 0 {
            return;
        }
        let mut queue = self.lock();
        while !queue.is_empty() && self.acquire_raw() {
            let Some(mut next) = queue.pop_front() else {
                break;
            };
            self.waiting.fetch_sub(1, SeqCst);
            next.hold();
            self.send(next);
        }
    }

    /// Every waiter, to be answered at once (the plugin stopped running).
    pub fn wake_all(&self) -> Vec<Continuation> {
        let mut queue = self.lock();
        let all: Vec<Continuation> = queue.drain(..).collect();
        self.waiting.fetch_sub(all.len(), SeqCst);
        all
    }

    /// The waiters that have waited `deadline` or longer, marked expired.
    pub fn expired(&self, now: Instant, deadline: Duration) -> Vec<Continuation> {
        let mut queue = self.lock();
        let mut out = Vec::new();
        // The queue is in arrival order, so the expired ones are in front.
        while queue.front().is_some_and(|c| c.since + deadline <= now) {
            let Some(mut next) = queue.pop_front() else {
                break;
            };
            next.expire();
            out.push(next);
        }
        self.waiting.fetch_sub(out.len(), SeqCst);
        out
    }

    /// Hands a continuation to the workers.
    pub fn send(&self, continuation: Continuation) {
        let sent = self.resume.as_ref().map(|tx| tx.send(continuation));
        if !matches!(sent, Some(Ok(()))) {
            // The workers are gone: only possible once the engine has
            // drained, when nothing waits any more.
            log::error!("no worker left to resume a waiting command; dropped");
        }
    }

    /// Closes the bulkhead and takes the plugin object out, if no call is in
    /// flight. Otherwise the object is left where it is, and never dropped:
    /// a thread is still inside it.
    pub fn take(&self) -> Option<PluginBox> {
        if self
            .in_flight
            .compare_exchange(0, CLOSED, SeqCst, SeqCst)
            .is_err()
        {
            self.fate.store(LEAK, SeqCst);
            return None;
        }
        if self.fate.swap(TAKEN, SeqCst) != LIVE {
            return None;
        }
        // SAFETY: `in_flight` went from 0 to CLOSED: no permit is held and
        // none can be acquired any more, so nothing else can reach the
        // object; `fate` makes sure it is taken once, and that `Drop` leaves
        // it alone.
        Some(unsafe { ManuallyDrop::take(&mut *self.object.get()) })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Continuation>> {
        // Nothing panics while holding this lock (pushes, pops, sends on an
        // unbounded channel).
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Bulkhead {
    fn drop(&mut self) {
        if *self.fate.get_mut() == LIVE {
            // SAFETY: `&mut self`: no permit borrows the bulkhead any more,
            // and the object was never taken.
            unsafe { ManuallyDrop::drop(self.object.get_mut()) }
        }
    }
}
