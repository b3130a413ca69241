//! What the gRPC benches share: telemetry as `spanline::telemetry::init()`
//! builds it, the SDK-processor reference, and the echo stages.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use spanline_core::{Stage, StageDescriptor, StageError, StageKind, stage_fn};
use spanline_telemetry::{SamplerConfig, TelemetryBuilder, TelemetryGuard};
use spanline_testkit::bench::DiscardExporter;

/// Telemetry as `init()` builds it (`TelemetryBuilder::from_env()`:
/// spanline's `BoundedBatchProcessor`, the Prometheus recorder), a
/// discarding exporter in place of OTLP, an always-on sampler, no global
/// state.
pub fn shipped() -> TelemetryGuard {
    TelemetryBuilder::from_env()
        .expect("telemetry environment")
        .traces_exporters([])
        .span_exporter(DiscardExporter)
        .sampler(SamplerConfig::AlwaysOn)
        .build()
        .expect("telemetry")
}

/// The reference: the SDK's own `BatchSpanProcessor`, same exporter and
/// sampler.
pub fn sdk_batch() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(DiscardExporter).build())
        .with_sampler(Sampler::AlwaysOn)
        .build()
}

/// The echo stage every traced variant hosts (JSON wire format).
pub fn echo() -> impl Stage<Input = String, Output = String> {
    stage_fn(
        StageDescriptor::new("echo", StageKind::Custom),
        |s: String, _| async move { Ok::<_, StageError>(s) },
    )
}

/// The same in the `Raw` wire format.
pub fn echo_bytes() -> impl Stage<Input = Bytes, Output = Bytes> {
    stage_fn(
        StageDescriptor::new("echo", StageKind::Custom),
        |b: Bytes, _| async move { Ok::<_, StageError>(b) },
    )
}
