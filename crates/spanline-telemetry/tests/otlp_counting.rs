//! The counting OTLP receivers (what the export bench feeds) decode and
//! count every span over both transports and keep none.

mod common;

use std::time::Duration;

use common::{Counted, GrpcReceiver, HttpReceiver};
use opentelemetry::trace::{Tracer, TracerProvider};
use spanline_telemetry::{ExporterKind, OtlpProtocol, TelemetryBuilder};

const SPANS: u64 = 1_200;

fn export_and_count(addr: std::net::SocketAddr, protocol: OtlpProtocol, counted: &Counted) {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint(format!("http://{addr}"))
        .otlp_protocol(protocol)
        .prometheus(false)
        .export_timeout(Duration::from_secs(10))
        .build()
        .expect("build");
    let tracer = guard.tracer_provider().expect("enabled").tracer("count");
    for _ in 0..SPANS {
        tracer.in_span("s", |_| {});
    }
    guard.force_flush().expect("flush");
    assert!(counted.wait_for_spans(SPANS, Duration::from_secs(10)));
    assert_eq!(counted.spans(), SPANS);
    // 512 spans per batch: at least three requests.
    assert!(counted.requests() >= 3, "{} requests", counted.requests());
    assert_eq!(guard.export_stats().exported, SPANS);
    guard.shutdown().expect("shutdown");
}

#[test]
fn grpc_counting_receiver_counts_and_keeps_nothing() {
    let receiver = GrpcReceiver::start_counting();
    export_and_count(receiver.addr, OtlpProtocol::Grpc, &receiver.counted);
    assert!(receiver.received.spans().is_empty());
}

#[test]
fn http_counting_receiver_counts_and_keeps_nothing() {
    let receiver = HttpReceiver::start_counting();
    export_and_count(receiver.addr, OtlpProtocol::HttpProtobuf, &receiver.counted);
    assert!(receiver.received.spans().is_empty());
    assert!(receiver.paths.lock().expect("paths").is_empty());
}

#[test]
fn a_keeping_receiver_counts_too() {
    let receiver = GrpcReceiver::start();
    export_and_count(receiver.addr, OtlpProtocol::Grpc, &receiver.counted);
    assert_eq!(receiver.received.spans().len() as u64, SPANS);
}
