//! The real IRC adapter against a real IRC server (ngircd) on loopback, and
//! against scripted *misbehaving* servers.
//!
//! `.ci/run` installs ngircd when it is missing; the ngircd tests skip,
//! saying so, only where ngircd is not installed. Each starts its own server
//! with a generated config on a free port in a temporary directory, as an
//! unprivileged user when run as root.
//!
//! The misbehaving servers are threads on `127.0.0.1:0` ([`Fake`]) that
//! report what they see on a channel; the tests wait on it (and on the
//! captured log), with generous limits that only guard against a hang.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use plugboard::interface::prelude::{Call, Context, Error, Manifest, Plugin, Reply};
use plugboard::{Engine, EngineConfig, Kind};

const IO_LIMIT: Duration = Duration::from_secs(30);

fn ngircd() -> Option<PathBuf> {
    [
        "/usr/sbin/ngircd",
        "/usr/bin/ngircd",
        "/usr/local/sbin/ngircd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A built library; installs the capturing logger first (a library's
/// logging bridge reads the host's max level when it is initialised).
fn lib(name: &str) -> PathBuf {
    capture();
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    deps.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// Starts ngircd on `port` and returns once it listens (it says so on
    /// its log output).
    fn start(binary: &Path, port: u16, tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "plugboard-ngircd-{tag}-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let user = if as_root {
            "ServerUID = 65534\nServerGID = 65534\n"
        } else {
            ""
        };
        let config = dir.join("ngircd.conf");
        std::fs::write(
            &config,
            format!(
                "[Global]\nName = irc.test\nInfo = plugboard test server\nListen = 127.0.0.1\nPorts = {port}\n\
                 MotdPhrase = hello\n{user}\
                 [Limits]\nPingTimeout = 120\nPongTimeout = 20\nMaxConnectionsIP = 0\n\
                 [Options]\nPAM = no\nIdent = no\nDNS = no\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(binary)
            .args(["-n", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ngircd");
        let mut log = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                log.read_line(&mut line).unwrap() > 0,
                "ngircd exited before listening"
            );
            if line.contains("Now listening on") {
                break;
            }
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in log.lines() {});
        Server { child, dir }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain IRC client for the test.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16, nick: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to ngircd");
        stream.set_read_timeout(Some(IO_LIMIT)).unwrap();
        let mut client = Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        client.send(&format!("NICK {nick}"));
        client.send(&format!("USER {nick} 0 * :test client"));
        client.expect(|l| l.contains(" 001 "));
        client
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    /// Reads lines until one satisfies `wanted` (answering PINGs).
    fn expect(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("a line within the I/O limit");
            assert!(n > 0, "the server closed the connection");
            let trimmed = line.trim_end().to_owned();
            if let Some(token) = trimmed.strip_prefix("PING ") {
                self.send(&format!("PONG {token}"));
                continue;
            }
            if wanted(&trimmed) {
                return trimmed;
            }
        }
    }

    /// Joins `channel` and returns once `bot` is in it too.
    fn join_and_wait_for(&mut self, channel: &str, bot: &str) {
        self.send(&format!("JOIN {channel}"));
        let mut present = false;
        loop {
            let line = self.expect(|l| l.contains(" 353 ") || l.contains(" 366 "));
            if line.contains(" 353 ") {
                present |= line
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .split(' ')
                    .any(|n| n.trim_start_matches(['@', '+']) == bot);
            } else {
                break;
            }
        }
        if !present {
            self.expect(|l| l.starts_with(&format!(":{bot}!")) && l.contains(" JOIN "));
        }
    }

    /// Says `text` in `channel` and returns the bot's reply texts until one
    /// satisfies `last`.
    fn ask(
        &mut self,
        channel: &str,
        bot: &str,
        text: &str,
        last: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        self.send(&format!("PRIVMSG {channel} :{text}"));
        let prefix = format!(":{bot}!");
        let mut replies = Vec::new();
        loop {
            let line = self.expect(|l| l.starts_with(&prefix) && l.contains(" PRIVMSG "));
            assert!(
                line.len() + 2 <= 512,
                "a line over IRC's limit: {}",
                line.len()
            );
            let text = line
                .split_once(" :")
                .map(|(_, t)| t.to_owned())
                .unwrap_or_default();
            let done = last(&text);
            replies.push(text);
            if done {
                return replies;
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn engine(port: u16) -> Engine {
    let config = format!(
        r##"{{"server": "127.0.0.1", "port": {port}, "nick": "plugbot", "channels": ["#test"],
            "flood": {{"burst": 5, "rate": 20.0}}, "reconnect": {{"min_ms": 50, "max_ms": 400}}}}"##
    );
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_ircnet"))
        .library(&lib("plugboard_bacon"))
        .library(&lib("plugboard_quote"))
        .extension_config(Kind::Adapter, "ircnet", config)
        .extension_config(Kind::Plugin, "quote", r#"{"max_length": 2000}"#)
        .start()
        .unwrap();
    assert!(
        engine.report().failures.is_empty(),
        "{:?}",
        engine.report().failures
    );
    engine
}

#[test]
fn the_bot_answers_in_channel_splits_long_replies_and_survives_a_server_restart() {
    let Some(binary) = ngircd() else {
        eprintln!(
            "skipping: ngircd is not installed (`apt-get install ngircd`; .ci/run does this)"
        );
        return;
    };
    let port = free_port();
    let server = Server::start(&binary, port, "main");
    let mut client = Client::connect(port, "tester");
    let engine = engine(port);
    client.join_and_wait_for("#test", "plugbot");

    let reply = client.ask("#test", "plugbot", "!bacon friend", |_| true);
    assert_eq!(
        reply,
        ["gives friend a strip of delicious bacon as a gift from tester"]
    );

    // A reply longer than an IRC line arrives split, each piece within the
    // limit, nothing lost. (The quote itself fits in the client's own line:
    // the server would drop a client sending more than 512 bytes.)
    let long: String = (0..62)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(long.len() > 420 && long.len() < 450);
    assert_eq!(
        client.ask("#test", "plugbot", &format!("!quote add {long}"), |_| true),
        ["quote #1 added"]
    );
    let pieces = client.ask("#test", "plugbot", "!quote 1", |t| t.ends_with("word61"));
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert_eq!(pieces.join(" "), format!("#1: {long}"));

    // The server goes away and comes back: the adapter reconnects and rejoins.
    drop(client);
    drop(server);
    let _server = Server::start(&binary, port, "restarted");
    let mut client = Client::connect(port, "tester2");
    client.join_and_wait_for("#test", "plugbot");
    let reply = client.ask("#test", "plugbot", "!bacon", |_| true);
    assert_eq!(reply, ["gives tester2 a strip of delicious bacon."]);

    // Private messages are answered privately.
    client.send("PRIVMSG plugbot :!bacon pal");
    let private = client.expect(|l| l.starts_with(":plugbot!") && l.contains(" PRIVMSG tester2 "));
    assert!(
        private.ends_with(":gives pal a strip of delicious bacon as a gift from tester2"),
        "{private}"
    );
    assert!(engine.shutdown().clean);
}

/// Every log record of every engine in this test binary, as
/// `LEVEL target: message`, for tests to wait on.
struct Capture {
    records: Mutex<Vec<String>>,
    added: Condvar,
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.records.lock().unwrap().push(line);
            self.added.notify_all();
        }
    }

    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            records: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }));
        log::set_logger(capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
        capture
    })
}

