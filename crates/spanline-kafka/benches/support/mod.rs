//! What the Kafka benches share: telemetry as `spanline::telemetry::init()`
//! builds it and the SDK-processor reference.

#![allow(dead_code, unreachable_pub)]

use spanline_telemetry::{SamplerConfig, TelemetryBuilder, TelemetryGuard};
use spanline_testkit::bench::DiscardExporter;

pub use spanline_testkit::bench::sdk_batch;

/// Telemetry as `init()` builds it (`TelemetryBuilder::from_env()`:
/// spanline's `BoundedBatchProcessor`, the Prometheus recorder), a
/// discarding exporter in place of OTLP, the given sampler, no global
/// state.
pub fn shipped(sampler: SamplerConfig) -> TelemetryGuard {
    TelemetryBuilder::from_env()
        .expect("telemetry environment")
        .traces_exporters([])
        .span_exporter(DiscardExporter)
        .sampler(sampler)
        .build()
        .expect("telemetry")
}
