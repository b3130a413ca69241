//! The export pipeline as it ships: spans ended through the provider that
//! [`TelemetryBuilder`] builds (the `BoundedBatchProcessor` in front of the
//! real OTLP gRPC and HTTP/protobuf exporters, default batch settings) into
//! a counting OTLP receiver on loopback that decodes every request
//! (`spanline_testkit::otlp`, `start_counting`). The SDK's own
//! `BatchSpanProcessor` with the same exporters is the reference row.
//!
//! A trace is a root and four stage spans, five attributes each.
//!
//! - `export_throughput` (criterion, `iter_custom`): one iteration is one
//!   trace, timed until the collector has decoded its spans; the producer
//!   (the bench thread) waits for room in the queue instead of dropping,
//!   so `Throughput::Elements` is spans received per second. `discard` (same
//!   processor, exporter drops the batch) and `encode` (converts and
//!   protobuf-encodes the batch, no transport) are the bare baselines.
//! - `saturation` (printed table): a producer thread for 2 s, open loop
//!   (flat out, the queue drops what it cannot hold) and closed loop (waits
//!   for room): spans received per second, drops, and CPU per span by thread
//!   (producer, export worker, receiver) from `/proc/self/task/*/schedstat`.
//! - `paced` (printed table): 100k spans/s offered for 3 s, in bursts every
//!   1 ms; drops, and the latency of each stage (a fixed compute loop plus,
//!   when telemetry is on, starting and ending its span) p50/p99/p99.9,
//!   beside the same stages with no telemetry at all.
//!
//! Run with `cargo bench -p spanline-telemetry --bench export`; the tables
//! are skipped under `--test` and `--list`. See `docs/benchmarks.md`,
//! "Export pipeline".

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SpanData, SpanExporter,
};
use prost::Message;
use spanline_core::semconv::{gen_ai, spanline as attr};
use spanline_telemetry::{
    BatchConfig, ExporterKind, OtlpProtocol, TelemetryBuilder, build_otlp_exporter,
};
use spanline_telemetry::{ExportStats, TelemetryGuard};
use spanline_testkit::otlp::{Counted, GrpcReceiver, HttpReceiver};

/// A root and four stages.
const SPANS_PER_TRACE: u64 = 5;
const STAGES: [&str; 4] = ["preprocess", "embed", "retrieve", "rerank"];
/// xorshift rounds of one stage's own work (≈ 1–2 µs here).
const STAGE_ROUNDS: u32 = 1_000;
/// The paced load: `TRACES_PER_TICK` traces every `TICK`, 100k spans/s.
const TICK: Duration = Duration::from_millis(1);
const TRACES_PER_TICK: u64 = 20;
const PACED_FOR: Duration = Duration::from_secs(3);
const SATURATE_FOR: Duration = Duration::from_secs(2);
/// The larger queue tried when the default one drops.
const LARGE_QUEUE: usize = 16_384;
/// How long a run waits for its last spans to reach the collector.
const DRAIN: Duration = Duration::from_secs(30);
const PRODUCER_THREAD: &str = "producer";

// --- the workload -------------------------------------------------------

fn attributes(seq: u64, step: u64) -> Vec<KeyValue> {
    let stage = STAGES[(step as usize).saturating_sub(1) % STAGES.len()];
    vec![
        KeyValue::new(attr::PIPELINE_NAME, "rag"),
        KeyValue::new(attr::STAGE_NAME, stage),
        KeyValue::new(attr::STEP_INDEX, step as i64),
        KeyValue::new(attr::OUTCOME, "ok"),
        KeyValue::new(attr::BATCH_SIZE, (seq % 32) as i64),
    ]
}

