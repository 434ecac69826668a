//! The logging bridge.
//!
//! Every cdylib has its own copy of the `log` crate's global logger, so a
//! plugin's `log::info!` would go nowhere. When the engine initialises a
//! *dynamically loaded* extension, the export macros install [`Bridge`] as
//! that library's logger: it forwards each enabled record, with its target,
//! module and location, to the [`Host`](crate::host::Host), which prints it
//! through the engine's logger (so `RUST_LOG` filters it like host code).

use abi_stable::{
    std_types::{ROption, RStr},
    StableAbi,
};

use crate::host::HostBox;

/// A log level, FFI-safe (mirrors `log::Level`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `log::Level::Error`
    Error = 1,
    /// `log::Level::Warn`
    Warn,
    /// `log::Level::Info`
    Info,
    /// `log::Level::Debug`
    Debug,
    /// `log::Level::Trace`
    Trace,
}

impl From<log::Level> for LogLevel {
    fn from(level: log::Level) -> Self {
        match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        }
    }
}

impl From<LogLevel> for log::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => log::Level::Error,
            LogLevel::Warn => log::Level::Warn,
            LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
            LogLevel::Trace => log::Level::Trace,
        }
    }
}

impl LogLevel {
    /// `log`'s max-level filter for an optional level (`None` is `Off`).
    pub fn filter(level: Option<LogLevel>) -> log::LevelFilter {
        level.map_or(log::LevelFilter::Off, |l| {
            log::Level::from(l).to_level_filter()
        })
    }

    /// The inverse of [`LogLevel::filter`].
    pub fn from_filter(filter: log::LevelFilter) -> Option<LogLevel> {
        filter.to_level().map(LogLevel::from)
    }
}

/// One log record, borrowed for the duration of the call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// Severity.
    pub level: LogLevel,
    /// The record's target (by default the module path in the extension).
    pub target: RStr<'a>,
    /// The formatted message.
    pub message: RStr<'a>,
    /// The module the record comes from.
    pub module_path: ROption<RStr<'a>>,
    /// The source file.
    pub file: ROption<RStr<'a>>,
    /// The source line.
    pub line: ROption<u32>,
}

impl LogRecord<'_> {
    /// Replays this record through the current process's `log` logger. The
    /// engine's [`Host::log`](crate::host::Host::log) implementation is this.
    pub fn replay(&self) {
        let logger = log::logger();
        logger.log(
            &log::Record::builder()
                .level(self.level.into())
                .target(self.target.as_str())
                .module_path(self.module_path.map(|m| m.as_str()).into_option())
                .file(self.file.map(|f| f.as_str()).into_option())
                .line(self.line.into_option())
                .args(format_args!("{}", self.message.as_str()))
                .build(),
        );
    }
}

/// The extension-side logger that forwards to the host.
struct Bridge {
    host: HostBox,
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.host
            .log_enabled(metadata.level().into(), metadata.target().into())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Format here, in the extension: `fmt::Arguments` cannot cross the ABI.
        let owned;
        let message = match record.args().as_str() {
            Some(s) => s,
            None => {
                owned = record.args().to_string();
                &owned
            }
        };
        self.host.log(&LogRecord {
            level: record.level().into(),
            target: record.target().into(),
            message: message.into(),
            module_path: record.module_path().map(RStr::from).into(),
            file: record.file().map(RStr::from).into(),
            line: record.line().into(),
        });
    }

    fn flush(&self) {}
}

/// Installs the bridge as this library's `log` logger (once per library).
///
/// Only the export macros' entry points call this: an extension linked into
/// the host as an rlib shares the host's logger and must not replace it.
pub(crate) fn install(host: &HostBox) {
    let bridge = Bridge { host: host.clone() };
    // An error means this library already has a logger (a second extension
    // instance from the same library): the first bridge serves both.
    if log::set_boxed_logger(Box::new(bridge)).is_ok() {
        log::set_max_level(LogLevel::filter(host.max_level().into_option()));
        // From now on the quiet panic hook (`guard::quiet_panics`, installed
        // by every exported entry point) logs panic locations through this.
    }
}
