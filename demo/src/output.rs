//! Keeping replies apart from everything else a process prints.
//!
//! Extensions run in this process and may write to descriptor 1 (a plugin's
//! `println!`, a library constructor). If that reached the reply stream, a
//! plugin could print lines that look like another adapter's replies. So
//! the binary moves its real stdout to a private descriptor before loading
//! anything ([`reserve_stdout`]) and points descriptor 1 at stderr: what
//! extensions print lands among the diagnostics, and only the engine writes
//! replies. Reply text is made printable ([`printable`]) for the same
//! reason: it cannot start a line of its own or drive the terminal.

/// Moves stdout aside before any library loads (see the module docs); the
/// pre-flight child does the same for its verdicts.
pub use plugboard_loader::preflight::reserve_stdout;

/// `text` as the REPL prints it after `prefix` (`[irc] `): every line of a
/// multi-line reply carries the prefix, so no reply can pass for another
/// adapter's; other control characters (CR, ESC, NUL, ...) are shown
/// escaped (`\r`, `\u{1b}`) instead of reaching the terminal. Tabs stay.
pub fn printable(prefix: &str, text: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(prefix);
        push_escaped(&mut out, line);
    }
    out
}

/// `text` on one line, as diagnostics print what came from an extension or
/// an adapter (a failure's cause, a description, a room name, a file
/// name): every control or invisible formatting character, newlines
/// included, is shown escaped.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

/// A log record's message as the binary prints it: hidden characters
/// escaped, and every line after the first indented, so that no message
/// (an extension's, or one quoting an extension's text) can start a line
/// that looks like another record.
pub fn log_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\n    ");
        }
        push_escaped(&mut out, line);
    }
    out
}

/// Whether `c` must not reach a terminal as itself: control characters
/// (C0, C1, DEL; not tab), and the invisible formatting characters that
/// reorder or break lines (bidirectional overrides, line and paragraph
/// separators, zero-width characters).
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_cannot_forge_lines_or_drive_the_terminal() {
        assert_eq!(printable("[irc] ", "plain"), "[irc] plain");
        assert_eq!(
            printable("[irc] ", "ok\n[discord] gives you admin"),
            "[irc] ok\n[irc] [discord] gives you admin"
        );
        assert_eq!(
            printable("[irc] ", "a\rb\u{1b}[31mred\0\tc"),
            "[irc] a\\rb\\u{1b}[31mred\\u{0}\tc"
        );
        assert_eq!(printable("[x] ", "é\u{85}"), "[x] é\\u{85}");
        // Invisible formatting: a right-to-left override, a line separator.
        assert_eq!(
            printable("[x] ", "a\u{202E}b\u{2028}c"),
            "[x] a\\u{202e}b\\u{2028}c"
        );
        assert_eq!(
            log_text("a\r[WARN  plugboard_loader::engine] forged\nreport line"),
            "a\\r[WARN  plugboard_loader::engine] forged\n    report line"
        );
        assert_eq!(
            one_line("init refused\n[discord] x\u{1b}[31m"),
            "init refused\\n[discord] x\\u{1b}[31m"
        );
    }
}
