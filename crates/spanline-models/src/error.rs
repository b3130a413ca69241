//! The crate's error type.

use std::path::PathBuf;

use spanline_core::StageError;

/// What can go wrong finding, loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A model file is missing.
    #[error("model file not found: {}", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A model file exists but cannot be used.
    #[error("model file {} is unusable: {reason}", path.display())]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model's files could not be fetched.
    #[error("cannot fetch model {model}: {reason}")]
    Fetch {
        /// The model.
        model: &'static str,
        /// Why (what failed and what to do).
        reason: String,
    },
    /// The input cannot be processed (empty text, a prompt too long, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Inference failed or produced values that cannot be used (NaN,
    /// infinity, a wrong shape).
    #[error("inference failed: {0}")]
    Inference(String),
    /// The configuration is not usable (zero threads, …).
    #[error("invalid configuration: {0}")]
    Config(String),
}

#[cfg(feature = "candle")]
impl ModelError {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        ModelError::CorruptFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(feature = "candle")]
impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

impl From<ModelError> for StageError {
    fn from(e: ModelError) -> Self {
        // Spans show the message only with content capture on
        // (`StageError::message_for`); the kind is always recorded.
        let error = match e {
            ModelError::InvalidInput(_) => StageError::invalid_input(e.to_string()),
            _ => StageError::model(e.to_string()),
        };
        error.with_source(e)
    }
}
