//! The analysis of one trace as a value: a [`TraceGraph`] is built from the
//! spans ([`build`]), given its roots, clamped intervals and owners
//! ([`structure`]), walked for the critical path ([`path`]) and turned into a
//! [`TraceReport`](crate::TraceReport) ([`report`]). The phases are the
//! numbered steps of `docs/critical-path.md`, *Algorithm*; every phase is
//! linear or n log n in the trace's spans.

mod build;
mod path;
mod report;
mod structure;

use std::sync::Arc;

use crate::analyze::{SegmentType, TraceReport};
use crate::diag::{Diagnostic, DiagnosticKind, Location};
use crate::model::{Span, TraceId};

/// "No node" in the `u32` node indices.
pub(crate) const NONE: u32 = u32::MAX;

/// Diagnostics kept per trace; beyond that they are only counted
/// ([`TraceReport::suppressed_diagnostics`]), so a million orphans cost a
/// counter, not a million messages.
pub const MAX_TRACE_DIAGNOSTICS: usize = 1_000;

/// Structural attributes of one span, read in a single pass.
#[derive(Default)]
pub(crate) struct Structure {
    pub(crate) step: Option<i64>,
    /// Range into the graph's `deps_arena`.
    pub(crate) deps: (u32, u32),
    pub(crate) has_deps: bool,
    pub(crate) branch: Option<i64>,
    pub(crate) batch: Option<i64>,
    pub(crate) fallback_for: Option<Arc<str>>,
    pub(crate) blocking: bool,
    pub(crate) stage: Option<Arc<str>>,
    pub(crate) own_type: Option<SegmentType>,
}

/// One span of the graph.
pub(crate) struct Node<'a> {
    pub(crate) span: &'a Span,
    /// Index of the parent as used by the analysis (`NONE` for roots).
    pub(crate) parent: u32,
    /// Start after clamping.
    pub(crate) start: u64,
    /// End after messaging reach and clamping.
    pub(crate) end: u64,
    pub(crate) st: Structure,
}

/// Per-node results of the walk.
#[derive(Clone, Copy)]
pub(crate) struct Walk {
    pub(crate) on_path: bool,
    /// End of the window through which the path enters this span.
    pub(crate) win_end: u64,
    pub(crate) slack: Option<u64>,
    pub(crate) tree: u32,
    pub(crate) depth: u32,
    /// Index of the typed span whose key and type this span's time is charged to.
    pub(crate) owner: u32,
    /// Innermost enclosing stage span (or `NONE`).
    pub(crate) stage_node: u32,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            on_path: false,
            win_end: 0,
            slack: Some(0),
            tree: 0,
            depth: 0,
            owner: NONE,
            stage_node: NONE,
        }
    }
}

/// Diagnostics of one trace, capped at [`MAX_TRACE_DIAGNOSTICS`].
#[derive(Default)]
pub(crate) struct Diags {
    pub(crate) list: Vec<Diagnostic>,
    pub(crate) suppressed: u64,
}

impl Diags {
    /// Records a problem; the message is only formatted when it is kept.
    pub(crate) fn push(
        &mut self,
        kind: DiagnosticKind,
        location: Location,
        message: impl FnOnce() -> String,
    ) {
        if self.list.len() < MAX_TRACE_DIAGNOSTICS {
            self.list.push(Diagnostic::new(kind, location, message()));
        } else {
            self.suppressed += 1;
        }
    }
}

/// The spans of one trace as an indexed tree, with everything the phases of
/// the analysis compute about them.
pub(crate) struct TraceGraph<'a> {
    pub(crate) trace_id: TraceId,
    pub(crate) nodes: Vec<Node<'a>>,
    /// `spanline.step.depends_on` lists of all spans, end to end.
    pub(crate) deps_arena: Vec<i64>,
    /// Whether a span's parent id is not in the trace.
    pub(crate) orphan: Vec<bool>,
    /// Children in compressed-row form: those of `p` are
    /// `children[child_off[p]..child_off[p + 1]]`, sorted by start.
    pub(crate) child_off: Vec<u32>,
    pub(crate) children: Vec<u32>,
    /// Position of each span among its parent's children.
    pub(crate) pos: Vec<u32>,
    /// Roots, the primary one first (after [`TraceGraph::find_roots`]).
    pub(crate) roots: Vec<u32>,
    /// Whether a span is where a parent cycle was broken.
    pub(crate) cycle_root: Vec<bool>,
    /// End of each span's subtree for messaging spans (else its own end).
    pub(crate) reach: Vec<u64>,
    /// Every reachable span, depth-first from each root in turn.
    pub(crate) order: Vec<u32>,
    pub(crate) walk: Vec<Walk>,
    /// Whether structural attributes were used anywhere.
    pub(crate) structured: bool,
    /// `(tree, start, end, node)` pieces of the critical paths.
    pub(crate) raw_segments: Vec<(u32, u64, u64, u32)>,
    pub(crate) diags: Diags,
}

impl<'a> TraceGraph<'a> {
    /// Runs every phase; `None` for an empty slice.
    pub(crate) fn analyze(spans: &[&'a Span]) -> Option<TraceReport> {
        let mut g = TraceGraph::build(spans)?;
        g.find_roots()?;
        g.clamp();
        g.assign_owners();
        g.walk_paths();
        Some(g.into_report())
    }

    /// The children of `x` (including stale entries whose parent link was cut
    /// when a cycle was broken: check `nodes[c].parent == x`).
    pub(crate) fn kids(&self, x: u32) -> &[u32] {
        let (a, b) = (
            self.child_off[x as usize] as usize,
            self.child_off[x as usize + 1] as usize,
        );
        &self.children[a..b]
    }

    /// The location of span `i` in diagnostics.
    pub(crate) fn loc(&self, i: u32) -> Location {
        Location::Span {
            trace_id: self.trace_id,
            span_id: self.nodes[i as usize].span.span_id,
        }
    }
}