/// The stage's own work: a fixed dependent compute loop.
#[inline(never)]
fn stage_work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..STAGE_ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// One trace: a root, then four stages each inside its own span (child of
/// the root). With no tracer the stages run bare. With `latencies`, each
/// stage does its work ([`stage_work`]) and its latency (span start to span
/// end, or the bare work) is recorded; without, the stages are empty (the
/// throughput loads measure span production and export only).
fn run_trace(tracer: Option<&SdkTracer>, seq: u64, mut latencies: Option<&mut Vec<u32>>) {
    let work = latencies.is_some();
    let root = tracer.map(|t| {
        let span = t
            .span_builder(gen_ai::op::INVOKE_WORKFLOW)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes(seq, 0))
            .start(t);
        Context::new().with_span(span)
    });
    for step in 1..SPANS_PER_TRACE {
        let t0 = Instant::now();
        match (tracer, &root) {
            (Some(t), Some(cx)) => {
                let mut span = t
                    .span_builder(gen_ai::op::STAGE)
                    .with_attributes(attributes(seq, step))
                    .start_with_context(t, cx);
                if work {
                    stage_work(seq ^ step);
                }
                span.end();
            }
            _ => {
                stage_work(seq ^ step);
            }
        }
        if let Some(l) = latencies.as_deref_mut() {
            l.push(u32::try_from(t0.elapsed().as_nanos()).unwrap_or(u32::MAX));
        }
    }
    if let Some(cx) = root {
        cx.span().end();
    }
}

// --- what the spans go through -----------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processor {
    /// What `TelemetryBuilder` installs.
    Shipped,
    /// `opentelemetry_sdk::trace::BatchSpanProcessor`, the reference.
    SdkBatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Grpc,
    Http,
    /// The exporter drops the batch: the processor alone.
    Discard,
    /// The exporter converts and encodes the batch as OTLP protobuf and
    /// drops the bytes: the exporter's CPU without transport.
    Encode,
    /// Experiment, not a shipped configuration: OTLP/gRPC with two exports
    /// in flight ([`TwoInFlight`]).
    GrpcTwoInFlight,
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    processor: Processor,
    sink: Sink,
    batch: BatchConfig,
}

impl Setup {
    fn shipped(sink: Sink) -> Self {
        Setup {
            processor: Processor::Shipped,
            sink,
            batch: BatchConfig::default(),
        }
    }
    fn sdk(sink: Sink) -> Self {
        Setup {
            processor: Processor::SdkBatch,
            ..Setup::shipped(sink)
        }
    }
    fn queue(mut self, size: usize) -> Self {
        self.batch.max_queue_size = size;
        self
    }
    fn batch_size(mut self, size: usize) -> Self {
        self.batch.max_export_batch_size = size;
        self
    }
    fn label(&self) -> String {
        let p = match self.processor {
            Processor::Shipped => "shipped",
            Processor::SdkBatch => "sdk_bsp",
        };
        let s = match self.sink {
            Sink::Grpc => "otlp_grpc",
            Sink::Http => "otlp_http",
            Sink::Discard => "discard",
            Sink::Encode => "encode",
            Sink::GrpcTwoInFlight => "otlp_grpc_2_in_flight",
        };
        let d = BatchConfig::default();
        let mut label = format!("{p}/{s}");
        if self.batch.max_queue_size != d.max_queue_size {
            label += &format!("/q{}", self.batch.max_queue_size);
        }
        if self.batch.max_export_batch_size != d.max_export_batch_size {
            label += &format!("/b{}", self.batch.max_export_batch_size);
        }
        label
    }
    /// Spans the producer may have outstanding and still never fill the
    /// queue: the queue less one batch (counted by the collector before
    /// its response frees the batch) and one producer check interval.
    fn room(&self) -> u64 {
        let b = self.batch.normalized();
        (b.max_queue_size.saturating_sub(b.max_export_batch_size) as u64)
            .saturating_sub(CHECK_EVERY * SPANS_PER_TRACE)
            .max(SPANS_PER_TRACE)
    }
}

/// Traces between two checks of the queue's room in a closed loop.
const CHECK_EVERY: u64 = 8;

#[derive(Debug)]
struct DiscardExporter;

impl SpanExporter for DiscardExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// Spans and bytes [`EncodeExporter`] encoded (for bytes per span).
static ENCODED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Converts and encodes like the OTLP exporters, then drops the bytes.
#[derive(Debug)]
struct EncodeExporter {
    resource: ResourceAttributesWithSchema,
}

impl SpanExporter for EncodeExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let resource_spans = group_spans_by_resource_and_scope(batch, &self.resource);
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans,
        };
        let bytes = black_box(request.encode_to_vec());
        ENCODED[0].fetch_add(n, Ordering::Relaxed);
        ENCODED[1].fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

