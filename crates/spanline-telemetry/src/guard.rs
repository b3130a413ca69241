//! The builder and the guard an application keeps alive.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    SdkTracerProvider, ShouldSample, Span, SpanData, SpanExporter, SpanProcessor,
    TracerProviderBuilder,
};
use spanline_core::Telemetry;

use crate::config::{ExporterKind, OtlpProtocol, SamplerConfig, TelemetryConfig};
use crate::console::ConsoleExporter;
use crate::critpath_metrics::{
    CriticalPathConfig, CriticalPathProcessor, CriticalPathStats, CriticalPathStatsHandle,
};
use crate::error::TelemetryError;
use crate::processor::{BatchConfig, BoundedBatchProcessor, ExportStats, ProcessorStats};
use crate::prometheus::{DEFAULT_UPKEEP_INTERVAL, PrometheusBackground};
use crate::recorder::SpanRecorder;
use crate::sampling::{TailConfig, TailSamplingProcessor, TailStats, TailStatsHandle};

/// Default bound on shutdown (also capped by the export timeout).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `service.name` used when none is configured.
pub const DEFAULT_SERVICE_NAME: &str = "unknown_service";

type ProviderHook = Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send>;
type CustomExporter =
    Box<dyn FnOnce(BatchConfig) -> Result<BoundedBatchProcessor, TelemetryError> + Send>;

