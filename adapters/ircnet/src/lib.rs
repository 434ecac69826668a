//! `ircnet`: a real IRC adapter.
//!
//! Connects over TCP, registers (NICK/USER), joins the configured channels,
//! answers PING, and reconnects with exponential backoff (rejoining) when the
//! connection drops. A channel message becomes a command from `<nick>` in
//! room `<#channel>`; a private message one from `<nick>` with no room.
//! Replies go back where the command came from, split to fit IRC's 512-byte
//! lines, and outbound messages are throttled by a token bucket (`burst`
//! messages at once, then `rate` per second), as sopel's flood settings do.
//!
//! It does not trust the server: a line longer than 8703 bytes (IRC's 512
//! plus 8191 for IRCv3 message tags) is discarded as it arrives, never
//! buffered; every wait on the server is bounded (registration, each write,
//! silence); a refused nick is replaced by a bounded number of fallbacks
//! (`nick_`, `nick1`, `nick2`, ... cut to the server's `NICKLEN`). Each of
//! these ends the connection with a warning saying why, and the adapter
//! reconnects with backoff.
//!
//! Configuration (`[adapters.ircnet]`):
//!
//! ```toml
//! server = "irc.example.org"   # required
//! port = 6667
//! nick = "plugboard"
//! channels = ["#plugboard"]
//! flood = { burst = 4, rate = 2.0 }
//! reconnect = { min_ms = 1000, max_ms = 60000 }
//! register_timeout_ms = 30000  # no welcome (001) by then: reconnect
//! write_timeout_ms = 10000     # a line not written by then: reconnect
//! ping_after_ms = 120000       # silence before we PING the server
//! ping_timeout_ms = 30000      # no traffic after our PING by then: reconnect
//! ```
//!
//! The protocol layer is the small `proto` module (reading, parsing,
//! splitting, nick fallbacks) rather than the `irc` crate, which would bring
//! an async runtime into every engine that loads this library; see
//! ARCHITECTURE.md.

pub mod proto;

use std::io::{self, BufReader, ErrorKind, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use plugboard_interface::host::{shutting_down_reply, PushError};
use plugboard_interface::log;
use plugboard_interface::prelude::*;
use plugboard_interface::serde::Deserialize;

use proto::{LineReader, Read, DEFAULT_NICKLEN, MAX_LINE_BYTES};

#[derive(Debug, Clone, Deserialize)]
#[serde(crate = "plugboard_interface::serde", deny_unknown_fields)]
struct Config {
    server: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_nick")]
    nick: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    flood: Flood,
    #[serde(default)]
    reconnect: Reconnect,
    #[serde(default = "default_register_timeout_ms")]
    register_timeout_ms: u64,
    #[serde(default = "default_write_timeout_ms")]
    write_timeout_ms: u64,
    #[serde(default = "default_ping_after_ms")]
    ping_after_ms: u64,
    #[serde(default = "default_ping_timeout_ms")]
    ping_timeout_ms: u64,
}

fn default_port() -> u16 {
    6667
}

fn default_nick() -> String {
    "plugboard".to_owned()
}

fn default_register_timeout_ms() -> u64 {
    30_000
}

fn default_write_timeout_ms() -> u64 {
    10_000
}

fn default_ping_after_ms() -> u64 {
    120_000
}

fn default_ping_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(crate = "plugboard_interface::serde", default, deny_unknown_fields)]
struct Flood {
    burst: u32,
    rate: f64,
}

impl Default for Flood {
    fn default() -> Self {
        Flood {
            burst: 4,
            rate: 2.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(crate = "plugboard_interface::serde", default, deny_unknown_fields)]
struct Reconnect {
    min_ms: u64,
    max_ms: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            min_ms: 1000,
            max_ms: 60_000,
        }
    }
}

/// How long `send` waits for a (re)connection before giving up on a reply.
const SEND_WAIT: Duration = Duration::from_secs(30);
/// How often a blocked read looks at the stop flag and the timers.
const POLL: Duration = Duration::from_millis(200);
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Nicks tried per connection (the configured one and its fallbacks).
const NICK_ATTEMPTS: usize = 10;
/// At most one over-long-line warning this often (the others are counted).
const OVERLONG_WARN_EVERY: Duration = Duration::from_secs(60);

