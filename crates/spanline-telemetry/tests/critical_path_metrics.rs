//! Online critical-path metrics: a real pipeline run produces
//! `spanline.critical_path.duration{pipeline, key, type}` samples whose sums
//! are the analyser's contributions, with and without tail sampling; memory
//! and label sets stay bounded under floods.

mod cp_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry_sdk::trace::SdkTracerProvider;
use spanline_core::Telemetry;
use spanline_core::semconv::{metric, spanline};
use spanline_telemetry::critpath_metrics::{
    CriticalPathConfig, CriticalPathEngine, CriticalPathProcessor,
};
use spanline_telemetry::sampling::TailConfig;
use spanline_telemetry::{SpanRecorder, TelemetryBuilder, critpath};

use cp_support::{PIPELINE, Series, expected_sums, prom_series, run_pipeline};

#[test]
fn pipeline_run_records_each_key_with_its_type_and_the_analysers_sums() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .recorder(10_000)
        .critical_path_metrics(true)
        .build()
        .expect("build");
    let provider = guard.tracer_provider().expect("enabled").clone();
    run_pipeline(&provider, guard.telemetry(), guard.metrics_recorder(), 3);
    guard.force_flush().expect("flush");

    let stats = guard.critical_path_stats().expect("on");
    assert_eq!(stats.traces_analyzed, 3);
    assert_eq!(stats.traces_skipped, 0);
    let spans = critpath::from_recorder(&guard.recorder().expect("recorder"));
    let (sums, counts) = expected_sums(&spans);
    let text = guard.prometheus().expect("prometheus").render();
    let got_sums = prom_series(&text, "spanline_critical_path_duration_sum");
    let got_counts = prom_series(&text, "spanline_critical_path_duration_count");
    assert_eq!(
        got_sums.keys().collect::<std::collections::BTreeSet<_>>(),
        sums.keys().collect(),
        "{text}"
    );
    for (series, want) in &sums {
        let got = got_sums[series];
        assert!((got - want).abs() < 1e-9, "{series:?}: {got} vs {want}");
        assert_eq!(got_counts[series] as u64, counts[series], "{series:?}");
    }
    let types: HashMap<&str, &str> = sums
        .keys()
        .map(|(_, k, t)| (k.as_str(), t.as_str()))
        .collect();
    assert_eq!(types.get("prep"), Some(&"stage"));
    assert_eq!(types.get("generate"), Some(&"stage"));
    assert_eq!(types.get("wait rag.q"), Some(&"queue"));
    assert!(sums.keys().all(|(p, _, _)| p == PIPELINE));
    // The scrape shows the series as a histogram, labelled as documented.
    assert!(
        text.contains(&format!(
            "spanline_critical_path_duration_bucket{{pipeline=\"{PIPELINE}\",key=\"generate\",type=\"stage\",le=\"+Inf\"}} 3"
        )),
        "{text}"
    );
}

/// Exact values: one sample per trace and key, equal to the contribution.
#[test]
fn samples_equal_the_contributions_of_each_trace() {
    let debug = Arc::new(DebuggingRecorder::new());
    let snapshotter = debug.snapshotter();
    let recorder = SpanRecorder::new(10_000);
    let processor =
        CriticalPathProcessor::new(CriticalPathConfig::new().metrics_recorder(debug.clone()))
            .expect("processor");
    let stats = processor.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .with_span_processor(processor)
        .build();
    run_pipeline(&provider, Telemetry::from_provider(&provider), None, 2);
    provider.force_flush().expect("flush");
    assert_eq!(stats.snapshot().traces_analyzed, 2);

    let mut want: HashMap<Series, Vec<f64>> = HashMap::new();
    for report in spanline_critpath::analyze(&critpath::from_recorder(&recorder)) {
        for c in &report.contributions {
            want.entry((
                PIPELINE.to_owned(),
                c.key.to_string(),
                c.segment_type.as_str().to_owned(),
            ))
            .or_default()
            .push(c.duration_ns as f64 / 1e9);
        }
    }
    let mut got: HashMap<Series, Vec<f64>> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != metric::CRITICAL_PATH_DURATION {
            continue;
        }
        let label = |n: &str| {
            key.labels()
                .find(|l| l.key() == n)
                .map(|l| l.value().to_owned())
                .expect("label")
        };
        let DebugValue::Histogram(values) = value else {
            panic!("not a histogram")
        };
        got.insert(
            (
                label(metric::LABEL_PIPELINE),
                label(metric::LABEL_KEY),
                label(metric::LABEL_TYPE),
            ),
            values.into_iter().map(|v| v.into_inner()).collect(),
        );
    }
    for v in want.values_mut().chain(got.values_mut()) {
        v.sort_by(f64::total_cmp);
    }
    assert_eq!(got, want);
    assert!(got.values().all(|v| v.len() == 2), "{got:?}");
}

