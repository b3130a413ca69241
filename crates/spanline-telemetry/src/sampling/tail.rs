//! The tail-sampling span processor.
//!
//! The thread ending a span does one thing: a non-blocking `try_send` of the
//! span into a bounded queue (a full queue drops the span and counts it).
//! A worker thread owns the [`TailEngine`]: per-trace buffers bounded by
//! [`TailConfig::max_traces`] and [`TailConfig::max_spans_per_trace`], the
//! decision when a trace's local root ends (or its decision wait passes),
//! a bounded memory of recent decisions for late spans, and the downstream
//! processor that receives kept spans.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Counter;
use opentelemetry::trace::{Status, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use spanline_core::semconv::{sampling as names, spanline};
use spanline_critpath::TraceReport;

use crate::critpath_metrics::{
    CriticalPathConfig, CriticalPathMetrics, CriticalPathStatsHandle, analyze_spans, record_trace,
};
use crate::error::TelemetryError;
use crate::sampling::buffer::{Entry, TraceBuffer, Trigger, completes_trace};
use crate::sampling::handoff::{Handoff, Refused, Work, tick_for};
use crate::sampling::head::baseline_ratio_keeps;
use crate::sampling::rules::Condition;

type TracePredicate = dyn Fn(&[SpanData]) -> bool + Send + Sync;
type ReportPredicate = dyn Fn(&TraceReport) -> bool + Send + Sync;

/// A tail rule: keeps a trace when it matches.
#[derive(Clone)]
pub struct TailRule {
    kind: RuleKind,
}

#[derive(Clone)]
enum RuleKind {
    AnySpan(Condition),
    Custom(Arc<TracePredicate>),
    Share(String, f64),
    Queue(Duration),
    CriticalPath(Arc<ReportPredicate>),
}

impl fmt::Debug for TailRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RuleKind::AnySpan(c) => f.debug_tuple("TailRule::any_span").field(c).finish(),
            RuleKind::Custom(_) => f.write_str("TailRule::custom(..)"),
            RuleKind::Share(k, x) => write!(f, "TailRule::critical_path_share({k:?}, {x})"),
            RuleKind::Queue(t) => write!(f, "TailRule::critical_path_queue({t:?})"),
            RuleKind::CriticalPath(_) => f.write_str("TailRule::critical_path(..)"),
        }
    }
}

impl TailRule {
    /// Keep the trace when any of its buffered spans has attributes
    /// matching `condition` (request attributes are on every span).
    pub fn any_span(condition: Condition) -> Self {
        TailRule {
            kind: RuleKind::AnySpan(condition),
        }
    }

    /// Keep the trace when `predicate` holds on its buffered spans (in
    /// arrival order; a trace over its span limit shows only the first
    /// spans). Runs on the sampler's worker thread.
    pub fn custom(predicate: impl Fn(&[SpanData]) -> bool + Send + Sync + 'static) -> Self {
        TailRule {
            kind: RuleKind::Custom(Arc::new(predicate)),
        }
    }

    /// Keep the trace when `key` (a stage name, a hop or queue span name,
    /// as the critical-path analyser reports it; all types summed) has at
    /// least `min_share` (in `[0, 1]`) of the trace's critical path.
    /// Reason `critical_path`.
    pub fn critical_path_share(key: impl Into<String>, min_share: f64) -> Self {
        TailRule {
            kind: RuleKind::Share(key.into(), min_share),
        }
    }

    /// Keep the trace when the time its critical path spent in queue waits
    /// (Kafka and other brokers) is at least `min`. Reason `critical_path`.
    pub fn critical_path_queue(min: Duration) -> Self {
        TailRule {
            kind: RuleKind::Queue(min),
        }
    }

    /// Keep the trace when `predicate` holds on its critical-path report
    /// (analysed once per trace, on the buffered spans). Reason
    /// `critical_path`. Runs on the sampler's worker thread.
    pub fn critical_path(predicate: impl Fn(&TraceReport) -> bool + Send + Sync + 'static) -> Self {
        TailRule {
            kind: RuleKind::CriticalPath(Arc::new(predicate)),
        }
    }

