//! Adapters: connectors between a chat platform and the engine.
//!
//! # Lifecycle
//!
//! 1. `init(ctx)`: read config, connect (or take the injected
//!    [`Client`](crate::host::Client)).
//! 2. `listen(sink)`: runs on a thread of its own; push every received
//!    message into the [`Sink`] until `stop` is called, the platform closes,
//!    or `push` returns [`PushError::Closed`] (the engine stopped intake:
//!    tell that message's author with
//!    [`crate::host::shutting_down_reply`]); then
//!    return. After `stop`, the engine keeps taking what the platform had
//!    already delivered until its shutdown grace is over (then it answers
//!    those commands itself with the same reply), so an adapter that
//!    relays a queue may drain it before returning.
//! 3. `send(reply)`: called from the engine's egress thread for this adapter,
//!    one reply at a time, in order per conversation; also *after* `stop`,
//!    to deliver replies to commands accepted before it.
//! 4. `stop()`: make `listen` return soon. The engine drops the adapter
//!    (closing its connection) once every reply has been delivered.
//!
//! ```
//! use plugboard_interface::prelude::*;
//! use std::sync::atomic::{AtomicBool, Ordering};
//!
//! pub struct Null { stopped: AtomicBool }
//!
//! impl Adapter for Null {
//!     fn info() -> AdapterInfo {
//!         AdapterInfo::new("null", env!("CARGO_PKG_VERSION")).description("talks to no one")
//!     }
//!     fn init(_ctx: &Context) -> Result<Self, Error> {
//!         Ok(Null { stopped: AtomicBool::new(false) })
//!     }
//!     fn listen(&self, sink: &Sink) -> Result<(), Error> {
//!         if !self.stopped.load(Ordering::Acquire) {
//!             let _ = sink.push(RawMessage::new(None, "nobody", "!ping"));
//!         }
//!         Ok(())
//!     }
//!     fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
//!         println!("to {}: {}", reply.recipient(), reply.text());
//!         Ok(())
//!     }
//!     fn stop(&self) {
//!         self.stopped.store(true, Ordering::Release);
//!     }
//! }
//!
//! export_adapter!(Null);
//! ```

use std::mem::ManuallyDrop;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RString},
    StableAbi,
};

use crate::error::{Error, ExtError};
use crate::guard::{guard, guard_unit};
use crate::host::{
    shutting_down_reply, ClientBox, ClientMessage, Context, HostBox, PushError, PushOutcome,
    SinkBox,
};
use crate::message::{Egress, RawMessage};

/// A chat-platform adapter. See the module docs for the lifecycle.
pub trait Adapter: Sized + Send + Sync + 'static {
    /// Name, version and description; called before `init`.
    fn info() -> AdapterInfo;

    /// Creates the adapter from its context (configuration, injected client).
    fn init(ctx: &Context) -> Result<Self, Error>;

    /// Pushes incoming messages into `sink` until stopped; see the module docs.
    fn listen(&self, sink: &Sink) -> Result<(), Error>;

    /// Delivers one reply to the platform.
    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error>;

    /// Asks `listen` to return.
    fn stop(&self);
}

/// An adapter's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    name: String,
    version: String,
    description: String,
}

impl AdapterInfo {
    /// Adapter `name` at `version` (usually `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &str, version: &str) -> Self {
        AdapterInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
        }
    }

    /// A one-line description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// The FFI-safe form.
    pub fn to_abi(&self) -> AdapterManifest {
        AdapterManifest {
            name: self.name.as_str().into(),
            version: self.version.as_str().into(),
            description: self.description.as_str().into(),
        }
    }
}

/// An adapter's self-description as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct AdapterManifest {
    /// Unique, non-empty adapter name; users address it in the demo REPL.
    pub name: RString,
    /// The adapter's own version.
    pub version: RString,
    /// One-line description.
    pub description: RString,
}

/// Where `listen` pushes messages: the engine's ingress.
pub struct Sink {
    inner: SinkBox,
}

impl Sink {
    /// Wraps the engine's sink object.
    pub fn new(inner: SinkBox) -> Self {
        Sink { inner }
    }

    /// Hands a message to the engine. While its queue is full this blocks
    /// (or fails with [`PushError::Busy`], if the engine refuses at intake);
    /// [`PushError::Closed`] means the engine stopped intake: answer the
    /// author with [`shutting_down_reply`]
    /// and return from `listen`.
    pub fn push(&self, message: RawMessage) -> Result<(), PushError> {
        match self.inner.push(message) {
            PushOutcome::Accepted => Ok(()),
            PushOutcome::Closed => Err(PushError::Closed),
            PushOutcome::Busy => Err(PushError::Busy),
        }
    }
}

/// A reply to deliver, as `send` sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    egress: &'a Egress,
}

impl<'a> Outgoing<'a> {
    /// Wraps an egress message.
    pub fn new(egress: &'a Egress) -> Self {
        Outgoing { egress }
    }

