//! Behaviour: one pipeline run is one trace with the right parents.

mod common;

use common::{PIPELINE, corpus, rag_pipeline};
use opentelemetry::trace::{Span as _, SpanId, SpanKind, TraceContextExt, Tracer};
use spanline_core::basic::HashingEmbedder;
use spanline_core::semconv::spanline as sl;
use spanline_core::{
    Pipeline, Query, RequestContext, Stage, StageDescriptor, StageError, StageKind, TraceCarrier,
    batch, stage_fn,
};
use spanline_testkit::{SpanDataExt, TestTelemetry};

#[tokio::test]
async fn one_trace_root_and_stage_children_in_order() {
    let t = TestTelemetry::new();
    let rag = t
        .build(|| futures_util::FutureExt::now_or_never(rag_pipeline(t.telemetry())))
        .expect("pipeline builds without waiting");
    let answer = rag
        .run(
            Query::new("What carries the traceparent in Kafka?"),
            &RequestContext::new(),
        )
        .await
        .unwrap();
    assert!(answer.text.contains("[kafka]"), "{}", answer.text);

    let spans = t.spans();
    assert_eq!(spans.trace_ids().len(), 1, "{:?}", spans.names());
    let root = spans.named(&format!("invoke_workflow {PIPELINE}"));
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    let children: Vec<&str> = spans
        .children_of(root)
        .iter()
        .map(|s| s.name.as_ref())
        .collect();
    assert_eq!(children.len(), 8, "{children:?}");
    assert_eq!(children[0], "spanline.preprocess normalize");
    assert_eq!(children[1], "embeddings hashing-256");
    let mut group: Vec<&str> = children[2..4].to_vec();
    group.sort();
    assert_eq!(group, ["retrieval docs-bm25", "retrieval docs-dense"]);
    assert_eq!(
        &children[4..],
        [
            "spanline.stage rank-fusion",
            "spanline.rerank keyword-rerank",
            "spanline.stage prompt",
            "chat extractive"
        ]
    );

    // Step structure for the critical path.
    let idx = |name: &str| spans.named(name).i64_attr(sl::STEP_INDEX);
    assert_eq!(idx("spanline.preprocess normalize"), Some(0));
    assert_eq!(
        idx("chat extractive"),
        Some(6),
        "the parallel group is one step"
    );
    for (name, branch) in [("retrieval docs-dense", 0), ("retrieval docs-bm25", 1)] {
        let s = spans.named(name);
        assert_eq!(s.i64_attr(sl::STEP_INDEX), Some(2));
        assert_eq!(s.i64_attr(sl::PARALLEL_GROUP), Some(2));
        assert_eq!(s.i64_attr(sl::PARALLEL_BRANCH), Some(branch));
        assert_eq!(s.i64_attr(sl::PARALLEL_WIDTH), Some(2));
        assert_eq!(s.i64_attr(sl::STEP_DEPENDS_ON), Some(1));
        assert_eq!(
            s.parent_span_id,
            root.span_context.span_id(),
            "parallel siblings share the root"
        );
    }
    assert_eq!(
        spans
            .named("spanline.preprocess normalize")
            .str_attr(sl::STEP_DEPENDS_ON)
            .as_deref(),
        Some("[]")
    );
    assert_eq!(
        spans
            .named("spanline.stage rank-fusion")
            .i64_attr(sl::STEP_DEPENDS_ON),
        Some(2)
    );
    assert!(spans.0.iter().all(|s| s.span_kind == SpanKind::Internal));
}

