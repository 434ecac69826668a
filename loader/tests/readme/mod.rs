use plugboard_loader::library::{open, Candidate};
use plugboard_loader::{Engine, EngineConfig};

use crate::support::{lib, readme_plugin, TestClient};

#[test]
fn the_readme_plugin_builds_checks_and_answers() {
    let path = readme_plugin();
    let Candidate::Plugin(hello) = open(&path).unwrap() else {
        panic!("a plugin");
    };
    assert_eq!(hello.manifest.name.as_str(), "hello");
    assert_eq!(hello.manifest.commands[0].usage.as_str(), "!hello [name]");

    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_discord"))
        .library(&path)
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
    feed.say("ann", "!hello world");
    feed.say("ann", "!hello");
    drop(feed);
    engine.shutdown();
    assert_eq!(replies.texts(), ["hello, world!", "hello, ann!"]);
}
