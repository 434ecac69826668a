//! The configuration file (TOML).
//!
//! ```toml
//! plugin_path = ["plugins"]        # relative paths are relative to this file
//! data_dir = "data"
//! admins = ["irc:nelsk"]           # "<adapter>:<identity>"
//!
//! [engine]
//! workers = 4
//! command_deadline = 5.0           # seconds
//! deadlines = { hangs = 0.5 }      # per plugin
//! quarantine_cooldown = 60.0       # seconds
//! plugin_max_in_flight = { hangs = 1 }
//! max_reply_bytes = 16384
//!
//! [plugins.quote]                  # handed to that plugin's init as JSON
//! max_quotes = 100
//! ```
//!
//! Every table rejects unknown keys, naming the key and its line. The
//! precedence of the binary is flags > environment > this file > defaults;
//! [`FileConfig::apply`] does the "file over defaults" step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{EngineConfig, Unmatched, WhenFull};
use crate::error::Kind;

/// The whole file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directories to load libraries from, in order.
    pub plugin_path: Option<Vec<PathBuf>>,
    /// Where extensions keep state, and the engine its switches.
    pub data_dir: Option<PathBuf>,
    /// Identities allowed to use admin commands, as `<adapter>:<identity>`.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSection,
    /// Trust checks.
    #[serde(default)]
    pub trust: TrustSection,
    /// Settings of the `plugboard` REPL binary.
    #[serde(default)]
    pub repl: ReplSection,
    /// Per-plugin option tables, handed to each plugin's init as JSON.
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Table>,
    /// Per-adapter option tables, handed to each adapter's init as JSON.
    #[serde(default)]
    pub adapters: BTreeMap<String, toml::Table>,
}

/// `[engine]`: see [`EngineConfig`] for each setting.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EngineSection {
    pub workers: Option<usize>,
    pub ingress_capacity: Option<usize>,
    pub execution_capacity: Option<usize>,
    pub egress_capacity: Option<usize>,
    pub max_pending: Option<usize>,
    /// Seconds.
    pub command_deadline: Option<f64>,
    /// Seconds, per plugin name.
    #[serde(default)]
    pub deadlines: BTreeMap<String, f64>,
    pub quarantine_after: Option<u32>,
    /// Seconds (0: until reinstated).
    pub quarantine_cooldown: Option<f64>,
    pub max_abandoned: Option<usize>,
    pub max_in_flight: Option<usize>,
    /// Per plugin name.
    #[serde(default)]
    pub plugin_max_in_flight: BTreeMap<String, usize>,
    /// Seconds.
    pub slow_call: Option<f64>,
    pub max_reply_bytes: Option<usize>,
    pub max_reply_lines: Option<usize>,
    /// Seconds: `shutdown_grace`; `listen_grace` is the whole shutdown
    /// (`shutdown_grace + refusal_window`).
    pub grace_period: Option<f64>,
    /// Seconds an extension's `manifest` or `init` may run.
    pub load_deadline: Option<f64>,
    pub when_full: Option<WhenFull>,
    pub unmatched: Option<Unmatched>,
}

/// `[trust]`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// Accept libraries and directories other users can write to.
    pub allow_writable: Option<bool>,
    /// A `sha256sum`-format file of the only libraries to load.
    pub allowlist: Option<PathBuf>,
    /// Open every library in a pre-flight child process first (default
    /// true in the `plugboard` binary).
    pub preflight: Option<bool>,
}

/// `[repl]`: settings of the demo binary.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplSection {
    /// Longest accepted input line, in bytes.
    pub max_line_bytes: Option<usize>,
    /// Capacity of each mock client's queue.
    pub client_capacity: Option<usize>,
}

/// A configuration file that could not be used: `path:line:column: cause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn seconds(path: &Path, key: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError {
        path: path.to_owned(),
        position: None,
        message: format!("`{key}` must be a non-negative number of seconds, not {value}"),
    })
}

