//! What-if projections (`spanline whatif FILE --scale KEY=FACTOR`): the
//! trace latency and critical-path shares if a stage, hop or queue were
//! faster or slower (see `docs/critical-path.md`, section *What-if*).
//!
//! Each span's own time (the gaps its children leave, or all of it for a
//! leaf) is charged to its key, as in [`TraceReport::contributions`];
//! scaling a key multiplies that time. The trace is then re-timed bottom-up:
//! every child starts at the same (scaled) distance from what it waited
//! for, and a parent ends at the same (scaled) distance after the last of
//! its blocking children. *What it waited for* comes from spanline's
//! structure where the spans carry it — steps in `depends_on` order, the
//! lanes of a parallel group or batch joined on the last, a fallback after
//! its primary, a consumer after its queue wait, a parent's only child —
//! and is exact there; elsewhere (foreign spans) it is the latest-ending
//! sibling that ended before the child started, an approximation from
//! timestamps that the result reports. The re-timed trace is analysed again
//! with [`analyze_trace`], so the new critical path is the analyser's own.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use crate::analyze::{SegmentType, TraceReport, analyze_trace};
use crate::model::{AttrValue, Span, SpanId, TraceId};
use crate::semconv as sc;
use crate::stats::{Percentiles, Stats, StatsBuilder};

/// Why a what-if could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WhatIfError {
    /// A `--scale` argument is not `KEY=FACTOR`.
    #[error("--scale expects KEY=FACTOR (e.g. embed=0.5), got {spec:?}")]
    BadSpec {
        /// The argument.
        spec: String,
    },
    /// The factor is not a finite number ≥ 0.
    #[error("the factor for {key:?} must be a finite number ≥ 0, got {factor:?}")]
    BadFactor {
        /// The key.
        key: String,
        /// The factor as given.
        factor: String,
    },
    /// The same key is scaled twice.
    #[error("{key:?} is scaled twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// No scale was given.
    #[error("nothing to scale: give at least one --scale KEY=FACTOR")]
    NoScale,
    /// No span of any trace has the key.
    #[error(
        "unknown key {key:?}: no stage, hop, queue or span of that name in {traces} traces (keys: {})",
        known.join(", ")
    )]
    UnknownKey {
        /// The key.
        key: String,
        /// Traces searched.
        traces: usize,
        /// Some keys that do exist (the largest contributors).
        known: Vec<String>,
    },
    /// No trace was added.
    #[error("no trace could be analysed")]
    NoTraces,
}

/// One `KEY=FACTOR`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scale {
    /// A stage name, or a hop, queue or span name (the keys of
    /// [`TraceReport::contributions`]).
    pub key: Arc<str>,
    /// The multiplier of the key's own time: 0.5 halves it, 2 doubles it, 0
    /// makes it free.
    pub factor: f64,
}

impl FromStr for Scale {
    type Err = WhatIfError;

    /// Parses `KEY=FACTOR` (split at the last `=`, so keys may contain `=`).
    fn from_str(spec: &str) -> Result<Self, WhatIfError> {
        let Some((key, factor)) = spec.rsplit_once('=') else {
            return Err(WhatIfError::BadSpec { spec: spec.into() });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(WhatIfError::BadSpec { spec: spec.into() });
        }
        let f: f64 = factor.trim().parse().map_err(|_| WhatIfError::BadFactor {
            key: key.into(),
            factor: factor.into(),
        })?;
        if !f.is_finite() || f < 0.0 {
            return Err(WhatIfError::BadFactor {
                key: key.into(),
                factor: factor.into(),
            });
        }
        Ok(Scale {
            key: Arc::from(key),
            factor: f,
        })
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.factor)
    }
}

/// A validated set of scales (at least one, no key twice).
#[derive(Clone, Debug, PartialEq)]
pub struct Scales(Vec<Scale>);

impl Scales {
    /// Validates the list.
    pub fn new(list: Vec<Scale>) -> Result<Self, WhatIfError> {
        if list.is_empty() {
            return Err(WhatIfError::NoScale);
        }
        for (i, s) in list.iter().enumerate() {
            if list[..i].iter().any(|t| t.key == s.key) {
                return Err(WhatIfError::DuplicateKey {
                    key: s.key.to_string(),
                });
            }
        }
        Ok(Scales(list))
    }