/// Waits for a warning containing every one of `parts`.
fn wait_for_warning(parts: &[&str]) {
    let record = wait_for_log(parts);
    assert!(record.starts_with("WARN "), "{record}");
}

/// Waits for a log record containing every one of `parts`; returns it.
fn wait_for_log(parts: &[&str]) -> String {
    let capture = capture();
    let records = capture.records.lock().unwrap();
    let (records, _) = capture
        .added
        .wait_timeout_while(records, IO_LIMIT, |records| {
            !records.iter().any(|r| parts.iter().all(|p| r.contains(p)))
        })
        .unwrap();
    let found = records
        .iter()
        .find(|r| parts.iter().all(|p| r.contains(p)))
        .cloned();
    found.unwrap_or_else(|| panic!("no log record with {parts:?} in {:#?}", *records))
}

/// What a fake server saw, per connection (numbered from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Accepted(usize),
    Line(usize, String),
    Closed(usize),
}

/// One connection to a fake server, as its script sees it.
struct Peer {
    n: usize,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    seen: Sender<Seen>,
    closed: bool,
}

impl Peer {
    /// The adapter's next line (reported), or `None` once it has closed
    /// the connection (reported once).
    fn line(&mut self) -> Option<String> {
        if self.closed {
            return None;
        }
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => {
                let line = line.trim_end().to_owned();
                let _ = self.seen.send(Seen::Line(self.n, line.clone()));
                Some(line)
            }
            _ => {
                self.closed = true;
                let _ = self.seen.send(Seen::Closed(self.n));
                None
            }
        }
    }

    /// Sends a line (ignoring errors: the adapter may have left already).
    fn send(&mut self, line: &str) {
        let _ = self.writer.write_all(format!("{line}\r\n").as_bytes());
    }

    /// Reads (and reports) everything until the adapter closes.
    fn drain(&mut self) {
        while self.line().is_some() {}
    }

    /// Reads the registration up to USER, welcomes the adapter as `nick`,
    /// and reads on to its JOIN.
    fn welcome(&mut self, nick: &str) {
        while let Some(line) = self.line() {
            if line.starts_with("USER ") {
                break;
            }
        }
        self.send(&format!(
            ":irc.test 001 {nick} :Welcome to the test network"
        ));
        while let Some(line) = self.line() {
            if line.starts_with("JOIN ") {
                break;
            }
        }
    }
}

