//! The critical-path analysis of one trace (see `docs/critical-path.md`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::diag::Diagnostic;
pub use crate::graph::MAX_TRACE_DIAGNOSTICS;
use crate::graph::TraceGraph;
use crate::model::{Span, SpanId, SpanKind, TraceId};

/// What a piece of the critical path was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentType {
    /// A pipeline stage's own work (including spans without a type below it).
    Stage,
    /// A blocking remote call (`spanline.segment.type = hop`): network,
    /// serialisation and remote time not covered by remote stage spans.
    Hop,
    /// Time a message waited in a broker (`spanline.segment.type = queue`);
    /// never attributed to a stage.
    Queue,
    /// Work of a span that is neither a stage, a hop nor a queue — the
    /// pipeline's own orchestration, or spans from uninstrumented code.
    #[serde(rename = "self")]
    SelfTime,
}

impl SegmentType {
    /// `stage`, `hop`, `queue` or `self`.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentType::Stage => "stage",
            SegmentType::Hop => "hop",
            SegmentType::Queue => "queue",
            SegmentType::SelfTime => "self",
        }
    }
}

/// One piece of the critical path: an interval during which the request was
/// waiting on exactly one span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    /// The span the time is attributed to.
    pub span_id: SpanId,
    /// Its name.
    pub span_name: Arc<str>,
    /// The innermost enclosing stage (`None` for queue waits and for time
    /// outside any stage).
    pub stage: Option<Arc<str>>,
    /// What the time was spent on.
    pub segment_type: SegmentType,
    /// Who the time is charged to in aggregates: the stage name for stage
    /// time, the hop or queue span's name for hops and queues, the span name
    /// for self time.
    pub key: Arc<str>,
    /// Start of the interval (ns since the epoch, after clock-skew clamping).
    pub start_ns: u64,
    /// End of the interval.
    pub end_ns: u64,
    /// `end_ns - start_ns`.
    pub duration_ns: u64,
    /// Fraction of the trace's duration.
    pub share: f64,
}

/// The critical-path time charged to one key within one trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contribution {
    /// The key (see [`Segment::key`]).
    pub key: Arc<str>,
    /// The type of the time.
    pub segment_type: SegmentType,
    /// Time on the critical path.
    pub duration_ns: u64,
    /// Fraction of the trace's duration.
    pub share: f64,
}

/// One span as the analysis sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanInfo {
    /// The span id.
    pub span_id: SpanId,
    /// The parent as used by the analysis (`None` for roots, orphans and the
    /// span where a parent cycle was broken).
    pub parent_span_id: Option<SpanId>,
    /// The span name.
    pub name: Arc<str>,
    /// The span's stage name if it is a stage span, else the innermost
    /// enclosing stage (`None` inside queue waits).
    pub stage: Option<Arc<str>>,
    /// Whether the span itself is a stage span (carries `spanline.stage.name`
    /// and is not a hop or queue).
    pub is_stage: bool,
    /// The span's type (own, or inherited from the nearest typed ancestor).
    pub segment_type: SegmentType,
    /// Aggregation key (stage name, hop/queue span name, or span name).
    pub key: Arc<str>,
    /// The span kind.
    pub kind: SpanKind,
    /// Whether the status is an error.
    pub error: bool,
    /// The producing service.
    pub service_name: Option<Arc<str>>,
    /// Depth below the span's root (0 for a root).
    pub depth: u32,
    /// Which tree the span belongs to: 0 for the primary tree, `i` for
    /// `detached[i - 1]`.
    pub tree: u32,
    /// Start after clamping into the parent's interval.
    pub start_ns: u64,
    /// End after clamping into the parent's interval.
    pub end_ns: u64,
    /// Start as recorded.
    pub raw_start_ns: u64,
    /// End as recorded.
    pub raw_end_ns: u64,
    /// Whether the span lies on the critical path of its tree.
    pub on_path: bool,
    /// Time on the critical path attributed to this span itself (excluding
    /// its children on the path).
    pub critical_ns: u64,
    /// How much later this span could have ended without making its tree end
    /// later (0 on the path; `None` for non-blocking spans).
    pub slack_ns: Option<u64>,
}

/// Why a subtree is not part of the primary tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetachReason {
    /// Its root's parent is not in the input.
    Orphan,
    /// Its root was in a parent cycle, broken there.
    ParentCycle,
    /// A second span without a parent.
    ExtraRoot,
}

