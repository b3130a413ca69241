//! End to end: spans reach a real OTLP/gRPC receiver with the right parent
//! ids, attributes and resource.

mod common;

use std::time::Duration;

use common::{GrpcReceiver, hex};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use spanline_telemetry::{ExporterKind, TelemetryBuilder};

fn attr<'a>(span: &'a opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn run_and_check(receiver: &GrpcReceiver) {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint(format!("http://{}", receiver.addr))
        .service_name("otlp-grpc-e2e")
        .resource_attribute("deployment.environment.name", "test")
        .prometheus(false)
        .export_timeout(Duration::from_secs(10))
        .build()
        .expect("build");
    let provider = guard.tracer_provider().expect("enabled");
    let tracer = provider.tracer("e2e");
    tracer.in_span("parent", |cx| {
        cx.span()
            .set_attribute(KeyValue::new("spanline.pipeline.name", "rag"));
        let mut child = tracer.start("child");
        child.set_attribute(KeyValue::new("spanline.step.index", 3_i64));
        child.end();
    });
    guard.force_flush().expect("flush");
    assert!(
        receiver.received.wait_for_spans(2, Duration::from_secs(10)),
        "receiver got {:?}",
        receiver.received.spans().len()
    );
    let spans = receiver.received.spans();
    let parent = spans.iter().find(|s| s.name == "parent").expect("parent");
    let child = spans.iter().find(|s| s.name == "child").expect("child");
    assert!(parent.parent_span_id.is_empty(), "parent is a root");
    assert_eq!(hex(&child.parent_span_id), hex(&parent.span_id));
    assert_eq!(hex(&child.trace_id), hex(&parent.trace_id));
    assert_eq!(
        attr(parent, "spanline.pipeline.name"),
        Some(&Value::StringValue("rag".into()))
    );
    assert_eq!(
        attr(child, "spanline.step.index"),
        Some(&Value::IntValue(3))
    );
    assert!(
        receiver
            .received
            .service_names()
            .iter()
            .all(|s| s == "otlp-grpc-e2e")
    );
    let stats = guard.export_stats();
    assert_eq!(stats.exported, 2);
    assert_eq!(guard.dropped_spans(), 0);
    guard.shutdown().expect("shutdown");
}

#[test]
fn otlp_grpc_without_runtime() {
    let receiver = GrpcReceiver::start();
    run_and_check(&receiver);
}

#[tokio::test(flavor = "current_thread")]
async fn otlp_grpc_inside_current_thread_runtime() {
    let receiver = GrpcReceiver::start();
    run_and_check(&receiver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_inside_multi_thread_runtime() {
    let receiver = GrpcReceiver::start();
    run_and_check(&receiver);
}

#[test]
fn console_and_otlp_run_side_by_side() {
    let receiver = GrpcReceiver::start();
    let buf = common::SharedBuf::default();
    let env = [
        ("OTEL_TRACES_EXPORTER", "otlp,console".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
    ];
    let guard = TelemetryBuilder::from_lookup(|k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .expect("config")
    .console_writer(buf.clone())
    .recorder(10)
    .build()
    .expect("build");
    assert_eq!(
        guard.exporters(),
        vec![ExporterKind::Otlp, ExporterKind::Console]
    );
    let tracer = guard.tracer_provider().expect("enabled").tracer("t");
    tracer.in_span("both", |_| {});
    guard.force_flush().expect("flush");
    assert!(receiver.received.wait_for_spans(1, Duration::from_secs(10)));
    assert_eq!(buf.text().lines().count(), 1);
    assert_eq!(guard.recorder().expect("recorder").len(), 1);
    assert_eq!(guard.export_stats().exported, 2);
}