/// A scripted IRC server on a free loopback port: every accepted
/// connection runs `script` on a thread of its own.
struct Fake {
    port: u16,
    seen: Receiver<Seen>,
    /// Everything received from `seen` so far, in order.
    log: Vec<Seen>,
}

impl Fake {
    fn start(script: impl Fn(Peer) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = mpsc::channel();
        let script = std::sync::Arc::new(script);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                if tx.send(Seen::Accepted(n)).is_err() {
                    return; // the test is over
                }
                stream.set_read_timeout(Some(IO_LIMIT)).unwrap();
                let peer = Peer {
                    n,
                    writer: stream.try_clone().unwrap(),
                    reader: BufReader::new(stream),
                    seen: tx.clone(),
                    closed: false,
                };
                let script = std::sync::Arc::clone(&script);
                std::thread::spawn(move || script(peer));
            }
        });
        Fake {
            port,
            seen,
            log: Vec::new(),
        }
    }

    /// Waits until `count` events satisfying `wanted` have been seen.
    fn wait_n(&mut self, count: usize, wanted: impl Fn(&Seen) -> bool) {
        while self.log.iter().filter(|e| wanted(e)).count() < count {
            match self.seen.recv_timeout(IO_LIMIT) {
                Ok(event) => self.log.push(event),
                Err(e) => panic!(
                    "the fake server saw nothing more ({e}); so far: {:#?}",
                    self.log
                ),
            }
        }
    }

    /// Waits for `event`.
    fn wait(&mut self, event: Seen) {
        self.wait_n(1, |e| *e == event);
    }

    /// The first line satisfying `wanted` on connection `n`, waiting for it.
    fn line(&mut self, n: usize, wanted: impl Fn(&str) -> bool) -> String {
        let matches = |e: &Seen| matches!(e, Seen::Line(c, l) if *c == n && wanted(l));
        self.wait_n(1, matches);
        match self.log.iter().find(|e| matches(e)) {
            Some(Seen::Line(_, line)) => line.clone(),
            _ => unreachable!("wait_n found it"),
        }
    }

    /// The nicks the adapter tried on connection `n`, so far.
    fn nicks(&self, n: usize) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Seen::Line(c, l) if *c == n => l.strip_prefix("NICK ").map(str::to_owned),
                _ => None,
            })
            .collect()
    }
}

/// A plugin with one long answer: `!flood` gets 16 MB of words, far more
/// than the socket buffers of a server that does not read can hold.
struct Flood;

impl Plugin for Flood {
    fn manifest() -> Manifest<Self> {
        Manifest::new("flood", "0.1.0").command("flood", r"flood$", "!flood", Flood::flood)
    }

    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Flood)
    }
}

impl Flood {
    fn flood(&self, _: &Call<'_>) -> Result<Reply, Error> {
        Ok("flood ".repeat((16 << 20) / 6).into())
    }
}

