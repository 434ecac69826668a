//! Loader integration tests: real extension libraries (good ones and
//! deliberately broken ones, one per failure mode) loaded into a real engine.
//!
//! The good libraries and the in-workspace fixtures are dev-dependencies, so
//! cargo has built their cdylibs into `target/<profile>/deps` before this
//! binary runs. The incompatible-layout fixture needs a *different* interface
//! crate, so it is built here, once, by a nested `cargo build`.

mod support;

mod library;

mod engine;

/// Every bad-library case of the hardening issue, one test each.
mod bad_libraries;

/// Misbehaving extensions at run time: panics, slow and hung commands,
/// quarantine, adapters that panic.
mod faults;

/// Overload with `WhenFull::Reject`: who is shed, and in which order the
/// replies come.
mod overload;

/// Trust checks before anything is opened.
mod trust;

/// The README's "Write a plugin" example, built exactly as written.
mod readme;

/// Libraries that are hostile in ordinary safe Rust (issue 9): their
/// `manifest` is not a pure function, their patterns are huge, their
/// `manifest` or `init` never returns, or panics.
mod hostile;

/// The open path against hostile libraries and file systems (issue 9):
/// snapshots, immediate binding, resolved-path trust checks, headers that
/// lie. Every failure is one `path: cause` line naming the path as given.
mod open_path;

/// Hostile plugins, in process: commands that block until the test lets
/// them go, panic on demand, answer with floods, and destructors that never
/// return. Each test drives its own `Gate<N>` (a distinct plugin name, so
/// that tests running in parallel never share one).
mod hostile_plugins;
