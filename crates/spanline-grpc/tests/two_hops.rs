//! One trace across client → worker A → (nested remote call) → worker B.

mod common;

use opentelemetry::trace::SpanKind;
use spanline_core::{
    Pipeline, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
use spanline_testkit::{SpanDataExt, TestTelemetry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_hops() {
    let t = TestTelemetry::new();
    // Worker B: reverses.
    let reverse = stage_fn(
        StageDescriptor::new("reverse", StageKind::Custom),
        |s: String, _| async move { Ok::<_, StageError>(s.chars().rev().collect::<String>()) },
    );
    let b = common::start(t.build(|| Worker::builder(t.telemetry()).stage(reverse).build())).await;

    // Worker A: upper-cases, then calls B.
    let to_b: RemoteStage<String, String> = WorkerChannel::connect_lazy(&b.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("reverse", StageKind::Custom));
    let upper_then_b = stage_fn(
        StageDescriptor::new("upper", StageKind::Custom),
        move |s: String, ctx| {
            let to_b = to_b.clone();
            async move { to_b.run(s.to_uppercase(), &ctx).await }
        },
    );
    let a =
        common::start(t.build(|| Worker::builder(t.telemetry()).stage(upper_then_b).build())).await;

    let to_a: RemoteStage<String, String> = WorkerChannel::connect_lazy(&a.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("upper", StageKind::Custom));
    let pipeline = t.build(|| {
        Pipeline::builder("client")
            .telemetry(t.telemetry())
            .then(to_a)
            .build()
    });
    let out = pipeline
        .run("abc".to_owned(), &RequestContext::new())
        .await
        .unwrap();
    assert_eq!(out, "CBA");

    a.stop().await;
    b.stop().await;
    let spans = t.spans();
    assert_eq!(spans.trace_ids().len(), 1, "{:?}", spans.names());

    let run = "spanline.worker.v1.StageWorker/Run";
    let clients: Vec<_> = spans
        .all_named(run)
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    let servers: Vec<_> = spans
        .all_named(run)
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!((clients.len(), servers.len()), (2, 2));
    for c in &clients {
        assert_eq!(c.str_attr("rpc.system.name").as_deref(), Some("grpc"));
        assert_eq!(c.str_attr("rpc.method").as_deref(), Some(run));
        assert_eq!(c.str_attr("rpc.status_code").as_deref(), Some("OK"));
        assert_eq!(c.str_attr("spanline.segment.type").as_deref(), Some("hop"));
        assert_eq!(c.str_attr("server.address").as_deref(), Some("127.0.0.1"));
        assert!(c.i64_attr("server.port").is_some());
        // Each client span's child is a server span.
        let children = spans.children_of(c);
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].span_kind, SpanKind::Server);
    }
    // The pipeline's stage span is CLIENT (remote) and parents the first hop.
    let stage = spans
        .all_named("spanline.stage upper")
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("the pipeline's remote stage span");
    assert_eq!(
        spans.parent_of(stage).unwrap().name,
        "invoke_workflow client"
    );
    // Each worker runs its hosted stage as one stage span directly under
    // its SERVER span (no pipeline root on the worker side).
    assert_eq!(
        spans
            .names()
            .iter()
            .filter(|n| n.starts_with("invoke_workflow"))
            .count(),
        1,
        "only the caller's pipeline has a root: {:?}",
        spans.names()
    );
    for (stage, index) in [("spanline.stage upper", 0), ("spanline.stage reverse", 0)] {
        let worker_side = spans
            .all_named(stage)
            .into_iter()
            .find(|s| s.span_kind == SpanKind::Internal)
            .expect("the worker's stage span");
        let parent = spans.parent_of(worker_side).expect("a parent");
        assert_eq!(parent.span_kind, SpanKind::Server, "{stage}");
        assert_eq!(parent.name, run);
        assert_eq!(worker_side.i64_attr("spanline.step.index"), Some(index));
        assert_eq!(
            parent.str_attr("spanline.worker.stage").as_deref(),
            worker_side.str_attr("spanline.stage.name").as_deref()
        );
    }
    // The nested call on worker A: one CLIENT call span descends from A's
    // SERVER span.
    let nested = clients.iter().filter(|c| {
        let mut up = spans.parent_of(c);
        while let Some(s) = up {
            if s.span_kind == SpanKind::Server {
                return true;
            }
            up = spans.parent_of(s);
        }
        false
    });
    assert_eq!(nested.count(), 1);
}
