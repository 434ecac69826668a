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
//! Configuration (`[adapters.ircnet]`):
//!
//! ```toml
//! server = "irc.example.org"   # required
//! port = 6667
//! nick = "plugboard"
//! channels = ["#plugboard"]
//! flood = { burst = 4, rate = 2.0 }
//! reconnect = { min_ms = 1000, max_ms = 60000 }
//! ```
//!
//! The protocol layer is the small `proto` module (parsing, splitting)
//! rather than the `irc` crate, which would bring an async runtime into
//! every engine that loads this library; see ARCHITECTURE.md.

pub mod proto;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use plugboard_interface::host::PushError;
use plugboard_interface::log;
use plugboard_interface::prelude::*;
use plugboard_interface::serde::Deserialize;

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
}

fn default_port() -> u16 {
    6667
}

fn default_nick() -> String {
    "plugboard".to_owned()
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
/// How often a blocked read looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

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

struct Conn {
    stream: Option<TcpStream>,
    nick: String,
}

/// The IRC adapter.
pub struct IrcNet {
    config: Config,
    conn: Mutex<Conn>,
    changed: Condvar,
    stopping: AtomicBool,
    bucket: Mutex<Bucket>,
}

enum End {
    Stopped,
    Dropped(String),
}

impl IrcNet {
    fn conn(&self) -> MutexGuard<'_, Conn> {
        // Nothing panics while holding it; recover rather than propagate.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut conn = self.conn();
        let stream = conn
            .stream
            .as_mut()
            .ok_or_else(|| std::io::Error::new(ErrorKind::NotConnected, "not connected"))?;
        stream.write_all(line.as_bytes())?;
        stream.write_all(b"\r\n")
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
        let conn = self.conn();
        let _ = self
            .changed
            .wait_timeout_while(conn, d, |_| !self.stopping.load(Ordering::Acquire));
    }

    /// One connection, from connect to drop (or stop).
    fn session(&self, sink: &Sink) -> Result<End, PushError> {
        let c = &self.config;
        let addr = match (c.server.as_str(), c.port)
            .to_socket_addrs()
            .map(|mut a| a.next())
        {
            Ok(Some(addr)) => addr,
            Ok(None) => return Ok(End::Dropped(format!("{} resolves to nothing", c.server))),
            Err(e) => return Ok(End::Dropped(format!("resolving {}: {e}", c.server))),
        };
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => s,
            Err(e) => return Ok(End::Dropped(format!("connecting to {addr}: {e}"))),
        };
        let reader = match stream
            .try_clone()
            .and_then(|r| r.set_read_timeout(Some(POLL)).map(|()| r))
        {
            Ok(r) => r,
            Err(e) => return Ok(End::Dropped(format!("setting up the socket: {e}"))),
        };
        {
            let mut conn = self.conn();
            conn.stream = Some(stream);
            conn.nick = c.nick.clone();
        }
        let registration = format!("NICK {}\r\nUSER {} 0 * :plugboard", c.nick, c.nick);
        if let Err(e) = self.write_line(&registration) {
            return Ok(End::Dropped(format!("registering: {e}")));
        }
        log::info!("connected to {addr}");
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            if self.stopping.load(Ordering::Acquire) {
                let _ = self.write_line("QUIT :stopping");
                return Ok(End::Stopped);
            }
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return Ok(End::Dropped("the server closed the connection".into())),
                Ok(_) if buf.ends_with(b"\n") => {}
                // A partial line before a timeout: keep it, read on.
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => return Ok(End::Dropped(format!("reading: {e}"))),
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            buf.clear();
            let Some(line) = proto::Line::parse(&text) else {
                continue;
            };
            if let Some(end) = self.handle(&line, sink)? {
                return Ok(end);
            }
        }
    }

    fn handle(&self, line: &proto::Line<'_>, sink: &Sink) -> Result<Option<End>, PushError> {
        let write = |l: &str| {
            self.write_line(l)
                .err()
                .map(|e| End::Dropped(format!("writing: {e}")))
        };
        match line.command {
            "PING" => Ok(write(&format!(
                "PONG :{}",
                line.params.last().copied().unwrap_or("")
            ))),
            "001" => {
                log::info!("registered as {}", self.conn().nick);
                for channel in &self.config.channels {
                    if let Some(end) = write(&format!("JOIN {channel}")) {
                        return Ok(Some(end));
                    }
                }
                // Replies waiting for a connection may go now.
                self.changed.notify_all();
                Ok(None)
            }
            // Nick in use: try another.
            "433" => {
                let nick = {
                    let mut conn = self.conn();
                    conn.nick.push('_');
                    conn.nick.clone()
                };
                Ok(write(&format!("NICK {nick}")))
            }
            "ERROR" => Ok(Some(End::Dropped(format!(
                "server error: {}",
                line.params.last().copied().unwrap_or("")
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
                    Err(e @ PushError::Closed) => Err(e),
                }
            }
            _ => Ok(None),
        }
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
        let burst = f64::from(config.flood.burst.max(1));
        Ok(IrcNet {
            conn: Mutex::new(Conn {
                stream: None,
                nick: config.nick.clone(),
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
        loop {
            let started = Instant::now();
            let end = self.session(sink);
            self.conn().stream = None;
            match end {
                Err(PushError::Closed) | Ok(End::Stopped) => return Ok(()),
                Err(PushError::Busy) => unreachable!("busy is answered in place"),
                Ok(End::Dropped(why)) => {
                    // A connection that lived a while resets the backoff.
                    if started.elapsed() > max {
                        backoff = min;
                    }
                    log::warn!("{why}; reconnecting in {backoff:?}");
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
        let nick = self.conn().nick.clone();
        let deadline = Instant::now() + SEND_WAIT;
        for piece in proto::split(&text, proto::max_text_bytes(&nick, target)) {
            self.throttle();
            let line = format!("PRIVMSG {target} :{piece}");
            // Through a reconnect if need be, within SEND_WAIT.
            loop {
                match self.write_line(&line) {
                    Ok(()) => break,
                    Err(e)
                        if Instant::now() < deadline && !self.stopping.load(Ordering::Acquire) =>
                    {
                        log::debug!("waiting for a connection to send to {target}: {e}");
                        let conn = self.conn();
                        let _ = self.changed.wait_timeout(conn, POLL);
                    }
                    Err(e) => return Err(Error::msg(format!("cannot send to {target}: {e}"))),
                }
            }
        }
        Ok(())
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_all();
    }
}

export_adapter!(IrcNet);
