//! Plugins: chat commands matched by regex.
//!
//! An author implements [`Plugin`] and calls [`export_plugin!`](crate::export_plugin):
//!
//! ```
//! use plugboard_interface::prelude::*;
//!
//! pub struct Echo;
//!
//! impl Plugin for Echo {
//!     fn manifest() -> Manifest<Self> {
//!         Manifest::new("echo", env!("CARGO_PKG_VERSION"))
//!             .description("repeats what you say")
//!             .command("echo", r"echo\s+(.+)", "!echo <text>", Echo::echo)
//!     }
//!     fn init(_ctx: &Context) -> Result<Self, Error> {
//!         Ok(Echo)
//!     }
//! }
//!
//! impl Echo {
//!     fn echo(&self, call: &Call<'_>) -> Result<Reply, Error> {
//!         Ok(format!("{} says {}", call.sender(), call.capture(1).unwrap_or("")).into())
//!     }
//! }
//!
//! export_plugin!(Echo);
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, OnceLock, PoisonError};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RString, RVec},
    StableAbi,
};

use crate::error::{Error, ExtError};
use crate::guard::{guard, guard_unit};
use crate::host::{Context, HostBox};
use crate::message::Invocation;

/// A plugin: a set of commands, each a regex pattern and a handler.
///
/// The engine calls handlers from several worker threads at once, hence
/// `Sync`: keep mutable state behind a `Mutex` or atomics.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Name, version, help, and the commands with their handlers.
    /// Called at load time, before [`Plugin::init`], so that the engine can
    /// validate the manifest without running anything else.
    ///
    /// It is called once per process: the manifest the engine validates is
    /// the one whose handlers it calls, so it need not be deterministic (a
    /// manifest built by iterating a `HashMap` is fine).
    fn manifest() -> Manifest<Self>;

    /// Creates the plugin from its context (configuration, logging).
    /// Return [`Error::config`] if the configuration is unusable.
    fn init(ctx: &Context) -> Result<Self, Error>;
}

/// A command handler: a method of the plugin taking the call.
pub type Handler<P> = fn(&P, &Call<'_>) -> Result<Reply, Error>;

/// What a handler answers: a reply text, or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply(Option<String>);

impl Reply {
    /// A reply with this text.
    pub fn text(text: impl Into<String>) -> Self {
        Reply(Some(text.into()))
    }

    /// No reply (the command acted silently).
    pub fn none() -> Self {
        Reply(None)
    }

    /// The reply text, if any.
    pub fn as_text(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Self {
        Reply(Some(text))
    }
}

impl From<&str> for Reply {
    fn from(text: &str) -> Self {
        Reply(Some(text.to_owned()))
    }
}

/// A command call as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    inv: &'a Invocation<'a>,
}

impl<'a> Call<'a> {
    /// Wraps an invocation (the engine's test helpers use this).
    pub fn new(inv: &'a Invocation<'a>) -> Self {
        Call { inv }
    }

    /// Who sent the command (their identity on the platform).
    pub fn sender(&self) -> &'a str {
        self.inv.identity.as_str()
    }

    /// The adapter it came through.
    pub fn adapter(&self) -> &'a str {
        self.inv.adapter.as_str()
    }

    /// The room/channel, where the platform has rooms.
    pub fn room(&self) -> Option<&'a str> {
        self.inv.room.map(|r| r.as_str()).into_option()
    }

    /// The command text without the prefix.
    pub fn text(&self) -> &'a str {
        self.inv.text.as_str()
    }

    /// Capture group `i` of the matched pattern (0 is the whole match).
    pub fn capture(&self, i: usize) -> Option<&'a str> {
        self.inv.capture(i)
    }

    /// The raw invocation.
    pub fn invocation(&self) -> &'a Invocation<'a> {
        self.inv
    }
}

struct CommandDef<P> {
    spec: CommandSpec,
    handler: Handler<P>,
}

/// A plugin's self-description, with its command handlers.
pub struct Manifest<P> {
    name: String,
    version: String,
    description: String,
    help: String,
    commands: Vec<CommandDef<P>>,
}