/// Configures and starts telemetry. Start from [`TelemetryBuilder::from_env`]
/// (or [`TelemetryBuilder::new`] for defaults without the environment), adjust
/// with setters, then [`install`](Self::install) (registers the global
/// tracer provider and metrics recorder) or [`build`](Self::build) (touches
/// no global state).
pub struct TelemetryBuilder {
    config: TelemetryConfig,
    recorder_capacity: Option<usize>,
    console_writer: Option<Box<dyn Write + Send>>,
    hooks: Vec<ProviderHook>,
    custom_exporters: Vec<CustomExporter>,
    upkeep_interval: Duration,
    shutdown_timeout: Duration,
    head_sampler: Option<Box<dyn ShouldSample>>,
    tail: Option<TailConfig>,
    critical_path: Option<bool>,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("config", &self.config)
            .field("recorder_capacity", &self.recorder_capacity)
            .field("console_writer", &self.console_writer.is_some())
            .field("extra_processors", &self.hooks.len())
            .field("custom_exporters", &self.custom_exporters.len())
            .field("upkeep_interval", &self.upkeep_interval)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("head_sampler", &self.head_sampler)
            .field("tail", &self.tail)
            .field("critical_path", &self.critical_path)
            .finish()
    }
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TelemetryBuilder {
    /// Defaults, ignoring the environment.
    pub fn new() -> Self {
        Self::from_config(TelemetryConfig::default())
    }

    /// Read the process environment (see [`crate::config::env`]).
    pub fn from_env() -> Result<Self, TelemetryError> {
        Ok(Self::from_config(TelemetryConfig::from_env()?))
    }

    /// Read configuration through `lookup` instead of the process
    /// environment.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, TelemetryError>
    where
        F: Fn(&str) -> Option<String>,
    {
        Ok(Self::from_config(TelemetryConfig::from_lookup(lookup)?))
    }

    /// Start from `config`.
    pub fn from_config(config: TelemetryConfig) -> Self {
        TelemetryBuilder {
            config,
            recorder_capacity: None,
            console_writer: None,
            hooks: Vec::new(),
            custom_exporters: Vec::new(),
            upkeep_interval: DEFAULT_UPKEEP_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            head_sampler: None,
            tail: None,
            critical_path: None,
        }
    }

    /// The configuration so far.
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// Disable everything (as `OTEL_SDK_DISABLED=true`).
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.config.disabled = disabled;
        self
    }

    /// The span exporters to run (an empty list means none). Overrides
    /// `OTEL_TRACES_EXPORTER` and the default rule.
    pub fn traces_exporters(mut self, exporters: impl IntoIterator<Item = ExporterKind>) -> Self {
        let mut list: Vec<ExporterKind> = Vec::new();
        for e in exporters {
            if !list.contains(&e) {
                list.push(e);
            }
        }
        self.config.traces_exporters = Some(list);
        self
    }

    /// Export spans only where the environment asks (`OTEL_TRACES_EXPORTER`
    /// or an OTLP endpoint variable); otherwise run no exporter instead of
    /// the console default. For programs that print their own report from
    /// the recorder and want the terminal for it.
    pub fn quiet_unless_configured(self) -> Self {
        let configured = [
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        if configured {
            self
        } else {
            self.traces_exporters([])
        }
    }

    /// The base OTLP endpoint (as `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP traces endpoint, used as is (as
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn otlp_traces_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.otlp_traces_endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP transport.
    pub fn otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.config.otlp_protocol = protocol;
        self
    }

    /// `service.name`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.config.service_name = Some(name.into());
        self
    }

    /// Add (or replace) a resource attribute.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.config.resource_attributes.retain(|(k, _)| *k != key);
        self.config.resource_attributes.push((key, value.into()));
        self
    }

    /// The sampler (as `OTEL_TRACES_SAMPLER`); replaces a
    /// [`head_sampler`](Self::head_sampler).
    pub fn sampler(mut self, sampler: SamplerConfig) -> Self {
        self.config.sampler = sampler;
        self.head_sampler = None;
        self
    }

    /// Any head sampler, e.g. a
    /// [`RuleSampler`](crate::sampling::RuleSampler); wins over
    /// `OTEL_TRACES_SAMPLER`.
    pub fn head_sampler<S: ShouldSample + 'static>(mut self, sampler: S) -> Self {
        self.head_sampler = Some(Box::new(sampler));
        self
    }

    /// Tail-sample: route every exporter and the recorder through a
    /// [`TailSamplingProcessor`] with `config` (processors added with
    /// [`span_processor`](Self::span_processor) still see every sampled
    /// span). Overrides the `SPANLINE_TAIL_*` environment.
    pub fn tail_sampling(mut self, config: TailConfig) -> Self {
        self.tail = Some(config);
        self
    }

    /// Record online critical-path metrics
    /// (`spanline.critical_path.duration`, see [`crate::critpath_metrics`]):
    /// inside the tail sampler when tail sampling is on, else with a
    /// [`CriticalPathProcessor`] of its own. Overrides
    /// `SPANLINE_CRITICAL_PATH_METRICS`.
    pub fn critical_path_metrics(mut self, enabled: bool) -> Self {
        self.critical_path = Some(enabled);
        self
    }

    /// All batch settings at once.
    pub fn batch(mut self, batch: BatchConfig) -> Self {
        self.config.batch = batch.normalized();
        self
    }

    /// Longest wait of a span in a partial batch.
    pub fn schedule_delay(mut self, delay: Duration) -> Self {
        self.config.batch.schedule_delay = delay;
        self
    }

    /// Bound on one export call.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.config.batch.export_timeout = timeout;
        self.config.batch = self.config.batch.normalized();
        self
    }

    /// Queue capacity.
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.config.batch.max_queue_size = size;
        self.config.batch = self.config.batch.normalized();
        self
    }

    /// Largest batch per export.
    pub fn max_export_batch_size(mut self, size: usize) -> Self {
        self.config.batch.max_export_batch_size = size;
        self.config.batch = self.config.batch.normalized();
        self
    }

    /// The content-capture switch handed to [`Telemetry`].
    pub fn capture_content(mut self, capture: bool) -> Self {
        self.config.capture_content = capture;
        self
    }

    /// Also keep the last `capacity` finished spans in a [`SpanRecorder`]
    /// (alongside the exporters).
    pub fn recorder(mut self, capacity: usize) -> Self {
        self.recorder_capacity = Some(capacity);
        self
    }

    /// Write console spans to `writer` instead of stdout (or
    /// `SPANLINE_CONSOLE_PATH`).
    pub fn console_writer<W: Write + Send + 'static>(mut self, writer: W) -> Self {
        self.console_writer = Some(Box::new(writer));
        self
    }

    /// Append console spans to the file at `path`.
    pub fn console_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.console_path = Some(path.into());
        self
    }

    /// Build the Prometheus recorder (default on; `OTEL_METRICS_EXPORTER=none`
    /// turns it off).
    pub fn prometheus(mut self, enabled: bool) -> Self {
        self.config.prometheus = enabled;
        self
    }

    /// Serve `/metrics` on `addr` (needs the `prometheus-listener` feature;
    /// without it, building fails with a configuration error).
    pub fn prometheus_listener(mut self, addr: std::net::SocketAddr) -> Self {
        self.config.prometheus = true;
        self.config.prometheus_addr = Some(addr);
        self
    }

    /// How often the Prometheus upkeep runs (default 5 s).
    pub fn upkeep_interval(mut self, interval: Duration) -> Self {
        self.upkeep_interval = interval;
        self
    }

    /// Bound on [`TelemetryGuard::shutdown`] (default 5 s, and never more
    /// than the export timeout), plus a 0.5 s grace.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Export through `exporter` too, behind the same bounded batch
    /// processor, batch settings and counters as the built-in exporters
    /// (reported as [`ExporterKind::Custom`]). This is how a benchmark or a
    /// test runs exactly what [`init`](crate::init) builds with an exporter
    /// of its own. The exporter is moved to its worker thread and used there.
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.custom_exporters
            .push(Box::new(move |batch: BatchConfig| {
                BoundedBatchProcessor::spawn("custom", batch, move || Ok(exporter))
            }));
        self
    }

    /// Register one more span processor with the provider.
    pub fn span_processor<P: SpanProcessor + 'static>(mut self, processor: P) -> Self {
        self.hooks.push(Box::new(move |b: TracerProviderBuilder| {
            b.with_span_processor(processor)
        }));
        self
    }

    /// Start telemetry and register the global tracer provider and the
    /// global `metrics` recorder.
    pub fn install(self) -> Result<TelemetryGuard, TelemetryError> {
        self.start(true)
    }

    /// Start telemetry without touching any global state. The guard's
    /// [`telemetry`](TelemetryGuard::telemetry) emits through the built
    /// provider; the Prometheus recorder is available through
    /// [`TelemetryGuard::metrics_recorder`] for `metrics::with_local_recorder`.
    pub fn build(self) -> Result<TelemetryGuard, TelemetryError> {
        self.start(false)
    }

    fn resource(&self) -> Resource {
        let mut attrs: Vec<KeyValue> = Vec::new();
        let mut service = None;
        for (k, v) in &self.config.resource_attributes {
            if k == "service.name" {
                service = Some(v.clone());
            } else {
                attrs.push(KeyValue::new(k.clone(), v.clone()));
            }
        }
        let service = self
            .config
            .service_name
            .clone()
            .or(service)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(attrs)
            .with_service_name(service)
            .build()
    }

    fn start(mut self, install: bool) -> Result<TelemetryGuard, TelemetryError> {
        if self.config.disabled {
            return Ok(TelemetryGuard::disabled());
        }
        let batch = self.config.batch.normalized();

        // Metrics first: the processors register their counters with the
        // global recorder current when they start.
        let mut background = None;
        let mut local_recorder = None;
        if self.config.prometheus {
            let (recorder, bg) = match self.config.prometheus_addr {
                #[cfg(feature = "prometheus-listener")]
                Some(addr) => PrometheusBackground::start_listener(addr, self.upkeep_interval)?,
                #[cfg(not(feature = "prometheus-listener"))]
                Some(_) => {
                    return Err(TelemetryError::InvalidConfig(
                        "a Prometheus listener address needs the `prometheus-listener` feature"
                            .into(),
                    ));
                }
                None => PrometheusBackground::start(self.upkeep_interval)?,
            };
            if install {
                metrics::set_global_recorder(recorder)
                    .map_err(|_| TelemetryError::MetricsRecorderAlreadySet)?;
            } else {
                local_recorder = Some(Arc::new(recorder));
            }
            background = Some(bg);
        }

        let resource = self.resource();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        builder = match self.head_sampler.take() {
            Some(sampler) => builder.with_sampler(BoxedSampler(sampler)),
            None => builder.with_sampler(self.config.sampler.to_sampler()),
        };
        let tail_config = self.tail.take().or_else(|| self.config.tail_sampling());
        // The processors register their counters with the recorder current
        // on this thread: the global one when installing, else the built
        // recorder, so a built guard's scrape shows its drops too.
        let scope_recorder = local_recorder.clone();
        let scope = scope_recorder
            .as_deref()
            .map(|r| metrics::set_default_local_recorder(r));
        let mut downstream: Vec<Box<dyn SpanProcessor>> = Vec::new();
        let mut stats = Vec::new();
        for kind in self.config.effective_exporters() {
            let processor = match kind {
                ExporterKind::Otlp => {
                    let url = self.config.otlp_traces_url();
                    let protocol = self.config.otlp_protocol;
                    let timeout = batch.export_timeout;
                    BoundedBatchProcessor::spawn("otlp", batch, move || {
                        build_otlp_exporter(protocol, url, timeout)
                    })?
                }
                ExporterKind::Console => {
                    let exporter = match (self.console_writer.take(), &self.config.console_path) {
                        (Some(w), _) => ConsoleExporter::new(w),
                        (None, Some(path)) => ConsoleExporter::to_file(path)?,
                        (None, None) => ConsoleExporter::stdout(),
                    };
                    BoundedBatchProcessor::spawn("console", batch, move || Ok(exporter))?
                }
                ExporterKind::Custom => continue,
            };
            stats.push((kind, processor.stats()));
            downstream.push(Box::new(processor));
        }
        for make in self.custom_exporters.drain(..) {
            let processor = make(batch)?;
            stats.push((ExporterKind::Custom, processor.stats()));
            downstream.push(Box::new(processor));
        }
        let recorder = self.recorder_capacity.map(SpanRecorder::new);
        if let Some(r) = &recorder {
            downstream.push(Box::new(r.clone()));
        }
        let mut tail = None;
        let critical_path_config = self
            .critical_path
            .unwrap_or(self.config.critical_path_metrics)
            .then(|| match &local_recorder {
                Some(r) => CriticalPathConfig::new().metrics_recorder(r.clone()),
                None => CriticalPathConfig::new(),
            });
        let mut critical_path = None;
        match tail_config {
            Some(mut config) => {
                if config.critical_path.is_none() {
                    config.critical_path = critical_path_config;
                }
                let processor = TailSamplingProcessor::new(config, Fanout(downstream))?;
                tail = Some(processor.stats());
                critical_path = processor.critical_path_stats();
                builder = builder.with_span_processor(processor);
            }
            None => {
                for p in downstream {
                    builder = builder.with_span_processor(BoxedProcessor(p));
                }
                if let Some(config) = critical_path_config {
                    let processor = CriticalPathProcessor::new(config)?;
                    critical_path = Some(processor.stats());
                    builder = builder.with_span_processor(processor);
                }
            }
        }
        for hook in self.hooks.drain(..) {
            builder = hook(builder);
        }
        let provider = builder.build();
        drop(scope);
        if install {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
        let telemetry =
            Telemetry::from_provider(&provider).with_content_capture(self.config.capture_content);
        let prometheus = background.as_ref().map(|b| b.handle().clone());
        Ok(TelemetryGuard {
            telemetry,
            provider: Some(provider),
            recorder,
            prometheus,
            background: Mutex::new(background),
            metrics_recorder: local_recorder,
            stats,
            tail,
            critical_path,
            installed: install,
            shutdown_timeout: self.shutdown_timeout.min(batch.export_timeout),
            shut_down: AtomicBool::new(false),
        })
    }
}