    /// Whether the rule reads the critical-path report.
    pub fn is_critical_path(&self) -> bool {
        matches!(
            self.kind,
            RuleKind::Share(..) | RuleKind::Queue(_) | RuleKind::CriticalPath(_)
        )
    }

    fn matches(&self, spans: &[SpanData]) -> bool {
        match &self.kind {
            RuleKind::AnySpan(c) => spans.iter().any(|s| c.matches(&s.attributes)),
            RuleKind::Custom(p) => p(spans),
            _ => false,
        }
    }

    fn matches_report(&self, report: &TraceReport) -> bool {
        match &self.kind {
            RuleKind::Share(key, min) => {
                let share: f64 = report
                    .contributions
                    .iter()
                    .filter(|c| &*c.key == key.as_str())
                    .map(|c| c.share)
                    .sum();
                report.duration_ns > 0 && share >= *min
            }
            RuleKind::Queue(min) => {
                report.queue_ns() > 0 && Duration::from_nanos(report.queue_ns()) >= *min
            }
            RuleKind::CriticalPath(p) => p(report),
            _ => false,
        }
    }
}

/// Configuration of the tail sampler. Start from [`TailConfig::new`] (or
/// `default()`) and adjust with the setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TailConfig {
    /// How long a trace may wait for its local root to end, from its first
    /// span; then it is decided on what arrived (default 30 s).
    pub decision_wait: Duration,
    /// Most traces buffered at once; beyond, the oldest is decided early
    /// (default 10,000).
    pub max_traces: usize,
    /// Most spans buffered per trace; later spans of that trace are dropped
    /// and counted, but their status and stage latency still count toward
    /// the decision (default 512).
    pub max_spans_per_trace: usize,
    /// How many recent decisions are remembered for late spans (default
    /// 65,536).
    pub decision_cache: usize,
    /// Capacity of the hand-off queue to the worker (default 8,192 spans).
    pub queue_capacity: usize,
    /// Keep traces with a failed span (`Status::Error`) (default true).
    pub keep_errors: bool,
    /// Keep traces whose local root was slower than this (default none).
    pub latency_threshold: Option<Duration>,
    /// Keep traces in which the stage named (`spanline.stage.name`) was
    /// slower than its threshold.
    pub stage_thresholds: Vec<(String, Duration)>,
    /// Keep traces carrying `spanline.sampling.force = true` (default true).
    pub honor_force: bool,
    /// Keep traces matching any of these rules.
    pub rules: Vec<TailRule>,
    /// Fraction of the remaining traces kept, by trace id (default 0.0).
    pub baseline_ratio: f64,
    /// Record online critical-path metrics for every trace whose local root
    /// ended, from the sampler's own buffer (default none; see
    /// [`crate::critpath_metrics`]). Only the metrics settings of the
    /// configuration apply; the buffer bounds are the sampler's.
    pub critical_path: Option<CriticalPathConfig>,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            decision_wait: Duration::from_secs(30),
            max_traces: 10_000,
            max_spans_per_trace: 512,
            decision_cache: 65_536,
            queue_capacity: 8_192,
            keep_errors: true,
            latency_threshold: None,
            stage_thresholds: Vec::new(),
            honor_force: true,
            rules: Vec::new(),
            baseline_ratio: 0.0,
            critical_path: None,
        }
    }
}

