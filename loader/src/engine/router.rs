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
//! **The backlog is bounded** (`max_pending` commands). Past it, with
//! [`WhenFull::Block`](super::WhenFull::Block) the router stops reading
//! ingress (backpressure). With [`WhenFull::Reject`](super::WhenFull::Reject)
//! it never waits for the workers, and **sheds the conversations over their
//! fair share first, in order**:
//!
//! - It keeps reading ingress. A conversation whose first command finds the
//!   execution channel full waits in a *ready* queue (first come, first
//!   served) instead of the router waiting for room, so a full pool never
//!   stops intake.
//! - Once `max_pending` commands wait, a command of a conversation already
//!   holding its fair share (`max_pending` / conversations in flight or
//!   waiting) is refused; up to `2 * max_pending` commands, a conversation
//!   under its share (one with a single command, say) is still admitted,
//!   and past that it takes the place of the newest waiting command of the
//!   heaviest conversation (tracked cheaply: the one last seen holding the
//!   most), if that one holds more than its share (that command is refused
//!   instead).
//! - **A refusal is queued in the conversation's backlog as a busy marker,
//!   never answered by the router**: the worker running the batch answers
//!   it ("busy: ... `!cmd` was dropped") in its place, after the replies to
//!   the commands before it and before those after it. A marker costs no
//!   plugin call. Markers are kept one per command up to `max_pending` of
//!   them, and past that up to each conversation's fair share; beyond it,
//!   consecutive refusals of a conversation share one marker (and one
//!   reply: "`!cmd` and 41 more were dropped"), so memory stays bounded
//!   however fast a user floods.
//! - Refusing a conversation with nothing in flight needs a marker of its
//!   own; past `2 * max_pending` markers the router stops reading ingress
//!   until markers leave (backpressure, never a reply out of order).
//!
//! Once the shutdown grace is over (`Refuser::signal` disconnects), the
//! router answers every backlogged command, and every command arriving
//! after, with the shutting-down reply instead of dispatching it (see
//! [`shutdown`](super::shutdown)); busy markers still waiting get their
//! busy reply then.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use abi_stable::std_types::RString;
use crossbeam_channel::{never, select, Receiver, Sender};

use super::host::Inbound;
use super::shutdown::Refuser;

/// A conversation's commands, to run in order on one worker.
pub(crate) struct Batch {
    pub key: u64,
    pub items: Vec<Item>,
}

/// One entry of a conversation's backlog.
pub(crate) enum Item {
    /// A command to run.
    Command(Inbound),
    /// A command refused for overload (`WhenFull::Reject`), to be answered
    /// "busy" in its place; `more` later commands of the same conversation,
    /// refused one after the other, share its reply. Its content is cut to
    /// [`BUSY_NAME_BYTES`]: it only names the command.
    Busy { message: Inbound, more: u64 },
}

/// How much of a refused command's text its busy marker keeps.
pub(crate) const BUSY_NAME_BYTES: usize = 64;

impl Item {
    fn busy(mut message: Inbound) -> Item {
        let content = message.message.content.as_str();
        if content.len() > BUSY_NAME_BYTES {
            let mut end = BUSY_NAME_BYTES;
            while !content.is_char_boundary(end) {
                end -= 1;
            }
            message.message.content = RString::from(format!("{}…", &content[..end]));
        }
        Item::Busy { message, more: 0 }
    }
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
    /// Commands allowed to wait behind busy conversations (see the module
    /// docs for what happens past it).
    pub max_pending: usize,
    /// `WhenFull::Reject`: shed conversations over their share instead of
    /// waiting.
    pub reject: bool,
    /// Refuses what is left once the shutdown grace is over (`None` in the
    /// router's own tests, which never shut an engine down).
    pub refuser: Option<Refuser>,
}

/// A conversation with a batch in flight, or waiting for room in the
/// execution channel.
#[derive(Default)]
struct Conv {
    /// What arrived meanwhile: the next batch.
    backlog: Vec<Item>,
    /// Commands in `backlog`.
    commands: usize,
    /// Busy markers in `backlog`.
    markers: usize,
    /// One past the last command in `backlog` (0: none).
    commands_end: usize,
    /// In the ready queue rather than in flight.
    ready: bool,
}

