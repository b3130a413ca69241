//! Hand-built traces for the tests (times in milliseconds).
#![allow(dead_code, unreachable_pub)]

use spanline_critpath::semconv as sc;
use spanline_critpath::{AttrValue, Span, SpanId, SpanKind, TraceId, TraceReport};

pub const MS: u64 = 1_000_000;
/// An arbitrary epoch offset so that times look real.
pub const T0: u64 = 1_700_000_000_000_000_000;

pub struct Trace {
    pub id: TraceId,
    pub spans: Vec<Span>,
    next: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Trace {
    pub fn new(n: u128) -> Self {
        Trace {
            id: TraceId(0x0af7651916cd43dd8448eb211c80319c ^ n),
            spans: Vec::new(),
            next: 1,
        }
    }

    /// Adds a plain span; times in ms relative to T0.
    pub fn span(&mut self, parent: Option<SpanId>, name: &str, start: u64, end: u64) -> SpanId {
        let id = SpanId(0xb7ad6b7169203300 + self.next);
        self.next += 1;
        self.spans.push(Span::new(
            self.id,
            id,
            parent,
            name,
            T0 + start * MS,
            T0 + end * MS,
        ));
        id
    }

    pub fn get(&mut self, id: SpanId) -> &mut Span {
        self.spans
            .iter_mut()
            .find(|s| s.span_id == id)
            .expect("span exists")
    }

    pub fn attr(&mut self, id: SpanId, key: &str, v: impl Into<AttrValue>) -> &mut Self {
        self.get(id).attributes.insert(key, v);
        self
    }

    /// A pipeline step span with the structural attributes of docs/span-structure.md.
    pub fn stage(
        &mut self,
        parent: SpanId,
        name: &str,
        stage: &str,
        step: i64,
        start: u64,
        end: u64,
    ) -> SpanId {
        let id = self.span(Some(parent), name, start, end);
        let deps: Vec<i64> = if step == 0 { vec![] } else { vec![step - 1] };
        self.attr(id, sc::STAGE_NAME, stage)
            .attr(id, sc::STEP_INDEX, step)
            .attr(id, sc::STEP_DEPENDS_ON, deps)
            .attr(id, sc::STEP_BLOCKING, true)
            .attr(id, sc::PIPELINE_NAME, "rag");
        id
    }

    pub fn kind(&mut self, id: SpanId, kind: SpanKind) -> &mut Self {
        self.get(id).kind = kind;
        self
    }

    pub fn service(&mut self, id: SpanId, svc: &str) -> &mut Self {
        self.get(id).service_name = Some(svc.into());
        self
    }

    pub fn analyze(&self) -> TraceReport {
        let refs: Vec<&Span> = self.spans.iter().collect();
        spanline_critpath::analyze_trace(&refs).expect("non-empty trace")
    }
}

/// The critical path as (span name, segment type, duration in ms).
pub fn path(r: &TraceReport) -> Vec<(String, &'static str, u64)> {
    r.segments
        .iter()
        .map(|s| {
            (
                s.span_name.to_string(),
                s.segment_type.as_str(),
                s.duration_ns / MS,
            )
        })
        .collect()
}

/// Builds the expected path from a compact list.
pub fn expect(v: &[(&str, &'static str, u64)]) -> Vec<(String, &'static str, u64)> {
    v.iter().map(|&(n, t, d)| (n.to_owned(), t, d)).collect()
}

/// Every segment list must tile the root's interval exactly.
pub fn assert_tiles(r: &TraceReport) {
    let mut t = r.start_ns;
    for s in &r.segments {
        assert_eq!(
            s.start_ns, t,
            "segments must be contiguous: {:?}",
            r.segments
        );
        assert!(s.end_ns > s.start_ns);
        t = s.end_ns;
    }
    assert_eq!(t, r.end_ns, "segments must end at the root's end");
    let sum: u64 = r.segments.iter().map(|s| s.duration_ns).sum();
    assert_eq!(sum, r.duration_ns);
}

pub fn slack_ms(r: &TraceReport, name: &str) -> Option<u64> {
    r.spans
        .iter()
        .find(|s| &*s.name == name)
        .expect("span exists")
        .slack_ns
        .map(|n| n / MS)
}

/// The sample pipeline used in several tests:
/// root [0,100]: normalize [2,10] step 0; dense [12,50] + bm25 [12,30] step 1
/// (parallel); fuse [52,60] step 2; keyword [61,80] error + identity [81,85]
/// fallback step 3; chat [86,98] step 4.
pub fn sample_pipeline(n: u128) -> Trace {
    let mut t = Trace::new(n);
    let root = t.span(None, "invoke_workflow rag", 0, 100);
    t.stage(root, "spanline.preprocess normalize", "normalize", 0, 2, 10);
    let d = t.stage(root, "retrieval docs-dense", "dense", 1, 12, 50);
    let b = t.stage(root, "retrieval docs-bm25", "bm25", 1, 12, 30);
    for (i, id) in [d, b].into_iter().enumerate() {
        t.attr(id, sc::PARALLEL_GROUP, 1i64)
            .attr(id, sc::PARALLEL_BRANCH, i as i64)
            .attr(id, sc::PARALLEL_WIDTH, 2i64);
    }
    t.stage(root, "spanline.stage fuse", "fuse", 2, 52, 60);
    let k = t.stage(root, "spanline.rerank keyword", "keyword", 3, 61, 80);
    t.attr(k, sc::FALLBACK_ACTION, "fallback")
        .attr(k, sc::FALLBACK_REASON, "error");
    t.get(k).status.code = spanline_critpath::StatusCode::Error;
    let f = t.stage(root, "spanline.rerank identity", "identity", 3, 81, 85);
    t.attr(f, sc::FALLBACK_FOR, "keyword")
        .attr(f, sc::STEP_DEPENDS_ON, vec![3i64]);
    t.stage(root, "chat extractive", "chat", 4, 86, 98);
    t
}

/// A tiny deterministic generator for jitter in test data (splitmix64).
pub struct Jitter(pub u64);

impl Jitter {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `ms` ± `pct` percent (uniform), at least 1.
    pub fn around(&mut self, ms: u64, pct: u64) -> u64 {
        let span = ms * pct / 100;
        if span == 0 {
            return ms.max(1);
        }
        (ms - span + self.next() % (2 * span + 1)).max(1)
    }
}

/// One run of a sequential pipeline `rag` whose stages take the given times
/// (ms), 1 ms of orchestration before each stage and after the last.
pub fn sequential_run(n: u128, stages: &[(&str, u64)]) -> Trace {
    let mut t = Trace::new(n);
    let total: u64 = stages.iter().map(|s| s.1 + 1).sum::<u64>() + 1;
    let root = t.span(None, "invoke_workflow rag", 0, total);
    let mut at = 1;
    for (i, &(stage, ms)) in stages.iter().enumerate() {
        t.stage(
            root,
            &format!("spanline.stage {stage}"),
            stage,
            i as i64,
            at,
            at + ms,
        );
        at += ms + 1;
    }
    t
}
