//! Extra cost per span of the tail sampler (goal ≤ 300 ns) beside the
//! same spans without it, with telemetry as `spanline::telemetry::init()`
//! builds it, and the buffered memory under a sustained load.
//!
//! `cargo bench -p spanline-telemetry --bench tail_sampling`.
//!
//! `tail_spans` (per trace of 8 spans: seven children then the root, four
//! attributes each, one trace in ten with a failing child): the spans are
//! made and ended through a tracer, and every `CHUNK` spans the provider is
//! force-flushed, so the figure includes the workers' work, not only the
//! hand-off. Variants:
//!
//! - `sdk_no_processor`: the SDK spans alone, a provider with no processor
//!   (the bare baseline).
//! - `shipped`: `TelemetryBuilder::from_env()` as `init()` builds it
//!   (spanline's `BoundedBatchProcessor`), a discarding exporter in place
//!   of OTLP, always-on, no tail sampling.
//! - `shipped_tail`: the same with `TelemetryBuilder::tail_sampling` (the
//!   tail sampler in front of the shipped processor): tail − shipped is
//!   the tail sampler's cost.
//! - Reference rows, the SDK's own `BatchSpanProcessor` with the same
//!   exporter: `sdk_batch`, and `sdk_batch_tail` (the tail sampler in
//!   front of it).
//!
//! `tail_engine_ingest`: the decision engine alone, single-threaded (the
//! worker's cost per span), beside a clone of the span. `sustained_memory`
//! prints the buffered peaks under 2,000 open traces.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanEvents, SpanLinks,
};
use spanline_telemetry::sampling::{TailConfig, TailEngine, TailSamplingProcessor};
use spanline_telemetry::{SamplerConfig, TelemetryBuilder, TelemetryGuard};
use spanline_testkit::bench::DiscardExporter;

/// Spans between flushes: one export batch, so the shipped processor's
/// default 2,048-span queue never fills.
const CHUNK: u64 = 512;