/// The router's bookkeeping.
#[derive(Default)]
struct State {
    /// Present key = a batch of that conversation is in flight or ready.
    convs: HashMap<u64, Conv, BuildHasherDefault<KeyHasher>>,
    /// Conversations waiting for room in the execution channel, in order
    /// (`WhenFull::Reject` only: `Block` waits for room instead).
    ready: VecDeque<u64>,
    /// Commands held here, in backlogs.
    pending: usize,
    /// Busy markers held here, in backlogs.
    markers: usize,
    /// The conversation that held the most waiting commands when last
    /// checked (`WhenFull::Reject`): where room is made at the bound.
    heaviest: u64,
}

impl State {
    /// The first ready conversation's backlog, as its batch (in flight from
    /// now on).
    fn next_ready(&mut self) -> Batch {
        let key = self.ready.pop_front().unwrap_or_default();
        let items = match self.convs.get_mut(&key) {
            Some(conv) => conv.take(&mut self.pending, &mut self.markers),
            // Not reached: a ready conversation stays until its batch is done.
            None => Vec::new(),
        };
        Batch { key, items }
    }

    fn commands_of(&self, key: u64) -> usize {
        self.convs.get(&key).map_or(0, |c| c.commands)
    }

    /// `key` just got a command: is it now the heaviest conversation?
    fn note_heavier(&mut self, key: u64) {
        if key != self.heaviest && self.commands_of(key) > self.commands_of(self.heaviest) {
            self.heaviest = key;
        }
    }

    /// At the bound, a command of a conversation under its share (`key`)
    /// takes the place of the newest waiting command of the heaviest
    /// conversation, if that one holds more than its share: that command is
    /// refused instead (a busy marker in its place, so in order). Whether
    /// room was made.
    fn make_room(&mut self, key: u64, share: usize) -> bool {
        if key == self.heaviest {
            return false;
        }
        let Some(heaviest) = self.convs.get_mut(&self.heaviest) else {
            return false;
        };
        if heaviest.commands <= share || !heaviest.refuse_last_command() {
            return false;
        }
        self.pending -= 1;
        self.markers += 1;
        true
    }
}

impl Conv {
    fn push_command(&mut self, inbound: Inbound) {
        self.backlog.push(Item::Command(inbound));
        self.commands += 1;
        self.commands_end = self.backlog.len();
    }

    /// Turns the last command of the backlog into a busy marker; false if
    /// there is none.
    fn refuse_last_command(&mut self) -> bool {
        let Some(last) = self.commands_end.checked_sub(1) else {
            return false;
        };
        let Some(Item::Command(message)) = self.backlog.get_mut(last) else {
            return false;
        };
        let placeholder = Inbound {
            adapter: message.adapter,
            message: plugboard_interface::message::RawMessage {
                room: abi_stable::std_types::ROption::RNone,
                identity: RString::new(),
                content: RString::new(),
            },
        };
        let message = std::mem::replace(message, placeholder);
        self.backlog[last] = Item::busy(message);
        self.commands -= 1;
        self.markers += 1;
        // Usually the one before (commands come first, refusals after).
        self.commands_end = self.backlog[..last]
            .iter()
            .rposition(|item| matches!(item, Item::Command(_)))
            .map_or(0, |i| i + 1);
        true
    }

    /// The backlog, as the next batch (in flight); the counts of what the
    /// router holds go down by what leaves.
    fn take(&mut self, pending: &mut usize, markers: &mut usize) -> Vec<Item> {
        *pending -= self.commands;
        *markers -= self.markers;
        self.commands = 0;
        self.markers = 0;
        self.commands_end = 0;
        self.ready = false;
        std::mem::take(&mut self.backlog)
    }
}

/// The worker pool is gone (nothing can run any more).
struct Gone;

