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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::library::{AbiHeader, AbiHeaderRef, LibHeader, LibraryError, RootModule};
use abi_stable::std_types::RResult;
use plugboard_interface::adapter::{self, Adapter, AdapterBox, AdapterManifest, AdapterRoot_Ref};
use plugboard_interface::host::HostBox;
use plugboard_interface::plugin::{self, Plugin, PluginBox, PluginManifest, PluginRoot_Ref};
use plugboard_interface::{ExtError, INTERFACE_VERSION};
use regex::Regex;

use crate::deadline::{self, Missed, DEFAULT_LOAD_DEADLINE};
use crate::error::{Kind, LoadError, LoadErrorKind, Source, Stage};
use crate::snapshot::Snapshot;
use crate::trust::{self, TrustError, TrustPolicy};

mod abi;
mod manifest;

pub(crate) use abi::generation;
use abi::{check_interface_version, init_root};
pub use manifest::compile_pattern;
use manifest::{check_routing_budget, validate_adapter, validate_plugin};

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
        check_routing_budget(&manifest).map_err(|kind| LoadError::new(Source::InProcess, kind))?;
        let patterns = validate_plugin(&manifest)
            .map_err(|m| LoadError::new(Source::InProcess, LoadErrorKind::InvalidManifest(m)))?;
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
    let mark = format!("the manifest of {source}");
    let manifest = move || {
        let _running = crate::fatal::mark(mark.as_bytes());
        manifest()
    };
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
    // Named in the line a fatal signal prints (see `crate::fatal`).
    let mark = format!("the init of `{name}` ({source})");
    let init = move || {
        let _running = crate::fatal::mark(mark.as_bytes());
        init()
    };
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
    prepare(path, policy)?.open(deadline)
}

/// From abi_stable's header on: kind, interface version, layout, then the
/// `manifest` within `deadline`, validated.
fn finish(
    path: &Path,
    header: &'static LibHeader,
    deadline: Duration,
) -> Result<Candidate, LoadError> {
    let fail = |kind| LoadError::at(path, kind);
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
            // The budget first: it bounds the cost of compiling the rest.
            check_routing_budget(&manifest).map_err(fail)?;
            let patterns =
                validate_plugin(&manifest).map_err(|m| fail(LoadErrorKind::InvalidManifest(m)))?;
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

/// How a prepared library is mapped by the dynamic linker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// From a private, sealed snapshot (see [`crate::snapshot`]): what the
    /// engine always does.
    Snapshot,
    /// From the file itself: the pre-flight child, which only has to
    /// survive the library, saves the copy.
    InPlace,
}

/// A library file that passed every check made before any of its code can
/// run: the file, the trust checks, the snapshot, the allowlist, the ELF
/// header. [`Prepared::open`] runs the rest (the dynamic linker onwards).
///
/// Preparing is separate so that it can overlap the pre-flight child's
/// work on the same library (see [`crate::preflight`]).
pub struct Prepared {
    path: PathBuf,
    absolute: PathBuf,
    snapshot: Snapshot,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("path", &self.path)
            .finish()
    }
}

/// Checks `path` up to, not including, running its code (see [`Prepared`]).
pub fn prepare(path: &Path, policy: &TrustPolicy) -> Result<Prepared, LoadError> {
    prepare_as(path, policy, Mapping::Snapshot)
}

pub(crate) fn prepare_as(
    path: &Path,
    policy: &TrustPolicy,
    mapping: Mapping,
) -> Result<Prepared, LoadError> {
    let fail = |kind| LoadError::at(path, kind);
    let absolute = trust::absolute(path)
        .map_err(LoadErrorKind::Metadata)
        .map_err(fail)?;
    let snapshot = checked_snapshot(&absolute, policy, mapping).map_err(fail)?;
    Ok(Prepared {
        path: path.to_owned(),
        absolute,
        snapshot,
    })
}

impl Prepared {
    /// The library's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the prepared library: the dynamic linker (which runs its
    /// initialisers), abi_stable's header, kind, version, layout, then its
    /// `manifest` within `deadline`, validated.
    pub fn open(self, deadline: Duration) -> Result<Candidate, LoadError> {
        let path = self.path.clone();
        let fail = |kind| LoadError::at(&path, kind);
        let header = open_header(self.snapshot, &self.absolute).map_err(fail)?;
        finish(&path, header, deadline)
    }
}

/// The file, the trust checks, the snapshot (see [`crate::snapshot`]), the
/// allowlist, the ELF header: everything before the library's code runs.
fn checked_snapshot(
    absolute: &Path,
    policy: &TrustPolicy,
    mapping: Mapping,
) -> Result<Snapshot, LoadErrorKind> {
    check_file(absolute)?;
    let resolved = trust::check_library_path(absolute, policy).map_err(LoadErrorKind::Untrusted)?;

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
    trust::check_library_file(&meta, absolute, &resolved, policy)
        .map_err(LoadErrorKind::Untrusted)?;
    let mut snapshot = match mapping {
        Mapping::Snapshot => {
            // The snapshot keeps what the dynamic linker maps (see `snapshot`).
            #[cfg(target_os = "linux")]
            let keep = &crate::elf::mapped_extent;
            #[cfg(not(target_os = "linux"))]
            let keep = &|_: &[u8]| None;
            Snapshot::take(&mut file, keep).map_err(LoadErrorKind::Read)?
        }
        Mapping::InPlace => {
            // A second descriptor of the same open file: it shares the
            // offset, so the digest below still reads the file once.
            let same = file.try_clone().map_err(LoadErrorKind::Read)?;
            Snapshot::in_place(same, resolved.clone())
        }
    };

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
    Ok(snapshot)
}

/// The dynamic linker (binding every symbol now) and the root-module
/// symbol, up to abi_stable's header.
///
/// Errors never mention the snapshot: they name the library by `absolute`
/// where the dynamic linker's message would show the snapshot's name.
fn open_header(snapshot: Snapshot, absolute: &Path) -> Result<&'static LibHeader, LoadErrorKind> {
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
            .map_err(|e| open_error(snapshot.dlopen_path(), absolute, &e.to_string()))?;
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

pub(crate) fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 300 {
        let cut: String = text.chars().take(300).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
