use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};
use plugboard_interface::prelude::*;
use plugboard_loader::{Engine, EngineConfig, PluginState, ShutdownReport};

use crate::support::{captured_logs, lib, start};

const NAMES: [&str; 8] = [
    "gate0", "gate1", "gate2", "gate3", "gate4", "gate5", "gate6", "gate7",
];

/// The plugin's ends of its test's wires.
struct Wires {
    entered: Sender<String>,
    release: Receiver<()>,
}

/// The test's ends: who entered `!block`, and what lets them go (one
/// `send` each, or drop it to let everyone go).
struct Control {
    entered: Receiver<String>,
    release: Sender<()>,
}

fn registry() -> &'static Mutex<HashMap<&'static str, Wires>> {
    static WIRES: OnceLock<Mutex<HashMap<&'static str, Wires>>> = OnceLock::new();
    WIRES.get_or_init(Default::default)
}

/// Wires for the next `Gate<N>` to start.
fn wire<const N: usize>() -> Control {
    let (entered_tx, entered) = unbounded();
    let (release, release_rx) = unbounded();
    registry().lock().unwrap().insert(
        NAMES[N],
        Wires {
            entered: entered_tx,
            release: release_rx,
        },
    );
    Control { entered, release }
}

struct Gate<const N: usize>(Wires);

impl<const N: usize> Plugin for Gate<N> {
    fn manifest() -> Manifest<Self> {
        Manifest::new(NAMES[N], "1.0.0")
            .command("block", r"block$", "!block", |gate: &Self, call| {
                let _ = gate.0.entered.send(call.sender().to_owned());
                let _ = gate.0.release.recv();
                Ok(format!("unblocked {}", call.sender()).into())
            })
            .command("boom", r"boom$", "!boom", |_, _| panic!("gate exploded"))
            .command("ok", r"ok$", "!ok", |_, _| Ok("ok".into()))
            .command("big", r"big\s+(\d+)$", "!big <bytes>", |_, call| {
                let n: usize = call.capture(1).unwrap_or("0").parse()?;
                Ok("x".repeat(n).into())
            })
            .command("lines", r"lines\s+(\d+)$", "!lines <n>", |_, call| {
                let n: usize = call.capture(1).unwrap_or("0").parse()?;
                let lines: Vec<String> = (1..=n).map(|i| format!("line {i}")).collect();
                Ok(lines.join("\n").into())
            })
            .command("accents", r"accents$", "!accents", |_, _| {
                Ok("é".repeat(40).into())
            })
    }
    fn init(_: &Context) -> Result<Self, Error> {
        let wires = registry()
            .lock()
            .unwrap()
            .remove(NAMES[N])
            .ok_or_else(|| Error::msg("the test did not wire this gate"))?;
        Ok(Gate(wires))
    }
}

const LONG: Duration = Duration::from_secs(600);

fn state_of(engine: &Engine, name: &str) -> PluginState {
    engine
        .handle()
        .plugins()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
        .state
}

fn logged(wanted: &str) -> bool {
    captured_logs().iter().any(|(_, _, m)| m.contains(wanted))
}

/// Waits (a minute at most, as a guard) until `done` holds: for things
/// that happen after the replies the test can wait for.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < guard, "never: {what}");
        std::thread::yield_now();
    }
}

/// Issue 9, item 1: with two workers, four commands hung in one plugin
/// used to make everyone else wait for the deadline. Now the plugin
/// holds at most its limit (the worker count) of threads, the others
/// wait without a worker, and workers are added for the stuck ones.
#[test]
fn a_hung_plugin_holds_at_most_its_limit_and_others_keep_full_capacity() {
    let control = wire::<1>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"))
        .plugin::<Gate<1>>()
        .plugin_deadline("gate1", LONG),
    );
    let handle = engine.handle();
    for u in 0..4 {
        feed.say(&format!("blocked{u}"), "!block");
    }
    let guard = Duration::from_secs(60);
    let mut entered = vec![
        control.entered.recv_timeout(guard).unwrap(),
        control.entered.recv_timeout(guard).unwrap(),
    ];
    // While two calls are stuck and two more commands wait for the
    // plugin, an unrelated user is served.
    feed.say("hungry", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives hungry a strip of delicious bacon."]
    );
    assert!(
        control.entered.try_recv().is_err(),
        "a third call got into the plugin past its limit"
    );
    assert!(
        handle.worker_threads() > 2,
        "a worker was added in place of the stuck ones"
    );

    drop(control.release);
    let mut texts = replies.wait_for(4);
    texts.sort();
    assert_eq!(
        texts,
        [
            "unblocked blocked0",
            "unblocked blocked1",
            "unblocked blocked2",
            "unblocked blocked3"
        ]
    );
    entered.extend(control.entered.try_iter());
    entered.sort();
    assert_eq!(entered, ["blocked0", "blocked1", "blocked2", "blocked3"]);
    // Capacity is back: the added workers retire.
    eventually("the pool shrinks back to 2 workers", || {
        handle.worker_threads() == 2
    });
    drop(feed);
    assert!(engine.shutdown().clean);
    assert!(replies.texts().is_empty(), "exactly one reply per command");
}

