//! Checks made *before* a library is opened, because opening it runs its
//! code: who may have written it, and (optionally) whether it is one of the
//! exact builds the operator approved.
//!
//! Who may have written it is decided on the *resolved* path, the way the
//! kernel resolves it: the library file, its directory, every directory
//! holding a symlink on the way, and every ancestor up to `/`. The file, its
//! directory and link-holding directories must not be group- or
//! world-writable; an ancestor may be only if it is sticky and root-owned
//! (`/tmp`), as in sshd's `StrictModes`. Everything must belong to this
//! user or root. Paths are absolute before any of this
//! ([`absolutize`]), so a bare `libfoo.so` names the file in the current
//! directory, never one the dynamic linker would search for.
//!
//! What this protects against: a library or load-path directory that
//! another local user could replace, repoint or plant files in, and (with
//! an allowlist) any library that is not byte-for-byte an approved build.
//! What it does not: a malicious library the operator approved, or anyone
//! who can already write as the engine's user or as root.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// What the loader requires of a library before opening it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Accept libraries and directories that other users can write to
    /// (group- or world-writable, or owned by someone other than this user
    /// or root). Off by default.
    pub allow_writable: bool,
    /// When set, only libraries whose SHA-256 is listed are opened.
    pub allowlist: Option<HashSet<Sha256Digest>>,
}

/// Where a trust problem is, relative to the path that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// The library or directory itself, as named.
    Itself,
    /// What the path resolves to, through symlinks.
    Target(PathBuf),
    /// The directory holding the library (`resolved`: what the library's
    /// path resolves to, when that goes through a symlink).
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The resolved library, if it differs from the path as named.
        resolved: Option<PathBuf>,
    },
    /// A directory holding a symlink that the path goes through: whoever
    /// can write there can point the link elsewhere.
    LinkDirectory(PathBuf),
    /// A directory above: whoever can write there can rename what is below.
    Ancestor(PathBuf),
}

impl Culprit {
    /// `<who> is <problem>`, in words.
    fn describe(&self, problem: &str) -> String {
        match self {
            Culprit::Itself => problem.to_owned(),
            Culprit::Target(to) => {
                format!("it resolves to {}, which is {problem}", to.display())
            }
            Culprit::Directory {
                dir,
                resolved: Some(to),
            } => format!(
                "it resolves to {}, whose directory {} is {problem}",
                to.display(),
                dir.display()
            ),
            Culprit::Directory {
                dir,
                resolved: None,
            } => format!("its directory {} is {problem}", dir.display()),
            Culprit::LinkDirectory(dir) => format!(
                "its path goes through a symlink in {}, which is {problem}",
                dir.display()
            ),
            Culprit::Ancestor(dir) => format!("ancestor directory {} is {problem}", dir.display()),
        }
    }
}

/// Why a path failed the trust checks.
#[derive(Debug)]
pub enum TrustError {
    /// Group- or world-writable (for an ancestor directory: and not a
    /// root-owned sticky directory such as `/tmp`).
    Writable {
        /// Which file or directory.
        culprit: Culprit,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by another (non-root) user.
    ForeignOwner {
        /// Which file or directory.
        culprit: Culprit,
        /// The owner's uid.
        uid: u32,
    },
    /// The digest is not in the allowlist.
    NotAllowed {
        /// The library's SHA-256, hex.
        digest: String,
    },
    /// The file could not be read to hash it.
    Read(io::Error),
    /// A file or directory on the path could not be examined.
    Inspect {
        /// What could not be examined.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Writable { culprit, mode } => {
                let mut problem = format!("writable by other users (mode {:o})", mode & 0o7777);
                if matches!(culprit, Culprit::Ancestor(_)) {
                    problem.push_str(" and not a root-owned sticky directory");
                }
                write!(
                    f,
                    "refused: {}; fix the permissions or pass --allow-writable",
                    culprit.describe(&problem)
                )
            }
            TrustError::ForeignOwner { culprit, uid } => write!(
                f,
                "refused: {}; fix the owner or pass --allow-writable",
                culprit.describe(&format!("owned by another user (uid {uid})"))
            ),
            TrustError::NotAllowed { digest } => {
                write!(f, "refused: SHA-256 {digest} is not in the allowlist")
            }
            TrustError::Read(e) => write!(f, "cannot read it to check its digest: {e}"),
            TrustError::Inspect { path, error } => {
                write!(f, "cannot check {}: {error}", path.display())
            }
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `path` made absolute against `cwd`, without touching the file system:
/// the loader names every file by an absolute path, so that nothing (the
/// dynamic linker's search for a bare `libfoo.so` in particular) ever
/// resolves it differently from the checks.
pub fn absolutize(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(path)
    }
}

/// [`absolutize`] against the current directory.
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(absolutize(path, &std::env::current_dir()?))
    }
}