/// A subtree analysed on its own because it is not connected to the primary root.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detached {
    /// The subtree's root.
    pub span_id: SpanId,
    /// Its name.
    pub name: Arc<str>,
    /// The parent id it claims (for orphans and cycles).
    pub missing_parent: Option<SpanId>,
    /// Why it is detached.
    pub reason: DetachReason,
    /// Its duration.
    pub duration_ns: u64,
    /// Its own critical path.
    pub segments: Vec<Segment>,
}

/// Clamping by at most this much is normal between processes and async
/// tasks (a server span ends after its client has the response; a queue
/// span starts at a microsecond timestamp) and is not reported.
pub const SKEW_TOLERANCE_NS: u64 = 1_000_000;

/// The critical path of one trace and everything needed to render it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceReport {
    /// The trace.
    pub trace_id: TraceId,
    /// The primary root (the longest span without a parent; the longest
    /// orphan when there is none).
    pub root_span_id: SpanId,
    /// Its name.
    pub root_name: Arc<str>,
    /// Start of the primary root.
    pub start_ns: u64,
    /// End of the primary root.
    pub end_ns: u64,
    /// Duration of the primary root: the sum of the segments' durations.
    pub duration_ns: u64,
    /// Whether spanline's structural attributes were used anywhere (else the
    /// whole path comes from the timestamp method).
    pub structured: bool,
    /// The critical path, in time order; the segments tile the root's interval.
    pub segments: Vec<Segment>,
    /// Critical-path time per key, largest first.
    pub contributions: Vec<Contribution>,
    /// Every span: the primary tree in depth-first order (children by start),
    /// then each detached tree.
    pub spans: Vec<SpanInfo>,
    /// Subtrees not connected to the primary root.
    pub detached: Vec<Detached>,
    /// Problems found in this trace (at most
    /// [`MAX_TRACE_DIAGNOSTICS`]).
    pub diagnostics: Vec<Diagnostic>,
    /// Problems found in this trace beyond the ones kept.
    pub suppressed_diagnostics: u64,
}

impl TraceReport {
    /// The largest contributor, if the trace has any duration.
    pub fn dominant(&self) -> Option<&Contribution> {
        self.contributions.first()
    }

    /// Stage spans off the critical path, least slack first.
    pub fn off_path_stages(&self) -> Vec<&SpanInfo> {
        let mut v: Vec<&SpanInfo> = self
            .spans
            .iter()
            .filter(|s| s.tree == 0 && s.is_stage && !s.on_path)
            .collect();
        v.sort_by_key(|s| (s.slack_ns.unwrap_or(u64::MAX), s.start_ns));
        v
    }

    /// Critical-path time spent in queue waits.
    pub fn queue_ns(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.segment_type == SegmentType::Queue)
            .map(|s| s.duration_ns)
            .sum()
    }
}

// ------------------------------------------------------------------ grouping

/// Groups spans by trace, in order of each trace's first span. This is the
/// bare cost every analysis pays (the benchmark's baseline).
pub fn group_by_trace(spans: &[Span]) -> Vec<Vec<&Span>> {
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    let mut groups: Vec<Vec<&Span>> = Vec::new();
    for s in spans {
        let i = *index.entry(s.trace_id).or_insert_with(|| {
            groups.push(Vec::with_capacity(16));
            groups.len() - 1
        });
        groups[i].push(s);
    }
    groups
}

/// Analyses every trace in `spans` (in order of first appearance).
pub fn analyze(spans: &[Span]) -> Vec<TraceReport> {
    group_by_trace(spans)
        .iter()
        .filter_map(|g| analyze_trace(g))
        .collect()
}

/// Analyses the spans of one trace (spans of other traces in the slice are
/// analysed as if they belonged to the first span's trace). Returns `None`
/// for an empty slice.
///
/// The phases are methods of an internal `TraceGraph` (`src/graph/`); each
/// is linear or n log n in the number of spans.
pub fn analyze_trace(spans: &[&Span]) -> Option<TraceReport> {
    TraceGraph::analyze(spans)
}

/// Formats nanoseconds for messages: `1.234ms`, `56.7µs`, `890ns`, `2.5s`.
pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else {
        format!("{ns}ns")
    }
}
