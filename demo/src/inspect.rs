//! `plugboard check` and `plugboard list`: what a library is, and whether it
//! would load, without starting the engine (no `init` runs).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::output::one_line;

use plugboard_loader::library::Candidate;
use plugboard_loader::preflight::open_all;
use plugboard_loader::{LoadError, LoadPath, Preflight, TrustPolicy};

/// The long form of a failure, at debug level: the one-line message of an
/// incompatible layout promises it under `RUST_LOG=debug`.
fn log_detail(error: &LoadError) {
    if let Some(detail) = error.detail() {
        log::debug!("{}: abi_stable's report:\n{detail}", error.source);
    }
}

/// What the library says of itself is its author's text: shown on one
/// line each, escaped (see [`one_line`]).
fn describe(out: &mut impl Write, candidate: &Candidate) -> io::Result<()> {
    writeln!(
        out,
        "{}: {} `{}` {} (interface {})",
        one_line(&candidate.source().to_string()),
        candidate.kind(),
        candidate.name(),
        one_line(candidate.version()),
        one_line(candidate.interface_version())
    )?;
    let description = match candidate {
        Candidate::Plugin(p) => &p.manifest.description,
        Candidate::Adapter(a) => &a.manifest.description,
    };
    if !description.is_empty() {
        writeln!(out, "  {}", one_line(description))?;
    }
    if let Candidate::Plugin(p) = candidate {
        for c in p.manifest.commands.iter() {
            writeln!(
                out,
                "  command `{}`: {}  (pattern {})",
                one_line(&c.name),
                one_line(&c.usage),
                one_line(&c.pattern)
            )?;
        }
    }
    Ok(())
}

/// Validates each library; returns how many are invalid. Valid ones are
/// described on `out`, invalid ones get one `error:` line on `err`.
///
/// With `preflight`, each library is opened in a child process first, so
/// that one whose load-time code crashes, exits or hangs is reported like
/// any other invalid library.
pub fn check(
    libraries: &[PathBuf],
    trust: &TrustPolicy,
    preflight: Option<&Preflight>,
    load_deadline: Duration,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<usize> {
    let mut invalid = 0;
    let mut result = Ok(());
    open_all(libraries, trust, preflight, load_deadline, |_, outcome| {
        if result.is_err() {
            return;
        }
        result = match outcome {
            Ok(candidate) => describe(out, &candidate),
            Err(e) => {
                invalid += 1;
                log_detail(&e);
                writeln!(err, "error: {}", one_line(&e.to_string()))
            }
        };
    });
    result.map(|()| invalid)
}

/// Lists the load path: one line per library, `ok` or `FAIL`; returns how
/// many would fail.
pub fn list(
    load_path: &LoadPath,
    trust: &TrustPolicy,
    preflight: Option<&Preflight>,
    load_deadline: Duration,
    out: &mut impl Write,
) -> io::Result<usize> {
    let scan = load_path.scan_with(trust);
    let mut failed = scan.failures.len();
    for f in &scan.failures {
        writeln!(out, "FAIL  {}", one_line(&f.to_string()))?;
    }
    let mut result = Ok(());
    open_all(
        &scan.libraries,
        trust,
        preflight,
        load_deadline,
        |path, outcome| {
            if result.is_err() {
                return;
            }
            result = match outcome {
                Ok(c) => writeln!(
                    out,
                    "ok    {} {} {} (interface {}): {}",
                    c.kind(),
                    c.name(),
                    one_line(c.version()),
                    one_line(c.interface_version()),
                    one_line(&path.display().to_string())
                ),
                Err(e) => {
                    failed += 1;
                    log_detail(&e);
                    writeln!(out, "FAIL  {}", one_line(&e.to_string()))
                }
            };
        },
    );
    result?;
    if scan.libraries.is_empty() && scan.failures.is_empty() {
        writeln!(out, "(no libraries on the load path)")?;
    }
    Ok(failed)
}
