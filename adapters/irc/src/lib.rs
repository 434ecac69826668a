//! `irc`: a demo adapter for an IRC-like platform.
//!
//! It talks to the platform only through the client the host injects (the
//! demo REPL injects a stdin-fed mock). Messages without an author come from
//! `irc-user`. IRC has no multi-line messages, so a reply is sent line by
//! line, skipping blank lines. (The real IRC adapter, with the 512-byte
//! protocol limit and flood control, is a separate crate.)

use plugboard_interface::adapter::ClientLink;
use plugboard_interface::prelude::*;

/// The demo IRC adapter.
pub struct Irc {
    link: ClientLink,
}

impl Adapter for Irc {
    fn info() -> AdapterInfo {
        AdapterInfo::new("irc", env!("CARGO_PKG_VERSION"))
            .description("demo IRC adapter driven by an injected mock client")
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        Ok(Irc {
            link: ClientLink::from_context(ctx, "irc-user")?,
        })
    }

    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        self.link.listen(sink)
    }

    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        for line in irc_lines(reply.text()) {
            self.link.send(reply, line)?;
        }
        Ok(())
    }

    fn stop(&self) {
        self.link.close();
    }
}

/// The IRC messages a reply becomes: its non-blank lines, without `\r`.
pub fn irc_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

export_adapter!(Irc);

#[cfg(test)]
mod tests {
    use super::irc_lines;

    #[test]
    fn multi_line_replies_become_one_message_per_line() {
        assert_eq!(irc_lines("one").collect::<Vec<_>>(), ["one"]);
        assert_eq!(irc_lines("a\r\n\n  \nb\n").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(irc_lines("").count(), 0);
    }
}
