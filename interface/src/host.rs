//! What the engine hands an extension: the [`Host`] services behind a
//! [`Context`], the injected platform [`Client`], and the [`IngressSink`]
//! adapters push messages into.
//!
//! These are `#[sabi_trait]` objects: the engine implements [`Host`] and
//! [`IngressSink`], the demo implements [`Client`]; extensions only call them.

use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString},
    StableAbi,
};
use serde::de::DeserializeOwned;

use crate::error::{Error, ExtError};
use crate::message::RawMessage;

pub use crate::log_bridge::{LogLevel, LogRecord};

/// Services the engine provides to one extension. Implemented by the engine.
#[sabi_trait]
pub trait Host: Send + Sync + Clone {
    /// The name the engine knows this extension by.
    fn extension_name(&self) -> RStr<'_>;

    /// The extension's configuration as a JSON object text (`{}` when the
    /// operator configured nothing).
    fn config_json(&self) -> RStr<'_>;

    /// Takes the platform client the engine injected for this extension, if
    /// any: the first call hands it over, later calls return `None`. The demo
    /// injects a stdin-fed mock into its adapters; real adapters usually open
    /// their own connection and get `None`.
    fn client(&self) -> ROption<ClientBox>;

    /// A directory this extension may keep state in across restarts
    /// (created by the engine), if the engine has a data directory.
    fn data_dir(&self) -> ROption<RString>;

    /// The most verbose level the host's logger may print; records above it
    /// are dropped inside the extension without crossing the boundary.
    fn max_level(&self) -> ROption<LogLevel>;

    /// Whether the host's logger would print a record of this level and target.
    fn log_enabled(&self, level: LogLevel, target: RStr<'_>) -> bool;

    /// Prints a record through the host's logger.
    #[sabi(last_prefix_field)]
    fn log(&self, record: &LogRecord<'_>);
}

/// The engine's [`Host`] services as an FFI-safe, clonable trait object.
pub type HostBox = Host_TO<'static, RArc<()>>;

/// A message on a platform client: inbound (`recv`) or outbound (`send`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The room/channel, if the platform has rooms.
    pub room: ROption<RString>,
    /// The author (inbound) or addressee (outbound), if known.
    pub user: ROption<RString>,
    /// The text.
    pub text: RString,
}

/// A platform client injected into an adapter (the korecomm "client"): the
/// adapter reads platform traffic from it and writes replies to it.
#[sabi_trait]
pub trait Client: Send + Sync + Clone {
    /// Blocks for the next inbound message; `None` once the client is closed
    /// and drained.
    fn recv(&self) -> ROption<ClientMessage>;

    /// Sends a message to the platform.
    fn send(&self, message: &ClientMessage) -> RResult<(), ExtError>;

    /// Closes the inbound side: `recv` returns what is already queued, then
    /// `None`. Called by an adapter's `stop`.
    #[sabi(last_prefix_field)]
    fn close(&self);
}

/// A [`Client`] as an FFI-safe, shareable trait object.
pub type ClientBox = Client_TO<'static, RArc<()>>;

/// Why the engine did not take a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The engine stopped intake (it is shutting down) and did not take the
    /// message: tell its author with [`shutting_down_reply`] (the engine
    /// counts it as refused), and return from `listen` once the platform
    /// has nothing more to hand over.
    Closed,
    /// The engine is overloaded and configured to reject rather than wait;
    /// the message was dropped. Tell the user, and keep listening. (The
    /// plugboard engine answers overload itself, with a "busy" reply in the
    /// conversation's order, and does not return this; adapters should
    /// still handle it.)
    Busy,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Closed => "the engine stopped accepting messages",
            PushError::Busy => "the engine is overloaded; message dropped",
        })
    }
}

impl std::error::Error for PushError {}

/// The reply to a command that will not run because the bot is shutting
/// down: ``the bot is shutting down; `!sleep` was not run`` (the command
/// word only, at most 64 characters of it). The engine sends it for every
/// command it refuses once its shutdown grace is over; an adapter whose
/// `push` got [`PushError::Closed`] sends it for the command it could not
/// hand over, as [`ClientLink`](crate::adapter::ClientLink) does.
///
/// ```
/// use plugboard_interface::host::shutting_down_reply;
/// assert_eq!(
///     shutting_down_reply("!sleep 10"),
///     "the bot is shutting down; `!sleep` was not run"
/// );
/// ```
pub fn shutting_down_reply(content: &str) -> String {
    const MAX_CHARS: usize = 64;
    let command = content.split_whitespace().next().unwrap_or_default();
    let mut shown: String = command.chars().take(MAX_CHARS).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    format!("the bot is shutting down; `{shown}` was not run")
}

/// What became of a pushed message.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The engine queued it.
    Accepted = 1,
    /// The engine stopped intake; the message was dropped.
    Closed = 2,
    /// The engine's queue is full and its policy is to reject; dropped.
    Busy = 3,
}

/// Where an adapter pushes the messages it receives. Implemented by the engine.
#[sabi_trait]
pub trait IngressSink: Send + Sync {
    /// Hands a message to the engine. While the engine's ingress queue is
    /// full it blocks (backpressure; an engine may answer `Busy` instead);
    /// `Closed` once the engine stopped intake.
    #[sabi(last_prefix_field)]
    fn push(&self, message: RawMessage) -> PushOutcome;
}

/// An [`IngressSink`] as an FFI-safe trait object.
pub type SinkBox = IngressSink_TO<'static, RBox<()>>;

/// The init-time view of the engine an extension's `init` receives.
///
/// ```
/// # use plugboard_interface::{host::Context, Error};
/// #[derive(serde::Deserialize)]
/// struct Config { greeting: String }
///
/// fn init(ctx: &Context) -> Result<String, Error> {
///     let config: Config = ctx.config()?; // an InvalidConfig error if it does not fit
///     Ok(config.greeting)
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    host: HostBox,
}

impl Context {
    /// Wraps the engine's host services (the engine calls this).
    pub fn new(host: HostBox) -> Self {
        Context { host }
    }

    /// The name the engine knows this extension by.
    pub fn name(&self) -> &str {
        self.host.extension_name().into()
    }

    /// The raw JSON text of this extension's configuration.
    pub fn config_json(&self) -> &str {
        self.host.config_json().into()
    }

    /// This extension's configuration, deserialized. An empty configuration
    /// is `{}`, so a struct whose fields all have defaults always loads.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(self.config_json()).map_err(|e| {
            // The operator wrote TOML, not this JSON: its positions mean
            // nothing to them, the key names do.
            let message = e.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(message.as_str(), |i| &message[..i]);
            Error::config(format!("config of `{}`: {message}", self.name()))
        })
    }

    /// A directory to keep state in across restarts (the engine creates it;
    /// one per extension), or `None` if the engine runs without a data
    /// directory.
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        self.host
            .data_dir()
            .into_option()
            .map(|d| std::path::PathBuf::from(d.as_str()))
    }

    /// Takes the platform client the engine injected, if any (once: later
    /// calls return `None`). Take it during `init`: right after `init`, the
    /// engine drops a client that was not taken.
    pub fn client(&self) -> Option<ClientBox> {
        self.host.client().into_option()
    }

    /// The underlying host services.
    pub fn host(&self) -> &HostBox {
        &self.host
    }
}

/// Boxes a [`Client`] implementation for injection (see
/// `EngineBuilder::clients` in the engine).
pub fn client_box<C: Client + 'static>(client: C) -> ClientBox {
    Client_TO::from_ptr(RArc::new(client), abi_stable::sabi_trait::TD_Opaque)
}
