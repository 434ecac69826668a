use std::collections::HashMap;
use std::time::{Duration, Instant};

use plugboard_interface::prelude::*;
use plugboard_loader::{Engine, EngineConfig, WhenFull};

use crate::support::{lib, TestClient};

/// How many commands a reply answers: one, or for a busy reply the
/// command it names plus the `N more` refused after it.
pub fn answers(text: &str) -> u64 {
    match text.split_once("` and ") {
        Some((_, more)) if text.starts_with("busy:") => {
            1 + more
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("`and N more`")
        }
        _ => 1,
    }
}

/// Slow enough that one worker cannot keep up with a flood: each call
/// takes 300 µs. `!work <tag>` replies `did <tag>`.
struct Paced;

impl Plugin for Paced {
    fn manifest() -> Manifest<Self> {
        Manifest::new("paced", "1.0.0").command(
            "work",
            r"work\s+(\S+)",
            "!work <tag>",
            |_, call| {
                std::thread::sleep(Duration::from_micros(300));
                Ok(format!("did {}", call.capture(1).unwrap_or("")).into())
            },
        )
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Paced)
    }
}

/// What one reply says about the commands of its conversation: the
/// first one it answers (its sequence number) and how many.
fn parse(text: &str) -> (u64, u64, bool) {
    let (tag, busy) = match text.strip_prefix("did ") {
        Some(tag) => (tag, false),
        None => {
            let named = text
                .split_once("`!work ")
                .unwrap_or_else(|| {
                    panic!("neither a reply nor a busy reply naming its command: {text}")
                })
                .1;
            (named.split('`').next().unwrap(), true)
        }
    };
    let seq = tag[1..].parse().unwrap_or_else(|_| panic!("tag in {text}"));
    (seq, answers(text), busy)
}

/// A flooding conversation (thousands of commands to a plugin that one
/// worker cannot keep up with) and many light ones (one command each):
/// the light ones are answered by the plugin, the flooder absorbs the
/// refusals, and every conversation's replies, busy ones included, come
/// in the order of its commands.
#[test]
fn with_reject_the_flooder_is_shed_and_light_users_are_served_in_order() {
    const FLOOD: u64 = 3000;
    const LIGHT: u64 = 50;
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        workers: 1,
        ingress_capacity: 4,
        execution_capacity: 2,
        max_pending: 64,
        when_full: WhenFull::Reject,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .plugin::<Paced>()
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    assert!(engine.report().failures.is_empty());
    let every = FLOOD / LIGHT;
    for i in 0..FLOOD {
        feed.say("flooder", &format!("!work f{i}"));
        if i % every == every / 2 {
            let user = i / every;
            feed.say(&format!("light{user}"), &format!("!work l{user}"));
        }
    }
    // Every command answered once: wait for that many answers.
    let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered < FLOOD + LIGHT {
        let reply = replies
            .receiver()
            .recv_deadline(deadline)
            .unwrap_or_else(|_| panic!("only {answered} commands answered"));
        let text = reply.text.into_string();
        answered += answers(&text);
        by_user
            .entry(reply.user.unwrap().into_string())
            .or_default()
            .push(text);
    }
    drop(feed);
    engine.shutdown();
    assert!(
        replies.texts().is_empty(),
        "nothing more than one answer each"
    );

    // Order: each reply answers the commands right after the previous one's.
    let mut shed = HashMap::new();
    for (user, texts) in &by_user {
        let mut next = if user == "flooder" {
            0
        } else {
            user["light".len()..].parse().unwrap()
        };
        for text in texts {
            let (seq, count, busy) = parse(text);
            assert_eq!(seq, next, "{user}: `{text}` out of order in {texts:?}");
            next += count;
            if busy {
                *shed.entry(user == "flooder").or_insert(0) += count;
            }
        }
    }
    let light_served = by_user
        .iter()
        .filter(|(user, _)| *user != "flooder")
        .flat_map(|(_, texts)| texts)
        .filter(|t| t.starts_with("did l"))
        .count() as u64;
    assert!(
        light_served * 100 >= LIGHT * 99,
        "light users served by the plugin: {light_served} of {LIGHT}"
    );
    let flooder_shed = shed.get(&true).copied().unwrap_or(0);
    assert!(
        flooder_shed > FLOOD / 2,
        "the flooder absorbs the refusals: {flooder_shed} of {FLOOD} shed"
    );
    assert_eq!(shed.get(&false).copied().unwrap_or(0) + light_served, LIGHT);
}

/// Issue 10: busy replies still waiting (shared ones included) when the
/// shutdown grace ends are delivered and counted as answered, never lost
/// as "abandoned" (a shared busy reply used to be refused as one command).
#[test]
fn busy_replies_pending_at_shutdown_are_answered_and_counted() {
    const SENT: u64 = 20_000;
    let (feed, client, replies) = TestClient::triple();
    let engine = Engine::builder(EngineConfig {
        workers: 1,
        ingress_capacity: 4,
        execution_capacity: 2,
        max_pending: 8,
        when_full: WhenFull::Reject,
        shutdown_grace: Duration::from_millis(1),
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_discord"))
    .plugin::<Paced>()
    .clients(move |_| Some(client.clone()))
    .start()
    .unwrap();
    for i in 0..SENT {
        feed.say("flooder", &format!("!work f{i}"));
    }
    drop(feed);
    let report = engine.shutdown();
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(report.answered + report.refused, SENT, "{report:?}");
    // Every command has its answer: replies, busy replies (possibly shared)
    // and refusals add up to what was sent.
    let answers_seen: u64 = replies.texts().iter().map(|t| answers(t)).sum();
    assert_eq!(answers_seen, SENT);
}

/// An adapter that cannot deliver anything (its platform is gone).
struct Mute;

impl Adapter for Mute {
    fn info() -> AdapterInfo {
        AdapterInfo::new("mute", "1.0.0")
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Mute)
    }
    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        for i in 0..3 {
            sink.push(RawMessage::new(None, "u", &format!("!work m{i}")))?;
        }
        Ok(())
    }
    fn send(&self, _: &Outgoing<'_>) -> Result<(), Error> {
        Err(Error::msg("the platform is gone"))
    }
    fn stop(&self) {}
}

/// Issue 10: a reply the adapter failed to send is not "answered" for the
/// shutdown report: it is counted as undelivered (the REPL exits 3).
#[test]
fn replies_an_adapter_fails_to_send_are_counted_undelivered() {
    let engine = Engine::builder(EngineConfig::default())
        .plugin::<Paced>()
        .adapter::<Mute>()
        .start()
        .unwrap();
    let report = engine.serve();
    assert_eq!(report.undelivered, 3, "{report:?}");
}
