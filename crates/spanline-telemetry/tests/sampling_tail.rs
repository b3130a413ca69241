//! Tail sampling: each keep reason decides as configured, bounds evict the
//! oldest trace with counts, late spans follow the remembered decision, the
//! processor forwards kept traces downstream and flushes them on shutdown,
//! and the sampler's counters reach the `metrics` recorder.

mod sampling_support;

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceId, Tracer, TracerProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use sampling_support::{epoch, failed, span, stage, with_attrs};
use spanline_core::semconv::sampling as names;
use spanline_telemetry::SpanRecorder;
use spanline_telemetry::sampling::{
    Condition, TailConfig, TailEngine, TailRule, TailSamplingProcessor, baseline_ratio_keeps,
};
use spanline_telemetry::{ExporterKind, TelemetryBuilder};

/// Feed `spans` (in order) to a fresh engine; return the kept spans' trace
/// ids and the engine.
fn run(config: TailConfig, spans: Vec<SpanData>) -> (Vec<SpanData>, TailEngine) {
    let mut engine = TailEngine::new(config).expect("valid");
    let mut kept = Vec::new();
    let now = epoch();
    for s in spans {
        engine.ingest(s, now, &mut |k| kept.push(k));
    }
    (kept, engine)
}

/// A three-span trace: root 1 (dur `root_ms`) with children 2 and 3.
fn trace(t: u128, root_ms: u64) -> Vec<SpanData> {
    vec![
        span(t, 2, 1, 1, 5),
        span(t, 3, 1, 6, 5),
        span(t, 1, 0, 0, root_ms),
    ]
}

#[test]
fn nothing_special_is_dropped_at_baseline_zero() {
    let (kept, engine) = run(TailConfig::new(), trace(1, 20));
    assert!(kept.is_empty());
    let s = engine.stats();
    assert_eq!((s.traces_seen, s.traces_dropped, s.traces_kept), (1, 1, 0));
    assert_eq!((s.spans_seen, s.spans_dropped_decision), (3, 3));
    assert_eq!((s.buffered_spans, s.buffered_traces), (0, 0));
}

#[test]
fn a_failed_span_keeps_the_whole_trace() {
    let mut spans = trace(1, 20);
    spans[0] = failed(spans[0].clone());
    let (kept, engine) = run(TailConfig::new(), spans);
    assert_eq!(
        kept.len(),
        3,
        "every span of the trace, not only the failed one"
    );
    assert_eq!(engine.stats().traces_kept, 1);
    // Unless errors are not a reason.
    let mut spans = trace(1, 20);
    spans[0] = failed(spans[0].clone());
    let (kept, _) = run(TailConfig::new().keep_errors(false), spans);
    assert!(kept.is_empty());
}

#[test]
fn slow_roots_are_kept_fast_ones_are_not() {
    let cfg = TailConfig::new().latency_threshold(Duration::from_millis(100));
    let mut spans = trace(1, 99);
    spans.extend(trace(2, 101));
    let (kept, _) = run(cfg, spans);
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter()
            .all(|s| s.span_context.trace_id() == TraceId::from(2))
    );
}

#[test]
fn a_stage_over_its_own_threshold_keeps_the_trace() {
    let cfg = TailConfig::new()
        .stage_threshold("rerank", Duration::from_millis(50))
        .stage_threshold("embed", Duration::from_millis(10));
    let spans = vec![
        // Trace 1: rerank 40 ms (under 50), embed 5 ms: dropped.
        stage(1, 2, 1, "rerank", 40),
        stage(1, 3, 1, "embed", 5),
        span(1, 1, 0, 0, 60),
        // Trace 2: embed 11 ms (over 10): kept, though the root is fast.
        stage(2, 2, 1, "embed", 11),
        span(2, 1, 0, 0, 12),
        // Trace 3: a stage without a threshold is never "slow".
        stage(3, 2, 1, "generate", 5_000),
        span(3, 1, 0, 0, 5_001),
    ];
    let (kept, _) = run(cfg, spans);
    let ids: Vec<_> = kept.iter().map(|s| s.span_context.trace_id()).collect();
    assert_eq!(ids, vec![TraceId::from(2); 2]);
}

