//! What the gRPC benches share: telemetry as `spanline::telemetry::init()`
//! builds it, the SDK-processor reference, and the echo stages.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use spanline_core::{Stage, StageDescriptor, StageError, StageKind, stage_fn};
use spanline_grpc::proto::stage_worker_client::StageWorkerClient;
use spanline_telemetry::{SamplerConfig, TelemetryBuilder, TelemetryGuard};
use spanline_testkit::bench::DiscardExporter;
use tonic::transport::Channel;

pub use spanline_testkit::bench::sdk_batch;

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

/// The generated client, connected to `uri` with `TCP_NODELAY` (the raw
/// baseline's client).
pub async fn connect_uri(uri: &str) -> StageWorkerClient<Channel> {
    StageWorkerClient::new(
        tonic::transport::Endpoint::from_shared(uri.to_owned())
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap(),
    )
}
