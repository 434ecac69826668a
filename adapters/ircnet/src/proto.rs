//! The small part of the IRC protocol (RFC 1459 / 2812) the adapter needs:
//! reading server lines within a length cap, parsing them, splitting long
//! messages, and choosing fallback nicks.

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
    /// IRCv3 message tags (`@key=value;... `), which a server may send, are
    /// skipped: the adapter uses none of them.
    pub fn parse(line: &'a str) -> Option<Line<'a>> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        if rest.starts_with('@') {
            rest = rest.split_once(' ')?.1.trim_start_matches(' ');
        }
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

/// The longest line the adapter reads, line ending included: IRC's 512
/// bytes plus the 8191 IRCv3 allows for message tags. Anything longer is
/// discarded as it arrives, never buffered.
pub const MAX_LINE_BYTES: usize = 8191 + 512;

/// What one [`LineReader::read`] step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A complete line is ready: [`LineReader::line`].
    Line,
    /// A line just went over the limit: it is being discarded, up to and
    /// including its `\n` (reported once per line, however long it gets).
    Overlong,
    /// Some bytes consumed, no line complete yet.
    Pending,
    /// End of the stream (a partial line is dropped).
    Eof,
}

/// Reads `\n`-terminated lines without ever holding more than `max` bytes
/// of one. Each [`read`](LineReader::read) consumes at most one buffer's
/// worth of input, so that a caller polling timers and a stop flag gets
/// control back even from a server that streams without end; a partial
/// line survives an error (a read timeout) and the next call goes on.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    max: usize,
    /// Inside an over-long line: skip to its end.
    discarding: bool,
    /// `buf` holds a complete line, to be cleared by the next read.
    complete: bool,
    received: u64,
}

impl LineReader {
    /// A reader for lines of at most `max` bytes, line ending included.
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            max,
            discarding: false,
            complete: false,
            received: 0,
        }
    }

    /// One step: consumes what `input` has buffered (filling it once if it
    /// is empty) up to the next `\n`. Errors of `input` are returned as
    /// they are, with the partial line kept.
    pub fn read(&mut self, input: &mut impl std::io::BufRead) -> std::io::Result<Read> {
        if self.complete {
            self.buf.clear();
            self.complete = false;
        }
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(Read::Eof);
        }
        let (part, used, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let event = if self.discarding {
            // The rest of a line already reported: drop it, buffer nothing.
            self.discarding = !ends;
            Read::Pending
        } else if self.buf.len() + used > self.max {
            self.buf.clear();
            self.discarding = !ends;
            Read::Overlong
        } else {
            self.buf.extend_from_slice(part);
            self.complete = ends;
            if ends {
                Read::Line
            } else {
                Read::Pending
            }
        };
        input.consume(used);
        self.received += used as u64;
        Ok(event)
    }

    /// The line of the last [`Read::Line`], without its `\r\n`.
    pub fn line(&self) -> &[u8] {
        self.buf.strip_suffix(b"\r").unwrap_or(&self.buf)
    }

    /// Bytes consumed so far, discarded ones included (a liveness signal).
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// The nick length assumed until the server announces `NICKLEN` (RFC 2812's).
pub const DEFAULT_NICKLEN: usize = 9;

/// The nicks to try, in order, when the server refuses the previous one:
/// `nick` as configured, then `nick_`, `nick1`, `nick2`, ... each cut (at a
/// character boundary, keeping its suffix) to `nicklen` bytes, without
/// repeats, `count` at most.
pub fn nick_candidates(nick: &str, nicklen: usize, count: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(count);
    let mut n = 0usize;
    // Each step adds a distinct suffix, so repeats are rare (only when the
    // configured nick is itself one of its fallbacks); bound the scan anyway.
    while out.len() < count && n < count.saturating_mul(2) + 2 {
        let candidate = match n {
            0 => nick.to_owned(),
            _ => {
                let suffix = if n == 1 {
                    "_".to_owned()
                } else {
                    (n - 1).to_string()
                };
                let mut cut = nicklen.saturating_sub(suffix.len()).min(nick.len());
                while !nick.is_char_boundary(cut) {
                    cut -= 1;
                }
                // Keep at least one character of the nick, even past the
                // limit: a nick may not start with a digit.
                if cut == 0 {
                    cut = nick.chars().next().map_or(0, char::len_utf8);
                }
                format!("{}{suffix}", &nick[..cut])
            }
        };
        if !out.contains(&candidate) {
            out.push(candidate);
        }
        n += 1;
    }
    out
}

/// The `NICKLEN` a `005` (`RPL_ISUPPORT`) line announces, if any.
pub fn isupport_nicklen(params: &[&str]) -> Option<usize> {
    // `005 <our nick> TOKEN[=value]... :are supported by this server`
    params
        .iter()
        .skip(1)
        .find_map(|token| token.strip_prefix("NICKLEN="))
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
}