/// An engine with the IRC adapter pointed at a fake server, `extra` being
/// more configuration keys (`, "key": value...`); the reconnect backoff is
/// short and the flood limit out of the way.
fn fake_engine(port: u16, nick: &str, extra: &str) -> Engine {
    let config = format!(
        r##"{{"server": "127.0.0.1", "port": {port}, "nick": "{nick}", "channels": ["#test"],
            "flood": {{"burst": 1000000, "rate": 1000000.0}},
            "reconnect": {{"min_ms": 50, "max_ms": 400}}{extra}}}"##
    );
    let engine = Engine::builder(EngineConfig {
        // `!flood` must reach the adapter whole: the engine's reply cap
        // would cut it to what any socket buffer holds.
        max_reply_bytes: 0,
        ..EngineConfig::default()
    })
    .library(&lib("plugboard_ircnet"))
    .library(&lib("plugboard_bacon"))
    .plugin::<Flood>()
    .extension_config(Kind::Adapter, "ircnet", config)
    .start()
    .unwrap();
    assert!(
        engine.report().failures.is_empty(),
        "{:?}",
        engine.report().failures
    );
    engine
}

#[test]
fn an_over_long_line_is_discarded_and_the_next_one_handled() {
    let mut fake = Fake::start(|mut peer| {
        peer.welcome("plugbot");
        // 10 MB without a newline (a command, were it ever buffered whole),
        // then a valid line.
        let junk = format!(":tester!t@h PRIVMSG #test :!bacon {}", "a".repeat(10 << 20));
        let _ = peer.writer.write_all(junk.as_bytes());
        peer.send("");
        peer.send(":tester!t@h PRIVMSG #test :!bacon friend");
        peer.drain();
    });
    let engine = fake_engine(fake.port, "plugbot", "");
    // Replies come in order: the first is to the valid line, so the long
    // one was dropped, not handled.
    let first = fake.line(0, |l| l.starts_with("PRIVMSG "));
    assert_eq!(
        first,
        "PRIVMSG #test :gives friend a strip of delicious bacon as a gift from tester"
    );
    assert!(!fake.log.contains(&Seen::Accepted(1)), "{:?}", fake.log);
    wait_for_warning(&[&format!(
        "127.0.0.1:{}: discarding a line over 8703 bytes from the server (IRC allows 512, plus 8191 for message tags)",
        fake.port
    )]);
    assert!(engine.shutdown().clean);
}

