//! Behaviour: failures are recorded on the span (status, `error.type`, an
//! exception event), timeouts and deadlines give typed errors, fallbacks and
//! skips are visible, and a dropped call ends its span as cancelled.

mod common;

use std::time::Duration;

use common::{Failing, SHORT, Stuck, rag_pipeline_with};
use futures_util::FutureExt;
use opentelemetry::trace::Status;
use spanline_core::basic::KeywordReranker;
use spanline_core::semconv::{general, spanline as sl};
use spanline_core::{ErrorKind, Query, RequestContext, Rerank, StageExt};
use spanline_testkit::{SpanDataExt, TestTelemetry};

fn q() -> Query {
    Query::new("What carries the traceparent in Kafka?")
}

#[tokio::test]
async fn an_error_sets_status_error_type_and_an_exception_event() {
    let t = TestTelemetry::new();
    let failing = Failing {
        name: "broken",
        message: "weights missing".into(),
    };
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), failing)
            .now_or_never()
            .unwrap()
    });
    let err = rag.run(q(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Model);

    let spans = t.spans();
    let stage = spans.named("spanline.rerank broken");
    assert_eq!(
        stage.str_attr(general::ERROR_TYPE).as_deref(),
        Some("model_error")
    );
    assert!(matches!(&stage.status, Status::Error { .. }));
    let event = &stage.events.events[0];
    assert_eq!(event.name, "exception");
    assert!(
        event
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == general::EXCEPTION_TYPE
                && kv.value.as_str() == "model_error")
    );
    // The root reports the failure too; later stages never ran.
    let root = spans.named("invoke_workflow rag");
    assert_eq!(
        root.str_attr(general::ERROR_TYPE).as_deref(),
        Some("model_error")
    );
    assert!(spans.all_named("chat extractive").is_empty());
}

#[tokio::test]
async fn a_failed_stage_falls_back_and_says_so() {
    let t = TestTelemetry::new();
    let failing = Failing {
        name: "broken",
        message: "boom".into(),
    };
    let guarded = failing.with_fallback(Rerank::new(KeywordReranker));
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), guarded)
            .now_or_never()
            .unwrap()
    });
    let answer = rag.run(q(), &RequestContext::new()).await.unwrap();
    assert!(answer.text.contains("[kafka]"));

    let spans = t.spans();
    let primary = spans.named("spanline.rerank broken");
    assert_eq!(
        primary.str_attr(sl::FALLBACK_ACTION).as_deref(),
        Some("fallback")
    );
    assert_eq!(
        primary.str_attr(sl::FALLBACK_REASON).as_deref(),
        Some("error")
    );
    let fallback = spans.named("spanline.rerank keyword-rerank");
    assert_eq!(
        fallback.str_attr(sl::FALLBACK_FOR).as_deref(),
        Some("broken")
    );
    assert_eq!(
        fallback.i64_attr(sl::STEP_INDEX),
        primary.i64_attr(sl::STEP_INDEX)
    );
    assert_eq!(
        fallback.i64_attr(sl::STEP_DEPENDS_ON),
        primary.i64_attr(sl::STEP_INDEX)
    );
    assert_eq!(
        fallback.parent_span_id, primary.parent_span_id,
        "siblings under the root"
    );
    assert!(
        fallback.start_time >= primary.end_time,
        "the fallback runs after the primary ends"
    );
    assert!(matches!(fallback.status, Status::Unset));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_skips_and_says_so() {
    let t = TestTelemetry::new();
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), Stuck.with_timeout(SHORT).or_skip())
            .now_or_never()
            .unwrap()
    });
    let answer = rag.run(q(), &RequestContext::new()).await.unwrap();
    assert!(
        answer.text.contains("[kafka]"),
        "fused order passes through: {}",
        answer.text
    );

    let spans = t.spans();
    let stuck = spans.named("spanline.rerank stuck-rerank");
    assert_eq!(
        stuck.str_attr(general::ERROR_TYPE).as_deref(),
        Some("timeout")
    );
    assert_eq!(stuck.str_attr(sl::FALLBACK_ACTION).as_deref(), Some("skip"));
    assert_eq!(
        stuck.str_attr(sl::FALLBACK_REASON).as_deref(),
        Some("timeout")
    );
    assert_eq!(stuck.str_attr(sl::TIMEOUT_SECONDS).as_deref(), Some("0.05"));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_without_recovery_is_a_typed_error() {
    let t = TestTelemetry::new();
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), Stuck.with_timeout(SHORT))
            .now_or_never()
            .unwrap()
    });
    let err = rag.run(q(), &RequestContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn the_request_deadline_bounds_every_stage() {
    let t = TestTelemetry::new();
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), Stuck.with_timeout(Duration::from_secs(3600)))
            .now_or_never()
            .unwrap()
    });
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(200));
    let err = rag.run(q(), &ctx).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::DeadlineExceeded,
        "the deadline is earlier than the stage timeout"
    );

    // A deadline already past: the stage does not run at all.
    let late = RequestContext::new().with_timeout(Duration::ZERO);
    let err = rag.run(q(), &late).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_ends_spans_as_cancelled() {
    let t = TestTelemetry::new();
    let rag = t.build(|| {
        rag_pipeline_with(t.telemetry(), Stuck)
            .now_or_never()
            .unwrap()
    });
    let ctx = RequestContext::new();
    let run = rag.run(q(), &ctx);
    // The caller gives up.
    assert!(tokio::time::timeout(SHORT, run).await.is_err());

    let spans = t.spans();
    for name in ["spanline.rerank stuck-rerank", "invoke_workflow rag"] {
        let s = spans.named(name);
        assert_eq!(
            s.str_attr(general::ERROR_TYPE).as_deref(),
            Some("cancelled"),
            "{name}"
        );
    }
    let m = t.metrics();
    assert_eq!(
        m.histogram_count(
            "spanline.stage.duration",
            &[("stage", "stuck-rerank"), ("outcome", "cancelled")]
        ),
        1
    );
    assert_eq!(
        m.histogram_count("spanline.pipeline.duration", &[("outcome", "cancelled")]),
        1
    );
}
