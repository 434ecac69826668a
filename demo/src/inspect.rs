//! `plugboard check` and `plugboard list`: what a library is, and whether it
//! would load, without starting the engine (no `init` runs).

use std::io::{self, Write};
use std::path::PathBuf;

use plugboard_loader::library::{open_with, Candidate};
use plugboard_loader::{LoadError, LoadPath, TrustPolicy};

/// The long form of a failure, at debug level: the one-line message of an
/// incompatible layout promises it under `RUST_LOG=debug`.
fn log_detail(error: &LoadError) {
    if let Some(detail) = error.detail() {
        log::debug!("{}: abi_stable's report:\n{detail}", error.source);
    }
}

fn describe(out: &mut impl Write, candidate: &Candidate) -> io::Result<()> {
    writeln!(
        out,
        "{}: {} `{}` {} (interface {})",
        candidate.source(),
        candidate.kind(),
        candidate.name(),
        candidate.version(),
        candidate.interface_version()
    )?;
    match candidate {
        Candidate::Plugin(p) => {
            if !p.manifest.description.is_empty() {
                writeln!(out, "  {}", p.manifest.description)?;
            }
            for c in p.manifest.commands.iter() {
                writeln!(
                    out,
                    "  command `{}`: {}  (pattern {})",
                    c.name, c.usage, c.pattern
                )?;
            }
        }
        Candidate::Adapter(a) => {
            if !a.manifest.description.is_empty() {
                writeln!(out, "  {}", a.manifest.description)?;
            }
        }
    }
    Ok(())
}

/// Validates each library; returns how many are invalid. Valid ones are
/// described on `out`, invalid ones get one `error:` line on `err`.
pub fn check(
    libraries: &[PathBuf],
    trust: &TrustPolicy,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<usize> {
    let mut invalid = 0;
    for path in libraries {
        match open_with(path, trust) {
            Ok(candidate) => describe(out, &candidate)?,
            Err(e) => {
                invalid += 1;
                writeln!(err, "error: {e}")?;
                log_detail(&e);
            }
        }
    }
    Ok(invalid)
}

/// Lists the load path: one line per library, `ok` or `FAIL`; returns how
/// many would fail.
pub fn list(load_path: &LoadPath, trust: &TrustPolicy, out: &mut impl Write) -> io::Result<usize> {
    let scan = load_path.scan_with(trust);
    let mut failed = scan.failures.len();
    for f in &scan.failures {
        writeln!(out, "FAIL  {f}")?;
    }
    for path in &scan.libraries {
        match open_with(path, trust) {
            Ok(c) => writeln!(
                out,
                "ok    {} {} {} (interface {}): {}",
                c.kind(),
                c.name(),
                c.version(),
                c.interface_version(),
                path.display()
            )?,
            Err(e) => {
                failed += 1;
                writeln!(out, "FAIL  {e}")?;
                log_detail(&e);
            }
        }
    }
    if scan.libraries.is_empty() && scan.failures.is_empty() {
        writeln!(out, "(no libraries on the load path)")?;
    }
    Ok(failed)
}
