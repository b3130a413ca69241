//! Configuration read from the environment (`OTEL_*`, `SPANLINE_*`).
//!
//! Everything is parsed through [`TelemetryConfig::from_lookup`], which
//! takes a lookup closure, so tests never mutate the process environment.
//! [`TelemetryConfig::from_env`] is the same with `std::env::var`.

use spanline_core::propagation::percent_decode;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::TelemetryError;
use crate::processor::BatchConfig;

/// Names of the environment variables this crate reads.
pub mod env {
    /// `true` disables the SDK: nothing is installed.
    pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    /// Comma list of span exporters: `otlp`, `console`, `none`.
    pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    /// Metrics exporter: `prometheus` (default) or `none`.
    pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
    /// Base OTLP endpoint (all signals).
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// OTLP endpoint for traces only (used as is).
    pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// OTLP protocol: `grpc` or `http/protobuf`.
    pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// OTLP protocol for traces only (wins over the general one).
    pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    /// `service.name` of the resource.
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    /// Extra resource attributes, `k=v,k=v`, percent-encoded values.
    pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// Sampler name.
    pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    /// Sampler argument (the ratio for the ratio samplers).
    pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    /// Batch processor: delay between two scheduled exports (ms).
    pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
    /// Batch processor: bound on one export (ms).
    pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
    /// Batch processor: queue capacity (spans).
    pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    /// Batch processor: largest batch handed to the exporter (spans).
    pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    /// spanline's content-capture switch (wins over the GenAI one).
    pub const SPANLINE_CAPTURE_CONTENT: &str = "SPANLINE_CAPTURE_CONTENT";
    /// The GenAI instrumentation content-capture switch.
    pub const OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: &str =
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";
    /// File the console exporter appends to (default: stdout).
    pub const SPANLINE_CONSOLE_PATH: &str = "SPANLINE_CONSOLE_PATH";
    /// Address of the Prometheus `/metrics` listener (`host:port`); needs the
    /// `prometheus-listener` feature.
    pub const SPANLINE_PROMETHEUS_ADDR: &str = "SPANLINE_PROMETHEUS_ADDR";
    /// `true` turns tail sampling on (see `docs/sampling.md`); the other
    /// `SPANLINE_TAIL_*` variables are read only then.
    pub const SPANLINE_TAIL_SAMPLING: &str = "SPANLINE_TAIL_SAMPLING";
    /// Tail sampling: keep traces whose local root took longer (ms).
    pub const SPANLINE_TAIL_LATENCY_MS: &str = "SPANLINE_TAIL_LATENCY_MS";
    /// Tail sampling: ratio of the other traces kept, in `[0, 1]`.
    pub const SPANLINE_TAIL_BASELINE_RATIO: &str = "SPANLINE_TAIL_BASELINE_RATIO";
    /// Tail sampling: keep traces with a failed span (`true`/`false`).
    pub const SPANLINE_TAIL_KEEP_ERRORS: &str = "SPANLINE_TAIL_KEEP_ERRORS";
    /// Tail sampling: longest wait for a trace's local root (ms).
    pub const SPANLINE_TAIL_DECISION_WAIT_MS: &str = "SPANLINE_TAIL_DECISION_WAIT_MS";
    /// Tail sampling: most traces buffered.
    pub const SPANLINE_TAIL_MAX_TRACES: &str = "SPANLINE_TAIL_MAX_TRACES";
    /// Tail sampling: most spans buffered per trace.
    pub const SPANLINE_TAIL_MAX_SPANS_PER_TRACE: &str = "SPANLINE_TAIL_MAX_SPANS_PER_TRACE";
    /// Tail sampling: per-stage thresholds, `stage=ms,stage=ms`.
    pub const SPANLINE_TAIL_STAGE_LATENCY_MS: &str = "SPANLINE_TAIL_STAGE_LATENCY_MS";
    /// Tail sampling: keep traces where a key holds at least this share of
    /// the critical path, `key=share,key=share` (shares in `[0, 1]`).
    pub const SPANLINE_TAIL_CRITICAL_PATH_SHARE: &str = "SPANLINE_TAIL_CRITICAL_PATH_SHARE";
    /// Tail sampling: keep traces whose critical path spent at least this
    /// long in queue waits (ms).
    pub const SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS: &str = "SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS";
    /// `true` records online critical-path metrics
    /// (`spanline.critical_path.duration`).
    pub const SPANLINE_CRITICAL_PATH_METRICS: &str = "SPANLINE_CRITICAL_PATH_METRICS";
}

