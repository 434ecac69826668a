//! Opening and validating one extension library, before any of its
//! extension code runs.
//!
//! The order of checks is the order of trust: the file and who can write
//! it (along its resolved, absolute path), then a private snapshot of its
//! bytes (the `snapshot` module) whose allowlist digest and ELF header are
//! checked, the dynamic linker (binding every symbol now), abi_stable's
//! header, the root module's name (its kind), the interface version, the
//! full type layout, and only then the library's own code (its root-module
//! constructor and `manifest`), whose output is validated in turn. `init`
//! runs later, when the engine starts. (The dynamic linker runs the
//! library's static initialisers: everything before it is what stands
//! between a file and running its code.)
//!
//! `manifest` (and `init`, through [`PluginCandidate`] / [`AdapterCandidate`])
//! runs under the load deadline (see [`crate::deadline`]): a library whose
//! `manifest` never returns is one failure line, not a hung loader.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility, AbiInstability, AbiInstabilityErrors,
};
use abi_stable::library::{AbiHeader, AbiHeaderRef, LibHeader, LibraryError, RootModule};
use abi_stable::std_types::RResult;
use abi_stable::type_layout::TypeLayout;
use plugboard_interface::adapter::{self, Adapter, AdapterBox, AdapterManifest, AdapterRoot_Ref};
use plugboard_interface::host::HostBox;
use plugboard_interface::plugin::{self, Plugin, PluginBox, PluginManifest, PluginRoot_Ref};
use plugboard_interface::{ExtError, INTERFACE_VERSION};
use regex::Regex;

use crate::deadline::{self, Missed, DEFAULT_LOAD_DEADLINE};
use crate::engine::routes;
use crate::error::{Kind, LoadError, LoadErrorKind, Source, Stage};
use crate::snapshot::Snapshot;
use crate::trust::{self, TrustError, TrustPolicy};

type PluginInit = Arc<dyn Fn(HostBox) -> RResult<PluginBox, ExtError> + Send + Sync>;
type AdapterInit = Arc<dyn Fn(HostBox) -> RResult<AdapterBox, ExtError> + Send + Sync>;

/// A validated plugin, not yet initialised.
#[derive(Clone)]
pub struct PluginCandidate {
    /// Where it came from.
    pub source: Source,
    /// The interface version it was built against.
    pub interface_version: String,
    /// Its validated manifest.
    pub manifest: PluginManifest,
    pub(crate) patterns: Vec<Regex>,
    pub(crate) init: PluginInit,
}

/// A validated adapter, not yet initialised.
#[derive(Clone)]
pub struct AdapterCandidate {
    /// Where it came from.
    pub source: Source,
    /// The interface version it was built against.
    pub interface_version: String,
    /// Its validated manifest.
    pub manifest: AdapterManifest,
    pub(crate) init: AdapterInit,
}

/// A validated extension of either kind.
#[derive(Clone)]
pub enum Candidate {
    /// A plugin.
    Plugin(PluginCandidate),
    /// An adapter.
    Adapter(AdapterCandidate),
}

impl Candidate {
    /// Plugin or adapter.
    pub fn kind(&self) -> Kind {
        match self {
            Candidate::Plugin(_) => Kind::Plugin,
            Candidate::Adapter(_) => Kind::Adapter,
        }
    }

    /// The extension's name.
    pub fn name(&self) -> &str {
        match self {
            Candidate::Plugin(p) => &p.manifest.name,
            Candidate::Adapter(a) => &a.manifest.name,
        }
    }

    /// The extension's own version.
    pub fn version(&self) -> &str {
        match self {
            Candidate::Plugin(p) => &p.manifest.version,
            Candidate::Adapter(a) => &a.manifest.version,
        }
    }

    /// The interface version it was built against.
    pub fn interface_version(&self) -> &str {
        match self {
            Candidate::Plugin(p) => &p.interface_version,
            Candidate::Adapter(a) => &a.interface_version,
        }
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        match self {
            Candidate::Plugin(p) => &p.source,
            Candidate::Adapter(a) => &a.source,
        }
    }
}