    /// Parses and validates `KEY=FACTOR` arguments.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, WhatIfError> {
        Self::new(
            specs
                .iter()
                .map(|s| s.as_ref().parse())
                .collect::<Result<_, _>>()?,
        )
    }

    /// The scales.
    pub fn as_slice(&self) -> &[Scale] {
        &self.0
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|s| &*s.key == key)
    }
}

/// One trace re-timed.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// The primary tree's spans with projected times (detached subtrees are
    /// left out; they do not make the trace longer).
    pub spans: Vec<Span>,
    /// Whether any scaled key occurs in the trace.
    pub changed: bool,
    /// Whether every re-timed placement came from structure (see the module
    /// docs); `true` for an unchanged trace.
    pub exact: bool,
    /// Names of the spans whose children were placed from timestamps while
    /// something below them changed.
    pub approximate_at: Vec<Arc<str>>,
}

fn scale(d: u64, f: f64) -> u64 {
    if f == 1.0 {
        return d;
    }
    // `as` saturates: huge products become u64::MAX.
    (d as f64 * f).round() as u64
}

/// The structural attributes a placement reads (docs/span-structure.md).
#[derive(Default)]
struct Shape {
    step: Option<i64>,
    deps: Option<Vec<i64>>,
    lane: Option<i64>,
    fallback_for: Option<Arc<str>>,
    stage: Option<Arc<str>>,
    blocking: bool,
    queue: bool,
}

impl Shape {
    fn of(s: &Span) -> Shape {
        let a = &s.attributes;
        let deps = a.get(sc::STEP_DEPENDS_ON).map(|v| match v {
            AttrValue::Array(xs) => xs.iter().filter_map(AttrValue::as_i64).collect(),
            other => other.as_i64().into_iter().collect(),
        });
        Shape {
            step: a.get(sc::STEP_INDEX).and_then(AttrValue::as_i64),
            deps,
            lane: a
                .get(sc::PARALLEL_BRANCH)
                .or_else(|| a.get(sc::BATCH_INDEX))
                .and_then(AttrValue::as_i64),
            fallback_for: a
                .get(sc::FALLBACK_FOR)
                .and_then(AttrValue::as_str)
                .map(Arc::from),
            stage: a
                .get(sc::STAGE_NAME)
                .and_then(AttrValue::as_str)
                .map(Arc::from),
            blocking: a
                .get(sc::STEP_BLOCKING)
                .and_then(AttrValue::as_bool)
                .unwrap_or(true),
            queue: a
                .get(sc::SEGMENT_TYPE)
                .and_then(AttrValue::as_str)
                .map(str::trim)
                == Some("queue"),
        }
    }
}

/// An already-placed point: (old relative time, new relative time).
type Anchor = (u64, u64);

/// Where `child` starts, given the anchor it waited for.
fn place(anchor: Anchor, old_start: u64, f: f64) -> u64 {
    let (old, new) = anchor;
    if old_start >= old {
        new.saturating_add(scale(old_start - old, f))
    } else {
        new.saturating_sub(old - old_start)
    }
}