    /// The room to answer in, if the command came from one.
    pub fn room(&self) -> Option<&'a str> {
        self.egress
            .originator
            .room
            .as_ref()
            .map(|r| r.as_str())
            .into_option()
    }

    /// The identity that sent the command.
    pub fn recipient(&self) -> &'a str {
        &self.egress.originator.identity
    }

    /// The reply text.
    pub fn text(&self) -> &'a str {
        &self.egress.text
    }

    /// The whole egress message.
    pub fn message(&self) -> &'a Egress {
        self.egress
    }
}

/// The plumbing of an adapter driven by an injected [`Client`](crate::host::Client)
/// (the demo adapters): take the client at init, relay its traffic into the
/// sink, send replies back, close it on stop. The adapter keeps only its
/// platform's own rules (message limits, formatting).
pub struct ClientLink {
    client: ClientBox,
    default_identity: String,
}

impl ClientLink {
    /// Takes the injected client; an [`Error::config`] if there is none.
    /// Messages without an author are attributed to `default_identity`.
    pub fn from_context(ctx: &Context, default_identity: &str) -> Result<Self, Error> {
        let client = ctx.client().ok_or_else(|| {
            Error::config(format!(
                "the `{}` adapter needs an injected client",
                ctx.name()
            ))
        })?;
        Ok(ClientLink::new(client, default_identity))
    }

    /// Links a client the adapter got some other way.
    pub fn new(client: ClientBox, default_identity: &str) -> Self {
        ClientLink {
            client,
            default_identity: default_identity.to_owned(),
        }
    }

    /// Relays the client's messages into the sink until the client is
    /// closed and drained: a whole `listen`. Nothing the client hands over
    /// is dropped without a word: a message the engine rejects as busy is
    /// answered "busy" on the platform, and once the engine has stopped
    /// intake (`push` fails with [`PushError::Closed`]), every command the
    /// client still holds is answered with
    /// [`shutting_down_reply`] (the engine
    /// counts them as refused). `stop` closes the client, so this ends.
    pub fn listen(&self, sink: &Sink) -> Result<(), Error> {
        while let Some(message) = self.client.recv().into_option() {
            let raw = RawMessage {
                room: message.room,
                identity: message
                    .user
                    .unwrap_or_else(|| self.default_identity.as_str().into()),
                content: message.text,
            };
            let (room, identity) = (raw.room.clone(), raw.identity.clone());
            // Kept for the refusal only (a push takes the message).
            let content = raw.content.clone();
            let text = match sink.push(raw) {
                Ok(()) => continue,
                // Only commands are ever refused (chat is dropped by the
                // engine, accepted or not).
                Err(PushError::Closed) if content.starts_with(crate::COMMAND_PREFIX) => {
                    shutting_down_reply(&content)
                }
                Err(PushError::Closed) => continue,
                Err(PushError::Busy) => {
                    "busy: the bot is overloaded; your message was dropped, try again".to_owned()
                }
            };
            let answer = ClientMessage {
                room,
                user: ROption::RSome(identity),
                text: text.into(),
            };
            self.client.send(&answer).into_result()?;
        }
        Ok(())
    }

    /// Sends one platform message answering `reply`'s originator.
    pub fn send(&self, reply: &Outgoing<'_>, text: &str) -> Result<(), Error> {
        let message = ClientMessage {
            room: reply.room().map(Into::into).into(),
            user: ROption::RSome(reply.recipient().into()),
            text: text.into(),
        };
        self.client.send(&message).into_result()?;
        Ok(())
    }

    /// Closes the client, which makes `listen` return once drained.
    pub fn close(&self) {
        self.client.close();
    }
}

/// A running adapter, as the engine holds it.
#[sabi_trait]
pub trait AdapterObj: Send + Sync {
    /// See [`Adapter::listen`].
    fn listen(&self, sink: SinkBox) -> RResult<(), ExtError>;
    /// See [`Adapter::send`].
    fn send(&self, message: &Egress) -> RResult<(), ExtError>;
    /// See [`Adapter::stop`].
    #[sabi(last_prefix_field)]
    fn stop(&self) -> RResult<(), ExtError>;
}

/// An [`AdapterObj`] as an FFI-safe owned trait object.
pub type AdapterBox = AdapterObj_TO<'static, RBox<()>>;

/// The root module an adapter library exports (via [`export_adapter!`](crate::export_adapter)).
///
/// Append-only: new fields go after `init`, which stays the last prefix field.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = AdapterRoot_Ref)))]
#[sabi(missing_field(panic))]
pub struct AdapterRoot {
    /// Returns the adapter's manifest; runs no initialisation.
    pub manifest: extern "C" fn() -> RResult<AdapterManifest, ExtError>,
    /// Initialises the adapter with its host context.
    #[sabi(last_prefix_field)]
    pub init: extern "C" fn(host: HostBox) -> RResult<AdapterBox, ExtError>,
}

impl RootModule for AdapterRoot_Ref {
    declare_root_module_statics! {AdapterRoot_Ref}
    const BASE_NAME: &'static str = "plugboard_adapter";
    const NAME: &'static str = "plugboard adapter";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

struct Instance<A> {
    // ManuallyDrop so that `Drop` can run the destructor under `catch_unwind`.
    adapter: ManuallyDrop<A>,
}

impl<A: Adapter> AdapterObj for Instance<A> {
    fn listen(&self, sink: SinkBox) -> RResult<(), ExtError> {
        guard(|| Ok(self.adapter.listen(&Sink::new(sink))?))
    }