impl TailConfig {
    /// The defaults (keep errors and forced traces, nothing else).
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`TailConfig::decision_wait`].
    pub fn decision_wait(mut self, wait: Duration) -> Self {
        self.decision_wait = wait;
        self
    }

    /// See [`TailConfig::max_traces`].
    pub fn max_traces(mut self, n: usize) -> Self {
        self.max_traces = n;
        self
    }

    /// See [`TailConfig::max_spans_per_trace`].
    pub fn max_spans_per_trace(mut self, n: usize) -> Self {
        self.max_spans_per_trace = n;
        self
    }

    /// See [`TailConfig::decision_cache`].
    pub fn decision_cache(mut self, n: usize) -> Self {
        self.decision_cache = n;
        self
    }

    /// See [`TailConfig::queue_capacity`].
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// See [`TailConfig::keep_errors`].
    pub fn keep_errors(mut self, keep: bool) -> Self {
        self.keep_errors = keep;
        self
    }

    /// See [`TailConfig::latency_threshold`].
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = Some(threshold);
        self
    }

    /// Add (or replace) a stage threshold.
    pub fn stage_threshold(mut self, stage: impl Into<String>, threshold: Duration) -> Self {
        let stage = stage.into();
        self.stage_thresholds.retain(|(s, _)| *s != stage);
        self.stage_thresholds.push((stage, threshold));
        self
    }

    /// See [`TailConfig::honor_force`].
    pub fn honor_force(mut self, honor: bool) -> Self {
        self.honor_force = honor;
        self
    }

    /// Add a keep rule.
    pub fn rule(mut self, rule: TailRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// See [`TailConfig::baseline_ratio`].
    pub fn baseline_ratio(mut self, ratio: f64) -> Self {
        self.baseline_ratio = ratio;
        self
    }

    /// Record online critical-path metrics (see
    /// [`TailConfig::critical_path`]).
    pub fn critical_path_metrics(mut self, config: CriticalPathConfig) -> Self {
        self.critical_path = Some(config);
        self
    }

    /// Check the bounds (all non-zero), the ratio and the critical-path
    /// shares (in `[0, 1]`).
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let bad = |what: &str| Err(TelemetryError::InvalidConfig(format!("TailConfig: {what}")));
        if self.max_traces == 0 {
            return bad("max_traces must be greater than 0");
        }
        if self.max_spans_per_trace == 0 {
            return bad("max_spans_per_trace must be greater than 0");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be greater than 0");
        }
        if !(0.0..=1.0).contains(&self.baseline_ratio) {
            return bad("baseline_ratio must be in [0, 1]");
        }
        for r in &self.rules {
            if let RuleKind::Share(key, x) = &r.kind
                && !(0.0..=1.0).contains(x)
            {
                return bad(&format!(
                    "critical_path_share({key:?}) must be in [0, 1], got {x}"
                ));
            }
        }
        if let Some(c) = &self.critical_path {
            c.validate()?;
        }
        Ok(())
    }
}

/// The outcome of one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailDecision {
    /// Kept, for the first reason that applied (`force`, `error`,
    /// `latency`, `stage_latency`, `rule`, `critical_path`, `baseline`).
    Keep(&'static str),
    /// Dropped (no reason to keep, baseline not selected).
    Drop,
}

impl TailDecision {
    /// Whether the trace is kept.
    pub fn is_keep(self) -> bool {
        matches!(self, TailDecision::Keep(_))
    }
}

/// Counter values and buffer levels of a tail sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TailStats {
    /// Sampled spans handed to the sampler (including those dropped on a
    /// full queue).
    pub spans_seen: u64,
    /// Spans forwarded downstream.
    pub spans_kept: u64,
    /// Spans of dropped traces (decided, or late after a drop decision).
    pub spans_dropped_decision: u64,
    /// Spans that arrived after their trace was decided to be dropped
    /// (included in `spans_dropped_decision`).
    pub spans_dropped_late: u64,
    /// Spans dropped because the hand-off queue was full.
    pub spans_dropped_queue_full: u64,
    /// Spans dropped because their trace held its maximum.
    pub spans_dropped_span_limit: u64,
    /// Spans dropped because the sampler was shut down.
    pub spans_dropped_shutdown: u64,
    /// Traces started.
    pub traces_seen: u64,
    /// Traces kept.
    pub traces_kept: u64,
    /// Traces dropped.
    pub traces_dropped: u64,
    /// Traces decided before their local root ended (maximum traces,
    /// decision wait, shutdown); also counted as kept or dropped.
    pub traces_evicted: u64,
    /// Traces buffered now.
    pub buffered_traces: u64,
    /// Spans buffered now.
    pub buffered_spans: u64,
    /// Approximate bytes buffered now (span structs, attributes, strings).
    pub buffered_bytes: u64,
    /// Highest `buffered_traces` so far.
    pub peak_traces: u64,
    /// Highest `buffered_spans` so far.
    pub peak_spans: u64,
    /// Highest `buffered_bytes` so far.
    pub peak_bytes: u64,
    /// Decisions remembered now.
    pub cached_decisions: u64,
}

