//! A real pipeline for the critical-path tests (stage_fn stages, one with a
//! queue wait inside), the analyser's expected sums, a Prometheus text
//! reader, and hand-built spans for the bound tests.

#![allow(dead_code, unreachable_pub)]

#[path = "../sampling_support/mod.rs"]
mod sampling_support;

use std::collections::HashMap;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusRecorder;
use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use spanline_core::semconv::{messaging, spanline};
use spanline_core::{
    Pipeline, RequestContext, StageDescriptor, StageError, StageKind, Telemetry, stage_fn,
};

/// The pipeline's name.
pub const PIPELINE: &str = "cp";

/// `(pipeline, key, type)`.
pub type Series = (String, String, String);

/// Run `runs` requests through `prep → fetch (queue wait inside) →
/// generate`, traced to `telemetry`; `fetch_ms` is the queue wait.
pub fn run_pipeline(
    provider: &SdkTracerProvider,
    telemetry: Telemetry,
    recorder: Option<&PrometheusRecorder>,
    runs: usize,
) {
    run_pipeline_with(provider, telemetry, recorder, runs, 4, 8);
}

/// [`run_pipeline`] with the queue wait and the generate time chosen.
pub fn run_pipeline_with(
    provider: &SdkTracerProvider,
    telemetry: Telemetry,
    recorder: Option<&PrometheusRecorder>,
    runs: usize,
    queue_ms: u64,
    generate_ms: u64,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tracer = provider.tracer("cp-test");
    let build = || {
        Pipeline::builder(PIPELINE)
            .telemetry(telemetry.clone())
            .then(stage_fn(
                StageDescriptor::new("prep", StageKind::Custom),
                |x: u8, _ctx: RequestContext| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok::<u8, StageError>(x)
                },
            ))
            .then(stage_fn(
                StageDescriptor::new("fetch", StageKind::Custom),
                move |x: u8, ctx: RequestContext| {
                    let tracer = tracer.clone();
                    async move {
                        // A broker wait, typed as the Kafka crate types it.
                        let span = tracer
                            .span_builder("wait rag.q")
                            .with_attributes([KeyValue::new(
                                spanline::SEGMENT_TYPE,
                                messaging::segment::QUEUE,
                            )])
                            .start_with_context(&tracer, ctx.otel_context());
                        let cx = ctx.otel_context().with_span(span);
                        tokio::time::sleep(Duration::from_millis(queue_ms)).await;
                        cx.span().end();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Ok::<u8, StageError>(x)
                    }
                },
            ))
            .then(stage_fn(
                StageDescriptor::new("generate", StageKind::Custom),
                move |x: u8, _ctx: RequestContext| async move {
                    tokio::time::sleep(Duration::from_millis(generate_ms)).await;
                    Ok::<u8, StageError>(x)
                },
            ))
            .build()
    };
    let pipeline = match recorder {
        Some(r) => metrics::with_local_recorder(r, build),
        None => build(),
    };
    for _ in 0..runs {
        rt.block_on(pipeline.run(7, &RequestContext::new()))
            .expect("run");
    }
}

/// Per series, the analyser's total critical-path seconds and the number
/// of traces contributing.
pub fn expected_sums(
    spans: &[spanline_critpath::Span],
) -> (HashMap<Series, f64>, HashMap<Series, u64>) {
    let mut sums = HashMap::new();
    let mut counts = HashMap::new();
    for report in spanline_critpath::analyze(spans) {
        for c in &report.contributions {
            let s = (
                PIPELINE.to_owned(),
                c.key.to_string(),
                c.segment_type.as_str().to_owned(),
            );
            *sums.entry(s.clone()).or_insert(0.0) += c.duration_ns as f64 / 1e9;
            *counts.entry(s).or_insert(0) += 1;
        }
    }
    (sums, counts)
}

/// Lines of `name{pipeline=..,key=..,type=..} value` in a Prometheus text
/// exposition.
pub fn prom_series(text: &str, name: &str) -> HashMap<Series, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let mut map = HashMap::new();
        for pair in labels.split("\",") {
            if let Some((k, v)) = pair.split_once("=\"") {
                map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
            }
        }
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        out.insert(
            (get("pipeline"), get("key"), get("type")),
            value.trim().parse().expect("value"),
        );
    }
    out
}

/// A span named `name`: the tail-sampler tests' hand-built span, renamed.
fn span_data(
    trace: u128,
    id: u64,
    parent: u64,
    name: &str,
    start_ms: u64,
    dur_ms: u64,
) -> SpanData {
    let mut s = sampling_support::span(trace, id, parent, start_ms, dur_ms);
    s.name = name.to_owned().into();
    s
}

/// A child span (10 ms to 60 ms) of `parent` in trace `trace`.
pub fn child(trace: u128, id: u64, parent: u64, name: &str) -> SpanData {
    span_data(trace, id, parent, name, 10, 50)
}

/// A root span (0 to 100 ms) of pipeline `pipeline`.
pub fn root(trace: u128, id: u64, pipeline: &str) -> SpanData {
    let mut s = span_data(trace, id, 0, "root", 0, 100);
    s.attributes = vec![KeyValue::new(spanline::PIPELINE_NAME, pipeline.to_owned())];
    s
}
