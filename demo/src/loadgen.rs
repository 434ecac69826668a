//! `plugboard bench`: a load generator that drives the real engine with the
//! real libraries, through the same path as the REPL (input reader, demux,
//! mock clients, adapters, plugins, printer), on the standard workload.
//!
//! The workload follows `shared/bench/workload.py` (40% discord, 40% irc,
//! 10% unknown adapter, 10% garbage) except that every bacon command carries
//! its sequence number as the nick (`irc !bacon s123`), so that each reply
//! can be matched to its line: that is how latency, reorders and losses are
//! counted.
//!
//! The *flood* workload ([`Workload::Flood`]) measures overload shedding:
//! one user (`discord@flooder`) sends 9 lines in 10, as fast as the input
//! goes, and every 10th line comes from a new *light* user with a single
//! command (`discord@l7` / `irc@l8`, alternating adapters). Each command
//! is tagged with its ordinal in its class (`!bacon f123`, `!bacon l7`),
//! and so is each "busy" reply that names its command, so the report can
//! say which share of each class was shed, and check that every reply to
//! the flooder, busy ones included, came in command order.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::input::Input;
use crate::{Error, Options};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Input lines.
    pub lines: u64,
    /// Offered load in lines per second; 0 means as fast as possible.
    pub rate: u64,
    /// Which lines.
    pub workload: Workload,
}

/// The shape of the generated lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workload {
    /// `shared/bench/workload.py`'s mix, two conversations.
    #[default]
    Standard,
    /// One flooding user (9 lines in 10) and a new light user, with a
    /// single command, every 10th line.
    Flood,
}

/// What the flood workload measured, per class of user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shed {
    /// Commands sent.
    pub commands: u64,
    /// Commands answered by the plugin.
    pub served: u64,
    /// Commands answered "busy" by a reply that names them.
    pub busy: u64,
}