/// Tail-sampling settings from the `SPANLINE_TAIL_*` environment (the
/// subset of [`TailConfig`](crate::sampling::TailConfig) that is plain
/// data; rules are set in code).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct TailSamplingEnv {
    /// `SPANLINE_TAIL_LATENCY_MS`.
    pub latency_threshold: Option<Duration>,
    /// `SPANLINE_TAIL_BASELINE_RATIO`.
    pub baseline_ratio: Option<f64>,
    /// `SPANLINE_TAIL_KEEP_ERRORS`.
    pub keep_errors: Option<bool>,
    /// `SPANLINE_TAIL_DECISION_WAIT_MS`.
    pub decision_wait: Option<Duration>,
    /// `SPANLINE_TAIL_MAX_TRACES`.
    pub max_traces: Option<usize>,
    /// `SPANLINE_TAIL_MAX_SPANS_PER_TRACE`.
    pub max_spans_per_trace: Option<usize>,
    /// `SPANLINE_TAIL_STAGE_LATENCY_MS`.
    pub stage_thresholds: Vec<(String, Duration)>,
    /// `SPANLINE_TAIL_CRITICAL_PATH_SHARE`.
    pub critical_path_shares: Vec<(String, f64)>,
    /// `SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS`.
    pub critical_path_queue: Option<Duration>,
}

impl TailSamplingEnv {
    /// The tail configuration: defaults overridden by what was set.
    pub fn to_tail_config(&self) -> crate::sampling::TailConfig {
        let mut c = crate::sampling::TailConfig::new();
        if let Some(d) = self.latency_threshold {
            c = c.latency_threshold(d);
        }
        if let Some(r) = self.baseline_ratio {
            c = c.baseline_ratio(r);
        }
        if let Some(b) = self.keep_errors {
            c = c.keep_errors(b);
        }
        if let Some(d) = self.decision_wait {
            c = c.decision_wait(d);
        }
        if let Some(n) = self.max_traces {
            c = c.max_traces(n);
        }
        if let Some(n) = self.max_spans_per_trace {
            c = c.max_spans_per_trace(n);
        }
        for (stage, d) in &self.stage_thresholds {
            c = c.stage_threshold(stage.clone(), *d);
        }
        for (key, share) in &self.critical_path_shares {
            c = c.rule(crate::sampling::TailRule::critical_path_share(
                key.clone(),
                *share,
            ));
        }
        if let Some(d) = self.critical_path_queue {
            c = c.rule(crate::sampling::TailRule::critical_path_queue(d));
        }
        c
    }
}

/// A span exporter named in `OTEL_TRACES_EXPORTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExporterKind {
    /// OTLP over gRPC or HTTP/protobuf (see [`OtlpProtocol`]).
    Otlp,
    /// One JSON object per span and line, to stdout or a file.
    Console,
    /// An exporter given in code ([`TelemetryBuilder::span_exporter`](crate::TelemetryBuilder::span_exporter));
    /// never named by the environment.
    Custom,
}