/// What a directory met while resolving a path is to that path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// Only gone through.
    Ancestor,
    /// Holds a symlink the resolution followed.
    HoldsLink,
    /// Holds the library (or is the load-path directory).
    Final,
}

/// A path resolved the way the kernel resolves it, with every directory
/// the resolution went through.
#[derive(Debug)]
struct Walk {
    resolved: PathBuf,
    dirs: Vec<(PathBuf, Role)>,
}

impl Walk {
    fn note(&mut self, dir: &Path, role: Role) {
        match self.dirs.iter_mut().find(|(d, _)| d == dir) {
            Some((_, r)) => *r = (*r).max(role),
            None => self.dirs.push((dir.to_owned(), role)),
        }
    }
}

/// Resolves the absolute `path` component by component (symlinks
/// included, like `realpath`), noting each directory on the way.
fn walk(path: &Path) -> Result<Walk, TrustError> {
    use std::path::Component;
    const MAX_LINKS: usize = 40;
    enum Step {
        Root,
        Up,
        Name(std::ffi::OsString),
    }
    fn steps(path: &Path) -> impl DoubleEndedIterator<Item = Step> + '_ {
        path.components().filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Step::Root),
            Component::ParentDir => Some(Step::Up),
            Component::CurDir => None,
            Component::Normal(name) => Some(Step::Name(name.to_owned())),
        })
    }
    fn inspect(path: &Path) -> impl FnOnce(io::Error) -> TrustError {
        let path = path.to_owned();
        move |error| TrustError::Inspect { path, error }
    }

    let mut pending: Vec<Step> = steps(path).rev().collect();
    let mut walk = Walk {
        resolved: PathBuf::from("/"),
        dirs: Vec::new(),
    };
    let mut links = 0;
    while let Some(step) = pending.pop() {
        match step {
            Step::Root => walk.resolved = PathBuf::from("/"),
            Step::Up => {
                walk.resolved.pop();
            }
            Step::Name(name) => {
                let next = walk.resolved.join(&name);
                let meta = fs::symlink_metadata(&next).map_err(inspect(&next))?;
                let here = walk.resolved.clone();
                if meta.file_type().is_symlink() {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(inspect(&next)(io::Error::from_raw_os_error(libc::ELOOP)));
                    }
                    walk.note(&here, Role::HoldsLink);
                    let target = fs::read_link(&next).map_err(inspect(&next))?;
                    pending.extend(steps(&target).rev());
                } else {
                    walk.note(&here, Role::Ancestor);
                    walk.resolved = next;
                }
            }
        }
    }
    Ok(walk)
}

/// Whether `meta` shows something other users could change or own.
fn writers(meta: &fs::Metadata, culprit: Culprit, sticky_root_ok: bool) -> Result<(), TrustError> {
    let mode = meta.mode();
    let uid = meta.uid();
    let shared = mode & 0o022 != 0;
    let sticky_root = mode & 0o1000 != 0 && uid == 0;
    if shared && !(sticky_root_ok && sticky_root) {
        return Err(TrustError::Writable { culprit, mode });
    }
    if uid != 0 && uid != euid() {
        return Err(TrustError::ForeignOwner { culprit, uid });
    }
    Ok(())
}

/// Checks every directory of `walk`: the final one and those holding a
/// symlink must not be writable by others; ancestors may be, if they are
/// sticky and root-owned (`/tmp`), as in sshd's `StrictModes`. All must
/// belong to this user or root.
fn check_dirs(walk: &Walk, culprit_of_final: impl Fn(&Path) -> Culprit) -> Result<(), TrustError> {
    let mut dirs = walk.dirs.clone();
    // The nearest problem first: the final directory, then links, then
    // ancestors from the top down.
    dirs.sort_by_key(|(_, role)| std::cmp::Reverse(*role));
    for (dir, role) in dirs {
        let meta = fs::symlink_metadata(&dir).map_err(|error| TrustError::Inspect {
            path: dir.clone(),
            error,
        })?;
        let culprit = match role {
            Role::Final => culprit_of_final(&dir),
            Role::HoldsLink => Culprit::LinkDirectory(dir),
            Role::Ancestor => Culprit::Ancestor(dir),
        };
        writers(&meta, culprit, role == Role::Ancestor)?;
    }
    Ok(())
}

/// Checks who can change what the absolute library path `path` names,
/// before it is opened: every directory its resolution goes through (the
/// library's own directory, any directory holding a symlink on the way,
/// every ancestor up to `/`). Returns the resolved path, which is what the
/// loader opens; with `allow_writable`, `path` itself, unchecked.
///
/// The file's own permissions are checked on its open descriptor, by
/// [`check_library_file`].
pub fn check_library_path(path: &Path, policy: &TrustPolicy) -> Result<PathBuf, TrustError> {
    if policy.allow_writable {
        return Ok(path.to_owned());
    }
    let mut walk = walk(path)?;
    let resolved = walk.resolved.clone();
    let via = (resolved != path).then(|| resolved.clone());
    if let Some(dir) = resolved.parent() {
        walk.note(dir, Role::Final);
    }
    check_dirs(&walk, |dir| Culprit::Directory {
        dir: dir.to_owned(),
        resolved: via.clone(),
    })?;
    Ok(resolved)
}

