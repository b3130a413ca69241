//! `install()` registers the global tracer provider and metrics recorder;
//! dropping the guard shuts down in bounded time. (One test per process:
//! the metrics recorder can be installed once.)

use std::time::{Duration, Instant};

use opentelemetry::trace::Tracer;
use spanline_core::Telemetry;
use spanline_telemetry::{ExporterKind, TelemetryBuilder, TelemetryError};

#[test]
fn install_registers_globals_and_drop_is_bounded() {
    let guard = TelemetryBuilder::new()
        .traces_exporters([ExporterKind::Otlp])
        .otlp_endpoint("http://127.0.0.1:1")
        .export_timeout(Duration::from_secs(2))
        .recorder(10)
        .install()
        .expect("install");

    // Spans through the global provider reach the recorder.
    let global = opentelemetry::global::tracer("global-test");
    global.in_span("through-global", |_| {});
    assert!(
        guard
            .recorder()
            .expect("recorder")
            .find("through-global")
            .is_some()
    );
    assert!(Telemetry::global().is_enabled());

    // Metrics through the facade reach the Prometheus handle.
    metrics::histogram!(spanline_core::semconv::metric::PIPELINE_DURATION).record(0.5);
    let text = guard.prometheus().expect("prometheus").render();
    assert!(text.contains("spanline_pipeline_duration_bucket"), "{text}");

    // A second install cannot take the metrics slot.
    let second = TelemetryBuilder::new().traces_exporters([]).install();
    assert!(matches!(
        second,
        Err(TelemetryError::MetricsRecorderAlreadySet)
    ));

    let started = Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_secs(15));
}