#[tokio::test]
async fn a_remote_parent_is_continued() {
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("p")
            .telemetry(t.telemetry())
            .then(spanline_core::Preprocess(
                spanline_core::basic::Normalizer::default(),
            ))
            .build()
    });
    let carrier: TraceCarrier = [(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )]
    .into_iter()
    .collect::<std::collections::BTreeMap<_, _>>()
    .into();
    let ctx = carrier.extract().into_context();
    pipeline.run(Query::new("hello"), &ctx).await.unwrap();
    let spans = t.spans();
    let root = spans.named("invoke_workflow p");
    assert_eq!(
        root.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(root.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(root.parent_span_is_remote);
    assert_eq!(spans.trace_ids().len(), 1);
}

#[tokio::test]
async fn batch_items_are_indexed_siblings() {
    let t = TestTelemetry::new();
    let double = stage_fn(
        StageDescriptor::new("double", StageKind::Custom),
        |x: u32, _| async move { Ok::<_, StageError>(x * 2) },
    );
    let pipeline = t.build(|| {
        Pipeline::builder("batch")
            .telemetry(t.telemetry())
            .then(batch(double).concurrency(2))
            .build()
    });
    let out = pipeline
        .run(vec![1, 2, 3], &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(out, vec![2, 4, 6]);
    let spans = t.spans();
    let root = spans.named("invoke_workflow batch");
    let items = spans.all_named("spanline.stage double");
    assert_eq!(items.len(), 3);
    let mut indices: Vec<i64> = items
        .iter()
        .map(|s| s.i64_attr(sl::BATCH_INDEX).unwrap())
        .collect();
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    for s in items {
        assert_eq!(s.i64_attr(sl::BATCH_SIZE), Some(3));
        assert_eq!(s.i64_attr(sl::BATCH_CONCURRENCY), Some(2));
        assert_eq!(s.parent_span_id, root.span_context.span_id());
    }
}

#[tokio::test]
async fn a_nested_pipeline_hangs_under_the_outer_stage() {
    let t = TestTelemetry::new();
    let (outer, _) = t.build(|| {
        let inner = Pipeline::builder("inner")
            .telemetry(t.telemetry())
            .then(stage_fn(
                StageDescriptor::new("add-one", StageKind::Custom),
                |x: u32, _| async move { Ok::<_, StageError>(x + 1) },
            ))
            .build();
        let outer = Pipeline::builder("outer")
            .telemetry(t.telemetry())
            .then(inner)
            .build();
        (outer, ())
    });
    assert_eq!(outer.run(1, &RequestContext::new()).await.unwrap(), 2);
    let spans = t.spans();
    assert_eq!(spans.trace_ids().len(), 1);
    let outer_root = spans.named("invoke_workflow outer");
    let step = spans.named("spanline.stage inner");
    let inner_root = spans.named("invoke_workflow inner");
    let leaf = spans.named("spanline.stage add-one");
    assert_eq!(step.parent_span_id, outer_root.span_context.span_id());
    assert_eq!(inner_root.parent_span_id, step.span_context.span_id());
    assert_eq!(leaf.parent_span_id, inner_root.span_context.span_id());
}

/// CPU-bound work on a blocking thread: spans created inside attach to the
/// stage span, both explicitly and through the current context.
struct BlockingEmbed {
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

#[async_trait::async_trait]
impl Stage for BlockingEmbed {
    type Input = Vec<String>;
    type Output = usize;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new("blocking", StageKind::Embed)
    }
    async fn run(&self, texts: Vec<String>, ctx: &RequestContext) -> Result<usize, StageError> {
        let tracer = self.tracer.clone();
        ctx.spawn_blocking(move |ctx| {
            let explicit = tracer.start_with_context("explicit-child", ctx.otel_context());
            drop(explicit);
            // Third-party code that reads the current context:
            let implicit = tracer.start("implicit-child");
            assert!(implicit.span_context().is_valid());
            drop(implicit);
            let embedder = HashingEmbedder::new(64);
            texts.iter().map(|t| embedder.embed_text(t).dim()).sum()
        })
        .await
        .map_err(|e| StageError::internal(e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_travels_into_blocking_threads() {
    let t = TestTelemetry::new();
    let pipeline = t.build(|| {
        Pipeline::builder("blocking")
            .telemetry(t.telemetry())
            .then(BlockingEmbed { tracer: t.tracer() })
            .build()
    });
    let texts: Vec<String> = corpus().into_iter().map(|d| d.text).collect();
    pipeline.run(texts, &RequestContext::new()).await.unwrap();
    let spans = t.spans();
    let stage = spans.named("embeddings blocking");
    for name in ["explicit-child", "implicit-child"] {
        assert_eq!(
            spans.named(name).parent_span_id,
            stage.span_context.span_id(),
            "{name}"
        );
    }
    assert_eq!(spans.trace_ids().len(), 1);
}

/// Run `body` as the one stage (`name`) of a pipeline traced to `t`.
fn run_one_stage<F, Fut>(t: &TestTelemetry, name: &'static str, body: F)
where
    F: Fn(u8, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u8, StageError>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pipeline = t.build(|| {
        Pipeline::builder("one-stage")
            .telemetry(t.telemetry())
            .then(stage_fn(
                StageDescriptor::new(name, StageKind::Custom),
                body,
            ))
            .build()
    });
    rt.block_on(pipeline.run(7, &RequestContext::new()))
        .unwrap();
}

#[test]
fn ctx_span_is_the_stage_span_during_run() {
    // The span a stage sees in its context is its own, so stage authors can
    // add attributes through the context.
    let t = TestTelemetry::new();
    run_one_stage(&t, "annotate", |x, ctx| async move {
        ctx.set_attribute(opentelemetry::KeyValue::new("cache.hit", true));
        assert!(ctx.otel_context().span().span_context().is_sampled());
        Ok(x)
    });
    assert_eq!(
        t.spans()
            .named("spanline.stage annotate")
            .bool_attr("cache.hit"),
        Some(true)
    );
}

#[test]
fn transport_spans_started_from_the_context_hang_under_it() {
    use opentelemetry::trace::SpanBuilder;
    use spanline_core::{RequestAttributes, Telemetry};
    let t = TestTelemetry::new();
    let telemetry = t.telemetry();
    let attrs = RequestAttributes::builder().user_id("u-1").build().unwrap();
    let parent = RequestContext::new()
        .with_attributes(attrs)
        .start_span(&telemetry, SpanBuilder::from_name("caller"));
    let send = parent.start_span(&telemetry, SpanBuilder::from_name("send rag.retrieve"));
    send.record_error(&StageError::unavailable("broker down"));
    send.end_span();
    parent.end_span();
    let spans = t.spans();
    let caller = spans.named("caller");
    let send_span = spans.named("send rag.retrieve");
    assert_eq!(send_span.parent_span_id, caller.span_context.span_id());
    assert_eq!(send_span.str_attr("user.id").as_deref(), Some("u-1"));
    assert_eq!(
        send_span.str_attr("error.type").as_deref(),
        Some("unavailable")
    );
    // The context a transport span returns carries its telemetry onward.
    assert!(send.telemetry().is_some_and(Telemetry::is_enabled));
    // Disabled telemetry: no span is started, and what runs under the
    // context sees telemetry disabled too.
    let ctx = RequestContext::new();
    assert!(ctx.telemetry().is_none());
    let same = ctx.start_span(&Telemetry::disabled(), SpanBuilder::from_name("x"));
    assert!(!same.span_context().is_valid());
    assert!(same.telemetry().is_some_and(|t| !t.is_enabled()));
}

#[test]
fn a_stage_opens_child_spans_through_its_pipelines_telemetry() {
    // The pipeline's telemetry is not the global provider's, and the stage
    // is not told about it: it reads it from the request context.
    use opentelemetry::trace::SpanBuilder;
    let t = TestTelemetry::new();
    run_one_stage(&t, "tokenize", |x, ctx| async move {
        let telemetry = ctx.telemetry().expect("set by the pipeline").clone();
        let child = ctx.start_span(&telemetry, SpanBuilder::from_name("lookup"));
        child.end_span();
        Ok(x)
    });
    let spans = t.spans();
    let stage = spans.named("spanline.stage tokenize");
    let child = spans.named("lookup");
    assert_eq!(child.parent_span_id, stage.span_context.span_id());
    assert_eq!(child.span_context.trace_id(), stage.span_context.trace_id());
}
