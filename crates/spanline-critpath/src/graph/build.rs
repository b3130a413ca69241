//! Phases 1–3: unique spans and their id index, parent links, children in
//! compressed-row form sorted by start.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Diags, NONE, Node, Structure, TraceGraph, Walk};
use crate::analyze::SegmentType;
use crate::diag::DiagnosticKind;
use crate::model::{AttrValue, Span, SpanId};
use crate::semconv as sc;

/// Reads the structural attributes of one span, appending its
/// `depends_on` list to `deps_arena`.
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

impl<'a> TraceGraph<'a> {
    /// Indexes the spans (the first copy of a repeated id wins), resolves
    /// parents and builds the sorted child lists. `None` for no spans.
    pub(crate) fn build(spans: &[&'a Span]) -> Option<Self> {
        let first = spans.first()?;
        let mut g = TraceGraph {
            trace_id: first.trace_id,
            nodes: Vec::with_capacity(spans.len()),
            deps_arena: Vec::new(),
            orphan: Vec::new(),
            child_off: Vec::new(),
            children: Vec::new(),
            pos: Vec::new(),
            roots: Vec::new(),
            cycle_root: Vec::new(),
            reach: Vec::new(),
            order: Vec::new(),
            walk: Vec::new(),
            structured: false,
            raw_segments: Vec::new(),
            diags: Diags::default(),
        };
        let ids = g.index(spans);
        g.link_parents(&ids);
        g.sort_children();
        let n = g.nodes.len();
        g.walk = vec![Walk::default(); n];
        g.cycle_root = vec![false; n];
        Some(g)
    }

    /// Step 1: unique spans, id index.
    fn index(&mut self, spans: &[&'a Span]) -> HashMap<SpanId, u32> {
        let trace_id = self.trace_id;
        let mut ids: HashMap<SpanId, u32> = HashMap::with_capacity(spans.len());
        for s in spans {
            if ids.contains_key(&s.span_id) {
                self.diags.push(
                    DiagnosticKind::DuplicateSpanId,
                    crate::diag::Location::Span {
                        trace_id,
                        span_id: s.span_id,
                    },
                    || {
                        format!(
                            "span id repeated (span {:?}); the later copy is ignored",
                            s.name
                        )
                    },
                );
                continue;
            }
            ids.insert(s.span_id, self.nodes.len() as u32);
            let st = structure(s, &mut self.deps_arena);
            self.nodes.push(Node {
                span: s,
                parent: NONE,
                start: s.start_ns,
                end: s.end_ns,
                st,
            });
        }
        ids
    }

    /// Step 2: parents: a missing parent makes an orphan, a span that is its own
    /// parent is a (one-span) cycle.
    fn link_parents(&mut self, ids: &HashMap<SpanId, u32>) {
        let n = self.nodes.len();
        self.orphan = vec![false; n];
        for i in 0..n {
            let s = self.nodes[i].span;
            let Some(pid) = s.parent_span_id else {
                continue;
            };
            match ids.get(&pid) {
                Some(&p) if p as usize == i => {
                    self.diags
                        .push(DiagnosticKind::ParentCycle, self.loc(i as u32), || {
                            format!("span {:?} is its own parent; treated as a root", s.name)
                        });
                }
                Some(&p) => self.nodes[i].parent = p,
                None => {
                    self.orphan[i] = true;
                    self.diags.push(DiagnosticKind::Orphan, self.loc(i as u32), || {
                        format!(
                            "parent {pid} of span {:?} is not in the input; the span roots its own subtree",
                            s.name
                        )
                    });
                }
            }
        }
    }

    /// Step 3: children (CSR), sorted by recorded start; each span's position
    /// among its siblings.
    fn sort_children(&mut self) {
        let n = self.nodes.len();
        let mut child_off = vec![0u32; n + 1];
        for nd in &self.nodes {
            if nd.parent != NONE {
                child_off[nd.parent as usize + 1] += 1;
            }
        }
        for i in 0..n {
            child_off[i + 1] += child_off[i];
        }
        let mut fill = child_off.clone();
        let mut children = vec![0u32; child_off[n] as usize];
        for (i, nd) in self.nodes.iter().enumerate() {
            if nd.parent != NONE {
                let p = nd.parent as usize;
                children[fill[p] as usize] = i as u32;
                fill[p] += 1;
            }
        }
        let nodes = &self.nodes;
        let mut pos = vec![0u32; n];
        for p in 0..n {
            let (a, b) = (child_off[p] as usize, child_off[p + 1] as usize);
            if b - a > 1 {
                children[a..b].sort_by_key(|&c| {
                    let s = nodes[c as usize].span;
                    (s.start_ns, s.end_ns, s.span_id)
                });
            }
            for (i, &c) in children[a..b].iter().enumerate() {
                pos[c as usize] = i as u32;
            }
        }
        self.child_off = child_off;
        self.children = children;
        self.pos = pos;
    }
}
