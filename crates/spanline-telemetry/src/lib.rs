//! What a spanline application installs: the OpenTelemetry SDK tracer
//! provider configured from the `OTEL_*` environment, OTLP (gRPC or
//! HTTP/protobuf) and console exporters behind a bounded batch processor
//! that never blocks a request, an in-memory span recorder, and a Prometheus
//! metrics recorder with explicit buckets for every spanline histogram, and
//! online critical-path metrics ([`critpath_metrics`]:
//! `spanline.critical_path.duration{pipeline, key, type}`).
//!
//! One call sets everything up and returns a guard that flushes and shuts
//! down, in bounded time, when dropped:
//!
//! ```no_run
//! # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
//! let guard = spanline_telemetry::init()?; // reads OTEL_* and SPANLINE_*
//! let telemetry = guard.telemetry();       // hand to PipelineBuilder::telemetry
//! # let _ = telemetry;
//! // ... run the service ...
//! drop(guard); // flush + shutdown, bounded
//! # Ok(())
//! # }
//! ```
//!
//! Tests build the same guard without touching global state and read the
//! spans back from the recorder:
//!
//! ```
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use spanline_telemetry::TelemetryBuilder;
//!
//! # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
//! let guard = TelemetryBuilder::new()
//!     .traces_exporters([]) // no exporter, only the recorder
//!     .recorder(1_000)
//!     .prometheus(false)
//!     .build()?;
//! let tracer = guard.tracer_provider().expect("enabled").tracer("doc");
//! tracer.in_span("parent", |_| tracer.in_span("child", |_| {}));
//! let recorder = guard.recorder().expect("configured");
//! let parent = recorder.find("parent").expect("recorded");
//! assert_eq!(recorder.children_of(&parent).len(), 1);
//! assert!(guard.telemetry().is_enabled());
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/telemetry.md` for every environment variable, the processor's
//! behaviour, the console JSON format and the Prometheus setup.
//!
//! # Features
//!
//! - `prometheus-listener`: serve `/metrics` over HTTP
//!   ([`TelemetryBuilder::prometheus_listener`], `SPANLINE_PROMETHEUS_ADDR`).

pub mod config;
mod console;
pub mod critpath;
pub mod critpath_metrics;
mod error;
mod guard;
mod processor;
pub mod prometheus;
mod recorder;
pub mod sampling;

pub use config::{ExporterKind, OtlpProtocol, SamplerConfig, TailSamplingEnv, TelemetryConfig};
pub use console::{ConsoleExporter, span_to_json};
pub use critpath_metrics::{CriticalPathConfig, CriticalPathProcessor};
pub use error::TelemetryError;
pub use guard::{
    DEFAULT_SERVICE_NAME, DEFAULT_SHUTDOWN_TIMEOUT, TelemetryBuilder, TelemetryGuard,
    build_otlp_exporter,
};
pub use processor::{BatchConfig, BoundedBatchProcessor, ExportStats, ProcessorStats};
pub use recorder::SpanRecorder;
pub use sampling::{RuleSampler, TailConfig, TailSamplingProcessor};

#[doc(no_inline)]
pub use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

/// Set up tracing and metrics from the environment and install them
/// globally: `TelemetryBuilder::from_env()?.install()`.
pub fn init() -> Result<TelemetryGuard, TelemetryError> {
    TelemetryBuilder::from_env()?.install()
}
