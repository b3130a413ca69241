//! `Generate` / `RemoteStage::stream`: tokens arrive in order, the CLIENT
//! span covers the whole stream, and the stream stays in one trace.

mod common;

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status};
use spanline_core::{RequestContext, StageDescriptor, StageError, StageKind};
use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
use spanline_testkit::{SpanDataExt, TestTelemetry};

const GENERATE: &str = "spanline.worker.v1.StageWorker/Generate";

/// Streams the words of the prompt, one at a time, with a pause between.
fn words(
    prompt: String,
    _ctx: RequestContext,
) -> impl futures_util::Stream<Item = Result<String, StageError>> + Send + 'static {
    let words: Vec<String> = prompt.split(' ').map(str::to_owned).collect();
    futures_util::stream::iter(words).then(|w| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, StageError>(w)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_streams_tokens_in_order_under_one_client_span() {
    let t = TestTelemetry::new();
    let w = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stream("words", words)
            .build()
    }))
    .await;
    let remote: RemoteStage<String, String> = WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("words", StageKind::Generate));
    let tel = t.telemetry();
    let root = RequestContext::new().start_span(&tel, SpanBuilder::from_name("chat"));

    let prompt = "one two three four five six seven eight";
    let mut stream = Box::pin(remote.stream(prompt.to_owned(), &root).await.unwrap());
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, "one");
    // Mid-stream: the CLIENT span is still open.
    let open = t.spans();
    assert!(
        open.all_named(GENERATE)
            .iter()
            .all(|s| s.span_kind != SpanKind::Client),
        "the CLIENT span ended before the stream did"
    );
    let mut tokens = vec![first];
    let mut last_token_at = SystemTime::now();
    while let Some(token) = stream.next().await {
        tokens.push(token.unwrap());
        last_token_at = SystemTime::now();
    }
    drop(stream);
    root.end_span();
    assert_eq!(tokens, prompt.split(' ').collect::<Vec<_>>());
    w.stop().await;

    let spans = t.spans();
    assert_eq!(spans.trace_ids().len(), 1, "one trace across the stream");
    let root = spans.named("chat");
    let client = spans
        .all_named(GENERATE)
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("a CLIENT span");
    let server = spans
        .all_named(GENERATE)
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("a SERVER span");
    assert_eq!(
        spans.parent_of(client).map(|s| s.name.as_ref()),
        Some("chat")
    );
    assert_eq!(client.parent_span_id, root.span_context.span_id());
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert_eq!(client.str_attr("rpc.status_code").as_deref(), Some("OK"));
    assert_eq!(server.str_attr("rpc.status_code").as_deref(), Some("OK"));
    assert_eq!(client.status, Status::Unset);
    // The CLIENT span covers the stream: it ended with the trailers, after
    // the last token had arrived, and it encloses the SERVER span's start.
    assert!(client.end_time >= last_token_at);
    assert!(client.start_time <= server.start_time);
    assert!(
        client.end_time.duration_since(client.start_time).unwrap() >= Duration::from_millis(70),
        "eight tokens 10 ms apart fit inside the CLIENT span"
    );
}
