//! A bot that embeds plugboard: its own in-process adapter (a console: lines
//! on stdin, replies on stdout), and plugins loaded from a directory.
//!
//! `cargo build --release && echo '!bacon' | cargo run --release --example embed -- target/release`
use std::io::BufRead;

use plugboard::interface::prelude::*;
use plugboard::{Engine, EngineConfig, LoadPath};

/// The bot's own platform: the terminal.
struct Console;

impl Adapter for Console {
    fn info() -> AdapterInfo {
        AdapterInfo::new("console", "0.1.0").description("stdin in, stdout out")
    }
    fn init(_ctx: &Context) -> Result<Self, Error> {
        Ok(Console)
    }
    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        for line in std::io::stdin().lock().lines() {
            sink.push(RawMessage::new(None, "you", &line?))?;
        }
        Ok(()) // end of input: the console is closed
    }
    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        println!("bot> {}", reply.text());
        Ok(())
    }
    fn stop(&self) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plugins = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/release".into());
    let engine = Engine::builder(EngineConfig::default())
        .load_path(&LoadPath::new([plugins]))
        .adapter::<Console>()
        .start()?;
    for failure in &engine.report().failures {
        eprintln!("skipped {failure}");
    }
    let plugins: Vec<&str> = engine.plugin_names().collect();
    eprintln!("plugins: {}", plugins.join(", "));
    // Until the console closes; then every command is answered, every thread joined.
    let report = engine.serve();
    eprintln!("done: {report}");
    Ok(())
}
