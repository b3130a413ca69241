//! Environment parsing through a lookup closure: every variable, bad values
//! give a typed error naming the variable, and `OTEL_SDK_DISABLED`.

use std::collections::HashMap;
use std::time::Duration;

use spanline_telemetry::{
    BatchConfig, ExporterKind, OtlpProtocol, SamplerConfig, TelemetryBuilder, TelemetryConfig,
    TelemetryError,
};

fn parse(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    TelemetryConfig::from_lookup(|k| map.get(k).cloned())
}

fn bad(vars: &[(&str, &str)], var: &str) {
    match parse(vars) {
        Err(e @ TelemetryError::InvalidEnv { .. }) => {
            assert_eq!(e.variable(), Some(var), "{e}");
            assert!(
                e.to_string().contains(var),
                "message names the variable: {e}"
            );
        }
        other => panic!("expected InvalidEnv for {var}, got {other:?}"),
    }
}

#[test]
fn sdk_disabled() {
    assert!(
        parse(&[("OTEL_SDK_DISABLED", "true")])
            .expect("ok")
            .disabled
    );
    assert!(
        parse(&[("OTEL_SDK_DISABLED", "TRUE")])
            .expect("ok")
            .disabled
    );
    assert!(
        !parse(&[("OTEL_SDK_DISABLED", "false")])
            .expect("ok")
            .disabled
    );
    assert!(!parse(&[("OTEL_SDK_DISABLED", "")]).expect("ok").disabled);
    bad(&[("OTEL_SDK_DISABLED", "maybe")], "OTEL_SDK_DISABLED");
    // Disabled: nothing else is read, so a bad value elsewhere is harmless.
    let c = parse(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_SAMPLER", "bogus"),
    ])
    .expect("disabled ignores the rest");
    assert!(c.disabled);
}

#[test]
fn traces_exporter() {
    let c = parse(&[("OTEL_TRACES_EXPORTER", "otlp")]).expect("ok");
    assert_eq!(c.effective_exporters(), vec![ExporterKind::Otlp]);
    let c = parse(&[("OTEL_TRACES_EXPORTER", "console, otlp,console")]).expect("ok");
    assert_eq!(
        c.effective_exporters(),
        vec![ExporterKind::Console, ExporterKind::Otlp]
    );
    let c = parse(&[("OTEL_TRACES_EXPORTER", "none")]).expect("ok");
    assert!(c.effective_exporters().is_empty());
    // Named exporter wins over the endpoint rule.
    let c = parse(&[
        ("OTEL_TRACES_EXPORTER", "console"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
    ])
    .expect("ok");
    assert_eq!(c.effective_exporters(), vec![ExporterKind::Console]);
    bad(
        &[("OTEL_TRACES_EXPORTER", "zipkin")],
        "OTEL_TRACES_EXPORTER",
    );
    bad(&[("OTEL_TRACES_EXPORTER", "bogus")], "OTEL_TRACES_EXPORTER");
    bad(
        &[("OTEL_TRACES_EXPORTER", "none,otlp")],
        "OTEL_TRACES_EXPORTER",
    );
}

#[test]
fn default_exporter_rule() {
    assert_eq!(
        parse(&[]).expect("ok").effective_exporters(),
        vec![ExporterKind::Console]
    );
    assert_eq!(
        parse(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")])
            .expect("ok")
            .effective_exporters(),
        vec![ExporterKind::Otlp]
    );
    assert_eq!(
        parse(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])
        .expect("ok")
        .effective_exporters(),
        vec![ExporterKind::Otlp]
    );
}

#[test]
fn endpoints_and_protocol() {
    let c = parse(&[]).expect("ok");
    assert_eq!(c.otlp_protocol, OtlpProtocol::Grpc);
    assert_eq!(c.otlp_traces_url(), "http://localhost:4317");
    let c = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).expect("ok");
    assert_eq!(c.otlp_traces_url(), "http://localhost:4318/v1/traces");
    let c = parse(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
    ])
    .expect("ok");
    assert_eq!(c.otlp_protocol, OtlpProtocol::Grpc);
    bad(
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    bad(
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    bad(
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x")],
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    );
    bad(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    );
}

#[test]
fn service_name_and_resource_attributes() {
    let c = parse(&[
        ("OTEL_SERVICE_NAME", "svc"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=ignored,team=ml%20infra,broken,=novalue,bad=%G0",
        ),
    ])
    .expect("malformed members never fail");
    assert_eq!(c.service_name.as_deref(), Some("svc"));
    assert_eq!(
        c.resource_attributes,
        vec![
            ("service.name".to_owned(), "ignored".to_owned()),
            ("team".to_owned(), "ml infra".to_owned()),
        ]
    );
}

#[test]
fn samplers() {
    let s = |name: &str, arg: Option<&str>| {
        let mut v = vec![("OTEL_TRACES_SAMPLER", name)];
        if let Some(a) = arg {
            v.push(("OTEL_TRACES_SAMPLER_ARG", a));
        }
        parse(&v).map(|c| c.sampler)
    };
    assert_eq!(
        parse(&[]).expect("ok").sampler,
        SamplerConfig::ParentBasedAlwaysOn
    );
    assert_eq!(s("always_on", None).expect("ok"), SamplerConfig::AlwaysOn);
    assert_eq!(s("always_off", None).expect("ok"), SamplerConfig::AlwaysOff);
    assert_eq!(
        s("traceidratio", Some("0.25")).expect("ok"),
        SamplerConfig::TraceIdRatio(0.25)
    );
    assert_eq!(
        s("traceidratio", None).expect("missing arg defaults to 1.0"),
        SamplerConfig::TraceIdRatio(1.0)
    );
    assert_eq!(
        s("parentbased_always_on", None).expect("ok"),
        SamplerConfig::ParentBasedAlwaysOn
    );
    assert_eq!(
        s("parentbased_always_off", None).expect("ok"),
        SamplerConfig::ParentBasedAlwaysOff
    );
    assert_eq!(
        s("parentbased_traceidratio", Some("0")).expect("ok"),
        SamplerConfig::ParentBasedTraceIdRatio(0.0)
    );
    bad(
        &[("OTEL_TRACES_SAMPLER", "sometimes")],
        "OTEL_TRACES_SAMPLER",
    );
    for arg in ["abc", "1.5", "-0.1", "NaN"] {
        bad(
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ],
            "OTEL_TRACES_SAMPLER_ARG",
        );
    }
}

