//! [`EngineBuilder`]: collecting extensions (libraries through the
//! pre-flight, in-process types), then initialising them and starting the
//! pipeline. What fails is a line of the [`LoadReport`], never the engine.

use super::*;

type ClientFactory = Box<dyn Fn(&AdapterManifest) -> Option<ClientBox>>;

/// Collects extensions, then [`start`](EngineBuilder::start)s the engine.
///
/// ```no_run
/// use plugboard_loader::{Engine, EngineConfig, LoadPath};
///
/// let engine = Engine::builder(EngineConfig::default())
///     .load_path(&LoadPath::new(["/usr/lib/plugboard"]))
///     .start()?;
/// for failure in &engine.report().failures {
///     eprintln!("{failure}");
/// }
/// engine.shutdown();
/// # Ok::<(), plugboard_loader::EngineError>(())
/// ```
pub struct EngineBuilder {
    pub(super) config: EngineConfig,
    pub(super) candidates: Vec<Candidate>,
    pub(super) failures: Vec<LoadError>,
    pub(super) extension_configs: HashMap<(Kind, String), String>,
    pub(super) deadlines: HashMap<String, Duration>,
    pub(super) clients: Option<ClientFactory>,
    pub(super) trust: TrustPolicy,
    pub(super) preflight: Option<Preflight>,
}

impl EngineBuilder {
    /// Sets the trust checks applied by the following `load_path` and
    /// `library` calls (by default: refuse what other users can write).
    pub fn trust(mut self, policy: TrustPolicy) -> Self {
        self.trust = policy;
        self
    }

    /// Gives plugin `name` its own command deadline instead of
    /// [`EngineConfig::command_deadline`].
    pub fn plugin_deadline(mut self, name: &str, deadline: Duration) -> Self {
        self.deadlines.insert(name.to_owned(), deadline);
        self
    }

    /// Opens the following `load_path` and `library` files in a pre-flight
    /// child process first (see [`crate::preflight`]), so that a library
    /// whose load-time code crashes, exits or hangs is one failure instead
    /// of the end of this process. Off by default: the child is an
    /// executable whose `main` calls [`crate::preflight::run_if_child`].
    pub fn preflight(mut self, preflight: Option<Preflight>) -> Self {
        self.preflight = preflight;
        self
    }

    /// Gives plugin `name` its own limit of calls in flight instead of
    /// [`EngineConfig::max_in_flight`].
    pub fn plugin_max_in_flight(mut self, name: &str, limit: usize) -> Self {
        self.config
            .plugin_max_in_flight
            .insert(name.to_owned(), limit);
        self
    }

    /// Scans `path` and opens every library on it; failures are collected
    /// for the report, never fatal.
    pub fn load_path(mut self, path: &LoadPath) -> Self {
        let scan = path.scan_with(&self.trust);
        self.failures.extend(scan.failures);
        self.open_libraries(&scan.libraries);
        self
    }

    /// Opens one library file.
    pub fn library(mut self, path: &Path) -> Self {
        self.open_libraries(&[path.to_owned()]);
        self
    }

    fn open_libraries(&mut self, paths: &[PathBuf]) {
        let (candidates, failures) = (&mut self.candidates, &mut self.failures);
        preflight::open_all(
            paths,
            &self.trust,
            self.preflight.as_ref(),
            self.config.load_deadline,
            |_, outcome| match outcome {
                Ok(candidate) => candidates.push(candidate),
                Err(e) => failures.push(e),
            },
        );
    }

    /// The failures so far (libraries that did not open or validate), in
    /// load order: a caller that treats them as fatal can stop before any
    /// extension's `init` runs.
    pub fn failures(&self) -> &[LoadError] {
        &self.failures
    }

    /// Registers an in-process plugin: the same trait and checks as a library.
    pub fn plugin<P: Plugin>(mut self) -> Self {
        match PluginCandidate::in_process_within::<P>(self.config.load_deadline) {
            Ok(c) => self.candidates.push(Candidate::Plugin(c)),
            Err(e) => self.failures.push(e),
        }
        self
    }

    /// Registers an in-process adapter: the same trait and checks as a library.
    pub fn adapter<A: Adapter>(mut self) -> Self {
        match AdapterCandidate::in_process_within::<A>(self.config.load_deadline) {
            Ok(c) => self.candidates.push(Candidate::Adapter(c)),
            Err(e) => self.failures.push(e),
        }
        self
    }

    /// Sets the JSON configuration handed to extension `name` at init
    /// (`{}` when not set).
    pub fn extension_config(mut self, kind: Kind, name: &str, json: impl Into<String>) -> Self {
        self.extension_configs
            .insert((kind, name.to_owned()), json.into());
        self
    }

    /// Injects platform clients into adapters: `factory` is asked once per
    /// adapter, before its init.
    pub fn clients(
        mut self,
        factory: impl Fn(&AdapterManifest) -> Option<ClientBox> + 'static,
    ) -> Self {
        self.clients = Some(Box::new(factory));
        self
    }

