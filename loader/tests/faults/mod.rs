use std::time::Duration;

use plugboard_interface::message::RawMessage;
use plugboard_loader::{Engine, EngineConfig, Kind, PluginState, ShutdownReport, Unmatched};

use crate::support::{lib, TestClient};

fn engine_with(
    libs: &[&str],
    configure: impl FnOnce(plugboard_loader::EngineBuilder) -> plugboard_loader::EngineBuilder,
) -> (Engine, crate::support::Feed, crate::support::Replies) {
    let mut builder = Engine::builder(EngineConfig {
        workers: 2,
        unmatched: Unmatched::Reply,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&lib("plugboard_bacon"));
    for name in libs {
        builder = builder.library(&lib(name));
    }
    crate::support::start(configure(builder))
}

#[test]
fn repeated_panics_quarantine_a_plugin_until_reinstated() {
    let (engine, feed, replies) = engine_with(&["plugboard_fixture_panics"], |b| b);
    let handle = engine.handle();
    for _ in 0..4 {
        feed.say("ann", "!panic");
    }
    feed.say("ann", "!calm");
    feed.say("ann", "!bacon");
    // Replies are in order for ann, so once bacon's reply is in, the
    // quarantine is decided; wait for it through the reply stream.
    let texts = replies.wait_for(6);
    assert_eq!(
        texts,
        [
            "sorry, `panics` hit an internal error",
            "sorry, `panics` hit an internal error",
            "sorry, `panics` hit an internal error",
            "`panics` is quarantined; ask an operator to re-enable it",
            "`panics` is quarantined; ask an operator to re-enable it",
            "gives ann a strip of delicious bacon.",
        ]
    );
    let status = handle.plugins();
    let panics = status.iter().find(|p| p.name == "panics").unwrap();
    assert_eq!(panics.state, PluginState::Quarantined);
    assert_eq!(panics.counters.panics, 3);
    handle.reinstate("panics").unwrap();
    feed.say("ann", "!calm");
    assert_eq!(replies.wait_for(1), ["calm"]);
    drop(feed);
    engine.shutdown();
}

#[test]
fn a_hung_command_times_out_and_everyone_else_keeps_flowing() {
    let (engine, feed, replies) = engine_with(&["plugboard_fixture_hangs"], |b| {
        b.plugin_deadline("hangs", Duration::from_millis(300))
    });
    let handle = engine.handle();
    feed.say("stuck", "!hang");
    feed.say("stuck", "!bacon");
    // Other users are served while `stuck` waits for its deadline: all
    // their replies come before the timeout reply.
    for i in 0..200 {
        feed.say(&format!("u{}", i % 5), "!bacon");
    }
    let texts = replies.wait_for(202);
    let timeout = texts
        .iter()
        .position(|t| t.starts_with("`hangs` timed out after"))
        .unwrap();
    let stuck_bacon = texts
        .iter()
        .position(|t| t == "gives stuck a strip of delicious bacon.")
        .unwrap();
    assert!(
        timeout < stuck_bacon,
        "the stuck user's replies stay in order"
    );
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("gives u")).count(),
        200
    );
    assert_eq!(handle.abandoned_threads(), 1);
    let hangs = handle
        .plugins()
        .into_iter()
        .find(|p| p.name == "hangs")
        .unwrap();
    assert_eq!(hangs.counters.timeouts, 1);
    // The pool kept its capacity: more work still flows.
    feed.say("stuck", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives stuck a strip of delicious bacon."]
    );
    drop(feed);
    assert!(
        engine.shutdown().clean,
        "shutdown drains despite the abandoned thread"
    );
}

#[test]
fn slow_commands_within_their_deadline_just_answer() {
    let (engine, feed, replies) = engine_with(&["plugboard_fixture_sleeps"], |b| b);
    feed.say("zed", "!sleep 20");
    drop(feed);
    engine.shutdown();
    assert_eq!(replies.texts(), ["slept 20 ms"]);
}

#[test]
fn a_command_past_its_deadline_gets_one_timeout_reply() {
    let (engine, feed, replies) = engine_with(&["plugboard_fixture_sleeps"], |b| {
        b.plugin_deadline("sleeps", Duration::from_millis(50))
    });
    feed.say("zed", "!sleep 2000");
    feed.say("zed", "!bacon");
    assert_eq!(
        replies.wait_for(2)[1],
        "gives zed a strip of delicious bacon."
    );
    drop(feed);
    engine.shutdown();
    let texts = replies.texts();
    assert!(texts.is_empty(), "no late reply: {texts:?}");
}