impl<P> Manifest<P> {
    /// A manifest for plugin `name` at `version` (usually
    /// `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &str, version: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            help: String::new(),
            commands: Vec::new(),
        }
    }

    /// A one-line description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Longer help text.
    pub fn help(mut self, help: &str) -> Self {
        self.help = help.to_owned();
        self
    }

    /// Adds a command: `pattern` is a regex matched against the command text
    /// (after `!`), anchored at its start; its capture groups reach the
    /// handler through [`Call::capture`]. `usage` is shown in help.
    pub fn command(mut self, name: &str, pattern: &str, usage: &str, handler: Handler<P>) -> Self {
        self.commands.push(CommandDef {
            spec: CommandSpec {
                name: name.into(),
                pattern: pattern.into(),
                usage: usage.into(),
            },
            handler,
        });
        self
    }

    /// The FFI-safe description the engine validates.
    pub fn to_abi(&self) -> PluginManifest {
        PluginManifest {
            name: self.name.as_str().into(),
            version: self.version.as_str().into(),
            description: self.description.as_str().into(),
            help: self.help.as_str().into(),
            commands: self.commands.iter().map(|c| c.spec.clone()).collect(),
        }
    }
}

/// A plugin's manifest as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginManifest {
    /// Unique, non-empty plugin name.
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// One-line description.
    pub description: RString,
    /// Longer help text.
    pub help: RString,
    /// The commands, in matching order.
    pub commands: RVec<CommandSpec>,
}

/// One command of a manifest.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Command name, unique within the plugin.
    pub name: RString,
    /// Regex matched against the command text, anchored at its start.
    pub pattern: RString,
    /// Usage line for help (`!bacon [nick]`).
    pub usage: RString,
}

/// A running plugin instance, as the engine holds it.
#[sabi_trait]
pub trait PluginObj: Send + Sync {
    /// Runs command `invocation.command`; `Ok(None)` means no reply.
    #[sabi(last_prefix_field)]
    fn call(&self, invocation: &Invocation<'_>) -> RResult<ROption<RString>, ExtError>;
}

/// A [`PluginObj`] as an FFI-safe owned trait object.
pub type PluginBox = PluginObj_TO<'static, RBox<()>>;

/// The root module a plugin library exports (via [`export_plugin!`](crate::export_plugin)).
///
/// Append-only: new fields go after `init`, which stays the last prefix field.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRoot_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// Returns the manifest; runs no initialisation.
    pub manifest: extern "C" fn() -> RResult<PluginManifest, ExtError>,
    /// Initialises the plugin with its host context.
    #[sabi(last_prefix_field)]
    pub init: extern "C" fn(host: HostBox) -> RResult<PluginBox, ExtError>,
}