impl PluginCandidate {
    /// An in-process plugin type, validated like a library's (its
    /// `manifest` given [`DEFAULT_LOAD_DEADLINE`]).
    pub fn in_process<P: Plugin>() -> Result<Self, LoadError> {
        Self::in_process_within::<P>(DEFAULT_LOAD_DEADLINE)
    }

    /// [`PluginCandidate::in_process`], its `manifest` given `deadline`.
    pub fn in_process_within<P: Plugin>(deadline: Duration) -> Result<Self, LoadError> {
        let manifest = call_manifest(&Source::InProcess, deadline, plugin::manifest_of::<P>)
            .map_err(|kind| LoadError::new(Source::InProcess, kind))?;
        let patterns = validate_plugin(&manifest)
            .map_err(|m| LoadError::new(Source::InProcess, LoadErrorKind::InvalidManifest(m)))?;
        check_routing_budget(&manifest, &patterns)
            .map_err(|kind| LoadError::new(Source::InProcess, kind))?;
        Ok(PluginCandidate {
            source: Source::InProcess,
            interface_version: INTERFACE_VERSION.to_owned(),
            manifest,
            patterns,
            init: Arc::new(plugin::instantiate::<P>),
        })
    }

    pub(crate) fn instantiate(&self, host: HostBox) -> Result<PluginBox, ExtError> {
        (self.init)(host).into_result()
    }

    /// Runs `init` on a helper thread, waiting for it at most `deadline`.
    pub(crate) fn instantiate_within(
        &self,
        host: HostBox,
        deadline: Duration,
    ) -> Result<PluginBox, LoadErrorKind> {
        let init = Arc::clone(&self.init);
        call_init(&self.source, &self.manifest.name, deadline, move || {
            init(host)
        })
    }

    /// Initialises the plugin outside an engine, with this configuration
    /// and no data directory: for tools and benchmarks that call it directly.
    pub fn instantiate_standalone(&self, config_json: &str) -> Result<PluginBox, ExtError> {
        self.instantiate(crate::engine::standalone_host(
            &self.manifest.name,
            config_json,
        ))
    }
}

impl AdapterCandidate {
    /// An in-process adapter type, validated like a library's (its `info`
    /// given [`DEFAULT_LOAD_DEADLINE`]).
    pub fn in_process<A: Adapter>() -> Result<Self, LoadError> {
        Self::in_process_within::<A>(DEFAULT_LOAD_DEADLINE)
    }

    /// [`AdapterCandidate::in_process`], its `info` given `deadline`.
    pub fn in_process_within<A: Adapter>(deadline: Duration) -> Result<Self, LoadError> {
        let manifest = call_manifest(&Source::InProcess, deadline, adapter::manifest_of::<A>)
            .map_err(|kind| LoadError::new(Source::InProcess, kind))?;
        validate_adapter(&manifest)
            .map_err(|m| LoadError::new(Source::InProcess, LoadErrorKind::InvalidManifest(m)))?;
        Ok(AdapterCandidate {
            source: Source::InProcess,
            interface_version: INTERFACE_VERSION.to_owned(),
            manifest,
            init: Arc::new(adapter::instantiate::<A>),
        })
    }

    /// Runs `init` on a helper thread, waiting for it at most `deadline`
    /// (an adapter's `init` may connect to its platform: give it the time
    /// that takes).
    pub(crate) fn instantiate_within(
        &self,
        host: HostBox,
        deadline: Duration,
    ) -> Result<AdapterBox, LoadErrorKind> {
        let init = Arc::clone(&self.init);
        call_init(&self.source, &self.manifest.name, deadline, move || {
            init(host)
        })
    }
}

/// Calls a `manifest` entry point under `deadline`.
fn call_manifest<M: Send + 'static>(
    source: &Source,
    deadline: Duration,
    manifest: impl FnOnce() -> RResult<M, ExtError> + Send + 'static,
) -> Result<M, LoadErrorKind> {
    match deadline::call_within(
        "manifest".to_owned(),
        format!("{source}: manifest"),
        deadline,
        manifest,
    ) {
        Ok(result) => result.into_result().map_err(LoadErrorKind::Manifest),
        Err(missed) => Err(missed_kind(Stage::Manifest, deadline, missed)),
    }
}

