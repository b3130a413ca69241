//! Online critical-path metrics: every local trace is analysed when its
//! local root ends, and the time each stage, hop and queue spent on its
//! critical path is recorded in the histogram
//! `spanline.critical_path.duration{pipeline, key, type}` (seconds), so
//! Prometheus shows critical-path share per stage live.
//!
//! Two ways to run it, one analysis:
//!
//! - [`CriticalPathProcessor`]: a span processor of its own (spans buffered
//!   per trace in the same bounded buffer the tail sampler uses, analysed on
//!   a worker thread). `TelemetryBuilder::critical_path_metrics(true)`
//!   registers one when tail sampling is off.
//! - inside the tail sampler ([`TailConfig::critical_path_metrics`]): the
//!   trace is already buffered there, so the sampler's worker analyses it
//!   once, for the metrics and for critical-path keep rules alike. The
//!   builder does this when tail sampling is on.
//!
//! Every trace is measured, kept or not: the metrics describe the traffic,
//! not the sample. Labels stay bounded: `type` has four values, and at most
//! [`CriticalPathConfig::max_series`] series get their own key; later keys
//! are recorded under `key="_other"`.
//!
//! ```
//! use std::sync::Arc;
//! use opentelemetry::trace::{Tracer, TracerProvider};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use spanline_telemetry::critpath_metrics::{CriticalPathConfig, CriticalPathProcessor};
//!
//! # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
//! let recorder = Arc::new(spanline_telemetry::prometheus::build_prometheus_recorder()?);
//! let processor = CriticalPathProcessor::new(
//!     CriticalPathConfig::new().metrics_recorder(recorder.clone()),
//! )?;
//! let stats = processor.stats();
//! let provider = SdkTracerProvider::builder().with_span_processor(processor).build();
//! let tracer = provider.tracer("doc");
//! tracer.in_span("request", |_| tracer.in_span("work", |_| {}));
//! provider.force_flush().expect("flushed");
//! assert_eq!(stats.snapshot().traces_analyzed, 1);
//! assert!(recorder.handle().render().contains("spanline_critical_path_duration_bucket"));
//! # Ok(())
//! # }
//! ```
//!
//! [`TailConfig::critical_path_metrics`]: crate::sampling::TailConfig::critical_path_metrics

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Recorder};
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use spanline_core::semconv::{metric, sampling as reasons, spanline};
use spanline_critpath::{SegmentType, TraceReport};

use crate::error::TelemetryError;
use crate::sampling::buffer::{Entry, TraceBuffer, Trigger};
use crate::sampling::handoff::{Handoff, Refused, Work, tick_for};

/// Most extra series for keys beyond the cap (`key="_other"`, per pipeline
/// and type) before the pipeline label is folded too.
const MAX_OTHER_SERIES: usize = 64;

/// A metrics recorder handed in explicitly.
pub type SharedRecorder = Arc<dyn Recorder + Send + Sync>;

/// Configuration of the online critical-path metrics.
#[derive(Clone)]
#[non_exhaustive]
pub struct CriticalPathConfig {
    /// Most traces buffered at once by [`CriticalPathProcessor`]; beyond,
    /// the oldest is left out (default 10,000). The tail sampler's own
    /// bounds apply when the analysis runs inside it.
    pub max_traces: usize,
    /// Most spans buffered per trace; later spans are dropped and counted
    /// (default 512).
    pub max_spans_per_trace: usize,
    /// How long a trace may wait for its local root, from its first span;
    /// then it is left out, counted (default 30 s).
    pub decision_wait: Duration,
    /// Capacity of the hand-off queue to the worker (default 8,192 spans).
    pub queue_capacity: usize,
    /// Most `(pipeline, key, type)` series with their own key (default
    /// 256); later keys are recorded under `key="_other"` (at most 64 such
    /// series, then `pipeline="_other"` too).
    pub max_series: usize,
    /// Where the histograms and counters are registered (default: the
    /// recorder current where they are registered — the global one, since
    /// the analysis runs on a worker thread).
    pub recorder: Option<SharedRecorder>,
}

