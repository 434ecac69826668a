//! The engine's side of the boundary: the [`Host`] services each extension
//! gets, the [`IngressSink`] adapters push into, and the intake [`Gate`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RBox, ROption, RStr, RString};
use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use plugboard_interface::host::{
    ClientBox, Host, HostBox, Host_TO, IngressSink, IngressSink_TO, LogLevel, LogRecord,
    PushOutcome, SinkBox,
};
use plugboard_interface::message::RawMessage;
use plugboard_interface::COMMAND_PREFIX;

use crate::error::Kind;

/// One message on the ingress channel: which adapter it came through, and
/// the message.
pub(crate) struct Inbound {
    pub adapter: u32,
    pub message: RawMessage,
}

impl Inbound {
    /// The room the message was written in, if any.
    pub fn room(&self) -> Option<&str> {
        self.message.room.as_ref().map(|r| r.as_str()).into_option()
    }
}

/// The engine's intake: a door in front of the ingress channel.
///
/// Every producer (each adapter's sink, the embedder's [`Handle`](super::Handle))
/// holds its own `Gate` owning one `Sender`. Closing a gate drops that
/// sender; once every gate is closed the ingress channel disconnects and the
/// router knows no message can arrive any more. That is how intake stops
/// (see [`shutdown`](super::shutdown)).
///
/// It counts what it took and refused, for the shutdown report (one
/// producer per gate, mostly: uncontended).
pub(crate) struct Gate {
    tx: RwLock<Option<Sender<Inbound>>>,
    accepted: AtomicU64,
    turned_away: AtomicU64,
    /// Disconnected by `close` first, to wake sends waiting for room: the
    /// router may not make room before shutdown ends (its backlog full
    /// behind a hung command), and `close` must not wait for it.
    closing: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
}

/// Why the gate did not take a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Intake is closed.
    Closed,
}

impl Gate {
    pub fn new(tx: Sender<Inbound>) -> Self {
        let (closing, closed) = bounded(0);
        Gate {
            tx: RwLock::new(Some(tx)),
            accepted: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
            closing: Mutex::new(Some(closing)),
            closed,
        }
    }

    /// Queues a message; while the ingress channel is full, waits for room
    /// (or for `close`).
    ///
    /// It never refuses a message for overload, whatever
    /// [`WhenFull`](super::WhenFull) says: a refusal here would be answered
    /// by the adapter at once, overtaking the replies still due to the same
    /// conversation, and the gate cannot see which conversation holds more
    /// than its share. Under `WhenFull::Reject` the router decides instead,
    /// in order (see `router.rs`), and never waits for the workers, so the
    /// wait here lasts as long as the router takes to read the messages
    /// ahead (or, in the extreme case of more than `2 * max_pending`
    /// refusals awaiting their reply, until some have left).
    pub fn send(&self, inbound: Inbound) -> Result<(), Refused> {
        let sent = self.try_send(inbound);
        let count = match sent {
            Ok(()) => &self.accepted,
            Err(Refused::Closed) => &self.turned_away,
        };
        count.fetch_add(1, Ordering::Relaxed);
        sent
    }

    /// Messages taken so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Messages refused because intake was closed.
    pub fn turned_away(&self) -> u64 {
        self.turned_away.load(Ordering::Relaxed)
    }

    fn try_send(&self, inbound: Inbound) -> Result<(), Refused> {
        // A poisoned lock means a panic while holding it, which `send` and
        // `close` cannot do; treat it like a closed gate rather than panic.
        let Ok(guard) = self.tx.read() else {
            return Err(Refused::Closed);
        };
        let Some(tx) = &*guard else {
            return Err(Refused::Closed);
        };
        match tx.try_send(inbound) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
            Err(TrySendError::Full(inbound)) => select! {
                send(tx, inbound) -> sent => sent.map_err(|_| Refused::Closed),
                recv(self.closed) -> _ => Err(Refused::Closed),
            },
        }
    }

    /// Closes the gate: wakes the sends waiting for room (refused, as
    /// closed), then waits for the sends in progress, which no longer wait
    /// for anything.
    pub fn close(&self) {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut guard = match self.tx.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.take();
    }
}

/// Whether chat content is a command (starts with the prefix).
pub(crate) fn is_command(content: &str) -> bool {
    content.starts_with(COMMAND_PREFIX)
}

/// The sink handed to one adapter's `listen`.
struct EngineSink {
    adapter: u32,
    name: Arc<str>,
    gate: Arc<Gate>,
}

impl IngressSink for EngineSink {
    fn push(&self, message: RawMessage) -> PushOutcome {
        // Non-command chatter is dropped here, on the adapter's thread, so it
        // never costs the router anything.
        if !is_command(&message.content) {
            log::debug!(target: "plugboard::ingress", "{}: ignoring non-command message from {}", self.name, message.identity);
            return PushOutcome::Accepted;
        }
        let inbound = Inbound {
            adapter: self.adapter,
            message,
        };
        match self.gate.send(inbound) {
            Ok(()) => PushOutcome::Accepted,
            Err(Refused::Closed) => PushOutcome::Closed,
        }
    }
}

