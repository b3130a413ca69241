//! Cost per trace of the online critical-path metrics, beside its
//! baselines in the same group:
//!
//! - `clone_only`: cloning the trace's spans under a new trace id (every
//!   row but `analyze_trace` pays it);
//! - `analyze_trace`: the bare analysis of already converted spans;
//! - `convert_full_and_analyze`: SDK spans converted with every attribute
//!   and link (`critpath::convert`) and analysed;
//! - `convert_and_analyze`: the same with the lean conversion the online
//!   analysis uses (`critpath::convert_for_analysis`), no buffering, no
//!   metrics;
//! - `tail_engine`: the tail sampler's engine without the metrics (buffer,
//!   decide, drop);
//! - `tail_engine_with_metrics`: the same engine analysing and recording;
//! - `cp_engine`: the stand-alone analysis engine (buffer, analyse, record);
//! - `cp_processor`: the stand-alone processor through `on_end`, flushed
//!   every 256 traces, so the worker's work is included.
//!
//! The trace is a real pipeline run: five `stage_fn` stages, one with a
//! queue span inside (7 spans). Metrics go to a real Prometheus recorder.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use spanline_core::semconv::{messaging, spanline};
use spanline_core::{
    Pipeline, RequestContext, StageDescriptor, StageError, StageKind, Telemetry, stage_fn,
};
use spanline_telemetry::SpanRecorder;
use spanline_telemetry::critpath_metrics::{
    CriticalPathConfig, CriticalPathEngine, CriticalPathProcessor, analyze_spans,
};
use spanline_telemetry::prometheus::build_prometheus_recorder;
use spanline_telemetry::sampling::{TailConfig, TailEngine};

const CHUNK: u64 = 256;

fn stage(name: &'static str) -> impl spanline_core::Stage<Input = u8, Output = u8> {
    stage_fn(
        StageDescriptor::new(name, StageKind::Custom),
        |x: u8, _ctx: RequestContext| async move { Ok::<u8, StageError>(x) },
    )
}

/// The spans of one pipeline run.
fn recorded_trace() -> Vec<SpanData> {
    let recorder = SpanRecorder::new(100);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .build();
    let tracer = provider.tracer("bench");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pipeline = Pipeline::builder("rag")
        .telemetry(Telemetry::from_provider(&provider))
        .then(stage("preprocess"))
        .then(stage("embed"))
        .then(stage_fn(
            StageDescriptor::new("retrieve", StageKind::Custom),
            move |x: u8, ctx: RequestContext| {
                let tracer = tracer.clone();
                async move {
                    let span = tracer
                        .span_builder("wait rag.retrieve")
                        .with_attributes([KeyValue::new(
                            spanline::SEGMENT_TYPE,
                            messaging::segment::QUEUE,
                        )])
                        .start_with_context(&tracer, ctx.otel_context());
                    ctx.otel_context().with_span(span).span().end();
                    Ok::<u8, StageError>(x)
                }
            },
        ))
        .then(stage("rerank"))
        .then(stage("generate"))
        .build();
    rt.block_on(pipeline.run(1, &RequestContext::new()))
        .expect("run");
    recorder.spans()
}

/// The trace under a new trace id (`n`-th), as every row receives it.
fn fresh(trace: &[SpanData], n: u64) -> Vec<SpanData> {
    let id =
        TraceId::from(u128::from(n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
    trace
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let cx = &s.span_context;
            s.span_context = SpanContext::new(
                id,
                cx.span_id(),
                cx.trace_flags(),
                false,
                cx.trace_state().clone(),
            );
            s
        })
        .collect()
}

fn metrics_config() -> CriticalPathConfig {
    let recorder = Arc::new(build_prometheus_recorder().expect("recorder"));
    CriticalPathConfig::new().metrics_recorder(recorder)
}

fn bench(c: &mut Criterion) {
    let trace = recorded_trace();
    eprintln!("trace: {} spans", trace.len());
    let converted: Vec<spanline_critpath::Span> = trace
        .iter()
        .map(spanline_telemetry::critpath::convert)
        .collect();
    let mut g = c.benchmark_group("critical_path_per_trace");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    // Every iteration is a new trace: a trace id never seen before.
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        fresh(&trace, n)
    };
    g.bench_function("clone_only", |b| b.iter(|| black_box(next())));
    g.bench_function("analyze_trace", |b| {
        let refs: Vec<&spanline_critpath::Span> = converted.iter().collect();
        b.iter(|| black_box(spanline_critpath::analyze_trace(&refs)))
    });
    g.bench_function("convert_full_and_analyze", |b| {
        b.iter(|| {
            let spans: Vec<spanline_critpath::Span> = next()
                .iter()
                .map(spanline_telemetry::critpath::convert)
                .collect();
            let refs: Vec<&spanline_critpath::Span> = spans.iter().collect();
            black_box(spanline_critpath::analyze_trace(&refs))
        })
    });
    g.bench_function("convert_and_analyze", |b| {
        b.iter(|| black_box(analyze_spans(&next())))
    });
    let now = Instant::now();
    let mut plain = TailEngine::new(TailConfig::new()).expect("valid");
    g.bench_function("tail_engine", |b| {
        b.iter(|| {
            for s in next() {
                plain.ingest(s, now, &mut |s| {
                    black_box(s);
                });
            }
        })
    });
    let mut with_metrics =
        TailEngine::new(TailConfig::new().critical_path_metrics(metrics_config())).expect("valid");
    g.bench_function("tail_engine_with_metrics", |b| {
        b.iter(|| {
            for s in next() {
                with_metrics.ingest(s, now, &mut |s| {
                    black_box(s);
                });
            }
        })
    });
    let mut engine = CriticalPathEngine::new(metrics_config()).expect("valid");
    g.bench_function("cp_engine", |b| {
        b.iter(|| {
            for s in next() {
                engine.ingest(s, now);
            }
        })
    });
    let processor =
        CriticalPathProcessor::new(metrics_config().queue_capacity(65_536)).expect("valid");
    let stats = processor.stats();
    g.bench_function("cp_processor", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(CHUNK);
                for _ in 0..n {
                    for s in next() {
                        processor.on_end(s);
                    }
                }
                let _ = processor.force_flush();
                done += n;
            }
            start.elapsed()
        })
    });
    g.finish();
    let s = stats.snapshot();
    eprintln!(
        "cp_processor: traces analysed {} skipped {} queue_full {} samples {} series {}",
        s.traces_analyzed, s.traces_skipped, s.spans_dropped_queue_full, s.samples, s.series
    );
    let e = engine.stats();
    eprintln!(
        "cp_engine: traces analysed {} samples {} peak traces {}",
        e.traces_analyzed, e.samples, e.peak_traces
    );
    let _ = processor.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