/// What-if for `docs/benchmarks.md`: the shipped worker with two exports in
/// flight. The OTLP/gRPC exporter is built on first use inside the worker's
/// runtime (as `TelemetryBuilder` builds it there); each export is spawned on
/// that runtime and reported done at once, and a third waits until one of
/// two in flight finishes. The processor's `exported` count is therefore
/// early; the collector's count is the one the bench reads.
struct TwoInFlight {
    url: String,
    inner: std::sync::OnceLock<std::sync::Arc<opentelemetry_otlp::SpanExporter>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    resource: Option<Resource>,
}

impl std::fmt::Debug for TwoInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoInFlight")
            .field("url", &self.url)
            .finish()
    }
}

impl TwoInFlight {
    fn new(url: String) -> Self {
        TwoInFlight {
            url,
            inner: std::sync::OnceLock::new(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(2)),
            resource: None,
        }
    }
}

impl SpanExporter for TwoInFlight {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self
            .inner
            .get_or_init(|| {
                let mut e = build_otlp(OtlpProtocol::Grpc, self.url.clone());
                if let Some(r) = &self.resource {
                    e.set_resource(r);
                }
                std::sync::Arc::new(e)
            })
            .clone();
        let permit =
            self.permits.clone().acquire_owned().await.map_err(|e| {
                opentelemetry_sdk::error::OTelSdkError::InternalFailure(e.to_string())
            })?;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = inner.export(batch).await;
        });
        Ok(())
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.resource = Some(resource.clone());
    }
}

/// The OTLP exporter on a tokio runtime of the bench's (as an application
/// hosting the SDK processor has): the SDK processor's thread drives each
/// export with `block_on`, and tonic and hyper need a runtime for their
/// connection tasks.
#[derive(Debug)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    inner: opentelemetry_otlp::SpanExporter,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.handle.block_on(self.inner.export(batch)))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

enum Receiver {
    Grpc(GrpcReceiver),
    Http(HttpReceiver),
}

impl Receiver {
    fn start(sink: Sink) -> Option<Self> {
        match sink {
            Sink::Grpc | Sink::GrpcTwoInFlight => {
                Some(Receiver::Grpc(GrpcReceiver::start_counting()))
            }
            Sink::Http => Some(Receiver::Http(HttpReceiver::start_counting())),
            Sink::Discard | Sink::Encode => None,
        }
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Receiver::Grpc(r) => r.addr,
            Receiver::Http(r) => r.addr,
        }
    }
    fn counted(&self) -> &Counted {
        match self {
            Receiver::Grpc(r) => &r.counted,
            Receiver::Http(r) => &r.counted,
        }
    }
}

/// A running provider, its exporters and the collector they feed.
struct Pipeline {
    setup: Setup,
    // Field order is drop order: telemetry shuts down while its receiver
    // and runtime still run.
    guard: TelemetryGuard,
    tracer: SdkTracer,
    _runtime: Option<tokio::runtime::Runtime>,
    receiver: Option<Receiver>,
}