impl TailStats {
    /// Spans dropped for any reason.
    pub fn spans_dropped(&self) -> u64 {
        self.spans_dropped_decision
            + self.spans_dropped_queue_full
            + self.spans_dropped_span_limit
            + self.spans_dropped_shutdown
    }
}

macro_rules! atomics {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[derive(Default)]
        struct $name { $($field: AtomicU64,)* }
        impl $name {
            fn snapshot(&self) -> TailStats {
                TailStats { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
    };
}

atomics!(Atomics {
    spans_seen,
    spans_kept,
    spans_dropped_decision,
    spans_dropped_late,
    spans_dropped_queue_full,
    spans_dropped_span_limit,
    spans_dropped_shutdown,
    traces_seen,
    traces_kept,
    traces_dropped,
    traces_evicted,
    buffered_traces,
    buffered_spans,
    buffered_bytes,
    peak_traces,
    peak_spans,
    peak_bytes,
    cached_decisions,
});

/// Metric handles, registered once.
struct Metrics {
    spans_seen: Counter,
    spans_kept: Counter,
    spans_dropped_decision: Counter,
    spans_dropped_late: Counter,
    spans_dropped_queue_full: Counter,
    spans_dropped_span_limit: Counter,
    spans_dropped_shutdown: Counter,
    traces_seen: Counter,
    traces_kept: [Counter; KEEP_REASONS.len()],
    traces_dropped: Counter,
    traces_evicted_max: Counter,
    traces_evicted_timeout: Counter,
    traces_evicted_shutdown: Counter,
}

const KEEP_REASONS: [&str; 7] = [
    names::REASON_FORCE,
    names::REASON_ERROR,
    names::REASON_LATENCY,
    names::REASON_STAGE_LATENCY,
    names::REASON_RULE,
    names::REASON_CRITICAL_PATH,
    names::REASON_BASELINE,
];

impl Metrics {
    fn new() -> Self {
        let dropped = |reason: &'static str| metrics::counter!(names::SPANS_DROPPED, names::LABEL_REASON => reason);
        let evicted = |reason: &'static str| metrics::counter!(names::TRACES_EVICTED, names::LABEL_REASON => reason);
        Metrics {
            spans_seen: metrics::counter!(names::SPANS_SEEN),
            spans_kept: metrics::counter!(names::SPANS_KEPT),
            spans_dropped_decision: dropped(names::REASON_BASELINE),
            spans_dropped_late: dropped(names::REASON_LATE),
            spans_dropped_queue_full: dropped(names::REASON_QUEUE_FULL),
            spans_dropped_span_limit: dropped(names::REASON_SPAN_LIMIT),
            spans_dropped_shutdown: dropped(names::REASON_SHUTDOWN),
            traces_seen: metrics::counter!(names::TRACES_SEEN),
            traces_kept: KEEP_REASONS
                .map(|r| metrics::counter!(names::TRACES_KEPT, names::LABEL_REASON => r)),
            traces_dropped: metrics::counter!(names::TRACES_DROPPED, names::LABEL_REASON => names::REASON_BASELINE),
            traces_evicted_max: evicted(names::REASON_MAX_TRACES),
            traces_evicted_timeout: evicted(names::REASON_TIMEOUT),
            traces_evicted_shutdown: evicted(names::REASON_SHUTDOWN),
        }
    }
}

struct Shared {
    atomics: Atomics,
    metrics: Metrics,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            atomics: Atomics::default(),
            metrics: Metrics::new(),
        })
    }
}

/// A cheap, cloneable view of a tail sampler's counters, valid after the
/// processor is moved into a provider.
#[derive(Clone)]
pub struct TailStatsHandle(Arc<Shared>);

impl TailStatsHandle {
    /// Current values.
    pub fn snapshot(&self) -> TailStats {
        self.0.atomics.snapshot()
    }
}

impl fmt::Debug for TailStatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TailStatsHandle")
            .field(&self.snapshot())
            .finish()
    }
}

