//! Standard input, readable line by line *and* interruptible.
//!
//! A blocking `read` on stdin cannot be cancelled, so a reader thread does
//! the reading, in 64 KiB blocks (one hand-off per block, not per line), and
//! [`Input`] serves them as a `BufRead`. While waiting for the next block it
//! also watches the interrupt channel (SIGINT/SIGTERM): an interrupt ends
//! the input early with [`Stopped`]. The binary interrupts by disconnecting
//! the channel, so that every wait watching it (see [`Input::interrupt`])
//! sees it.

use std::cell::Cell;
use std::io::{self, BufRead, Read};

use crossbeam_channel::{bounded, never, select, Receiver, TryRecvError};

const BLOCK: usize = 64 * 1024;

/// The error [`Input`] returns when an interrupt arrived.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Stopped {}

/// Whether an I/O error is an interrupt from [`Input`].
pub fn is_stopped(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Stopped>())
}

/// Blocks of input, served as a `BufRead`.
pub struct Input {
    blocks: Receiver<io::Result<Vec<u8>>>,
    interrupt: Receiver<()>,
    block: Vec<u8>,
    pos: usize,
    eof: bool,
    /// An interrupt was seen (a sent `()` is consumed by seeing it).
    stopped: Cell<bool>,
}

impl Input {
    /// Starts the reader thread on `source`. `interrupt` ends the input
    /// early when it receives (or disconnects, if `None` is given: never).
    pub fn spawn(
        mut source: impl Read + Send + 'static,
        interrupt: Option<Receiver<()>>,
    ) -> io::Result<Input> {
        // Two blocks in flight: the reader stays ahead without buffering
        // unboundedly.
        let (tx, blocks) = bounded(2);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || loop {
                let mut block = vec![0u8; BLOCK];
                match source.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Ok(block)).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            })?;
        Ok(Input {
            blocks,
            interrupt: interrupt.unwrap_or_else(never),
            block: Vec::new(),
            pos: 0,
            eof: false,
            stopped: Cell::new(false),
        })
    }

    /// Whether a line can be read without waiting for the reader thread.
    pub fn has_buffered(&self) -> bool {
        self.pos < self.block.len()
    }

    /// The interrupt channel, for other waits that an interrupt must end
    /// too (it is an interrupt once it receives or disconnects).
    pub fn interrupt(&self) -> Receiver<()> {
        self.interrupt.clone()
    }

    /// Whether an interrupt has arrived, without waiting: the REPL asks
    /// before each line, so that no line is taken after an interrupt, even
    /// from a block already read.
    pub fn interrupted(&self) -> bool {
        if !self.stopped.get() && !matches!(self.interrupt.try_recv(), Err(TryRecvError::Empty)) {
            self.stopped.set(true);
        }
        self.stopped.get()
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.block.len() && !self.eof {
            select! {
                recv(self.blocks) -> block => match block {
                    Ok(Ok(block)) => {
                        self.block = block;
                        self.pos = 0;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => self.eof = true,
                },
                recv(self.interrupt) -> _ => {
                    self.stopped.set(true);
                    return Err(io::Error::other(Stopped));
                }
            }
        }
        Ok(&self.block[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.block.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_all_input_then_eof() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = Input::spawn(io::Cursor::new(data.clone()), None).unwrap();
        let mut out = Vec::new();
        input.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn an_interrupt_stops_input_even_with_lines_already_read() {
        let (tx, rx) = bounded(1);
        let mut input = Input::spawn(io::Cursor::new(b"a\nb\nc\n".to_vec()), Some(rx)).unwrap();
        let mut line = String::new();
        input.read_line(&mut line).unwrap();
        assert!(input.has_buffered(), "the rest of the block is in memory");
        assert!(!input.interrupted());
        tx.send(()).unwrap();
        assert!(input.interrupted());
        assert!(input.interrupted(), "it stays interrupted");
    }

    #[test]
    fn an_interrupt_ends_a_blocked_read() {
        // A source that never answers: the reader thread blocks for good.
        struct Silent;
        impl Read for Silent {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                loop {
                    std::thread::park();
                }
            }
        }
        let (tx, rx) = bounded(1);
        let mut input = Input::spawn(Silent, Some(rx)).unwrap();
        tx.send(()).unwrap();
        let err = input.fill_buf().unwrap_err();
        assert!(is_stopped(&err));
    }
}
