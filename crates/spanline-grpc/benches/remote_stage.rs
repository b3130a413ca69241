//! Traced remote stage vs raw tonic unary on loopback (current-thread
//! runtime), and fan-out throughput over 1, 2 and 4 workers.
//!
//! Telemetry is built as `spanline::telemetry::init()` builds it
//! (`TelemetryBuilder::from_env()`: spanline's `BoundedBatchProcessor` with
//! a discarding exporter, the Prometheus recorder, always-on sampler, no
//! global state); every histogram handle is registered with that shipped
//! recorder. `traced_remote_stage_sdk_batch` is the reference row: the same
//! traced call with the SDK's own `BatchSpanProcessor` in place of
//! spanline's.
//!
//! Every unary variant puts the same 66 bytes on the wire (a 64-character
//! string as JSON, encoded once for the raw client) and gets them back.
//! The per-call p50 with all variants interleaved, and the SDK's own
//! floor, are in `benches/unary_p50.rs`.

mod support;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::Stream;
use spanline_core::{
    RequestContext, Stage, StageDescriptor, StageError, StageKind, Telemetry, stage_fn,
};
use spanline_grpc::proto::stage_worker_server::{StageWorker, StageWorkerServer};
use spanline_grpc::proto::{GenerateChunk, RunRequest, RunResponse};
use spanline_grpc::wire::Raw;
use spanline_grpc::{PoolConfig, RemoteStage, Worker, WorkerChannel, WorkerPool};
use support::{connect_uri, echo, echo_bytes, sdk_batch, shipped};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The bare baseline: echoes the payload, no layers.
#[derive(Clone)]
struct RawEcho;

#[tonic::async_trait]
impl StageWorker for RawEcho {
    async fn run(&self, r: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        Ok(Response::new(RunResponse {
            payload: r.into_inner().payload,
        }))
    }
    type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateChunk, Status>> + Send>>;
    async fn generate(
        &self,
        _: Request<RunRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        Err(Status::unimplemented(""))
    }
}

fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let s = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((s, l))
    })
}

fn work() -> impl Stage<Input = u64, Output = u64> {
    stage_fn(
        StageDescriptor::new("work", StageKind::Custom),
        |n: u64, _| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, StageError>(n)
        },
    )
}

fn unary(c: &mut Criterion) {
    unary_group(c, "grpc_unary_loopback");
}

