//! Critical-path tail rules on the span tree of a real pipeline run: a
//! key's share of the critical path and the queue time on it, composed with
//! the other tail policies, from code and from the environment.

mod cp_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
use spanline_core::Telemetry;
use spanline_core::semconv::sampling as names;
use spanline_telemetry::critpath_metrics::analyze_spans;
use spanline_telemetry::sampling::{
    Condition, TailConfig, TailEngine, TailRule, TailSamplingProcessor,
};
use spanline_telemetry::{SpanRecorder, TelemetryConfig, TelemetryError};

use cp_support::run_pipeline;

/// The spans of one real pipeline run, in the order they ended.
fn one_run() -> Vec<SpanData> {
    let recorder = SpanRecorder::new(1_000);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .build();
    run_pipeline(&provider, Telemetry::from_provider(&provider), None, 1);
    let spans = recorder.spans();
    assert_eq!(
        spans
            .iter()
            .map(|s| s.span_context.trace_id())
            .collect::<std::collections::HashSet<TraceId>>()
            .len(),
        1
    );
    spans
}

/// Feed `spans` to an engine for `config`; the keep reason counted, if kept.
fn decide(config: TailConfig, spans: &[SpanData]) -> Option<String> {
    let rec = DebuggingRecorder::new();
    let snapshotter = rec.snapshotter();
    let mut engine =
        metrics::with_local_recorder(&rec, || TailEngine::new(config)).expect("valid config");
    let now = Instant::now();
    let mut kept = 0;
    for s in spans {
        engine.ingest(s.clone(), now, &mut |_| kept += 1);
    }
    let s = engine.stats();
    assert_eq!(s.traces_kept + s.traces_dropped, 1, "decided at the root");
    let reason = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(k, _, _, v)| {
            let key = k.key();
            (key.name() == names::TRACES_KEPT && v == DebugValue::Counter(1))
                .then(|| key.labels().next().map(|l| l.value().to_owned()))
                .flatten()
        });
    assert_eq!(kept > 0, reason.is_some());
    if reason.is_some() {
        assert_eq!(kept, spans.len(), "the whole trace is kept");
    }
    reason
}

fn share_of(spans: &[SpanData], key: &str) -> f64 {
    let report = analyze_spans(spans).expect("a trace");
    report
        .contributions
        .iter()
        .filter(|c| &*c.key == key)
        .map(|c| c.share)
        .sum()
}

#[test]
fn share_rule_keeps_exactly_from_the_threshold() {
    let spans = one_run();
    let share = share_of(&spans, "generate");
    assert!(share > 0.0 && share < 1.0, "{share}");
    let rule = |x: f64| TailConfig::new().rule(TailRule::critical_path_share("generate", x));
    assert_eq!(
        decide(rule(share), &spans).as_deref(),
        Some(names::REASON_CRITICAL_PATH)
    );
    assert_eq!(decide(rule((share + 0.01).min(1.0)), &spans), None);
    // The queue is a key of its own, never part of the stage around it.
    let queue_share = share_of(&spans, "wait rag.q");
    assert!(queue_share > 0.0);
    let fetch = TailConfig::new().rule(TailRule::critical_path_share("fetch", 1.0));
    assert_eq!(decide(fetch, &spans), None);
    // An absent key has no share.
    let absent = TailConfig::new().rule(TailRule::critical_path_share("nope", 0.01));
    assert_eq!(decide(absent, &spans), None);
}

#[test]
fn queue_rule_keeps_from_the_queue_time_on_the_path() {
    let spans = one_run();
    let queue = analyze_spans(&spans).expect("trace").queue_ns();
    assert!(queue >= 4_000_000, "the 4 ms wait is on the path: {queue}");
    let rule =
        |ns: u64| TailConfig::new().rule(TailRule::critical_path_queue(Duration::from_nanos(ns)));
    assert_eq!(
        decide(rule(queue), &spans).as_deref(),
        Some(names::REASON_CRITICAL_PATH)
    );
    assert_eq!(decide(rule(queue + 1_000_000), &spans), None);
}

