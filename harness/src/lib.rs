//! A test harness for plugboard plugin authors.
//!
//! [`TestBot`] starts a real engine with your plugin (its type, in-process,
//! or its built library), sends `!command` lines as a given user and room
//! through a test adapter, and returns the replies to *that* line:
//!
//! ```
//! use plugboard_harness::TestBot;
//!
//! let mut bot = TestBot::builder().plugin::<plugboard_bacon::Bacon>().start().unwrap();
//! assert_eq!(bot.say("nelsk", "!bacon"), ["gives nelsk a strip of delicious bacon."]);
//! assert_eq!(bot.say("nelsk", "hello"), Vec::<String>::new()); // chat, not a command
//! ```
//!
//! # Layout
//!
//! - [`TestBotBuilder`]: what to load, config, data dir, admins.
//! - [`TestBot`]: `say` / `send` / `restart`.
//!
//! # Key design decision: exchanges end by a marker, not by a timeout
//!
//! After your line the harness sends a marker command from the same user in
//! the same room, answered by an internal plugin (`__harness`, hidden from
//! `!help`). The engine delivers replies in order per conversation, so when
//! the marker's reply arrives, every reply to your line has arrived: no
//! sleeping, no guessing how many replies to expect.

use std::path::{Path, PathBuf};
use std::time::Duration;

use abi_stable::std_types::{ROption, RResult};
use crossbeam_channel::{unbounded, Receiver, Sender};
use plugboard_interface::adapter::ClientLink;
use plugboard_interface::host::{client_box, Client, ClientMessage};
use plugboard_interface::prelude::*;
use plugboard_interface::ExtError;
use plugboard_loader::{Engine, EngineBuilder, EngineConfig, Handle, Kind, Unmatched};

/// The name of the test adapter (`Call::adapter()` in your handlers).
pub const ADAPTER: &str = "test";

/// How long an exchange may take before the harness gives up (a guard
/// against a hung engine, not a timing assumption).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

type Register = Box<dyn Fn(EngineBuilder) -> EngineBuilder>;

/// What a [`TestBot`] loads.
#[derive(Default)]
pub struct TestBotBuilder {
    registrations: Vec<Register>,
    configs: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    admins: Vec<String>,
    command_deadline: Option<Duration>,
}

impl TestBotBuilder {
    /// Your plugin type, in-process (same trait and checks as a library).
    pub fn plugin<P: Plugin>(mut self) -> Self {
        self.registrations.push(Box::new(|b| b.plugin::<P>()));
        self
    }

    /// A built plugin library.
    pub fn library(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.registrations.push(Box::new(move |b| b.library(&path)));
        self
    }

    /// The plugin's configuration, as JSON (what `[plugins.<name>]` becomes).
    pub fn config(mut self, plugin: &str, json: &str) -> Self {
        self.configs.push((plugin.to_owned(), json.to_owned()));
        self
    }

    /// The engine's data directory (each plugin gets a subdirectory). Use
    /// a temporary directory; [`TestBot::restart`] keeps it.
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Lets `user` use the admin commands.
    pub fn admin(mut self, user: &str) -> Self {
        self.admins.push(format!("{ADAPTER}:{user}"));
        self
    }

    /// The command deadline (default 5 s).
    pub fn command_deadline(mut self, deadline: Duration) -> Self {
        self.command_deadline = Some(deadline);
        self
    }

    /// Starts the engine. Any load failure (your plugin refused, its init
    /// failing) is an error listing every failure.
    pub fn start(self) -> Result<TestBot, String> {
        let (feed, inbound) = unbounded();
        let (outbound, replies) = unbounded();
        let client = client_box(TestClient { inbound, outbound });
        let mut config = EngineConfig {
            workers: 2,
            unmatched: Unmatched::Ignore,
            data_dir: self.data_dir.clone(),
            admins: self.admins.clone(),
            ..EngineConfig::default()
        };
        if let Some(deadline) = self.command_deadline {
            config.command_deadline = deadline;
        }
        let mut builder = Engine::builder(config)
            .plugin::<Marker>()
            .adapter::<TestAdapter>()
            .clients(move |_| Some(client.clone()));
        for register in &self.registrations {
            builder = register(builder);
        }
        for (plugin, json) in &self.configs {
            builder = builder.extension_config(Kind::Plugin, plugin, json.clone());
        }
        let engine = builder.start().map_err(|e| e.to_string())?;
        let failures: Vec<String> = engine
            .report()
            .failures
            .iter()
            .map(|f| f.to_string())
            .collect();
        if !failures.is_empty() {
            // End the test adapter's input before the engine stops.
            drop(feed);
            engine.shutdown();
            return Err(failures.join("\n"));
        }
        Ok(TestBot {
            engine: Some(engine),
            feed: Some(feed),
            replies,
            next: 0,
            builder: self,
        })
    }
}

