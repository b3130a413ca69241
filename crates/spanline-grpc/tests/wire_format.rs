//! Wire formats: `Raw` passes bytes through untouched (any bytes, not only
//! UTF-8), a stage hosted in one format refuses a payload in another with a
//! typed error, and the span tree is the same in every format.

mod common;

use bytes::Bytes;
use opentelemetry::trace::SpanKind;
use spanline_core::{
    ErrorKind, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::wire::Raw;
use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
use spanline_testkit::{SpanDataExt, TestTelemetry};

fn reverse_bytes() -> impl Stage<Input = Bytes, Output = Vec<u8>> {
    stage_fn(
        StageDescriptor::new("reverse", StageKind::Custom),
        |b: Bytes, _| async move { Ok::<_, StageError>(b.iter().rev().copied().collect::<Vec<u8>>()) },
    )
}

fn count() -> impl Stage<Input = Vec<u64>, Output = usize> {
    stage_fn(
        StageDescriptor::new("count", StageKind::Custom),
        |v: Vec<u64>, _| async move { Ok::<_, StageError>(v.len()) },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_pass_through_and_json_still_works() {
    let t = TestTelemetry::new();
    let w = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stage_in(Raw, reverse_bytes())
            .stage(count())
            .build()
    }))
    .await;
    let channel = WorkerChannel::connect_lazy(&w.uri(), t.telemetry()).unwrap();
    let raw: RemoteStage<Bytes, Bytes, Raw> =
        channel.stage_in(Raw, StageDescriptor::new("reverse", StageKind::Custom));
    let json: RemoteStage<Vec<u64>, usize> =
        channel.stage(StageDescriptor::new("count", StageKind::Custom));

    // Not UTF-8, not JSON: the bytes arrive and return as they are.
    let input = Bytes::from_static(b"\x00\xff\xfe{\"");
    let out = raw.run(input, &RequestContext::new()).await.unwrap();
    assert_eq!(&out[..], b"\"{\xfe\xff\x00");
    assert_eq!(
        json.run(vec![1, 2, 3], &RequestContext::new())
            .await
            .unwrap(),
        3
    );

    // Bytes that are not JSON, sent to the JSON-hosted stage: a typed
    // error, never a panic.
    let wrong: RemoteStage<Bytes, Bytes, Raw> =
        channel.stage_in(Raw, StageDescriptor::new("count", StageKind::Custom));
    let err = wrong
        .run(Bytes::from_static(b"\xff not json"), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    w.stop().await;
    let spans = t.spans();
    // Raw or JSON, the worker's stage span is a child of its SERVER span.
    for name in ["spanline.stage reverse", "spanline.stage count"] {
        let stage = spans
            .all_named(name)
            .into_iter()
            .find(|s| s.i64_attr("spanline.step.index") == Some(0))
            .unwrap_or_else(|| panic!("{name}: {:?}", spans.names()));
        assert_eq!(spans.parent_of(stage).unwrap().span_kind, SpanKind::Server);
    }
}