#[test]
fn critical_path_rules_compose_with_the_other_policies() {
    let spans = one_run();
    let cp = TailRule::critical_path_share("generate", 0.0);
    // An earlier reason wins: forced, error, latency, stage, attribute rule.
    let with_rule =
        TailConfig::new()
            .rule(cp.clone())
            .rule(TailRule::any_span(Condition::attribute(
                "spanline.pipeline.name",
                cp_support::PIPELINE,
            )));
    assert_eq!(
        decide(with_rule, &spans).as_deref(),
        Some(names::REASON_RULE)
    );
    let with_latency = TailConfig::new()
        .latency_threshold(Duration::ZERO)
        .rule(cp.clone());
    assert_eq!(
        decide(with_latency, &spans).as_deref(),
        Some(names::REASON_LATENCY)
    );
    // Nothing matches: the baseline still applies after them.
    let none = TailConfig::new()
        .rule(TailRule::critical_path_share("prep", 1.0))
        .rule(TailRule::critical_path_queue(Duration::from_secs(3_600)))
        .baseline_ratio(1.0);
    assert_eq!(
        decide(none, &spans).as_deref(),
        Some(names::REASON_BASELINE)
    );
    // A custom predicate over the report.
    let custom = TailConfig::new().rule(TailRule::critical_path(|r| {
        r.dominant().is_some_and(|c| &*c.key == "generate")
    }));
    assert_eq!(
        decide(custom, &spans).as_deref(),
        Some(names::REASON_CRITICAL_PATH)
    );
}

#[test]
fn processor_keeps_a_live_pipeline_trace_by_queue_time() {
    let recorder = SpanRecorder::new(1_000);
    let tail = TailSamplingProcessor::new(
        TailConfig::new()
            .rule(TailRule::critical_path_queue(Duration::from_millis(1)))
            .rule(TailRule::critical_path_share("prep", 1.0)),
        recorder.clone(),
    )
    .expect("tail");
    let stats = tail.stats();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(tail)
        .build();
    run_pipeline(&provider, Telemetry::from_provider(&provider), None, 2);
    provider.force_flush().expect("flush");
    assert_eq!(stats.snapshot().traces_kept, 2);
    let spans = recorder.spans();
    assert!(spans.iter().any(|s| s.name == "wait rag.q"));
    assert_eq!(spans.len() as u64, stats.snapshot().spans_kept);
}

#[test]
fn shares_outside_zero_one_are_rejected() {
    for x in [1.5, -0.1, f64::NAN] {
        let c = TailConfig::new().rule(TailRule::critical_path_share("generate", x));
        assert!(
            matches!(c.validate(), Err(TelemetryError::InvalidConfig(_))),
            "{x}"
        );
        assert!(TailEngine::new(c).is_err());
    }
}

fn parse(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    TelemetryConfig::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn environment_configures_the_critical_path_rules_and_metrics() {
    let cfg = parse(&[
        ("SPANLINE_TAIL_SAMPLING", "true"),
        (
            "SPANLINE_TAIL_CRITICAL_PATH_SHARE",
            "generate=0.5, send rag.q=0.25",
        ),
        ("SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS", "50"),
        ("SPANLINE_CRITICAL_PATH_METRICS", "true"),
    ])
    .expect("valid");
    assert!(cfg.critical_path_metrics);
    let tail = cfg.tail.as_ref().expect("tail on");
    assert_eq!(
        tail.critical_path_shares,
        [
            ("generate".to_owned(), 0.5),
            ("send rag.q".to_owned(), 0.25)
        ]
    );
    assert_eq!(tail.critical_path_queue, Some(Duration::from_millis(50)));
    let rules = cfg.tail_sampling().expect("tail").rules;
    assert_eq!(rules.len(), 3);
    assert!(rules.iter().all(TailRule::is_critical_path));

    // From the environment, the rules decide like the code ones.
    let spans = one_run();
    let share = share_of(&spans, "generate");
    let env_rule = parse(&[
        ("SPANLINE_TAIL_SAMPLING", "true"),
        (
            "SPANLINE_TAIL_CRITICAL_PATH_SHARE",
            &format!("generate={share}"),
        ),
    ])
    .expect("valid")
    .tail_sampling()
    .expect("tail");
    assert_eq!(
        decide(env_rule, &spans).as_deref(),
        Some(names::REASON_CRITICAL_PATH)
    );

    assert!(!parse(&[]).expect("valid").critical_path_metrics);
    for (var, v) in [
        ("SPANLINE_TAIL_CRITICAL_PATH_SHARE", "generate=1.5"),
        ("SPANLINE_TAIL_CRITICAL_PATH_SHARE", "generate"),
        ("SPANLINE_TAIL_CRITICAL_PATH_SHARE", "=0.5"),
        ("SPANLINE_TAIL_CRITICAL_PATH_SHARE", "generate=NaN"),
        ("SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS", "-3"),
        ("SPANLINE_CRITICAL_PATH_METRICS", "sometimes"),
    ] {
        let mut vars = vec![("SPANLINE_TAIL_SAMPLING", "true")];
        vars.push((var, v));
        match parse(&vars) {
            Err(e @ TelemetryError::InvalidEnv { .. }) => assert_eq!(e.variable(), Some(var)),
            other => panic!("{var}={v}: {other:?}"),
        }
    }
}
