//! Per-plugin health: state (active, quarantined, disabled) and counters,
//! and the circuit breaker that ends a quarantine.
//!
//! **A plugin is quarantined after `quarantine_after` consecutive panics or
//! timeouts.** Errors a plugin *returns* (`Err(Error::msg(..))`, e.g. a bad
//! argument) are its normal way of answering and never count. A success
//! resets the streak. Quarantined and disabled plugins are still matched, so
//! their users get an error reply instead of silence.
//!
//! **A quarantine ends by itself** (a circuit breaker): once its cooldown
//! has passed, the next command is let through as the one *trial call*
//! (everyone else is still told the plugin is quarantined). If it succeeds
//! the plugin is active again; if it panics or times out the plugin is
//! quarantined again, for twice the cooldown (up to an hour, or the base
//! cooldown if that is longer). Why: a plugin that failed because of a
//! passing condition (a service down for a minute) should come back without
//! an operator, and one that is still broken should cost one user one error
//! reply per cooldown, not more. A quarantine imposed because too many
//! threads are stuck (see the supervisor) has no cooldown: only `!enable` /
//! `Handle::reinstate` lift it (as they lift any quarantine at once).
//!
//! The state is one atomic read on the hot path; the clock is only read
//! while a plugin is quarantined, and transitions take a mutex.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginState {
    /// Runs normally.
    Active,
    /// Stopped by the engine after repeated failures, until a trial call
    /// after its cooldown succeeds or [`Handle::reinstate`](super::Handle::reinstate).
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

const ACTIVE: u8 = 0;
const QUARANTINED: u8 = 1;
const DISABLED: u8 = 2;
/// Quarantined, with its one trial call in progress (shown as quarantined).
const TRIAL: u8 = 3;

/// `until` of a quarantine without a cooldown.
const NEVER: u64 = u64::MAX;

/// The longest cooldown doubling leads to (unless the base is longer).
const MAX_COOLDOWN: Duration = Duration::from_secs(3600);

/// Nanoseconds on the engine's monotonic clock.
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(NEVER - 1)
}

/// When plugins (or adapters' `send`) are quarantined, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Breaker {
    /// Consecutive panics/timeouts that quarantine (0: never).
    pub quarantine_after: u32,
    /// How long a quarantine lasts before its trial call (`None`: until
    /// reinstated).
    pub cooldown: Option<Duration>,
}

impl Breaker {
    /// The cooldown after `failed` failed trials: doubled each time, up to
    /// an hour (or the base, if longer).
    fn cooldown_after(&self, failed: u32) -> Option<Duration> {
        let base = self.cooldown?;
        let doubled = base.saturating_mul(1u32 << failed.min(20));
        Some(doubled.min(base.max(MAX_COOLDOWN)))
    }
}

/// Whether a command may call the plugin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes.
    Call,
    /// Yes, as the trial call that decides whether a quarantine ends.
    Trial,
    /// No: the plugin is in this state.
    Refuse(PluginState),
}

/// A change of state caused by a call's outcome, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// Quarantined after a streak of failures; a trial after the cooldown
    /// (if any).
    Quarantined(Option<Duration>),
    /// The trial call succeeded.
    Recovered,
    /// The trial call failed: quarantined for this long.
    Requarantined(Duration),
}

impl Transition {
    /// Logs the transition of `kind` (plugin, adapter) `name`.
    pub fn log(self, kind: &str, name: &str, breaker: &Breaker) {
        match self {
            Transition::None => {}
            Transition::Quarantined(Some(cooldown)) => log::warn!(
                "{kind} `{name}` quarantined after {} consecutive failures; one trial call after {}",
                breaker.quarantine_after,
                super::human(cooldown)
            ),
            Transition::Quarantined(None) => log::warn!(
                "{kind} `{name}` quarantined after {} consecutive failures, until it is re-enabled",
                breaker.quarantine_after
            ),
            Transition::Recovered => log::warn!("{kind} `{name}` passed its trial call; active again"),
            Transition::Requarantined(cooldown) => log::warn!(
                "{kind} `{name}` failed its trial call; quarantined again, next trial after {}",
                super::human(cooldown)
            ),
        }
    }
}

