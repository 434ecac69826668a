//! `irc`: a demo adapter for an IRC-like platform.
//!
//! It talks to the platform only through the client the host injects (the
//! demo REPL injects a stdin-fed mock), so it runs anywhere. Messages without
//! an author come from `irc-user`, and replies are sent to the channel
//! the command came from.

use plugboard_interface::adapter::relay_client;
use plugboard_interface::host::{ClientBox, ClientMessage};
use plugboard_interface::prelude::*;

/// The demo IRC adapter.
pub struct Irc {
    client: ClientBox,
}

impl Adapter for Irc {
    fn info() -> AdapterInfo {
        AdapterInfo::new("irc", env!("CARGO_PKG_VERSION"))
            .description("demo IRC adapter driven by an injected mock client")
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        let client = ctx
            .client()
            .ok_or_else(|| Error::config("the irc demo adapter needs an injected client"))?;
        Ok(Irc { client })
    }

    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        relay_client(&self.client, sink, |m| RawMessage {
            room: m.room,
            identity: m.user.unwrap_or_else(|| "irc-user".into()),
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

export_adapter!(Irc);
