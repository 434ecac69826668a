//! The real IRC adapter against a real IRC server (ngircd) on loopback.
//!
//! `.ci/run` installs ngircd when it is missing; these tests skip, saying
//! so, only where ngircd is not installed. Each test starts its own server
//! with a generated config on a free port in a temporary directory, as an
//! unprivileged user when run as root.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

fn lib(name: &str) -> PathBuf {
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
    assert!(engine.shutdown());
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