/// Re-times the primary tree of one trace. `spans` are the trace's spans
/// (for their attributes), `report` its analysis.
pub fn project(spans: &[&Span], report: &TraceReport, scales: &Scales) -> Projection {
    let infos: Vec<_> = report.spans.iter().filter(|s| s.tree == 0).collect();
    let n = infos.len();
    let idx: HashMap<SpanId, u32> = infos
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i as u32))
        .collect();
    let mut raw: Vec<Option<&Span>> = vec![None; n];
    for s in spans {
        if let Some(&i) = idx.get(&s.span_id)
            && raw[i as usize].is_none()
        {
            raw[i as usize] = Some(s);
        }
    }
    let factor: Vec<f64> = infos
        .iter()
        .map(|s| scales.index(&s.key).map_or(1.0, |i| scales.0[i].factor))
        .collect();
    let unchanged = || Projection {
        spans: Vec::new(),
        changed: false,
        exact: true,
        approximate_at: Vec::new(),
    };
    if n == 0 || raw.iter().any(Option::is_none) {
        return unchanged();
    }
    let raw: Vec<&Span> = raw.into_iter().flatten().collect();
    let shape: Vec<Shape> = raw.iter().map(|s| Shape::of(s)).collect();
    let parent: Vec<u32> = infos
        .iter()
        .map(|s| {
            s.parent_span_id
                .and_then(|p| idx.get(&p).copied())
                .unwrap_or(u32::MAX)
        })
        .collect();
    // children, CSR, by clamped start
    let mut off = vec![0usize; n + 1];
    for &p in &parent {
        if p != u32::MAX {
            off[p as usize + 1] += 1;
        }
    }
    for i in 0..n {
        off[i + 1] += off[i];
    }
    let mut fill = off.clone();
    let mut kids = vec![0u32; off[n]];
    for (i, &p) in parent.iter().enumerate() {
        if p != u32::MAX {
            kids[fill[p as usize]] = i as u32;
            fill[p as usize] += 1;
        }
    }
    let key_of = |c: u32| {
        let s = infos[c as usize];
        (s.start_ns, s.end_ns, s.span_id)
    };
    for p in 0..n {
        kids[off[p]..off[p + 1]].sort_by_key(|&c| key_of(c));
    }

    // Bottom-up: `infos` is in depth-first pre-order, so reverse order sees
    // every child before its parent.
    let mut dur = vec![0u64; n];
    let mut rel = vec![0u64; n];
    let mut changed = vec![false; n];
    let mut approx_at: Vec<Arc<str>> = Vec::new();
    let mut scratch = Scratch::default();
    for x in (0..n).rev() {
        let f = factor[x];
        let ch = &kids[off[x]..off[x + 1]];
        changed[x] =
            scales.index(&infos[x].key).is_some() || ch.iter().any(|&c| changed[c as usize]);
        let (ps, pe) = (infos[x].start_ns, infos[x].end_ns);
        let own = pe.saturating_sub(ps);
        if ch.is_empty() {
            dur[x] = scale(own, f);
            continue;
        }
        let ctx = Ctx {
            infos: &infos,
            shape: &shape,
            dur: &dur,
            ps,
            f,
        };
        let exact = place_children(ch, &ctx, &mut rel, &mut scratch);
        // The parent ends after its last blocking child, plus its trailing
        // own time.
        let mut last_old = 0u64;
        let mut last_new: Option<u64> = None;
        for &c in ch {
            if shape[c as usize].blocking {
                let ci = infos[c as usize];
                last_old = last_old.max(ci.end_ns.saturating_sub(ps));
                let e = rel[c as usize].saturating_add(dur[c as usize]);
                last_new = Some(last_new.map_or(e, |l: u64| l.max(e)));
            }
        }
        dur[x] = match last_new {
            Some(l) => l.saturating_add(scale(own.saturating_sub(last_old), f)),
            None => scale(own, f),
        };
        if !exact && changed[x] && approx_at.len() < 64 {
            approx_at.push(infos[x].name.clone());
        }
    }
    if !changed[0] {
        return unchanged();
    }

    // Top-down: absolute times.
    let mut start = vec![0u64; n];
    let mut out: Vec<Span> = Vec::with_capacity(n);
    for x in 0..n {
        start[x] = if parent[x] == u32::MAX {
            infos[x].start_ns
        } else {
            start[parent[x] as usize].saturating_add(rel[x])
        };
        let mut s = raw[x].clone();
        s.start_ns = start[x];
        s.end_ns = start[x].saturating_add(dur[x]);
        s.parent_span_id = if x == 0 {
            None
        } else {
            infos[x].parent_span_id
        };
        out.push(s);
    }
    Projection {
        spans: out,
        changed: changed[0],
        exact: approx_at.is_empty(),
        approximate_at: approx_at,
    }
}

struct Ctx<'a, 'r> {
    infos: &'a [&'r crate::analyze::SpanInfo],
    shape: &'a [Shape],
    dur: &'a [u64],
    /// The parent's (old) start.
    ps: u64,
    /// The parent's factor (its gaps are its own time).
    f: f64,
}