impl Pipeline {
    fn start(setup: Setup) -> Pipeline {
        let receiver = Receiver::start(setup.sink);
        let protocol = match setup.sink {
            Sink::Http => OtlpProtocol::HttpProtobuf,
            _ => OtlpProtocol::Grpc,
        };
        // Prometheus off: `build()` installs no global recorder, so the
        // processor's counters are no-ops either way; this only spares the
        // upkeep thread.
        let mut builder = TelemetryBuilder::new()
            .service_name("export-bench")
            .prometheus(false)
            .batch(setup.batch)
            .otlp_protocol(protocol)
            .traces_exporters([]);
        if let Some(r) = &receiver {
            builder = builder.otlp_endpoint(format!("http://{}", r.addr()));
        }
        let mut runtime = None;
        builder = match (setup.processor, setup.sink) {
            (Processor::Shipped, Sink::Grpc | Sink::Http) => {
                builder.traces_exporters([ExporterKind::Otlp])
            }
            (Processor::Shipped, Sink::Discard) => builder.span_exporter(DiscardExporter),
            (Processor::Shipped, Sink::GrpcTwoInFlight) => {
                let url = builder.config().otlp_traces_url();
                builder.span_exporter(TwoInFlight::new(url))
            }
            (Processor::Shipped, Sink::Encode) => builder.span_exporter(EncodeExporter {
                resource: (&Resource::builder_empty().build()).into(),
            }),
            (Processor::SdkBatch, Sink::Grpc | Sink::Http) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("bsp-rt")
                    .enable_all()
                    .build()
                    .expect("runtime");
                let exporter = sdk_otlp_exporter(protocol, builder.config().otlp_traces_url(), &rt);
                let b = setup.batch.normalized();
                let bsp = BatchSpanProcessor::builder(exporter)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_max_queue_size(b.max_queue_size)
                            .with_max_export_batch_size(b.max_export_batch_size)
                            .with_scheduled_delay(b.schedule_delay)
                            .build(),
                    )
                    .build();
                runtime = Some(rt);
                builder.span_processor(bsp)
            }
            (Processor::SdkBatch, Sink::Discard | Sink::Encode | Sink::GrpcTwoInFlight) => {
                unreachable!("the SDK reference rows export over OTLP")
            }
        };
        let guard = builder.build().expect("telemetry");
        let tracer = guard
            .tracer_provider()
            .expect("enabled")
            .tracer("export-bench");
        let pipeline = Pipeline {
            setup,
            guard,
            tracer,
            _runtime: runtime,
            receiver,
        };
        // Connect and warm up before anything is timed.
        for i in 0..64 {
            run_trace(Some(&pipeline.tracer), i, None);
        }
        pipeline.drain(64 * SPANS_PER_TRACE);
        pipeline
    }

    /// Spans past the processor: decoded by the collector, or (no
    /// collector) handed to the exporter; plus those the shipped processor
    /// dropped and counted.
    fn settled(&self) -> u64 {
        let stats = self.guard.export_stats();
        match &self.receiver {
            Some(r) => r.counted().spans() + stats.dropped(),
            None => stats.accounted(),
        }
    }

    fn received(&self) -> u64 {
        match &self.receiver {
            Some(r) => r.counted().spans(),
            None => self.guard.export_stats().exported,
        }
    }

    /// Flush and wait until `target` spans are settled: bounded by `DRAIN`,
    /// or, once a flush succeeded, by the count standing still for 200 ms
    /// (the SDK processor's drops are not counted anywhere we can read).
    fn drain(&self, target: u64) -> bool {
        let flushed = self.guard.force_flush().is_ok();
        let deadline = Instant::now() + DRAIN;
        let (mut last, mut since) = (self.settled(), Instant::now());
        while last < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1)); // allow-sleep: polling the collector's count, bounded by DRAIN.
            let now = self.settled();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if flushed && since.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
        last >= target
    }
}

/// The OTLP exporter as `TelemetryBuilder` builds it (inside a runtime).
fn build_otlp(protocol: OtlpProtocol, url: String) -> opentelemetry_otlp::SpanExporter {
    build_otlp_exporter(protocol, url, BatchConfig::default().export_timeout)
        .expect("otlp exporter")
}

/// The OTLP exporter for the SDK processor, on the bench's runtime.
fn sdk_otlp_exporter(
    protocol: OtlpProtocol,
    url: String,
    rt: &tokio::runtime::Runtime,
) -> OnRuntime {
    let inner = rt.block_on(async { build_otlp(protocol, url) });
    OnRuntime {
        handle: rt.handle().clone(),
        inner,
    }
}

// --- where the CPU goes -------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Producer,
    Worker,
    Receiver,
    Other,
}

impl Role {
    fn of(comm: &str) -> Role {
        if comm == PRODUCER_THREAD {
            Role::Producer
        } else if comm.starts_with("spanline-export")
            || comm.starts_with("OpenTelemetry")
            || comm.starts_with("bsp-rt")
        {
            Role::Worker
        } else if comm.starts_with("otlp-") {
            Role::Receiver
        } else {
            Role::Other
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    run_ns: u64,
    voluntary: u64,
    involuntary: u64,
}

/// Per-thread CPU time and context switches of this process, by thread id.
fn thread_cpu() -> HashMap<u32, (Role, Cpu)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default();
        let role = Role::of(read("comm").trim());
        let run_ns = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let status = read("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let cpu = Cpu {
            run_ns,
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        };
        out.insert(tid, (role, cpu));
    }
    out
}

