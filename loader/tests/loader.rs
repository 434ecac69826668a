//! Loader integration tests: real extension libraries (good ones and
//! deliberately broken ones, one per failure mode) loaded into a real engine.
//!
//! The good libraries and the in-workspace fixtures are dev-dependencies, so
//! cargo has built their cdylibs into `target/<profile>/deps` before this
//! binary runs. The incompatible-layout fixture needs a *different* interface
//! crate, so it is built here, once, by a nested `cargo build`.

mod support;

mod library {
    use std::fs;

    use plugboard_loader::library::{open, Candidate};
    use plugboard_loader::{Engine, EngineConfig, Kind, LoadErrorKind, LoadPath, Source};

    use crate::support::{lib, temp_dir};

    #[test]
    fn opens_a_good_plugin_and_a_good_adapter() {
        let Candidate::Plugin(bacon) = open(&lib("plugboard_bacon")).unwrap() else {
            panic!("bacon is a plugin");
        };
        assert_eq!(bacon.manifest.name.as_str(), "bacon");
        let patterns: Vec<&str> = bacon
            .manifest
            .commands
            .iter()
            .map(|c| c.pattern.as_str())
            .collect();
        assert_eq!(patterns, [r"bacon$", r"bacon\s+(\S+)"]);

        let adapter = open(&lib("plugboard_discord")).unwrap();
        assert_eq!(adapter.kind(), Kind::Adapter);
        assert_eq!(adapter.name(), "discord");
        assert_eq!(adapter.source(), &Source::Library(lib("plugboard_discord")));
    }

    #[test]
    fn a_text_file_named_like_a_library_is_one_line() {
        let dir = temp_dir("text");
        let path = dir
            .path()
            .join(format!("notes.{}", std::env::consts::DLL_EXTENSION));
        fs::write(&path, "this is not ELF\n").unwrap();
        let err = open(&path).err().expect("a text file is not a library");
        assert!(matches!(err.kind, LoadErrorKind::NotElf { .. }), "{err:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!(
                "{}: not a loadable shared library",
                path.display()
            )),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
        // dlerror() repeats the path; it is stripped from the cause.
        assert_eq!(
            line.matches(&path.display().to_string()).count(),
            1,
            "{line}"
        );
    }

    #[test]
    fn a_library_without_a_root_module_is_refused() {
        let path = lib("plugboard_fixture_no_root");
        let err = open(&path).err().expect("no root module");
        assert!(matches!(err.kind, LoadErrorKind::NoRootModule), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a plugboard extension: the library exports no abi_stable root module",
                path.display()
            )
        );
    }

    #[test]
    fn an_incompatible_layout_is_summarised_on_one_line() {
        let path = crate::support::drift_plugin();
        let err = open(&path).err().expect("the layout differs");
        let LoadErrorKind::Layout { summary, detail } = &err.kind else {
            panic!("expected a layout error, got {err:?}");
        };
        // The summary names the type that differs; the full dump is kept.
        assert!(summary.contains("Invocation"), "{summary}\n{detail}");
        assert!(
            detail.len() > summary.len() * 4,
            "detail keeps abi_stable's report"
        );
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.len() < 400, "one readable line, not a dump: {line}");
        assert!(line.contains("incompatible interface layout"), "{line}");
    }

    #[test]
    fn zero_byte_files_and_broken_symlinks_are_reported() {
        let dir = temp_dir("empty");
        let ext = std::env::consts::DLL_EXTENSION;
        let empty = dir.path().join(format!("empty.{ext}"));
        fs::write(&empty, b"").unwrap();
        assert!(matches!(
            open(&empty).err().unwrap().kind,
            LoadErrorKind::Empty
        ));
        let link = dir.path().join(format!("dangling.{ext}"));
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(matches!(
            open(&link).err().unwrap().kind,
            LoadErrorKind::BrokenSymlink
        ));
        let missing = dir.path().join(format!("missing.{ext}"));
        assert!(matches!(
            open(&missing).err().unwrap().kind,
            LoadErrorKind::NotFound
        ));
    }

    /// One directory holding every kind of library at once: every failure is
    /// reported, one line each, and every good library still loads.
    #[test]
    fn bad_libraries_never_stop_the_good_ones() {
        let dir = temp_dir("mixed");
        let ext = std::env::consts::DLL_EXTENSION;
        let put = |name: &str, from: &std::path::Path| {
            let to = dir.path().join(format!("{name}.{ext}"));
            fs::copy(from, &to).unwrap();
            to
        };
        // File names sort in this order, which is the load order.
        let bacon = put("a-bacon", &lib("plugboard_bacon"));
        let bacon_again = put("b-bacon-copy", &lib("plugboard_bacon"));
        put("c-discord", &lib("plugboard_discord"));
        let no_root = put("d-no-root", &lib("plugboard_fixture_no_root"));
        let text = dir.path().join(format!("e-text.{ext}"));
        fs::write(&text, "not a library").unwrap();
        let drift = put("f-drift", &crate::support::drift_plugin());

        let missing_dir = dir.path().join("no-such-dir");
        let engine = Engine::builder(EngineConfig::default())
            .load_path(&LoadPath::new([dir.path().to_owned(), missing_dir.clone()]))
            .clients(|_| Some(crate::support::TestClient::pair().1))
            .start()
            .unwrap();
        let report = engine.report();
        let loaded: Vec<(&str, Kind)> = report
            .loaded
            .iter()
            .map(|l| (l.name.as_str(), l.kind))
            .collect();
        assert_eq!(
            loaded,
            [("bacon", Kind::Plugin), ("discord", Kind::Adapter)]
        );
        assert_eq!(report.loaded[0].source, Source::Library(bacon.clone()));

        let failures: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        assert_eq!(failures.len(), 5, "{failures:#?}");
        for line in &failures {
            assert_eq!(line.lines().count(), 1, "{line}");
        }
        let starts = |path: &std::path::Path| {
            failures
                .iter()
                .any(|f| f.starts_with(&format!("{}: ", path.display())))
        };
        assert!(starts(&missing_dir));
        assert!(starts(&no_root));
        assert!(starts(&text));
        assert!(starts(&drift));
        assert!(failures.iter().any(|f| f
            == &format!(
                "{}: duplicate plugin name `bacon` (already loaded from {}); skipped",
                bacon_again.display(),
                bacon.display()
            )));
        engine.shutdown();
    }
}

mod engine {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use plugboard_interface::message::RawMessage;
    use plugboard_interface::prelude::*;
    use plugboard_loader::{Engine, EngineConfig, Kind, LoadErrorKind, SubmitError, Unmatched};

    use crate::support::lib;

    /// An in-process plugin exercising every kind of command outcome.
    struct Probe;

