//! Errors of the library (problems inside the data are [`Diagnostic`](crate::Diagnostic)s, not errors).

use std::path::PathBuf;

/// Failure to read an input at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input could not be read at all.
    #[error("cannot read input: {0}")]
    Read(#[source] std::io::Error),
}
