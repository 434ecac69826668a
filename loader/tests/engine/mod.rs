use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use plugboard_interface::message::RawMessage;
use plugboard_interface::prelude::*;
use plugboard_loader::{Engine, EngineConfig, Kind, LoadErrorKind, SubmitError, Unmatched};

use crate::support::lib;

/// An in-process plugin exercising every kind of command outcome.
struct Probe;

impl Plugin for Probe {
    fn manifest() -> Manifest<Self> {
        Manifest::new("probe", "1.0.0")
            .command("echo", r"echo\s+(?P<rest>.*)", "!echo <text>", Probe::echo)
            .command("seq", r"seq\s+(\d+)", "!seq <n>", Probe::seq)
            .command("boom", r"boom$", "!boom", Probe::boom)
            .command("fail", r"fail$", "!fail", Probe::fail)
            .command("quiet", r"quiet$", "!quiet", Probe::quiet)
            .command("both", r"both$", "!both", Probe::both)
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Probe)
    }
}

impl Probe {
    fn echo(&self, call: &Call<'_>) -> Result<Reply, Error> {
        Ok(format!(
            "echo {} from {} via {}",
            call.capture(1).unwrap_or(""),
            call.sender(),
            call.adapter()
        )
        .into())
    }
    fn seq(&self, call: &Call<'_>) -> Result<Reply, Error> {
        let n: u64 = call.capture(1).unwrap_or("0").parse()?;
        // Uneven work per command, so that parallel workers would
        // overtake each other if ordering were not enforced.
        for _ in 0..(n * 7919 % 13) * 50 {
            std::thread::yield_now();
        }
        Ok(n.to_string().into())
    }
    fn boom(&self, _: &Call<'_>) -> Result<Reply, Error> {
        panic!("probe exploded");
    }
    fn fail(&self, _: &Call<'_>) -> Result<Reply, Error> {
        Err(Error::msg("nothing to fail at"))
    }
    fn quiet(&self, _: &Call<'_>) -> Result<Reply, Error> {
        Ok(Reply::none())
    }
    fn both(&self, _: &Call<'_>) -> Result<Reply, Error> {
        Ok("probe saw both".into())
    }
}

/// A second plugin, to check that every matching command runs, in load order.
struct Second;

impl Plugin for Second {
    fn manifest() -> Manifest<Self> {
        Manifest::new("second", "1.0.0").command("both", r"both$", "!both", |_, _| {
            Ok("second saw both".into())
        })
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Second)
    }
}

fn engine(workers: usize) -> (Engine, crate::support::Feed, crate::support::Replies) {
    let builder = Engine::builder(EngineConfig {
        workers,
        unmatched: Unmatched::Reply,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_bacon"))
    .library(&lib("plugboard_discord"))
    .plugin::<Probe>()
    .plugin::<Second>();
    crate::support::start(builder)
}

#[test]
fn routes_commands_with_captures_through_real_libraries() {
    let (engine, feed, replies) = engine(2);
    feed.say("nelsk", "!bacon");
    feed.say("nelsk", "!bacon friend");
    feed.say("nelsk", "!echo hello there");
    feed.say("nelsk", "just chatting");
    feed.say("nelsk", "!nothing matches this");
    feed.say("nelsk", "!quiet");
    feed.say("nelsk", "!both");
    drop(feed);
    engine.shutdown();
    assert_eq!(
        replies.texts(),
        [
            "gives nelsk a strip of delicious bacon.",
            "gives friend a strip of delicious bacon as a gift from nelsk",
            "echo hello there from nelsk via discord",
            "no command matches `!nothing matches this`",
            "probe saw both",
            "second saw both",
        ]
    );
}

#[test]
fn panics_and_errors_become_short_replies_and_the_engine_keeps_serving() {
    let (engine, feed, replies) = engine(2);
    feed.say("a", "!boom");
    feed.say("a", "!fail");
    feed.say("a", "!bacon");
    drop(feed);
    engine.shutdown();
    assert_eq!(
        replies.texts(),
        [
            "sorry, `probe` hit an internal error",
            "`probe` failed: nothing to fail at",
            "gives a a strip of delicious bacon.",
        ]
    );
}

#[test]
fn replies_keep_order_within_each_conversation() {
    const USERS: usize = 8;
    const PER_USER: usize = 400;
    let (engine, feed, replies) = engine(4);
    for i in 0..PER_USER {
        for u in 0..USERS {
            feed.say(&format!("user{u}"), &format!("!seq {i}"));
        }
    }
    drop(feed);
    engine.shutdown();
    let mut by_user: HashMap<String, Vec<u64>> = HashMap::new();
    for reply in replies.all() {
        let user = reply
            .user
            .into_option()
            .expect("replies are addressed")
            .to_string();
        by_user
            .entry(user)
            .or_default()
            .push(reply.text.parse().unwrap());
    }
    assert_eq!(by_user.len(), USERS);
    for (user, seen) in by_user {
        let expected: Vec<u64> = (0..PER_USER as u64).collect();
        assert_eq!(seen, expected, "replies to {user} out of order or missing");
    }
}

#[test]
fn shutdown_answers_every_accepted_command() {
    const N: usize = 20_000;
    let (engine, feed, replies) = engine(2);
    let handle = engine.handle();
    for i in 0..N {
        // Half through the adapter, half through the embedder's handle.
        if i % 2 == 0 {
            feed.say(&format!("u{}", i % 13), "!bacon");
        } else {
            handle
                .submit(
                    "discord",
                    RawMessage::new(None, &format!("h{}", i % 7), "!bacon"),
                )
                .unwrap();
        }
    }
    drop(feed);
    engine.shutdown();
    assert_eq!(replies.all().len(), N);
    assert_eq!(
        handle.submit("discord", RawMessage::new(None, "late", "!bacon")),
        Err(SubmitError::Closed)
    );
}

#[test]
fn handle_refuses_unknown_adapters() {
    let (engine, _feed, _replies) = engine(1);
    let err = engine
        .handle()
        .submit("nulladapter", RawMessage::new(None, "x", "!bacon"))
        .unwrap_err();
    assert_eq!(err.to_string(), "no adapter named `nulladapter`");
}

#[test]
fn plugin_logs_reach_the_host_logger_under_their_own_name() {
    let (engine, feed, _replies) = engine(1);
    drop(feed);
    engine.shutdown();
    let records = crate::support::captured_logs();
    assert!(
        records
            .iter()
            .any(|(level, target, message)| *level == log::Level::Info
                && target == "adapter::discord::plugboard_discord"
                && message == "listening on the injected client"),
        "{records:?}"
    );
}

/// An in-process adapter, registered through the same trait as a library.
struct Ticker;

static TICKER_SENT: AtomicUsize = AtomicUsize::new(0);

impl Adapter for Ticker {
    fn info() -> AdapterInfo {
        AdapterInfo::new("ticker", "1.0.0")
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Ticker)
    }
    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        for i in 0..10 {
            sink.push(RawMessage::new(
                Some("#tick"),
                "clock",
                &format!("!seq {i}"),
            ))
            .map_err(Error::from)?;
        }
        Ok(())
    }
    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        assert_eq!(reply.room(), Some("#tick"));
        assert_eq!(
            reply.text(),
            TICKER_SENT.fetch_add(1, Ordering::SeqCst).to_string()
        );
        Ok(())
    }
    fn stop(&self) {}
}