/// What the engine keeps about every span of a buffered trace.
#[derive(Default)]
struct Summary {
    error: bool,
    force: bool,
    slow_stage: bool,
    /// A later local part of an already decided trace, buffered only for
    /// the critical-path analysis (its spans already followed the
    /// decision).
    late: bool,
    /// The span that completed the trace had a remote parent: another
    /// local part of the trace (the caller of a hop served here) may follow.
    remote_root: bool,
}

/// The tail sampler's decision engine, without threads: feed it spans and
/// the time, and it calls `out` with the spans of kept traces.
///
/// [`TailSamplingProcessor`] runs one on its worker thread; tests and
/// embedders can drive one directly with an explicit clock (no sleeping).
pub struct TailEngine {
    config: TailConfig,
    stages: HashMap<String, Duration>,
    buffer: TraceBuffer<Summary>,
    /// Per decided trace: kept, and whether another local part may follow.
    decided: HashMap<TraceId, (bool, bool)>,
    decided_order: VecDeque<TraceId>,
    shared: Arc<Shared>,
    critical_path: Option<CriticalPathMetrics>,
    has_critical_path_rules: bool,
}

impl fmt::Debug for TailEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailEngine")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl TailEngine {
    /// An engine for `config` (validated). Its `metrics` counters are
    /// registered with the recorder current at this call.
    pub fn new(config: TailConfig) -> Result<Self, TelemetryError> {
        Self::with_shared(config, Shared::new())
    }

    fn with_shared(config: TailConfig, shared: Arc<Shared>) -> Result<Self, TelemetryError> {
        config.validate()?;
        let stages = config.stage_thresholds.iter().cloned().collect();
        let critical_path = config.critical_path.as_ref().map(CriticalPathMetrics::new);
        let has_critical_path_rules = config.rules.iter().any(TailRule::is_critical_path);
        Ok(TailEngine {
            critical_path,
            has_critical_path_rules,
            stages,
            buffer: TraceBuffer::new(
                config.max_traces,
                config.max_spans_per_trace,
                config.decision_wait,
            ),
            decided: HashMap::with_capacity(config.decision_cache.min(4_096)),
            decided_order: VecDeque::new(),
            config,
            shared,
        })
    }

    /// Counter values and buffer levels.
    pub fn stats(&self) -> TailStats {
        self.shared.atomics.snapshot()
    }

    /// A handle on the counters.
    pub fn stats_handle(&self) -> TailStatsHandle {
        TailStatsHandle(self.shared.clone())
    }

    /// The online critical-path counters, when
    /// [`TailConfig::critical_path`] is set.
    pub fn critical_path_stats(&self) -> Option<CriticalPathStatsHandle> {
        self.critical_path
            .as_ref()
            .map(CriticalPathMetrics::stats_handle)
    }

    /// The remembered decision for `trace_id`, if any.
    pub fn decision_for(&self, trace_id: TraceId) -> Option<bool> {
        self.decided.get(&trace_id).map(|&(keep, _)| keep)
    }

    /// Take one ended span at time `now`. Kept spans (of this trace, when
    /// this span decides it, or this span alone when its trace was already
    /// kept) are passed to `out`.
    pub fn ingest(&mut self, span: SpanData, now: Instant, out: &mut dyn FnMut(SpanData)) {
        let shared = self.shared.clone();
        let (a, m) = (&shared.atomics, &shared.metrics);
        a.spans_seen.fetch_add(1, Ordering::Relaxed);
        m.spans_seen.increment(1);
        let trace_id = span.span_context.trace_id();
        let mut late = false;
        if let Some(&(keep, more_parts)) = self.decided.get(&trace_id) {
            // With critical-path metrics on, a later local part (the caller
            // side when both ends of a hop run here) is still buffered and
            // analysed when its own root ends. After a decision by a root
            // without a parent, late spans are background children: no
            // other part follows.
            let analyse = more_parts && self.critical_path.is_some();
            if keep {
                a.spans_kept.fetch_add(1, Ordering::Relaxed);
                m.spans_kept.increment(1);
                if !analyse {
                    out(span);
                    return;
                }
                out(span.clone());
            } else {
                a.spans_dropped_decision.fetch_add(1, Ordering::Relaxed);
                a.spans_dropped_late.fetch_add(1, Ordering::Relaxed);
                m.spans_dropped_late.increment(1);
                if !analyse {
                    return;
                }
            }
            late = true;
        }
        let honor_force = self.config.honor_force;
        let stages = &self.stages;
        let mut evicted = Vec::new();
        let inserted = self.buffer.insert(
            span,
            now,
            |s, span| {
                s.late |= late;
                s.remote_root |= span.parent_span_is_remote && completes_trace(span);
                s.error |= matches!(span.status, Status::Error { .. });
                s.force |= honor_force && is_forced(&span.attributes);
                s.slow_stage |= !stages.is_empty() && stage_is_slow(stages, span);
            },
            &mut |id, e, trigger| evicted.push((id, e, trigger)),
        );
        for (id, e, trigger) in evicted {
            self.settle(id, e, trigger, out);
        }
        if inserted.new_trace && !late {
            a.traces_seen.fetch_add(1, Ordering::Relaxed);
            m.traces_seen.increment(1);
        }
        if inserted.over_limit {
            a.spans_dropped_span_limit.fetch_add(1, Ordering::Relaxed);
            m.spans_dropped_span_limit.increment(1);
            if let Some(cp) = &self.critical_path {
                cp.span_over_limit();
            }
        }
        if inserted.is_root
            && let Some(e) = self.buffer.take(trace_id)
        {
            self.settle(trace_id, e, Trigger::Root, out);
        }
        self.update_levels();
    }

    /// Decide every trace whose decision wait has passed at `now`.
    pub fn expire(&mut self, now: Instant, out: &mut dyn FnMut(SpanData)) {
        let mut due = Vec::new();
        self.buffer
            .expire(now, &mut |id, e, trigger| due.push((id, e, trigger)));
        for (id, e, trigger) in due {
            self.settle(id, e, trigger, out);
        }
        self.update_levels();
    }

    /// Decide every buffered trace now (shutdown).
    pub fn finish(&mut self, out: &mut dyn FnMut(SpanData)) {
        let mut all = Vec::new();
        self.buffer
            .drain(&mut |id, e, trigger| all.push((id, e, trigger)));
        for (id, e, trigger) in all {
            self.settle(id, e, trigger, out);
        }
        self.update_levels();
    }

    fn judge(
        &self,
        trace_id: TraceId,
        p: &Entry<Summary>,
        report: &mut Option<Option<TraceReport>>,
    ) -> TailDecision {
        let c = &self.config;
        if p.summary.force {
            return TailDecision::Keep(names::REASON_FORCE);
        }
        if c.keep_errors && p.summary.error {
            return TailDecision::Keep(names::REASON_ERROR);
        }
        if let Some(threshold) = c.latency_threshold {
            let duration = p
                .root_duration
                .unwrap_or_else(|| p.max_end.duration_since(p.min_start).unwrap_or_default());
            if duration > threshold {
                return TailDecision::Keep(names::REASON_LATENCY);
            }
        }
        if p.summary.slow_stage {
            return TailDecision::Keep(names::REASON_STAGE_LATENCY);
        }
        if c.rules.iter().any(|r| r.matches(&p.spans)) {
            return TailDecision::Keep(names::REASON_RULE);
        }
        if self.has_critical_path_rules
            && let Some(r) = report.get_or_insert_with(|| analyze_spans(&p.spans))
            && c.rules.iter().any(|rule| rule.matches_report(r))
        {
            return TailDecision::Keep(names::REASON_CRITICAL_PATH);
        }
        if baseline_ratio_keeps(trace_id, c.baseline_ratio) {
            return TailDecision::Keep(names::REASON_BASELINE);
        }
        TailDecision::Drop
    }

    /// Decide a trace that left the buffer.
    fn settle(
        &mut self,
        trace_id: TraceId,
        p: Entry<Summary>,
        trigger: Trigger,
        out: &mut dyn FnMut(SpanData),
    ) {
        if p.summary.late {
            if let Some(cp) = &mut self.critical_path {
                match trigger {
                    Trigger::Root => record_trace(cp, &p.spans, None),
                    _ => cp.skipped(trigger),
                }
            }
            return;
        }
        let mut report = None;
        let decision = self.judge(trace_id, &p, &mut report);
        if let Some(cp) = &mut self.critical_path {
            if trigger == Trigger::Root {
                record_trace(cp, &p.spans, report.as_ref().map(Option::as_ref));
            } else {
                cp.skipped(trigger);
            }
        }
        let shared = self.shared.clone();
        let (a, m) = (&shared.atomics, &shared.metrics);
        match trigger {
            Trigger::Root => {}
            Trigger::MaxTraces => m.traces_evicted_max.increment(1),
            Trigger::Timeout => m.traces_evicted_timeout.increment(1),
            Trigger::Shutdown => m.traces_evicted_shutdown.increment(1),
        }
        if trigger != Trigger::Root {
            a.traces_evicted.fetch_add(1, Ordering::Relaxed);
        }
        let n = p.spans.len() as u64;
        match decision {
            TailDecision::Keep(reason) => {
                a.traces_kept.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = KEEP_REASONS.iter().position(|r| *r == reason) {
                    m.traces_kept[i].increment(1);
                }
                a.spans_kept.fetch_add(n, Ordering::Relaxed);
                m.spans_kept.increment(n);
                for span in p.spans {
                    out(span);
                }
            }
            TailDecision::Drop => {
                a.traces_dropped.fetch_add(1, Ordering::Relaxed);
                m.traces_dropped.increment(1);
                a.spans_dropped_decision.fetch_add(n, Ordering::Relaxed);
                m.spans_dropped_decision.increment(n);
            }
        }
        let more_parts = trigger == Trigger::Root && p.summary.remote_root;
        self.remember(trace_id, decision.is_keep(), more_parts);
    }

    fn remember(&mut self, trace_id: TraceId, keep: bool, more_parts: bool) {
        if self.config.decision_cache == 0 {
            return;
        }
        while self.decided.len() >= self.config.decision_cache {
            match self.decided_order.pop_front() {
                Some(old) => {
                    self.decided.remove(&old);
                }
                None => break,
            }
        }
        if self.decided.insert(trace_id, (keep, more_parts)).is_none() {
            self.decided_order.push_back(trace_id);
        }
    }

    fn update_levels(&mut self) {
        let l = self.buffer.levels();
        let a = &self.shared.atomics;
        a.buffered_traces.store(l.traces as u64, Ordering::Relaxed);
        a.buffered_spans.store(l.spans as u64, Ordering::Relaxed);
        a.buffered_bytes.store(l.bytes as u64, Ordering::Relaxed);
        a.peak_traces.store(l.peak_traces as u64, Ordering::Relaxed);
        a.peak_spans.store(l.peak_spans as u64, Ordering::Relaxed);
        a.peak_bytes.store(l.peak_bytes as u64, Ordering::Relaxed);
        a.cached_decisions
            .store(self.decided.len() as u64, Ordering::Relaxed);
    }
}