/// A command waiting for a plugin's call slot gets a "busy" reply at
/// the plugin's deadline; an abandoned call keeps its slot until it
/// returns.
#[test]
fn a_command_waiting_past_the_deadline_is_answered_busy() {
    let control = wire::<0>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Gate<0>>()
        .plugin_deadline("gate0", Duration::from_millis(200))
        .plugin_max_in_flight("gate0", 1),
    );
    let handle = engine.handle();
    feed.say("first", "!block");
    control
        .entered
        .recv_timeout(Duration::from_secs(60))
        .unwrap();
    feed.say("second", "!ok");
    let mut texts = replies.wait_for(2);
    texts.sort();
    assert_eq!(
        texts,
        [
            "`gate0` is busy: none of its calls finished within 200 ms (it runs 1 at most at once); try again later",
            "`gate0` timed out after 200 ms",
        ]
    );
    assert_eq!(handle.abandoned_threads(), 1);
    // Once the stuck call returns, its slot is free again.
    drop(control.release);
    eventually("the stuck call returns", || handle.abandoned_threads() == 0);
    feed.say("third", "!ok");
    assert_eq!(replies.wait_for(1), ["ok"]);
    drop(feed);
    assert!(engine.shutdown().clean);
}

/// Issue 9, item 2: with `quarantine_after = 0`, abandoned threads grew
/// without bound. Now reaching `max_abandoned` quarantines the plugin,
/// whatever the setting, and says why.
#[test]
fn max_abandoned_holds_whatever_the_quarantine_setting() {
    let control = wire::<2>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 1,
            max_abandoned: 2,
            quarantine_after: 0,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"))
        .plugin::<Gate<2>>()
        .plugin_deadline("gate2", Duration::from_millis(30))
        // No limit of its own to stop it first.
        .plugin_max_in_flight("gate2", 100),
    );
    let handle = engine.handle();
    for _ in 0..4 {
        feed.say("u", "!block");
    }
    feed.say("u", "!bacon");
    let quarantined = "`gate2` is quarantined; ask an operator to re-enable it";
    assert_eq!(
        replies.wait_for(5),
        [
            "`gate2` timed out after 30 ms",
            "`gate2` timed out after 30 ms",
            quarantined,
            quarantined,
            "gives u a strip of delicious bacon.",
        ]
    );
    assert_eq!(handle.abandoned_threads(), 2);
    assert_eq!(state_of(&engine, "gate2"), PluginState::Quarantined);
    assert!(logged(
        "plugin `gate2` quarantined until re-enabled: 2 threads are stuck in plugin calls (max_abandoned = 2)"
    ));
    // It stays that way: no cooldown trial, no more threads.
    for i in 0..5 {
        feed.say(&format!("v{i}"), "!block");
    }
    assert_eq!(replies.wait_for(5), [quarantined; 5]);
    assert_eq!(handle.abandoned_threads(), 2);
    assert!(handle.worker_threads() + handle.abandoned_threads() <= 1 + 2);

    drop(control.release);
    eventually("the stuck calls return", || handle.abandoned_threads() == 0);
    drop(feed);
    assert!(engine.shutdown().clean);
}

