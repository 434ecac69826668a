//! Shared test support: locating built libraries, temp dirs, a test platform
//! client, a capturing logger, and the nested build of the drift fixture.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use abi_stable::std_types::{ROption, RResult};
use crossbeam_channel::{unbounded, Receiver, Sender};
use plugboard_interface::host::{client_box, Client, ClientBox, ClientMessage};
use plugboard_interface::ExtError;

mod other_interface;
pub use other_interface::{drift_plugin, future_plugin, readme_plugin, FUTURE_VERSION};

/// `target/<profile>/deps`, where cargo put this test binary and the cdylibs
/// of the dev-dependencies.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .expect("test binary has a directory")
        .to_owned()
}

/// The built library of crate `name` (`plugboard_bacon`).
///
/// Also installs the capturing logger: a library's logging bridge reads the
/// host's max level when the library is first initialised, so the logger
/// must be in place before any test gets hold of a library.
pub fn lib(name: &str) -> PathBuf {
    init_logging();
    let path = deps_dir().join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(tag: &str) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "plugboard-test-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A platform client for tests: the test types through a [`Feed`], replies
/// are collected in [`Replies`].
#[derive(Clone)]
pub struct TestClient {
    inbound: Receiver<ClientMessage>,
    outbound: Sender<ClientMessage>,
}

impl Client for TestClient {
    fn recv(&self) -> ROption<ClientMessage> {
        self.inbound.recv().ok().into()
    }
    fn send(&self, message: &ClientMessage) -> RResult<(), ExtError> {
        let _ = self.outbound.send(message.clone());
        RResult::ROk(())
    }
    /// Tests end input by dropping their `Feed`, before shutting down.
    fn close(&self) {}
}

pub struct Feed(Sender<ClientMessage>);

impl Feed {
    /// `user` writes `text` (no room).
    pub fn say(&self, user: &str, text: &str) {
        self.0
            .send(ClientMessage {
                room: ROption::RNone,
                user: ROption::RSome(user.into()),
                text: text.into(),
            })
            .unwrap();
    }
}

pub struct Replies(Receiver<ClientMessage>);

impl Replies {
    /// Every reply received so far (call after shutdown: then it is all).
    pub fn all(&self) -> Vec<ClientMessage> {
        self.0.try_iter().collect()
    }

    pub fn texts(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|m| m.text.into_string())
            .collect()
    }

    /// The channel itself, to wait for a reply or something else.
    pub fn receiver(&self) -> &Receiver<ClientMessage> {
        &self.0
    }

    /// Blocks until `n` more replies have arrived (a minute at most, as a
    /// guard against a hung engine, not a timing assumption).
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.0
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("reply {} of {n} never came", i + 1))
                    .text
                    .into_string()
            })
            .collect()
    }
}

impl TestClient {
    pub fn triple() -> (Feed, ClientBox, Replies) {
        let (in_tx, in_rx) = unbounded();
        let (out_tx, out_rx) = unbounded();
        let client = client_box(TestClient {
            inbound: in_rx,
            outbound: out_tx,
        });
        (Feed(in_tx), client, Replies(out_rx))
    }

    pub fn pair() -> (Feed, ClientBox) {
        let (feed, client, _) = Self::triple();
        (feed, client)
    }
}

/// Starts `builder` with a [`TestClient`] injected into the `discord`
/// adapter; every extension must load.
/// The engine's load failures, one line each, as an operator reads them.
pub fn failure_lines(engine: &plugboard_loader::Engine) -> Vec<String> {
    engine
        .report()
        .failures
        .iter()
        .map(ToString::to_string)
        .collect()
}

pub fn start(
    builder: plugboard_loader::EngineBuilder,
) -> (plugboard_loader::Engine, Feed, Replies) {
    let (feed, client, replies) = TestClient::triple();
    let engine = builder
        .clients(move |m| (m.name.as_str() == "discord").then(|| client.clone()))
        .start()
        .unwrap();
    assert!(
        engine.report().failures.is_empty(),
        "{:?}",
        engine.report().failures
    );
    (engine, feed, replies)
}

type Record = (log::Level, String, String);

struct Capture(Mutex<Vec<Record>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push((
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

/// Installs the capturing logger (once per test binary). Call it before the
/// first engine of a test that checks logs: a library's logging bridge reads
/// the host's max level when it is first initialised.
pub fn init_logging() {
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    });
}

pub fn captured_logs() -> Vec<Record> {
    CAPTURE
        .get()
        .map(|c| c.0.lock().unwrap().clone())
        .unwrap_or_default()
}
