//! Splitting traces by the value of one attribute (`--group-by ATTR`), for
//! example `server.address` to compare worker replicas (see
//! `docs/critical-path.md`, section *Grouping*).
//!
//! A trace belongs to the group of the value of `ATTR` on its spans. When
//! its spans carry several values (a request that reached two replicas), the
//! value of the span with the most critical-path time wins and the trace is
//! counted as *mixed*. `service.name` is read from the span's resource.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::analyze::TraceReport;
use crate::diff::{Diff, DiffBuilder, DiffError, DiffOptions, Side};
use crate::model::{AttrValue, Span, SpanId};
use crate::semconv as sc;
use crate::stats::{Stats, StatsBuilder};

/// At most this many distinct values get a group of their own; traces with
/// later new values go to [`GroupKey::Other`], so memory stays bounded.
pub const MAX_GROUPS: usize = 1000;

/// The group a trace belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum GroupKey {
    /// Traces whose spans carry this value.
    Value(Arc<str>),
    /// Traces without the attribute.
    Missing,
    /// Traces with values beyond the first [`MAX_GROUPS`].
    Other,
}

impl GroupKey {
    /// The value, or `(no ATTR)` / `(other values)`.
    pub fn label(&self, attr: &str) -> String {
        match self {
            GroupKey::Value(v) => v.to_string(),
            GroupKey::Missing => format!("(no {attr})"),
            GroupKey::Other => "(other values)".to_owned(),
        }
    }
}

/// The value of `attr` for one trace, and whether its spans disagreed.
pub fn trace_value(spans: &[&Span], report: &TraceReport, attr: &str) -> (Option<Arc<str>>, bool) {
    let value_of = |s: &Span| -> Option<Arc<str>> {
        if attr == sc::SERVICE_NAME
            && let Some(v) = &s.service_name
        {
            return Some(v.clone());
        }
        match s.attributes.get(attr)? {
            AttrValue::Str(v) => Some(v.clone()),
            other => Some(Arc::from(other.to_string())),
        }
    };
    let mut found: HashMap<SpanId, Arc<str>> = HashMap::new();
    let mut first: Option<Arc<str>> = None;
    let mut mixed = false;
    for s in spans {
        if let Some(v) = value_of(s) {
            match &first {
                None => first = Some(v.clone()),
                Some(f) if *f != v => mixed = true,
                Some(_) => {}
            }
            found.entry(s.span_id).or_insert(v);
        }
    }
    if !mixed {
        return (first, false);
    }
    // Several values: the one on the span with the most critical-path time.
    let mut best: Option<(u64, &Arc<str>)> = None;
    for si in report.spans.iter().filter(|s| s.tree == 0) {
        if let Some(v) = found.get(&si.span_id)
            && best.is_none_or(|(ns, _)| si.critical_ns > ns)
        {
            best = Some((si.critical_ns, v));
        }
    }
    (best.map(|b| b.1.clone()).or(first), true)
}

/// Assigns group indices to values, with the [`MAX_GROUPS`] cap.
struct Grouper {
    attr: String,
    index: HashMap<GroupKey, usize>,
    keys: Vec<GroupKey>,
    values: usize,
}

impl Grouper {
    fn new(attr: &str) -> Self {
        Grouper {
            attr: attr.to_owned(),
            index: HashMap::new(),
            keys: Vec::new(),
            values: 0,
        }
    }

    /// The group of a trace, and whether it is mixed; `fresh` is true when
    /// the group is new (the caller pushes its accumulator).
    fn group(&mut self, spans: &[&Span], report: &TraceReport) -> (usize, bool, bool) {
        let (v, mixed) = trace_value(spans, report, &self.attr);
        let mut key = v.map_or(GroupKey::Missing, GroupKey::Value);
        if matches!(key, GroupKey::Value(_)) && !self.index.contains_key(&key) {
            if self.values >= MAX_GROUPS {
                key = GroupKey::Other;
            } else {
                self.values += 1;
            }
        }
        if let Some(&i) = self.index.get(&key) {
            return (i, mixed, false);
        }
        let i = self.keys.len();
        self.keys.push(key.clone());
        self.index.insert(key, i);
        (i, mixed, true)
    }
}

/// Statistics of one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group.
    pub group: GroupKey,
    /// Traces in the group.
    pub traces: usize,
    /// Traces with at least one span in error (primary tree).
    pub error_traces: usize,
    /// `error_traces / traces`.
    pub error_rate: f64,
    /// Traces whose spans carried several values of the attribute.
    pub mixed_traces: usize,
    /// Latency, per-key percentiles and critical-path shares of the group.
    pub stats: Stats,
}