#[test]
fn with_tail_sampling_every_trace_is_measured_once_kept_or_not() {
    let all = SpanRecorder::new(10_000);
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .recorder(10_000)
        .tail_sampling(TailConfig::new()) // keeps errors only: drops these
        .span_processor(all.clone())
        .critical_path_metrics(true)
        .build()
        .expect("build");
    let provider = guard.tracer_provider().expect("enabled").clone();
    run_pipeline(&provider, guard.telemetry(), guard.metrics_recorder(), 2);
    guard.force_flush().expect("flush");

    let tail = guard.tail_stats().expect("tail on");
    assert_eq!(tail.traces_dropped, 2);
    assert!(guard.recorder().expect("recorder").is_empty());
    let stats = guard.critical_path_stats().expect("on");
    assert_eq!(stats.traces_analyzed, 2);
    // The sampler's buffer is the only one: no separate processor buffered.
    assert_eq!(stats.peak_traces, 0);

    let (sums, counts) = expected_sums(&critpath::from_recorder(&all));
    let text = guard.prometheus().expect("prometheus").render();
    let got_sums = prom_series(&text, "spanline_critical_path_duration_sum");
    let got_counts = prom_series(&text, "spanline_critical_path_duration_count");
    assert_eq!(got_sums.len(), sums.len(), "{text}");
    for (series, want) in &sums {
        assert!((got_sums[series] - want).abs() < 1e-9, "{series:?}");
        assert_eq!(got_counts[series] as u64, counts[series]);
    }
}

#[test]
fn never_ending_traces_stay_within_the_bounds_and_are_counted() {
    let debug = DebuggingRecorder::new();
    let mut engine = metrics::with_local_recorder(&debug, || {
        CriticalPathEngine::new(
            CriticalPathConfig::new()
                .max_traces(100)
                .max_spans_per_trace(8),
        )
    })
    .expect("engine");
    let now = Instant::now();
    // 10,000 traces whose root never ends, 4 spans each.
    for t in 1..=10_000u128 {
        for i in 0..4u64 {
            engine.ingest(cp_support::child(t, 10 + i, 1, "work"), now);
        }
    }
    // One trace flooding its span limit.
    for i in 0..1_000u64 {
        engine.ingest(cp_support::child(20_000, 10 + i, 1, "work"), now);
    }
    let s = engine.stats();
    assert!(s.peak_traces <= 100, "{s:?}");
    assert!(s.peak_spans <= 100 * 8, "{s:?}");
    assert_eq!(s.traces_skipped, 10_001 - 100);
    assert_eq!(s.spans_dropped_span_limit, 1_000 - 8);
    assert_eq!(s.traces_analyzed, 0);
    assert_eq!(s.spans_seen, 41_000);
    // The decision wait lets the rest go, counted as timeouts.
    engine.expire(now + Duration::from_secs(31));
    let s = engine.stats();
    assert_eq!((s.buffered_traces, s.buffered_spans), (0, 0));
    assert_eq!(s.traces_skipped, 10_001);
    let counter = |reason: &str| {
        debug
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(k, _, _, v)| {
                let key = k.key();
                (key.name() == metric::CRITICAL_PATH_TRACES_SKIPPED
                    && key.labels().any(|l| l.value() == reason))
                .then_some(v)
            })
    };
    assert_eq!(counter("max_traces"), Some(DebugValue::Counter(9_901)));
}