#[test]
fn rules_force_and_baseline() {
    let premium = TailRule::any_span(Condition::metadata("tier", "premium"));
    let many = TailRule::custom(|spans| spans.len() >= 3);
    let cfg = TailConfig::new().rule(premium).rule(many);
    let spans = vec![
        with_attrs(
            span(1, 1, 0, 0, 1),
            vec![KeyValue::new("spanline.metadata.tier", "premium")],
        ),
        with_attrs(
            span(2, 1, 0, 0, 1),
            vec![KeyValue::new("spanline.metadata.tier", "free")],
        ),
        with_attrs(span(3, 1, 0, 0, 1), vec![KeyValue::new(names::FORCE, true)]),
    ];
    let mut all = spans;
    all.extend(trace(4, 1)); // three spans: the custom rule
    let (kept, _) = run(cfg, all);
    let mut ids: Vec<u128> = kept
        .iter()
        .map(|s| u128::from_be_bytes(s.span_context.trace_id().to_bytes()))
        .collect();
    ids.dedup();
    assert_eq!(ids, vec![1, 3, 4]);

    // Baseline: exactly the traces the documented hash selects.
    let cfg = TailConfig::new().baseline_ratio(0.3);
    let spans: Vec<SpanData> = (1..=2_000u128)
        .map(|i| {
            span(
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                1,
                0,
                0,
                1,
            )
        })
        .collect();
    let expected = spans
        .iter()
        .filter(|s| baseline_ratio_keeps(s.span_context.trace_id(), 0.3))
        .count();
    let (kept, engine) = run(cfg, spans);
    assert_eq!(kept.len(), expected);
    assert!(
        (450..=750).contains(&expected),
        "{expected} of 2000 near 30 %"
    );
    assert_eq!(engine.stats().traces_kept as usize, expected);
}

#[test]
fn late_spans_follow_the_decision() {
    let mut slow = trace(1, 500);
    slow.push(span(1, 9, 1, 400, 200)); // ends after the root
    let mut fast = trace(2, 5);
    fast.push(span(2, 9, 1, 4, 50));
    let mut all = slow;
    all.extend(fast);
    let cfg = TailConfig::new().latency_threshold(Duration::from_millis(100));
    let (kept, engine) = run(cfg, all);
    assert_eq!(
        kept.len(),
        4,
        "the late span of the kept trace is forwarded"
    );
    assert!(
        kept.iter()
            .all(|s| s.span_context.trace_id() == TraceId::from(1))
    );
    let s = engine.stats();
    assert_eq!(s.spans_dropped_late, 1);
    assert_eq!(s.traces_seen, 2, "a late span does not start a new trace");
    assert_eq!(engine.decision_for(TraceId::from(1)), Some(true));
    assert_eq!(engine.decision_for(TraceId::from(2)), Some(false));
}

#[test]
fn decision_memory_is_bounded() {
    let cfg = TailConfig::new().decision_cache(10);
    let spans = (1..=100u128).map(|t| span(t, 1, 0, 0, 1)).collect();
    let (_, engine) = run(cfg, spans);
    assert_eq!(engine.stats().cached_decisions, 10);
    assert_eq!(engine.decision_for(TraceId::from(100)), Some(false));
    assert_eq!(
        engine.decision_for(TraceId::from(1)),
        None,
        "oldest forgotten"
    );
}

#[test]
fn decision_wait_decides_on_what_arrived() {
    let cfg = TailConfig::new()
        .decision_wait(Duration::from_secs(10))
        .latency_threshold(Duration::from_millis(100));
    let mut engine = TailEngine::new(cfg).expect("valid");
    let mut kept = Vec::new();
    let t0 = epoch();
    // Children of a root that never ends here (its span lives elsewhere).
    engine.ingest(failed(span(1, 2, 1, 0, 5)), t0, &mut |k| kept.push(k));
    engine.ingest(span(2, 2, 1, 0, 5), t0 + Duration::from_secs(5), &mut |k| {
        kept.push(k)
    });
    engine.expire(t0 + Duration::from_secs(9), &mut |k| kept.push(k));
    assert!(kept.is_empty(), "nothing waited 10 s yet");
    engine.expire(t0 + Duration::from_secs(10), &mut |k| kept.push(k));
    assert_eq!(kept.len(), 1, "trace 1 decided (kept: failed)");
    assert_eq!(engine.stats().buffered_traces, 1);
    engine.expire(t0 + Duration::from_secs(15), &mut |k| kept.push(k));
    let s = engine.stats();
    assert_eq!(
        (s.traces_evicted, s.traces_kept, s.traces_dropped),
        (2, 1, 1)
    );
    assert_eq!(s.buffered_traces, 0);
}