pub(crate) fn sink(adapter: u32, name: Arc<str>, gate: Arc<Gate>) -> SinkBox {
    IngressSink_TO::from_ptr(
        RBox::new(EngineSink {
            adapter,
            name,
            gate,
        }),
        TD_Opaque,
    )
}

/// The [`Host`] services of one extension.
#[derive(Clone)]
struct EngineHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    name: String,
    /// `plugin::<name>` / `adapter::<name>`: every log record of the
    /// extension is filed under it, so that no extension can log as the
    /// engine (or as another extension).
    log_prefix: String,
    config_json: String,
    data_dir: Option<String>,
    client: Arc<ClientSlot>,
}

impl Host for EngineHost {
    fn extension_name(&self) -> RStr<'_> {
        self.inner.name.as_str().into()
    }

    fn config_json(&self) -> RStr<'_> {
        self.inner.config_json.as_str().into()
    }

    fn client(&self) -> ROption<ClientBox> {
        // Handed over once: the adapter owns it from then on, so the client
        // is dropped with the adapter, not kept alive by this host object
        // (which the logging bridge keeps for the life of the library).
        let taken = self.inner.client.take();
        if taken.is_some() {
            self.inner.client.taken.store(true, Ordering::Release);
        }
        taken.into()
    }

    fn data_dir(&self) -> ROption<RString> {
        self.inner.data_dir.as_deref().map(RString::from).into()
    }

    fn max_level(&self) -> ROption<LogLevel> {
        LogLevel::from_filter(log::max_level()).into()
    }

    fn log_enabled(&self, level: LogLevel, target: RStr<'_>) -> bool {
        let target = format!("{}::{target}", self.inner.log_prefix);
        log::logger().enabled(
            &log::Metadata::builder()
                .level(level.into())
                .target(&target)
                .build(),
        )
    }

    fn log(&self, record: &LogRecord<'_>) {
        let target = format!("{}::{}", self.inner.log_prefix, record.target);
        log::logger().log(
            &log::Record::builder()
                .level(record.level.into())
                .target(&target)
                .module_path(record.module_path.map(|m| m.as_str()).into_option())
                .file(record.file.map(|f| f.as_str()).into_option())
                .line(record.line.into_option())
                .args(format_args!("{}", record.message.as_str()))
                .build(),
        );
    }
}

pub(crate) fn host(
    kind: Kind,
    name: &str,
    config_json: String,
    data_dir: Option<String>,
    client: Option<ClientBox>,
) -> HostBox {
    host_tracking_client(kind, name, config_json, data_dir, client).0
}

/// The platform client injected for one adapter, until the adapter takes
/// it during `init`.
pub(crate) struct ClientSlot {
    client: Mutex<Option<ClientBox>>,
    taken: AtomicBool,
}

impl ClientSlot {
    fn take(&self) -> Option<ClientBox> {
        // Nothing panics while holding the lock; recover the guard anyway.
        self.client.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Whether the adapter took its client.
    pub(crate) fn taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    /// Drops the client if the adapter did not take it during `init`: the
    /// host object lives as long as the library (its logging bridge keeps
    /// it), and an untaken client must not live that long with it (the
    /// demo's mock clients hold the printer open, so shutdown would wait
    /// for them forever).
    pub(crate) fn withdraw(&self) {
        drop(self.take());
    }
}

/// A host, and the slot of the client it hands over (see [`ClientSlot`]).
pub(crate) fn host_tracking_client(
    kind: Kind,
    name: &str,
    config_json: String,
    data_dir: Option<String>,
    client: Option<ClientBox>,
) -> (HostBox, Arc<ClientSlot>) {
    let slot = Arc::new(ClientSlot {
        client: Mutex::new(client),
        taken: AtomicBool::new(false),
    });
    let host = Host_TO::from_ptr(
        RArc::new(EngineHost {
            inner: Arc::new(HostInner {
                name: name.to_owned(),
                log_prefix: format!("{kind}::{name}"),
                config_json,
                data_dir,
                client: Arc::clone(&slot),
            }),
        }),
        TD_Opaque,
    );
    (host, slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> Inbound {
        Inbound {
            adapter: 0,
            message: RawMessage::new(None, "u", "!x"),
        }
    }

    /// A push waiting for room in a full ingress channel (the router may
    /// never make any) must not keep `close`, and so shutdown, waiting.
    #[test]
    fn closing_a_gate_refuses_a_push_that_waits_for_room() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let gate = Arc::new(Gate::new(tx));
        gate.send(inbound()).unwrap();
        let (started_tx, started) = crossbeam_channel::bounded(0);
        let pusher = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                gate.send(inbound())
            })
        };
        started.recv().unwrap();
        // Whether the push is already waiting or not yet: it gets `Closed`.
        gate.close();
        assert_eq!(pusher.join().unwrap(), Err(Refused::Closed));
        assert_eq!(gate.send(inbound()), Err(Refused::Closed));
        assert_eq!(rx.len(), 1, "only the first message was accepted");
        // Counted for the shutdown report.
        assert_eq!((gate.accepted(), gate.turned_away()), (1, 2));
    }
}
