//! Load errors: one value per failed library (or directory), with the path
//! and a one-line cause.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use plugboard_interface::ExtError;

/// What an extension is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A plugin (commands).
    Plugin,
    /// An adapter (a chat-platform connector).
    Adapter,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Plugin => "plugin",
            Kind::Adapter => "adapter",
        })
    }
}

/// An extension entry point the loader calls under the load deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `manifest` (at load time; `info` for adapters).
    Manifest,
    /// `init` (at startup).
    Init,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Manifest => "manifest",
            Stage::Init => "init",
        })
    }
}

/// Where an extension came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A shared library file.
    Library(PathBuf),
    /// Registered in-process by the embedding program.
    InProcess,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Library(path) => write!(f, "{}", path.display()),
            Source::InProcess => f.write_str("<in-process>"),
        }
    }
}

/// A library or directory of the load path that could not be used.
///
/// Displays as one line, `<path>: <cause>`.
#[derive(Debug)]
pub struct LoadError {
    /// The file or directory concerned (or `InProcess`).
    pub source: Source,
    /// What went wrong.
    pub kind: LoadErrorKind,
}

impl LoadError {
    pub(crate) fn at(path: &Path, kind: LoadErrorKind) -> Self {
        LoadError {
            source: Source::Library(path.to_owned()),
            kind,
        }
    }

    pub(crate) fn new(source: Source, kind: LoadErrorKind) -> Self {
        LoadError { source, kind }
    }

    /// The long form of the cause, when there is one beyond the line (for
    /// an incompatible layout, abi_stable's full report): for a debug log.
    pub fn detail(&self) -> Option<&str> {
        match &self.kind {
            LoadErrorKind::Layout { detail, .. } => Some(detail),
            LoadErrorKind::Preflight(crate::preflight::PreflightFailure::RefusedWithDetail {
                detail,
                ..
            }) => Some(detail),
            _ => None,
        }
    }

    /// The path concerned, if it is a file or directory.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::Library(p) => Some(p),
            Source::InProcess => None,
        }
    }
}

/// Why a library or directory could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// A load-path directory does not exist.
    DirNotFound,
    /// A load-path entry exists but is not a directory.
    NotADir,
    /// A load-path directory could not be listed.
    ReadDir(io::Error),
    /// A library path does not exist.
    NotFound,
    /// A symlink whose target does not exist.
    BrokenSymlink,
    /// Not a regular file.
    NotAFile,
    /// A zero-byte file.
    Empty,
    /// The file's metadata could not be read.
    Metadata(io::Error),
    /// The file could not be opened or read.
    Read(io::Error),
    /// The dynamic linker refused the file (not a shared object, missing
    /// dependency, ...).
    Open(String),
    /// Not an ELF file (checked before the dynamic linker sees it).
    NotElf {
        /// What it looks like instead, if recognisable (`it looks like
        /// text`, `it is a Mach-O file, built for macOS`).
        looks_like: Option<&'static str>,
    },
    /// An ELF file, but not a shared object (an executable, an object
    /// file, a core dump, a truncated header).
    NotSharedObject(String),
    /// A shared object for another CPU type, word size or byte order.
    Machine {
        /// What it was built for (`aarch64`, `i386 (32-bit)`).
        found: String,
        /// What this engine is.
        expected: String,
    },
    /// The dynamic linker could not bind every symbol at load time: the
    /// library calls something no loaded library defines.
    Unresolved {
        /// The first undefined symbol the dynamic linker reported.
        symbol: String,
    },
    /// A shared object that exports no abi_stable root module.
    NoRootModule,
    /// A library built with an abi_stable release this engine cannot read.
    AbiStable(String),
    /// Exports abi_stable's root-module symbol, but what it points at is not
    /// an abi_stable header (its magic string is wrong).
    NotRootModule {
        /// The ABI version the bytes read as, for the record.
        abi_major: u32,
        /// See `abi_major`.
        abi_minor: u32,
    },
    /// An abi_stable library of some other application.
    UnknownRootModule(String),
    /// Built against an interface version this engine does not speak.
    InterfaceVersion {
        /// The library's interface version.
        found: String,
        /// The engine's interface version.
        expected: &'static str,
    },
    /// The library's types do not match the engine's.
    Layout {
        /// The first mismatch, on one line.
        summary: String,
        /// abi_stable's full report (logged at debug level).
        detail: String,
    },
    /// The library exports no layout information, so it cannot be checked.
    NoLayout,
    /// The root module's constructor failed or panicked.
    RootModule(String),
    /// The manifest function failed or panicked.
    Manifest(ExtError),
    /// The manifest is invalid.
    InvalidManifest(String),
    /// The plugin's command patterns compile one by one but not together
    /// within its share of the routing table (`routes::PLUGIN_BUDGET`).
    RoutingBudget {
        /// The plugin's name.
        name: String,
        /// The budget, in bytes of compiled automata.
        budget: usize,
    },
    /// The combined routing table would not build with this plugin's
    /// patterns in it (a safety net behind `RoutingBudget`); it was left out,
    /// after its `init`.
    RoutingTable {
        /// The plugin's name.
        name: String,
    },
    /// Another extension of the same kind already has this name.
    Duplicate {
        /// Plugin or adapter.
        kind: Kind,
        /// The name.
        name: String,
        /// Where the first one came from.
        first: Source,
    },
    /// The extension's `init` failed, panicked or rejected its config.
    Init(ExtError),
    /// `manifest` or `init` did not return within the load deadline
    /// (`EngineConfig::load_deadline`); its thread was abandoned.
    Overdue {
        /// Which call.
        stage: Stage,
        /// The deadline it missed.
        deadline: std::time::Duration,
    },
    /// No thread could be started to call `manifest` or `init`.
    NoThread {
        /// Which call.
        stage: Stage,
        /// The OS error.
        source: io::Error,
    },
    /// Refused by the trust checks, before it was opened.
    Untrusted(crate::trust::TrustError),
    /// Refused, killed, hung or garbled in the pre-flight child process.
    Preflight(crate::preflight::PreflightFailure),
}