/// A token bucket: `burst` messages at once, then `rate` per second.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`; returns how long the sender must wait first.
    pub fn take(&mut self, now: Instant, burst: f64, rate: f64) -> Duration {
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate)
            .min(burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            // The token is borrowed from the future: wait until it exists.
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// A warning the server can trigger at will: logged at most once per
/// `every`, the occurrences in between counted rather than logged.
#[derive(Debug, Clone)]
pub struct WarnEvery {
    every: Duration,
    last: Option<Instant>,
    quiet: u64,
}

impl WarnEvery {
    /// Nothing noted yet: the first occurrence is logged.
    pub fn new(every: Duration) -> WarnEvery {
        WarnEvery {
            every,
            last: None,
            quiet: 0,
        }
    }

    /// Notes one occurrence at `now`. `Some(n)`: log it now, `n` being how
    /// many went unlogged since the last one; `None`: stay quiet.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.quiet))
            }
        }
    }
}

/// One TCP connection, shared by the listener and the egress thread.
struct Link {
    stream: TcpStream,
    /// Keeps each line whole. Held only for one line's write, which the
    /// write timeout bounds: never across any other wait.
    writing: Mutex<()>,
}

/// What both threads see of the connection. Its mutex is only ever held
/// for a few field accesses (and by condvar waits, which release it).
struct State {
    /// The current connection, from connect until it is dropped.
    link: Option<Arc<Link>>,
    /// Whether the server welcomed us (001) on `link`: replies wait for it.
    registered: bool,
    /// Our nick on `link` (the one being tried, before registration).
    nick: String,
    /// The server's `NICKLEN`, once announced (kept across connections).
    nicklen: Option<usize>,
    /// Why the egress thread dropped `link`, for the listener's log line.
    lost: Option<String>,
}

/// The listener's own view of one connection.
struct Session {
    link: Arc<Link>,
    addr: String,
    registered: bool,
    /// The nicks this connection may try, in order. Never empty: the
    /// configured (non-empty) nick always comes first.
    nicks: Vec<String>,
    /// Index in `nicks` of the one last sent: always in range.
    tried: usize,
}

/// The IRC adapter.
pub struct IrcNet {
    config: Config,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    bucket: Mutex<Bucket>,
}

enum End {
    Stopped,
    Dropped(String),
}