    impl Plugin for Probe {
        fn manifest() -> Manifest<Self> {
            Manifest::new("probe", "1.0.0")
                .command("echo", r"echo\s+(?P<rest>.*)", "!echo <text>", Probe::echo)
                .command("seq", r"seq\s+(\d+)", "!seq <n>", Probe::seq)
                .command("boom", r"boom$", "!boom", Probe::boom)
                .command("fail", r"fail$", "!fail", Probe::fail)
                .command("quiet", r"quiet$", "!quiet", Probe::quiet)
                .command("both", r"both$", "!both", Probe::both)
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Probe)
        }
    }

    impl Probe {
        fn echo(&self, call: &Call<'_>) -> Result<Reply, Error> {
            Ok(format!(
                "echo {} from {} via {}",
                call.capture(1).unwrap_or(""),
                call.sender(),
                call.adapter()
            )
            .into())
        }
        fn seq(&self, call: &Call<'_>) -> Result<Reply, Error> {
            let n: u64 = call.capture(1).unwrap_or("0").parse()?;
            // Uneven work per command, so that parallel workers would
            // overtake each other if ordering were not enforced.
            for _ in 0..(n * 7919 % 13) * 50 {
                std::thread::yield_now();
            }
            Ok(n.to_string().into())
        }
        fn boom(&self, _: &Call<'_>) -> Result<Reply, Error> {
            panic!("probe exploded");
        }
        fn fail(&self, _: &Call<'_>) -> Result<Reply, Error> {
            Err(Error::msg("nothing to fail at"))
        }
        fn quiet(&self, _: &Call<'_>) -> Result<Reply, Error> {
            Ok(Reply::none())
        }
        fn both(&self, _: &Call<'_>) -> Result<Reply, Error> {
            Ok("probe saw both".into())
        }
    }

    /// A second plugin, to check that every matching command runs, in load order.
    struct Second;

    impl Plugin for Second {
        fn manifest() -> Manifest<Self> {
            Manifest::new("second", "1.0.0").command("both", r"both$", "!both", |_, _| {
                Ok("second saw both".into())
            })
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Second)
        }
    }

    fn engine(workers: usize) -> (Engine, crate::support::Feed, crate::support::Replies) {
        let builder = Engine::builder(EngineConfig {
            workers,
            unmatched: Unmatched::Reply,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_bacon"))
        .library(&lib("plugboard_discord"))
        .plugin::<Probe>()
        .plugin::<Second>();
        crate::support::start(builder)
    }

    #[test]
    fn routes_commands_with_captures_through_real_libraries() {
        let (engine, feed, replies) = engine(2);
        feed.say("nelsk", "!bacon");
        feed.say("nelsk", "!bacon friend");
        feed.say("nelsk", "!echo hello there");
        feed.say("nelsk", "just chatting");
        feed.say("nelsk", "!nothing matches this");
        feed.say("nelsk", "!quiet");
        feed.say("nelsk", "!both");
        drop(feed);
        engine.shutdown();
        assert_eq!(
            replies.texts(),
            [
                "gives nelsk a strip of delicious bacon.",
                "gives friend a strip of delicious bacon as a gift from nelsk",
                "echo hello there from nelsk via discord",
                "no command matches `!nothing matches this`",
                "probe saw both",
                "second saw both",
            ]
        );
    }

    #[test]
    fn panics_and_errors_become_short_replies_and_the_engine_keeps_serving() {
        let (engine, feed, replies) = engine(2);
        feed.say("a", "!boom");
        feed.say("a", "!fail");
        feed.say("a", "!bacon");
        drop(feed);
        engine.shutdown();
        assert_eq!(
            replies.texts(),
            [
                "sorry, `probe` hit an internal error",
                "`probe` failed: nothing to fail at",
                "gives a a strip of delicious bacon.",
            ]
        );
    }

    #[test]
    fn replies_keep_order_within_each_conversation() {
        const USERS: usize = 8;
        const PER_USER: usize = 400;
        let (engine, feed, replies) = engine(4);
        for i in 0..PER_USER {
            for u in 0..USERS {
                feed.say(&format!("user{u}"), &format!("!seq {i}"));
            }
        }
        drop(feed);
        engine.shutdown();
        let mut by_user: HashMap<String, Vec<u64>> = HashMap::new();
        for reply in replies.all() {
            let user = reply
                .user
                .into_option()
                .expect("replies are addressed")
                .to_string();
            by_user
                .entry(user)
                .or_default()
                .push(reply.text.parse().unwrap());
        }
        assert_eq!(by_user.len(), USERS);
        for (user, seen) in by_user {
            let expected: Vec<u64> = (0..PER_USER as u64).collect();
            assert_eq!(seen, expected, "replies to {user} out of order or missing");
        }
    }

    #[test]
    fn shutdown_answers_every_accepted_command() {
        const N: usize = 20_000;
        let (engine, feed, replies) = engine(2);
        let handle = engine.handle();
        for i in 0..N {
            // Half through the adapter, half through the embedder's handle.
            if i % 2 == 0 {
                feed.say(&format!("u{}", i % 13), "!bacon");
            } else {
                handle
                    .submit(
                        "discord",
                        RawMessage::new(None, &format!("h{}", i % 7), "!bacon"),
                    )
                    .unwrap();
            }
        }
        drop(feed);
        engine.shutdown();
        assert_eq!(replies.all().len(), N);
        assert_eq!(
            handle.submit("discord", RawMessage::new(None, "late", "!bacon")),
            Err(SubmitError::Closed)
        );
    }

    #[test]
    fn handle_refuses_unknown_adapters() {
        let (engine, _feed, _replies) = engine(1);
        let err = engine
            .handle()
            .submit("nulladapter", RawMessage::new(None, "x", "!bacon"))
            .unwrap_err();
        assert_eq!(err.to_string(), "no adapter named `nulladapter`");
    }

    #[test]
    fn plugin_logs_reach_the_host_logger_under_their_own_name() {
        let (engine, feed, _replies) = engine(1);
        drop(feed);
        engine.shutdown();
        let records = crate::support::captured_logs();
        assert!(
            records
                .iter()
                .any(|(level, target, message)| *level == log::Level::Info
                    && target == "adapter::discord::plugboard_discord"
                    && message == "listening on the injected client"),
            "{records:?}"
        );
    }

    /// An in-process adapter, registered through the same trait as a library.
    struct Ticker;

    static TICKER_SENT: AtomicUsize = AtomicUsize::new(0);

    impl Adapter for Ticker {
        fn info() -> AdapterInfo {
            AdapterInfo::new("ticker", "1.0.0")
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Ticker)
        }
        fn listen(&self, sink: &Sink) -> Result<(), Error> {
            for i in 0..10 {
                sink.push(RawMessage::new(
                    Some("#tick"),
                    "clock",
                    &format!("!seq {i}"),
                ))
                .map_err(Error::from)?;
            }
            Ok(())
        }
        fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
            assert_eq!(reply.room(), Some("#tick"));
            assert_eq!(
                reply.text(),
                TICKER_SENT.fetch_add(1, Ordering::SeqCst).to_string()
            );
            Ok(())
        }
        fn stop(&self) {}
    }

    #[test]
    fn in_process_adapters_and_plugins_use_the_same_traits() {
        let engine = Engine::builder(EngineConfig::default())
            .plugin::<Probe>()
            .adapter::<Ticker>()
            .start()
            .unwrap();
        assert_eq!(engine.adapter_names().collect::<Vec<_>>(), ["ticker"]);
        engine.shutdown();
        assert_eq!(TICKER_SENT.load(Ordering::SeqCst), 10);
    }

    /// An adapter that listens until stopped, for `serve`.
    struct Waiter {
        stop: std::sync::Mutex<bool>,
        stopped: std::sync::Condvar,
    }

    impl Adapter for Waiter {
        fn info() -> AdapterInfo {
            AdapterInfo::new("waiter", "1.0.0")
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Waiter {
                stop: std::sync::Mutex::new(false),
                stopped: std::sync::Condvar::new(),
            })
        }
        fn listen(&self, sink: &Sink) -> Result<(), Error> {
            sink.push(RawMessage::new(None, "w", "!seq 7"))?;
            let guard = self.stop.lock().unwrap();
            drop(self.stopped.wait_while(guard, |stop| !*stop).unwrap());
            Ok(())
        }
        fn send(&self, reply: &Outgoing<'_>) -> Result<(), Error> {
            assert_eq!(reply.text(), "7");
            Ok(())
        }
        fn stop(&self) {
            *self.stop.lock().unwrap() = true;
            self.stopped.notify_all();
        }
    }

    #[test]
    fn serve_runs_until_a_handle_requests_shutdown() {
        let engine = Engine::builder(EngineConfig::default())
            .plugin::<Probe>()
            .adapter::<Waiter>()
            .start()
            .unwrap();
        let handle = engine.handle();
        let server = std::thread::spawn(move || engine.serve());
        handle.request_shutdown();
        assert!(server.join().unwrap().clean, "a clean, drained shutdown");
        let probe = handle
            .plugins()
            .into_iter()
            .find(|p| p.name == "probe")
            .unwrap();
        assert_eq!(
            probe.counters.calls, 1,
            "the command pushed before the stop was answered"
        );
    }

    /// An adapter whose `stop` never returns (and whose `listen` ignores
    /// it): neither `request_shutdown` nor the shutdown may wait for it.
    struct Deaf;

    impl Adapter for Deaf {
        fn info() -> AdapterInfo {
            AdapterInfo::new("deaf", "1.0.0")
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Deaf)
        }
        fn listen(&self, _: &Sink) -> Result<(), Error> {
            loop {
                std::thread::park();
            }
        }
        fn send(&self, _: &Outgoing<'_>) -> Result<(), Error> {
            Ok(())
        }
        fn stop(&self) {
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn a_stop_that_never_returns_holds_neither_the_caller_nor_the_shutdown() {
        let engine = Engine::builder(EngineConfig {
            listen_grace: std::time::Duration::from_millis(100),
            shutdown_grace: std::time::Duration::from_millis(100),
            ..EngineConfig::default()
        })
        .adapter::<Deaf>()
        .start()
        .unwrap();
        // Returns although `stop` never does.
        engine.handle().request_shutdown();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || tx.send(engine.shutdown()));
        let report = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the shutdown is bounded whatever `stop` does");
        assert!(!report.clean, "the deaf listener was abandoned");
    }

    /// An adapter whose init fails (no client injected) is reported; the
    /// rest of the engine runs.
    #[test]
    fn init_failures_are_reported_and_skipped() {
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_discord"))
            .plugin::<Probe>()
            .start()
            .unwrap();
        let report = engine.report();
        assert_eq!(report.loaded.len(), 1);
        assert_eq!(report.loaded[0].kind, Kind::Plugin);
        assert!(matches!(report.failures[0].kind, LoadErrorKind::Init(_)));
        assert!(
            report.failures[0].to_string().ends_with(
                "rejected its configuration: the `discord` adapter needs an injected client"
            ),
            "{}",
            report.failures[0]
        );
    }
}

/// Every bad-library case of the hardening issue, one test each.
mod bad_libraries {
    use std::fs;

