//! Fan-out over three workers; failover when a worker is stopped mid-call;
//! aborting a worker's server closes its connections.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanBuilder, SpanKind};
use spanline_core::{
    ErrorKind, RequestContext, Stage, StageDescriptor, StageError, StageKind, stage_fn,
};
use spanline_grpc::{PoolConfig, RemoteStage, Worker, WorkerChannel, WorkerPool};
use spanline_testkit::{SpanDataExt, TestTelemetry};

fn square() -> impl Stage<Input = u64, Output = u64> {
    stage_fn(
        StageDescriptor::new("square", StageKind::Custom),
        |n: u64, _| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, StageError>(n * n)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_over_three_workers_with_correct_parents() {
    let t = TestTelemetry::new();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(
            common::start(t.build(|| Worker::builder(t.telemetry()).stage(square()).build())).await,
        );
    }
    let pool = WorkerPool::new(
        workers.iter().map(|w| w.uri()),
        t.telemetry(),
        PoolConfig::default(),
    )
    .unwrap();
    let remote: RemoteStage<u64, u64> =
        pool.stage(StageDescriptor::new("square", StageKind::Custom));

    let tracer = t.telemetry();
    let root = RequestContext::new().start_span(
        &tracer,
        opentelemetry::trace::SpanBuilder::from_name("batch"),
    );
    let out = remote.fan_out(&tracer, (0..12).collect(), &root).await;
    root.end_span();
    let out: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(out, (0..12u64).map(|n| n * n).collect::<Vec<_>>());
    for w in workers {
        w.stop().await;
    }

    let spans = t.spans();
    assert_eq!(spans.trace_ids().len(), 1);
    let root = spans.named("batch");
    let items = spans.children_of(root);
    assert_eq!(items.len(), 12);
    let mut indices = HashSet::new();
    let mut ports = HashSet::new();
    for item in items {
        indices.insert(item.i64_attr("spanline.batch.index").unwrap());
        assert_eq!(item.i64_attr("spanline.batch.size"), Some(12));
        // Each item's CLIENT call is its child, and the worker's SERVER span
        // is the call's child.
        let calls = spans.children_of(item);
        assert_eq!(calls.len(), 1);
        let call = calls[0];
        assert_eq!(call.span_kind, SpanKind::Client);
        ports.insert(call.i64_attr("server.port").unwrap());
        let server = spans.children_of(call);
        assert_eq!(server.len(), 1);
        assert_eq!(server[0].span_kind, SpanKind::Server);
    }
    assert_eq!(indices.len(), 12);
    assert!(ports.len() >= 2, "the balancer spread the batch: {ports:?}");
}

/// A stage that never finishes (within the test), counting its calls.
fn hang(started: Arc<AtomicUsize>) -> impl Stage<Input = u64, Output = u64> {
    stage_fn(
        StageDescriptor::new("square", StageKind::Custom),
        move |n: u64, _| {
            started.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, StageError>(n)
            }
        },
    )
}

/// Wait (generously) until `started` reaches `n`.
async fn wait_for(started: &AtomicUsize, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while started.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the worker received the call");
}

