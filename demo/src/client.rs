//! The mock platform clients the demo injects into its adapters, and the
//! printer thread their replies go to.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use abi_stable::std_types::{ROption, RResult};
use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender, TryRecvError};
use plugboard_interface::host::{client_box, Client, ClientBox, ClientMessage};
use plugboard_interface::ExtError;

/// A mock chat platform for one adapter: inbound lines come from the stdin
/// demultiplexer, outbound replies go to the printer.
#[derive(Clone)]
struct MockClient {
    inner: Arc<Inner>,
}

struct Inner {
    adapter: String,
    inbound: Receiver<ClientMessage>,
    /// Dropped by `close`, which wakes a blocked `recv`.
    close_tx: Mutex<Option<Sender<()>>>,
    close_rx: Receiver<()>,
    printer: Sender<String>,
}

impl Client for MockClient {
    fn recv(&self) -> ROption<ClientMessage> {
        let inner = &*self.inner;
        select! {
            recv(inner.inbound) -> message => message.ok().into(),
            recv(inner.close_rx) -> _ => {
                // Closed: hand out what is already queued, then nothing.
                match inner.inbound.try_recv() {
                    Ok(message) => ROption::RSome(message),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => ROption::RNone,
                }
            }
        }
    }

    fn send(&self, message: &ClientMessage) -> RResult<(), ExtError> {
        let prefix = match message.room.as_ref().into_option() {
            // The room is the adapter's text: escaped like the reply.
            Some(room) => format!(
                "[{}/{}] ",
                self.inner.adapter,
                crate::output::one_line(room)
            ),
            None => format!("[{}] ", self.inner.adapter),
        };
        let line = crate::output::printable(&prefix, &message.text);
        match self.inner.printer.send(line) {
            Ok(()) => RResult::ROk(()),
            Err(_) => RResult::RErr(ExtError::Failed("stdout is closed".into())),
        }
    }

    fn close(&self) {
        // A poisoned lock cannot happen (nothing panics while holding it);
        // recover the guard anyway rather than panic across the boundary.
        let mut tx = self
            .inner
            .close_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tx.take();
    }
}

/// The demultiplexer's side of one mock client.
pub struct Feed {
    /// Where the stdin lines for this adapter go (bounded: backpressure).
    pub tx: Sender<ClientMessage>,
    queue: Receiver<ClientMessage>,
}

impl Feed {
    /// The client's queue, to count at the end what its adapter never
    /// read (it does not keep the client open: only `tx` does).
    pub fn unread(&self) -> Unread {
        Unread(self.queue.clone())
    }
}

/// What an adapter left in its client's queue.
pub struct Unread(Receiver<ClientMessage>);

impl Unread {
    /// Takes what is left and counts the commands among it.
    pub fn commands(&self) -> u64 {
        let prefix = plugboard_interface::COMMAND_PREFIX;
        self.0
            .try_iter()
            .filter(|m| m.text.starts_with(prefix))
            .count() as u64
    }
}

/// Creates a mock client for `adapter`, returning the feed for the demux
/// and the client to inject.
pub fn mock(adapter: &str, capacity: usize, printer: Sender<String>) -> (Feed, ClientBox) {
    let (tx, inbound) = bounded(capacity.max(1));
    let (close_tx, close_rx) = bounded(0);
    let queue = inbound.clone();
    let client = MockClient {
        inner: Arc::new(Inner {
            adapter: adapter.to_owned(),
            inbound,
            close_tx: Mutex::new(Some(close_tx)),
            close_rx,
            printer,
        }),
    };
    (Feed { tx, queue }, client_box(client))
}

/// The printer thread, as its owner sees it.
pub struct Printer {
    thread: JoinHandle<std::io::Result<u64>>,
    /// Disconnected when the thread ends.
    done: Receiver<()>,
    printed: Arc<AtomicU64>,
}

impl Printer {
    /// Waits, until `deadline` at most, for the printer to end (it ends once
    /// every mock client is gone); returns the number of replies printed.
    /// An adapter the engine had to abandon (stuck in `listen` or in its
    /// `Drop`) still holds its client, so the printer may never end: then
    /// `Ok(Err(printed so far))`, and the thread is left behind.
    pub fn finish(self, deadline: Instant) -> std::io::Result<Result<u64, u64>> {
        match self.done.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => Ok(Err(self.printed.load(Ordering::Relaxed))),
            // Never sent: disconnected, so the thread is returning.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => match self.thread.join() {
                Ok(result) => result.map(Ok),
                Err(_) => Err(std::io::Error::other("the printer thread panicked")),
            },
        }
    }
}

/// The printer: the one thread that writes replies.
///
/// It writes through a buffer and flushes whenever its queue runs empty, so
/// a burst of replies costs few `write` calls while an interactive user
/// still sees each reply at once.
pub fn printer(
    out: impl Write + Send + 'static,
    capacity: usize,
) -> std::io::Result<(Sender<String>, Printer)> {
    let (tx, rx) = bounded::<String>(capacity.max(1));
    let (done_tx, done) = bounded::<()>(0);
    let printed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&printed);
    let thread = std::thread::Builder::new()
        .name("printer".into())
        .spawn(move || {
            let _done = done_tx;
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            while let Ok(line) = rx.recv() {
                writeln!(out, "{line}")?;
                count.fetch_add(1, Ordering::Relaxed);
                while let Ok(line) = rx.try_recv() {
                    writeln!(out, "{line}")?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                out.flush()?;
            }
            out.flush()?;
            Ok(count.load(Ordering::Relaxed))
        })?;
    Ok((
        tx,
        Printer {
            thread,
            done,
            printed,
        },
    ))
}