/// Checks the opened library file itself (`meta` from its descriptor):
/// `path` is the absolute path as named, `resolved` what it resolved to.
pub fn check_library_file(
    meta: &fs::Metadata,
    path: &Path,
    resolved: &Path,
    policy: &TrustPolicy,
) -> Result<(), TrustError> {
    if policy.allow_writable {
        return Ok(());
    }
    let culprit = if resolved == path {
        Culprit::Itself
    } else {
        Culprit::Target(resolved.to_owned())
    };
    writers(meta, culprit, false)
}

/// Checks who can write the load-path directory `dir` (absolute), any
/// directory holding a symlink on its way, and every ancestor up to `/`:
/// anyone who can write there can plant a library.
pub fn check_directory(dir: &Path, policy: &TrustPolicy) -> Result<(), TrustError> {
    if policy.allow_writable {
        return Ok(());
    }
    let mut walk = walk(dir)?;
    let resolved = walk.resolved.clone();
    walk.note(&resolved, Role::Final);
    check_dirs(&walk, |found| {
        if found == dir {
            Culprit::Itself
        } else {
            Culprit::Target(found.to_owned())
        }
    })
}

/// Hex form of a digest.
pub fn hex(digest: &Sha256Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of everything `file` has left to read.
pub fn digest(file: &mut impl Read) -> io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Parses an allowlist: `sha256sum` output (`<hex>  <name>`) or bare hex
/// digests, one per line; `#` comments and blank lines are ignored.
pub fn parse_allowlist(text: &str) -> Result<HashSet<Sha256Digest>, String> {
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let hex_digest = line.split_whitespace().next().unwrap_or("");
        let digest = parse_hex(hex_digest).ok_or_else(|| {
            format!(
                "line {}: `{hex_digest}` is not a SHA-256 digest (64 hex digits)",
                i + 1
            )
        })?;
        set.insert(digest);
    }
    Ok(set)
}

