//! The critical-path analysis of one trace (see `docs/critical-path.md`).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::diag::{Diagnostic, DiagnosticKind, Location};
use crate::model::{AttrValue, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::semconv as sc;

const NONE: u32 = u32::MAX;

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
    /// Problems found in this trace.
    pub diagnostics: Vec<Diagnostic>,
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

// ------------------------------------------------------------------ structure

/// Structural attributes of one span, read in a single pass.
#[derive(Default)]
struct Structure {
    step: Option<i64>,
    deps: (u32, u32),
    has_deps: bool,
    branch: Option<i64>,
    batch: Option<i64>,
    fallback_for: Option<Arc<str>>,
    blocking: bool,
    stage: Option<Arc<str>>,
    own_type: Option<SegmentType>,
}

fn structure(span: &Span, deps_arena: &mut Vec<i64>) -> Structure {
    let mut st = Structure {
        blocking: true,
        ..Structure::default()
    };
    let mut seg: Option<SegmentType> = None;
    for (k, v) in &span.attributes.0 {
        let k: &str = k;
        if !k.starts_with("spanline.") {
            continue;
        }
        match k {
            sc::STEP_INDEX => st.step = v.as_i64(),
            sc::STEP_DEPENDS_ON => {
                let start = deps_arena.len() as u32;
                match v {
                    AttrValue::Array(a) => {
                        deps_arena.extend(a.iter().filter_map(AttrValue::as_i64))
                    }
                    other => deps_arena.extend(other.as_i64()),
                }
                st.deps = (start, deps_arena.len() as u32 - start);
                st.has_deps = true;
            }
            sc::STEP_BLOCKING => st.blocking = v.as_bool().unwrap_or(true),
            sc::PARALLEL_BRANCH => st.branch = v.as_i64(),
            sc::BATCH_INDEX => st.batch = v.as_i64(),
            sc::FALLBACK_FOR => st.fallback_for = v.as_str().map(Arc::from),
            sc::STAGE_NAME => {
                if let AttrValue::Str(s) = v {
                    st.stage = Some(s.clone());
                }
            }
            sc::SEGMENT_TYPE => {
                seg = match v.as_str().map(str::trim) {
                    Some("hop") => Some(SegmentType::Hop),
                    Some("queue") => Some(SegmentType::Queue),
                    Some("stage") => Some(SegmentType::Stage),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    st.own_type = match seg {
        Some(t) => Some(t),
        None if st.stage.is_some() => Some(SegmentType::Stage),
        None => None,
    };
    st
}

// ------------------------------------------------------------------ analysis

struct Node<'a> {
    span: &'a Span,
    parent: u32,
    start: u64,
    end: u64,
    st: Structure,
}

/// Per-node results of the walk.
#[derive(Clone, Copy)]
struct Walk {
    on_path: bool,
    /// End of the window through which the path enters this span.
    win_end: u64,
    slack: Option<u64>,
    tree: u32,
    depth: u32,
    /// Index of the typed span whose key and type this span's time is charged to.
    owner: u32,
    /// Innermost enclosing stage span (or `NONE`).
    stage_node: u32,
}

/// A unit of the walk-back among a span's children: one step (all children
/// sharing a step index) or one child without structure.
struct Block {
    start: u64,
    end: u64,
    step: Option<i64>,
    /// Range into the members vector.
    members: (usize, usize),
}

/// Analyses the spans of one trace (spans of other traces in the slice are
/// analysed as if they belonged to the first span's trace). Returns `None`
/// for an empty slice.
pub fn analyze_trace(spans: &[&Span]) -> Option<TraceReport> {
    let first = spans.first()?;
    let trace_id = first.trace_id;
    let mut diags: Vec<Diagnostic> = Vec::new();
    let loc = |s: &Span| Location::Span {
        trace_id,
        span_id: s.span_id,
    };

    // 1. unique spans, id index
    let mut ids: HashMap<SpanId, u32> = HashMap::with_capacity(spans.len());
    let mut nodes: Vec<Node<'_>> = Vec::with_capacity(spans.len());
    let mut deps_arena: Vec<i64> = Vec::new();
    for s in spans {
        if ids.contains_key(&s.span_id) {
            diags.push(Diagnostic::new(
                DiagnosticKind::DuplicateSpanId,
                loc(s),
                format!(
                    "span id repeated (span {:?}); the later copy is ignored",
                    s.name
                ),
            ));
            continue;
        }
        ids.insert(s.span_id, nodes.len() as u32);
        let st = structure(s, &mut deps_arena);
        nodes.push(Node {
            span: s,
            parent: NONE,
            start: s.start_ns,
            end: s.end_ns,
            st,
        });
    }
    let n = nodes.len();

    // 2. parents
    let mut orphan = vec![false; n];
    for i in 0..n {
        let s = nodes[i].span;
        if let Some(pid) = s.parent_span_id {
            match ids.get(&pid) {
                Some(&p) if p as usize == i => {
                    diags.push(Diagnostic::new(
                        DiagnosticKind::ParentCycle,
                        loc(s),
                        format!("span {:?} is its own parent; treated as a root", s.name),
                    ));
                }
                Some(&p) => nodes[i].parent = p,
                None => {
                    orphan[i] = true;
                    diags.push(Diagnostic::new(
                        DiagnosticKind::Orphan,
                        loc(s),
                        format!(
                            "parent {pid} of span {:?} is not in the input; the span roots its own subtree",
                            s.name
                        ),
                    ));
                }
            }
        }
    }

    // 3. children (CSR), sorted by recorded start
    let mut child_off = vec![0u32; n + 1];
    for nd in &nodes {
        if nd.parent != NONE {
            child_off[nd.parent as usize + 1] += 1;
        }
    }
    for i in 0..n {
        child_off[i + 1] += child_off[i];
    }
    let mut fill = child_off.clone();
    let mut children = vec![0u32; child_off[n] as usize];
    for (i, nd) in nodes.iter().enumerate() {
        if nd.parent != NONE {
            let p = nd.parent as usize;
            children[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
    }
    for p in 0..n {
        let (a, b) = (child_off[p] as usize, child_off[p + 1] as usize);
        if b - a > 1 {
            children[a..b].sort_by_key(|&c| {
                let s = nodes[c as usize].span;
                (s.start_ns, s.end_ns, s.span_id)
            });
        }
    }

    // position of every span among its parent's children
    let mut pos = vec![0u32; n];
    for p in 0..n {
        let (a, b) = (child_off[p] as usize, child_off[p + 1] as usize);
        for (i, &c) in children[a..b].iter().enumerate() {
            pos[c as usize] = i as u32;
        }
    }

    // 4. roots and reachability; break parent cycles
    let mut reached = vec![false; n];
    let mut roots: Vec<u32> = (0..n as u32)
        .filter(|&i| nodes[i as usize].parent == NONE)
        .collect();
    let mut cycle_roots: Vec<u32> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let mark = |root: u32, reached: &mut Vec<bool>, stack: &mut Vec<u32>, nodes: &Vec<Node<'_>>| {
        stack.push(root);
        while let Some(x) = stack.pop() {
            if reached[x as usize] {
                continue;
            }
            reached[x as usize] = true;
            let (a, b) = (
                child_off[x as usize] as usize,
                child_off[x as usize + 1] as usize,
            );
            for &c in &children[a..b] {
                if nodes[c as usize].parent == x && !reached[c as usize] {
                    stack.push(c);
                }
            }
        }
    };
    for &r in &roots {
        mark(r, &mut reached, &mut stack, &nodes);
    }
    if reached.iter().any(|r| !r) {
        let mut stamp = vec![NONE; n];
        for u in 0..n {
            if reached[u] {
                continue;
            }
            // Walk up until a node repeats: it lies on the cycle.
            let mut x = u as u32;
            while stamp[x as usize] != u as u32 && !reached[x as usize] {
                stamp[x as usize] = u as u32;
                x = nodes[x as usize].parent;
                if x == NONE {
                    break;
                }
            }
            if x == NONE || reached[x as usize] {
                continue;
            }
            // Collect the cycle, break it at its earliest-starting span.
            let mut cyc = vec![x];
            let mut y = nodes[x as usize].parent;
            while y != x && cyc.len() <= n {
                cyc.push(y);
                y = nodes[y as usize].parent;
            }
            let Some(&brk) = cyc
                .iter()
                .min_by_key(|&&c| (nodes[c as usize].span.start_ns, c))
            else {
                continue;
            };
            let names: Vec<String> = cyc
                .iter()
                .take(6)
                .map(|&c| format!("{:?}", &*nodes[c as usize].span.name))
                .collect();
            diags.push(Diagnostic::new(
                DiagnosticKind::ParentCycle,
                loc(nodes[brk as usize].span),
                format!(
                    "parent links form a cycle through {} spans ({}{}); broken at span {:?}, which is treated as a root",
                    cyc.len(),
                    names.join(" → "),
                    if cyc.len() > 6 { " …" } else { "" },
                    &*nodes[brk as usize].span.name
                ),
            ));
            nodes[brk as usize].parent = NONE;
            cycle_roots.push(brk);
            roots.push(brk);
            mark(brk, &mut reached, &mut stack, &nodes);
        }
    }

    // 5. primary root: the longest true root, else the longest of all roots
    let is_true_root = |r: u32| nodes[r as usize].span.parent_span_id.is_none();
    let rank = |r: u32| {
        let s = nodes[r as usize].span;
        (std::cmp::Reverse(s.duration_ns()), s.start_ns, r)
    };
    let primary = roots
        .iter()
        .copied()
        .filter(|&r| is_true_root(r))
        .min_by_key(|&r| rank(r))
        .or_else(|| roots.iter().copied().min_by_key(|&r| rank(r)))?;
    if !is_true_root(primary) {
        diags.push(Diagnostic::new(
            DiagnosticKind::NoRoot,
            Location::Trace(trace_id),
            format!(
                "no span without a parent; using {:?} as the root",
                &*nodes[primary as usize].span.name
            ),
        ));
    }
    roots.retain(|&r| r != primary);
    roots.sort_by_key(|&r| (nodes[r as usize].span.start_ns, r));
    roots.insert(0, primary);

    // 6a. messaging spans reach over their hand-offs. A PRODUCER span ends
    // when the broker acknowledges the send, and a CONSUMER span may end
    // before the reply it produced is picked up: the work below them (queue
    // waits, `process`, the reply) runs later. Each such span reaches to
    // the end of its subtree, so clamping keeps the consumer side whole and
    // the send covers the hand-off the way a CLIENT span covers a call. One
    // post-order pass.
    let messaging = |k: SpanKind| matches!(k, SpanKind::Producer | SpanKind::Consumer);
    let mut reach: Vec<u64> = nodes.iter().map(|nd| nd.span.end_ns).collect();
    let mut post: Vec<(u32, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
    while let Some((x, expanded)) = post.pop() {
        let (a, b) = (
            child_off[x as usize] as usize,
            child_off[x as usize + 1] as usize,
        );
        let kids = children[a..b]
            .iter()
            .copied()
            .filter(|&c| nodes[c as usize].parent == x);
        if expanded {
            if messaging(nodes[x as usize].span.kind) {
                let r = kids
                    .map(|c| reach[c as usize])
                    .fold(reach[x as usize], u64::max);
                reach[x as usize] = r;
            }
        } else {
            post.push((x, true));
            post.extend(kids.map(|c| (c, false)));
        }
    }
    for (i, nd) in nodes.iter_mut().enumerate() {
        if messaging(nd.span.kind) {
            nd.end = nd.end.max(reach[i]);
        }
    }

    // 6. depth-first order from each root; clamp children into parents
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut walk = vec![
        Walk {
            on_path: false,
            win_end: 0,
            slack: Some(0),
            tree: 0,
            depth: 0,
            owner: NONE,
            stage_node: NONE,
        };
        n
    ];
    for (t, &r) in roots.iter().enumerate() {
        let nd = &mut nodes[r as usize];
        if nd.end < nd.start {
            diags.push(Diagnostic::new(
                DiagnosticKind::EndBeforeStart,
                loc(nd.span),
                format!(
                    "span {:?} ends before it starts; its end is set to its start",
                    &*nd.span.name
                ),
            ));
            nd.end = nd.start;
        }
        walk[r as usize].tree = t as u32;
        walk[r as usize].on_path = true;
        walk[r as usize].win_end = nd.end;
        stack.push(r);
        while let Some(x) = stack.pop() {
            order.push(x);
            let (a, b) = (
                child_off[x as usize] as usize,
                child_off[x as usize + 1] as usize,
            );
            let (ps, pe) = (nodes[x as usize].start, nodes[x as usize].end);
            for &c in children[a..b].iter().rev() {
                if nodes[c as usize].parent != x {
                    continue;
                }
                // The parent's own interval (a clamped parent must not pass
                // its overshoot on to every child) and whether this is a
                // SERVER span under its CLIENT, which may end after it: the
                // server closes its span after writing the response, which
                // the client may already have read.
                let parent = &nodes[x as usize].span;
                let (raw_ps, raw_pe) = (parent.start_ns, parent.end_ns.max(reach[x as usize]));
                let parent_client = parent.kind == SpanKind::Client;
                let cn = &mut nodes[c as usize];
                let (rs, mut re) = (cn.span.start_ns, cn.span.end_ns.max(reach[c as usize]));
                if re < rs {
                    diags.push(Diagnostic::new(
                        DiagnosticKind::EndBeforeStart,
                        loc(cn.span),
                        format!(
                            "span {:?} ends before it starts; its end is set to its start",
                            &*cn.span.name
                        ),
                    ));
                    re = rs;
                }
                let s = rs.clamp(ps, pe);
                let e = re.clamp(s, pe);
                let rpc_tail = parent_client && cn.span.kind == SpanKind::Server;
                let early = raw_ps.saturating_sub(rs);
                let late = if rpc_tail {
                    0
                } else {
                    re.saturating_sub(raw_pe)
                };
                let off = early.max(late).max(rs.saturating_sub(raw_pe));
                if off > SKEW_TOLERANCE_NS {
                    let mut what = Vec::new();
                    if early > 0 {
                        what.push(format!("starts {} before", fmt_ns(early)));
                    }
                    if late > 0 {
                        what.push(format!("ends {} after", fmt_ns(late)));
                    }
                    if rs > raw_pe {
                        what.push("starts after the end of".to_owned());
                    }
                    diags.push(Diagnostic::new(
                        DiagnosticKind::ClockSkew,
                        loc(cn.span),
                        format!(
                            "span {:?} {} its parent {:?} (clock skew?); clamped to the parent's interval",
                            &*cn.span.name,
                            what.join(" and "),
                            &*nodes[x as usize].span.name
                        ),
                    ));
                }
                let cn = &mut nodes[c as usize];
                cn.start = s;
                cn.end = e;
                walk[c as usize].tree = t as u32;
                walk[c as usize].depth = walk[x as usize].depth + 1;
                stack.push(c);
            }
        }
    }

    // 7. owners and stages, top-down
    for &x in &order {
        let p = nodes[x as usize].parent;
        let (p_owner, p_stage) = if p == NONE {
            (NONE, NONE)
        } else {
            (walk[p as usize].owner, walk[p as usize].stage_node)
        };
        let st = &nodes[x as usize].st;
        let w = &mut walk[x as usize];
        match st.own_type {
            Some(SegmentType::Queue) => {
                w.owner = x;
                w.stage_node = NONE;
            }
            Some(SegmentType::Stage) => {
                w.owner = x;
                w.stage_node = if st.stage.is_some() { x } else { p_stage };
            }
            Some(_) => {
                w.owner = x;
                w.stage_node = p_stage;
            }
            None => {
                // Untyped spans inside a stage, hop or queue are charged to
                // it; elsewhere (uninstrumented code) they stand for themselves.
                let typed_owner = p_owner != NONE && nodes[p_owner as usize].st.own_type.is_some();
                w.owner = if typed_owner { p_owner } else { x };
                w.stage_node = p_stage;
            }
        }
    }

    // 8. the walk: for every span, which children are on its own path
    let mut raw_segments: Vec<(u32, u64, u64, u32)> = Vec::new(); // (tree, start, end, node)
    let mut scratch = Scratch::default();
    let mut structured = false;
    for &x in &order {
        let (a, b) = (
            child_off[x as usize] as usize,
            child_off[x as usize + 1] as usize,
        );
        let kids: &[u32] = &children[a..b];
        let w = walk[x as usize];
        let (ps, pe) = (nodes[x as usize].start, nodes[x as usize].end);
        let win_end = if w.on_path { w.win_end.min(pe) } else { pe };
        let mut emit = |s: u64, e: u64| {
            if w.on_path && e > s {
                raw_segments.push((w.tree, s, e, x));
            }
        };
        if kids.is_empty() {
            emit(ps, win_end);
            continue;
        }
        structured |= walk_children(
            x,
            kids,
            &pos,
            &nodes,
            &deps_arena,
            ps,
            win_end,
            &mut scratch,
            &mut emit,
        );
        for (i, &c) in kids.iter().enumerate() {
            if nodes[c as usize].parent != x {
                continue;
            }
            let r = scratch.result[i];
            let cw = &mut walk[c as usize];
            cw.on_path = w.on_path && r.on_path;
            cw.win_end = r.win_end;
            cw.slack = match (w.slack, r.slack) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                _ => None,
            };
        }
    }

    // 9. segments per tree, in time order
    raw_segments.sort_unstable_by_key(|&(t, s, e, _)| (t, s, e));
    let mut critical = vec![0u64; n];
    let key_of = |i: u32| -> (Arc<str>, SegmentType) {
        let nd = &nodes[i as usize];
        match nd.st.own_type {
            Some(SegmentType::Stage) => (
                nd.st.stage.clone().unwrap_or_else(|| nd.span.name.clone()),
                SegmentType::Stage,
            ),
            Some(t) => (nd.span.name.clone(), t),
            None => (nd.span.name.clone(), SegmentType::SelfTime),
        }
    };
    let stage_name = |i: u32| -> Option<Arc<str>> {
        let sn = walk[i as usize].stage_node;
        if sn == NONE {
            None
        } else {
            nodes[sn as usize].st.stage.clone()
        }
    };
    let mut per_tree: Vec<Vec<Segment>> = vec![Vec::new(); roots.len()];
    for &(t, s, e, x) in &raw_segments {
        critical[x as usize] += e - s;
        let list = &mut per_tree[t as usize];
        if let Some(last) = list.last_mut()
            && last.span_id == nodes[x as usize].span.span_id
            && last.end_ns == s
        {
            last.end_ns = e;
            last.duration_ns += e - s;
            continue;
        }
        let (key, segment_type) = key_of(walk[x as usize].owner);
        list.push(Segment {
            span_id: nodes[x as usize].span.span_id,
            span_name: nodes[x as usize].span.name.clone(),
            stage: stage_name(x),
            segment_type,
            key,
            start_ns: s,
            end_ns: e,
            duration_ns: e - s,
            share: 0.0,
        });
    }
    for (t, list) in per_tree.iter_mut().enumerate() {
        let r = &nodes[roots[t] as usize];
        let total = r.end - r.start;
        for seg in list.iter_mut() {
            seg.share = ratio(seg.duration_ns, total);
        }
    }

    // 10. span infos
    let spans_out: Vec<SpanInfo> = order
        .iter()
        .map(|&x| {
            let nd = &nodes[x as usize];
            let w = &walk[x as usize];
            let (key, segment_type) = key_of(w.owner);
            let p = nd.parent;
            SpanInfo {
                span_id: nd.span.span_id,
                parent_span_id: if p == NONE {
                    None
                } else {
                    Some(nodes[p as usize].span.span_id)
                },
                name: nd.span.name.clone(),
                stage: stage_name(x),
                is_stage: nd.st.own_type == Some(SegmentType::Stage) && nd.st.stage.is_some(),
                segment_type,
                key,
                kind: nd.span.kind,
                error: nd.span.status.code == StatusCode::Error,
                service_name: nd.span.service_name.clone(),
                depth: w.depth,
                tree: w.tree,
                start_ns: nd.start,
                end_ns: nd.end,
                raw_start_ns: nd.span.start_ns,
                raw_end_ns: nd.span.end_ns,
                on_path: w.on_path,
                critical_ns: critical[x as usize],
                slack_ns: w.slack,
            }
        })
        .collect();

    // 11. contributions of the primary tree
    let root = &nodes[primary as usize];
    let total = root.end - root.start;
    let mut per_tree = per_tree.into_iter();
    let segments = per_tree.next().unwrap_or_default();
    let mut contributions: Vec<Contribution> = Vec::new();
    for seg in &segments {
        match contributions
            .iter_mut()
            .find(|c| c.segment_type == seg.segment_type && c.key == seg.key)
        {
            Some(c) => c.duration_ns += seg.duration_ns,
            None => contributions.push(Contribution {
                key: seg.key.clone(),
                segment_type: seg.segment_type,
                duration_ns: seg.duration_ns,
                share: 0.0,
            }),
        }
    }
    for c in &mut contributions {
        c.share = ratio(c.duration_ns, total);
    }
    contributions.sort_by(|a, b| {
        b.duration_ns
            .cmp(&a.duration_ns)
            .then_with(|| a.key.cmp(&b.key))
    });

    let detached = roots[1..]
        .iter()
        .zip(per_tree)
        .map(|(&r, segments)| {
            let nd = &nodes[r as usize];
            Detached {
                span_id: nd.span.span_id,
                name: nd.span.name.clone(),
                missing_parent: nd.span.parent_span_id,
                reason: if cycle_roots.contains(&r)
                    || nd.span.parent_span_id == Some(nd.span.span_id)
                {
                    DetachReason::ParentCycle
                } else if orphan[r as usize] {
                    DetachReason::Orphan
                } else {
                    DetachReason::ExtraRoot
                },
                duration_ns: nd.end - nd.start,
                segments,
            }
        })
        .collect();

    Some(TraceReport {
        trace_id,
        root_span_id: root.span.span_id,
        root_name: root.span.name.clone(),
        start_ns: root.start,
        end_ns: root.end,
        duration_ns: total,
        structured,
        segments,
        contributions,
        spans: spans_out,
        detached,
        diagnostics: diags,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
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

// ------------------------------------------------------------------ the walk

#[derive(Clone, Copy, Default)]
struct ChildResult {
    on_path: bool,
    win_end: u64,
    slack: Option<u64>,
}

/// Buffers reused across spans.
#[derive(Default)]
struct Scratch {
    result: Vec<ChildResult>,
    blocks: Vec<Block>,
    members: Vec<u32>,
    order: Vec<usize>,
    path_starts: Vec<u64>,
    lanes: Vec<(i64, usize, usize)>,
    lane_members: Vec<u32>,
}

/// Decides which children of `x` are on `x`'s critical path within
/// `[ps, win_end]`, emits `x`'s self time through `emit`, and fills
/// `scratch.result` (indexed like `kids`). Returns whether structural
/// attributes were used.
#[allow(clippy::too_many_arguments)]
fn walk_children(
    x: u32,
    kids: &[u32],
    pos: &[u32],
    nodes: &[Node<'_>],
    deps_arena: &[i64],
    ps: u64,
    win_end: u64,
    sc: &mut Scratch,
    emit: &mut dyn FnMut(u64, u64),
) -> bool {
    sc.result.clear();
    sc.result.resize(kids.len(), ChildResult::default());
    sc.blocks.clear();
    sc.members.clear();
    let pos_of = |c: u32| pos[c as usize] as usize;

    // Blocks: children with a step index grouped per step; others alone.
    // Non-blocking children never block: slack None.
    let mut structured_kids: Vec<u32> = Vec::new();
    for (i, &c) in kids.iter().enumerate() {
        let nd = &nodes[c as usize];
        if nd.parent != x {
            continue;
        }
        if !nd.st.blocking {
            sc.result[i] = ChildResult {
                on_path: false,
                win_end: nd.end,
                slack: None,
            };
            continue;
        }
        if nd.st.step.is_some() {
            structured_kids.push(c);
        } else {
            let m = sc.members.len();
            sc.members.push(c);
            sc.blocks.push(Block {
                start: nd.start,
                end: nd.end,
                step: None,
                members: (m, m + 1),
            });
        }
    }
    let structured = !structured_kids.is_empty();
    if structured {
        structured_kids.sort_by_key(|&c| (nodes[c as usize].st.step, nodes[c as usize].start));
        let mut i = 0;
        while i < structured_kids.len() {
            let step = nodes[structured_kids[i] as usize].st.step;
            let m = sc.members.len();
            let (mut s, mut e) = (u64::MAX, 0u64);
            while i < structured_kids.len() && nodes[structured_kids[i] as usize].st.step == step {
                let c = structured_kids[i];
                s = s.min(nodes[c as usize].start);
                e = e.max(nodes[c as usize].end);
                sc.members.push(c);
                i += 1;
            }
            sc.blocks.push(Block {
                start: s,
                end: e,
                step,
                members: (m, sc.members.len()),
            });
        }
    }

    // Walk back over blocks, latest end first.
    sc.order.clear();
    sc.order.extend(0..sc.blocks.len());
    {
        let blocks = &sc.blocks;
        sc.order.sort_by(|&a, &b| {
            let (ba, bb) = (&blocks[a], &blocks[b]);
            bb.end
                .cmp(&ba.end)
                .then(bb.step.cmp(&ba.step))
                .then(bb.start.cmp(&ba.start))
        });
    }
    let mut cursor = win_end;
    let mut allowed: Option<(u32, u32)> = None; // range in deps_arena
    let mut on_block = vec![false; sc.blocks.len()];
    sc.path_starts.clear();
    for oi in 0..sc.order.len() {
        let bi = sc.order[oi];
        let (bs, be, step, (ma, mb)) = {
            let b = &sc.blocks[bi];
            (b.start, b.end, b.step, b.members)
        };
        let b_end = be.min(cursor);
        if bs >= cursor || b_end <= bs {
            continue;
        }
        if let (Some(k), Some((da, dl))) = (step, allowed)
            && !deps_arena[da as usize..(da + dl) as usize].contains(&k)
        {
            continue;
        }
        emit(b_end, cursor);
        on_block[bi] = true;
        let entry = match step {
            None => {
                let c = sc.members[ma];
                sc.result[pos_of(c)] = ChildResult {
                    on_path: true,
                    win_end: b_end,
                    slack: Some(0),
                };
                nodes[c as usize].start
            }
            Some(_) => {
                let members: Vec<u32> = sc.members[ma..mb].to_vec();
                let entry = walk_step(&members, nodes, b_end, sc, &pos_of, emit);
                // the next step on the path must be one this step waited on
                let mut deps: Option<(u32, u32)> = None;
                for &c in &members {
                    let st = &nodes[c as usize].st;
                    if st.has_deps {
                        deps = Some(st.deps);
                        break;
                    }
                }
                allowed = deps;
                entry
            }
        };
        sc.path_starts.push(entry);
        cursor = entry;
    }
    emit(ps, cursor.max(ps));

    // Slack of blocks off the path: up to the start of the next thing on the
    // path (or the window's end).
    sc.path_starts.sort_unstable();
    for (bi, on) in on_block.iter().enumerate() {
        if *on {
            continue;
        }
        let b = &sc.blocks[bi];
        let lf = match sc.path_starts.binary_search(&b.end) {
            Ok(i) | Err(i) => sc.path_starts.get(i).copied().unwrap_or(win_end).max(b.end),
        };
        let members: Vec<u32> = sc.members[b.members.0..b.members.1].to_vec();
        off_path_members(&members, nodes, lf, sc, &pos_of);
    }
    structured
}

/// Lane key of a step member: branch, batch item, or the lane of the stage a
/// fallback stands in for.
fn lane_key(c: u32, members: &[u32], nodes: &[Node<'_>]) -> i64 {
    let st = &nodes[c as usize].st;
    if let Some(b) = st.branch {
        return b;
    }
    if let Some(b) = st.batch {
        return b;
    }
    if let Some(f) = &st.fallback_for
        && let Some(&p) = members
            .iter()
            .find(|&&m| m != c && nodes[m as usize].st.stage.as_deref() == Some(&**f))
        && p != c
    {
        let pst = &nodes[p as usize].st;
        if pst.fallback_for.is_none() {
            return pst.branch.or(pst.batch).unwrap_or(0);
        }
    }
    0
}

/// Groups a step's members into lanes (sorted by key, members by start).
fn build_lanes(members: &[u32], nodes: &[Node<'_>], sc: &mut Scratch) {
    sc.lanes.clear();
    sc.lane_members.clear();
    let mut keyed: Vec<(i64, u64, u32)> = members
        .iter()
        .map(|&c| (lane_key(c, members, nodes), nodes[c as usize].start, c))
        .collect();
    keyed.sort_unstable();
    let mut i = 0;
    while i < keyed.len() {
        let k = keyed[i].0;
        let a = sc.lane_members.len();
        while i < keyed.len() && keyed[i].0 == k {
            sc.lane_members.push(keyed[i].2);
            i += 1;
        }
        sc.lanes.push((k, a, sc.lane_members.len()));
    }
}

/// The path through one step, entered at `end`; returns the time the path
/// leaves the step backwards (its entry time).
fn walk_step(
    members: &[u32],
    nodes: &[Node<'_>],
    end: u64,
    sc: &mut Scratch,
    pos_of: &dyn Fn(u32) -> usize,
    emit: &mut dyn FnMut(u64, u64),
) -> u64 {
    build_lanes(members, nodes, sc);
    let lanes: Vec<(u64, u64, usize, usize)> = sc
        .lanes
        .iter()
        .map(|&(_, a, b)| {
            let s = sc.lane_members[a..b]
                .iter()
                .map(|&c| nodes[c as usize].start)
                .min()
                .unwrap_or(0);
            let e = sc.lane_members[a..b]
                .iter()
                .map(|&c| nodes[c as usize].end)
                .max()
                .unwrap_or(0);
            (s, e, a, b)
        })
        .collect();
    let lane_members = sc.lane_members.clone();
    let mut by_end: Vec<usize> = (0..lanes.len()).collect();
    by_end.sort_by(|&a, &b| {
        lanes[b]
            .1
            .cmp(&lanes[a].1)
            .then(lanes[a].0.cmp(&lanes[b].0))
    });
    let mut cursor = end;
    let mut on_lane = vec![false; lanes.len()];
    let mut first = true;
    for &li in &by_end {
        let (ls, le, a, b) = lanes[li];
        if !first {
            // A lane that started only after another lane of the same step
            // had ended was waiting for it: a batch item for a free slot, a
            // parallel branch for its sibling to yield (spanline joins the
            // branches of a group in one task, so CPU-bound branches run one
            // after the other). Lanes still running when the later one
            // started are not waited on.
            if le > cursor || ls >= cursor {
                continue;
            }
        }
        let l_end = le.min(cursor);
        if ls >= cursor || l_end <= ls {
            continue;
        }
        first = false;
        on_lane[li] = true;
        emit(l_end, cursor);
        // members of the lane, last first: primary then fallback are all on the path
        let mut c2 = l_end;
        let mut next_start: Option<(u64, u64)> = None; // (start, slack) of the next member
        for &m in lane_members[a..b].iter().rev() {
            let nd = &nodes[m as usize];
            let m_end = nd.end.min(c2);
            let i = pos_of(m);
            if nd.start >= c2 || m_end <= nd.start {
                let lf = next_start.map_or(end, |(s, _)| s).max(nd.end);
                sc.result[i] = ChildResult {
                    on_path: false,
                    win_end: nd.end,
                    slack: Some(lf - nd.end),
                };
                continue;
            }
            emit(m_end, c2);
            sc.result[i] = ChildResult {
                on_path: true,
                win_end: m_end,
                slack: Some(0),
            };
            next_start = Some((nd.start, 0));
            c2 = nd.start;
        }
        cursor = c2;
    }
    // Lanes off the path may end as late as the step's end (the join).
    for (li, on) in on_lane.iter().enumerate() {
        if !on {
            let (_, _, a, b) = lanes[li];
            let ms: Vec<u32> = lane_members[a..b].to_vec();
            chain_slack(&ms, nodes, end, sc, pos_of);
        }
    }
    cursor
}

/// Slack for a sequence of members (ordered by start) that must all end by `lf`.
fn chain_slack(
    ms: &[u32],
    nodes: &[Node<'_>],
    lf: u64,
    sc: &mut Scratch,
    pos_of: &dyn Fn(u32) -> usize,
) {
    let mut next: Option<(u64, u64)> = None;
    for &m in ms.iter().rev() {
        let nd = &nodes[m as usize];
        let slack = match next {
            None => lf.saturating_sub(nd.end),
            Some((s, sl)) => s.saturating_sub(nd.end) + sl,
        };
        sc.result[pos_of(m)] = ChildResult {
            on_path: false,
            win_end: nd.end,
            slack: Some(slack),
        };
        next = Some((nd.start, slack));
    }
}

/// Slack for every member of a block off the path, which must end by `lf`.
fn off_path_members(
    members: &[u32],
    nodes: &[Node<'_>],
    lf: u64,
    sc: &mut Scratch,
    pos_of: &dyn Fn(u32) -> usize,
) {
    if members.len() == 1 {
        chain_slack(members, nodes, lf, sc, pos_of);
        return;
    }
    build_lanes(members, nodes, sc);
    let lanes = sc.lanes.clone();
    let lm = sc.lane_members.clone();
    for (_, a, b) in lanes {
        chain_slack(&lm[a..b], nodes, lf, sc, pos_of);
    }
}