#[test]
fn bounds_evict_the_oldest_trace_and_cap_spans() {
    let cfg = TailConfig::new().max_traces(2).max_spans_per_trace(3);
    let mut engine = TailEngine::new(cfg).expect("valid");
    let mut kept = Vec::new();
    let now = epoch();
    // Trace 1 fails in a span beyond its cap: still kept (flags count).
    for id in 2..=5 {
        engine.ingest(span(1, id, 1, 0, 1), now, &mut |k| kept.push(k));
    }
    engine.ingest(failed(span(1, 6, 1, 0, 1)), now, &mut |k| kept.push(k));
    engine.ingest(span(2, 2, 1, 0, 1), now, &mut |k| kept.push(k));
    let s = engine.stats();
    assert_eq!(s.spans_dropped_span_limit, 2);
    assert_eq!((s.buffered_traces, s.buffered_spans), (2, 4));
    // A third trace evicts trace 1, decided on what it holds.
    engine.ingest(span(3, 2, 1, 0, 1), now, &mut |k| kept.push(k));
    assert_eq!(
        kept.len(),
        3,
        "trace 1's three buffered spans, kept (failed)"
    );
    let s = engine.stats();
    assert_eq!(s.traces_evicted, 1);
    assert_eq!(s.peak_traces, 2);
    assert_eq!(s.peak_spans, 4);
    assert!(s.peak_bytes > 0 && s.buffered_bytes > 0);
    // Its late spans follow.
    engine.ingest(span(1, 7, 1, 0, 1), now, &mut |k| kept.push(k));
    assert_eq!(kept.len(), 4);
    engine.finish(&mut |k| kept.push(k));
    assert_eq!(engine.stats().buffered_spans, 0);
}

#[test]
fn invalid_configs_are_typed_errors() {
    for cfg in [
        TailConfig::new().max_traces(0),
        TailConfig::new().max_spans_per_trace(0),
        TailConfig::new().queue_capacity(0),
        TailConfig::new().baseline_ratio(2.0),
    ] {
        assert!(TailEngine::new(cfg.clone()).is_err());
        assert!(TailSamplingProcessor::new(cfg, SpanRecorder::new(1)).is_err());
    }
}

/// Through a real provider: kept traces reach the downstream recorder,
/// dropped ones do not; shutdown decides and flushes what is pending.
#[test]
fn processor_forwards_kept_traces_and_flushes_on_shutdown() {
    let recorder = SpanRecorder::new(1_000);
    let tail = TailSamplingProcessor::new(
        TailConfig::new().decision_wait(Duration::from_secs(3_600)),
        recorder.clone(),
    )
    .expect("valid");
    let stats = tail.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(tail)
        .build();
    let tracer = provider.tracer("tail");
    tracer.in_span("ok", |_| tracer.in_span("ok child", |_| {}));
    tracer.in_span("failing", |cx| {
        tracer.in_span("bad child", |c| {
            use opentelemetry::trace::TraceContextExt;
            c.span().set_status(Status::error("x"));
        });
        let _ = cx;
    });
    provider.force_flush().expect("flushed");
    let names: Vec<String> = recorder
        .spans()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, vec!["bad child", "failing"]);
    // A trace whose root has not ended: pending until shutdown, which
    // decides it (force flag: kept) and flushes it downstream.
    let pending = tracer.start("root still open");
    let open_root = {
        use opentelemetry::trace::{Span, TraceContextExt};
        let cx = opentelemetry::Context::new().with_span(pending);
        tracer
            .span_builder("child of open root")
            .with_attributes([KeyValue::new(names::FORCE, true)])
            .start_with_context(&tracer, &cx)
            .end();
        cx
    };
    provider.force_flush().expect("flushed");
    assert_eq!(recorder.len(), 2, "pending trace held back");
    provider.shutdown().expect("shut down");
    assert!(
        recorder.find("child of open root").is_some(),
        "flushed at shutdown"
    );
    let s = stats.snapshot();
    assert_eq!(s.traces_kept, 2);
    assert_eq!(s.traces_dropped, 1);
    assert_eq!(s.traces_evicted, 1);
    drop(open_root);
}