/// `stats --group-by ATTR`: one [`Stats`] per value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupedStats {
    /// The attribute.
    pub attribute: String,
    /// Groups: values by traces (most first), then missing and other.
    pub groups: Vec<GroupStats>,
}

#[derive(Default)]
struct Counts {
    traces: usize,
    errors: usize,
    mixed: usize,
}

/// Builds [`GroupedStats`] one trace at a time.
pub struct GroupedStatsBuilder {
    grouper: Grouper,
    groups: Vec<(StatsBuilder, Counts)>,
}

impl GroupedStatsBuilder {
    /// Groups by `attr`.
    pub fn new(attr: &str) -> Self {
        GroupedStatsBuilder {
            grouper: Grouper::new(attr),
            groups: Vec::new(),
        }
    }

    /// Adds one trace: its spans (for the attribute) and its report.
    pub fn add(&mut self, spans: &[&Span], report: &TraceReport) {
        let (i, mixed, fresh) = self.grouper.group(spans, report);
        if fresh {
            self.groups.push((StatsBuilder::new(), Counts::default()));
        }
        let (b, c) = &mut self.groups[i];
        b.add(report);
        c.traces += 1;
        c.mixed += usize::from(mixed);
        c.errors += usize::from(report.spans.iter().any(|s| s.tree == 0 && s.error));
    }

    /// Computes the statistics of every group.
    pub fn finish(self) -> GroupedStats {
        let mut groups: Vec<GroupStats> = self
            .grouper
            .keys
            .into_iter()
            .zip(self.groups)
            .map(|(group, (b, c))| GroupStats {
                group,
                traces: c.traces,
                error_traces: c.errors,
                error_rate: c.errors as f64 / c.traces.max(1) as f64,
                mixed_traces: c.mixed,
                stats: b.finish(),
            })
            .collect();
        groups.sort_by(|a, b| order(&a.group, a.traces, &b.group, b.traces));
        GroupedStats {
            attribute: self.grouper.attr,
            groups,
        }
    }
}

fn order(a: &GroupKey, an: usize, b: &GroupKey, bn: usize) -> std::cmp::Ordering {
    let rank = |k: &GroupKey| match k {
        GroupKey::Value(_) => 0,
        GroupKey::Missing => 1,
        GroupKey::Other => 2,
    };
    rank(a)
        .cmp(&rank(b))
        .then(bn.cmp(&an))
        .then_with(|| a.cmp(b))
}

/// The diff of one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupDiff {
    /// The group.
    pub group: GroupKey,
    /// Baseline traces in the group.
    pub baseline_traces: usize,
    /// Current traces in the group.
    pub current_traces: usize,
    /// The diff, when both sides have traces of the group.
    pub diff: Option<Diff>,
    /// Why there is no diff.
    pub problem: Option<String>,
}

/// `diff --group-by ATTR`: one [`Diff`] per value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupedDiff {
    /// The attribute.
    pub attribute: String,
    /// Groups, ordered like [`GroupedStats::groups`] (by current traces).
    pub groups: Vec<GroupDiff>,
}

/// Builds a [`GroupedDiff`] one trace at a time.
pub struct GroupedDiffBuilder {
    grouper: Grouper,
    groups: Vec<DiffBuilder>,
}

impl GroupedDiffBuilder {
    /// Groups by `attr`.
    pub fn new(attr: &str) -> Self {
        GroupedDiffBuilder {
            grouper: Grouper::new(attr),
            groups: Vec::new(),
        }
    }

    /// Adds one trace of `side`.
    pub fn add(&mut self, side: Side, spans: &[&Span], report: &TraceReport) {
        let (i, _, fresh) = self.grouper.group(spans, report);
        if fresh {
            self.groups.push(DiffBuilder::new());
        }
        self.groups[i].add(side, report);
    }

    /// Computes the diff of every group; an invalid option is an error, a
    /// group missing on one side is reported in [`GroupDiff::problem`].
    pub fn finish(self, opts: &DiffOptions) -> Result<GroupedDiff, DiffError> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for (group, b) in self.grouper.keys.into_iter().zip(self.groups) {
            let (bt, ct) = (b.traces(Side::Baseline), b.traces(Side::Current));
            let (diff, problem) = match b.finish(opts) {
                Ok(d) => (Some(d), None),
                Err(e @ DiffError::NoTraces(_)) => (None, Some(e.to_string())),
                Err(e) => return Err(e),
            };
            groups.push(GroupDiff {
                group,
                baseline_traces: bt,
                current_traces: ct,
                diff,
                problem,
            });
        }
        groups.sort_by(|a, b| order(&a.group, a.current_traces, &b.group, b.current_traces));
        Ok(GroupedDiff {
            attribute: self.grouper.attr,
            groups,
        })
    }
}
