//! The small part of the IRC protocol (RFC 1459 / 2812) the adapter needs:
//! parsing server lines and splitting long messages.

/// One parsed line: `[:prefix] COMMAND params... [:trailing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The source (`nick!user@host` or a server name), if any.
    pub prefix: Option<&'a str>,
    /// The command or numeric reply.
    pub command: &'a str,
    /// The parameters, the trailing one last.
    pub params: Vec<&'a str>,
}

impl<'a> Line<'a> {
    /// Parses a line (without its `\r\n`); `None` for an empty line.
    pub fn parse(line: &'a str) -> Option<Line<'a>> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        let prefix = match rest.strip_prefix(':') {
            Some(after) => {
                let (prefix, tail) = after.split_once(' ')?;
                rest = tail;
                Some(prefix)
            }
            None => None,
        };
        let rest = rest.trim_start_matches(' ');
        let (head, trailing) = match rest.split_once(" :") {
            Some((head, trailing)) => (head, Some(trailing)),
            None => match rest.strip_prefix(':') {
                Some(trailing) => ("", Some(trailing)),
                None => (rest, None),
            },
        };
        let mut words = head.split(' ').filter(|w| !w.is_empty());
        let command = words.next()?;
        let mut params: Vec<&str> = words.collect();
        params.extend(trailing);
        Some(Line {
            prefix,
            command,
            params,
        })
    }

    /// The nick of the prefix (`nick` of `nick!user@host`).
    pub fn nick(&self) -> Option<&'a str> {
        self.prefix.map(|p| p.split('!').next().unwrap_or(p))
    }
}

/// The longest text of one `PRIVMSG <target> :<text>` that stays within
/// IRC's 512-byte line once the server prepends our `:nick!user@host `
/// (whose host part we cannot know: assume the longest usual one).
pub fn max_text_bytes(nick: &str, target: &str) -> usize {
    const LINE: usize = 512;
    const CRLF: usize = 2;
    const USER_AND_HOST: usize = 1 + 10 + 1 + 63; // !user@host
    let overhead = 1 + nick.len() + USER_AND_HOST + 1 + "PRIVMSG ".len() + target.len() + 2 + CRLF;
    LINE.saturating_sub(overhead).max(1)
}

/// Splits `text` into IRC messages: one per line of `text` (IRC has no
/// multi-line messages), each at most `max` bytes, cut at the last space
/// before the limit when there is one, never inside a UTF-8 character.
pub fn split(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim_end_matches('\r');
        while rest.len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s > 0) {
                cut = space;
            }
            out.push(&rest[..cut]);
            rest = rest[cut..].trim_start_matches(' ');
        }
        if !rest.trim().is_empty() {
            out.push(rest);
        }
    }
    out
}

/// Removes what would let a reply inject protocol commands.
pub fn sanitize(text: &str) -> String {
    text.chars().filter(|c| *c != '\r' && *c != '\0').collect()
}