#[test]
fn a_server_that_never_welcomes_us_is_left_after_the_registration_timeout() {
    // It accepts, reads, and never answers.
    let mut fake = Fake::start(|mut peer| peer.drain());
    let engine = fake_engine(fake.port, "plugbot", r#", "register_timeout_ms": 300"#);
    fake.wait(Seen::Closed(0));
    fake.wait(Seen::Accepted(1));
    assert_eq!(
        fake.log
            .iter()
            .filter_map(|e| match e {
                Seen::Line(0, l) => Some(l.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        ["NICK plugbot", "USER plugbot 0 * :plugboard"]
    );
    wait_for_warning(&[&format!(
        "127.0.0.1:{}: no welcome (001) from the server within 300ms of registering; reconnecting in ",
        fake.port
    )]);
    assert!(engine.shutdown().clean);
}

#[test]
fn refused_nicks_fall_back_within_nicklen_a_bounded_number_of_times() {
    let mut fake = Fake::start(|mut peer| {
        if peer.n == 1 {
            // The second server lets the nick through, and announces a
            // NICKLEN shorter than the default.
            peer.line();
            peer.send(":irc.test 001 plugboard :Welcome");
            peer.send(
                ":irc.test 005 plugboard CHANTYPES=# NICKLEN=8 :are supported on this server",
            );
            while peer.line().is_some_and(|l| !l.starts_with("JOIN ")) {}
            return; // and hangs up
        }
        // Every nick is taken, whatever the wording.
        let mut codes = ["433", "437", "436"].iter().cycle();
        while let Some(line) = peer.line() {
            if let Some(nick) = line.strip_prefix("NICK ") {
                let code = codes.next().unwrap();
                peer.send(&format!(
                    ":irc.test {code} * {nick} :Nickname is already in use"
                ));
            }
        }
    });
    let engine = fake_engine(fake.port, "plugboard", "");
    fake.wait(Seen::Closed(0));
    let mut expected = vec!["plugboard".to_owned(), "plugboar_".to_owned()];
    expected.extend((1..=8).map(|i| format!("plugboar{i}")));
    assert_eq!(fake.nicks(0), expected);
    wait_for_warning(&[&format!(
        "127.0.0.1:{}: the server refused all 10 nicks tried, `plugboard` to `plugboar8` (last: 433 Nickname is already in use); reconnecting in ",
        fake.port
    )]);
    // After a connection that announced NICKLEN=8, the fallbacks fit it.
    fake.wait(Seen::Closed(2));
    let mut expected = vec!["plugboard".to_owned(), "plugboa_".to_owned()];
    expected.extend((1..=8).map(|i| format!("plugboa{i}")));
    assert_eq!(fake.nicks(2), expected);
    assert!(engine.shutdown().clean);
}

#[test]
fn an_erroneous_nick_is_cut_to_nicklen_once_then_given_up() {
    let mut fake = Fake::start(|mut peer| {
        // The first server refuses every nick; the second only long ones.
        while let Some(line) = peer.line() {
            if let Some(nick) = line.strip_prefix("NICK ") {
                if peer.n == 0 || nick.len() > 9 {
                    peer.send(&format!(":irc.test 432 * {nick} :Erroneous nickname"));
                } else {
                    peer.send(&format!(":irc.test 001 {nick} :Welcome"));
                }
            }
        }
    });
    let engine = fake_engine(fake.port, "plugboard_bot", "");
    fake.wait(Seen::Closed(0));
    assert_eq!(fake.nicks(0), ["plugboard_bot", "plugboar_"]);
    wait_for_warning(&[&format!(
        "127.0.0.1:{}: the server refuses nick `plugboar_` as erroneous (432 Erroneous nickname); check `nick` in the configuration; reconnecting in ",
        fake.port
    )]);
    fake.line(1, |l| l == "JOIN #test");
    assert_eq!(fake.nicks(1), ["plugboard_bot", "plugboar_"]);
    assert!(engine.shutdown().clean);
}

#[test]
fn a_server_that_stops_reading_times_out_a_send_and_is_left() {
    let (release, hold) = mpsc::channel::<()>();
    let hold = Mutex::new(hold);
    let mut fake = Fake::start(move |mut peer| {
        peer.welcome("plugbot");
        if peer.n == 0 {
            // Ask for a long reply, then never read again (until the test
            // is over and drops `release`).
            peer.send(":tester!t@h PRIVMSG #test :!flood");
            let _ = hold.lock().unwrap().recv_timeout(IO_LIMIT);
            return;
        }
        peer.send(":tester!t@h PRIVMSG #test :!bacon");
        peer.drain();
    });
    let engine = fake_engine(fake.port, "plugbot", r#", "write_timeout_ms": 300"#);
    fake.wait(Seen::Accepted(1));
    // The next reply goes out on the new connection; the egress thread
    // handles replies one at a time, so the long one has failed by then.
    fake.line(1, |l| {
        l == "PRIVMSG #test :gives tester a strip of delicious bacon."
    });
    let ircnet = engine
        .handle()
        .adapters()
        .into_iter()
        .find(|a| a.name == "ircnet")
        .unwrap();
    assert_eq!(ircnet.counters.errors, 1, "{ircnet:?}");
    wait_for_warning(&[&format!(
        "127.0.0.1:{}: the server stopped reading: a line could not be written within 300ms; reconnecting in ",
        fake.port
    )]);
    wait_for_warning(&[
        "could not deliver a reply to tester: cannot send to #test: the server stopped reading: a line could not be written within 300ms; the connection is dropped",
    ]);
    assert!(engine.shutdown().clean);
    drop(release);
}

#[test]
fn a_silent_server_is_pinged_then_left() {
    let mut fake = Fake::start(|mut peer| {
        peer.welcome("plugbot");
        if peer.n == 0 {
            // Silence: no answer to anything, no close.
            peer.drain();
            return;
        }
        while let Some(line) = peer.line() {
            if let Some(token) = line.strip_prefix("PING ") {
                peer.send(&format!(":irc.test PONG irc.test {token}"));
            }
        }
    });
    let engine = fake_engine(
        fake.port,
        "plugbot",
        r#", "ping_after_ms": 200, "ping_timeout_ms": 300"#,
    );
    fake.wait(Seen::Line(0, "PING :plugboard".into()));
    fake.wait(Seen::Closed(0));
    wait_for_warning(&[
        &format!(
            "127.0.0.1:{}: the server went silent: nothing received for ",
            fake.port
        ),
        "our PING unanswered for 300ms; reconnecting in ",
    ]);
    // A server that answers keeps the connection: PING after PING.
    fake.wait_n(2, |e| *e == Seen::Line(1, "PING :plugboard".into()));
    assert!(!fake.log.contains(&Seen::Closed(1)), "{:#?}", fake.log);
    assert!(engine.shutdown().clean);
}

/// The adapter's protocol helpers and flood arithmetic. (They live here, not
/// in the adapter crate, because `cargo test` at the root tests the default
/// members, and the adapter is deliberately not one: it would fail to start,
/// unconfigured, on the quick start's default load path.)
mod protocol {
    use std::time::{Duration, Instant};

    use std::io::{self, BufRead, BufReader, Cursor};

    use plugboard_ircnet::proto::{
        isupport_nicklen, max_text_bytes, nick_candidates, sanitize, split, Line, LineReader, Read,
        DEFAULT_NICKLEN, MAX_LINE_BYTES,
    };
    use plugboard_ircnet::{Bucket, WarnEvery};

    #[test]
    fn parses_server_lines() {
        let l = Line::parse(":nelsk!~n@host PRIVMSG #rust :!bacon friend\r\n").unwrap();
        assert_eq!(l.nick(), Some("nelsk"));
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#rust", "!bacon friend"]);
        let ping = Line::parse("PING :irc.test").unwrap();
        assert_eq!(
            (ping.prefix, ping.command, ping.params),
            (None, "PING", vec!["irc.test"])
        );
        let welcome = Line::parse(":irc.test 001 plugbot :Welcome").unwrap();
        assert_eq!(welcome.command, "001");
        assert_eq!(welcome.params, ["plugbot", "Welcome"]);
        assert_eq!(Line::parse(""), None);
        assert_eq!(Line::parse(":onlyprefix"), None);
        // IRCv3 message tags are skipped.
        let tagged = Line::parse("@time=2024-01-01T00:00:00Z;x=y :n!u@h PRIVMSG #a :hi").unwrap();
        assert_eq!(
            (tagged.nick(), tagged.params),
            (Some("n"), vec!["#a", "hi"])
        );
        assert_eq!(Line::parse("@onlytags"), None);
    }

    #[test]
    fn splits_long_and_multi_line_text() {
        assert_eq!(split("short", 10), ["short"]);
        assert_eq!(split("one two three four", 9), ["one two", "three", "four"]);
        assert_eq!(split("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split("a\n\nb\r\n", 10), ["a", "b"]);
        for piece in split(&"é".repeat(300), 101) {
            assert!(piece.len() <= 101);
        }
        let max = max_text_bytes("plugbot", "#test");
        let line = format!(
            ":plugbot!{}@{} PRIVMSG #test :{}\r\n",
            "u".repeat(10),
            "h".repeat(63),
            "x".repeat(max)
        );
        assert!(line.len() <= 512, "{}", line.len());
        assert_eq!(sanitize("a\rb\0c"), "abc");
        // A reply cannot smuggle a protocol line: each `\n` starts a new
        // PRIVMSG of text, a lone `\r` is dropped rather than ending a line.
        assert_eq!(
            split(&sanitize("ok\r\nQUIT :bye\rJOIN #x"), 400),
            ["ok", "QUIT :byeJOIN #x"]
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, t0);
        let ms = Duration::from_millis;
        // A burst of 3 goes at once, then one every 1/rate (rate 2: 500 ms).
        assert_eq!(b.take(t0, 3.0, 2.0), ms(0));
        assert_eq!(b.take(t0, 3.0, 2.0), ms(0));
        assert_eq!(b.take(t0, 3.0, 2.0), ms(0));
        assert_eq!(b.take(t0, 3.0, 2.0), ms(500));
        assert_eq!(b.take(t0, 3.0, 2.0), ms(1000));
        // After a quiet spell the bucket refills, up to the burst only.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later, 3.0, 2.0), ms(0));
        }
        assert_eq!(b.take(later, 3.0, 2.0), ms(500));
    }

    /// Drains `input` through a reader capped at `max`: the events, and the
    /// lines (as text) in order.
    fn read_all(input: &mut impl BufRead, max: usize) -> (Vec<Read>, Vec<String>) {
        let mut reader = LineReader::new(max);
        let (mut events, mut lines) = (Vec::new(), Vec::new());
        loop {
            match reader.read(input) {
                Ok(Read::Eof) => return (events, lines),
                Ok(Read::Pending) => {}
                Ok(Read::Line) => {
                    events.push(Read::Line);
                    lines.push(String::from_utf8(reader.line().to_vec()).unwrap());
                }
                Ok(event) => events.push(event),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => events.push(Read::Pending),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn the_line_reader_discards_an_over_long_line_without_buffering_it() {
        // The cap counts the line ending: 10 bytes is "12345678\r\n".
        let input = "12345678\r\n123456789\r\nok\n";
        let (events, lines) = read_all(&mut Cursor::new(input), 10);
        assert_eq!(events, [Read::Line, Read::Overlong, Read::Line]);
        assert_eq!(lines, ["12345678", "ok"]);

        // A long line arriving in small chunks is reported once, and the
        // reader never holds more than the cap of it.
        let long = format!("{}\nPING :x\n", "a".repeat(100_000));
        let mut input = BufReader::with_capacity(7, Cursor::new(long));
        let mut reader = LineReader::new(64);
        let mut overlong = 0;
        loop {
            match reader.read(&mut input).unwrap() {
                Read::Overlong => overlong += 1,
                Read::Line => break,
                Read::Pending => assert!(reader.line().len() <= 64),
                Read::Eof => panic!("the line after the long one was lost"),
            }
        }
        assert_eq!((overlong, reader.line()), (1, &b"PING :x"[..]));
        assert_eq!(reader.received(), 100_000 + 1 + 8);
        assert_eq!(MAX_LINE_BYTES, 8191 + 512);
    }

    /// A socket with a read timeout: `WouldBlock` between the pieces.
    struct Trickle(Vec<&'static [u8]>, bool);

    impl io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match self.0.first_mut() {
                None => Ok(0),
                Some(piece) => {
                    let n = piece.len().min(buf.len());
                    buf[..n].copy_from_slice(&piece[..n]);
                    *piece = &piece[n..];
                    if piece.is_empty() {
                        self.0.remove(0);
                    }
                    Ok(n)
                }
            }
        }
    }

    #[test]
    fn the_line_reader_keeps_a_partial_line_across_read_timeouts() {
        let pieces: Vec<&[u8]> = vec![
            b":a!b@c PRIV",
            b"MSG #x :hi\r",
            b"\nxxxxxxxx",
            b"xxxx\nPI",
            b"NG\n",
        ];
        let (events, lines) = read_all(&mut BufReader::new(Trickle(pieces, false)), 24);
        let real: Vec<Read> = events.into_iter().filter(|e| *e != Read::Pending).collect();
        assert_eq!(real, [Read::Line, Read::Line, Read::Line]);
        assert_eq!(lines, [":a!b@c PRIVMSG #x :hi", "xxxxxxxxxxxx", "PING"]);
    }

    #[test]
    fn nick_fallbacks_are_bounded_in_length_and_number() {
        assert_eq!(
            nick_candidates("plugbot", DEFAULT_NICKLEN, 5),
            ["plugbot", "plugbot_", "plugbot1", "plugbot2", "plugbot3"]
        );
        // Cut to the server's NICKLEN, the suffix kept; the configured nick
        // is tried as it is (the server may allow more than the default).
        let nicks = nick_candidates("plugboard_bot", 9, 12);
        assert_eq!(nicks.len(), 12);
        assert_eq!(
            &nicks[..4],
            ["plugboard_bot", "plugboar_", "plugboar1", "plugboar2"]
        );
        assert_eq!(nicks[11], "plugboa10");
        assert!(nicks[1..].iter().all(|n| n.len() <= 9), "{nicks:?}");
        // No repeats, even when the nick is one of its own fallbacks.
        assert_eq!(nick_candidates("ab_", 3, 3), ["ab_", "ab1", "ab2"]);
        // Never cut inside a character, never down to the suffix alone.
        assert_eq!(nick_candidates("éé", 2, 2), ["éé", "é_"]);
        assert_eq!(nick_candidates("abc", 1, 3), ["abc", "a_", "a1"]);
    }

    #[test]
    fn nicklen_comes_from_isupport() {
        let line = Line::parse(
            ":irc.test 005 plugbot RFC2812 IRCD=ngIRCd CHANTYPES=#&+ NICKLEN=30 :are supported on this server",
        )
        .unwrap();
        assert_eq!(isupport_nicklen(&line.params), Some(30));
        let none = Line::parse(":irc.test 005 plugbot CHANTYPES=# :are supported").unwrap();
        assert_eq!(isupport_nicklen(&none.params), None);
        let bad = Line::parse(":irc.test 005 plugbot NICKLEN=0 NICKLEN=x :are supported").unwrap();
        assert_eq!(isupport_nicklen(&bad.params), None);
    }

    #[test]
    fn a_recurring_warning_is_logged_at_most_once_a_period_with_a_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = WarnEvery::new(s(60));
        assert_eq!(w.note(t0), Some(0));
        assert_eq!(w.note(t0 + s(1)), None);
        assert_eq!(w.note(t0 + s(59)), None);
        assert_eq!(w.note(t0 + s(60)), Some(2));
        assert_eq!(w.note(t0 + s(61)), None);
        assert_eq!(w.note(t0 + s(500)), Some(1));
    }
}

/// The REPL with the real IRC adapter loaded, as in README "Talk to a real
/// IRC server": it answers on IRC, and it exits 0 at end of input and on a
/// first SIGTERM, although the IRC adapter never takes the REPL's injected
/// client (it talks to its own server).
mod repl {
    use super::*;

    /// Runs the REPL against ngircd; `end` closes its stdin or signals it,
    /// once the bot has answered on IRC.
    fn run_until(tag: &str, end: impl FnOnce(&mut Child)) -> std::process::Output {
        let binary = ngircd().expect("checked by the caller");
        let port = free_port();
        let _server = Server::start(&binary, port, tag);
        let dir =
            std::env::temp_dir().join(format!("plugboard-irc-repl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in [
            "plugboard_bacon",
            "plugboard_discord",
            "plugboard_irc",
            "plugboard_ircnet",
        ] {
            let built = lib(name);
            std::os::unix::fs::symlink(&built, plugins.join(built.file_name().unwrap())).unwrap();
        }
        let config = dir.join("irc.toml");
        std::fs::write(
            &config,
            format!(
                "plugin_path = [\"plugins\"]\n\n[adapters.ircnet]\nserver = \"127.0.0.1\"\nport = {port}\n\
                 nick = \"plugbot\"\nchannels = [\"#test\"]\nreconnect = {{ min_ms = 50, max_ms = 400 }}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .arg("--config")
            .arg(&config)
            .args(["--grace-period", "2"])
            .env("HOME", &dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("PLUGBOARD_PATH")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut client = Client::connect(port, "tester");
        client.join_and_wait_for("#test", "plugbot");
        let reply = client.ask("#test", "plugbot", "!bacon", |_| true);
        assert_eq!(reply, ["gives tester a strip of delicious bacon."]);
        end(&mut child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the REPL did not exit by itself")
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    #[test]
    fn exits_at_end_of_input() {
        if ngircd().is_none() {
            eprintln!(
                "skipping: ngircd is not installed (`apt-get install ngircd`; .ci/run does this)"
            );
            return;
        }
        let out = run_until("eof", |child| drop(child.stdin.take()));
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn exits_on_a_first_sigterm() {
        if ngircd().is_none() {
            eprintln!(
                "skipping: ngircd is not installed (`apt-get install ngircd`; .ci/run does this)"
            );
            return;
        }
        let out = run_until("term", |child| {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        });
        assert!(out.status.success(), "{out:?}");
    }
}