/// A boxed head sampler as a sampler (the SDK takes `impl ShouldSample`).
#[derive(Debug, Clone)]
struct BoxedSampler(Box<dyn ShouldSample>);

impl ShouldSample for BoxedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// A boxed processor as a processor.
#[derive(Debug)]
struct BoxedProcessor(Box<dyn SpanProcessor>);

impl SpanProcessor for BoxedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }
    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Several processors behind one (the tail sampler's downstream).
#[derive(Debug)]
struct Fanout(Vec<Box<dyn SpanProcessor>>);

impl SpanProcessor for Fanout {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        for p in &self.0 {
            p.on_start(span, cx);
        }
    }
    fn on_end(&self, span: SpanData) {
        if let Some((last, rest)) = self.0.split_last() {
            for p in rest {
                p.on_end(span.clone());
            }
            last.on_end(span);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        let mut result = Ok(());
        for p in &self.0 {
            if let Err(e) = p.force_flush() {
                result = Err(e);
            }
        }
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = Ok(());
        for p in &self.0 {
            if let Err(e) = p.shutdown_with_timeout(timeout) {
                result = Err(e);
            }
        }
        result
    }
    fn set_resource(&mut self, resource: &Resource) {
        for p in &mut self.0 {
            p.set_resource(resource);
        }
    }
}

/// The OTLP span exporter exactly as [`TelemetryBuilder`] builds it for
/// [`ExporterKind::Otlp`] (before putting it behind its processor): gRPC
/// through tonic or HTTP/protobuf through hyper, to `url` as is (see
/// [`TelemetryConfig::otlp_traces_url`]), with `timeout` per export. Call it
/// inside a tokio runtime: both transports spawn their connection tasks on
/// it. For hosting the same exporter behind another processor, as the
/// export benchmark does with the SDK's `BatchSpanProcessor`.
pub fn build_otlp_exporter(
    protocol: OtlpProtocol,
    url: String,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let built = match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_timeout(timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(timeout)
            .build(),
    };
    built.map_err(|e| TelemetryError::Exporter {
        exporter: "otlp",
        source: Box::new(e),
    })
}

/// Keeps telemetry running; flushes and shuts down, in bounded time, when
/// dropped (or on [`shutdown`](Self::shutdown)). Safe to drop inside a
/// current-thread or multi-thread tokio runtime, or outside any runtime.
pub struct TelemetryGuard {
    telemetry: Telemetry,
    provider: Option<SdkTracerProvider>,
    recorder: Option<SpanRecorder>,
    prometheus: Option<PrometheusHandle>,
    background: Mutex<Option<PrometheusBackground>>,
    metrics_recorder: Option<Arc<PrometheusRecorder>>,
    stats: Vec<(ExporterKind, ProcessorStats)>,
    tail: Option<TailStatsHandle>,
    critical_path: Option<CriticalPathStatsHandle>,
    installed: bool,
    shutdown_timeout: Duration,
    shut_down: AtomicBool,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("enabled", &self.is_enabled())
            .field("installed", &self.installed)
            .field("exporters", &self.exporters())
            .field("recorder", &self.recorder)
            .field("prometheus", &self.prometheus.is_some())
            .field("stats", &self.export_stats())
            .finish()
    }
}