fn stage_is_slow(stages: &HashMap<String, Duration>, span: &SpanData) -> bool {
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    span.attributes.iter().any(|kv| {
        kv.key.as_str() == spanline::STAGE_NAME
            && match &kv.value {
                Value::String(s) => stages.get(s.as_str()).is_some_and(|t| duration > *t),
                _ => false,
            }
    })
}

fn is_forced(attributes: &[KeyValue]) -> bool {
    attributes
        .iter()
        .any(|kv| kv.key.as_str() == names::FORCE && kv.value == Value::Bool(true))
}

/// The tail-sampling span processor (see the [module docs](crate::sampling)).
///
/// Spans reach it only if the head sampler sampled them: run the head
/// sampler at `always_on` (or a generous ratio) so the tail sees whole
/// traces. Kept spans go to `downstream` on the worker thread; the
/// downstream's `on_start` is not called (the batch processor and the
/// recorder ignore it).
///
/// ```
/// use std::time::Duration;
/// use opentelemetry::trace::{Tracer, TracerProvider};
/// use opentelemetry_sdk::trace::{SdkTracerProvider, SpanProcessor};
/// use spanline_telemetry::SpanRecorder;
/// use spanline_telemetry::sampling::{TailConfig, TailSamplingProcessor};
///
/// # fn main() -> Result<(), spanline_telemetry::TelemetryError> {
/// let recorder = SpanRecorder::new(100);
/// let tail = TailSamplingProcessor::new(
///     TailConfig::new().latency_threshold(Duration::from_secs(2)),
///     recorder.clone(),
/// )?;
/// let stats = tail.stats();
/// let provider = SdkTracerProvider::builder().with_span_processor(tail).build();
/// let tracer = provider.tracer("doc");
/// tracer.in_span("fast request", |_| tracer.in_span("stage", |_| {}));
/// provider.force_flush().expect("flushed");
/// assert!(recorder.is_empty()); // fast and fine: not kept
/// assert_eq!(stats.snapshot().traces_dropped, 1);
/// # Ok(())
/// # }
/// ```
pub struct TailSamplingProcessor {
    handoff: Handoff,
    shared: Arc<Shared>,
    config: TailConfig,
    critical_path: Option<CriticalPathStatsHandle>,
}