impl ExporterKind {
    /// The name used in `OTEL_TRACES_EXPORTER`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::Console => "console",
            ExporterKind::Custom => "custom",
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`grpc`), default port 4317.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`), default port 4318.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Which spans are sampled (`OTEL_TRACES_SAMPLER`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: sample this fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    #[default]
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    /// The SDK sampler this configuration stands for.
    pub fn to_sampler(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler;
        match self {
            SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
            SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
            SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerConfig::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerConfig::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Everything the environment can configure. Builder setters on
/// [`TelemetryBuilder`](crate::TelemetryBuilder) override these fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// `OTEL_SDK_DISABLED`: install nothing.
    pub disabled: bool,
    /// `OTEL_TRACES_EXPORTER`. `None` means "not named": console when no OTLP
    /// endpoint is set, OTLP when one is. `Some(vec![])` means `none`.
    pub traces_exporters: Option<Vec<ExporterKind>>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base; `/v1/traces` is appended for HTTP).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is; wins over the base).
    pub otlp_traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub otlp_protocol: OtlpProtocol,
    /// `OTEL_SERVICE_NAME` (wins over `service.name` in the attributes).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: SamplerConfig,
    /// `OTEL_BSP_*`.
    pub batch: BatchConfig,
    /// `SPANLINE_CAPTURE_CONTENT` or
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`.
    pub capture_content: bool,
    /// `OTEL_METRICS_EXPORTER` is not `none`: build the Prometheus recorder.
    pub prometheus: bool,
    /// `SPANLINE_PROMETHEUS_ADDR`.
    pub prometheus_addr: Option<std::net::SocketAddr>,
    /// `SPANLINE_CONSOLE_PATH`.
    pub console_path: Option<PathBuf>,
    /// `SPANLINE_TAIL_SAMPLING` and the other `SPANLINE_TAIL_*` variables.
    pub tail: Option<TailSamplingEnv>,
    /// `SPANLINE_CRITICAL_PATH_METRICS`.
    pub critical_path_metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            disabled: false,
            traces_exporters: None,
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
            otlp_protocol: OtlpProtocol::Grpc,
            service_name: None,
            resource_attributes: Vec::new(),
            sampler: SamplerConfig::default(),
            batch: BatchConfig::default(),
            capture_content: false,
            prometheus: true,
            prometheus_addr: None,
            console_path: None,
            tail: None,
            critical_path_metrics: false,
        }
    }
}

/// Default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default OTLP/HTTP traces endpoint.
pub const DEFAULT_HTTP_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";

