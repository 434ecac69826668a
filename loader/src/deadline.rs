//! Calling extension code that may never return: `manifest` at load time
//! and `init` at startup.
//!
//! Before the engine runs, a `manifest` or `init` stuck in a loop (or
//! waiting for a server that never answers) would hang startup forever, and
//! `plugboard check` with it. So each call runs on a helper thread and the
//! loader waits for it until a deadline ([`DEFAULT_LOAD_DEADLINE`] unless
//! configured, `EngineConfig::load_deadline`). Past it the extension fails
//! with one line (`manifest did not return within 5 s`) and the thread is
//! **abandoned** (logged at info level, with the count): a thread cannot be
//! killed, and the library stays mapped (libraries are never unloaded). If
//! the call ever returns, its result is dropped, on that thread, with a
//! warning. [`abandoned_threads`] counts the threads still stuck.
//!
//! The result is handed over through a rendezvous channel, so exactly one
//! side decides its fate: either the loader receives it before the
//! deadline, or the loader has given up (and counted the thread) and the
//! late thread's hand-over fails.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::engine::human;

use crossbeam_channel::{bounded, RecvTimeoutError};

/// How long `manifest` and `init` may run by default: long enough for an
/// adapter to connect to its platform, short enough that a hung one does
/// not look like a hung engine.
pub const DEFAULT_LOAD_DEADLINE: Duration = Duration::from_secs(5);

static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Threads abandoned in an extension's `manifest` or `init` (in this
/// process) that have not returned.
pub fn abandoned_threads() -> usize {
    ABANDONED.load(Ordering::Acquire)
}

/// Why a call made under a deadline gave no result.
#[derive(Debug)]
pub(crate) enum Missed {
    /// It did not return in time; its thread is abandoned.
    Overdue,
    /// Its thread ended without returning (it panicked outside the
    /// extension's own panic guard).
    Lost,
    /// No thread could be started for it.
    Spawn(io::Error),
}

/// Runs `f` on a new thread named `name` and waits for its result until
/// `deadline`. `what` (`<path>: manifest`) names the call in log lines.
pub(crate) fn call_within<T: Send + 'static>(
    name: String,
    what: String,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Missed> {
    let (tx, rx) = bounded::<T>(0);
    let late = what.clone();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let result = f();
            if tx.send(result).is_err() {
                // The loader gave up (and counted this thread) before
                // dropping its receiver, so this never goes below zero.
                let left = ABANDONED.fetch_sub(1, Ordering::AcqRel) - 1;
                log::warn!(
                    "{late} returned after its deadline; its result is dropped ({left} load thread(s) still abandoned)"
                );
            }
        })
        .map_err(Missed::Spawn)?;
    match rx.recv_timeout(deadline) {
        Ok(value) => Ok(value),
        Err(RecvTimeoutError::Disconnected) => Err(Missed::Lost),
        Err(RecvTimeoutError::Timeout) => {
            let abandoned = ABANDONED.fetch_add(1, Ordering::AcqRel) + 1;
            // The caller reports the failure in its one line; this adds the
            // thread count at info level, so that line stays the only one.
            log::info!(
                "{what} did not return within {}; abandoning its thread ({abandoned} load thread(s) abandoned)",
                human(deadline)
            );
            // Only now may the late thread's hand-over fail.
            drop(rx);
            Err(Missed::Overdue)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_in_time_gives_its_result() {
        let r = call_within("t".into(), "test".into(), Duration::from_secs(60), || 7);
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn a_call_that_never_returns_is_abandoned() {
        let before = abandoned_threads();
        let r = call_within("t".into(), "test".into(), Duration::from_millis(10), || {
            loop {
                thread::park();
            }
        });
        assert!(matches!(r, Err(Missed::Overdue)), "{r:?}");
        assert!(abandoned_threads() > before);
    }

    #[test]
    fn a_thread_that_dies_is_reported_lost() {
        let r: Result<(), _> =
            call_within("t".into(), "test".into(), Duration::from_secs(60), || {
                panic!("outside any guard")
            });
        assert!(matches!(r, Err(Missed::Lost)), "{r:?}");
    }

    #[test]
    fn durations_read_like_the_timeout_replies() {
        assert_eq!(human(Duration::from_secs(5)), "5 s");
        assert_eq!(human(Duration::from_millis(200)), "200 ms");
        assert_eq!(human(Duration::from_millis(2500)), "2.5 s");
    }
}
