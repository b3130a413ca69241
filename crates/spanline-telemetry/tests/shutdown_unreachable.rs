//! With the collector unreachable (a closed loopback port), spans are
//! dropped and counted, the queue bounds memory, and shutdown returns in
//! bounded time on every runtime flavour.

use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer, TracerProvider};
use spanline_telemetry::{ExporterKind, OtlpProtocol, TelemetryBuilder, TelemetryGuard};

/// Generous: the bound under test is ~ the 2 s export timeout.
const BOUND: Duration = Duration::from_secs(15);

fn unreachable_guard(protocol: OtlpProtocol) -> TelemetryGuard {
    TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint("http://127.0.0.1:1")
        .otlp_protocol(protocol)
        .prometheus(false)
        .max_queue_size(64)
        .max_export_batch_size(16)
        .export_timeout(Duration::from_secs(2))
        .schedule_delay(Duration::from_millis(20))
        .build()
        .expect("build")
}

fn emit(guard: &TelemetryGuard, n: usize) {
    let tracer = guard.tracer_provider().expect("enabled").tracer("t");
    for i in 0..n {
        tracer.in_span(format!("span-{i}"), |_| {});
    }
}

fn shutdown_is_bounded(protocol: OtlpProtocol) {
    let guard = unreachable_guard(protocol);
    let started = Instant::now();
    emit(&guard, 1_000);
    assert!(started.elapsed() < BOUND, "ending spans must not block");
    let started = Instant::now();
    drop(guard);
    assert!(
        started.elapsed() < BOUND,
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn grpc_shutdown_bounded_without_runtime() {
    shutdown_is_bounded(OtlpProtocol::Grpc);
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_shutdown_bounded_on_current_thread_runtime() {
    shutdown_is_bounded(OtlpProtocol::Grpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_shutdown_bounded_on_multi_thread_runtime() {
    shutdown_is_bounded(OtlpProtocol::Grpc);
}

#[tokio::test(flavor = "current_thread")]
async fn http_shutdown_bounded_on_current_thread_runtime() {
    shutdown_is_bounded(OtlpProtocol::HttpProtobuf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shutdown_bounded_on_multi_thread_runtime() {
    shutdown_is_bounded(OtlpProtocol::HttpProtobuf);
}

#[test]
fn failed_exports_are_counted_and_queue_bounds_memory() {
    let guard = unreachable_guard(OtlpProtocol::Grpc);
    emit(&guard, 1_000);
    // The flush fails (nothing reaches a collector) but returns.
    let started = Instant::now();
    assert!(guard.force_flush().is_err());
    assert!(started.elapsed() < BOUND);
    assert!(guard.export_stats().dropped_export_failed > 0);
    assert!(guard.last_export_error(ExporterKind::Otlp).is_some());
    let started = Instant::now();
    let _ = guard.shutdown();
    assert!(started.elapsed() < BOUND);
    // Every span is accounted for: dropped at the full queue, failed in
    // export, or dropped at the shutdown deadline. At most the queue (64)
    // plus one batch were ever waiting, so memory stayed bounded.
    let stats = guard.export_stats();
    assert_eq!(stats.exported, 0);
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_export_failed,
        1_000,
        "{stats:?}"
    );
    assert_eq!(guard.dropped_spans(), 1_000);
}