impl fmt::Display for LoadErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadErrorKind::*;
        match self {
            DirNotFound => f.write_str("load-path directory does not exist"),
            NotADir => f.write_str("load-path entry is not a directory"),
            ReadDir(e) => write!(f, "cannot list directory: {e}"),
            NotFound => f.write_str("no such file"),
            BrokenSymlink => f.write_str("broken symlink (its target does not exist)"),
            NotAFile => f.write_str("not a regular file"),
            Empty => f.write_str("empty file (0 bytes), not a shared library"),
            Metadata(e) => write!(f, "cannot read file metadata: {e}"),
            Read(e) => write!(f, "cannot read it: {e}"),
            Open(msg) => write!(f, "not a loadable shared library: {msg}"),
            NotElf { looks_like: None } => {
                f.write_str("not a loadable shared library: not an ELF file")
            }
            NotElf {
                looks_like: Some(what),
            } => write!(f, "not a loadable shared library: not an ELF file ({what})"),
            NotSharedObject(what) => write!(f, "not a loadable shared library: {what}"),
            Machine { found, expected } => {
                write!(f, "built for {found}; this engine is {expected}")
            }
            Unresolved { symbol } => write!(f, "cannot be linked: undefined symbol {symbol}"),
            NoRootModule => f.write_str(
                "not a plugboard extension: the library exports no abi_stable root module",
            ),
            AbiStable(msg) => write!(f, "built with an incompatible abi_stable: {msg}"),
            NotRootModule {
                abi_major,
                abi_minor,
            } => write!(
                f,
                "exports abi_stable's root-module symbol, but it is not an abi_stable \
                 root module (header reads ABI {abi_major}.{abi_minor})"
            ),
            UnknownRootModule(name) => write!(
                f,
                "not a plugboard extension: its root module is `{name}` \
                 (expected `plugboard_plugin` or `plugboard_adapter`)"
            ),
            InterfaceVersion { found, expected } => write!(
                f,
                "built against plugboard-interface {found}, but this engine speaks {}; \
                 rebuild it against plugboard-interface {}",
                crate::library::generation(expected),
                crate::library::generation(expected),
            ),
            Layout { summary, .. } => write!(
                f,
                "incompatible interface layout ({summary}); rebuild it against this \
                 engine's plugboard-interface (RUST_LOG=debug shows abi_stable's full report)"
            ),
            NoLayout => f.write_str(
                "the library exports no layout information, so its ABI cannot be checked",
            ),
            RootModule(msg) => write!(f, "its root module failed to initialise: {msg}"),
            Manifest(e) => write!(f, "describing itself failed: {e}"),
            InvalidManifest(msg) => write!(f, "invalid manifest: {msg}"),
            RoutingBudget { name, budget } => write!(
                f,
                "command patterns of `{name}` compile to more than the routing budget ({} MiB)",
                budget >> 20
            ),
            RoutingTable { name } => write!(
                f,
                "left out: the command routing table does not build with the patterns of \
                 `{name}` added to those of the plugins loaded before it"
            ),
            Duplicate { kind, name, first } => {
                write!(
                    f,
                    "duplicate {kind} name `{name}` (already loaded from {first}); skipped"
                )
            }
            Init(ExtError::InvalidConfig(msg)) => write!(f, "rejected its configuration: {msg}"),
            Init(e) => write!(f, "init failed: {e}"),
            Overdue { stage, deadline } => write!(
                f,
                "{stage} did not return within {}",
                crate::engine::human(*deadline)
            ),
            NoThread { stage, source } => {
                write!(f, "cannot start a thread to call {stage}: {source}")
            }
            Untrusted(e) => e.fmt(f),
            Preflight(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.kind)
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            LoadErrorKind::ReadDir(e)
            | LoadErrorKind::Metadata(e)
            | LoadErrorKind::Read(e)
            | LoadErrorKind::NoThread { source: e, .. } => Some(e),
            LoadErrorKind::Manifest(e) | LoadErrorKind::Init(e) => Some(e),
            _ => None,
        }
    }
}