impl TelemetryGuard {
    fn disabled() -> Self {
        TelemetryGuard {
            telemetry: Telemetry::disabled(),
            provider: None,
            recorder: None,
            prometheus: None,
            background: Mutex::new(None),
            metrics_recorder: None,
            stats: Vec::new(),
            tail: None,
            critical_path: None,
            installed: false,
            shutdown_timeout: Duration::ZERO,
            shut_down: AtomicBool::new(true),
        }
    }

    /// The handle pipelines emit through ([`Telemetry::disabled`] when the
    /// SDK is disabled).
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.clone()
    }

    /// Whether telemetry is running (false under `OTEL_SDK_DISABLED`).
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The SDK tracer provider, when enabled.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// The in-memory span recorder, when configured.
    pub fn recorder(&self) -> Option<SpanRecorder> {
        self.recorder.clone()
    }

    /// The Prometheus handle (`render()` gives the exposition text).
    pub fn prometheus(&self) -> Option<PrometheusHandle> {
        self.prometheus.clone()
    }

    /// The Prometheus recorder when it was built without installing it
    /// ([`TelemetryBuilder::build`]); use it with
    /// `metrics::with_local_recorder`.
    pub fn metrics_recorder(&self) -> Option<&PrometheusRecorder> {
        self.metrics_recorder.as_deref()
    }

    /// The running span exporters.
    pub fn exporters(&self) -> Vec<ExporterKind> {
        self.stats.iter().map(|(k, _)| *k).collect()
    }

    /// Counters summed over every exporter's processor.
    pub fn export_stats(&self) -> ExportStats {
        self.stats
            .iter()
            .map(|(_, s)| s.snapshot())
            .fold(ExportStats::default(), |a, b| a + b)
    }

    /// Counters of one exporter's processor.
    pub fn export_stats_for(&self, kind: ExporterKind) -> Option<ExportStats> {
        self.stats
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.snapshot())
    }

    /// The last export error of one exporter (diagnostics only).
    pub fn last_export_error(&self, kind: ExporterKind) -> Option<String> {
        self.stats
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, s)| s.last_export_error())
    }

    /// The tail sampler's counters, when tail sampling is on.
    pub fn tail_stats(&self) -> Option<TailStats> {
        self.tail.as_ref().map(TailStatsHandle::snapshot)
    }

    /// The online critical-path counters, when
    /// [`critical_path_metrics`](TelemetryBuilder::critical_path_metrics)
    /// is on.
    pub fn critical_path_stats(&self) -> Option<CriticalPathStats> {
        self.critical_path
            .as_ref()
            .map(CriticalPathStatsHandle::snapshot)
    }

    /// Spans dropped so far (queue full, export failed, after shutdown),
    /// over every exporter.
    pub fn dropped_spans(&self) -> u64 {
        self.export_stats().dropped()
    }

    /// Export every span ended so far; bounded by the export timeout per
    /// exporter.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        match &self.provider {
            Some(p) if !self.shut_down.load(Ordering::Acquire) => p
                .force_flush()
                .map_err(|e| TelemetryError::from_sdk("force_flush", e)),
            _ => Ok(()),
        }
    }

    /// Flush, stop the export workers and the Prometheus background thread.
    /// Bounded by the shutdown timeout (plus a short grace) per exporter.
    /// Idempotent: later calls return `Ok(())`.
    pub fn shutdown(&self) -> Result<(), TelemetryError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.installed {
            opentelemetry::global::set_tracer_provider(
                opentelemetry::trace::noop::NoopTracerProvider::new(),
            );
        }
        let result = match &self.provider {
            Some(p) => p
                .shutdown_with_timeout(self.shutdown_timeout)
                .map_err(|e| TelemetryError::from_sdk("shutdown", e)),
            None => Ok(()),
        };
        let bg = match self.background.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(bg);
        result
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
