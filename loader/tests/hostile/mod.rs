use std::time::Duration;

use plugboard_interface::prelude::*;
use plugboard_loader::deadline::abandoned_threads;
use plugboard_loader::library::open;
use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, Stage};

use crate::support::{failure_lines, lib, TestClient};

/// The manifest lists `c0..c15` in `HashMap` order, different on every
/// call: each command must still reach its own handler.
#[test]
fn every_command_reaches_its_own_handler_whatever_the_manifest_order() {
    let builder = Engine::builder(EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&lib("plugboard_fixture_hashmap_manifest"));
    let (engine, feed, replies) = crate::support::start(builder);
    let sent: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    for command in &sent {
        feed.say("ann", &format!("!{command}"));
    }
    // One user: the replies come back in the order the commands went.
    assert_eq!(replies.wait_for(sent.len()), sent);
    drop(feed);
    engine.shutdown();
}

/// Patterns that compile one by one but not as one set: the plugin is
/// refused by name at validation, and the engine starts with the rest.
#[test]
fn patterns_over_the_routing_budget_refuse_their_plugin_not_the_engine() {
    let huge = lib("plugboard_fixture_huge_patterns");
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"))
        .library(&huge)
        .clients(move |_| Some(client.clone()))
        .start()
        .expect("one plugin's patterns never stop the engine");
    let failures = failure_lines(&engine);
    assert_eq!(
        failures,
        [format!(
            "{}: command patterns of `huge-patterns` compile to more than the routing budget (10 MiB)",
            huge.display()
        )]
    );
    assert!(matches!(
        engine.report().failures[0].kind,
        LoadErrorKind::RoutingBudget { .. }
    ));
    feed.say("ann", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives ann a strip of delicious bacon."]
    );
    drop(feed);
    engine.shutdown();
}

/// Long enough for any extension that returns at all; the hanging
/// fixtures never do, so the tests wait for the engine's verdict.
const LOAD_DEADLINE: Duration = Duration::from_secs(1);

/// A `manifest` that never returns, in a library and in-process.
struct NeverDescribes;

impl Plugin for NeverDescribes {
    fn manifest() -> Manifest<Self> {
        loop {
            std::thread::park();
        }
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(NeverDescribes)
    }
}

#[test]
fn a_manifest_that_never_returns_fails_its_extension_not_the_loader() {
    let hangs = lib("plugboard_fixture_manifest_hangs");
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        load_deadline: LOAD_DEADLINE,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&hangs)
    .plugin::<NeverDescribes>()
    .library(&lib("plugboard_bacon"))
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    let failures = failure_lines(&engine);
    assert_eq!(
        failures,
        [
            format!("{}: manifest did not return within 1 s", hangs.display()),
            "<in-process>: manifest did not return within 1 s".to_owned(),
        ]
    );
    assert!(matches!(
        engine.report().failures[0].kind,
        LoadErrorKind::Overdue {
            stage: Stage::Manifest,
            ..
        }
    ));
    assert!(abandoned_threads() >= 2, "both threads are abandoned");
    feed.say("ann", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives ann a strip of delicious bacon."]
    );
    drop(feed);
    engine.shutdown();
}

#[test]
fn an_init_that_never_returns_fails_its_extension_not_the_engine() {
    let hangs = lib("plugboard_fixture_init_hangs");
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        load_deadline: LOAD_DEADLINE,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .library(&hangs)
    .library(&lib("plugboard_bacon"))
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    let failures = failure_lines(&engine);
    assert_eq!(
        failures,
        [format!(
            "{}: init did not return within 1 s",
            hangs.display()
        )]
    );
    assert!(abandoned_threads() >= 1);
    assert_eq!(
        engine.plugin_names().collect::<Vec<_>>(),
        ["bacon"],
        "the hung plugin is not routed to"
    );
    feed.say("ann", "!never");
    feed.say("ann", "!bacon");
    assert_eq!(
        replies.wait_for(1),
        ["gives ann a strip of delicious bacon."]
    );
    drop(feed);
    engine.shutdown();
}

/// The load failure of a panicking `manifest` is its one line (the
/// process-level test in tests/demo.rs checks nothing else is printed).
#[test]
fn a_panicking_manifest_is_one_failure_line() {
    let path = lib("plugboard_fixture_manifest_panics");
    let err = open(&path).err().expect("the manifest panics");
    assert!(matches!(
        err.kind,
        LoadErrorKind::Manifest(plugboard_interface::ExtError::Panicked(_))
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: describing itself failed: panicked: fixture manifest panic",
            path.display()
        )
    );
}