    fn send(&self, message: &Egress) -> RResult<(), ExtError> {
        guard(|| Ok(self.adapter.send(&Outgoing::new(message))?))
    }

    fn stop(&self) -> RResult<(), ExtError> {
        match guard_unit(|| self.adapter.stop()) {
            None => RResult::ROk(()),
            Some(message) => RResult::RErr(ExtError::Panicked(message)),
        }
    }
}

impl<A> Drop for Instance<A> {
    fn drop(&mut self) {
        // SAFETY: `adapter` is never used again: this is the instance's drop.
        let adapter = unsafe { ManuallyDrop::take(&mut self.adapter) };
        if let Some(message) = guard_unit(move || drop(adapter)) {
            log::error!("adapter panicked while being dropped: {message}");
        }
    }
}

/// Initialises `A` and wraps it for the engine, catching panics. The engine
/// uses this directly for in-process adapters.
pub fn instantiate<A: Adapter>(host: HostBox) -> RResult<AdapterBox, ExtError> {
    guard(|| {
        let adapter = A::init(&Context::new(host))?;
        let instance = Instance {
            adapter: ManuallyDrop::new(adapter),
        };
        Ok(AdapterObj_TO::from_value(
            instance,
            abi_stable::sabi_trait::TD_Opaque,
        ))
    })
}

/// The manifest of `A` for the boundary, catching panics.
pub fn manifest_of<A: Adapter>() -> RResult<AdapterManifest, ExtError> {
    guard(|| Ok(A::info().to_abi()))
}

#[doc(hidden)]
pub mod __export {
    //! The `extern "C"` entry points [`export_adapter!`](crate::export_adapter) exports.
    use super::*;

    /// `AdapterRoot::manifest` for `A`: quiets this library's panic hook
    /// (see `guard::quiet_panics`), then describes `A`.
    pub extern "C" fn manifest<A: Adapter>() -> RResult<AdapterManifest, ExtError> {
        crate::guard::quiet_panics();
        manifest_of::<A>()
    }

    /// `AdapterRoot::init` for `A`: quiets the panic hook and installs the
    /// logging bridge (dynamic libraries only), then instantiates.
    pub extern "C" fn init<A: Adapter>(host: HostBox) -> RResult<AdapterBox, ExtError> {
        crate::guard::quiet_panics();
        crate::log_bridge::install(&host);
        instantiate::<A>(host)
    }

    /// The root module for `A`.
    pub fn root<A: Adapter>() -> AdapterRoot_Ref {
        use abi_stable::prefix_type::PrefixTypeTrait;
        AdapterRoot {
            manifest: manifest::<A>,
            init: init::<A>,
        }
        .leak_into_prefix()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RBox, ROption, RResult};

    use super::*;
    use crate::host::{client_box, Client, IngressSink, IngressSink_TO};

    /// A platform whose user typed `inbound`, recording what it is sent.
    #[derive(Clone)]
    struct Platform {
        inbound: Arc<Mutex<Vec<ClientMessage>>>,
        sent: Arc<Mutex<Vec<String>>>,
    }

    impl Client for Platform {
        fn recv(&self) -> ROption<ClientMessage> {
            let mut inbound = self.inbound.lock().unwrap();
            if inbound.is_empty() {
                ROption::RNone
            } else {
                ROption::RSome(inbound.remove(0))
            }
        }
        fn send(&self, message: &ClientMessage) -> RResult<(), ExtError> {
            self.sent.lock().unwrap().push(message.text.to_string());
            RResult::ROk(())
        }
        fn close(&self) {}
    }

    /// An engine that takes `open` messages, then has stopped intake.
    struct Closing(Mutex<usize>);

    impl IngressSink for Closing {
        fn push(&self, _: RawMessage) -> PushOutcome {
            let mut open = self.0.lock().unwrap();
            match open.checked_sub(1) {
                Some(left) => {
                    *open = left;
                    PushOutcome::Accepted
                }
                None => PushOutcome::Closed,
            }
        }
    }

    #[test]
    fn what_the_client_still_holds_when_intake_closes_is_answered_not_dropped() {
        let text = |t: &str| ClientMessage {
            room: ROption::RNone,
            user: ROption::RSome("ann".into()),
            text: t.into(),
        };
        let platform = Platform {
            inbound: Arc::new(Mutex::new(vec![
                text("!bacon"),
                text("!sleep 10"),
                text("just chatting"),
                text("!quote add something"),
            ])),
            sent: Arc::default(),
        };
        let link = ClientLink::new(client_box(platform.clone()), "someone");
        let sink = Sink::new(IngressSink_TO::from_ptr(
            RBox::new(Closing(Mutex::new(1))),
            TD_Opaque,
        ));
        link.listen(&sink).unwrap();
        assert_eq!(
            *platform.sent.lock().unwrap(),
            [
                "the bot is shutting down; `!sleep` was not run",
                "the bot is shutting down; `!quote` was not run",
            ]
        );
    }
}