impl TelemetryConfig {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read configuration through `lookup` (a variable's value or `None`).
    /// Empty values count as unset.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, TelemetryError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut cfg = TelemetryConfig::default();

        if let Some(v) = get(env::OTEL_SDK_DISABLED) {
            cfg.disabled = parse_bool(env::OTEL_SDK_DISABLED, &v)?;
            if cfg.disabled {
                // Disabled means nothing is built: the rest is not read,
                // so a stray invalid value cannot fail the start.
                return Ok(cfg);
            }
        }
        if let Some(v) = get(env::OTEL_TRACES_EXPORTER) {
            cfg.traces_exporters = Some(parse_exporters(&v)?);
        }
        if let Some(v) = get(env::OTEL_METRICS_EXPORTER) {
            cfg.prometheus = parse_metrics_exporter(&v)?;
        }
        cfg.otlp_endpoint = get(env::OTEL_EXPORTER_OTLP_ENDPOINT);
        cfg.otlp_traces_endpoint = get(env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
        for var in [
            env::OTEL_EXPORTER_OTLP_ENDPOINT,
            env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        ] {
            if let Some(v) = get(var) {
                validate_endpoint(var, &v)?;
            }
        }
        if let Some(v) = get(env::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) {
            cfg.otlp_protocol = parse_protocol(env::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, &v)?;
        } else if let Some(v) = get(env::OTEL_EXPORTER_OTLP_PROTOCOL) {
            cfg.otlp_protocol = parse_protocol(env::OTEL_EXPORTER_OTLP_PROTOCOL, &v)?;
        }
        cfg.service_name = get(env::OTEL_SERVICE_NAME);
        if let Some(v) = get(env::OTEL_RESOURCE_ATTRIBUTES) {
            cfg.resource_attributes = parse_resource_attributes(&v);
        }
        cfg.sampler = parse_sampler(
            get(env::OTEL_TRACES_SAMPLER).as_deref(),
            get(env::OTEL_TRACES_SAMPLER_ARG).as_deref(),
        )?;

        let mut batch = BatchConfig::default();
        if let Some(v) = get(env::OTEL_BSP_SCHEDULE_DELAY) {
            batch.schedule_delay = parse_millis(env::OTEL_BSP_SCHEDULE_DELAY, &v, false)?;
        }
        if let Some(v) = get(env::OTEL_BSP_EXPORT_TIMEOUT) {
            batch.export_timeout = parse_millis(env::OTEL_BSP_EXPORT_TIMEOUT, &v, true)?;
        }
        if let Some(v) = get(env::OTEL_BSP_MAX_QUEUE_SIZE) {
            batch.max_queue_size = parse_count(env::OTEL_BSP_MAX_QUEUE_SIZE, &v)?;
        }
        if let Some(v) = get(env::OTEL_BSP_MAX_EXPORT_BATCH_SIZE) {
            batch.max_export_batch_size = parse_count(env::OTEL_BSP_MAX_EXPORT_BATCH_SIZE, &v)?;
        }
        cfg.batch = batch.normalized();

        if let Some(v) = get(env::SPANLINE_CAPTURE_CONTENT) {
            cfg.capture_content = parse_bool(env::SPANLINE_CAPTURE_CONTENT, &v)?;
        } else if let Some(v) = get(env::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) {
            cfg.capture_content =
                parse_bool(env::OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, &v)?;
        }
        if let Some(v) = get(env::SPANLINE_PROMETHEUS_ADDR) {
            cfg.prometheus_addr = Some(v.parse().map_err(|e| {
                TelemetryError::invalid(
                    env::SPANLINE_PROMETHEUS_ADDR,
                    &v,
                    format!("expected ip:port ({e})"),
                )
            })?);
        }
        cfg.console_path = get(env::SPANLINE_CONSOLE_PATH).map(PathBuf::from);
        if let Some(v) = get(env::SPANLINE_CRITICAL_PATH_METRICS) {
            cfg.critical_path_metrics = parse_bool(env::SPANLINE_CRITICAL_PATH_METRICS, &v)?;
        }
        if let Some(v) = get(env::SPANLINE_TAIL_SAMPLING)
            && parse_bool(env::SPANLINE_TAIL_SAMPLING, &v)?
        {
            cfg.tail = Some(parse_tail(&get)?);
        }
        Ok(cfg)
    }

    /// The tail-sampling configuration the environment asked for.
    pub fn tail_sampling(&self) -> Option<crate::sampling::TailConfig> {
        self.tail.as_ref().map(TailSamplingEnv::to_tail_config)
    }

    /// The span exporters that will actually run, after the default rule:
    /// none named and no OTLP endpoint set → console; none named and an
    /// endpoint set → OTLP.
    pub fn effective_exporters(&self) -> Vec<ExporterKind> {
        match &self.traces_exporters {
            Some(list) => list.clone(),
            None if self.otlp_endpoint.is_some() || self.otlp_traces_endpoint.is_some() => {
                vec![ExporterKind::Otlp]
            }
            None => vec![ExporterKind::Console],
        }
    }

    /// The URL the OTLP exporter sends traces to, per the OTLP exporter
    /// specification: the traces endpoint as is; else the base endpoint (with
    /// `/v1/traces` appended for HTTP); else the protocol's default.
    pub fn otlp_traces_url(&self) -> String {
        if let Some(ep) = &self.otlp_traces_endpoint {
            return ep.clone();
        }
        match (&self.otlp_endpoint, self.otlp_protocol) {
            (Some(base), OtlpProtocol::Grpc) => base.clone(),
            (Some(base), OtlpProtocol::HttpProtobuf) => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, OtlpProtocol::Grpc) => DEFAULT_GRPC_ENDPOINT.to_owned(),
            (None, OtlpProtocol::HttpProtobuf) => DEFAULT_HTTP_TRACES_ENDPOINT.to_owned(),
        }
    }
}

/// Parse a boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, any case.
pub(crate) fn parse_bool(var: &'static str, v: &str) -> Result<bool, TelemetryError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(TelemetryError::invalid(var, v, "expected true or false")),
    }
}

fn parse_exporters(v: &str) -> Result<Vec<ExporterKind>, TelemetryError> {
    let var = env::OTEL_TRACES_EXPORTER;
    let mut out = Vec::new();
    let mut saw_none = false;
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = match item.to_ascii_lowercase().as_str() {
            "otlp" => ExporterKind::Otlp,
            "console" | "stdout" => ExporterKind::Console,
            "none" => {
                saw_none = true;
                continue;
            }
            "zipkin" | "jaeger" | "logging" => {
                return Err(TelemetryError::invalid(
                    var,
                    v,
                    format!("exporter `{item}` is not supported (use otlp, console or none)"),
                ));
            }
            _ => {
                return Err(TelemetryError::invalid(
                    var,
                    v,
                    format!("unknown exporter `{item}` (use otlp, console or none)"),
                ));
            }
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if saw_none && !out.is_empty() {
        return Err(TelemetryError::invalid(
            var,
            v,
            "`none` cannot be combined with other exporters",
        ));
    }
    Ok(out)
}

fn parse_metrics_exporter(v: &str) -> Result<bool, TelemetryError> {
    let mut prometheus = false;
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.to_ascii_lowercase().as_str() {
            "prometheus" => prometheus = true,
            "none" => {}
            _ => {
                return Err(TelemetryError::invalid(
                    env::OTEL_METRICS_EXPORTER,
                    v,
                    format!("unsupported metrics exporter `{item}` (use prometheus or none)"),
                ));
            }
        }
    }
    Ok(prometheus)
}