/// Server-supplied text fit for a log line: no control characters (no
/// terminal escapes, no fake log lines), and short.
fn shown(text: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if text.chars().filter(|c| !c.is_control()).nth(MAX).is_some() {
        out.push('…');
    }
    out
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl IrcNet {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; recover rather than propagate.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    /// Writes one line, whole, within the write timeout (a server that
    /// stops reading cannot hold a thread, or the line lock, any longer).
    fn write_to(&self, link: &Link, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let timeout = self.write_timeout();
        // Waiting for this lock is bounded too: by the one write it guards.
        let _whole = link.writing.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + timeout;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            // The socket timeout bounds one write(2); the deadline bounds a
            // server that accepts a byte now and then.
            link.stream.set_write_timeout(Some(left))?;
            match (&link.stream).write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Why a write failed, for the log.
    fn write_failure(&self, e: &io::Error) -> String {
        if is_timeout(e) {
            format!(
                "the server stopped reading: a line could not be written within {:?}",
                self.write_timeout()
            )
        } else {
            format!("writing to the server: {e}")
        }
    }

    /// Drops `link` if it is still the current connection: the listener's
    /// blocked read ends at once and it reconnects, logging `why`.
    fn drop_link(&self, link: &Arc<Link>, why: String) {
        {
            let mut state = self.state();
            if state.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                state.link = None;
                state.registered = false;
                state.lost.get_or_insert(why);
            }
        }
        let _ = link.stream.shutdown(Shutdown::Both);
    }

    /// The reason the egress thread recorded for dropping the connection,
    /// else `otherwise`.
    fn lost_or(&self, otherwise: impl Into<String>) -> String {
        self.state().lost.take().unwrap_or_else(|| otherwise.into())
    }

    /// Updates the shared state if `link` is still the current connection.
    fn if_current(&self, link: &Arc<Link>, f: impl FnOnce(&mut State)) {
        let mut state = self.state();
        if state.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            f(&mut state);
        }
    }

    /// Waits (until `deadline`) for a registered connection.
    fn registered_link(&self, deadline: Instant) -> Result<(Arc<Link>, String), String> {
        let mut state = self.state();
        loop {
            if let (true, Some(link)) = (state.registered, &state.link) {
                return Ok((Arc::clone(link), state.nick.clone()));
            }
            // Stopping: the connection still up is used to the end, but no
            // new one will come.
            if self.stopping.load(Ordering::Acquire) {
                return Err("the adapter is stopping and not connected".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "not connected to the server (waited {SEND_WAIT:?})"
                ));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for a flood-control token.
    fn throttle(&self) {
        let rate = self.config.flood.rate.max(0.001);
        let burst = f64::from(self.config.flood.burst.max(1));
        let wait =
            self.bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(Instant::now(), burst, rate);
        // Sleep outside the lock; the debt is already booked in the bucket,
        // so concurrent senders queue up behind this one.
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Sleeps `d`, or less if `stop` is called.
    fn pause(&self, d: Duration) {
        let state = self.state();
        let _ = self
            .changed
            .wait_timeout_while(state, d, |_| !self.stopping.load(Ordering::Acquire));
    }

    /// Opens a connection: the link, and a clone of its socket to read
    /// from (with a short timeout, so that the loop sees its timers).
    fn connect(&self) -> Result<(Arc<Link>, TcpStream, String), String> {
        let c = &self.config;
        let addr = match (c.server.as_str(), c.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(addr)) => addr,
            Ok(None) => return Err(format!("{} resolves to nothing", c.server)),
            Err(e) => return Err(format!("resolving {}: {e}", c.server)),
        };
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let reader = stream
            .try_clone()
            .and_then(|r| r.set_read_timeout(Some(POLL)).map(|()| r))
            .map_err(|e| format!("setting up the socket: {e}"))?;
        let link = Arc::new(Link {
            stream,
            writing: Mutex::new(()),
        });
        Ok((link, reader, addr.to_string()))
    }

    /// One connection, from connect to drop (or stop); also says whether
    /// the server let us register.
    fn session(&self, sink: &Sink, overlong: &mut WarnEvery) -> (Result<End, PushError>, bool) {
        let (link, reader, addr) = match self.connect() {
            Ok(connected) => connected,
            Err(why) => return (Ok(End::Dropped(why)), false),
        };
        let nicklen = self.state().nicklen.unwrap_or(DEFAULT_NICKLEN);
        let mut session = Session {
            link: Arc::clone(&link),
            addr,
            registered: false,
            nicks: proto::nick_candidates(&self.config.nick, nicklen, NICK_ATTEMPTS),
            tried: 0,
        };
        {
            let mut state = self.state();
            state.link = Some(Arc::clone(&link));
            state.registered = false;
            state.nick = session.nicks[0].clone();
            state.lost = None;
        }
        let end = self.converse(&mut session, reader, sink, overlong);
        if matches!(end, Ok(End::Stopped)) {
            // Stopped, not lost: the connection stays up for the replies the
            // engine still delivers after `stop` (its egress drains until its
            // grace ends); `Drop` says QUIT and closes it.
            return (end, session.registered);
        }
        {
            let mut state = self.state();
            if state.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &link)) {
                state.link = None;
                state.registered = false;
            }
            state.lost = None;
        }
        // Whatever ended it, this connection is over: a sender still holding
        // the link gets an error at once instead of writing into it.
        let _ = link.stream.shutdown(Shutdown::Both);
        (end, session.registered)
    }

    /// Registers, then reads and answers until the connection ends. Every
    /// wait in it is bounded: reads by `POLL`, writes by the write timeout,
    /// registration and silence by their timeouts.
    fn converse(
        &self,
        s: &mut Session,
        reader: TcpStream,
        sink: &Sink,
        overlong: &mut WarnEvery,
    ) -> Result<End, PushError> {
        let c = &self.config;
        let register_timeout = Duration::from_millis(c.register_timeout_ms);
        let ping_after = Duration::from_millis(c.ping_after_ms);
        let ping_timeout = Duration::from_millis(c.ping_timeout_ms);
        let registration = format!("NICK {}\r\nUSER {} 0 * :plugboard", s.nicks[0], c.nick);
        if let Err(e) = self.write_to(&s.link, &registration) {
            return Ok(End::Dropped(self.write_failure(&e)));
        }
        log::info!("connected to {}", s.addr);
        let mut input = BufReader::new(reader);
        let mut lines = LineReader::new(MAX_LINE_BYTES);
        let started = Instant::now();
        // Bytes received so far, and when that count last grew.
        let mut heard = (0, started);
        // When we sent a PING that no traffic has answered yet.
        let mut pinged: Option<Instant> = None;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Ok(End::Stopped);
            }
            let step = lines.read(&mut input);
            let now = Instant::now();
            if lines.received() != heard.0 {
                heard = (lines.received(), now);
                pinged = None;
            }
            match step {
                Ok(Read::Line) => {
                    let text = String::from_utf8_lossy(lines.line());
                    if let Some(line) = proto::Line::parse(&text) {
                        if let Some(end) = self.handle(s, &line, sink)? {
                            return Ok(end);
                        }
                    }
                }
                Ok(Read::Overlong) => {
                    if let Some(quiet) = overlong.note(now) {
                        let more = match quiet {
                            0 => String::new(),
                            n => format!("; {n} more since the last such warning"),
                        };
                        log::warn!(
                            "{}:{}: discarding a line over {MAX_LINE_BYTES} bytes from the server (IRC allows 512, plus 8191 for message tags){more}",
                            c.server,
                            c.port
                        );
                    }
                }
                Ok(Read::Pending) => {}
                Ok(Read::Eof) => {
                    return Ok(End::Dropped(
                        self.lost_or("the server closed the connection"),
                    ))
                }
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Ok(End::Dropped(self.lost_or(format!("reading: {e}")))),
            }
            if !s.registered {
                if now.duration_since(started) >= register_timeout {
                    return Ok(End::Dropped(format!(
                        "no welcome (001) from the server within {register_timeout:?} of registering"
                    )));
                }
            } else if let Some(sent) = pinged {
                if now.duration_since(sent) >= ping_timeout {
                    let silent = now.duration_since(heard.1).as_millis();
                    return Ok(End::Dropped(format!(
                        "the server went silent: nothing received for {silent}ms, our PING unanswered for {ping_timeout:?}"
                    )));
                }
            } else if now.duration_since(heard.1) >= ping_after {
                // TCP alone may never notice a server (or a path) that
                // went away without closing: ask for a sign of life.
                if let Err(e) = self.write_to(&s.link, "PING :plugboard") {
                    return Ok(End::Dropped(self.write_failure(&e)));
                }
                pinged = Some(now);
            }
        }
    }

    fn handle(
        &self,
        s: &mut Session,
        line: &proto::Line<'_>,
        sink: &Sink,
    ) -> Result<Option<End>, PushError> {
        let write = |l: &str| {
            self.write_to(&s.link, l)
                .err()
                .map(|e| End::Dropped(self.write_failure(&e)))
        };
        match line.command {
            "PING" => Ok(write(&format!(
                "PONG :{}",
                line.params.last().copied().unwrap_or("")
            ))),
            "001" => {
                // The server says which nick we got (it may have cut ours).
                let nick = line
                    .params
                    .first()
                    .filter(|n| !n.is_empty())
                    .map_or_else(|| s.nicks[s.tried].clone(), |n| (*n).to_owned());
                log::info!("registered as {}", shown(&nick));
                for channel in &self.config.channels {
                    if let Some(end) = write(&format!("JOIN {channel}")) {
                        return Ok(Some(end));
                    }
                }
                s.registered = true;
                self.if_current(&s.link, |state| {
                    state.registered = true;
                    state.nick = nick;
                });
                // Replies waiting for a connection may go now.
                self.changed.notify_all();
                Ok(None)
            }
            "005" => {
                if let Some(n) = proto::isupport_nicklen(&line.params) {
                    self.state().nicklen = Some(n);
                }
                Ok(None)
            }
            // The nick is refused: in use, colliding, or held back.
            "432" | "433" | "436" | "437" if !s.registered => Ok(self.next_nick(s, line)),
            // The server (or services) renamed us.
            "NICK" if s.registered => {
                if let (Some(old), Some(new)) = (line.nick(), line.params.first()) {
                    let new = (*new).to_owned();
                    self.if_current(&s.link, |state| {
                        if state.nick == old {
                            state.nick = new;
                        }
                    });
                }
                Ok(None)
            }
            "ERROR" => Ok(Some(End::Dropped(format!(
                "server error: {}",
                shown(line.params.last().copied().unwrap_or(""))
            )))),
            "PRIVMSG" => {
                let (Some(nick), [target, text]) = (line.nick(), line.params.as_slice()) else {
                    return Ok(None);
                };
                let room = target.starts_with(['#', '&']).then_some(*target);
                match sink.push(RawMessage::new(room, nick, text)) {
                    Ok(()) => Ok(None),
                    Err(PushError::Busy) => Ok(write(&format!(
                        "PRIVMSG {} :{nick}: busy, try again in a moment",
                        room.unwrap_or(nick)
                    ))),
                    Err(e @ PushError::Closed) => {
                        // Told, not dropped (the engine counts it refused);
                        // a failed write changes nothing now: we stop.
                        let _ = write(&format!(
                            "PRIVMSG {} :{nick}: {}",
                            room.unwrap_or(nick),
                            shutting_down_reply(text)
                        ));
                        Err(e)
                    }
                }
            }
            _ => Ok(None),
        }
    }

    /// The server refused the nick last sent (432/433/436/437): tries the
    /// next fallback, or ends the connection when there is none left or
    /// when no fallback can help.
    fn next_nick(&self, s: &mut Session, line: &proto::Line<'_>) -> Option<End> {
        let refused = &s.nicks[s.tried];
        let code = line.command;
        let reason = shown(line.params.last().copied().unwrap_or(""));
        let nicklen = self.state().nicklen.unwrap_or(DEFAULT_NICKLEN);
        // "Erroneous": a nick that fits the length limit is refused for its
        // characters, which a suffix does not change. A longer one may be
        // refused for its length, which the (cut) fallbacks fix.
        if code == "432" && refused.len() <= nicklen {
            return Some(End::Dropped(format!(
                "the server refuses nick `{}` as erroneous ({code} {reason}); check `nick` in the configuration",
                shown(refused)
            )));
        }
        let Some(next) = s.nicks.get(s.tried + 1).cloned() else {
            return Some(End::Dropped(format!(
                "the server refused all {} nicks tried, `{}` to `{}` (last: {code} {reason})",
                s.nicks.len(),
                shown(&s.nicks[0]),
                shown(refused)
            )));
        };
        log::info!(
            "nick `{}` refused ({code} {reason}); trying `{}`",
            shown(refused),
            shown(&next)
        );
        s.tried += 1;
        self.if_current(&s.link, |state| state.nick.clone_from(&next));
        self.write_to(&s.link, &format!("NICK {next}"))
            .err()
            .map(|e| End::Dropped(self.write_failure(&e)))
    }
}

