//! How the engine stops: by disconnection, stage by stage, in two bounded
//! phases, accounting for every command.
//!
//! No stage is told to stop; each one stops when its input channel is
//! disconnected *and* drained, then drops its own senders, which disconnects
//! the next stage. [`Engine::shutdown`](super::Engine::shutdown) only has to
//! start the cascade, switch to refusing when the grace is over, and join.
//!
//! Time is split in two. **Until `EngineConfig::shutdown_grace`** the
//! pipeline drains normally: adapters' `listen` keep relaying what their
//! platform already delivered, pushes are accepted, commands run. **Then,
//! for `EngineConfig::refusal_window`** (1 s), the engine *refuses*: every
//! command not yet run is answered ``the bot is shutting down; `!x` was not
//! run`` instead, through the normal egress, so that adapters deliver the
//! refusals. What is still stuck at the end of the window (the *hard
//! deadline*: a call that never returns, a `send` that hangs) is abandoned,
//! and counted.
//!
//! 1. **Stop listening.** Call every adapter's `stop`, then wait for each
//!    `listen` to return (up to `EngineConfig::listen_grace`, and never past
//!    the hard deadline). Messages an adapter pushes meanwhile are accepted
//!    as usual (and refused, past the grace).
//! 2. **Close intake.** Close every gate (`engine/host.rs`; each
//!    adapter's sink, and the embedder's handles). This drops the last
//!    ingress `Sender`; a late `push` gets `Closed` (the adapter answers
//!    it with the refusal: `ClientLink` does), and so does a `push` that
//!    was waiting for room (the router may be unable to make any: its
//!    backlog full behind a hung command).
//! 3. **Router drains.** It sees the ingress channel disconnected once it is
//!    empty, keeps dispatching until every conversation's backlog has run,
//!    then drops the execution `Sender`.
//! 4. **Workers drain.** Each finishes the batches left in the execution
//!    channel (and the continuations of commands that waited for a plugin's
//!    call slot: a waiting batch is still in flight for the router), sends
//!    their replies, and exits, dropping its egress `Sender`s.
//! 5. **Egress drains.** Each adapter's egress thread delivers every reply
//!    left in its channel and exits.
//! 6. **Join and drop.** The engine joins every thread, then drops the
//!    plugins and adapters, each on a thread of its own, so that a
//!    destructor that never returns cannot hold the process: it is
//!    abandoned with `plugin `x` did not finish dropping ...`. A plugin
//!    with a thread still stuck in one of its calls is never dropped (it is
//!    in use).
//!
//! **Refusing** (whichever step the shutdown is at when the grace ends) is
//! one shared flag, read with one relaxed load per command by the workers,
//! plus a channel disconnected to wake the router:
//!
//! - the router answers every command in its conversations' backlogs at
//!   once, and every command arriving from then on, instead of
//!   dispatching it;
//! - workers answer the rest of their batches (and batches still in the
//!   execution channel, and continuations) instead of running them;
//! - the supervisor hands every command waiting in a plugin's queue (its
//!   bulkhead) back to the workers, at each tick, which refuse them.
//!
//! A refusal may overtake, in its conversation, the reply of a command
//! stuck ahead of it (a call still running when the grace ended).
//!
//! **Every command an adapter pushed is accounted for exactly once** in the
//! [`ShutdownReport`]: *answered* (a worker finished it: replies, error
//! replies, timeouts, "busy" replies), *refused* (answered that the bot is shutting down, by
//! the engine or, for a push refused as closed, by the adapter), or
//! *abandoned* (still in the engine at the hard deadline: no reply).
//!
//! **Shutdown never depends on an extension cooperating: every wait ends
//! at the hard deadline, `shutdown_grace + refusal_window` after
//! `shutdown` began.** Threads cannot be killed in-process; what is stuck
//! then is left behind, with a log line.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::std_types::RString;
use crossbeam_channel::{Receiver, Sender};
use plugboard_interface::host::shutting_down_reply;
use plugboard_interface::message::Egress;

use super::host::Inbound;
use super::worker::{self, Shared};
use super::{builtins, Unmatched};

