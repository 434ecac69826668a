//! The load path: directories scanned for extension libraries.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, LoadErrorKind};
use crate::trust::{self, TrustPolicy};

/// The environment variable holding extra load-path directories,
/// separated like `PATH` (`:` on Unix).
pub const PATH_ENV: &str = "PLUGBOARD_PATH";

/// An ordered list of directories to scan for `*.so` (`*.dylib`, `*.dll`)
/// libraries.
///
/// Scanning is deterministic: directories in the order given, files within
/// a directory sorted by name, each file once even if reached twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPath {
    dirs: Vec<PathBuf>,
}

/// The result of a scan: the candidate libraries, and the directories (or
/// entries) that could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Library files, in load order.
    pub libraries: Vec<PathBuf>,
    /// Problems with the load path itself.
    pub failures: Vec<LoadError>,
}

impl LoadPath {
    /// A load path of exactly these directories.
    pub fn new<I, P>(dirs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        LoadPath {
            dirs: dirs.into_iter().map(Into::into).collect(),
        }
    }

    /// Appends the directories of a `PATH`-style list (the value of
    /// [`PATH_ENV`]); empty elements are skipped.
    pub fn extend_from_env_value(&mut self, value: &OsStr) {
        self.dirs
            .extend(std::env::split_paths(value).filter(|p| !p.as_os_str().is_empty()));
    }

    /// Appends one directory.
    pub fn push(&mut self, dir: impl Into<PathBuf>) {
        self.dirs.push(dir.into());
    }

    /// The directories, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether no directory is configured.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Lists the candidate libraries. Never fails as a whole: an unreadable
    /// directory is reported and the others are still scanned.
    pub fn scan(&self) -> Scan {
        self.scan_with(&TrustPolicy::default())
    }

    /// [`LoadPath::scan`], refusing directories that fail `policy`'s
    /// writer check (anyone who can write there, or in a directory above,
    /// can plant a library; see [`trust::check_directory`]).
    pub fn scan_with(&self, policy: &TrustPolicy) -> Scan {
        let mut scan = Scan::default();
        let mut seen = HashSet::new();
        for dir in &self.dirs {
            let listed = list_dir(dir).and_then(|files| {
                let absolute = trust::absolute(dir).map_err(LoadErrorKind::Metadata)?;
                trust::check_directory(&absolute, policy)
                    .map(|()| files)
                    .map_err(LoadErrorKind::Untrusted)
            });
            match listed {
                Ok(files) => {
                    for file in files {
                        // Canonical identity so that a directory listed twice
                        // (or reached through a symlink) loads each file once;
                        // a broken symlink has none and is kept to be reported.
                        let key = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                        if seen.insert(key) {
                            scan.libraries.push(file);
                        }
                    }
                }
                Err(kind) => scan.failures.push(LoadError::at(dir, kind)),
            }
        }
        scan
    }
}

/// Whether `path` has the platform's shared-library extension.
pub fn is_library_name(path: &Path) -> bool {
    path.extension() == Some(OsStr::new(std::env::consts::DLL_EXTENSION))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, LoadErrorKind> {
    let meta = fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => LoadErrorKind::DirNotFound,
        _ => LoadErrorKind::ReadDir(e),
    })?;
    if !meta.is_dir() {
        return Err(LoadErrorKind::NotADir);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(LoadErrorKind::ReadDir)? {
        let entry = entry.map_err(LoadErrorKind::ReadDir)?;
        let path = entry.path();
        if is_library_name(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("plugboard-path-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn scans_in_order_once_each_and_reports_bad_dirs() {
        let a = temp_dir("a");
        let b = temp_dir("b");
        let ext = std::env::consts::DLL_EXTENSION;
        for name in ["zeta", "alpha", "mid"] {
            fs::write(a.join(format!("{name}.{ext}")), b"x").unwrap();
        }
        fs::write(a.join("notes.txt"), b"x").unwrap();
        fs::write(b.join(format!("beta.{ext}")), b"x").unwrap();
        let missing = a.join("missing");
        let file_not_dir = a.join("notes.txt");

        let path = LoadPath::new([&b, &a, &missing, &a, &file_not_dir]);
        let scan = path.scan();
        let names: Vec<_> = scan
            .libraries
            .iter()
            .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["beta", "alpha", "mid", "zeta"]);
        assert_eq!(scan.failures.len(), 2);
        assert!(matches!(scan.failures[0].kind, LoadErrorKind::DirNotFound));
        assert!(matches!(scan.failures[1].kind, LoadErrorKind::NotADir));
        assert!(scan.failures[0]
            .to_string()
            .starts_with(&missing.display().to_string()));
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn env_value_splits_and_skips_empty_elements() {
        let mut path = LoadPath::default();
        path.extend_from_env_value(OsStr::new("/one::/two"));
        assert_eq!(path.dirs(), [PathBuf::from("/one"), PathBuf::from("/two")]);
    }
}