impl Ctx<'_, '_> {
    fn old(&self, c: u32) -> (u64, u64) {
        let s = self.infos[c as usize];
        (
            s.start_ns.saturating_sub(self.ps),
            s.end_ns.saturating_sub(self.ps),
        )
    }
}

#[derive(Default)]
struct Scratch {
    structured: Vec<u32>,
    members: Vec<(i64, u64, u64, u32)>,
}

/// Places the children of one span (`rel` = new start relative to the
/// parent's new start). Returns whether every blocking child was placed
/// from structure.
fn place_children(ch: &[u32], cx: &Ctx<'_, '_>, rel: &mut [u64], sc: &mut Scratch) -> bool {
    let blocking = ch
        .iter()
        .filter(|&&c| cx.shape[c as usize].blocking)
        .count();
    let mut exact = true;
    // Every placed blocking child: old end → (new end, is a queue).
    let mut placed: BTreeMap<(u64, u32), (u64, bool)> = BTreeMap::new();

    // Steps, in index order.
    sc.structured.clear();
    sc.structured.extend(
        ch.iter()
            .copied()
            .filter(|&c| cx.shape[c as usize].step.is_some()),
    );
    sc.structured.sort_by_key(|&c| {
        let (s, e) = cx.old(c);
        (cx.shape[c as usize].step, s, e, c)
    });
    // (step, old end, new end) of the steps done
    let mut steps: Vec<(i64, u64, u64)> = Vec::new();
    let mut i = 0;
    let structured = std::mem::take(&mut sc.structured);
    while i < structured.len() {
        let k = cx.shape[structured[i] as usize].step.unwrap_or(0);
        let j = structured[i..]
            .iter()
            .position(|&c| cx.shape[c as usize].step != Some(k))
            .map_or(structured.len(), |p| i + p);
        let members = &structured[i..j];
        i = j;
        // What the step waited for: the steps in depends_on (earlier ones
        // only; a fallback lists its own step), else the previous step.
        let mut deps: Option<Vec<i64>> = None;
        for &c in members {
            if let Some(d) = &cx.shape[c as usize].deps {
                deps.get_or_insert_with(Vec::new)
                    .extend(d.iter().copied().filter(|&d| d < k));
            }
        }
        let ready: Anchor = match deps {
            Some(d) => d
                .iter()
                .filter_map(|d| {
                    steps
                        .binary_search_by_key(d, |s| s.0)
                        .ok()
                        .map(|p| (steps[p].1, steps[p].2))
                })
                .max()
                .unwrap_or((0, 0)),
            None => steps.last().map_or((0, 0), |s| (s.1, s.2)),
        };
        // Lanes: branch or batch item; a fallback joins its primary's lane.
        let primary_lane: HashMap<&str, i64> = members
            .iter()
            .filter(|&&c| cx.shape[c as usize].fallback_for.is_none())
            .filter_map(|&c| {
                let s = &cx.shape[c as usize];
                s.stage.as_deref().map(|n| (n, s.lane.unwrap_or(0)))
            })
            .collect();
        sc.members.clear();
        for &c in members {
            let s = &cx.shape[c as usize];
            let lane = match (&s.lane, &s.fallback_for) {
                (Some(l), _) => *l,
                (None, Some(f)) => primary_lane.get(&**f).copied().unwrap_or(0),
                (None, None) => 0,
            };
            let (os, oe) = cx.old(c);
            sc.members.push((lane, os, oe, c));
        }
        sc.members.sort_unstable();
        // lanes as ranges of sc.members, ordered by their first start
        let mut lanes: Vec<(u64, usize, usize)> = Vec::new();
        let mut a = 0;
        while a < sc.members.len() {
            let l = sc.members[a].0;
            let b = sc.members[a..]
                .iter()
                .position(|m| m.0 != l)
                .map_or(sc.members.len(), |p| a + p);
            lanes.push((sc.members[a].1, a, b));
            a = b;
        }
        lanes.sort_unstable();
        // A lane that started after another lane of the step ended waited
        // for it (a batch slot, a branch yielding).
        let mut lane_ends: BTreeMap<(u64, usize), u64> = BTreeMap::new();
        let (mut step_old, mut step_new) = (ready.0, ready.1);
        for (li, &(ls, a, b)) in lanes.iter().enumerate() {
            let mut anchor = ready;
            if let Some((&(oe, _), &ne)) = lane_ends.range(..=(ls, usize::MAX)).next_back()
                && oe >= ready.0
            {
                anchor = (oe, ne);
            }
            let (mut lo, mut ln, mut any) = (0u64, 0u64, false);
            for m in a..b {
                let (_, os, oe, c) = sc.members[m];
                let ns = place(anchor, os, cx.f);
                rel[c as usize] = ns;
                let ne = ns.saturating_add(cx.dur[c as usize]);
                anchor = (oe, ne);
                if cx.shape[c as usize].blocking {
                    lo = lo.max(oe);
                    ln = ln.max(ne);
                    any = true;
                    placed.insert((oe, c), (ne, false));
                }
            }
            if any {
                lane_ends.insert((lo, li), ln);
                step_old = step_old.max(lo);
                step_new = step_new.max(ln);
            }
        }
        steps.push((k, step_old, step_new));
    }
    sc.structured = structured;

    // Children without a step index, in start order: after the latest
    // sibling that ended before they started (timestamps).
    for &c in ch {
        let s = &cx.shape[c as usize];
        if s.step.is_some() {
            continue;
        }
        let (os, oe) = cx.old(c);
        let pred = placed.range(..=(os, u32::MAX)).next_back();
        let anchor = pred.map_or((0, 0), |(&(o, _), &(n, _))| (o, n));
        let by_structure = blocking <= 1 || s.queue || pred.is_some_and(|(_, &(_, q))| q);
        if s.blocking && !by_structure {
            exact = false;
        }
        let ns = place(anchor, os, cx.f);
        rel[c as usize] = ns;
        if s.blocking {
            placed.insert((oe, c), (ns.saturating_add(cx.dur[c as usize]), s.queue));
        }
    }
    exact
}

