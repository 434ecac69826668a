//! Per-plugin health: state (active, quarantined, disabled) and counters.
//!
//! **A plugin is quarantined after `quarantine_after` consecutive panics or
//! timeouts.** Errors a plugin *returns* (`Err(Error::msg(..))`, e.g. a bad
//! argument) are its normal way of answering and never count. A success
//! resets the streak. Quarantined and disabled plugins are still matched, so
//! their users get an error reply instead of silence.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Whether a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginState {
    /// Runs normally.
    Active,
    /// Stopped by the engine after repeated failures; see [`Handle::reinstate`](super::Handle::reinstate).
    Quarantined,
    /// Stopped by an operator.
    Disabled,
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginState::Active => "active",
            PluginState::Quarantined => "quarantined",
            PluginState::Disabled => "disabled",
        })
    }
}

/// Counters of one plugin since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginCounters {
    /// Commands called.
    pub calls: u64,
    /// Commands that returned an error.
    pub errors: u64,
    /// Commands that panicked.
    pub panics: u64,
    /// Commands that missed their deadline.
    pub timeouts: u64,
    /// Results that arrived after their deadline (dropped).
    pub late: u64,
}

#[derive(Default)]
pub(crate) struct Health {
    state: AtomicU8,
    streak: AtomicU32,
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    late: AtomicU64,
}

/// What a call did, for the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Error,
    Panic,
    Timeout,
}

impl Health {
    pub fn state(&self) -> PluginState {
        match self.state.load(Ordering::Acquire) {
            0 => PluginState::Active,
            1 => PluginState::Quarantined,
            _ => PluginState::Disabled,
        }
    }

    pub fn set_state(&self, state: PluginState) {
        let v = match state {
            PluginState::Active => 0,
            PluginState::Quarantined => 1,
            PluginState::Disabled => 2,
        };
        if state == PluginState::Active {
            self.streak.store(0, Ordering::Release);
        }
        self.state.store(v, Ordering::Release);
    }

    /// Records a call's outcome; returns true if this outcome quarantined
    /// the plugin.
    pub fn record(&self, outcome: Outcome, quarantine_after: u32) -> bool {
        let counter = match outcome {
            Outcome::Ok => None,
            Outcome::Error => Some(&self.errors),
            Outcome::Panic => Some(&self.panics),
            Outcome::Timeout => Some(&self.timeouts),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Outcome::Ok | Outcome::Error => {
                self.streak.store(0, Ordering::Relaxed);
                false
            }
            Outcome::Panic | Outcome::Timeout => {
                let streak = self.streak.fetch_add(1, Ordering::AcqRel) + 1;
                quarantine_after > 0
                    && streak >= quarantine_after
                    && self
                        .state
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            }
        }
    }

    /// A result that came back after its deadline.
    pub fn record_late(&self) {
        self.late.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters(&self) -> PluginCounters {
        PluginCounters {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_panics_and_timeouts_quarantine_and_successes_reset() {
        let h = Health::default();
        assert!(!h.record(Outcome::Panic, 3));
        assert!(!h.record(Outcome::Timeout, 3));
        assert!(!h.record(Outcome::Ok, 3), "success resets the streak");
        assert!(!h.record(Outcome::Panic, 3));
        assert!(!h.record(Outcome::Error, 3), "returned errors reset too");
        assert!(!h.record(Outcome::Panic, 3));
        assert!(!h.record(Outcome::Panic, 3));
        assert!(h.record(Outcome::Timeout, 3), "third in a row");
        assert_eq!(h.state(), PluginState::Quarantined);
        assert!(!h.record(Outcome::Panic, 3), "reported once");
        h.set_state(PluginState::Active);
        assert!(
            !h.record(Outcome::Panic, 3),
            "reinstating resets the streak"
        );
        let c = h.counters();
        assert_eq!((c.calls, c.errors, c.panics, c.timeouts), (10, 1, 6, 2));
        assert!(
            !Health::default().record(Outcome::Panic, 0),
            "0 disables quarantine"
        );
    }
}
