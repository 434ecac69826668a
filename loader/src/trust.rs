//! Checks made *before* a library is opened, because opening it runs its
//! code: who may have written it, and (optionally) whether it is one of the
//! exact builds the operator approved.
//!
//! What this protects against: a library or load-path directory that
//! another local user could replace or plant files in, and (with an
//! allowlist) any library that is not byte-for-byte an approved build. What
//! it does not: a malicious library the operator approved, or anyone who can
//! already write as the engine's user or as root.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// Why a path failed the trust checks.
#[derive(Debug)]
pub enum TrustError {
    /// Group- or world-writable.
    Writable {
        /// The permission bits.
        mode: u32,
    },
    /// Owned by another (non-root) user.
    ForeignOwner {
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
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Writable { mode } => write!(
                f,
                "refused: writable by other users (mode {:o}); fix the permissions or pass --allow-writable",
                mode & 0o7777
            ),
            TrustError::ForeignOwner { uid } => write!(
                f,
                "refused: owned by another user (uid {uid}); fix the owner or pass --allow-writable"
            ),
            TrustError::NotAllowed { digest } => {
                write!(f, "refused: SHA-256 {digest} is not in the allowlist")
            }
            TrustError::Read(e) => write!(f, "cannot read it to check its digest: {e}"),
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks who can write `path` (a library or a load-path directory).
pub fn check_writers(path: &Path, policy: &TrustPolicy) -> Result<(), TrustError> {
    if policy.allow_writable {
        return Ok(());
    }
    // A metadata error is reported by the caller's own checks.
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    if meta.mode() & 0o022 != 0 {
        return Err(TrustError::Writable { mode: meta.mode() });
    }
    let uid = meta.uid();
    if uid != 0 && uid != euid() {
        return Err(TrustError::ForeignOwner { uid });
    }
    Ok(())
}

/// Hex form of a digest.
pub fn hex(digest: &Sha256Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of everything `file` has left to read.
pub fn digest(file: &mut File) -> io::Result<Sha256Digest> {
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

    #[test]
    fn writable_paths_are_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("plugboard-writable-{}", std::process::id()));
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let strict = TrustPolicy::default();
        assert!(check_writers(&path, &strict).is_ok());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = check_writers(&path, &strict).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("refused: writable by other users (mode 666)"));
        let lax = TrustPolicy {
            allow_writable: true,
            ..TrustPolicy::default()
        };
        assert!(check_writers(&path, &lax).is_ok());
        fs::remove_file(path).unwrap();
    }
}
