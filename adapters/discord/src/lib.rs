//! `discord`: a demo adapter for a Discord-like platform.
//!
//! It talks to the platform only through the client the host injects (the
//! demo REPL injects a stdin-fed mock), so it runs anywhere. Messages without
//! an author come from `discord-user`, and replies are sent to the channel
//! the command came from.

use plugboard_interface::adapter::relay_client;
use plugboard_interface::host::{ClientBox, ClientMessage};
use plugboard_interface::log;
use plugboard_interface::prelude::*;

/// The demo Discord adapter.
pub struct Discord {
    client: ClientBox,
}

impl Adapter for Discord {
    fn info() -> AdapterInfo {
        AdapterInfo::new("discord", env!("CARGO_PKG_VERSION"))
            .description("demo Discord adapter driven by an injected mock client")
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        let client = ctx
            .client()
            .ok_or_else(|| Error::config("the discord demo adapter needs an injected client"))?;
        Ok(Discord { client })
    }

    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        log::info!("listening on the injected client");
        relay_client(&self.client, sink, |m| RawMessage {
            room: m.room,
            identity: m.user.unwrap_or_else(|| "discord-user".into()),
            content: m.text,
        })
    }

    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        let message = ClientMessage {
            room: reply.room().map(Into::into).into(),
            user: Some(reply.recipient().into()).into(),
            text: reply.text().into(),
        };
        self.client.send(&message).into_result()?;
        Ok(())
    }

    fn stop(&self) {
        self.client.close();
    }
}

export_adapter!(Discord);