/// CPU used by each role between two snapshots.
fn cpu_by_role(
    before: &HashMap<u32, (Role, Cpu)>,
    after: &HashMap<u32, (Role, Cpu)>,
) -> HashMap<Role, Cpu> {
    let mut out: HashMap<Role, Cpu> = HashMap::new();
    for (tid, (role, a)) in after {
        let b = before.get(tid).map(|(_, c)| *c).unwrap_or_default();
        let e = out.entry(*role).or_default();
        e.run_ns += a.run_ns.saturating_sub(b.run_ns);
        e.voluntary += a.voluntary.saturating_sub(b.voluntary);
        e.involuntary += a.involuntary.saturating_sub(b.involuntary);
    }
    out
}

// --- criterion: spans/s to the collector, closed loop --------------------

/// Before trace `i` of a closed loop (spans settled numbered from `base`):
/// wait until the queue has room for the next `CHECK_EVERY` traces.
fn wait_for_room(p: &Pipeline, i: u64, base: u64) {
    if !i.is_multiple_of(CHECK_EVERY) {
        return;
    }
    let sent = i * SPANS_PER_TRACE;
    let room = p.setup.room();
    while sent.saturating_sub(p.settled() - base) > room {
        std::thread::sleep(Duration::from_micros(50)); // allow-sleep: the producer waits for room in the queue.
    }
}

/// End `traces` traces, never overfilling the queue, and time them until
/// the collector has them all.
fn closed_loop(p: &Pipeline, traces: u64, seq0: u64) -> (Duration, u64) {
    let base = p.settled();
    let start = Instant::now();
    for i in 0..traces {
        wait_for_room(p, i, base);
        run_trace(Some(&p.tracer), seq0 + i, None);
    }
    let target = base + traces * SPANS_PER_TRACE;
    let drops_before = p.guard.export_stats().dropped();
    let complete = p.drain(target);
    let elapsed = start.elapsed();
    let dropped = p.guard.export_stats().dropped() - drops_before
        + if complete { 0 } else { target - p.settled() };
    (elapsed, dropped)
}

fn throughput_group(c: &mut Criterion, setups: &[Setup]) -> Vec<(String, u64)> {
    let mut drops = Vec::new();
    let mut group = c.benchmark_group("export_throughput");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(SPANS_PER_TRACE));
    for setup in setups {
        let p = Pipeline::start(*setup);
        let mut dropped = 0;
        let mut seq = 0;
        group.bench_function(setup.label(), |b| {
            b.iter_custom(|iters| {
                let (t, d) = closed_loop(&p, iters, seq);
                seq += iters;
                dropped += d;
                t
            });
        });
        drops.push((setup.label(), dropped));
    }
    group.finish();
    drops
}

// --- printed tables ------------------------------------------------------

struct Row {
    label: String,
    produced: u64,
    elapsed: Duration,
    /// Spans the collector (or exporter) got while the producer ran.
    received_during: u64,
    received_total: u64,
    dropped: u64,
    stats: Option<ExportStats>,
    cpu: HashMap<Role, Cpu>,
    latencies: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Flat out; what the queue cannot hold is dropped.
    Open,
    /// Flat out, waiting for room in the queue.
    Closed,
    /// `TRACES_PER_TICK` traces every `TICK`.
    Paced,
}