impl FileConfig {
    /// Reads and parses `path`; relative paths inside are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            position: None,
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses `text` (read from `path`, for messages); relative paths are
    /// resolved against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<FileConfig, ConfigError> {
        let mut config: FileConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_owned(),
            position: e.span().map(|span| line_col(text, span.start)),
            message: e.message().trim().replace('\n', " "),
        })?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dirs) = &mut config.plugin_path {
            dirs.iter_mut().for_each(resolve);
        }
        if let Some(dir) = &mut config.data_dir {
            resolve(dir);
        }
        if let Some(list) = &mut config.trust.allowlist {
            resolve(list);
        }
        // Validate durations now, so that errors name the file.
        let e = &config.engine;
        for (key, value) in [
            ("command_deadline", e.command_deadline),
            ("grace_period", e.grace_period),
            ("load_deadline", e.load_deadline),
            ("quarantine_cooldown", e.quarantine_cooldown),
            ("slow_call", e.slow_call),
        ] {
            if let Some(v) = value {
                seconds(path, key, v)?;
            }
        }
        for (plugin, v) in &e.deadlines {
            seconds(path, &format!("deadlines.{plugin}"), *v)?;
        }
        if config.repl.max_line_bytes == Some(0) {
            return Err(ConfigError {
                path: path.to_owned(),
                position: None,
                message: "`repl.max_line_bytes` must be at least 1 (no line could be read)".into(),
            });
        }
        Ok(config)
    }

    /// Applies the file's engine settings over `config` (file over defaults).
    pub fn apply(&self, config: &mut EngineConfig) {
        let e = &self.engine;
        let set = |target: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *target = v;
            }
        };
        set(&mut config.workers, e.workers);
        set(&mut config.ingress_capacity, e.ingress_capacity);
        set(&mut config.execution_capacity, e.execution_capacity);
        set(&mut config.egress_capacity, e.egress_capacity);
        set(&mut config.max_pending, e.max_pending);
        set(&mut config.max_abandoned, e.max_abandoned);
        set(&mut config.max_in_flight, e.max_in_flight);
        set(&mut config.max_reply_bytes, e.max_reply_bytes);
        set(&mut config.max_reply_lines, e.max_reply_lines);
        config.plugin_max_in_flight.extend(
            e.plugin_max_in_flight
                .iter()
                .map(|(name, n)| (name.clone(), *n)),
        );
        // Validated by `parse`.
        let secs = |v: Option<f64>| v.and_then(|v| Duration::try_from_secs_f64(v).ok());
        if let Some(d) = secs(e.command_deadline) {
            config.command_deadline = d;
        }
        if let Some(d) = secs(e.quarantine_cooldown) {
            config.quarantine_cooldown = d;
        }
        if let Some(d) = secs(e.slow_call) {
            config.slow_call = d;
        }
        if let Some(d) = e
            .grace_period
            .and_then(|v| Duration::try_from_secs_f64(v).ok())
        {
            config.shutdown_grace = d;
            config.listen_grace = config.shutdown_bound();
        }
        if let Some(d) = e
            .load_deadline
            .and_then(|v| Duration::try_from_secs_f64(v).ok())
        {
            config.load_deadline = d;
        }
        if let Some(q) = e.quarantine_after {
            config.quarantine_after = q;
        }
        if let Some(w) = e.when_full {
            config.when_full = w;
        }
        if let Some(u) = e.unmatched {
            config.unmatched = u;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if !self.admins.is_empty() {
            config.admins = self.admins.clone();
        }
    }

    /// Per-plugin deadlines.
    pub fn deadlines(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.engine
            .deadlines
            .iter()
            .filter_map(|(name, v)| Some((name.as_str(), Duration::try_from_secs_f64(*v).ok()?)))
    }

    /// Each configured extension's option table, as JSON.
    pub fn extension_configs(&self) -> impl Iterator<Item = (Kind, &str, String)> {
        let plugins = self
            .plugins
            .iter()
            .map(|(n, t)| (Kind::Plugin, n.as_str(), t));
        let adapters = self
            .adapters
            .iter()
            .map(|(n, t)| (Kind::Adapter, n.as_str(), t));
        plugins.chain(adapters).map(|(kind, name, table)| {
            // A TOML table always has a JSON form (datetimes become strings).
            let json = serde_json::to_string(table).unwrap_or_else(|_| "{}".to_owned());
            (kind, name, json)
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("/etc/plugboard.toml"), Path::new("/etc"))
    }

    #[test]
    fn a_full_file_parses_and_applies_over_defaults() {
        let config = parse(
            r#"
plugin_path = ["plugins", "/abs"]
data_dir = "data"
admins = ["irc:nelsk"]

[engine]
workers = 3
command_deadline = 2.5
deadlines = { hangs = 0.25 }
load_deadline = 30.0
when_full = "reject"
unmatched = "ignore"
quarantine_cooldown = 30.0
max_in_flight = 4
plugin_max_in_flight = { hangs = 1 }
slow_call = 0.05
max_reply_bytes = 1000
max_reply_lines = 10

[plugins.quote]
max_quotes = 10
names = ["a", "b"]

[adapters.irc]
server = "127.0.0.1"
"#,
        )
        .unwrap();
        assert_eq!(
            config.plugin_path,
            Some(vec![PathBuf::from("/etc/plugins"), PathBuf::from("/abs")])
        );
        let mut engine = EngineConfig::default();
        config.apply(&mut engine);
        assert_eq!(engine.workers, 3);
        assert_eq!(engine.command_deadline, Duration::from_millis(2500));
        assert_eq!(engine.load_deadline, Duration::from_secs(30));
        assert_eq!(engine.when_full, WhenFull::Reject);
        assert_eq!(engine.unmatched, Unmatched::Ignore);
        assert_eq!(engine.data_dir, Some(PathBuf::from("/etc/data")));
        assert_eq!(engine.admins, ["irc:nelsk"]);
        assert_eq!(engine.quarantine_cooldown, Duration::from_secs(30));
        assert_eq!(engine.max_in_flight, 4);
        assert_eq!(engine.plugin_max_in_flight.get("hangs"), Some(&1));
        assert_eq!(engine.slow_call, Duration::from_millis(50));
        assert_eq!((engine.max_reply_bytes, engine.max_reply_lines), (1000, 10));
        assert_eq!(
            config.deadlines().collect::<Vec<_>>(),
            [("hangs", Duration::from_millis(250))]
        );
        let extensions: Vec<_> = config.extension_configs().collect();
        assert_eq!(
            extensions[0],
            (
                Kind::Plugin,
                "quote",
                r#"{"max_quotes":10,"names":["a","b"]}"#.to_owned()
            )
        );
        assert_eq!(
            extensions[1],
            (Kind::Adapter, "irc", r#"{"server":"127.0.0.1"}"#.to_owned())
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_key_and_line() {
        let err = parse("data_dir = \"x\"\n\n[engine]\nworkerz = 2\n").unwrap_err();
        assert_eq!(err.position, Some((4, 1)));
        let line = err.to_string();
        assert!(
            line.starts_with("/etc/plugboard.toml:4:1: unknown field `workerz`"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
        let err = parse("[engine]\ncommand_deadline = -1.0\n").unwrap_err();
        assert!(err
            .to_string()
            .contains("`command_deadline` must be a non-negative number of seconds"));
    }
}
