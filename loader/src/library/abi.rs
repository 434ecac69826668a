//! The library's ABI, as abi_stable describes it: the interface generation
//! it was built against, and its type layout compared with the engine's,
//! reduced to one line.

use abi_stable::abi_stability::abi_checking::{
    check_layout_compatibility, AbiInstability, AbiInstabilityErrors,
};
use abi_stable::library::{LibHeader, LibraryError, RootModule};
use abi_stable::type_layout::TypeLayout;
use plugboard_interface::INTERFACE_VERSION;

use super::one_line;
use crate::error::LoadErrorKind;

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

pub(super) fn check_interface_version(found: &str) -> Result<(), LoadErrorKind> {
    if generation(found) == generation(INTERFACE_VERSION) {
        Ok(())
    } else {
        Err(LoadErrorKind::InterfaceVersion {
            found: found.to_owned(),
            expected: INTERFACE_VERSION,
        })
    }
}

pub(super) fn init_root<M: RootModule>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
