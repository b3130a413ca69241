//! Deadline exceeded, oversize messages, content-off canary, cancellation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::SpanKind;
use spanline_core::{
    ErrorKind, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
use spanline_testkit::{SpanDataExt, TestTelemetry};

const CANARY: &str = "CANARY-7f3a-secret-prompt";

fn slow() -> impl Stage<Input = u64, Output = u64> {
    stage_fn(
        StageDescriptor::new("slow", StageKind::Custom),
        |ms: u64, _| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, StageError>(ms)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exceeded_is_typed_and_sent_as_grpc_timeout() {
    let t = TestTelemetry::new();
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(slow()).build())).await;
    let remote: RemoteStage<u64, u64> = WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("slow", StageKind::Custom));
    // Warm the connection so the deadline is spent on the server.
    assert_eq!(remote.run(0, &RequestContext::new()).await.unwrap(), 0);
    let ctx = RequestContext::new().with_timeout(Duration::from_millis(100));
    let err = remote.run(5_000, &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    // Already expired: no call at all.
    let expired = RequestContext::new().with_timeout(Duration::ZERO);
    assert_eq!(
        remote.run(1, &expired).await.unwrap_err().kind(),
        ErrorKind::DeadlineExceeded
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.stop().await;
    // The server's work did not run to completion: it ended at its own copy
    // of the deadline (grpc-timeout) or was cancelled when the client's
    // local timer fired first and dropped the call. Both timers are set to
    // the same deadline, so which fires first depends on machine speed.
    let spans = t.spans();
    let server_stage = spans
        .all_named("spanline.stage slow")
        .into_iter()
        .find(|s| {
            matches!(
                s.str_attr("error.type").as_deref(),
                Some("deadline_exceeded" | "cancelled")
            )
        });
    assert!(server_stage.is_some(), "{:?}", spans.names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_message_is_a_typed_error() {
    let t = TestTelemetry::new();
    let echo = stage_fn(
        StageDescriptor::new("echo", StageKind::Custom),
        |s: String, _| async move { Ok::<_, StageError>(s) },
    );
    let w = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stage(echo)
            .max_message_size(1024)
            .build()
    }))
    .await;
    let channel = WorkerChannel::connect_lazy(&w.uri(), t.telemetry()).unwrap();
    // Client-side limit: refused before sending.
    let small: RemoteStage<String, String> = channel
        .clone()
        .max_message_size(512)
        .stage(StageDescriptor::new("echo", StageKind::Custom));
    let err = small
        .run("x".repeat(600), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // Server-side limit: the worker refuses it.
    let big: RemoteStage<String, String> =
        channel.stage(StageDescriptor::new("echo", StageKind::Custom));
    let err = big
        .run("x".repeat(4096), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err:?}");
    // And a small one still works on the same channel.
    assert_eq!(
        big.run("ok".into(), &RequestContext::new()).await.unwrap(),
        "ok"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_off_canary_absent_from_status_and_spans() {
    let t = TestTelemetry::new();
    let leaky = stage_fn(
        StageDescriptor::new("leaky", StageKind::Generate),
        |prompt: String, _| async move {
            Err::<String, _>(StageError::model(format!("model choked on {prompt}")))
        },
    );
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(leaky).build())).await;
    let remote: RemoteStage<String, String> = WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("leaky", StageKind::Generate));
    let err = remote
        .run(CANARY.to_owned(), &RequestContext::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Model,
        "kind restored from the trailer"
    );
    assert!(!err.message().contains(CANARY), "{}", err.message());
    // Undecodable payload: the status message quotes no payload.
    let wrong: RemoteStage<u64, String> = WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("leaky", StageKind::Generate));
    let err = wrong.run(7, &RequestContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    w.stop().await;
    let spans = t.spans();
    assert!(!spans.contain_text(CANARY));
    let server = spans
        .all_named("spanline.worker.v1.StageWorker/Run")
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    assert_eq!(
        server.str_attr("rpc.status_code").as_deref(),
        Some("INTERNAL")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_caller_cancels_the_worker() {
    let t = TestTelemetry::new();
    let finished = Arc::new(AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Notify::new());
    let (f, s) = (finished.clone(), started.clone());
    let long = stage_fn(
        StageDescriptor::new("long", StageKind::Custom),
        move |_: u64, _| {
            let (f, s) = (f.clone(), s.clone());
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_secs(5)).await;
                f.store(true, Ordering::SeqCst);
                Ok::<_, StageError>(0u64)
            }
        },
    );
    let w = common::start(t.build(|| Worker::builder(t.telemetry()).stage(long).build())).await;
    let remote: RemoteStage<u64, u64> = WorkerChannel::connect_lazy(&w.uri(), t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("long", StageKind::Custom));
    let call = tokio::spawn(async move { remote.run(1, &RequestContext::new()).await });
    started.notified().await;
    call.abort();
    let _ = call.await;
    // Wait (bounded) for the server span to end.
    let mut server = None;
    for _ in 0..100 {
        server = t
            .spans()
            .0
            .into_iter()
            .find(|s| s.span_kind == SpanKind::Server);
        if server.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server = server.expect("server span ended");
    assert_eq!(
        server.str_attr("rpc.status_code").as_deref(),
        Some("CANCELLED")
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "the worker's work was dropped"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_for_the_drain_timeout_then_cancels_what_is_left() {
    let t = TestTelemetry::new();
    let entered = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (e, d) = (entered.clone(), dropped.clone());
    // A stage that never finishes on its own; it notes that it started and
    // that it was dropped.
    let stuck = stage_fn(
        StageDescriptor::new("stuck", StageKind::Custom),
        move |x: u64, _| {
            e.store(true, Ordering::SeqCst);
            let guard = DropFlag(d.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, StageError>(x)
            }
        },
    );
    let worker = t.build(|| {
        Worker::builder(t.telemetry())
            .stage(stuck)
            .drain_timeout(Duration::from_millis(200))
            .build()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(worker.serve(listener, async {
        let _ = stopped.await;
    }));
    let remote: RemoteStage<u64, u64> = WorkerChannel::connect_lazy(&uri, t.telemetry())
        .unwrap()
        .stage(StageDescriptor::new("stuck", StageKind::Custom));
    let call = tokio::spawn(async move { remote.run(1, &RequestContext::new()).await });
    // Shut down once the call is running on the worker.
    for _ in 0..3000 {
        if entered.load(Ordering::SeqCst) {
            break;
        }
        // allow-sleep: polling for the call to arrive, bounded by the loop.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        entered.load(Ordering::SeqCst),
        "the call reached the worker"
    );
    let _ = stop.send(());
    // Without the drain deadline this waits for ever: the call never ends.
    let served = tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    let err = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the caller is released")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the stuck handler was cancelled"
    );
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