impl fmt::Debug for CriticalPathConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalPathConfig")
            .field("max_traces", &self.max_traces)
            .field("max_spans_per_trace", &self.max_spans_per_trace)
            .field("decision_wait", &self.decision_wait)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_series", &self.max_series)
            .field("recorder", &self.recorder.is_some())
            .finish()
    }
}

impl Default for CriticalPathConfig {
    fn default() -> Self {
        CriticalPathConfig {
            max_traces: 10_000,
            max_spans_per_trace: 512,
            decision_wait: Duration::from_secs(30),
            queue_capacity: 8_192,
            max_series: 256,
            recorder: None,
        }
    }
}

impl CriticalPathConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`CriticalPathConfig::max_traces`].
    pub fn max_traces(mut self, n: usize) -> Self {
        self.max_traces = n;
        self
    }

    /// See [`CriticalPathConfig::max_spans_per_trace`].
    pub fn max_spans_per_trace(mut self, n: usize) -> Self {
        self.max_spans_per_trace = n;
        self
    }

    /// See [`CriticalPathConfig::decision_wait`].
    pub fn decision_wait(mut self, wait: Duration) -> Self {
        self.decision_wait = wait;
        self
    }

    /// See [`CriticalPathConfig::queue_capacity`].
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// See [`CriticalPathConfig::max_series`].
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Register the metrics with `recorder` (a built, not installed,
    /// Prometheus recorder; a test's recorder).
    pub fn metrics_recorder(mut self, recorder: SharedRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Check the bounds (all non-zero).
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let bad = |what: &str| {
            Err(TelemetryError::InvalidConfig(format!(
                "CriticalPathConfig: {what} must be greater than 0"
            )))
        };
        if self.max_traces == 0 {
            return bad("max_traces");
        }
        if self.max_spans_per_trace == 0 {
            return bad("max_spans_per_trace");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity");
        }
        if self.max_series == 0 {
            return bad("max_series");
        }
        Ok(())
    }
}

/// Counter values and levels of the online analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CriticalPathStats {
    /// Spans handed to the processor (including those dropped).
    pub spans_seen: u64,
    /// Spans dropped because the hand-off queue was full.
    pub spans_dropped_queue_full: u64,
    /// Spans dropped because their trace held its maximum (the trace is
    /// still analysed, on what was kept).
    pub spans_dropped_span_limit: u64,
    /// Spans dropped because the processor was shut down.
    pub spans_dropped_shutdown: u64,
    /// Traces analysed.
    pub traces_analyzed: u64,
    /// Traces left out: evicted before their local root ended (maximum
    /// traces, decision wait, shutdown).
    pub traces_skipped: u64,
    /// Histogram samples recorded.
    pub samples: u64,
    /// Samples recorded under `key="_other"` (series cap reached).
    pub samples_other: u64,
    /// Distinct series registered.
    pub series: u64,
    /// Traces buffered now ([`CriticalPathProcessor`] only).
    pub buffered_traces: u64,
    /// Spans buffered now.
    pub buffered_spans: u64,
    /// Highest `buffered_traces` so far.
    pub peak_traces: u64,
    /// Highest `buffered_spans` so far.
    pub peak_spans: u64,
    /// Highest approximate bytes buffered so far.
    pub peak_bytes: u64,
}