#[derive(Default)]
pub(crate) struct Health {
    latency: Histogram,
    state: AtomicU8,
    streak: AtomicU32,
    /// End of the current quarantine, in `now_nanos`; `NEVER` without one.
    until: AtomicU64,
    /// Failed trials since the plugin was last active (doubles the cooldown).
    failed_trials: AtomicU32,
    /// Held for every state transition (the hot path only reads `state`).
    transition: Mutex<()>,
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
            ACTIVE => PluginState::Active,
            QUARANTINED | TRIAL => PluginState::Quarantined,
            _ => PluginState::Disabled,
        }
    }

    /// Whether commands waiting for this plugin should be answered now: it
    /// is quarantined (no trial running) or disabled.
    pub fn stopped(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), QUARANTINED | DISABLED)
    }

    /// Whether a trial call is in progress.
    pub fn in_trial(&self) -> bool {
        self.state.load(Ordering::Acquire) == TRIAL
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a poisoned lock holds nothing broken.
        self.transition.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: PluginState) {
        let _guard = self.lock();
        let v = match state {
            PluginState::Active => {
                self.streak.store(0, Ordering::Relaxed);
                self.failed_trials.store(0, Ordering::Relaxed);
                ACTIVE
            }
            PluginState::Quarantined => {
                // An operator's quarantine lasts until they lift it.
                self.until.store(NEVER, Ordering::Relaxed);
                QUARANTINED
            }
            PluginState::Disabled => DISABLED,
        };
        self.state.store(v, Ordering::Release);
    }

    /// Whether a command may call the plugin now; after a quarantine's
    /// cooldown, the first caller gets the trial.
    pub fn admit(&self) -> Admit {
        match self.state.load(Ordering::Acquire) {
            ACTIVE => Admit::Call,
            QUARANTINED => {
                // Written before the state (under the transition lock).
                let until = self.until.load(Ordering::Acquire);
                if until != NEVER
                    && now_nanos() >= until
                    && self
                        .state
                        .compare_exchange(QUARANTINED, TRIAL, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    Admit::Trial
                } else {
                    Admit::Refuse(PluginState::Quarantined)
                }
            }
            TRIAL => Admit::Refuse(PluginState::Quarantined),
            _ => Admit::Refuse(PluginState::Disabled),
        }
    }

    /// A trial that never reached the plugin (the command was disabled
    /// where it was sent): the next command may try again.
    pub fn abandon_trial(&self) {
        let _guard = self.lock();
        if self.state.load(Ordering::Acquire) == TRIAL {
            self.until.store(now_nanos(), Ordering::Release);
            self.state.store(QUARANTINED, Ordering::Release);
        }
    }

    /// Quarantines the plugin until it is re-enabled, whatever its streak
    /// (too many threads are stuck in calls). Returns whether that changed
    /// anything.
    pub fn force_quarantine(&self) -> bool {
        let _guard = self.lock();
        let state = self.state.load(Ordering::Acquire);
        if state == DISABLED
            || (state == QUARANTINED && self.until.load(Ordering::Acquire) == NEVER)
        {
            return false;
        }
        self.until.store(NEVER, Ordering::Release);
        self.state.store(QUARANTINED, Ordering::Release);
        true
    }

    /// Records a call's outcome (`trial`: it was the trial call); returns
    /// the state change it caused.
    pub fn record(&self, outcome: Outcome, breaker: &Breaker, trial: bool) -> Transition {
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
        let failed = matches!(outcome, Outcome::Panic | Outcome::Timeout);
        if trial {
            let _guard = self.lock();
            // Unless an operator (or the thread bound) changed the state
            // meanwhile, the trial decides.
            if self.state.load(Ordering::Acquire) == TRIAL {
                self.streak.store(0, Ordering::Relaxed);
                if !failed {
                    self.failed_trials.store(0, Ordering::Relaxed);
                    self.state.store(ACTIVE, Ordering::Release);
                    return Transition::Recovered;
                }
                let failures = self.failed_trials.fetch_add(1, Ordering::Relaxed) + 1;
                let cooldown = breaker.cooldown_after(failures).unwrap_or(Duration::ZERO);
                let until = now_nanos()
                    .saturating_add(u64::try_from(cooldown.as_nanos()).unwrap_or(NEVER - 1));
                self.until.store(until.min(NEVER - 1), Ordering::Release);
                self.state.store(QUARANTINED, Ordering::Release);
                return Transition::Requarantined(cooldown);
            }
        }
        if !failed {
            self.streak.store(0, Ordering::Relaxed);
            return Transition::None;
        }
        let streak = self.streak.fetch_add(1, Ordering::AcqRel) + 1;
        if breaker.quarantine_after == 0 || streak < breaker.quarantine_after {
            return Transition::None;
        }
        let _guard = self.lock();
        if self.state.load(Ordering::Acquire) != ACTIVE {
            return Transition::None;
        }
        let cooldown = breaker.cooldown_after(self.failed_trials.load(Ordering::Relaxed));
        let until = match cooldown {
            Some(c) => now_nanos()
                .saturating_add(u64::try_from(c.as_nanos()).unwrap_or(NEVER - 1))
                .min(NEVER - 1),
            None => NEVER,
        };
        self.until.store(until, Ordering::Release);
        self.state.store(QUARANTINED, Ordering::Release);
        Transition::Quarantined(cooldown)
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

    const NO_COOLDOWN: Breaker = Breaker {
        quarantine_after: 3,
        cooldown: None,
    };

    fn quarantined(t: Transition) -> bool {
        matches!(t, Transition::Quarantined(_))
    }

    #[test]
    fn consecutive_panics_and_timeouts_quarantine_and_successes_reset() {
        let h = Health::default();
        let b = &NO_COOLDOWN;
        assert!(!quarantined(h.record(Outcome::Panic, b, false)));
        assert!(!quarantined(h.record(Outcome::Timeout, b, false)));
        assert!(
            !quarantined(h.record(Outcome::Ok, b, false)),
            "success resets the streak"
        );
        assert!(!quarantined(h.record(Outcome::Panic, b, false)));
        assert!(
            !quarantined(h.record(Outcome::Error, b, false)),
            "returned errors reset too"
        );
        assert!(!quarantined(h.record(Outcome::Panic, b, false)));
        assert!(!quarantined(h.record(Outcome::Panic, b, false)));
        assert_eq!(
            h.record(Outcome::Timeout, b, false),
            Transition::Quarantined(None),
            "third in a row"
        );
        assert_eq!(h.state(), PluginState::Quarantined);
        assert_eq!(h.admit(), Admit::Refuse(PluginState::Quarantined));
        assert!(
            !quarantined(h.record(Outcome::Panic, b, false)),
            "reported once"
        );
        h.set_state(PluginState::Active);
        assert!(
            !quarantined(h.record(Outcome::Panic, b, false)),
            "reinstating resets the streak"
        );
        let c = h.counters();
        assert_eq!((c.calls, c.errors, c.panics, c.timeouts), (10, 1, 6, 2));
        let never = Breaker {
            quarantine_after: 0,
            cooldown: None,
        };
        assert!(
            !quarantined(Health::default().record(Outcome::Panic, &never, false)),
            "0 disables quarantine"
        );
    }

    #[test]
    fn a_quarantine_ends_with_one_trial_call_after_its_cooldown() {
        // A zero cooldown has always passed: the next command is the trial.
        let b = Breaker {
            quarantine_after: 1,
            cooldown: Some(Duration::ZERO),
        };
        let h = Health::default();
        assert_eq!(
            h.record(Outcome::Panic, &b, false),
            Transition::Quarantined(Some(Duration::ZERO))
        );
        assert_eq!(h.admit(), Admit::Trial);
        assert_eq!(
            h.admit(),
            Admit::Refuse(PluginState::Quarantined),
            "one trial at a time"
        );
        assert!(h.in_trial() && !h.stopped());
        assert_eq!(
            h.record(Outcome::Ok, &b, false),
            Transition::None,
            "only the trial's own outcome decides"
        );
        assert_eq!(
            h.record(Outcome::Timeout, &b, true),
            Transition::Requarantined(Duration::ZERO)
        );
        assert!(h.stopped());
        assert_eq!(h.admit(), Admit::Trial);
        assert_eq!(h.record(Outcome::Error, &b, true), Transition::Recovered);
        assert_eq!(h.state(), PluginState::Active);

        // A trial that never reached the plugin lets the next one try.
        h.record(Outcome::Panic, &b, false);
        assert_eq!(h.admit(), Admit::Trial);
        h.abandon_trial();
        assert_eq!(h.admit(), Admit::Trial);

        // The thread bound's quarantine has no trial.
        assert!(h.force_quarantine());
        assert!(!h.force_quarantine(), "reported once");
        assert_eq!(h.admit(), Admit::Refuse(PluginState::Quarantined));
        assert_eq!(h.record(Outcome::Ok, &b, true), Transition::None);
        h.set_state(PluginState::Active);
        assert_eq!(h.admit(), Admit::Call);
    }

    #[test]
    fn the_cooldown_doubles_up_to_an_hour() {
        let b = Breaker {
            quarantine_after: 1,
            cooldown: Some(Duration::from_secs(60)),
        };
        assert_eq!(b.cooldown_after(0), Some(Duration::from_secs(60)));
        assert_eq!(b.cooldown_after(1), Some(Duration::from_secs(120)));
        assert_eq!(b.cooldown_after(6), Some(Duration::from_secs(3600)));
        assert_eq!(b.cooldown_after(99), Some(Duration::from_secs(3600)));
        let long = Breaker {
            quarantine_after: 1,
            cooldown: Some(Duration::from_secs(7200)),
        };
        assert_eq!(long.cooldown_after(3), Some(Duration::from_secs(7200)));
        let h = Health::default();
        h.record(Outcome::Panic, &b, false);
        assert_eq!(
            h.admit(),
            Admit::Refuse(PluginState::Quarantined),
            "a minute has not passed"
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
