//! The mock platform clients the demo injects into its adapters, and the
//! printer thread their replies go to.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use abi_stable::std_types::{ROption, RResult};
use crossbeam_channel::{bounded, select, Receiver, Sender, TryRecvError};
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
            Some(room) => format!("[{}/{}] ", self.inner.adapter, room),
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
}

/// Creates a mock client for `adapter`, returning the feed for the demux
/// and the client to inject.
pub fn mock(adapter: &str, capacity: usize, printer: Sender<String>) -> (Feed, ClientBox) {
    let (tx, inbound) = bounded(capacity.max(1));
    let (close_tx, close_rx) = bounded(0);
    let client = MockClient {
        inner: Arc::new(Inner {
            adapter: adapter.to_owned(),
            inbound,
            close_tx: Mutex::new(Some(close_tx)),
            close_rx,
            printer,
        }),
    };
    (Feed { tx }, client_box(client))
}

/// The printer: the one thread that writes replies.
///
/// It writes through a buffer and flushes whenever its queue runs empty, so
/// a burst of replies costs few `write` calls while an interactive user
/// still sees each reply at once.
pub fn printer(
    out: impl Write + Send + 'static,
    capacity: usize,
) -> std::io::Result<(Sender<String>, JoinHandle<std::io::Result<u64>>)> {
    let (tx, rx) = bounded::<String>(capacity.max(1));
    let thread = std::thread::Builder::new()
        .name("printer".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
            let mut printed = 0u64;
            while let Ok(line) = rx.recv() {
                writeln!(out, "{line}")?;
                printed += 1;
                while let Ok(line) = rx.try_recv() {
                    writeln!(out, "{line}")?;
                    printed += 1;
                }
                out.flush()?;
            }
            out.flush()?;
            Ok(printed)
        })?;
    Ok((tx, thread))
}