macro_rules! atomics {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[derive(Default)]
        struct $name { $($field: AtomicU64,)* }
        impl $name {
            fn snapshot(&self) -> CriticalPathStats {
                CriticalPathStats { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
    };
}

atomics!(Atomics {
    spans_seen,
    spans_dropped_queue_full,
    spans_dropped_span_limit,
    spans_dropped_shutdown,
    traces_analyzed,
    traces_skipped,
    samples,
    samples_other,
    series,
    buffered_traces,
    buffered_spans,
    peak_traces,
    peak_spans,
    peak_bytes,
});

/// Counter handles, registered once.
struct Counters {
    analyzed: Counter,
    skipped_max: Counter,
    skipped_timeout: Counter,
    skipped_shutdown: Counter,
    dropped_queue_full: Counter,
    dropped_span_limit: Counter,
    dropped_shutdown: Counter,
}

impl Counters {
    fn new() -> Self {
        let skipped = |r: &'static str| metrics::counter!(metric::CRITICAL_PATH_TRACES_SKIPPED, metric::LABEL_REASON => r);
        let dropped = |r: &'static str| metrics::counter!(metric::CRITICAL_PATH_SPANS_DROPPED, metric::LABEL_REASON => r);
        Counters {
            analyzed: metrics::counter!(metric::CRITICAL_PATH_TRACES_ANALYZED),
            skipped_max: skipped(reasons::REASON_MAX_TRACES),
            skipped_timeout: skipped(reasons::REASON_TIMEOUT),
            skipped_shutdown: skipped(reasons::REASON_SHUTDOWN),
            dropped_queue_full: dropped(reasons::REASON_QUEUE_FULL),
            dropped_span_limit: dropped(reasons::REASON_SPAN_LIMIT),
            dropped_shutdown: dropped(reasons::REASON_SHUTDOWN),
        }
    }
}

struct Shared {
    atomics: Atomics,
    counters: Counters,
}

/// A cheap, cloneable view of the online analysis' counters.
#[derive(Clone)]
pub struct CriticalPathStatsHandle(Arc<Shared>);

impl CriticalPathStatsHandle {
    /// Current values.
    pub fn snapshot(&self) -> CriticalPathStats {
        self.0.atomics.snapshot()
    }
}

impl fmt::Debug for CriticalPathStatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CriticalPathStatsHandle")
            .field(&self.snapshot())
            .finish()
    }
}

fn with_recorder<T>(recorder: &Option<SharedRecorder>, f: impl FnOnce() -> T) -> T {
    match recorder {
        Some(r) => metrics::with_local_recorder(&**r, f),
        None => f(),
    }
}

/// Analyse the spans of one local trace (SDK spans converted by
/// [`crate::critpath::convert_for_analysis`]); `None` when there are none.
pub fn analyze_spans(spans: &[SpanData]) -> Option<TraceReport> {
    let converted: Vec<spanline_critpath::Span> = spans
        .iter()
        .map(crate::critpath::convert_for_analysis)
        .collect();
    let refs: Vec<&spanline_critpath::Span> = converted.iter().collect();
    spanline_critpath::analyze_trace(&refs)
}

/// The pipeline a trace ran: `spanline.pipeline.name` of its local root
/// when set, else of the first span carrying it.
fn pipeline_of(spans: &[SpanData]) -> Option<&str> {
    fn name(s: &SpanData) -> Option<&str> {
        s.attributes.iter().find_map(|kv| match &kv.value {
            opentelemetry::Value::String(v) if kv.key.as_str() == spanline::PIPELINE_NAME => {
                Some(v.as_str())
            }
            _ => None,
        })
    }
    spans
        .iter()
        .find(|s| crate::sampling::buffer::completes_trace(s))
        .and_then(name)
        .or_else(|| spans.iter().find_map(name))
}

const TYPES: [SegmentType; 4] = [
    SegmentType::Stage,
    SegmentType::Hop,
    SegmentType::Queue,
    SegmentType::SelfTime,
];

fn type_index(t: SegmentType) -> usize {
    TYPES.iter().position(|x| *x == t).unwrap_or(3)
}

/// One registered series.
#[derive(Clone)]
struct Series {
    id: usize,
    histogram: Histogram,
    other: bool,
}