    use plugboard_interface::ExtError;
    use plugboard_loader::library::open;
    use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, LoadPath};

    use crate::support::{future_plugin, lib, temp_dir, FUTURE_VERSION};

    fn one_line(err: &plugboard_loader::LoadError) -> String {
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with(&format!("{}: ", err.source)), "{line}");
        line
    }

    #[test]
    fn random_bytes_and_an_executable_are_not_libraries() {
        let dir = temp_dir("bytes");
        let ext = std::env::consts::DLL_EXTENSION;
        let random = dir.path().join(format!("random.{ext}"));
        // Deterministic noise, long enough to be taken for a header.
        let bytes: Vec<u8> = (0u32..4096)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(&random, bytes).unwrap();
        let err = open(&random).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::NotElf { .. }), "{err:?}");
        one_line(&err);

        let exe = dir.path().join(format!("exe.{ext}"));
        fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        let err = open(&exe).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::Open(_)), "{err:?}");
        one_line(&err);
    }

    #[test]
    fn a_system_library_has_no_root_module() {
        // Whichever of the usual places has the C math library.
        let Some(libm) = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
            "/usr/lib64/libm.so.6",
            "/lib/aarch64-linux-gnu/libm.so.6",
        ]
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.exists()) else {
            // The no-root fixture covers the same failure everywhere.
            return;
        };
        let err = open(libm).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::NoRootModule), "{err:?}");
    }

    #[test]
    fn another_applications_abi_stable_library_is_the_wrong_kind() {
        let path = lib("plugboard_fixture_foreign_root");
        let err = open(&path).err().unwrap();
        assert!(
            matches!(&err.kind, LoadErrorKind::UnknownRootModule(n) if n == "some_other_app"),
            "{err:?}"
        );
        assert!(one_line(&err)
            .contains("not a plugboard extension: its root module is `some_other_app`"));
    }

    #[test]
    fn an_incompatible_interface_version_says_what_to_rebuild_against() {
        let path = future_plugin();
        let err = open(&path).err().unwrap();
        assert!(
            matches!(&err.kind, LoadErrorKind::InterfaceVersion { found, .. } if found == FUTURE_VERSION),
            "{err:?}"
        );
        let line = one_line(&err);
        assert!(
            line.contains(&format!(
                "built against plugboard-interface {FUTURE_VERSION}, but this engine speaks 0.1.x"
            )),
            "{line}"
        );
    }

    #[test]
    fn an_invalid_command_pattern_is_named() {
        let err = open(&lib("plugboard_fixture_bad_pattern")).err().unwrap();
        assert_eq!(
            one_line(&err),
            format!(
                "{}: invalid manifest: command `open`: invalid pattern `bacon(`: unclosed group",
                err.source
            )
        );
    }

    #[test]
    fn init_errors_and_init_panics_are_reported_and_skipped() {
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_fixture_init_fails"))
            .library(&lib("plugboard_fixture_init_panics"))
            .library(&lib("plugboard_bacon"))
            .start()
            .unwrap();
        let report = engine.report();
        assert_eq!(report.loaded.len(), 1, "bacon still loads");
        let lines: Vec<String> = report.failures.iter().map(one_line).collect();
        assert!(
            matches!(&report.failures[0].kind, LoadErrorKind::Init(ExtError::Failed(m)) if m == "database unreachable")
        );
        assert!(
            lines[0].ends_with("init failed: database unreachable"),
            "{}",
            lines[0]
        );
        assert!(matches!(
            &report.failures[1].kind,
            LoadErrorKind::Init(ExtError::Panicked(_))
        ));
        assert!(
            lines[1].ends_with("init failed: panicked: fixture init panic"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn unreadable_and_missing_directories_are_reported() {
        let dir = temp_dir("loop");
        let looping = dir.path().join("loop");
        std::os::unix::fs::symlink(&looping, &looping).unwrap();
        let scan = LoadPath::new([looping.clone(), dir.path().join("absent")]).scan();
        assert_eq!(scan.failures.len(), 2);
        assert!(
            matches!(scan.failures[0].kind, LoadErrorKind::ReadDir(_)),
            "{:?}",
            scan.failures[0]
        );
        assert!(one_line(&scan.failures[0]).contains("cannot list directory"));
        assert!(matches!(scan.failures[1].kind, LoadErrorKind::DirNotFound));

        // Permission bits only bind non-root users.
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(&locked).is_err() {
            let scan = LoadPath::new([locked.clone()]).scan();
            assert!(matches!(scan.failures[0].kind, LoadErrorKind::ReadDir(_)));
        }
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Misbehaving extensions at run time: panics, slow and hung commands,
/// quarantine, adapters that panic.
mod faults {
    use std::time::Duration;

    use plugboard_interface::message::RawMessage;
    use plugboard_loader::{Engine, EngineConfig, Kind, PluginState, ShutdownReport, Unmatched};

    use crate::support::{lib, TestClient};

    fn engine_with(
        libs: &[&str],
        configure: impl FnOnce(plugboard_loader::EngineBuilder) -> plugboard_loader::EngineBuilder,
    ) -> (Engine, crate::support::Feed, crate::support::Replies) {
        let mut builder = Engine::builder(EngineConfig {
            workers: 2,
            unmatched: Unmatched::Reply,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"));
        for name in libs {
            builder = builder.library(&lib(name));
        }
        crate::support::start(configure(builder))
    }

    #[test]
    fn repeated_panics_quarantine_a_plugin_until_reinstated() {
        let (engine, feed, replies) = engine_with(&["plugboard_fixture_panics"], |b| b);
        let handle = engine.handle();
        for _ in 0..4 {
            feed.say("ann", "!panic");
        }
        feed.say("ann", "!calm");
        feed.say("ann", "!bacon");
        // Replies are in order for ann, so once bacon's reply is in, the
        // quarantine is decided; wait for it through the reply stream.
        let texts = replies.wait_for(6);
        assert_eq!(
            texts,
            [
                "sorry, `panics` hit an internal error",
                "sorry, `panics` hit an internal error",
                "sorry, `panics` hit an internal error",
                "`panics` is quarantined; ask an operator to re-enable it",
                "`panics` is quarantined; ask an operator to re-enable it",
                "gives ann a strip of delicious bacon.",
            ]
        );
        let status = handle.plugins();
        let panics = status.iter().find(|p| p.name == "panics").unwrap();
        assert_eq!(panics.state, PluginState::Quarantined);
        assert_eq!(panics.counters.panics, 3);
        handle.reinstate("panics").unwrap();
        feed.say("ann", "!calm");
        assert_eq!(replies.wait_for(1), ["calm"]);
        drop(feed);
        engine.shutdown();
    }

    #[test]
    fn a_hung_command_times_out_and_everyone_else_keeps_flowing() {
        let (engine, feed, replies) = engine_with(&["plugboard_fixture_hangs"], |b| {
            b.plugin_deadline("hangs", Duration::from_millis(300))
        });
        let handle = engine.handle();
        feed.say("stuck", "!hang");
        feed.say("stuck", "!bacon");
        // Other users are served while `stuck` waits for its deadline: all
        // their replies come before the timeout reply.
        for i in 0..200 {
            feed.say(&format!("u{}", i % 5), "!bacon");
        }
        let texts = replies.wait_for(202);
        let timeout = texts
            .iter()
            .position(|t| t.starts_with("`hangs` timed out after"))
            .unwrap();
        let stuck_bacon = texts
            .iter()
            .position(|t| t == "gives stuck a strip of delicious bacon.")
            .unwrap();
        assert!(
            timeout < stuck_bacon,
            "the stuck user's replies stay in order"
        );
        assert_eq!(
            texts.iter().filter(|t| t.starts_with("gives u")).count(),
            200
        );
        assert_eq!(handle.abandoned_threads(), 1);
        let hangs = handle
            .plugins()
            .into_iter()
            .find(|p| p.name == "hangs")
            .unwrap();
        assert_eq!(hangs.counters.timeouts, 1);
        // The pool kept its capacity: more work still flows.
        feed.say("stuck", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives stuck a strip of delicious bacon."]
        );
        drop(feed);
        assert!(
            engine.shutdown().clean,
            "shutdown drains despite the abandoned thread"
        );
    }

    #[test]
    fn slow_commands_within_their_deadline_just_answer() {
        let (engine, feed, replies) = engine_with(&["plugboard_fixture_sleeps"], |b| b);
        feed.say("zed", "!sleep 20");
        drop(feed);
        engine.shutdown();
        assert_eq!(replies.texts(), ["slept 20 ms"]);
    }

    #[test]
    fn a_command_past_its_deadline_gets_one_timeout_reply() {
        let (engine, feed, replies) = engine_with(&["plugboard_fixture_sleeps"], |b| {
            b.plugin_deadline("sleeps", Duration::from_millis(50))
        });
        feed.say("zed", "!sleep 2000");
        feed.say("zed", "!bacon");
        assert_eq!(
            replies.wait_for(2)[1],
            "gives zed a strip of delicious bacon."
        );
        drop(feed);
        engine.shutdown();
        let texts = replies.texts();
        assert!(texts.is_empty(), "no late reply: {texts:?}");
    }

    #[test]
    fn adapter_panics_in_listen_and_send_are_contained() {
        for (panic_in, expect_sends) in [("listen", 1), ("send", 1)] {
            let config = format!(r#"{{"panic_in": "{panic_in}", "commands": ["!bacon"]}}"#);
            let (engine, feed, replies) = engine_with(&["plugboard_fixture_bad_adapter"], |b| {
                b.extension_config(Kind::Adapter, "bad-adapter", config)
            });
            // The other adapter keeps working.
            feed.say("ok", "!bacon");
            assert_eq!(
                replies.wait_for(1),
                ["gives ok a strip of delicious bacon."]
            );
            drop(feed);
            let handle = engine.handle();
            engine.shutdown();
            let bad = handle
                .adapters()
                .into_iter()
                .find(|a| a.name == "bad-adapter")
                .unwrap();
            assert_eq!(bad.counters.calls, expect_sends, "{panic_in}");
            assert_eq!(
                bad.counters.panics,
                u64::from(panic_in == "send"),
                "{panic_in}"
            );
        }
    }

    #[test]
    fn a_full_engine_that_rejects_answers_busy_and_loses_nothing() {
        const N: usize = 30;
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig {
            workers: 1,
            ingress_capacity: 1,
            execution_capacity: 1,
            max_pending: 1,
            when_full: plugboard_loader::WhenFull::Reject,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_fixture_sleeps"))
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
        // Each command holds the only worker for 20 ms while all N arrive.
        for i in 0..N {
            feed.say(&format!("u{}", i % 3), "!sleep 20");
        }
        drop(feed);
        engine.shutdown();
        let texts = replies.texts();
        let answered: u64 = texts.iter().map(|t| crate::overload::answers(t)).sum();
        assert_eq!(
            answered, N as u64,
            "every command answered once, by its reply or a busy reply: {texts:?}"
        );
        let served = texts.iter().filter(|t| *t == "slept 20 ms").count();
        assert!(served < N, "the queue filled: {texts:?}");
        assert!(texts.iter().all(|t| t == "slept 20 ms"
            || t.starts_with("busy: too many of your commands are queued; `!sleep 20`")));
    }

    #[test]
    fn with_reject_a_flooding_user_whose_command_hangs_cannot_stall_others() {
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig {
            workers: 2,
            max_pending: 16,
            when_full: plugboard_loader::WhenFull::Reject,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_bacon"))
        .library(&lib("plugboard_fixture_hangs"))
        .plugin_deadline("hangs", Duration::from_millis(300))
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
        feed.say("flooder", "!hang");
        for _ in 0..100 {
            feed.say("flooder", "!bacon");
        }
        for i in 0..50 {
            feed.say(&format!("calm{i}"), "!bacon");
        }
        // One reply per command, but consecutive refused ones may share one.
        let mut texts = Vec::new();
        let mut answered = 0;
        while answered < 151 {
            let text = replies.wait_for(1).remove(0);
            answered += crate::overload::answers(&text);
            texts.push(text);
        }
        assert_eq!(answered, 151, "{texts:?}");
        let timeout = texts
            .iter()
            .position(|t| t.starts_with("`hangs` timed out"))
            .unwrap();
        let calm: Vec<usize> = (0..texts.len())
            .filter(|&i| texts[i].starts_with("gives calm"))
            .collect();
        assert_eq!(calm.len(), 50);
        assert!(
            calm.iter().all(|&i| i < timeout),
            "others were served while the flooder waited"
        );
        assert!(texts.iter().any(|t| t.starts_with("busy:")));
        drop(feed);
        engine.shutdown();
    }

    /// Issue 10, item 2: commands still waiting when the shutdown grace
    /// ends used to be dropped without a word. They are now answered "the
    /// bot is shutting down" through their adapter, like any reply, and the
    /// report accounts for every command, from adapters and handles alike.
    #[test]
    fn past_the_grace_commands_not_run_are_refused_and_every_one_is_counted() {
        const FED: usize = 300;
        const SUBMITTED: usize = 100;
        let (engine, feed, replies) = crate::support::start(
            Engine::builder(EngineConfig {
                workers: 2,
                shutdown_grace: Duration::from_millis(200),
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .library(&lib("plugboard_fixture_sleeps")),
        );
        // 4 s of work on 2 workers, for a grace of 200 ms.
        let handle = engine.handle();
        for i in 0..FED {
            feed.say(&format!("u{}", i % 10), "!sleep 10");
        }
        for i in 0..SUBMITTED {
            let message = RawMessage::new(None, &format!("h{}", i % 5), "!sleep 10");
            handle.submit("discord", message).unwrap();
        }
        drop(feed);
        let report = engine.shutdown();
        let texts = replies.texts();
        let slept = texts.iter().filter(|t| *t == "slept 10 ms").count();
        let refused = texts
            .iter()
            .filter(|t| *t == "the bot is shutting down; `!sleep` was not run")
            .count();
        assert_eq!(slept + refused, texts.len(), "{texts:?}");
        assert!(refused > 0, "the grace ended first");
        assert_eq!(
            report,
            ShutdownReport {
                answered: slept as u64,
                refused: refused as u64,
                abandoned: 0,
                undelivered: 0,
                clean: true,
            }
        );
        assert_eq!(report.commands(), (FED + SUBMITTED) as u64);
        assert_eq!(
            report.to_string(),
            format!("{slept} answered, {refused} refused at shutdown, 0 abandoned")
        );
    }

    #[test]
    fn adapter_panics_in_init_and_stop_are_contained() {
        let (feed, client, _replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_fixture_bad_adapter"))
            .extension_config(Kind::Adapter, "bad-adapter", r#"{"panic_in": "init"}"#)
            .clients(move |_| Some(client.clone()))
            .start()
            .unwrap();
        assert!(engine.report().failures[0]
            .to_string()
            .contains("init failed: panicked: fixture adapter panic in init"));
        drop(feed);
        engine.shutdown();

        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_fixture_bad_adapter"))
            .extension_config(Kind::Adapter, "bad-adapter", r#"{"panic_in": "stop"}"#)
            .start()
            .unwrap();
        assert!(
            engine.shutdown().clean,
            "a panicking stop does not stop the shutdown"
        );
    }
}

/// Overload with `WhenFull::Reject`: who is shed, and in which order the
/// replies come.
mod overload {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use plugboard_interface::prelude::*;
    use plugboard_loader::{Engine, EngineConfig, WhenFull};

    use crate::support::{lib, TestClient};

    /// How many commands a reply answers: one, or for a busy reply the
    /// command it names plus the `N more` refused after it.
    pub fn answers(text: &str) -> u64 {
        match text.split_once("` and ") {
            Some((_, more)) if text.starts_with("busy:") => {
                1 + more
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("`and N more`")
            }
            _ => 1,
        }
    }

    /// Slow enough that one worker cannot keep up with a flood: each call
    /// takes 300 µs. `!work <tag>` replies `did <tag>`.
    struct Paced;

    impl Plugin for Paced {
        fn manifest() -> Manifest<Self> {
            Manifest::new("paced", "1.0.0").command(
                "work",
                r"work\s+(\S+)",
                "!work <tag>",
                |_, call| {
                    std::thread::sleep(Duration::from_micros(300));
                    Ok(format!("did {}", call.capture(1).unwrap_or("")).into())
                },
            )
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(Paced)
        }
    }

    /// What one reply says about the commands of its conversation: the
    /// first one it answers (its sequence number) and how many.
    fn parse(text: &str) -> (u64, u64, bool) {
        let (tag, busy) = match text.strip_prefix("did ") {
            Some(tag) => (tag, false),
            None => {
                let named = text
                    .split_once("`!work ")
                    .unwrap_or_else(|| {
                        panic!("neither a reply nor a busy reply naming its command: {text}")
                    })
                    .1;
                (named.split('`').next().unwrap(), true)
            }
        };
        let seq = tag[1..].parse().unwrap_or_else(|_| panic!("tag in {text}"));
        (seq, answers(text), busy)
    }

    /// A flooding conversation (thousands of commands to a plugin that one
    /// worker cannot keep up with) and many light ones (one command each):
    /// the light ones are answered by the plugin, the flooder absorbs the
    /// refusals, and every conversation's replies, busy ones included, come
    /// in the order of its commands.
    #[test]
    fn with_reject_the_flooder_is_shed_and_light_users_are_served_in_order() {
        const FLOOD: u64 = 3000;
        const LIGHT: u64 = 50;
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig {
            workers: 1,
            ingress_capacity: 4,
            execution_capacity: 2,
            max_pending: 64,
            when_full: WhenFull::Reject,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .plugin::<Paced>()
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
        assert!(engine.report().failures.is_empty());
        let every = FLOOD / LIGHT;
        for i in 0..FLOOD {
            feed.say("flooder", &format!("!work f{i}"));
            if i % every == every / 2 {
                let user = i / every;
                feed.say(&format!("light{user}"), &format!("!work l{user}"));
            }
        }
        // Every command answered once: wait for that many answers.
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        let mut answered = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered < FLOOD + LIGHT {
            let reply = replies
                .receiver()
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("only {answered} commands answered"));
            let text = reply.text.into_string();
            answered += answers(&text);
            by_user
                .entry(reply.user.unwrap().into_string())
                .or_default()
                .push(text);
        }
        drop(feed);
        engine.shutdown();
        assert!(
            replies.texts().is_empty(),
            "nothing more than one answer each"
        );

        // Order: each reply answers the commands right after the previous one's.
        let mut shed = HashMap::new();
        for (user, texts) in &by_user {
            let mut next = if user == "flooder" {
                0
            } else {
                user["light".len()..].parse().unwrap()
            };
            for text in texts {
                let (seq, count, busy) = parse(text);
                assert_eq!(seq, next, "{user}: `{text}` out of order in {texts:?}");
                next += count;
                if busy {
                    *shed.entry(user == "flooder").or_insert(0) += count;
                }
            }
        }
        let light_served = by_user
            .iter()
            .filter(|(user, _)| *user != "flooder")
            .flat_map(|(_, texts)| texts)
            .filter(|t| t.starts_with("did l"))
            .count() as u64;
        assert!(
            light_served * 100 >= LIGHT * 99,
            "light users served by the plugin: {light_served} of {LIGHT}"
        );
        let flooder_shed = shed.get(&true).copied().unwrap_or(0);
        assert!(
            flooder_shed > FLOOD / 2,
            "the flooder absorbs the refusals: {flooder_shed} of {FLOOD} shed"
        );
        assert_eq!(shed.get(&false).copied().unwrap_or(0) + light_served, LIGHT);
    }
}

/// Trust checks before anything is opened.
mod trust {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use plugboard_loader::library::open_with;
    use plugboard_loader::trust::{digest, parse_allowlist};
    use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, LoadPath, TrustPolicy};

    use crate::support::{lib, temp_dir};

    #[test]
    fn writable_libraries_and_directories_are_refused_unless_allowed() {
        let dir = temp_dir("writable");
        let bacon = dir.path().join("libbacon.so");
        fs::copy(lib("plugboard_bacon"), &bacon).unwrap();
        fs::set_permissions(&bacon, fs::Permissions::from_mode(0o777)).unwrap();
        let err = open_with(&bacon, &TrustPolicy::default()).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::Untrusted(_)));
        assert!(
            err.to_string()
                .contains("refused: writable by other users (mode 777)"),
            "{err}"
        );
        let lax = TrustPolicy {
            allow_writable: true,
            ..TrustPolicy::default()
        };
        assert!(open_with(&bacon, &lax).is_ok());

        fs::set_permissions(&bacon, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let engine = Engine::builder(EngineConfig::default())
            .load_path(&LoadPath::new([dir.path()]))
            .start()
            .unwrap();
        assert!(
            engine.report().loaded.is_empty(),
            "nothing loads from a writable directory"
        );
        let line = engine.report().failures[0].to_string();
        assert!(
            line.starts_with(&format!(
                "{}: refused: writable by other users",
                dir.path().display()
            )),
            "{line}"
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_allowlist_admits_exactly_the_listed_builds() {
        let bacon = lib("plugboard_bacon");
        let bacon_digest = digest(&mut fs::File::open(&bacon).unwrap()).unwrap();
        let listed = format!(
            "{}  libplugboard_bacon.so\n",
            plugboard_loader::trust::hex(&bacon_digest)
        );
        let policy = TrustPolicy {
            allowlist: Some(parse_allowlist(&listed).unwrap()),
            ..TrustPolicy::default()
        };
        assert!(open_with(&bacon, &policy).is_ok(), "listed digest loads");
        let err = open_with(&lib("plugboard_discord"), &policy).err().unwrap();
        assert!(err.to_string().contains("is not in the allowlist"), "{err}");
    }
}

/// The README's "Write a plugin" example, built exactly as written.
mod readme {
    use plugboard_loader::library::{open, Candidate};
    use plugboard_loader::{Engine, EngineConfig};

    use crate::support::{lib, readme_plugin, TestClient};

    #[test]
    fn the_readme_plugin_builds_checks_and_answers() {
        let path = readme_plugin();
        let Candidate::Plugin(hello) = open(&path).unwrap() else {
            panic!("a plugin");
        };
        assert_eq!(hello.manifest.name.as_str(), "hello");
        assert_eq!(hello.manifest.commands[0].usage.as_str(), "!hello [name]");

        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_discord"))
            .library(&path)
            .clients(move |_| Some(client.clone()))
            .start()
            .unwrap();
        feed.say("ann", "!hello world");
        feed.say("ann", "!hello");
        drop(feed);
        engine.shutdown();
        assert_eq!(replies.texts(), ["hello, world!", "hello, ann!"]);
    }
}

/// Libraries that are hostile in ordinary safe Rust (issue 9): their
/// `manifest` is not a pure function, their patterns are huge, their
/// `manifest` or `init` never returns, or panics.
mod hostile {
    use std::time::Duration;

    use plugboard_interface::prelude::*;
    use plugboard_loader::deadline::abandoned_threads;
    use plugboard_loader::library::open;
    use plugboard_loader::{Engine, EngineConfig, LoadErrorKind, Stage};

    use crate::support::{lib, TestClient};

    /// The manifest lists `c0..c15` in `HashMap` order, different on every
    /// call: each command must still reach its own handler.
    #[test]
    fn every_command_reaches_its_own_handler_whatever_the_manifest_order() {
        let builder = Engine::builder(EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&lib("plugboard_fixture_hashmap_manifest"));
        let (engine, feed, replies) = crate::support::start(builder);
        let sent: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
        for command in &sent {
            feed.say("ann", &format!("!{command}"));
        }
        // One user: the replies come back in the order the commands went.
        assert_eq!(replies.wait_for(sent.len()), sent);
        drop(feed);
        engine.shutdown();
    }

    /// Patterns that compile one by one but not as one set: the plugin is
    /// refused by name at validation, and the engine starts with the rest.
    #[test]
    fn patterns_over_the_routing_budget_refuse_their_plugin_not_the_engine() {
        let huge = lib("plugboard_fixture_huge_patterns");
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_discord"))
            .library(&lib("plugboard_bacon"))
            .library(&huge)
            .clients(move |_| Some(client.clone()))
            .start()
            .expect("one plugin's patterns never stop the engine");
        let failures: Vec<String> = engine
            .report()
            .failures
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            failures,
            [format!(
                "{}: command patterns of `huge-patterns` compile to more than the routing budget (10 MiB)",
                huge.display()
            )]
        );
        assert!(matches!(
            engine.report().failures[0].kind,
            LoadErrorKind::RoutingBudget { .. }
        ));
        feed.say("ann", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives ann a strip of delicious bacon."]
        );
        drop(feed);
        engine.shutdown();
    }

    /// Long enough for any extension that returns at all; the hanging
    /// fixtures never do, so the tests wait for the engine's verdict.
    const LOAD_DEADLINE: Duration = Duration::from_secs(1);

    /// A `manifest` that never returns, in a library and in-process.
    struct NeverDescribes;

    impl Plugin for NeverDescribes {
        fn manifest() -> Manifest<Self> {
            loop {
                std::thread::park();
            }
        }
        fn init(_: &Context) -> Result<Self, Error> {
            Ok(NeverDescribes)
        }
    }

    #[test]
    fn a_manifest_that_never_returns_fails_its_extension_not_the_loader() {
        let hangs = lib("plugboard_fixture_manifest_hangs");
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig {
            load_deadline: LOAD_DEADLINE,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&hangs)
        .plugin::<NeverDescribes>()
        .library(&lib("plugboard_bacon"))
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
        let failures: Vec<String> = engine
            .report()
            .failures
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            failures,
            [
                format!("{}: manifest did not return within 1 s", hangs.display()),
                "<in-process>: manifest did not return within 1 s".to_owned(),
            ]
        );
        assert!(matches!(
            engine.report().failures[0].kind,
            LoadErrorKind::Overdue {
                stage: Stage::Manifest,
                ..
            }
        ));
        assert!(abandoned_threads() >= 2, "both threads are abandoned");
        feed.say("ann", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives ann a strip of delicious bacon."]
        );
        drop(feed);
        engine.shutdown();
    }

    #[test]
    fn an_init_that_never_returns_fails_its_extension_not_the_engine() {
        let hangs = lib("plugboard_fixture_init_hangs");
        let (feed, client, replies) = TestClient::triple();
        let engine = Engine::builder(EngineConfig {
            load_deadline: LOAD_DEADLINE,
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_discord"))
        .library(&hangs)
        .library(&lib("plugboard_bacon"))
        .clients(move |_| Some(client.clone()))
        .start()
        .unwrap();
        let failures: Vec<String> = engine
            .report()
            .failures
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            failures,
            [format!(
                "{}: init did not return within 1 s",
                hangs.display()
            )]
        );
        assert!(abandoned_threads() >= 1);
        assert_eq!(
            engine.plugin_names().collect::<Vec<_>>(),
            ["bacon"],
            "the hung plugin is not routed to"
        );
        feed.say("ann", "!never");
        feed.say("ann", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives ann a strip of delicious bacon."]
        );
        drop(feed);
        engine.shutdown();
    }

    /// The load failure of a panicking `manifest` is its one line (the
    /// process-level test in tests/demo.rs checks nothing else is printed).
    #[test]
    fn a_panicking_manifest_is_one_failure_line() {
        let path = lib("plugboard_fixture_manifest_panics");
        let err = open(&path).err().expect("the manifest panics");
        assert!(matches!(
            err.kind,
            LoadErrorKind::Manifest(plugboard_interface::ExtError::Panicked(_))
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: describing itself failed: panicked: fixture manifest panic",
                path.display()
            )
        );
    }
}

/// The open path against hostile libraries and file systems (issue 9):
/// snapshots, immediate binding, resolved-path trust checks, headers that
/// lie. Every failure is one `path: cause` line naming the path as given.
mod open_path {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use plugboard_loader::library::{open, open_with};
    use plugboard_loader::trust::{digest, hex, parse_allowlist};
    use plugboard_loader::{
        Engine, EngineConfig, Kind, LoadError, LoadErrorKind, LoadPath, TrustPolicy,
    };

    use crate::support::{lib, start, temp_dir};

    fn line(err: &LoadError) -> String {
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains("/proc/self/fd/"), "{line}");
        line
    }

    fn mkdir(path: &Path, mode: u32) -> PathBuf {
        fs::create_dir(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        fs::canonicalize(path).unwrap()
    }

    /// A copy of a built library, mode 0755, in `dir`.
    fn copy(name: &str, dir: &Path, file: &str) -> PathBuf {
        let to = dir.join(file);
        fs::copy(lib(name), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        to
    }

    #[test]
    fn an_allowlist_opens_each_library_not_the_first_one_again() {
        let names = [
            "plugboard_bacon",
            "plugboard_discord",
            "plugboard_fixture_panics",
            "plugboard_fixture_sleeps",
        ];
        let listed: String = names
            .iter()
            .map(|n| {
                let d = digest(&mut fs::File::open(lib(n)).unwrap()).unwrap();
                format!("{}  lib{n}.so\n", hex(&d))
            })
            .collect();
        let policy = TrustPolicy {
            allowlist: Some(parse_allowlist(&listed).unwrap()),
            ..TrustPolicy::default()
        };
        let opened: Vec<(Kind, String)> = names
            .iter()
            .map(|n| {
                let c = open_with(&lib(n), &policy).unwrap();
                assert_eq!(c.source().to_string(), lib(n).display().to_string());
                (c.kind(), c.name().to_owned())
            })
            .collect();
        assert_eq!(
            opened,
            [
                (Kind::Plugin, "bacon".to_owned()),
                (Kind::Adapter, "discord".to_owned()),
                (Kind::Plugin, "panics".to_owned()),
                (Kind::Plugin, "sleeps".to_owned()),
            ]
        );
    }

    #[test]
    fn rewriting_or_truncating_a_loaded_library_does_not_touch_the_engine() {
        let dir = temp_dir("rewrite");
        let bacon = copy("plugboard_bacon", dir.path(), "libbacon.so");
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig::default())
                .library(&lib("plugboard_discord"))
                .library(&bacon),
        );
        let answers = |who: &str| {
            feed.say(who, "!bacon");
            assert_eq!(
                replies.wait_for(1),
                [format!("gives {who} a strip of delicious bacon.")]
            );
        };
        answers("before");
        // `cp new.so loaded.so`: the same inode, truncated and rewritten.
        let original = fs::read(&bacon).unwrap();
        fs::write(&bacon, &original).unwrap();
        answers("same-bytes");
        fs::write(&bacon, fs::read(lib("plugboard_fixture_sleeps")).unwrap()).unwrap();
        answers("other-bytes");
        fs::OpenOptions::new()
            .write(true)
            .open(&bacon)
            .unwrap()
            .set_len(0)
            .unwrap();
        answers("truncated");
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    #[test]
    fn an_undefined_symbol_is_refused_at_load_time_not_at_the_first_call() {
        let path = lib("plugboard_fixture_unresolved");
        let err = open(&path).err().expect("it cannot be linked");
        assert!(
            matches!(&err.kind, LoadErrorKind::Unresolved { symbol } if symbol == "plugboard_fixture_nowhere"),
            "{err:?}"
        );
        assert_eq!(
            line(&err),
            format!(
                "{}: cannot be linked: undefined symbol plugboard_fixture_nowhere",
                path.display()
            )
        );
    }

    #[test]
    fn a_symlink_into_a_world_writable_directory_is_refused() {
        let dir = temp_dir("symlink");
        let root = mkdir(&dir.path().join("root"), 0o755);
        let open_dir = mkdir(&root.join("open"), 0o777);
        let target = copy("plugboard_bacon", &open_dir, "libbacon.so");
        let plugins = mkdir(&root.join("plugins"), 0o755);
        let link = plugins.join("libbacon.so");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let expected = format!(
            "{}: refused: it resolves to {}, whose directory {} is writable by other users \
             (mode 777); fix the permissions or pass --allow-writable",
            link.display(),
            target.display(),
            open_dir.display()
        );
        let err = open_with(&link, &TrustPolicy::default()).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::Untrusted(_)), "{err:?}");
        assert_eq!(line(&err), expected);
        // The same through the load path; --allow-writable lets it in.
        let engine = Engine::builder(EngineConfig::default())
            .load_path(&LoadPath::new([&plugins]))
            .start()
            .unwrap();
        assert!(engine.report().loaded.is_empty());
        assert_eq!(engine.report().failures[0].to_string(), expected);
        engine.shutdown();
        let lax = TrustPolicy {
            allow_writable: true,
            ..TrustPolicy::default()
        };
        assert!(open_with(&link, &lax).is_ok());
    }

    #[test]
    fn a_directory_whose_ancestor_is_writable_is_refused_naming_the_ancestor() {
        let dir = temp_dir("ancestor");
        let shared = mkdir(&dir.path().join("shared"), 0o777);
        let plugins = mkdir(&shared.join("plugins"), 0o755);
        let bacon = copy("plugboard_bacon", &plugins, "libbacon.so");
        let cause = format!(
            "refused: ancestor directory {} is writable by other users (mode 777) and not a \
             root-owned sticky directory; fix the permissions or pass --allow-writable",
            shared.display()
        );
        let err = open_with(&bacon, &TrustPolicy::default()).err().unwrap();
        assert_eq!(line(&err), format!("{}: {cause}", bacon.display()));
        let scan = LoadPath::new([&plugins]).scan();
        assert!(scan.libraries.is_empty());
        assert_eq!(
            scan.failures[0].to_string(),
            format!("{}: {cause}", plugins.display())
        );
        // Sticky and root-owned, like /tmp, an ancestor is fine.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(open_with(&bacon, &TrustPolicy::default()).is_ok());
        }
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_bare_name_is_a_file_in_the_current_directory_never_a_search() {
        // The dynamic linker would find this in the system library path.
        let err = open(Path::new("libm.so.6")).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::NotFound), "{err:?}");
        assert_eq!(line(&err), "libm.so.6: no such file");
        // Cargo runs tests in the package directory: `Cargo.toml` is a
        // relative file there, and that file is what gets examined (the
        // dynamic linker, given the bare name, would search its path and
        // report "cannot open shared object file").
        assert!(Path::new("Cargo.toml").is_file());
        let err = open(Path::new("Cargo.toml")).err().unwrap();
        assert_eq!(
            line(&err),
            "Cargo.toml: not a loadable shared library: not an ELF file (it looks like text)"
        );
    }

    /// A copy of bacon with its ELF header patched by `patch`.
    fn patched(dir: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = fs::read(lib("plugboard_bacon")).unwrap();
        patch(&mut bytes);
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The ELF check is Linux's (elsewhere the dynamic linker speaks).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_library_for_another_cpu_says_so() {
        let dir = temp_dir("machine");
        let (other, name, host) = match std::env::consts::ARCH {
            "aarch64" => (62u16, "x86_64", "aarch64"),
            host => (183u16, "aarch64", host),
        };
        let foreign = patched(dir.path(), "libforeign.so", |b| {
            b[18..20].copy_from_slice(&other.to_le_bytes())
        });
        let err = open(&foreign).err().unwrap();
        assert!(matches!(err.kind, LoadErrorKind::Machine { .. }), "{err:?}");
        assert_eq!(
            line(&err),
            format!(
                "{}: built for {name}; this engine is {host}",
                foreign.display()
            )
        );
        // Word size: a 32-bit build of the same CPU.
        let narrow = patched(dir.path(), "libnarrow.so", |b| b[4] = 1);
        assert_eq!(
            line(&open(&narrow).err().unwrap()),
            format!(
                "{}: built for {host} (32-bit); this engine is {host} (64-bit)",
                narrow.display()
            )
        );
    }

    #[test]
    fn a_garbage_root_module_symbol_is_not_taken_for_an_abi_version() {
        let path = lib("plugboard_fixture_garbage_root");
        let err = open(&path).err().unwrap();
        assert!(
            matches!(err.kind, LoadErrorKind::NotRootModule { .. }),
            "{err:?}"
        );
        assert_eq!(
            line(&err),
            format!(
                "{}: exports abi_stable's root-module symbol, but it is not an abi_stable root \
                 module (header reads ABI 4022250974.3737138963)",
                path.display()
            )
        );
    }

    /// All of them at once, in one directory: one line each, in load order,
    /// and the good libraries load and answer.
    #[test]
    fn hostile_libraries_are_one_line_each_and_the_rest_still_load() {
        let dir = temp_dir("hostile");
        let plugins = mkdir(&dir.path().join("plugins"), 0o755);
        copy("plugboard_bacon", &plugins, "a-bacon.so");
        let bacon_again = copy("plugboard_bacon", &plugins, "b-bacon.so");
        let garbage = copy("plugboard_fixture_garbage_root", &plugins, "c-garbage.so");
        let unresolved = copy("plugboard_fixture_unresolved", &plugins, "d-unresolved.so");
        let foreign = patched(&plugins, "e-foreign.so", |b| b[4] = 1);
        let (feed, client, replies) = crate::support::TestClient::triple();
        let engine = Engine::builder(EngineConfig::default())
            .library(&lib("plugboard_discord"))
            .load_path(&LoadPath::new([&plugins]))
            .clients(move |_| Some(client.clone()))
            .start()
            .unwrap();
        let failures: Vec<String> = engine.report().failures.iter().map(line).collect();
        let arch = std::env::consts::ARCH;
        let expected = [
            (
                &garbage,
                "exports abi_stable's root-module symbol, but it is not an abi_stable root \
                 module (header reads ABI 4022250974.3737138963)"
                    .to_owned(),
            ),
            (
                &unresolved,
                "cannot be linked: undefined symbol plugboard_fixture_nowhere".to_owned(),
            ),
            (
                &foreign,
                format!("built for {arch} (32-bit); this engine is {arch} (64-bit)"),
            ),
            (
                &bacon_again,
                format!(
                    "duplicate plugin name `bacon` (already loaded from {}); skipped",
                    plugins.join("a-bacon.so").display()
                ),
            ),
        ]
        .map(|(path, cause)| format!("{}: {cause}", path.display()));
        assert_eq!(failures, expected);
        feed.say("ann", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives ann a strip of delicious bacon."]
        );
        drop(feed);
        engine.shutdown();
    }
}

/// Hostile plugins, in process: commands that block until the test lets
/// them go, panic on demand, answer with floods, and destructors that never
/// return. Each test drives its own `Gate<N>` (a distinct plugin name, so
/// that tests running in parallel never share one).
mod hostile_plugins {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use crossbeam_channel::{select, unbounded, Receiver, Sender};
    use plugboard_interface::prelude::*;
    use plugboard_loader::{Engine, EngineConfig, PluginState, ShutdownReport};

    use crate::support::{captured_logs, lib, start};

    const NAMES: [&str; 8] = [
        "gate0", "gate1", "gate2", "gate3", "gate4", "gate5", "gate6", "gate7",
    ];

    /// The plugin's ends of its test's wires.
    struct Wires {
        entered: Sender<String>,
        release: Receiver<()>,
    }

    /// The test's ends: who entered `!block`, and what lets them go (one
    /// `send` each, or drop it to let everyone go).
    struct Control {
        entered: Receiver<String>,
        release: Sender<()>,
    }

    fn registry() -> &'static Mutex<HashMap<&'static str, Wires>> {
        static WIRES: OnceLock<Mutex<HashMap<&'static str, Wires>>> = OnceLock::new();
        WIRES.get_or_init(Default::default)
    }

    /// Wires for the next `Gate<N>` to start.
    fn wire<const N: usize>() -> Control {
        let (entered_tx, entered) = unbounded();
        let (release, release_rx) = unbounded();
        registry().lock().unwrap().insert(
            NAMES[N],
            Wires {
                entered: entered_tx,
                release: release_rx,
            },
        );
        Control { entered, release }
    }

    struct Gate<const N: usize>(Wires);

    impl<const N: usize> Plugin for Gate<N> {
        fn manifest() -> Manifest<Self> {
            Manifest::new(NAMES[N], "1.0.0")
                .command("block", r"block$", "!block", |gate: &Self, call| {
                    let _ = gate.0.entered.send(call.sender().to_owned());
                    let _ = gate.0.release.recv();
                    Ok(format!("unblocked {}", call.sender()).into())
                })
                .command("boom", r"boom$", "!boom", |_, _| panic!("gate exploded"))
                .command("ok", r"ok$", "!ok", |_, _| Ok("ok".into()))
                .command("big", r"big\s+(\d+)$", "!big <bytes>", |_, call| {
                    let n: usize = call.capture(1).unwrap_or("0").parse()?;
                    Ok("x".repeat(n).into())
                })
                .command("lines", r"lines\s+(\d+)$", "!lines <n>", |_, call| {
                    let n: usize = call.capture(1).unwrap_or("0").parse()?;
                    let lines: Vec<String> = (1..=n).map(|i| format!("line {i}")).collect();
                    Ok(lines.join("\n").into())
                })
                .command("accents", r"accents$", "!accents", |_, _| {
                    Ok("é".repeat(40).into())
                })
        }
        fn init(_: &Context) -> Result<Self, Error> {
            let wires = registry()
                .lock()
                .unwrap()
                .remove(NAMES[N])
                .ok_or_else(|| Error::msg("the test did not wire this gate"))?;
            Ok(Gate(wires))
        }
    }

    const LONG: Duration = Duration::from_secs(600);

    fn state_of(engine: &Engine, name: &str) -> PluginState {
        engine
            .handle()
            .plugins()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap()
            .state
    }

    fn logged(wanted: &str) -> bool {
        captured_logs().iter().any(|(_, _, m)| m.contains(wanted))
    }

    /// Waits (a minute at most, as a guard) until `done` holds: for things
    /// that happen after the replies the test can wait for.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let guard = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < guard, "never: {what}");
            std::thread::yield_now();
        }
    }

    /// Issue 9, item 1: with two workers, four commands hung in one plugin
    /// used to make everyone else wait for the deadline. Now the plugin
    /// holds at most its limit (the worker count) of threads, the others
    /// wait without a worker, and workers are added for the stuck ones.
    #[test]
    fn a_hung_plugin_holds_at_most_its_limit_and_others_keep_full_capacity() {
        let control = wire::<1>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 2,
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .library(&lib("plugboard_bacon"))
            .plugin::<Gate<1>>()
            .plugin_deadline("gate1", LONG),
        );
        let handle = engine.handle();
        for u in 0..4 {
            feed.say(&format!("blocked{u}"), "!block");
        }
        let guard = Duration::from_secs(60);
        let mut entered = vec![
            control.entered.recv_timeout(guard).unwrap(),
            control.entered.recv_timeout(guard).unwrap(),
        ];
        // While two calls are stuck and two more commands wait for the
        // plugin, an unrelated user is served.
        feed.say("hungry", "!bacon");
        assert_eq!(
            replies.wait_for(1),
            ["gives hungry a strip of delicious bacon."]
        );
        assert!(
            control.entered.try_recv().is_err(),
            "a third call got into the plugin past its limit"
        );
        assert!(
            handle.worker_threads() > 2,
            "a worker was added in place of the stuck ones"
        );

        drop(control.release);
        let mut texts = replies.wait_for(4);
        texts.sort();
        assert_eq!(
            texts,
            [
                "unblocked blocked0",
                "unblocked blocked1",
                "unblocked blocked2",
                "unblocked blocked3"
            ]
        );
        entered.extend(control.entered.try_iter());
        entered.sort();
        assert_eq!(entered, ["blocked0", "blocked1", "blocked2", "blocked3"]);
        // Capacity is back: the added workers retire.
        eventually("the pool shrinks back to 2 workers", || {
            handle.worker_threads() == 2
        });
        drop(feed);
        assert!(engine.shutdown().clean);
        assert!(replies.texts().is_empty(), "exactly one reply per command");
    }

    /// A command waiting for a plugin's call slot gets a "busy" reply at
    /// the plugin's deadline; an abandoned call keeps its slot until it
    /// returns.
    #[test]
    fn a_command_waiting_past_the_deadline_is_answered_busy() {
        let control = wire::<0>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 2,
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .plugin::<Gate<0>>()
            .plugin_deadline("gate0", Duration::from_millis(200))
            .plugin_max_in_flight("gate0", 1),
        );
        let handle = engine.handle();
        feed.say("first", "!block");
        control
            .entered
            .recv_timeout(Duration::from_secs(60))
            .unwrap();
        feed.say("second", "!ok");
        let mut texts = replies.wait_for(2);
        texts.sort();
        assert_eq!(
            texts,
            [
                "`gate0` is busy: none of its calls finished within 200 ms (it runs 1 at most at once); try again later",
                "`gate0` timed out after 200 ms",
            ]
        );
        assert_eq!(handle.abandoned_threads(), 1);
        // Once the stuck call returns, its slot is free again.
        drop(control.release);
        eventually("the stuck call returns", || handle.abandoned_threads() == 0);
        feed.say("third", "!ok");
        assert_eq!(replies.wait_for(1), ["ok"]);
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    /// Issue 9, item 2: with `quarantine_after = 0`, abandoned threads grew
    /// without bound. Now reaching `max_abandoned` quarantines the plugin,
    /// whatever the setting, and says why.
    #[test]
    fn max_abandoned_holds_whatever_the_quarantine_setting() {
        let control = wire::<2>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 1,
                max_abandoned: 2,
                quarantine_after: 0,
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .library(&lib("plugboard_bacon"))
            .plugin::<Gate<2>>()
            .plugin_deadline("gate2", Duration::from_millis(30))
            // No limit of its own to stop it first.
            .plugin_max_in_flight("gate2", 100),
        );
        let handle = engine.handle();
        for _ in 0..4 {
            feed.say("u", "!block");
        }
        feed.say("u", "!bacon");
        let quarantined = "`gate2` is quarantined; ask an operator to re-enable it";
        assert_eq!(
            replies.wait_for(5),
            [
                "`gate2` timed out after 30 ms",
                "`gate2` timed out after 30 ms",
                quarantined,
                quarantined,
                "gives u a strip of delicious bacon.",
            ]
        );
        assert_eq!(handle.abandoned_threads(), 2);
        assert_eq!(state_of(&engine, "gate2"), PluginState::Quarantined);
        assert!(logged(
            "plugin `gate2` quarantined until re-enabled: 2 threads are stuck in plugin calls (max_abandoned = 2)"
        ));
        // It stays that way: no cooldown trial, no more threads.
        for i in 0..5 {
            feed.say(&format!("v{i}"), "!block");
        }
        assert_eq!(replies.wait_for(5), [quarantined; 5]);
        assert_eq!(handle.abandoned_threads(), 2);
        assert!(handle.worker_threads() + handle.abandoned_threads() <= 1 + 2);

        drop(control.release);
        eventually("the stuck calls return", || handle.abandoned_threads() == 0);
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    /// Past `max_abandoned`, other plugins keep being served: each plugin
    /// that leaves a thread stuck is quarantined for good, and workers are
    /// still added so that `workers` of them are free (the engine used to
    /// stop answering anyone once the bound was reached).
    #[test]
    fn past_the_thread_bound_other_users_are_still_served() {
        let seven = wire::<7>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 1,
                max_abandoned: 1,
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .library(&lib("plugboard_bacon"))
            .plugin::<Gate<7>>()
            .plugin_deadline("gate7", Duration::from_millis(30)),
        );
        feed.say("a", "!block");
        seven.entered.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(replies.wait_for(1), ["`gate7` timed out after 30 ms"]);
        // The only worker is stuck and the bound is reached: the plugin is
        // out for good, and the pool still gets a free worker.
        feed.say("c", "!bacon");
        assert_eq!(replies.wait_for(1), ["gives c a strip of delicious bacon."]);
        feed.say("d", "!ok");
        assert_eq!(
            replies.wait_for(1),
            ["`gate7` is quarantined; ask an operator to re-enable it"]
        );
        assert_eq!(state_of(&engine, "gate7"), PluginState::Quarantined);
        drop(seven.release);
        drop(feed);
        engine.shutdown();
    }

    /// Issue 9, item 3: a quarantine ends after its cooldown with one trial
    /// call; a failed trial quarantines again (for twice as long).
    #[test]
    fn a_quarantine_ends_after_its_cooldown_with_one_trial_call() {
        let control = wire::<3>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 2,
                quarantine_after: 1,
                quarantine_cooldown: Duration::from_millis(1),
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .plugin::<Gate<3>>()
            .plugin_deadline("gate3", LONG),
        );
        let quarantined = "`gate3` is quarantined; ask an operator to re-enable it";
        let sorry = "sorry, `gate3` hit an internal error";
        // Sends `command` until the reply is not "quarantined" (the trial
        // ran), a bounded number of times; returns that reply.
        let until_trial = |command: &str| {
            for _ in 0..100_000 {
                feed.say("ann", command);
                let reply = replies.wait_for(1).remove(0);
                if reply != quarantined {
                    return reply;
                }
            }
            panic!("no trial call after 100000 commands");
        };
        feed.say("ann", "!boom");
        assert_eq!(replies.wait_for(1), [sorry]);
        assert_eq!(state_of(&engine, "gate3"), PluginState::Quarantined);

        // The trial fails: quarantined again, for twice the cooldown.
        assert_eq!(until_trial("!boom"), sorry);
        assert_eq!(state_of(&engine, "gate3"), PluginState::Quarantined);
        assert!(logged(
            "plugin `gate3` failed its trial call; quarantined again, next trial after 2 ms"
        ));
        // The next trial succeeds: active again.
        assert_eq!(until_trial("!ok"), "ok");
        assert_eq!(state_of(&engine, "gate3"), PluginState::Active);
        assert!(logged("plugin `gate3` passed its trial call; active again"));

        // One trial at a time: while it runs, everyone else is told.
        feed.say("ann", "!boom");
        assert_eq!(replies.wait_for(1), [sorry]);
        for attempt in 0.. {
            assert!(attempt < 100_000, "no trial call");
            feed.say("ann", "!block");
            select! {
                recv(control.entered) -> who => {
                    assert_eq!(who.unwrap(), "ann");
                    break;
                }
                recv(replies.receiver()) -> reply => assert_eq!(reply.unwrap().text.as_str(), quarantined),
                default(Duration::from_secs(60)) => panic!("neither a reply nor a call"),
            }
        }
        feed.say("bob", "!ok");
        assert_eq!(replies.wait_for(1), [quarantined]);
        control.release.send(()).unwrap();
        assert_eq!(replies.wait_for(1), ["unblocked ann"]);
        assert_eq!(state_of(&engine, "gate3"), PluginState::Active);
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    /// `!enable` and `Handle::reinstate` still lift a quarantine at once.
    #[test]
    fn enable_and_reinstate_lift_a_quarantine_before_its_cooldown() {
        let _control = wire::<4>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 2,
                quarantine_after: 1,
                quarantine_cooldown: LONG,
                admins: vec!["discord:root".into()],
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .plugin::<Gate<4>>(),
        );
        let quarantined = "`gate4` is quarantined; ask an operator to re-enable it";
        let sorry = "sorry, `gate4` hit an internal error";
        feed.say("ann", "!boom");
        feed.say("ann", "!ok");
        assert_eq!(replies.wait_for(2), [sorry, quarantined]);
        feed.say("root", "!enable gate4 everywhere");
        assert_eq!(replies.wait_for(1), ["`gate4` enabled everywhere"]);
        feed.say("ann", "!ok");
        feed.say("ann", "!boom");
        feed.say("ann", "!ok");
        assert_eq!(replies.wait_for(3), ["ok", sorry, quarantined]);
        engine.handle().reinstate("gate4").unwrap();
        feed.say("ann", "!ok");
        assert_eq!(replies.wait_for(1), ["ok"]);
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    /// Issue 9, item 8 (engine part): a 10 MB reply became 5,243 messages.
    /// Replies are now cut, visibly, at a line and a character boundary.
    #[test]
    fn huge_replies_are_cut_and_say_so() {
        let defaults = EngineConfig::default();
        assert_eq!(
            (defaults.max_reply_bytes, defaults.max_reply_lines),
            (16384, 50)
        );
        let _control = wire::<5>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                max_reply_bytes: 64,
                max_reply_lines: 3,
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .plugin::<Gate<5>>(),
        );
        feed.say("ann", "!big 10485760");
        feed.say("ann", "!big 64");
        feed.say("ann", "!lines 10");
        feed.say("ann", "!lines 3");
        feed.say("ann", "!accents");
        let x64 = "x".repeat(64);
        assert_eq!(
            replies.wait_for(5),
            [
                format!("{x64} [… reply truncated: 10485760 bytes, 64 shown]"),
                x64.clone(),
                "line 1\nline 2\nline 3 [… reply truncated: 10 lines, 3 shown]".to_owned(),
                "line 1\nline 2\nline 3".to_owned(),
                format!("{} [… reply truncated: 80 bytes, 64 shown]", "é".repeat(32)),
            ]
        );
        drop(feed);
        assert!(engine.shutdown().clean);
    }

    /// Issue 10, item 2: at the end of the shutdown, a call that never
    /// returned is abandoned and counted; everything behind it, in its
    /// conversation or waiting for its plugin, was refused when the grace
    /// ended (overtaking it: it never answers).
    #[test]
    fn a_call_stuck_past_the_end_is_abandoned_and_counted() {
        let control = wire::<6>();
        let (engine, feed, replies) = start(
            Engine::builder(EngineConfig {
                workers: 2,
                shutdown_grace: Duration::from_millis(100),
                refusal_window: Duration::from_millis(300),
                ..EngineConfig::default()
            })
            .library(&lib("plugboard_discord"))
            .plugin::<Gate<6>>()
            .plugin_deadline("gate6", LONG)
            .plugin_max_in_flight("gate6", 1),
        );
        feed.say("stuck", "!block");
        control
            .entered
            .recv_timeout(Duration::from_secs(60))
            .unwrap();
        // Behind it in its conversation, and behind its plugin's limit.
        for _ in 0..3 {
            feed.say("stuck", "!ok");
        }
        feed.say("other", "!ok");
        drop(feed);
        let report = engine.shutdown();
        assert_eq!(
            report,
            ShutdownReport {
                answered: 0,
                refused: 4,
                abandoned: 1,
                undelivered: 0,
                clean: false,
            }
        );
        assert_eq!(
            replies.texts(),
            ["the bot is shutting down; `!ok` was not run"; 4]
        );
        assert!(logged("1 command(s) still inside"));
        drop(control.release);
    }

    /// Issue 9, item 4: a plugin whose `Drop` never returns held exit
    /// forever. Shutdown now drops extensions on threads of their own and
    /// abandons a destructor still running at the end of the grace.
    #[test]
    fn a_destructor_that_never_returns_cannot_hold_shutdown() {
        let engine = Engine::builder(EngineConfig {
            shutdown_grace: Duration::from_millis(300),
            refusal_window: Duration::from_millis(200),
            ..EngineConfig::default()
        })
        .library(&lib("plugboard_fixture_drop_hangs"))
        .library(&lib("plugboard_bacon"))
        .start()
        .unwrap();
        assert!(engine.report().failures.is_empty());
        assert!(
            !engine.shutdown().clean,
            "not a clean shutdown: a destructor was abandoned"
        );
        assert!(logged(
            "plugin `drop-hangs` did not finish dropping within the shutdown's 500 ms; abandoning its thread"
        ));
        assert!(
            !logged("plugin `bacon` did not finish dropping"),
            "the others were dropped"
        );
    }
}