/// A key's critical-path share before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShareChange {
    /// The key.
    pub key: Arc<str>,
    /// The kind of time.
    pub segment_type: SegmentType,
    /// Share of all critical-path time, as recorded.
    pub before: f64,
    /// Share of all critical-path time, projected.
    pub after: f64,
    /// Whether the key was scaled.
    pub scaled: bool,
}

/// Exactness per scaled key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaledKey {
    /// The key and factor.
    pub scale: Scale,
    /// Traces in which the key occurs.
    pub traces: usize,
    /// Of those, traces re-timed exactly from structure.
    pub exact_traces: usize,
    /// Of those, traces re-timed partly from timestamps.
    pub approximate_traces: usize,
}

/// The result of a what-if.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhatIf {
    /// The scales, with exactness per key.
    pub keys: Vec<ScaledKey>,
    /// Traces analysed.
    pub traces: usize,
    /// Traces in which a scaled key occurs.
    pub changed_traces: usize,
    /// Changed traces re-timed exactly from structure.
    pub exact_traces: usize,
    /// Changed traces re-timed partly from timestamps.
    pub approximate_traces: usize,
    /// Some approximate traces (up to 10).
    pub approximate_examples: Vec<TraceId>,
    /// Spans whose children were placed from timestamps, with the number of
    /// traces (largest first, up to 10).
    pub approximate_at: Vec<(Arc<str>, usize)>,
    /// Trace latency as recorded.
    pub before: Percentiles,
    /// Trace latency projected.
    pub after: Percentiles,
    /// Critical-path shares, largest projected share first.
    pub shares: Vec<ShareChange>,
}

/// Builds a [`WhatIf`] one trace at a time.
pub struct WhatIfBuilder {
    scales: Scales,
    before: StatsBuilder,
    after: StatsBuilder,
    key_traces: Vec<[usize; 3]>,
    changed: usize,
    exact: usize,
    approx: usize,
    examples: Vec<TraceId>,
    approx_at: HashMap<Arc<str>, usize>,
}