#[test]
fn distinct_keys_beyond_the_cap_fold_into_other() {
    let debug = Arc::new(DebuggingRecorder::new());
    let mut engine = CriticalPathEngine::new(
        CriticalPathConfig::new()
            .max_series(3)
            .metrics_recorder(debug.clone()),
    )
    .expect("engine");
    let now = Instant::now();
    // 50 traces, each a root with one stage of a new name.
    for t in 1..=50u128 {
        let stage = format!("stage-{t}");
        let mut s = cp_support::child(t, 2, 1, "stage");
        s.attributes = vec![
            opentelemetry::KeyValue::new(spanline::STAGE_NAME, stage),
            opentelemetry::KeyValue::new(spanline::PIPELINE_NAME, PIPELINE),
        ];
        engine.ingest(s, now);
        engine.ingest(cp_support::root(t, 1, PIPELINE), now);
    }
    let s = engine.stats();
    assert_eq!(s.traces_analyzed, 50);
    let mut series: Vec<(String, String)> = debug
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| k.key().name() == metric::CRITICAL_PATH_DURATION)
        .map(|(k, _, _, _)| {
            let label = |n: &str| {
                k.key()
                    .labels()
                    .find(|l| l.key() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            (label(metric::LABEL_KEY), label(metric::LABEL_TYPE))
        })
        .collect();
    series.sort();
    // Trace 1 registers its stage and the root's own time, trace 2 its
    // stage; the cap (3) is then full and later stages share `_other`.
    assert_eq!(
        series,
        [
            ("_other".to_owned(), "stage".to_owned()),
            ("root".to_owned(), "self".to_owned()),
            ("stage-1".to_owned(), "stage".to_owned()),
            ("stage-2".to_owned(), "stage".to_owned()),
        ]
    );
    assert_eq!(s.series, 4);
    assert_eq!(s.samples_other, 48);
    assert_eq!(s.samples, 100);
}

/// Both ends of a Kafka hop in one process: the worker's part (a queue
/// wait and a `process` span, both with the message's remote parent) ends
/// first, then the caller's. The queue wait does not complete the worker's
/// part, and with tail sampling the caller's later part is still analysed
/// without being decided twice.
#[test]
fn each_local_part_of_a_trace_is_analysed_once_with_tail_sampling() {
    use opentelemetry::KeyValue;
    use spanline_core::semconv::messaging;
    let debug = Arc::new(DebuggingRecorder::new());
    let mut engine = metrics::with_local_recorder(&*debug, || {
        spanline_telemetry::sampling::TailEngine::new(
            TailConfig::new()
                .critical_path_metrics(CriticalPathConfig::new().metrics_recorder(debug.clone())),
        )
    })
    .expect("engine");
    let now = Instant::now();
    let remote = |mut s: opentelemetry_sdk::trace::SpanData| {
        s.parent_span_is_remote = true;
        s
    };
    let mut queue = remote(cp_support::child(7, 20, 5, "spanline.queue requests"));
    queue.attributes = vec![KeyValue::new(
        spanline::SEGMENT_TYPE,
        messaging::segment::QUEUE,
    )];
    let mut stage = cp_support::child(7, 22, 21, "lookup");
    stage.attributes = vec![
        KeyValue::new(spanline::STAGE_NAME, "lookup"),
        KeyValue::new(spanline::PIPELINE_NAME, "worker"),
    ];
    let process = remote(cp_support::child(7, 21, 5, "process requests"));
    let mut kept = 0;
    engine.ingest(queue, now, &mut |_| kept += 1);
    assert_eq!(
        engine.stats().traces_kept + engine.stats().traces_dropped,
        0
    );
    engine.ingest(stage, now, &mut |_| kept += 1);
    engine.ingest(process, now, &mut |_| kept += 1);
    let cp = engine.critical_path_stats().expect("on");
    assert_eq!(
        engine.stats().traces_dropped,
        1,
        "decided at the process span"
    );
    assert_eq!(cp.snapshot().traces_analyzed, 1);
    // The caller's part: its hop child, then its root.
    engine.ingest(
        cp_support::child(7, 5, 1, "remote-lookup"),
        now,
        &mut |_| kept += 1,
    );
    engine.ingest(cp_support::root(7, 1, PIPELINE), now, &mut |_| kept += 1);
    let s = engine.stats();
    assert_eq!((s.traces_seen, s.traces_dropped, s.traces_kept), (1, 1, 0));
    assert_eq!(s.spans_dropped_late, 2);
    assert_eq!(kept, 0);
    assert_eq!(cp.snapshot().traces_analyzed, 2);
    assert_eq!(s.buffered_traces, 0);
    let pipelines: std::collections::BTreeSet<String> = debug
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| k.key().name() == metric::CRITICAL_PATH_DURATION)
        .filter_map(|(k, _, _, _)| {
            k.key()
                .labels()
                .find(|l| l.key() == metric::LABEL_PIPELINE)
                .map(|l| l.value().to_owned())
        })
        .collect();
    assert_eq!(pipelines, ["cp".to_owned(), "worker".to_owned()].into());
}

