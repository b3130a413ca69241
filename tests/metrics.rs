//! Behaviour: one latency histogram sample per stage call, labelled by
//! pipeline, stage, kind and outcome (bounded labels only); GenAI metrics
//! for model stages; sampling does not change metrics; disabled telemetry
//! records nothing.

mod common;

use common::{Failing, rag_pipeline, rag_pipeline_with};
use futures_util::FutureExt;
use opentelemetry_sdk::trace::Sampler;
use spanline_core::{Query, RequestContext, StageExt, Telemetry};
use spanline_testkit::TestTelemetry;

const STAGE: &str = "spanline.stage.duration";
const STAGES: [(&str, &str); 8] = [
    ("normalize", "preprocess"),
    ("hashing-embedder", "embed"),
    ("dense-retrieval", "retrieve"),
    ("keyword-retrieval", "retrieve"),
    ("rank-fusion", "custom"),
    ("keyword-rerank", "rerank"),
    ("prompt", "custom"),
    ("extractive-generator", "generate"),
];

async fn run_three(t: &TestTelemetry) {
    let rag = t.build(|| rag_pipeline(t.telemetry()).now_or_never().unwrap());
    for question in ["kafka headers", "grpc metadata", "latency histogram"] {
        rag.run(Query::new(question), &RequestContext::new())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn one_sample_per_stage_call_with_bounded_labels() {
    let t = TestTelemetry::new();
    run_three(&t).await;
    let m = t.metrics();
    for (stage, kind) in STAGES {
        assert_eq!(
            m.histogram_count(
                STAGE,
                &[
                    ("pipeline", "rag"),
                    ("stage", stage),
                    ("kind", kind),
                    ("outcome", "ok")
                ]
            ),
            3,
            "{stage}"
        );
    }
    assert_eq!(
        m.histogram_count(
            "spanline.pipeline.duration",
            &[("pipeline", "rag"), ("outcome", "ok")]
        ),
        3
    );
    for labels in m.series(STAGE) {
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["pipeline", "stage", "kind", "outcome"],
            "labels stay bounded"
        );
    }
    assert!(
        m.histogram_values(STAGE, &[])
            .iter()
            .all(|v| *v >= 0.0 && *v < 60.0)
    );
}

#[tokio::test]
async fn gen_ai_metrics_for_model_stages() {
    let t = TestTelemetry::new();
    run_three(&t).await;
    let m = t.metrics();
    let chat = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "spanline"),
        ("gen_ai.request.model", "extractive"),
    ];
    assert_eq!(
        m.histogram_count("gen_ai.client.operation.duration", &chat),
        3
    );
    let input: Vec<f64> = m.histogram_values(
        "gen_ai.client.token.usage",
        &[("gen_ai.token.type", "input")],
    );
    let output: Vec<f64> = m.histogram_values(
        "gen_ai.client.token.usage",
        &[("gen_ai.token.type", "output")],
    );
    assert_eq!((input.len(), output.len()), (3, 3));
    assert!(input.iter().all(|n| *n > 5.0) && output.iter().all(|n| *n >= 1.0));
    assert_eq!(
        m.histogram_count("gen_ai.server.time_to_first_token", &[]),
        3
    );
    assert_eq!(
        m.histogram_count(
            "gen_ai.client.operation.duration",
            &[("gen_ai.operation.name", "embeddings")]
        ),
        3,
        "the embedder has a provider, so it is a GenAI operation too"
    );
}

#[tokio::test]
async fn errors_are_counted_by_outcome() {
    let t = TestTelemetry::new();
    let rag = t.build(|| {
        rag_pipeline_with(
            t.telemetry(),
            Failing {
                name: "broken",
                message: "x".into(),
            }
            .or_skip(),
        )
        .now_or_never()
        .unwrap()
    });
    rag.run(Query::new("kafka"), &RequestContext::new())
        .await
        .unwrap();
    rag.run(Query::new("grpc"), &RequestContext::new())
        .await
        .unwrap();
    let m = t.metrics();
    assert_eq!(
        m.histogram_count(STAGE, &[("stage", "broken"), ("outcome", "error")]),
        2
    );
    assert_eq!(
        m.histogram_count(STAGE, &[("stage", "broken"), ("outcome", "ok")]),
        0
    );
    assert_eq!(
        m.histogram_count("spanline.pipeline.duration", &[("outcome", "ok")]),
        2,
        "skipped, so the run succeeds"
    );
}

#[tokio::test]
async fn unsampled_requests_create_no_stage_spans_but_keep_metrics() {
    let t = TestTelemetry::with_sampler(Sampler::AlwaysOff);
    run_three(&t).await;
    assert!(t.spans().is_empty());
    let m = t.metrics();
    assert_eq!(
        m.histogram_count(STAGE, &[("outcome", "ok")]),
        3 * STAGES.len()
    );
}

#[tokio::test]
async fn disabled_telemetry_records_nothing() {
    let t = TestTelemetry::new();
    let rag = t.build(|| rag_pipeline(Telemetry::disabled()).now_or_never().unwrap());
    let answer = rag
        .run(Query::new("kafka headers"), &RequestContext::new())
        .await
        .unwrap();
    assert!(answer.text.contains("[kafka]"));
    assert!(t.spans().is_empty());
    let m = t.metrics();
    assert_eq!(m.histogram_count(STAGE, &[]), 0);
    assert_eq!(m.histogram_count("spanline.pipeline.duration", &[]), 0);
    assert_eq!(
        m.histogram_count("gen_ai.client.operation.duration", &[]),
        0
    );
}
