//! A private, immutable snapshot of each library file: what the loader
//! checks and what the dynamic linker maps are the same bytes, and nobody
//! can change them afterwards.
//!
//! Why: the dynamic linker maps a library's file into the process. If that
//! file is later rewritten in place (`cp new.so loaded.so` truncates and
//! rewrites the same inode), the running engine's code and data change
//! under it and it dies of SIGSEGV or SIGBUS. And a digest computed over a
//! path, then a `dlopen` of that path, leaves a window to swap the file in
//! between. So the loader reads the checked file **once**, through one open
//! descriptor, into a sealed memfd (Linux): no one, the engine included, can
//! change its size or bytes any more. The allowlist digest and the ELF header
//! are read from that memfd, and `dlopen` opens it as `/proc/self/fd/<fd>`.
//!
//! **Every snapshot descriptor handed to `dlopen` stays open for the life of
//! the process** ([`Snapshot::keep`]; libraries are never unloaded either).
//! glibc recognises an already loaded object by its name: were a descriptor
//! closed and its number reused, the next library's `/proc/self/fd/<fd>`
//! would be taken for the previous one, and `dlopen` would return that.
//!
//! The snapshot holds the bytes the dynamic linker maps (the caller says
//! how many, from the program headers): a release library built with line
//! tables is 6.4 MB of which about 0.5 MB is mapped. Copying and keeping
//! the symbol tables and debug info after that would cost several
//! milliseconds and megabytes per library for bytes nothing reads (except
//! an in-process backtrace symbolising a plugin's own frames, which then
//! shows them unnamed). The caller hashes the rest of the file from the
//! same descriptor, in the same pass.
//!
//! Elsewhere (or where memfds or `/proc` are unavailable) the snapshot is a
//! private copy in a fresh directory only the engine's user can enter
//! (0700), removed once the library is mapped: the mapping keeps the copy's
//! inode, which nobody else can reach, and every copy has a path of its own.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Given a file's first bytes, how many bytes of it the snapshot keeps
/// (`None`: all).
pub(crate) type Keep<'a> = &'a dyn Fn(&[u8]) -> Option<u64>;

/// How many bytes [`Keep`] is shown (fewer if the file is shorter).
const FIRST: u64 = 64 * 1024;

/// Copies from `source` into `dest` what `keep` asks for (see
/// [`Snapshot::take`]).
fn fill(source: &mut File, dest: &mut File, keep: Keep<'_>) -> io::Result<()> {
    let mut first = Vec::new();
    source.take(FIRST).read_to_end(&mut first)?;
    dest.write_all(&first)?;
    match keep(&first) {
        Some(total) => {
            let rest = total.saturating_sub(first.len() as u64);
            io::copy(&mut source.take(rest), dest)?;
        }
        None => {
            io::copy(source, dest)?;
        }
    }
    Ok(())
}

/// A snapshot of one library file: a sealed memfd, or a private copy.
pub(crate) struct Snapshot {
    /// The snapshot's own descriptor (`None` once kept).
    file: Option<File>,
    /// What `dlopen` is given: `/proc/self/fd/<fd>`, or the copy's path.
    dlopen_path: PathBuf,
    /// The private copy's directory, removed on drop or keep.
    private_dir: Option<PathBuf>,
}

impl Snapshot {
    /// Copies `source`, from its current position, into a new snapshot:
    /// as many bytes as `keep` says when shown the first ones (at least
    /// those), or all of them if it says `None`. `source` is left just
    /// after the last byte copied.
    pub(crate) fn take(source: &mut File, keep: Keep<'_>) -> io::Result<Snapshot> {
        #[cfg(target_os = "linux")]
        {
            if let Some(snapshot) = memfd::take(source, keep)? {
                return Ok(snapshot);
            }
        }
        private_copy(source, keep, &std::env::temp_dir())
    }

    /// No snapshot: `dlopen` maps `path` itself, and `file` (a descriptor of
    /// it) is what the checks read. For the pre-flight child only, which
    /// exists to survive the library, not to keep running it.
    pub(crate) fn in_place(file: File, path: PathBuf) -> Snapshot {
        Snapshot {
            file: Some(file),
            dlopen_path: path,
            private_dir: None,
        }
    }

    /// The path to give `dlopen`: never shown to users, who see the
    /// library's own path.
    pub(crate) fn dlopen_path(&self) -> &Path {
        &self.dlopen_path
    }

    /// The snapshot's bytes, from the start.
    pub(crate) fn reader(&mut self) -> io::Result<&mut File> {
        let file = self
            .file
            .as_mut()
            .expect("invariant: a snapshot has its file until `keep` consumes it");
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// The first `n` bytes (fewer if the file is shorter).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn head(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        self.reader()?.take(n as u64).read_to_end(&mut head)?;
        Ok(head)
    }