fn parse_protocol(var: &'static str, v: &str) -> Result<OtlpProtocol, TelemetryError> {
    match v.to_ascii_lowercase().as_str() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Err(TelemetryError::invalid(
            var,
            v,
            "http/json is not supported (use grpc or http/protobuf)",
        )),
        _ => Err(TelemetryError::invalid(
            var,
            v,
            "expected grpc or http/protobuf",
        )),
    }
}

fn validate_endpoint(var: &'static str, v: &str) -> Result<(), TelemetryError> {
    let lower = v.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        Some(_) => Err(TelemetryError::invalid(var, v, "missing host")),
        None => Err(TelemetryError::invalid(
            var,
            v,
            "expected an http:// or https:// URL",
        )),
    }
}

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerConfig, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        let Some(a) = arg else {
            // Documented default: a missing ratio samples everything.
            return Ok(1.0);
        };
        let r: f64 = a.parse().map_err(|_| {
            TelemetryError::invalid(
                env::OTEL_TRACES_SAMPLER_ARG,
                a,
                "expected a number in [0, 1]",
            )
        })?;
        if !(0.0..=1.0).contains(&r) {
            return Err(TelemetryError::invalid(
                env::OTEL_TRACES_SAMPLER_ARG,
                a,
                "the ratio must be in [0, 1]",
            ));
        }
        Ok(r)
    };
    let Some(name) = name else {
        return Ok(SamplerConfig::default());
    };
    Ok(match name.to_ascii_lowercase().as_str() {
        "always_on" => SamplerConfig::AlwaysOn,
        "always_off" => SamplerConfig::AlwaysOff,
        "traceidratio" => SamplerConfig::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(TelemetryError::invalid(
                env::OTEL_TRACES_SAMPLER,
                name,
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    })
}

fn parse_tail(get: &dyn Fn(&str) -> Option<String>) -> Result<TailSamplingEnv, TelemetryError> {
    let mut t = TailSamplingEnv::default();
    if let Some(v) = get(env::SPANLINE_TAIL_LATENCY_MS) {
        t.latency_threshold = Some(parse_millis(env::SPANLINE_TAIL_LATENCY_MS, &v, false)?);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_BASELINE_RATIO) {
        let var = env::SPANLINE_TAIL_BASELINE_RATIO;
        let r: f64 = v
            .parse()
            .map_err(|_| TelemetryError::invalid(var, &v, "expected a number in [0, 1]"))?;
        if !(0.0..=1.0).contains(&r) {
            return Err(TelemetryError::invalid(
                var,
                &v,
                "the ratio must be in [0, 1]",
            ));
        }
        t.baseline_ratio = Some(r);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_KEEP_ERRORS) {
        t.keep_errors = Some(parse_bool(env::SPANLINE_TAIL_KEEP_ERRORS, &v)?);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_DECISION_WAIT_MS) {
        t.decision_wait = Some(parse_millis(env::SPANLINE_TAIL_DECISION_WAIT_MS, &v, true)?);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_MAX_TRACES) {
        t.max_traces = Some(parse_count(env::SPANLINE_TAIL_MAX_TRACES, &v)?);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_MAX_SPANS_PER_TRACE) {
        t.max_spans_per_trace = Some(parse_count(env::SPANLINE_TAIL_MAX_SPANS_PER_TRACE, &v)?);
    }
    if let Some(v) = get(env::SPANLINE_TAIL_STAGE_LATENCY_MS) {
        let var = env::SPANLINE_TAIL_STAGE_LATENCY_MS;
        for member in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let Some((stage, ms)) = member.split_once('=') else {
                return Err(TelemetryError::invalid(
                    var,
                    &v,
                    "expected stage=ms,stage=ms",
                ));
            };
            let stage = stage.trim();
            if stage.is_empty() {
                return Err(TelemetryError::invalid(var, &v, "empty stage name"));
            }
            let d = parse_millis(var, ms.trim(), false)?;
            t.stage_thresholds.push((stage.to_owned(), d));
        }
    }
    if let Some(v) = get(env::SPANLINE_TAIL_CRITICAL_PATH_SHARE) {
        let var = env::SPANLINE_TAIL_CRITICAL_PATH_SHARE;
        for member in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let Some((key, share)) = member.rsplit_once('=') else {
                return Err(TelemetryError::invalid(
                    var,
                    &v,
                    "expected key=share,key=share",
                ));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(TelemetryError::invalid(var, &v, "empty key"));
            }
            let share: f64 = share
                .trim()
                .parse()
                .map_err(|_| TelemetryError::invalid(var, &v, "expected a share in [0, 1]"))?;
            if !(0.0..=1.0).contains(&share) {
                return Err(TelemetryError::invalid(
                    var,
                    &v,
                    "the share must be in [0, 1]",
                ));
            }
            t.critical_path_shares.push((key.to_owned(), share));
        }
    }
    if let Some(v) = get(env::SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS) {
        t.critical_path_queue = Some(parse_millis(
            env::SPANLINE_TAIL_CRITICAL_PATH_QUEUE_MS,
            &v,
            false,
        )?);
    }
    Ok(t)
}

