//! The ABI contract between the plugboard engine and its extensions.
//!
//! Plugins (chat commands) and adapters (chat-platform connectors) are native
//! shared libraries. This crate is the only thing they and the engine share:
//! every type that crosses the library boundary is defined here and derives
//! [`StableAbi`](abi_stable::StableAbi), so the engine can check, before it
//! runs a line of a library's code, that both sides agree on every layout.
//!
//! # Layout
//!
//! - [`message`]: the FFI-safe messages: [`RawMessage`](message::RawMessage)
//!   (adapter -> engine), [`Ingress`](message::Ingress) (a parsed command with
//!   its [`Originator`](message::Originator)), [`Egress`](message::Egress)
//!   (a reply on its way back), and the borrowed [`Invocation`](message::Invocation)
//!   a plugin command receives.
//! - [`plugin`]: the [`Plugin`](plugin::Plugin) trait authors implement, its
//!   [`Manifest`](plugin::Manifest), and the root module [`PluginRoot`](plugin::PluginRoot).
//! - [`adapter`]: the [`Adapter`](adapter::Adapter) trait, its lifecycle and
//!   the root module [`AdapterRoot`](adapter::AdapterRoot).
//! - [`host`]: what the engine hands an extension at init: the [`Context`](host::Context)
//!   (config as JSON, the logging bridge, an injected platform [`Client`](host::ClientBox))
//!   and the [`IngressSink`](host::IngressSink) an adapter pushes messages into.
//! - [`error`]: [`ExtError`], the error value that crosses the boundary,
//!   and [`Error`], the one authors return.
//! - [`export_plugin!`] / [`export_adapter!`]: the macros that turn an
//!   author's type into an exported root module.
//!
//! # Key design decision: panics never cross the boundary
//!
//! A panic unwinding out of an `extern "C"` function aborts the whole engine.
//! Authors therefore never write `extern` functions: they implement plain Rust
//! traits, and the generic wrappers here (instantiated inside the extension
//! by the export macros) run every call under `catch_unwind` and turn a panic
//! into [`ExtError::Panicked`]. The engine decides
//! what a failing extension means; the extension only reports it.
//!
//! # Compatibility policy
//!
//! The interface version is this crate's version, [`INTERFACE_VERSION`].
//! abi_stable records it in every library, and the engine refuses a library
//! whose interface version it does not speak *before* checking layouts:
//!
//! - `0.MINOR.PATCH` (pre-1.0): `MINOR` is the ABI generation. A patch release
//!   never changes a `StableAbi` type (documentation, helpers and bug fixes
//!   only), so any `0.1.x` library loads in any `0.1.y` engine.
//! - Any change to a type that crosses the boundary bumps `MINOR`. abi_stable
//!   would accept a *newer* library in an older engine (prefix types grow at
//!   the end), but it rejects an *older* library in a newer engine ("too many
//!   fields"). So the engine, not abi_stable, owns backward compatibility: a
//!   new generation freezes the previous one's root modules in a versioned
//!   module and the loader adapts them. Until a second generation exists,
//!   libraries must be rebuilt against the engine's `0.MINOR`.
//! - After `1.0`, the same rules apply with `MAJOR` as the generation.
//!
//! `tests/layout.rs` enforces the second rule: it fingerprints each root
//! module's layout (with every type reachable from it) and compares it with
//! the fingerprints recorded per version in `interface/layout.lock`; a
//! layout that changes within a generation fails it, with what to do (bump
//! `MINOR`, then `UPDATE_LAYOUT=1 cargo test -p plugboard-interface --test
//! layout` records the new version's line). 64-bit targets only.
#![deny(missing_docs)]
// abi_stable's derives name generated types `PluginRoot_Ref`, `Host_TO`, ...
// and define impls inside generated functions; both are its conventions.
#![allow(non_camel_case_types, non_local_definitions)]

pub mod adapter;
pub mod error;
pub mod host;
pub mod message;
pub mod plugin;

mod guard;
mod log_bridge;
mod macros;

pub use error::{Error, ExtError};

/// Re-exported so the export macros (and authors) can name it without adding
/// a dependency; a library must use the engine's abi_stable to be loadable.
pub use abi_stable;
/// Re-exported so authors log through the same `log` the bridge is installed in.
pub use log;
/// Re-exported for configuration types (`#[serde(crate = "plugboard_interface::serde")]`)
/// without a direct dependency.
pub use serde;
/// Re-exported: an extension's configuration arrives as JSON.
pub use serde_json;

/// The interface version this crate defines (`major.minor.patch`).
///
/// It is recorded in every plugin and adapter library; see the crate-level
/// compatibility policy for how the engine compares it.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The command prefix: chat content starting with it is a command.
pub const COMMAND_PREFIX: char = '!';

/// Everything a plugin or adapter author usually needs.
pub mod prelude {
    pub use crate::adapter::{Adapter, AdapterInfo, Outgoing, Sink};
    pub use crate::error::Error;
    pub use crate::host::Context;
    pub use crate::message::RawMessage;
    pub use crate::plugin::{Call, Manifest, Plugin, Reply};
    pub use crate::{export_adapter, export_plugin};
}