/// What became of a command under `WhenFull::Reject`.
enum Admitted {
    /// Queued, dispatched or refused (in order).
    Done,
    /// No room even for a refusal: to be retried once markers have left;
    /// intake waits meanwhile.
    Hold(Inbound),
}

enum Event {
    Inbound(Option<Inbound>),
    Done(Option<u64>),
    Sent(bool),
    /// The shutdown grace is over.
    Refuse,
}

impl Router {
    pub fn run(self) {
        let mut st = State::default();
        let mut held: Option<Inbound> = None;
        let mut intake_open = true;
        let closed = never();
        let closed_signal = never::<()>();
        let mut refusing = false;
        loop {
            if !intake_open && st.convs.is_empty() {
                // Nothing in flight and nothing can arrive: dropping
                // `self.execution` lets the workers finish.
                return;
            }
            let reading = intake_open
                && held.is_none()
                && (refusing || self.reject || st.pending < self.max_pending);
            let ingress = if reading { &self.ingress } else { &closed };
            // Once refusing, the signal (disconnected) would fire forever.
            let signal = match &self.refuser {
                Some(refuser) if !refusing => &refuser.signal,
                _ => &closed_signal,
            };
            let event = if st.ready.is_empty() || refusing {
                select! {
                    recv(ingress) -> inbound => Event::Inbound(inbound.ok()),
                    recv(self.done) -> key => Event::Done(key.ok()),
                    recv(signal) -> _ => Event::Refuse,
                }
            } else {
                select! {
                    recv(ingress) -> inbound => Event::Inbound(inbound.ok()),
                    recv(self.done) -> key => Event::Done(key.ok()),
                    send(self.execution, st.next_ready()) -> sent => Event::Sent(sent.is_ok()),
                    recv(signal) -> _ => Event::Refuse,
                }
            };
            let outcome = match event {
                Event::Refuse => {
                    // The grace is over: what waits is answered, now.
                    refusing = true;
                    if let Some(inbound) = held.take() {
                        self.refuse_at_shutdown(&inbound);
                    }
                    self.refuse_waiting(&mut st);
                    Ok(())
                }
                Event::Inbound(None) => {
                    intake_open = false;
                    Ok(())
                }
                Event::Inbound(Some(inbound)) if refusing => {
                    self.refuse_at_shutdown(&inbound);
                    Ok(())
                }
                Event::Inbound(Some(inbound)) if self.reject => {
                    match self.admit(&mut st, inbound) {
                        Ok(Admitted::Hold(inbound)) => {
                            held = Some(inbound);
                            Ok(())
                        }
                        Ok(Admitted::Done) => Ok(()),
                        Err(gone) => Err(gone),
                    }
                }
                Event::Inbound(Some(inbound)) => self.enqueue(&mut st, inbound),
                // Workers hold the done senders; all of them gone means
                // the pool is gone and nothing more can run.
                Event::Done(None) => Err(Gone),
                Event::Done(Some(key)) => self.finished(&mut st, key),
                Event::Sent(sent) => {
                    if sent {
                        Ok(())
                    } else {
                        log::error!("worker pool is gone; dropping a batch");
                        Err(Gone)
                    }
                }
            };
            if outcome.is_err() {
                return;
            }
            if let Some(inbound) = held.take() {
                match self.admit(&mut st, inbound) {
                    Ok(Admitted::Hold(inbound)) => held = Some(inbound),
                    Ok(Admitted::Done) => {}
                    Err(Gone) => return,
                }
            }
        }
    }

    /// Answers every backlog now: commands with the shutting-down reply,
    /// busy markers with their busy reply. Conversations waiting in the
    /// ready queue are forgotten (none of theirs is in flight); the others
    /// end when their batch in flight reports done.
    fn refuse_waiting(&self, st: &mut State) {
        let Some(refuser) = &self.refuser else { return };
        for (_, conv) in st.convs.iter_mut() {
            for item in conv.take(&mut st.pending, &mut st.markers) {
                match item {
                    Item::Command(inbound) => refuser.refuse(&inbound),
                    Item::Busy { message, more } => refuser.busy(&message, more),
                }
            }
        }
        for key in st.ready.drain(..) {
            st.convs.remove(&key);
        }
    }