impl RootModule for PluginRoot_Ref {
    declare_root_module_statics! {PluginRoot_Ref}
    const BASE_NAME: &'static str = "plugboard_plugin";
    const NAME: &'static str = "plugboard plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A plugin instance wrapped for the boundary: every call runs under
/// `catch_unwind`.
struct Instance<P> {
    // ManuallyDrop so that `Drop` can run the plugin's destructor under
    // `catch_unwind` too.
    plugin: ManuallyDrop<P>,
    handlers: Vec<Handler<P>>,
}

impl<P: Plugin> PluginObj for Instance<P> {
    fn call(&self, invocation: &Invocation<'_>) -> RResult<ROption<RString>, ExtError> {
        guard(|| {
            let handler = self
                .handlers
                .get(invocation.command as usize)
                .ok_or_else(|| {
                    ExtError::Failed(format!("no command #{}", invocation.command).into())
                })?;
            let reply = handler(&self.plugin, &Call::new(invocation))?;
            Ok(reply.0.map(RString::from).into())
        })
    }
}

impl<P> Drop for Instance<P> {
    fn drop(&mut self) {
        // SAFETY: `plugin` is never used again: this is the instance's drop.
        let plugin = unsafe { ManuallyDrop::take(&mut self.plugin) };
        if let Some(message) = guard_unit(move || drop(plugin)) {
            log::error!("plugin panicked while being dropped: {message}");
        }
    }
}

/// Initialises `P` and wraps it for the engine, catching panics.
///
/// The engine uses this directly for in-process plugins
/// (`EngineBuilder::plugin::<P>()`); the exported root module uses it too.
pub fn instantiate<P: Plugin>(host: HostBox) -> RResult<PluginBox, ExtError> {
    guard(|| {
        let ctx = Context::new(host);
        let plugin = P::init(&ctx)?;
        let handlers = manifest::<P>().commands.iter().map(|c| c.handler).collect();
        let instance = Instance {
            plugin: ManuallyDrop::new(plugin),
            handlers,
        };
        Ok(PluginObj_TO::from_value(
            instance,
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

/// The manifest of `P` for the boundary, catching panics.
pub fn manifest_of<P: Plugin>() -> RResult<PluginManifest, ExtError> {
    guard(|| Ok(manifest::<P>().to_abi()))
}

/// `P::manifest()`, called once per process and kept.
///
/// The engine validates the manifest (`manifest_of`) and later builds the
/// handler table (`instantiate`) from it, pairing commands with handlers by
/// position. Two calls of the author's `manifest` need not agree (one built
/// by iterating a `HashMap` lists its commands in a different order each
/// time), so both use this one value.
///
/// The cache is a global of this crate, keyed by `TypeId`: every cdylib has
/// its own copy of it, as it has its own copy of `P`, and an engine with
/// in-process plugins keeps theirs in its own copy. Each entry is leaked:
/// one small manifest per plugin type, for the life of the process.
fn manifest<P: Plugin>() -> &'static Manifest<P> {
    type Cache = Mutex<HashMap<TypeId, &'static (dyn Any + Send + Sync)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    // The lock is never held while author code runs, so it cannot be poisoned
    // by a panic of theirs; a poisoned map is still consistent (inserts only).
    let lock = || {
        CACHE
            .get_or_init(Cache::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    };
    let id = TypeId::of::<P>();
    let cached = lock().get(&id).copied();
    let entry = match cached {
        Some(entry) => entry,
        None => {
            // Outside the lock: `manifest` may be slow, panic or never
            // return, and other plugin types must not wait for it. If two
            // threads race, the first value stored wins and both use it.
            let built = P::manifest();
            *lock()
                .entry(id)
                .or_insert_with(|| Box::leak(Box::new(built)))
        }
    };
    entry
        .downcast_ref::<Manifest<P>>()
        .expect("the cache entry under TypeId::of::<P>() is always a Manifest<P>")
}

#[doc(hidden)]
pub mod __export {
    //! The `extern "C"` entry points [`export_plugin!`](crate::export_plugin) exports.
    use super::*;

    /// `PluginRoot::manifest` for `P`: quiets this library's panic hook
    /// (see `guard::quiet_panics`), then describes `P`.
    pub extern "C" fn manifest<P: Plugin>() -> RResult<PluginManifest, ExtError> {
        crate::guard::quiet_panics();
        manifest_of::<P>()
    }

    /// `PluginRoot::init` for `P`: quiets the panic hook and installs the
    /// logging bridge (this runs only in a dynamically loaded library), then
    /// instantiates.
    pub extern "C" fn init<P: Plugin>(host: HostBox) -> RResult<PluginBox, ExtError> {
        crate::guard::quiet_panics();
        crate::log_bridge::install(&host);
        instantiate::<P>(host)
    }

    /// The root module for `P`.
    pub fn root<P: Plugin>() -> PluginRoot_Ref {
        use abi_stable::prefix_type::PrefixTypeTrait;
        PluginRoot {
            manifest: manifest::<P>,
            init: init::<P>,
        }
        .leak_into_prefix()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    struct Counted;

    impl Plugin for Counted {
        fn manifest() -> Manifest<Self> {
            let n = CALLS.fetch_add(1, Ordering::SeqCst);
            Manifest::new(&format!("counted{n}"), "1.0.0")
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Counted)
        }
    }

    #[test]
    fn the_authors_manifest_runs_once_per_process() {
        let first = manifest_of::<Counted>().unwrap();
        let second = manifest_of::<Counted>().unwrap();
        assert_eq!(first, second);
        assert_eq!(first.name.as_str(), "counted0");
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }
}