/// The lean conversion the online analysis uses gives the same report as
/// the full one, for a sequential pipeline with a queue wait and for a
/// parallel group.
#[test]
fn lean_conversion_gives_the_same_reports() {
    use spanline_core::{
        Pipeline, RequestContext, StageDescriptor, StageError, StageKind, stage_fn,
    };
    let recorder = SpanRecorder::new(10_000);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .build();
    let telemetry = Telemetry::from_provider(&provider);
    run_pipeline(&provider, telemetry.clone(), None, 2);
    let step = |name: &'static str, ms: u64| {
        stage_fn(
            StageDescriptor::new(name, StageKind::Custom),
            move |x: u8, _ctx: RequestContext| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<u8, StageError>(x)
            },
        )
    };
    let parallel = Pipeline::builder("par")
        .telemetry(telemetry)
        .then(step("a", 1))
        .parallel((step("b", 3), step("c", 1)))
        .then(stage_fn(
            StageDescriptor::new("join", StageKind::Custom),
            |(x, _y): (u8, u8), _ctx: RequestContext| async move { Ok::<u8, StageError>(x) },
        ))
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(parallel.run(1, &RequestContext::new()))
        .expect("run");
    let spans = recorder.spans();
    let mut by_trace: HashMap<opentelemetry::trace::TraceId, Vec<_>> = HashMap::new();
    for s in spans {
        by_trace
            .entry(s.span_context.trace_id())
            .or_default()
            .push(s);
    }
    assert_eq!(by_trace.len(), 3);
    for spans in by_trace.values() {
        let full: Vec<_> = spans.iter().map(critpath::convert).collect();
        let refs: Vec<_> = full.iter().collect();
        let want = spanline_critpath::analyze_trace(&refs).expect("report");
        let got = spanline_telemetry::critpath_metrics::analyze_spans(spans).expect("report");
        assert!(want.structured);
        assert_eq!(got, want);
    }
}

/// A background child ending after its root (a true root, no parent) is
/// late for the tail sampler and not buffered again for the analysis.
#[test]
fn background_children_after_a_true_root_are_not_buffered_again() {
    let debug = Arc::new(DebuggingRecorder::new());
    let mut engine = spanline_telemetry::sampling::TailEngine::new(
        TailConfig::new().critical_path_metrics(CriticalPathConfig::new().metrics_recorder(debug)),
    )
    .expect("engine");
    let now = Instant::now();
    let mut sink = |_s: opentelemetry_sdk::trace::SpanData| {};
    engine.ingest(cp_support::root(9, 1, PIPELINE), now, &mut sink);
    engine.ingest(cp_support::child(9, 2, 1, "background"), now, &mut sink);
    let s = engine.stats();
    assert_eq!(
        (s.traces_seen, s.spans_dropped_late, s.buffered_traces),
        (1, 1, 0)
    );
    let cp = engine.critical_path_stats().expect("on").snapshot();
    assert_eq!((cp.traces_analyzed, cp.traces_skipped), (1, 0));
}