impl Shed {
    /// Commands not answered by the plugin, in percent of those sent.
    pub fn shed_percent(&self) -> f64 {
        if self.commands == 0 {
            return 0.0;
        }
        (self.commands - self.served.min(self.commands)) as f64 * 100.0 / self.commands as f64
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Input lines.
    pub lines: u64,
    /// Wall time from the first line to the last reply.
    pub elapsed: Duration,
    /// Bacon replies received.
    pub replies: u64,
    /// Bacon commands sent (each should get exactly one reply).
    pub expected: u64,
    /// Replies that came before a reply to an earlier line of the same
    /// conversation.
    pub reorders: u64,
    /// Latency percentiles of bacon commands, line produced to reply printed.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Worst.
    pub max: Duration,
    /// Peak resident set size of this process, in KiB (includes the
    /// generator's own bookkeeping: 16 bytes per line).
    pub peak_rss_kib: Option<u64>,
    /// The flood workload's classes, flooder then light users (`None` for
    /// the standard workload).
    pub flood: Option<[Shed; 2]>,
    /// "busy" replies that do not say which command they answer (the
    /// adapter's own, when the engine refuses a push).
    pub anonymous_busy: u64,
}

impl Report {
    /// No reorders, and every command answered exactly once (by the plugin,
    /// or "busy" where the workload allows it).
    pub fn clean(&self) -> bool {
        if self.reorders > 0 {
            return false;
        }
        match &self.flood {
            None => self.replies == self.expected,
            Some(classes) => {
                let answered: u64 = classes.iter().map(|c| c.served + c.busy).sum();
                answered + self.anonymous_busy == self.expected
            }
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "lines:      {} in {:.3} s = {:.0} lines/s",
            self.lines,
            secs,
            self.lines as f64 / secs
        )?;
        writeln!(
            f,
            "replies:    {} = {:.0} replies/s",
            self.replies,
            self.replies as f64 / secs
        )?;
        writeln!(
            f,
            "latency:    p50 {:?}, p99 {:?}, max {:?}",
            self.p50, self.p99, self.max
        )?;
        match self.peak_rss_kib {
            Some(kib) => writeln!(f, "peak RSS:   {:.1} MB", kib as f64 / 1024.0)?,
            None => writeln!(f, "peak RSS:   unknown")?,
        }
        writeln!(f, "reorders:   {}", self.reorders)?;
        let Some(classes) = &self.flood else {
            return write!(
                f,
                "losses:     {}",
                self.expected.saturating_sub(self.replies)
            );
        };
        for (name, class) in ["flooder", "light"].iter().zip(classes) {
            writeln!(
                f,
                "{:<11} {} commands: {} served, {} answered busy, {:.1}% shed",
                format!("{name}:"),
                class.commands,
                class.served,
                class.busy,
                class.shed_percent()
            )?;
        }
        writeln!(f, "busy (anonymous): {}", self.anonymous_busy)?;
        let answered: u64 = classes.iter().map(|c| c.served + c.busy).sum();
        write!(
            f,
            "losses:     {}",
            self.expected.saturating_sub(answered + self.anonymous_busy)
        )
    }
}

const GARBAGE: [&str; 3] = ["test", "discord hello world", "irc !unknowncmd foo"];

/// Line `i` of the workload, and whether it is a bacon command (and on
/// which conversation: 0 discord, 1 irc).
fn line(i: u64, out: &mut Vec<u8>) -> Option<usize> {
    match i % 10 {
        4 => {
            out.extend_from_slice(GARBAGE[((i / 10) % 3) as usize].as_bytes());
            out.push(b'\n');
            None
        }
        5 => {
            out.extend_from_slice(b"nulladapter !bacon\n");
            None
        }
        k => {
            let conv = (k % 2) as usize;
            let adapter = if conv == 0 { "discord" } else { "irc" };
            let _ = writeln!(out, "{adapter} !bacon s{i}");
            Some(conv)
        }
    }
}

/// Line `i` of the flood workload: one of the flooder's commands, or light
/// user `i / 10`'s only one.
fn flood_line(i: u64, out: &mut Vec<u8>) {
    if i % 10 == 9 {
        let user = i / 10;
        let adapter = if user % 2 == 0 { "discord" } else { "irc" };
        let _ = writeln!(out, "{adapter}@l{user} !bacon l{user}");
    } else {
        let _ = writeln!(out, "discord@flooder !bacon f{}", i / 10 * 9 + i % 10);
    }
}

/// The line of the flooder's command `n` / of light user `n`'s.
fn flood_index(class: usize, n: u64) -> u64 {
    if class == 0 {
        n / 9 * 10 + n % 9
    } else {
        n * 10 + 9
    }
}

/// A reply of the flood workload: which class, which command (ordinal in
/// its class), and how many commands it answers "busy" (0: a plugin reply).
#[derive(Debug, PartialEq, Eq)]
enum FloodReply {
    Answer {
        class: usize,
        n: u64,
        busy: u64,
    },
    /// A "busy" reply that names no command.
    Anonymous,
}

/// `[discord] gives f12 a strip ...` -> flooder's 12, served;
/// `[irc] busy: ... `!bacon l3` was dropped` -> light user 3, one busy;
/// `... `!bacon f12` and 40 more were dropped` -> flooder's 12 to 52, busy.
fn parse_flood_reply(line: &[u8]) -> Option<FloodReply> {
    let text = std::str::from_utf8(line).ok()?;
    let body = text.split_once("] ")?.1;
    let tag = |s: &str| -> Option<(usize, u64)> {
        let class = match s.as_bytes().first()? {
            b'f' => 0,
            b'l' => 1,
            _ => return None,
        };
        let digits: String = s[1..].chars().take_while(char::is_ascii_digit).collect();
        Some((class, digits.parse().ok()?))
    };
    if let Some(rest) = body.strip_prefix("gives ") {
        let (class, n) = tag(rest)?;
        return Some(FloodReply::Answer { class, n, busy: 0 });
    }
    if !body.starts_with("busy") {
        return None;
    }
    let Some((_, named)) = body.split_once("`!bacon ") else {
        return Some(FloodReply::Anonymous);
    };
    let (class, n) = tag(named)?;
    let more = named
        .split_once("` and ")
        .and_then(|(_, m)| m.split(' ').next()?.parse().ok())
        .unwrap_or(0u64);
    Some(FloodReply::Answer {
        class,
        n,
        busy: 1 + more,
    })
}

struct Shared {
    start: Instant,
    workload: Workload,
    /// Nanoseconds after `start` at which line `i` was produced.
    sent: Vec<AtomicU64>,
    received: Mutex<Received>,
}

#[derive(Default)]
struct Received {
    latencies: Vec<u64>,
    last: [Option<u64>; 2],
    reorders: u64,
    partial: Vec<u8>,
    done_at: Option<Instant>,
    /// Flood workload: per class, and the flooder's next command due.
    classes: [Shed; 2],
    flooder_next: u64,
    anonymous_busy: u64,
}

impl Received {
    /// Counts one reply of the flood workload received at `now`.
    fn flood(&mut self, shared: &Shared, reply: FloodReply, now: u64) {
        let FloodReply::Answer { class, n, busy } = reply else {
            self.anonymous_busy += 1;
            return;
        };
        if busy == 0 {
            self.classes[class].served += 1;
            let sent = shared.sent[flood_index(class, n) as usize].load(Ordering::Relaxed);
            self.latencies.push(now.saturating_sub(sent));
        } else {
            self.classes[class].busy += busy;
        }
        // The flooder's replies must come in command order, each one
        // answering the commands after the previous one's.
        if class == 0 {
            if n < self.flooder_next {
                self.reorders += 1;
            }
            self.flooder_next = self.flooder_next.max(n + busy.max(1));
        }
    }
}

struct Generator {
    shared: Arc<Shared>,
    load: Load,
    next: u64,
    pending: Vec<u8>,
    pos: usize,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.pending.len() {
            if self.next >= self.load.lines {
                return Ok(0);
            }
            self.pending.clear();
            self.pos = 0;
            // Unpaced: a block of lines per read. Paced: wait for the next
            // line's scheduled time, then produce every line due by now (a
            // sleep overshoots, and the schedule must not drift).
            let batch = if self.load.rate == 0 {
                1024
            } else {
                let due = |i: u64| Duration::from_nanos(i * 1_000_000_000 / self.load.rate);
                let now = self.shared.start.elapsed();
                if due(self.next) > now {
                    std::thread::sleep(due(self.next) - now);
                }
                let now = self.shared.start.elapsed();
                let mut n = 1;
                while n < 1024 && due(self.next + n) <= now {
                    n += 1;
                }
                n
            };
            let stamp = self.shared.start.elapsed().as_nanos() as u64;
            for _ in 0..batch {
                if self.next >= self.load.lines {
                    break;
                }
                self.shared.sent[self.next as usize].store(stamp, Ordering::Relaxed);
                match self.load.workload {
                    Workload::Standard => {
                        line(self.next, &mut self.pending);
                    }
                    Workload::Flood => flood_line(self.next, &mut self.pending),
                }
                self.next += 1;
            }
        }
        let n = (self.pending.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct Meter {
    shared: Arc<Shared>,
}

impl Write for Meter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let now = self.shared.start.elapsed().as_nanos() as u64;
        let mut r = self
            .shared
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        r.partial.extend_from_slice(buf);
        let mut consumed = 0;
        while let Some(nl) = r.partial[consumed..].iter().position(|&b| b == b'\n') {
            let end = consumed + nl;
            let line = &r.partial[consumed..end];
            consumed = end + 1;
            if self.shared.workload == Workload::Flood {
                if let Some(reply) = parse_flood_reply(line) {
                    r.flood(&self.shared, reply, now);
                }
                continue;
            }
            if let Some((conv, i)) = parse_reply(line) {
                let sent = self.shared.sent[i as usize].load(Ordering::Relaxed);
                r.latencies.push(now.saturating_sub(sent));
                if r.last[conv].is_some_and(|last| last > i) {
                    r.reorders += 1;
                }
                r.last[conv] = Some(i);
            }
        }
        r.partial.drain(..consumed);
        r.done_at = Some(Instant::now());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `[irc] gives s123 a strip ...` -> (1, 123).
fn parse_reply(line: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let (conv, rest) = if let Some(rest) = text.strip_prefix("[discord] gives s") {
        (0, rest)
    } else {
        (1, text.strip_prefix("[irc] gives s")?)
    };
    let digits = rest.split(' ').next()?;
    Some((conv, digits.parse().ok()?))
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_nanos(sorted[i])
}

/// Runs the workload through a full REPL session.
pub fn run(options: &Options, load: Load) -> Result<Report, Error> {
    let shared = Arc::new(Shared {
        start: Instant::now(),
        workload: load.workload,
        sent: (0..load.lines).map(|_| AtomicU64::new(0)).collect(),
        received: Mutex::default(),
    });
    let generator = Generator {
        shared: Arc::clone(&shared),
        load,
        next: 0,
        pending: Vec::new(),
        pos: 0,
    };
    let expected = match load.workload {
        Workload::Standard => (0..load.lines).filter(|i| !matches!(i % 10, 4 | 5)).count() as u64,
        Workload::Flood => load.lines,
    };
    let input = Input::spawn(generator, None)?;
    crate::run(
        options,
        input,
        Meter {
            shared: Arc::clone(&shared),
        },
        io::sink(),
    )?;
    let mut received = shared.received.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = received
        .done_at
        .map_or(Duration::ZERO, |t| t.duration_since(shared.start));
    received.latencies.sort_unstable();
    let flood = (load.workload == Workload::Flood).then(|| {
        let mut classes = std::mem::take(&mut received.classes);
        classes[1].commands = load.lines / 10;
        classes[0].commands = load.lines - classes[1].commands;
        classes
    });
    let l = &received.latencies;
    Ok(Report {
        lines: load.lines,
        elapsed,
        replies: l.len() as u64,
        expected,
        reorders: received.reorders,
        p50: percentile(l, 0.5),
        p99: percentile(l, 0.99),
        max: percentile(l, 1.0),
        peak_rss_kib: peak_rss_kib(),
        flood,
        anonymous_busy: received.anonymous_busy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_has_the_standard_shape_and_replies_parse() {
        let mut text = Vec::new();
        let kinds: Vec<Option<usize>> = (0..20).map(|i| line(i, &mut text)).collect();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "discord !bacon s0");
        assert_eq!(lines[1], "irc !bacon s1");
        assert_eq!(lines[4], "test");
        assert_eq!(lines[5], "nulladapter !bacon");
        assert_eq!(lines[14], "discord hello world");
        assert_eq!(kinds.iter().filter(|k| k.is_some()).count(), 16);
        assert_eq!(
            parse_reply(b"[irc] gives s42 a strip of delicious bacon as a gift from irc-user"),
            Some((1, 42))
        );
        assert_eq!(
            parse_reply(b"[irc] no command matches `!unknowncmd foo`"),
            None
        );
    }

    #[test]
    fn the_flood_workload_tags_each_command_with_its_ordinal_and_replies_parse() {
        let mut text = Vec::new();
        for i in 0..20 {
            flood_line(i, &mut text);
        }
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "discord@flooder !bacon f0");
        assert_eq!(lines[8], "discord@flooder !bacon f8");
        assert_eq!(lines[9], "discord@l0 !bacon l0");
        assert_eq!(lines[10], "discord@flooder !bacon f9");
        assert_eq!(lines[19], "irc@l1 !bacon l1");
        assert_eq!(flood_index(0, 9), 10);
        assert_eq!(flood_index(1, 1), 19);
        assert_eq!(
            parse_flood_reply(
                b"[discord] gives f12 a strip of delicious bacon as a gift from flooder"
            ),
            Some(FloodReply::Answer {
                class: 0,
                n: 12,
                busy: 0
            })
        );
        assert_eq!(
            parse_flood_reply(
                b"[irc] busy: too many of your commands are queued; `!bacon l3` was dropped"
            ),
            Some(FloodReply::Answer {
                class: 1,
                n: 3,
                busy: 1
            })
        );
        assert_eq!(
            parse_flood_reply(
                b"[discord] busy: too many of your commands are queued; `!bacon f12` and 40 more were dropped"
            ),
            Some(FloodReply::Answer { class: 0, n: 12, busy: 41 })
        );
        assert_eq!(
            parse_flood_reply(
                b"[discord] busy: the bot is overloaded; your message was dropped, try again"
            ),
            Some(FloodReply::Anonymous)
        );
        assert_eq!(parse_flood_reply(b"[discord] something else"), None);
    }
}
