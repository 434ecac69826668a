//! `discord`: a demo adapter for a Discord-like platform.
//!
//! It talks to the platform only through the client the host injects (the
//! demo REPL injects a stdin-fed mock), so it runs anywhere. Messages without
//! an author come from `discord-user`. Discord caps a message at 2000
//! characters, so longer replies are sent as several messages.

use plugboard_interface::adapter::ClientLink;
use plugboard_interface::log;
use plugboard_interface::prelude::*;

/// Discord's per-message limit, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// The demo Discord adapter.
pub struct Discord {
    link: ClientLink,
}

impl Adapter for Discord {
    fn info() -> AdapterInfo {
        AdapterInfo::new("discord", env!("CARGO_PKG_VERSION"))
            .description("demo Discord adapter driven by an injected mock client")
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        Ok(Discord {
            link: ClientLink::from_context(ctx, "discord-user")?,
        })
    }

    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        log::info!("listening on the injected client");
        self.link.listen(sink)
    }

    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        for chunk in chunks(reply.text(), MAX_MESSAGE_CHARS) {
            self.link.send(reply, chunk)?;
        }
        Ok(())
    }

    fn stop(&self) {
        self.link.close();
    }
}

/// Splits `text` into pieces of at most `max` characters, on character
/// boundaries; an empty text is one empty piece.
pub fn chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.char_indices().nth(max) {
            Some((cut, _)) => {
                rest = Some(&current[cut..]);
                Some(&current[..cut])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

export_adapter!(Discord);

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn long_replies_split_on_character_boundaries() {
        assert_eq!(chunks("short", 2000).collect::<Vec<_>>(), ["short"]);
        assert_eq!(chunks("", 3).collect::<Vec<_>>(), [""]);
        assert_eq!(chunks("ééééé", 2).collect::<Vec<_>>(), ["éé", "éé", "é"]);
        let long = "x".repeat(4500);
        let sizes: Vec<usize> = chunks(&long, 2000).map(str::len).collect();
        assert_eq!(sizes, [2000, 2000, 500]);
    }
}
