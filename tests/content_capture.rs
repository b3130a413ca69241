//! Behaviour: prompts, completions, queries and documents enter spans only
//! when content capture is on. A canary string in the question and in an
//! error message must appear nowhere when it is off.

mod common;

use common::{Failing, rag_pipeline, rag_pipeline_with};
use futures_util::FutureExt;
use spanline_core::{Document, Query, RequestContext};
use spanline_testkit::TestTelemetry;

const CANARY: &str = "zebracanary";

fn question() -> Query {
    Query::new(format!("What carries the traceparent in Kafka {CANARY}?"))
}

#[tokio::test]
async fn off_by_default_nothing_leaks() {
    let t = TestTelemetry::new();
    let rag = t.build(|| rag_pipeline(t.telemetry()).now_or_never().unwrap());
    let answer = rag.run(question(), &RequestContext::new()).await.unwrap();
    assert!(!answer.text.is_empty());
    let spans = t.spans();
    assert_eq!(spans.len(), 9);
    assert!(!spans.contain_text(CANARY));
    assert!(
        !spans.contain_text("Kafka messages carry"),
        "document text stays out"
    );
}

#[tokio::test]
async fn off_error_messages_do_not_leak() {
    let t = TestTelemetry::new();
    let failing = Failing {
        name: "broken",
        message: format!("cannot rerank {CANARY}"),
    };
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), failing)
            .now_or_never()
            .unwrap()
    });
    let err = rag
        .run(question(), &RequestContext::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(CANARY),
        "the caller still gets the full error"
    );
    let spans = t.spans();
    assert!(
        !spans.contain_text(CANARY),
        "not in status, events or attributes"
    );
}

#[tokio::test]
async fn on_content_is_recorded() {
    let t = TestTelemetry::new().capturing_content();
    let rag = t.build(|| rag_pipeline(t.telemetry()).now_or_never().unwrap());
    rag.run(question(), &RequestContext::new()).await.unwrap();
    let spans = t.spans();
    assert!(spans.contain_text(CANARY));
    assert!(spans.contain_text("Kafka messages carry"));
}

#[tokio::test]
async fn a_request_may_turn_it_off_when_the_switch_is_on() {
    let t = TestTelemetry::new().capturing_content();
    let rag = t.build(|| rag_pipeline(t.telemetry()).now_or_never().unwrap());
    rag.run(
        question(),
        &RequestContext::new().with_content_capture(false),
    )
    .await
    .unwrap();
    assert!(!t.spans().contain_text(CANARY));
    let _ = Document::new("unused", "");
}