/// Calls an `init` entry point under `deadline`.
fn call_init<T: Send + 'static>(
    source: &Source,
    name: &str,
    deadline: Duration,
    init: impl FnOnce() -> RResult<T, ExtError> + Send + 'static,
) -> Result<T, LoadErrorKind> {
    match deadline::call_within(
        format!("init-{name}"),
        format!("{source}: init of `{name}`"),
        deadline,
        init,
    ) {
        Ok(result) => result.into_result().map_err(LoadErrorKind::Init),
        Err(missed) => Err(missed_kind(Stage::Init, deadline, missed)),
    }
}

fn missed_kind(stage: Stage, deadline: Duration, missed: Missed) -> LoadErrorKind {
    match missed {
        Missed::Overdue => LoadErrorKind::Overdue { stage, deadline },
        Missed::Spawn(source) => LoadErrorKind::NoThread { stage, source },
        // The entry points catch panics; only the loader's own glue could
        // end the thread this way.
        Missed::Lost => {
            let lost =
                ExtError::Panicked(format!("{stage} ended its thread without returning").into());
            match stage {
                Stage::Manifest => LoadErrorKind::Manifest(lost),
                Stage::Init => LoadErrorKind::Init(lost),
            }
        }
    }
}

/// Opens and validates the library at `path`.
///
/// The library stays mapped for the life of the process, whatever the
/// outcome: abi_stable never unloads libraries, and a library whose
/// static initialisers ran is not safe to unload in general.
pub fn open(path: &Path) -> Result<Candidate, LoadError> {
    open_with(path, &TrustPolicy::default())
}

/// [`open`], with the trust checks of `policy` first (see [`crate::trust`]).
pub fn open_with(path: &Path, policy: &TrustPolicy) -> Result<Candidate, LoadError> {
    open_within(path, policy, DEFAULT_LOAD_DEADLINE)
}

/// [`open_with`], giving the library's `manifest` `deadline` to return
/// (see [`crate::deadline`]).
pub fn open_within(
    path: &Path,
    policy: &TrustPolicy,
    deadline: Duration,
) -> Result<Candidate, LoadError> {
    let fail = |kind| LoadError::at(path, kind);
    let header = open_header(path, policy).map_err(fail)?;

    let consts = header.root_mod_consts();
    let kind = match consts.base_name().as_str() {
        b if b == PluginRoot_Ref::BASE_NAME => Kind::Plugin,
        b if b == AdapterRoot_Ref::BASE_NAME => Kind::Adapter,
        other => return Err(fail(LoadErrorKind::UnknownRootModule(other.to_owned()))),
    };
    let interface_version = consts.version_strings().version.as_str().to_owned();
    check_interface_version(&interface_version).map_err(fail)?;
    let layout = header
        .layout()
        .ok_or_else(|| fail(LoadErrorKind::NoLayout))?;

    let source = Source::Library(path.to_owned());
    match kind {
        Kind::Plugin => {
            let root = init_root::<PluginRoot_Ref>(header, layout).map_err(fail)?;
            let manifest_fn = root.manifest();
            let manifest = call_manifest(&source, deadline, move || manifest_fn()).map_err(fail)?;
            let patterns =
                validate_plugin(&manifest).map_err(|m| fail(LoadErrorKind::InvalidManifest(m)))?;
            check_routing_budget(&manifest, &patterns).map_err(fail)?;
            let init = root.init();
            Ok(Candidate::Plugin(PluginCandidate {
                source,
                interface_version,
                manifest,
                patterns,
                init: Arc::new(move |host| init(host)),
            }))
        }
        Kind::Adapter => {
            let root = init_root::<AdapterRoot_Ref>(header, layout).map_err(fail)?;
            let manifest_fn = root.manifest();
            let manifest = call_manifest(&source, deadline, move || manifest_fn()).map_err(fail)?;
            validate_adapter(&manifest).map_err(|m| fail(LoadErrorKind::InvalidManifest(m)))?;
            let init = root.init();
            Ok(Candidate::Adapter(AdapterCandidate {
                source,
                interface_version,
                manifest,
                init: Arc::new(move |host| init(host)),
            }))
        }
    }
}