impl fmt::Debug for TailSamplingProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplingProcessor")
            .field("config", &self.config)
            .field("stats", &self.shared.atomics.snapshot())
            .finish()
    }
}

impl TailSamplingProcessor {
    /// Start the worker thread (`spanline-tail-sampler`) that decides and
    /// forwards kept spans to `downstream`. The `metrics` counters are
    /// registered with the recorder current at this call.
    pub fn new<P: SpanProcessor + 'static>(
        config: TailConfig,
        downstream: P,
    ) -> Result<Self, TelemetryError> {
        let shared = Shared::new();
        let engine = TailEngine::with_shared(config.clone(), shared.clone())?;
        let critical_path = engine.critical_path_stats();
        let handoff = Handoff::spawn(
            "spanline-tail-sampler",
            "tail sampler",
            config.queue_capacity,
            tick_for(config.decision_wait),
            TailWork { engine, downstream },
        )?;
        Ok(TailSamplingProcessor {
            handoff,
            shared,
            config,
            critical_path,
        })
    }

    /// A handle on the counters, valid after the processor is moved into a
    /// provider.
    pub fn stats(&self) -> TailStatsHandle {
        TailStatsHandle(self.shared.clone())
    }

    /// The online critical-path counters, when
    /// [`TailConfig::critical_path`] is set.
    pub fn critical_path_stats(&self) -> Option<CriticalPathStatsHandle> {
        self.critical_path.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &TailConfig {
        &self.config
    }
}