/// Histogram handles per `(pipeline, key, type)`, registered on first use
/// and capped; records one trace's contributions.
pub(crate) struct CriticalPathMetrics {
    recorder: Option<SharedRecorder>,
    max_series: usize,
    /// pipeline → per type → key → histogram.
    series: HashMap<Arc<str>, [HashMap<Arc<str>, Series>; 4]>,
    named: usize,
    other: usize,
    /// Per-trace accumulation (series, nanoseconds), reused.
    scratch: Vec<(Series, u64)>,
    shared: Arc<Shared>,
}

impl CriticalPathMetrics {
    fn with_shared(config: &CriticalPathConfig, shared: Arc<Shared>) -> Self {
        CriticalPathMetrics {
            recorder: config.recorder.clone(),
            max_series: config.max_series,
            series: HashMap::new(),
            named: 0,
            other: 0,
            scratch: Vec::new(),
            shared,
        }
    }

    /// Metrics for `config`, with counters registered now.
    pub(crate) fn new(config: &CriticalPathConfig) -> Self {
        Self::with_shared(config, new_shared(config))
    }

    pub(crate) fn stats_handle(&self) -> CriticalPathStatsHandle {
        CriticalPathStatsHandle(self.shared.clone())
    }

    /// Count a trace left out of the analysis.
    pub(crate) fn skipped(&self, trigger: Trigger) {
        let (a, c) = (&self.shared.atomics, &self.shared.counters);
        a.traces_skipped.fetch_add(1, Ordering::Relaxed);
        match trigger {
            Trigger::MaxTraces => c.skipped_max.increment(1),
            Trigger::Timeout => c.skipped_timeout.increment(1),
            Trigger::Shutdown | Trigger::Root => c.skipped_shutdown.increment(1),
        }
    }

    /// Count a span refused by the per-trace limit.
    pub(crate) fn span_over_limit(&self) {
        self.shared
            .atomics
            .spans_dropped_span_limit
            .fetch_add(1, Ordering::Relaxed);
        self.shared.counters.dropped_span_limit.increment(1);
    }