#[test]
fn batch_processor_variables() {
    let c = parse(&[
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1500"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
    ])
    .expect("ok");
    assert_eq!(
        c.batch,
        BatchConfig {
            schedule_delay: Duration::from_millis(250),
            export_timeout: Duration::from_millis(1500),
            max_queue_size: 100,
            // Clamped to the queue size.
            max_export_batch_size: 100,
        }
    );
    bad(
        &[("OTEL_BSP_SCHEDULE_DELAY", "soon")],
        "OTEL_BSP_SCHEDULE_DELAY",
    );
    bad(
        &[("OTEL_BSP_EXPORT_TIMEOUT", "0")],
        "OTEL_BSP_EXPORT_TIMEOUT",
    );
    bad(
        &[("OTEL_BSP_EXPORT_TIMEOUT", "-5")],
        "OTEL_BSP_EXPORT_TIMEOUT",
    );
    bad(
        &[("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
        "OTEL_BSP_MAX_QUEUE_SIZE",
    );
    bad(
        &[("OTEL_BSP_MAX_QUEUE_SIZE", "1e3")],
        "OTEL_BSP_MAX_QUEUE_SIZE",
    );
    bad(
        &[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "x")],
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    );
}

#[test]
fn content_capture_switches() {
    assert!(!parse(&[]).expect("ok").capture_content);
    assert!(
        parse(&[("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")])
            .expect("ok")
            .capture_content
    );
    // spanline's switch wins.
    assert!(
        !parse(&[
            ("SPANLINE_CAPTURE_CONTENT", "false"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        ])
        .expect("ok")
        .capture_content
    );
    assert!(
        parse(&[("SPANLINE_CAPTURE_CONTENT", "true")])
            .expect("ok")
            .capture_content
    );
    bad(
        &[("SPANLINE_CAPTURE_CONTENT", "sure")],
        "SPANLINE_CAPTURE_CONTENT",
    );
    bad(
        &[("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "2")],
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    );
}

#[test]
fn metrics_and_spanline_variables() {
    assert!(
        !parse(&[("OTEL_METRICS_EXPORTER", "none")])
            .expect("ok")
            .prometheus
    );
    assert!(
        parse(&[("OTEL_METRICS_EXPORTER", "prometheus")])
            .expect("ok")
            .prometheus
    );
    bad(
        &[("OTEL_METRICS_EXPORTER", "otlp")],
        "OTEL_METRICS_EXPORTER",
    );
    let c = parse(&[("SPANLINE_PROMETHEUS_ADDR", "127.0.0.1:9464")]).expect("ok");
    assert_eq!(
        c.prometheus_addr,
        Some("127.0.0.1:9464".parse().expect("addr"))
    );
    bad(
        &[("SPANLINE_PROMETHEUS_ADDR", "localhost")],
        "SPANLINE_PROMETHEUS_ADDR",
    );
    let c = parse(&[("SPANLINE_CONSOLE_PATH", "/tmp/spans.jsonl")]).expect("ok");
    assert_eq!(
        c.console_path.as_deref(),
        Some(std::path::Path::new("/tmp/spans.jsonl"))
    );
}

#[test]
fn capture_switch_reaches_the_telemetry_handle() {
    let guard = TelemetryBuilder::from_lookup(|k| match k {
        "SPANLINE_CAPTURE_CONTENT" => Some("true".into()),
        "OTEL_TRACES_EXPORTER" => Some("none".into()),
        "OTEL_METRICS_EXPORTER" => Some("none".into()),
        _ => None,
    })
    .expect("config")
    .build()
    .expect("build");
    assert!(guard.telemetry().is_enabled());
    assert!(guard.telemetry().captures_content());
    assert!(guard.exporters().is_empty());
}