/// A running engine with your plugin and a test adapter.
pub struct TestBot {
    engine: Option<Engine>,
    feed: Option<Sender<ClientMessage>>,
    replies: Receiver<ClientMessage>,
    next: u64,
    builder: TestBotBuilder,
}

impl TestBot {
    /// What to load.
    pub fn builder() -> TestBotBuilder {
        TestBotBuilder::default()
    }

    /// `user` says `text` outside any room; returns the replies.
    pub fn say(&mut self, user: &str, text: &str) -> Vec<String> {
        self.send(user, None, text)
    }

    /// `user` says `text` in `room` (if any); returns the replies to that
    /// line, in order.
    ///
    /// # Panics
    ///
    /// If the engine is gone or the replies do not come within a minute.
    pub fn send(&mut self, user: &str, room: Option<&str>, text: &str) -> Vec<String> {
        self.next += 1;
        let marker = format!("__sync {}", self.next);
        let feed = self
            .feed
            .as_ref()
            .expect("the feed lives as long as the bot");
        for line in [text.to_owned(), format!("!{marker}")] {
            feed.send(ClientMessage {
                room: room.map(Into::into).into(),
                user: ROption::RSome(user.into()),
                text: line.into(),
            })
            .expect("the test adapter is listening");
        }
        let mut replies = Vec::new();
        loop {
            let reply = self
                .replies
                .recv_timeout(EXCHANGE_LIMIT)
                .unwrap_or_else(|_| panic!("no reply to `{text}` within {EXCHANGE_LIMIT:?}"));
            if reply.text.as_str() == marker {
                return replies;
            }
            replies.push(reply.text.into_string());
        }
    }

    /// The engine's handle (plugin states and counters).
    pub fn handle(&self) -> Handle {
        self.engine
            .as_ref()
            .expect("the engine runs until the bot is dropped or restarted")
            .handle()
    }

    /// Stops the engine gracefully and starts a new one with the same
    /// setup (and data directory): for testing what survives a restart.
    pub fn restart(mut self) -> Result<TestBot, String> {
        self.stop();
        let builder = std::mem::take(&mut self.builder);
        builder.start()
    }

    fn stop(&mut self) {
        // End the adapter's input first, so that `listen` returns.
        self.feed.take();
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
    }
}

impl Drop for TestBot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers the exchange marker.
struct Marker;

impl Plugin for Marker {
    fn manifest() -> Manifest<Self> {
        Manifest::new("__harness", env!("CARGO_PKG_VERSION")).command(
            "sync",
            r"__sync \d+$",
            "",
            |_, call| Ok(call.text().into()),
        )
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Marker)
    }
}

/// The test platform: an injected client fed by [`TestBot::send`].
struct TestAdapter {
    link: ClientLink,
}

impl Adapter for TestAdapter {
    fn info() -> AdapterInfo {
        AdapterInfo::new(ADAPTER, env!("CARGO_PKG_VERSION"))
    }
    fn init(ctx: &Context) -> Result<Self, Error> {
        Ok(TestAdapter {
            link: ClientLink::from_context(ctx, "tester")?,
        })
    }
    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        self.link.listen(sink)
    }
    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        self.link.send(reply, reply.text())
    }
    fn stop(&self) {}
}

#[derive(Clone)]
struct TestClient {
    inbound: Receiver<ClientMessage>,
    outbound: Sender<ClientMessage>,
}

impl Client for TestClient {
    fn recv(&self) -> ROption<ClientMessage> {
        self.inbound.recv().ok().into()
    }
    fn send(&self, message: &ClientMessage) -> RResult<(), ExtError> {
        // The bot may be dropped mid-exchange; nobody needs the reply then.
        let _ = self.outbound.send(message.clone());
        RResult::ROk(())
    }
    /// Input ends when the bot drops its feed.
    fn close(&self) {}
}
