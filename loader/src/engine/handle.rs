//! [`Handle`]: the cheap, clonable way embedders, admin commands and tests
//! talk to a running engine, and the statuses it reports.

use super::*;

/// An adapter's state and counters (`calls` counts `send`s), as reported by
/// [`Handle::adapters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterStatus {
    /// Its name.
    pub name: String,
    /// Active, or quarantined after repeated panics in `send`.
    pub state: PluginState,
    /// What it did so far.
    pub counters: PluginCounters,
}

/// A plugin's state and counters, as reported by [`Handle::plugins`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// Active, quarantined or disabled.
    pub state: PluginState,
    /// What it did so far.
    pub counters: PluginCounters,
}

/// A cheap, clonable way to talk to a running engine: feed it messages as
/// if they came through one of its adapters, and inspect or change plugin
/// states (for embedders, admin commands and tests).
#[derive(Clone)]
pub struct Handle {
    pub(super) gate: Arc<Gate>,
    pub(super) adapters: Arc<[HandleAdapter]>,
    pub(super) shared: Arc<Shared>,
}

/// What a [`Handle`] knows of one adapter: name, health, and the adapter
/// itself, weakly: a handle must not keep an adapter (and its connection,
/// its injected client) alive after the engine has shut down.
pub(super) type HandleAdapter = (String, Arc<Health>, std::sync::Weak<AdapterBox>);

/// Why a [`Handle`] call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// No adapter has this name.
    UnknownAdapter(String),
    /// No plugin has this name.
    UnknownPlugin(String),
    /// The engine is shutting down.
    Closed,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::UnknownAdapter(name) => write!(f, "no adapter named `{name}`"),
            SubmitError::UnknownPlugin(name) => write!(f, "no plugin named `{name}`"),
            SubmitError::Closed => f.write_str("the engine stopped accepting messages"),
        }
    }
}

impl std::error::Error for SubmitError {}

impl Handle {
    /// Queues `message` as received by adapter `adapter`; blocks while the
    /// ingress channel is full. Non-command content is ignored, as from an
    /// adapter.
    pub fn submit(&self, adapter: &str, message: RawMessage) -> Result<(), SubmitError> {
        let index = self
            .adapters
            .iter()
            .position(|(a, _, _)| a == adapter)
            .ok_or_else(|| SubmitError::UnknownAdapter(adapter.to_owned()))?;
        if !host::is_command(&message.content) {
            return Ok(());
        }
        self.gate
            .send(Inbound {
                // Bounded by the adapter count, far below 2^32.
                adapter: index as u32,
                message,
            })
            .map_err(|_| SubmitError::Closed)
    }

    /// Every plugin's state and counters, in load order.
    pub fn plugins(&self) -> Vec<PluginStatus> {
        self.shared.statuses()
    }

    /// Sets a plugin's state: `Disabled` to stop it, `Active` to re-enable
    /// it (also out of quarantine, with a fresh failure streak).
    pub fn set_plugin_state(&self, name: &str, state: PluginState) -> Result<(), SubmitError> {
        let index = self
            .shared
            .plugin_index(name)
            .ok_or_else(|| SubmitError::UnknownPlugin(name.to_owned()))?;
        self.shared.plugins[index].health.set_state(state);
        log::info!("plugin `{name}` is now {state}");
        Ok(())
    }

    /// Every adapter's state and counters, in load order.
    pub fn adapters(&self) -> Vec<AdapterStatus> {
        self.adapters
            .iter()
            .map(|(name, health, _)| AdapterStatus {
                name: name.clone(),
                state: health.state(),
                counters: health.counters(),
            })
            .collect()
    }

    /// Re-enables a quarantined adapter's `send`.
    pub fn reinstate_adapter(&self, name: &str) -> Result<(), SubmitError> {
        let (_, health, _) = self
            .adapters
            .iter()
            .find(|(a, _, _)| a == name)
            .ok_or_else(|| SubmitError::UnknownAdapter(name.to_owned()))?;
        health.set_state(PluginState::Active);
        log::info!("adapter `{name}` is active again");
        Ok(())
    }

    /// Re-enables a quarantined (or disabled) plugin.
    pub fn reinstate(&self, name: &str) -> Result<(), SubmitError> {
        self.set_plugin_state(name, PluginState::Active)
    }

    /// Asks every adapter to stop listening (their `stop`), from any thread:
    /// the engine's owner, blocked in [`Engine::serve`], then finishes a
    /// graceful shutdown. A bot's signal handler calls this.
    pub fn request_shutdown(&self) {
        for (name, _, adapter) in self.adapters.iter() {
            // Gone: the engine has already shut down.
            let Some(adapter) = adapter.upgrade() else {
                continue;
            };
            stop_adapter(name, adapter);
        }
    }

    /// Worker threads currently stuck in plugin calls past their deadline.
    pub fn abandoned_threads(&self) -> usize {
        self.shared
            .abandoned
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Worker threads in the pool now: the configured count, plus those
    /// standing in for workers stuck in slow calls (abandoned threads are
    /// not counted).
    pub fn worker_threads(&self) -> usize {
        self.shared
            .pool
            .live
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Calls an adapter's `stop` on a thread of its own, without waiting for
/// it: a `stop` that never returns must hold neither the shutdown nor the
/// caller of [`Handle::request_shutdown`] (its `listen` not returning is
/// bounded like any other wait of the shutdown).
pub(super) fn stop_adapter(name: &str, adapter: Arc<AdapterBox>) {
    let owned = name.to_owned();
    let stop = move || {
        if let Err(e) = adapter.stop().into_result() {
            log::error!("adapter `{owned}` failed to stop: {e}");
        }
    };
    if let Err(e) = thread::Builder::new()
        .name(format!("stop-{name}"))
        .spawn(stop)
    {
        // Without a thread, the shutdown cannot protect itself from this
        // adapter; say so rather than call `stop` and risk hanging.
        log::error!("cannot start a thread to stop adapter `{name}`: {e}; not stopping it");
    }
}