    /// Record one analysed trace of `pipeline`: per series, the sum of its
    /// contributions to the primary critical path and to the paths of
    /// detached trees.
    pub(crate) fn record(&mut self, report: &TraceReport, pipeline: Option<&str>) {
        let pipeline = pipeline.unwrap_or(metric::CRITICAL_PATH_PIPELINE_OTHER);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // The primary tree's contributions, then the segments of detached
        // trees (other local roots, e.g. a queue wait whose sibling
        // `process` span is the primary root): one sample per series.
        let detached = report
            .detached
            .iter()
            .flat_map(|d| &d.segments)
            .map(|s| (&s.key, s.segment_type, s.duration_ns));
        let parts = report
            .contributions
            .iter()
            .map(|c| (&c.key, c.segment_type, c.duration_ns))
            .chain(detached);
        for (key, t, ns) in parts {
            let series = self.handle(pipeline, key, t);
            match scratch.iter_mut().find(|(s, _)| s.id == series.id) {
                Some(entry) => entry.1 = entry.1.saturating_add(ns),
                None => scratch.push((series, ns)),
            }
        }
        let a = &self.shared.atomics;
        for (series, ns) in scratch.drain(..) {
            series.histogram.record(ns as f64 / 1e9);
            a.samples.fetch_add(1, Ordering::Relaxed);
            if series.other {
                a.samples_other.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.scratch = scratch;
        a.traces_analyzed.fetch_add(1, Ordering::Relaxed);
        self.shared.counters.analyzed.increment(1);
    }

    /// The series for `(pipeline, key, type)`, registered on first use.
    fn handle(&mut self, pipeline: &str, key: &Arc<str>, t: SegmentType) -> Series {
        let ti = type_index(t);
        if let Some(s) = self.series.get(pipeline).and_then(|p| p[ti].get(&**key)) {
            return s.clone();
        }
        let (pipeline, key, other): (Arc<str>, Arc<str>, bool) = if self.named < self.max_series {
            self.named += 1;
            (Arc::from(pipeline), key.clone(), false)
        } else if self.other < MAX_OTHER_SERIES {
            (
                Arc::from(pipeline),
                Arc::from(metric::CRITICAL_PATH_KEY_OTHER),
                true,
            )
        } else {
            (
                Arc::from(metric::CRITICAL_PATH_PIPELINE_OTHER),
                Arc::from(metric::CRITICAL_PATH_KEY_OTHER),
                true,
            )
        };
        let entry = self.series.entry(pipeline.clone()).or_default();
        if let Some(s) = entry[ti].get(&key) {
            return s.clone();
        }
        let histogram = with_recorder(&self.recorder, || {
            metrics::histogram!(
                metric::CRITICAL_PATH_DURATION,
                metric::LABEL_PIPELINE => pipeline.to_string(),
                metric::LABEL_KEY => key.to_string(),
                metric::LABEL_TYPE => t.as_str(),
            )
        });
        if other {
            self.other += 1;
        }
        let series = Series {
            id: self.named + self.other,
            histogram,
            other,
        };
        entry[ti].insert(key, series.clone());
        self.shared.atomics.series.fetch_add(1, Ordering::Relaxed);
        series
    }
}

fn new_shared(config: &CriticalPathConfig) -> Arc<Shared> {
    Arc::new(Shared {
        atomics: Atomics::default(),
        counters: with_recorder(&config.recorder, Counters::new),
    })
}

/// The analysis without threads: feed it spans and the time; each trace is
/// analysed and recorded when its local root arrives.
/// [`CriticalPathProcessor`] runs one on its worker thread; tests and
/// benches drive one directly.
pub struct CriticalPathEngine {
    buffer: TraceBuffer<()>,
    metrics: CriticalPathMetrics,
}

impl fmt::Debug for CriticalPathEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalPathEngine")
            .field("stats", &self.stats())
            .finish()
    }
}

impl CriticalPathEngine {
    /// An engine for `config` (validated); counters are registered now.
    pub fn new(config: CriticalPathConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        Ok(Self::with_shared(&config, new_shared(&config)))
    }

    fn with_shared(config: &CriticalPathConfig, shared: Arc<Shared>) -> Self {
        CriticalPathEngine {
            buffer: TraceBuffer::new(
                config.max_traces,
                config.max_spans_per_trace,
                config.decision_wait,
            ),
            metrics: CriticalPathMetrics::with_shared(config, shared),
        }
    }

    /// Counter values and buffer levels.
    pub fn stats(&self) -> CriticalPathStats {
        self.metrics.shared.atomics.snapshot()
    }

    /// A handle on the counters.
    pub fn stats_handle(&self) -> CriticalPathStatsHandle {
        self.metrics.stats_handle()
    }

    /// Take one ended span at time `now`; analyses its trace when it is the
    /// local root.
    pub fn ingest(&mut self, span: SpanData, now: Instant) {
        self.metrics
            .shared
            .atomics
            .spans_seen
            .fetch_add(1, Ordering::Relaxed);
        let trace_id = span.span_context.trace_id();
        let metrics = &self.metrics;
        let inserted = self
            .buffer
            .insert(span, now, |_, _| {}, &mut |_, _, t| metrics.skipped(t));
        if inserted.over_limit {
            self.metrics.span_over_limit();
        }
        if inserted.is_root
            && let Some(e) = self.buffer.take(trace_id)
        {
            self.analyze(e);
        }
        self.update_levels();
    }

    /// Leave out every trace whose wait has passed at `now`.
    pub fn expire(&mut self, now: Instant) {
        let metrics = &self.metrics;
        self.buffer.expire(now, &mut |_, _, t| metrics.skipped(t));
        self.update_levels();
    }

