//! Naming the extension when a fatal signal ends the process.
//!
//! An in-process extension that dereferences garbage, aborts, divides by
//! zero or overflows its stack ends the whole process: nothing in-process
//! can survive that (an isolated child can). What the engine can do is say
//! who it was. Before each plugin call (and each `init`), the thread marks
//! what it is running ([`Marked`]) with a message formatted beforehand;
//! [`install`]'s handler, run on the thread's alternate signal stack (so a
//! stack overflow is caught too), writes `plugboard: killed by SIGSEGV in
//! plugin `x`, command `y`` to stderr with `write(2)` only, restores the
//! default action and raises the signal again, so that the exit status is
//! the signal's.
//!
//! Async-signal safety: the handler reads a thread-local `Cell` (a plain
//! TLS slot: const-initialised, no destructor) holding a pointer to bytes
//! that live as long as the mark, copies into a stack buffer, and calls
//! only `write`, `sigaction` and `raise`.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// What this thread is running: a message, or null.
    static CURRENT: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// While alive, a fatal signal on this thread is blamed on `what`.
pub struct Marked<'a> {
    previous: (*const u8, usize),
    _what: std::marker::PhantomData<&'a [u8]>,
}

/// Marks this thread as running `what` (`plugin `x`, command `y``) until
/// the returned guard drops.
pub fn mark(what: &[u8]) -> Marked<'_> {
    let previous = CURRENT.with(|c| c.replace((what.as_ptr(), what.len())));
    Marked {
        previous,
        _what: std::marker::PhantomData,
    }
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

const SIGNALS: [(libc::c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
];

/// Installs the handler for SIGSEGV, SIGBUS, SIGABRT, SIGILL and SIGFPE,
/// once per process. For a binary's `main`: it replaces std's own
/// stack-overflow message (whose alternate stacks, set up by std for every
/// thread it starts, the handler runs on).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (signal, _) in SIGNALS {
            // SAFETY: a zeroed `sigaction` is a valid starting point; the
            // handler has the `SA_SIGINFO` signature and is
            // async-signal-safe (see the module docs).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    log::warn!("cannot install the fatal-signal handler for signal {signal}");
                }
            }
        }
    });
}

extern "C" fn handler(signal: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let mut buf = [0u8; 512];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    push(b"plugboard: killed by ");
    let name = SIGNALS
        .iter()
        .find(|(s, _)| *s == signal)
        .map_or("a fatal signal", |(_, n)| n);
    push(name.as_bytes());
    // `try_with`: never panic here (the slot is gone during thread exit).
    let (ptr, n) = CURRENT.try_with(Cell::get).unwrap_or((std::ptr::null(), 0));
    if ptr.is_null() {
        push(b" outside any extension call");
    } else {
        push(b" in ");
        // SAFETY: the mark points at bytes its guard borrows, alive while
        // the mark is set, and this thread (the one the mark belongs to)
        // is stopped in this handler.
        push(unsafe { std::slice::from_raw_parts(ptr, n) });
    }
    push(b"\n");
    // SAFETY: write, sigaction and raise are async-signal-safe; the default
    // action ends the process with this signal (its exit status).
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &action, std::ptr::null_mut());
        libc::raise(signal);
    }
}