impl WhatIfBuilder {
    /// A builder for these scales.
    pub fn new(scales: Scales) -> Self {
        WhatIfBuilder {
            key_traces: vec![[0; 3]; scales.0.len()],
            scales,
            before: StatsBuilder::new(),
            after: StatsBuilder::new(),
            changed: 0,
            exact: 0,
            approx: 0,
            examples: Vec::new(),
            approx_at: HashMap::new(),
        }
    }

    /// Adds one trace: its spans and its report.
    pub fn add(&mut self, spans: &[&Span], report: &TraceReport) {
        self.before.add(report);
        let p = project(spans, report, &self.scales);
        let projected = if p.changed {
            let refs: Vec<&Span> = p.spans.iter().collect();
            analyze_trace(&refs)
        } else {
            None
        };
        let Some(after) = projected else {
            self.after.add(report);
            return;
        };
        self.after.add(&after);
        self.changed += 1;
        if p.exact {
            self.exact += 1;
        } else {
            self.approx += 1;
            if self.examples.len() < 10 {
                self.examples.push(report.trace_id);
            }
            let mut names = p.approximate_at;
            names.sort_unstable();
            names.dedup();
            for name in names {
                if let Some(c) = self.approx_at.get_mut(&name) {
                    *c += 1;
                } else if self.approx_at.len() < 1000 {
                    self.approx_at.insert(name, 1);
                }
            }
        }
        for (i, s) in self.scales.0.iter().enumerate() {
            if report.spans.iter().any(|x| x.tree == 0 && x.key == s.key) {
                let kt = &mut self.key_traces[i];
                kt[0] += 1;
                kt[if p.exact { 1 } else { 2 }] += 1;
            }
        }
    }

    /// Computes the result; a key that occurs in no trace is an error.
    pub fn finish(self) -> Result<WhatIf, WhatIfError> {
        let before = self.before.finish();
        if before.traces == 0 {
            return Err(WhatIfError::NoTraces);
        }
        for (i, s) in self.scales.0.iter().enumerate() {
            if self.key_traces[i][0] == 0 {
                return Err(WhatIfError::UnknownKey {
                    key: s.key.to_string(),
                    traces: before.traces,
                    known: before
                        .rows
                        .iter()
                        .take(12)
                        .map(|r| r.key.to_string())
                        .collect(),
                });
            }
        }
        let after = self.after.finish();
        let shares = share_changes(&before, &after, &self.scales);
        let mut approximate_at: Vec<(Arc<str>, usize)> = self.approx_at.into_iter().collect();
        approximate_at.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        approximate_at.truncate(10);
        Ok(WhatIf {
            keys: self
                .scales
                .0
                .into_iter()
                .zip(self.key_traces)
                .map(|(scale, [t, e, a])| ScaledKey {
                    scale,
                    traces: t,
                    exact_traces: e,
                    approximate_traces: a,
                })
                .collect(),
            traces: before.traces,
            changed_traces: self.changed,
            exact_traces: self.exact,
            approximate_traces: self.approx,
            approximate_examples: self.examples,
            approximate_at,
            before: before.duration,
            after: after.duration,
            shares,
        })
    }
}

fn share_changes(before: &Stats, after: &Stats, scales: &Scales) -> Vec<ShareChange> {
    let mut map: HashMap<(SegmentType, &Arc<str>), (f64, f64)> = HashMap::new();
    for r in &before.rows {
        map.entry((r.segment_type, &r.key)).or_default().0 = r.critical_share;
    }
    for r in &after.rows {
        map.entry((r.segment_type, &r.key)).or_default().1 = r.critical_share;
    }
    let mut v: Vec<ShareChange> = map
        .into_iter()
        .map(|((t, k), (b, a))| ShareChange {
            key: k.clone(),
            segment_type: t,
            before: b,
            after: a,
            scaled: scales.index(k).is_some(),
        })
        .collect();
    v.sort_by(|a, b| {
        b.after
            .total_cmp(&a.after)
            .then(b.before.total_cmp(&a.before))
            .then_with(|| a.key.cmp(&b.key))
    });
    v
}