impl Adapter for IrcNet {
    fn info() -> AdapterInfo {
        AdapterInfo::new("ircnet", env!("CARGO_PKG_VERSION"))
            .description("IRC over TCP: channels, reconnect with backoff, flood control")
    }

    fn init(ctx: &Context) -> Result<Self, Error> {
        let config: Config = ctx.config()?;
        if config.tls {
            return Err(Error::config(
                "tls = true is not supported by this build; use a TLS tunnel (stunnel) or a plain-text port",
            ));
        }
        if config.server.is_empty() || config.nick.is_empty() {
            return Err(Error::config("`server` and `nick` must not be empty"));
        }
        if config.flood.rate <= 0.0
            || config.reconnect.min_ms == 0
            || config.reconnect.max_ms < config.reconnect.min_ms
        {
            return Err(Error::config(
                "flood.rate must be positive and reconnect.min_ms <= reconnect.max_ms, both positive",
            ));
        }
        if [
            config.register_timeout_ms,
            config.write_timeout_ms,
            config.ping_after_ms,
            config.ping_timeout_ms,
        ]
        .contains(&0)
        {
            return Err(Error::config(
                "register_timeout_ms, write_timeout_ms, ping_after_ms and ping_timeout_ms must be positive",
            ));
        }
        let burst = f64::from(config.flood.burst.max(1));
        Ok(IrcNet {
            state: Mutex::new(State {
                link: None,
                registered: false,
                nick: config.nick.clone(),
                nicklen: None,
                lost: None,
            }),
            config,
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            bucket: Mutex::new(Bucket::new(burst, Instant::now())),
        })
    }