#[test]
fn adapter_panics_in_listen_and_send_are_contained() {
    for (panic_in, expect_sends) in [("listen", 1), ("send", 1)] {
        let config = format!(r#"{{"panic_in": "{panic_in}", "commands": ["!bacon"]}}"#);
        let (engine, feed, replies) = engine_with(&["plugboard_fixture_bad_adapter"], |b| {
            b.extension_config(Kind::Adapter, "bad-adapter", config)
        });
        // The other adapter keeps working.
        feed.say("ok", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives ok a strip of delicious bacon."]
        );
        drop(feed);
        let handle = engine.handle();
        engine.shutdown();
        let bad = handle
            .adapters()
            .into_iter()
            .find(|a| a.name == "bad-adapter")
            .unwrap();
        assert_eq!(bad.counters.calls, expect_sends, "{panic_in}");
        assert_eq!(
            bad.counters.panics,
            u64::from(panic_in == "send"),
            "{panic_in}"
        );
    }
}

#[test]
fn a_full_engine_that_rejects_answers_busy_and_loses_nothing() {
    const N: usize = 30;
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        workers: 1,
        ingress_capacity: 1,
        execution_capacity: 1,
        max_pending: 1,
        when_full: plugboard_loader::WhenFull::Reject,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&lib("plugboard_fixture_sleeps"))
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    // Each command holds the only worker for 20 ms while all N arrive.
    for i in 0..N {
        feed.say(&format!("u{}", i % 3), "!sleep 20");
    }
    drop(feed);
    engine.shutdown();
    let texts = replies.texts();
    let answered: u64 = texts.iter().map(|t| crate::overload::answers(t)).sum();
    assert_eq!(
        answered, N as u64,
        "every command answered once, by its reply or a busy reply: {texts:?}"
    );
    let served = texts.iter().filter(|t| *t == "slept 20 ms").count();
    assert!(served < N, "the queue filled: {texts:?}");
    assert!(texts.iter().all(|t| t == "slept 20 ms"
        || t.starts_with("busy: too many of your commands are queued; `!sleep 20`")));
}

#[test]
fn with_reject_a_flooding_user_whose_command_hangs_cannot_stall_others() {
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        workers: 2,
        max_pending: 16,
        when_full: plugboard_loader::WhenFull::Reject,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&lib("plugboard_bacon"))
    .library(&lib("plugboard_fixture_hangs"))
    .plugin_deadline("hangs", Duration::from_millis(300))
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    feed.say("flooder", "!hang");
    for _ in 0..100 {
        feed.say("flooder", "!bacon");
    }
    for i in 0..50 {
        feed.say(&format!("calm{i}"), "!bacon");
    }
    // One reply per command, but consecutive refused ones may share one.
    let mut texts = Vec::new();
    let mut answered = 0;
    while answered < 151 {
        let text = replies.wait_for(1).remove(0);
        answered += crate::overload::answers(&text);
        texts.push(text);
    }
    assert_eq!(answered, 151, "{texts:?}");
    let timeout = texts
        .iter()
        .position(|t| t.starts_with("`hangs` timed out"))
        .unwrap();
    let calm: Vec<usize> = (0..texts.len())
        .filter(|&i| texts[i].starts_with("gives calm"))
        .collect();
    assert_eq!(calm.len(), 50);
    assert!(
        calm.iter().all(|&i| i < timeout),
        "others were served while the flooder waited"
    );
    assert!(texts.iter().any(|t| t.starts_with("busy:")));
    drop(feed);
    engine.shutdown();
}

/// Issue 10, item 2: commands still waiting when the shutdown grace
/// ends used to be dropped without a word. They are now answered "the
/// bot is shutting down" through their adapter, like any reply, and the
/// report accounts for every command, from adapters and handles alike.
#[test]
fn past_the_grace_commands_not_run_are_refused_and_every_one_is_counted() {
    const FED: usize = 300;
    const SUBMITTED: usize = 100;
    let (engine, feed, replies) = crate::support::start(
        Engine::builder(EngineConfig {
            workers: 2,
            shutdown_grace: Duration::from_millis(200),
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_fixture_sleeps")),
    );
    // 4 s of work on 2 workers, for a grace of 200 ms.
    let handle = engine.handle();
    for i in 0..FED {
        feed.say(&format!("u{}", i % 10), "!sleep 10");
    }
    for i in 0..SUBMITTED {
        let message = RawMessage::new(None, &format!("h{}", i % 5), "!sleep 10");
        handle.submit("discord", message).unwrap();
    }
    drop(feed);
    let report = engine.shutdown();
    let texts = replies.texts();
    let slept = texts.iter().filter(|t| *t == "slept 10 ms").count();
    let refused = texts
        .iter()
        .filter(|t| *t == "the bot is shutting down; `!sleep` was not run")
        .count();
    assert_eq!(slept + refused, texts.len(), "{texts:?}");
    assert!(refused > 0, "the grace ended first");
    assert_eq!(
        report,
        ShutdownReport {
            answered: slept as u64,
            refused: refused as u64,
            abandoned: 0,
            undelivered: 0,
            clean: true,
        }
    );
    assert_eq!(report.commands(), (FED + SUBMITTED) as u64);
    assert_eq!(
        report.to_string(),
        format!("{slept} answered, {refused} refused at shutdown, 0 abandoned")
    );
}

#[test]
fn adapter_panics_in_init_and_stop_are_contained() {
    let (feed, client, _replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_fixture_bad_adapter"))
        .extension_config(Kind::Adapter, "bad-adapter", r#"{"panic_in": "init"}"#)
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
    assert!(engine.report().failures[0]
        .to_string()
        .contains("init failed: panicked: fixture adapter panic in init"));
    drop(feed);
    engine.shutdown();

    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_fixture_bad_adapter"))
        .extension_config(Kind::Adapter, "bad-adapter", r#"{"panic_in": "stop"}"#)
        .start()
        .unwrap();
    assert!(
        engine.shutdown().clean,
        "a panicking stop does not stop the shutdown"
    );
}