#[test]
fn counters_reach_the_metrics_recorder() {
    let rec = DebuggingRecorder::new();
    let snapshotter = rec.snapshotter();
    let mut engine = metrics::with_local_recorder(&rec, || {
        TailEngine::new(TailConfig::new().max_traces(1)).expect("valid")
    });
    let now = epoch();
    let mut sink = |_s: SpanData| {};
    let mut spans = trace(1, 5);
    spans[0] = failed(spans[0].clone());
    for s in spans {
        engine.ingest(s, now, &mut sink);
    }
    for s in trace(2, 5) {
        engine.ingest(s, now, &mut sink);
    }
    engine.ingest(span(3, 2, 1, 0, 1), now, &mut sink);
    engine.ingest(span(4, 2, 1, 0, 1), now, &mut sink); // evicts trace 3
    engine.ingest(span(2, 7, 1, 0, 1), now, &mut sink); // late
    // A snapshot drains the debugging recorder's counters: take one.
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, label: Option<&str>| -> u64 {
        snapshot
            .iter()
            .filter(|(k, _, _, _)| {
                k.key().name() == name
                    && label.is_none_or(|l| k.key().labels().any(|x| x.value() == l))
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(counter(names::SPANS_SEEN, None), 9);
    assert_eq!(counter(names::SPANS_KEPT, None), 3);
    assert_eq!(counter(names::TRACES_SEEN, None), 4);
    assert_eq!(counter(names::TRACES_KEPT, Some(names::REASON_ERROR)), 1);
    assert_eq!(counter(names::TRACES_DROPPED, None), 2);
    assert_eq!(
        counter(names::TRACES_EVICTED, Some(names::REASON_MAX_TRACES)),
        1
    );
    assert_eq!(counter(names::SPANS_DROPPED, Some(names::REASON_LATE)), 1);
    assert_eq!(
        counter(names::SPANS_DROPPED, Some(names::REASON_BASELINE)),
        4
    );
}

/// Kept spans waiting in the downstream batch processor (a schedule delay
/// of an hour) are exported at shutdown.
#[test]
fn shutdown_exports_kept_traces_held_downstream() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Buf::default();
    let writer = out.clone();
    let batch = spanline_telemetry::BatchConfig {
        schedule_delay: Duration::from_secs(3_600),
        ..Default::default()
    };
    let downstream = spanline_telemetry::BoundedBatchProcessor::spawn("test", batch, move || {
        Ok(spanline_telemetry::ConsoleExporter::new(writer))
    })
    .expect("spawned");
    let tail = TailSamplingProcessor::new(TailConfig::new(), downstream).expect("valid");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(tail)
        .build();
    let tracer = provider.tracer("t");
    for i in 0..10 {
        tracer.in_span(format!("request {i}"), |cx| {
            use opentelemetry::trace::TraceContextExt;
            if i % 2 == 0 {
                cx.span().set_status(Status::error("x"));
            }
        });
    }
    let text = || String::from_utf8_lossy(&out.0.lock().expect("lock")).to_string();
    assert!(text().is_empty(), "nothing exported before shutdown");
    provider.shutdown().expect("shut down");
    let text = text();
    assert_eq!(text.lines().count(), 5, "{text}");
    for i in [0, 2, 4, 6, 8] {
        assert!(text.contains(&format!("request {i}\"")), "{text}");
    }
}

/// The builder routes exporters and the recorder through the sampler.
#[test]
fn builder_wires_tail_sampling() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Console])
        .console_writer(std::io::sink())
        .prometheus(false)
        .recorder(100)
        .tail_sampling(TailConfig::new())
        .build()
        .expect("built");
    let tracer = guard.tracer_provider().expect("on").tracer("t");
    tracer.in_span("fine", |_| {});
    tracer.in_span("bad", |cx| {
        use opentelemetry::trace::TraceContextExt;
        cx.span().set_status(Status::error("x"));
    });
    guard.force_flush().expect("flushed");
    let recorder = guard.recorder().expect("recorder");
    assert_eq!(recorder.spans().len(), 1);
    assert!(recorder.find("bad").is_some());
    assert_eq!(guard.export_stats().exported, 1);
    let tail = guard.tail_stats().expect("tail on");
    assert_eq!((tail.traces_kept, tail.traces_dropped), (1, 1));
}

#[test]
fn environment_turns_tail_sampling_on() {
    let env = [
        ("SPANLINE_TAIL_SAMPLING", "true"),
        ("SPANLINE_TAIL_LATENCY_MS", "250"),
        ("SPANLINE_TAIL_BASELINE_RATIO", "0.01"),
        ("SPANLINE_TAIL_STAGE_LATENCY_MS", "rerank=40, embed=5"),
        ("SPANLINE_TAIL_MAX_TRACES", "100"),
    ];
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    };
    let cfg = spanline_telemetry::TelemetryConfig::from_lookup(lookup).expect("valid");
    let tail = cfg.tail_sampling().expect("on");
    assert_eq!(tail.latency_threshold, Some(Duration::from_millis(250)));
    assert_eq!(tail.baseline_ratio, 0.01);
    assert_eq!(tail.max_traces, 100);
    assert_eq!(
        tail.stage_thresholds,
        vec![
            ("rerank".to_owned(), Duration::from_millis(40)),
            ("embed".to_owned(), Duration::from_millis(5))
        ]
    );
    let bad = [
        ("SPANLINE_TAIL_SAMPLING", "true"),
        ("SPANLINE_TAIL_BASELINE_RATIO", "3"),
    ];
    let lookup = |k: &str| {
        bad.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    };
    let err = spanline_telemetry::TelemetryConfig::from_lookup(lookup).unwrap_err();
    assert_eq!(err.variable(), Some("SPANLINE_TAIL_BASELINE_RATIO"));
    let off = [("SPANLINE_TAIL_LATENCY_MS", "nonsense")];
    let lookup = |k: &str| {
        off.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    };
    let cfg = spanline_telemetry::TelemetryConfig::from_lookup(lookup).expect("not read when off");
    assert!(cfg.tail_sampling().is_none());
}
