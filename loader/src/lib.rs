//! The plugboard engine as a library.
//!
//! It finds extension libraries on a [`LoadPath`], validates each one before
//! running any of its code ([`library::open`]), and runs the message pipeline
//! between adapters and plugins ([`Engine`]).
//!
//! # Layout
//!
//! - [`path`]: the load path and the deterministic library scan.
//! - [`library`]: opening one library: linker, abi_stable header, kind,
//!   interface version, layout, manifest validation.
//! - `snapshot`: the private, sealed copy of each library that the dynamic
//!   linker maps (so rewriting the file on disk cannot touch the engine);
//!   `elf`: the ELF header check before it.
//! - [`engine`]: [`EngineBuilder`] (collect extensions, start) and the
//!   running [`Engine`]: bounded crossbeam channels from adapters through a
//!   router and a worker pool back to adapters; [`engine::shutdown`] explains
//!   how it stops.
//! - [`deadline`]: `manifest` and `init` run on helper threads with a
//!   deadline, abandoned past it, so a hung extension cannot hang startup.
//! - [`preflight`]: every library opened first in a short-lived child
//!   process, so that one whose load-time code crashes, exits or hangs costs
//!   one line instead of the process.
//! - [`fatal`]: the line a fatal signal prints, naming the extension that
//!   was running.
//! - [`trust`]: checks before opening: who can write a library or
//!   directory, and an optional SHA-256 allowlist.
//! - [`config`]: the TOML configuration file.
//! - [`error`]: [`LoadError`], one per failed library, displayed as
//!   `path: cause`.
//!
//! # Key design decision: failures are data
//!
//! Loading never stops at the first bad library. Every problem becomes a
//! [`LoadError`] in the [`LoadReport`] and everything else loads; it is the
//! caller's choice (a `--strict` flag, say) to treat failures as fatal.

pub mod config;
pub mod deadline;
mod elf;
pub mod engine;
pub mod error;
pub mod fatal;
pub mod library;
pub mod path;
pub mod preflight;
mod snapshot;
pub mod trust;

pub use engine::routes;
pub use engine::{
    stats_table, AdapterStatus, Engine, EngineBuilder, EngineConfig, EngineError, Handle,
    LoadReport, Loaded, PluginCounters, PluginState, PluginStatus, Scope, ShutdownReport,
    SubmitError, Unmatched, WhenFull,
};
pub use error::{Kind, LoadError, LoadErrorKind, Source, Stage};
pub use path::{LoadPath, PATH_ENV};
pub use preflight::Preflight;
pub use trust::TrustPolicy;