/// Past `max_abandoned`, other plugins keep being served: each plugin
/// that leaves a thread stuck is quarantined for good, and workers are
/// still added so that `workers` of them are free (the engine used to
/// stop answering anyone once the bound was reached).
#[test]
fn past_the_thread_bound_other_users_are_still_served() {
    let seven = wire::<7>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 1,
            max_abandoned: 1,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"))
        .plugin::<Gate<7>>()
        .plugin_deadline("gate7", Duration::from_millis(30)),
    );
    feed.say("a", "!block");
    seven.entered.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(replies.wait_for(1), ["`gate7` timed out after 30 ms"]);
    // The only worker is stuck and the bound is reached: the plugin is
    // out for good, and the pool still gets a free worker.
    feed.say("c", "!bacon");
    assert_eq!(replies.wait_for(1), ["gives c a strip of delicious bacon."]);
    feed.say("d", "!ok");
    assert_eq!(
        replies.wait_for(1),
        ["`gate7` is quarantined; ask an operator to re-enable it"]
    );
    assert_eq!(state_of(&engine, "gate7"), PluginState::Quarantined);
    drop(seven.release);
    drop(feed);
    engine.shutdown();
}

/// Issue 9, item 3: a quarantine ends after its cooldown with one trial
/// call; a failed trial quarantines again (for twice as long).
#[test]
fn a_quarantine_ends_after_its_cooldown_with_one_trial_call() {
    let control = wire::<3>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 2,
            quarantine_after: 1,
            quarantine_cooldown: Duration::from_millis(1),
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Gate<3>>()
        .plugin_deadline("gate3", LONG),
    );
    let quarantined = "`gate3` is quarantined; ask an operator to re-enable it";
    let sorry = "sorry, `gate3` hit an internal error";
    // Sends `command` until the reply is not "quarantined" (the trial
    // ran), a bounded number of times; returns that reply.
    let until_trial = |command: &str| {
        for _ in 0..100_000 {
            feed.say("ann", command);
            let reply = replies.wait_for(1).remove(0);
            if reply != quarantined {
                return reply;
            }
        }
        panic!("no trial call after 100000 commands");
    };
    feed.say("ann", "!boom");
    assert_eq!(replies.wait_for(1), [sorry]);
    assert_eq!(state_of(&engine, "gate3"), PluginState::Quarantined);

    // The trial fails: quarantined again, for twice the cooldown.
    assert_eq!(until_trial("!boom"), sorry);
    assert_eq!(state_of(&engine, "gate3"), PluginState::Quarantined);
    assert!(logged(
        "plugin `gate3` failed its trial call; quarantined again, next trial after 2 ms"
    ));
    // The next trial succeeds: active again.
    assert_eq!(until_trial("!ok"), "ok");
    assert_eq!(state_of(&engine, "gate3"), PluginState::Active);
    assert!(logged("plugin `gate3` passed its trial call; active again"));

    // One trial at a time: while it runs, everyone else is told.
    feed.say("ann", "!boom");
    assert_eq!(replies.wait_for(1), [sorry]);
    for attempt in 0.. {
        assert!(attempt < 100_000, "no trial call");
        feed.say("ann", "!block");
        select! {
            recv(control.entered) -> who => {
                assert_eq!(who.unwrap(), "ann");
                break;
            }
            recv(replies.receiver()) -> reply => assert_eq!(reply.unwrap().text.as_str(), quarantined),
            default(Duration::from_secs(60)) => panic!("neither a reply nor a call"),
        }
    }
    feed.say("bob", "!ok");
    assert_eq!(replies.wait_for(1), [quarantined]);
    control.release.send(()).unwrap();
    assert_eq!(replies.wait_for(1), ["unblocked ann"]);
    assert_eq!(state_of(&engine, "gate3"), PluginState::Active);
    drop(feed);
    assert!(engine.shutdown().clean);
}