/// Run one load on a producer thread of its own against `setup` (or no
/// telemetry at all).
fn run_load(setup: Option<Setup>, load: Load, duration: Duration) -> Row {
    let pipeline = setup.map(Pipeline::start);
    let label = setup.map_or_else(|| "no telemetry".to_owned(), |s| s.label());
    let tracer = pipeline.as_ref().map(|p| p.tracer.clone());
    let settled = |p: &Option<Pipeline>| p.as_ref().map_or(0, Pipeline::settled);
    let received = |p: &Option<Pipeline>| p.as_ref().map_or(0, Pipeline::received);
    let base = settled(&pipeline);
    let received_base = received(&pipeline);
    let cpu_before = thread_cpu();
    let (produced, elapsed, latencies, cpu_after) = std::thread::scope(|s| {
        let pipeline = &pipeline;
        let producer = std::thread::Builder::new()
            .name(PRODUCER_THREAD.into())
            .spawn_scoped(s, move || {
                let mut latencies = Vec::new();
                if load == Load::Paced {
                    let ticks = duration.as_nanos() / TICK.as_nanos();
                    latencies.reserve(ticks as usize * (TRACES_PER_TICK as usize) * 4);
                }
                let start = Instant::now();
                let mut seq = 0u64;
                let mut tick = 0u32;
                while start.elapsed() < duration {
                    match load {
                        Load::Open => {
                            run_trace(tracer.as_ref(), seq, None);
                            seq += 1;
                        }
                        Load::Closed => {
                            if let Some(p) = pipeline {
                                wait_for_room(p, seq, base);
                            }
                            run_trace(tracer.as_ref(), seq, None);
                            seq += 1;
                        }
                        Load::Paced => {
                            for _ in 0..TRACES_PER_TICK {
                                run_trace(tracer.as_ref(), seq, Some(&mut latencies));
                                seq += 1;
                            }
                            tick += 1;
                            let next = start + TICK * tick;
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now); // allow-sleep: pacing the offered load to one burst per tick.
                            }
                        }
                    }
                }
                let elapsed = start.elapsed();
                // Snapshot here, while this thread still counts.
                (seq * SPANS_PER_TRACE, elapsed, latencies, thread_cpu())
            })
            .expect("producer thread");
        producer.join().expect("producer")
    });
    let received_during = received(&pipeline) - received_base;
    let (received_total, dropped, stats) = match &pipeline {
        Some(p) => {
            p.drain(base + produced);
            let got = p.received() - received_base;
            let stats = (p.setup.processor == Processor::Shipped).then(|| p.guard.export_stats());
            (got, produced.saturating_sub(got), stats)
        }
        None => (0, 0, None),
    };
    drop(pipeline);
    Row {
        label,
        produced,
        elapsed,
        received_during,
        received_total,
        dropped,
        stats,
        cpu: cpu_by_role(&cpu_before, &cpu_after),
        latencies,
    }
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}k", n as f64 / d.as_secs_f64() / 1e3)
}

fn per_span(cpu: &HashMap<Role, Cpu>, role: Role, spans: u64) -> String {
    let ns = cpu.get(&role).map_or(0, |c| c.run_ns);
    if spans == 0 {
        return "—".into();
    }
    format!("{:.2}", ns as f64 / spans as f64 / 1e3)
}

fn wakes(cpu: &HashMap<Role, Cpu>, role: Role, spans: u64) -> String {
    let c = cpu.get(&role).copied().unwrap_or_default();
    if spans == 0 {
        return "—".into();
    }
    format!(
        "{:.1}/{:.1}",
        c.voluntary as f64 * 1e3 / spans as f64,
        c.involuntary as f64 * 1e3 / spans as f64
    )
}

fn drops_detail(row: &Row) -> String {
    match row.stats {
        Some(s) if s.dropped() > 0 => format!(
            "{} (queue_full {}, export_failed {})",
            row.dropped, s.dropped_queue_full, s.dropped_export_failed
        ),
        _ => row.dropped.to_string(),
    }
}

fn print_throughput_table(title: &str, rows: &[Row]) {
    println!("\n## {title}");
    println!(
        "| setup | offered spans/s | received spans/s | drops | CPU µs/span producer | worker | receiver | worker wakes vol/invol per 1k spans |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            rate(r.produced, r.elapsed),
            rate(r.received_during, r.elapsed),
            drops_detail(r),
            per_span(&r.cpu, Role::Producer, r.produced),
            per_span(&r.cpu, Role::Worker, r.received_total.max(1)),
            per_span(&r.cpu, Role::Receiver, r.received_total.max(1)),
            wakes(&r.cpu, Role::Worker, r.received_total.max(1)),
        );
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1e3
}

