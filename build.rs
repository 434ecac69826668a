//! Build script of the `plugboard` crate.
//!
//! Its one job: record the facts about *this build* that decide which
//! extension libraries it can load, so that `plugboard --version` can print
//! them. A library must be built for the same target triple (the dynamic
//! linker refuses anything else) and against the same interface generation;
//! the triple is only known to build scripts (`TARGET`), hence this file.
//!
//! It deliberately does not try to build the example extensions: a nested
//! `cargo build` here would deadlock on the target-directory lock. The root
//! `default-members` list does that job instead.

use std::env;

fn main() {
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown-target".to_owned());
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown-profile".to_owned());
    println!("cargo:rustc-env=PLUGBOARD_TARGET={target}");
    println!("cargo:rustc-env=PLUGBOARD_PROFILE={profile}");
    // Nothing else in the package affects what this script emits.
    println!("cargo:rerun-if-changed=build.rs");
}
