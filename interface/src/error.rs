//! Errors on both sides of the boundary.
//!
//! [`ExtError`] is the FFI-safe value every exported function returns in its
//! `RResult`; [`Error`] is the ordinary Rust error an author's code returns,
//! converted to `ExtError::Failed` by the wrappers.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// An error reported by an extension across the ABI boundary.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum ExtError {
    /// The extension's code panicked; the payload is the panic message.
    Panicked(RString),
    /// The extension returned an error (the author's [`Error`] message).
    Failed(RString),
    /// The extension rejected the configuration it was given.
    InvalidConfig(RString),
}

impl ExtError {
    /// The human-readable message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            ExtError::Panicked(m) | ExtError::Failed(m) | ExtError::InvalidConfig(m) => m,
        }
    }

    /// Whether this error is a caught panic.
    pub fn is_panic(&self) -> bool {
        matches!(self, ExtError::Panicked(_))
    }
}

impl fmt::Display for ExtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtError::Panicked(m) => write!(f, "panicked: {m}"),
            ExtError::Failed(m) => f.write_str(m),
            ExtError::InvalidConfig(m) => write!(f, "invalid config: {m}"),
        }
    }
}

impl std::error::Error for ExtError {}

/// The error type plugin and adapter code returns.
///
/// Any `std::error::Error` converts into it with `?`, keeping its chain of
/// causes in the message; [`Error::msg`] makes one from text.
///
/// ```
/// use plugboard_interface::Error;
///
/// fn parse(n: &str) -> Result<u32, Error> {
///     let n: u32 = n.parse()?; // ParseIntError -> Error
///     if n == 0 {
///         return Err(Error::msg("zero is not allowed"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("0").unwrap_err().to_string(), "zero is not allowed");
/// assert!(parse("x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Failed,
    Config,
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            kind: ErrorKind::Failed,
        }
    }

    /// An error meaning "the configuration I was given is unusable"; the
    /// engine reports it as such and does not load the extension.
    pub fn config(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            kind: ErrorKind::Config,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        // Keep the whole cause chain: the author's message is all the
        // operator will see on the other side of the boundary.
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::msg(message)
    }
}

impl From<Error> for ExtError {
    fn from(err: Error) -> Self {
        match err.kind {
            ErrorKind::Failed => ExtError::Failed(err.message.into()),
            ErrorKind::Config => ExtError::InvalidConfig(err.message.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_keep_their_cause_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("reading quotes")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err: Error = Outer(inner).into();
        assert_eq!(err.to_string(), "reading quotes: no such file");
    }

    #[test]
    fn kinds_map_to_ext_errors() {
        assert_eq!(
            ExtError::from(Error::msg("boom")),
            ExtError::Failed("boom".into())
        );
        let cfg = ExtError::from(Error::config("missing `token`"));
        assert_eq!(cfg, ExtError::InvalidConfig("missing `token`".into()));
        assert_eq!(cfg.to_string(), "invalid config: missing `token`");
        assert_eq!(cfg.message(), "missing `token`");
        assert!(ExtError::Panicked("x".into()).is_panic());
    }
}
