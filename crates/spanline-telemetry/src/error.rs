//! The one error type of this crate.

use std::time::Duration;

/// Everything that can go wrong while configuring, installing, flushing or
/// shutting down telemetry.
///
/// Configuration errors name the environment variable (or builder setting)
/// they come from, so an operator can fix the deployment without reading
/// code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// An environment variable (or the builder setting of the same name) has
    /// a value this crate cannot use.
    #[error("invalid value {value:?} for {var}: {reason}")]
    InvalidEnv {
        /// The variable, e.g. `OTEL_TRACES_SAMPLER_ARG`.
        var: &'static str,
        /// The value as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A builder setting is invalid (not tied to an environment variable).
    #[error("invalid telemetry configuration: {0}")]
    InvalidConfig(String),
    /// An exporter could not be built.
    #[error("failed to build the {exporter} span exporter: {source}")]
    Exporter {
        /// Which exporter (`otlp`, `console`).
        exporter: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A background thread (export worker, Prometheus upkeep or listener)
    /// could not be started.
    #[error("failed to start the {what} thread: {reason}")]
    Worker {
        /// Which thread.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The Prometheus recorder or its listener could not be built.
    #[error("prometheus exporter: {0}")]
    Prometheus(#[from] metrics_exporter_prometheus::BuildError),
    /// A global `metrics` recorder was already installed.
    #[error("a global metrics recorder is already installed")]
    MetricsRecorderAlreadySet,
    /// Opening the console exporter's output failed.
    #[error("console exporter output: {0}")]
    Io(#[from] std::io::Error),
    /// Flushing or shutting down did not finish within its bound.
    #[error("{operation} did not finish within {timeout:?}")]
    Timeout {
        /// `force_flush` or `shutdown`.
        operation: &'static str,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// Flushing or shutting down reported a failure (for example, the
    /// collector rejected or never received the last batch).
    #[error("{operation} failed: {reason}")]
    Sdk {
        /// `force_flush` or `shutdown`.
        operation: &'static str,
        /// The SDK's description.
        reason: String,
    },
}

impl TelemetryError {
    pub(crate) fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> Self {
        TelemetryError::InvalidEnv {
            var,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// The environment variable this error is about, if any.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            TelemetryError::InvalidEnv { var, .. } => Some(var),
            _ => None,
        }
    }

    pub(crate) fn from_sdk(
        operation: &'static str,
        err: opentelemetry_sdk::error::OTelSdkError,
    ) -> Self {
        match err {
            opentelemetry_sdk::error::OTelSdkError::Timeout(timeout) => {
                TelemetryError::Timeout { operation, timeout }
            }
            other => TelemetryError::Sdk {
                operation,
                reason: other.to_string(),
            },
        }
    }
}
