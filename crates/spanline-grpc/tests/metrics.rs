//! Counters, through a process-wide debugging recorder (this test binary's
//! own): the non-ASCII skip counter and the retry budget.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use opentelemetry::propagation::Injector;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use spanline_core::semconv::{metric, rpc};
use spanline_core::{
    ErrorKind, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::carrier::MetadataInjector;
use spanline_grpc::proto::RunRequest;
use spanline_grpc::proto::stage_worker_client::StageWorkerClient;
use spanline_grpc::{PoolConfig, RemoteStage, Worker, WorkerPool};
use spanline_testkit::{SpanDataExt, TestTelemetry};

/// The global recorder, installed once for this binary.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder in this binary");
        snapshotter
    })
}

/// The total of counter `name{reason=reason}` so far (0 if never touched).
/// Snapshots drain counters, so every snapshot is folded into running
/// totals shared by the tests of this binary.
fn counter(name: &str, reason: &str) -> u64 {
    static TOTALS: Mutex<Vec<(String, String, u64)>> = Mutex::new(Vec::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key = key.key();
        let label = key
            .labels()
            .find(|l| l.key() == metric::LABEL_REASON)
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        match totals
            .iter_mut()
            .find(|(k, l, _)| k == key.name() && *l == label)
        {
            Some((_, _, total)) => *total += n,
            None => totals.push((key.name().to_owned(), label, n)),
        }
    }
    totals
        .iter()
        .find(|(k, l, _)| k == name && l == reason)
        .map_or(0, |(.., total)| *total)
}

fn non_ascii() -> u64 {
    counter(metric::CARRIER_REJECTED, rpc::REASON_NON_ASCII)
}

fn echo() -> impl Stage<Input = (), Output = ()> {
    stage_fn(
        StageDescriptor::new("echo", StageKind::Custom),
        |_: (), _| async move { Ok::<_, StageError>(()) },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_values_are_skipped_and_counted() {
    let _ = snapshotter();
    // Outbound: each value that cannot be gRPC metadata is skipped and
    // counted once.
    let before = non_ascii();
    let mut map = tonic::metadata::MetadataMap::new();
    MetadataInjector(&mut map).set("baggage", "user.id=j\u{f6}rg".into());
    MetadataInjector(&mut map).set("tracestate", "k=\u{2603}".into());
    MetadataInjector(&mut map).set("x-trace-bin", "AAAA".into());
    MetadataInjector(&mut map).set("x-fine", "fine".into());
    assert_eq!(non_ascii() - before, 3);
    assert!(map.get("baggage").is_none());
    assert_eq!(map.len(), 1);

    // Inbound, end to end: a worker receiving a non-ASCII `traceparent` and
    // `baggage` counts each once and still serves the call.
    let t = TestTelemetry::new();
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(echo()).build())).await;
    let mut client = StageWorkerClient::connect(w.uri()).await.unwrap();
    let mut request = tonic::Request::new(RunRequest {
        stage: "echo".into(),
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
    let before = non_ascii();
    let response = client.run(request).await.unwrap();
    assert_eq!(&response.into_inner().payload[..], b"null");
    assert_eq!(non_ascii() - before, 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_when_the_budget_is_exhausted() {
    let _ = snapshotter();
    let t = TestTelemetry::new();
    // A worker that answers UNAVAILABLE while `down` is set.
    let down = Arc::new(AtomicBool::new(false));
    let flaky = {
        let down = down.clone();
        stage_fn(
            StageDescriptor::new("flaky", StageKind::Custom),
            move |_: (), _| {
                let down = down.load(Ordering::SeqCst);
                async move {
                    if down {
                        Err(StageError::unavailable("model reloading"))
                    } else {
                        Ok(())
                    }
                }
            },
        )
    };
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(flaky).build())).await;
    // No reserve (min_per_sec 0), one retry per success (100 %), a 60 s
    // window (the longest tower allows: nothing expires during the test).
    let config = PoolConfig {
        max_attempts: Some(3),
        retry_budget: Some((Duration::from_secs(60), 0, 1.0)),
        ..PoolConfig::default()
    };
    let pool = WorkerPool::new([w.uri()], t.telemetry(), config).unwrap();
    let remote: RemoteStage<(), ()> = pool.stage(StageDescriptor::new("flaky", StageKind::Custom));
    let tel = t.telemetry();
    let call = |name: &'static str| {
        let remote = remote.clone();
        let ctx = RequestContext::new().start_span(&tel, SpanBuilder::from_name(name));
        async move {
            let out = remote.run((), &ctx).await;
            ctx.end_span();
            out
        }
    };

    // Two successes deposit two retries.
    call("ok-1").await.unwrap();
    call("ok-2").await.unwrap();
    down.store(true, Ordering::SeqCst);
    let retried = counter(rpc::POOL_RETRIES, rpc::REASON_UNAVAILABLE);
    let refused = counter(rpc::POOL_RETRIES, rpc::REASON_BUDGET_EXHAUSTED);
    // The first failing call spends both (three attempts, max_attempts).
    let err = call("spends-budget").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    // The budget is empty: the next call is not retried.
    let err = call("budget-empty").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        counter(rpc::POOL_RETRIES, rpc::REASON_UNAVAILABLE) - retried,
        2
    );
    assert_eq!(
        counter(rpc::POOL_RETRIES, rpc::REASON_BUDGET_EXHAUSTED) - refused,
        1
    );
    // A success refills one retry.
    down.store(false, Ordering::SeqCst);
    call("ok-3").await.unwrap();
    down.store(true, Ordering::SeqCst);
    let err = call("one-retry").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    w.stop().await;

    // Attempts per call, from the CLIENT spans under each call's root.
    let spans = t.spans();
    let attempts = |root: &str| -> Vec<String> {
        spans
            .children_of(spans.named(root))
            .into_iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .map(|s| s.str_attr("rpc.status_code").unwrap_or_default())
            .collect()
    };
    assert_eq!(attempts("ok-1"), ["OK"]);
    assert_eq!(attempts("spends-budget"), ["UNAVAILABLE"; 3]);
    assert_eq!(attempts("budget-empty"), ["UNAVAILABLE"]);
    assert_eq!(attempts("one-retry"), ["UNAVAILABLE"; 2]);
}
