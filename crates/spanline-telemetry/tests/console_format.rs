//! The console exporter writes one JSON object per span and line, with the
//! right parent ids, through a real spanline pipeline.

mod common;

use std::collections::HashMap;

use common::SharedBuf;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer, TracerProvider};
use serde_json::Value;
use spanline_telemetry::{ExporterKind, TelemetryBuilder};

fn lines(buf: &SharedBuf) -> Vec<Value> {
    buf.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn console_lines_parse_with_parent_ids() {
    let buf = SharedBuf::default();
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Console])
        .console_writer(buf.clone())
        .service_name("console-test")
        .prometheus(false)
        .build()
        .expect("build");
    let tracer = guard.tracer_provider().expect("enabled").tracer("t");
    tracer.in_span("parent", |cx| {
        cx.span().set_attribute(KeyValue::new("b", true));
        cx.span().add_event("evt", vec![KeyValue::new("f", 1.5)]);
        let mut child = tracer.start("child");
        child.set_attribute(KeyValue::new(
            "list",
            opentelemetry::Value::Array(vec![1_i64, 2].into()),
        ));
        child.set_status(Status::error("boom"));
        child.end();
    });
    guard.force_flush().expect("flush");
    let spans = lines(&buf);
    assert_eq!(spans.len(), 2);
    let by_name: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["name"].as_str().expect("name"), s))
        .collect();
    let parent = by_name["parent"];
    let child = by_name["child"];
    assert_eq!(parent["parent_span_id"], Value::Null);
    assert_eq!(child["parent_span_id"], parent["span_id"]);
    assert_eq!(child["trace_id"], parent["trace_id"]);
    assert_eq!(parent["trace_id"].as_str().expect("hex").len(), 32);
    assert_eq!(parent["span_id"].as_str().expect("hex").len(), 16);
    assert_eq!(parent["kind"], "internal");
    assert_eq!(parent["attributes"]["b"], true);
    assert_eq!(parent["events"][0]["name"], "evt");
    assert_eq!(parent["events"][0]["attributes"]["f"], 1.5);
    assert_eq!(child["attributes"]["list"], serde_json::json!([1, 2]));
    assert_eq!(child["status"]["code"], "error");
    assert_eq!(child["status"]["message"], "boom");
    assert_eq!(parent["resource"]["service.name"], "console-test");
    let start = parent["start_time_unix_nano"].as_u64().expect("start");
    let end = parent["end_time_unix_nano"].as_u64().expect("end");
    assert!(start > 0 && end >= start);
}

#[tokio::test(flavor = "current_thread")]
async fn pipeline_spans_through_guard_telemetry() {
    use spanline_core::basic::{HashingEmbedder, Normalizer, VectorIndex};
    use spanline_core::{Document, Embed, Pipeline, Preprocess, Query, RequestContext, Retrieve};

    let buf = SharedBuf::default();
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Console])
        .console_writer(buf.clone())
        .recorder(100)
        .prometheus(false)
        .build()
        .expect("build");
    let embedder = HashingEmbedder::new(64);
    let index = VectorIndex::build(
        &embedder,
        vec![Document::new("a", "alpha beta")],
        &RequestContext::new(),
    )
    .await
    .expect("index");
    let pipeline = Pipeline::builder("search")
        .telemetry(guard.telemetry())
        .then(Preprocess(Normalizer::default()))
        .then(Embed(embedder))
        .then(Retrieve::new(index, 1))
        .build();
    pipeline
        .run(Query::new("alpha"), &RequestContext::new())
        .await
        .expect("run");
    guard.force_flush().expect("flush");

    let spans = lines(&buf);
    assert!(spans.len() >= 4, "workflow + 3 stages, got {}", spans.len());
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent_span_id"].is_null())
        .collect();
    assert_eq!(roots.len(), 1, "one root span per run");
    let root_id = &roots[0]["span_id"];
    let children = spans
        .iter()
        .filter(|s| &s["parent_span_id"] == root_id)
        .count();
    assert!(children >= 3, "stages are children of the run span");
    // The recorder saw the same spans.
    let recorder = guard.recorder().expect("recorder");
    assert_eq!(recorder.len(), spans.len());
}
