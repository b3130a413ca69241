//! Behaviour: a pipeline's spans leave through the real OTLP/gRPC exporter
//! and arrive at a collector (the official proto service types) as one
//! trace, with the right parents and semconv attributes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::rag_pipeline;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use spanline_core::{Query, RequestContext};
use spanline_telemetry::{ExporterKind, TelemetryBuilder};
use spanline_testkit::otlp::{GrpcReceiver, hex};

fn attr<'a>(span: &'a ProtoSpan, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_spans_arrive_at_an_otlp_collector() {
    let receiver = GrpcReceiver::start();
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint(format!("http://{}", receiver.addr))
        .service_name("rag-e2e")
        .prometheus(false)
        .schedule_delay(Duration::from_millis(50))
        .build()
        .expect("telemetry builds");
    let rag = rag_pipeline(guard.telemetry()).await;
    let answer = rag
        .run(
            Query::new("What carries the traceparent in Kafka?"),
            &RequestContext::new(),
        )
        .await
        .expect("pipeline runs");
    assert!(answer.text.contains("[kafka]"));
    guard.force_flush().expect("flush");
    assert!(
        receiver.received.wait_for_spans(9, Duration::from_secs(20)),
        "9 spans arrive"
    );

    let spans = receiver.received.spans();
    assert_eq!(spans.len(), 9);
    let by_name: HashMap<&str, &ProtoSpan> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let root = by_name["invoke_workflow rag"];
    assert!(root.parent_span_id.is_empty());
    for s in &spans {
        assert_eq!(s.trace_id, root.trace_id, "one trace");
        if s.name != root.name {
            assert_eq!(
                hex(&s.parent_span_id),
                hex(&root.span_id),
                "{} hangs under the root",
                s.name
            );
        }
    }
    let chat = by_name["chat extractive"];
    assert_eq!(
        attr(chat, "gen_ai.operation.name"),
        Some(&Value::StringValue("chat".into()))
    );
    assert_eq!(
        attr(chat, "gen_ai.provider.name"),
        Some(&Value::StringValue("spanline".into()))
    );
    assert!(matches!(attr(chat, "gen_ai.usage.output_tokens"), Some(Value::IntValue(n)) if *n > 0));
    assert_eq!(
        attr(by_name["retrieval docs-bm25"], "spanline.parallel.branch"),
        Some(&Value::IntValue(1))
    );
    assert_eq!(
        receiver.received.service_names(),
        vec!["rag-e2e".to_owned()]
    );
    assert_eq!(guard.dropped_spans(), 0);
}