    /// The validated extensions so far, in load order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Initialises every extension and starts the pipeline. An extension
    /// that fails (duplicate name, init error, init still running after
    /// [`EngineConfig::load_deadline`]) is reported and left out; the
    /// others start.
    pub fn start(self) -> Result<Engine, EngineError> {
        let EngineBuilder {
            config,
            candidates,
            mut failures,
            extension_configs,
            deadlines,
            clients,
            trust: _,
            preflight: _,
        } = self;
        let mut loaded = Vec::new();
        let mut first_seen: HashMap<(Kind, String), Source> = HashMap::new();
        let mut plugins: Vec<(LivePlugin, Vec<regex::Regex>, Source)> = Vec::new();
        let mut adapters: Vec<(AdapterManifest, AdapterBox)> = Vec::new();
        let mut took_client = Vec::new();

        for candidate in candidates {
            let key = (candidate.kind(), candidate.name().to_owned());
            if let Some(first) = first_seen.get(&key) {
                failures.push(LoadError::new(
                    candidate.source().clone(),
                    LoadErrorKind::Duplicate {
                        kind: key.0,
                        name: key.1,
                        first: first.clone(),
                    },
                ));
                continue;
            }
            let config_json = extension_configs
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "{}".to_owned());
            let data_dir = extension_data_dir(config.data_dir.as_deref(), key.0, &key.1);
            // Before its code runs: a crash in `init` is then never anonymous.
            log::info!(
                "initialising {} `{}` from {}",
                key.0,
                key.1,
                candidate.source()
            );
            let started = match &candidate {
                Candidate::Plugin(p) => p
                    .instantiate_within(
                        host::host(key.0, &key.1, config_json, data_dir, None),
                        config.load_deadline,
                    )
                    .map(|obj| {
                        let live = LivePlugin {
                            name: key.1.clone(),
                            version: p.manifest.version.to_string(),
                            description: p.manifest.description.to_string(),
                            help: p.manifest.help.to_string(),
                            usages: p
                                .manifest
                                .commands
                                .iter()
                                .map(|c| c.usage.to_string())
                                .collect(),
                            commands: p
                                .manifest
                                .commands
                                .iter()
                                .map(|c| c.name.to_string())
                                .collect(),
                            obj: obj.into(),
                            deadline: deadlines
                                .get(&key.1)
                                .copied()
                                .unwrap_or(config.command_deadline),
                            health: Default::default(),
                            marks: p
                                .manifest
                                .commands
                                .iter()
                                .map(|c| {
                                    format!("plugin `{}`, command `{}`", key.1, c.name)
                                        .into_bytes()
                                        .into_boxed_slice()
                                })
                                .collect(),
                        };
                        plugins.push((live, p.patterns.clone(), candidate.source().clone()));
                    }),
                Candidate::Adapter(a) => {
                    let client = clients.as_ref().and_then(|f| f(&a.manifest));
                    let (host, slot) =
                        host::host_tracking_client(key.0, &key.1, config_json, data_dir, client);
                    let started = a.instantiate_within(host, config.load_deadline);
                    // Whatever init did (or is still doing), an untaken
                    // client is not the adapter's: shutdown must not
                    // depend on it being dropped by anyone else.
                    slot.withdraw();
                    started.map(|obj| {
                        if slot.taken() {
                            took_client.push(key.1.clone());
                        }
                        adapters.push((a.manifest.clone(), obj))
                    })
                }
            };
            match started {
                Ok(()) => {
                    loaded.push(Loaded {
                        kind: key.0,
                        name: key.1.clone(),
                        version: candidate.version().to_owned(),
                        source: candidate.source().clone(),
                    });
                    first_seen.insert(key, candidate.source().clone());
                }
                Err(kind) => failures.push(LoadError::new(candidate.source().clone(), kind)),
            }
        }
        for failure in &failures {
            if let Some(detail) = failure.detail() {
                log::debug!("{}: abi_stable's report:\n{detail}", failure.source);
            }
        }

        // Every plugin's patterns fit its routing budget (checked at
        // validation), so the table builds; if it ever does not, the last
        // plugins are left out, by name, rather than the engine failing.
        let patterns: Vec<&[regex::Regex]> = plugins.iter().map(|(_, p, _)| p.as_slice()).collect();
        let (routes, admitted) = Routes::admit(&patterns);
        drop(patterns);
        for (live, _, source) in plugins.split_off(admitted) {
            loaded.retain(|l| !(l.kind == Kind::Plugin && l.name == live.name));
            failures.push(LoadError::new(
                source,
                LoadErrorKind::RoutingTable { name: live.name },
            ));
        }
        let report = LoadReport {
            loaded,
            failures,
            took_client,
        };
        Engine::spawn(
            config,
            plugins.into_iter().map(|(p, _, _)| p).collect(),
            routes,
            adapters,
            report,
        )
    }
}

pub(crate) fn standalone_host(name: &str, config_json: &str) -> plugboard_interface::host::HostBox {
    host::host(Kind::Plugin, name, config_json.to_owned(), None, None)
}

/// `<data_dir>/<plugins|adapters>/<name>`, created; `None` without a data
/// dir or if it cannot be created (logged: the extension runs stateless).
fn extension_data_dir(data_dir: Option<&Path>, kind: Kind, name: &str) -> Option<String> {
    let dir = data_dir?.join(format!("{kind}s")).join(name);
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Some(dir.to_string_lossy().into_owned()),
        Err(e) => {
            log::warn!(
                "cannot create the data directory {} of {kind} `{name}`: {e}; it runs without one",
                dir.display()
            );
            None
        }
    }
}