    /// Leave out every buffered trace (shutdown).
    pub fn finish(&mut self) {
        let metrics = &self.metrics;
        self.buffer.drain(&mut |_, _, t| metrics.skipped(t));
        self.update_levels();
    }

    fn analyze(&mut self, e: Entry<()>) {
        if let Some(report) = analyze_spans(&e.spans) {
            self.metrics.record(&report, pipeline_of(&e.spans));
        }
    }

    fn update_levels(&self) {
        let l = self.buffer.levels();
        let a = &self.metrics.shared.atomics;
        a.buffered_traces.store(l.traces as u64, Ordering::Relaxed);
        a.buffered_spans.store(l.spans as u64, Ordering::Relaxed);
        a.peak_traces.store(l.peak_traces as u64, Ordering::Relaxed);
        a.peak_spans.store(l.peak_spans as u64, Ordering::Relaxed);
        a.peak_bytes.store(l.peak_bytes as u64, Ordering::Relaxed);
    }
}

/// Record the analysis of a trace the tail sampler completed (its local
/// root ended), with `report` already computed or computed here.
/// `report` is `Some` when the sampler already analysed the trace (its
/// result, `None` for an empty trace), `None` when it did not.
pub(crate) fn record_trace(
    metrics: &mut CriticalPathMetrics,
    spans: &[SpanData],
    report: Option<Option<&TraceReport>>,
) {
    let computed;
    let report = match report {
        Some(r) => r,
        None => {
            computed = analyze_spans(spans);
            computed.as_ref()
        }
    };
    if let Some(r) = report {
        metrics.record(r, pipeline_of(spans));
    }
}

/// The online critical-path span processor (see the [module
/// docs](crate::critpath_metrics)). `on_end` does one `try_send` into a
/// bounded queue (a full queue drops the span, counted); the worker thread
/// `spanline-critical-path` buffers, analyses and records.
pub struct CriticalPathProcessor {
    handoff: Handoff,
    shared: Arc<Shared>,
}

impl fmt::Debug for CriticalPathProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CriticalPathProcessor")
            .field("stats", &self.shared.atomics.snapshot())
            .finish()
    }
}

impl CriticalPathProcessor {
    /// Start the worker thread.
    pub fn new(config: CriticalPathConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        let shared = new_shared(&config);
        let engine = CriticalPathEngine::with_shared(&config, shared.clone());
        let handoff = Handoff::spawn(
            "spanline-critical-path",
            "critical-path metrics",
            config.queue_capacity,
            tick_for(config.decision_wait),
            engine,
        )?;
        Ok(CriticalPathProcessor { handoff, shared })
    }

    /// A handle on the counters, valid after the processor is moved into a
    /// provider.
    pub fn stats(&self) -> CriticalPathStatsHandle {
        CriticalPathStatsHandle(self.shared.clone())
    }
}

impl SpanProcessor for CriticalPathProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let refused = match self.handoff.try_send(span) {
            Ok(()) => return,
            Err(r) => r,
        };
        let s = &self.shared;
        s.atomics.spans_seen.fetch_add(1, Ordering::Relaxed);
        match refused {
            Refused::QueueFull => {
                s.atomics
                    .spans_dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                s.counters.dropped_queue_full.increment(1);
            }
            Refused::Shutdown => {
                s.atomics
                    .spans_dropped_shutdown
                    .fetch_add(1, Ordering::Relaxed);
                s.counters.dropped_shutdown.increment(1);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.handoff.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.handoff.shutdown(timeout)
    }

    fn set_resource(&mut self, _resource: &Resource) {}
}

impl Work for CriticalPathEngine {
    fn span(&mut self, span: SpanData, now: Instant) {
        self.ingest(span, now);
    }

    fn expire(&mut self, now: Instant) {
        CriticalPathEngine::expire(self, now);
    }

    fn finish(&mut self, _timeout: Duration) -> OTelSdkResult {
        CriticalPathEngine::finish(self);
        Ok(())
    }
}
