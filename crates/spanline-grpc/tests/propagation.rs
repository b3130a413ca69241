//! Non-ASCII metadata and the untrusted-edge mode.

mod common;

use opentelemetry::trace::{SpanKind, TraceContextExt};
use spanline_core::{
    RequestAttributes, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::proto::RunRequest;
use spanline_grpc::proto::stage_worker_client::StageWorkerClient;
use spanline_grpc::{EdgeMode, RemoteStage, Worker, WorkerChannel};
use spanline_testkit::{SpanDataExt, TestTelemetry};

fn whoami() -> impl spanline_core::Stage<Input = (), Output = Option<String>> {
    stage_fn(
        StageDescriptor::new("whoami", StageKind::Custom),
        |_: (), ctx: RequestContext| async move {
            Ok::<_, StageError>(ctx.attributes().user_id().map(str::to_owned))
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_metadata_never_fails_the_call() {
    let t = TestTelemetry::new();
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(whoami()).build())).await;
    let mut client = StageWorkerClient::connect(w.uri()).await.unwrap();
    let mut request = tonic::Request::new(RunRequest {
        stage: "whoami".into(),
        payload: "null".into(),
    });
    let headers = request.metadata_mut().as_mut();
    headers.insert(
        "baggage",
        http::HeaderValue::from_bytes(b"user.id=j\xf6rg").unwrap(),
    );
    headers.insert(
        "traceparent",
        http::HeaderValue::from_bytes(
            b"00-\xe2\x98\x83bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap(),
    );
    let response = client.run(request).await.unwrap();
    assert_eq!(&response.into_inner().payload[..], b"null");
    w.stop().await;
    let spans = t.spans();
    let server = spans
        .all_named("spanline.worker.v1.StageWorker/Run")
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    // A new trace: no remote parent.
    assert_eq!(server.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_eq!(server.str_attr("rpc.status_code").as_deref(), Some("OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_edge_starts_a_linked_root_and_drops_baggage() {
    let t = TestTelemetry::new();
    let trusted =
        common::start(t.build(|| Worker::builder(t.telemetry()).stage(whoami()).build())).await;
    let edge = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stage(whoami())
            .edge(EdgeMode::Untrusted)
            .build()
    }))
    .await;
    let attrs = RequestAttributes::builder()
        .user_id("mallory")
        .build()
        .unwrap();
    let caller = RequestContext::new().with_attributes(attrs).start_span(
        &t.telemetry(),
        opentelemetry::trace::SpanBuilder::from_name("caller"),
    );

    for (w, expect_user) in [(&trusted, Some("mallory")), (&edge, None)] {
        let remote: RemoteStage<(), Option<String>> =
            WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
                .unwrap()
                .stage(StageDescriptor::new("whoami", StageKind::Custom));
        let user = remote.run((), &caller).await.unwrap();
        assert_eq!(user.as_deref(), expect_user);
    }
    caller.end_span();
    trusted.stop().await;
    edge.stop().await;

    let spans = t.spans();
    let caller_trace = caller.otel_context().span().span_context().trace_id();
    let servers: Vec<_> = spans
        .all_named("spanline.worker.v1.StageWorker/Run")
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(servers.len(), 2);
    let (edge_span, trusted_span): (Vec<_>, Vec<_>) = servers
        .into_iter()
        .partition(|s| s.bool_attr("spanline.rpc.untrusted_edge") == Some(true));
    assert_eq!(trusted_span[0].span_context.trace_id(), caller_trace);
    let e = edge_span[0];
    assert_ne!(e.span_context.trace_id(), caller_trace, "new root");
    assert_eq!(e.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_eq!(e.links.len(), 1);
    assert_eq!(
        e.links.links[0].span_context.trace_id(),
        caller_trace,
        "linked to the caller"
    );
    assert!(e.str_attr("user.id").as_deref().is_none());
}
