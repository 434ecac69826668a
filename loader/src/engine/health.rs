//! Per-plugin health: state (active, quarantined, disabled) and counters.
//!
//! **A plugin is quarantined after `quarantine_after` consecutive panics or
//! timeouts.** Errors a plugin *returns* (`Err(Error::msg(..))`, e.g. a bad
//! argument) are its normal way of answering and never count. A success
//! resets the streak. Quarantined and disabled plugins are still matched, so
//! their users get an error reply instead of silence.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

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
    /// Median call latency (of calls that returned in time), if any.
    pub p50: Option<Duration>,
    /// 99th-percentile call latency, if any.
    pub p99: Option<Duration>,
}

/// A lock-free latency histogram: 4 sub-buckets per power of two of
/// nanoseconds, so quantiles are exact to within 19%.
pub(crate) struct Histogram {
    buckets: [AtomicU64; 256],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    fn index(ns: u64) -> usize {
        if ns < 4 {
            return ns as usize;
        }
        let log = 63 - ns.leading_zeros() as usize; // >= 2
        let sub = ((ns >> (log - 2)) & 3) as usize;
        (log * 4 + sub).min(255)
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 4 {
            return i as u64;
        }
        let (log, sub) = (i / 4, (i % 4) as u64);
        let base = 1u64 << log;
        base + (sub + 1) * (base >> 2) - 1
    }

    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::index(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(Self::upper(i)));
            }
        }
        None
    }
}

#[derive(Default)]
pub(crate) struct Health {
    latency: Histogram,
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

    /// The latency of a call that returned in time.
    pub fn record_latency(&self, d: Duration) {
        self.latency.record(d);
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
            p50: self.latency.quantile(0.5),
            p99: self.latency.quantile(0.99),
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

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 12_345, 1 << 40] {
            let i = Histogram::index(ns);
            assert!(Histogram::upper(i) >= ns, "{ns}");
            assert!(i == 0 || Histogram::upper(i - 1) < ns, "{ns}");
        }
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_nanos() as f64;
        let p99 = h.quantile(0.99).unwrap().as_nanos() as f64;
        assert!((50_000.0..=50_000.0 * 1.25).contains(&p50), "{p50}");
        assert!((99_000.0..=99_000.0 * 1.25).contains(&p99), "{p99}");
    }
}