    /// Called once `dlopen` has mapped the snapshot: its descriptor stays
    /// open until the process exits, so its `/proc/self/fd/<fd>` name is
    /// never given to another library (see the module docs). A private copy
    /// is removed instead: the mapping holds its inode.
    pub(crate) fn keep(mut self) {
        if let Some(file) = self.file.take() {
            if self.private_dir.is_none() {
                // Leaked on purpose: the number must never be reused.
                let _ = std::os::unix::io::IntoRawFd::into_raw_fd(file);
            }
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(dir) = self.private_dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

#[cfg(target_os = "linux")]
mod memfd {
    use std::fs::File;
    use std::io;
    use std::os::unix::io::{AsRawFd, FromRawFd};
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use super::{fill, Keep, Snapshot};

    /// Whether `/proc/self/fd/<fd>` names work here (`/proc` can be absent
    /// in minimal containers and chroots).
    fn proc_fd_available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
    }

    /// A sealed memfd holding what `keep` asks for (see
    /// [`Snapshot::take`]); `None` if
    /// this kernel cannot make one (too old, or forbidden by a seccomp
    /// filter), so that the caller falls back to a private copy.
    pub(super) fn take(source: &mut File, keep: Keep<'_>) -> io::Result<Option<Snapshot>> {
        if !proc_fd_available() {
            return Ok(None);
        }
        // SAFETY: the name is a NUL-terminated string literal and the flags
        // are defined ones; the call has no other preconditions.
        let fd = unsafe {
            libc::memfd_create(
                c"plugboard-library".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Ok(None);
        }
        // SAFETY: `fd` was just created and is owned by nothing else; the
        // `File` becomes its only owner.
        let mut file = unsafe { File::from_raw_fd(fd) };
        fill(source, &mut file, keep)?;
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS on a descriptor we own, with an int argument,
        // as fcntl(2) documents; no memory is passed.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Snapshot {
            dlopen_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file: Some(file),
            private_dir: None,
        }))
    }
}

/// A copy of what `source` has left to read in a fresh 0700 directory
/// under `base`.
fn private_copy(source: &mut File, keep: Keep<'_>, base: &Path) -> io::Result<Snapshot> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    let dir = loop {
        // The counter keeps every path of this process distinct (so the
        // dynamic linker never takes one copy for another); the random part
        // makes the name unguessable by others sharing `base`.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let dir = base.join(format!(
            "plugboard-lib-{}-{}-{random:016x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // mkdir never follows a planted symlink: it fails if the name exists.
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let path = dir.join(format!("library{}", std::env::consts::DLL_SUFFIX));
    let copied = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .and_then(|mut file| fill(source, &mut file, keep).map(|()| file));
    let mut snapshot = Snapshot {
        file: None,
        dlopen_path: path,
        private_dir: Some(dir),
    };
    // On error, dropping the snapshot removes the directory.
    snapshot.file = Some(copied?);
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn source(tag: &str, bytes: &[u8]) -> (PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("plugboard-snapshot-{tag}-{}", std::process::id()));
        fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        (path, file)
    }

    fn contents(snapshot: &mut Snapshot) -> Vec<u8> {
        let mut bytes = Vec::new();
        snapshot.reader().unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_snapshot_keeps_its_bytes_whatever_happens_to_the_file() {
        let (path, mut file) = source("keeps", b"original bytes");
        let mut snapshot = Snapshot::take(&mut file, &|_| None).unwrap();
        fs::write(&path, b"rewritten in place, and longer").unwrap();
        assert_eq!(contents(&mut snapshot), b"original bytes");
        assert_eq!(snapshot.head(4).unwrap(), b"orig");
        // What dlopen is given reads the same bytes.
        assert_eq!(fs::read(snapshot.dlopen_path()).unwrap(), b"original bytes");
        fs::remove_file(path).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_memfd_snapshot_is_sealed_and_named_by_its_descriptor() {
        let (path, mut file) = source("sealed", b"sealed bytes");
        let snapshot = Snapshot::take(&mut file, &|_| None).unwrap();
        let shown = snapshot.dlopen_path().display().to_string();
        assert!(shown.starts_with("/proc/self/fd/"), "{shown}");
        // Not even the engine can write to it or change its size.
        let mut writer = fs::OpenOptions::new()
            .write(true)
            .open(snapshot.dlopen_path());
        if let Ok(w) = writer.as_mut() {
            assert!(w.write_all(b"x").is_err(), "the seal forbids writes");
        }
        assert!(fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(snapshot.dlopen_path())
            .is_err());
        // Kept: the descriptor outlives the snapshot value.
        let kept = snapshot.dlopen_path().to_owned();
        snapshot.keep();
        assert_eq!(fs::read(&kept).unwrap(), b"sealed bytes");
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_snapshot_keeps_what_it_is_told_and_leaves_the_rest_to_read() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (path, mut file) = source("keep", &bytes);
        let seen = std::cell::Cell::new(0);
        let keep = |first: &[u8]| {
            seen.set(first.len());
            Some(100_000)
        };
        let mut snapshot = Snapshot::take(&mut file, &keep).unwrap();
        assert_eq!(seen.get(), FIRST as usize, "shown the first bytes");
        assert_eq!(contents(&mut snapshot), &bytes[..100_000]);
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &bytes[100_000..], "the source is left after the copy");
        // Never less than what was shown.
        let mut file = File::open(&path).unwrap();
        let mut snapshot = private_copy(&mut file, &|_| Some(10), &std::env::temp_dir()).unwrap();
        assert_eq!(contents(&mut snapshot).len(), FIRST as usize);
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_fallback_copy_is_private_and_removed_once_mapped() {
        let (path, mut file) = source("fallback", b"copied bytes");
        let base = std::env::temp_dir();
        let mut snapshot = private_copy(&mut file, &|_| None, &base).unwrap();
        let copy = snapshot.dlopen_path().to_owned();
        let dir = copy.parent().unwrap().to_owned();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(contents(&mut snapshot), b"copied bytes");
        let other = private_copy(&mut File::open(&path).unwrap(), &|_| None, &base).unwrap();
        assert_ne!(other.dlopen_path(), copy, "every copy has its own path");
        snapshot.keep();
        assert!(!dir.exists(), "removed once mapped");
        drop(other);
        fs::remove_file(path).unwrap();
    }
}