const RUN: &str = "spanline.worker.v1.StageWorker/Run";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_worker_fails_over() {
    let t = TestTelemetry::new();
    let started = Arc::new(AtomicUsize::new(0));
    // The doomed worker runs like another process (its own runtime and
    // thread): killing it drops every socket, as process death would.
    let doomed = common::start_isolated(t.build(|| {
        Worker::builder(t.telemetry())
            .stage(hang(started.clone()))
            .build()
    }));
    let doomed_port = i64::from(doomed.addr.port());
    let healthy =
        common::start(t.build(|| Worker::builder(t.telemetry()).stage(square()).build())).await;
    let healthy_port = i64::from(healthy.addr.port());
    // A third endpoint nobody listens on (unreachable from the start).
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_uri = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = PoolConfig {
        ejection: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    let pool = WorkerPool::new(
        [doomed.uri(), healthy.uri(), dead_uri],
        t.telemetry(),
        config,
    )
    .unwrap();
    let remote: RemoteStage<u64, u64> =
        pool.stage(StageDescriptor::new("square", StageKind::Custom));

    // Start calls (each under its own root span) until the doomed worker
    // holds at least two of them, then kill it while they are in flight.
    let tel = t.telemetry();
    let mut calls = Vec::new();
    while started.load(Ordering::SeqCst) < 2 {
        assert!(
            calls.len() < 200,
            "the balancer never chose the doomed worker"
        );
        let n = calls.len() as u64;
        let r = remote.clone();
        let ctx = RequestContext::new().start_span(&tel, SpanBuilder::from_name("call"));
        calls.push(tokio::spawn(async move {
            let out = r.run(n, &ctx).await;
            ctx.end_span();
            out
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for(&started, 2).await;
    doomed.kill();
    for (n, c) in calls.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("a call in flight on the killed worker failed over")
            .unwrap();
        assert_eq!(got.unwrap(), (n * n) as u64, "call {n}");
    }
    // With two of three ejected, further calls go to the healthy worker.
    for n in 0..5u64 {
        assert_eq!(remote.run(n, &RequestContext::new()).await.unwrap(), n * n);
    }
    healthy.stop().await;

    let spans = t.spans();
    let attempts: Vec<_> = spans
        .all_named(RUN)
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    let on_doomed: Vec<_> = attempts
        .iter()
        .filter(|s| s.i64_attr("server.port") == Some(doomed_port))
        .collect();
    assert!(on_doomed.len() >= 2, "the killed worker's calls are spans");
    for failed in on_doomed {
        assert_eq!(
            failed.str_attr("rpc.status_code").as_deref(),
            Some("UNAVAILABLE")
        );
        // The same call was retried on the healthy worker and succeeded:
        // a sibling attempt under the same root.
        let root = spans.parent_of(failed).expect("a call root");
        assert_eq!(root.name, "call");
        let ok = spans.children_of(root).into_iter().any(|s| {
            s.i64_attr("server.port") == Some(healthy_port)
                && s.str_attr("rpc.status_code").as_deref() == Some("OK")
        });
        assert!(ok, "the failed attempt was retried on the healthy worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_serve_closes_its_connections() {
    let t = TestTelemetry::new();
    let started = Arc::new(AtomicUsize::new(0));
    let worker = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stage(hang(started.clone()))
            .build()
    }))
    .await;
    let channel = WorkerChannel::connect_lazy(&worker.uri(), t.telemetry()).unwrap();
    let remote: RemoteStage<u64, u64> =
        channel.stage(StageDescriptor::new("square", StageKind::Custom));
    let call = tokio::spawn(async move { remote.run(3, &RequestContext::new()).await });
    wait_for(&started, 1).await;
    // Aborting the server task closes the connection it accepted (tonic
    // runs connections in their own tasks; serve ties them to itself).
    worker.kill();
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends when the worker's server is aborted")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let spans = t.spans();
    let client = spans
        .all_named(RUN)
        .into_iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .expect("a CLIENT span");
    assert_eq!(
        client.str_attr("rpc.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
}

/// A TCP proxy that can freeze: once frozen it forwards nothing more but
/// keeps both sockets open (a host that vanished without FIN or RST).
async fn freezable_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pipe(ri, wo, f.clone()));
            tokio::spawn(pipe(ro, wi, f.clone()));
        }
    });
    (uri, frozen)
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Swallow everything from now on, holding both sockets open.
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_detects_a_silent_worker() {
    let t = TestTelemetry::new();
    let started = Arc::new(AtomicUsize::new(0));
    let silent = common::start(t.build(|| {
        Worker::builder(t.telemetry())
            .stage(hang(started.clone()))
            .build()
    }))
    .await;
    let (silent_uri, frozen) = freezable_proxy(silent.addr).await;
    let healthy =
        common::start(t.build(|| Worker::builder(t.telemetry()).stage(square()).build())).await;
    let config = PoolConfig {
        ejection: Duration::from_secs(30),
        keep_alive_interval: Some(Duration::from_millis(200)),
        keep_alive_timeout: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let pool = WorkerPool::new([silent_uri, healthy.uri()], t.telemetry(), config).unwrap();
    let remote: RemoteStage<u64, u64> =
        pool.stage(StageDescriptor::new("square", StageKind::Custom));

    let mut calls = Vec::new();
    while started.load(Ordering::SeqCst) < 1 {
        assert!(
            calls.len() < 200,
            "the balancer never chose the silent worker"
        );
        let n = calls.len() as u64;
        let r = remote.clone();
        calls.push(tokio::spawn(async move {
            r.run(n, &RequestContext::new()).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The worker's host "vanishes": no FIN, no RST, no more bytes. Only the
    // unanswered keepalive ping can tell.
    frozen.store(true, Ordering::SeqCst);
    for (n, c) in calls.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("keepalive ended the call on the silent worker")
            .unwrap();
        assert_eq!(got.unwrap(), (n * n) as u64, "call {n}");
    }
    healthy.stop().await;
    silent.kill();
}