fn span(i: u64) -> SpanData {
    let trace = i / 8;
    let is_root = i % 8 == 7;
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(
                u128::from(trace + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            ),
            SpanId::from(i % 8 + 1),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: if is_root {
            SpanId::INVALID
        } else {
            SpanId::from(8)
        },
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: "stage".into(),
        start_time: start,
        end_time: start + Duration::from_millis(if is_root { 30 } else { 3 }),
        attributes: attributes(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if trace.is_multiple_of(10) && i % 8 == 3 {
            Status::error("x")
        } else {
            Status::Unset
        },
        instrumentation_scope: InstrumentationScope::default(),
    }
}

fn tail_config() -> TailConfig {
    TailConfig::new()
        .latency_threshold(Duration::from_millis(100))
        .stage_threshold("rerank", Duration::from_millis(50))
        .baseline_ratio(0.01)
        .queue_capacity(65_536)
}

/// The attributes of every span (as in [`span`]).
fn attributes() -> Vec<KeyValue> {
    vec![
        KeyValue::new("spanline.stage.name", "rerank"),
        KeyValue::new("spanline.pipeline.name", "rag"),
        KeyValue::new("user.id", "user-42"),
        KeyValue::new("spanline.metadata.tier", "free"),
    ]
}

/// Trace `n` through `tracer`: seven 3 ms children, then the 30 ms root;
/// in one trace in ten a child fails.
fn trace(tracer: &SdkTracer, n: u64) {
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let stage = || {
        SpanBuilder::from_name("stage")
            .with_start_time(start)
            .with_attributes(attributes())
    };
    let cx = Context::new().with_span(tracer.build(stage()));
    for k in 0..7 {
        let mut child = tracer.build_with_context(stage(), &cx);
        if n.is_multiple_of(10) && k == 3 {
            child.set_status(Status::error("x"));
        }
        child.end_with_timestamp(start + Duration::from_millis(3));
    }
    cx.span()
        .end_with_timestamp(start + Duration::from_millis(30));
}

/// `iters` traces through `provider`, force-flushed every [`CHUNK`] spans
/// and at the end.
fn drive(provider: &SdkTracerProvider, iters: u64) -> Duration {
    let tracer = provider.tracer("bench");
    let start = Instant::now();
    for n in 0..iters {
        trace(&tracer, n);
        if (n + 1).is_multiple_of(CHUNK / 8) {
            let _ = provider.force_flush();
        }
    }
    let _ = provider.force_flush();
    start.elapsed()
}

/// Telemetry as `init()` builds it, a discarding exporter, always-on, no
/// global state; with `tail`, tail sampling in front of the processor.
fn shipped(tail: Option<TailConfig>) -> TelemetryGuard {
    let b = TelemetryBuilder::from_env()
        .expect("telemetry environment")
        .traces_exporters([])
        .span_exporter(DiscardExporter)
        .sampler(SamplerConfig::AlwaysOn);
    match tail {
        Some(config) => b.tail_sampling(config),
        None => b,
    }
    .build()
    .expect("telemetry")
}

/// The reference: the SDK's batch processor, with the tail sampler in
/// front of it when `tail`.
fn sdk_batch(tail: bool) -> SdkTracerProvider {
    let batch = BatchSpanProcessor::builder(DiscardExporter).build();
    let b = SdkTracerProvider::builder().with_sampler(Sampler::AlwaysOn);
    if tail {
        b.with_span_processor(TailSamplingProcessor::new(tail_config(), batch).expect("valid"))
    } else {
        b.with_span_processor(batch)
    }
    .build()
}

fn bench_spans(c: &mut Criterion) {
    let mut g = c.benchmark_group("tail_spans");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(8));
    let plain = shipped(None);
    let tail = shipped(Some(tail_config()));
    let reference = sdk_batch(false);
    let reference_tail = sdk_batch(true);
    let bare = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .build();
    let shipped_provider = |g: &TelemetryGuard| g.tracer_provider().expect("enabled").clone();
    for (name, provider) in [
        ("sdk_no_processor", bare.clone()),
        ("shipped", shipped_provider(&plain)),
        ("shipped_tail", shipped_provider(&tail)),
        ("sdk_batch", reference.clone()),
        ("sdk_batch_tail", reference_tail.clone()),
    ] {
        g.bench_function(name, |b| b.iter_custom(|iters| drive(&provider, iters)));
    }
    g.finish();
    eprintln!("shipped: {:?}", plain.export_stats());
    eprintln!("shipped_tail: {:?}", tail.export_stats());
    if let Some(s) = tail.tail_stats() {
        eprintln!(
            "shipped_tail sampler: seen {} kept {} queue_full {} peak traces {} spans {} bytes {}",
            s.spans_seen,
            s.spans_kept,
            s.spans_dropped_queue_full,
            s.peak_traces,
            s.peak_spans,
            s.peak_bytes
        );
    }
    for p in [bare, reference, reference_tail] {
        let _ = p.shutdown();
    }
}

fn bench_engine(c: &mut Criterion) {
    let spans: Vec<SpanData> = (0..65_536).map(span).collect();
    let mut g = c.benchmark_group("tail_engine_ingest");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("clone_only", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % spans.len();
            black_box(spans[i].clone())
        })
    });
    let mut engine = TailEngine::new(tail_config()).expect("valid");
    let now = Instant::now();
    g.bench_function("ingest", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % spans.len();
            engine.ingest(spans[i].clone(), now, &mut |s| {
                black_box(s);
            })
        })
    });
    g.finish();
}

/// Sustained load: 2M spans, 2,000 traces open at once (each of 8 spans,
/// sent round-robin), default bounds. Prints the buffered peaks.
fn sustained_memory(_c: &mut Criterion) {
    let mut engine = TailEngine::new(TailConfig::new().baseline_ratio(0.01)).expect("valid");
    let now = Instant::now();
    let open = 2_000u64;
    let mut sent = 0u64;
    let mut base = 0u64;
    while sent < 2_000_000 {
        for k in 0..8 {
            for t in base..base + open {
                engine.ingest(span(t * 8 + k), now, &mut |s| {
                    black_box(s);
                });
                sent += 1;
            }
        }
        base += open;
    }
    let s = engine.stats();
    eprintln!(
        "sustained: {} spans, 2000 open traces: peak traces {} peak spans {} peak bytes {} ({} B/span), cached decisions {}",
        s.spans_seen,
        s.peak_traces,
        s.peak_spans,
        s.peak_bytes,
        s.peak_bytes / s.peak_spans.max(1),
        s.cached_decisions
    );
}

criterion_group!(benches, bench_spans, bench_engine, sustained_memory);
criterion_main!(benches);