fn unary_group<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = shipped();
    let telemetry = guard.telemetry();
    let reference = sdk_batch();
    let sdk = Telemetry::from_provider(&reference);
    let recorder = guard
        .metrics_recorder()
        .expect("prometheus is on by default");
    let payload = "x".repeat(64);
    let json = Bytes::from(serde_json::to_vec(&payload).unwrap());
    // Every handle is registered with the shipped recorder while the
    // variants are built.
    let (raw, traced, raw_to_worker, untraced, traced_raw, traced_sdk) =
        metrics::with_local_recorder(recorder, || {
            rt.block_on(async {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let raw_addr = l.local_addr().unwrap();
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(StageWorkerServer::new(RawEcho))
                        .serve_with_incoming(incoming(l)),
                );
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap();
                // A worker as deployed: the stage in its layer (CLIENT, SERVER and
                // the worker's stage span per call).
                let worker = Worker::builder(telemetry.clone()).stage(echo()).build();
                tokio::spawn(worker.serve(l, std::future::pending()));
                let raw = connect_uri(&format!("http://{raw_addr}")).await;
                let traced: RemoteStage<String, String> =
                    WorkerChannel::connect_lazy(&format!("http://{addr}"), telemetry.clone())
                        .unwrap()
                        .stage(StageDescriptor::new("echo", StageKind::Custom));
                // Decomposition: the bare client against the traced worker (the
                // server side's cost), and the remote stage with telemetry off on
                // both sides (the plumbing's cost: JSON, boxing, layers).
                let raw_to_worker = connect_uri(&format!("http://{addr}")).await;
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let off_addr = l.local_addr().unwrap();
                let worker = Worker::builder(Telemetry::disabled()).stage(echo()).build();
                tokio::spawn(worker.serve(l, std::future::pending()));
                let untraced: RemoteStage<String, String> = WorkerChannel::connect_lazy(
                    &format!("http://{off_addr}"),
                    Telemetry::disabled(),
                )
                .unwrap()
                .stage(StageDescriptor::new("echo", StageKind::Custom));
                // The same bytes in the `Raw` wire format: no JSON on either side.
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let raw_fmt_addr = l.local_addr().unwrap();
                let worker = Worker::builder(telemetry.clone())
                    .stage_in(Raw, echo_bytes())
                    .build();
                tokio::spawn(worker.serve(l, std::future::pending()));
                let traced_raw: RemoteStage<Bytes, Bytes, Raw> = WorkerChannel::connect_lazy(
                    &format!("http://{raw_fmt_addr}"),
                    telemetry.clone(),
                )
                .unwrap()
                .stage_in(Raw, StageDescriptor::new("echo", StageKind::Custom));
                // The reference: the same traced call, SDK batch processor.
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let sdk_addr = l.local_addr().unwrap();
                let worker = Worker::builder(sdk.clone()).stage(echo()).build();
                tokio::spawn(worker.serve(l, std::future::pending()));
                let traced_sdk: RemoteStage<String, String> =
                    WorkerChannel::connect_lazy(&format!("http://{sdk_addr}"), sdk.clone())
                        .unwrap()
                        .stage(StageDescriptor::new("echo", StageKind::Custom));
                (raw, traced, raw_to_worker, untraced, traced_raw, traced_sdk)
            })
        });
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("raw_tonic", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw.clone();
            let payload = json.clone();
            async move {
                raw.run(RunRequest {
                    stage: "echo".into(),
                    payload,
                })
                .await
                .unwrap()
            }
        })
    });
    g.bench_function("raw_client_to_traced_worker", |b| {
        b.to_async(&rt).iter(|| {
            let mut raw = raw_to_worker.clone();
            let payload = json.clone();
            async move {
                raw.run(RunRequest {
                    stage: "echo".into(),
                    payload,
                })
                .await
                .unwrap()
            }
        })
    });
    let ctx = RequestContext::new();
    g.bench_function("untraced_remote_stage", |b| {
        b.to_async(&rt).iter(|| {
            let untraced = untraced.clone();
            let payload = payload.clone();
            let ctx = ctx.clone();
            async move { untraced.run(payload, &ctx).await.unwrap() }
        })
    });
    g.bench_function("traced_remote_stage", |b| {
        b.to_async(&rt).iter(|| {
            let traced = traced.clone();
            let payload = payload.clone();
            let ctx = ctx.clone();
            async move { traced.run(payload, &ctx).await.unwrap() }
        })
    });
    g.bench_function("traced_remote_stage_raw_format", |b| {
        b.to_async(&rt).iter(|| {
            let traced = traced_raw.clone();
            let payload = json.clone();
            let ctx = ctx.clone();
            async move { traced.run(payload, &ctx).await.unwrap() }
        })
    });
    g.bench_function("traced_remote_stage_sdk_batch", |b| {
        b.to_async(&rt).iter(|| {
            let traced = traced_sdk.clone();
            let payload = payload.clone();
            let ctx = ctx.clone();
            async move { traced.run(payload, &ctx).await.unwrap() }
        })
    });
    g.finish();
    drop(rt);
    drop(guard);
    let _ = reference.shutdown();
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guard = shipped();
    let telemetry = guard.telemetry();
    let recorder = guard
        .metrics_recorder()
        .expect("prometheus is on by default");
    let mut g = c.benchmark_group("grpc_fan_out");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    const BATCH: usize = 32;
    g.throughput(Throughput::Elements(BATCH as u64));
    for workers in [1usize, 2, 4] {
        let remote: RemoteStage<u64, u64> = metrics::with_local_recorder(recorder, || {
            rt.block_on(async {
                let mut uris = Vec::new();
                for _ in 0..workers {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    uris.push(format!("http://{}", l.local_addr().unwrap()));
                    // Each worker serves one call at a time (a model worker).
                    let worker = Worker::builder(Telemetry::disabled())
                        .stage_as("work", Serial::new(work()))
                        .build();
                    tokio::spawn(worker.serve(l, std::future::pending()));
                }
                WorkerPool::new(uris, telemetry.clone(), PoolConfig::default())
                    .unwrap()
                    .stage(StageDescriptor::new("work", StageKind::Custom))
            })
        });
        let ctx = RequestContext::new();
        g.bench_with_input(BenchmarkId::new("workers", workers), &workers, |b, _| {
            b.to_async(&rt).iter(|| {
                let remote = remote.clone();
                let ctx = ctx.clone();
                let telemetry = telemetry.clone();
                async move {
                    remote
                        .fan_out(&telemetry, (0..BATCH as u64).collect(), &ctx)
                        .await
                }
            })
        });
    }
    g.finish();
}

/// Serialises a stage's calls (one model instance per worker).
struct Serial<S> {
    stage: S,
    lock: tokio::sync::Mutex<()>,
}

impl<S> Serial<S> {
    fn new(stage: S) -> Self {
        Serial {
            stage,
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

#[async_trait::async_trait]
impl<S: Stage> Stage for Serial<S> {
    type Input = S::Input;
    type Output = S::Output;
    fn describe(&self) -> StageDescriptor {
        self.stage.describe()
    }
    async fn run(&self, input: S::Input, ctx: &RequestContext) -> Result<S::Output, StageError> {
        let _one = self.lock.lock().await;
        self.stage.run(input, ctx).await
    }
}

criterion_group!(benches, unary, fan_out);
criterion_main!(benches);
