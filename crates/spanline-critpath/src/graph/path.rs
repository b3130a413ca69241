//! Phase 8: the walk. For every span, which of its children are on its own
//! critical path, its self time on the path, and the slack of the children
//! off it (see `docs/critical-path.md`, *Algorithm*, step 8).

use std::collections::HashMap;

use super::{Node, TraceGraph};

impl TraceGraph<'_> {
    /// Walks every span in depth-first order (parents before children), so
    /// each child's window and slack are known before its own walk.
    pub(crate) fn walk_paths(&mut self) {
        let mut scratch = Scratch::default();
        let mut raw_segments = std::mem::take(&mut self.raw_segments);
        for oi in 0..self.order.len() {
            let x = self.order[oi];
            let (a, b) = (
                self.child_off[x as usize] as usize,
                self.child_off[x as usize + 1] as usize,
            );
            let kids: &[u32] = &self.children[a..b];
            let w = self.walk[x as usize];
            let (ps, pe) = (self.nodes[x as usize].start, self.nodes[x as usize].end);
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
            self.structured |= walk_children(
                x,
                kids,
                &self.pos,
                &self.nodes,
                &self.deps_arena,
                ps,
                win_end,
                &mut scratch,
                &mut emit,
            );
            for (i, &c) in kids.iter().enumerate() {
                if self.nodes[c as usize].parent != x {
                    continue;
                }
                let r = scratch.result[i];
                let cw = &mut self.walk[c as usize];
                cw.on_path = w.on_path && r.on_path;
                cw.win_end = r.win_end;
                cw.slack = match (w.slack, r.slack) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    _ => None,
                };
            }
        }
        self.raw_segments = raw_segments;
    }
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
    // The steps the last step on the path waited on, sorted (binary search:
    // a step may list many).
    let mut allowed: Option<Vec<i64>> = None;
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
        if let (Some(k), Some(deps)) = (step, &allowed)
            && deps.binary_search(&k).is_err()
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
                allowed = members.iter().find_map(|&c| {
                    let st = &nodes[c as usize].st;
                    st.has_deps.then(|| {
                        let (da, dl) = (st.deps.0 as usize, st.deps.1 as usize);
                        let mut d = deps_arena[da..da + dl].to_vec();
                        d.sort_unstable();
                        d
                    })
                });
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
/// fallback stands in for. `by_stage` maps a stage name to the first two
/// members carrying it (in `members` order), so the lookup is constant time.
fn lane_key(c: u32, by_stage: &HashMap<&str, (u32, Option<u32>)>, nodes: &[Node<'_>]) -> i64 {
    let st = &nodes[c as usize].st;
    if let Some(b) = st.branch {
        return b;
    }
    if let Some(b) = st.batch {
        return b;
    }
    if let Some(f) = &st.fallback_for
        && let Some(&(first, second)) = by_stage.get(&**f)
        && let Some(p) = if first != c { Some(first) } else { second }
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
    let mut by_stage: HashMap<&str, (u32, Option<u32>)> = HashMap::new();
    if members
        .iter()
        .any(|&c| nodes[c as usize].st.fallback_for.is_some())
    {
        for &m in members {
            if let Some(s) = nodes[m as usize].st.stage.as_deref() {
                by_stage
                    .entry(s)
                    .and_modify(|e| {
                        e.1.get_or_insert(m);
                    })
                    .or_insert((m, None));
            }
        }
    }
    let mut keyed: Vec<(i64, u64, u32)> = members
        .iter()
        .map(|&c| (lane_key(c, &by_stage, nodes), nodes[c as usize].start, c))
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
            Some((s, sl)) => s.saturating_sub(nd.end).saturating_add(sl),
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
