//! Operator switches: plugins disabled in one room, on one adapter, or
//! everywhere. They persist in `<data_dir>/switches.json`, written
//! atomically (temporary file, fsync, rename), so a crash never leaves a
//! half-written file.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Where a switch applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every adapter and room.
    Everywhere,
    /// Every room of one adapter.
    Adapter(String),
    /// One room of one adapter (`room: None` is the adapter's room-less space).
    Room {
        /// The adapter.
        adapter: String,
        /// The room.
        room: Option<String>,
    },
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Everywhere => f.write_str("everywhere"),
            Scope::Adapter(a) => write!(f, "on all of {a}"),
            Scope::Room {
                adapter,
                room: Some(room),
            } => write!(f, "in {adapter}/{room}"),
            Scope::Room {
                adapter,
                room: None,
            } => write!(f, "in {adapter}"),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    disabled: BTreeSet<(String, Scope)>,
}

/// The switch table, shared by the workers.
pub(crate) struct Switches {
    path: Option<PathBuf>,
    state: RwLock<Saved>,
    /// Fast path: most bots have no switch at all.
    any: AtomicBool,
}

impl Switches {
    /// Loads the switches of `data_dir` (none if there is no file yet).
    pub fn load(data_dir: Option<&Path>) -> Result<Switches, String> {
        let path = data_dir.map(|d| d.join("switches.json"));
        let saved = match &path {
            Some(p) => match fs::read_to_string(p) {
                Ok(text) => serde_json::from_str(&text).map_err(|e| {
                    format!(
                        "{}:{}:{}: {}; fix or remove the file",
                        p.display(),
                        e.line(),
                        e.column(),
                        strip_position(&e.to_string())
                    )
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Saved::default(),
                Err(e) => return Err(format!("{}: {e}", p.display())),
            },
            None => Saved::default(),
        };
        Ok(Switches {
            path,
            any: AtomicBool::new(!saved.disabled.is_empty()),
            state: RwLock::new(saved),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Saved> {
        // Writers never panic while holding the lock.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The scope that disables `plugin` for this place, if any.
    pub fn disabled(&self, plugin: &str, adapter: &str, room: Option<&str>) -> Option<Scope> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let state = self.read();
        let candidates = [
            Scope::Room {
                adapter: adapter.to_owned(),
                room: room.map(str::to_owned),
            },
            Scope::Adapter(adapter.to_owned()),
            Scope::Everywhere,
        ];
        candidates
            .into_iter()
            .find(|scope| state.disabled.contains(&(plugin.to_owned(), scope.clone())))
    }

    /// Turns a switch on (`disable`) or off, and persists the table.
    pub fn set(&self, plugin: &str, scope: Scope, disable: bool) -> io::Result<()> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let key = (plugin.to_owned(), scope);
        let changed = if disable {
            state.disabled.insert(key)
        } else {
            state.disabled.remove(&key)
        };
        self.any
            .store(!state.disabled.is_empty(), Ordering::Release);
        match (&self.path, changed) {
            (Some(path), true) => write_atomically(path, &serde_json::to_vec_pretty(&*state)?)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            _ => Ok(()),
        }
    }
}

/// serde_json ends its messages with ` at line L column C`, which the
/// caller already puts in front, as editors expect.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

impl Switches {
    /// The plugins named by any switch, for a warning about the ones no
    /// loaded plugin answers to (kept: the plugin may come back).
    pub fn plugins(&self) -> BTreeSet<String> {
        self.read()
            .disabled
            .iter()
            .map(|(plugin, _)| plugin.clone())
            .collect()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_apply_by_scope_and_persist() {
        let dir = std::env::temp_dir().join(format!("plugboard-switches-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let s = Switches::load(Some(&dir)).unwrap();
        assert_eq!(s.disabled("bacon", "irc", Some("#a")), None);
        let room = Scope::Room {
            adapter: "irc".into(),
            room: Some("#a".into()),
        };
        s.set("bacon", room.clone(), true).unwrap();
        s.set("quote", Scope::Adapter("discord".into()), true)
            .unwrap();
        assert_eq!(s.disabled("bacon", "irc", Some("#a")), Some(room));
        assert_eq!(s.disabled("bacon", "irc", Some("#b")), None);
        assert_eq!(
            s.disabled("quote", "discord", None),
            Some(Scope::Adapter("discord".into()))
        );

        let reloaded = Switches::load(Some(&dir)).unwrap();
        assert!(
            reloaded.disabled("bacon", "irc", Some("#a")).is_some(),
            "persisted"
        );
        reloaded.set("bacon", Scope::Everywhere, true).unwrap();
        assert!(reloaded.disabled("bacon", "slack", None).is_some());
        assert!(!dir.join("switches.json.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
