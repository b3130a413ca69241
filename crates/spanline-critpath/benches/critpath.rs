//! Analysis throughput on generated inputs of 1k, 100k and 1M spans (traces
//! of 19 spans with a parallel group, remote hops, a fallback and a queue
//! wait), against the bare baseline of grouping the spans by trace.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use spanline_critpath::semconv as sc;
use spanline_critpath::{Span, SpanId, StatsBuilder, TraceId, analyze_trace, group_by_trace};

const US: u64 = 1_000;

struct Gen {
    spans: Vec<Span>,
    trace: TraceId,
    next: u64,
    rng: u64,
}

impl Gen {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    fn span(&mut self, parent: Option<SpanId>, name: &str, s: u64, e: u64) -> SpanId {
        self.next += 1;
        let id = SpanId(self.next);
        self.spans
            .push(Span::new(self.trace, id, parent, name, s, e));
        id
    }

    fn stage(
        &mut self,
        parent: SpanId,
        name: &str,
        stage: &str,
        step: i64,
        s: u64,
        e: u64,
    ) -> SpanId {
        let id = self.span(Some(parent), name, s, e);
        let deps: Vec<i64> = if step == 0 { vec![] } else { vec![step - 1] };
        let sp = self.spans.last_mut().expect("just pushed");
        sp.attributes.insert(sc::PIPELINE_NAME, "rag");
        sp.attributes.insert(sc::STAGE_NAME, stage);
        sp.attributes.insert(sc::STAGE_KIND, "custom");
        sp.attributes.insert(sc::STEP_INDEX, step);
        sp.attributes.insert(sc::STEP_DEPENDS_ON, deps);
        sp.attributes.insert(sc::STEP_BLOCKING, true);
        id
    }

    fn attr(&mut self, key: &str, v: impl Into<spanline_critpath::AttrValue>) {
        if let Some(sp) = self.spans.last_mut() {
            sp.attributes.insert(key, v);
        }
    }

    /// One pipeline run of 19 spans.
    fn trace(&mut self, t: u128) {
        self.trace = TraceId(0x5eed_0000_0000_0000_0000_0000_0000_0000 | t);
        let t0 = 1_700_000_000_000_000_000 + (t as u64) * 1_000_000;
        let mut c = t0 + 50 * US;
        let root = self.span(None, "invoke_workflow rag", t0, t0);
        let d = 200 + self.rand(300);
        self.stage(
            root,
            "spanline.preprocess normalize",
            "normalize",
            0,
            c,
            c + d * US,
        );
        c += (d + 10) * US;
        let d = 1_000 + self.rand(2_000);
        let e = self.stage(root, "embeddings minilm", "embed", 1, c, c + d * US);
        let h = self.span(
            Some(e),
            "spanline.worker.v1.StageWorker/Run",
            c + 20 * US,
            c + (d - 20) * US,
        );
        self.attr(sc::SEGMENT_TYPE, "hop");
        self.span(Some(h), "StageWorker/Run", c + 60 * US, c + (d - 60) * US);
        c += (d + 10) * US;
        let mut join = c;
        for b in 0..3i64 {
            let d = 2_000 + self.rand(8_000);
            let br = self.stage(root, "retrieval docs", "retrieve", 2, c, c + d * US);
            self.attr(sc::PARALLEL_GROUP, 2i64);
            self.attr(sc::PARALLEL_BRANCH, b);
            self.attr(sc::PARALLEL_WIDTH, 3i64);
            self.span(Some(br), "index.search", c + 30 * US, c + (d - 30) * US);
            join = join.max(c + d * US);
        }
        c = join + 10 * US;
        let d = 100 + self.rand(200);
        self.stage(root, "spanline.stage fuse", "fuse", 3, c, c + d * US);
        c += (d + 10) * US;
        let d = 500 + self.rand(1_000);
        self.stage(root, "spanline.rerank cross", "cross", 4, c, c + d * US);
        self.attr(sc::FALLBACK_ACTION, "fallback");
        self.attr(sc::FALLBACK_REASON, "timeout");
        c += (d + 5) * US;
        self.stage(
            root,
            "spanline.rerank identity",
            "identity",
            4,
            c,
            c + 20 * US,
        );
        self.attr(sc::FALLBACK_FOR, "cross");
        c += 30 * US;
        let q = 100 + self.rand(3_000);
        let d = 5_000 + self.rand(20_000);
        let g = self.stage(
            root,
            "chat smollm2",
            "generate",
            5,
            c,
            c + (q + d + 200) * US,
        );
        let hop = self.span(
            Some(g),
            "send rag.generate",
            c + 10 * US,
            c + (q + d + 190) * US,
        );
        self.attr(sc::SEGMENT_TYPE, "hop");
        self.span(
            Some(hop),
            "queue rag.generate",
            c + 20 * US,
            c + (20 + q) * US,
        );
        self.attr(sc::SEGMENT_TYPE, "queue");
        let p = self.span(
            Some(hop),
            "process rag.generate",
            c + (20 + q) * US,
            c + (q + d + 100) * US,
        );
        self.span(
            Some(p),
            "generate smollm2",
            c + (30 + q) * US,
            c + (q + d + 90) * US,
        );
        self.attr(sc::STAGE_NAME, "generate-remote");
        c += (q + d + 250) * US;
        if let Some(r) = self.spans.iter_mut().find(|s| s.span_id == root) {
            r.end_ns = c;
        }
    }
}

fn generate(n: usize) -> Vec<Span> {
    let mut g = Gen {
        spans: Vec::with_capacity(n + 19),
        trace: TraceId(0),
        next: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
    };
    let mut t = 0u128;
    while g.spans.len() < n {
        g.trace(t);
        t += 1;
    }
    g.spans.truncate(n);
    g.spans
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("critpath");
    for &n in &[1_000usize, 100_000, 1_000_000] {
        let spans = generate(n);
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sampling_mode(SamplingMode::Flat);
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(if n >= 1_000_000 { 8 } else { 4 }));
        } else {
            group.sampling_mode(SamplingMode::Auto);
            group.sample_size(50);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
        }
        group.bench_with_input(
            BenchmarkId::new("baseline_group_by_trace", n),
            &spans,
            |b, spans| b.iter(|| black_box(group_by_trace(black_box(spans))).len()),
        );
        group.bench_with_input(BenchmarkId::new("critical_path", n), &spans, |b, spans| {
            b.iter(|| {
                let mut segments = 0usize;
                for g in group_by_trace(black_box(spans)) {
                    if let Some(r) = analyze_trace(&g) {
                        segments += r.segments.len();
                    }
                }
                black_box(segments)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("critical_path_and_stats", n),
            &spans,
            |b, spans| {
                b.iter(|| {
                    let mut stats = StatsBuilder::new();
                    for g in group_by_trace(black_box(spans)) {
                        if let Some(r) = analyze_trace(&g) {
                            stats.add(&r);
                        }
                    }
                    black_box(stats.finish())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
