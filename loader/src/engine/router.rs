//! The router: turns the ingress stream into per-conversation batches.
//!
//! **Invariant: at most one batch per conversation is in flight.** A
//! conversation (adapter, room, identity) whose batch is running on a worker
//! collects its next commands here; when the worker reports the batch done,
//! the whole backlog leaves as the next batch. Workers run batches in order
//! and send replies before reporting done, so replies within a conversation
//! are delivered in the order the commands arrived, while different
//! conversations run in parallel. Under load, backlogs grow and batches get
//! bigger, which amortises the hand-offs.
//!
//! Once the shutdown grace is over (`Refuser::signal` disconnects), the
//! router answers every backlogged command, and every command arriving
//! after, with the shutting-down reply instead of dispatching it (see
//! [`shutdown`](super::shutdown)).

use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crossbeam_channel::{never, select, Receiver, Sender};

use std::sync::Arc;

use super::host::Inbound;
use super::shutdown::Refuser;
use super::worker::{self, Shared};

/// A conversation's commands, to run in order on one worker.
pub(crate) struct Batch {
    pub key: u64,
    pub items: Vec<Inbound>,
}

/// The conversation key. Two conversations that collide on the hash are
/// merely serialised together: ordering stays correct, so a fast
/// non-cryptographic hash (FNV-1a) is enough.
pub(crate) fn conversation_key(inbound: &Inbound) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    inbound.adapter.hash(&mut h);
    inbound
        .message
        .room
        .as_ref()
        .map(|r| r.as_str())
        .hash(&mut h);
    inbound.message.identity.as_str().hash(&mut h);
    h.finish()
}

/// FNV-1a, 64-bit.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The router's map is keyed by conversation keys, which are hashes
/// already: hashing them again would be wasted work.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) struct Router {
    pub ingress: Receiver<Inbound>,
    pub done: Receiver<u64>,
    pub execution: Sender<Batch>,
    /// Commands allowed to wait behind busy conversations. Past it, with
    /// `reject` unset the router stops reading ingress (backpressure,
    /// everyone waits); with it, the router keeps reading, and answers
    /// "busy" at once to commands of conversations holding more than their
    /// fair share of the backlog (so one flooding user whose command hangs
    /// cannot stall the others).
    pub max_pending: usize,
    pub reject: Option<Rejecter>,
    pub refuser: Refuser,
}

/// What the router needs to answer "busy" itself.
pub(crate) struct Rejecter {
    pub shared: Arc<Shared>,
    pub egress: Vec<Sender<plugboard_interface::message::Egress>>,
}

impl Rejecter {
    fn busy(&self, inbound: &Inbound) {
        let reply = worker::egress(
            &self.shared,
            inbound,
            "busy: too many of your commands are queued; this one was dropped".into(),
        );
        // The egress threads outlive the router.
        let _ = self.egress[inbound.adapter as usize].send(reply);
        self.shared.tally.answered();
    }
}

impl Router {
    pub fn run(self) {
        // Present key = a batch of that conversation is in flight; the value
        // is its backlog.
        let mut busy: HashMap<u64, Vec<Inbound>, BuildHasherDefault<KeyHasher>> =
            HashMap::default();
        let mut pending = 0usize;
        let mut intake_open = true;
        let closed = never();
        let mut refusing = false;
        let refused = never();
        loop {
            if !intake_open && busy.is_empty() {
                // Nothing in flight and nothing can arrive: dropping
                // `self.execution` lets the workers finish.
                return;
            }
            let ingress = if intake_open
                && (refusing || pending < self.max_pending || self.reject.is_some())
            {
                &self.ingress
            } else {
                &closed
            };
            let signal = if refusing {
                &refused
            } else {
                &self.refuser.signal
            };
            select! {
                recv(signal) -> _ => {
                    // The grace is over: what waits is refused, now.
                    refusing = true;
                    for backlog in busy.values_mut() {
                        for inbound in backlog.drain(..) {
                            self.refuser.refuse(&inbound);
                        }
                    }
                    pending = 0;
                }
                recv(ingress) -> inbound => match inbound {
                    Ok(inbound) if refusing => self.refuser.refuse(&inbound),
                    Ok(inbound) => {
                        let key = conversation_key(&inbound);
                        // Under pressure, a conversation keeps at most its
                        // fair share of the backlog (which bounds the total
                        // at twice `max_pending`).
                        let share = (self.max_pending / busy.len().max(1)).max(1);
                        match busy.entry(key) {
                            Entry::Occupied(mut backlog) => match &self.reject {
                                Some(rejecter)
                                    if pending >= self.max_pending && backlog.get().len() >= share =>
                                {
                                    rejecter.busy(&inbound)
                                }
                                _ => {
                                    backlog.get_mut().push(inbound);
                                    pending += 1;
                                }
                            },
                            Entry::Vacant(slot) => {
                                slot.insert(Vec::new());
                                if self.dispatch(key, vec![inbound]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(_) => intake_open = false,
                },
                recv(self.done) -> key => {
                    // Workers hold the done senders; all of them gone means
                    // the pool is gone and nothing more can run.
                    let Ok(key) = key else { return };
                    if let Entry::Occupied(mut backlog) = busy.entry(key) {
                        // Refusing, backlogs stay empty.
                        if backlog.get().is_empty() {
                            backlog.remove();
                        } else {
                            let items = std::mem::take(backlog.get_mut());
                            pending -= items.len();
                            if self.dispatch(key, items).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn dispatch(&self, key: u64, items: Vec<Inbound>) -> Result<(), ()> {
        self.execution.send(Batch { key, items }).map_err(|lost| {
            log::error!(
                "worker pool is gone; dropping {} command(s)",
                lost.into_inner().items.len()
            );
        })
    }
}
