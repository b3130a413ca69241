//! Behaviour: the structure a pipeline writes on its spans gives the exact
//! critical path — the slower parallel branch is on it, the faster one is
//! not and has slack, a failed primary and its fallback are both on it —
//! analysed straight from the in-memory recorder.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use common::{Failing, corpus};
use spanline_core::basic::{
    Bm25Index, HashingEmbedder, KeywordReranker, Normalizer, ReciprocalRankFusion,
};
use spanline_core::semconv::spanline as core_names;
use spanline_core::{
    Embed, EmbeddedQuery, Pipeline, Preprocess, Query, RequestContext, Rerank, Retrieve, Retriever,
    ScoredDocument, StageDescriptor, StageError, StageExt, StageKind,
};
use spanline_critpath::{SegmentType, analyze, semconv as critpath_names};
use spanline_telemetry::{TelemetryBuilder, critpath};

/// A keyword retriever behind a slow remote store: the wait isolates which
/// branch finishes last (real time, so span timestamps see it).
struct SlowStore(Bm25Index);

#[async_trait]
impl Retriever for SlowStore {
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("slow-store", StageKind::Retrieve).data_source("slow-store")
    }
    async fn retrieve(
        &self,
        q: &EmbeddedQuery,
        k: usize,
        _: &RequestContext,
    ) -> Result<Vec<ScoredDocument>, StageError> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(self.0.search(&q.query.text, k))
    }
}

#[tokio::test]
async fn the_slower_branch_and_a_fallback_are_on_the_path() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .recorder(1_000)
        .prometheus(false)
        .build()
        .unwrap();
    let embedder = HashingEmbedder::new(128);
    let fast = Bm25Index::new(corpus()).named("fast");
    let pipeline = Pipeline::builder("critpath")
        .telemetry(guard.telemetry())
        .then(Preprocess(Normalizer::default()))
        .then(Embed(embedder))
        .parallel((
            // The slow branch is polled first and yields at its await, so
            // the fast one runs while it waits (were the order swapped, the
            // slow branch would start only after the fast one ended, and
            // the analyser would rightly put the fast one on the path too).
            Retrieve::new(SlowStore(Bm25Index::new(corpus())), 3),
            Retrieve::new(fast, 3),
        ))
        .then(ReciprocalRankFusion::new(3))
        .then(
            Failing {
                name: "broken",
                message: "x".into(),
            }
            .with_fallback(Rerank::new(KeywordReranker)),
        )
        .build();
    pipeline
        .run(Query::new("kafka traceparent"), &RequestContext::new())
        .await
        .unwrap();

    let spans = critpath::from_recorder(&guard.recorder().unwrap());
    let reports = analyze(&spans);
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert!(
        report.structured,
        "spanline's structure was used, not timestamps"
    );
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);

    let stages: Vec<&str> = report
        .segments
        .iter()
        .filter(|s| s.segment_type == SegmentType::Stage)
        .map(|s| s.key.as_ref())
        .collect();
    let mut dedup = stages.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        [
            "normalize",
            "hashing-embedder",
            "slow-store",
            "rank-fusion",
            "broken",
            "keyword-rerank"
        ],
        "{stages:?}"
    );
    let covered: u64 = report.segments.iter().map(|s| s.duration_ns).sum();
    assert_eq!(
        covered, report.duration_ns,
        "segments cover the root exactly"
    );

    let fast_span = report
        .spans
        .iter()
        .find(|s| s.name.as_ref() == "retrieval fast")
        .unwrap();
    assert!(!fast_span.on_path);
    assert!(
        fast_span.slack_ns.unwrap() >= 30_000_000,
        "the fast branch could have waited ~40 ms: {:?}",
        fast_span.slack_ns
    );
    let slow = report
        .contributions
        .iter()
        .find(|c| c.key.as_ref() == "slow-store")
        .unwrap();
    assert!(slow.duration_ns >= 40_000_000);
    assert_eq!(
        report.dominant().map(|c| c.key.as_ref()),
        Some("slow-store")
    );
}

#[test]
fn the_analyser_reads_the_names_the_core_writes() {
    let pairs = [
        (critpath_names::PIPELINE_NAME, core_names::PIPELINE_NAME),
        (critpath_names::STAGE_NAME, core_names::STAGE_NAME),
        (critpath_names::STAGE_KIND, core_names::STAGE_KIND),
        (critpath_names::STEP_INDEX, core_names::STEP_INDEX),
        (critpath_names::STEP_DEPENDS_ON, core_names::STEP_DEPENDS_ON),
        (critpath_names::STEP_BLOCKING, core_names::STEP_BLOCKING),
        (critpath_names::PARALLEL_GROUP, core_names::PARALLEL_GROUP),
        (critpath_names::PARALLEL_BRANCH, core_names::PARALLEL_BRANCH),
        (critpath_names::PARALLEL_WIDTH, core_names::PARALLEL_WIDTH),
        (critpath_names::BATCH_INDEX, core_names::BATCH_INDEX),
        (critpath_names::BATCH_SIZE, core_names::BATCH_SIZE),
        (
            critpath_names::BATCH_CONCURRENCY,
            core_names::BATCH_CONCURRENCY,
        ),
        (critpath_names::FALLBACK_ACTION, core_names::FALLBACK_ACTION),
        (critpath_names::FALLBACK_REASON, core_names::FALLBACK_REASON),
        (critpath_names::FALLBACK_FOR, core_names::FALLBACK_FOR),
        (critpath_names::SEGMENT_TYPE, core_names::SEGMENT_TYPE),
    ];
    for (analyser, core) in pairs {
        assert_eq!(analyser, core);
    }
}
