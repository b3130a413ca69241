//! Phases 9–11: segments per tree in time order, span infos, contributions
//! of the primary tree, detached trees.

use std::collections::HashMap;
use std::sync::Arc;

use super::{NONE, TraceGraph};
use crate::analyze::{
    Contribution, DetachReason, Detached, Segment, SegmentType, SpanInfo, TraceReport,
};
use crate::model::StatusCode;

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl TraceGraph<'_> {
    /// The key and type span `i`'s time is charged to when `i` is an owner.
    fn key_of(&self, i: u32) -> (Arc<str>, SegmentType) {
        let nd = &self.nodes[i as usize];
        match nd.st.own_type {
            Some(SegmentType::Stage) => (
                nd.st.stage.clone().unwrap_or_else(|| nd.span.name.clone()),
                SegmentType::Stage,
            ),
            Some(t) => (nd.span.name.clone(), t),
            None => (nd.span.name.clone(), SegmentType::SelfTime),
        }
    }

    /// The innermost stage enclosing span `i`.
    fn stage_name(&self, i: u32) -> Option<Arc<str>> {
        let sn = self.walk[i as usize].stage_node;
        if sn == NONE {
            None
        } else {
            self.nodes[sn as usize].st.stage.clone()
        }
    }

    /// Step 9: Segments per tree, sorted by start, adjacent pieces of one span
    /// merged; also each span's own time on the path.
    fn segments(&mut self) -> (Vec<Vec<Segment>>, Vec<u64>) {
        self.raw_segments
            .sort_unstable_by_key(|&(t, s, e, _)| (t, s, e));
        let mut critical = vec![0u64; self.nodes.len()];
        let mut per_tree: Vec<Vec<Segment>> = vec![Vec::new(); self.roots.len()];
        for &(t, s, e, x) in &self.raw_segments {
            critical[x as usize] = critical[x as usize].saturating_add(e - s);
            let nd = &self.nodes[x as usize];
            let list = &mut per_tree[t as usize];
            if let Some(last) = list.last_mut()
                && last.span_id == nd.span.span_id
                && last.end_ns == s
            {
                last.end_ns = e;
                last.duration_ns += e - s;
                continue;
            }
            let (key, segment_type) = self.key_of(self.walk[x as usize].owner);
            list.push(Segment {
                span_id: nd.span.span_id,
                span_name: nd.span.name.clone(),
                stage: self.stage_name(x),
                segment_type,
                key,
                start_ns: s,
                end_ns: e,
                duration_ns: e - s,
                share: 0.0,
            });
        }
        for (t, list) in per_tree.iter_mut().enumerate() {
            let r = &self.nodes[self.roots[t] as usize];
            let total = r.end - r.start;
            for seg in list.iter_mut() {
                seg.share = ratio(seg.duration_ns, total);
            }
        }
        (per_tree, critical)
    }

    /// Step 10: One [`SpanInfo`] per reachable span, in depth-first order.
    fn span_infos(&self, critical: &[u64]) -> Vec<SpanInfo> {
        self.order
            .iter()
            .map(|&x| {
                let nd = &self.nodes[x as usize];
                let w = &self.walk[x as usize];
                let (key, segment_type) = self.key_of(w.owner);
                let p = nd.parent;
                SpanInfo {
                    span_id: nd.span.span_id,
                    parent_span_id: (p != NONE).then(|| self.nodes[p as usize].span.span_id),
                    name: nd.span.name.clone(),
                    stage: self.stage_name(x),
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
            .collect()
    }

    /// Step 11: The report: contributions of the primary tree (summed per key in
    /// a hash map, largest first) and the detached trees.
    pub(crate) fn into_report(mut self) -> TraceReport {
        let (per_tree, critical) = self.segments();
        let spans = self.span_infos(&critical);
        let root = &self.nodes[self.roots[0] as usize];
        let total = root.end - root.start;
        let mut per_tree = per_tree.into_iter();
        let segments = per_tree.next().unwrap_or_default();

        let mut index: HashMap<(SegmentType, &Arc<str>), usize> = HashMap::new();
        let mut contributions: Vec<Contribution> = Vec::new();
        for seg in &segments {
            let i = *index
                .entry((seg.segment_type, &seg.key))
                .or_insert_with(|| {
                    contributions.push(Contribution {
                        key: seg.key.clone(),
                        segment_type: seg.segment_type,
                        duration_ns: 0,
                        share: 0.0,
                    });
                    contributions.len() - 1
                });
            contributions[i].duration_ns += seg.duration_ns;
        }
        for c in &mut contributions {
            c.share = ratio(c.duration_ns, total);
        }
        contributions.sort_by(|a, b| {
            b.duration_ns
                .cmp(&a.duration_ns)
                .then_with(|| a.key.cmp(&b.key))
        });

        let detached = self.roots[1..]
            .iter()
            .zip(per_tree)
            .map(|(&r, segments)| {
                let nd = &self.nodes[r as usize];
                Detached {
                    span_id: nd.span.span_id,
                    name: nd.span.name.clone(),
                    missing_parent: nd.span.parent_span_id,
                    reason: if self.cycle_root[r as usize]
                        || nd.span.parent_span_id == Some(nd.span.span_id)
                    {
                        DetachReason::ParentCycle
                    } else if self.orphan[r as usize] {
                        DetachReason::Orphan
                    } else {
                        DetachReason::ExtraRoot
                    },
                    duration_ns: nd.end - nd.start,
                    segments,
                }
            })
            .collect();

        TraceReport {
            trace_id: self.trace_id,
            root_span_id: root.span.span_id,
            root_name: root.span.name.clone(),
            start_ns: root.start,
            end_ns: root.end,
            duration_ns: total,
            structured: self.structured,
            segments,
            contributions,
            spans,
            detached,
            diagnostics: self.diags.list,
            suppressed_diagnostics: self.diags.suppressed,
        }
    }
}