    fn listen(&self, sink: &Sink) -> Result<(), Error> {
        let min = Duration::from_millis(self.config.reconnect.min_ms);
        let max = Duration::from_millis(self.config.reconnect.max_ms);
        let mut backoff = min;
        let mut overlong = WarnEvery::new(OVERLONG_WARN_EVERY);
        loop {
            let started = Instant::now();
            let (end, registered) = self.session(sink, &mut overlong);
            match end {
                Err(PushError::Closed) | Ok(End::Stopped) => return Ok(()),
                Err(PushError::Busy) => unreachable!("busy is answered in place"),
                Ok(End::Dropped(why)) => {
                    // A connection that registered and lived a while resets
                    // the backoff; one stuck before registration does not.
                    if registered && started.elapsed() > max {
                        backoff = min;
                    }
                    log::warn!(
                        "{}:{}: {why}; reconnecting in {backoff:?}",
                        self.config.server,
                        self.config.port
                    );
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            self.pause(backoff);
            backoff = (backoff * 2).min(max);
        }
    }

    fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
        let target = reply.room().unwrap_or(reply.recipient());
        let text = proto::sanitize(reply.text());
        let fail = |why: String| Error::msg(format!("cannot send to {target}: {why}"));
        let deadline = Instant::now() + SEND_WAIT;
        let (mut link, nick) = self.registered_link(deadline).map_err(fail)?;
        for piece in proto::split(&text, proto::max_text_bytes(&nick, target)) {
            self.throttle();
            let line = format!("PRIVMSG {target} :{piece}");
            while let Err(e) = self.write_to(&link, &line) {
                let why = self.write_failure(&e);
                self.drop_link(&link, why.clone());
                // A server that stopped reading gets no second chance within
                // this reply; a connection that broke (or was replaced) is
                // waited for, within SEND_WAIT, as before a first write.
                if is_timeout(&e) {
                    return Err(fail(format!("{why}; the connection is dropped")));
                }
                log::debug!("{why}; waiting for a new connection to send to {target}");
                link = self.registered_link(deadline).map_err(fail)?.0;
            }
        }
        Ok(())
    }

    fn stop(&self) {
        // `listen` returns soon (it looks at this between reads); the
        // connection stays up for the last replies, until `Drop`.
        self.stopping.store(true, Ordering::Release);
        // Under the lock, so that no waiter misses the wake-up between
        // checking the flag and waiting.
        let _state = self.state();
        self.changed.notify_all();
    }
}

impl Drop for IrcNet {
    /// The last replies are out (the engine drops an adapter after its
    /// egress drained): say goodbye and close. The write is bounded by the
    /// write timeout, like every other.
    fn drop(&mut self) {
        let link = self.state().link.take();
        if let Some(link) = link {
            let _ = self.write_to(&link, "QUIT :stopping");
            let _ = link.stream.shutdown(Shutdown::Both);
        }
    }
}

export_adapter!(IrcNet);
