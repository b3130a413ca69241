//! Phases 4–7: roots and parent cycles, the primary root, messaging reach
//! and clamping into parents, owners and stages.

use super::{NONE, TraceGraph};
use crate::analyze::{SKEW_TOLERANCE_NS, SegmentType, fmt_ns};
use crate::diag::{DiagnosticKind, Location};
use crate::model::SpanKind;

impl TraceGraph<'_> {
    /// Marks `root` and everything below it as reached.
    fn mark(&self, root: u32, reached: &mut [bool], stack: &mut Vec<u32>) {
        stack.push(root);
        while let Some(x) = stack.pop() {
            if reached[x as usize] {
                continue;
            }
            reached[x as usize] = true;
            for &c in self.kids(x) {
                if self.nodes[c as usize].parent == x && !reached[c as usize] {
                    stack.push(c);
                }
            }
        }
    }

    /// Step 4–5: Roots and reachability; parent cycles broken at their
    /// earliest-starting span; the primary root (the longest true root, else
    /// the longest of all) first. `None` when there is no root at all.
    pub(crate) fn find_roots(&mut self) -> Option<()> {
        let n = self.nodes.len();
        let mut reached = vec![false; n];
        let mut roots: Vec<u32> = (0..n as u32)
            .filter(|&i| self.nodes[i as usize].parent == NONE)
            .collect();
        let mut stack: Vec<u32> = Vec::new();
        for &r in &roots {
            self.mark(r, &mut reached, &mut stack);
        }
        if reached.iter().any(|r| !r) {
            // Each unreached span walks up its parents until a span repeats
            // (stamped with the walk's start): that span lies on a cycle.
            // Breaking the cycle reaches everything walked, so every span is
            // walked at most once.
            let mut stamp = vec![NONE; n];
            for u in 0..n {
                if reached[u] {
                    continue;
                }
                let mut x = u as u32;
                while stamp[x as usize] != u as u32 && !reached[x as usize] {
                    stamp[x as usize] = u as u32;
                    x = self.nodes[x as usize].parent;
                    if x == NONE {
                        break;
                    }
                }
                if x == NONE || reached[x as usize] {
                    continue;
                }
                let brk = self.break_cycle(x);
                roots.push(brk);
                self.mark(brk, &mut reached, &mut stack);
            }
        }

        let nodes = &self.nodes;
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
            let name = nodes[primary as usize].span.name.clone();
            self.diags.push(
                DiagnosticKind::NoRoot,
                Location::Trace(self.trace_id),
                || format!("no span without a parent; using {:?} as the root", &*name),
            );
        }
        roots.retain(|&r| r != primary);
        roots.sort_by_key(|&r| (self.nodes[r as usize].span.start_ns, r));
        roots.insert(0, primary);
        self.roots = roots;
        Some(())
    }

    /// Breaks the parent cycle through `x` at its earliest-starting span,
    /// which becomes a root; returns that span.
    fn break_cycle(&mut self, x: u32) -> u32 {
        let n = self.nodes.len();
        let mut cyc = vec![x];
        let mut y = self.nodes[x as usize].parent;
        while y != x && cyc.len() <= n {
            cyc.push(y);
            y = self.nodes[y as usize].parent;
        }
        let nodes = &self.nodes;
        let brk = cyc
            .iter()
            .copied()
            .min_by_key(|&c| (nodes[c as usize].span.start_ns, c))
            .unwrap_or(x);
        let spans: Vec<_> = cyc
            .iter()
            .take(6)
            .map(|&c| nodes[c as usize].span)
            .collect();
        let (len, brk_name) = (cyc.len(), nodes[brk as usize].span.name.clone());
        self.diags.push(DiagnosticKind::ParentCycle, self.loc(brk), || {
            let names: Vec<String> = spans.iter().map(|s| format!("{:?}", &*s.name)).collect();
            format!(
                "parent links form a cycle through {len} spans ({}{}); broken at span {:?}, which is treated as a root",
                names.join(" → "),
                if len > 6 { " …" } else { "" },
                &*brk_name
            )
        });
        self.nodes[brk as usize].parent = NONE;
        self.cycle_root[brk as usize] = true;
        brk
    }

    /// Step 6a: Messaging spans reach over their hand-offs: a PRODUCER span ends
    /// when the broker acknowledges the send and a CONSUMER span may end
    /// before the reply it produced is picked up, so each reaches to the end
    /// of its subtree (one post-order pass). Step 6: then, depth-first from each
    /// root, every child is clamped into its (already clamped) parent, and
    /// the depth-first order is recorded.
    pub(crate) fn clamp(&mut self) {
        let messaging = |k: SpanKind| matches!(k, SpanKind::Producer | SpanKind::Consumer);
        let mut reach: Vec<u64> = self.nodes.iter().map(|nd| nd.span.end_ns).collect();
        let mut post: Vec<(u32, bool)> = self.roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((x, expanded)) = post.pop() {
            let kids = self
                .kids(x)
                .iter()
                .copied()
                .filter(|&c| self.nodes[c as usize].parent == x);
            if expanded {
                if messaging(self.nodes[x as usize].span.kind) {
                    reach[x as usize] = kids
                        .map(|c| reach[c as usize])
                        .fold(reach[x as usize], u64::max);
                }
            } else {
                post.push((x, true));
                post.extend(kids.map(|c| (c, false)));
            }
        }
        for (i, nd) in self.nodes.iter_mut().enumerate() {
            if messaging(nd.span.kind) {
                nd.end = nd.end.max(reach[i]);
            }
        }
        self.reach = reach;

        let mut order: Vec<u32> = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<u32> = Vec::new();
        for t in 0..self.roots.len() {
            let r = self.roots[t];
            let nd = &mut self.nodes[r as usize];
            if nd.end < nd.start {
                nd.end = nd.start;
                let name = nd.span.name.clone();
                self.diags
                    .push(DiagnosticKind::EndBeforeStart, self.loc(r), || {
                        format!(
                            "span {:?} ends before it starts; its end is set to its start",
                            &*name
                        )
                    });
            }
            let w = &mut self.walk[r as usize];
            w.tree = t as u32;
            w.on_path = true;
            w.win_end = self.nodes[r as usize].end;
            stack.push(r);
            while let Some(x) = stack.pop() {
                order.push(x);
                let (a, b) = (
                    self.child_off[x as usize] as usize,
                    self.child_off[x as usize + 1] as usize,
                );
                for ci in (a..b).rev() {
                    let c = self.children[ci];
                    if self.nodes[c as usize].parent != x {
                        continue;
                    }
                    self.clamp_child(x, c);
                    self.walk[c as usize].tree = t as u32;
                    self.walk[c as usize].depth = self.walk[x as usize].depth.saturating_add(1);
                    stack.push(c);
                }
            }
        }
        self.order = order;
    }

    /// Clamps child `c` into parent `x`'s interval, reporting clock skew
    /// beyond [`SKEW_TOLERANCE_NS`] against the parent's own (unclamped)
    /// interval. A SERVER span ending after its CLIENT parent is not
    /// reported: the server closes its span after writing the response,
    /// which the client may already have read.
    fn clamp_child(&mut self, x: u32, c: u32) {
        let (ps, pe) = (self.nodes[x as usize].start, self.nodes[x as usize].end);
        let parent = self.nodes[x as usize].span;
        let (raw_ps, raw_pe) = (parent.start_ns, parent.end_ns.max(self.reach[x as usize]));
        let child = self.nodes[c as usize].span;
        let (rs, mut re) = (child.start_ns, child.end_ns.max(self.reach[c as usize]));
        if re < rs {
            self.diags
                .push(DiagnosticKind::EndBeforeStart, self.loc(c), || {
                    format!(
                        "span {:?} ends before it starts; its end is set to its start",
                        &*child.name
                    )
                });
            re = rs;
        }
        let s = rs.clamp(ps, pe);
        let e = re.clamp(s, pe);
        let rpc_tail = parent.kind == SpanKind::Client && child.kind == SpanKind::Server;
        let early = raw_ps.saturating_sub(rs);
        let late = if rpc_tail {
            0
        } else {
            re.saturating_sub(raw_pe)
        };
        let off = early.max(late).max(rs.saturating_sub(raw_pe));
        if off > SKEW_TOLERANCE_NS {
            self.diags.push(DiagnosticKind::ClockSkew, self.loc(c), || {
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
                format!(
                    "span {:?} {} its parent {:?} (clock skew?); clamped to the parent's interval",
                    &*child.name,
                    what.join(" and "),
                    &*parent.name
                )
            });
        }
        let cn = &mut self.nodes[c as usize];
        cn.start = s;
        cn.end = e;
    }

    /// Step 7: Owners and stages, top-down: a typed span (stage, hop, queue) owns
    /// its time; an untyped one is charged to its nearest typed ancestor,
    /// else to itself.
    pub(crate) fn assign_owners(&mut self) {
        for &x in &self.order {
            let p = self.nodes[x as usize].parent;
            let (p_owner, p_stage) = if p == NONE {
                (NONE, NONE)
            } else {
                (
                    self.walk[p as usize].owner,
                    self.walk[p as usize].stage_node,
                )
            };
            let st = &self.nodes[x as usize].st;
            let typed_owner = p_owner != NONE && self.nodes[p_owner as usize].st.own_type.is_some();
            let w = &mut self.walk[x as usize];
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
                    w.owner = if typed_owner { p_owner } else { x };
                    w.stage_node = p_stage;
                }
            }
        }
    }
}