impl SpanProcessor for TailSamplingProcessor {
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
        s.metrics.spans_seen.increment(1);
        match refused {
            Refused::QueueFull => {
                s.atomics
                    .spans_dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                s.metrics.spans_dropped_queue_full.increment(1);
            }
            Refused::Shutdown => {
                s.atomics
                    .spans_dropped_shutdown
                    .fetch_add(1, Ordering::Relaxed);
                s.metrics.spans_dropped_shutdown.increment(1);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.handoff.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.handoff.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.handoff.set_resource(resource);
    }
}

/// The tail sampler's worker: the engine and the downstream processor.
struct TailWork<P> {
    engine: TailEngine,
    downstream: P,
}

impl<P: SpanProcessor + 'static> Work for TailWork<P> {
    fn span(&mut self, span: SpanData, now: Instant) {
        let downstream = &self.downstream;
        self.engine.ingest(span, now, &mut |s| downstream.on_end(s));
    }

    fn resource(&mut self, resource: &Resource) {
        self.downstream.set_resource(resource);
    }

    fn expire(&mut self, now: Instant) {
        let downstream = &self.downstream;
        self.engine.expire(now, &mut |s| downstream.on_end(s));
    }

    fn flush(&mut self) -> OTelSdkResult {
        self.downstream.force_flush()
    }

    fn finish(&mut self, timeout: Duration) -> OTelSdkResult {
        let downstream = &self.downstream;
        self.engine.finish(&mut |s| downstream.on_end(s));
        self.downstream.shutdown_with_timeout(timeout)
    }
}