/// Everything up to abi_stable's header: the file, the trust checks, the
/// snapshot (see [`crate::snapshot`]), the allowlist, the ELF header, the
/// dynamic linker (binding every symbol now), the root-module symbol.
///
/// Errors never mention the snapshot: the caller names the library by the
/// path it was given.
fn open_header(path: &Path, policy: &TrustPolicy) -> Result<&'static LibHeader, LoadErrorKind> {
    let absolute = trust::absolute(path).map_err(LoadErrorKind::Metadata)?;
    check_file(&absolute)?;
    let resolved =
        trust::check_library_path(&absolute, policy).map_err(LoadErrorKind::Untrusted)?;

    // One descriptor: its metadata is what the owner check sees, and its
    // bytes are what the snapshot holds.
    let mut file = File::open(&resolved).map_err(LoadErrorKind::Read)?;
    let meta = file.metadata().map_err(LoadErrorKind::Metadata)?;
    if !meta.is_file() {
        return Err(LoadErrorKind::NotAFile);
    }
    if meta.len() == 0 {
        return Err(LoadErrorKind::Empty);
    }
    trust::check_library_file(&meta, &absolute, &resolved, policy)
        .map_err(LoadErrorKind::Untrusted)?;
    // The snapshot keeps what the dynamic linker maps (see `snapshot`).
    #[cfg(target_os = "linux")]
    let keep = &crate::elf::mapped_extent;
    #[cfg(not(target_os = "linux"))]
    let keep = &|_: &[u8]| None;
    let mut snapshot = Snapshot::take(&mut file, keep).map_err(LoadErrorKind::Read)?;

    if let Some(allowlist) = &policy.allowlist {
        // The whole file, as `sha256sum` sees it: the snapshot's bytes, then
        // what the same descriptor has left.
        let digest = snapshot
            .reader()
            .and_then(|kept| trust::digest(&mut kept.chain(&mut file)))
            .map_err(|e| LoadErrorKind::Untrusted(TrustError::Read(e)))?;
        if !allowlist.contains(&digest) {
            return Err(LoadErrorKind::Untrusted(TrustError::NotAllowed {
                digest: trust::hex(&digest),
            }));
        }
    }
    drop(file);
    #[cfg(target_os = "linux")]
    crate::elf::check(
        &snapshot
            .head(crate::elf::HEAD_LEN)
            .map_err(LoadErrorKind::Read)?,
    )?;

    // Every symbol is bound now (RTLD_NOW), so a library calling something
    // no library defines is refused here, not at its first call with the
    // process killed by "symbol lookup error". RTLD_LOCAL: its symbols stay
    // its own.
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: opening a library runs its initialisers; deciding whether to
    // run them is what every check above is for. libloading requires
    // nothing else of the caller.
    let library =
        unsafe { libloading::os::unix::Library::open(Some(snapshot.dlopen_path()), flags) }
            .map_err(|e| open_error(snapshot.dlopen_path(), &absolute, &e.to_string()))?;
    snapshot.keep();
    // Never unloaded: abi_stable hands out `'static` references into it.
    let library: &'static libloading::os::unix::Library = Box::leak(Box::new(library));

    // SAFETY: the symbol's address, reinterpreted as `AbiHeaderRef` (a
    // reference to the header that abi_stable's symbol *is*), exactly as
    // abi_stable's own `abi_header_from_raw_library` does; the library is
    // never unloaded, so the reference stays valid. Until the magic string
    // matches, only `AbiHeader`'s plain bytes (40) are read, which any bit
    // pattern makes valid; a symbol of that name shorter than that would be
    // read past its end, within the library's mapped image.
    let header_ref: AbiHeaderRef = match unsafe {
        library
            .get::<AbiHeaderRef>(abi_stable::library::ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes())
    } {
        Ok(symbol) => *symbol,
        Err(_) => return Err(LoadErrorKind::NoRootModule),
    };
    let abi: &AbiHeader = &header_ref;
    if abi.magic_string != AbiHeader::VALUE.magic_string {
        return Err(LoadErrorKind::NotRootModule {
            abi_major: abi.abi_major,
            abi_minor: abi.abi_minor,
        });
    }
    header_ref.upgrade().map_err(header_error)
}