fn print_paced_table(rows: &mut [Row]) {
    println!(
        "\n## paced: {} spans every {:?} for {:?} (stage = {} xorshift rounds; with telemetry, + its span)",
        TRACES_PER_TICK * SPANS_PER_TRACE,
        TICK,
        PACED_FOR,
        STAGE_ROUNDS
    );
    println!(
        "| setup | offered spans/s | received | drops | stage p50 µs | p99 µs | p99.9 µs | CPU µs/span producer | worker | receiver | worker wakes vol/invol per 1k spans |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter_mut() {
        r.latencies.sort_unstable();
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
            r.label,
            rate(r.produced, r.elapsed),
            r.received_total,
            drops_detail(r),
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99),
            percentile(&r.latencies, 0.999),
            per_span(&r.cpu, Role::Producer, r.produced),
            per_span(&r.cpu, Role::Worker, r.received_total),
            per_span(&r.cpu, Role::Receiver, r.received_total),
            wakes(&r.cpu, Role::Worker, r.received_total),
        );
    }
}

/// `SPANLINE_EXPORT_PROFILE=<setup label>`: push 100k spans through that
/// one setup, closed loop, and exit (for `valgrind --tool=callgrind`).
fn profile_one(label: &str, setups: &[Setup]) {
    let Some(setup) = setups.iter().find(|s| s.label() == label) else {
        eprintln!("no setup {label}");
        return;
    };
    let p = Pipeline::start(*setup);
    let (t, dropped) = closed_loop(&p, 20_000, 0);
    println!("{label}: 100k spans in {t:?}, {dropped} dropped");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tables = !args.iter().any(|a| a == "--test" || a == "--list");
    let mut c = Criterion::default().configure_from_args();

    let otlp = [
        Setup::shipped(Sink::Grpc),
        Setup::shipped(Sink::Http),
        Setup::sdk(Sink::Grpc),
        Setup::sdk(Sink::Http),
    ];
    let mut criterion_setups = vec![Setup::shipped(Sink::Discard), Setup::shipped(Sink::Encode)];
    criterion_setups.extend(otlp);
    criterion_setups.push(Setup::shipped(Sink::GrpcTwoInFlight));
    if let Ok(label) = std::env::var("SPANLINE_EXPORT_PROFILE") {
        let mut all = criterion_setups.clone();
        all.push(Setup::shipped(Sink::Grpc).queue(LARGE_QUEUE));
        profile_one(&label, &all);
        return;
    }
    let drops = throughput_group(&mut c, &criterion_setups);
    c.final_summary();
    if !tables {
        return;
    }
    println!("\nclosed-loop drops (expected 0): {drops:?}");

    let mut saturation = Vec::new();
    for load in [Load::Open, Load::Closed] {
        let mut rows = Vec::new();
        let baselines = [Setup::shipped(Sink::Discard), Setup::shipped(Sink::Encode)];
        let large = [
            Setup::shipped(Sink::Grpc).queue(LARGE_QUEUE),
            Setup::shipped(Sink::Grpc)
                .queue(LARGE_QUEUE)
                .batch_size(2_048),
            Setup::shipped(Sink::GrpcTwoInFlight),
        ];
        for setup in baselines.iter().chain(&otlp).chain(&large).copied() {
            rows.push(run_load(Some(setup), load, SATURATE_FOR));
        }
        saturation.push((load, rows));
    }
    for (load, rows) in &saturation {
        let title = match load {
            Load::Open => "saturation, open loop (producer flat out, the queue drops the excess)",
            _ => "saturation, closed loop (producer waits for room in the queue)",
        };
        print_throughput_table(title, rows);
    }
    let (spans, bytes) = (
        ENCODED[0].load(Ordering::Relaxed),
        ENCODED[1].load(Ordering::Relaxed),
    );
    if spans > 0 {
        println!(
            "\nOTLP protobuf: {:.0} bytes per span ({} spans encoded by `encode`)",
            bytes as f64 / spans as f64,
            spans
        );
    }

    let mut paced = vec![
        run_load(None, Load::Paced, PACED_FOR),
        run_load(Some(Setup::shipped(Sink::Discard)), Load::Paced, PACED_FOR),
    ];
    for setup in otlp {
        paced.push(run_load(Some(setup), Load::Paced, PACED_FOR));
    }
    for setup in [
        Setup::shipped(Sink::Grpc).queue(LARGE_QUEUE),
        Setup::shipped(Sink::Http).queue(LARGE_QUEUE),
    ] {
        paced.push(run_load(Some(setup), Load::Paced, PACED_FOR));
    }
    print_paced_table(&mut paced);
}
