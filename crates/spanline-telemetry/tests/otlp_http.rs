//! End to end over OTLP/HTTP protobuf: a plain loopback HTTP server reads
//! the POSTs and decodes them.

mod common;

use std::time::Duration;

use common::{HttpReceiver, hex};
use opentelemetry::trace::{Tracer, TracerProvider};
use spanline_telemetry::{OtlpProtocol, TelemetryBuilder};

#[tokio::test(flavor = "current_thread")]
async fn otlp_http_protobuf_receives_parent_and_child() {
    let receiver = HttpReceiver::start();
    // Endpoint named and no exporter named: the rule picks OTLP.
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_SERVICE_NAME", "otlp-http-e2e".to_owned()),
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
    ];
    let builder = TelemetryBuilder::from_lookup(|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .expect("config");
    assert_eq!(builder.config().otlp_protocol, OtlpProtocol::HttpProtobuf);
    let guard = builder.build().expect("build");
    let tracer = guard.tracer_provider().expect("enabled").tracer("e2e");
    tracer.in_span("parent", |_| tracer.in_span("child", |_| {}));
    guard.force_flush().expect("flush");
    assert!(receiver.received.wait_for_spans(2, Duration::from_secs(10)));
    let spans = receiver.received.spans();
    let parent = spans.iter().find(|s| s.name == "parent").expect("parent");
    let child = spans.iter().find(|s| s.name == "child").expect("child");
    assert_eq!(hex(&child.parent_span_id), hex(&parent.span_id));
    assert_eq!(receiver.received.service_names()[0], "otlp-http-e2e");
    assert!(
        receiver
            .paths
            .lock()
            .expect("paths")
            .iter()
            .all(|p| p == "/v1/traces")
    );
    drop(guard);
}