    /// The grace is over: `inbound` gets the shutting-down reply.
    fn refuse_at_shutdown(&self, inbound: &Inbound) {
        if let Some(refuser) = &self.refuser {
            refuser.refuse(inbound);
        }
    }

    /// `WhenFull::Block`: queue behind the conversation's batch in flight,
    /// or dispatch (waiting for room).
    fn enqueue(&self, st: &mut State, inbound: Inbound) -> Result<(), Gone> {
        let key = conversation_key(&inbound);
        match st.convs.entry(key) {
            Entry::Occupied(conv) => {
                conv.into_mut().push_command(inbound);
                st.pending += 1;
                Ok(())
            }
            Entry::Vacant(slot) => {
                slot.insert(Conv::default());
                self.dispatch(key, vec![Item::Command(inbound)])
            }
        }
    }

    /// `WhenFull::Reject`: admit, or refuse in order, without waiting.
    fn admit(&self, st: &mut State, inbound: Inbound) -> Result<Admitted, Gone> {
        let key = conversation_key(&inbound);
        let max = self.max_pending;
        // Under pressure, a conversation keeps at most its fair share of the
        // backlog; the total stays under twice `max_pending`.
        let share = (max / st.convs.len().max(1)).max(1);
        let under = st.convs.get(&key).map_or(0, |c| c.commands) < share;
        if st.pending < max || (under && (st.pending < 2 * max || st.make_room(key, share))) {
            return self.admit_command(st, key, inbound);
        }
        Ok(self.refuse(st, key, inbound, share))
    }

    fn admit_command(&self, st: &mut State, key: u64, inbound: Inbound) -> Result<Admitted, Gone> {
        match st.convs.entry(key) {
            Entry::Occupied(conv) => conv.into_mut().push_command(inbound),
            Entry::Vacant(slot) => {
                // Only the router sends on the execution channel: if it has
                // room now, this send cannot wait.
                if st.ready.is_empty() && !self.execution.is_full() {
                    slot.insert(Conv::default());
                    let batch = vec![Item::Command(inbound)];
                    return self.dispatch(key, batch).map(|()| Admitted::Done);
                }
                slot.insert(Conv {
                    ready: true,
                    ..Conv::default()
                })
                .push_command(inbound);
                st.ready.push_back(key);
            }
        }
        st.pending += 1;
        st.note_heavier(key);
        Ok(Admitted::Done)
    }

    /// Refuses a command: a busy marker at the end of its conversation's
    /// backlog (or of a new one, ready at once).
    fn refuse(&self, st: &mut State, key: u64, inbound: Inbound, share: usize) -> Admitted {
        let max = self.max_pending;
        match st.convs.entry(key) {
            Entry::Occupied(conv) => {
                let conv = conv.into_mut();
                // Markers are kept one per command up to `max_pending` in
                // all, and a conversation's fair share past that; then its
                // consecutive refusals share one.
                if st.markers >= max && conv.markers >= share {
                    if let Some(Item::Busy { more, .. }) = conv.backlog.last_mut() {
                        *more += 1;
                        return Admitted::Done;
                    }
                }
                conv.backlog.push(Item::busy(inbound));
                conv.markers += 1;
            }
            // Nothing in flight: a marker still (the router never waits for
            // an egress channel), unless too many wait already.
            Entry::Vacant(_) if st.markers >= 2 * max => return Admitted::Hold(inbound),
            Entry::Vacant(slot) => {
                slot.insert(Conv {
                    backlog: vec![Item::busy(inbound)],
                    markers: 1,
                    ready: true,
                    ..Conv::default()
                });
                st.ready.push_back(key);
            }
        }
        st.markers += 1;
        Admitted::Done
    }

