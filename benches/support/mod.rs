//! The pipeline-overhead workload, shared by the wall-clock bench
//! (`pipeline.rs`) and the instruction-count bench
//! (`pipeline_instructions.rs`), so both measure the same code.
//!
//! Each pipeline has one or [`STAGES`] no-op stages. `bare` calls the same
//! stages in sequence with no layer; the other variants run the built
//! pipeline with telemetry as `spanline::telemetry::init()` builds it
//! (`TelemetryBuilder` from the environment: its span processor and its
//! Prometheus recorder), the exporters replaced by one that discards:
//! `sampled` (always-on), `unsampled` (always-off), `disabled` (no
//! telemetry). Reference rows: `sdk_batch_sampled` (the SDK's own
//! `BatchSpanProcessor` in place of spanline's) and `sdk_spans_only` (the
//! same spans made with the SDK directly, no spanline layer, shipped
//! processor). Per-stage overhead is the slope between 1 and 8 stages.

#![allow(dead_code, unreachable_pub)]

use std::hint::black_box;

use async_trait::async_trait;
use futures_util::FutureExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};
use spanline_core::{
    Pipeline, RequestContext, Stage, StageDescriptor, StageError, StageKind, Step, Telemetry,
};
use spanline_telemetry::{PrometheusRecorder, SamplerConfig, TelemetryBuilder, TelemetryGuard};
use spanline_testkit::bench::DiscardExporter;

/// Stages in the long pipeline.
pub const STAGES: usize = 8;

const NAMES: [&str; STAGES] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];

/// The variants, in report order.
pub const VARIANTS: [&str; 6] = [
    "bare",
    "disabled",
    "unsampled",
    "sampled",
    "sdk_batch_sampled",
    "sdk_spans_only",
];

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

/// Telemetry as `init()` builds it, with a discarding exporter and no
/// global state.
fn shipped(sampler: SamplerConfig) -> TelemetryGuard {
    TelemetryBuilder::from_env()
        .expect("telemetry environment")
        .traces_exporters([])
        .span_exporter(DiscardExporter)
        .sampler(sampler)
        .build()
        .expect("telemetry")
}

fn build(
    n: usize,
    telemetry: Telemetry,
    recorder: &PrometheusRecorder,
) -> Box<dyn Fn(&RequestContext) -> u64 + Send + Sync> {
    fn boxed<S: Step<Input = u64, Output = u64> + 'static>(
        p: Pipeline<S>,
    ) -> Box<dyn Fn(&RequestContext) -> u64 + Send + Sync> {
        Box::new(move |ctx| {
            p.run(black_box(1), ctx)
                .now_or_never()
                .expect("no-op stages complete immediately")
                .expect("no-op stages succeed")
        })
    }
    metrics::with_local_recorder(recorder, || {
        let b = Pipeline::builder("bench").telemetry(telemetry);
        if n == 1 {
            return boxed(b.then(Noop(NAMES[0])).build());
        }
        boxed(
            b.then(Noop(NAMES[0]))
                .then(Noop(NAMES[1]))
                .then(Noop(NAMES[2]))
                .then(Noop(NAMES[3]))
                .then(Noop(NAMES[4]))
                .then(Noop(NAMES[5]))
                .then(Noop(NAMES[6]))
                .then(Noop(NAMES[7]))
                .build(),
        )
    })
}

/// The attributes spanline puts on a stage span, for the SDK-only row.
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

/// Everything the variants need, built once.
pub struct Fixture {
    ctx: RequestContext,
    stages: Vec<Noop>,
    sampled: TelemetryGuard,
    unsampled: TelemetryGuard,
    reference: SdkTracerProvider,
    sdk_tracer: SdkTracer,
}

impl Fixture {
    /// Build the telemetry of every variant.
    pub fn new() -> Self {
        let sampled = shipped(SamplerConfig::AlwaysOn);
        let sdk_tracer = sampled
            .tracer_provider()
            .expect("enabled")
            .tracer("reference");
        Fixture {
            ctx: RequestContext::new(),
            stages: NAMES.iter().map(|n| Noop(n)).collect(),
            unsampled: shipped(SamplerConfig::AlwaysOff),
            reference: SdkTracerProvider::builder()
                .with_span_processor(BatchSpanProcessor::builder(DiscardExporter).build())
                .with_sampler(Sampler::AlwaysOn)
                .build(),
            sampled,
            sdk_tracer,
        }
    }

    /// One run of `variant` over `n` (1 or [`STAGES`]) stages.
    pub fn runner(&self, variant: &str, n: usize) -> Box<dyn Fn() -> u64 + '_> {
        let recorder = self
            .sampled
            .metrics_recorder()
            .expect("prometheus is on by default");
        let ctx = &self.ctx;
        let stages = &self.stages[..n];
        let pipeline = |t: Telemetry| {
            let p = build(n, t, recorder);
            Box::new(move || p(ctx)) as Box<dyn Fn() -> u64 + '_>
        };
        match variant {
            "bare" => Box::new(move || {
                let mut x = black_box(1u64);
                for s in stages {
                    x = s.run(x, ctx).now_or_never().unwrap().unwrap();
                }
                x
            }),
            "disabled" => pipeline(Telemetry::disabled()),
            "unsampled" => pipeline(self.unsampled.telemetry()),
            "sampled" => pipeline(self.sampled.telemetry()),
            "sdk_batch_sampled" => pipeline(Telemetry::from_provider(&self.reference)),
            "sdk_spans_only" => {
                let tracer = &self.sdk_tracer;
                Box::new(move || {
                    let root = tracer.build(
                        SpanBuilder::from_name("invoke_workflow bench").with_attributes(attrs(0)),
                    );
                    let cx = opentelemetry::Context::new().with_span(root);
                    let mut x = black_box(1u64);
                    for (i, s) in stages.iter().enumerate() {
                        let span = tracer.build_with_context(
                            SpanBuilder::from_name(s.0).with_attributes(attrs(i)),
                            &cx,
                        );
                        x = s.run(x, ctx).now_or_never().unwrap().unwrap();
                        drop(span);
                    }
                    cx.span().end();
                    x
                })
            }
            other => panic!("unknown variant {other}"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.reference.shutdown();
    }
}
