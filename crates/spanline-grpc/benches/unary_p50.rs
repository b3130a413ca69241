//! Per-call p50 of a unary call on loopback: raw tonic vs the remote stage
//! and the SDK's own floor, interleaved so the machine's load drifts over
//! all variants alike (the goal: traced remote stage Δp50 ≤ the floor of
//! three bare SDK spans + W3C, `floor_sdk_3_spans_w3c`, + 2 µs).
//!
//! `cargo bench -p spanline-grpc --bench unary_p50` runs `ROUNDS` rounds;
//! each round runs `PER_ROUND` calls of every variant (the order rotates
//! from round to round) and keeps the wall time of each call. The report is
//! the p50 / p90 / p99 of those per-call times and the p50 difference to
//! `raw_tonic`. One current-thread runtime hosts the clients and servers.
//!
//! Telemetry is built as `spanline::telemetry::init()` builds it
//! (`TelemetryBuilder::from_env()`, spanline's `BoundedBatchProcessor`,
//! the Prometheus recorder), with a discarding exporter in place of OTLP and
//! an always-on sampler, and nothing installed globally. Every histogram
//! handle (client, server, stage, pipeline) is registered with that shipped
//! Prometheus recorder (`metrics::with_local_recorder` while the variants
//! are built). Unless its name ends in `_sdk_batch`, a variant that makes
//! spans makes them through that shipped processor — the SDK floors too, so
//! traced − floor is the layer's own cost.
//!
//! Every variant puts the same 66 bytes on the wire (a 64-character string
//! as JSON) in a `RunRequest` for stage `echo`, and gets them back:
//!
//! - `raw_tonic`: the generated client with the pre-encoded bytes → a bare
//!   tonic echo service (no layers, no JSON).
//! - `floor_sdk_2_spans` / `floor_sdk_3_spans`: `raw_tonic` plus bare SDK
//!   spans where a traced call has them (a CLIENT span around the call; a
//!   SERVER span, and a stage span under it, in the echo handler), with no
//!   propagation, layer or JSON: what the SDK costs in this loop.
//!   `floor_sdk_3_spans_w3c` adds W3C propagation (inject into the
//!   metadata, strict extract in the handler: the SERVER span continues
//!   the caller's trace), still without any spanline layer.
//! - `untraced_*`: `RemoteStage` → `Worker`, `Telemetry::disabled()` on both
//!   sides (the plumbing).
//! - `traced_*`: `RemoteStage` → `Worker::stage`: CLIENT, SERVER and the
//!   worker's stage span, W3C propagation, histograms. `_json` sends the
//!   `String` as JSON (the default wire format), `_raw` sends the same
//!   bytes as `Bytes` in the `Raw` format (no encoding on either side).
//! - `traced_remote_stage_as`: the worker hosts the stage with `stage_as`
//!   (no stage span: CLIENT and SERVER only).
//! - `raw_client_to_traced_worker`: the bare client against the traced
//!   worker (the server side's share).
//! - `traced_in_pipeline`: the remote stage as step 0 of a caller pipeline
//!   (adds the caller's root and stage spans).
//! - Reference rows, `*_sdk_batch`: `floor_sdk_3_spans_w3c` and
//!   `traced_remote_stage_json` with the SDK's own `BatchSpanProcessor`
//!   (same discarding exporter, same recorder) in place of spanline's.
//!
//! After the run the bench prints the shipped processor's export counters
//! (every span exported, none dropped) and how many histogram samples the
//! Prometheus recorder holds.
//!
//! Environment: `SPANLINE_BENCH_ROUNDS` (default 200), `SPANLINE_BENCH_ONLY`
//! (run one variant only, for `perf stat` / callgrind); the `OTEL_*` /
//! `SPANLINE_*` variables `init()` reads.

mod support;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use spanline_core::{
    Pipeline, RequestContext, Stage, StageDescriptor, StageError, StageKind, Telemetry,
};
use spanline_grpc::proto::stage_worker_client::StageWorkerClient;
use spanline_grpc::proto::stage_worker_server::{StageWorker, StageWorkerServer};
use spanline_grpc::proto::{GenerateChunk, RunRequest, RunResponse};
use spanline_grpc::wire::Raw;
use spanline_grpc::{RemoteStage, Worker, WorkerChannel};
use spanline_testkit::bench::histogram_samples;
use support::{connect_uri, echo, echo_bytes, sdk_batch, shipped};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const PER_ROUND: usize = 50;

/// The bare baseline: echoes the payload, no layers. With `spans`, it
/// opens bare SDK spans where a traced worker has them (the floor); with
/// `w3c`, the SERVER span's parent is extracted from the metadata.
#[derive(Clone)]
struct Echo {
    spans: Option<(Telemetry, bool)>,
    w3c: bool,
}

