//! The messages that cross the boundary.
//!
//! The flow is `RawMessage` (adapter -> engine) -> `Ingress` (a parsed
//! command with its originator) -> `Invocation` (what one plugin command
//! sees, borrowed) -> `Egress` (the reply, delivered to the adapter the
//! command came from).

use abi_stable::{
    std_types::{ROption, RSlice, RStr, RString},
    StableAbi,
};

/// A chat message as an adapter saw it on its platform.
///
/// The engine stamps the adapter's name on it; the adapter only says who
/// wrote it, where, and what.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawMessage {
    /// The room/channel it was written in, where the platform has rooms.
    pub room: ROption<RString>,
    /// The author's identity on the platform (nick, user id, ...).
    pub identity: RString,
    /// The message text, unparsed.
    pub content: RString,
}

impl RawMessage {
    /// A message by `identity` in `room` (if any).
    pub fn new(room: Option<&str>, identity: &str, content: &str) -> Self {
        RawMessage {
            room: room.map(RString::from).into(),
            identity: identity.into(),
            content: content.into(),
        }
    }
}

/// Who sent a message and where: the address a reply goes back to.
///
/// `(adapter, room, identity)` is also the *conversation* key: the engine
/// delivers replies in order within a conversation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Originator {
    /// The name of the adapter the message arrived through.
    pub adapter: RString,
    /// The room/channel, where the platform has one.
    pub room: ROption<RString>,
    /// The sender's identity on the platform.
    pub identity: RString,
}

/// A command on its way into the engine: the text after the command prefix,
/// and who sent it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// Who sent it and where.
    pub originator: Originator,
    /// The command text, without the prefix (`bacon nelsk` for `!bacon nelsk`).
    pub command: RString,
}

/// A reply on its way out, addressed to the originator of the command.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// Where the reply goes: the adapter, room and identity of the command.
    pub originator: Originator,
    /// The reply text.
    pub text: RString,
}

/// A byte range of [`Invocation::text`]; `Span::NONE` for a capture group
/// that did not participate in the match.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start byte offset.
    pub start: u32,
    /// End byte offset (exclusive).
    pub end: u32,
}

impl Span {
    /// The marker for "this group did not match".
    pub const NONE: Span = Span {
        start: u32::MAX,
        end: u32::MAX,
    };
}

/// One call of one plugin command: everything borrowed from the engine for
/// the duration of the call, so a call allocates nothing.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// Index of the matched command in the plugin's manifest.
    pub command: u32,
    /// The adapter the command came through.
    pub adapter: RStr<'a>,
    /// The room it was sent in, if the platform has rooms.
    pub room: ROption<RStr<'a>>,
    /// The sender's identity.
    pub identity: RStr<'a>,
    /// The command text, without the prefix.
    pub text: RStr<'a>,
    /// The pattern's capture groups as spans of `text`; index 0 is the
    /// whole match.
    pub captures: RSlice<'a, Span>,
}

impl<'a> Invocation<'a> {
    /// Capture group `i` (0 is the whole match), if it participated.
    pub fn capture(&self, i: usize) -> Option<&'a str> {
        let span = self.captures.as_slice().get(i)?;
        if *span == Span::NONE {
            return None;
        }
        self.text
            .as_str()
            .get(span.start as usize..span.end as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_resolve_to_text_slices() {
        let spans = [
            Span { start: 0, end: 11 },
            Span { start: 6, end: 11 },
            Span::NONE,
            Span { start: 6, end: 99 },
        ];
        let inv = Invocation {
            command: 1,
            adapter: "irc".into(),
            room: ROption::RNone,
            identity: "irc-user".into(),
            text: "bacon nelsk".into(),
            captures: RSlice::from_slice(&spans),
        };
        assert_eq!(inv.capture(0), Some("bacon nelsk"));
        assert_eq!(inv.capture(1), Some("nelsk"));
        assert_eq!(inv.capture(2), None, "non-participating group");
        assert_eq!(inv.capture(3), None, "out-of-range span never panics");
        assert_eq!(inv.capture(4), None, "no such group");
    }

    #[test]
    fn raw_message_constructor() {
        let m = RawMessage::new(Some("#rust"), "nelsk", "!bacon");
        assert_eq!(m.room, ROption::RSome("#rust".into()));
        assert_eq!(m.identity.as_str(), "nelsk");
        assert_eq!(RawMessage::new(None, "a", "b").room, ROption::RNone);
    }
}