fn parse_millis(var: &'static str, v: &str, nonzero: bool) -> Result<Duration, TelemetryError> {
    let ms: u64 = v
        .parse()
        .map_err(|_| TelemetryError::invalid(var, v, "expected a whole number of milliseconds"))?;
    if nonzero && ms == 0 {
        return Err(TelemetryError::invalid(var, v, "must be greater than 0"));
    }
    Ok(Duration::from_millis(ms))
}

fn parse_count(var: &'static str, v: &str) -> Result<usize, TelemetryError> {
    let n: usize = v
        .parse()
        .map_err(|_| TelemetryError::invalid(var, v, "expected a positive whole number"))?;
    if n == 0 {
        return Err(TelemetryError::invalid(var, v, "must be greater than 0"));
    }
    Ok(n)
}

/// Parse `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, values percent-encoded).
///
/// Malformed members (no `=`, empty key, a bad `%` escape, invalid UTF-8
/// after decoding) are skipped; this never fails and never panics.
pub fn parse_resource_attributes(v: &str) -> Vec<(String, String)> {
    v.split(',')
        .filter_map(|member| {
            let (k, val) = member.split_once('=')?;
            let k = percent_decode(k.trim())?;
            let val = percent_decode(val.trim())?;
            if k.is_empty() {
                return None;
            }
            Some((k, val))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("%"), None);
    }

    #[test]
    fn resource_attributes_skip_malformed() {
        let got = parse_resource_attributes("a=1,noeq,=x, b = two%20words ,c=%zz,d=,e=x=y");
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into()),
                ("d".into(), "".into()),
                ("e".into(), "x=y".into()),
            ]
        );
        assert!(parse_resource_attributes("").is_empty());
        assert!(parse_resource_attributes(",,,%").is_empty());
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let c = cfg(&[]).expect("defaults");
        assert!(!c.disabled);
        assert_eq!(c.effective_exporters(), vec![ExporterKind::Console]);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.batch, BatchConfig::default());
        assert!(!c.capture_content);
        assert!(c.prometheus);
    }

    #[test]
    fn endpoint_rule_and_urls() {
        let c = cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).expect("ok");
        assert_eq!(c.effective_exporters(), vec![ExporterKind::Otlp]);
        assert_eq!(c.otlp_traces_url(), "http://collector:4317");

        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .expect("ok");
        assert_eq!(c.otlp_traces_url(), "http://collector:4318/v1/traces");

        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .expect("ok");
        assert_eq!(c.otlp_traces_url(), "http://other:9999/custom");
        assert_eq!(c.effective_exporters(), vec![ExporterKind::Otlp]);

        let e = cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert_eq!(e.variable(), Some("OTEL_EXPORTER_OTLP_ENDPOINT"));
    }
}