fn parse_hex(s: &str) -> Option<Sha256Digest> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn allowlists_accept_sha256sum_output_and_name_bad_lines() {
        let a = "a".repeat(64);
        let text = format!(
            "# approved builds\n{a}  libbacon.so\n\n{}\n",
            "0F".repeat(32)
        );
        let set = parse_allowlist(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&[0xaa; 32]));
        assert!(set.contains(&[0x0f; 32]));
        assert_eq!(
            parse_allowlist("xyz libbacon.so").unwrap_err(),
            "line 1: `xyz` is not a SHA-256 digest (64 hex digits)"
        );
    }

    #[test]
    fn digests_are_sha256() {
        let path = std::env::temp_dir().join(format!("plugboard-digest-{}", std::process::id()));
        fs::write(&path, b"abc").unwrap();
        let d = digest(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!(
            hex(&d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_file(path).unwrap();
    }

    /// A fresh directory (0755, explicitly: tests may run under any umask)
    /// under the temp dir, resolved, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("plugboard-trust-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            chmod(&dir, 0o755);
            Scratch(fs::canonicalize(dir).unwrap())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir(path).unwrap();
        chmod(path, mode);
    }

    #[test]
    fn writable_files_are_refused_unless_allowed() {
        let dir = Scratch::new("file");
        let path = dir.0.join("lib.so");
        fs::write(&path, b"x").unwrap();
        chmod(&path, 0o644);
        let strict = TrustPolicy::default();
        let check = |policy: &TrustPolicy| {
            let resolved = check_library_path(&path, policy)?;
            check_library_file(&fs::metadata(&resolved).unwrap(), &path, &resolved, policy)
        };
        assert!(check(&strict).is_ok());
        chmod(&path, 0o666);
        assert_eq!(
            check(&strict).unwrap_err().to_string(),
            "refused: writable by other users (mode 666); fix the permissions or pass --allow-writable"
        );
        let lax = TrustPolicy {
            allow_writable: true,
            ..TrustPolicy::default()
        };
        assert!(check(&lax).is_ok());
    }

    #[test]
    fn the_walk_resolves_like_the_kernel_and_notes_every_directory() {
        let dir = Scratch::new("walk");
        let real = dir.0.join("real");
        mkdir(&real, 0o755);
        fs::write(real.join("lib.so"), b"x").unwrap();
        let links = dir.0.join("links");
        mkdir(&links, 0o755);
        std::os::unix::fs::symlink("../real/lib.so", links.join("rel.so")).unwrap();
        std::os::unix::fs::symlink(&real, links.join("dir")).unwrap();

        let w = walk(&links.join("./rel.so")).unwrap();
        assert_eq!(w.resolved, real.join("lib.so"));
        assert_eq!(w.resolved, fs::canonicalize(links.join("rel.so")).unwrap());
        let role = |d: &Path| w.dirs.iter().find(|(x, _)| x == d).map(|(_, r)| *r);
        assert_eq!(role(&links), Some(Role::HoldsLink));
        assert_eq!(role(&real), Some(Role::Ancestor));
        assert_eq!(role(&dir.0), Some(Role::Ancestor));
        assert_eq!(role(Path::new("/")), Some(Role::Ancestor));

        let w = walk(&links.join("dir/../links/dir/lib.so")).unwrap();
        assert_eq!(w.resolved, real.join("lib.so"));

        std::os::unix::fs::symlink("loop.so", links.join("loop.so")).unwrap();
        assert!(walk(&links.join("loop.so"))
            .unwrap_err()
            .to_string()
            .starts_with(&format!("cannot check {}", links.join("loop.so").display())));
    }

    #[test]
    fn directories_on_the_way_are_checked_sshd_style() {
        let dir = Scratch::new("dirs");
        let strict = TrustPolicy::default();
        let shared = dir.0.join("shared");
        mkdir(&shared, 0o777);
        let plugins = shared.join("plugins");
        mkdir(&plugins, 0o755);
        let lib = plugins.join("lib.so");
        fs::write(&lib, b"x").unwrap();

        let ancestor = format!(
            "refused: ancestor directory {} is writable by other users (mode 777) and not a \
             root-owned sticky directory; fix the permissions or pass --allow-writable",
            shared.display()
        );
        assert_eq!(
            check_library_path(&lib, &strict).unwrap_err().to_string(),
            ancestor
        );
        assert_eq!(
            check_directory(&plugins, &strict).unwrap_err().to_string(),
            ancestor
        );

        // Sticky and root-owned, like /tmp: accepted as an ancestor, never
        // as the library's own directory.
        chmod(&shared, 0o1777);
        if euid() == 0 {
            assert!(check_library_path(&lib, &strict).is_ok());
            assert!(check_directory(&plugins, &strict).is_ok());
        } else {
            assert!(check_library_path(&lib, &strict).is_err());
        }
        chmod(&plugins, 0o1777);
        assert_eq!(
            check_library_path(&lib, &strict).unwrap_err().to_string(),
            format!(
                "refused: its directory {} is writable by other users (mode 1777); fix the \
                 permissions or pass --allow-writable",
                plugins.display()
            )
        );
        assert_eq!(
            check_directory(&plugins, &strict).unwrap_err().to_string(),
            "refused: writable by other users (mode 1777); fix the permissions or pass --allow-writable"
        );
        chmod(&plugins, 0o755);
        chmod(&shared, 0o755);

        // A symlink in a writable directory can be repointed.
        let links = dir.0.join("links");
        mkdir(&links, 0o777);
        std::os::unix::fs::symlink(&lib, links.join("lib.so")).unwrap();
        assert_eq!(
            check_library_path(&links.join("lib.so"), &strict)
                .unwrap_err()
                .to_string(),
            format!(
                "refused: its path goes through a symlink in {}, which is writable by other \
                 users (mode 777); fix the permissions or pass --allow-writable",
                links.display()
            )
        );
    }

    #[test]
    fn foreign_owners_are_refused() {
        let dir = Scratch::new("owner");
        let theirs = dir.0.join("theirs");
        mkdir(&theirs, 0o755);
        // Only root can give a directory away; others skip this check.
        // SAFETY: chown on a NUL-terminated path we own, no other memory.
        let path = std::ffi::CString::new(theirs.as_os_str().as_encoded_bytes()).unwrap();
        if unsafe { libc::chown(path.as_ptr(), 4242, 4242) } != 0 {
            return;
        }
        assert_eq!(
            check_directory(&theirs, &TrustPolicy::default())
                .unwrap_err()
                .to_string(),
            "refused: owned by another user (uid 4242); fix the owner or pass --allow-writable"
        );
    }

    #[test]
    fn relative_paths_are_made_absolute_against_the_given_directory() {
        let cwd = Path::new("/srv/bot");
        assert_eq!(
            absolutize(Path::new("libx.so"), cwd),
            Path::new("/srv/bot/libx.so")
        );
        assert_eq!(
            absolutize(Path::new("./p/libx.so"), cwd),
            Path::new("/srv/bot/./p/libx.so")
        );
        assert_eq!(
            absolutize(Path::new("/opt/libx.so"), cwd),
            Path::new("/opt/libx.so")
        );
        assert!(absolute(Path::new("libx.so")).unwrap().is_absolute());
    }
}