fn span(ctx: &RequestContext, t: &Telemetry, name: &'static str, kind: SpanKind) -> RequestContext {
    ctx.start_span(
        t,
        SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(vec![
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", "spanline.worker.v1.StageWorker/Run"),
                KeyValue::new("server.address", "127.0.0.1"),
                KeyValue::new("server.port", 5000i64),
            ]),
    )
}

fn end(ctx: &RequestContext) {
    ctx.otel_context()
        .span()
        .set_attribute(KeyValue::new("rpc.status_code", "OK"));
    ctx.end_span();
}

#[tonic::async_trait]
impl StageWorker for Echo {
    async fn run(&self, r: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let parent = if self.w3c {
            spanline_grpc::carrier::extract_metadata(r.metadata()).into_context()
        } else {
            RequestContext::new()
        };
        let server = self.spans.as_ref().map(|(t, stage_span)| {
            let server = span(&parent, t, "server", SpanKind::Server);
            if *stage_span {
                end(&span(&server, t, "spanline.stage echo", SpanKind::Internal));
            }
            server
        });
        let response = Response::new(RunResponse {
            payload: r.into_inner().payload,
        });
        if let Some(server) = server {
            end(&server);
        }
        Ok(response)
    }
    type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateChunk, Status>> + Send>>;
    async fn generate(
        &self,
        _: Request<RunRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        Err(Status::unimplemented(""))
    }
}

