//! The one place that turns panics into values, and that keeps a
//! dynamically loaded library's panics off stderr.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use abi_stable::std_types::{RResult, RString};

use crate::error::ExtError;

/// Runs `f`, turning a panic into `ExtError::Panicked` with its message.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: after a panic
/// the extension's state may be inconsistent, and the engine treats the error
/// as a failure of that extension (it may quarantine it); nothing of the
/// engine's own state is inside `f`.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, ExtError>) -> RResult<T, ExtError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(ExtError::Panicked(panic_message(&*payload))),
    }
}

/// Runs `f` for its side effects, swallowing (and returning) a panic message.
/// For functions whose ABI signature has no error channel (`stop`, drops).
pub(crate) fn guard_unit(f: impl FnOnce()) -> Option<RString> {
    catch_unwind(AssertUnwindSafe(f))
        .err()
        .map(|payload| panic_message(&*payload))
}

/// Makes this library's panic hook quiet, once per library: a panic is
/// logged at debug level (target `plugboard::panic`, message and location)
/// instead of printed.
///
/// Every cdylib has its own copy of std and so its own panic hook, the
/// default one until replaced: it would print every panic that [`guard`]
/// then catches (four lines, more with a backtrace) on the engine's stderr,
/// around the one line the engine reports. The engine already reports the
/// panic's message. Through the logging bridge (installed at `init`) the
/// location reaches the engine's debug log; before it (a panicking
/// `manifest`) `log` has no logger in this library and the hook is silent.
///
/// Only the exported entry points (`__export`) call this, first thing: in
/// an extension linked into the host the hook is the host's, not ours.
pub(crate) fn quiet_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        // `set_hook` panics only on a panicking thread, which an entry
        // point is not; still, nothing may unwind out of one.
        let _ = catch_unwind(|| {
            std::panic::set_hook(Box::new(|info| {
                log::debug!(target: "plugboard::panic", "{info}");
            }));
        });
    });
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> RString {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).into()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str().into()
    } else {
        "panic with a non-string payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_their_message() {
        let r: RResult<(), ExtError> = guard(|| panic!("bad {}", 42));
        assert_eq!(r, RResult::RErr(ExtError::Panicked("bad 42".into())));
        let r: RResult<(), ExtError> = guard(|| std::panic::panic_any(7u8));
        assert!(matches!(r, RResult::RErr(ExtError::Panicked(m)) if m.contains("non-string")));
        let r = guard(|| Ok::<_, ExtError>(5));
        assert_eq!(r, RResult::ROk(5));
        assert_eq!(guard_unit(|| panic!("stop")), Some("stop".into()));
        assert_eq!(guard_unit(|| ()), None);
    }
}