fn check_file(path: &Path) -> Result<(), LoadErrorKind> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // `metadata` follows symlinks; tell a dangling link from a missing file.
            return Err(match fs::symlink_metadata(path) {
                Ok(_) => LoadErrorKind::BrokenSymlink,
                Err(_) => LoadErrorKind::NotFound,
            });
        }
        Err(e) => return Err(LoadErrorKind::Metadata(e)),
    };
    if !meta.is_file() {
        return Err(LoadErrorKind::NotAFile);
    }
    if meta.len() == 0 {
        return Err(LoadErrorKind::Empty);
    }
    Ok(())
}

/// The dynamic linker's complaint, without the snapshot's path: dlerror()
/// starts with the path it was given, which the caller prints anyway (as
/// the library's own path); any other mention becomes the library's path.
fn open_error(opened: &Path, library: &Path, dlerror: &str) -> LoadErrorKind {
    let opened = opened.display().to_string();
    let msg = dlerror
        .replace(&format!("{opened}: "), "")
        .replace(&opened, &library.display().to_string());
    // glibc: "undefined symbol: NAME" (maybe followed by ", version V");
    // musl: "Error relocating PATH: NAME: symbol not found".
    let symbol = match msg.split_once("undefined symbol: ") {
        Some((_, rest)) => rest.split([',', ' ']).next(),
        None => msg
            .strip_suffix(": symbol not found")
            .and_then(|m| m.rsplit([' ', ':']).next()),
    }
    .filter(|s| !s.is_empty());
    match symbol {
        Some(symbol) => LoadErrorKind::Unresolved {
            symbol: symbol.to_owned(),
        },
        None => LoadErrorKind::Open(one_line(&msg)),
    }
}

fn header_error(err: LibraryError) -> LoadErrorKind {
    match err {
        LibraryError::InvalidAbiHeader(h) => LoadErrorKind::AbiStable(format!(
            "its abi_stable ABI is {}.{}",
            h.abi_major, h.abi_minor
        )),
        other => LoadErrorKind::AbiStable(one_line(&other.to_string())),
    }
}

/// The version "generation" per the interface's compatibility policy:
/// `0.MINOR.x` before 1.0, `MAJOR.x` after.
pub(crate) fn generation(version: &str) -> String {
    let mut parts = version.split('.').map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(0)), Some(Ok(minor))) => format!("0.{minor}.x"),
        (Some(Ok(major)), Some(Ok(_))) => format!("{major}.x"),
        _ => version.to_owned(),
    }
}

fn check_interface_version(found: &str) -> Result<(), LoadErrorKind> {
    if generation(found) == generation(INTERFACE_VERSION) {
        Ok(())
    } else {
        Err(LoadErrorKind::InterfaceVersion {
            found: found.to_owned(),
            expected: INTERFACE_VERSION,
        })
    }
}

fn init_root<M: RootModule>(
    header: &'static LibHeader,
    layout: &'static TypeLayout,
) -> Result<M, LoadErrorKind> {
    header.init_root_module::<M>().map_err(|e| match e {
        LibraryError::AbiInstability(_) => {
            // Re-run the check to get the structured errors behind abi_stable's
            // pre-formatted multi-kilobyte report.
            match check_layout_compatibility(M::LAYOUT, layout) {
                Err(errors) => LoadErrorKind::Layout {
                    summary: summarize_layout_errors(&errors),
                    detail: errors.to_string(),
                },
                Ok(()) => LoadErrorKind::Layout {
                    summary: "abi_stable reported a mismatch".to_owned(),
                    detail: e.to_string(),
                },
            }
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadErrorKind::InterfaceVersion {
                found: actual_version.to_string(),
                expected: INTERFACE_VERSION,
            }
        }
        LibraryError::RootModule { err, .. } => {
            LoadErrorKind::RootModule(one_line(&err.to_string()))
        }
        other => LoadErrorKind::AbiStable(one_line(&other.to_string())),
    })
}

