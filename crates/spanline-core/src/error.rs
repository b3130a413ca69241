//! The error a stage returns: one type with a typed kind and named
//! constructors, in the manner of `tonic::Status`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The class of a stage failure. Its [`as_str`](ErrorKind::as_str) is what
/// spans record as `error.type` and metrics as the outcome's error type, so
/// the set is small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stage's own timeout elapsed.
    Timeout,
    /// The request's deadline passed before or during the stage.
    DeadlineExceeded,
    /// The caller went away (the stage's future was dropped).
    Cancelled,
    /// The input was rejected (empty, malformed, too large).
    InvalidInput,
    /// A dependency (remote worker, broker, model server) could not be reached.
    Unavailable,
    /// A queue, budget or quota is full.
    ResourceExhausted,
    /// A model failed to load or to run.
    Model,
    /// The stage produced an output that cannot be trusted (NaN, malformed).
    InvalidOutput,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Timeout,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Cancelled,
        ErrorKind::InvalidInput,
        ErrorKind::Unavailable,
        ErrorKind::ResourceExhausted,
        ErrorKind::Model,
        ErrorKind::InvalidOutput,
        ErrorKind::Internal,
    ];

    /// The kind whose [`as_str`](ErrorKind::as_str) is `name` (for
    /// transports that carry the kind across a process boundary).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The low-cardinality name recorded as `error.type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Model => "model_error",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Internal => "internal",
        }
    }

    /// A fixed, content-free description used when content capture is off.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "the stage timed out",
            ErrorKind::DeadlineExceeded => "the request deadline was exceeded",
            ErrorKind::Cancelled => "the call was cancelled",
            ErrorKind::InvalidInput => "the input was rejected",
            ErrorKind::Unavailable => "a dependency was unavailable",
            ErrorKind::ResourceExhausted => "a resource was exhausted",
            ErrorKind::Model => "the model failed",
            ErrorKind::InvalidOutput => "the output was invalid",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stage call failed.
///
/// The message is free text and may contain request content, so spans carry
/// it only when content capture is on; otherwise they carry
/// [`ErrorKind::description`].
pub struct StageError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl StageError {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        StageError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The stage's own timeout of `after` elapsed.
    pub fn timeout(after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!("stage timed out after {after:?}"),
        )
    }
    /// The request deadline passed.
    pub fn deadline_exceeded() -> Self {
        Self::new(ErrorKind::DeadlineExceeded, "request deadline exceeded")
    }
    /// The call was cancelled.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled")
    }
    /// The input was rejected.
    pub fn invalid_input(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// A dependency could not be reached.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// A queue, budget or quota is full.
    pub fn resource_exhausted(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::ResourceExhausted, message)
    }
    /// A model failed.
    pub fn model(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Model, message)
    }
    /// The output cannot be trusted.
    pub fn invalid_output(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidOutput, message)
    }
    /// Anything else.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message (may hold request content).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The message if `capture` allows it, else a fixed description.
    pub fn message_for(&self, capture: bool) -> &str {
        if capture {
            &self.message
        } else {
            self.kind.description()
        }
    }
}

impl fmt::Debug for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StageError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ErrorKind::from_name("nope"), None);
    }
}

/// Building request attributes failed: a value would not fit in W3C baggage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// More members than baggage propagates.
    #[error("too many request attributes: at most {max} may travel as baggage")]
    TooManyMembers {
        /// The limit.
        max: usize,
    },
    /// The encoded attributes exceed the baggage byte limit.
    #[error("request attributes encode to {size} bytes; baggage carries at most {max}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A metadata key is not a valid baggage key.
    #[error("invalid metadata key {0:?}: use letters, digits and `-_.*` only")]
    InvalidKey(String),
}
