//! plugboard: a chat-bot engine whose plugins and adapters are native shared
//! libraries, loaded at startup through a stable ABI.
//!
//! This is the crate to depend on to embed the engine in your own bot; it
//! re-exports the engine ([`plugboard_loader`]) and the extension contract
//! ([`interface`], i.e. `plugboard-interface`). The `plugboard` binary (the
//! demo REPL) is behind the default `cli` feature: embedders can turn it off
//! with `default-features = false`.
//!
//! # Layout
//!
//! - [`interface`]: types, traits and macros shared with extensions.
//! - The engine: [`Engine`], [`EngineBuilder`], [`EngineConfig`], [`LoadPath`], ...
//! - [`build_info`]: what this build can load.
//!
//! # Key design decision
//!
//! Extensions are in-process native code, not RPC or WebAssembly: a command
//! call costs a function call, not a round trip. The price is trust and
//! isolation, which the engine pays back with checks before loading (layout,
//! version, manifest) and with panics caught at the boundary.

pub use plugboard_interface as interface;
pub use plugboard_loader::*;

/// Facts about this build that decide which libraries it can load.
pub mod build_info {
    /// The target triple this binary was built for; libraries must match it.
    pub const TARGET: &str = env!("PLUGBOARD_TARGET");
    /// The cargo profile (`debug`/`release`).
    pub const PROFILE: &str = env!("PLUGBOARD_PROFILE");
    /// The interface version this engine speaks.
    pub const INTERFACE_VERSION: &str = plugboard_interface::INTERFACE_VERSION;
}