async fn echo_server(echo: Echo) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(l, |l| async move {
        let s = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((s, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StageWorkerServer::new(echo))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

async fn worker(w: Worker) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(w.serve(l, std::future::pending()));
    format!("http://{addr}")
}

type BoxedRun = Pin<Box<dyn std::future::Future<Output = Result<String, StageError>>>>;

enum Variant {
    /// The generated client; with a telemetry handle, inside a bare CLIENT
    /// span.
    Raw(StageWorkerClient<Channel>, Option<Telemetry>, bool),
    Json(RemoteStage<String, String>),
    Raw2(RemoteStage<Bytes, Bytes, Raw>),
    InPipeline(Box<dyn Fn(String) -> BoxedRun>),
}

struct Input {
    text: String,
    json: Bytes,
    ctx: RequestContext,
}

impl Variant {
    async fn call(&self, input: &Input) {
        match self {
            Variant::Raw(client, spans, w3c) => {
                let client_span = spans
                    .as_ref()
                    .map(|t| span(&input.ctx, t, "client", SpanKind::Client));
                let mut client = client.clone();
                let mut request = Request::new(RunRequest {
                    stage: "echo".into(),
                    payload: input.json.clone(),
                });
                if let (true, Some(s)) = (w3c, &client_span) {
                    spanline_grpc::carrier::inject_metadata(s, request.metadata_mut());
                }
                let r = client.run(request).await.unwrap();
                assert_eq!(r.get_ref().payload.len(), input.json.len());
                if let Some(s) = client_span {
                    end(&s);
                }
            }
            Variant::Json(stage) => {
                let out = stage.run(input.text.clone(), &input.ctx).await.unwrap();
                assert_eq!(out.len(), input.text.len());
            }
            Variant::Raw2(stage) => {
                let out = stage.run(input.json.clone(), &input.ctx).await.unwrap();
                assert_eq!(out.len(), input.json.len());
            }
            Variant::InPipeline(run) => {
                let out = run(input.text.clone()).await.unwrap();
                assert_eq!(out.len(), input.text.len());
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // Criterion-style flags (`--bench`, filters) are accepted and ignored.
    let rounds: usize = std::env::var("SPANLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let only = std::env::var("SPANLINE_BENCH_ONLY").ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = shipped();
    let t = guard.telemetry();
    let provider = sdk_batch();
    let sdk = Telemetry::from_provider(&provider);
    let off = Telemetry::disabled();
    let text = "x".repeat(64);
    let input = Input {
        json: Bytes::from(serde_json::to_vec(&text).unwrap()),
        text,
        ctx: RequestContext::new(),
    };
    let d = || StageDescriptor::new("echo", StageKind::Custom);

    let recorder = guard
        .metrics_recorder()
        .expect("prometheus is on by default");
    // Every handle is registered while the variants are built.
    let variants: Vec<(&str, Variant)> = metrics::with_local_recorder(recorder, || {
        rt.block_on(async {
            let raw = echo_server(Echo {
                spans: None,
                w3c: false,
            })
            .await;
            let floor2 = echo_server(Echo {
                spans: Some((t.clone(), false)),
                w3c: false,
            })
            .await;
            let floor3 = echo_server(Echo {
                spans: Some((t.clone(), true)),
                w3c: false,
            })
            .await;
            let floor3_w3c = echo_server(Echo {
                spans: Some((t.clone(), true)),
                w3c: true,
            })
            .await;
            let floor3_w3c_sdk = echo_server(Echo {
                spans: Some((sdk.clone(), true)),
                w3c: true,
            })
            .await;
            let traced = worker(
                Worker::builder(t.clone())
                    .stage(echo())
                    .stage_as("echo_as", echo())
                    .build(),
            )
            .await;
            let traced_raw = worker(
                Worker::builder(t.clone())
                    .stage_in(Raw, echo_bytes())
                    .build(),
            )
            .await;
            let traced_sdk = worker(Worker::builder(sdk.clone()).stage(echo()).build()).await;
            let untraced = worker(Worker::builder(off.clone()).stage(echo()).build()).await;
            let untraced_raw = worker(
                Worker::builder(off.clone())
                    .stage_in(Raw, echo_bytes())
                    .build(),
            )
            .await;
            let channel =
                |uri: &str, t: &Telemetry| WorkerChannel::connect_lazy(uri, t.clone()).unwrap();
            let traced_json: RemoteStage<String, String> = channel(&traced, &t).stage(d());
            let pipeline = Arc::new(
                Pipeline::builder("caller")
                    .telemetry(t.clone())
                    .then(traced_json.clone())
                    .build(),
            );
            vec![
                (
                    "raw_tonic",
                    Variant::Raw(connect_uri(&raw).await, None, false),
                ),
                (
                    "floor_sdk_2_spans",
                    Variant::Raw(connect_uri(&floor2).await, Some(t.clone()), false),
                ),
                (
                    "floor_sdk_3_spans",
                    Variant::Raw(connect_uri(&floor3).await, Some(t.clone()), false),
                ),
                (
                    "floor_sdk_3_spans_w3c",
                    Variant::Raw(connect_uri(&floor3_w3c).await, Some(t.clone()), true),
                ),
                (
                    "untraced_remote_stage_json",
                    Variant::Json(channel(&untraced, &off).stage(d())),
                ),
                (
                    "untraced_remote_stage_raw",
                    Variant::Raw2(channel(&untraced_raw, &off).stage_in(Raw, d())),
                ),
                ("traced_remote_stage_json", Variant::Json(traced_json)),
                (
                    "traced_remote_stage_raw",
                    Variant::Raw2(channel(&traced_raw, &t).stage_in(Raw, d())),
                ),
                (
                    "traced_remote_stage_as",
                    Variant::Json(channel(&traced, &t).stage(d()).worker_stage("echo_as")),
                ),
                (
                    "raw_client_to_traced_worker",
                    Variant::Raw(connect_uri(&traced).await, None, false),
                ),
                (
                    "traced_in_pipeline",
                    Variant::InPipeline(Box::new(move |input: String| {
                        let p = pipeline.clone();
                        Box::pin(async move { p.run(input, &RequestContext::new()).await })
                            as BoxedRun
                    })),
                ),
                (
                    "floor_sdk_3_spans_w3c_sdk_batch",
                    Variant::Raw(connect_uri(&floor3_w3c_sdk).await, Some(sdk.clone()), true),
                ),
                (
                    "traced_remote_stage_json_sdk_batch",
                    Variant::Json(channel(&traced_sdk, &sdk).stage(d())),
                ),
            ]
        })
    });
    let variants: Vec<_> = variants
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    let mut times: Vec<Vec<Duration>> =
        vec![Vec::with_capacity(rounds * PER_ROUND); variants.len()];
    rt.block_on(async {
        // Warm up: connections, pools, the span processor.
        for (_, v) in &variants {
            for _ in 0..200 {
                v.call(&input).await;
            }
        }
        for round in 0..rounds {
            for k in 0..variants.len() {
                let i = (round + k) % variants.len();
                let v = &variants[i].1;
                for _ in 0..PER_ROUND {
                    let start = Instant::now();
                    v.call(&input).await;
                    times[i].push(start.elapsed());
                }
            }
        }
    });
    let mut p50s = Vec::new();
    for t in &mut times {
        t.sort_unstable();
        p50s.push(percentile(t, 0.5));
    }
    let raw = variants
        .iter()
        .position(|(n, _)| *n == "raw_tonic")
        .map(|i| p50s[i]);
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>12}",
        "variant", "p50 µs", "p90 µs", "p99 µs", "Δp50 µs"
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (i, (name, _)) in variants.iter().enumerate() {
        let t = &times[i];
        let delta = raw.map_or(String::from("-"), |r| {
            format!("{:+.1}", us(p50s[i]) - us(r))
        });
        println!(
            "{:<36} {:>10.1} {:>10.1} {:>10.1} {:>12}",
            name,
            us(p50s[i]),
            us(percentile(t, 0.9)),
            us(percentile(t, 0.99)),
            delta
        );
    }
    println!("calls per variant: {}", rounds * PER_ROUND);
    drop(rt);
    let _ = guard.force_flush();
    println!("shipped processor: {:?}", guard.export_stats());
    let rendered = guard.prometheus().map(|h| h.render()).unwrap_or_default();
    let (series, samples) = histogram_samples(&rendered);
    println!("prometheus recorder: {series} histogram series, {samples} samples");
    drop(guard);
    let _ = provider.shutdown();
}