#[test]
fn in_process_adapters_and_plugins_use_the_same_traits() {
    let engine = Engine::builder(EngineConfig::default())
        .plugin::<Probe>()
        .adapter::<Ticker>()
        .start()
        .unwrap();
    assert_eq!(engine.adapter_names().collect::<Vec<_>>(), ["ticker"]);
    engine.shutdown();
    assert_eq!(TICKER_SENT.load(Ordering::SeqCst), 10);
}

/// An adapter that listens until stopped, for `serve`.
struct Waiter {
    stop: std::sync::Mutex<bool>,
    stopped: std::sync::Condvar,
}

impl Adapter for Waiter {
    fn info() -> AdapterInfo {
        AdapterInfo::new("waiter", "1.0.0")
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Waiter {
            stop: std::sync::Mutex::new(false),
            stopped: std::sync::Condvar::new(),
        })
    }
    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        sink.push(RawMessage::new(None, "w", "!seq 7"))?;
        let guard = self.stop.lock().unwrap();
        drop(self.stopped.wait_while(guard, |stop| !*stop).unwrap());
        Ok(())
    }
    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        assert_eq!(reply.text(), "7");
        Ok(())
    }
    fn stop(&self) {
        *self.stop.lock().unwrap() = true;
        self.stopped.notify_all();
    }
}

#[test]
fn serve_runs_until_a_handle_requests_shutdown() {
    let engine = Engine::builder(EngineConfig::default())
        .plugin::<Probe>()
        .adapter::<Waiter>()
        .start()
        .unwrap();
    let handle = engine.handle();
    let server = std::thread::spawn(move || engine.serve());
    handle.request_shutdown();
    assert!(server.join().unwrap().clean, "a clean, drained shutdown");
    let probe = handle
        .plugins()
        .into_iter()
        .find(|p| p.name == "probe")
        .unwrap();
    assert_eq!(
        probe.counters.calls, 1,
        "the command pushed before the stop was answered"
    );
}

/// An adapter whose `stop` never returns (and whose `listen` ignores
/// it): neither `request_shutdown` nor the shutdown may wait for it.
struct Deaf;

impl Adapter for Deaf {
    fn info() -> AdapterInfo {
        AdapterInfo::new("deaf", "1.0.0")
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Deaf)
    }
    fn listen(&self, _: &Sink) -> Result<(), Error> {
        loop {
            std::thread::park();
        }
    }
    fn send(&self, _: &Outgoing<'_>) -> Result<(), Error> {
        Ok(())
    }
    fn stop(&self) {
        loop {
            std::thread::park();
        }
    }
}

#[test]
fn a_stop_that_never_returns_holds_neither_the_caller_nor_the_shutdown() {
    let engine = Engine::builder(EngineConfig {
        listen_grace: std::time::Duration::from_millis(100),
        shutdown_grace: std::time::Duration::from_millis(100),
        ..EngineConfig::default()
    })
    .adapter::<Deaf>()
    .start()
    .unwrap();
    // Returns although `stop` never does.
    engine.handle().request_shutdown();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(engine.shutdown()));
    let report = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the shutdown is bounded whatever `stop` does");
    assert!(!report.clean, "the deaf listener was abandoned");
}

/// An adapter whose init fails (no client injected) is reported; the
/// rest of the engine runs.
#[test]
fn init_failures_are_reported_and_skipped() {
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_discord"))
        .plugin::<Probe>()
        .start()
        .unwrap();
    let report = engine.report();
    assert_eq!(report.loaded.len(), 1);
    assert_eq!(report.loaded[0].kind, Kind::Plugin);
    assert!(matches!(report.failures[0].kind, LoadErrorKind::Init(_)));
    assert!(
        report.failures[0].to_string().ends_with(
            "rejected its configuration: the `discord` adapter needs an injected client"
        ),
        "{}",
        report.failures[0]
    );
}