    /// A batch of conversation `key` is done: its backlog leaves as the next
    /// batch, or it is forgotten.
    fn finished(&self, st: &mut State, key: u64) -> Result<(), Gone> {
        // Under `Reject`, behind the ready ones (or for room) rather than
        // waiting for room here.
        let wait = self.reject && (!st.ready.is_empty() || self.execution.is_full());
        let Entry::Occupied(mut entry) = st.convs.entry(key) else {
            return Ok(());
        };
        if entry.get().backlog.is_empty() {
            entry.remove();
            return Ok(());
        }
        if wait {
            entry.get_mut().ready = true;
            st.ready.push_back(key);
            return Ok(());
        }
        let items = entry.get_mut().take(&mut st.pending, &mut st.markers);
        self.dispatch(key, items)
    }

    fn dispatch(&self, key: u64, items: Vec<Item>) -> Result<(), Gone> {
        self.execution.send(Batch { key, items }).map_err(|lost| {
            log::error!(
                "worker pool is gone; dropping {} command(s)",
                lost.into_inner().items.len()
            );
            Gone
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};
    use plugboard_interface::message::RawMessage;

    use super::*;

    fn message(user: &str, text: &str) -> Inbound {
        Inbound {
            adapter: 0,
            message: RawMessage::new(None, user, text),
        }
    }

    /// A router under `WhenFull::Reject` with nothing taking its batches
    /// yet: the test plays the workers.
    fn router(
        max_pending: usize,
        ingress_capacity: usize,
    ) -> (
        Sender<Inbound>,
        Receiver<Batch>,
        Sender<u64>,
        std::thread::JoinHandle<()>,
    ) {
        let (ingress_tx, ingress) = bounded(ingress_capacity);
        let (execution, execution_rx) = bounded(1);
        let (done_tx, done) = unbounded();
        let router = Router {
            ingress,
            done,
            execution,
            max_pending,
            reject: true,
            refuser: None,
        };
        let thread = std::thread::spawn(move || router.run());
        (ingress_tx, execution_rx, done_tx, thread)
    }

    /// Plays one worker until the router ends: every batch in order, its
    /// items recorded per user as (text, is busy, shared by how many more).
    fn work(
        batches: &Receiver<Batch>,
        done: &Sender<u64>,
    ) -> HashMap<String, Vec<(String, bool, u64)>> {
        let mut seen: HashMap<String, Vec<(String, bool, u64)>> = HashMap::new();
        for batch in batches {
            for item in batch.items {
                let (message, busy, more) = match item {
                    Item::Command(message) => (message, false, 0),
                    Item::Busy { message, more } => (message, true, more),
                };
                seen.entry(message.message.identity.to_string())
                    .or_default()
                    .push((message.message.content.to_string(), busy, more));
            }
            done.send(batch.key).unwrap();
        }
        seen
    }

    /// Waits until the router has read everything sent so far (a guard of
    /// a minute against a hung router, not a timing assumption).
    fn drained(ingress: &Sender<Inbound>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ingress.is_empty() {
            assert!(Instant::now() < deadline, "the router stopped reading");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_flooder_is_refused_in_order_and_light_users_are_admitted() {
        // More than the 5 light users: they fit beside the flooder's share.
        const MAX: usize = 8;
        let (ingress, batches, done, router) = router(MAX, 1024);
        let long = "x".repeat(1000);
        for i in 0..100 {
            ingress
                .send(message("flooder", &format!("!f{i} {long}")))
                .unwrap();
            if i % 20 == 10 {
                ingress
                    .send(message(&format!("light{i}"), "!light"))
                    .unwrap();
            }
        }
        drained(&ingress);
        drop(ingress);
        let seen = work(&batches, &done);
        router.join().unwrap();

        for (user, items) in &seen {
            if user != "flooder" {
                assert_eq!(items, &[("!light".to_owned(), false, 0)], "{user}");
            }
        }
        let flooder = &seen["flooder"];
        // Every command, in order: run, or refused (alone or with the next ones).
        let mut next = 0;
        let mut commands = 0;
        for (text, busy, more) in flooder {
            let n: usize = text[2..].split(' ').next().unwrap().parse().unwrap();
            assert_eq!(n, next, "{flooder:?}");
            next += 1 + *more as usize;
            if *busy {
                assert!(
                    text.len() <= BUSY_NAME_BYTES + '…'.len_utf8(),
                    "a marker keeps a name only"
                );
            } else {
                assert_eq!(text.len(), format!("!f{n} {long}").len());
                commands += 1;
            }
        }
        assert_eq!(next, 100);
        // The first one in flight, then at most `max_pending` waiting.
        assert!(commands <= 1 + MAX, "{commands} commands admitted");
        // Markers one per command up to `max_pending`, then shared.
        assert!(flooder.len() - commands <= MAX + 1, "{flooder:?}");
    }

    #[test]
    fn at_the_bound_a_light_user_takes_the_place_of_the_flooders_newest_command() {
        const MAX: usize = 4;
        let (ingress, batches, done, router) = router(MAX, 1024);
        // In flight: the first; waiting: `MAX` more; refused: the rest.
        for i in 0..20 {
            ingress.send(message("flooder", &format!("!f{i}"))).unwrap();
        }
        // `MAX` light users fit beside the flooder's `MAX` waiting commands;
        // past the bound, each next one takes the place of the flooder's
        // newest waiting command, down to the flooder's fair share (one):
        // `2 * MAX - 1` light users in all, the next one is refused.
        for i in 0..2 * MAX {
            ingress
                .send(message(&format!("light{i}"), "!light"))
                .unwrap();
        }
        // Read once the router is done with the last light user: only then
        // may the test's worker start.
        ingress.send(message("flooder", "!f20")).unwrap();
        drained(&ingress);
        drop(ingress);
        let seen = work(&batches, &done);
        router.join().unwrap();

        let refused: Vec<usize> = (0..2 * MAX)
            .filter(|i| seen[&format!("light{i}")][0].1)
            .collect();
        assert_eq!(refused, [2 * MAX - 1], "{seen:?}");
        let flooder: Vec<(usize, bool)> = seen["flooder"]
            .iter()
            .flat_map(|(text, busy, more)| {
                let n: usize = text[2..].parse().unwrap();
                (n..=n + *more as usize).map(move |n| (n, *busy))
            })
            .collect();
        let run: Vec<usize> = flooder
            .iter()
            .filter(|(_, busy)| !busy)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(run, [0, 1], "the first, then its share of one: {flooder:?}");
        assert_eq!(
            flooder.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..21).collect::<Vec<_>>(),
            "every command once, in order"
        );
    }

    #[test]
    fn past_its_bound_on_refusals_the_router_stops_reading_and_then_catches_up() {
        const MAX: usize = 2;
        let (ingress, batches, done, router) = router(MAX, 1);
        // One user per command: none can share a marker. In flight: 1; ready:
        // 2 * MAX admitted, then 2 * MAX refused; the next is held, and the
        // one after fills the ingress channel.
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match ingress.try_send(message(&format!("u{sent}"), "!x")) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) if sent > 1 + 4 * MAX + 1 => break,
                Err(TrySendError::Full(_)) => {
                    assert!(
                        Instant::now() < deadline,
                        "the router stopped reading early"
                    );
                    std::thread::yield_now();
                }
                Err(TrySendError::Disconnected(_)) => unreachable!(),
            }
            assert!(
                sent <= 1 + 4 * MAX + 2,
                "the router kept reading: {sent} sent"
            );
        }
        drop(ingress);
        let seen = work(&batches, &done);
        router.join().unwrap();
        assert_eq!(seen.len(), sent, "one item per command");
        let refused: Vec<usize> = (0..sent).filter(|i| seen[&format!("u{i}")][0].1).collect();
        // Admitted first come, first served up to twice `max_pending`, then
        // refused up to twice `max_pending` markers; the rest waited, and
        // were admitted once the workers caught up.
        assert_eq!(
            refused,
            (1 + 2 * MAX..1 + 4 * MAX).collect::<Vec<_>>(),
            "{seen:?}"
        );
    }
}