/// The first real mismatch of abi_stable's report, as
/// `PluginRoot -> init() -> ... -> Invocation: what (and N more)`.
///
/// The path keeps only the interface's own types and the function-pointer
/// fields between them; abi_stable's wrappers (`PrefixRef`, `RResult`,
/// `RObject`, ...) are noise to someone rebuilding a plugin.
fn summarize_layout_errors(errors: &AbiInstabilityErrors) -> String {
    use abi_stable::type_layout::TLFieldOrFunction;
    const INTERFACE_PACKAGE: &str = "plugboard-interface";

    let Some(first) = errors.errors.iter().find(|e| !e.errs.is_empty()) else {
        return "no details".to_owned();
    };
    let mut path: Vec<String> = Vec::new();
    for step in first.stack_trace.iter() {
        let TLFieldOrFunction::Field(field) = &step.expected else {
            continue;
        };
        let layout = field.layout();
        let name = if layout.package() == INTERFACE_PACKAGE {
            layout.name().to_owned()
        } else if !field.function_range().is_empty() {
            format!("{}()", field.name())
        } else {
            continue;
        };
        if path.last() != Some(&name) {
            path.push(name);
        }
    }
    if path.is_empty() {
        path.push(errors.interface.name().to_owned());
    }
    let what = match first.errs.first() {
        Some(AbiInstability::FieldCountMismatch(ef)) => format!(
            "field count differs: engine has {}, library has {}",
            ef.expected, ef.found
        ),
        Some(AbiInstability::UnexpectedField(ef)) => format!(
            "field `{}` where the engine has `{}`",
            ef.found.name(),
            ef.expected.name()
        ),
        Some(AbiInstability::Name(ef)) => {
            format!("type `{}` where the engine has `{}`", ef.found, ef.expected)
        }
        Some(AbiInstability::Size(ef)) => format!(
            "size {} bytes where the engine has {}",
            ef.found, ef.expected
        ),
        Some(AbiInstability::Alignment(ef)) => format!(
            "alignment {} where the engine has {}",
            ef.found, ef.expected
        ),
        Some(AbiInstability::TooManyVariants(ef)) => format!(
            "variant count differs: engine has {}, library has {}",
            ef.expected, ef.found
        ),
        Some(AbiInstability::Package(ef)) => format!(
            "type from package `{}` where the engine has `{}`",
            ef.found, ef.expected
        ),
        Some(other) => one_line(&format!("{other:?}")),
        None => "mismatch".to_owned(),
    };
    let more = match first.errs.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!("{}: {what}{more}", path.join(" -> "))
}

fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Names are used on the command line and in chat (`discord !bacon`): one
/// word of letters, digits, `-` and `_`.
fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() > 64 {
        return Err(format!("{what} name `{name}` is longer than 64 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} name `{}` contains {c:?} (allowed: ASCII letters, digits, `-`, `_`)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Compiles a command pattern the way the router matches it: anchored at
/// the start of the command text.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})"))
}

fn validate_plugin(manifest: &PluginManifest) -> Result<Vec<Regex>, String> {
    validate_name("plugin", &manifest.name)?;
    let mut seen = std::collections::HashSet::new();
    let mut patterns = Vec::with_capacity(manifest.commands.len());
    for (i, command) in manifest.commands.iter().enumerate() {
        let name = command.name.as_str();
        if name.is_empty() {
            return Err(format!("command #{i} has an empty name"));
        }
        if !seen.insert(name) {
            return Err(format!("command name `{name}` is declared twice"));
        }
        let regex = compile_pattern(&command.pattern).map_err(|e| {
            format!(
                "command `{name}`: invalid pattern `{}`: {}",
                command.pattern,
                regex_error_line(&e)
            )
        })?;
        patterns.push(regex);
    }
    Ok(patterns)
}

/// The plugin's share of the routing table (see `engine::routes`): its
/// patterns, which each compile, must also compile together within the
/// per-plugin budget, so that no plugin can stop the table from building.
fn check_routing_budget(
    manifest: &PluginManifest,
    patterns: &[Regex],
) -> Result<(), LoadErrorKind> {
    routes::check_budget(patterns).map_err(|e| match e {
        regex::Error::CompiledTooBig(budget) => LoadErrorKind::RoutingBudget {
            name: manifest.name.to_string(),
            budget,
        },
        other => LoadErrorKind::InvalidManifest(format!(
            "the command patterns do not compile together: {}",
            regex_error_line(&other)
        )),
    })
}

fn validate_adapter(manifest: &AdapterManifest) -> Result<(), String> {
    validate_name("adapter", &manifest.name)
}

/// regex's syntax errors are multi-line drawings; keep the `error:` line.
fn regex_error_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| one_line(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RVec;
    use plugboard_interface::plugin::CommandSpec;

    fn manifest(name: &str, commands: &[(&str, &str)]) -> PluginManifest {
        PluginManifest {
            name: name.into(),
            version: "1.0.0".into(),
            description: "".into(),
            help: "".into(),
            commands: commands
                .iter()
                .map(|(n, p)| CommandSpec {
                    name: (*n).into(),
                    pattern: (*p).into(),
                    usage: "".into(),
                })
                .collect::<RVec<_>>(),
        }
    }

    #[test]
    fn manifest_validation_names_the_problem() {
        assert!(validate_plugin(&manifest("bacon", &[("a", "bacon$")])).is_ok());
        let err = |m| validate_plugin(&m).unwrap_err();
        assert_eq!(err(manifest("", &[])), "plugin name is empty");
        assert!(err(manifest("two words", &[])).contains("contains ' '"));
        assert_eq!(
            err(manifest("p", &[("a", "x"), ("a", "y")])),
            "command name `a` is declared twice"
        );
        assert_eq!(
            err(manifest("p", &[("", "x")])),
            "command #0 has an empty name"
        );
        assert_eq!(
            err(manifest("p", &[("open", "bacon(")])),
            "command `open`: invalid pattern `bacon(`: unclosed group"
        );
    }

    #[test]
    fn versions_compare_by_generation() {
        assert_eq!(generation("0.1.7"), "0.1.x");
        assert_eq!(generation("2.3.4"), "2.x");
        assert!(check_interface_version(INTERFACE_VERSION).is_ok());
        assert!(matches!(
            check_interface_version("0.999.0"),
            Err(LoadErrorKind::InterfaceVersion { .. })
        ));
        assert_eq!(generation("garbage"), "garbage");
    }

    #[test]
    fn dynamic_linker_errors_name_the_library_and_the_missing_symbol() {
        let snap = Path::new("/proc/self/fd/7");
        let lib = Path::new("/srv/plugins/libx.so");
        let kind = |dlerror: &str| open_error(snap, lib, dlerror).to_string();
        assert_eq!(
            kind("/proc/self/fd/7: undefined symbol: frobnicate"),
            "cannot be linked: undefined symbol frobnicate"
        );
        assert_eq!(
            kind("/proc/self/fd/7: undefined symbol: memfrob, version GLIBC_9"),
            "cannot be linked: undefined symbol memfrob"
        );
        assert_eq!(
            kind("Error relocating /proc/self/fd/7: frobnicate: symbol not found"),
            "cannot be linked: undefined symbol frobnicate"
        );
        assert_eq!(
            kind("libdep.so.1: cannot open shared object file: No such file or directory"),
            "not a loadable shared library: libdep.so.1: cannot open shared object file: \
             No such file or directory"
        );
        assert_eq!(
            kind("/proc/self/fd/7: cannot dynamically load position-independent executable"),
            "not a loadable shared library: cannot dynamically load position-independent \
             executable"
        );
    }

    #[test]
    fn patterns_are_anchored_at_the_start() {
        let re = compile_pattern(r"bacon$").unwrap();
        assert!(re.is_match("bacon"));
        assert!(!re.is_match("nobacon"));
    }
}
