//! Per-stage overhead of the instrumentation layer, as a ratio to the bare
//! stage calls in the same run (DESIGN budgets: ≤ 600 ns sampled, ≤ 120 ns
//! unsampled, ≤ 20 ns disabled, per stage).
//!
//! Each pipeline has `STAGES` no-op stages. "bare" calls the same stages in
//! sequence with no layer; the other variants run the built pipeline:
//! sampled (SDK, always-on, spans into a batch processor with a discarding
//! exporter), unsampled (always-off), disabled (no telemetry). Histograms go
//! to a real Prometheus recorder. Per-stage overhead = (variant − bare) / STAGES.

use spanline_testkit::bench::DiscardExporter;
use std::hint::black_box;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use spanline_core::{
    Pipeline, RequestContext, Stage, StageDescriptor, StageError, StageKind, Step, Telemetry,
};

const STAGES: usize = 8;

struct Noop(&'static str);

#[async_trait]
impl Stage for Noop {
    type Input = u64;
    type Output = u64;
    fn describe(&self) -> StageDescriptor {
        StageDescriptor::new(self.0, StageKind::Custom)
    }
    // A real stage is never inlined into its caller; without this the
    // compiler elides the bare path's boxed future entirely.
    #[inline(never)]
    async fn run(&self, input: u64, _: &RequestContext) -> Result<u64, StageError> {
        Ok(black_box(input) + 1)
    }
}

const NAMES: [&str; STAGES] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];

fn provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(DiscardExporter).build())
        .with_sampler(sampler)
        .build()
}

fn pipeline_1(telemetry: Telemetry) -> Pipeline<impl Step<Input = u64, Output = u64>> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        Pipeline::builder("bench1")
            .telemetry(telemetry)
            .then(Noop(NAMES[0]))
            .build()
    })
}

fn pipeline(telemetry: Telemetry) -> Pipeline<impl Step<Input = u64, Output = u64>> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        Pipeline::builder("bench")
            .telemetry(telemetry)
            .then(Noop(NAMES[0]))
            .then(Noop(NAMES[1]))
            .then(Noop(NAMES[2]))
            .then(Noop(NAMES[3]))
            .then(Noop(NAMES[4]))
            .then(Noop(NAMES[5]))
            .then(Noop(NAMES[6]))
            .then(Noop(NAMES[7]))
            .build()
    })
}

fn run<S: Step<Input = u64, Output = u64>>(p: &Pipeline<S>, ctx: &RequestContext) -> u64 {
    p.run(black_box(1), ctx)
        .now_or_never()
        .expect("no-op stages complete immediately")
        .expect("no-op stages succeed")
}

fn bench_overhead(c: &mut Criterion) {
    let ctx = RequestContext::new();
    let stages: Vec<Noop> = NAMES.iter().map(|n| Noop(n)).collect();
    let sampled = provider(Sampler::AlwaysOn);
    let unsampled = provider(Sampler::AlwaysOff);
    let telemetry = [
        ("disabled", Telemetry::disabled()),
        ("unsampled", Telemetry::from_provider(&unsampled)),
        ("sampled", Telemetry::from_provider(&sampled)),
    ];

    // Per-stage overhead is the slope between the 1- and 8-stage groups:
    // ((v8 - bare8) - (v1 - bare1)) / 7; the intercept is the per-run root.
    let mut g = c.benchmark_group("pipeline_1_stage");
    g.bench_function("bare", |b| {
        b.iter(|| {
            stages[0]
                .run(black_box(1u64), &ctx)
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    for (name, t) in &telemetry {
        let p = pipeline_1(t.clone());
        g.bench_function(*name, |b| b.iter(|| run(&p, &ctx)));
    }
    g.finish();

    let mut g = c.benchmark_group("pipeline_8_stages");
    g.throughput(Throughput::Elements(STAGES as u64));
    g.bench_function("bare", |b| {
        b.iter(|| {
            let mut x = black_box(1u64);
            for s in &stages {
                x = s.run(x, &ctx).now_or_never().unwrap().unwrap();
            }
            x
        })
    });
    for (name, t) in &telemetry {
        let p = pipeline(t.clone());
        g.bench_function(*name, |b| b.iter(|| run(&p, &ctx)));
    }
    // Reference: what the SDK alone costs for the same 9 spans (root + 8
    // children, 7 attributes each, the same batch processor) with no
    // spanline layer, so the sampled figure splits into SDK and layer cost.
    let tracer = sampled.tracer("reference");
    g.bench_function("sdk_spans_only", |b| {
        b.iter(|| {
            let root = tracer
                .build(SpanBuilder::from_name("invoke_workflow bench").with_attributes(attrs(0)));
            let cx = opentelemetry::Context::new().with_span(root);
            let mut x = black_box(1u64);
            for (i, s) in stages.iter().enumerate() {
                let span = tracer
                    .build_with_context(SpanBuilder::from_name(s.0).with_attributes(attrs(i)), &cx);
                x = s.run(x, &ctx).now_or_never().unwrap().unwrap();
                drop(span);
            }
            cx.span().end();
            x
        })
    });
    g.finish();
    let _ = sampled.shutdown();
    let _ = unsampled.shutdown();
}

fn attrs(i: usize) -> Vec<KeyValue> {
    vec![
        KeyValue::new("gen_ai.operation.name", "spanline.stage"),
        KeyValue::new("spanline.stage.name", NAMES[i]),
        KeyValue::new("spanline.stage.kind", "custom"),
        KeyValue::new("spanline.pipeline.name", "bench"),
        KeyValue::new("spanline.step.index", i as i64),
        KeyValue::new("spanline.step.blocking", true),
        KeyValue::new("spanline.step.depends_on", i as i64),
    ]
}

criterion_group!(benches, bench_overhead);
criterion_main!(benches);
