//! Engine benchmarks (`cargo bench -p plugboard-loader`):
//!
//! - `abi_call`: one bacon command through the ABI (the real `.so`) vs the
//!   same logic in-process.
//! - `routing`: one-pass `RegexSet` routing against 1, 10 and 100 plugins of
//!   10 patterns each (and, for scale, a loop over the individual regexes).
//! - `pipeline`: N commands in through a handle, N replies out of an
//!   in-process adapter: the whole engine in one process, logging off.
//! - `load`: opening and validating 1, 10 and 100 plugin libraries (fresh
//!   copies of bacon for every iteration, so nothing is cached by the
//!   dynamic linker).
//!
//! The cdylibs are dev-dependencies, so cargo has built them into
//! `target/release/deps` next to this binary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use abi_stable::std_types::{ROption, RSlice, RStr};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_channel::{bounded, Receiver, Sender};
use plugboard_interface::message::{Invocation, RawMessage, Span};
use plugboard_interface::prelude::*;
use plugboard_loader::library::{open, Candidate};
use plugboard_loader::routes::{compile_pattern, Routes};
use plugboard_loader::{Engine, EngineConfig};

fn lib(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn abi_call(c: &mut Criterion) {
    let Ok(Candidate::Plugin(bacon)) = open(&lib("plugboard_bacon")) else {
        panic!("bacon is a plugin");
    };
    let plugin = bacon.instantiate_standalone("{}").unwrap();
    let spans = [Span { start: 0, end: 11 }, Span { start: 6, end: 11 }];
    let invocation = Invocation {
        command: 1,
        adapter: RStr::from_str("irc"),
        room: ROption::RNone,
        identity: RStr::from_str("irc-user"),
        text: RStr::from_str("bacon nelsk"),
        captures: RSlice::from_slice(&spans),
    };
    let mut group = c.benchmark_group("abi_call");
    group.bench_function("in_process", |b| {
        b.iter(|| {
            let inv = black_box(&invocation);
            let nick = inv.capture(1).unwrap_or("");
            black_box(format!(
                "gives {nick} a strip of delicious bacon as a gift from {}",
                inv.identity.as_str()
            ))
        })
    });
    group.bench_function("in_process_ffi_result", |b| {
        b.iter(|| {
            let inv = black_box(&invocation);
            let r = std::panic::catch_unwind(|| {
                let nick = inv.capture(1).unwrap_or("");
                abi_stable::std_types::RString::from(format!(
                    "gives {nick} a strip of delicious bacon as a gift from {}",
                    inv.identity.as_str()
                ))
            });
            black_box(abi_stable::std_types::RResult::<_, ()>::ROk(
                ROption::RSome(r.unwrap()),
            ))
        })
    });
    group.bench_function("through_abi", |b| {
        b.iter(|| black_box(plugin.call(black_box(&invocation))))
    });
    // The same wrapper and trait object, statically linked: separates the
    // cost of the boundary's conventions (panic guard, FFI-safe types) from
    // the cost of the dynamic library itself.
    let linked = plugboard_loader::library::PluginCandidate::in_process::<plugboard_bacon::Bacon>()
        .unwrap()
        .instantiate_standalone("{}")
        .unwrap();
    group.bench_function("same_wrapper_linked_in", |b| {
        b.iter(|| black_box(linked.call(black_box(&invocation))))
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    for plugins in [1usize, 10, 100] {
        let compiled: Vec<Vec<regex::Regex>> = (0..plugins)
            .map(|p| {
                (0..10)
                    .map(|k| compile_pattern(&format!(r"p{p}cmd{k}(?:\s+(\S+))?$")).unwrap())
                    .collect()
            })
            .collect();
        let routes = Routes::new(compiled.iter().map(Vec::as_slice)).unwrap();
        let hit = format!("p{}cmd9 someone", plugins - 1);
        let mut matched = Vec::new();
        group.bench_with_input(BenchmarkId::new("regex_set", plugins), &hit, |b, text| {
            b.iter(|| {
                routes.matching_into(black_box(text), &mut matched);
                black_box(&matched);
            })
        });
        group.bench_with_input(
            BenchmarkId::new("loop_over_regexes", plugins),
            &hit,
            |b, text| {
                b.iter(|| {
                    routes
                        .routes
                        .iter()
                        .filter(|r| r.regex.is_match(black_box(text)))
                        .count()
                })
            },
        );
    }
    group.finish();
}

/// An in-process adapter whose `send` counts replies into a channel.
struct Counter;

static REPLIES: std::sync::OnceLock<Sender<()>> = std::sync::OnceLock::new();

impl Adapter for Counter {
    fn info() -> AdapterInfo {
        AdapterInfo::new("bench", "0.0.0")
    }
    fn init(_: &Context) -> Result<Self, Error> {
        Ok(Counter)
    }
    fn listen(&self, _: &Sink) -> Result<(), Error> {
        Ok(())
    }
    fn send(&self, _: &Outgoing<'_>) -> Result<(), Error> {
        let _ = REPLIES.get().map(|tx| tx.send(()));
        Ok(())
    }
    fn stop(&self) {}
}

fn pipeline(c: &mut Criterion) {
    const N: usize = 100_000;
    let (tx, replies): (Sender<()>, Receiver<()>) = bounded(4096);
    REPLIES.set(tx).ok();
    let engine = Engine::builder(EngineConfig::default())
        .library(&lib("plugboard_bacon"))
        .adapter::<Counter>()
        .start()
        .unwrap();
    assert!(engine.report().failures.is_empty());
    let handle = engine.handle();
    // A fixed set of messages (64 conversations), cloned per submission.
    let messages: Vec<RawMessage> = (0..64)
        .map(|i| RawMessage::new(None, &format!("user{i}"), "!bacon friend"))
        .collect();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(10);
    group.bench_function("commands_to_replies", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let feeder = {
                    let handle = handle.clone();
                    let messages = messages.clone();
                    std::thread::spawn(move || {
                        for i in 0..N {
                            handle.submit("bench", messages[i % 64].clone()).unwrap();
                        }
                    })
                };
                for _ in 0..N {
                    replies.recv().unwrap();
                }
                total += start.elapsed();
                feeder.join().unwrap();
            }
            total
        })
    });
    group.finish();
    engine.shutdown();
}

fn load(c: &mut Criterion) {
    static DIRS: AtomicUsize = AtomicUsize::new(0);
    let bacon = lib("plugboard_bacon");
    let base = std::env::temp_dir().join(format!("plugboard-bench-load-{}", std::process::id()));
    let fresh_copies = |n: usize| -> Vec<PathBuf> {
        let dir = base.join(DIRS.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir_all(&dir).unwrap();
        (0..n)
            .map(|i| {
                let path = dir.join(format!("libbacon{i}.so"));
                std::fs::copy(&bacon, &path).unwrap();
                path
            })
            .collect()
    };
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(2));
    for n in [1usize, 10, 100] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let files = fresh_copies(n);
                    let start = Instant::now();
                    for file in &files {
                        black_box(open(file).unwrap());
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, abi_call, routing, pipeline, load);
criterion_main!(benches);