/// `!enable` and `Handle::reinstate` still lift a quarantine at once.
#[test]
fn enable_and_reinstate_lift_a_quarantine_before_its_cooldown() {
    let _control = wire::<4>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 2,
            quarantine_after: 1,
            quarantine_cooldown: LONG,
            admins: vec!["discord:root".into()],
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Gate<4>>(),
    );
    let quarantined = "`gate4` is quarantined; ask an operator to re-enable it";
    let sorry = "sorry, `gate4` hit an internal error";
    feed.say("ann", "!boom");
    feed.say("ann", "!ok");
    assert_eq!(replies.wait_for(2), [sorry, quarantined]);
    feed.say("root", "!enable gate4 everywhere");
    assert_eq!(replies.wait_for(1), ["`gate4` enabled everywhere"]);
    feed.say("ann", "!ok");
    feed.say("ann", "!boom");
    feed.say("ann", "!ok");
    assert_eq!(replies.wait_for(3), ["ok", sorry, quarantined]);
    engine.handle().reinstate("gate4").unwrap();
    feed.say("ann", "!ok");
    assert_eq!(replies.wait_for(1), ["ok"]);
    drop(feed);
    assert!(engine.shutdown().clean);
}

/// Issue 9, item 8 (engine part): a 10 MB reply became 5,243 messages.
/// Replies are now cut, visibly, at a line and a character boundary.
#[test]
fn huge_replies_are_cut_and_say_so() {
    let defaults = EngineConfig::default();
    assert_eq!(
        (defaults.max_reply_bytes, defaults.max_reply_lines),
        (16384, 50)
    );
    let _control = wire::<5>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            max_reply_bytes: 64,
            max_reply_lines: 3,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Gate<5>>(),
    );
    feed.say("ann", "!big 10485760");
    feed.say("ann", "!big 64");
    feed.say("ann", "!lines 10");
    feed.say("ann", "!lines 3");
    feed.say("ann", "!accents");
    let x64 = "x".repeat(64);
    assert_eq!(
        replies.wait_for(5),
        [
            format!("{x64} [… reply truncated: 10485760 bytes, 64 shown]"),
            x64.clone(),
            "line 1\nline 2\nline 3 [… reply truncated: 10 lines, 3 shown]".to_owned(),
            "line 1\nline 2\nline 3".to_owned(),
            format!("{} [… reply truncated: 80 bytes, 64 shown]", "é".repeat(32)),
        ]
    );
    drop(feed);
    assert!(engine.shutdown().clean);
}

/// Issue 10, item 2: at the end of the shutdown, a call that never
/// returned is abandoned and counted; everything behind it, in its
/// conversation or waiting for its plugin, was refused when the grace
/// ended (overtaking it: it never answers).
#[test]
fn a_call_stuck_past_the_end_is_abandoned_and_counted() {
    let control = wire::<6>();
    let (engine, feed, replies) = start(
        Engine::builder(EngineConfig {
            workers: 2,
            shutdown_grace: Duration::from_millis(100),
            refusal_window: Duration::from_millis(300),
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Gate<6>>()
        .plugin_deadline("gate6", LONG)
        .plugin_max_in_flight("gate6", 1),
    );
    feed.say("stuck", "!block");
    control
        .entered
        .recv_timeout(Duration::from_secs(60))
        .unwrap();
    // Behind it in its conversation, and behind its plugin's limit.
    for _ in 0..3 {
        feed.say("stuck", "!ok");
    }
    feed.say("other", "!ok");
    drop(feed);
    let report = engine.shutdown();
    assert_eq!(
        report,
        ShutdownReport {
            answered: 0,
            refused: 4,
            abandoned: 1,
            undelivered: 0,
            clean: false,
        }
    );
    assert_eq!(
        replies.texts(),
        ["the bot is shutting down; `!ok` was not run"; 4]
    );
    assert!(logged("1 command(s) still inside"));
    drop(control.release);
}

/// Issue 9, item 4: a plugin whose `Drop` never returns held exit
/// forever. Shutdown now drops extensions on threads of their own and
/// abandons a destructor still running at the end of the grace.
#[test]
fn a_destructor_that_never_returns_cannot_hold_shutdown() {
    let engine = Engine::builder(EngineConfig {
        shutdown_grace: Duration::from_millis(300),
        refusal_window: Duration::from_millis(200),
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_fixture_drop_hangs"))
    .library(&lib("plugboard_bacon"))
    .start()
    .unwrap();
    assert!(engine.report().failures.is_empty());
    assert!(
        !engine.shutdown().clean,
        "not a clean shutdown: a destructor was abandoned"
    );
    assert!(logged(
        "plugin `drop-hangs` did not finish dropping within the shutdown's 500 ms; abandoning its thread"
    ));
    assert!(
        !logged("plugin `bacon` did not finish dropping"),
        "the others were dropped"
    );
}