/// What became of the commands, once [`Engine::shutdown`](super::Engine::shutdown)
/// (or [`Engine::serve`](super::Engine::serve)) returns.
///
/// Every command an adapter pushed, or a [`Handle`](super::Handle)
/// submitted successfully, is counted exactly once in `answered`,
/// `refused` or `abandoned`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Commands that got their answer: the plugins' replies (or none, for
    /// a plugin that answers nothing and an unmatched command the engine
    /// ignores), error replies, timeouts, "busy" replies (one reply may
    /// answer several refused commands of a flooding user).
    pub answered: u64,
    /// Commands that were not run because the bot was shutting down, each
    /// answered ``the bot is shutting down; `!x` was not run``: by the
    /// engine once the grace was over, or by the adapter when its push came
    /// after intake had closed.
    pub refused: u64,
    /// Commands still in the engine at the hard deadline (stuck in a call
    /// that did not return, or behind a stage that did not move): nobody
    /// answered them.
    pub abandoned: u64,
    /// Replies still waiting for an adapter's `send` at the hard deadline
    /// (an adapter stuck in `send`): their commands count as answered or
    /// refused, but they were not delivered.
    pub undelivered: u64,
    /// Whether every thread finished and was joined, and every extension
    /// dropped, within the bounds (false also when a destructor or a
    /// listener was abandoned, which loses no command).
    pub clean: bool,
}

impl ShutdownReport {
    /// Every command: answered + refused + abandoned.
    pub fn commands(&self) -> u64 {
        self.answered + self.refused + self.abandoned
    }

    /// Whether every command got its answer or refusal delivered (nothing
    /// abandoned, no reply left undelivered).
    pub fn nothing_lost(&self) -> bool {
        self.abandoned == 0 && self.undelivered == 0
    }
}

impl fmt::Display for ShutdownReport {
    /// `120 answered, 4880 refused at shutdown, 0 abandoned` (and `, 3
    /// replies not delivered` when there are).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} answered, {} refused at shutdown, {} abandoned",
            self.answered, self.refused, self.abandoned
        )?;
        if self.undelivered > 0 {
            write!(f, ", {} replies not delivered", self.undelivered)?;
        }
        Ok(())
    }
}

/// A value on a cache line of its own: a counter every worker bumps must
/// not share its line with the read-mostly state around it.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The engine's side of the accounting (the gates count what they
/// accepted).
#[derive(Default)]
pub(crate) struct Tally {
    /// Commands finished by a worker (at the last step of each), by the
    /// supervisor (a timeout on the last step) or answered "busy" (by a
    /// worker, or by the router when the grace ends). Bumped once per
    /// command: on a line of its own.
    pub answered: Padded<AtomicU64>,
    /// Commands refused because the grace was over.
    pub refused: AtomicU64,
}

impl Tally {
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` commands answered by one reply (a shared busy reply).
    pub fn answered_many(&self, n: u64) {
        self.answered.fetch_add(n, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// The refusal of `message`, or `None` for a command that would have got no
/// reply anyway (nothing matches it and unmatched commands are ignored).
/// `matched`: whether something matches it, if the caller knows.
pub(crate) fn refusal(
    shared: &Shared,
    message: &Inbound,
    matched: Option<bool>,
) -> Option<RString> {
    let content = message.message.content.as_str();
    let answered = shared.unmatched == Unmatched::Reply
        || matched.unwrap_or_else(|| {
            let text = content
                .strip_prefix(plugboard_interface::COMMAND_PREFIX)
                .unwrap_or(content);
            builtins::parse(text).is_some() || shared.routes.is_match(text)
        });
    answered.then(|| shutting_down_reply(content).into())
}

/// What the router needs to refuse commands itself once the grace is over.
pub(crate) struct Refuser {
    pub shared: Arc<Shared>,
    pub egress: Vec<Sender<Egress>>,
    /// Disconnected when the grace ends.
    pub signal: Receiver<()>,
}

impl Refuser {
    pub fn refuse(&self, inbound: &Inbound) {
        if let Some(text) = refusal(&self.shared, inbound, None) {
            let reply = worker::egress(&self.shared, inbound, text);
            // The egress threads outlive the router.
            let _ = self.egress[inbound.adapter as usize].send(reply);
        }
        self.shared.tally.refused();
    }

    /// Answers a busy marker still waiting when the grace ends: its `1 +
    /// more` commands were refused for overload, and get that reply.
    pub fn busy(&self, message: &Inbound, more: u64) {
        let reply = worker::egress(&self.shared, message, worker::busy_reply(message, more));
        // The egress threads outlive the router.
        let _ = self.egress[message.adapter as usize].send(reply);
        self.shared.tally.answered_many(1 + more);
    }
}
