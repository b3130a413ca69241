//! Every spanline histogram renders as a Prometheus histogram (explicit
//! buckets), never as a summary.

use spanline_core::semconv::metric;
use spanline_telemetry::TelemetryBuilder;
use spanline_telemetry::prometheus::{build_prometheus_recorder, histogram_buckets};

#[test]
fn spanline_histograms_have_buckets() {
    let recorder = build_prometheus_recorder().expect("recorder");
    metrics::with_local_recorder(&recorder, || {
        for (name, _) in histogram_buckets() {
            metrics::histogram!(name, metric::LABEL_STAGE => "embed").record(0.003);
        }
    });
    let text = recorder.handle().render();
    for (name, buckets) in histogram_buckets() {
        let prom = name.replace('.', "_");
        assert!(
            text.contains(&format!("# TYPE {prom} histogram")),
            "{prom}\n{text}"
        );
        assert!(!text.contains(&format!("# TYPE {prom} summary")));
        assert_eq!(
            text.matches(&format!("{prom}_bucket{{")).count(),
            buckets.len() + 1,
            "{prom}: one line per bucket plus +Inf"
        );
    }
}

#[test]
fn built_guard_exposes_a_local_recorder() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .build()
        .expect("build");
    let recorder = guard.metrics_recorder().expect("built, not installed");
    metrics::with_local_recorder(recorder, || {
        metrics::histogram!(metric::STAGE_DURATION).record(0.2);
    });
    let text = guard.prometheus().expect("handle").render();
    assert!(text.contains("spanline_stage_duration_bucket"), "{text}");
}

/// A guard that is built (not installed) counts its exports and drops in
/// its own Prometheus recorder, so its scrape shows them.
#[test]
fn a_built_guard_scrapes_its_export_counters() {
    use opentelemetry::trace::{Tracer, TracerProvider};
    use spanline_testkit::bench::DiscardExporter;

    let guard = TelemetryBuilder::new()
        .traces_exporters([])
        .span_exporter(DiscardExporter)
        .build()
        .expect("telemetry");
    let tracer = guard.tracer_provider().expect("enabled").tracer("t");
    for _ in 0..10 {
        tracer.in_span("s", |_| {});
    }
    guard.force_flush().expect("flush");
    let text = guard.prometheus().expect("prometheus").render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("spanline_telemetry_spans_exported") && l.ends_with(" 10")),
        "{text}"
    );
}
