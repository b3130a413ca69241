//! `OTEL_SDK_DISABLED=true`: nothing is installed, and the guard hands out
//! `Telemetry::disabled()`.

use spanline_telemetry::TelemetryBuilder;

#[test]
fn disabled_mode_installs_nothing() {
    let guard = TelemetryBuilder::from_lookup(|k| match k {
        "OTEL_SDK_DISABLED" => Some("true".into()),
        // Would be invalid if anything were built from it.
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:1".into()),
        _ => None,
    })
    .expect("config")
    // install() on a disabled builder registers no global state.
    .install()
    .expect("install");
    let telemetry = guard.telemetry();
    assert!(!telemetry.is_enabled());
    assert!(!telemetry.captures_content());
    assert!(!guard.is_enabled());
    assert!(guard.tracer_provider().is_none());
    assert!(guard.recorder().is_none());
    assert!(guard.prometheus().is_none());
    assert_eq!(guard.dropped_spans(), 0);
    guard.force_flush().expect("flush is a no-op");
    guard.shutdown().expect("shutdown is a no-op");
    // The metrics recorder slot is still free.
    let (recorder, _bg) = spanline_telemetry::prometheus::PrometheusBackground::start(
        std::time::Duration::from_secs(60),
    )
    .expect("recorder");
    metrics::set_global_recorder(recorder).expect("nothing was installed");
}
