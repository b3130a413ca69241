//! Extra cost per span of the tail sampler (budget ≤ 300 ns) beside the
//! same spans through the plain bounded batch processor, and the buffered
//! memory under a sustained load.
//!
//! `on_end` groups: the calling thread hands `CHUNK` spans (traces of 8:
//! seven children then the root, one trace in ten failing) to the processor
//! and then force-flushes, so the figure includes the worker's work, not
//! only the hand-off. Both sides export to the same no-op exporter.
//! `engine_ingest`: the decision engine alone, single-threaded (the worker's
//! cost per span).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor};
use spanline_telemetry::sampling::{TailConfig, TailEngine, TailSamplingProcessor};
use spanline_telemetry::{BatchConfig, BoundedBatchProcessor};

const CHUNK: u64 = 2_048;

#[derive(Debug)]
struct Noop;

impl SpanExporter for Noop {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

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
        attributes: vec![
            KeyValue::new("spanline.stage.name", "rerank"),
            KeyValue::new("spanline.pipeline.name", "rag"),
            KeyValue::new("user.id", "user-42"),
            KeyValue::new("spanline.metadata.tier", "free"),
        ],
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

fn batch() -> BoundedBatchProcessor {
    let cfg = BatchConfig {
        max_queue_size: 65_536,
        ..Default::default()
    };
    BoundedBatchProcessor::spawn("bench", cfg, || Ok(Noop)).expect("spawned")
}

fn tail_config() -> TailConfig {
    TailConfig::new()
        .latency_threshold(Duration::from_millis(100))
        .stage_threshold("rerank", Duration::from_millis(50))
        .baseline_ratio(0.01)
        .queue_capacity(65_536)
}

fn drive(p: &dyn SpanProcessor, spans: &[SpanData], iters: u64) -> Duration {
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        for i in 0..n {
            p.on_end(spans[((done + i) % spans.len() as u64) as usize].clone());
        }
        let _ = p.force_flush();
        done += n;
    }
    start.elapsed()
}

fn bench_on_end(c: &mut Criterion) {
    let spans: Vec<SpanData> = (0..65_536).map(span).collect();
    let mut g = c.benchmark_group("tail_on_end");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("clone_only", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                black_box(spans[(i % spans.len() as u64) as usize].clone());
            }
            start.elapsed()
        })
    });
    let plain = batch();
    g.bench_function("plain_batch", |b| {
        b.iter_custom(|iters| drive(&plain, &spans, iters))
    });
    let tail = TailSamplingProcessor::new(tail_config(), batch()).expect("valid");
    let stats = tail.stats();
    g.bench_function("tail_then_batch", |b| {
        b.iter_custom(|iters| drive(&tail, &spans, iters))
    });
    g.finish();
    let s = stats.snapshot();
    eprintln!(
        "tail_then_batch: seen {} kept {} queue_full {} peak traces {} spans {} bytes {}",
        s.spans_seen,
        s.spans_kept,
        s.spans_dropped_queue_full,
        s.peak_traces,
        s.peak_spans,
        s.peak_bytes
    );
    eprintln!("plain_batch: {:?}", plain.stats().snapshot());
    let _ = tail.shutdown();
    let _ = plain.shutdown();
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

criterion_group!(benches, bench_on_end, bench_engine, sustained_memory);
criterion_main!(benches);
